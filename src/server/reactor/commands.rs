//! Commands, broadcast and topics: work that reaches connections other than the one being served.
//!
//! Owns: draining the command channel other threads write to (broadcast, publish, send to an id, close,
//! connect, adopt, count a refusal, stop), the per-reactor topic map, and carrying out what a callback deferred
//! (subscriptions, its handler timer, broadcasts and publishes, which go to the other reactors too).
//! Never touches: parsing, the socket (frames go through the write path's `queue_frame`).

use std::collections::HashMap;
use std::sync::mpsc::TryRecvError;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::metrics::Counters;
use crate::proto::{Connection, FrameHeader, FrameSharing, HeaderParse, OpCode};

use super::super::Handle;
use super::conn::{Conn, Phase};
use super::{Command, Reactor};

/// Commands carried out per loop turn at most, before the reactor looks at its sockets and timers again.
pub(super) const COMMANDS_PER_TURN: usize = 4096;

/// Per-reactor subscriptions: topic → slots subscribed to it.
pub(super) type Topics = HashMap<Arc<str>, Vec<usize>>;

/// Removes `slot` from `topic`, dropping the topic when nobody is left (and telling the broker, which
/// counts reactors per topic: only this 1 → 0 step of a reactor's list reaches it).
pub(super) fn unsubscribe(topics: &mut Topics, topic: &Arc<str>, slot: usize, handle: &Handle) {
    if let Some(slots) = topics.get_mut(topic) {
        if let Some(i) = slots.iter().position(|s| *s == slot) {
            slots.swap_remove(i);
        }
        if slots.is_empty() {
            topics.remove(topic);
            handle.topic_closed(topic);
        }
    }
}

impl Reactor {
    /// Carries out up to [`COMMANDS_PER_TURN`] waiting commands; returns whether more are waiting (the
    /// loop then polls without sleeping and comes back), so a thread that posts faster than the reactor
    /// delivers cannot hold the loop in here while its sockets and timers wait.
    pub(super) fn drain_commands(&mut self, handle: &Handle) -> bool {
        let more = self.drain_some_commands(handle);
        Counters::set(&self.counters.pending_command_bytes, self.rx.pending_bytes() as u64);
        more
    }

    fn drain_some_commands(&mut self, handle: &Handle) -> bool {
        for _ in 0..COMMANDS_PER_TURN {
            match self.rx.try_recv() {
                Ok(Command::Broadcast(frame)) => self.broadcast_local(&frame, handle),
                Ok(Command::Publish(topic, frame)) => self.publish_local(&topic, &frame, handle),
                Ok(Command::SendTo(id, frame)) => {
                    if self.conns.get(id.slot()).is_some_and(|c| c.generation == id.generation()) {
                        self.queue_frame(id.slot(), frame, handle);
                    }
                }
                Ok(Command::Close(id, code, reason)) => {
                    let slot = id.slot();
                    if let Some(Conn { phase: Phase::Open(open), generation, .. }) = self.conns.get_mut(slot) {
                        if *generation == id.generation() {
                            if open.proto.close(self.now, code, &reason, &mut self.calls.cork).is_ok() {
                                Counters::add(&self.counters.closes_sent, 1);
                            }
                            self.after_event(slot, handle, false);
                        }
                    }
                }
                Ok(Command::Connect(start)) => self.start_client(*start),
                Ok(Command::Adopt(stream, already_read)) => self.adopt(stream, already_read, handle),
                Ok(Command::AdoptUpgraded(stream, upgrade, already_read)) => {
                    self.adopt_upgraded(stream, *upgrade, already_read, handle);
                }
                Ok(Command::CountRefusal(kind)) => self.counters.record_handshake_failure(kind),
                Ok(Command::Stop) => self.begin_stop(handle),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Carries out what the last callback on `slot` deferred.
    pub(super) fn apply_deferred(&mut self, slot: usize, handle: &Handle) {
        let deferred = std::mem::take(&mut self.calls.deferred);
        if let Some(change) = deferred.timer {
            // Only a connection still open gets a timer (not one that was just removed, e.g. from `on_close`).
            let open = matches!(self.conns.get(slot), Some(Conn { phase: Phase::Open(open), .. }) if !open.notified);
            match change {
                // A delay too long for the clock to represent (e.g. `Duration::MAX`) is a timer that never
                // fires: it disarms, instead of panicking the reactor with an overflow.
                Some(after) if open => match Instant::now().checked_add(after) {
                    Some(due) => self.handler_timers.arm(slot, due),
                    None => self.handler_timers.cancel(slot),
                },
                _ => self.handler_timers.cancel(slot),
            }
        }
        if let Some(Conn { phase: Phase::Open(open), .. }) = self.conns.get_mut(slot) {
            for topic in deferred.subscribe {
                let subscribed = &mut open.info.extra.get_or_insert_with(Default::default).topics;
                if subscribed.iter().any(|t| **t == *topic) {
                    continue;
                }
                let key: Arc<str> = match self.topics.get_key_value(topic.as_str()) {
                    Some((key, _)) => key.clone(),
                    None => Arc::from(topic.as_str()),
                };
                let slots = self.topics.entry(key.clone()).or_default();
                slots.push(slot);
                if slots.len() == 1 {
                    handle.topic_opened(&key);
                }
                subscribed.push(key);
            }
            for topic in deferred.unsubscribe {
                let Some(extra) = open.info.extra.as_mut() else {
                    break;
                };
                let subscribed = &mut extra.topics;
                if let Some(i) = subscribed.iter().position(|t| **t == *topic) {
                    let key = subscribed.swap_remove(i);
                    unsubscribe(&mut self.topics, &key, slot, handle);
                }
            }
        }
        for frame in deferred.broadcasts {
            self.broadcast_local(&frame, handle);
            handle.broadcast_frame_except(self.index, frame);
        }
        for (topic, frame) in deferred.publishes {
            let topic: Arc<str> = Arc::from(topic);
            self.publish_local(&topic, &frame, handle);
            handle.publish_except(self.index, &topic, &frame);
            handle.publish_to_broker(&topic, &frame);
        }
    }

    pub(super) fn broadcast_local(&mut self, frame: &Bytes, handle: &Handle) {
        let slots: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.phase, Phase::Open(o) if o.proto.can_send()))
            .map(|(k, _)| k)
            .collect();
        let mut encoded = Encoded::new(frame);
        for slot in slots {
            let frame = self.frame_for(slot, &mut encoded);
            self.queue_frame(slot, frame, handle);
        }
    }

    pub(super) fn publish_local(&mut self, topic: &str, frame: &Bytes, handle: &Handle) {
        let Some(slots) = self.topics.get(topic) else {
            return;
        };
        let mut encoded = Encoded::new(frame);
        for slot in slots.clone() {
            let frame = self.frame_for(slot, &mut encoded);
            self.queue_frame(slot, frame, handle);
        }
    }

    /// The frame of a broadcast or publish for `slot`: the plain one, unless the connection negotiated
    /// an extension (permessage-deflate). Connections whose extension keeps no state between messages
    /// share one encoding per key, so a broadcast is compressed once per reactor.
    fn frame_for(&mut self, slot: usize, encoded: &mut Encoded<'_>) -> Bytes {
        let Some(Conn { phase: Phase::Open(open), .. }) = self.conns.get_mut(slot) else {
            return encoded.plain.clone();
        };
        match open.proto.frame_sharing() {
            FrameSharing::Plain => encoded.plain.clone(),
            FrameSharing::Keyed(key) => {
                if let Some((_, frame)) = encoded.keyed.iter().find(|(k, _)| *k == key) {
                    return frame.clone();
                }
                let frame = encode_for(&mut open.proto, encoded.plain);
                encoded.keyed.push((key, frame.clone()));
                frame
            }
            _ => encode_for(&mut open.proto, encoded.plain),
        }
    }
}

/// One broadcast's frames: the plain one and one per extension sharing key.
struct Encoded<'a> {
    plain: &'a Bytes,
    keyed: Vec<(u64, Bytes)>,
}

impl<'a> Encoded<'a> {
    fn new(plain: &'a Bytes) -> Self {
        Self { plain, keyed: Vec::new() }
    }
}

/// Re-encodes a plain server data frame through `proto`'s extension; the plain frame when it is not a
/// whole text or binary message or the connection cannot send.
#[cold]
fn encode_for(proto: &mut Connection, plain: &Bytes) -> Bytes {
    let Ok(HeaderParse::Complete { header, header_len }) = FrameHeader::parse(plain) else {
        return plain.clone();
    };
    let payload = &plain[header_len..];
    let mut out = Vec::with_capacity(payload.len() / 2 + 16);
    let sent = match header.opcode {
        _ if !header.fin || header.rsv != 0 || header.mask.is_some() => return plain.clone(),
        OpCode::Text => match std::str::from_utf8(payload) {
            Ok(text) => proto.send_text(text, &mut out),
            Err(_) => return plain.clone(),
        },
        OpCode::Binary => proto.send_binary(payload, &mut out),
        _ => return plain.clone(),
    };
    if sent.is_ok() {
        Bytes::from(out)
    } else {
        plain.clone()
    }
}

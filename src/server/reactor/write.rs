//! The write path: the cork, the connection's outbound queue, backpressure, and `on_drain`.
//!
//! Owns: [`Writer`] (what a handler call writes through: the cork, the direct path for large payloads,
//! the one backpressure check) and the reactor's flush, queue-drain and shared-frame queueing. Every byte
//! goes to the socket through [`Transport::write_until_blocked`]. Never touches: parsing, handler
//! dispatch beyond `on_drain`.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::metrics::{Counters, MessageKind};
use crate::proto::{CloseCode, Role};

use super::super::config::{BackpressurePolicy, Config};
use super::super::handler::SendError;
use super::super::transport::{Queued, Slices, Transport};
use super::super::Handle;
use super::conn::Phase;
use super::Reactor;

/// Messages at least this large are written straight from the caller's slice (one vectored write with
/// what is corked) instead of being copied into the cork first.
const DIRECT_WRITE_MIN: usize = 16 * 1024;

/// What the backpressure policy says about `len` more bytes for a peer that has `buffered` bytes
/// waiting: the one check for handler sends and shared frames alike. A peer with nothing buffered
/// always takes one message, however large.
pub(super) fn admits(buffered: usize, len: usize, config: &Config) -> Result<(), BackpressurePolicy> {
    if buffered > 0 && buffered.saturating_add(len) > config.max_buffered_bytes {
        Err(config.backpressure)
    } else {
        Ok(())
    }
}

/// The write side of one handler call: the reactor's cork, the connection's transport and what is
/// already queued behind it, and the backpressure policy.
pub(crate) struct Writer<'a> {
    pub(super) cork: &'a mut Vec<u8>,
    pub(super) transport: Transport<'a>,
    /// Bytes queued on the connection before this call.
    pub(super) queued: usize,
    pub(super) config: &'a Config,
    /// A send found the peer at the ceiling under the `Close` policy: close it after the call.
    pub(super) slow_peer: &'a mut bool,
    /// Messages dropped under the `Drop` policy, counted after the call.
    pub(super) dropped: &'a mut u64,
    pub(super) counters: &'a Counters,
}

impl Writer<'_> {
    /// The same writer for a shorter borrow (one per callback).
    pub(super) fn reborrow(&mut self) -> Writer<'_> {
        Writer {
            cork: self.cork,
            transport: self.transport.reborrow(),
            queued: self.queued,
            config: self.config,
            slow_peer: self.slow_peer,
            dropped: self.dropped,
            counters: self.counters,
        }
    }

    /// Where frames are encoded (flushed after the callback).
    pub(crate) fn cork(&mut self) -> &mut Vec<u8> {
        self.cork
    }

    pub(crate) fn counters(&self) -> &Counters {
        self.counters
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.transport.peer_addr().ok()
    }

    /// Bytes waiting for the peer: queued before the call plus corked during it.
    pub(crate) fn buffered(&self) -> usize {
        self.queued + self.cork.len()
    }

    pub(crate) fn is_slow_peer(&self) -> bool {
        *self.slow_peer
    }

    /// Applies the backpressure policy to a send of `len` bytes.
    pub(crate) fn admit(&mut self, len: usize) -> Result<(), SendError> {
        if *self.slow_peer {
            return Err(SendError::SlowPeer);
        }
        match admits(self.buffered(), len, self.config) {
            Ok(()) => Ok(()),
            Err(BackpressurePolicy::Drop) => {
                *self.dropped += 1;
                Err(SendError::Dropped)
            }
            Err(BackpressurePolicy::Close) => {
                *self.slow_peer = true;
                Err(SendError::SlowPeer)
            }
        }
    }

    /// Whether a payload of `len` bytes is large enough to go out uncopied (then
    /// [`Writer::takes_direct`] decides); the small message's path tests only this.
    #[inline]
    pub(crate) fn may_take_direct(&self, len: usize) -> bool {
        len >= DIRECT_WRITE_MIN
    }

    /// Whether a payload of `len` bytes goes out uncopied ([`Writer::write_through`]): it is large and
    /// nothing is queued behind the cork.
    pub(crate) fn takes_direct(&self, len: usize) -> bool {
        len >= DIRECT_WRITE_MIN && self.queued == 0
    }

    /// Writes the cork and then `tail`, without copying `tail` first; whatever the socket does not take
    /// is corked (copied) after what is already there, so the order stays. Only when nothing is queued
    /// behind the cork ([`Writer::takes_direct`]). A broken socket leaves everything corked: the
    /// reactor's flush after the callback sees the error.
    pub(crate) fn write_through(&mut self, tail: &[u8]) {
        let written = {
            let mut src = Slices::new(self.cork, tail);
            self.transport.write_until_blocked(&mut src).unwrap_or(0)
        };
        Counters::add(&self.counters.bytes_written, written as u64);
        if written >= self.cork.len() {
            let sent_of_tail = written - self.cork.len();
            self.cork.clear();
            self.cork.extend_from_slice(&tail[sent_of_tail..]);
        } else {
            self.cork.drain(..written);
            self.cork.extend_from_slice(tail);
        }
    }
}

impl Reactor {
    pub(super) fn on_writable(&mut self, slot: usize, handle: &Handle) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if matches!(conn.phase, Phase::Connecting(_)) {
            self.check_connected(slot, handle);
            return;
        }
        if conn.outbound.is_some() || self.tls.transport(&mut conn.stream, slot).wants_write() {
            self.write_queued(slot, handle);
        }
    }

    /// Writes the outbound queue until it is empty or the socket would block; once drained, closes a
    /// connection that waited for that or tells the handler (`on_drain`).
    pub(super) fn write_queued(&mut self, slot: usize, handle: &Handle) {
        if self.ring_sending(slot) {
            // The queue is behind a send still in the ring: written on its completion.
            self.ring_settle(handle);
            if self.ring_sending(slot) {
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let mut transport = self.tls.transport(&mut conn.stream, slot);
        let result = match conn.outbound.as_mut() {
            Some(queue) => transport.write_until_blocked(&mut Queued { queue, pool: &mut self.pool }),
            // Only records a TLS session held (no queue behind them).
            None => transport.flush_held().map(|()| 0),
        };
        let held = transport.wants_write();
        match result {
            Ok(n) => {
                Counters::add(&self.counters.bytes_written, n as u64);
                if let (true, Phase::Open(open)) = (n > 0, &mut conn.phase) {
                    open.proto.backlog_sent_at(self.now);
                }
            }
            Err(_) => {
                self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset");
                return;
            }
        }
        if conn.outbound.as_ref().is_some_and(|q| !q.is_empty()) || held {
            return;
        }
        conn.outbound = None;
        if conn.close_when_flushed {
            self.remove(slot, handle, CloseCode::NORMAL, "");
            return;
        }
        if let Phase::Open(open) = &mut conn.phase {
            if open.drain_pending {
                open.drain_pending = false;
                self.call_handler(slot, handle, |h, ctx| h.on_drain(ctx));
            }
        }
    }

    /// Sends the cork to the connection: straight to the socket when nothing is queued before it, the
    /// rest into the outbound queue.
    pub(super) fn flush(&mut self, slot: usize, handle: &Handle) {
        if self.calls.cork.is_empty() {
            return;
        }
        if self.ring_stage(slot, handle) {
            return;
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            self.calls.cork.clear();
            return;
        };
        let cork = &self.calls.cork;
        let mut written = 0;
        if conn.outbound.is_none() {
            match self.tls.transport(&mut conn.stream, slot).write_until_blocked(&mut Slices::new(cork, &[])) {
                Ok(n) => written = n,
                Err(_) => {
                    self.calls.cork.clear();
                    self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset");
                    return;
                }
            }
            Counters::add(&self.counters.bytes_written, written as u64);
        }
        if written < cork.len() {
            conn.outbound.get_or_insert_with(Default::default).push_owned(&cork[written..], &mut self.pool);
            if let Phase::Open(open) = &mut conn.phase {
                open.drain_pending = true;
            }
        }
        self.calls.cork.clear();
        self.update_pool_gauge();
    }

    pub(super) fn update_pool_gauge(&self) {
        Counters::set(&self.counters.pool_buffers_outstanding, self.pool.outstanding() as u64);
    }

    /// Queues a shared, pre-encoded frame on one connection, applying the backpressure policy.
    pub(super) fn queue_frame(&mut self, slot: usize, frame: Bytes, handle: &Handle) {
        if self.ring_sending(slot) {
            self.ring_settle(handle);
        }
        let in_ring = usize::from(self.ring_sending(slot));
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let queued = conn.queued() + in_ring;
        let Phase::Open(open) = &mut conn.phase else { return };
        if !open.proto.can_send() {
            return;
        }
        if open.proto.role() == Role::Client {
            // Shared frames are unmasked server frames; a client must mask every frame it sends.
            let (kind, payload_len) = shared_frame_kind(&frame);
            let payload = &frame[frame.len() - payload_len..];
            let cork = &mut self.calls.cork;
            let sent = match kind {
                MessageKind::Text => std::str::from_utf8(payload)
                    .map_err(|_| ())
                    .and_then(|t| open.proto.send_text(t, cork).map_err(|_| ())),
                MessageKind::Binary => open.proto.send_binary(payload, cork).map_err(|_| ()),
            };
            if sent.is_ok() {
                self.counters.record_message_sent(kind, payload_len);
            }
            self.flush(slot, handle);
            return;
        }
        match admits(queued, frame.len(), &self.config) {
            Ok(()) => {}
            Err(BackpressurePolicy::Drop) => {
                Counters::add(&self.counters.messages_dropped, 1);
                return;
            }
            Err(BackpressurePolicy::Close) => {
                Counters::add(&self.counters.slow_peers_closed, 1);
                self.remove(slot, handle, CloseCode::ABNORMAL, "slow peer");
                return;
            }
        }
        let (kind, payload_len) = shared_frame_kind(&frame);
        self.counters.record_message_sent(kind, payload_len);
        if queued > 0 {
            conn.outbound.get_or_insert_with(Default::default).push_shared(frame);
            return;
        }
        match self.tls.transport(&mut conn.stream, slot).write_until_blocked(&mut Slices::new(&frame, &[])) {
            Ok(written) => {
                Counters::add(&self.counters.bytes_written, written as u64);
                if written < frame.len() {
                    conn.outbound.get_or_insert_with(Default::default).push_shared(frame.slice(written..));
                    open.drain_pending = true;
                }
            }
            Err(_) => self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset"),
        }
    }
}

/// The kind and payload length of a pre-encoded, unmasked single-frame message.
fn shared_frame_kind(frame: &[u8]) -> (MessageKind, usize) {
    let kind = if frame.first().is_some_and(|b| b & 0x0f == 0x1) { MessageKind::Text } else { MessageKind::Binary };
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    (kind, frame.len().saturating_sub(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_admits_a_first_message_of_any_size_and_refuses_past_the_ceiling() {
        let config = Config { max_buffered_bytes: 100, backpressure: BackpressurePolicy::Drop, ..Config::default() };
        assert_eq!(admits(0, 1 << 20, &config), Ok(()));
        assert_eq!(admits(50, 50, &config), Ok(()));
        assert_eq!(admits(50, 51, &config), Err(BackpressurePolicy::Drop));
        assert_eq!(admits(usize::MAX, 1, &config), Err(BackpressurePolicy::Drop));
    }

    #[test]
    fn shared_frame_kind_reads_the_opcode_and_header_length() {
        assert_eq!(shared_frame_kind(&[0x81, 2, b'h', b'i']), (MessageKind::Text, 2));
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(0, 256));
        assert_eq!(shared_frame_kind(&long), (MessageKind::Binary, 256));
    }
}

//! The read path: readiness → bytes → handshake or frames → handler, keeping only an incomplete tail.
//!
//! Owns: reading a readable socket until it is drained (or, for a peer that sends faster than it is
//! read, until the per-event budget; the rest on the next turn), where the bytes go (the reactor's scratch
//! buffer, or the connection's tail buffer while it has one), parsing and dispatching them, and giving
//! an emptied tail buffer back to the pool. Never touches: the write path beyond flushing at the end of
//! an event, timers beyond re-arming after an upgrade.

use std::io::{self, Read};

use crate::buf::{Fill, InboundBuf};
use crate::metrics::Counters;
use crate::proto::CloseCode;

use super::super::handler::{ConnId, ConnectError};
use super::super::rate_limit::RateLimitPolicy;
use super::super::transport::{TlsSessions, Transport};
use super::super::Handle;
use super::calls::{dispatch, invoke, notify_close, Env, EnvParts};
use super::conn::{Conn, OpenConn, Phase};
use super::upgrade::{client_response, server_requests, Upgrade};
use super::Reactor;

/// What parsing one read led to.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// A send found the peer at the buffered-bytes ceiling under the `Close` policy.
    pub(super) slow_peer: bool,
    /// The upgrade completed: the connection's deadlines changed.
    pub(super) upgraded: bool,
    /// The connection passed a rate limit under the `Pause` policy: stop reading until its timer.
    pub(super) paused: bool,
}

/// Where a read takes its bytes from: the socket (through its transport), or bytes an io_uring
/// receive already took from it, which read as `WouldBlock` once used up.
enum Reader<'t, 'r, 'a> {
    Socket(Transport<'t>),
    Received(&'r mut &'a [u8]),
}

impl Read for Reader<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Socket(transport) => transport.read(buf),
            Self::Received([]) => Err(io::ErrorKind::WouldBlock.into()),
            Self::Received(bytes) => bytes.read(buf),
        }
    }
}

/// The reader for one read of `slot`: its socket, or `received` when an io_uring receive brought it.
fn reader<'t, 'r, 'a>(
    tls: &'t mut TlsSessions,
    stream: &'t mut mio::net::TcpStream,
    slot: usize,
    received: Option<&'r mut &'a [u8]>,
) -> Reader<'t, 'r, 'a> {
    match received {
        Some(bytes) => Reader::Received(bytes),
        None => Reader::Socket(tls.transport(stream, slot)),
    }
}

/// Full reads of one socket in one readiness event before the rest waits for the next loop turn.
const READS_PER_EVENT: u32 = 4;

impl Reactor {
    /// Reads again the sockets a readiness event left unread ([`READS_PER_EVENT`]), if their
    /// connections are still there.
    pub(super) fn reread(&mut self, handle: &Handle) {
        let mut list = std::mem::take(&mut self.reread);
        for &(slot, generation, to_eof) in &list {
            if self.conns.get(slot).is_some_and(|c| c.generation == generation) {
                self.on_readable(slot, handle, to_eof);
            }
        }
        list.clear();
        if self.reread.is_empty() {
            self.reread = list;
        }
    }

    /// A readiness event: reads the socket until it is drained (or the connection paused or went).
    pub(super) fn on_readable(&mut self, slot: usize, handle: &Handle, to_eof: bool) {
        self.read_from(slot, handle, to_eof, None);
    }

    /// Reads and processes what `slot` has: from its socket (`received` `None`), or from bytes an
    /// io_uring receive brought (`Some`; what a pause leaves unread stays in the slice for the
    /// caller). One path for both sources: the tail, the handshake, frames, the handler, settling.
    pub(super) fn read_from(&mut self, slot: usize, handle: &Handle, to_eof: bool, mut received: Option<&mut &[u8]>) {
        let mut reads = 0;
        match self.conns.get(slot).map(|c| &c.phase) {
            Some(Phase::Connecting(_)) => self.check_connected(slot, handle),
            // Rate-limited: the timer reads again once the tokens are back.
            Some(Phase::Open(open)) if self.rate_limited && open.rate().is_some_and(|r| r.paused_until.is_some()) => {
                return;
            }
            _ => {}
        }
        loop {
            let Some(conn) = self.conns.get_mut(slot) else { return };
            if matches!(conn.phase, Phase::Connecting(_)) {
                return;
            }
            let mut src = reader(&mut self.tls, &mut conn.stream, slot, received.as_deref_mut());
            if matches!(conn.phase, Phase::Rejected) || conn.close_when_flushed {
                // Discard whatever arrives while an error response or a final close goes out.
                match src.read(&mut self.scratch) {
                    Ok(0) => {
                        self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "");
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "");
                        return;
                    }
                }
            }
            let read = match conn.inbound.as_mut() {
                Some(tail) if !self.pool.is_pool_sized(tail.capacity()) => {
                    // A small tail (size-classed, at most half a pool buffer): read behind a copy of it in
                    // the scratch buffer, so a tail is never grown in place and a stalled peer keeps
                    // holding only about what it sent.
                    let kept = tail.len();
                    self.scratch[..kept].copy_from_slice(tail.readable());
                    match src.read(&mut self.scratch[kept..]) {
                        Ok(0) => Ok(None),
                        Ok(n) => {
                            if let Some(tail) = conn.inbound.take() {
                                self.pool.give((*tail).into_vec());
                            }
                            Ok(Some((kept + n, true)))
                        }
                        Err(e) => Err(e),
                    }
                }
                Some(inbound) => {
                    let limit = self.config.max_frame_size.saturating_add(14).max(self.config.max_request_head);
                    match inbound.fill_from(&mut src, limit) {
                        Ok(Fill::Read(n)) => Ok(Some((n, false))),
                        Ok(Fill::Eof) => Ok(None),
                        Ok(Fill::Full) => Err(io::Error::other("inbound buffer full")),
                        Err(e) => Err(e),
                    }
                }
                None => match src.read(&mut self.scratch) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some((n, true))),
                    Err(e) => Err(e),
                },
            };
            match read {
                Ok(Some((n, from_scratch))) => {
                    match &mut conn.phase {
                        Phase::Open(open) => open.proto.received_at(self.now),
                        _ => conn.last_read = super::conn::stamp_ms(super::ms_since(self.epoch, self.now)),
                    }
                    // Unless the peer also closed (or errored), a short read means the socket is drained:
                    // the next arrival raises a new edge, so no extra read for WouldBlock.
                    let drained = from_scratch && n < self.scratch.len() && !to_eof;
                    let outcome = self.process(slot, handle, from_scratch.then_some(n));
                    self.after_event(slot, handle, outcome.slow_peer);
                    if outcome.upgraded || outcome.paused {
                        self.arm(slot);
                    }
                    if drained {
                        // A connection the ring's mode moved to readiness reads may go back.
                        self.ring_small_read(slot, n, reads == 0);
                        return;
                    }
                    if outcome.paused {
                        return;
                    }
                    reads += 1;
                    if reads >= READS_PER_EVENT && received.is_none() {
                        // A peer that sends faster than it is read would keep the loop here: the rest
                        // waits for the next turn (no new edge comes for it), behind everyone else.
                        if let Some(conn) = self.conns.get(slot) {
                            self.reread.push((slot, conn.generation, to_eof));
                        }
                        return;
                    }
                }
                Ok(None) => {
                    self.read_ended(slot, handle);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_failed(slot, handle, e);
                    return;
                }
            }
        }
    }

    /// The peer closed its side (a read of 0, or an io_uring receive's EOF).
    pub(super) fn read_ended(&mut self, slot: usize, handle: &Handle) {
        if matches!(self.conns.get(slot).map(|c| &c.phase), Some(Phase::AwaitingResponse(_))) {
            self.fail_client(slot, ConnectError::ClosedDuringHandshake);
        } else {
            self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "");
        }
    }

    /// A read failed (on the socket, in TLS, or in an io_uring receive): the connection goes.
    pub(super) fn read_failed(&mut self, slot: usize, handle: &Handle, e: io::Error) {
        log::debug!("reactor {}: read error on slot {slot}: {e}", self.index);
        #[cfg(feature = "tls")]
        if let Some(failure) = super::super::tls_session::TlsFailure::of(&e) {
            if failure.during_handshake {
                self.counters.record_handshake_failure(failure.reason());
            }
        }
        if matches!(self.conns.get(slot).map(|c| &c.phase), Some(Phase::AwaitingResponse(_))) {
            // An in-loop client's handler hears why.
            #[cfg(feature = "tls")]
            if let Some(failure) = super::super::tls_session::TlsFailure::of(&e) {
                let detail = failure.error.to_string();
                let failure = crate::client::tls_classify(&failure.error);
                self.fail_client(slot, ConnectError::Tls { failure, detail });
                return;
            }
            self.fail_client(slot, ConnectError::Io(e));
            return;
        }
        self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "");
    }

    /// Parses what was read (in the scratch buffer when `from_scratch` is set, else in the connection's
    /// inbound buffer) and dispatches events. Keeps any incomplete tail in the connection's buffer.
    pub(super) fn process(&mut self, slot: usize, handle: &Handle, from_scratch: Option<usize>) -> Outcome {
        let index = self.index;
        // A send still in the ring counts as queued: the handler then writes behind it, not past it.
        let in_ring = usize::from(self.ring_sending(slot));
        let Self {
            conns,
            scratch,
            calls,
            pool,
            counters,
            config,
            router,
            handshake,
            http_limits,
            proto_config,
            paths,
            now,
            rate_limited,
            tls,
            ..
        } = self;
        let Some(conn) = conns.get_mut(slot) else {
            return Outcome::default();
        };
        let id = ConnId::new(index, slot, conn.generation);
        let queued = conn.queued() + in_ring;
        let Conn { inbound, phase, stream, counted, .. } = conn;
        let parts = EnvParts { calls, config, handle, counters, now: *now };
        let mut env = Env::new(id, tls.transport(stream, slot), queued, parts);
        let buf: &mut [u8] = match from_scratch {
            Some(n) => &mut scratch[..n],
            None => match inbound.as_mut() {
                Some(inbound) => inbound.readable_mut(),
                None => return Outcome::default(),
            },
        };
        let mut pos = 0;
        let mut upgraded = false;
        let mut up = Upgrade { handshake, http_limits, router, paths, proto_config };
        if matches!(phase, Phase::Handshake) {
            let (n, opened) = server_requests(&mut up, &buf[..], phase, counted, &mut env);
            pos += n;
            upgraded |= opened;
        }
        if matches!(phase, Phase::AwaitingResponse(_)) {
            let (n, opened) = client_response(&mut up, &buf[..], phase, counted, &mut env);
            pos += n;
            upgraded |= opened;
        }
        let mut paused = false;
        if let Phase::Open(open) = phase {
            // Past a rate limit nothing more of this read reaches the handler, however many frames it
            // carried: the budget (one refill per read) is checked event by event, the charge made once.
            let budget = if *rate_limited { open.rate_mut().map(|r| r.budget(env.now)) } else { None };
            let start = pos;
            let mut frames = 0u32;
            while !env.slow_peer() {
                let was_open = open.proto.can_send();
                match open.proto.read(&mut buf[pos..], env.writer.cork) {
                    Ok((n, None)) => {
                        pos += n;
                        break;
                    }
                    Ok((n, Some(event))) => {
                        pos += n;
                        frames += 1;
                        dispatch(open, &mut env, event, was_open);
                        if budget.is_some_and(|b| frames >= b.events || pos - start > b.bytes) {
                            break;
                        }
                    }
                    Err(err) => {
                        pos = buf.len();
                        Counters::add(&env.counters.protocol_errors, 1);
                        log::debug!("reactor {index}: {} failed: {err}", env.id);
                        if was_open {
                            // The state machine wrote a close frame with the error's code.
                            Counters::add(&env.counters.closes_sent, 1);
                        }
                        invoke(open, &mut env, None, |h, ctx| h.on_error(ctx, &err));
                        notify_close(open, &mut env, err.close_code(), err.reason());
                        break;
                    }
                }
            }
            if budget.is_some() {
                match charge_rate(open, &mut env, frames, pos - start) {
                    Rate::Within => {}
                    // The undispatched rest stays as the tail; the timer dispatches it first.
                    Rate::Paused => paused = true,
                    Rate::Closed => pos = buf.len(),
                }
            }
        } else if matches!(phase, Phase::Rejected) {
            pos = buf.len();
        }
        let slow_peer = env.slow_peer();
        // Keep the incomplete tail, and only that.
        match from_scratch {
            Some(n) => {
                if pos < n {
                    let tail = inbound.get_or_insert_with(|| Box::new(InboundBuf::from_vec(pool.take_for(n - pos))));
                    tail.append(&scratch[pos..n]);
                }
            }
            None => {
                if let Some(tail) = inbound.as_mut() {
                    tail.consume(pos);
                    if tail.is_empty() {
                        if let Some(tail) = inbound.take() {
                            pool.give((*tail).into_vec());
                        }
                    } else if pos > 0 && tail.len() <= pool.buffer_capacity() / 2 {
                        // What is left of a large read is small: keep it in a buffer of its size class.
                        let mut small = InboundBuf::from_vec(pool.take_for(tail.len()));
                        small.append(tail.readable());
                        let big = std::mem::replace(&mut **tail, small);
                        pool.give(big.into_vec());
                    }
                }
            }
        }
        Outcome { slow_peer, upgraded, paused }
    }
}

/// Where a connection stands after a charge to its rate limits.
#[derive(Debug, PartialEq, Eq)]
enum Rate {
    /// Within its limits (or it has none).
    Within,
    /// Over a limit under `Pause`: reading stops until its timer.
    Paused,
    /// Over a limit under `Close`: a 1008 close is on its way.
    Closed,
}

/// Charges `frames` events and `bytes` to the connection's rate limits; over a limit it pauses reading
/// (the timer resumes it) or closes with 1008, as `Config::rate_limit_policy` says.
fn charge_rate(open: &mut OpenConn, env: &mut Env<'_>, frames: u32, bytes: usize) -> Rate {
    let Some(rate) = open.rate_mut() else { return Rate::Within };
    let Some(until) = rate.charge(env.now, frames, bytes) else { return Rate::Within };
    match env.config.rate_limit_policy {
        RateLimitPolicy::Close => {
            open.set_rate(None);
            if open.proto.close(env.now, CloseCode::POLICY_VIOLATION, "rate limit exceeded", env.writer.cork).is_ok() {
                Counters::add(&env.counters.closes_sent, 1);
                Counters::add(&env.counters.rate_limit_closes, 1);
                log::info!("{}: closed with 1008: over its rate limit", env.id);
            }
            Rate::Closed
        }
        _ => {
            if let Some(rate) = open.rate_mut() {
                rate.paused_until = Some(until);
            }
            Counters::add(&env.counters.rate_limit_pauses, 1);
            log::debug!(
                "{}: over its rate limit, reading paused for {:?}",
                env.id,
                until.saturating_duration_since(env.now)
            );
            Rate::Paused
        }
    }
}

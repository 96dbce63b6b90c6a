//! Deadlines: one coarse wheel timer per connection, and the exact handler timers.
//!
//! Owns: arming a connection's single wheel timer for its next deadline (the handshake timeout before
//! the upgrade; after it, whatever the protocol core's [`poll_timeout`](crate::proto::Connection::poll_timeout)
//! says), acting when it fires (the core decides pings, pong and idle timeouts and the close-handshake
//! bound through [`handle_timeout`](crate::proto::Connection::handle_timeout); the reactor counts, flushes
//! and closes), and firing handler timers (`Ctx::set_timer`). Never touches: parsing, the write path
//! beyond flushing what the core wrote.

use std::time::{Duration, Instant};

use crate::metrics::{Counters, HandshakeFailure};
use crate::proto::{CloseCode, Timeout};

use super::super::handler::ConnectError;
use super::super::Handle;
use super::conn::{Conn, Phase};
use super::{millis, Reactor};

impl Reactor {
    /// The next deadline this connection cares about.
    fn deadline(&self, conn: &Conn) -> Option<Instant> {
        let last_read = conn.last_read_ms(self.now_ms());
        let since = |ms: u64| self.instant(last_read.saturating_add(ms));
        match &conn.phase {
            Phase::Handshake | Phase::Rejected => Some(since(millis(self.config.handshake_timeout))),
            Phase::Connecting(p) | Phase::AwaitingResponse(p) => Some(since(p.timeout_ms)),
            Phase::Open(open) => {
                let due = open.proto.poll_timeout();
                match open.rate().and_then(|r| r.paused_until) {
                    Some(resume) => Some(due.map_or(resume, |d| d.min(resume))),
                    None => due,
                }
            }
        }
    }

    /// (Re)arms the connection's single timer for its next deadline.
    pub(super) fn arm(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else { return };
        let deadline = self.deadline(conn);
        let conn = &mut self.conns[slot];
        if let Some(key) = conn.timer.take() {
            self.wheel.cancel(key);
        }
        if let Some(at) = deadline {
            conn.timer = Some(self.wheel.insert_at(at, slot as u32));
        }
    }

    pub(super) fn fire_timers(&mut self, handle: &Handle) {
        while let Some(slot) = self.wheel.poll_at(self.now) {
            let slot = slot as usize;
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.timer = None;
                self.on_timer(slot, handle);
            }
        }
    }

    /// Calls `on_timer` for every handler timer due now. Timers armed by these calls wait for the next turn
    /// of the loop, even with a zero delay, so a handler cannot keep the loop here.
    pub(super) fn fire_handler_timers(&mut self, handle: &Handle) {
        // No timer armed (the common case): no clock read.
        if self.handler_timers.next_due().is_none() {
            return;
        }
        let mut due = std::mem::take(&mut self.due_timers);
        self.handler_timers.take_due(Instant::now(), &mut due);
        for &slot in &due {
            self.call_handler(slot, handle, |h, ctx| h.on_timer(ctx));
        }
        due.clear();
        self.due_timers = due;
    }

    fn on_timer(&mut self, slot: usize, handle: &Handle) {
        let now = self.now;
        let now_ms = self.now_ms();
        let conn = &mut self.conns[slot];
        let last_read = conn.last_read_ms(now_ms);
        let mut resume = false;
        match &mut conn.phase {
            Phase::Connecting(p) | Phase::AwaitingResponse(p) => {
                if now_ms >= last_read.saturating_add(p.timeout_ms) {
                    self.counters.record_handshake_failure(HandshakeFailure::Timeout);
                    self.fail_client(slot, ConnectError::Timeout);
                    return;
                }
            }
            Phase::Handshake | Phase::Rejected => {
                if now_ms >= last_read.saturating_add(millis(self.config.handshake_timeout)) {
                    self.counters.record_handshake_failure(HandshakeFailure::Timeout);
                    log::debug!("reactor {}: handshake timeout on slot {slot}", self.index);
                    self.remove(slot, handle, CloseCode::ABNORMAL, "handshake timeout");
                    return;
                }
            }
            Phase::Open(open) => {
                resume = open.rate_mut().is_some_and(|r| r.resume_due(now));
                let could_send = open.proto.can_send();
                match open.proto.handle_timeout(now, &mut self.calls.cork) {
                    None => {}
                    Some(Timeout::Ping) => {
                        Counters::add(&self.counters.pings_sent, 1);
                        self.flush(slot, handle);
                    }
                    Some(Timeout::Idle) => {
                        Counters::add(&self.counters.idle_timeouts, 1);
                        Counters::add(&self.counters.closes_sent, 1);
                        conn.count_closing(&self.counters);
                        self.flush(slot, handle);
                    }
                    Some(Timeout::Pong) => {
                        Counters::add(&self.counters.pong_timeouts, 1);
                        log::debug!("reactor {}: pong timeout on slot {slot}", self.index);
                        if could_send {
                            Counters::add(&self.counters.closes_sent, 1);
                        }
                        self.flush(slot, handle);
                        self.remove(slot, handle, CloseCode::ABNORMAL, "pong timeout");
                        return;
                    }
                    Some(Timeout::Close) => {
                        Counters::add(&self.counters.close_timeouts, 1);
                        self.remove(slot, handle, CloseCode::ABNORMAL, "close handshake timeout");
                        return;
                    }
                    Some(Timeout::Linger) => {
                        // Linger: the close handshake is over (a client waits for the server to close
                        // TCP; a server for its last bytes to go) and the bound passed.
                        self.remove(slot, handle, CloseCode::NORMAL, "");
                        return;
                    }
                }
            }
        }
        if resume {
            // A rate-limit pause is over: first the whole frames it held back (the socket may have nothing
            // new for them), then what waited in the socket (no new edge may come). A new pause stops
            // both (`on_readable` returns at once while paused).
            if self.conns.get(slot).is_some_and(|c| c.inbound.is_some()) {
                let outcome = self.process(slot, handle, None);
                self.after_event(slot, handle, outcome.slow_peer);
            }
            self.ring_resume(slot, handle);
        }
        if self.conns.contains(slot) {
            self.arm(slot);
        }
    }

    /// The reactor epoch plus `ms`.
    pub(super) fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

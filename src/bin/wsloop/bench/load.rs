//! The load itself: the in-loop client handler of one benchmark connection, which sends the pre-built
//! frame, matches echoes with their send instants and records latency, and the `--rate` pacing.
//! Never prints, and never opens connections (the orchestration in `mod.rs` does).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsloop::proto::CloseCode;
use wsloop::server::{ConnectError, Ctx, Handler, Message};

use super::clock::{ticks, Clock};
use super::ring::Ring;
use super::state::{lock, Local, Run, PUBLISH_EVERY};

/// Reserves this thread's next send slot under `--rate` and returns it (ticks; `now` or later). Every
/// connection of a reactor thread draws on the same budget; a connection whose slot is in the future
/// waits for it with a handler timer, so the reactor keeps reading echoes meanwhile.
fn reserve_slot(local: &mut Local, clock: &Clock, interval: u64, now: u64) -> u64 {
    // Never bank more than 5 ms of idle budget: no bursts after a stall.
    let floor = now.saturating_sub(clock.ticks(Duration::from_millis(5)));
    let slot = local.next_send.map_or(now, |next| next.max(floor));
    local.next_send = Some(slot + interval);
    slot
}

/// One benchmark connection.
pub(super) struct BenchConn {
    pub(super) run: Arc<Run>,
    /// Send times of the messages in flight (capacity: `pipeline`).
    pub(super) ring: Ring,
    /// Messages this connection may still send (`u64::MAX` for a timed run).
    pub(super) quota: u64,
    pub(super) requested: Instant,
    pub(super) closing: bool,
    /// Under `--rate`: a send slot is reserved and the handler timer is armed for it.
    pub(super) waiting_for_slot: bool,
}

impl BenchConn {
    fn done(&self, now: u64) -> bool {
        self.quota == 0 || self.run.deadline.is_some_and(|d| now >= d)
    }

    /// Under `--rate`, keeps the pipeline full within this thread's budget: sends at once while slots are
    /// due, and arms the timer for the first one that is not (at most one reservation outstanding).
    fn send_paced(&mut self, ctx: &mut Ctx<'_>, l: &mut Local, interval: u64, now: u64) {
        let run = self.run.clone();
        while !self.waiting_for_slot && !self.closing && !self.done(now) && self.ring.len() < run.pipeline {
            let slot = reserve_slot(l, &run.clock, interval, now);
            if slot > now {
                self.waiting_for_slot = true;
                ctx.set_timer(run.clock.duration(slot - now));
            } else if !self.send_one(ctx, l, now) {
                break;
            }
        }
    }

    /// Sends one pre-built frame now; false if the connection refused it.
    fn send_one(&mut self, ctx: &mut Ctx<'_>, l: &mut Local, now: u64) -> bool {
        if ctx.send_raw(&self.run.frame).is_err() {
            return false;
        }
        self.ring.push_back(now);
        self.quota -= 1;
        l.counts.sent += 1;
        true
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>, now: u64) {
        if !self.closing && self.ring.is_empty() {
            self.closing = true;
            if self.run.deadline.is_none() {
                self.run.finish_ticks.fetch_max(now, Relaxed);
            }
            let _ = ctx.close(CloseCode::NORMAL, "");
        }
    }
}

impl Handler for BenchConn {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let run = self.run.clone();
        let opened_at = Instant::now();
        let now = ticks::now();
        run.opened.fetch_add(1, Relaxed);
        run.last_open_ns.fetch_max(run.since_epoch(opened_at), Relaxed);
        let elapsed = opened_at.saturating_duration_since(self.requested).as_micros() as u64;
        let count = (run.pipeline as u64).min(self.quota) as usize;
        run.local(|l| {
            let _ = l.handshake.record(elapsed.max(1));
            if self.done(now) {
                return;
            }
            match run.pace {
                None => {
                    if ctx.send_raw(&run.burst[..count * run.frame.len()]).is_ok() {
                        for _ in 0..count {
                            self.ring.push_back(now);
                        }
                    }
                    let sent = self.ring.len() as u64;
                    self.quota -= sent;
                    l.counts.sent += sent;
                }
                Some(interval) => self.send_paced(ctx, l, interval, now),
            }
            l.shard.publish(&l.counts);
        });
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let now = ticks::now();
        let run = &*self.run;
        let bytes = message.as_bytes().len();
        let well_formed = bytes == run.size && message.is_text() == run.text;
        let sent_at = self.ring.pop_front();
        let done = self.done(now);
        let closing = self.closing;
        let ring = &mut self.ring;
        let quota = &mut self.quota;
        run.local(|l| {
            let counts = &mut l.counts;
            counts.received += 1;
            if !well_formed {
                counts.mismatched += 1;
            }
            match sent_at {
                Some(at) => {
                    if now >= run.measure_from && !matches!(run.deadline, Some(d) if now > d) {
                        counts.measured += 1;
                        counts.measured_bytes += bytes as u64;
                        let _ = l.latency.record(now.saturating_sub(at));
                    }
                }
                None => counts.unexpected += 1,
            }
            if l.counts.received % PUBLISH_EVERY == 0 {
                l.shard.publish(&l.counts);
            }
            if done || closing || run.pace.is_some() {
                return;
            }
            if ctx.send_raw(&run.frame).is_ok() {
                ring.push_back(now);
                *quota -= 1;
                l.counts.sent += 1;
            }
        });
        if let Some(interval) = self.run.pace {
            let run = self.run.clone();
            run.local(|l| self.send_paced(ctx, l, interval, now));
        }
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    /// The reserved `--rate` slot has come: send, then keep the pipeline full within the budget.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let now = ticks::now();
        self.waiting_for_slot = false;
        let Some(interval) = self.run.pace else { return };
        let run = self.run.clone();
        run.local(|l| {
            if !self.closing && !self.done(now) && self.ring.len() < run.pipeline {
                self.send_one(ctx, l, now);
            }
            self.send_paced(ctx, l, interval, now);
        });
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: CloseCode, _reason: &str) {
        let run = &*self.run;
        if !self.ring.is_empty() {
            run.unanswered.fetch_add(self.ring.len() as u64, Relaxed);
        }
        *lock(&run.closes).entry(code.0).or_default() += 1;
        run.flush_local();
        run.closed.fetch_add(1, Relaxed);
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        let kind = match error {
            ConnectError::Io(_) => "tcp",
            ConnectError::Handshake(_) => "handshake",
            ConnectError::Timeout => "timeout",
            ConnectError::ClosedDuringHandshake => "closed_during_handshake",
            ConnectError::Refused => "refused",
            _ => "other",
        };
        log::debug!("bench: connection failed: {error}");
        let run = &*self.run;
        let first = {
            let mut errors = lock(&run.connect_errors);
            let count = errors.entry(kind).or_default();
            *count += 1;
            *count == 1
        };
        if first {
            log::warn!("bench: a connection failed ({kind}): {error}");
        }
        run.failed.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{new_histogram, Counts};
    use super::*;

    #[test]
    fn pacing_spaces_sends() {
        let mut local = Local {
            shard: Arc::default(),
            counts: Counts::default(),
            latency: new_histogram(),
            handshake: new_histogram(),
            next_send: None,
        };
        let clock = Clock::calibrate();
        let t0 = ticks::now();
        let interval = clock.ticks(Duration::from_millis(2));
        // Slots are spaced by the interval, whoever asks and whenever.
        let a = reserve_slot(&mut local, &clock, interval, t0);
        let b = reserve_slot(&mut local, &clock, interval, t0);
        let c = reserve_slot(&mut local, &clock, interval, t0);
        assert_eq!((a, b - a, c - b), (t0, interval, interval));
        // After a long idle spell, at most 5 ms of unused budget is banked: no burst of old slots.
        let later = t0 + clock.ticks(Duration::from_secs(1));
        let d = reserve_slot(&mut local, &clock, interval, later);
        assert!(d >= later - clock.ticks(Duration::from_millis(5)) && d <= later, "{d} vs {later}");
    }
}

//! Time in the protocol core: which deadline a connection waits for next, and what is due when it passes.
//!
//! Owns: the keepalive ping, the pong deadline, the idle timeout, the close-handshake timeout and the
//! linger bound (how long the transport may stay open once the close handshake is over). Never touches:
//! clocks or timers. The caller passes `now` in ([`Connection::received_at`](super::Connection::received_at),
//! [`Connection::close`](super::Connection::close), [`Connection::handle_timeout`](super::Connection::handle_timeout))
//! and asks [`Connection::poll_timeout`](super::Connection::poll_timeout) when to come back.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What [`Connection::handle_timeout`](super::Connection::handle_timeout) found due and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// Nothing arrived for `ping_interval`: a keepalive ping was written; the pong deadline runs.
    Ping,
    /// Nothing arrived for `idle_timeout`: a close frame (1001, "idle timeout") was written and the close
    /// handshake runs (bounded by `close_timeout`).
    Idle,
    /// Nothing arrived within `pong_timeout` of our keepalive ping: a close frame (1001, "pong timeout")
    /// was written if one still could be. Write it out, then close the transport (the peer is not
    /// waited for).
    Pong,
    /// The peer did not answer our close frame within `close_timeout`: close the transport.
    Close,
    /// The close handshake is over (or the connection failed) but the transport is still open after
    /// `close_timeout` (a client waits for the server to close TCP first; a server waits for its last
    /// bytes to be taken): close it now.
    Linger,
}

/// What an open connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Traffic: the idle timeout and the keepalive ping count from the last arrival.
    Traffic,
    /// Anything at all after our keepalive ping (a pong or any other bytes prove the peer alive).
    Pong,
    /// The peer's close frame, after ours.
    CloseReply,
    /// The transport to close, after the close handshake or a failure.
    Linger,
    /// Nothing more: a deadline passed and the transport must close.
    Done,
}

/// The timeouts a connection enforces (part of [`ConnectionConfig`](super::ConnectionConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub close_timeout: Duration,
}

/// The clock state of one connection: when bytes last arrived and since when it waits for what its
/// [`Wait`] (kept by the caller, to pack it with other small fields) says. 16 bytes: the two instants
/// are kept as [`Stamp`]s (an `Instant` is 16 bytes on Linux, and every open connection has a clock).
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// The last time bytes arrived (or the connection opened).
    last_rx: Stamp,
    /// When the current wait began (meaningful unless the wait is `Traffic` or `Done`).
    since: Stamp,
}

/// The process-wide reference instant of [`Stamp`]s: the first instant any caller passed in (nothing
/// here reads a clock).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// An [`Instant`] in 8 bytes: signed nanoseconds from [`EPOCH`]. Exact both ways for every instant within
/// ±292 years of the epoch (further ones saturate, which no caller's `now` reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(i64);

impl Stamp {
    fn of(t: Instant) -> Self {
        let epoch = *EPOCH.get_or_init(|| t);
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match t.checked_duration_since(epoch) {
            Some(d) => Self(nanos(d)),
            None => Self(-nanos(epoch.duration_since(t))),
        }
    }

    fn instant(self) -> Instant {
        // Set by the `of` that made this stamp.
        let epoch = *EPOCH.get_or_init(Instant::now);
        let d = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            epoch + d
        } else {
            epoch - d
        }
    }
}

/// `at + after`, or `None` (never) when the clock cannot represent it.
fn after(at: Instant, after: Duration) -> Option<Instant> {
    at.checked_add(after)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Clock {
    pub(super) fn new(now: Instant) -> Self {
        let now = Stamp::of(now);
        Self { last_rx: now, since: now }
    }

    /// The last time bytes arrived.
    pub(super) fn last_rx(&self) -> Instant {
        self.last_rx.instant()
    }

    /// Bytes arrived at `now`: the idle and keepalive clocks restart, a pong wait ends.
    pub(super) fn received(&mut self, wait: &mut Wait, now: Instant) {
        self.last_rx = Stamp::of(now);
        if *wait == Wait::Pong {
            *wait = Wait::Traffic;
        }
    }

    /// The transport took bytes queued before our ping at `now`: the peer is reading, and our ping may
    /// still sit behind that backlog, so a pong wait counts from now.
    pub(super) fn sent_backlog(&mut self, wait: Wait, now: Instant) {
        if wait == Wait::Pong {
            self.since = self.since.max(Stamp::of(now));
        }
    }

    /// Starts waiting for `wait` at `now`.
    pub(super) fn begin(&mut self, wait: &mut Wait, new: Wait, now: Instant) {
        *wait = new;
        self.since = Stamp::of(now);
    }

    /// The close handshake ended or the connection failed, as bytes that arrived last were read: the
    /// linger bound starts then (unless a deadline already passed).
    pub(super) fn closing_done(&mut self, wait: &mut Wait) {
        if !matches!(*wait, Wait::Linger | Wait::Done) {
            *wait = Wait::Linger;
            self.since = self.last_rx;
        }
    }

    fn idle_due(&self, limits: &Limits) -> Option<Instant> {
        limits.idle_timeout.and_then(|idle| after(self.last_rx.instant(), idle))
    }

    /// The next deadline, if any.
    pub(super) fn next(&self, wait: Wait, limits: &Limits) -> Option<Instant> {
        match wait {
            Wait::Traffic => {
                earliest(self.idle_due(limits), limits.ping_interval.and_then(|i| after(self.last_rx.instant(), i)))
            }
            Wait::Pong => earliest(self.idle_due(limits), after(self.since.instant(), limits.pong_timeout)),
            Wait::CloseReply | Wait::Linger => after(self.since.instant(), limits.close_timeout),
            Wait::Done => None,
        }
    }

    /// Which deadline is due at `now`, if any (the pong deadline before the idle timeout before the ping).
    pub(super) fn due(&self, wait: Wait, limits: &Limits, now: Instant) -> Option<Timeout> {
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        match wait {
            Wait::Traffic | Wait::Pong => {
                if wait == Wait::Pong && passed(after(self.since.instant(), limits.pong_timeout)) {
                    Some(Timeout::Pong)
                } else if passed(self.idle_due(limits)) {
                    Some(Timeout::Idle)
                } else if wait == Wait::Traffic
                    && passed(limits.ping_interval.and_then(|i| after(self.last_rx.instant(), i)))
                {
                    Some(Timeout::Ping)
                } else {
                    None
                }
            }
            Wait::CloseReply => passed(after(self.since.instant(), limits.close_timeout)).then_some(Timeout::Close),
            Wait::Linger => passed(after(self.since.instant(), limits.close_timeout)).then_some(Timeout::Linger),
            Wait::Done => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> Limits {
        Limits {
            ping_interval: Some(100 * MS),
            pong_timeout: 50 * MS,
            idle_timeout: Some(300 * MS),
            close_timeout: 20 * MS,
        }
    }

    #[test]
    fn traffic_moves_the_ping_and_idle_deadlines_later() {
        let t0 = Instant::now();
        let (mut clock, mut wait) = (Clock::new(t0), Wait::Traffic);
        assert_eq!(clock.next(wait, &limits()), Some(t0 + 100 * MS));
        clock.received(&mut wait, t0 + 60 * MS);
        assert_eq!(clock.next(wait, &limits()), Some(t0 + 160 * MS));
        assert_eq!(clock.due(wait, &limits(), t0 + 159 * MS), None);
        assert_eq!(clock.due(wait, &limits(), t0 + 160 * MS), Some(Timeout::Ping));
    }

    #[test]
    fn the_pong_deadline_wins_over_the_idle_timeout() {
        let t0 = Instant::now();
        let (mut clock, mut wait) = (Clock::new(t0), Wait::Traffic);
        clock.begin(&mut wait, Wait::Pong, t0 + 290 * MS);
        // Both passed at 400 ms: the pong deadline is reported.
        assert_eq!(clock.due(wait, &limits(), t0 + 400 * MS), Some(Timeout::Pong));
        // At 300 ms only the idle timeout passed.
        assert_eq!(clock.due(wait, &limits(), t0 + 300 * MS), Some(Timeout::Idle));
    }

    #[test]
    fn any_arrival_ends_a_pong_wait_and_nothing_is_due_after_done() {
        let t0 = Instant::now();
        let (mut clock, mut wait) = (Clock::new(t0), Wait::Traffic);
        clock.begin(&mut wait, Wait::Pong, t0);
        clock.received(&mut wait, t0 + 10 * MS);
        assert_eq!(wait, Wait::Traffic);
        clock.begin(&mut wait, Wait::Done, t0);
        assert_eq!(clock.next(wait, &limits()), None);
        assert_eq!(clock.due(wait, &limits(), t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_draining_backlog_restarts_the_pong_wait_but_not_the_idle_clock() {
        let t0 = Instant::now();
        let (mut clock, mut wait) = (Clock::new(t0), Wait::Traffic);
        clock.begin(&mut wait, Wait::Pong, t0);
        clock.sent_backlog(wait, t0 + 40 * MS);
        assert_eq!(clock.due(wait, &limits(), t0 + 60 * MS), None, "the ping left at 40 ms at the earliest");
        assert_eq!(clock.due(wait, &limits(), t0 + 90 * MS), Some(Timeout::Pong));
        assert_eq!(clock.last_rx(), t0, "sending is not receiving");
        // Without a pong wait nothing changes.
        let (mut other, w) = (Clock::new(t0), Wait::Traffic);
        other.sent_backlog(w, t0 + 40 * MS);
        assert_eq!(other.next(w, &limits()), Some(t0 + 100 * MS));
    }

    #[test]
    fn a_deadline_beyond_the_clock_is_never() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        let huge = Limits { ping_interval: Some(Duration::MAX), idle_timeout: Some(Duration::MAX), ..limits() };
        assert_eq!(clock.next(Wait::Traffic, &huge), None);
        assert_eq!(clock.due(Wait::Traffic, &huge, t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn stamps_round_trip_exactly_before_and_after_the_epoch() {
        let t0 = Instant::now();
        let _ = Stamp::of(t0);
        for t in [t0, t0 + MS, t0 + Duration::from_nanos(1), t0 + Duration::from_secs(86_400 * 365)] {
            assert_eq!(Stamp::of(t).instant(), t);
        }
        let epoch = *EPOCH.get().unwrap();
        for back in [Duration::from_nanos(1), MS, Duration::from_secs(5)] {
            if let Some(t) = epoch.checked_sub(back) {
                assert_eq!(Stamp::of(t).instant(), t, "{back:?} before the epoch");
                assert!(Stamp::of(t) < Stamp::of(epoch));
            }
        }
        assert!(Stamp::of(t0 + MS) > Stamp::of(t0), "order is the instants' order");
        assert_eq!(std::mem::size_of::<Clock>(), 16);
    }

    #[test]
    fn linger_starts_at_the_last_arrival_once() {
        let t0 = Instant::now();
        let (mut clock, mut wait) = (Clock::new(t0), Wait::Traffic);
        clock.received(&mut wait, t0 + 5 * MS);
        clock.closing_done(&mut wait);
        assert_eq!(clock.next(wait, &limits()), Some(t0 + 25 * MS));
        clock.received(&mut wait, t0 + 10 * MS);
        clock.closing_done(&mut wait);
        assert_eq!(clock.next(wait, &limits()), Some(t0 + 25 * MS), "a second end does not restart it");
        assert_eq!(clock.due(wait, &limits(), t0 + 25 * MS), Some(Timeout::Linger));
    }
}

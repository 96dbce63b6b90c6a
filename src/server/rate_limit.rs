//! Rate limits: token buckets (sans-IO: every call takes the caller's `now`), their settings, and the
//! per-connection pair the reactor charges after each read.
//!
//! Owns: the arithmetic of a bucket (refill since the last call, charge, when it is paid back). Never
//! touches: sockets, clocks, the reactor (which decides what a bucket in debt means: pause or close).

use std::time::{Duration, Instant};

/// The slowest rate a bucket runs at (one token in 1,000 s).
const MIN_RATE: f64 = 1e-3;

/// The longest a bucket in debt says to wait (an absurd debt or rate cannot stall a connection longer).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A sustained rate with a burst allowance: `per_second` tokens return each second, and at most `burst`
/// are saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens returned per second; anything below 0.001 (or not a number) counts as 0.001.
    pub per_second: f64,
    /// Most tokens saved up (and the bucket's size when it starts); anything below 1 counts as 1. A
    /// connection paused for a debt waits at most an hour, whatever the numbers.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` tokens a second with a burst of one second's worth (at least one token).
    pub fn per_second(per_second: f64) -> Self {
        Self { per_second, burst: per_second.max(1.0) }
    }
}

/// What a connection does when one of its buckets runs into debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitPolicy {
    /// Stop reading the socket until the tokens are back (TCP backpressure on the peer; nothing is
    /// dropped), counted in `rate_limit_pauses`. The default.
    #[default]
    Pause,
    /// Close the connection with 1008 (policy violation), counted in `rate_limit_closes`.
    Close,
}

/// A token bucket that may go into debt: a charge always succeeds, and a bucket below zero says when it
/// is paid back. The caller passes the time; the bucket never reads a clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A rate below one token in 1,000 s (or not a number) counts as that.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        let per_second = if limit.per_second >= MIN_RATE { limit.per_second } else { MIN_RATE };
        let burst = if limit.burst >= 1.0 { limit.burst } else { 1.0 };
        let limit = RateLimit { per_second, burst };
        Self { limit, tokens: limit.burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        if now <= self.last {
            // Charges within one loop turn share its `now`: nothing to add after the first.
            return;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
    }

    /// Takes `n` tokens at `now` (into debt if there are not enough). Returns whether the bucket is in
    /// debt afterwards.
    pub(crate) fn charge(&mut self, now: Instant, n: f64) -> bool {
        self.refill(now);
        self.tokens -= n;
        self.tokens < 0.0
    }

    /// Takes one token if there is one at `now`; otherwise takes nothing. Returns whether it took one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the bucket is out of debt (`None` when it is not in debt at its last update), at most
    /// [`MAX_WAIT`] away.
    pub(crate) fn paid_back_at(&self) -> Option<Instant> {
        (self.tokens < 0.0).then(|| {
            let wait = Duration::from_secs_f64((-self.tokens / self.limit.per_second).min(MAX_WAIT.as_secs_f64()));
            self.last.checked_add(wait).unwrap_or(self.last)
        })
    }

    /// Whether the bucket would be full at `now` (nothing to remember about its owner).
    pub(crate) fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= self.limit.burst
    }
}

/// How much one read may dispatch ([`ConnRate::budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Stop after this many events.
    pub(crate) events: u32,
    /// Stop once more bytes than this were consumed.
    pub(crate) bytes: usize,
}

/// One connection's buckets (messages and bytes), in the open connection's boxed extras only when a
/// limit is set, so a server without rate limits pays one `None` check per read and no memory.
#[derive(Debug, Clone)]
pub(crate) struct ConnRate {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// Reading is paused until then (policy `Pause`).
    pub(crate) paused_until: Option<Instant>,
}

impl ConnRate {
    /// The buckets for the limits set, full at `now`; `None` when neither is set.
    pub(crate) fn new(messages: Option<RateLimit>, bytes: Option<RateLimit>, now: Instant) -> Option<Self> {
        if messages.is_none() && bytes.is_none() {
            return None;
        }
        Some(Self {
            messages: messages.map(|l| TokenBucket::new(l, now)),
            bytes: bytes.map(|l| TokenBucket::new(l, now)),
            paused_until: None,
        })
    }

    /// What one read may dispatch at `now` before a bucket goes into debt, counted as the caller goes:
    /// stop after the event that makes `events` (the one that goes into debt is the last), or once more
    /// than `bytes` were consumed. Refills the buckets (a [`ConnRate::charge`] at the same `now` does not
    /// refill again). Without a limit, its figure is the type's maximum.
    pub(crate) fn budget(&mut self, now: Instant) -> Budget {
        let mut budget = Budget { events: u32::MAX, bytes: usize::MAX };
        if let Some(bucket) = &mut self.messages {
            bucket.refill(now);
            // Saturating float-to-int casts: a debt is 0, a huge burst the maximum.
            budget.events = (bucket.tokens.floor() as u32).saturating_add(1);
        }
        if let Some(bucket) = &mut self.bytes {
            bucket.refill(now);
            budget.bytes = bucket.tokens.floor() as usize;
        }
        budget
    }

    /// Charges `messages` frames and `bytes` bytes at `now`. Returns when the later of the two buckets
    /// is paid back if either is in debt, `None` if both are within their limits.
    pub(crate) fn charge(&mut self, now: Instant, messages: u32, bytes: usize) -> Option<Instant> {
        let mut until = None;
        for (bucket, n) in [(&mut self.messages, f64::from(messages)), (&mut self.bytes, bytes as f64)] {
            if let Some(bucket) = bucket {
                if n > 0.0 && bucket.charge(now, n) {
                    until = until.max(bucket.paid_back_at());
                }
            }
        }
        until
    }

    /// Lifts a pause that is over at `now`, and says so (once), so the caller reads the socket again.
    pub(crate) fn resume_due(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_goes_into_debt_and_is_paid_back_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit { per_second: 10.0, burst: 5.0 }, t0);
        for _ in 0..5 {
            assert!(!b.charge(t0, 1.0));
        }
        assert!(b.charge(t0, 1.0), "the sixth token in the same instant is debt");
        // One token of debt at 10/s: paid back 100 ms later.
        assert_eq!(b.paid_back_at(), Some(t0 + Duration::from_millis(100)));
        assert!(!b.charge(t0 + Duration::from_millis(200), 1.0), "200 ms refilled two tokens");
        assert!(!b.is_full_at(t0 + Duration::from_millis(200)));
        assert!(b.is_full_at(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn absurd_rates_and_debts_wait_at_most_an_hour() {
        let t0 = Instant::now();
        for per_second in [0.0, -5.0, f64::NAN, 1e-300] {
            let mut b = TokenBucket::new(RateLimit { per_second, burst: 0.0 }, t0);
            assert!(b.charge(t0, 1e300));
            assert_eq!(b.paid_back_at(), Some(t0 + MAX_WAIT), "rate {per_second}");
        }
    }

    #[test]
    fn a_budget_lets_the_burst_and_the_one_into_debt_through() {
        let t0 = Instant::now();
        let limit = |per_second, burst| Some(RateLimit { per_second, burst });
        let mut rate = ConnRate::new(limit(10.0, 5.0), limit(1000.0, 100.0), t0).unwrap();
        assert_eq!(rate.budget(t0), Budget { events: 6, bytes: 100 });
        // Charging what the budget allowed puts the bucket into debt: the caller pauses or closes.
        assert!(rate.charge(t0, 6, 10).is_some());
        assert_eq!(rate.budget(t0).events, 1, "in debt: still the one event that finds out");
        let only_bytes = ConnRate::new(None, limit(1000.0, 100.0), t0).unwrap().budget(t0);
        assert_eq!(only_bytes, Budget { events: u32::MAX, bytes: 100 });
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(rate.budget(t1).events, 5, "refilled 5 tokens from -1: 4 whole, and the one into debt");
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit { per_second: 100.0, burst: 3.0 }, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later) && b.try_take(later) && b.try_take(later));
        assert!(!b.try_take(later), "a minute idle saves up only the burst");
        assert_eq!(b.paid_back_at(), None, "try_take never goes into debt");
    }

    #[test]
    fn a_connection_pauses_until_the_slower_bucket_is_paid_back() {
        let t0 = Instant::now();
        let msgs = RateLimit { per_second: 10.0, burst: 1.0 };
        let bytes = RateLimit { per_second: 1000.0, burst: 1000.0 };
        assert!(ConnRate::new(None, None, t0).is_none());
        let mut r = ConnRate::new(Some(msgs), Some(bytes), t0).unwrap();
        assert_eq!(r.charge(t0, 1, 500), None);
        // Messages: 1 in debt (100 ms); bytes: 1,000 in debt (1 s): the later one wins.
        let until = r.charge(t0, 1, 1500).unwrap();
        assert_eq!(until, t0 + Duration::from_secs(1));
    }
}

//! Circuit breakers: stop hammering a host whose connections keep failing.
//!
//! Owns: counting consecutive connect/handshake failures per host, the closed → open → half-open →
//! closed cycle, and failing fast with [`Error::CircuitOpen`]. Never touches: sockets (the caller
//! connects; the breaker only decides whether it may, and hears how it went).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::error::{Error, Operation};
use super::url::WsUrl;

/// Circuit breaker settings. Every default is documented on its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerOptions {
    /// Consecutive failures that open the circuit. Default 5; 0 is treated as 1.
    pub failure_threshold: u32,
    /// How long an opened circuit fails fast before letting one trial through. Default 10 s.
    pub cooldown: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self { failure_threshold: 5, cooldown: Duration::from_secs(10) }
    }
}

impl BreakerOptions {
    /// Sets [`BreakerOptions::failure_threshold`].
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Sets [`BreakerOptions::cooldown`].
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// Where a circuit stands, as [`CircuitBreaker::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Attempts go through.
    Closed,
    /// Attempts fail fast until `until`; the first attempt at or after `until` becomes the trial (the
    /// state stays `Open` until someone asks).
    Open {
        /// The end of the cooldown.
        until: Instant,
    },
    /// The cooldown is over and one trial attempt is in progress; others fail fast.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `since`: the end of the cooldown that led here.
    HalfOpen {
        since: Instant,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    failures: u32,
    /// Bumped whenever the circuit opens: results of permits from an earlier epoch are ignored.
    epoch: u64,
}

/// The circuit breaker of one host: stops hammering a host whose connections keep failing.
/// `Send + Sync`; share it through an `Arc` (as [`BreakerRegistry`] does).
///
/// # States
/// - **Closed**: attempts go through. [`BreakerOptions::failure_threshold`] consecutive failures open
///   the circuit; a success resets the count.
/// - **Open** until `now + cooldown`: every attempt fails at once with [`Error::CircuitOpen`] (its
///   `retry_in` says how long is left).
/// - **Half-open**, once the cooldown is over: exactly one trial attempt is let through; concurrent
///   callers still get [`Error::CircuitOpen`] (with `retry_in` zero: the trial's outcome decides). The
///   trial's success closes the circuit, its failure opens it for another cooldown.
///
/// The core is sans-clock: [`CircuitBreaker::try_acquire`] and [`BreakerPermit::failure`] take `now`,
/// so tests drive time by hand. [`CircuitBreaker::call`] is the convenience wrapper that reads
/// [`Instant::now`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use wsloop::client::{BreakerOptions, BreakerState, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new("example.com:80", BreakerOptions::default().failure_threshold(2));
/// let t0 = Instant::now();
/// breaker.try_acquire(t0)?.failure(t0);
/// breaker.try_acquire(t0)?.failure(t0);
/// assert!(matches!(breaker.state(), BreakerState::Open { .. }));
/// assert!(breaker.try_acquire(t0).is_err());
/// let later = t0 + Duration::from_secs(10);
/// let trial = breaker.try_acquire(later)?;
/// assert!(trial.is_trial());
/// trial.success();
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// # Ok::<(), wsloop::client::Error>(())
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    host: String,
    options: BreakerOptions,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker for `host` (the name reported in [`Error::CircuitOpen`]).
    pub fn new(host: impl Into<String>, options: BreakerOptions) -> Self {
        Self { host: host.into(), options, inner: Mutex::new(Inner { phase: Phase::Closed, failures: 0, epoch: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `error`, returned by a connect attempt, counts against the host: failures to resolve, to
    /// connect, to complete the handshake (including a non-101 answer) and I/O errors do; errors in the
    /// request itself (an invalid URL, `wss://`, an extension this client cannot run) and a refusal by
    /// a breaker do not. A proxy's failure counts only when the proxy says the target failed
    /// ([`ProxyError::blames_target`](crate::client::ProxyError::blames_target)): an unreachable or
    /// misconfigured proxy is not the target's fault.
    pub fn counts_as_failure(error: &Error) -> bool {
        if let Error::Proxy { kind, .. } = error {
            return kind.blames_target();
        }
        !matches!(
            error,
            Error::InvalidUrl { .. }
                | Error::TlsUnsupported
                | Error::UnsupportedExtension { .. }
                | Error::Send(_)
                | Error::PoolExhausted
                | Error::PoolClosed
                | Error::CircuitOpen { .. }
                | Error::Timeout(Operation::Acquire | Operation::Read)
        )
    }

    /// The host this breaker guards.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The settings.
    pub fn options(&self) -> BreakerOptions {
        self.options
    }

    /// The current state (see [`BreakerState::Open`] for an expired cooldown).
    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } => BreakerState::Open { until },
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted so far in the closed state.
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().failures
    }

    /// Asks to make an attempt at `now`. `Ok`: go ahead, and report the outcome on the [`BreakerPermit`]
    /// (a permit dropped without a verdict counts as neither; a dropped trial lets the next caller
    /// try). `Err(`[`Error::CircuitOpen`]`)`: the circuit is open, or half-open with its trial in
    /// progress (then `retry_in` is zero).
    pub fn try_acquire(&self, now: Instant) -> Result<BreakerPermit<'_>, Error> {
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => Ok(BreakerPermit { breaker: self, epoch: inner.epoch, trial: false, settled: false }),
            Phase::Open { until } if now >= until => {
                inner.phase = Phase::HalfOpen { since: until };
                log::debug!("circuit breaker {}: half-open, letting one trial through", self.host);
                Ok(BreakerPermit { breaker: self, epoch: inner.epoch, trial: true, settled: false })
            }
            Phase::Open { until } => Err(self.open_error(until - now)),
            Phase::HalfOpen { .. } => Err(self.open_error(Duration::ZERO)),
        }
    }

    fn open_error(&self, retry_in: Duration) -> Error {
        Error::CircuitOpen { host: self.host.clone(), retry_in }
    }

    /// Runs `attempt` if the circuit allows it at [`Instant::now`], and records its outcome: an error
    /// for which [`CircuitBreaker::counts_as_failure`] holds is a failure, any other error no verdict,
    /// `Ok` a success.
    pub fn call<T>(&self, attempt: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let permit = self.try_acquire(Instant::now())?;
        let result = attempt();
        permit.record(&result, Instant::now());
        result
    }

    fn settle(&self, epoch: u64, trial: bool, failed_at: Option<Instant>) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return; // the circuit opened since this permit was given: its result is stale
        }
        match (inner.phase, trial, failed_at) {
            (Phase::HalfOpen { .. }, true, None) | (Phase::Closed, false, None) => {
                if !matches!(inner.phase, Phase::Closed) {
                    log::info!("circuit breaker {}: trial succeeded, circuit closed", self.host);
                }
                inner.phase = Phase::Closed;
                inner.failures = 0;
            }
            (Phase::HalfOpen { .. }, true, Some(now)) => {
                self.open(&mut inner, now);
            }
            (Phase::Closed, false, Some(now)) => {
                inner.failures = inner.failures.saturating_add(1);
                if inner.failures >= self.options.failure_threshold.max(1) {
                    self.open(&mut inner, now);
                }
            }
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        let until = now.checked_add(self.options.cooldown).unwrap_or(now);
        log::info!(
            "circuit breaker {}: open for {:?} after {} consecutive failure(s)",
            self.host,
            self.options.cooldown,
            inner.failures.max(1)
        );
        inner.phase = Phase::Open { until };
        inner.epoch = inner.epoch.wrapping_add(1);
    }

    fn abandon_trial(&self, epoch: u64) {
        let mut inner = self.lock();
        if let (true, Phase::HalfOpen { since }) = (inner.epoch == epoch, inner.phase) {
            // Nobody is trying any more: the next caller may (the cooldown stays over).
            inner.phase = Phase::Open { until: since };
        }
    }

    /// Closes the circuit and forgets the failures (an operator's override).
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.phase = Phase::Closed;
        inner.failures = 0;
        inner.epoch = inner.epoch.wrapping_add(1);
    }
}

/// Leave to make one attempt, from [`CircuitBreaker::try_acquire`]. Report the outcome with
/// [`BreakerPermit::success`] or [`BreakerPermit::failure`] (or [`BreakerPermit::record`]).
#[derive(Debug)]
#[must_use = "report the attempt's outcome with success() or failure()"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    epoch: u64,
    trial: bool,
    settled: bool,
}

impl BreakerPermit<'_> {
    /// Whether this is the half-open circuit's single trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The attempt succeeded: the failure count is reset; a trial closes the circuit.
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(self.epoch, self.trial, None);
    }

    /// The attempt failed at `now`: counted; the threshold-th consecutive failure, or a failed trial,
    /// opens the circuit until `now + cooldown`.
    pub fn failure(mut self, now: Instant) {
        self.settled = true;
        self.breaker.settle(self.epoch, self.trial, Some(now));
    }

    /// Reports `result` at `now`: `Ok` is a success, an error a failure when
    /// [`CircuitBreaker::counts_as_failure`] holds, otherwise no verdict (as if the permit were dropped).
    pub fn record<T>(self, result: &Result<T, Error>, now: Instant) {
        match result {
            Ok(_) => self.success(),
            Err(e) if CircuitBreaker::counts_as_failure(e) => self.failure(now),
            Err(_) => drop(self),
        }
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            self.breaker.abandon_trial(self.epoch);
        }
    }
}

/// Circuit breakers by host (`host:port`), made on first use with the registry's options. Cloning
/// gives another handle to the same breakers; `Send + Sync`.
///
/// The map grows with the hosts seen; [`BreakerRegistry::remove`] forgets one.
#[derive(Debug, Clone, Default)]
pub struct BreakerRegistry {
    options: BreakerOptions,
    breakers: Arc<Mutex<HashMap<String, Arc<CircuitBreaker>>>>,
}

impl BreakerRegistry {
    /// An empty registry whose breakers use `options`.
    pub fn new(options: BreakerOptions) -> Self {
        Self { options, breakers: Arc::default() }
    }

    /// The options new breakers get.
    pub fn options(&self) -> BreakerOptions {
        self.options
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<CircuitBreaker>>> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker of `host` (any key; the pool uses `host:port`), made if there is none yet.
    pub fn get(&self, host: &str) -> Arc<CircuitBreaker> {
        let mut map = self.lock();
        if let Some(b) = map.get(host) {
            return b.clone();
        }
        let b = Arc::new(CircuitBreaker::new(host, self.options));
        map.insert(host.to_owned(), b.clone());
        b
    }

    /// The key of `url`'s host: `host:port` (IPv6 literals in brackets).
    pub fn key(url: &WsUrl) -> String {
        format!("{}:{}", url.host(), url.port())
    }

    /// The breaker of `url`'s host ([`BreakerRegistry::key`]).
    pub fn for_url(&self, url: &WsUrl) -> Arc<CircuitBreaker> {
        self.get(&Self::key(url))
    }

    /// The state of `host`'s breaker, if it has one.
    pub fn state(&self, host: &str) -> Option<BreakerState> {
        self.lock().get(host).map(|b| b.state())
    }

    /// Forgets `host`'s breaker (its next use starts closed).
    pub fn remove(&self, host: &str) -> Option<Arc<CircuitBreaker>> {
        self.lock().remove(host)
    }

    /// [`CircuitBreaker::call`] on `host`'s breaker.
    pub fn call<T>(&self, host: &str, attempt: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.get(host).call(attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::Barrier;
    use std::thread;

    const COOLDOWN: Duration = Duration::from_secs(10);

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new("h:1", BreakerOptions::default().failure_threshold(threshold).cooldown(COOLDOWN))
    }

    fn refused() -> Error {
        Error::Io(io::ErrorKind::ConnectionRefused.into())
    }

    #[test]
    fn only_proxy_errors_that_blame_the_target_count_against_it() {
        use crate::client::ProxyError;
        let proxy = |kind| Error::Proxy { proxy: "http://127.0.0.1:3128".into(), kind };
        let rejected = |status| ProxyError::Rejected { status, reason: String::new() };
        for kind in [rejected(502), rejected(503), rejected(504), ProxyError::Socks5Failure { code: 4 }] {
            assert!(CircuitBreaker::counts_as_failure(&proxy(kind)));
        }
        let proxys_own = [
            ProxyError::Connect(io::ErrorKind::ConnectionRefused.into()),
            ProxyError::Timeout,
            ProxyError::Closed,
            rejected(403),
            rejected(407),
            ProxyError::Socks5Failure { code: 2 },
            ProxyError::AuthFailed,
            ProxyError::Malformed("x".into()),
        ];
        for kind in proxys_own {
            assert!(!CircuitBreaker::counts_as_failure(&proxy(kind)));
        }
        // Through a breaker: a dead proxy leaves the target's circuit closed.
        let b = breaker(2);
        for _ in 0..5 {
            let permit = b.try_acquire(Instant::now()).unwrap();
            permit.record::<()>(
                &Err(proxy(ProxyError::Connect(io::ErrorKind::ConnectionRefused.into()))),
                Instant::now(),
            );
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn defaults_are_documented_values() {
        let o = BreakerOptions::default();
        assert_eq!((o.failure_threshold, o.cooldown), (5, Duration::from_secs(10)));
    }

    #[test]
    fn closed_open_half_open_closed() {
        let b = breaker(3);
        let t0 = Instant::now();
        for i in 0..2 {
            b.try_acquire(t0).unwrap().failure(t0);
            assert_eq!(b.state(), BreakerState::Closed, "after {} failures", i + 1);
        }
        assert_eq!(b.consecutive_failures(), 2);
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(b.state(), BreakerState::Open { until: t0 + COOLDOWN });
        // Fails fast during the cooldown, saying how long is left.
        let t1 = t0 + Duration::from_secs(4);
        match b.try_acquire(t1) {
            Err(Error::CircuitOpen { host, retry_in }) => {
                assert_eq!(host, "h:1");
                assert_eq!(retry_in, Duration::from_secs(6));
            }
            other => panic!("expected CircuitOpen, got {other:?}"),
        }
        // After the cooldown: one trial.
        let t2 = t0 + COOLDOWN;
        let trial = b.try_acquire(t2).unwrap();
        assert!(trial.is_trial());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(matches!(b.try_acquire(t2), Err(Error::CircuitOpen { retry_in: Duration::ZERO, .. })));
        trial.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert!(!b.try_acquire(t2).unwrap().is_trial());
    }

    #[test]
    fn failed_trial_reopens_for_another_cooldown() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        let t1 = t0 + COOLDOWN + Duration::from_secs(1);
        b.try_acquire(t1).unwrap().failure(t1);
        assert_eq!(b.state(), BreakerState::Open { until: t1 + COOLDOWN });
        assert!(b.try_acquire(t1 + COOLDOWN - Duration::from_millis(1)).is_err());
        assert!(b.try_acquire(t1 + COOLDOWN).unwrap().is_trial());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(3);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().success();
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stale_results_and_abandoned_trials() {
        let b = breaker(1);
        let t0 = Instant::now();
        let early = b.try_acquire(t0).unwrap();
        b.try_acquire(t0).unwrap().failure(t0);
        // A success from before the circuit opened does not close it.
        early.success();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        // A trial dropped without a verdict lets the next caller try.
        let t1 = t0 + COOLDOWN;
        drop(b.try_acquire(t1).unwrap());
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        let trial = b.try_acquire(t1).unwrap();
        assert!(trial.is_trial());
        // Errors that say nothing about the host give no verdict.
        trial.record::<()>(&Err(Error::TlsUnsupported), t1);
        b.try_acquire(t1).unwrap().record::<()>(&Err(refused()), t1);
        assert_eq!(b.state(), BreakerState::Open { until: t1 + COOLDOWN });
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn call_classifies_outcomes() {
        let b = CircuitBreaker::new("h", BreakerOptions::default().failure_threshold(2));
        assert_eq!(b.call(|| Ok(7)).unwrap(), 7);
        assert!(b.call::<()>(|| Err(Error::PoolClosed)).is_err());
        assert_eq!(b.consecutive_failures(), 0);
        let _ = b.call::<()>(|| Err(refused()));
        let _ = b.call::<()>(|| Err(Error::Timeout(Operation::Connect)));
        let mut ran = false;
        let r = b.call(|| {
            ran = true;
            Ok(())
        });
        assert!(!ran, "an open circuit must not run the attempt");
        assert!(matches!(r, Err(Error::CircuitOpen { .. })));
    }

    #[test]
    fn only_one_trial_under_concurrency() {
        let b = Arc::new(breaker(1));
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        let t1 = t0 + COOLDOWN;
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let (trials, refusals): (Vec<bool>, Vec<bool>) = (0..threads)
            .map(|_| {
                let (b, barrier) = (b.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    match b.try_acquire(t1) {
                        Ok(permit) => {
                            assert!(permit.is_trial());
                            // Hold the trial until everybody has asked.
                            barrier.wait();
                            permit.success();
                            (true, false)
                        }
                        Err(Error::CircuitOpen { .. }) => {
                            barrier.wait();
                            (false, true)
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .unzip();
        assert_eq!(trials.iter().filter(|t| **t).count(), 1);
        assert_eq!(refusals.iter().filter(|r| **r).count(), threads - 1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn registry_shares_breakers_by_host() {
        let reg = BreakerRegistry::new(BreakerOptions::default().failure_threshold(1));
        let url = WsUrl::parse("ws://[::1]:9001/x").unwrap();
        assert_eq!(BreakerRegistry::key(&url), "[::1]:9001");
        let a = reg.for_url(&url);
        let clone = reg.clone();
        assert!(Arc::ptr_eq(&a, &clone.get("[::1]:9001")));
        let now = Instant::now();
        a.try_acquire(now).unwrap().failure(now);
        assert!(matches!(reg.state("[::1]:9001"), Some(BreakerState::Open { .. })));
        assert_eq!(reg.state("other:1"), None);
        assert!(reg.remove("[::1]:9001").is_some());
        assert_eq!(reg.get("[::1]:9001").state(), BreakerState::Closed);
        fn send_sync<T: Send + Sync>() {}
        send_sync::<BreakerRegistry>();
        send_sync::<CircuitBreaker>();
    }
}

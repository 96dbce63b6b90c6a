//! A client that reconnects by itself when its connection is lost.
//!
//! Owns: telling a lost connection from an ended one, the reconnect loop (exponential backoff with
//! full jitter, bounded by a budget), the listener callbacks, and retrying the send that found the
//! connection dead. Never touches: the protocol (a [`Client`] does it).

use std::collections::VecDeque;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use crate::proto::CloseCode;

use super::blocking::{connect, Client, ClientOptions, CloseInfo, Message};
use super::error::{Error, Operation};

/// Exponential backoff with full jitter: attempt `n` (from 1) waits a uniformly random time in
/// `[0, min(max, initial × factor^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first attempt's delay.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// How much the ceiling grows per attempt (values below 1 are treated as 1).
    pub factor: f64,
}

impl Default for Backoff {
    /// 100 ms, growing ×2 up to 10 s.
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(10), factor: 2.0 }
    }
}

impl Backoff {
    /// The longest delay of attempt `attempt` (1 is the first; 0 is treated as 1):
    /// `min(max, initial × factor^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
        let factor = if self.factor.is_finite() { self.factor.max(1.0) } else { 1.0 };
        let secs = self.initial.as_secs_f64() * factor.powi(exponent);
        Duration::try_from_secs_f64(secs).map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before attempt `attempt` given `rng_value`, a uniform random number in `[0, 1]`
    /// (clamped; NaN counts as 0): `ceiling(attempt) × rng_value` (full jitter). Pure.
    pub fn delay(&self, attempt: u32, rng_value: f64) -> Duration {
        let r = if rng_value.is_nan() { 0.0 } else { rng_value.clamp(0.0, 1.0) };
        let ceiling = self.ceiling(attempt);
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * r).map_or(ceiling, |d| d.min(ceiling))
    }
}

/// How a [`ReconnectingClient`] reconnects. Every default is documented on its field.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The ceiling of the first delay. Default 100 ms.
    pub initial_backoff: Duration,
    /// The largest delay. Default 10 s.
    pub max_backoff: Duration,
    /// Growth of the delay's ceiling per attempt. Default 2.
    pub backoff_factor: f64,
    /// Give up after this many failed attempts in a row. Default `Some(10)`; `None`: no limit (set
    /// `max_elapsed` then, or it retries forever).
    pub max_attempts: Option<u32>,
    /// Give up when the next attempt would start later than this after the connection was lost.
    /// Default `None`.
    pub max_elapsed: Option<Duration>,
    /// Also reconnect when the peer closes with 1000 (normal closure). Default false: the peer ended
    /// the session on purpose.
    pub reconnect_on_normal_close: bool,
    /// Before each send, look at the socket without blocking ([`Client::check_health`]) and parse what
    /// arrived, so that a connection the server already closed is replaced *before* the message is
    /// written into it (where it would be lost without an error). Messages found this way are kept
    /// for [`ReconnectingClient::read_message`]. Costs a few system calls per send. Default true.
    pub check_before_send: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        let backoff = Backoff::default();
        Self {
            initial_backoff: backoff.initial,
            max_backoff: backoff.max,
            backoff_factor: backoff.factor,
            max_attempts: Some(10),
            max_elapsed: None,
            reconnect_on_normal_close: false,
            check_before_send: true,
        }
    }
}

impl ReconnectPolicy {
    /// The policy's [`Backoff`].
    pub fn backoff(&self) -> Backoff {
        Backoff { initial: self.initial_backoff, max: self.max_backoff, factor: self.backoff_factor }
    }

    /// Sets [`ReconnectPolicy::initial_backoff`] and [`ReconnectPolicy::max_backoff`].
    pub fn backoff_range(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets [`ReconnectPolicy::backoff_factor`].
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// Sets [`ReconnectPolicy::max_attempts`].
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`ReconnectPolicy::max_elapsed`].
    pub fn max_elapsed(mut self, elapsed: Option<Duration>) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// Sets [`ReconnectPolicy::reconnect_on_normal_close`].
    pub fn reconnect_on_normal_close(mut self, on: bool) -> Self {
        self.reconnect_on_normal_close = on;
        self
    }

    /// Sets [`ReconnectPolicy::check_before_send`].
    pub fn check_before_send(mut self, on: bool) -> Self {
        self.check_before_send = on;
        self
    }
}

/// Hears what a [`ReconnectingClient`] does; every method has an empty default. Called on the thread
/// using the client, inside the call that found the connection lost.
pub trait ReconnectListener: Send {
    /// The connection was lost with `error`; reconnecting starts.
    fn on_disconnected(&mut self, error: &Error) {
        let _ = error;
    }

    /// Attempt `attempt` (from 1) starts after sleeping `delay`.
    fn on_reconnecting(&mut self, attempt: u32, delay: Duration) {
        let _ = (attempt, delay);
    }

    /// Attempt `attempt` connected.
    fn on_reconnected(&mut self, attempt: u32) {
        let _ = attempt;
    }

    /// The budget is spent (or the error cannot be fixed by retrying); `last_error` is returned to the
    /// caller too.
    fn on_give_up(&mut self, last_error: &Error) {
        let _ = last_error;
    }
}

/// The listener that ignores everything.
impl ReconnectListener for () {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Connected, or lost and not yet noticed.
    Active,
    /// Ended by the user or by the peer's 1000: nothing reconnects.
    Ended,
    /// The reconnect budget ran out.
    GaveUp,
}

/// A blocking client ([`Client`]) that reconnects with backoff when its connection is lost.
///
/// # When it reconnects
/// On any failure that ends the connection, unless the user ended it: I/O errors, a TCP end without a
/// closing handshake (1006), protocol errors, write and pong timeouts, and closes **initiated by the
/// peer** with any code except 1000 — in particular 1001 "going away" from a server that shuts down or
/// restarts. A peer's 1000 close ends the session for good unless
/// [`ReconnectPolicy::reconnect_on_normal_close`] is set. A close made through
/// [`ReconnectingClient::close`] never reconnects. Read timeouts and refused sends keep the
/// connection and are returned as they are.
///
/// # What happens to a message being sent when the connection drops
/// A send that fails because the connection is gone is **retried once** on the new connection (after
/// the reconnect succeeded); if that also fails, its error is returned (the next call reconnects
/// again). A failed send never put a complete frame on the wire, so the retry does not duplicate a
/// message the server has processed. A connection the server had already closed before the send (a
/// close frame or TCP end waiting in the socket) is noticed and replaced *before* writing, thanks to
/// [`ReconnectPolicy::check_before_send`]. But a send that *succeeded* only means the bytes reached
/// the local socket: a message written just as the connection drops may be lost without an error,
/// and so may messages the server sent that were not read yet. Use application-level
/// acknowledgements if that matters.
///
/// # Budget
/// The loop gives up after [`ReconnectPolicy::max_attempts`] failed attempts or when the next attempt
/// would start after [`ReconnectPolicy::max_elapsed`] since the connection was lost, whichever comes
/// first, and returns the last connect error (the listener's [`ReconnectListener::on_give_up`] sees
/// it too). After giving up, every call fails with [`Error::Closed`] (1006, "gave up reconnecting").
/// Errors that no retry can fix (an invalid URL, `wss://`, an extension the client cannot run) give
/// up at once.
pub struct ReconnectingClient {
    url: String,
    options: ClientOptions,
    policy: ReconnectPolicy,
    listener: Box<dyn ReconnectListener>,
    client: Client,
    /// Messages parsed by the check before a send, not yet read.
    inbox: VecDeque<Message>,
    session: Session,
    reconnects: u64,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.url)
            .field("policy", &self.policy)
            .field("client", &self.client)
            .field("session", &self.session)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// Connects to `url` once (the first connect is not retried: its error is returned as is); later
    /// losses are handled by `policy`, and reported to `listener` (`()` for none).
    pub fn connect(
        url: &str,
        options: ClientOptions,
        policy: ReconnectPolicy,
        listener: impl ReconnectListener + 'static,
    ) -> Result<Self, Error> {
        let client = connect(url, options.clone())?;
        Ok(Self {
            url: url.to_owned(),
            options,
            policy,
            listener: Box::new(listener),
            client,
            inbox: VecDeque::new(),
            session: Session::Active,
            reconnects: 0,
        })
    }

    /// Sends a text message; a connection found lost is reconnected and the message sent once more.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_with(|c| c.send_text(text))
    }

    /// Sends a binary message; a connection found lost is reconnected and the message sent once more.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_with(|c| c.send_binary(data))
    }

    /// Waits for the next message ([`Client::read_message`]). A lost connection is reconnected and
    /// the wait goes on over the new one, within the same `timeout` (the reconnecting itself is not
    /// bounded by it, only by the policy's budget).
    pub fn read_message(&mut self, timeout: Option<Duration>) -> Result<Message, Error> {
        if let Some(message) = self.inbox.pop_front() {
            return Ok(message);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.usable()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.client.read_message(left) {
                Ok(message) => return Ok(message),
                Err(e) if !self.lost(&e) => return Err(e),
                Err(e) => self.reconnect(e)?,
            }
        }
    }

    /// Runs the closing handshake ([`Client::close_and_wait`] with `timeout`, `None`: the close
    /// timeout) and ends the session: nothing reconnects afterwards.
    pub fn close(&mut self, code: CloseCode, reason: &str, timeout: Option<Duration>) -> Result<CloseInfo, Error> {
        self.session = Session::Ended;
        self.client.close_and_wait(code, reason, timeout)
    }

    /// Whether the current connection is open and the session goes on (see [`Client::is_open`]).
    pub fn is_open(&self) -> bool {
        self.session == Session::Active && self.client.is_open()
    }

    /// Whether the client gave up reconnecting.
    pub fn gave_up(&self) -> bool {
        self.session == Session::GaveUp
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The URL connected to, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn usable(&self) -> Result<(), Error> {
        match self.session {
            Session::GaveUp => {
                Err(Error::Closed { code: Some(CloseCode::ABNORMAL), reason: "gave up reconnecting".to_owned() })
            }
            Session::Active | Session::Ended => Ok(()),
        }
    }

    fn send_with(&mut self, mut send: impl FnMut(&mut Client) -> Result<(), Error>) -> Result<(), Error> {
        self.usable()?;
        let first = match self.check_before_send() {
            Ok(()) => send(&mut self.client),
            Err(e) => Err(e),
        };
        match first {
            Err(e) if self.lost(&e) => {
                self.reconnect(e)?;
                send(&mut self.client)
            }
            result => result,
        }
    }

    /// See [`ReconnectPolicy::check_before_send`]: fails with the error that ended the connection.
    fn check_before_send(&mut self) -> Result<(), Error> {
        if !self.policy.check_before_send || self.session != Session::Active {
            return Ok(());
        }
        if !self.client.check_health() {
            let info = self.client.close_info();
            return Err(Error::Closed {
                code: info.as_ref().map_or(Some(CloseCode::ABNORMAL), |i| i.code),
                reason: info.map(|i| i.reason).unwrap_or_default(),
            });
        }
        while self.client.buffered_input() > 0 {
            match self.client.read_message(Some(Duration::ZERO)) {
                Ok(message) => self.inbox.push_back(message),
                Err(Error::Timeout(Operation::Read)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether `error` (from the current connection) means the connection was lost and should be
    /// re-established. A peer's 1000 close without `reconnect_on_normal_close` ends the session.
    fn lost(&mut self, error: &Error) -> bool {
        if self.session != Session::Active || error.keeps_connection() {
            return false;
        }
        if let Error::Closed { code: Some(CloseCode::NORMAL), .. } = error {
            if !self.policy.reconnect_on_normal_close {
                self.session = Session::Ended;
                return false;
            }
        }
        true
    }

    /// The reconnect loop. `Ok` when connected again, else the last error after giving up.
    fn reconnect(&mut self, cause: Error) -> Result<(), Error> {
        log::debug!("reconnecting client: connection to {} lost: {cause}", self.url);
        self.listener.on_disconnected(&cause);
        let started = Instant::now();
        let backoff = self.policy.backoff();
        let mut last = cause;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            if self.policy.max_attempts.is_some_and(|max| attempt > max) || unfixable(&last) {
                break;
            }
            let delay = backoff.delay(attempt, rand::random::<f64>());
            if self.policy.max_elapsed.is_some_and(|max| started.elapsed() + delay > max) {
                break;
            }
            self.listener.on_reconnecting(attempt, delay);
            thread::sleep(delay);
            match connect(&self.url, self.options.clone()) {
                Ok(client) => {
                    // The old client is dead; dropping it only releases the socket.
                    self.client = client;
                    self.reconnects += 1;
                    log::info!("reconnecting client: reconnected to {} (attempt {attempt})", self.url);
                    self.listener.on_reconnected(attempt);
                    return Ok(());
                }
                Err(e) => {
                    log::debug!("reconnecting client: attempt {attempt} to {} failed: {e}", self.url);
                    last = e;
                }
            }
        }
        log::warn!("reconnecting client: giving up on {} after {} attempt(s): {last}", self.url, attempt - 1);
        self.session = Session::GaveUp;
        self.listener.on_give_up(&last);
        Err(last)
    }
}

/// Errors no retry can fix.
fn unfixable(error: &Error) -> bool {
    matches!(error, Error::InvalidUrl { .. } | Error::TlsUnsupported | Error::UnsupportedExtension { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_grow_by_the_factor_up_to_the_max() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(1), 100 * MS);
        assert_eq!(b.ceiling(2), 200 * MS);
        assert_eq!(b.ceiling(3), 400 * MS);
        assert_eq!(b.ceiling(7), 6400 * MS);
        assert_eq!(b.ceiling(8), Duration::from_secs(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
        for n in 1..200 {
            assert!(b.ceiling(n) <= b.ceiling(n + 1), "monotonic at {n}");
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), 400 * MS);
        assert_eq!(b.delay(3, 0.5), 200 * MS);
        // Out-of-range and NaN inputs are clamped.
        assert_eq!(b.delay(3, 7.0), 400 * MS);
        assert_eq!(b.delay(3, -1.0), Duration::ZERO);
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        for attempt in 1..40 {
            for i in 0..=10 {
                let d = b.delay(attempt, f64::from(i) / 10.0);
                assert!(d <= b.ceiling(attempt) && d <= b.max);
            }
        }
        for _ in 0..1000 {
            let d = b.delay(5, rand::random::<f64>());
            assert!(d <= 1600 * MS);
        }
    }

    #[test]
    fn odd_settings_stay_bounded() {
        let shrinking = Backoff { initial: 100 * MS, max: Duration::from_secs(1), factor: 0.5 };
        assert_eq!(shrinking.ceiling(10), 100 * MS);
        let inverted = Backoff { initial: Duration::from_secs(5), max: Duration::from_secs(1), factor: 2.0 };
        assert_eq!(inverted.ceiling(1), Duration::from_secs(1));
        let infinite = Backoff { initial: 100 * MS, max: Duration::MAX, factor: f64::INFINITY };
        assert_eq!(infinite.ceiling(30), 100 * MS);
        let huge = Backoff { initial: Duration::from_secs(1), max: Duration::MAX, factor: 1e300 };
        assert_eq!(huge.ceiling(3), Duration::MAX);
        assert!(huge.delay(3, 0.5) > Duration::from_secs(1 << 60));
        assert_eq!(huge.delay(3, 1.0), Duration::MAX);
    }

    #[test]
    fn policy_defaults_are_documented_values() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.backoff(), Backoff::default());
        assert_eq!(p.max_attempts, Some(10));
        assert_eq!(p.max_elapsed, None);
        assert!(!p.reconnect_on_normal_close);
        assert!(p.check_before_send);
        fn send<T: Send>() {}
        send::<ReconnectingClient>();
    }
}

//! A pool of open WebSocket connections keyed by URL (and per-call headers and subprotocols), for
//! request/response style use.
//!
//! Owns: leasing [`Client`]s exclusively, limits (total and per URL), waiting for a free slot, idle
//! eviction, the health check before reuse, closing everything at [`Pool::close_pool`], and the
//! pool's counters. Never touches: the protocol (a [`Client`] does it) or the breaker's rules
//! ([`super::breaker`]).
//!
//! # Design
//! One `Mutex` guards the bookkeeping (idle connections per URL, slots in use); one `Condvar` wakes
//! acquirers waiting for a slot. The lock is never held across I/O: connecting reserves a slot under
//! the lock, connects outside it, then publishes the connection (or frees the slot and wakes the
//! waiters when the connect failed); health checks and closing handshakes also run outside it.
//! Idle connections are evicted lazily (on acquire and release) or by [`Pool::evict_idle`]; there is
//! no background thread.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::MetricsCollector;
use crate::proto::CloseCode;

use super::blocking::{connect, Client, ClientOptions};
use super::breaker::{BreakerOptions, BreakerRegistry};
use super::error::{Error, Operation};
use super::url::WsUrl;

/// Per-call options of [`Pool::acquire_with`]: request headers and subprotocols for this lease, on top
/// of [`PoolOptions::client`]. Connections are pooled by URL *and* these options, so a connection is
/// only lent to a call that would have opened it the same way: what it negotiated (the subprotocol the
/// server chose from this offer, what it decided from these headers) is what the call asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AcquireOptions {
    /// Headers added to the pool's (`PoolOptions::client.headers`), e.g. `Authorization`. Default none.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, most preferred first, instead of the pool's (`PoolOptions::client.subprotocols`)
    /// when not empty. Default none: the pool's offer.
    pub subprotocols: Vec<String>,
}

impl AcquireOptions {
    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a subprotocol to offer (after those already added).
    #[must_use]
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// The pool key: the normalized URL, then a line for the offer and one per header (a newline cannot
    /// appear in a URL or a header).
    fn key(&self, url: &WsUrl) -> String {
        let mut key = url.to_string();
        if !self.subprotocols.is_empty() {
            key.push_str("\nprotocols: ");
            key.push_str(&self.subprotocols.join(", "));
        }
        for (name, value) in &self.headers {
            key.push('\n');
            key.push_str(&name.to_ascii_lowercase());
            key.push_str(": ");
            key.push_str(value);
        }
        key
    }

    /// The client options for a new connection of this lease.
    fn apply(&self, base: &ClientOptions) -> ClientOptions {
        let mut options = base.clone();
        options.headers.extend(self.headers.iter().cloned());
        if !self.subprotocols.is_empty() {
            options.subprotocols.clone_from(&self.subprotocols);
        }
        options
    }
}

/// Pool settings. Start from [`PoolOptions::default`] and chain the setters; every default is
/// documented on its field.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Most connections open at once, all URLs together (leased, idle and being opened). Default 20;
    /// 0 is treated as 1.
    pub max_connections: usize,
    /// Most connections open at once to one URL (with one set of [`AcquireOptions`]). Default 20 (so
    /// only `max_connections` binds); 0 is treated as 1.
    pub max_per_url: usize,
    /// An idle connection unused for this long is closed (1000) and evicted. Default 300 s.
    pub max_idle_time: Duration,
    /// How long [`Pool::acquire`] waits for a free slot when given `None`. Default 10 s.
    pub acquire_timeout: Duration,
    /// How long closing connections (eviction, discard, [`Pool::close_pool`]) waits for the servers'
    /// closing handshakes, for a whole batch together. Default 1 s.
    pub close_timeout: Duration,
    /// The options new connections are opened with. Default [`ClientOptions::default`].
    pub client: ClientOptions,
    /// Check an idle connection before lending it again ([`Client::check_health`], and no unread
    /// data or close frame waiting): a failed one is discarded, never handed out. Default true.
    pub health_check: bool,
    /// Consult a circuit breaker per host (`host:port`) before connecting. Default
    /// `Some(BreakerOptions::default())` (5 failures, 10 s cooldown); `None` disables it.
    pub breaker: Option<BreakerOptions>,
    /// Connections opened and closed are recorded here too
    /// ([`MetricsCollector::record_connection_opened`] / `record_connection_closed`). Default `None`.
    pub metrics: Option<Arc<MetricsCollector>>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 20,
            max_per_url: 20,
            max_idle_time: Duration::from_secs(300),
            acquire_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            client: ClientOptions::default(),
            health_check: true,
            breaker: Some(BreakerOptions::default()),
            metrics: None,
        }
    }
}

impl PoolOptions {
    /// Sets [`PoolOptions::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`PoolOptions::max_per_url`].
    pub fn max_per_url(mut self, n: usize) -> Self {
        self.max_per_url = n;
        self
    }

    /// Sets [`PoolOptions::max_idle_time`].
    pub fn max_idle_time(mut self, time: Duration) -> Self {
        self.max_idle_time = time;
        self
    }

    /// Sets [`PoolOptions::acquire_timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::client`].
    pub fn client(mut self, options: ClientOptions) -> Self {
        self.client = options;
        self
    }

    /// Sets [`PoolOptions::health_check`].
    pub fn health_check(mut self, on: bool) -> Self {
        self.health_check = on;
        self
    }

    /// Sets [`PoolOptions::breaker`] (`None` disables circuit breaking).
    pub fn breaker(mut self, options: Option<BreakerOptions>) -> Self {
        self.breaker = options;
        self
    }

    /// Sets [`PoolOptions::metrics`].
    pub fn metrics(mut self, metrics: Arc<MetricsCollector>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// The pool's counters, from [`Pool::stats`]. Gauges are as of the call; counters count since the pool
/// was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections leased out (including idle ones being health-checked for a lease).
    pub leased: usize,
    /// Idle connections waiting in the pool.
    pub idle: usize,
    /// Connections being opened.
    pub connecting: usize,
    /// Connections opened.
    pub created: u64,
    /// Leases served by an idle connection.
    pub reused: u64,
    /// Idle connections closed because they were idle longer than `max_idle_time`.
    pub evicted: u64,
    /// Connections thrown away: failed health checks, [`PooledConnection::discard`], and leases
    /// returned no longer open.
    pub discarded: u64,
    /// Idle connections to another URL closed to make room under `max_connections`.
    pub reclaimed: u64,
    /// Acquires that had to wait for a slot.
    pub waits: u64,
    /// Acquires that gave up with [`Error::PoolExhausted`].
    pub exhausted: u64,
    /// Connect attempts that failed (the error was returned to the acquirer).
    pub connect_failures: u64,
    /// Acquires refused by an open circuit breaker.
    pub circuit_rejections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    reused: AtomicU64,
    evicted: AtomicU64,
    discarded: AtomicU64,
    reclaimed: AtomicU64,
    waits: AtomicU64,
    exhausted: AtomicU64,
    connect_failures: AtomicU64,
    circuit_rejections: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

#[derive(Debug)]
struct IdleConn {
    client: Client,
    since: Instant,
}

/// One URL's connections.
#[derive(Debug, Default)]
struct Slots {
    /// Most recently returned last (leases take from the end: warm connections first).
    idle: Vec<IdleConn>,
    leased: usize,
    connecting: usize,
}

impl Slots {
    fn count(&self) -> usize {
        self.idle.len() + self.leased + self.connecting
    }
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// Every connection counted in some `Slots`.
    total: usize,
    urls: HashMap<String, Slots>,
}

impl State {
    fn slots(&mut self, key: &str) -> &mut Slots {
        if !self.urls.contains_key(key) {
            self.urls.insert(key.to_owned(), Slots::default());
        }
        self.urls.get_mut(key).unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Frees one slot of `key` (the caller already took the connection out of `idle`/`leased`/
    /// `connecting`), dropping the URL's entry when it is empty.
    fn forget_if_empty(&mut self, key: &str) {
        if self.urls.get(key).is_some_and(|s| s.count() == 0) {
            self.urls.remove(key);
        }
    }

    /// Takes out every idle connection older than `max_idle`.
    fn take_expired(&mut self, now: Instant, max_idle: Duration, out: &mut Vec<Client>) -> usize {
        let mut n = 0;
        for slots in self.urls.values_mut() {
            let mut i = 0;
            while i < slots.idle.len() {
                if now.saturating_duration_since(slots.idle[i].since) >= max_idle {
                    out.push(slots.idle.remove(i).client);
                    n += 1;
                } else {
                    i += 1;
                }
            }
        }
        self.total -= n;
        self.urls.retain(|_, s| s.count() > 0);
        n
    }

    /// Takes out the longest-idle connection of a URL other than `key`.
    fn take_oldest_idle_elsewhere(&mut self, key: &str) -> Option<Client> {
        let (url, index) = self
            .urls
            .iter()
            .filter(|(url, _)| url.as_str() != key)
            .flat_map(|(url, s)| s.idle.iter().enumerate().map(move |(i, c)| (c.since, url, i)))
            .min_by_key(|(since, _, _)| *since)
            .map(|(_, url, i)| (url.clone(), i))?;
        let client = self.urls.get_mut(&url)?.idle.remove(index).client;
        self.total -= 1;
        self.forget_if_empty(&url);
        Some(client)
    }
}

#[derive(Debug)]
struct Inner {
    options: PoolOptions,
    breakers: Option<BreakerRegistry>,
    state: Mutex<State>,
    /// Signalled whenever a slot frees up or a connection becomes idle, and at `close_pool`.
    changed: Condvar,
    counters: Counters,
}

impl Drop for Inner {
    /// The last handle is gone: idle connections are dropped (each sends a 1001 close frame without
    /// waiting, see [`Client`]'s `Drop`); the metrics hear about them.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let idle: usize = st.urls.values().map(|s| s.idle.len()).sum();
        if let Some(metrics) = &self.options.metrics {
            for _ in 0..idle {
                metrics.record_connection_closed(CloseCode::GOING_AWAY.0);
            }
        }
    }
}

/// A thread-safe pool of WebSocket connections keyed by URL. Cloning gives another handle to the same
/// pool (`Send + Sync`).
///
/// Dropping the last handle (leases hold one) drops the idle connections, which sends each a 1001
/// close frame without waiting for the server; call [`Pool::close_pool`] for an orderly end.
///
/// A lease leaves the pool's hands entirely: what the user does with it (requests, pending replies)
/// is theirs. A connection released with a reply still on its way is caught by the health check
/// (data waiting on an idle connection is stale, so the connection is discarded) only if the reply
/// arrived before the next acquire; read the replies you asked for before releasing.
///
/// ```no_run
/// use std::time::Duration;
/// use wsloop::client::{Pool, PoolOptions};
///
/// let pool = Pool::new(PoolOptions::default().max_connections(20).max_idle_time(Duration::from_secs(300)));
/// let mut conn = pool.acquire("ws://api.example.com/rpc", Some(Duration::from_secs(10)))?;
/// conn.send_text("Request 1")?;
/// let reply = conn.read_message(Some(Duration::from_secs(5)))?;
/// conn.release(); // or just drop it
/// pool.close_pool();
/// # let _ = reply;
/// # Ok::<(), wsloop::client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// An empty pool with `options`.
    pub fn new(options: PoolOptions) -> Self {
        let breakers = options.breaker.map(BreakerRegistry::new);
        Self::build(options, breakers)
    }

    /// An empty pool that consults `breakers` (shared, e.g. with other pools) instead of making its
    /// own; [`PoolOptions::breaker`] is ignored.
    pub fn with_breakers(options: PoolOptions, breakers: BreakerRegistry) -> Self {
        Self::build(options, Some(breakers))
    }

    fn build(options: PoolOptions, breakers: Option<BreakerRegistry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                breakers,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                counters: Counters::default(),
            }),
        }
    }

    /// The options the pool was made with.
    pub fn options(&self) -> &PoolOptions {
        &self.inner.options
    }

    /// The circuit breakers consulted before connecting, if enabled.
    pub fn breakers(&self) -> Option<&BreakerRegistry> {
        self.inner.breakers.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn max_total(&self) -> usize {
        self.inner.options.max_connections.max(1)
    }

    fn max_per_url(&self) -> usize {
        self.inner.options.max_per_url.max(1)
    }

    /// Leases a connection to `url` exclusively: a healthy idle one if there is one, else a new one
    /// when the limits allow, else waits up to `timeout` (`None`: [`PoolOptions::acquire_timeout`]) for
    /// one to be released.
    ///
    /// Errors: [`Error::PoolExhausted`] when the time ran out at the limit; [`Error::PoolClosed`]
    /// after [`Pool::close_pool`]; [`Error::CircuitOpen`] when the host's breaker is open (no attempt
    /// is made); [`Error::InvalidUrl`]; any error of [`connect`] for a new connection (the slot is
    /// freed, the error returned at once without retrying).
    pub fn acquire(&self, url: &str, timeout: Option<Duration>) -> Result<PooledConnection, Error> {
        self.acquire_with(url, &AcquireOptions::default(), timeout)
    }

    /// [`Pool::acquire`] with per-call headers and subprotocols: the lease is a connection opened with
    /// `call` applied to [`PoolOptions::client`], reused only by calls with the same URL and `call`
    /// (limits such as [`PoolOptions::max_per_url`] count each such pair on its own).
    pub fn acquire_with(
        &self,
        url: &str,
        call: &AcquireOptions,
        timeout: Option<Duration>,
    ) -> Result<PooledConnection, Error> {
        let parsed = WsUrl::parse(url).map_err(|reason| Error::InvalidUrl { url: url.to_owned(), reason })?;
        let key = call.key(&parsed);
        let timeout = timeout.unwrap_or(self.inner.options.acquire_timeout);
        let deadline = Instant::now().checked_add(timeout);
        let options = &self.inner.options;
        let mut waited = false;
        let mut to_close = Vec::new();
        let mut st = self.lock();
        loop {
            if st.closed {
                drop(st);
                self.close_idle(to_close);
                return Err(Error::PoolClosed);
            }
            self.expire(&mut st, &mut to_close);
            // 1. A warm idle connection to this URL.
            let slots = st.slots(&key);
            if let Some(idle) = slots.idle.pop() {
                slots.leased += 1;
                drop(st);
                self.close_idle(std::mem::take(&mut to_close));
                let mut client = idle.client;
                if !options.health_check || healthy(&mut client) {
                    bump(&self.inner.counters.reused);
                    return Ok(PooledConnection { client: Some(client), pool: self.clone(), key });
                }
                log::debug!("connection pool: discarding an unhealthy idle connection to {key}");
                self.checkin(&key, client, Checkin::Discard);
                st = self.lock();
                continue;
            }
            // 2. Room for a new one.
            let per_url_room = slots.count() < self.max_per_url();
            if per_url_room && st.total >= self.max_total() {
                if let Some(client) = st.take_oldest_idle_elsewhere(&key) {
                    bump(&self.inner.counters.reclaimed);
                    to_close.push(client);
                }
            }
            if per_url_room && st.total < self.max_total() {
                st.slots(&key).connecting += 1;
                st.total += 1;
                drop(st);
                // Close what was taken out (evicted, reclaimed) first: it frees server resources.
                self.close_idle(std::mem::take(&mut to_close));
                return self.open(&parsed, call, key);
            }
            st.forget_if_empty(&key);
            // 3. Wait for a release.
            if !to_close.is_empty() {
                drop(st);
                self.close_idle(std::mem::take(&mut to_close));
                st = self.lock();
                continue;
            }
            if !waited {
                waited = true;
                bump(&self.inner.counters.waits);
            }
            let now = Instant::now();
            st = match deadline {
                Some(deadline) if now >= deadline => {
                    bump(&self.inner.counters.exhausted);
                    return Err(Error::PoolExhausted);
                }
                Some(deadline) => {
                    self.inner.changed.wait_timeout(st, deadline - now).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.inner.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Opens a connection in a reserved slot (counted in `connecting`), then publishes it as leased.
    fn open(&self, url: &WsUrl, call: &AcquireOptions, key: String) -> Result<PooledConnection, Error> {
        let options = &self.inner.options;
        let target = url.to_string();
        let result = match &self.inner.breakers {
            Some(breakers) => {
                let breaker = breakers.for_url(url);
                let result = match breaker.try_acquire(Instant::now()) {
                    Ok(permit) => {
                        let result = connect(&target, call.apply(&options.client));
                        permit.record(&result, Instant::now());
                        result
                    }
                    Err(e) => {
                        bump(&self.inner.counters.circuit_rejections);
                        Err(e)
                    }
                };
                result
            }
            None => connect(&target, call.apply(&options.client)),
        };
        let mut st = self.lock();
        st.slots(&key).connecting -= 1;
        match result {
            Ok(client) => {
                bump(&self.inner.counters.created);
                if let Some(metrics) = &options.metrics {
                    metrics.record_connection_opened();
                }
                if st.closed {
                    st.total -= 1;
                    st.forget_if_empty(&key);
                    drop(st);
                    self.inner.changed.notify_all();
                    self.close_batch(vec![client], CloseCode::GOING_AWAY, "pool closed");
                    return Err(Error::PoolClosed);
                }
                st.slots(&key).leased += 1;
                Ok(PooledConnection { client: Some(client), pool: self.clone(), key })
            }
            Err(e) => {
                st.total -= 1;
                st.forget_if_empty(&key);
                drop(st);
                if !matches!(e, Error::CircuitOpen { .. }) {
                    bump(&self.inner.counters.connect_failures);
                }
                self.inner.changed.notify_all();
                Err(e)
            }
        }
    }

    /// Takes back a leased connection.
    fn checkin(&self, key: &str, client: Client, how: Checkin) {
        let open = client.is_open();
        let mut st = self.lock();
        st.slots(key).leased -= 1;
        let (code, reason) = if st.closed {
            (CloseCode::GOING_AWAY, "pool closed")
        } else if how == Checkin::Discard || !open {
            bump(&self.inner.counters.discarded);
            (CloseCode::NORMAL, "discarded")
        } else {
            st.slots(key).idle.push(IdleConn { client, since: Instant::now() });
            let mut expired = Vec::new();
            self.expire(&mut st, &mut expired);
            drop(st);
            self.inner.changed.notify_all();
            self.close_idle(expired);
            return;
        };
        st.total -= 1;
        st.forget_if_empty(key);
        drop(st);
        self.inner.changed.notify_all();
        self.close_batch(vec![client], code, reason);
    }

    /// Closes idle connections that have been idle longer than [`PoolOptions::max_idle_time`] (1000,
    /// "idle timeout"); returns how many. Also done on every acquire and release.
    pub fn evict_idle(&self) -> usize {
        let mut expired = Vec::new();
        let n = self.expire(&mut self.lock(), &mut expired);
        if n > 0 {
            self.inner.changed.notify_all();
        }
        self.close_idle(expired);
        n
    }

    /// Takes out (into `out`) and counts the idle connections past `max_idle_time`.
    fn expire(&self, st: &mut State, out: &mut Vec<Client>) -> usize {
        let n = st.take_expired(Instant::now(), self.inner.options.max_idle_time, out);
        self.inner.counters.evicted.fetch_add(n as u64, Relaxed);
        n
    }

    /// Closes idle connections taken out of the pool (evicted or reclaimed) with 1000.
    fn close_idle(&self, clients: Vec<Client>) {
        self.close_batch(clients, CloseCode::NORMAL, "idle timeout");
    }

    /// Closes every idle connection with 1001 ("pool closed") and refuses later acquires with
    /// [`Error::PoolClosed`] (waiting acquires fail too). Leases still out are closed with 1001 when
    /// they are returned. Idempotent.
    pub fn close_pool(&self) {
        let mut st = self.lock();
        st.closed = true;
        let mut idle = Vec::new();
        for slots in st.urls.values_mut() {
            idle.extend(slots.idle.drain(..).map(|c| c.client));
        }
        st.total -= idle.len();
        st.urls.retain(|_, s| s.count() > 0);
        drop(st);
        self.inner.changed.notify_all();
        self.close_batch(idle, CloseCode::GOING_AWAY, "pool closed");
    }

    /// Whether [`Pool::close_pool`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The pool's gauges and counters.
    pub fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        let mut stats = PoolStats {
            created: c.created.load(Relaxed),
            reused: c.reused.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            discarded: c.discarded.load(Relaxed),
            reclaimed: c.reclaimed.load(Relaxed),
            waits: c.waits.load(Relaxed),
            exhausted: c.exhausted.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            circuit_rejections: c.circuit_rejections.load(Relaxed),
            ..PoolStats::default()
        };
        let st = self.lock();
        for slots in st.urls.values() {
            stats.leased += slots.leased;
            stats.idle += slots.idle.len();
            stats.connecting += slots.connecting;
        }
        stats
    }

    /// Closes `clients` (outside the lock): a close frame to every open one first, then their closing
    /// handshakes within one shared [`PoolOptions::close_timeout`].
    fn close_batch(&self, mut clients: Vec<Client>, code: CloseCode, reason: &str) {
        if clients.is_empty() {
            return;
        }
        let mut codes = Vec::with_capacity(clients.len());
        for client in &mut clients {
            let sent = client.is_open() && client.close(code, reason).is_ok();
            codes.push(if sent {
                code
            } else {
                client.close_info().and_then(|i| i.code).unwrap_or(CloseCode::ABNORMAL)
            });
        }
        let deadline = Instant::now() + self.inner.options.close_timeout;
        for client in &mut clients {
            let left = deadline.saturating_duration_since(Instant::now());
            match client.wait_for_close(Some(left)) {
                Ok(_) | Err(Error::Closed { .. }) => {}
                Err(Error::Timeout(Operation::Close)) => {
                    log::debug!("connection pool: {} did not complete the closing handshake in time", client.url());
                }
                Err(e) => log::debug!("connection pool: closing {} failed: {e}", client.url()),
            }
        }
        if let Some(metrics) = &self.inner.options.metrics {
            for code in codes {
                metrics.record_connection_closed(code.0);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkin {
    Release,
    Discard,
}

/// Whether an idle connection may be lent: still open, the socket alive, and nothing received while
/// idle. Data waiting on an idle connection is a stale reply (or a close frame): lending it would
/// hand the next user someone else's message, so it fails the check.
fn healthy(client: &mut Client) -> bool {
    if !client.check_health() {
        return false;
    }
    if client.buffered_input() == 0 {
        return true;
    }
    // Parse what arrived: pings and pongs are fine, anything else is not.
    match client.read_message(Some(Duration::ZERO)) {
        Ok(_) => false,
        Err(Error::Timeout(Operation::Read)) => client.is_open() && client.buffered_input() == 0,
        Err(_) => false,
    }
}

/// A leased connection: derefs to [`Client`]. Returned to the pool by [`PooledConnection::release`]
/// or on drop; [`PooledConnection::discard`] throws it away instead. A connection that is no longer
/// open when it comes back is discarded automatically.
#[derive(Debug)]
pub struct PooledConnection {
    /// `Some` until the lease ends.
    client: Option<Client>,
    pool: Pool,
    key: String,
}

impl PooledConnection {
    /// Returns the connection to the pool (the same as dropping the lease).
    pub fn release(self) {}

    /// Closes the connection (1000 when it is still open) instead of returning it, e.g. after a
    /// protocol error or an unanswered request; its slot is freed.
    pub fn discard(mut self) {
        if let Some(client) = self.client.take() {
            self.pool.checkin(&self.key, client, Checkin::Discard);
        }
    }

    /// The pool's key for this connection: the normalized URL, followed (one per line) by the per-call
    /// subprotocol offer and headers of [`Pool::acquire_with`], if any.
    pub fn pool_key(&self) -> &str {
        &self.key
    }
}

impl Deref for PooledConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable!("a lease has its client until it ends"))
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!("a lease has its client until it ends"))
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.checkin(&self.key, client, Checkin::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let o = PoolOptions::default();
        assert_eq!((o.max_connections, o.max_per_url), (20, 20));
        assert_eq!(o.max_idle_time, Duration::from_secs(300));
        assert_eq!(o.acquire_timeout, Duration::from_secs(10));
        assert_eq!(o.close_timeout, Duration::from_secs(1));
        assert!(o.health_check);
        assert_eq!(o.breaker, Some(BreakerOptions::default()));
    }

    #[test]
    fn pool_and_lease_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pool>();
        fn send<T: Send>() {}
        send::<PooledConnection>();
    }

    #[test]
    fn dropping_the_last_handle_without_connections_is_quiet() {
        let metrics = Arc::new(MetricsCollector::new());
        drop(Pool::new(PoolOptions::default().metrics(metrics.clone())));
        assert_eq!(metrics.snapshot().connections_closed, 0);
    }

    #[test]
    fn invalid_url_and_closed_pool() {
        let pool = Pool::new(PoolOptions::default());
        assert!(matches!(pool.acquire("http://x/", None), Err(Error::InvalidUrl { .. })));
        pool.close_pool();
        assert!(pool.is_closed());
        assert!(matches!(pool.acquire("ws://127.0.0.1:1/", None), Err(Error::PoolClosed)));
        assert_eq!(pool.stats(), PoolStats::default());
    }
}

//! The connection pool against the project's own server over real sockets on loopback: reuse, limits
//! under concurrency, exhaustion, per-URL limits, idle eviction, health checks, discard, close_pool,
//! the metrics it feeds, and per-call headers and subprotocols (`Pool::acquire_with`).

use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsloop::client::{ClientOptions, Error, Message, Pool, PoolOptions};
use wsloop::metrics::MetricsCollector;
use wsloop::proto::CloseCode;
use wsloop::server::{self, Config, Ctx, Handler, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

type Codes = Arc<Mutex<Vec<u16>>>;

/// Echo, except "close" closes with 4000. Records the close codes it sees.
struct TestHandler {
    codes: Codes,
}

impl Handler for TestHandler {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        match message {
            server::Message::Text("close") => {
                let _ = ctx.close(CloseCode(4000), "you asked");
            }
            server::Message::Text(t) => {
                let _ = ctx.send_text(t);
            }
            server::Message::Binary(b) => {
                let _ = ctx.send_binary(b);
            }
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: CloseCode, _reason: &str) {
        self.codes.lock().unwrap().push(code.0);
    }
}

struct TestServer {
    server: Option<RunningServer>,
    codes: Codes,
}

impl TestServer {
    fn start() -> Self {
        let codes = Codes::default();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut server = Server::new(Config { addr, threads: 1, close_timeout: SEC, ..Config::default() });
        for path in ["/a", "/b"] {
            let c = codes.clone();
            server.register_handler(path, move |_| TestHandler { codes: c.clone() });
        }
        Self { server: Some(server.start().unwrap()), codes }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.as_ref().unwrap().local_addr())
    }

    fn upgraded(&self) -> u64 {
        self.server.as_ref().unwrap().handle().metrics().connections_upgraded
    }

    /// Waits until the server has recorded `n` close codes and returns them.
    fn codes(&self, n: usize) -> Vec<u16> {
        let deadline = Instant::now() + 5 * SEC;
        while self.codes.lock().unwrap().len() < n && Instant::now() < deadline {
            thread::sleep(10 * MS);
        }
        self.codes.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

fn options() -> PoolOptions {
    PoolOptions::default().client(ClientOptions::default().connect_timeout(5 * SEC).handshake_timeout(5 * SEC))
}

fn echo(conn: &mut wsloop::client::Client, text: &str) {
    conn.send_text(text).unwrap();
    assert_eq!(conn.read_message(Some(5 * SEC)).unwrap(), Message::Text(text.to_owned()));
}

#[test]
fn release_reuses_the_same_connection() {
    let server = TestServer::start();
    let pool = Pool::new(options());
    let url = server.url("/a");
    let mut conn = pool.acquire(&url, None).unwrap();
    echo(&mut conn, "one");
    let local = conn.local_addr().unwrap();
    assert_eq!(pool.stats().leased, 1);
    conn.release();
    assert_eq!((pool.stats().leased, pool.stats().idle), (0, 1));
    for i in 0..5 {
        // Dropping the lease returns it too.
        let mut conn = pool.acquire(&url, Some(SEC)).unwrap();
        assert_eq!(conn.local_addr().unwrap(), local);
        echo(&mut conn, &format!("again {i}"));
    }
    let stats = pool.stats();
    assert_eq!((stats.created, stats.reused, stats.waits, stats.idle), (1, 5, 0, 1));
    assert_eq!(server.upgraded(), 1);
    pool.close_pool();
}

#[test]
fn eight_threads_share_two_connections() {
    let server = TestServer::start();
    let pool = Pool::new(options().max_connections(2));
    let url = server.url("/a");
    let threads = 8;
    let rounds = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, url, barrier) = (pool.clone(), url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..rounds {
                    let mut conn = pool.acquire(&url, Some(20 * SEC)).unwrap();
                    echo(&mut conn, &format!("{t}/{i}"));
                    if i % 5 == 0 {
                        thread::sleep(MS); // hold the lease a little, so that others wait
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = pool.stats();
    assert!(stats.created <= 2, "{stats:?}");
    assert_eq!(stats.created + stats.reused, (threads * rounds) as u64, "{stats:?}");
    assert!(stats.waits > 0, "8 threads on 2 connections must wait: {stats:?}");
    assert_eq!((stats.exhausted, stats.leased), (0, 0), "{stats:?}");
    assert!(server.upgraded() <= 2);
    pool.close_pool();
}

#[test]
fn exhausted_after_the_timeout() {
    let server = TestServer::start();
    let pool = Pool::new(options().max_connections(1));
    let url = server.url("/a");
    let held = pool.acquire(&url, None).unwrap();
    let timeout = 300 * MS;
    let start = Instant::now();
    let err = pool.acquire(&url, Some(timeout)).unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, Error::PoolExhausted), "{err:?}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < 5 * SEC, "{elapsed:?}");
    // Another URL cannot get a slot either: the only one is leased.
    assert!(matches!(pool.acquire(&server.url("/b"), Some(50 * MS)), Err(Error::PoolExhausted)));
    let stats = pool.stats();
    assert_eq!((stats.waits, stats.exhausted), (2, 2));
    // A release wakes a waiter.
    let waiter = {
        let (pool, url) = (pool.clone(), url.clone());
        thread::spawn(move || pool.acquire(&url, Some(10 * SEC)).map(|c| c.local_addr().unwrap()))
    };
    thread::sleep(100 * MS);
    let local = held.local_addr().unwrap();
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), local);
    assert_eq!(server.upgraded(), 1);
}

#[test]
fn per_url_limit_and_reclaiming_idle_connections_of_other_urls() {
    let server = TestServer::start();
    let pool = Pool::new(options().max_connections(2).max_per_url(1));
    let (a, b) = (server.url("/a"), server.url("/b"));
    let held = pool.acquire(&a, None).unwrap();
    assert!(matches!(pool.acquire(&a, Some(100 * MS)), Err(Error::PoolExhausted)));
    let mut other = pool.acquire(&b, Some(100 * MS)).unwrap();
    echo(&mut other, "b");
    drop((held, other));
    assert_eq!(pool.stats().idle, 2);

    // At the total limit, an idle connection to another URL makes room (closed with 1000).
    let pool = Pool::new(options().max_connections(1));
    drop(pool.acquire(&a, None).unwrap());
    let mut conn = pool.acquire(&b, Some(SEC)).unwrap();
    echo(&mut conn, "b");
    let stats = pool.stats();
    assert_eq!((stats.reclaimed, stats.created, stats.idle), (1, 2, 0));
    assert_eq!(server.codes(1), [1000]);
}

#[test]
fn idle_connections_are_evicted_with_1000() {
    let server = TestServer::start();
    let pool = Pool::new(options().max_idle_time(200 * MS));
    let url = server.url("/a");
    let conn = pool.acquire(&url, None).unwrap();
    let first = conn.local_addr().unwrap();
    drop(conn);
    thread::sleep(300 * MS);
    let mut conn = pool.acquire(&url, None).unwrap();
    assert_ne!(conn.local_addr().unwrap(), first, "an expired connection must not be reused");
    echo(&mut conn, "fresh");
    let stats = pool.stats();
    assert_eq!((stats.evicted, stats.created, stats.reused), (1, 2, 0));
    assert_eq!(server.codes(1), [1000]);
    assert_eq!(server.upgraded(), 2);

    // evict_idle, called by hand.
    drop(conn);
    assert_eq!(pool.evict_idle(), 0);
    thread::sleep(300 * MS);
    assert_eq!(pool.evict_idle(), 1);
    assert_eq!(pool.stats().idle, 0);
    assert_eq!(server.codes(2), [1000, 1000]);
}

#[test]
fn health_check_discards_a_connection_the_server_closed() {
    let server = TestServer::start();
    let pool = Pool::new(options());
    let url = server.url("/a");
    let mut conn = pool.acquire(&url, None).unwrap();
    let first = conn.local_addr().unwrap();
    conn.send_text("close").unwrap();
    // Let the server's close frame arrive; the lease does not read it, so it still looks open.
    thread::sleep(200 * MS);
    assert!(conn.is_open());
    drop(conn);
    assert_eq!(pool.stats().idle, 1);
    let mut conn = pool.acquire(&url, None).unwrap();
    assert_ne!(conn.local_addr().unwrap(), first, "a closed connection was handed out");
    assert!(conn.is_open());
    echo(&mut conn, "still works");
    let stats = pool.stats();
    assert_eq!((stats.discarded, stats.created, stats.reused), (1, 2, 0));
}

#[test]
fn health_check_discards_a_connection_with_a_stale_reply() {
    let server = TestServer::start();
    let pool = Pool::new(options());
    let url = server.url("/a");
    let mut conn = pool.acquire(&url, None).unwrap();
    let first = conn.local_addr().unwrap();
    conn.send_text("a reply nobody reads").unwrap();
    thread::sleep(200 * MS);
    drop(conn);
    let mut conn = pool.acquire(&url, None).unwrap();
    assert_ne!(conn.local_addr().unwrap(), first, "the next user would read someone else's reply");
    echo(&mut conn, "mine");
    assert_eq!(pool.stats().discarded, 1);
    assert_eq!(server.codes(1), [1000]);
}

#[test]
fn a_lease_returned_closed_is_discarded() {
    let server = TestServer::start();
    let pool = Pool::new(options().health_check(false));
    let url = server.url("/a");
    let mut conn = pool.acquire(&url, None).unwrap();
    conn.send_text("close").unwrap();
    assert!(matches!(conn.read_message(Some(5 * SEC)), Err(Error::Closed { code: Some(CloseCode(4000)), .. })));
    assert!(!conn.is_open());
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.discarded, stats.idle, stats.leased), (1, 0, 0));
    echo(&mut pool.acquire(&url, None).unwrap(), "new");
    assert_eq!(pool.stats().created, 2);
}

#[test]
fn discard_closes_instead_of_returning() {
    let server = TestServer::start();
    let pool = Pool::new(options());
    let url = server.url("/a");
    let mut conn = pool.acquire(&url, None).unwrap();
    echo(&mut conn, "x");
    assert_eq!(conn.pool_key(), url);
    conn.discard();
    let stats = pool.stats();
    assert_eq!((stats.discarded, stats.idle, stats.leased), (1, 0, 0));
    assert_eq!(server.codes(1), [1000]);
    drop(pool.acquire(&url, None).unwrap());
    assert_eq!(server.upgraded(), 2);
}

#[test]
fn close_pool_closes_everything_with_1001() {
    let server = TestServer::start();
    let metrics = Arc::new(MetricsCollector::new());
    let pool = Pool::new(options().metrics(metrics.clone()));
    let url = server.url("/a");
    let idle = pool.acquire(&url, None).unwrap();
    let mut out = pool.acquire(&url, None).unwrap();
    drop(idle);
    assert_eq!(metrics.snapshot().active_connections, 2);
    pool.close_pool();
    assert!(pool.is_closed());
    assert_eq!(server.codes(1), [1001]);
    assert!(matches!(pool.acquire(&url, None), Err(Error::PoolClosed)));
    // The lease still out works until it is returned, then it is closed with 1001 too.
    echo(&mut out, "late");
    drop(out);
    assert_eq!(server.codes(2), [1001, 1001]);
    let stats = pool.stats();
    assert_eq!((stats.leased, stats.idle), (0, 0));
    let snapshot = metrics.snapshot();
    assert_eq!((snapshot.connections_upgraded, snapshot.active_connections), (2, 0));
    assert_eq!(snapshot.get("connections_closed_1001"), Some(2));
}

#[test]
fn close_pool_wakes_waiting_acquirers() {
    let server = TestServer::start();
    let pool = Pool::new(options().max_connections(1));
    let url = server.url("/a");
    let held = pool.acquire(&url, None).unwrap();
    let waiter = {
        let (pool, url) = (pool.clone(), url.clone());
        thread::spawn(move || {
            let start = Instant::now();
            (pool.acquire(&url, Some(30 * SEC)).map(drop), start.elapsed())
        })
    };
    thread::sleep(100 * MS);
    pool.close_pool();
    let (result, elapsed) = waiter.join().unwrap();
    assert!(matches!(result, Err(Error::PoolClosed)), "{result:?}");
    assert!(elapsed < 10 * SEC);
    drop(held);
    assert_eq!(server.codes(1), [1001]);
}

#[test]
fn connect_errors_free_the_slot() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = Pool::new(options().max_connections(1).breaker(None));
    for _ in 0..3 {
        let err = pool.acquire(&format!("ws://{addr}/"), Some(SEC)).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
    let stats = pool.stats();
    assert_eq!((stats.connect_failures, stats.connecting, stats.exhausted), (3, 0, 0));
}

#[test]
fn dropping_the_pool_closes_idle_connections() {
    let server = TestServer::start();
    let metrics = Arc::new(MetricsCollector::new());
    let pool = Pool::new(options().metrics(metrics.clone()));
    drop(pool.acquire(&server.url("/a"), None).unwrap());
    drop(pool);
    assert_eq!(server.codes(1), [1001]);
    assert_eq!(metrics.snapshot().active_connections, 0);
}

/// Says on open which subprotocol was chosen and which `X-User` and `Authorization` headers came.
struct Greeter;

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let greeting = format!(
            "protocol={} user={} auth={}",
            ctx.protocol().unwrap_or("-"),
            ctx.header("x-user").unwrap_or("-"),
            ctx.header("authorization").unwrap_or("-")
        );
        let _ = ctx.send_text(&greeting);
    }
}

#[test]
fn per_call_headers_and_subprotocols_are_pooled_separately() {
    use wsloop::client::AcquireOptions;
    use wsloop::proto::negotiate::SubprotocolPolicy;
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        subprotocols: SubprotocolPolicy::Preferred(vec!["v2".into(), "v1".into()]),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/g", |_| Greeter);
    let server = server.start().unwrap();
    let url = format!("ws://{}/g", server.local_addr());
    let pool = Pool::new(PoolOptions::default().client(ClientOptions::default().header("X-User", "pool")));
    let greet = |call: &AcquireOptions| {
        let mut lease = pool.acquire_with(&url, call, Some(5 * SEC)).unwrap();
        let Message::Text(greeting) = lease.read_message(Some(5 * SEC)).unwrap() else { panic!("binary") };
        (lease, greeting)
    };
    let v1 = AcquireOptions::default().subprotocol("v1");
    let (lease, greeting) = greet(&v1);
    assert_eq!(greeting, "protocol=v1 user=pool auth=-");
    assert_eq!(lease.protocol(), Some("v1"));
    drop(lease);
    // Another offer is another pool entry: the idle v1 connection is not lent for it.
    let (lease, greeting) = greet(&AcquireOptions::default().subprotocol("v2").subprotocol("v1"));
    assert_eq!(greeting, "protocol=v2 user=pool auth=-");
    drop(lease);
    // The same offer again reuses the v1 connection (nothing new is said on it).
    let mut lease = pool.acquire_with(&url, &v1, Some(5 * SEC)).unwrap();
    assert_eq!(lease.protocol(), Some("v1"));
    assert!(matches!(lease.read_message(Some(100 * MS)), Err(Error::Timeout(_))), "a reused connection");
    assert!(lease.pool_key().ends_with("\nprotocols: v1"), "{:?}", lease.pool_key());
    drop(lease);
    // Per-call headers are sent beside the pool's and key the pool too.
    let (lease, greeting) = greet(&AcquireOptions::default().header("Authorization", "Bearer a"));
    assert_eq!(greeting, "protocol=- user=pool auth=Bearer a");
    drop(lease);
    let (lease, greeting) = greet(&AcquireOptions::default().header("Authorization", "Bearer b"));
    assert_eq!(greeting, "protocol=- user=pool auth=Bearer b");
    drop(lease);
    let stats = pool.stats();
    assert_eq!((stats.created, stats.reused), (4, 1), "{stats:?}");
    assert_eq!(server.handle().metrics().connections_upgraded, 4);
    pool.close_pool();
    server.stop();
}

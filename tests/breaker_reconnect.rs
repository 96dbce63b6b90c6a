//! The circuit breaker inside the pool, and the reconnecting client, against the project's own server
//! over real sockets on loopback: servers stopped and started again on the same port.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsloop::client::{
    BreakerOptions, BreakerState, ClientOptions, Error, Message, Operation, Pool, PoolOptions, ReconnectListener,
    ReconnectPolicy, ReconnectingClient,
};
use wsloop::proto::CloseCode;
use wsloop::server::{self, Config, Ctx, Handler, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Echo, except "close" closes with 4000 and "bye" with 1000.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        match message {
            server::Message::Text("close") => {
                let _ = ctx.close(CloseCode(4000), "you asked");
            }
            server::Message::Text("bye") => {
                let _ = ctx.close(CloseCode::NORMAL, "done");
            }
            server::Message::Text(t) => {
                let _ = ctx.send_text(t);
            }
            server::Message::Binary(b) => {
                let _ = ctx.send_binary(b);
            }
        }
    }
}

fn start_server(addr: SocketAddr) -> RunningServer {
    // A short close timeout: clients that do not read must not hold `stop` for long.
    let mut server = Server::new(Config { addr, threads: 1, close_timeout: 300 * MS, ..Config::default() });
    server.register_handler("/echo", |_| Echo);
    server.start().unwrap()
}

/// A loopback port with nothing listening (taken from a dropped listener).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn client_options() -> ClientOptions {
    ClientOptions::default().connect_timeout(2 * SEC).handshake_timeout(2 * SEC)
}

#[test]
fn pool_opens_the_circuit_fails_fast_and_closes_it_after_a_good_trial() {
    let addr = free_port();
    let url = format!("ws://{addr}/echo");
    let cooldown = 300 * MS;
    let pool = Pool::new(
        PoolOptions::default()
            .client(client_options())
            .breaker(Some(BreakerOptions::default().failure_threshold(3).cooldown(cooldown))),
    );
    for i in 0..3 {
        let err = pool.acquire(&url, Some(SEC)).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "attempt {i}: {err:?}");
    }
    let host = addr.to_string();
    let breakers = pool.breakers().unwrap();
    assert!(matches!(breakers.state(&host), Some(BreakerState::Open { .. })));
    // Fails fast: no connection attempt.
    let start = Instant::now();
    let err = pool.acquire(&url, Some(SEC)).unwrap_err();
    let elapsed = start.elapsed();
    match err {
        Error::CircuitOpen { host: h, retry_in } => {
            assert_eq!(h, host);
            assert!(retry_in <= cooldown);
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert!(elapsed < 200 * MS, "failing fast took {elapsed:?}");
    let stats = pool.stats();
    assert_eq!((stats.connect_failures, stats.circuit_rejections, stats.connecting), (3, 1, 0));

    // The server comes up on that port; after the cooldown the trial goes through and closes the circuit.
    let server = start_server(addr);
    thread::sleep(cooldown + 50 * MS);
    let mut conn = pool.acquire(&url, Some(SEC)).unwrap();
    conn.send_text("hi").unwrap();
    assert_eq!(conn.read_message(Some(5 * SEC)).unwrap(), Message::Text("hi".into()));
    assert_eq!(breakers.state(&host), Some(BreakerState::Closed));
    drop(conn);
    pool.close_pool();
    server.stop();
}

#[test]
fn a_failed_trial_reopens_the_circuit() {
    let addr = free_port();
    let url = format!("ws://{addr}/echo");
    let cooldown = 200 * MS;
    let pool = Pool::new(
        PoolOptions::default()
            .client(client_options())
            .breaker(Some(BreakerOptions::default().failure_threshold(1).cooldown(cooldown))),
    );
    assert!(matches!(pool.acquire(&url, None), Err(Error::Connect { .. })));
    assert!(matches!(pool.acquire(&url, None), Err(Error::CircuitOpen { .. })));
    thread::sleep(cooldown + 50 * MS);
    // The trial fails (still nothing listening): open again, for a whole new cooldown.
    assert!(matches!(pool.acquire(&url, None), Err(Error::Connect { .. })));
    match pool.acquire(&url, None) {
        Err(Error::CircuitOpen { retry_in, .. }) => assert!(retry_in > cooldown / 2, "{retry_in:?}"),
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

/// What a listener heard.
#[derive(Debug, Clone, PartialEq)]
enum Heard {
    Disconnected,
    Reconnecting(u32),
    Reconnected(u32),
    GaveUp,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Heard>>>);

impl Recorder {
    fn heard(&self) -> Vec<Heard> {
        self.0.lock().unwrap().clone()
    }
}

impl ReconnectListener for Recorder {
    fn on_disconnected(&mut self, _error: &Error) {
        self.0.lock().unwrap().push(Heard::Disconnected);
    }

    fn on_reconnecting(&mut self, attempt: u32, delay: Duration) {
        assert!(delay <= 50 * MS, "delay {delay:?} above the policy's max");
        self.0.lock().unwrap().push(Heard::Reconnecting(attempt));
    }

    fn on_reconnected(&mut self, attempt: u32) {
        self.0.lock().unwrap().push(Heard::Reconnected(attempt));
    }

    fn on_give_up(&mut self, _last_error: &Error) {
        self.0.lock().unwrap().push(Heard::GaveUp);
    }
}

fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy::default().backoff_range(10 * MS, 50 * MS)
}

fn echo(client: &mut ReconnectingClient, text: &str) {
    client.send_text(text).unwrap();
    assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Text(text.to_owned()));
}

#[test]
fn reconnects_when_the_server_restarts() {
    let server = start_server("127.0.0.1:0".parse().unwrap());
    let addr = server.local_addr();
    let recorder = Recorder::default();
    let url = format!("ws://{addr}/echo");
    let mut client = ReconnectingClient::connect(&url, client_options(), fast_policy(), recorder.clone()).unwrap();
    echo(&mut client, "before");
    let first = client.client().local_addr().unwrap();

    // The server goes away (1001) and comes back on the same port.
    server.stop();
    let server = start_server(addr);
    // The send notices the dead connection before writing, reconnects, and sends on the new one.
    echo(&mut client, "after");
    assert_ne!(client.client().local_addr().unwrap(), first);
    assert_eq!(client.reconnects(), 1);
    let heard = recorder.heard();
    assert_eq!(heard.first(), Some(&Heard::Disconnected));
    assert!(matches!(heard.last(), Some(Heard::Reconnected(_))), "{heard:?}");

    // A read notices it as well, and goes on waiting over the new connection.
    server.stop();
    let server = start_server(addr);
    let err = client.read_message(Some(500 * MS)).unwrap_err();
    assert!(matches!(err, Error::Timeout(Operation::Read)), "{err:?}");
    assert_eq!(client.reconnects(), 2);
    echo(&mut client, "again");

    // A close by the server with another code than 1000 reconnects too.
    client.send_text("close").unwrap();
    assert!(matches!(client.read_message(Some(500 * MS)), Err(Error::Timeout(Operation::Read))));
    assert_eq!(client.reconnects(), 3);
    echo(&mut client, "after 4000");

    // Our own close never reconnects.
    let info = client.close(CloseCode::NORMAL, "", None).unwrap();
    assert_eq!(info.code, Some(CloseCode::NORMAL));
    assert!(matches!(client.send_text("x"), Err(Error::Closed { .. })));
    assert!(!client.is_open());
    assert_eq!(client.reconnects(), 3);
    assert!(!recorder.heard().contains(&Heard::GaveUp));
    server.stop();
}

#[test]
fn a_normal_close_by_the_server_ends_the_session_unless_asked_otherwise() {
    let server = start_server("127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addr());
    let mut client = ReconnectingClient::connect(&url, client_options(), fast_policy(), ()).unwrap();
    client.send_text("bye").unwrap();
    let err = client.read_message(Some(5 * SEC)).unwrap_err();
    assert!(matches!(err, Error::Closed { code: Some(CloseCode::NORMAL), .. }), "{err:?}");
    assert!(matches!(client.send_text("x"), Err(Error::Closed { .. })));
    assert_eq!(client.reconnects(), 0);

    let policy = fast_policy().reconnect_on_normal_close(true);
    let mut client = ReconnectingClient::connect(&url, client_options(), policy, ()).unwrap();
    client.send_text("bye").unwrap();
    assert!(matches!(client.read_message(Some(300 * MS)), Err(Error::Timeout(Operation::Read))));
    assert_eq!(client.reconnects(), 1);
    echo(&mut client, "still here");
    server.stop();
}

#[test]
fn gives_up_after_the_attempt_budget() {
    let server = start_server("127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addr());
    let recorder = Recorder::default();
    let policy = fast_policy().max_attempts(Some(3));
    let mut client = ReconnectingClient::connect(&url, client_options(), policy, recorder.clone()).unwrap();
    echo(&mut client, "hello");
    server.stop();
    let start = Instant::now();
    let err = client.read_message(Some(30 * SEC)).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "the last connect error is returned: {err:?}");
    assert!(start.elapsed() < 10 * SEC);
    assert_eq!(
        recorder.heard(),
        [Heard::Disconnected, Heard::Reconnecting(1), Heard::Reconnecting(2), Heard::Reconnecting(3), Heard::GaveUp]
    );
    assert!(client.gave_up());
    assert!(!client.is_open());
    let err = client.send_text("x").unwrap_err();
    assert!(matches!(err, Error::Closed { code: Some(CloseCode::ABNORMAL), .. }), "{err:?}");
}

#[test]
fn gives_up_after_the_elapsed_budget() {
    let server = start_server("127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addr());
    let recorder = Recorder::default();
    let policy = fast_policy().max_attempts(None).max_elapsed(Some(300 * MS));
    let mut client = ReconnectingClient::connect(&url, client_options(), policy, recorder.clone()).unwrap();
    server.stop();
    let start = Instant::now();
    let err = client.send_text("lost").unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(elapsed >= 250 * MS && elapsed < 10 * SEC, "{elapsed:?}");
    let heard = recorder.heard();
    assert_eq!(heard.last(), Some(&Heard::GaveUp));
    assert!(heard.iter().filter(|h| matches!(h, Heard::Reconnecting(_))).count() >= 3, "{heard:?}");
}

#[test]
fn the_first_connect_is_not_retried() {
    let addr = free_port();
    let start = Instant::now();
    let err =
        ReconnectingClient::connect(&format!("ws://{addr}/echo"), client_options(), fast_policy(), ()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(start.elapsed() < 2 * SEC);
}

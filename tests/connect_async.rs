//! `client::connect_async` and `Handle::connect_url`: in-loop clients by URL, with and without an engine
//! of one's own. Success, an unknown host, a refused port, a handshake that never comes, a bad URL and
//! wss:// (tried with the `tls` feature), each reported through the handler with the blocking client's
//! typed error.

use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use wsloop::client::{connect_async, Error, Operation};
use wsloop::server::{Config, ConnectError, ConnectOptions, Ctx, Handler, Message, RunningServer, Server};

const WAIT: Duration = Duration::from_secs(10);

/// What the client handler saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open,
    Text(String),
    Failed(String),
}

/// Sends "hello" on open; reports what happens.
struct Probe(Sender<Seen>);

impl Handler for Probe {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = self.0.send(Seen::Open);
        let _ = ctx.send_text("hello");
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            let _ = self.0.send(Seen::Text(t.to_owned()));
        }
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        let what = match error {
            ConnectError::Client(Error::Resolve { host, .. }) => format!("resolve {host}"),
            ConnectError::Client(Error::Timeout(Operation::Resolve)) => "resolve timeout".to_owned(),
            ConnectError::Client(Error::Connect { addr, .. }) => format!("connect {addr}"),
            ConnectError::Client(Error::InvalidUrl { .. }) => "invalid url".to_owned(),
            ConnectError::Client(Error::TlsUnsupported) => "tls".to_owned(),
            ConnectError::Timeout => "handshake timeout".to_owned(),
            other => format!("other {other:?}"),
        };
        let _ = self.0.send(Seen::Failed(what));
    }
}

fn probe() -> (Probe, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    (Probe(tx), rx)
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            let _ = ctx.send_text(t);
        }
    }
}

fn echo_server() -> RunningServer {
    let mut server = Server::new(Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() });
    server.register_handler("*", |_| Echo);
    server.start().unwrap()
}

fn options(timeout: Duration) -> ConnectOptions {
    ConnectOptions { timeout, ..ConnectOptions::default() }
}

#[test]
fn connect_async_by_name_opens_and_echoes_without_an_engine_of_ones_own() {
    let server = echo_server();
    let (handler, seen) = probe();
    // `localhost` goes through the resolver on the helper thread.
    connect_async(&format!("ws://localhost:{}/x", server.local_addr().port()), options(WAIT), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Open);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Text("hello".into()));
}

#[test]
fn handle_connect_url_uses_the_callers_engine() {
    let server = echo_server();
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    let (handler, seen) = probe();
    engine.handle().connect_url(&format!("ws://{}/", server.local_addr()), options(WAIT), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Open);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Text("hello".into()));
    assert_eq!(engine.handle().metrics().connections_upgraded, 1, "the connection ran on this engine");
}

#[test]
fn an_unknown_host_is_a_resolve_error() {
    let (handler, seen) = probe();
    connect_async("ws://no-such-host.invalid/", options(Duration::from_secs(5)), handler);
    let got = seen.recv_timeout(WAIT).unwrap();
    // Without a reachable DNS server the lookup may instead run out of time; both are the resolver's.
    assert!(
        got == Seen::Failed("resolve no-such-host.invalid".into()) || got == Seen::Failed("resolve timeout".into()),
        "{got:?}"
    );
}

#[test]
fn a_refused_port_is_a_connect_error_naming_the_address() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (handler, seen) = probe();
    connect_async(&format!("ws://{closed}/"), options(WAIT), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Failed(format!("connect {closed}")));
}

#[test]
fn a_server_that_never_answers_times_out_within_the_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    thread::spawn(move || {
        let _held: Vec<_> = silent.incoming().take(1).collect();
        thread::sleep(WAIT);
    });
    let (handler, seen) = probe();
    let started = Instant::now();
    connect_async(&format!("ws://{addr}/"), options(Duration::from_millis(400)), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Failed("handshake timeout".into()));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_bad_url_fails_at_once_and_wss_needs_the_tls_feature() {
    let (handler, seen) = probe();
    connect_async("http://example.com/", options(WAIT), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Failed("invalid url".into()));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (handler, seen) = probe();
    connect_async(&format!("wss://{closed}/"), options(WAIT), handler);
    // With TLS built in, wss:// is tried (and meets the closed port); without it, refused at once.
    let want = if cfg!(feature = "tls") { format!("connect {closed}") } else { "tls".to_owned() };
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Seen::Failed(want));
}

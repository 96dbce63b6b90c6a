//! In-loop client connections: hosted by a reactor, driven by the same `Handler` trait as the server side.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use wsloop::proto::CloseCode;
use wsloop::server::{Config, ConnectError, ConnectOptions, Ctx, Handler, Message, RunningServer, Server};

struct Echo;
impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn echo_server() -> RunningServer {
    let mut server = Server::new(Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() });
    server.register_handler("/echo", |_| Echo);
    server.start().unwrap()
}

fn client_engine() -> RunningServer {
    Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap()
}

#[derive(Default)]
struct Tally {
    opened: AtomicUsize,
    echoed: AtomicUsize,
    closed_normal: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// Sends a greeting on open, checks the echo, then closes with 1000.
struct Greeter {
    n: usize,
    tally: Arc<Tally>,
}

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.tally.opened.fetch_add(1, Ordering::SeqCst);
        ctx.send_text(&format!("hello {}", self.n)).unwrap();
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if message == Message::Text(&format!("hello {}", self.n)) {
            self.tally.echoed.fetch_add(1, Ordering::SeqCst);
        }
        ctx.close(CloseCode::NORMAL, "bye").unwrap();
    }
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: CloseCode, _reason: &str) {
        if code == CloseCode::NORMAL {
            self.tally.closed_normal.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_connect_error(&mut self, error: &ConnectError) {
        self.tally.errors.lock().unwrap().push(error.to_string());
    }
}

#[test]
fn one_reactor_drives_hundreds_of_client_connections() {
    let server = echo_server();
    let clients = client_engine();
    let handle = clients.handle();
    let tally = Arc::new(Tally::default());
    let n = 500;
    for i in 0..n {
        let greeter = Greeter { n: i, tally: tally.clone() };
        handle.connect(server.local_addr(), "localhost", "/echo", ConnectOptions::default(), greeter);
    }
    let done = eventually(Duration::from_secs(20), || tally.closed_normal.load(Ordering::SeqCst) == n);
    assert!(
        done,
        "opened {} echoed {} closed {} errors {:?}",
        tally.opened.load(Ordering::SeqCst),
        tally.echoed.load(Ordering::SeqCst),
        tally.closed_normal.load(Ordering::SeqCst),
        tally.errors.lock().unwrap()
    );
    assert_eq!(tally.echoed.load(Ordering::SeqCst), n);
    assert!(eventually(Duration::from_secs(10), || handle.metrics().active_connections == 0));
    clients.stop();
    server.stop();
}

fn expect_connect_error(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> String {
    let clients = client_engine();
    let tally = Arc::new(Tally::default());
    let options = ConnectOptions { timeout, ..ConnectOptions::default() };
    clients.handle().connect(addr, "localhost", path, options, Greeter { n: 0, tally: tally.clone() });
    assert!(eventually(Duration::from_secs(10), || !tally.errors.lock().unwrap().is_empty()));
    assert_eq!(tally.opened.load(Ordering::SeqCst), 0);
    clients.stop();
    let errors = tally.errors.lock().unwrap();
    errors[0].clone()
}

#[test]
fn refused_tcp_connection_is_reported_to_the_handler() {
    // Bind then drop a listener: the port is (almost certainly) closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = expect_connect_error(addr, "/", Duration::from_secs(5));
    assert!(error.starts_with("TCP connection failed"), "{error}");
}

#[test]
fn a_server_that_never_answers_the_handshake_times_out() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = expect_connect_error(silent.local_addr().unwrap(), "/", Duration::from_millis(300));
    assert!(error.contains("timed out"), "{error}");
}

#[test]
fn a_refused_upgrade_is_reported_with_its_status() {
    let server = echo_server();
    let error = expect_connect_error(server.local_addr(), "/no-such-path", Duration::from_secs(5));
    assert!(error.contains("404"), "{error}");
    server.stop();
}

/// Tells each connection its peer address, then echoes.
struct WhoAmI;
impl Handler for WhoAmI {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let peer = ctx.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        ctx.send_text(&peer).unwrap();
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            ctx.send_text(t).unwrap();
        }
    }
}

/// Records every text message it receives.
struct Recorder {
    got: Arc<Mutex<Vec<String>>>,
}
impl Handler for Recorder {
    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            self.got.lock().unwrap().push(t.to_owned());
        }
    }
}

#[test]
fn client_connections_can_pick_their_source_address() {
    let mut server = Server::new(Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() });
    server.register_handler("*", |_| WhoAmI);
    let server = server.start().unwrap();
    let clients = client_engine();
    let got = Arc::new(Mutex::new(Vec::new()));
    let options = ConnectOptions { local_addr: Some("127.0.0.2:0".parse().unwrap()), ..ConnectOptions::default() };
    clients.handle().connect(server.local_addr(), "localhost", "/", options, Recorder { got: got.clone() });
    assert!(eventually(Duration::from_secs(5), || !got.lock().unwrap().is_empty()));
    assert_eq!(got.lock().unwrap()[0], "127.0.0.2");
    clients.stop();
    server.stop();
}

#[test]
fn broadcasts_from_a_client_engine_are_masked_like_every_client_frame() {
    let mut server = Server::new(Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() });
    server.register_handler("*", |_| WhoAmI);
    let server = server.start().unwrap();
    let clients = client_engine();
    let got = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let recorder = Recorder { got: got.clone() };
        clients.handle().connect(server.local_addr(), "localhost", "/", ConnectOptions::default(), recorder);
    }
    assert!(eventually(Duration::from_secs(5), || got.lock().unwrap().len() == 3), "greetings");
    // The server would fail an unmasked frame with 1002; instead it echoes each copy.
    clients.handle().broadcast_text("to every server");
    assert!(eventually(Duration::from_secs(5), || got.lock().unwrap().len() == 6), "{:?}", got.lock().unwrap());
    assert_eq!(server.handle().metrics().protocol_errors, 0);
    clients.stop();
    server.stop();
}

#[test]
fn a_second_server_on_a_port_in_use_fails_instead_of_sharing_it() {
    let first = echo_server();
    let mut second = Server::new(Config { addr: first.local_addr(), threads: 1, ..Config::default() });
    second.register_handler("*", |_| Echo);
    let err = second.start().expect_err("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    first.stop();
}

/// Sends a small raw frame (corked), then large raw frames that `send_raw` writes straight from the
/// caller's slice, enough of them to fill the socket so part of them must be corked and flushed later.
/// Every echo must come back whole and in order.
struct RawSender {
    frames: Vec<Vec<u8>>,
    expected: Vec<Vec<u8>>,
    next: usize,
    result: Arc<Mutex<Option<Result<usize, String>>>>,
}

impl Handler for RawSender {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        for frame in &self.frames {
            ctx.send_raw(frame).unwrap();
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let Message::Binary(got) = message else {
            *self.result.lock().unwrap() = Some(Err("a text echo".into()));
            return;
        };
        if got != self.expected[self.next].as_slice() {
            *self.result.lock().unwrap() = Some(Err(format!("echo {} differs (len {})", self.next, got.len())));
            let _ = ctx.close(CloseCode::NORMAL, "");
            return;
        }
        self.next += 1;
        if self.next == self.expected.len() {
            *self.result.lock().unwrap() = Some(Ok(self.next));
            let _ = ctx.close(CloseCode::NORMAL, "");
        }
    }
}

#[test]
fn large_raw_frames_are_written_uncopied_and_keep_their_order() {
    use wsloop::proto::{encode_frame, OpCode};
    let server = echo_server();
    let clients = client_engine();
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for i in 0..41u32 {
        // The first is small (corked); then 40 of 256 KiB, 10 MiB in all: more than the socket takes at once.
        let len = if i == 0 { 100 } else { 256 * 1024 };
        let payload: Vec<u8> = (0..len).map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8).collect();
        let mut frame = Vec::new();
        encode_frame(&mut frame, OpCode::Binary, true, 0, Some([1, 2, 3, i as u8]), &payload);
        frames.push(frame);
        expected.push(payload);
    }
    let result = Arc::new(Mutex::new(None));
    let sender = RawSender { frames, expected, next: 0, result: result.clone() };
    clients.handle().connect(server.local_addr(), "localhost", "/echo", ConnectOptions::default(), sender);
    assert!(eventually(Duration::from_secs(20), || result.lock().unwrap().is_some()), "no result");
    assert_eq!(result.lock().unwrap().clone().unwrap(), Ok(41));
    assert_eq!(server.handle().metrics().protocol_errors, 0);
    clients.stop();
    server.stop();
}

#[test]
fn a_connect_to_a_stopped_engine_is_refused_not_dropped_unheard() {
    let server = echo_server();
    let clients = client_engine();
    let handle = clients.handle();
    clients.stop(); // joins: every reactor has exited
    let tally = Arc::new(Tally::default());
    handle.connect(
        server.local_addr(),
        "localhost",
        "/echo",
        ConnectOptions::default(),
        Greeter { n: 0, tally: tally.clone() },
    );
    // Reported at once, on this thread: no reactor is left to do it.
    assert_eq!(*tally.errors.lock().unwrap(), vec![ConnectError::Refused.to_string()]);
    assert_eq!(tally.opened.load(Ordering::SeqCst), 0);
    server.stop();
}

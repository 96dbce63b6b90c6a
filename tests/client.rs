//! The blocking client against the project's own server (and a few raw TCP peers) over real sockets on
//! loopback: echo, timeouts, both close directions, `with_connection` on every exit path, the callback
//! client, subprotocols, handshake refusals, URL errors, IPv6, keepalive pings and pong timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsloop::client::{
    self, connect, connect_with_callback, with_connection, ClientOptions, Error, Message, Operation, UrlError,
};
use wsloop::proto::handshake::{parse_request, write_response, HandshakeError, HandshakeLimits};
use wsloop::proto::negotiate::SubprotocolPolicy;
use wsloop::proto::{CloseCode, ProtocolError};
use wsloop::server::{self, Config, Ctx, Handler, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);

/// The close codes the server saw, in order.
type Codes = Arc<Mutex<Vec<u16>>>;

/// Echo, except: "ignore" is not answered, "close" closes with 4000 "you asked". Records close codes.
struct TestHandler {
    codes: Codes,
    welcome: bool,
}

impl Handler for TestHandler {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if self.welcome {
            let _ = ctx.send_text("welcome");
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        match message {
            server::Message::Text("ignore") => {}
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
    fn start(config: Config) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), config).unwrap()
    }

    fn start_at(addr: SocketAddr, config: Config) -> std::io::Result<Self> {
        let codes = Codes::default();
        let mut server = Server::new(Config { addr, threads: 1, ..config });
        let c = codes.clone();
        server.register_handler("/echo", move |_| TestHandler { codes: c.clone(), welcome: false });
        let c = codes.clone();
        server.register_handler("/welcome", move |_| TestHandler { codes: c.clone(), welcome: true });
        Ok(Self { server: Some(server.start()?), codes })
    }

    fn url(&self, path: &str) -> String {
        let addr = self.server.as_ref().unwrap().local_addr();
        format!("ws://{addr}{path}")
    }

    /// Waits until the server has recorded `n` close codes and returns them.
    fn codes(&self, n: usize) -> Vec<u16> {
        let deadline = Instant::now() + 5 * SEC;
        while self.codes.lock().unwrap().len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
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

fn default_server() -> TestServer {
    TestServer::start(Config::default())
}

fn options() -> ClientOptions {
    ClientOptions::default().connect_timeout(5 * SEC).handshake_timeout(5 * SEC)
}

/// A raw TCP peer that completes the opening handshake and then runs `then` on the socket.
fn raw_ws_server(then: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let request = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "client closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((request, _)) = parse_request(&buf, &HandshakeLimits::default()).unwrap() {
                break request;
            }
        };
        let mut out = Vec::new();
        write_response(&mut out, &request.key, None, None, &[]).unwrap();
        stream.write_all(&out).unwrap();
        then(stream);
    });
    addr
}

#[test]
fn echoes_text_and_binary() {
    let server = default_server();
    let mut c = connect(&server.url("/echo?x=1"), options()).unwrap();
    assert!(c.is_open());
    assert_eq!(c.protocol(), None);
    assert!(c.response().header("sec-websocket-accept").is_some());
    assert_eq!(c.peer_addr().unwrap(), server.server.as_ref().unwrap().local_addr());
    assert!(c.local_addr().unwrap().ip().is_loopback());
    c.send_text("héllo").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("héllo".into()));
    c.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Binary(vec![0, 1, 2, 255]));
    // Pongs to our own pings are consumed, not returned.
    c.send_ping(b"p").unwrap();
    c.send_text("after ping").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("after ping".into()));
}

#[test]
fn echoes_a_4_mib_message_and_many_pipelined_ones() {
    let server = default_server();
    let mut c = connect(&server.url("/echo"), options()).unwrap();
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    c.send_binary(&big).unwrap();
    assert!(c.read_message(Some(30 * SEC)).unwrap() == Message::Binary(big));
    for i in 0..500 {
        c.send_text(&format!("m{i}")).unwrap();
    }
    for i in 0..500 {
        assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text(format!("m{i}")));
    }
}

#[test]
fn frames_sent_right_after_the_101_are_not_lost() {
    let server = default_server();
    let mut c = connect(&server.url("/welcome"), options()).unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("welcome".into()));
}

#[test]
fn read_timeout_fires_and_the_connection_stays_usable() {
    let server = default_server();
    let mut c = connect(&server.url("/echo"), options()).unwrap();
    c.send_text("ignore").unwrap();
    let started = Instant::now();
    match c.read_message(Some(Duration::from_millis(200))) {
        Err(Error::Timeout(Operation::Read)) => {}
        other => panic!("expected a read timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(190) && waited < 3 * SEC, "{waited:?}");
    assert!(c.is_open());
    c.send_text("still here").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("still here".into()));
}

#[test]
fn a_host_name_is_resolved_and_connected() {
    let server = default_server();
    let port = server.server.as_ref().unwrap().local_addr().port();
    // "localhost" goes through the system resolver (on a thread of its own, bounded by connect_timeout);
    // an address it yields that nothing listens on (e.g. ::1) is skipped for the next one.
    let mut c = connect(&format!("ws://localhost:{port}/echo"), options()).unwrap();
    c.send_text("by name").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("by name".into()));
}

#[test]
fn a_zero_timeout_read_polls_without_blocking() {
    let server = default_server();
    let mut c = connect(&server.url("/echo"), options()).unwrap();
    // Nothing to read: each call returns at once. Blocking for the 1 ms minimum of a socket read timeout,
    // 200 calls would take 200 ms or more.
    let started = Instant::now();
    for _ in 0..200 {
        match c.read_message(Some(Duration::ZERO)) {
            Err(Error::Timeout(Operation::Read)) => {}
            other => panic!("expected a read timeout, got {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_millis(150), "{:?}", started.elapsed());
    // A message that has arrived is returned by a zero-timeout read.
    c.send_text("ready").unwrap();
    let deadline = Instant::now() + 5 * SEC;
    let got = loop {
        match c.read_message(Some(Duration::ZERO)) {
            Ok(m) => break m,
            Err(Error::Timeout(Operation::Read)) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(got, Message::Text("ready".into()));
    assert!(c.is_open());
    c.send_text("blocking again").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("blocking again".into()));
}

#[test]
fn default_read_timeout_applies_when_none_is_given() {
    // A server that completes the handshake and never sends anything.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let addr = raw_ws_server(move |_stream| {
        let _ = done_rx.recv_timeout(10 * SEC);
    });
    let mut c = connect(&format!("ws://{addr}/"), options().read_timeout(Duration::from_millis(150))).unwrap();
    match c.read_message(None) {
        Err(Error::Timeout(Operation::Read)) => {}
        other => panic!("expected a read timeout, got {other:?}"),
    }
    assert!(c.is_open());
    drop(done_tx);
}

#[test]
fn handshake_timeout_fires_when_the_server_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        thread::sleep(3 * SEC);
        drop(stream);
    });
    let started = Instant::now();
    let err = connect(&format!("ws://{addr}/"), options().handshake_timeout(Duration::from_millis(300))).unwrap_err();
    assert!(matches!(err, Error::Timeout(Operation::Handshake)), "{err:?}");
    assert!(started.elapsed() < 2 * SEC);
    holder.join().unwrap();
}

#[test]
fn connect_timeout_fires_when_the_listen_backlog_is_full() {
    // A listener that never accepts, with a backlog of 0: once its accept queue is full, Linux drops
    // further SYNs and connecting hangs until the timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!("skipped: this kernel accepts connections beyond a full backlog");
        return;
    }
    let started = Instant::now();
    let err = connect(&format!("ws://{addr}/"), options().connect_timeout(Duration::from_millis(300))).unwrap_err();
    assert!(matches!(err, Error::Timeout(Operation::Connect)), "{err:?}");
    assert!(started.elapsed() < 3 * SEC);
}

#[test]
fn refused_connection_names_the_address() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match connect(&format!("ws://{addr}/"), options()) {
        Err(Error::Connect { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn peer_close_surfaces_as_closed_with_its_code() {
    let server = default_server();
    let mut c = connect(&server.url("/echo"), options()).unwrap();
    c.send_text("close").unwrap();
    match c.read_message(Some(5 * SEC)) {
        Err(Error::Closed { code, reason }) => {
            assert_eq!(code, Some(CloseCode(4000)));
            assert_eq!(reason, "you asked");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(!c.is_open());
    // Sending and reading after the close report the same.
    assert!(matches!(c.send_text("late"), Err(Error::Closed { code: Some(CloseCode(4000)), .. })));
    let started = Instant::now();
    let info = c.wait_for_close(Some(5 * SEC)).unwrap();
    assert_eq!(info.code, Some(CloseCode(4000)));
    assert!(started.elapsed() < 2 * SEC, "the server closes TCP at once");
    assert_eq!(server.codes(1), [4000]);
}

#[test]
fn wait_for_close_completes_the_handshake_and_the_server_sees_1000() {
    let server = default_server();
    let mut c = connect(&server.url("/echo"), options()).unwrap();
    c.send_text("before").unwrap();
    c.close(CloseCode::NORMAL, "done").unwrap();
    assert!(!c.is_open());
    assert!(matches!(c.send_text("late"), Err(Error::Closed { .. })));
    // The echo of "before" still arrives after our close frame went out.
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("before".into()));
    let info = c.wait_for_close(None).unwrap();
    assert_eq!(info.code, Some(CloseCode::NORMAL));
    assert_eq!(server.codes(1), [1000]);
    assert_eq!(c.close_info(), Some(info));
}

#[test]
fn with_connection_closes_with_1000_on_ok_on_err_and_on_panic() {
    let server = default_server();
    let url = server.url("/echo");
    let got = with_connection(&url, options(), |c| {
        c.send_text("hi")?;
        c.read_message(Some(5 * SEC))
    })
    .unwrap();
    assert_eq!(got, Message::Text("hi".into()));
    assert_eq!(server.codes(1), [1000]);

    let err = with_connection(&url, options(), |c| -> Result<(), Error> {
        c.send_text("ignore")?;
        c.read_message(Some(Duration::from_millis(50)))?;
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(err, Error::Timeout(Operation::Read)), "{err:?}");
    assert_eq!(server.codes(2), [1000, 1000]);

    let panicked = std::panic::catch_unwind(|| {
        let _ = with_connection(&url, options(), |c| -> Result<(), Error> {
            c.send_text("hi")?;
            panic!("boom in the user's closure");
        });
    });
    let payload = panicked.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the user's closure"));
    assert_eq!(server.codes(3), [1000, 1000, 1000]);
}

#[test]
fn dropping_an_open_client_sends_1001() {
    let server = default_server();
    let c = connect(&server.url("/echo"), options()).unwrap();
    drop(c);
    assert_eq!(server.codes(1), [1001]);
}

#[test]
fn callback_client_receives_messages_and_wait_for_close_returns_after_the_server_closes() {
    let server = default_server();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let opts = options().on_message(move |sender, message| {
        // Reply from inside the callback: "second" makes the server close.
        if message == Message::Text("second".into()) {
            sender.send_text("close").unwrap();
        }
        tx.lock().unwrap().send(message).unwrap();
    });
    let c = connect_with_callback(&server.url("/echo"), opts).unwrap();
    c.send_text("first").unwrap();
    let sender = c.sender();
    thread::spawn(move || sender.send_binary(b"bin").unwrap()).join().unwrap();
    c.send_text("second").unwrap();
    let info = c.wait_for_close(Some(5 * SEC)).unwrap();
    assert_eq!(info.code, Some(CloseCode(4000)));
    assert!(!c.is_open());
    let got: Vec<Message> = rx.try_iter().collect();
    assert_eq!(got, [Message::Text("first".into()), Message::Binary(b"bin".to_vec()), Message::Text("second".into())]);
    assert_eq!(server.codes(1), [4000]);
}

#[test]
fn callback_client_close_completes_and_the_server_sees_the_code() {
    let server = default_server();
    let c = connect_with_callback(&server.url("/echo"), options()).unwrap();
    c.send_text("dropped by the missing callback").unwrap();
    assert!(matches!(c.wait_for_close(Some(Duration::from_millis(100))), Err(Error::Timeout(Operation::Close))));
    assert!(c.is_open(), "a timed-out wait changes nothing");
    c.close(CloseCode(4001), "bye").unwrap();
    let info = c.wait_for_close(Some(5 * SEC)).unwrap();
    assert_eq!(info.code, Some(CloseCode(4001)));
    assert_eq!(server.codes(1), [4001]);
}

#[test]
fn negotiates_the_servers_preferred_subprotocol() {
    let server = TestServer::start(Config {
        subprotocols: SubprotocolPolicy::Preferred(vec!["v2".into(), "v1".into()]),
        ..Config::default()
    });
    let c = connect(&server.url("/echo"), options().subprotocol("v1").subprotocol("v2")).unwrap();
    assert_eq!(c.protocol(), Some("v2"));
    let c = connect(&server.url("/echo"), options().subprotocol("v3")).unwrap();
    assert_eq!(c.protocol(), None);
}

#[test]
fn unknown_path_is_a_rejected_handshake_with_status_404() {
    let server = default_server();
    match connect(&server.url("/nope"), options()) {
        Err(Error::Handshake(HandshakeError::Rejected { status, headers })) => {
            assert_eq!(status, 404);
            assert!(!headers.is_empty());
        }
        other => panic!("expected a 404 rejection, got {other:?}"),
    }
}

#[test]
fn invalid_urls_and_wss_give_typed_errors() {
    match connect("http://localhost/", options()) {
        Err(Error::InvalidUrl { url, reason }) => {
            assert_eq!(url, "http://localhost/");
            assert!(matches!(reason, UrlError::UnsupportedScheme { .. }));
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    assert!(matches!(
        connect("ws://h:99999/", options()),
        Err(Error::InvalidUrl { reason: UrlError::InvalidPort { .. }, .. })
    ));
    assert!(matches!(connect("ws://h/#x", options()), Err(Error::InvalidUrl { reason: UrlError::Fragment, .. })));
    let err = connect("wss://127.0.0.1:1/", options()).unwrap_err();
    if cfg!(feature = "tls") {
        // With TLS built in, wss:// is dialled like ws:// (nothing listens on port 1).
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    } else {
        assert!(matches!(err, Error::TlsUnsupported));
        assert!(err.to_string().contains("TLS (wss://) is not in this build"));
    }
    assert!(matches!(connect("ws://name.invalid/", options()), Err(Error::Resolve { .. })));
}

#[test]
fn connects_over_ipv6_loopback() {
    let Ok(server) = TestServer::start_at("[::1]:0".parse().unwrap(), Config::default()) else {
        eprintln!("skipped: IPv6 loopback is unavailable");
        return;
    };
    let url = server.url("/echo");
    assert!(url.starts_with("ws://[::1]:"), "{url}");
    let mut c = connect(&url, options()).unwrap();
    assert!(c.peer_addr().unwrap().is_ipv6());
    c.send_text("v6").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("v6".into()));
}

#[test]
fn keepalive_pings_keep_a_connection_to_an_idle_timeout_server_alive() {
    let server = TestServer::start(Config {
        idle_timeout: Some(Duration::from_millis(400)),
        ping_interval: None,
        ..Config::default()
    });
    // Without pings the server closes us for idleness.
    let mut quiet = connect(&server.url("/echo"), options()).unwrap();
    match quiet.read_message(Some(3 * SEC)) {
        Err(Error::Closed { code, .. }) => assert_eq!(code, Some(CloseCode::GOING_AWAY)),
        other => panic!("expected an idle close, got {other:?}"),
    }
    // With pings every 100 ms it stays open well past the idle timeout.
    let mut c = connect(&server.url("/echo"), options().ping_interval(Duration::from_millis(100))).unwrap();
    match c.read_message(Some(Duration::from_millis(1200))) {
        Err(Error::Timeout(Operation::Read)) => {}
        other => panic!("expected a plain read timeout, got {other:?}"),
    }
    assert!(c.is_open());
    c.send_text("alive").unwrap();
    assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text("alive".into()));
}

#[test]
fn keepalive_runs_only_while_reading_and_poll_keeps_it_going_between_reads() {
    let server = TestServer::start(Config {
        idle_timeout: Some(Duration::from_millis(400)),
        ping_interval: None,
        ..Config::default()
    });
    let pinging = || options().ping_interval(Duration::from_millis(100));
    // A client that does not read sends no pings, whatever its ping interval: the server idles it out.
    let mut busy = connect(&server.url("/echo"), pinging()).unwrap();
    thread::sleep(Duration::from_millis(900));
    match busy.read_message(Some(3 * SEC)) {
        Err(Error::Closed { code, .. }) => assert_eq!(code, Some(CloseCode::GOING_AWAY)),
        other => panic!("expected an idle close, got {other:?}"),
    }
    // Polling every 50 ms between other work keeps the pings going well past the idle timeout.
    let mut c = connect(&server.url("/echo"), pinging()).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        assert_eq!(c.poll().unwrap(), None);
        thread::sleep(Duration::from_millis(50));
    }
    assert!(c.is_open());
    c.send_text("alive").unwrap();
    let echoed = loop {
        if let Some(m) = c.poll().unwrap() {
            break m;
        }
        assert!(started.elapsed() < 10 * SEC, "no echo");
        thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(echoed, Message::Text("alive".into()), "poll returns a message that arrived");
}

#[test]
fn unanswered_keepalive_ping_fails_with_a_pong_timeout() {
    let server = TestServer::start(Config { auto_pong: false, ping_interval: None, ..Config::default() });
    let mut c = connect(
        &server.url("/echo"),
        options().ping_interval(Duration::from_millis(100)).pong_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let started = Instant::now();
    match c.read_message(Some(5 * SEC)) {
        Err(Error::Timeout(Operation::Pong)) => {}
        other => panic!("expected a pong timeout, got {other:?}"),
    }
    assert!(started.elapsed() < 2 * SEC);
    assert!(!c.is_open());
    assert!(matches!(c.read_message(Some(SEC)), Err(Error::Closed { code: Some(CloseCode::ABNORMAL), .. })));
    assert_eq!(server.codes(1), [1001]);
}

#[test]
fn check_health_notices_a_server_that_went_away() {
    let (close_tx, close_rx) = mpsc::channel::<()>();
    let addr = raw_ws_server(move |stream| {
        let _ = close_rx.recv_timeout(10 * SEC);
        drop(stream);
    });
    let mut c = connect(&format!("ws://{addr}/"), options()).unwrap();
    assert!(c.check_health());
    close_tx.send(()).unwrap();
    let deadline = Instant::now() + 5 * SEC;
    while c.check_health() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!c.check_health());
    assert!(!c.is_open());
    assert!(matches!(c.read_message(Some(SEC)), Err(Error::Closed { code: Some(CloseCode::ABNORMAL), .. })));
}

#[test]
fn server_protocol_violation_fails_the_connection_with_1002() {
    // A server that sends a masked frame (servers must not mask).
    let (got_tx, got_rx) = mpsc::channel();
    let addr = raw_ws_server(move |mut stream| {
        let mut frame = Vec::new();
        wsloop::proto::encode_frame(&mut frame, wsloop::proto::OpCode::Text, true, 0, Some([1, 2, 3, 4]), b"masked");
        stream.write_all(&frame).unwrap();
        // Read the client's close frame, then close TCP like a server does.
        stream.set_read_timeout(Some(5 * SEC)).unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        got_tx.send(buf[..n].to_vec()).unwrap();
    });
    let mut c = connect(&format!("ws://{addr}/"), options()).unwrap();
    match c.read_message(Some(5 * SEC)) {
        Err(Error::Protocol(e)) => {
            assert_eq!(e, ProtocolError::MaskedServerFrame);
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let close = got_rx.recv_timeout(5 * SEC).unwrap();
    // A masked close frame whose status code, unmasked, is 1002.
    assert_eq!(close[0], 0x88);
    let key = [close[2], close[3], close[4], close[5]];
    let code = u16::from_be_bytes([close[6] ^ key[0], close[7] ^ key[1]]);
    assert_eq!(code, 1002);
    assert!(matches!(c.send_text("late"), Err(Error::Closed { code: Some(CloseCode::PROTOCOL_ERROR), .. })));
}

#[test]
fn errors_display_what_happened() {
    let e = client::Error::Timeout(Operation::Read);
    assert!(e.to_string().contains("still usable"));
    assert!(e.keeps_connection());
}

#[test]
fn a_metrics_collector_counts_what_the_client_does() {
    let server = default_server();
    let collector = Arc::new(wsloop::metrics::MetricsCollector::new());
    let mut client = connect(&server.url("/echo"), options().metrics(collector.clone())).unwrap();
    client.send_text("one").unwrap();
    client.send_text("two").unwrap();
    client.send_binary(&[1, 2, 3]).unwrap();
    for _ in 0..3 {
        client.read_message(Some(Duration::from_secs(5))).unwrap();
    }
    client.close_and_wait(CloseCode::NORMAL, "done", Some(Duration::from_secs(5))).unwrap();
    drop(client);
    let snap = collector.snapshot();
    assert_eq!(snap.connections_upgraded, 1);
    assert_eq!(snap.active_connections, 0);
    assert_eq!((snap.text_messages_sent, snap.binary_messages_sent), (2, 1));
    assert_eq!((snap.text_messages_received, snap.binary_messages_received), (2, 1));
    assert_eq!(snap.closed_with(wsloop::metrics::CloseCodeBucket::Normal), 1);
}

//! The connection gauges as a user reads them: `active_connections` counts WebSockets only (not the
//! plain HTTP connection scraping `/metrics`), and `tcp_connections{phase=...}` counts every held TCP
//! connection once, in the phase it is in (handshake, http, open, closing), down to zero when all are
//! gone. Read over plain HTTP from `/metrics` as Prometheus would, and from `Handle::metrics()`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use prometheus_parse::{Scrape, Value};
use wsloop::metrics::{MetricsSnapshot, TcpPhase};
use wsloop::server::{Config, ConnectOptions, Ctx, Handle, Handler, Message, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);

/// Echoes, and starts the close handshake itself when told `"bye"`.
struct EchoOrClose;
impl Handler for EchoOrClose {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text("bye") => ctx.close(wsloop::proto::CloseCode::NORMAL, "bye"),
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn server(configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        metrics_path: Some("/metrics".into()),
        health_path: Some("/healthz".into()),
        // Long enough that a close handshake the peer never answers, or a request never finished, is
        // still there when the test looks.
        close_timeout: 30 * SEC,
        handshake_timeout: 30 * SEC,
        ..Config::default()
    };
    configure(&mut config);
    let mut server = Server::new(config);
    server.register_handler("/ws", |_| EchoOrClose);
    server.start().unwrap()
}

/// The connection gauges of one scrape.
#[derive(Debug, PartialEq)]
struct Gauges {
    active: f64,
    /// `tcp_connections` by phase label.
    tcp: BTreeMap<String, f64>,
}

impl Gauges {
    fn expect(active: f64, handshake: f64, http: f64, open: f64, closing: f64) -> Self {
        let tcp = [("closing", closing), ("handshake", handshake), ("http", http), ("open", open)];
        Self { active, tcp: tcp.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
    }
}

/// Parses a `/metrics` body: `wsloop_active_connections` and the `wsloop_tcp_connections` family, which
/// must be gauges and carry a `phase` label on every sample (no unlabelled total beside them).
fn gauges(body: &str) -> Gauges {
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let gauge = |s: &prometheus_parse::Sample| match s.value {
        Value::Gauge(v) => v,
        ref other => panic!("{} is not a gauge: {other:?}", s.metric),
    };
    let active: Vec<f64> =
        scrape.samples.iter().filter(|s| s.metric == "wsloop_active_connections").map(gauge).collect();
    assert_eq!(active.len(), 1, "{body}");
    let mut tcp = BTreeMap::new();
    for s in scrape.samples.iter().filter(|s| s.metric == "wsloop_tcp_connections") {
        let phase = s.labels.get("phase").unwrap_or_else(|| panic!("unlabelled tcp_connections sample: {body}"));
        assert!(tcp.insert(phase.to_owned(), gauge(s)).is_none(), "phase {phase} twice");
    }
    Gauges { active: active[0], tcp }
}

/// Sends one request on `stream` and reads its response (by Content-Length); returns status and body.
fn request(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(10 * SEC)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if buf.len() >= end + len {
                let status = head[9..12].parse().unwrap();
                return (status, String::from_utf8_lossy(&buf[end..end + len]).into_owned());
            }
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One scrape on a fresh plain HTTP connection (which is itself counted, as http, while it is served).
fn scrape(addr: SocketAddr) -> Gauges {
    let mut stream = TcpStream::connect(addr).unwrap();
    let (status, body) = request(&mut stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    gauges(&body)
}

/// `Handle::metrics()` says the reactor settled where the test expects: `tcp_connections` per phase
/// (handshake, http, open, closing), and their sum as the total.
fn settled(handle: &Handle, phases: [u64; TcpPhase::COUNT]) -> bool {
    let m = handle.metrics();
    m.tcp_connections_by_phase == phases && m.tcp_connections == phases.iter().sum::<u64>()
}

fn all_zero(m: &MetricsSnapshot) -> bool {
    m.active_connections == 0 && m.tcp_connections == 0 && m.tcp_connections_by_phase == [0; TcpPhase::COUNT]
}

#[test]
fn seven_websockets_and_a_scrape_read_seven_then_phases_then_zero() {
    let server = server(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();

    // Seven WebSockets open. Each upgrade is counted before its 101 goes out, so the first scrape
    // right after the last 101 sees all seven: as WebSockets, and the scrape itself as the one http.
    let mut ws: Vec<TestClient> = (0..7).map(|_| TestClient::connect(addr, "/ws")).collect();
    assert_eq!(scrape(addr), Gauges::expect(7.0, 0.0, 1.0, 7.0, 0.0));
    // The scrape's connection is gone again, and it went from http (a removal that subtracted from
    // another phase would leave http at 1 and wrap that phase below zero).
    assert!(eventually(5 * SEC, || settled(&handle, [0, 0, 7, 0])), "{:?}", handle.metrics());

    // A peer-initiated close: the server answers and closes TCP, the WebSocket is gone.
    let mut gone = ws.remove(0);
    gone.close(1000, "");
    assert!(matches!(gone.recv_ok(), Got::Close(Some((1000, _)))));
    assert!(gone.wait_eof(5 * SEC));
    // Two server-initiated closes that the peers never answer: closing, and still WebSockets.
    for c in &mut ws[..2] {
        c.send_text("bye");
    }
    // A fresh connection that sent nothing, and one with half a request head: handshake.
    let fresh = TcpStream::connect(addr).unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n").unwrap();
    // A keep-alive connection that has served a plain request and stays: http.
    let mut kept = TcpStream::connect(addr).unwrap();
    assert_eq!(request(&mut kept, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), (200, "ok\n".to_owned()));
    assert!(eventually(5 * SEC, || settled(&handle, [2, 1, 4, 2])), "{:?}", handle.metrics());
    // The same, scraped on the kept-alive connection (so it is the one http connection).
    let (status, body) = request(&mut kept, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(gauges(&body), Gauges::expect(6.0, 2.0, 1.0, 4.0, 2.0));
    let m = handle.metrics();
    assert_eq!(m.active_connections, m.tcp_connections_in(TcpPhase::Open) + m.tcp_connections_in(TcpPhase::Closing));

    // Everything goes, by every path: peers that never answered our close, open WebSockets, a fresh and
    // a half-sent handshake, a kept-alive HTTP connection (each by EOF); a refused upgrade and a refused
    // plain request (each closed by the server after its error response).
    drop((ws, fresh, half, kept));
    let refused = raw_request(addr, &upgrade_request("/unrouted", ""));
    assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");
    let chunked = raw_request(addr, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
    // Zero, not "wrapped below zero and back": a double decrement anywhere leaves a huge value.
    assert!(eventually(5 * SEC, || all_zero(&handle.metrics())), "{:?}", handle.metrics());
    assert_eq!(scrape(addr), Gauges::expect(0.0, 0.0, 1.0, 0.0, 0.0));
    server.stop();
}

#[test]
fn an_idle_timeout_close_that_is_never_answered_counts_as_closing() {
    // The idle close is started by a timer, not by a read or a handler call.
    let server = server(|c| c.idle_timeout = Some(Duration::from_millis(300)));
    let handle = server.handle();
    let c = TestClient::connect(server.local_addr(), "/ws");
    assert!(settled(&handle, [0, 0, 1, 0]), "{:?}", handle.metrics());
    // The client reads nothing, so it never answers the server's close: closing until the close
    // timeout (30 s) or its EOF.
    assert!(eventually(5 * SEC, || settled(&handle, [0, 0, 0, 1])), "{:?}", handle.metrics());
    assert_eq!(handle.metrics().idle_timeouts, 1);
    assert_eq!(handle.metrics().active_connections, 1);
    drop(c);
    assert!(eventually(5 * SEC, || all_zero(&handle.metrics())), "{:?}", handle.metrics());
    server.stop();
}

/// Does nothing: an in-loop client that stays open until the server closes it.
struct Quiet(Arc<AtomicUsize>);
impl Handler for Quiet {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn on_connect_error(&mut self, _error: &wsloop::server::ConnectError) {
        self.0.fetch_add(100, Ordering::SeqCst);
    }
}

#[test]
fn in_loop_clients_count_as_handshake_until_open_and_leave_no_count_behind() {
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    let handle = engine.handle();

    // A "server" that takes the upgrade request and never answers: the client waits for its 101.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let events = Arc::new(AtomicUsize::new(0));
    handle.connect(silent.local_addr().unwrap(), "localhost", "/", ConnectOptions::default(), Quiet(events.clone()));
    let (mut peer, _) = silent.accept().unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = peer.read(&mut chunk).unwrap();
        assert!(n > 0);
        head.extend_from_slice(&chunk[..n]);
    }
    assert!(settled(&handle, [1, 0, 0, 0]), "{:?}", handle.metrics());
    assert_eq!(handle.metrics().active_connections, 0);
    // It gives up (the peer closed during the handshake): reported, and no longer counted.
    drop(peer);
    assert!(eventually(5 * SEC, || events.load(Ordering::SeqCst) == 100));
    assert!(eventually(5 * SEC, || all_zero(&handle.metrics())), "{:?}", handle.metrics());

    // One that opens: handshake, then open (and a WebSocket) on the client engine too.
    let server = server(|_| {});
    handle.connect(server.local_addr(), "localhost", "/ws", ConnectOptions::default(), Quiet(events.clone()));
    assert!(eventually(5 * SEC, || events.load(Ordering::SeqCst) == 101));
    assert!(settled(&handle, [0, 0, 1, 0]), "{:?}", handle.metrics());
    assert_eq!(handle.metrics().active_connections, 1);
    // The server goes away (1001, then TCP closes): the client's connection is gone.
    server.stop();
    assert!(eventually(5 * SEC, || all_zero(&handle.metrics())), "{:?}", handle.metrics());
    engine.stop();
}

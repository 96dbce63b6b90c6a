//! Plain HTTP on the WebSocket port (built-in endpoints, an application handler, keep-alive, limits),
//! handing sockets over with `Handle::adopt`, and the metrics those paths record.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use wsloop::http::{HttpRequest, HttpResponse};
use wsloop::metrics::{CloseCodeBucket, HandshakeFailure};
use wsloop::server::{Config, Ctx, Handler, Message, RunningServer, Server};

struct Echo;
impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        metrics_path: Some("/metrics".into()),
        health_path: Some("/healthz".into()),
        // Clients in these tests do not answer the shutdown close: do not wait long for them.
        close_timeout: Duration::from_millis(200),
        ..Config::default()
    }
}

fn start_with(configure: impl FnOnce(&mut Server)) -> RunningServer {
    let mut server = Server::new(config());
    server.register_handler("/ws", |_| Echo);
    configure(&mut server);
    server.start().unwrap()
}

/// Sends `request` and reads responses until `count` complete ones arrived (by Content-Length).
fn exchange(stream: &mut TcpStream, request: &str, count: usize) -> Vec<(u16, String)> {
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while out.len() < count {
        if let Some((status, body, used)) = parse_response(&buf) {
            out.push((status, body));
            buf.drain(..used);
            continue;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} responses", out.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    out
}

fn parse_response(buf: &[u8]) -> Option<(u16, String, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status: u16 = head[9..12].parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let body_len = if head.starts_with("HTTP/1.1") && buf.len() >= end + len { len } else { return None };
    Some((status, String::from_utf8_lossy(&buf[end..end + body_len]).into_owned(), end + body_len))
}

#[test]
fn health_and_metrics_endpoints_answer_on_the_websocket_port() {
    let server = start_with(|_| {});
    let health = raw_request(server.local_addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(health.ends_with("ok\n"));
    let mut ws = TestClient::connect(server.local_addr(), "/ws");
    ws.send_text("hi");
    assert_eq!(ws.recv_ok(), Got::Text("hi".into()));
    let metrics = raw_request(server.local_addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    let body = &metrics[metrics.find("\r\n\r\n").unwrap() + 4..];
    let lines: Vec<std::io::Result<String>> = body.lines().map(|l| Ok(l.to_owned())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text");
    let value = |name: &str| {
        scrape.samples.iter().find(|s| s.metric == name).map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
    };
    assert_eq!(value("wsloop_connections_upgraded_total"), Some(1.0));
    assert_eq!(value("wsloop_text_messages_received_total"), Some(1.0));
    // One WebSocket; this scrape is a plain HTTP connection, counted by phase but not as a WebSocket.
    assert_eq!(value("wsloop_active_connections"), Some(1.0), "the websocket, not this scrape");
    let phase = |p: &str| {
        scrape.samples.iter().find(|s| s.metric == "wsloop_tcp_connections" && s.labels.get("phase") == Some(p)).map(
            |s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            },
        )
    };
    assert_eq!(phase("open"), Some(1.0));
    assert_eq!(phase("http"), Some(1.0), "this scrape");
    assert_eq!((phase("handshake"), phase("closing")), (Some(0.0), Some(0.0)));
    server.stop();
}

#[test]
fn keep_alive_serves_pipelined_requests_then_an_upgrade_on_one_connection() {
    let server = start_with(|_| {});
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    let responses = exchange(
        &mut stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
        3,
    );
    let statuses: Vec<u16> = responses.iter().map(|r| r.0).collect();
    assert_eq!(statuses, vec![200, 404, 426], "{responses:?}");
    // The same connection can still upgrade.
    stream.write_all(upgrade_request("/ws", "").as_bytes()).unwrap();
    let mut c = TestClient::from_stream_after_handshake(stream);
    c.send_text("after http");
    assert_eq!(c.recv_ok(), Got::Text("after http".into()));
    server.stop();
}

#[test]
fn head_has_no_body_and_connection_close_closes() {
    let server = start_with(|_| {});
    let head = raw_request(server.local_addr(), "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK") && head.contains("Content-Length: 3"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body after the head: {head:?}");
    server.stop();
}

#[test]
fn the_application_handler_answers_first_and_falls_through_with_none() {
    let server = start_with(|s| {
        s.set_http_handler(|req: &HttpRequest| match req.path.as_str() {
            "/hello" => Some(HttpResponse::text(200, format!("hello {}", String::from_utf8_lossy(&req.body)))),
            "/boom" => panic!("handler panic on purpose"),
            _ => None,
        });
    });
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    let responses = exchange(
        &mut stream,
        "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nworldGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        2,
    );
    assert_eq!(responses[0], (200, "hello world".into()));
    assert_eq!(responses[1], (200, "ok\n".into()));
    let boom = raw_request(server.local_addr(), "GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
    // The loop lives on.
    let ok = raw_request(server.local_addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    server.stop();
}

#[test]
fn oversized_and_chunked_requests_are_refused_with_their_status() {
    let server = start_with(|_| {});
    let big = format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 1 << 20);
    assert!(raw_request(server.local_addr(), &big).starts_with("HTTP/1.1 413"));
    let chunked = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(raw_request(server.local_addr(), chunked).starts_with("HTTP/1.1 411"));
    let huge_head = format!("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert!(raw_request(server.local_addr(), &huge_head).starts_with("HTTP/1.1 431"));
    server.stop();
}

#[test]
fn close_codes_and_handshake_failures_are_counted_by_kind() {
    let server = start_with(|_| {});
    let handle = server.handle();
    let mut c = TestClient::connect(server.local_addr(), "/ws");
    c.close(1000, "");
    assert!(matches!(c.recv_ok(), Got::Close(Some((1000, _)))));
    assert!(c.wait_eof(Duration::from_secs(5)));
    let _ = raw_request(server.local_addr(), &upgrade_request("/unrouted", ""));
    assert!(eventually(Duration::from_secs(5), || {
        let m = handle.metrics();
        m.closed_with(CloseCodeBucket::Normal) == 1 && m.handshake_failures_for(HandshakeFailure::NotFound) == 1
    }));
    server.stop();
}

#[test]
fn adopted_sockets_are_upgraded_with_the_bytes_already_read() {
    let server = start_with(|_| {});
    let handle = server.handle();
    // Another "HTTP server" accepts and reads the request head (and a frame sent right behind it).
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = front.local_addr().unwrap();
    let acceptor = std::thread::spawn(move || {
        let (mut stream, _) = front.accept().unwrap();
        let mut already = Vec::new();
        let mut chunk = [0u8; 1024];
        while !already.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).unwrap();
            already.extend_from_slice(&chunk[..n]);
        }
        handle.adopt(stream, already);
    });
    let mut stream = TcpStream::connect(front_addr).unwrap();
    let mut bytes = upgrade_request("/ws", "").into_bytes();
    bytes.extend(client_frame(wsloop::proto::OpCode::Text, true, b"early"));
    stream.write_all(&bytes).unwrap();
    acceptor.join().unwrap();
    let mut c = TestClient::from_stream_after_handshake(stream);
    assert_eq!(c.recv_ok(), Got::Text("early".into()));
    c.send_text("later");
    assert_eq!(c.recv_ok(), Got::Text("later".into()));
    server.stop();
}

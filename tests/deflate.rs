//! permessage-deflate over real sockets: the server accepts it, the blocking and in-loop clients offer
//! it, 1 MiB messages round-trip compressed both ways, a broadcast is compressed once per reactor, a
//! bad answer fails the client's handshake, and idle deflate connections own no zlib state.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::TestClient;
use wsloop::client::{self, ClientOptions, Error, Message};
use wsloop::proto::deflate::{DeflateConfig, DeflateMode, DeflateResponseError};
use wsloop::proto::handshake::{parse_request, write_response, HandshakeError, HandshakeLimits};
use wsloop::proto::{ConnectionConfig, RSV1};
use wsloop::server::{self, Config, ConnectOptions, Ctx, Handler, RunningServer, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        let _ = match message {
            server::Message::Text(t) => ctx.send_text(t),
            server::Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn serve(mode: DeflateMode, threads: usize) -> RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads,
        deflate: DeflateConfig::with_mode(mode),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/", |_| Echo);
    server.start().unwrap()
}

/// A megabyte of text that compresses, as JSON-ish lines do.
fn megabyte_text() -> String {
    let mut s = String::with_capacity(1 << 20);
    let mut i = 0u32;
    while s.len() < (1 << 20) {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{}\",\"score\":{}}}\n",
            i % 1000,
            i.wrapping_mul(7919) % 10007
        ));
        i += 1;
    }
    s.truncate(1 << 20);
    s
}

fn options(mode: DeflateMode) -> ClientOptions {
    ClientOptions::default().deflate(DeflateConfig::with_mode(mode)).read_timeout(Duration::from_secs(20))
}

#[test]
fn one_mib_text_and_binary_round_trip_compressed_in_each_mode() {
    let text = megabyte_text();
    let binary: Vec<u8> = text.bytes().rev().collect();
    for (server_mode, client_mode) in
        [(DeflateMode::Shared, DeflateMode::Shared), (DeflateMode::Dedicated, DeflateMode::Dedicated)]
    {
        let server = serve(server_mode, 1);
        let url = format!("ws://{}/", server.local_addr());
        let before = server.handle().metrics().messages_compressed;
        let mut c = client::connect(&url, options(client_mode)).unwrap();
        for _ in 0..2 {
            c.send_text(&text).unwrap();
            assert_eq!(c.read_message(None).unwrap(), Message::Text(text.clone()));
            c.send_binary(&binary).unwrap();
            assert_eq!(c.read_message(None).unwrap(), Message::Binary(binary.clone()));
        }
        thread::sleep(Duration::from_millis(200));
        let compressed = server.handle().metrics().messages_compressed - before;
        assert_eq!(compressed, 4, "{server_mode:?}: every echo compressed");
        drop(c);
        server.stop();
    }
}

#[test]
fn the_server_answers_the_offer_and_its_frames_carry_rsv1() {
    let server = serve(DeflateMode::Shared, 1);
    let mut c = TestClient::connect_with(
        server.local_addr(),
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        ConnectionConfig::default(),
    );
    assert!(
        c.response_head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ),
        "{}",
        c.response_head
    );
    // An uncompressed message is fine; the echo comes back compressed (RSV1) and shorter.
    let text = "abcdefgh".repeat(1000);
    let mut frame = Vec::new();
    c.conn.send_text(&text, &mut frame).unwrap();
    c.send_raw(&frame);
    let mut head = [0u8; 2];
    c.stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x80 | RSV1 | 0x1, "FIN, RSV1, text");
    assert!(usize::from(head[1]) < 126, "8000 bytes compressed into {} bytes", head[1]);
    server.stop();
}

#[test]
fn a_malformed_offer_is_declined_and_the_connection_opens_plain() {
    let server = serve(DeflateMode::Shared, 1);
    let c = TestClient::connect_with(
        server.local_addr(),
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n",
        ConnectionConfig::default(),
    );
    assert!(!c.response_head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{}", c.response_head);
    let off = serve(DeflateMode::Off, 1);
    let c = TestClient::connect_with(
        off.local_addr(),
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ConnectionConfig::default(),
    );
    assert!(!c.response_head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{}", c.response_head);
    server.stop();
    off.stop();
}

#[test]
fn a_broadcast_is_compressed_once_per_reactor() {
    let threads = 2;
    let server = serve(DeflateMode::Shared, threads);
    let url = format!("ws://{}/", server.local_addr());
    let mut clients: Vec<_> = (0..30).map(|_| client::connect(&url, options(DeflateMode::Shared)).unwrap()).collect();
    let mut plain: Vec<_> = (0..4).map(|_| client::connect(&url, ClientOptions::default()).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    let before = server.handle().metrics().messages_compressed;
    let text = megabyte_text()[..100_000].to_owned();
    server.handle().broadcast_text(&text);
    for c in clients.iter_mut().chain(plain.iter_mut()) {
        assert_eq!(c.read_message(Some(Duration::from_secs(20))).unwrap(), Message::Text(text.clone()));
    }
    thread::sleep(Duration::from_millis(200));
    let compressions = server.handle().metrics().messages_compressed - before;
    assert!((1..=threads as u64).contains(&compressions), "{compressions} compressions for 30 connections");
    server.stop();
}

#[test]
fn an_in_loop_client_offers_deflate_and_round_trips_compressed() {
    let server = serve(DeflateMode::Dedicated, 1);
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    struct Once(mpsc::Sender<String>, String);
    impl Handler for Once {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) {
            let _ = ctx.send_text(&self.1);
        }
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: server::Message<'_>) {
            if let server::Message::Text(t) = message {
                let _ = self.0.send(t.to_owned());
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let text = megabyte_text();
    let options =
        ConnectOptions { deflate: DeflateConfig::with_mode(DeflateMode::Shared), ..ConnectOptions::default() };
    engine.handle().connect(server.local_addr(), "localhost", "/", options, Once(tx, text.clone()));
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), text);
    // The client compressed its message and the server its echo. A reactor publishes its thread's
    // count once per loop turn: wait for it (the read raced it once under load).
    for handle in [engine.handle(), server.handle()] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while handle.metrics().messages_compressed == 0 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(handle.metrics().messages_compressed, 1);
    }
    engine.stop();
    server.stop();
}

/// A one-shot server that answers the upgrade with `extensions`.
fn fake_server(extensions: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let request = loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some((request, _)) = parse_request(&buf, &HandshakeLimits::default()).unwrap() {
                break request;
            }
        };
        let mut out = Vec::new();
        write_response(&mut out, &request.key, None, Some(extensions), &[]).unwrap();
        let _ = s.write_all(&out);
        thread::sleep(Duration::from_millis(500));
    });
    addr
}

#[test]
fn a_bad_deflate_answer_fails_the_client_handshake_with_a_typed_error() {
    let addr = fake_server("permessage-deflate; server_max_window_bits=16");
    let err = client::connect(&format!("ws://{addr}/"), options(DeflateMode::Dedicated)).unwrap_err();
    let Error::Handshake(HandshakeError::InvalidDeflateResponse(e)) = err else { panic!("{err:?}") };
    assert_eq!(e, DeflateResponseError::InvalidValue { name: "server_max_window_bits".into(), value: "16".into() });
    let addr = fake_server("permessage-deflate");
    let err = client::connect(&format!("ws://{addr}/"), options(DeflateMode::Shared)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handshake(HandshakeError::InvalidDeflateResponse(DeflateResponseError::TakeoverNotDropped))
        ),
        "{err:?}"
    );
}

#[test]
fn idle_shared_deflate_connections_own_no_zlib_state() {
    let server = serve(DeflateMode::Shared, 1);
    let url = format!("ws://{}/", server.local_addr());
    // Warm the reactor's shared streams (and this thread's), then hold idle connections.
    let mut first = client::connect(&url, options(DeflateMode::Shared)).unwrap();
    first.send_text(&"warm ".repeat(100)).unwrap();
    first.read_message(None).unwrap();
    let before = wsloop::sys::zlib_bytes();
    let idle: Vec<_> = (0..50).map(|_| client::connect(&url, options(DeflateMode::Shared)).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(wsloop::sys::zlib_bytes(), before, "50 idle deflate connections allocated zlib state");
    drop(idle);
    server.stop();
}

#[test]
fn send_uncompressed_overrides_the_threshold_per_message() {
    struct Both;
    impl Handler for Both {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
            let _ = ctx.send_uncompressed(message);
            let _ = ctx.send_text(&"abcdefgh".repeat(1000));
        }
    }
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        deflate: DeflateConfig::with_mode(DeflateMode::Shared),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/", |_| Both);
    let server = server.start().unwrap();
    let mut c = TestClient::connect_with(
        server.local_addr(),
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ConnectionConfig::default(),
    );
    let text = "abcdefgh".repeat(1000);
    let mut frame = Vec::new();
    c.conn.send_text(&text, &mut frame).unwrap();
    c.send_raw(&frame);
    // First the uncompressed echo: FIN, no RSV1, text, 8000 bytes (16-bit length).
    let mut head = [0u8; 4];
    c.stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x81, "no RSV1 on the uncompressed send");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 8000);
    let mut payload = vec![0u8; 8000];
    c.stream.read_exact(&mut payload).unwrap();
    assert_eq!(payload, text.as_bytes());
    // Then the same text through send_text: compressed.
    let mut head = [0u8; 2];
    c.stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x80 | RSV1 | 0x1);
    server.stop();
}

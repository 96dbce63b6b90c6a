//! The engine over real sockets on 127.0.0.1: echo, fragmentation, large and pipelined messages, ping/pong,
//! both close directions, timeouts, limits, backpressure, panic isolation, reactors, broadcast and publish,
//! shutdown, and buffer ownership.

mod common;

use std::time::Duration;

use common::*;
use wsloop::proto::{ConnectionConfig, OpCode};
use wsloop::server::{BackpressurePolicy, Config, Ctx, Handler, Message, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);

/// Echo, plus a few commands: "panic", "close", "sub T", "unsub T", "pub T MSG", "bcast MSG", "flood N".
struct TestHandler;

impl Handler for TestHandler {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match message {
            Message::Text("panic") => panic!("handler panic on purpose"),
            Message::Text("close") => ctx.close(wsloop::proto::CloseCode(4000), "you asked").unwrap(),
            Message::Text(t) if t.starts_with("sub ") => ctx.subscribe(&t[4..]),
            Message::Text(t) if t.starts_with("unsub ") => ctx.unsubscribe(&t[6..]),
            Message::Text(t) if t.starts_with("pub ") => {
                let (topic, msg) = t[4..].split_once(' ').unwrap();
                ctx.publish_text(topic, msg);
            }
            Message::Text(t) if t.starts_with("bcast ") => ctx.broadcast_text(&t[6..]),
            Message::Text(t) if t.starts_with("flood ") => {
                let n: usize = t[6..].parse().unwrap();
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..n {
                    if ctx.send_binary(&chunk).is_err() {
                        break;
                    }
                }
            }
            Message::Text(t) => {
                let _ = ctx.send_text(t);
            }
            Message::Binary(b) => {
                let _ = ctx.send_binary(b);
            }
        }
    }
}

fn start(mut config: Config) -> RunningServer {
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.io_uring = io_uring();
    let mut server = Server::new(config);
    server.register_handler("*", |_| TestHandler);
    start_server(server)
}

fn one_thread() -> Config {
    // Most clients here do not answer the shutdown close: do not wait long for them.
    Config { threads: 1, close_timeout: Duration::from_millis(300), ..Config::default() }
}

#[test]
fn echoes_text_as_text_and_binary_as_binary() {
    let server = start(one_thread());
    let mut c = TestClient::connect(server.local_addr(), "/any/path?x=1");
    c.send_text("héllo");
    assert_eq!(c.recv_ok(), Got::Text("héllo".into()));
    c.send_binary(&[0, 1, 2, 255]);
    assert_eq!(c.recv_ok(), Got::Binary(vec![0, 1, 2, 255]));
    server.stop();
}

#[test]
fn echoes_fragmented_messages_with_interleaved_ping() {
    let server = start(one_thread());
    let mut c = TestClient::connect(server.local_addr(), "/");
    let mut bytes = client_frame(OpCode::Text, false, b"frag");
    bytes.extend(client_frame(OpCode::Ping, true, b"mid"));
    bytes.extend(client_frame(OpCode::Continuation, false, b"men"));
    bytes.extend(client_frame(OpCode::Continuation, true, b"ted"));
    c.send_raw(&bytes);
    assert_eq!(c.recv_ok(), Got::Pong(b"mid".to_vec()));
    assert_eq!(c.recv_ok(), Got::Text("fragmented".into()));
    server.stop();
}

#[test]
fn echoes_a_16_mib_message() {
    let server = start(one_thread());
    let mut c = TestClient::connect(server.local_addr(), "/");
    let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    c.send_binary(&big);
    match c.recv(Duration::from_secs(30)) {
        Some(Got::Binary(b)) => assert!(b == big, "16 MiB echo differs"),
        other => panic!("expected the 16 MiB echo, got {:?}", other.map(|_| "something else")),
    }
    server.stop();
}

#[test]
fn echoes_1000_pipelined_messages_sent_in_one_write() {
    let server = start(one_thread());
    let mut c = TestClient::connect(server.local_addr(), "/");
    let mut bytes = Vec::new();
    for i in 0..1000 {
        bytes.extend(client_frame(OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    c.send_raw(&bytes);
    for i in 0..1000 {
        assert_eq!(c.recv_ok(), Got::Text(format!("m{i}")));
    }
    server.stop();
}

#[test]
fn answers_ping_with_pong_and_pings_quiet_peers() {
    let config = Config { ping_interval: Some(Duration::from_millis(200)), ..one_thread() };
    let server = start(config);
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_ping(b"hi");
    assert_eq!(c.recv_ok(), Got::Pong(b"hi".to_vec()));
    // Quiet: the server pings us (our client answers automatically).
    assert_eq!(c.recv(5 * SEC), Some(Got::Ping(Vec::new())));
    c.send_text("still here");
    assert_eq!(c.recv_ok(), Got::Text("still here".into()));
    server.stop();
}

#[test]
fn client_initiated_close_is_answered_then_server_closes_tcp() {
    let server = start(one_thread());
    let handle = server.handle();
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.close(1000, "done");
    assert_eq!(c.recv_ok(), Got::Close(Some((1000, String::new()))));
    assert!(c.wait_eof(5 * SEC), "server should close TCP after the close handshake");
    assert!(eventually(5 * SEC, || handle.metrics().active_connections == 0));
    server.stop();
}

#[test]
fn server_initiated_close_completes_when_client_answers() {
    let server = start(one_thread());
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_text("close");
    assert_eq!(c.recv_ok(), Got::Close(Some((4000, "you asked".into()))));
    // Our client state machine wrote the reply when it read the close.
    assert!(c.wait_eof(5 * SEC));
    server.stop();
}

#[test]
fn idle_connections_are_closed_with_1001() {
    let config = Config { idle_timeout: Some(Duration::from_millis(300)), ping_interval: None, ..one_thread() };
    let server = start(config);
    let handle = server.handle();
    let mut c = TestClient::connect(server.local_addr(), "/");
    match c.recv(5 * SEC) {
        Some(Got::Close(Some((1001, reason)))) => assert_eq!(reason, "idle timeout"),
        other => panic!("expected an idle close, got {other:?}"),
    }
    assert!(c.wait_eof(5 * SEC));
    assert_eq!(handle.metrics().idle_timeouts, 1);
    server.stop();
}

#[test]
fn half_sent_handshake_times_out() {
    let config = Config { handshake_timeout: Duration::from_millis(300), ..one_thread() };
    let server = start(config);
    let handle = server.handle();
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected EOF after the handshake timeout");
    assert!(eventually(SEC, || handle.metrics().handshake_timeouts == 1));
    server.stop();
}

#[test]
fn unanswered_ping_closes_the_connection() {
    let config = Config {
        ping_interval: Some(Duration::from_millis(200)),
        pong_timeout: Duration::from_millis(300),
        ..one_thread()
    };
    let server = start(config);
    let handle = server.handle();
    // A client that never answers pings.
    let mut c = TestClient::connect_with(
        server.local_addr(),
        "/",
        "",
        ConnectionConfig { auto_pong: false, ..Default::default() },
    );
    assert_eq!(c.recv(5 * SEC), Some(Got::Ping(Vec::new())));
    match c.recv(5 * SEC) {
        Some(Got::Close(Some((1001, reason)))) => assert_eq!(reason, "pong timeout"),
        other => panic!("expected a pong-timeout close, got {other:?}"),
    }
    assert!(c.wait_eof(5 * SEC));
    assert_eq!(handle.metrics().pong_timeouts, 1);
    server.stop();
}

/// A client with a tiny receive buffer, so the server's queue (not the kernel's buffers) holds what it
/// has not read yet.
fn slow_reader(addr: std::net::SocketAddr) -> TestClient {
    use std::io::Write;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.write_all(upgrade_request("/", "").as_bytes()).unwrap();
    TestClient::from_stream_after_handshake(stream)
}

#[test]
fn a_ping_queued_behind_a_draining_backlog_gets_its_pong_time_from_when_it_leaves() {
    let config = Config {
        ping_interval: Some(Duration::from_millis(100)),
        pong_timeout: Duration::from_millis(1500),
        ..one_thread()
    };
    let server = start(config);
    let handle = server.handle();
    let mut c = slow_reader(server.local_addr());
    // 15 MiB queued at once, read at about 6.4 MB/s: the first keepalive ping waits behind ~2.4 s of
    // backlog, longer than the pong timeout. The peer is reading all along, so it must not count as
    // unresponsive: the deadline runs from when the transport last took queued bytes.
    c.send_text("flood 240");
    let mut received = 0;
    while received < 240 {
        match c.recv(5 * SEC) {
            Some(Got::Binary(b)) => {
                assert_eq!(b.len(), 64 * 1024);
                received += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(Got::Ping(_)) => {} // answered by the client's auto-pong
            other => panic!("after {received} messages: {other:?} (pong timeouts {})", handle.metrics().pong_timeouts),
        }
    }
    c.send_text("still open");
    loop {
        match c.recv(5 * SEC) {
            Some(Got::Text(t)) => break assert_eq!(t, "still open"),
            Some(Got::Ping(_)) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    assert_eq!(handle.metrics().pong_timeouts, 0);
    server.stop();
}

#[test]
fn message_over_the_limit_fails_with_1009() {
    let config = Config { max_message_size: 1000, ..one_thread() };
    let server = start(config);
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_binary(&[0; 1001]);
    match c.recv_ok() {
        Got::Close(Some((1009, _))) => {}
        other => panic!("expected 1009, got {other:?}"),
    }
    assert!(c.wait_eof(5 * SEC));
    server.stop();
}

#[test]
fn invalid_utf8_fails_with_1007_and_other_connections_live_on() {
    let server = start(one_thread());
    let mut bystander = TestClient::connect(server.local_addr(), "/");
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_raw(&client_frame(OpCode::Text, true, &[0xff, 0xfe]));
    assert!(matches!(c.recv_ok(), Got::Close(Some((1007, _)))));
    assert!(c.wait_eof(5 * SEC));
    bystander.send_text("fine");
    assert_eq!(bystander.recv_ok(), Got::Text("fine".into()));
    assert_eq!(server.handle().metrics().protocol_errors, 1);
    server.stop();
}

#[test]
fn a_peer_that_never_reads_is_capped_and_others_are_unaffected() {
    let config = Config { max_buffered_bytes: 1 << 20, ..one_thread() };
    let server = start(config);
    let handle = server.handle();
    let mut sluggish = TestClient::connect(server.local_addr(), "/");
    let mut other = TestClient::connect(server.local_addr(), "/");
    // 64 MiB towards a peer that reads nothing: the socket buffers fill, the queue reaches the ceiling.
    sluggish.send_text("flood 1024");
    assert!(eventually(10 * SEC, || handle.metrics().slow_peers_closed == 1), "slow peer should be closed");
    other.send_text("unaffected");
    assert_eq!(other.recv_ok(), Got::Text("unaffected".into()));
    server.stop();
}

#[test]
fn drop_policy_drops_messages_instead_of_closing() {
    let config = Config { max_buffered_bytes: 1 << 20, backpressure: BackpressurePolicy::Drop, ..one_thread() };
    let server = start(config);
    let handle = server.handle();
    let mut sluggish = TestClient::connect(server.local_addr(), "/");
    sluggish.send_text("flood 1024");
    assert!(eventually(10 * SEC, || handle.metrics().messages_dropped > 0));
    assert_eq!(handle.metrics().slow_peers_closed, 0);
    assert_eq!(handle.metrics().active_connections, 1);
    server.stop();
}

#[test]
fn a_panicking_handler_closes_only_its_connection_with_1011() {
    let server = start(one_thread());
    let handle = server.handle();
    let mut victim = TestClient::connect(server.local_addr(), "/");
    let mut other = TestClient::connect(server.local_addr(), "/");
    victim.send_text("panic");
    assert!(matches!(victim.recv_ok(), Got::Close(Some((1011, _)))));
    other.send_text("alive");
    assert_eq!(other.recv_ok(), Got::Text("alive".into()));
    assert_eq!(handle.metrics().handler_panics, 1);
    server.stop();
}

#[test]
fn connections_land_on_both_reactors_and_broadcast_reaches_all() {
    let server = start(Config { threads: 2, ..one_thread() });
    let handle = server.handle();
    let mut clients: Vec<TestClient> = (0..24).map(|_| TestClient::connect(server.local_addr(), "/")).collect();
    assert!(eventually(5 * SEC, || handle.metrics().connections_upgraded == 24));
    let per_reactor: Vec<u64> = (0..2).map(|r| handle.reactor_metrics(r).unwrap().connections_upgraded).collect();
    assert!(per_reactor.iter().all(|&n| n > 0), "connections per reactor: {per_reactor:?}");
    // From a handler on one reactor...
    clients[0].send_text("bcast from-handler");
    for c in clients.iter_mut() {
        assert_eq!(c.recv_ok(), Got::Text("from-handler".into()));
    }
    // ...and from the handle.
    handle.broadcast_text("from-handle");
    for c in clients.iter_mut() {
        assert_eq!(c.recv_ok(), Got::Text("from-handle".into()));
    }
    server.stop();
}

#[test]
fn publish_reaches_every_subscriber_across_reactors() {
    let server = start(Config { threads: 2, ..one_thread() });
    let handle = server.handle();
    let mut subs: Vec<TestClient> = (0..16).map(|_| TestClient::connect(server.local_addr(), "/")).collect();
    let mut outsider = TestClient::connect(server.local_addr(), "/");
    for s in subs.iter_mut() {
        s.send_text("sub news");
        s.send_text("sync");
        assert_eq!(s.recv_ok(), Got::Text("sync".into()));
    }
    let per_reactor: Vec<u64> = (0..2).map(|r| handle.reactor_metrics(r).unwrap().connections_upgraded).collect();
    assert!(per_reactor.iter().all(|&n| n > 0), "subscribers per reactor: {per_reactor:?}");
    outsider.send_text("pub news extra");
    for s in subs.iter_mut() {
        assert_eq!(s.recv_ok(), Got::Text("extra".into()));
    }
    handle.publish_text("news", "from-handle");
    for s in subs.iter_mut() {
        assert_eq!(s.recv_ok(), Got::Text("from-handle".into()));
    }
    // The outsider is not subscribed and gets nothing.
    assert_eq!(outsider.recv(Duration::from_millis(200)), None);
    subs[0].send_text("unsub news");
    subs[0].send_text("sync");
    assert_eq!(subs[0].recv_ok(), Got::Text("sync".into()));
    handle.publish_text("news", "again");
    assert_eq!(subs[0].recv(Duration::from_millis(200)), None);
    assert_eq!(subs[1].recv_ok(), Got::Text("again".into()));
    server.stop();
}

#[test]
fn shutdown_sends_1001_to_every_connection() {
    let server = start(Config { threads: 2, ..one_thread() });
    let mut clients: Vec<TestClient> = (0..6).map(|_| TestClient::connect(server.local_addr(), "/")).collect();
    let handle = server.handle();
    let stopper = std::thread::spawn(move || server.stop());
    for c in clients.iter_mut() {
        match c.recv_ok() {
            Got::Close(Some((1001, _))) => {}
            other => panic!("expected 1001, got {other:?}"),
        }
        assert!(c.wait_eof(5 * SEC));
    }
    stopper.join().unwrap();
    assert!(handle.is_stopping());
}

#[test]
fn an_idle_connection_owns_no_buffer() {
    let server = start(one_thread());
    let handle = server.handle();
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_text("x");
    assert_eq!(c.recv_ok(), Got::Text("x".into()));
    assert_eq!(handle.metrics().pool_buffers_outstanding, 0);
    // Half a frame: its tail is kept in a pooled buffer...
    let frame = client_frame(OpCode::Binary, true, &[7; 1000]);
    c.send_raw(&frame[..500]);
    assert!(eventually(5 * SEC, || handle.metrics().pool_buffers_outstanding == 1));
    // ...which goes back to the pool once the frame completes.
    c.send_raw(&frame[500..]);
    assert_eq!(c.recv_ok(), Got::Binary(vec![7; 1000]));
    assert!(eventually(5 * SEC, || handle.metrics().pool_buffers_outstanding == 0));
    server.stop();
}

#[test]
fn http_errors_for_unknown_paths_plain_requests_and_bad_versions() {
    let mut server = Server::new(Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        io_uring: io_uring(),
        ..Config::default()
    });
    server.register_handler("/ws", |_| TestHandler);
    let server = start_server(server);
    let addr = server.local_addr();
    let not_found = raw_request(addr, &upgrade_request("/nope", ""));
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let plain = raw_request(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
    let bad_version = raw_request(
        addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(bad_version.starts_with("HTTP/1.1 426"), "{bad_version}");
    assert!(bad_version.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{bad_version}");
    assert!(TestClient::connect(addr, "/ws").response_head.starts_with("HTTP/1.1 101"));
    server.stop();
}

#[test]
fn origin_allow_list_refuses_other_origins_with_403() {
    let config = Config { allowed_origins: Some(vec!["https://good.example".into()]), ..one_thread() };
    let server = start(config);
    let addr = server.local_addr();
    let refused = raw_request(addr, &upgrade_request("/", "Origin: https://evil.example\r\n"));
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    TestClient::connect_with(addr, "/", "Origin: https://good.example\r\n", ConnectionConfig::default());
    server.stop();
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let server = start(one_thread());
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    let mut bytes = upgrade_request("/", "").into_bytes();
    bytes.extend(client_frame(OpCode::Text, true, b"early"));
    stream.write_all(&bytes).unwrap();
    let mut c = TestClient::from_stream_after_handshake(stream);
    assert_eq!(c.recv_ok(), Got::Text("early".into()));
    server.stop();
}

/// The tail paths of the read path: a message trickled in pieces (each read lands behind a copy of the
/// small, size-classed tail in the scratch buffer), and a large read that leaves a small tail (moved to a
/// buffer of its size class) completed byte by byte; every byte arrives intact and every buffer returns.
#[test]
fn trickled_messages_and_small_tails_after_large_reads_arrive_intact() {
    let server = start(one_thread());
    let handle = server.handle();
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.stream.set_nodelay(true).unwrap();
    let pattern = |n: usize| (0..n).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>();

    // 5,000 bytes in 7-byte pieces.
    let small = pattern(5000);
    let frame = client_frame(OpCode::Binary, true, &small);
    for piece in frame.chunks(7) {
        c.send_raw(piece);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(c.recv_ok(), Got::Binary(small));

    // 100 KiB (more than half a pool buffer, so its tail takes a pool buffer) plus 10 bytes of the next
    // frame in one write; then the rest of the next frame one byte at a time.
    let large = pattern(100 * 1024);
    let next = pattern(300);
    let first = client_frame(OpCode::Binary, true, &large);
    let second = client_frame(OpCode::Binary, true, &next);
    let mut burst = first.clone();
    burst.extend_from_slice(&second[..10]);
    c.send_raw(&burst);
    assert_eq!(c.recv_ok(), Got::Binary(large));
    for byte in &second[10..] {
        c.send_raw(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(c.recv_ok(), Got::Binary(next));
    assert!(eventually(5 * SEC, || handle.metrics().pool_buffers_outstanding == 0), "every tail buffer returned");
    server.stop();
}

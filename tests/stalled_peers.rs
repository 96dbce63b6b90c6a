//! Slowloris at small scale, in one process: peers that stop part-way through a handshake (after one or
//! two writes) or a frame hold about what they sent (size-classed tail buffers, not a 64 KiB pool buffer
//! each), one pool buffer each that comes back when they go, end at their timeouts, and others are served
//! meanwhile. Alone in its binary, so the process RSS is this test's.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use wsloop::metrics::HandshakeFailure;
use wsloop::server::{Config, Ctx, Handler, Message, Server};

const PEERS: usize = 500;
const REQUEST: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n";

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(t) = message {
            let _ = ctx.send_text(t);
        }
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn stalled_peers_hold_about_what_they_sent_and_end_at_their_timeouts() {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        handshake_timeout: Duration::from_secs(2),
        ping_interval: Some(Duration::from_secs(1)),
        pong_timeout: Duration::from_secs(1),
        timer_tick: Duration::from_millis(20),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Echo);
    let server = server.start().unwrap();
    let handle = server.handle();
    let addr = server.local_addr();
    // Warm up (reactor scratch, slab, first buffers), so they are not counted per peer.
    let warm: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    drop(warm);
    assert!(eventually(Duration::from_secs(5), || handle.metrics().tcp_connections == 0));
    let before = rss_bytes();

    // Half-open handshakes in two writes each (the second read lands in a tail already kept), and
    // upgraded peers that announce a 1 MiB frame and send 100 bytes of it.
    let mut half_open: Vec<TcpStream> = (0..PEERS).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for s in &mut half_open {
        s.write_all(&REQUEST.as_bytes()[..20]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    for s in &mut half_open {
        s.write_all(&REQUEST.as_bytes()[20..30]).unwrap();
    }
    let mut partial: Vec<TestClient> = (0..PEERS).map(|_| TestClient::connect(addr, "/")).collect();
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
    frame.extend_from_slice(&KEY);
    frame.resize(100, 0x5a);
    for c in &mut partial {
        c.send_raw(&frame);
    }
    assert!(
        eventually(Duration::from_secs(5), || handle.metrics().pool_buffers_outstanding == 2 * PEERS as u64),
        "each stalled peer holds one tail buffer: {} outstanding",
        handle.metrics().pool_buffers_outstanding
    );
    std::thread::sleep(Duration::from_millis(200));
    let per_peer = rss_bytes().saturating_sub(before) / (2 * PEERS as u64);
    assert!(per_peer <= 2048, "{per_peer} bytes of RSS per stalled peer");

    // Someone else is served meanwhile.
    let mut other = TestClient::connect(addr, "/");
    other.send_text("served meanwhile");
    assert_eq!(other.recv_ok(), Got::Text("served meanwhile".into()));
    drop(other);

    // The half-open ones end at the handshake timeout, the partial frames at the pong timeout (the
    // stalled peers answer no ping); their buffers come back.
    assert!(
        eventually(Duration::from_secs(10), || {
            let m = handle.metrics();
            m.tcp_connections == 0 && m.pool_buffers_outstanding == 0
        }),
        "{:?} connections and {} buffers left",
        handle.metrics().tcp_connections,
        handle.metrics().pool_buffers_outstanding
    );
    let m = handle.metrics();
    assert_eq!(m.handshake_failures_for(HandshakeFailure::Timeout), PEERS as u64);
    assert_eq!(m.pong_timeouts, PEERS as u64);
    drop((half_open, partial));
    server.stop();
}

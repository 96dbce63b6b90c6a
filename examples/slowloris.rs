//! Measures what stalled peers cost a `wsloop serve` process, that others are served meanwhile, and that
//! the stalled peers end at their timeouts.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/slowloris KIND [PEERS] [SERVER_BINARY] [SERVER_FLAGS...]
//! ```
//!
//! KIND is `handshake` (each peer sends the first 30 bytes of an upgrade request and stops), `trickle`
//! (the same 30 bytes in two writes 2 ms apart, so the server reads into a tail it already keeps) or `frame`
//! (each peer upgrades, then sends a frame header announcing a 1 MiB binary frame and stops at 100 bytes
//! of frame in all). Starts `SERVER_BINARY serve --addr 127.0.0.1:0 --threads 1 SERVER_FLAGS...` (default
//! `target/release/wsloop`), reads its RSS from `/proc/PID/status`, opens PEERS (default 2,000) such
//! peers, reads the RSS again and prints the growth per peer; then times an echo on a fresh connection
//! while they are all held, and waits (up to 120 s) until the server's `/metrics` shows every stalled
//! peer gone (the handshake timeout for `handshake`, the keepalive ping's pong timeout for `frame`:
//! pass e.g. `--handshake-timeout 5` or `--ping-interval 5 --pong-timeout 5` to shorten the wait).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn upgrade(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.write_all(REQUEST)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::other("closed during handshake"));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(stream)
}

/// A peer that stops part-way.
fn stalled(addr: SocketAddr, kind: &str) -> std::io::Result<TcpStream> {
    match kind {
        "handshake" => {
            let mut stream = TcpStream::connect(addr)?;
            stream.write_all(&REQUEST[..30])?;
            Ok(stream)
        }
        "trickle" => {
            // The same 30 bytes in two pieces: the server reads twice and keeps a tail in between.
            let mut stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            stream.write_all(&REQUEST[..20])?;
            std::thread::sleep(Duration::from_millis(2));
            stream.write_all(&REQUEST[20..30])?;
            Ok(stream)
        }
        "frame" => {
            let mut stream = upgrade(addr)?;
            // FIN + binary, masked, 64-bit length 1 MiB, key, then payload up to 100 bytes in all.
            let mut frame = vec![0x82, 0x80 | 127];
            frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
            frame.extend_from_slice(&[1, 2, 3, 4]);
            frame.resize(100, 0x5a);
            stream.write_all(&frame)?;
            Ok(stream)
        }
        other => panic!("KIND is handshake, trickle or frame, not {other:?}"),
    }
}

/// Text frame `payload` from a client (masked with a zero key).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

fn held_tcp_connections(addr: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    // The scrape is itself one (phase "http").
    page.lines()
        .filter(|l| l.starts_with("wsloop_tcp_connections{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .reduce(|a, b| a + b)
        .map(|n| n.saturating_sub(1))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "handshake".to_owned());
    let n: usize = args.next().map_or(2_000, |a| a.parse().expect("PEERS"));
    let binary = args.next().unwrap_or_else(|| "target/release/wsloop".to_owned());
    let flags: Vec<String> = args.collect();
    let mut server = Command::new(&binary)
        .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1", "--no-dashboard"])
        .args(&flags)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut line).expect("server banner");
    let addr: SocketAddr = line
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("cannot find the address in {line:?}"));
    // Warm up with a few of the kind, so lazily allocated reactor state is not counted per peer.
    let warm: Vec<TcpStream> = (0..8).map(|_| stalled(addr, &kind).expect("warm-up peer")).collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(server.id());
    let started = Instant::now();
    let peers: Vec<TcpStream> =
        (0..n).map(|i| stalled(addr, &kind).unwrap_or_else(|e| panic!("peer {i} failed: {e}"))).collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.id());
    let per_peer = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    // Someone else, meanwhile.
    let echo_started = Instant::now();
    let mut other = upgrade(addr).expect("a fresh connection while the peers stall");
    other.write_all(&text_frame(b"still served")).unwrap();
    let mut reply = [0u8; 14];
    other.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[2..], b"still served");
    let echo_ms = echo_started.elapsed().as_secs_f64() * 1e3;
    drop(other);
    // Until the stalled peers are gone.
    let held = held_tcp_connections(addr);
    let ended = (0..240).find_map(|_| {
        std::thread::sleep(Duration::from_millis(500));
        (held_tcp_connections(addr) == Some(0)).then(|| started.elapsed().as_secs_f64())
    });
    println!(
        "kind={kind} flags={flags:?} peers={n} rss_before_kib={before} rss_after_kib={after} bytes_per_peer={per_peer:.0} \
         held={} echo_meanwhile_ms={echo_ms:.1} all_ended_after_s={}",
        held.map_or("?".into(), |h| h.to_string()),
        ended.map_or("never (120 s)".into(), |s| format!("{s:.1}"))
    );
    drop(peers);
    let _ = server.kill();
    let _ = server.wait();
}

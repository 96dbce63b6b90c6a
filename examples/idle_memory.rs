//! Measures the user-space memory a `wsloop serve` process spends per idle WebSocket connection, and its
//! handshake rate.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/idle_memory [CONNECTIONS] [SERVER_BINARY] [SERVER_FLAGS...]
//! ```
//!
//! Starts `SERVER_BINARY serve --addr 127.0.0.1:0 --threads 1 SERVER_FLAGS...` (default
//! `target/release/wsloop`, default configuration: keepalive pings every 30 s, so each connection also has
//! a timer armed; `--ping-interval 0` measures without), reads its RSS from `/proc/PID/status`, opens CONNECTIONS (default 10,000)
//! WebSocket connections with raw blocking sockets (handshake only, then idle), reads the RSS again once
//! they are all upgraded and idle, and prints the growth per connection. Needs CONNECTIONS + ~20 open
//! files in this process (the limit here is 20,000).
//!
//! permessage-deflate: `IDLE_OFFER='permessage-deflate; client_max_window_bits'` sends that
//! `Sec-WebSocket-Extensions` offer (start the server with `--deflate shared|dedicated`), and
//! `IDLE_USE=1` then has every connection send one compressed 4 KiB text message and read the
//! compressed echo before going idle, so that dedicated zlib streams exist ("once used").

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn handshake(addr: SocketAddr, offer: Option<&str>) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    let extensions = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
    stream.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        )
        .as_bytes(),
    )?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(stream)
}

/// A masked text frame carrying a compressed 4 KiB message (no context: valid for any agreement).
fn compressed_frame() -> Vec<u8> {
    let text: String = (0..500).map(|i| format!("item {i:04} ")).collect::<String>()[..4096].to_owned();
    let mut packed = Vec::new();
    wsloop::sys::Deflater::new(1, 9, 1).unwrap().compress_sync(text.as_bytes(), &mut packed).unwrap();
    packed.truncate(packed.len() - 4);
    let mut frame = Vec::new();
    wsloop::proto::encode_frame(
        &mut frame,
        wsloop::proto::OpCode::Text,
        true,
        wsloop::proto::RSV1,
        Some([1, 2, 3, 4]),
        &packed,
    );
    frame
}

/// Sends `frame` and reads one whole frame back.
fn use_once(stream: &mut TcpStream, frame: &[u8]) {
    stream.write_all(frame).expect("send");
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("echo header");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).expect("length");
            usize::from(u16::from_be_bytes(b))
        }
        127 => panic!("echo too long"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("echo payload");
    assert_eq!(head[0] & 0x40, 0x40, "the echo is compressed (RSV1): is the server's --deflate on?");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("CONNECTIONS"));
    let binary = args.next().unwrap_or_else(|| "target/release/wsloop".to_owned());
    let flags: Vec<String> = args.collect();
    let mut server = Command::new(&binary)
        .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1"])
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
    let offer = std::env::var("IDLE_OFFER").ok();
    let used = std::env::var("IDLE_USE").is_ok_and(|v| v == "1");
    let frame = compressed_frame();
    // Warm up: one connection, so lazily allocated reactor state is not counted per connection.
    let mut warm = handshake(addr, offer.as_deref()).expect("warm-up connection");
    if used {
        use_once(&mut warm, &frame);
    }
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(server.id());
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        match handshake(addr, offer.as_deref()) {
            Ok(mut s) => {
                if used {
                    use_once(&mut s, &frame);
                }
                conns.push(s)
            }
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.id());
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "flags={flags:?} offer={offer:?} used={used} connections={n} rss_before_kib={before} rss_after_kib={after} bytes_per_connection={per_conn:.0} \
         handshakes_per_second={:.0}",
        n as f64 / elapsed.as_secs_f64()
    );
    drop(conns);
    let _ = server.kill();
    let _ = server.wait();
}

//! Faults against a running server, while a witness connection keeps echoing: resets mid-frame, garbage
//! after the handshake, peers that never read, handler panics under load, accept at the descriptor limit
//! and a handler streaming 1 GiB to a slow reader. After each, the server's descriptors (`/proc/PID/fd`)
//! and pool buffers (`pool_buffers_outstanding` in `/metrics`) must be back at their starting counts.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/faults            # starts `faults serve` (this binary) as the server process
//! ```
//!
//! The server process is this binary run as `faults serve`: `Config` defaults but 2 reactors,
//! `max_buffered_bytes` 4 MiB and `/metrics`, with a handler that echoes and understands `panic`,
//! `flood N` (N × 64 KiB at once, ignoring backpressure) and `stream N` (N MiB, 64 KiB at a time, only
//! while less than 1 MiB is buffered, resumed from `on_drain`). One line per fault: what was done, the
//! witness's slowest echo meanwhile, the server's RSS growth at its peak, and the descriptors and pool
//! buffers after. Exit status 1 when a check fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsloop::server::{Config, Ctx, Handler, Message, Server};

const CHUNK: usize = 64 * 1024;

struct Faulty {
    streaming: usize,
}

impl Faulty {
    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        let chunk = vec![b's'; CHUNK];
        while self.streaming > 0 && ctx.buffered_amount() < 1 << 20 {
            if ctx.send_binary(&chunk).is_err() {
                return;
            }
            self.streaming -= 1;
        }
    }
}

impl Handler for Faulty {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match message {
            Message::Text("panic") => panic!("a handler panic on purpose"),
            Message::Text(t) if t.starts_with("flood ") => {
                let chunk = vec![b'f'; CHUNK];
                for _ in 0..t[6..].parse::<usize>().unwrap_or(0) {
                    if ctx.send_binary(&chunk).is_err() {
                        break;
                    }
                }
            }
            Message::Text(t) if t.starts_with("stream ") => {
                self.streaming = t[7..].parse::<usize>().unwrap_or(0) * (1 << 20) / CHUNK;
                self.pump(ctx);
            }
            Message::Text(t) => {
                let _ = ctx.send_text(t);
            }
            Message::Binary(b) => {
                let _ = ctx.send_binary(b);
            }
        }
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_>) {
        self.pump(ctx);
    }
}

fn serve() {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        max_buffered_bytes: 4 << 20,
        metrics_path: Some("/metrics".into()),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Faulty { streaming: 0 });
    let running = server.start().expect("start");
    println!("faults serving on ws://{}/", running.local_addr());
    running.join();
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn upgrade(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(REQUEST)?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(s)
}

/// A masked client frame (zero key: the payload goes as it is).
fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![head];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// Reads one server frame: (opcode, payload length), discarding the payload.
fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, u64)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l)?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l)?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    std::io::copy(&mut Read::by_ref(s).take(len), &mut std::io::sink())?;
    Ok((h[0] & 0x0f, len))
}

fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

fn get_metrics(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page
}

/// A counter (`wsloop_NAME_total`) or gauge (`wsloop_NAME`) from `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let page = get_metrics(addr);
    let (counter, gauge) = (format!("wsloop_{name}_total "), format!("wsloop_{name} "));
    page.lines()
        .find_map(|l| l.strip_prefix(counter.as_str()).or_else(|| l.strip_prefix(gauge.as_str())))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A connection that echoes a small message every 5 ms from its own thread, keeping the slowest echo and
/// whether one ever failed.
struct Witness {
    slowest_us: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    rss_peak: Arc<AtomicU64>,
}

impl Witness {
    fn start(addr: SocketAddr, pid: u32) -> Self {
        let slowest_us = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let rss_peak = Arc::new(AtomicU64::new(0));
        let (slow, fail, peak) = (slowest_us.clone(), failed.clone(), rss_peak.clone());
        let mut s = upgrade(addr).expect("witness");
        std::thread::spawn(move || loop {
            let t = Instant::now();
            let ok = s.write_all(&frame(0x81, b"witness")).is_ok() && matches!(read_frame(&mut s), Ok((1, 7)));
            if !ok {
                fail.store(true, Relaxed);
                return;
            }
            slow.fetch_max(t.elapsed().as_micros() as u64, Relaxed);
            peak.fetch_max(rss_kib(pid), Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        });
        Self { slowest_us, failed, rss_peak }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        serve();
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut server = Command::new(exe).arg("serve").stdout(Stdio::piped()).spawn().expect("start the server");
    let pid = server.id();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr =
        line.split("ws://").nth(1).and_then(|a| a.trim().trim_end_matches('/').parse().ok()).expect("address");
    let witness = Witness::start(addr, pid);
    std::thread::sleep(Duration::from_millis(200));
    let base_fds = fds(pid);
    let base_pool = metric(addr, "pool_buffers_outstanding");
    let mut all_ok = true;
    println!(
        "server pid {pid}: {base_fds} descriptors (the witness's included), {base_pool} pool buffers out, RSS {} KiB",
        rss_kib(pid)
    );

    type Fault = (&'static str, Box<dyn Fn(SocketAddr, u32) -> String>);
    let faults: Vec<Fault> = vec![
        (
            "resets mid-frame",
            Box::new(|addr, _| {
                for _ in 0..500 {
                    let mut s = upgrade(addr).unwrap();
                    let mut f = frame(0x82, &vec![7u8; 65_000]);
                    f.truncate(1000);
                    s.write_all(&f).unwrap();
                    reset(s);
                }
                "500 upgraded connections sent 1,000 bytes of a 65,000-byte frame, then RST".into()
            }),
        ),
        (
            "garbage after the handshake",
            Box::new(|addr, _| {
                let mut closed = 0;
                let mut x: u32 = 12345;
                for _ in 0..500 {
                    let mut s = upgrade(addr).unwrap();
                    let garbage: Vec<u8> = (0..64)
                        .map(|_| {
                            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            (x >> 16) as u8
                        })
                        .collect();
                    let _ = s.write_all(&garbage);
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest);
                    closed += 1;
                }
                let errors = metric(addr, "protocol_errors");
                format!("500 upgraded connections sent 64 random bytes: {closed} closed by the server, protocol_errors {errors}")
            }),
        ),
        (
            "peers that never read",
            Box::new(|addr, _| {
                let peers: Vec<TcpStream> = (0..20)
                    .map(|_| {
                        let mut s = upgrade(addr).unwrap();
                        s.write_all(&frame(0x81, b"flood 256")).unwrap();
                        s
                    })
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(20);
                while metric(addr, "slow_peers_closed") < 20 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                drop(peers);
                format!(
                    "20 peers asked for 16 MiB each and read nothing: slow_peers_closed {}",
                    metric(addr, "slow_peers_closed")
                )
            }),
        ),
        (
            "handler panics under load",
            Box::new(|addr, _| {
                let load: Vec<_> = (0..50)
                    .map(|i| {
                        std::thread::spawn(move || {
                            let mut s = upgrade(addr).unwrap();
                            for n in 0..200 {
                                let text = format!("load {i} {n}");
                                s.write_all(&frame(0x81, text.as_bytes())).unwrap();
                                assert_eq!(read_frame(&mut s).unwrap(), (1, text.len() as u64));
                            }
                        })
                    })
                    .collect();
                for _ in 0..200 {
                    let mut s = upgrade(addr).unwrap();
                    s.write_all(&frame(0x81, b"panic")).unwrap();
                    let _ = read_frame(&mut s);
                }
                let served = load.into_iter().map(|t| t.join().is_ok()).filter(|&ok| ok).count();
                format!("200 handlers panicked while 50 connections echoed 200 messages each: {served}/50 served in full, handler_panics {}", metric(addr, "handler_panics"))
            }),
        ),
        (
            "accept at the descriptor limit",
            Box::new(|addr, pid| {
                let limit = fds(pid) + 40;
                let set = |n: usize| {
                    Command::new("prlimit")
                        .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false)
                };
                assert!(set(limit), "prlimit --pid failed");
                let held: Vec<TcpStream> = (0..60)
                    .filter_map(|_| {
                        let mut s = TcpStream::connect(addr).ok()?;
                        s.write_all(REQUEST).ok()?;
                        Some(s)
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(500));
                drop(held);
                std::thread::sleep(Duration::from_millis(300));
                assert!(set(20_000), "prlimit --pid failed to restore the limit");
                format!("RLIMIT_NOFILE lowered to {limit} (soft limit, prlimit --pid) and 60 connections opened: accept_fd_exhausted {}, connections_shed {}", metric(addr, "accept_fd_exhausted"), metric(addr, "connections_shed"))
            }),
        ),
        (
            "1 GiB to a slow reader",
            Box::new(|addr, _| {
                let mut s = upgrade(addr).unwrap();
                s.write_all(&frame(0x81, b"stream 1024")).unwrap();
                let started = Instant::now();
                let mut got = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                // 16,384 frames of 64 KiB, each with a 10-byte header.
                let expected = (1u64 << 30) / CHUNK as u64 * (CHUNK as u64 + 10);
                while got < expected {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n as u64,
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                format!("a handler streamed 1 GiB (64 KiB messages, on_drain) to a reader taking at most 256 KiB per 1 ms: {} MiB read in {:.1} s", got >> 20, started.elapsed().as_secs_f64())
            }),
        ),
    ];
    println!("| fault | what happened | witness slowest echo | server RSS peak growth | descriptors after | pool buffers after |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, fault) in &faults {
        witness.slowest_us.store(0, Relaxed);
        let rss_before = rss_kib(pid);
        witness.rss_peak.store(rss_before, Relaxed);
        let what = fault(addr, pid);
        let deadline = Instant::now() + Duration::from_secs(15);
        while (fds(pid) != base_fds || metric(addr, "pool_buffers_outstanding") != base_pool)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (after_fds, after_pool) = (fds(pid), metric(addr, "pool_buffers_outstanding"));
        let ok = after_fds == base_fds && after_pool == base_pool && !witness.failed.load(Relaxed);
        all_ok &= ok;
        println!(
            "| {name} | {what} | {:.1} ms | {} KiB | {after_fds} (start {base_fds}) | {after_pool} (start {base_pool}) |{}",
            witness.slowest_us.load(Relaxed) as f64 / 1000.0,
            witness.rss_peak.load(Relaxed).saturating_sub(rss_before),
            if ok { "" } else { " FAILED" }
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    if !all_ok {
        eprintln!("faults: a check failed (witness failed: {})", witness.failed.load(Relaxed));
        std::process::exit(1);
    }
}

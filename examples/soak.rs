//! A soak: many WebSocket connections held against a `wsloop serve` process (a separate process: each
//! has its own descriptor limit) for a long time, with the server's keepalive pings and a trickle of
//! echoed messages; reports the server's RSS and CPU over time, and fails if a connection or a message
//! was lost.
//!
//! ```text
//! cargo build --release --examples --bin wsloop
//! target/release/examples/soak [--connections N] [--duration SECS] [--message-every SECS]
//!                              [--ping-interval SECS] [--idle SECS] [--server BINARY] [-- SERVER_FLAGS...]
//! ```
//!
//! Defaults: 19,000 connections, 600 s, one message per connection every 10 s (1,900 messages/s in all),
//! server pings after 5 s of silence (`--ping-interval 5 --pong-timeout 10`: every connection is pinged
//! between two of its messages), then 30 s with no messages (pings only) to measure the idle server's
//! CPU. The load is this process's in-loop clients (`Server::start_without_listeners`, one reactor);
//! connections are opened 500 at a time. Every 10 s a line: elapsed, open, messages sent and echoed,
//! connections lost, server RSS and server CPU over the interval. Exit status 1 when a connection failed
//! or closed, or an echo was missing or wrong.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsloop::server::{Config, ConnectOptions, Ctx, Handler, Message, Server};

#[derive(Default)]
struct Stats {
    opened: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    echoed: AtomicU64,
    wrong: AtomicU64,
    /// Stop sending (the idle phase and the end).
    quiet: AtomicBool,
}

struct Peer {
    stats: Arc<Stats>,
    every: Duration,
    seq: u64,
    /// Sequence numbers sent and not echoed yet, in order.
    waiting: std::collections::VecDeque<u64>,
}

impl Handler for Peer {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.stats.opened.fetch_add(1, Relaxed);
        // Spread the first message over the interval.
        let jitter = (ctx.id().as_u64().wrapping_mul(7919)) % self.every.as_millis().max(1) as u64;
        ctx.set_timer(Duration::from_millis(jitter));
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        if !self.stats.quiet.load(Relaxed) {
            self.seq += 1;
            if ctx.send_text(&format!("soak {}", self.seq)).is_ok() {
                self.waiting.push_back(self.seq);
                self.stats.sent.fetch_add(1, Relaxed);
            }
        }
        ctx.set_timer(self.every);
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message<'_>) {
        let expected = self.waiting.pop_front().map(|s| format!("soak {s}"));
        match (message, expected) {
            (Message::Text(t), Some(e)) if t == e => self.stats.echoed.fetch_add(1, Relaxed),
            _ => self.stats.wrong.fetch_add(1, Relaxed),
        };
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _code: wsloop::proto::CloseCode, _reason: &str) {
        self.stats.closed.fetch_add(1, Relaxed);
    }

    fn on_connect_error(&mut self, _error: &wsloop::server::ConnectError) {
        self.stats.failed.fetch_add(1, Relaxed);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU seconds of `pid`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    ticks as f64 / 100.0
}

/// One counter from the server's `/metrics` (0 when absent).
fn metric(addr: SocketAddr, name: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    let prefix = format!("wsloop_{name}_total ");
    page.lines().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok()).unwrap_or(0)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let (args, server_flags) = match all.iter().position(|a| a == "--") {
        Some(i) => (all[..i].to_vec(), all[i + 1..].to_vec()),
        None => (all.clone(), Vec::new()),
    };
    let n: u64 = arg(&args, "--connections", 19_000);
    let duration = Duration::from_secs(arg(&args, "--duration", 600));
    let every = Duration::from_secs_f64(arg(&args, "--message-every", 10.0));
    let ping: u64 = arg(&args, "--ping-interval", 5);
    let idle = Duration::from_secs(arg(&args, "--idle", 30));
    let binary: String = arg(&args, "--server", "target/release/wsloop".to_owned());

    let mut server = Command::new(&binary)
        .args(["serve", "--addr", "127.0.0.1:0", "--no-dashboard", "--ping-interval", &ping.to_string()])
        .args(["--pong-timeout", &(2 * ping).to_string()])
        .args(&server_flags)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let pid = server.id();
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut line).expect("server banner");
    let addr: SocketAddr = line
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("cannot find the address in {line:?}"));
    let rss_start = rss_kib(pid);

    // The load: in-loop clients on one reactor (no keepalive of their own: the server pings).
    let load = Server::new(Config { threads: 1, ping_interval: None, ..Config::default() })
        .start_without_listeners()
        .expect("load reactors");
    let handle = load.handle();
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    for batch in (0..n).step_by(500) {
        let upto = (batch + 500).min(n);
        for _ in batch..upto {
            let peer = Peer { stats: stats.clone(), every, seq: 0, waiting: Default::default() };
            handle.connect(addr, "localhost", "/", ConnectOptions::default(), peer);
        }
        while stats.opened.load(Relaxed) + stats.failed.load(Relaxed) < upto {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let ramp = started.elapsed();
    println!(
        "soak: {} of {n} connections open in {:.1} s ({} failed); server RSS {} KiB at start, {} KiB now; \
         messages every {:?} per connection, server pings after {ping} s of silence",
        stats.opened.load(Relaxed),
        ramp.as_secs_f64(),
        stats.failed.load(Relaxed),
        rss_start,
        rss_kib(pid),
        every
    );
    let steady = Instant::now();
    let rss_steady = rss_kib(pid);
    let (mut rss_min, mut rss_max) = (u64::MAX, 0);
    let mut last = (Instant::now(), cpu_secs(pid));
    let cpu_steady_start = last.1;
    while steady.elapsed() < duration {
        std::thread::sleep(
            Duration::from_secs(10).min(duration.saturating_sub(steady.elapsed())).max(Duration::from_millis(1)),
        );
        let (now, cpu) = (Instant::now(), cpu_secs(pid));
        let rss = rss_kib(pid);
        rss_min = rss_min.min(rss);
        rss_max = rss_max.max(rss);
        println!(
            "t={:>4.0}s open={} sent={} echoed={} lost_conns={} wrong={} server_rss_kib={rss} server_cpu={:.1}%",
            steady.elapsed().as_secs_f64(),
            stats.opened.load(Relaxed) - stats.closed.load(Relaxed),
            stats.sent.load(Relaxed),
            stats.echoed.load(Relaxed),
            stats.closed.load(Relaxed) + stats.failed.load(Relaxed),
            stats.wrong.load(Relaxed),
            100.0 * (cpu - last.1) / now.duration_since(last.0).as_secs_f64()
        );
        last = (now, cpu);
    }
    let busy_cpu = 100.0 * (cpu_secs(pid) - cpu_steady_start) / steady.elapsed().as_secs_f64();
    // Idle: no messages, only the server's pings and the clients' pongs.
    stats.quiet.store(true, Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let (idle_from, idle_cpu0) = (Instant::now(), cpu_secs(pid));
    std::thread::sleep(idle);
    let idle_cpu = 100.0 * (cpu_secs(pid) - idle_cpu0) / idle_from.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let (sent, echoed) = (stats.sent.load(Relaxed), stats.echoed.load(Relaxed));
    let lost = stats.closed.load(Relaxed) + stats.failed.load(Relaxed);
    let wrong = stats.wrong.load(Relaxed);
    println!(
        "soak result: connections={} held for {:.0} s, lost {lost}; messages sent {sent}, echoed {echoed}, wrong {wrong}; \
         server RSS {rss_steady} KiB after the ramp, {rss_min}-{rss_max} KiB during, {rss_end} KiB at the end; \
         server CPU {busy_cpu:.1}% of a core with the trickle ({:.0} msg/s), {idle_cpu:.2}% idle (pings only, {:.0} s)",
        stats.opened.load(Relaxed),
        steady.elapsed().as_secs_f64(),
        sent as f64 / duration.as_secs_f64(),
        idle.as_secs_f64()
    );
    println!(
        "server counters: pings_sent={} pongs_received={} connections_closed={} protocol_errors={}",
        metric(addr, "pings_sent"),
        metric(addr, "pongs_received"),
        metric(addr, "connections_closed"),
        metric(addr, "protocol_errors")
    );
    load.stop();
    let _ = server.kill();
    let _ = server.wait();
    if lost > 0 || wrong > 0 || sent != echoed || stats.opened.load(Relaxed) != n {
        eprintln!(
            "soak FAILED: {lost} connections lost, {wrong} wrong echoes, {} missing",
            sent.saturating_sub(echoed)
        );
        std::process::exit(1);
    }
}

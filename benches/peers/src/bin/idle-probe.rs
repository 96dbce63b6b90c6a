//! Scenario (iv) of scripts/bench-peers.sh for any server: memory per idle connection and handshake rate.
//!
//! ```text
//! idle-probe HOST:PORT --pid PID [-n N] [--threads T] [--settle SECS]
//! ```
//!
//! The server is already running (any implementation; PID is its process). Opens and closes one warm-up
//! connection, reads the server's RSS (VmRSS of /proc/PID/status) and CPU time (utime + stime of
//! /proc/PID/stat), opens N WebSocket connections (default 10,000) from T threads (default 8) with blocking
//! sockets, handshake only (the 101 and its Sec-WebSocket-Accept are checked), then leaves them idle. After
//! SETTLE seconds (default 1) it reads the RSS again, checks that every connection is still open, and
//! prints one JSON object (the same keys as `wsprobe.py idle`). Exits 1 if a connection failed or was
//! dropped. Needs N + ~10 open files (the script raises the soft limit to the hard one).
//!
//! This is `examples/idle_memory.rs` of the wsloop crate made server-agnostic, and in Rust rather than
//! Python so that the client is not what limits the handshake rate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// The accept value RFC 6455 section 1.3 gives for the key above.
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_else(|e| {
        eprintln!("idle-probe: /proc/{pid}/{name}: {e}");
        std::process::exit(2)
    })
}

fn rss_kib(pid: u32) -> u64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15. Linux reports them in
    // USER_HZ, which is 100 on every platform this runs on.
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
}

fn handshake(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    s.write_all(REQUEST).map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
        return Err(format!("status {}", String::from_utf8_lossy(line)));
    }
    if !head.windows(ACCEPT.len()).any(|w| w == ACCEPT) {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    Ok(s)
}

fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    match s.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true, // the server sent something (a ping): still open
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

fn usage() -> ! {
    eprintln!("usage: idle-probe HOST:PORT --pid PID [-n N] [--threads T] [--settle SECS]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut pid, mut n, mut threads, mut settle) = (None, None, 10_000usize, 8usize, 1.0f64);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--pid" => pid = val().parse().ok(),
            "-n" => n = val().parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = val().parse::<usize>().unwrap_or_else(|_| usage()).max(1),
            "--settle" => settle = val().parse().unwrap_or_else(|_| usage()),
            _ if addr.is_none() && !a.starts_with('-') => {
                let a = a.trim_start_matches("ws://").trim_end_matches('/');
                addr = a.to_socket_addrs().ok().and_then(|mut i| i.next());
                if addr.is_none() {
                    usage()
                }
            }
            _ => usage(),
        }
    }
    let (Some(addr), Some(pid)) = (addr, pid) else { usage() };

    // Warm-up: lazily allocated server state is not counted per connection.
    drop(handshake(addr));
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let share = n / threads + usize::from(t < n % threads);
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (Vec::with_capacity(share), Vec::new());
                for _ in 0..share {
                    match handshake(addr) {
                        Ok(s) => ok.push(s),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut conns, mut failures) = (Vec::with_capacity(n), Vec::new());
    for w in workers {
        let (ok, failed) = w.join().expect("worker thread");
        conns.extend(ok);
        failures.extend(failed);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    std::thread::sleep(Duration::from_secs_f64(settle));
    let after = rss_kib(pid);
    let dropped = conns.iter().filter(|s| !still_open(s)).count();
    let ok = conns.len();
    failures.sort();
    failures.dedup();
    let per_conn = if ok > 0 { after.saturating_sub(before) as f64 * 1024.0 / ok as f64 } else { f64::NAN };
    let opt = |x: f64| if x.is_finite() { format!("{x:.1}") } else { "null".into() };
    let errs: Vec<String> = failures.iter().take(5).map(|e| format!("{e:?}")).collect();
    println!(
        "{{\"connections\": {ok}, \"requested\": {n}, \"failed\": {}, \"failures\": [{}], \"dropped\": {dropped}, \
         \"window\": {threads}, \"client\": \"idle-probe\", \"rss_before_kib\": {before}, \"rss_after_kib\": {after}, \
         \"bytes_per_connection\": {}, \"handshake_seconds\": {elapsed:.4}, \"handshakes_per_second\": {}, \
         \"server_cpu_seconds\": {cpu:.3}, \"handshakes_per_server_cpu_second\": {}}}",
        n - ok,
        errs.join(", "),
        opt(per_conn),
        opt(ok as f64 / elapsed),
        opt(if cpu > 0.0 { ok as f64 / cpu } else { f64::NAN }),
    );
    drop(conns);
    std::process::exit(if ok == n && dropped == 0 { 0 } else { 1 });
}

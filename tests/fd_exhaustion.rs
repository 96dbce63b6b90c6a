//! Running out of file descriptors: `wsloop serve` under `prlimit --nofile=64` (a child process, so the
//! limit is its own). At the limit the listener is not spun on: pending connections are shed with the
//! reserve descriptor (503), the connections held keep being served, the event is counted, and new
//! connections are accepted again once descriptors are free; the server's descriptors return to their
//! starting count.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");
const LIMIT: usize = 64;

/// The server child, killed when dropped.
struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Descriptors the server holds below the limit (a descriptor inherited above it, such as a test
/// harness's pipe, takes no place under the limit).
fn fds(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok()).filter(|&fd| fd < LIMIT).count()
}

/// User plus system CPU time of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let page = raw_request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let line = page
        .lines()
        .find(|l| l.starts_with(&format!("wsloop_{name}_total ")))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Sends an upgrade request and returns the socket without waiting for the answer.
fn pending(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(upgrade_request("/", "").as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `wsloop serve ARGS` under `prlimit --nofile=LIMIT`, one reactor, and the address of its first line
/// (`scheme` is `ws` or `wss`). Its stderr is piped (read it or drain it).
fn serve_limited(scheme: &str, args: &[&str]) -> (Serve, SocketAddr) {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .args([BIN, "serve", "--addr", "127.0.0.1:0", "--threads", "1", "--no-dashboard"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit wsloop serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .strip_prefix(&format!("wsloop serving on {scheme}://"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_end_matches('/').split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    (Serve { child }, addr)
}

/// Opens plain WebSockets to `addr` until the server sheds one (it answers something other than a
/// 101); returns those held and the shed one's answer.
fn fill(addr: SocketAddr) -> (Vec<TestClient>, String) {
    let mut clients: Vec<TestClient> = Vec::new();
    for _ in 0..LIMIT {
        let mut s = pending(addr);
        let mut head = [0u8; 12];
        let n = s.peek(&mut head).unwrap_or(0);
        if &head[..n] == b"HTTP/1.1 101" {
            clients.push(TestClient::from_stream_after_handshake(s));
        } else {
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            return (clients, answer);
        }
    }
    panic!("the server never ran out of descriptors");
}

#[test]
fn at_the_descriptor_limit_the_server_sheds_keeps_serving_and_recovers() {
    let (mut serve, addr) = serve_limited("ws", &[]);
    let mut err = serve.child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let pid = serve.child.id();
    // One connection first: the reactor thread opens its reserve descriptor when it starts, which may be
    // after the banner; once it has served one, its descriptors are all there.
    drop(TestClient::connect(addr, "/"));
    std::thread::sleep(Duration::from_millis(200));
    let baseline = fds(pid);
    assert!(baseline < LIMIT / 2, "the server starts with {baseline} descriptors");

    // Fill every descriptor the server has left with open WebSockets, until the first one is shed (the
    // server may open a descriptor or two of its own after start, so its room is found, not computed).
    let (mut clients, first_shed) = fill(addr);
    assert!(first_shed.starts_with("HTTP/1.1 503"), "{first_shed}");
    assert!(clients.len() >= LIMIT - baseline - 4, "only {} connections fit", clients.len());

    // Three more: the server cannot accept them; each is shed through the reserve descriptor with a 503
    // (before, they waited in the backlog until a new connection's edge).
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    for mut p in (0..3).map(|_| pending(addr)) {
        let mut answer = String::new();
        let _ = p.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "a shed connection reads {answer:?}");
        assert!(answer.contains("out of file descriptors"), "{answer}");
    }
    // The connections held are served meanwhile.
    for (i, c) in clients.iter_mut().enumerate().step_by(7) {
        c.send_text(&format!("held {i}"));
        assert_eq!(c.recv_ok(), Got::Text(format!("held {i}")));
    }
    // Resting the listener, not spinning on it: well under half a core over that time.
    std::thread::sleep(Duration::from_millis(500));
    let ticks = cpu_ticks(pid) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    assert!((ticks as f64 / 100.0) < elapsed * 0.5, "{ticks} ticks of CPU in {elapsed:.2} s at the limit");

    // Free some descriptors: new connections are accepted again, and the events were counted.
    clients.truncate(clients.len() - 4);
    assert!(eventually(Duration::from_secs(5), || fds(pid) <= LIMIT - 4));
    let mut fresh = TestClient::connect(addr, "/");
    fresh.send_text("accepted again");
    assert_eq!(fresh.recv_ok(), Got::Text("accepted again".into()));
    assert!(metric(addr, "accept_fd_exhausted") >= 1);
    assert_eq!(metric(addr, "connections_shed"), 4, "the first one found the limit, three more after it");

    // Everyone leaves: the descriptors return to where they started.
    drop(fresh);
    clients.clear();
    assert!(
        eventually(Duration::from_secs(5), || fds(pid) == baseline),
        "{} descriptors after everyone left, {baseline} at start",
        fds(pid)
    );
}

/// The same limit on a TLS listener with a plain one beside it: a connection shed from the TLS
/// listener gets a fatal TLS alert (`internal_error`), not a plain-HTTP 503 that a TLS client would
/// read as a corrupt record, and it is counted as shed.
#[cfg(feature = "tls")]
#[test]
fn at_the_descriptor_limit_a_tls_listener_sheds_with_a_tls_alert() {
    let dir = std::env::temp_dir().join(format!("wsloop-fd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let cert_path = cert.to_str().unwrap();
    let key_path = key.to_str().unwrap();
    let (mut serve, tls_addr) =
        serve_limited("wss", &["--plain-listen", "127.0.0.1:0", "--tls-cert", cert_path, "--tls-key", key_path]);
    let mut line = String::new();
    let mut err = BufReader::new(serve.child.stderr.take().unwrap());
    let plain: SocketAddr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no plain listener announced");
        if let Some(url) = line.trim().strip_prefix("wsloop: plain ws:// also on ws://") {
            break url.trim_end_matches('/').parse().unwrap();
        }
    };
    // Keep reading the server's log so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let _ = std::fs::remove_dir_all(&dir);

    // Fill the descriptors through the plain listener until the first plain connection is shed.
    let (mut clients, answer) = fill(plain);
    assert!(answer.starts_with("HTTP/1.1 503"), "the plain listener sheds with a 503: {answer:?}");

    // A TLS client now: shed too, with the alert (record type 21, fatal, internal_error).
    let mut tls = TcpStream::connect(tls_addr).unwrap();
    tls.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 80], "the TLS listener's shed reads {answer:?}");

    // Room again: the held connections are still served, and both sheds were counted.
    clients.truncate(clients.len() - 4);
    assert!(eventually(Duration::from_secs(5), || fds(serve.child.id()) <= LIMIT - 4));
    clients[0].send_text("still served");
    assert_eq!(clients[0].recv_ok(), Got::Text("still served".into()));
    assert_eq!(metric(plain, "connections_shed"), 2);
}

//! Checks for the fuzz target `server`: a whole server (one reactor thread, its timers, buffers, rate
//! limits and an echo handler) on 127.0.0.1, driven by arbitrary interleavings of connects, upgrades,
//! raw bytes, well-formed frames, reads, graceful closes, resets (RST) and clock ticks (sleeps: the
//! server's timeouts are tens of milliseconds), decoded from the input. One server serves every input
//! of a process.
//!
//! Invariants, after each input: once its peers are gone, the server holds no TCP connection and no pool
//! buffer (nothing leaks, whatever the order of events), and it still accepts, upgrades and echoes (the
//! reactor neither died nor stalled). A panic on the reactor thread aborts the process (libFuzzer) or
//! fails the echo (`cargo test`).
//!
//! Input format: a sequence of operations, each one opcode byte and its operands (missing bytes end the
//! input): see [`Op`]. At most [`MAX_PEERS`] peers and [`MAX_OPS`] operations; sleeps add up to at most
//! [`MAX_SLEEP_MS`].

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wsloop::server::{Config, Ctx, Handle, Handler, Message, RateLimit, RunningServer, Server};

/// Peers one input may hold at once.
pub(crate) const MAX_PEERS: usize = 6;
/// Operations decoded from one input.
pub(crate) const MAX_OPS: usize = 64;
/// Total sleep per input.
pub(crate) const MAX_SLEEP_MS: u64 = 300;

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Echoes; `flood` sends 64 KiB messages until the peer's queue is full (a peer that does not read
/// meets the buffered-bytes ceiling); `close` closes with 4000.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match message {
            Message::Text("flood") => {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..16 {
                    if ctx.send_binary(&chunk).is_err() {
                        break;
                    }
                }
            }
            Message::Text("close") => {
                let _ = ctx.close(wsloop::proto::CloseCode(4000), "asked");
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

/// The process's server: small limits and short timeouts, so an input reaches them.
fn server() -> &'static RunningServer {
    // Kept in a static (not forgotten), so it stays reachable until the process exits.
    static SERVER: OnceLock<RunningServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let config = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            max_frame_size: 64 * 1024,
            max_message_size: 256 * 1024,
            max_buffered_bytes: 256 * 1024,
            max_request_head: 1024,
            handshake_timeout: Duration::from_millis(60),
            ping_interval: Some(Duration::from_millis(40)),
            pong_timeout: Duration::from_millis(40),
            close_timeout: Duration::from_millis(40),
            timer_tick: Duration::from_millis(5),
            message_rate: Some(RateLimit { per_second: 2000.0, burst: 20.0 }),
            byte_rate: Some(RateLimit { per_second: 4.0 * 1024.0 * 1024.0, burst: 128.0 * 1024.0 }),
            max_connections_per_ip: Some(MAX_PEERS - 1),
            metrics_path: Some("/metrics".into()),
            ..Config::default()
        };
        let mut server = Server::new(config);
        server.register_handler("*", |_| Echo);
        server.start().expect("start the fuzzed server")
    })
}

/// What one opcode byte (modulo 9) does, with its operands.
#[derive(Debug)]
enum Op {
    /// 0: open a TCP connection and send nothing.
    Connect,
    /// 1: open a connection and send a complete upgrade request.
    Upgrade,
    /// 2 peer len bytes…: raw bytes (garbage, a partial request, a partial frame).
    Raw(usize, Vec<u8>),
    /// 3 peer head len bytes…: a masked frame: `head` is FIN|RSV|opcode as on the wire.
    Frame(usize, u8, Vec<u8>),
    /// 4 peer: read what has arrived (without it a peer never reads).
    Read(usize),
    /// 5 peer: close gracefully (FIN).
    Close(usize),
    /// 6 peer: reset (RST: linger 0).
    Reset(usize),
    /// 7 ms: let the clock run (the server's timers fire).
    Tick(u64),
    /// 8 peer which: a text command (`flood`, `close`) in a frame.
    Command(usize, u8),
}

fn decode(data: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut it = data.iter().copied();
    while ops.len() < MAX_OPS {
        let Some(code) = it.next() else { break };
        let op = match code % 9 {
            0 => Op::Connect,
            1 => Op::Upgrade,
            2 => {
                let (Some(peer), Some(len)) = (it.next(), it.next()) else { break };
                Op::Raw(peer as usize, it.by_ref().take(len as usize).collect())
            }
            3 => {
                let (Some(peer), Some(head), Some(len)) = (it.next(), it.next(), it.next()) else { break };
                Op::Frame(peer as usize, head, it.by_ref().take(len as usize).collect())
            }
            4 => Op::Read(it.next().unwrap_or(0) as usize),
            5 => Op::Close(it.next().unwrap_or(0) as usize),
            6 => Op::Reset(it.next().unwrap_or(0) as usize),
            7 => Op::Tick(u64::from(it.next().unwrap_or(0) % 64)),
            _ => {
                let (Some(peer), Some(which)) = (it.next(), it.next()) else { break };
                Op::Command(peer as usize, which)
            }
        };
        ops.push(op);
    }
    ops
}

/// A masked client frame (key 1 2 3 4).
fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut out = vec![head];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_nonblocking(true).ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

/// Linux's `MSG_NOSIGNAL`: a write to a connection the server closed fails with EPIPE instead of
/// raising SIGPIPE (libFuzzer's `main` does not ignore it as a Rust `main` does).
const MSG_NOSIGNAL: i32 = 0x4000;

fn send(s: &mut TcpStream, bytes: &[u8]) {
    // Non-blocking: what the socket does not take is dropped (a peer may also stop mid-frame that way).
    let _ = socket2::SockRef::from(&*s).send_with_flags(bytes, MSG_NOSIGNAL);
}

fn drain(s: &mut TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Waits until the server accepted `accepted` connections in all (a connection still in the listen
/// backlog is not held yet) and holds no connection and no buffer; fails with what is left after 5 s.
fn settled(handle: &Handle, accepted: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = handle.metrics();
        if m.connections_accepted >= accepted && m.tcp_connections == 0 && m.pool_buffers_outstanding == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {accepted} connections accepted, {} TCP connections and {} pool buffers still held",
            m.connections_accepted,
            m.tcp_connections,
            m.pool_buffers_outstanding
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The reactor still accepts, upgrades and echoes.
fn still_serves(addr: SocketAddr) {
    let mut s = loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            connected => break connected.expect("connect after the input"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = UPGRADE.to_vec();
    request.extend(frame(0x81, b"alive"));
    let sent = loop {
        match socket2::SockRef::from(&s).send_with_flags(&request, MSG_NOSIGNAL) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            sent => break sent.expect("send to a fresh connection"),
        }
    };
    assert_eq!(sent, request.len());
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let expected: &[u8] = b"\x81\x05alive";
    while !got.windows(expected.len()).any(|w| w == expected) {
        // (libFuzzer's timers interrupt blocking calls: EINTR is retried, as `read_exact` would.)
        let n = match s.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            read => read.expect("the server answers after the input"),
        };
        assert!(n > 0, "the server closed a fresh connection: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&got));
    let _ = s.shutdown(Shutdown::Both);
}

/// Runs one input against the process's server.
pub(crate) fn check(data: &[u8]) {
    let running = server();
    let (handle, addr) = (&running.handle(), running.local_addr());
    let mut peers: Vec<TcpStream> = Vec::new();
    let mut slept = 0;
    let mut accepted = handle.metrics().connections_accepted;
    let pick = |peers: &Vec<TcpStream>, i: usize| (!peers.is_empty()).then(|| i % peers.len());
    for op in decode(data) {
        match op {
            Op::Connect | Op::Upgrade if peers.len() < MAX_PEERS => {
                if let Some(mut s) = connect(addr) {
                    accepted += 1;
                    if matches!(op, Op::Upgrade) {
                        send(&mut s, UPGRADE);
                    }
                    peers.push(s);
                }
            }
            Op::Connect | Op::Upgrade => {}
            Op::Raw(i, bytes) => {
                if let Some(i) = pick(&peers, i) {
                    send(&mut peers[i], &bytes);
                }
            }
            Op::Frame(i, head, payload) => {
                if let Some(i) = pick(&peers, i) {
                    send(&mut peers[i], &frame(head, &payload));
                }
            }
            Op::Command(i, which) => {
                if let Some(i) = pick(&peers, i) {
                    let text: &[u8] = if which % 2 == 0 { b"flood" } else { b"close" };
                    send(&mut peers[i], &frame(0x81, text));
                }
            }
            Op::Read(i) => {
                if let Some(i) = pick(&peers, i) {
                    drain(&mut peers[i]);
                }
            }
            Op::Close(i) => {
                if let Some(i) = pick(&peers, i) {
                    drop(peers.swap_remove(i));
                }
            }
            Op::Reset(i) => {
                if let Some(i) = pick(&peers, i) {
                    reset(peers.swap_remove(i));
                }
            }
            Op::Tick(ms) => {
                let ms = ms.min(MAX_SLEEP_MS - slept);
                slept += ms;
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
    }
    // Half of the remaining peers leave with a reset, half gracefully.
    for (i, s) in peers.into_iter().enumerate() {
        if i % 2 == 0 {
            reset(s);
        } else {
            drop(s);
        }
    }
    settled(handle, accepted, "after the input's peers left");
    still_serves(addr);
    settled(handle, accepted + 1, "after the liveness check");
}

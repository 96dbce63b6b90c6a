//! `loadgen`: a small WebSocket echo load generator, written independently of wsloop to cross-check
//! `wsloop bench`. It uses no WebSocket library: one thread, one edge-triggered mio `Poll`, a hand-written
//! handshake and frame parser.
//!
//! ```text
//! loadgen ws://127.0.0.1:PORT/path -c CONNS -s SIZE -p PIPELINE [--text] -d SECS [--warmup SECS]
//! ```
//!
//! Every connection keeps PIPELINE messages in flight (closed loop): each echo is matched with the oldest
//! message in flight on its connection and answered by one new message. Prints one JSON object on stdout.
//! Exit status: 0 for a clean run, 1 if anything was counted as an error, 2 for bad arguments or when no
//! connection opened.
//!
//! Checked: status 101 and Sec-WebSocket-Accept (the key is fixed, so the expected value is a constant);
//! server frames unmasked, RSV bits clear; every echo has the opcode sent and exactly the payload sent (byte
//! for byte), in one frame or in fragments; control frames at most 125 bytes. Shortcuts: one masking key and
//! one payload for every frame (the frame is masked once at start; RFC 6455 wants a fresh key per frame,
//! servers cannot tell); our messages are never fragmented; other response headers are ignored. Errors (the "errors" total, "error_counts" by kind): a
//! failed connect or handshake, any of the violations above, a connection the server closed or reset before
//! our close, and echoes still missing 2 s after the deadline.
//!
//! Clock: the warmup, then the measured window (-d), start when the connections are requested. Latency runs
//! from the read event that queued a message (or the 101, for the first PIPELINE) to the read event that
//! received its echo, with one clock read per readable event; only echoes arriving inside the window count.
//! CPU is `getrusage(RUSAGE_SELF)` over that window; the drain and the closes after it are not included.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::process::exit;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{net::TcpStream, Events, Interest, Poll, Token};

const USAGE: &str =
    "usage: loadgen ws://HOST:PORT/PATH [-c CONNS] [-s SIZE] [-p PIPELINE] [--text] [-d SECS] [--warmup SECS]";
/// The sample key of RFC 6455 section 1.3 and the accept value a server derives from it.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x2e];
/// How long to wait after the deadline for the echoes in flight, then for the server's close replies.
const DRAIN: Duration = Duration::from_secs(2);
const CLOSE_WAIT: Duration = Duration::from_secs(1);

struct Args {
    url: String,
    conns: usize,
    size: usize,
    pipeline: usize,
    text: bool,
    duration: Duration,
    warmup: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (url, duration, warmup) = (String::new(), Duration::from_secs(10), Duration::ZERO);
    let mut a = Args { url, conns: 50, size: 64, pipeline: 1, text: false, duration, warmup };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let count = |v: String| v.parse().map_err(|_| format!("bad number {v}"));
        match arg.as_str() {
            "-c" => a.conns = count(value()?)?,
            "-s" => a.size = count(value()?)?,
            "-p" => a.pipeline = count(value()?)?,
            "-d" => a.duration = secs(&value()?)?,
            "--warmup" => a.warmup = secs(&value()?)?,
            "--text" | "--binary" => a.text = arg == "--text",
            "" => {} // an empty argument, as a script's "${args[@]/--binary/}" leaves
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            _ if a.url.is_empty() && arg.starts_with("ws://") => a.url = arg,
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if a.url.is_empty() || a.conns == 0 || a.pipeline == 0 {
        return Err("need a ws:// URL, -c >= 1 and -p >= 1".into());
    }
    Ok(a)
}

/// Parses "8", "8s", "1.5s" or "500ms".
fn secs(s: &str) -> Result<Duration, String> {
    let (num, scale) = s.strip_suffix("ms").map_or((s.strip_suffix('s').unwrap_or(s), 1.0), |n| (n, 1e-3));
    let v = num.parse::<f64>().ok().filter(|v| *v >= 0.0).ok_or(format!("bad time {s}"))?;
    Ok(Duration::from_secs_f64(v * scale))
}

/// Appends one masked client frame with FIN set.
fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => out.extend_from_slice(&[0x80 | 126, (n >> 8) as u8, n as u8]),
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// User and system CPU time of this process.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: rusage is plain data (all zeroes is valid) and getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// Raises the open-file limit to its hard maximum (one descriptor per connection).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls only read or write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Error kinds, counted apart in the report's `error_counts` (in the order of `KINDS`).
#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Handshake,
    Protocol,
    Closed,
    Unanswered,
}
const KINDS: [&str; 5] = ["connect", "handshake", "protocol", "closed", "unanswered"];

/// Why a connection ends: an error, or `Done` when it ends after our close frame.
enum End {
    Error(Kind, String),
    Done,
}

fn fail(kind: Kind, msg: impl Into<String>) -> End {
    End::Error(kind, msg.into())
}

#[derive(PartialEq)]
enum State {
    Connecting,
    Upgrading,
    Open,
    Closing,
}

struct Conn {
    sock: TcpStream,
    state: State,
    /// Receive buffer: bytes `head..tail` are received and not parsed yet.
    rbuf: Box<[u8]>,
    head: usize,
    tail: usize,
    /// Data-frame bytes still to write, and how far into the current frame the writes are.
    owed: usize,
    pos: usize,
    /// Queue times (ns since start) of the frames owed or in flight, oldest first: never more than PIPELINE.
    stamps: VecDeque<u64>,
    /// Bytes written at the next frame boundary (upgrade request, pong, close), and how many are written.
    ctrl: Vec<u8>,
    ctrl_sent: usize,
    /// The last write was short or would block: wait for a WRITABLE edge.
    blocked: bool,
    /// Inside a fragmented echo: how many payload bytes its fragments carried so far.
    fragmented: Option<usize>,
}

/// What the connections share: the pre-built bytes, the clock and the counters.
struct Run {
    start: Instant,
    /// Window start and deadline, in ns since `start`.
    measure_from: u64,
    deadline: u64,
    opcode: u8,
    payload: Vec<u8>,
    frame_len: usize,
    /// PIPELINE+1 copies of the frame: `owed` bytes (at most PIPELINE frames) from any `pos` fit in it.
    burst: Vec<u8>,
    request: Vec<u8>,
    pipeline: usize,
    hist: Histogram<u64>,
    received: u64,
    measured: u64,
    /// Frames owed or in flight on all connections.
    in_flight: usize,
    opened: usize,
    live: usize,
    errors: [u64; 5],
}

impl Run {
    /// Queues `n` more frames on `c`, stamped `now`.
    fn owe(&mut self, c: &mut Conn, n: usize, now: u64) {
        c.owed += n * self.frame_len;
        c.stamps.extend(std::iter::repeat_n(now, n));
        self.in_flight += n;
    }

    /// Drops a connection, counts its error (printing the first few of each kind).
    fn end(&mut self, slot: &mut Option<Conn>, end: End) {
        let Some(c) = slot.take() else { return };
        self.live -= 1;
        self.in_flight -= c.stamps.len();
        if let End::Error(kind, msg) = end {
            self.errors[kind as usize] += 1;
            if self.errors[kind as usize] <= 3 {
                eprintln!("loadgen: connection dropped ({}): {msg}", KINDS[kind as usize]);
            }
        }
    }
}

/// Handles one readiness event on `c`; an error means the connection is to be dropped.
fn on_event(c: &mut Conn, run: &mut Run, readable: bool, writable: bool) -> Result<(), End> {
    if c.state == State::Connecting {
        if let Ok(Some(e)) | Err(e) = c.sock.take_error() {
            return Err(fail(Kind::Connect, e.to_string()));
        }
        match c.sock.peer_addr() {
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(fail(Kind::Connect, e.to_string())),
            Ok(_) => c.state = State::Upgrading,
        }
        c.sock.set_nodelay(true).map_err(|e| fail(Kind::Connect, e.to_string()))?;
        c.ctrl.extend_from_slice(&run.request);
    }
    c.blocked &= !writable;
    if readable {
        read_all(c, run)?;
    }
    flush(c, run)
}

/// Reads until the socket is drained, parsing as it goes. One clock read serves every frame of the event.
fn read_all(c: &mut Conn, run: &mut Run) -> Result<(), End> {
    let now = run.start.elapsed().as_nanos() as u64;
    loop {
        if c.tail == c.rbuf.len() {
            // Full: move the unparsed part (less than one frame, the buffer holds two) to the front.
            c.rbuf.copy_within(c.head..c.tail, 0);
            (c.head, c.tail) = (0, c.tail - c.head);
        }
        let room = c.rbuf.len() - c.tail;
        let n = match c.sock.read(&mut c.rbuf[c.tail..]) {
            Ok(0) if c.state == State::Closing => return Err(End::Done),
            Ok(0) => return Err(fail(Kind::Closed, "connection closed by the server")),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(Kind::Closed, e.to_string())),
        };
        c.tail += n;
        if c.state == State::Upgrading {
            upgrade(c, run, now)?;
        }
        if c.state != State::Upgrading {
            parse(c, run, now)?;
        }
        if c.head == c.tail {
            (c.head, c.tail) = (0, 0);
        }
        // A short read means the socket is drained (Linux TCP): data arriving later raises a new edge. This
        // saves the read that would only return WouldBlock.
        if n < room {
            return Ok(());
        }
    }
}

/// Looks for the end of the response head; on a valid 101, opens the connection and queues PIPELINE frames.
fn upgrade(c: &mut Conn, run: &mut Run, now: u64) -> Result<(), End> {
    let Some(end) = c.rbuf[..c.tail].windows(4).position(|w| w == b"\r\n\r\n") else {
        return if c.tail == c.rbuf.len() { Err(fail(Kind::Handshake, "response head too long")) } else { Ok(()) };
    };
    let head = String::from_utf8_lossy(&c.rbuf[..end]);
    let status = head.lines().next().unwrap_or("");
    let accept = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find_map(|(name, value)| name.trim().eq_ignore_ascii_case("sec-websocket-accept").then_some(value.trim()));
    if !status.starts_with("HTTP/1.1 101") || accept != Some(ACCEPT) {
        return Err(fail(Kind::Handshake, format!("{status:?}, Sec-WebSocket-Accept {accept:?}")));
    }
    c.head = end + 4; // what follows the head is frame data
    c.state = State::Open;
    run.opened += 1;
    if now < run.deadline {
        run.owe(c, run.pipeline, now);
    }
    Ok(())
}

/// Consumes every complete frame in the receive buffer.
fn parse(c: &mut Conn, run: &mut Run, now: u64) -> Result<(), End> {
    while c.tail - c.head >= 2 {
        let buf = &c.rbuf[c.head..c.tail];
        let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
        if buf[1] & 0x80 != 0 || buf[0] & 0x70 != 0 {
            return Err(fail(Kind::Protocol, "masked frame or RSV bits from the server"));
        }
        let (hlen, len) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
            127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize),
            126 | 127 => return Ok(()),
            n => (2, n as usize),
        };
        // A data frame is the whole echo or one fragment of it (a server may fragment, e.g. ws-rs splits
        // 64 KiB into 65,535-byte frames): the payload bytes it carries start at `offset` of the payload sent.
        let offset = match (opcode, c.fragmented) {
            (0, Some(done)) => Some(done),
            (o, None) if o == run.opcode => Some(0),
            _ => None,
        };
        let data = offset.filter(|&at| at + len <= run.payload.len() && (!fin || at + len == run.payload.len()));
        if data.is_none() && (opcode < 8 || !fin || len > 125) {
            // Rejected before its payload arrives, so the buffer never has to hold more than one echo.
            return Err(fail(Kind::Protocol, format!("unexpected frame: FIN {fin}, opcode {opcode}, length {len}")));
        }
        if buf.len() < hlen + len {
            return Ok(());
        }
        let payload = &buf[hlen..hlen + len];
        c.head += hlen + len;
        if let Some(at) = data {
            if payload != &run.payload[at..at + len] {
                return Err(fail(Kind::Protocol, "echoed payload differs from the one sent"));
            }
            c.fragmented = (!fin).then_some(at + len);
        }
        let echo = data.is_some() && fin;
        match opcode {
            _ if data.is_some() && !fin => {} // a fragment: the echo completes with its FIN frame
            _ if echo && c.state == State::Closing => {} // late: already counted as unanswered
            _ if echo => {
                let sent = c.stamps.pop_front().ok_or_else(|| fail(Kind::Protocol, "echo with nothing in flight"))?;
                run.in_flight -= 1;
                run.received += 1;
                if now >= run.measure_from && now < run.deadline {
                    run.measured += 1;
                    run.hist.saturating_record((now - sent) / 1000);
                }
                if now < run.deadline {
                    run.owe(c, 1, now);
                }
            }
            9 if c.state != State::Closing => client_frame(&mut c.ctrl, 0xa, payload),
            9 | 10 => {}
            8 if c.state == State::Closing => return Err(End::Done),
            8 => {
                if c.pos == 0 && c.ctrl.is_empty() {
                    let mut close = Vec::new();
                    client_frame(&mut close, 8, &1000u16.to_be_bytes());
                    let _ = c.sock.write(&close);
                }
                return Err(fail(Kind::Closed, "server sent a close frame"));
            }
            _ => return Err(fail(Kind::Protocol, format!("unknown opcode {opcode}"))),
        }
    }
    Ok(())
}

/// Writes what is owed (control bytes first, at a frame boundary) until done or the socket is full.
fn flush(c: &mut Conn, run: &Run) -> Result<(), End> {
    while !c.blocked {
        let ctrl = c.ctrl_sent < c.ctrl.len() && (c.ctrl_sent > 0 || c.pos == 0);
        let bytes = match ctrl {
            true => &c.ctrl[c.ctrl_sent..],
            false if c.owed > 0 => &run.burst[c.pos..c.pos + c.owed],
            false => return Ok(()),
        };
        let want = bytes.len();
        let n = match c.sock.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(Kind::Closed, e.to_string())),
        };
        if !ctrl {
            (c.owed, c.pos) = (c.owed - n, (c.pos + n) % run.frame_len);
        } else if c.ctrl_sent + n == c.ctrl.len() {
            c.ctrl.clear();
            c.ctrl_sent = 0;
        } else {
            c.ctrl_sent += n;
        }
        // Short write: the send buffer is full, and a WRITABLE edge follows when it drains.
        c.blocked = n < want;
    }
    Ok(())
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("loadgen: {e}\n{USAGE}");
        exit(2)
    });
    raise_fd_limit();
    exit(run(&args).unwrap_or_else(|e| {
        eprintln!("loadgen: {e}");
        2
    }))
}

fn run(args: &Args) -> io::Result<i32> {
    let rest = &args.url["ws://".len()..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let port = if authority.contains(':') { "" } else { ":80" };
    let addr = format!("{authority}{port}").to_socket_addrs()?.next().ok_or(io::Error::other("no address"))?;

    let payload: Vec<u8> = match args.text {
        true => (0..args.size).map(|i| b'a' + (i % 26) as u8).collect(),
        false => (0..args.size).map(|i| (i * 7 + 3) as u8).collect(),
    };
    let opcode = if args.text { 1 } else { 2 };
    let mut frame = Vec::new();
    client_frame(&mut frame, opcode, &payload);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (start, ns) = (Instant::now(), |d: Duration| d.as_nanos() as u64);
    let (measure_from, deadline) = (start + args.warmup, start + args.warmup + args.duration);
    let mut run = Run {
        start,
        measure_from: ns(args.warmup),
        deadline: ns(args.warmup + args.duration),
        opcode,
        frame_len: frame.len(),
        burst: frame.repeat(args.pipeline + 1),
        payload,
        request: request.into_bytes(),
        pipeline: args.pipeline,
        hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
        received: 0,
        measured: 0,
        in_flight: 0,
        opened: 0,
        live: 0,
        errors: [0; 5],
    };
    // Two of the largest frames a server may send, so compaction always leaves room for a whole one.
    let rbuf_len = (16 << 10).max(2 * (args.size.max(125) + 14));

    let mut poll = Poll::new()?;
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let sock = TcpStream::connect(addr).and_then(|mut sock| {
            poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE).map(|_| sock)
        });
        conns.push(match sock {
            Ok(sock) => Some(Conn {
                sock,
                state: State::Connecting,
                rbuf: vec![0; rbuf_len].into_boxed_slice(),
                stamps: VecDeque::with_capacity(args.pipeline),
                ctrl: Vec::new(),
                head: 0,
                tail: 0,
                owed: 0,
                pos: 0,
                ctrl_sent: 0,
                blocked: false,
                fragmented: None,
            }),
            Err(e) => {
                eprintln!("loadgen: connect: {e}");
                run.errors[Kind::Connect as usize] += 1;
                None
            }
        });
    }
    run.live = conns.iter().flatten().count();

    let mut events = Events::with_capacity(1024);
    let (mut cpu_from, mut cpu_to, mut closing, mut phase_end) = (None, None, false, deadline);
    loop {
        let now = Instant::now();
        if cpu_from.is_none() && now >= measure_from {
            cpu_from = Some((cpu_time(), now));
        }
        if cpu_to.is_none() && (now >= deadline || run.live == 0) {
            // Stop sending: keep the rest of a partly written frame, forget the frames not started.
            cpu_from.get_or_insert((cpu_time(), now));
            (cpu_to, phase_end) = (Some((cpu_time(), now.min(deadline))), now + DRAIN);
            for slot in conns.iter_mut() {
                match slot {
                    Some(c) if c.state == State::Open => {
                        let rest = (run.frame_len - c.pos) % run.frame_len;
                        let unsent = (c.owed - rest) / run.frame_len;
                        c.stamps.truncate(c.stamps.len() - unsent);
                        (run.in_flight, c.owed) = (run.in_flight - unsent, rest);
                    }
                    Some(_) => run.end(slot, fail(Kind::Handshake, "not open at the deadline")),
                    None => {}
                }
            }
        }
        if cpu_to.is_some() && !closing && (run.in_flight == 0 || now >= phase_end) {
            run.errors[Kind::Unanswered as usize] += run.in_flight as u64;
            (closing, phase_end) = (true, now + CLOSE_WAIT);
            for slot in conns.iter_mut() {
                let Some(c) = slot else { continue };
                client_frame(&mut c.ctrl, 8, &1000u16.to_be_bytes());
                c.state = State::Closing;
                if let Err(end) = flush(c, &run) {
                    run.end(slot, end);
                }
            }
        }
        if run.live == 0 || (closing && now >= phase_end) {
            break;
        }
        let wake = if cpu_from.is_none() { measure_from } else { phase_end };
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Err(e) if e.kind() != ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        for ev in events.iter() {
            let slot = &mut conns[ev.token().0];
            let Some(c) = slot else { continue };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            if let Err(end) = on_event(c, &mut run, readable, ev.is_writable()) {
                run.end(slot, end);
            }
        }
    }
    if run.opened == 0 {
        eprintln!("loadgen: no connection opened to {}", args.url);
        return Ok(2);
    }
    report(args, &run, cpu_from.zip(cpu_to).expect("both set when the loop ends"), measure_from);
    Ok(i32::from(run.errors.iter().sum::<u64>() > 0))
}

type CpuMark = ((Duration, Duration), Instant);

/// Prints the JSON report. CPU marks are taken at the window's start and at the deadline (or when the last
/// connection ended, if earlier).
fn report(args: &Args, run: &Run, (from, to): (CpuMark, CpuMark), measure_from: Instant) {
    let (((u0, s0), t0), ((u1, s1), t1)) = (from, to);
    let (user, system) = ((u1 - u0).as_secs_f64(), (s1 - s0).as_secs_f64());
    let cpu_wall = t1.saturating_duration_since(t0).as_secs_f64().max(1e-9);
    // Echoes are counted by their arrival in [measure_from, deadline): rates use that window.
    let window = t1.saturating_duration_since(measure_from).as_secs_f64().max(1e-9);
    let h = &run.hist;
    let latency = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)]
        .map(|(k, q)| format!("\"{k}\":{},", h.value_at_quantile(q)))
        .concat();
    let (max, mean, count) = (h.max(), h.mean(), h.len());
    let counts = KINDS.iter().zip(run.errors).map(|(k, n)| format!("\"{k}\":{n}")).collect::<Vec<_>>().join(",");
    let errors = run.errors.iter().sum::<u64>();
    let Args { url, conns, size, pipeline, text, .. } = args;
    let Run { opened, received, measured, .. } = run;
    let kind = if *text { "text" } else { "binary" };
    let (rate, mbps) = (*measured as f64 / window, (measured * *size as u64) as f64 / window / 1e6);
    let percent = (user + system) * 100.0 / cpu_wall;
    println!(
        "{{\"tool\":\"loadgen\",\"url\":{url:?},\"connections\":{opened},\"requested\":{conns},\"kind\":\"{kind}\",\
         \"size\":{size},\"pipeline\":{pipeline},\"seconds\":{window:.6},\"received\":{received},\
         \"measured_messages\":{measured},\"messages_per_second\":{rate:.1},\"megabytes_per_second\":{mbps:.3},\
         \"latency_us\":{{{latency}\"max\":{max},\"mean\":{mean:.1},\"count\":{count}}},\"cpu\":{{\
         \"user_seconds\":{user:.3},\"system_seconds\":{system:.3},\"wall_seconds\":{cpu_wall:.3},\
         \"percent_of_one_core\":{percent:.1}}},\"errors\":{errors},\"error_counts\":{{{counts}}}}}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n => out.extend_from_slice(&[126, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(payload);
        out
    }

    fn run_for(payload: &[u8], opcode: u8) -> Run {
        let mut frame = Vec::new();
        client_frame(&mut frame, opcode, payload);
        Run {
            start: Instant::now(),
            measure_from: 0,
            deadline: u64::MAX,
            opcode,
            frame_len: frame.len(),
            burst: frame.repeat(2),
            payload: payload.to_vec(),
            request: Vec::new(),
            pipeline: 1,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap(),
            received: 0,
            measured: 0,
            in_flight: 0,
            opened: 1,
            live: 1,
            errors: [0; 5],
        }
    }

    /// An open connection (a real loopback socket, never read here) with one message in flight.
    fn open_conn(run: &mut Run) -> Conn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = Conn {
            sock: TcpStream::from_std(sock),
            state: State::Open,
            rbuf: vec![0; 4096].into_boxed_slice(),
            head: 0,
            tail: 0,
            owed: 0,
            pos: 0,
            stamps: VecDeque::new(),
            ctrl: Vec::new(),
            ctrl_sent: 0,
            blocked: false,
            fragmented: None,
        };
        run.owe(&mut c, 1, 0);
        c.owed = 0; // as if written
        c
    }

    fn feed(c: &mut Conn, run: &mut Run, bytes: &[u8]) -> Result<(), String> {
        c.rbuf[c.tail..c.tail + bytes.len()].copy_from_slice(bytes);
        c.tail += bytes.len();
        parse(c, run, 1_000).map_err(|e| match e {
            End::Error(_, msg) => msg,
            End::Done => "done".into(),
        })
    }

    #[test]
    fn a_whole_echo_counts_and_owes_the_next_message() {
        let mut run = run_for(b"hello", 1);
        let mut c = open_conn(&mut run);
        let frame = server_frame(true, 1, b"hello");
        // Half a frame: nothing happens yet.
        feed(&mut c, &mut run, &frame[..3]).unwrap();
        assert_eq!(run.received, 0);
        feed(&mut c, &mut run, &frame[3..]).unwrap();
        assert_eq!((run.received, run.measured, c.owed), (1, 1, run.frame_len));
    }

    #[test]
    fn a_fragmented_echo_counts_once_when_its_last_fragment_arrives() {
        let mut run = run_for(b"hello world", 2);
        let mut c = open_conn(&mut run);
        feed(&mut c, &mut run, &server_frame(false, 2, b"hello")).unwrap();
        assert_eq!((run.received, c.fragmented), (0, Some(5)));
        feed(&mut c, &mut run, &server_frame(false, 0, b" wor")).unwrap();
        feed(&mut c, &mut run, &server_frame(true, 0, b"ld")).unwrap();
        assert_eq!((run.received, c.fragmented), (1, None));
    }

    #[test]
    fn wrong_echoes_and_server_frames_are_errors() {
        let cases: [(&[u8], Vec<u8>, &str); 5] = [
            (b"hello", server_frame(true, 1, b"hellO"), "differs"),
            (b"hello", server_frame(true, 2, b"hello"), "unexpected frame"),
            (b"hello", server_frame(true, 1, b"hell"), "unexpected frame"),
            (b"hello world", [server_frame(false, 1, b"hello"), server_frame(true, 0, b" worlD")].concat(), "differs"),
            (
                b"hello",
                {
                    let mut f = server_frame(true, 1, b"hello");
                    f[1] |= 0x80; // masked
                    f
                },
                "masked",
            ),
        ];
        for (sent, echo, why) in cases {
            let mut run = run_for(sent, 1);
            let mut c = open_conn(&mut run);
            let err = feed(&mut c, &mut run, &echo).unwrap_err();
            assert!(err.contains(why), "{err:?} should say {why:?}");
            assert_eq!(run.received, 0);
        }
    }

    #[test]
    fn a_ping_is_answered_with_a_masked_pong_carrying_its_payload() {
        let mut run = run_for(b"x", 1);
        let mut c = open_conn(&mut run);
        feed(&mut c, &mut run, &server_frame(true, 9, b"abc")).unwrap();
        let mut pong = Vec::new();
        client_frame(&mut pong, 0xa, b"abc");
        assert_eq!(c.ctrl, pong);
        assert_eq!(c.ctrl[1] & 0x80, 0x80, "client frames are masked");
    }
}

//! `wsloop bench`: a closed-loop load generator for echo servers, built on the engine's in-loop client
//! connections (`Server::start_without_listeners` + `Handle::connect`, one [`Handler`] per connection).
//!
//! The hot path, per echoed message: one clock read, a pop and a push on the connection's ring of send
//! instants, a histogram record and a few single-writer counters in the reactor thread's own block,
//! and one `Ctx::send_raw` of a frame that was built and masked once for the whole run. No allocation.
//! Every frame sent from one event is corked by the reactor and written with one syscall.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use wsloop::client::WsUrl;
use wsloop::proto::{encode_frame, CloseCode, OpCode};
use wsloop::server::{Config, ConnectError, ConnectOptions, Ctx, Handler, Message, Server};

use crate::util::{duration, header, micros, per_second, si};

const AFTER_HELP: &str = "\
How it works: every connection keeps -p messages in flight; each echo is matched with the oldest \
message in flight on its connection (an echo server answers in order) and the next message is sent \
at once from the same callback. Latency is the time from the send to the echo, in microseconds.

Shortcuts taken for speed (what the bench does NOT do):
  - one payload and one masking key are chosen at start and reused for every message of every \
connection: the masked frame is built once and sent as pre-encoded bytes (RFC 6455 wants a fresh, \
unpredictable key per frame; servers cannot tell);
  - echoed payloads are not compared with what was sent: only the message type (text/binary) and \
the length are checked (mismatches are reported as errors). Text echoes are still UTF-8 validated \
by the protocol layer.

Clock: the duration and warmup start when the first connection is requested; the warmup (and the \
connection ramp, if it is shorter) is excluded from messages/s and latency. With -n, the run ends \
when every connection has sent its share and received every echo.

--rate splits the rate over the threads; each thread hands out send slots spaced by its interval (at \
most 5 ms of unused budget is banked), and a connection whose slot is ahead waits on a handler timer \
(millisecond resolution), so echoes are still read as they arrive and latency stays a round trip.

Exit status: 0 when every connection opened, at least one echo came back, every message sent was \
echoed with the right type and length, and every connection ended with our 1000 close; 1 otherwise \
(the report is printed either way).";

#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct BenchArgs {
    /// The echo server's URL, e.g. ws://127.0.0.1:9001/.
    url: String,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(short = 's', long = "size", default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection (pipelining); the first -p are sent in one write.
    #[arg(short = 'p', long = "pipeline", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pipeline: u32,
    /// How long to send (after --warmup), e.g. 10s, 500ms, 2m. Default 10s unless -n is given.
    #[arg(short = 'd', long, value_parser = duration, conflicts_with = "messages")]
    duration: Option<Duration>,
    /// Total messages to send (split evenly over the connections), instead of a duration.
    #[arg(short = 'n', long = "messages")]
    messages: Option<u64>,
    /// Overall send rate limit in messages/s, e.g. 5000 or 5000/s (default: as fast as echoes come).
    #[arg(long, value_parser = per_second)]
    rate: Option<f64>,
    /// Send text messages (payload: ASCII letters).
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    binary: bool,
    /// Reactor threads driving the connections.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Open connections at this rate (e.g. 500/s) instead of all at once.
    #[arg(long, value_parser = per_second)]
    ramp: Option<f64>,
    /// Time excluded from the statistics at the start, e.g. 2s.
    #[arg(long, value_parser = duration, default_value = "0s")]
    warmup: Duration,
    /// Time allowed for each TCP connect plus handshake.
    #[arg(long, value_parser = duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Source address to connect from (repeatable; connections take them in turn), e.g. 127.0.0.2, to get
    /// past one address's ephemeral port range.
    #[arg(long = "source-ip")]
    source_ips: Vec<std::net::IpAddr>,
    /// Extra request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_parser = header)]
    headers: Vec<(String, String)>,
    /// Print the result as one JSON object on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report to FILE: the configuration, throughput per second and
    /// the latency distribution (HDR percentiles).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// A cheap monotonic clock for the hot path: the CPU's time-stamp counter on x86_64 (the kernel already
/// trusts it as its clocksource on the machines we measure on), nanoseconds since a process epoch
/// elsewhere. Ticks become time through [`Clock::per_us`], calibrated against `Instant` at start.
mod ticks {
    pub(super) use wsloop::sys::ticks as now;
}

/// Tick rate, measured over a short sleep.
#[derive(Debug, Clone, Copy)]
struct Clock {
    per_us: f64,
}

impl Clock {
    fn calibrate() -> Self {
        let (i0, t0) = (Instant::now(), ticks::now());
        std::thread::sleep(Duration::from_millis(20));
        let (i1, t1) = (Instant::now(), ticks::now());
        let us = i1.duration_since(i0).as_secs_f64() * 1e6;
        Self { per_us: (t1.wrapping_sub(t0) as f64 / us).max(1e-3) }
    }

    fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * 1e6 * self.per_us) as u64
    }

    fn micros(&self, ticks: u64) -> u64 {
        (ticks as f64 / self.per_us).round() as u64
    }

    fn duration(&self, ticks: u64) -> Duration {
        Duration::from_secs_f64(ticks as f64 / self.per_us / 1e6)
    }
}

/// Fixed settings of a run, shared by every connection, and the rarely touched shared state.
struct Run {
    /// One masked data frame.
    frame: Box<[u8]>,
    /// `pipeline` copies of `frame`, back to back: the first burst of a connection, in one write.
    burst: Box<[u8]>,
    pipeline: usize,
    size: usize,
    text: bool,
    clock: Clock,
    epoch: Instant,
    /// The end of the warmup and the deadline, in ticks.
    measure_from: u64,
    deadline: Option<u64>,
    /// Ticks between two sends of one reactor thread (`--rate` split over the threads).
    pace: Option<u64>,
    opened: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    /// Nanoseconds since `epoch` of the last handshake completed.
    last_open_ns: AtomicU64,
    /// Ticks of the last connection finishing its share (with -n).
    finish_ticks: AtomicU64,
    /// Echoes never received, summed over connections when they close.
    unanswered: AtomicU64,
    connect_errors: Mutex<BTreeMap<&'static str, u64>>,
    closes: Mutex<BTreeMap<u16, u64>>,
    latency: Mutex<Histogram<u64>>,
    handshake: Mutex<Histogram<u64>>,
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// Counters of one reactor thread, written only by that thread (relaxed load + store), read by the
/// main thread for the progress bar and the result.
#[derive(Default)]
struct Shard {
    sent: AtomicU64,
    received: AtomicU64,
    measured: AtomicU64,
    measured_bytes: AtomicU64,
    mismatched: AtomicU64,
    unexpected: AtomicU64,
}

/// A thread's counters as plain integers; published to its [`Shard`] every [`PUBLISH_EVERY`] messages
/// received and whenever a connection opens or closes.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    sent: u64,
    received: u64,
    measured: u64,
    measured_bytes: u64,
    mismatched: u64,
    unexpected: u64,
}

/// How often (in messages received) a thread publishes its counts for the progress bar.
const PUBLISH_EVERY: u64 = 64;

impl Shard {
    fn publish(&self, c: &Counts) {
        self.sent.store(c.sent, Relaxed);
        self.received.store(c.received, Relaxed);
        self.measured.store(c.measured, Relaxed);
        self.measured_bytes.store(c.measured_bytes, Relaxed);
        self.mismatched.store(c.mismatched, Relaxed);
        self.unexpected.store(c.unexpected, Relaxed);
    }
}

/// What a reactor thread keeps for itself: its counters and histograms (merged into [`Run`] when its
/// connections close) and its pacing clock.
struct Local {
    shard: Arc<Shard>,
    counts: Counts,
    latency: Histogram<u64>,
    handshake: Histogram<u64>,
    next_send: Option<u64>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn new_histogram() -> Histogram<u64> {
    // Latencies are recorded in clock ticks: up to an hour of ticks at 10 GHz, 3 significant digits.
    Histogram::new_with_bounds(1, 36_000_000_000_000, 3).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Run {
    /// Runs `f` with this reactor thread's [`Local`], made (and its shard registered) on first use.
    fn local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|cell| {
            let mut slot = cell.borrow_mut();
            let local = slot.get_or_insert_with(|| {
                let shard = Arc::new(Shard::default());
                lock(&self.shards).push(shard.clone());
                Local {
                    shard,
                    counts: Counts::default(),
                    latency: new_histogram(),
                    handshake: new_histogram(),
                    next_send: None,
                }
            });
            f(local)
        })
    }

    /// Moves this thread's histograms into the run's (when a connection ends, so the last one to end on
    /// each thread leaves nothing behind).
    fn flush_local(&self) {
        self.local(|l| {
            l.shard.publish(&l.counts);
            if !l.latency.is_empty() {
                let _ = lock(&self.latency).add(&l.latency);
                l.latency.reset();
            }
            if !l.handshake.is_empty() {
                let _ = lock(&self.handshake).add(&l.handshake);
                l.handshake.reset();
            }
        });
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn finished(&self) -> u64 {
        self.closed.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// Reserves this thread's next send slot under `--rate` and returns it (ticks; `now` or later). Every
/// connection of a reactor thread draws on the same budget; a connection whose slot is in the future
/// waits for it with a handler timer, so the reactor keeps reading echoes meanwhile.
fn reserve_slot(local: &mut Local, clock: &Clock, interval: u64, now: u64) -> u64 {
    // Never bank more than 5 ms of idle budget: no bursts after a stall.
    let floor = now.saturating_sub(clock.ticks(Duration::from_millis(5)));
    let slot = local.next_send.map_or(now, |next| next.max(floor));
    local.next_send = Some(slot + interval);
    slot
}

/// Send times (ticks) of the messages in flight, oldest first. Up to [`Ring::INLINE`] live in the
/// handler itself (no second allocation to miss in cache with thousands of connections); a deeper
/// pipeline gets one heap slice, allocated once.
struct Ring {
    head: usize,
    len: usize,
    capacity: usize,
    inline: [u64; Self::INLINE],
    heap: Box<[u64]>,
}

impl Ring {
    const INLINE: usize = 4;

    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let heap = if capacity > Self::INLINE { vec![0; capacity].into_boxed_slice() } else { Box::default() };
        Self { head: 0, len: 0, capacity, inline: [0; Self::INLINE], heap }
    }

    fn slots(&mut self) -> &mut [u64] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends; a full ring (more sends than `-p`: cannot happen) drops the value.
    fn push_back(&mut self, at: u64) {
        let (head, len, capacity) = (self.head, self.len, self.capacity);
        if len < capacity {
            // head < capacity and len < capacity: one conditional subtraction wraps (no division per message).
            let mut i = head + len;
            if i >= capacity {
                i -= capacity;
            }
            self.slots()[i] = at;
            self.len += 1;
        }
    }

    fn pop_front(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let (head, capacity) = (self.head, self.capacity);
        let at = self.slots()[head];
        self.head = if head + 1 == capacity { 0 } else { head + 1 };
        self.len -= 1;
        Some(at)
    }
}

/// One benchmark connection.
struct BenchConn {
    run: Arc<Run>,
    /// Send times of the messages in flight (capacity: `pipeline`).
    ring: Ring,
    /// Messages this connection may still send (`u64::MAX` for a timed run).
    quota: u64,
    requested: Instant,
    closing: bool,
    /// Under `--rate`: a send slot is reserved and the handler timer is armed for it.
    waiting_for_slot: bool,
}

impl BenchConn {
    fn done(&self, now: u64) -> bool {
        self.quota == 0 || self.run.deadline.is_some_and(|d| now >= d)
    }

    /// Under `--rate`, keeps the pipeline full within this thread's budget: sends at once while slots are
    /// due, and arms the timer for the first one that is not (at most one reservation outstanding).
    fn send_paced(&mut self, ctx: &mut Ctx<'_>, l: &mut Local, interval: u64, now: u64) {
        let run = self.run.clone();
        while !self.waiting_for_slot && !self.closing && !self.done(now) && self.ring.len() < run.pipeline {
            let slot = reserve_slot(l, &run.clock, interval, now);
            if slot > now {
                self.waiting_for_slot = true;
                ctx.set_timer(run.clock.duration(slot - now));
            } else if !self.send_one(ctx, l, now) {
                break;
            }
        }
    }

    /// Sends one pre-built frame now; false if the connection refused it.
    fn send_one(&mut self, ctx: &mut Ctx<'_>, l: &mut Local, now: u64) -> bool {
        if ctx.send_raw(&self.run.frame).is_err() {
            return false;
        }
        self.ring.push_back(now);
        self.quota -= 1;
        l.counts.sent += 1;
        true
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>, now: u64) {
        if !self.closing && self.ring.is_empty() {
            self.closing = true;
            if self.run.deadline.is_none() {
                self.run.finish_ticks.fetch_max(now, Relaxed);
            }
            let _ = ctx.close(CloseCode::NORMAL, "");
        }
    }
}

impl Handler for BenchConn {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let run = self.run.clone();
        let opened_at = Instant::now();
        let now = ticks::now();
        run.opened.fetch_add(1, Relaxed);
        run.last_open_ns.fetch_max(run.since_epoch(opened_at), Relaxed);
        let elapsed = opened_at.saturating_duration_since(self.requested).as_micros() as u64;
        let count = (run.pipeline as u64).min(self.quota) as usize;
        run.local(|l| {
            let _ = l.handshake.record(elapsed.max(1));
            if self.done(now) {
                return;
            }
            match run.pace {
                None => {
                    if ctx.send_raw(&run.burst[..count * run.frame.len()]).is_ok() {
                        for _ in 0..count {
                            self.ring.push_back(now);
                        }
                    }
                    let sent = self.ring.len() as u64;
                    self.quota -= sent;
                    l.counts.sent += sent;
                }
                Some(interval) => self.send_paced(ctx, l, interval, now),
            }
            l.shard.publish(&l.counts);
        });
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let now = ticks::now();
        let run = &*self.run;
        let bytes = message.as_bytes().len();
        let well_formed = bytes == run.size && message.is_text() == run.text;
        let sent_at = self.ring.pop_front();
        let done = self.done(now);
        let closing = self.closing;
        let ring = &mut self.ring;
        let quota = &mut self.quota;
        run.local(|l| {
            let counts = &mut l.counts;
            counts.received += 1;
            if !well_formed {
                counts.mismatched += 1;
            }
            match sent_at {
                Some(at) => {
                    if now >= run.measure_from && !matches!(run.deadline, Some(d) if now > d) {
                        counts.measured += 1;
                        counts.measured_bytes += bytes as u64;
                        let _ = l.latency.record(now.saturating_sub(at));
                    }
                }
                None => counts.unexpected += 1,
            }
            if l.counts.received % PUBLISH_EVERY == 0 {
                l.shard.publish(&l.counts);
            }
            if done || closing || run.pace.is_some() {
                return;
            }
            if ctx.send_raw(&run.frame).is_ok() {
                ring.push_back(now);
                *quota -= 1;
                l.counts.sent += 1;
            }
        });
        if let Some(interval) = self.run.pace {
            let run = self.run.clone();
            run.local(|l| self.send_paced(ctx, l, interval, now));
        }
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    /// The reserved `--rate` slot has come: send, then keep the pipeline full within the budget.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let now = ticks::now();
        self.waiting_for_slot = false;
        let Some(interval) = self.run.pace else { return };
        let run = self.run.clone();
        run.local(|l| {
            if !self.closing && !self.done(now) && self.ring.len() < run.pipeline {
                self.send_one(ctx, l, now);
            }
            self.send_paced(ctx, l, interval, now);
        });
        if self.done(now) {
            self.finish(ctx, now);
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: CloseCode, _reason: &str) {
        let run = &*self.run;
        if !self.ring.is_empty() {
            run.unanswered.fetch_add(self.ring.len() as u64, Relaxed);
        }
        *lock(&run.closes).entry(code.0).or_default() += 1;
        run.flush_local();
        run.closed.fetch_add(1, Relaxed);
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        let kind = match error {
            ConnectError::Io(_) => "tcp",
            ConnectError::Handshake(_) => "handshake",
            ConnectError::Timeout => "timeout",
            ConnectError::ClosedDuringHandshake => "closed_during_handshake",
            ConnectError::Refused => "refused",
            _ => "other",
        };
        log::debug!("bench: connection failed: {error}");
        let run = &*self.run;
        let first = {
            let mut errors = lock(&run.connect_errors);
            let count = errors.entry(kind).or_default();
            *count += 1;
            *count == 1
        };
        if first {
            log::warn!("bench: a connection failed ({kind}): {error}");
        }
        run.failed.fetch_add(1, Relaxed);
    }
}

/// CPU time this process used so far (user, system).
fn cpu_time() -> (Duration, Duration) {
    wsloop::sys::process_cpu_time()
}

/// CPU use of this process over part of the run.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    user: Duration,
    system: Duration,
    wall: Duration,
}

impl CpuUse {
    fn between(start: ((Duration, Duration), Instant), end: ((Duration, Duration), Instant)) -> Self {
        Self {
            user: end.0 .0.saturating_sub(start.0 .0),
            system: end.0 .1.saturating_sub(start.0 .1),
            wall: end.1.saturating_duration_since(start.1),
        }
    }

    /// Percent of one core.
    fn percent(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            (self.user + self.system).as_secs_f64() / wall * 100.0
        } else {
            0.0
        }
    }
}

/// The payload of every message: ASCII letters (valid text) or arbitrary bytes.
fn payload(size: usize, text: bool) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if text {
                b'a' + (state % 26) as u8
            } else {
                state as u8
            }
        })
        .collect()
}

fn resolve(url: &WsUrl) -> Result<SocketAddr, String> {
    if url.is_secure() {
        return Err("wss:// is not supported yet (the in-loop client has no TLS)".into());
    }
    let host = url.host().to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, url.port())
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Totals summed over the reactor threads' shards.
#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    sent: u64,
    received: u64,
    measured: u64,
    measured_bytes: u64,
    mismatched: u64,
    unexpected: u64,
}

fn totals(run: &Run) -> Totals {
    let mut t = Totals::default();
    for s in lock(&run.shards).iter() {
        t.sent += s.sent.load(Relaxed);
        t.received += s.received.load(Relaxed);
        t.measured += s.measured.load(Relaxed);
        t.measured_bytes += s.measured_bytes.load(Relaxed);
        t.mismatched += s.mismatched.load(Relaxed);
        t.unexpected += s.unexpected.load(Relaxed);
    }
    t
}

fn progress_bar(args: &BenchArgs, total: Option<u64>) -> ProgressBar {
    if args.json || args.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(1000),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let template = "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}";
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    match bench(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsloop bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> Result<ExitCode, String> {
    let url = WsUrl::parse(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let addr = resolve(&url)?;
    if args.connections == 0 {
        return Err("-c must be at least 1".into());
    }
    let threads = args.threads.max(1);
    let text = args.text;
    let pipeline = args.pipeline as usize;
    let duration = match (args.duration, args.messages) {
        (Some(d), _) => Some(d),
        (None, None) => Some(Duration::from_secs(10)),
        (None, Some(_)) => None,
    };

    let body = payload(args.size, text);
    let mut frame = Vec::with_capacity(args.size + 14);
    let key: [u8; 4] = rand::random();
    encode_frame(&mut frame, if text { OpCode::Text } else { OpCode::Binary }, true, 0, Some(key), &body);
    let burst = frame.repeat(pipeline);

    let clock = Clock::calibrate();
    let epoch = Instant::now();
    let epoch_ticks = ticks::now();
    let measure_from = epoch + args.warmup;
    let deadline = duration.map(|d| measure_from + d);
    let measure_from_ticks = epoch_ticks + clock.ticks(args.warmup);
    let run = Arc::new(Run {
        frame: frame.into_boxed_slice(),
        burst: burst.into_boxed_slice(),
        pipeline,
        size: args.size,
        text,
        clock,
        epoch,
        measure_from: measure_from_ticks,
        deadline: duration.map(|d| measure_from_ticks + clock.ticks(d)),
        pace: args.rate.map(|r| clock.ticks(Duration::from_secs_f64(threads as f64 / r)).max(1)),
        opened: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        last_open_ns: AtomicU64::new(0),
        finish_ticks: AtomicU64::new(0),
        unanswered: AtomicU64::new(0),
        connect_errors: Mutex::default(),
        closes: Mutex::default(),
        latency: Mutex::new(new_histogram()),
        handshake: Mutex::new(new_histogram()),
        shards: Mutex::default(),
    });

    let config = Config {
        threads,
        max_connections: args.connections.saturating_mul(2).max(1024),
        max_frame_size: args.size.max(16 << 20),
        max_message_size: args.size.max(64 << 20),
        max_buffered_bytes: (64 << 20).max(args.size * pipeline * 2),
        ping_interval: None,
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let engine = Server::new(config).start_without_listeners().map_err(|e| format!("cannot start reactors: {e}"))?;
    let handle = engine.handle();
    let options = ConnectOptions {
        timeout: args.connect_timeout,
        protocols: args.protocols.clone(),
        headers: args.headers.clone(),
        local_addr: None,
    };
    let host = url.host_header();
    let total = args.messages;
    let bar = progress_bar(args, total);

    let c = args.connections as u64;
    let mut opened_all = false;
    let mut next_connection = 0u64;
    let mut last_received = (0u64, Instant::now());
    let update_every = Duration::from_millis(100);
    let (mut meter_at, mut meter_received) = (Instant::now(), 0u64);
    let mut rate_shown = 0.0;
    let mut cpu_start = None;
    let mut samples = Samples::starting_at(epoch);
    loop {
        // Open connections: all at once, or at the ramp rate.
        if !opened_all {
            let due = match args.ramp {
                None => c,
                Some(r) => ((epoch.elapsed().as_secs_f64() * r) as u64 + 1).min(c),
            };
            while next_connection < due {
                let quota = match total {
                    None => u64::MAX,
                    Some(n) => n / c + u64::from(next_connection < n % c),
                };
                let conn = BenchConn {
                    run: run.clone(),
                    ring: Ring::new(pipeline),
                    quota,
                    requested: Instant::now(),
                    closing: false,
                    waiting_for_slot: false,
                };
                let mut options = options.clone();
                if !args.source_ips.is_empty() {
                    let ip = args.source_ips[next_connection as usize % args.source_ips.len()];
                    options.local_addr = Some(std::net::SocketAddr::new(ip, 0));
                }
                handle.connect(addr, &host, url.path_and_query(), options, conn);
                next_connection += 1;
            }
            opened_all = next_connection == c;
        }
        let now = Instant::now();
        if cpu_start.is_none() && now >= measure_from {
            cpu_start = Some((cpu_time(), now));
        }
        let t = totals(&run);
        samples.maybe_record(now, &t, open_connections(&run));
        if now.duration_since(meter_at) >= Duration::from_secs(1) {
            rate_shown = (t.received - meter_received) as f64 / now.duration_since(meter_at).as_secs_f64();
            (meter_at, meter_received) = (now, t.received);
        }
        let position = match (total, deadline) {
            (Some(_), _) => t.received,
            (None, Some(deadline)) => {
                let span = deadline.duration_since(epoch).as_secs_f64();
                (now.duration_since(epoch).as_secs_f64() / span * 1000.0).min(1000.0) as u64
            }
            (None, None) => 0,
        };
        bar.set_position(position);
        bar.set_message(format!(
            "conns {}/{} | {} msg/s | {} echoed",
            open_connections(&run),
            c,
            si(rate_shown),
            si(t.received as f64)
        ));
        if opened_all && run.finished() >= c {
            break;
        }
        // Watchdogs: a timed run ends at its deadline plus a grace period; a counted run gives up when
        // nothing arrived for a while (after the connection timeout).
        if t.received != last_received.0 {
            last_received = (t.received, now);
        }
        let grace = args.connect_timeout + Duration::from_secs(5);
        let overdue = match deadline {
            Some(deadline) => now > deadline + grace,
            None => opened_all && now.duration_since(last_received.1) > grace,
        };
        if overdue {
            log::warn!("bench: stopping with {} connections still open", c - run.finished().min(c));
            break;
        }
        std::thread::sleep(update_every);
    }
    let ended = Instant::now();
    let cpu = cpu_start.map(|start| CpuUse::between(start, (cpu_time(), ended))).unwrap_or_default();
    bar.finish_and_clear();
    engine.stop();
    samples.finish(ended, &totals(&run), open_connections(&run));

    let mut report = Report::collect(args, &run, ended.saturating_duration_since(measure_from), duration);
    report.cpu = cpu;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    if let Some(path) = &args.html {
        let data = report.html_data(args, &samples, duration);
        if let Err(e) = std::fs::write(path, crate::pages::bench_report(&data)) {
            return Err(format!("cannot write the HTML report to {}: {e}", path.display()));
        }
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Connections open now (opened and not yet closed).
fn open_connections(run: &Run) -> u64 {
    let opened = run.opened.load(Relaxed);
    opened - run.closed.load(Relaxed).min(opened)
}

/// The run's totals about once a second, for the HTML report's throughput over time.
struct Samples {
    epoch: Instant,
    last: Option<Instant>,
    /// Seconds since the start, messages sent and received so far, connections open.
    points: Vec<(f64, u64, u64, u64)>,
}

impl Samples {
    fn starting_at(epoch: Instant) -> Self {
        Self { epoch, last: None, points: vec![(0.0, 0, 0, 0)] }
    }

    /// Records a point when a second has passed since the last one.
    fn maybe_record(&mut self, now: Instant, t: &Totals, open: u64) {
        let due = self.last.map_or(now.saturating_duration_since(self.epoch), |at| now.saturating_duration_since(at));
        if due >= Duration::from_secs(1) {
            self.record(now, t, open);
        }
    }

    fn record(&mut self, now: Instant, t: &Totals, open: u64) {
        self.last = Some(now);
        self.points.push((now.saturating_duration_since(self.epoch).as_secs_f64(), t.sent, t.received, open));
    }

    /// The last point, at the end of the run; a stub interval shorter than half a second is merged into
    /// the one before it (its rate would say little).
    fn finish(&mut self, now: Instant, t: &Totals, open: u64) {
        let since_last = self.last.map(|at| now.saturating_duration_since(at));
        if self.points.len() > 2 && since_last.is_some_and(|d| d < Duration::from_millis(500)) {
            self.points.pop();
        }
        self.record(now, t, open);
    }

    /// One object per interval between points: its end (`t`, seconds since the start), the rates over
    /// it and the totals at its end.
    fn json(&self, size: usize) -> Value {
        let rows: Vec<Value> = self
            .points
            .windows(2)
            .filter(|w| w[1].0 > w[0].0)
            .map(|w| {
                let ((t0, sent0, received0, _), (t1, sent1, received1, open)) = (w[0], w[1]);
                let secs = t1 - t0;
                let received = received1.saturating_sub(received0) as f64 / secs;
                json!({
                    "t": t1,
                    "seconds": secs,
                    "sent_per_second": sent1.saturating_sub(sent0) as f64 / secs,
                    "received_per_second": received,
                    "megabytes_per_second": received * size as f64 / 1e6,
                    "sent": sent1,
                    "received": received1,
                    "open_connections": open,
                })
            })
            .collect();
        Value::Array(rows)
    }
}

/// Percentiles of a histogram for the report's distribution chart: `[percentile, value]` pairs from
/// the HDR quantile iteration (more points towards the tail), ending at the maximum.
fn percentile_curve(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!([]);
    }
    let mut points: Vec<Value> =
        h.iter_quantiles(4).map(|v| json!([v.quantile_iterated_to() * 100.0, v.value_iterated_to()])).collect();
    points.dedup();
    Value::Array(points)
}

/// The result of a run.
struct Report {
    url: String,
    requested: u64,
    opened: u64,
    failed: u64,
    connect_errors: BTreeMap<&'static str, u64>,
    closes: BTreeMap<u16, u64>,
    handshake: Histogram<u64>,
    handshake_secs: f64,
    size: usize,
    text: bool,
    pipeline: usize,
    threads: usize,
    sent: u64,
    received: u64,
    measured: u64,
    measured_bytes: u64,
    measured_secs: f64,
    mismatched: u64,
    unexpected: u64,
    unanswered: u64,
    latency: Histogram<u64>,
    cpu: CpuUse,
}

impl Report {
    /// `elapsed`: from the end of the warmup to the end of the run.
    fn collect(args: &BenchArgs, run: &Run, elapsed: Duration, duration: Option<Duration>) -> Self {
        let t = totals(run);
        let measured_secs = match duration {
            Some(d) => d.min(elapsed).as_secs_f64(),
            None => {
                let finish = run.finish_ticks.load(Relaxed).saturating_sub(run.measure_from);
                run.clock.duration(finish).as_secs_f64()
            }
        };
        let mut latency = new_histogram();
        // The histogram holds ticks: re-record every bucket in microseconds.
        for v in lock(&run.latency).iter_recorded() {
            let _ = latency.record_n(run.clock.micros(v.value_iterated_to()), v.count_at_value());
        }
        Self {
            url: args.url.clone(),
            requested: args.connections as u64,
            opened: run.opened.load(Relaxed),
            failed: run.failed.load(Relaxed),
            connect_errors: lock(&run.connect_errors).clone(),
            closes: lock(&run.closes).clone(),
            handshake: lock(&run.handshake).clone(),
            handshake_secs: Duration::from_nanos(run.last_open_ns.load(Relaxed)).as_secs_f64(),
            size: run.size,
            text: run.text,
            pipeline: run.pipeline,
            threads: args.threads.max(1),
            sent: t.sent,
            received: t.received,
            measured: t.measured,
            measured_bytes: t.measured_bytes,
            measured_secs,
            mismatched: t.mismatched,
            unexpected: t.unexpected,
            unanswered: run.unanswered.load(Relaxed),
            latency,
            cpu: CpuUse::default(),
        }
    }

    fn per_second(&self, v: u64) -> f64 {
        if self.measured_secs > 0.0 {
            v as f64 / self.measured_secs
        } else {
            0.0
        }
    }

    fn handshakes_per_second(&self) -> f64 {
        if self.handshake_secs > 0.0 {
            self.opened as f64 / self.handshake_secs
        } else {
            0.0
        }
    }

    /// Whether the run passes (exit status 0): every connection opened, at least one echo came back,
    /// every message was echoed with the right type and length, every close was our 1000.
    fn ok(&self) -> bool {
        self.received > 0
            && self.failed == 0
            && self.mismatched == 0
            && self.unexpected == 0
            && self.unanswered == 0
            && self.abnormal_closes() == 0
    }

    /// Closes other than the normal 1000 that ends every connection.
    fn abnormal_closes(&self) -> u64 {
        self.closes.iter().filter(|(code, _)| **code != 1000).map(|(_, n)| n).sum()
    }

    fn percentiles(h: &Histogram<u64>) -> [(&'static str, u64); 6] {
        [
            ("p50", h.value_at_quantile(0.5)),
            ("p90", h.value_at_quantile(0.9)),
            ("p99", h.value_at_quantile(0.99)),
            ("p99_9", h.value_at_quantile(0.999)),
            ("max", h.max()),
            ("mean", h.mean().round() as u64),
        ]
    }

    fn json(&self) -> Value {
        let pct = |h: &Histogram<u64>| -> Value {
            let mut m = serde_json::Map::new();
            for (name, v) in Self::percentiles(h) {
                m.insert(name.to_owned(), json!(v));
            }
            m.insert("count".into(), json!(h.len()));
            Value::Object(m)
        };
        json!({
            "url": self.url,
            "threads": self.threads,
            "connections": {
                "requested": self.requested,
                "opened": self.opened,
                "failed": self.failed,
                "handshake_us": pct(&self.handshake),
                "handshakes_per_second": self.handshakes_per_second(),
            },
            "messages": {
                "kind": if self.text { "text" } else { "binary" },
                "size": self.size,
                "pipeline": self.pipeline,
                "sent": self.sent,
                "received": self.received,
            },
            "measured": {
                "seconds": self.measured_secs,
                "received": self.measured,
                "messages_per_second": self.per_second(self.measured),
                "megabytes_per_second": self.per_second(self.measured_bytes) / 1e6,
            },
            "latency_us": pct(&self.latency),
            "errors": {
                "connect": self.connect_errors,
                "length_or_type_mismatch": self.mismatched,
                "unexpected_messages": self.unexpected,
                "unanswered": self.unanswered,
                "abnormal_closes": self.abnormal_closes(),
            },
            "bench_cpu": {
                "percent_of_one_core": self.cpu.percent(),
                "user_seconds": self.cpu.user.as_secs_f64(),
                "system_seconds": self.cpu.system.as_secs_f64(),
                "wall_seconds": self.cpu.wall.as_secs_f64(),
            },
            "closes": self.closes.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Everything the HTML report shows: the configuration, the result (as `--json` prints it), the
    /// per-second samples and the latency and handshake distributions.
    fn html_data(&self, args: &BenchArgs, samples: &Samples, duration: Option<Duration>) -> Value {
        let config = json!({
            "url": self.url,
            "connections": self.requested,
            "size": self.size,
            "kind": if self.text { "text" } else { "binary" },
            "pipeline": self.pipeline,
            "threads": self.threads,
            "duration_seconds": duration.map(|d| d.as_secs_f64()),
            "messages": args.messages,
            "rate_per_second": args.rate,
            "ramp_per_second": args.ramp,
            "warmup_seconds": args.warmup.as_secs_f64(),
            "connect_timeout_seconds": args.connect_timeout.as_secs_f64(),
            "protocols": args.protocols,
            // Header values may be credentials: only the names go into a file meant to be shared.
            "header_names": args.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
            "source_ips": args.source_ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        });
        json!({
            "generated_utc": crate::util::utc_timestamp(std::time::SystemTime::now()),
            "wsloop": env!("CARGO_PKG_VERSION"),
            "ok": self.ok(),
            "config": config,
            "result": self.json(),
            "samples": samples.json(self.size),
            "latency_percentiles_us": percentile_curve(&self.latency),
            "handshake_percentiles_us": percentile_curve(&self.handshake),
        })
    }

    fn human(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let kind = if self.text { "text" } else { "binary" };
        let _ = writeln!(
            s,
            "wsloop bench {}: {} connections, {} B {kind} messages, {} in flight each, {} thread(s)",
            self.url, self.requested, self.size, self.pipeline, self.threads
        );
        let h = &self.handshake;
        let _ = writeln!(
            s,
            "connections: {} opened, {} failed; handshake p50 {} p99 {} max {} ({:.0} handshakes/s)",
            self.opened,
            self.failed,
            micros(h.value_at_quantile(0.5)),
            micros(h.value_at_quantile(0.99)),
            micros(h.max()),
            self.handshakes_per_second()
        );
        let _ = writeln!(s, "messages:    {} sent, {} received", self.sent, self.received);
        let _ = writeln!(
            s,
            "throughput:  {} msg/s, {:.2} MB/s echoed payload ({} messages in {:.2} s measured)",
            si(self.per_second(self.measured)),
            self.per_second(self.measured_bytes) / 1e6,
            self.measured,
            self.measured_secs
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency:     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            micros(l.value_at_quantile(0.5)),
            micros(l.value_at_quantile(0.9)),
            micros(l.value_at_quantile(0.99)),
            micros(l.value_at_quantile(0.999)),
            micros(l.max()),
            micros(l.mean().round() as u64)
        );
        let closes: Vec<String> = self.closes.iter().map(|(code, n)| format!("{code}×{n}")).collect();
        let connect: Vec<String> = self.connect_errors.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        let _ = writeln!(
            s,
            "errors:      connect [{}], closes [{}], length/type mismatches {}, unexpected {}, unanswered {}",
            connect.join(" "),
            closes.join(" "),
            self.mismatched,
            self.unexpected,
            self.unanswered
        );
        let _ = writeln!(
            s,
            "bench cpu:   {:.0}% of one core (user {:.2} s, system {:.2} s over {:.2} s; near {}% means the bench, \
             not the server, is the limit)",
            self.cpu.percent(),
            self.cpu.user.as_secs_f64(),
            self.cpu.system.as_secs_f64(),
            self.cpu.wall.as_secs_f64(),
            100 * self.threads
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_payload_is_ascii() {
        let p = payload(1000, true);
        assert_eq!(p.len(), 1000);
        assert!(p.iter().all(u8::is_ascii_lowercase));
        assert_eq!(payload(7, false).len(), 7);
    }

    #[test]
    fn ring_is_fifo_inline_and_on_the_heap() {
        for capacity in [1, 4, 5, 16] {
            let mut ring = Ring::new(capacity);
            for round in 0..3u64 {
                for i in 0..capacity as u64 {
                    ring.push_back(round * 100 + i);
                }
                ring.push_back(999); // full: dropped
                assert_eq!(ring.len(), capacity);
                for i in 0..capacity as u64 {
                    assert_eq!(ring.pop_front(), Some(round * 100 + i));
                }
                assert!(ring.is_empty());
                assert_eq!(ring.pop_front(), None);
            }
        }
    }

    #[test]
    fn ring_wraps_around_like_a_deque() {
        // Pushes and pops interleaved so the head visits every slot and the tail wraps past the end.
        for capacity in [1, 3, 4, 5, 16] {
            let mut ring = Ring::new(capacity);
            let mut model = std::collections::VecDeque::new();
            let mut x = 7u64;
            for step in 0..2_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if !(x >> 33).is_multiple_of(3) {
                    ring.push_back(step);
                    if model.len() < capacity {
                        model.push_back(step);
                    }
                } else {
                    assert_eq!(ring.pop_front(), model.pop_front(), "capacity {capacity}, step {step}");
                }
                assert_eq!(ring.len(), model.len());
            }
        }
    }

    #[test]
    fn pacing_spaces_sends() {
        let mut local = Local {
            shard: Arc::default(),
            counts: Counts::default(),
            latency: new_histogram(),
            handshake: new_histogram(),
            next_send: None,
        };
        let clock = Clock::calibrate();
        let t0 = ticks::now();
        let interval = clock.ticks(Duration::from_millis(2));
        // Slots are spaced by the interval, whoever asks and whenever.
        let a = reserve_slot(&mut local, &clock, interval, t0);
        let b = reserve_slot(&mut local, &clock, interval, t0);
        let c = reserve_slot(&mut local, &clock, interval, t0);
        assert_eq!((a, b - a, c - b), (t0, interval, interval));
        // After a long idle spell, at most 5 ms of unused budget is banked: no burst of old slots.
        let later = t0 + clock.ticks(Duration::from_secs(1));
        let d = reserve_slot(&mut local, &clock, interval, later);
        assert!(d >= later - clock.ticks(Duration::from_millis(5)) && d <= later, "{d} vs {later}");
    }
}

//! `wsloop bench`: a closed-loop load generator for echo servers, built on the engine's in-loop client
//! connections (`Server::start_without_listeners` + `Handle::connect`, one
//! [`Handler`](wsloop::server::Handler) per connection).
//!
//! The hot path, per echoed message: one clock read, a pop and a push on the connection's ring of send
//! instants, a histogram record and a few single-writer counters in the reactor thread's own block,
//! and one `Ctx::send_raw` of a frame that was built and masked once for the whole run. No allocation.
//! Every frame sent from one event is corked by the reactor and written with one syscall.
//!
//! This file owns the command line ([`BenchArgs`]) and the run's orchestration: resolving the URL,
//! building the frame, starting the reactors, opening connections (at once or ramped), the progress bar,
//! the watchdogs and printing the report. It never handles a connection's events (`load`) nor formats
//! a result (`report`). The rest: `clock` (ticks and their calibration), `state` (the shared run state
//! and per-thread counters), `ring` (send instants in flight), `cpu` (the bench's own CPU use) and
//! `samples` (totals over time for the HTML report).

mod clock;
mod cpu;
mod load;
mod report;
mod ring;
mod samples;
mod state;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wsloop::client::WsUrl;
use wsloop::proto::{encode_frame, OpCode};
use wsloop::server::{Config, ConnectOptions, Server};

use self::clock::{ticks, Clock};
use self::cpu::{cpu_time, CpuUse};
use self::load::BenchConn;
use self::report::Report;
use self::ring::Ring;
use self::samples::Samples;
use self::state::{new_histogram, open_connections, totals, Run};
use crate::util::{duration, header, per_second, si, ProxyArgs};

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
    #[command(flatten)]
    proxy: ProxyArgs,
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
    /// For wss:// URLs: trust only the CA certificate(s) in this PEM file (default: the Mozilla root
    /// CAs).
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// For wss:// URLs: no TLS session resumption, so every connection makes a full handshake
    /// (default: connections after the first resume its session).
    #[arg(long)]
    no_tls_resume: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// With `--deflate shared|dedicated` the connections negotiate permessage-deflate and every message is
    /// sent compressed (compressed once for the run, without context, with `--deflate-window-bits`).
    #[command(flatten)]
    deflate: crate::util::DeflateArgs,
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

/// The in-loop clients' TLS settings for a wss:// URL (`None` for ws://).
fn client_tls(url: &WsUrl, args: &BenchArgs) -> Result<Option<wsloop::client::ClientTls>, String> {
    if !url.is_secure() {
        return Ok(None);
    }
    let tls = match &args.ca {
        Some(ca) => wsloop::client::ClientTls::with_ca_file(ca).map_err(|e| format!("--ca: {e}"))?,
        None => wsloop::client::ClientTls::default(),
    };
    Ok(Some(if args.no_tls_resume { tls.without_resumption() } else { tls }))
}

fn resolve(url: &WsUrl) -> Result<SocketAddr, String> {
    let host = url.host().to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, url.port())
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
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
    let proxy = args.proxy.proxy_for(&args.url)?;
    // Through a proxy each connection is set up by a helper thread (Handle::connect_url): the proxy
    // resolves the host for http:// and socks5h://.
    let addr = match proxy {
        Some(_) if url.is_secure() => return Err("wss:// is not supported yet (the in-loop client has no TLS)".into()),
        Some(_) => None,
        None => Some(resolve(&url)?),
    };
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
    let deflate = args.deflate.config(wsloop::proto::deflate::DeflateMode::Off)?;
    let mut frame = Vec::with_capacity(args.size + 14);
    let key: [u8; 4] = rand::random();
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    if deflate.enabled() {
        let mut packed = Vec::new();
        wsloop::sys::Deflater::new(deflate.level.into(), deflate.window_bits, deflate.mem_level)
            .and_then(|mut d| d.compress_sync(&body, &mut packed))
            .map_err(|e| format!("cannot compress the message: {e:?}"))?;
        packed.truncate(packed.len().saturating_sub(4));
        encode_frame(&mut frame, opcode, true, wsloop::proto::RSV1, Some(key), &packed);
    } else {
        encode_frame(&mut frame, opcode, true, 0, Some(key), &body);
    }
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
        proxy,
        tls: client_tls(&url, args)?,
        deflate,
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
                match addr {
                    Some(addr) => handle.connect(addr, &host, url.path_and_query(), options, conn),
                    None => handle.connect_url(&args.url, options, conn),
                }
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
}

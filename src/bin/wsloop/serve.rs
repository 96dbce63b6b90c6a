//! `wsloop serve`: an echo, broadcast, discard or chat server until SIGINT or SIGTERM, with a live
//! dashboard on the same port (`/dashboard`, unless `--no-dashboard`) and an optional one-line metrics
//! summary every second (`--stats`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use wsloop::metrics::{MetricsReport, MetricsSnapshot, RateMeter};
use wsloop::server::{BackpressurePolicy, Config, Ctx, Handler, Message, Server};

use crate::chat::{ChatArgs, ChatConn, Rooms};
use crate::dashboard::{Feed, FeedInfo};
use crate::limits::LimitArgs;
use crate::pages::Pages;
use crate::util::{duration, secs, si};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Mode {
    /// Every text message comes back as text, every binary one as binary.
    Echo,
    /// Every message goes to every connection.
    Broadcast,
    /// Messages are read and dropped.
    Discard,
    /// Chat rooms: a connection on /chat/ROOM joins ROOM, its text messages reach every member, with
    /// presence; GET /chat/ROOM serves the chat page; every other path echoes.
    Chat,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Broadcast => "broadcast",
            Self::Discard => "discard",
            Self::Chat => "chat",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Close a peer whose buffered bytes reach the ceiling.
    Close,
    /// Drop messages that would pass the ceiling.
    Drop,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: std::net::SocketAddr,
    /// Reactor threads (default: number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// What the server does with messages.
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
    /// Maximum connections.
    #[arg(long, default_value_t = 100_000)]
    max_connections: usize,
    /// Largest request head in bytes.
    #[arg(long, default_value_t = 8192)]
    max_request_head: usize,
    /// Largest frame payload in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Largest message in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Ceiling on bytes queued for a peer that does not read.
    #[arg(long, default_value_t = 16 << 20)]
    max_buffered_bytes: usize,
    /// What to do at that ceiling.
    #[arg(long, value_enum, default_value = "close")]
    backpressure: Policy,
    /// Ceiling per reactor on the bytes of messages sent to it from other threads (broadcasts,
    /// publishes) and not taken yet; past it such a message is dropped (commands_dropped).
    #[arg(long, default_value_t = 64 << 20)]
    max_pending_command_bytes: usize,
    /// Seconds allowed for the upgrade request.
    #[arg(long, value_parser = secs, default_value = "10")]
    handshake_timeout: Duration,
    /// Seconds without traffic before a connection is closed (0: never).
    #[arg(long, value_parser = secs, default_value = "0")]
    idle_timeout: Duration,
    /// Seconds to wait for the peer's close frame.
    #[arg(long, value_parser = secs, default_value = "5")]
    close_timeout: Duration,
    /// Seconds without traffic before a ping is sent (0: no pings).
    #[arg(long, value_parser = secs, default_value = "30")]
    ping_interval: Duration,
    /// Seconds to wait for a pong.
    #[arg(long, value_parser = secs, default_value = "30")]
    pong_timeout: Duration,
    /// Subprotocols the server accepts, in order of preference (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Accept only these Origin values (repeatable; default: any).
    #[arg(long = "allow-origin")]
    allowed_origins: Vec<String>,
    /// Path answering plain HTTP GETs with Prometheus metrics ("" turns it off).
    #[arg(long, default_value = "/metrics")]
    metrics_path: String,
    /// Path answering plain HTTP GETs with a health check: 200 ok, 503 while stopping ("" turns it off).
    #[arg(long, default_value = "/healthz")]
    health_path: String,
    /// Print a one-line metrics summary every second (active connections, messages/s and MB/s in and
    /// out, errors so far).
    #[arg(long)]
    stats: bool,
    /// Path of the live dashboard page (plain HTTP GET); its WebSocket feed is PATH/ws.
    #[arg(long, default_value = "/dashboard", value_parser = dashboard_path)]
    dashboard_path: String,
    /// Serve no dashboard (neither the page nor its feed).
    #[arg(long)]
    no_dashboard: bool,
    /// Time between two dashboard updates, e.g. 1s or 500ms.
    #[arg(long, value_parser = dashboard_interval, default_value = "1s")]
    dashboard_interval: Duration,
    /// Serve wss:// (and https:// for /metrics, /healthz and the pages): the certificate chain, PEM
    /// (the server's certificate first). Needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --tls-cert: also serve plain ws:// (and http://) on this address, beside the TLS listener,
    /// from the same reactor threads (e.g. 0.0.0.0:8080; port 0 picks one, printed on stderr).
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    plain_listen: Option<std::net::SocketAddr>,
    /// EXPERIMENTAL (Linux, built with feature io-uring): read plain connections through an io_uring
    /// multishot receive per connection instead of recv on readiness (writes are unchanged). Falls
    /// back to mio, with a warning, when no ring can be made.
    #[arg(long)]
    io_uring: bool,
    #[command(flatten)]
    chat: ChatArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    deflate: crate::util::DeflateArgs,
}

/// A dashboard path: starts with `/`; a trailing `/` is dropped (`/` puts the page at the root).
fn dashboard_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.contains(['?', '#', ' ']) {
        return Err(format!("{s:?}: expected a path such as /dashboard"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn dashboard_interval(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(50) || d > Duration::from_secs(3600) {
        return Err(format!("{s:?}: between 50ms and 1h"));
    }
    Ok(d)
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => ctx.send_text(text),
            Message::Binary(data) => ctx.send_binary(data),
        };
    }
}

struct Broadcast;

impl Handler for Broadcast {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => ctx.broadcast_text(text),
            Message::Binary(data) => ctx.broadcast_binary(data),
        }
    }
}

struct Discard;

impl Handler for Discard {}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let mut config = Config {
        addr: args.addr,
        max_connections: args.max_connections,
        max_request_head: args.max_request_head,
        max_frame_size: args.max_frame_size,
        max_message_size: args.max_message_size,
        max_buffered_bytes: args.max_buffered_bytes,
        max_pending_command_bytes: args.max_pending_command_bytes,
        backpressure: match args.backpressure {
            Policy::Close => BackpressurePolicy::Close,
            Policy::Drop => BackpressurePolicy::Drop,
        },
        handshake_timeout: args.handshake_timeout,
        idle_timeout: nonzero(args.idle_timeout),
        close_timeout: args.close_timeout,
        ping_interval: nonzero(args.ping_interval),
        pong_timeout: args.pong_timeout,
        allowed_origins: (!args.allowed_origins.is_empty()).then_some(args.allowed_origins),
        metrics_path: (!args.metrics_path.is_empty()).then_some(args.metrics_path),
        health_path: (!args.health_path.is_empty()).then_some(args.health_path),
        io_uring: args.io_uring,
        ..Config::default()
    };
    if let Some(threads) = args.threads {
        config.threads = threads.max(1);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match wsloop::server::TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("wsloop: --tls-cert/--tls-key: {e}");
                return ExitCode::FAILURE;
            }
        }
        config.plain_addr = args.plain_listen;
    }
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let http_scheme = if config.tls.is_some() { "https" } else { "http" };
    args.limits.apply(&mut config);
    config.deflate = match args.deflate.config(wsloop::proto::deflate::DeflateMode::Off) {
        Ok(deflate) => deflate,
        Err(e) => {
            eprintln!("wsloop serve: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.protocols.is_empty() {
        config.subprotocols = wsloop::proto::negotiate::SubprotocolPolicy::Preferred(args.protocols);
    }
    let threads = config.threads;
    let addr = args.addr;
    let pool_buffer_bytes = config.read_buffer_size;
    let mut server = Server::new(config);
    match args.mode {
        Mode::Echo => server.register_handler("*", |_| Echo),
        Mode::Broadcast => server.register_handler("*", |_| Broadcast),
        Mode::Discard => server.register_handler("*", |_| Discard),
        Mode::Chat => {
            let rooms = Arc::new(Rooms::default());
            let chat = args.chat.clone();
            server.register_handler("*", move |request| ChatConn::new(&rooms, &chat, request))
        }
    };
    if let Some(url) = &args.chat.broker {
        if !matches!(args.mode, Mode::Chat) {
            eprintln!("wsloop: --broker shares chat rooms between nodes: it needs --mode chat");
            return ExitCode::FAILURE;
        }
        if let Err(e) = set_broker(&mut server, url) {
            eprintln!("wsloop: --broker {url}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let started = Instant::now();
    let dashboard = (!args.no_dashboard).then(|| (args.dashboard_path.clone(), format!("{}/ws", args.dashboard_path)));
    if let Some((_, feed)) = &dashboard {
        let info = Arc::new(FeedInfo {
            interval: args.dashboard_interval,
            started,
            mode: args.mode.name(),
            pool_buffer_bytes,
        });
        server.register_handler(feed, move |_| Feed::new(info.clone()));
    }
    let chat_pages = matches!(args.mode, Mode::Chat);
    if dashboard.is_some() || chat_pages {
        let dashboard = dashboard.as_ref().map(|(page, feed)| (page.as_str(), feed.as_str()));
        server.set_http_handler(Pages::new(dashboard, chat_pages));
    }
    let running = match server.start() {
        Ok(running) => running,
        Err(e) => {
            eprintln!("wsloop: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("wsloop: cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("wsloop serving on {scheme}://{} ({} reactor threads)", running.local_addr(), threads);
    // The first stdout line stays the only fixed one (scripts read it); the pages are announced on stderr.
    if let Some(plain) = running.plain_addr() {
        eprintln!("wsloop: plain ws:// also on ws://{plain}");
    }
    if let Some((page, _)) = &dashboard {
        eprintln!(
            "wsloop: dashboard on {http_scheme}://{}{}",
            running.local_addr(),
            if page.is_empty() { "/" } else { page }
        );
    }
    if chat_pages {
        eprintln!("wsloop: chat rooms on {http_scheme}://{}/chat/ROOM", running.local_addr());
    }
    if let (Some(url), Some(node)) = (&args.chat.broker, running.handle().broker_node()) {
        eprintln!("wsloop: rooms shared through Redis at {url} (node {node:016x})");
    }
    let handle = running.handle();
    let mut previous = handle.metrics();
    let mut meter = RateMeter::starting_at(previous, Instant::now());
    let mut next_stats = Instant::now() + STATS_INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if args.stats && Instant::now() >= next_stats {
            next_stats += STATS_INTERVAL;
            let report = meter.report(handle.metrics(), Instant::now());
            println!("{}", stats_line(&report, &previous));
            previous = report.totals;
        }
    }
    log::info!("stopping: closing connections with 1001");
    running.stop();
    ExitCode::SUCCESS
}

/// Shares the server's topics through the Redis at `url`.
#[cfg(feature = "redis")]
fn set_broker(server: &mut Server, url: &str) -> Result<(), String> {
    let broker = wsloop::broker::redis::RedisBroker::new(url).map_err(|e| e.to_string())?;
    server.set_broker(broker);
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn set_broker(_server: &mut Server, _url: &str) -> Result<(), String> {
    Err("this wsloop was built without the `redis` feature (cargo build --release --features redis)".into())
}

/// How often `--stats` prints.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Every counter that means something went wrong: refused connections (global cap, per-IP caps,
/// shed while out of descriptors), failed handshakes, protocol errors, handler panics, dropped messages,
/// slow peers closed, rate-limit closes, and I/O errors.
fn error_total(report: &MetricsReport) -> u64 {
    let t = &report.totals;
    t.connections_refused
        + t.connections_refused_per_ip
        + t.handshakes_refused_per_ip
        + t.connections_shed
        + t.rate_limit_closes
        + t.handshake_failures
        + t.protocol_errors
        + t.handler_panics
        + t.messages_dropped
        + t.slow_peers_closed
        + t.errors
}

/// One `--stats` line: `conns 100 | in 512.3k msg/s 8.20 MB/s | out 512.3k msg/s 9.22 MB/s | errors 0`.
/// Rates are over the last interval, errors are counted since start; MB = 10^6 bytes. In: payload
/// bytes received. Out: bytes written to sockets (frame headers included), because the engine counts
/// no payload bytes for messages sent through `Ctx::send_text`/`send_binary`.
fn stats_line(report: &MetricsReport, previous: &MetricsSnapshot) -> String {
    let r = &report.rates;
    let secs = report.interval.as_secs_f64();
    let written = report.totals.bytes_written.saturating_sub(previous.bytes_written) as f64;
    let written_per_second = if secs > 0.0 { written / secs } else { 0.0 };
    format!(
        "conns {} | in {} msg/s {:.2} MB/s | out {} msg/s {:.2} MB/s | errors {}",
        report.totals.active_connections,
        si(r.messages_received_per_second),
        r.bytes_received_per_second / 1e6,
        si(r.messages_sent_per_second),
        written_per_second / 1e6,
        error_total(report),
    )
}

//! The `wsloop` command-line tool: `serve` runs an echo (or broadcast, or discard) server;
//! `autobahn-client` runs the Autobahn|Testsuite client cases.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wsloop::client::{self, ClientOptions, CloseInfo, Error as ClientError, Message as ClientMessage};
use wsloop::proto::CloseCode;
use wsloop::server::{BackpressurePolicy, Config, Ctx, Handler, Message, Server};

#[derive(Parser)]
#[command(name = "wsloop", version, about = "A per-core reactor WebSocket engine: server, client and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebSocket server (echo by default) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Run the Autobahn|Testsuite client cases against a fuzzing server (`wstest -m fuzzingserver`).
    AutobahnClient(AutobahnClientArgs),
}

#[derive(Args)]
struct AutobahnClientArgs {
    /// The fuzzing server's URL, e.g. ws://127.0.0.1:9001.
    url: String,
    /// The agent name the results are reported under.
    #[arg(long, default_value = "wsloop")]
    agent: String,
    /// Seconds allowed for each case's closing handshake and each read.
    #[arg(long, value_parser = secs, default_value = "60")]
    case_timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Every text message comes back as text, every binary one as binary.
    Echo,
    /// Every message goes to every connection.
    Broadcast,
    /// Messages are read and dropped.
    Discard,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Close a peer whose buffered bytes reach the ceiling.
    Close,
    /// Drop messages that would pass the ceiling.
    Drop,
}

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s}: out of range"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Args)]
struct ServeArgs {
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

fn serve(args: ServeArgs) -> ExitCode {
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let mut config = Config {
        addr: args.addr,
        max_connections: args.max_connections,
        max_request_head: args.max_request_head,
        max_frame_size: args.max_frame_size,
        max_message_size: args.max_message_size,
        max_buffered_bytes: args.max_buffered_bytes,
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
        ..Config::default()
    };
    if let Some(threads) = args.threads {
        config.threads = threads.max(1);
    }
    if !args.protocols.is_empty() {
        config.subprotocols = wsloop::proto::negotiate::SubprotocolPolicy::Preferred(args.protocols);
    }
    let threads = config.threads;
    let mut server = Server::new(config);
    match args.mode {
        Mode::Echo => server.register_handler("*", |_| Echo),
        Mode::Broadcast => server.register_handler("*", |_| Broadcast),
        Mode::Discard => server.register_handler("*", |_| Discard),
    };
    let running = match server.start() {
        Ok(running) => running,
        Err(e) => {
            eprintln!("wsloop: cannot listen on {}: {e}", args.addr);
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
    println!("wsloop serving on ws://{} ({} reactor threads)", running.local_addr(), threads);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    log::info!("stopping: closing connections with 1001");
    running.stop();
    ExitCode::SUCCESS
}

/// Options for the Autobahn cases: limits large enough for the 16 MiB messages of cases 9.*.
fn autobahn_options(timeout: Duration) -> ClientOptions {
    ClientOptions::default()
        .max_frame_size(64 << 20)
        .max_message_size(64 << 20)
        .read_timeout(timeout)
        .close_timeout(timeout)
}

/// Runs one case: echoes every message until the connection ends.
fn autobahn_case(url: &str, options: ClientOptions) -> Result<CloseInfo, ClientError> {
    let mut client = client::connect(url, options)?;
    loop {
        let echoed = match client.read_message(None) {
            Ok(ClientMessage::Text(text)) => client.send_text(&text),
            Ok(ClientMessage::Binary(data)) => client.send_binary(&data),
            Err(ClientError::Closed { .. }) => return client.wait_for_close(None),
            Err(e) => return Err(e),
        };
        match echoed {
            Ok(()) => {}
            // The server's close frame is next in the stream: read it.
            Err(ClientError::Closed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
}

fn autobahn_client(args: AutobahnClientArgs) -> ExitCode {
    let base = args.url.trim_end_matches('/');
    let options = autobahn_options(args.case_timeout);
    let count = client::with_connection(&format!("{base}/getCaseCount"), options.clone(), |c| c.read_message(None));
    let count: u32 = match count {
        Ok(ClientMessage::Text(n)) => match n.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("wsloop: getCaseCount answered {n:?}, not a number");
                return ExitCode::FAILURE;
            }
        },
        Ok(other) => {
            eprintln!("wsloop: getCaseCount answered {other:?}, not a text message");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("wsloop: getCaseCount failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("wsloop autobahn-client: {count} cases");
    let agent = &args.agent;
    let mut failures = 0;
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match autobahn_case(&url, options.clone()) {
            Ok(info) => log::info!("case {case}: closed {:?} {:?}", info.code, info.reason),
            // Expected in the cases where the fuzzing server breaks the protocol.
            Err(e @ ClientError::Protocol(_)) => log::info!("case {case}: {e}"),
            Err(e) => {
                failures += 1;
                log::warn!("case {case}: {e}");
            }
        }
    }
    println!(
        "wsloop autobahn-client: ran {count} cases ({failures} ended with an error other than a protocol violation by the server)"
    );
    let update = format!("{base}/updateReports?agent={agent}");
    match client::connect(&update, options) {
        Ok(mut c) => {
            if let Err(e) = c.close_and_wait(CloseCode::NORMAL, "", None) {
                log::warn!("updateReports: {e}");
            }
        }
        Err(e) => {
            eprintln!("wsloop: updateReports failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::AutobahnClient(args) => autobahn_client(args),
    }
}

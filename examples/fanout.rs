//! Fan-out through a broker, measured: one topic, `--subscribers` per node on `--nodes` in-process nodes
//! sharing it through Redis, beside one node without a broker holding all of them (the same number of
//! deliveries per publish), in the same run.
//!
//! ```text
//! cargo run --release --features redis --example fanout -- --redis redis://127.0.0.1:6379/ \
//!     --nodes 3 --subscribers 3000 --duration 5s
//! ```
//!
//! Every node is a `Server` (its own reactors, and for the cross-node case its own `RedisBroker` and
//! node id); the subscribers are in-loop client connections on a separate client engine, so the whole
//! run is one process (each subscriber is two sockets: mind the open-files limit). Messages are
//! published from node 0 with `Handle::publish_binary`; each carries its send time, and each delivery's
//! latency (publish to the subscriber's `on_message`) goes into a histogram, kept apart for the
//! publishing node's own subscribers (local) and the other nodes' (through Redis). `--rate` publishes
//! at a fixed rate (open loop); without it, at most `--window` messages are in flight (closed loop: the
//! throughput the setup sustains). scripts/bench-fanout.sh runs both against a fresh redis-server.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use wsloop::broker::redis::RedisBroker;
use wsloop::server::{Config, ConnectError, ConnectOptions, Ctx, Handle, Handler, Message, RunningServer, Server};

#[derive(Parser, Debug)]
struct Args {
    /// The Redis server the nodes share (redis://HOST:PORT/).
    #[arg(long)]
    redis: String,
    /// Nodes in the cross-node case.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Subscribers per node (the single node holds nodes × this).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Reactor threads per node (the single node gets nodes × this).
    #[arg(long, default_value_t = 1)]
    node_threads: usize,
    /// Reactor threads of the client engine holding the subscribers.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Payload bytes per message (at least 8: the send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Publishing time per case, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Publishes per second (open loop). Without it: closed loop with --window messages in flight.
    #[arg(long)]
    rate: Option<f64>,
    /// Messages in flight in the closed loop (a message is in flight until every subscriber has it).
    #[arg(long, default_value_t = 4)]
    window: u64,
    /// Which cases to run.
    #[arg(long, value_enum, default_value = "both")]
    case: Case,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    Single,
    Cross,
    Both,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: expected e.g. 5s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_secs_f64(n / 1000.0)),
        "s" => Ok(Duration::from_secs_f64(n)),
        _ => Err(format!("{s:?}: expected e.g. 5s or 500ms")),
    }
}

/// What the subscribers share: counters and histograms per client reactor (each written by one thread).
struct Stats {
    epoch: Instant,
    opened: AtomicU64,
    failed: AtomicU64,
    next_slot: AtomicU64,
    delivered: Vec<AtomicU64>,
    /// Per client reactor: [local, remote] latencies in microseconds.
    latency: Vec<[Mutex<Histogram<u64>>; 2]>,
}

impl Stats {
    fn new(reactors: usize) -> Self {
        let hist = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"));
        Self {
            epoch: Instant::now(),
            opened: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            next_slot: AtomicU64::new(0),
            delivered: (0..reactors).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..reactors).map(|_| [hist(), hist()]).collect(),
        }
    }

    /// This thread's slot in `delivered` and `latency` (each client reactor thread gets its own).
    fn slot(&self) -> usize {
        thread_local!(static SLOT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) });
        let slot = SLOT.with(|slot| {
            slot.get().unwrap_or_else(|| {
                let next = self.next_slot.fetch_add(1, Relaxed) as usize;
                slot.set(Some(next));
                next
            })
        });
        slot % self.delivered.len()
    }

    fn delivered(&self) -> u64 {
        self.delivered.iter().map(|d| d.load(Relaxed)).sum()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn reset(&self) {
        for d in &self.delivered {
            d.store(0, Relaxed);
        }
        for pair in &self.latency {
            for h in pair {
                h.lock().unwrap().reset();
            }
        }
    }

    fn merged(&self, which: usize) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for pair in &self.latency {
            all.add(&*pair[which].lock().unwrap()).expect("same bounds");
        }
        all
    }
}

struct Subscriber {
    stats: Arc<Stats>,
    /// 0: on the publishing node, 1: on another node.
    remote: usize,
}

impl Handler for Subscriber {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
        self.stats.opened.fetch_add(1, Relaxed);
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Binary(data) = message {
            let sent = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
            let us = self.stats.now_ns().saturating_sub(sent) / 1000;
            let reactor = self.stats.slot();
            let _ = self.stats.latency[reactor][self.remote].lock().unwrap().record(us.max(1));
            self.stats.delivered[reactor].fetch_add(1, Relaxed);
        }
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        eprintln!("connect failed: {error}");
        self.stats.failed.fetch_add(1, Relaxed);
    }
}

/// A node: `/sub` connections subscribe to the topic `bench`.
struct Member;

impl Handler for Member {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.subscribe("bench");
    }
}

fn start_node(threads: usize, redis: Option<&str>) -> RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads,
        close_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/sub", |_| Member);
    if let Some(url) = redis {
        server.set_broker(RedisBroker::new(url).expect("a redis:// URL"));
    }
    server.start().expect("start a node")
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Opens `count` subscribers to `node`, 500 at a time.
fn open_subscribers(clients: &Handle, stats: &Arc<Stats>, node: &RunningServer, count: usize, remote: usize) {
    let addr = node.local_addr();
    let start = stats.opened.load(Relaxed);
    for batch in 0..count.div_ceil(500) {
        let n = 500.min(count - batch * 500);
        for _ in 0..n {
            let handler = Subscriber { stats: stats.clone(), remote };
            clients.connect(addr, "127.0.0.1", "/sub", ConnectOptions::default(), handler);
        }
        let target = start + (batch * 500 + n) as u64;
        wait("subscribers to connect", Duration::from_secs(60), || {
            assert_eq!(stats.failed.load(Relaxed), 0, "a subscriber could not connect");
            stats.opened.load(Relaxed) >= target
        });
    }
}

struct Outcome {
    name: &'static str,
    nodes: usize,
    subscribers: usize,
    published: u64,
    delivered: u64,
    elapsed: Duration,
    local: Histogram<u64>,
    remote: Histogram<u64>,
    broker_lag_p99_us: Option<u64>,
    lost: u64,
}

/// Publishes from `publisher` for `args.duration` and waits for the deliveries.
fn run_case(
    name: &'static str,
    args: &Args,
    stats: &Arc<Stats>,
    nodes: &[RunningServer],
    subscribers: usize,
) -> Outcome {
    let publisher = nodes[0].handle();
    let mut payload = vec![b'x'; args.size.max(8)];
    stats.reset();
    let started = Instant::now();
    let mut published = 0u64;
    let total = subscribers as u64;
    while started.elapsed() < args.duration {
        match args.rate {
            Some(rate) => {
                let due = started + Duration::from_secs_f64(published as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            None => {
                // Closed loop: wait while `window` messages or more are not yet delivered everywhere.
                while published * total - stats.delivered().min(published * total) >= args.window * total {
                    std::hint::spin_loop();
                    if started.elapsed() >= args.duration + Duration::from_secs(10) {
                        break;
                    }
                }
            }
        }
        payload[..8].copy_from_slice(&stats.now_ns().to_le_bytes());
        publisher.publish_binary("bench", &payload);
        published += 1;
    }
    let expected = published * total;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.delivered() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    let broker = nodes[1..].iter().filter_map(|n| n.handle().broker_metrics()).collect::<Vec<_>>();
    let broker_lag_p99_us = broker.iter().filter_map(|m| m.lag.quantile(0.99)).map(|d| d.as_micros() as u64).max();
    let lost = nodes.iter().filter_map(|n| n.handle().broker_metrics()).map(|m| m.messages_lost).sum();
    Outcome {
        name,
        nodes: nodes.len(),
        subscribers,
        published,
        delivered: stats.delivered(),
        elapsed,
        local: stats.merged(0),
        remote: stats.merged(1),
        broker_lag_p99_us,
        lost,
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn report(o: &Outcome, args: &Args) {
    let per_second = o.delivered as f64 / o.elapsed.as_secs_f64();
    let mut all = o.local.clone();
    all.add(&o.remote).expect("same bounds");
    if args.json {
        let q = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        println!(
            "{{\"case\":\"{}\",\"nodes\":{},\"subscribers\":{},\"published\":{},\"delivered\":{},\"expected\":{},\
             \"seconds\":{:.3},\"deliveries_per_second\":{:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\
             \"remote_p50_us\":{},\"remote_p99_us\":{},\"broker_lag_p99_us\":{},\"lost\":{}}}",
            o.name,
            o.nodes,
            o.subscribers,
            o.published,
            o.delivered,
            o.published * o.subscribers as u64,
            o.elapsed.as_secs_f64(),
            per_second,
            q(&all, 0.5),
            q(&all, 0.99),
            all.max(),
            q(&o.remote, 0.5),
            q(&o.remote, 0.99),
            o.broker_lag_p99_us.unwrap_or(0),
            o.lost,
        );
        return;
    }
    println!(
        "{:<6} {} node(s) x {} subscribers: {} published, {} of {} delivered in {:.2} s: {:.0} deliveries/s",
        o.name,
        o.nodes,
        o.subscribers / o.nodes,
        o.published,
        o.delivered,
        o.published * o.subscribers as u64,
        o.elapsed.as_secs_f64(),
        per_second
    );
    println!(
        "       latency ms: p50 {} p99 {} max {}",
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max())
    );
    if !o.remote.is_empty() {
        println!(
            "       publishing node's own p50 {} p99 {}; other nodes' (through Redis) p50 {} p99 {}; \
             broker lag p99 {} ms; lost {}",
            ms(o.local.value_at_quantile(0.5)),
            ms(o.local.value_at_quantile(0.99)),
            ms(o.remote.value_at_quantile(0.5)),
            ms(o.remote.value_at_quantile(0.99)),
            o.broker_lag_p99_us.map_or("-".into(), ms),
            o.lost
        );
    }
}

fn main() {
    let args = Args::parse();
    assert!(args.nodes >= 1 && args.subscribers >= 1);
    let client_config = Config { threads: args.client_threads, ..Config::default() };
    let clients = Server::new(client_config).start_without_listeners().expect("client engine");
    let stats = Arc::new(Stats::new(args.client_threads));
    let total = args.nodes * args.subscribers;
    let mode = match args.rate {
        Some(rate) => format!("open loop, {rate} publishes/s"),
        None => format!("closed loop, {} messages in flight", args.window),
    };
    if !args.json {
        println!(
            "one topic, {} deliveries per publish, {} B payloads, {} per case, {mode}",
            total,
            args.size.max(8),
            humantime(args.duration)
        );
    }

    if args.case != Case::Cross {
        let node = start_node(args.nodes * args.node_threads, None);
        open_subscribers(&clients.handle(), &stats, &node, total, 0);
        let nodes = [node];
        let outcome = run_case("single", &args, &stats, &nodes, total);
        report(&outcome, &args);
        let [node] = nodes;
        node.stop();
    }

    if args.case != Case::Single {
        let nodes: Vec<RunningServer> =
            (0..args.nodes).map(|_| start_node(args.node_threads, Some(&args.redis))).collect();
        for (i, node) in nodes.iter().enumerate() {
            open_subscribers(&clients.handle(), &stats, node, args.subscribers, usize::from(i > 0));
        }
        wait("every node to subscribe in Redis", Duration::from_secs(10), || {
            nodes.iter().all(|n| n.handle().broker_metrics().is_some_and(|m| m.is_up() && m.channels == 1))
        });
        let outcome = run_case("cross", &args, &stats, &nodes, total);
        report(&outcome, &args);
        for node in nodes {
            node.stop();
        }
    }
    clients.stop();
}

fn humantime(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

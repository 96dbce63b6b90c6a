//! Redis pub/sub as a [`Broker`] (cargo feature `redis`), through the `redis` crate's blocking API on
//! two threads of its own:
//!
//! - **publisher** (`wsloop-redis-pub`): takes the messages reactors queued on a bounded channel
//!   ([`RedisOptions::max_queued`]; a publish that finds it full is dropped and counted lost, so a slow
//!   Redis never makes a reactor wait) and writes them as `PUBLISH` commands, every message waiting at
//!   that moment in one pipeline (one round trip). When
//!   idle it sends `PING` every [`RedisOptions::keepalive`], so a lost connection is noticed before the
//!   next message needs it. While Redis is unreachable, messages are taken off the channel and counted
//!   lost (`broker_messages_lost`), so nothing piles up and nothing old is sent late.
//! - **subscriber** (`wsloop-redis-sub`): holds the pub/sub connection. It waits for a message at most
//!   [`RedisOptions::poll`], then applies the subscription changes reactors asked for (one `SUBSCRIBE`
//!   and one `UNSUBSCRIBE` for all of them), and hands each message to [`Inbound::deliver`].
//!
//! Either thread reconnects by itself, with exponential backoff from [`RedisOptions::backoff_min`] to
//! [`RedisOptions::backoff_max`] (with jitter, so nodes do not all come back at the same instant), and
//! the subscriber subscribes again to every channel it should have. Channels are the topic names with
//! [`RedisOptions::prefix`] in front (`wsloop:lobby`).
//!
//! ```no_run
//! use wsloop::broker::redis::RedisBroker;
//! use wsloop::server::{Config, Server};
//! # struct Room;
//! # impl wsloop::server::Handler for Room {}
//!
//! let mut server = Server::new(Config::default());
//! server.register_handler("*", |_| Room);
//! server.set_broker(RedisBroker::new("redis://127.0.0.1:6379/").expect("a redis:// URL"));
//! let running = server.start().expect("bind");
//! # running.stop();
//! ```

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::mpsc::{
    channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, RedisError, RedisResult, Value};

use super::{Broker, BrokerMetrics, Inbound, Outgoing};

/// Settings of a [`RedisBroker`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put in front of every topic to make its channel name. Default `wsloop:`.
    pub prefix: String,
    /// Time allowed for a TCP connect and the connection's setup. Default 2 s.
    pub connect_timeout: Duration,
    /// Time allowed for a command's answer (and a write). Default 2 s; past it the connection is
    /// taken for dead and made again.
    pub command_timeout: Duration,
    /// First wait before connecting again after a failure. Default 50 ms.
    pub backoff_min: Duration,
    /// Longest wait between two attempts (the wait doubles from `backoff_min`). Default 2 s.
    pub backoff_max: Duration,
    /// An idle connection is checked with `PING` this often. Default 1 s.
    pub keepalive: Duration,
    /// Longest the subscriber waits for a message before it applies subscription changes. Default
    /// 10 ms (the time a new topic's first subscriber may wait before messages from other nodes flow).
    pub poll: Duration,
    /// Most `PUBLISH` commands in one pipeline. Default 512.
    pub max_batch: usize,
    /// Most messages waiting for the publisher thread; past it a publish is dropped and counted lost
    /// (reactors never wait for Redis). Default 65,536.
    pub max_queued: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "wsloop:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            keepalive: Duration::from_secs(1),
            poll: Duration::from_millis(10),
            max_batch: 512,
            max_queued: 65_536,
        }
    }
}

enum ToPublisher {
    Publish(Outgoing),
    Stop,
}

enum ToSubscriber {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
    Stop,
}

/// Redis 7 pub/sub ([`PUBLISH`, `SUBSCRIBE`](https://redis.io/docs/latest/develop/interact/pubsub/)):
/// every message goes to the Redis server, which sends it to every connection subscribed to its channel,
/// so each node subscribed to a topic receives each message once.
pub struct RedisBroker {
    client: Client,
    options: RedisOptions,
    publisher: OnceLock<SyncSender<ToPublisher>>,
    subscriber: OnceLock<Sender<ToSubscriber>>,
    /// The counters, once started (to count what a full queue drops).
    inbound: OnceLock<Inbound>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("addr", &self.client.get_connection_info().addr)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker for the Redis server at `url` (`redis://HOST:PORT/`, optionally with a user, password
    /// and database number), with default [`RedisOptions`]. Nothing connects until the server starts.
    pub fn new(url: &str) -> io::Result<Self> {
        Self::with_options(url, RedisOptions::default())
    }

    /// The same with `options`.
    pub fn with_options(url: &str, options: RedisOptions) -> io::Result<Self> {
        let client = Client::open(url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad Redis URL {url:?}: {e}")))?;
        Ok(Self {
            client,
            options,
            publisher: OnceLock::new(),
            subscriber: OnceLock::new(),
            inbound: OnceLock::new(),
            threads: Mutex::new(Vec::new()),
        })
    }
}

impl Broker for RedisBroker {
    fn name(&self) -> &str {
        "redis"
    }

    fn start(&self, inbound: Inbound) -> io::Result<()> {
        let (pub_tx, pub_rx) = sync_channel(self.options.max_queued.max(1));
        let (sub_tx, sub_rx) = channel();
        if self.publisher.set(pub_tx).is_err() || self.subscriber.set(sub_tx).is_err() {
            return Err(io::Error::other("this RedisBroker was started already"));
        }
        let _ = self.inbound.set(inbound.clone());
        let publisher = Publisher {
            client: self.client.clone(),
            options: self.options.clone(),
            inbound: inbound.clone(),
            rx: pub_rx,
        };
        let subscriber = Subscriber {
            client: self.client.clone(),
            options: self.options.clone(),
            inbound,
            rx: sub_rx,
            wanted: HashMap::new(),
        };
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        threads.push(std::thread::Builder::new().name("wsloop-redis-pub".into()).spawn(move || publisher.run())?);
        threads.push(std::thread::Builder::new().name("wsloop-redis-sub".into()).spawn(move || subscriber.run())?);
        Ok(())
    }

    fn publish(&self, message: Outgoing) {
        if let Some(tx) = self.publisher.get() {
            if let Err(TrySendError::Full(_)) = tx.try_send(ToPublisher::Publish(message)) {
                if let Some(inbound) = self.inbound.get() {
                    inbound.metrics().record_lost(1);
                }
            }
        }
    }

    fn subscribe(&self, topic: &Arc<str>) {
        if let Some(tx) = self.subscriber.get() {
            let _ = tx.send(ToSubscriber::Subscribe(topic.clone()));
        }
    }

    fn unsubscribe(&self, topic: &Arc<str>) {
        if let Some(tx) = self.subscriber.get() {
            let _ = tx.send(ToSubscriber::Unsubscribe(topic.clone()));
        }
    }

    fn stop(&self) {
        if let Some(tx) = self.publisher.get() {
            // Waits for room in a full queue: the publisher thread drains it, connected or not.
            let _ = tx.send(ToPublisher::Stop);
        }
        if let Some(tx) = self.subscriber.get() {
            let _ = tx.send(ToSubscriber::Stop);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Exponential backoff with jitter (each wait is 75% to 100% of the nominal one).
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(options: &RedisOptions) -> Self {
        let min = options.backoff_min.max(Duration::from_millis(1));
        Self { next: min, min, max: options.backoff_max.max(min) }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    fn wait(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        nominal.mul_f64(0.75 + rand::random::<f64>() * 0.25)
    }
}

/// Connects, sets its timeouts and names the connection (`CLIENT LIST` shows `wsloop-NODE-pub` /
/// `-sub`; a server whose ACL refuses `CLIENT SETNAME` answers with an error, which is not fatal).
fn connect(client: &Client, options: &RedisOptions, node: u64, role: &str) -> RedisResult<Connection> {
    let mut conn = client.get_connection_with_timeout(options.connect_timeout)?;
    conn.set_read_timeout(Some(options.command_timeout))?;
    conn.set_write_timeout(Some(options.command_timeout))?;
    let named = ::redis::cmd("CLIENT").arg("SETNAME").arg(format!("wsloop-{node:016x}-{role}")).query::<()>(&mut conn);
    match named {
        Err(e) if e.is_io_error() || e.is_timeout() => Err(e),
        _ => Ok(conn),
    }
}

/// Tracks one connection's state for the logs and the reconnect counter.
struct Link {
    role: &'static str,
    ever_up: bool,
    failing: bool,
}

impl Link {
    fn up(&mut self, metrics: &BrokerMetrics) {
        if self.ever_up {
            metrics.record_reconnect();
            log::info!("redis {}: connected again", self.role);
        }
        self.ever_up = true;
        self.failing = false;
    }

    fn failed(&mut self, metrics: &BrokerMetrics, e: &RedisError) {
        metrics.record_connect_failure();
        if !self.failing {
            log::warn!("redis {}: cannot connect ({e}); retrying with backoff", self.role);
        }
        self.failing = true;
    }
}

struct Publisher {
    client: Client,
    options: RedisOptions,
    inbound: Inbound,
    rx: Receiver<ToPublisher>,
}

impl Publisher {
    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.options.prefix)
    }

    fn run(self) {
        let metrics = self.inbound.metrics();
        let mut backoff = Backoff::new(&self.options);
        let mut link = Link { role: "publisher", ever_up: false, failing: false };
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut envelope = Vec::new();
        'reconnect: loop {
            let mut conn = match connect(&self.client, &self.options, self.inbound.node(), "pub") {
                Ok(conn) => conn,
                Err(e) => {
                    link.failed(metrics, &e);
                    // Wait, taking every message that comes meanwhile off the queue: it is lost.
                    let until = Instant::now() + backoff.wait();
                    while let Some(left) = until.checked_duration_since(Instant::now()) {
                        match self.rx.recv_timeout(left) {
                            Ok(ToPublisher::Publish(_)) => metrics.record_lost(1),
                            Ok(ToPublisher::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                            Err(RecvTimeoutError::Timeout) => break,
                        }
                    }
                    continue 'reconnect;
                }
            };
            link.up(metrics);
            backoff.reset();
            metrics.set_publisher_up(true);
            loop {
                match self.rx.recv_timeout(self.options.keepalive) {
                    Ok(ToPublisher::Publish(first)) => batch.push(first),
                    Ok(ToPublisher::Stop) | Err(RecvTimeoutError::Disconnected) => {
                        return metrics.set_publisher_up(false)
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = ::redis::cmd("PING").query::<Value>(&mut conn) {
                            log::warn!("redis publisher: connection lost ({e})");
                            metrics.set_publisher_up(false);
                            continue 'reconnect;
                        }
                        continue;
                    }
                }
                let mut stop = false;
                while batch.len() < self.options.max_batch.max(1) {
                    match self.rx.try_recv() {
                        Ok(ToPublisher::Publish(next)) => batch.push(next),
                        Ok(ToPublisher::Stop) | Err(TryRecvError::Disconnected) => {
                            stop = true;
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                    }
                }
                let mut pipe = ::redis::pipe();
                for message in &batch {
                    envelope.clear();
                    message.encode(&mut envelope);
                    pipe.cmd("PUBLISH").arg(self.channel(message.topic())).arg(&envelope[..]);
                }
                let n = batch.len() as u64;
                batch.clear();
                match pipe.query::<Vec<u64>>(&mut conn) {
                    Ok(receivers) => metrics.record_published(n, receivers.iter().sum()),
                    Err(e) => {
                        // Whether any of them reached Redis cannot be known: all are counted lost (at most
                        // once: none is sent again).
                        metrics.record_lost(n);
                        log::warn!("redis publisher: {n} messages lost, connection lost ({e})");
                        metrics.set_publisher_up(false);
                        if stop {
                            return;
                        }
                        continue 'reconnect;
                    }
                }
                if stop {
                    return metrics.set_publisher_up(false);
                }
            }
        }
    }
}

struct Subscriber {
    client: Client,
    options: RedisOptions,
    inbound: Inbound,
    rx: Receiver<ToSubscriber>,
    /// Channel → topic, for every topic this node has local subscribers to.
    wanted: HashMap<String, Arc<str>>,
}

/// Why a session with Redis ended.
enum End {
    Stop,
    Lost(RedisError),
}

impl From<RedisError> for End {
    fn from(e: RedisError) -> Self {
        Self::Lost(e)
    }
}

impl Subscriber {
    /// Applies every queued subscription change to `wanted`; false when told to stop.
    fn take_changes(&mut self, wait: Option<Duration>) -> bool {
        let mut first = match wait {
            Some(wait) => match self.rx.recv_timeout(wait) {
                Ok(change) => Some(change),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            },
            None => None,
        };
        loop {
            let change = match first.take() {
                Some(change) => change,
                None => match self.rx.try_recv() {
                    Ok(change) => change,
                    Err(TryRecvError::Empty) => return true,
                    Err(TryRecvError::Disconnected) => return false,
                },
            };
            match change {
                ToSubscriber::Subscribe(topic) => {
                    self.wanted.insert(format!("{}{topic}", self.options.prefix), topic);
                }
                ToSubscriber::Unsubscribe(topic) => {
                    self.wanted.remove(&format!("{}{topic}", self.options.prefix));
                }
                ToSubscriber::Stop => return false,
            }
        }
    }

    fn run(mut self) {
        let mut backoff = Backoff::new(&self.options);
        let mut link = Link { role: "subscriber", ever_up: false, failing: false };
        loop {
            if !self.take_changes(None) {
                return;
            }
            let mut conn = match connect(&self.client, &self.options, self.inbound.node(), "sub") {
                Ok(conn) => conn,
                Err(e) => {
                    link.failed(self.inbound.metrics(), &e);
                    // Keep following subscription changes while waiting.
                    let until = Instant::now() + backoff.wait();
                    while let Some(left) = until.checked_duration_since(Instant::now()) {
                        if !self.take_changes(Some(left)) {
                            return;
                        }
                    }
                    continue;
                }
            };
            link.up(self.inbound.metrics());
            backoff.reset();
            let end = self.session(&mut conn);
            let metrics = self.inbound.metrics();
            metrics.set_subscriber_up(false);
            metrics.set_channels(0);
            match end {
                End::Stop => return,
                End::Lost(e) => log::warn!("redis subscriber: connection lost ({e})"),
            }
        }
    }

    /// Subscribes to every wanted channel, then relays messages and follows subscription changes until
    /// the connection fails or a stop comes.
    fn session(&mut self, conn: &mut Connection) -> End {
        let options = self.options.clone();
        let inbound = self.inbound.clone();
        let metrics = inbound.metrics();
        let poll = options.poll.max(Duration::from_millis(1));
        let mut pubsub = conn.as_pubsub();
        let mut active: HashSet<String> = HashSet::new();
        let mut last_traffic = Instant::now();
        // The read timeout set now: `poll` while waiting for messages, `command_timeout` for commands.
        let mut timeout = options.command_timeout;
        if let Err(e) = pubsub.set_read_timeout(Some(timeout)) {
            return End::Lost(e);
        }
        loop {
            // Bring Redis in line with what is wanted (everything, right after connecting).
            let adds: Vec<&String> = self.wanted.keys().filter(|c| !active.contains(*c)).collect();
            let removes: Vec<String> = active.iter().filter(|c| !self.wanted.contains_key(*c)).cloned().collect();
            if !adds.is_empty() || !removes.is_empty() {
                if timeout != options.command_timeout {
                    timeout = options.command_timeout;
                    if let Err(e) = pubsub.set_read_timeout(Some(timeout)) {
                        return End::Lost(e);
                    }
                }
                for chunk in adds.chunks(1024) {
                    if let Err(e) = pubsub.subscribe(chunk) {
                        return End::Lost(e);
                    }
                    active.extend(chunk.iter().map(|c| (*c).clone()));
                }
                for chunk in removes.chunks(1024) {
                    if let Err(e) = pubsub.unsubscribe(chunk) {
                        return End::Lost(e);
                    }
                    for c in chunk {
                        active.remove(c);
                    }
                }
                last_traffic = Instant::now();
            }
            metrics.set_channels(active.len());
            metrics.set_subscriber_up(true);
            if timeout != poll {
                timeout = poll;
                if let Err(e) = pubsub.set_read_timeout(Some(timeout)) {
                    return End::Lost(e);
                }
            }
            // Relay messages until a wait for one times out or `poll` has passed, then look at
            // subscription changes.
            let relay_until = Instant::now() + poll;
            loop {
                match pubsub.get_message() {
                    Ok(msg) => {
                        last_traffic = Instant::now();
                        let channel = msg.get_channel_name();
                        match self.wanted.get(channel) {
                            Some(topic) => inbound.deliver(topic, msg.get_payload_bytes()),
                            // Unsubscribed meanwhile: its subscribers are gone.
                            None => {
                                metrics.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        if last_traffic >= relay_until {
                            break;
                        }
                    }
                    Err(e) if e.is_timeout() => break,
                    Err(e) => return End::Lost(e),
                }
            }
            if !self.take_changes(None) {
                return End::Stop;
            }
            if last_traffic.elapsed() >= options.keepalive {
                timeout = options.command_timeout;
                let ping = pubsub.set_read_timeout(Some(timeout)).and_then(|()| pubsub.ping::<Value>());
                if let Err(e) = ping {
                    return End::Lost(e);
                }
                last_traffic = Instant::now();
            }
        }
    }
}

//! Topics across nodes through a real Redis (Debian's `redis-server`, started here on a free port and
//! killed at the end): three in-process nodes and, for chat mode, three `wsloop serve` processes.
//!
//! Needs `/usr/bin/redis-server` (or `WSLOOP_REDIS_SERVER=/path/to/redis-server`); without it every test
//! here fails and says how to install it. `.ci/run` installs it when missing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, Got, TestClient};
use wsloop::broker::redis::{RedisBroker, RedisOptions};
use wsloop::broker::BrokerSnapshot;
use wsloop::server::{Config, Ctx, Handle, Handler, Message, RunningServer, Server};

const WAIT: Duration = Duration::from_secs(10);

fn redis_server_path() -> PathBuf {
    let path = PathBuf::from(std::env::var("WSLOOP_REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into()));
    assert!(
        path.exists(),
        "{} not found: tests/broker.rs needs a Redis 7 server. Install it with \
         `sudo apt-get install redis-server` (Debian/Ubuntu; `.ci/run` does it when missing), \
         or point WSLOOP_REDIS_SERVER at a redis-server binary.",
        path.display()
    );
    path
}

/// A `redis-server` on 127.0.0.1 and a free port, with no persistence; killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let child = Command::new(redis_server_path())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        assert!(
            eventually(WAIT, || self
                .try_conn()
                .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())),
            "redis-server did not answer on port {}",
            self.port
        );
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_connection_with_timeout(Duration::from_secs(1)).ok()
    }

    /// How many connections are subscribed to `topic`'s channel (`PUBSUB NUMSUB`).
    fn numsub(&self, topic: &str) -> u64 {
        let mut conn = self.try_conn().expect("redis is up");
        let (_, n): (String, u64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(format!("wsloop:{topic}")).query(&mut conn).expect("NUMSUB");
        n
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/t/TOPIC`: a member (subscribed; its text messages are published to TOPIC). `/pub/TOPIC`: publishes
/// without subscribing.
struct Conn {
    topic: String,
    member: bool,
}

impl Handler for Conn {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if self.member {
            ctx.subscribe(&self.topic);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            ctx.publish_text(&self.topic, text);
        }
    }
}

fn options() -> RedisOptions {
    RedisOptions {
        keepalive: Duration::from_millis(200),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..RedisOptions::default()
    }
}

fn node(redis: &Redis) -> RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |req| match req.path.strip_prefix("/pub/") {
        Some(topic) => Conn { topic: topic.to_owned(), member: false },
        None => Conn { topic: req.path.trim_start_matches("/t/").to_owned(), member: true },
    });
    server.set_broker(RedisBroker::with_options(&redis.url(), options()).expect("a redis URL"));
    server.start().expect("start a node")
}

fn broker(handle: &Handle) -> BrokerSnapshot {
    handle.broker_metrics().expect("a broker is set")
}

fn all_up(nodes: &[RunningServer]) -> bool {
    nodes.iter().all(|n| broker(&n.handle()).is_up())
}

/// Reads text messages `P:SEQ` until `count` came (or the wait ran out), then checks that nothing more
/// comes. Returns the sequence numbers received from each publisher, in arrival order.
fn collect(client: &mut TestClient, count: usize) -> HashMap<String, Vec<u32>> {
    let mut by_publisher: HashMap<String, Vec<u32>> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    let mut got = 0;
    while got < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.recv(left) {
            Some(Got::Text(text)) => {
                let (publisher, seq) = text.split_once(':').unwrap_or_else(|| panic!("unexpected message {text:?}"));
                by_publisher.entry(publisher.to_owned()).or_default().push(seq.parse().unwrap());
                got += 1;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("only {got} of {count} messages came: {by_publisher:?}"),
        }
    }
    assert_eq!(client.recv(Duration::from_millis(200)), None, "more than {count} messages (a duplicate?)");
    by_publisher
}

fn seqs(range: std::ops::Range<u32>) -> Vec<u32> {
    range.collect()
}

#[test]
fn a_publish_on_any_node_reaches_every_node_in_order_once_and_only_where_subscribed() {
    let redis = Redis::start();
    let nodes: Vec<RunningServer> = (0..3).map(|_| node(&redis)).collect();
    let (a, b, c) = (nodes[0].local_addr(), nodes[1].local_addr(), nodes[2].local_addr());
    assert!(eventually(WAIT, || all_up(&nodes)), "every node connects to Redis");
    // Members of "room" on A and B (several each, over both reactors); C has none: it only publishes to
    // "room", and has a member of another topic.
    let mut members: Vec<TestClient> = Vec::new();
    for addr in [a, b] {
        for _ in 0..4 {
            members.push(TestClient::connect(addr, "/t/room"));
        }
    }
    let mut quiet = TestClient::connect(c, "/t/quiet");
    assert!(
        eventually(WAIT, || redis.numsub("room") == 2 && redis.numsub("quiet") == 1),
        "A and B subscribed once each"
    );
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(broker(&n.handle()).subscribes, 1, "node {i}: one subscription for its topic");
    }

    // One publisher per node, each sending K messages as fast as it can. A's is also a member.
    const K: u32 = 300;
    let mut publisher_a = TestClient::connect(a, "/t/room");
    let mut publisher_b = TestClient::connect(b, "/pub/room");
    let mut publisher_c = TestClient::connect(c, "/pub/room");
    for seq in 0..K {
        publisher_a.send_text(&format!("A:{seq}"));
        publisher_b.send_text(&format!("B:{seq}"));
        publisher_c.send_text(&format!("C:{seq}"));
    }
    let expected: HashMap<String, Vec<u32>> = ["A", "B", "C"].iter().map(|p| (p.to_string(), seqs(0..K))).collect();
    for (i, member) in members.iter_mut().chain(std::iter::once(&mut publisher_a)).enumerate() {
        assert_eq!(collect(member, 3 * K as usize), expected, "member {i}: every message, in order, once");
    }
    assert_eq!(quiet.recv(Duration::from_millis(200)), None);

    let (ma, mb, mc) = (broker(&nodes[0].handle()), broker(&nodes[1].handle()), broker(&nodes[2].handle()));
    for (name, m) in [("A", &ma), ("B", &mb), ("C", &mc)] {
        assert_eq!((m.messages_out, m.messages_lost), (K as u64, 0), "{name}: each publish written once");
        assert_eq!(m.publish_receivers, 2 * K as u64, "{name}: Redis sent each to the two subscribed nodes");
    }
    // A and B receive every message once through Redis (their own ones come back and are dropped);
    // C has no member of "room": Redis sends it nothing.
    for (name, m) in [("A", &ma), ("B", &mb)] {
        assert_eq!(
            (m.messages_in, m.messages_own, m.messages_delivered),
            (3 * K as u64, K as u64, 2 * K as u64),
            "{name}"
        );
        assert_eq!(m.lag.count, 2 * K as u64, "{name}: lag measured for every message from another node");
    }
    assert_eq!((mc.messages_in, mc.messages_delivered), (0, 0), "C is sent nothing for a topic it has no member of");
    assert!(ma.lag.quantile(0.99).unwrap() < Duration::from_secs(5));

    // When the last member of a node leaves, that node unsubscribes: B's members go.
    for member in members.iter_mut().skip(4) {
        member.close(1000, "");
    }
    assert!(eventually(WAIT, || redis.numsub("room") == 1), "only A is left subscribed");
    assert!(eventually(WAIT, || broker(&nodes[1].handle()).unsubscribes == 1));
    publisher_c.send_text("C:300");
    assert_eq!(collect(&mut members[0], 1)["C"], vec![300]);
    assert!(eventually(WAIT, || broker(&nodes[0].handle()).messages_delivered == 2 * K as u64 + 1));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(broker(&nodes[1].handle()).messages_in, 3 * K as u64, "B is sent nothing once unsubscribed");
    for node in nodes {
        node.stop();
    }
}

#[test]
fn after_redis_restarts_nodes_reconnect_and_only_what_was_published_while_it_was_down_is_lost() {
    let mut redis = Redis::start();
    let nodes: Vec<RunningServer> = (0..3).map(|_| node(&redis)).collect();
    assert!(eventually(WAIT, || all_up(&nodes)));
    let names = ["A", "B", "C"];
    let mut members: Vec<TestClient> = nodes.iter().map(|n| TestClient::connect(n.local_addr(), "/t/room")).collect();
    let mut publishers: Vec<TestClient> =
        nodes.iter().map(|n| TestClient::connect(n.local_addr(), "/pub/room")).collect();
    assert!(eventually(WAIT, || redis.numsub("room") == 3));
    let publish = |publishers: &mut Vec<TestClient>, range: std::ops::Range<u32>| {
        for seq in range {
            for (name, p) in names.iter().zip(publishers.iter_mut()) {
                p.send_text(&format!("{name}:{seq}"));
            }
        }
    };

    // Before: everything crosses.
    publish(&mut publishers, 0..50);
    for m in members.iter_mut() {
        let got = collect(m, 150);
        assert!(names.iter().all(|n| got[*n] == seqs(0..50)), "{got:?}");
    }

    // Redis dies. Every node notices (the subscriber at once, the publisher by its keepalive).
    redis.kill();
    assert!(
        eventually(WAIT, || nodes.iter().all(|n| {
            let m = broker(&n.handle());
            !m.publisher_up && !m.subscriber_up
        })),
        "every node sees Redis gone"
    );
    // Published while it is down: delivered on the publisher's own node only, lost for the others.
    publish(&mut publishers, 50..70);
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(collect(m, 20)[names[i]], seqs(50..70), "node {i}'s own messages stay local");
    }
    assert!(eventually(WAIT, || nodes.iter().all(|n| broker(&n.handle()).messages_lost == 20)), "20 lost per node");

    // Redis comes back on the same port: the nodes reconnect and subscribe again by themselves.
    redis.spawn();
    assert!(eventually(WAIT, || all_up(&nodes) && redis.numsub("room") == 3), "every node is back");
    for (i, n) in nodes.iter().enumerate() {
        let m = broker(&n.handle());
        assert!(m.reconnects >= 2, "node {i}: both connections made again: {m:?}");
        assert_eq!(m.channels, 1, "node {i}");
    }
    publish(&mut publishers, 70..120);
    for (i, m) in members.iter_mut().enumerate() {
        let got = collect(m, 150);
        for (j, name) in names.iter().enumerate() {
            assert_eq!(got[*name], seqs(70..120), "node {i} from node {j}: everything after the restart");
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let m = broker(&n.handle());
        assert_eq!(
            (m.messages_out, m.messages_lost),
            (100, 20),
            "node {i}: only what was published while down is lost"
        );
        assert_eq!(m.messages_delivered, 200, "node {i}: 100 from each other node");
    }
    for node in nodes {
        node.stop();
    }
}

/// A `wsloop serve --mode chat --broker URL` process; killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(broker: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsloop"))
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2", "--mode", "chat", "--broker", broker])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wsloop serve");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
        let addr = first_line
            .strip_prefix("wsloop serving on ws://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {first_line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(got: Option<Got>) -> serde_json::Value {
    match got {
        Some(Got::Text(t)) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a chat event, got {other:?}"),
    }
}

/// Chat events until one of type `kind` comes (others are skipped).
fn until(client: &mut TestClient, kind: &str) -> serde_json::Value {
    loop {
        let event = json(client.recv(WAIT));
        if event["type"] == kind {
            return event;
        }
    }
}

#[test]
fn chat_mode_with_a_broker_reaches_members_on_every_node_the_sender_included() {
    let redis = Redis::start();
    let serves: Vec<Serve> = (0..3).map(|_| Serve::start(&redis.url())).collect();
    // One at a time, each node subscribed before the next member comes, so every join is heard.
    let mut members = Vec::new();
    let mut nodes = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let mut c = TestClient::connect(serves[i].addr, &format!("/chat/lobby?name={name}"));
        let welcome = until(&mut c, "welcome");
        let node = welcome["node"].as_str().expect("a node tag with a broker").to_owned();
        assert!(welcome["you"]["id"].as_str().unwrap().starts_with(&format!("{node}:")), "{welcome}");
        assert_eq!(welcome["members"].as_array().unwrap().len(), 1, "the welcome lists the newcomer's node");
        assert_eq!(until(&mut c, "join")["member"]["name"], *name, "its own join comes first");
        nodes.push(node);
        assert!(eventually(WAIT, || redis.numsub("lobby") == i as u64 + 1), "each node subscribed to the room once");
        for earlier in members.iter_mut() {
            let join = until(earlier, "join");
            assert_eq!(
                (join["member"]["name"].as_str(), join["node"].as_str()),
                (Some(*name), Some(nodes[i].as_str()))
            );
        }
        members.push(c);
    }
    assert!(nodes[0] != nodes[1] && nodes[1] != nodes[2] && nodes[0] != nodes[2], "{nodes:?}");
    let [mut alice, mut bob, mut carol]: [TestClient; 3] = members.try_into().ok().unwrap();
    alice.send_text("hello from node 0");
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = until(c, "message");
        assert_eq!((m["text"].as_str(), m["from"]["name"].as_str()), (Some("hello from node 0"), Some("alice")));
    }
    carol.send_text("and from node 2");
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(until(c, "message")["text"], "and from node 2");
    }
    // Each node's /metrics counts its broker traffic.
    let body = common::raw_request(serves[0].addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(body.contains("wsloop_broker_info{broker=\"redis\""), "{body}");
    assert!(body.contains("\nwsloop_broker_subscriber_up 1\n"), "{body}");
}

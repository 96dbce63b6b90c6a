//! The engine's side of the broker seam, with a broker that only records what it is asked (no Redis
//! needed): subscriptions counted across reactors (the broker hears the first and the last only), every
//! publish handed over once, and what the broker delivers reaching the local subscribers framed once,
//! this node's own messages excepted.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Got, TestClient};
use wsloop::broker::{Broker, Inbound, Outgoing};
use wsloop::server::{Config, Ctx, Handler, Message, Server};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Subscribe(String),
    Unsubscribe(String),
    Publish(String, String),
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    published: Mutex<Vec<Outgoing>>,
    inbound: Mutex<Option<Inbound>>,
    stopped: Mutex<bool>,
}

/// A broker that records calls; the test plays the other nodes through the `Inbound` it was given.
#[derive(Clone, Default)]
struct Recording(Arc<Recorder>);

impl Recording {
    fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().unwrap().clone()
    }

    fn inbound(&self) -> Inbound {
        self.0.inbound.lock().unwrap().clone().expect("started")
    }
}

impl Broker for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    fn start(&self, inbound: Inbound) -> std::io::Result<()> {
        *self.0.inbound.lock().unwrap() = Some(inbound);
        Ok(())
    }

    fn publish(&self, message: Outgoing) {
        let text = String::from_utf8_lossy(message.payload()).into_owned();
        self.0.calls.lock().unwrap().push(Call::Publish(message.topic().to_string(), text));
        self.0.published.lock().unwrap().push(message);
    }

    fn subscribe(&self, topic: &Arc<str>) {
        self.0.calls.lock().unwrap().push(Call::Subscribe(topic.to_string()));
    }

    fn unsubscribe(&self, topic: &Arc<str>) {
        self.0.calls.lock().unwrap().push(Call::Unsubscribe(topic.to_string()));
    }

    fn stop(&self) {
        *self.0.stopped.lock().unwrap() = true;
    }
}

/// `/t/TOPIC` subscribes to TOPIC; every text message is published to it.
struct Member(String);

impl Handler for Member {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.subscribe(&self.0);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            ctx.publish_text(&self.0, text);
        }
    }
}

fn node(broker: Recording, threads: usize) -> wsloop::server::RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads,
        metrics_path: Some("/metrics".into()),
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |req| Member(req.path.trim_start_matches("/t/").to_owned()));
    server.set_broker(broker);
    server.start().expect("start")
}

fn text(got: Option<Got>) -> String {
    match got {
        Some(Got::Text(t)) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn the_broker_hears_only_the_first_and_the_last_subscriber_of_a_node() {
    let broker = Recording::default();
    let running = node(broker.clone(), 2);
    let handle = running.handle();
    let addr = running.local_addr();
    // Enough connections that both reactors have some (the kernel spreads them over the listeners).
    let mut members: Vec<TestClient> = (0..12).map(|_| TestClient::connect(addr, "/t/room")).collect();
    assert!(eventually(Duration::from_secs(5), || handle.metrics().active_connections == 12));
    let per_reactor: Vec<u64> = (0..2).map(|r| handle.reactor_metrics(r).unwrap().active_connections).collect();
    assert!(per_reactor.iter().all(|n| *n > 0), "both reactors hold members: {per_reactor:?}");
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 1));
    assert_eq!(broker.calls(), vec![Call::Subscribe("room".into())]);
    let m = handle.broker_metrics().expect("a broker is set");
    assert_eq!((m.subscribes, m.unsubscribes, m.topics, m.broker.as_str()), (1, 0, 1, "recording"));

    // Everyone but one leaves: still subscribed.
    let mut last = members.pop().unwrap();
    for mut member in members {
        member.close(1000, "");
        assert!(member.wait_eof(Duration::from_secs(5)));
    }
    assert!(eventually(Duration::from_secs(5), || handle.metrics().active_connections == 1));
    assert_eq!(broker.calls(), vec![Call::Subscribe("room".into())]);

    // A publish is delivered locally at once and handed to the broker once.
    last.send_text("hello");
    assert_eq!(text(last.recv(Duration::from_secs(5))), "hello");
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 2));
    assert_eq!(broker.calls()[1], Call::Publish("room".into(), "hello".into()));
    handle.publish_text("room", "from the handle");
    assert_eq!(text(last.recv(Duration::from_secs(5))), "from the handle");
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 3));

    // The last one leaves: unsubscribed; a new one subscribes again.
    last.close(1000, "");
    assert!(last.wait_eof(Duration::from_secs(5)));
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 4));
    assert_eq!(broker.calls()[3], Call::Unsubscribe("room".into()));
    let _again = TestClient::connect(addr, "/t/room");
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 5));
    assert_eq!(broker.calls()[4], Call::Subscribe("room".into()));
    let m = handle.broker_metrics().unwrap();
    assert_eq!((m.subscribes, m.unsubscribes, m.topics), (2, 1, 1));
    running.stop();
    assert!(*broker.0.stopped.lock().unwrap(), "the broker stops after the reactors");
}

#[test]
fn what_the_broker_delivers_reaches_every_reactor_except_our_own_messages() {
    let broker = Recording::default();
    let running = node(broker.clone(), 2);
    let handle = running.handle();
    let addr = running.local_addr();
    let mut members: Vec<TestClient> = (0..8).map(|_| TestClient::connect(addr, "/t/room")).collect();
    let mut outsider = TestClient::connect(addr, "/t/elsewhere");
    assert!(eventually(Duration::from_secs(5), || broker.calls().len() == 2));

    // Our own message, as it comes back from the broker: dropped (it was delivered locally already).
    members[0].send_text("mine");
    for m in members.iter_mut() {
        assert_eq!(text(m.recv(Duration::from_secs(5))), "mine");
    }
    assert!(eventually(Duration::from_secs(5), || broker.0.published.lock().unwrap().len() == 1));
    let mine = broker.0.published.lock().unwrap()[0].clone();
    let mut envelope = Vec::new();
    mine.encode(&mut envelope);
    let inbound = broker.inbound();
    let room: Arc<str> = Arc::from("room");
    inbound.deliver(&room, &envelope);

    // The same envelope from another node (another id): delivered to every member, on both reactors.
    let mut theirs = envelope.clone();
    theirs[8] ^= 0xff;
    inbound.deliver(&room, &theirs);
    // Bytes without the envelope (someone ran `redis-cli PUBLISH wsloop:room plain`): delivered as text.
    inbound.deliver(&room, b"plain");
    // A broken envelope: dropped.
    inbound.deliver(&room, &theirs[..10]);
    for m in members.iter_mut() {
        assert_eq!(text(m.recv(Duration::from_secs(5))), "mine", "the copy from another node");
        assert_eq!(text(m.recv(Duration::from_secs(5))), "plain");
        assert_eq!(m.recv(Duration::from_millis(100)), None, "our own came back once only: dropped");
    }
    assert_eq!(outsider.recv(Duration::from_millis(100)), None, "other topics hear nothing");
    let m = handle.broker_metrics().unwrap();
    assert_eq!(
        (m.messages_in, m.messages_own, m.messages_delivered, m.messages_foreign, m.messages_malformed),
        (4, 1, 2, 1, 1)
    );
    assert_eq!(m.lag.count, 1, "only envelopes from other nodes are timed");
    assert_eq!(m.node, inbound.node());
    // The metrics endpoint carries the broker's counters too.
    let body = common::raw_request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(body.contains("\nwsloop_broker_messages_in_total 4\n"), "{body}");
    assert!(body.contains("wsloop_broker_info{broker=\"recording\""), "{body}");
    running.stop();
}

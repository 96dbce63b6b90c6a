//! Topics shared by several wsloop nodes through a message broker.
//!
//! One process holds its topics in its reactors (`Ctx::subscribe`, `Ctx::publish_*`,
//! `Handle::publish_*`). With a [`Broker`] set on the [`Server`](crate::server::Server)
//! ([`Server::set_broker`](crate::server::Server::set_broker)), a publish on any node also reaches the
//! topic's subscribers on every other node:
//!
//! - **Out.** Every publish is delivered locally at once, as without a broker, and handed to the broker
//!   ([`Broker::publish`], which only queues it: reactors never block on the broker). The message is
//!   tagged with this node's id and the publish time ([`Outgoing::encode`]).
//! - **Subscriptions.** A node receives a topic only while it has local subscribers to it. Each reactor
//!   keeps its own topic → connections map; only when a reactor's list for a topic appears or disappears
//!   does it touch the node's shared count of reactors per topic (a mutex, never taken per message), and
//!   only that count's 0 → 1 and 1 → 0 steps reach the broker ([`Broker::subscribe`],
//!   [`Broker::unsubscribe`]).
//! - **In.** The broker gives what arrives to [`Inbound::deliver`]: a message this node published itself
//!   is dropped (it was delivered locally already); any other is framed once, into one shared buffer,
//!   and queued by reference on every reactor, like `Handle::publish_*`.
//!
//! A broker implementation only moves bytes: connections, channels, reconnects. Redis pub/sub is the one
//! here (`redis::RedisBroker`, cargo feature `redis`); Redis sharded pub/sub (`SSUBSCRIBE`) or NATS
//! would be another implementation of the same trait, with no change to the reactors. Delivery is at
//! most once: a message the broker did not take is lost and counted
//! ([`BrokerSnapshot::messages_lost`]), never sent twice. docs/architecture.md ("Many nodes") says which
//! broker setup scales to what.

mod envelope;
mod metrics;
#[cfg(feature = "redis")]
pub mod redis;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

pub use metrics::{BrokerMetrics, BrokerSnapshot, LagSnapshot};

use crate::proto::OpCode;
use crate::server::{server_frame, Reactors};
use envelope::{Decoded, Kind};

/// A message broker carrying this node's topics to and from other nodes.
///
/// Every method but [`Broker::start`] and [`Broker::stop`] is called on reactor threads and must not
/// block: queue the work for the broker's own threads. The engine calls [`Broker::subscribe`] and
/// [`Broker::unsubscribe`] alternately for a topic (never twice in a row the same way), in the order it
/// decided them.
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and metrics (`redis`).
    fn name(&self) -> &str;

    /// Starts the broker's threads; what arrives on subscribed topics goes to `inbound`. Called once,
    /// by `Server::start`, before any other method. An unreachable broker is not an error here: the
    /// implementation keeps trying in the background.
    fn start(&self, inbound: Inbound) -> io::Result<()>;

    /// Publishes `message` to every node subscribed to its topic (this one included, or not: messages
    /// coming back are dropped by [`Inbound::deliver`]). Must not block. A message the broker cannot
    /// take (it is down) is counted with [`BrokerMetrics::record_lost`].
    fn publish(&self, message: Outgoing);

    /// This node has its first local subscriber to `topic`: start receiving it. Must not block.
    fn subscribe(&self, topic: &Arc<str>);

    /// This node's last local subscriber to `topic` left: stop receiving it. Must not block.
    fn unsubscribe(&self, topic: &Arc<str>);

    /// Stops the threads and waits for them (called once the reactors have stopped).
    fn stop(&self);
}

/// One message published on this node, on its way to the broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    topic: Arc<str>,
    /// The server frame the local subscribers got (unmasked, one frame).
    frame: Bytes,
    node: u64,
    published_us: u64,
}

impl Outgoing {
    /// The topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Whether it is a text message (else binary).
    pub fn is_text(&self) -> bool {
        self.frame.first().is_some_and(|b| OpCode::from_u8(*b) == OpCode::Text)
    }

    /// The message payload.
    pub fn payload(&self) -> &[u8] {
        let header = match self.frame.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        self.frame.get(header..).unwrap_or_default()
    }

    /// The publishing node's wall clock at publish time, in microseconds since the Unix epoch.
    pub fn published_us(&self) -> u64 {
        self.published_us
    }

    /// Appends the bytes to send through the broker: a 24-byte header (magic and version, text or
    /// binary, this node's id, the publish time), then the payload. [`Inbound::deliver`] reads them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = if self.is_text() { Kind::Text } else { Kind::Binary };
        envelope::encode(out, kind, self.node, self.published_us, self.payload());
    }
}

/// Where a broker hands what it receives: decodes, drops this node's own messages, frames the rest
/// once and queues it on every reactor. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Inbound {
    node: u64,
    reactors: Reactors,
    metrics: Arc<BrokerMetrics>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").field("node", &format_args!("{:016x}", self.node)).finish_non_exhaustive()
    }
}

impl Inbound {
    /// A message arrived on `topic` with these bytes (as [`Outgoing::encode`] wrote them, or anything
    /// else: bytes without the envelope's magic are delivered as they are, text when valid UTF-8).
    pub fn deliver(&self, topic: &Arc<str>, bytes: &[u8]) {
        let m = &self.metrics;
        m.messages_in.fetch_add(1, Relaxed);
        let (kind, payload) = match envelope::decode(bytes) {
            Decoded::Envelope { node, .. } if node == self.node => {
                m.messages_own.fetch_add(1, Relaxed);
                return;
            }
            Decoded::Envelope { kind, published_us, payload, .. } => {
                m.lag.record(envelope::now_us().saturating_sub(published_us));
                (kind, payload)
            }
            Decoded::Foreign { kind, payload } => {
                m.messages_foreign.fetch_add(1, Relaxed);
                (kind, payload)
            }
            Decoded::Malformed => {
                m.messages_malformed.fetch_add(1, Relaxed);
                return;
            }
        };
        let opcode = if kind == Kind::Text { OpCode::Text } else { OpCode::Binary };
        m.messages_delivered.fetch_add(1, Relaxed);
        self.reactors.publish(topic, server_frame(opcode, payload));
    }

    /// The counters the broker updates (lost messages, reconnects, connection states).
    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    /// This node's id.
    pub fn node(&self) -> u64 {
        self.node
    }
}

/// A broker attached to a running server: the node's id, its count of reactors per topic and the
/// broker's counters.
pub(crate) struct Attached {
    broker: Arc<dyn Broker>,
    node: u64,
    /// Topic → how many reactors have local subscribers to it. Touched only when a reactor's own list
    /// for a topic appears or disappears.
    reactors_per_topic: Mutex<HashMap<Arc<str>, usize>>,
    metrics: Arc<BrokerMetrics>,
}

impl Attached {
    /// Gives the broker a node id and its inbound side, and starts it.
    pub(crate) fn start(broker: Arc<dyn Broker>, reactors: Reactors) -> io::Result<Self> {
        let node = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        let metrics = Arc::new(BrokerMetrics::default());
        broker.start(Inbound { node, reactors, metrics: metrics.clone() })?;
        log::info!("broker {}: node {node:016x}", broker.name());
        Ok(Self { broker, node, reactors_per_topic: Mutex::new(HashMap::new()), metrics })
    }

    /// A reactor has its first subscriber to `topic`.
    pub(crate) fn topic_opened(&self, topic: &Arc<str>) {
        let mut counts = self.reactors_per_topic.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(topic.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.metrics.subscribes.fetch_add(1, Relaxed);
            self.metrics.topics.store(counts.len() as u64, Relaxed);
            // Under the lock, so the broker sees subscribe and unsubscribe in the order counted.
            self.broker.subscribe(topic);
        }
    }

    /// A reactor's last subscriber to `topic` left.
    pub(crate) fn topic_closed(&self, topic: &Arc<str>) {
        let mut counts = self.reactors_per_topic.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = counts.get_mut(topic) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            counts.remove(topic);
            self.metrics.unsubscribes.fetch_add(1, Relaxed);
            self.metrics.topics.store(counts.len() as u64, Relaxed);
            self.broker.unsubscribe(topic);
        }
    }

    /// A local publish (already delivered locally): hand it to the broker.
    pub(crate) fn publish(&self, topic: &Arc<str>, frame: &Bytes) {
        self.broker.publish(Outgoing {
            topic: topic.clone(),
            frame: frame.clone(),
            node: self.node,
            published_us: envelope::now_us(),
        });
    }

    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    pub(crate) fn snapshot(&self) -> BrokerSnapshot {
        let mut snapshot = self.metrics.snapshot();
        snapshot.node = self.node;
        snapshot.broker = self.broker.name().to_owned();
        snapshot
    }

    pub(crate) fn stop(&self) {
        self.broker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(opcode: OpCode, payload: &[u8]) -> Outgoing {
        Outgoing { topic: Arc::from("t"), frame: server_frame(opcode, payload), node: 5, published_us: 77 }
    }

    #[test]
    fn outgoing_reads_its_frame_and_encodes_an_envelope() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let out = outgoing(OpCode::Binary, &payload);
            assert!(!out.is_text());
            assert_eq!(out.payload(), &payload[..], "length {len}");
            let mut bytes = Vec::new();
            out.encode(&mut bytes);
            assert_eq!(
                envelope::decode(&bytes),
                Decoded::Envelope { kind: Kind::Binary, node: 5, published_us: 77, payload: &payload }
            );
        }
        let text = outgoing(OpCode::Text, b"hi");
        assert!(text.is_text());
        assert_eq!((text.payload(), text.published_us(), &**text.topic()), (&b"hi"[..], 77, "t"));
    }
}

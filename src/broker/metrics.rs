//! The broker's counters: written by the broker's own threads and, for topic changes, by reactors, so
//! every update is a relaxed `fetch_add` (or `store` for a gauge). Nothing here is on a reactor's
//! per-message path except one `fetch_add` per publish handed to the broker.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two in the lag histogram (resolution: a quarter of an octave, under 19%).
const SUB: usize = 4;
/// Buckets: `[0, 4)` µs one per microsecond, then 4 per octave up to 2^26 µs (about 67 s); the last
/// one also holds everything longer.
const BUCKETS: usize = 100;

/// Publish-to-delivery lag, in microseconds: a log-linear histogram of atomic buckets, plus sum, count
/// and maximum. Cumulative since the node started (Prometheus derives windows from the buckets).
#[derive(Debug)]
pub(crate) struct LagHistogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

/// The bucket a lag of `us` microseconds falls in.
fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (octave - 2)) & (SUB as u64 - 1)) as usize;
    ((octave - 1) * SUB + sub).min(BUCKETS - 1)
}

/// The exclusive upper bound of bucket `i`, in microseconds.
fn upper_of(i: usize) -> u64 {
    if i < SUB {
        return i as u64 + 1;
    }
    let octave = i / SUB + 1;
    let sub = (i % SUB) as u64;
    (1u64 << octave) + (sub + 1) * (1u64 << (octave - 2))
}

impl LagHistogram {
    pub(crate) fn record(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    fn snapshot(&self) -> LagSnapshot {
        LagSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// The lag histogram at one moment (see [`BrokerSnapshot::lag`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LagSnapshot {
    buckets: Vec<u64>,
    /// Messages measured.
    pub count: u64,
    /// Their lags summed, in microseconds.
    pub sum_us: u64,
    /// The longest, in microseconds.
    pub max_us: u64,
}

impl LagSnapshot {
    /// The lag under which a fraction `q` (0..=1) of the messages arrived: the upper bound of the
    /// bucket it falls in (at most 19% above the true value), or `None` before any message.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(upper_of(i).min(self.max_us.max(1))));
            }
        }
        Some(Duration::from_micros(self.max_us))
    }

    /// The mean lag, or `None` before any message.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_us / self.count))
    }

    /// Messages whose lag was under `us` microseconds, when `us` is a power of two from 8 on (a
    /// bucket edge); else the count up to the first edge above `us`.
    fn count_below(&self, us: u64) -> u64 {
        self.buckets.iter().enumerate().take_while(|(i, _)| upper_of(*i) <= us).map(|(_, n)| n).sum()
    }
}

/// Counters of one node's broker traffic. Shared by the engine and the broker implementation (it gets
/// them from [`Inbound::metrics`](super::Inbound::metrics)); every method is thread-safe.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    pub(crate) messages_out: AtomicU64,
    pub(crate) publish_receivers: AtomicU64,
    pub(crate) messages_lost: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_own: AtomicU64,
    pub(crate) messages_delivered: AtomicU64,
    pub(crate) messages_foreign: AtomicU64,
    pub(crate) messages_malformed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) subscribes: AtomicU64,
    pub(crate) unsubscribes: AtomicU64,
    pub(crate) topics: AtomicU64,
    pub(crate) channels: AtomicU64,
    pub(crate) publisher_up: AtomicU64,
    pub(crate) subscriber_up: AtomicU64,
    pub(crate) lag: LagHistogram,
}

impl BrokerMetrics {
    /// `n` messages were written to the broker, which said they reached `receivers` subscriptions in
    /// all (0 when the broker does not say).
    pub fn record_published(&self, n: u64, receivers: u64) {
        self.messages_out.fetch_add(n, Relaxed);
        self.publish_receivers.fetch_add(receivers, Relaxed);
    }

    /// `n` messages could not be handed to the broker (it was unreachable, or the write failed).
    pub fn record_lost(&self, n: u64) {
        self.messages_lost.fetch_add(n, Relaxed);
    }

    /// A connection to the broker was made again after it was lost.
    pub fn record_reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// An attempt to connect to the broker failed.
    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Relaxed);
    }

    /// Whether the connection that publishes is up.
    pub fn set_publisher_up(&self, up: bool) {
        self.publisher_up.store(u64::from(up), Relaxed);
    }

    /// Whether the connection that receives is up and has subscribed to every wanted channel.
    pub fn set_subscriber_up(&self, up: bool) {
        self.subscriber_up.store(u64::from(up), Relaxed);
    }

    /// How many channels the broker has confirmed this node is subscribed to.
    pub fn set_channels(&self, n: usize) {
        self.channels.store(n as u64, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> BrokerSnapshot {
        BrokerSnapshot {
            node: 0,
            broker: String::new(),
            messages_out: self.messages_out.load(Relaxed),
            publish_receivers: self.publish_receivers.load(Relaxed),
            messages_lost: self.messages_lost.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_own: self.messages_own.load(Relaxed),
            messages_delivered: self.messages_delivered.load(Relaxed),
            messages_foreign: self.messages_foreign.load(Relaxed),
            messages_malformed: self.messages_malformed.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            subscribes: self.subscribes.load(Relaxed),
            unsubscribes: self.unsubscribes.load(Relaxed),
            topics: self.topics.load(Relaxed),
            channels: self.channels.load(Relaxed),
            publisher_up: self.publisher_up.load(Relaxed) == 1,
            subscriber_up: self.subscriber_up.load(Relaxed) == 1,
            lag: self.lag.snapshot(),
        }
    }
}

/// One node's broker counters at one moment ([`Handle::broker_metrics`](crate::server::Handle::broker_metrics)).
/// Names are those of the Prometheus text ([`BrokerSnapshot::prometheus_text`]) without the prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSnapshot {
    /// This node's id (tags its messages, so it drops its own when they come back).
    pub node: u64,
    /// The broker's name, e.g. `redis`.
    pub broker: String,
    /// `broker_messages_out`: messages written to the broker.
    pub messages_out: u64,
    /// `broker_publish_receivers`: subscriptions the broker said those messages reached (this node's
    /// own included; Redis answers each PUBLISH with that number).
    pub publish_receivers: u64,
    /// `broker_messages_lost`: publishes that never reached the broker (it was down or the write failed).
    pub messages_lost: u64,
    /// `broker_messages_in`: messages received from the broker (own, foreign and malformed included).
    pub messages_in: u64,
    /// `broker_messages_own`: this node's own messages coming back, dropped (delivered locally at once).
    pub messages_own: u64,
    /// `broker_messages_delivered`: messages from other publishers handed to the reactors.
    pub messages_delivered: u64,
    /// `broker_messages_foreign`: of those, messages without a wsloop envelope (e.g. `redis-cli
    /// PUBLISH`), delivered as text when valid UTF-8, else binary.
    pub messages_foreign: u64,
    /// `broker_messages_malformed`: messages with a wsloop envelope that does not decode, dropped.
    pub messages_malformed: u64,
    /// `broker_reconnects`: connections to the broker made again after one was lost.
    pub reconnects: u64,
    /// `broker_connect_failures`: failed attempts to connect.
    pub connect_failures: u64,
    /// `broker_subscribes`: topics this node started receiving (its first local subscriber came).
    pub subscribes: u64,
    /// `broker_unsubscribes`: topics this node stopped receiving (its last local subscriber left).
    pub unsubscribes: u64,
    /// `broker_topics`: topics with local subscribers now.
    pub topics: u64,
    /// `broker_channels`: channels the broker confirmed subscribed now.
    pub channels: u64,
    /// `broker_publisher_up`: whether the publishing connection is up.
    pub publisher_up: bool,
    /// `broker_subscriber_up`: whether the receiving connection is up with every channel subscribed.
    pub subscriber_up: bool,
    /// `broker_lag_seconds`: publish (on the publishing node's clock) to hand-off to this node's
    /// reactors (on this node's clock), for messages from other nodes.
    pub lag: LagSnapshot,
}

impl BrokerSnapshot {
    /// Whether both connections are up.
    pub fn is_up(&self) -> bool {
        self.publisher_up && self.subscriber_up
    }

    /// The counters in the Prometheus text format (0.0.4), names prefixed with `prefix` and `_`
    /// (`wsloop_broker_messages_out_total`, ...), the lag as a histogram in seconds.
    pub fn prometheus_text(&self, prefix: &str) -> String {
        let p = if prefix.is_empty() { String::new() } else { format!("{}_", prefix.trim_end_matches('_')) };
        let mut out = String::new();
        let _ = writeln!(out, "# HELP {p}broker_info The broker this node uses, and the node's id.");
        let _ = writeln!(out, "# TYPE {p}broker_info gauge");
        let _ = writeln!(out, "{p}broker_info{{broker=\"{}\",node=\"{:016x}\"}} 1", self.broker, self.node);
        let counters: [(&str, u64, &str); 12] = [
            ("messages_out", self.messages_out, "Messages written to the broker."),
            ("publish_receivers", self.publish_receivers, "Subscriptions the broker said published messages reached."),
            (
                "messages_lost",
                self.messages_lost,
                "Publishes that never reached the broker (down, or the write failed).",
            ),
            ("messages_in", self.messages_in, "Messages received from the broker."),
            ("messages_own", self.messages_own, "This node's own messages coming back from the broker, dropped."),
            ("messages_delivered", self.messages_delivered, "Messages from other publishers handed to the reactors."),
            ("messages_foreign", self.messages_foreign, "Delivered messages without a wsloop envelope."),
            ("messages_malformed", self.messages_malformed, "Messages whose wsloop envelope does not decode, dropped."),
            ("reconnects", self.reconnects, "Connections to the broker made again after one was lost."),
            ("connect_failures", self.connect_failures, "Failed attempts to connect to the broker."),
            ("subscribes", self.subscribes, "Topics this node started receiving (first local subscriber)."),
            ("unsubscribes", self.unsubscribes, "Topics this node stopped receiving (last local subscriber left)."),
        ];
        for (name, value, help) in counters {
            let _ = writeln!(out, "# HELP {p}broker_{name}_total {help}");
            let _ = writeln!(out, "# TYPE {p}broker_{name}_total counter");
            let _ = writeln!(out, "{p}broker_{name}_total {value}");
        }
        let gauges: [(&str, u64, &str); 4] = [
            ("topics", self.topics, "Topics with local subscribers."),
            ("channels", self.channels, "Channels the broker confirmed subscribed."),
            ("publisher_up", u64::from(self.publisher_up), "Whether the publishing connection is up."),
            ("subscriber_up", u64::from(self.subscriber_up), "Whether the receiving connection is up and subscribed."),
        ];
        for (name, value, help) in gauges {
            let _ = writeln!(out, "# HELP {p}broker_{name} {help}");
            let _ = writeln!(out, "# TYPE {p}broker_{name} gauge");
            let _ = writeln!(out, "{p}broker_{name} {value}");
        }
        let name = format!("{p}broker_lag_seconds");
        let _ = writeln!(out, "# HELP {name} Publish on another node to hand-off to this node's reactors.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        // Octave edges from 128 µs to 2^26 µs (about 67 s): exact, since they are bucket edges.
        for shift in 7..=26 {
            let edge = 1u64 << shift;
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {}", edge as f64 / 1e6, self.lag.count_below(edge));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.lag.count);
        let _ = writeln!(out, "{name}_sum {}", self.lag.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.lag.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_contain_their_values() {
        let mut lower = 0;
        for i in 0..BUCKETS - 1 {
            let upper = upper_of(i);
            assert!(upper > lower, "bucket {i}");
            assert_eq!(bucket_of(lower), i, "lower edge of {i}");
            assert_eq!(bucket_of(upper - 1), i, "last value of {i}");
            lower = upper;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_of(4 * (26 - 2) + 3), 1 << 26);
    }

    #[test]
    fn quantiles_are_bucket_upper_bounds_within_a_fifth() {
        let h = LagHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for us in 1..=1000 {
            h.record(us);
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap().as_micros() as u64;
        let p99 = s.quantile(0.99).unwrap().as_micros() as u64;
        assert!((500..=600).contains(&p50), "{p50}");
        assert!((990..=1000).contains(&p99), "{p99} (capped by the maximum)");
        assert_eq!(s.quantile(1.0), Some(Duration::from_micros(1000)));
        assert_eq!((s.count, s.max_us), (1000, 1000));
        assert_eq!(s.mean(), Some(Duration::from_micros(500)));
        assert_eq!(s.count_below(512), 511);
    }

    #[test]
    fn prometheus_text_has_every_family() {
        let m = BrokerMetrics::default();
        m.record_published(3, 6);
        m.record_lost(2);
        m.lag.record(300);
        let mut s = m.snapshot();
        s.broker = "redis".into();
        s.node = 0xab;
        let text = s.prometheus_text("wsloop");
        assert!(text.contains("wsloop_broker_info{broker=\"redis\",node=\"00000000000000ab\"} 1\n"), "{text}");
        assert!(text.contains("wsloop_broker_messages_out_total 3\n"));
        assert!(text.contains("wsloop_broker_publish_receivers_total 6\n"));
        assert!(text.contains("wsloop_broker_messages_lost_total 2\n"));
        assert!(text.contains("wsloop_broker_lag_seconds_bucket{le=\"0.000256\"} 0\n"), "{text}");
        assert!(text.contains("wsloop_broker_lag_seconds_bucket{le=\"0.000512\"} 1\n"), "{text}");
        assert!(text.contains("wsloop_broker_lag_seconds_count 1\n"));
        assert!(text.contains("wsloop_broker_publisher_up 0\n"));
    }
}

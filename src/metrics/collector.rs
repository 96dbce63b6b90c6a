//! A thread-safe counter block for code outside the reactors (the blocking client, the pool): every
//! `record_*` is a lock-free `fetch_add`, so any number of threads may write at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use super::{
    format_metrics, prometheus_text, record_close_with, record_handshake_failure_with, record_message_received_with,
    record_message_sent_with, Counters, HandshakeFailure, MessageKind, MetricsReport, MetricsSnapshot, RateMeter,
    TcpPhase,
};

fn fetch_add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Thread-safe metrics for code outside the engine. `Send + Sync`: share it through an `Arc`.
///
/// Recording is lock-free (relaxed `fetch_add`); only [`MetricsCollector::report`] takes a lock, to
/// swap the baseline its rates are measured from.
///
/// ```
/// use std::sync::Arc;
/// use wsloop::metrics::{MessageKind, MetricsCollector};
///
/// let metrics = Arc::new(MetricsCollector::new());
/// metrics.record_connection_opened();
/// metrics.record_message_sent(MessageKind::Text, 100);
/// metrics.record_message_received(MessageKind::Binary, 200);
/// let snapshot = metrics.snapshot();
/// assert_eq!(snapshot.get("active_connections"), Some(1));
/// assert_eq!(snapshot.text_bytes_sent, 100);
/// ```
#[derive(Debug)]
pub struct MetricsCollector {
    counters: Counters,
    meter: Mutex<RateMeter>,
}

impl Default for MetricsCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsCollector {
    /// A collector with all counters at zero; the first [`MetricsCollector::report`] measures rates
    /// from now (the one clock read this module makes).
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A collector with all counters at zero whose first rate interval starts at `at`.
    pub fn starting_at(at: Instant) -> Self {
        Self {
            counters: Counters::default(),
            meter: Mutex::new(RateMeter::starting_at(MetricsSnapshot::default(), at)),
        }
    }

    /// A connection opened (completed its opening handshake): `connections_upgraded`,
    /// `active_connections` and `tcp_connections{phase="open"}` go up.
    ///
    /// A collector hears only of opens and closes, so it counts a connection under the phase open from
    /// the one to the other: its `tcp_connections` never shows the phases handshake, http or closing.
    pub fn record_connection_opened(&self) {
        fetch_add(&self.counters.connections_upgraded, 1);
        fetch_add(&self.counters.active_connections, 1);
        fetch_add(&self.counters.tcp_connections, 1);
        fetch_add(&self.counters.tcp_connections_by_phase[TcpPhase::Open.index()], 1);
    }

    /// A connection closed with `code` (1006 if it ended without a close frame):
    /// `active_connections` and `tcp_connections{phase="open"}` go down (never below zero),
    /// `connections_closed` and the code's bucket go up.
    pub fn record_connection_closed(&self, code: u16) {
        for gauge in [
            &self.counters.active_connections,
            &self.counters.tcp_connections,
            &self.counters.tcp_connections_by_phase[TcpPhase::Open.index()],
        ] {
            let _ = gauge.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        }
        record_close_with(&self.counters, code, fetch_add);
    }

    /// A message of `size` payload bytes sent.
    pub fn record_message_sent(&self, kind: MessageKind, size: usize) {
        record_message_sent_with(&self.counters, kind, size, fetch_add);
    }

    /// A message of `size` payload bytes received.
    pub fn record_message_received(&self, kind: MessageKind, size: usize) {
        record_message_received_with(&self.counters, kind, size, fetch_add);
    }

    /// A ping sent.
    pub fn record_ping_sent(&self) {
        fetch_add(&self.counters.pings_sent, 1);
    }

    /// A ping received.
    pub fn record_ping_received(&self) {
        fetch_add(&self.counters.pings_received, 1);
    }

    /// A pong sent.
    pub fn record_pong_sent(&self) {
        fetch_add(&self.counters.pongs_sent, 1);
    }

    /// A pong received.
    pub fn record_pong_received(&self) {
        fetch_add(&self.counters.pongs_received, 1);
    }

    /// A close frame sent.
    pub fn record_close_sent(&self) {
        fetch_add(&self.counters.closes_sent, 1);
    }

    /// A close frame received.
    pub fn record_close_received(&self) {
        fetch_add(&self.counters.closes_received, 1);
    }

    /// An error (I/O failure and the like): `errors` goes up.
    pub fn record_error(&self) {
        fetch_add(&self.counters.errors, 1);
    }

    /// A protocol violation by the peer: `protocol_errors` goes up.
    pub fn record_protocol_error(&self) {
        fetch_add(&self.counters.protocol_errors, 1);
    }

    /// An opening handshake that failed: `handshake_failures` and its reason bucket go up (and
    /// `handshake_timeouts` for [`HandshakeFailure::Timeout`]).
    pub fn record_handshake_failure(&self, kind: HandshakeFailure) {
        record_handshake_failure_with(&self.counters, kind, fetch_add);
    }

    /// Adds `n` to any counter by hand (e.g. `|c| &c.messages_dropped`), for the counters that have no
    /// `record_*` method here.
    pub fn add(&self, counter: impl FnOnce(&Counters) -> &AtomicU64, n: u64) {
        fetch_add(counter(&self.counters), n);
    }

    /// The current counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        snapshot.add(&self.counters);
        snapshot
    }

    /// The current counters and the rates since the previous `report` (or since the collector was
    /// made); `now` becomes the start of the next interval.
    pub fn report(&self, now: Instant) -> MetricsReport {
        let snapshot = self.snapshot();
        self.meter.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).report(snapshot, now)
    }

    /// [`format_metrics`] of [`MetricsCollector::report`] at `now` (so it starts a new interval).
    pub fn format_metrics(&self, now: Instant) -> String {
        format_metrics(&self.report(now))
    }

    /// [`prometheus_text`] of the current counters (rates are not exported, so no interval is
    /// consumed).
    pub fn prometheus_text(&self, prefix: &str) -> String {
        prometheus_text(&MetricsReport::from_totals(self.snapshot()), prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seed_example() {
        let t0 = Instant::now();
        let m = MetricsCollector::starting_at(t0);
        m.record_connection_opened();
        m.record_message_sent(MessageKind::Text, 100);
        m.record_message_received(MessageKind::Binary, 200);
        let report = m.report(t0 + Duration::from_secs(1));
        assert_eq!(report.get("active_connections"), Some(1.0));
        assert_eq!(report.get("tcp_connections"), Some(1.0));
        assert_eq!(report.get("tcp_connections_open"), Some(1.0));
        assert_eq!(report.get("tcp_connections_http"), Some(0.0));
        assert_eq!(report.get("messages_per_second"), Some(2.0));
        assert_eq!(report.get("bytes_sent_per_second"), Some(100.0));
        assert_eq!(report.get("bytes_received_per_second"), Some(200.0));
        // The next interval starts at the last report.
        let again = m.report(t0 + Duration::from_secs(2));
        assert_eq!(again.get("messages_per_second"), Some(0.0));
        let table = m.format_metrics(t0 + Duration::from_secs(3));
        assert!(table.contains("active_connections"));
    }

    #[test]
    fn close_never_takes_active_below_zero() {
        let m = MetricsCollector::new();
        m.record_connection_closed(1006);
        m.record_connection_opened();
        m.record_connection_closed(1000);
        let s = m.snapshot();
        assert_eq!(s.active_connections, 0);
        assert_eq!((s.tcp_connections, s.tcp_connections_in(TcpPhase::Open)), (0, 0));
        assert_eq!(s.connections_closed, 2);
        assert_eq!(s.get("connections_closed_1006"), Some(1));
        assert_eq!(s.get("connections_closed_1000"), Some(1));
    }

    #[test]
    fn frames_errors_and_handshakes() {
        let m = MetricsCollector::new();
        m.record_ping_sent();
        m.record_ping_received();
        m.record_pong_sent();
        m.record_pong_received();
        m.record_close_sent();
        m.record_close_received();
        m.record_error();
        m.record_protocol_error();
        m.record_handshake_failure(HandshakeFailure::Timeout);
        m.add(|c| &c.messages_dropped, 3);
        let s = m.snapshot();
        assert_eq!((s.pings_sent, s.pings_received, s.pongs_sent, s.pongs_received), (1, 1, 1, 1));
        assert_eq!((s.closes_sent, s.closes_received), (1, 1));
        assert_eq!((s.errors, s.protocol_errors), (1, 1));
        assert_eq!((s.handshake_failures, s.handshake_timeouts), (1, 1));
        assert_eq!(s.handshake_failures_for(HandshakeFailure::Timeout), 1);
        assert_eq!(s.messages_dropped, 3);
        assert!(m.prometheus_text("wsloop").contains("wsloop_handshake_failures_total{reason=\"timeout\"} 1\n"));
    }

    #[test]
    fn collector_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MetricsCollector>();
    }
}

//! The live dashboard's feed: a WebSocket route (`/dashboard/ws` by default) whose handler pushes the
//! server's metrics as one JSON object per interval.
//!
//! Cost: only watching connections pay. Each feed connection arms its own handler timer
//! ([`Ctx::set_timer`]) in `on_open` and re-arms it in `on_timer`; with nobody watching there is no timer,
//! no snapshot and no JSON. A tick reads every reactor's counter block (relaxed atomics, no lock) and
//! writes one message; a viewer that does not read skips samples instead of piling them up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use wsloop::metrics::{CloseCodeBucket, HandshakeFailure, MetricsSnapshot, Rates};
use wsloop::server::{Ctx, Handler, Message};

/// What every feed connection shares: fixed facts about the server.
#[derive(Debug)]
pub(crate) struct FeedInfo {
    /// Time between two samples.
    pub interval: Duration,
    /// When the server started (uptime is measured from here).
    pub started: Instant,
    /// The `--mode` name.
    pub mode: &'static str,
    /// Bytes in one pooled buffer (`Config::read_buffer_size`): what `pool_buffers_outstanding` multiplies.
    pub pool_buffer_bytes: usize,
}

/// A sample is skipped while more than this many bytes wait for the viewer.
const MAX_BACKLOG: usize = 256 * 1024;

/// Counters also turned into per-second rates (besides those of [`Rates`]).
const RATED: [&str; 9] = [
    "bytes_written",
    "connections_accepted",
    "connections_closed",
    "handshake_failures",
    "protocol_errors",
    "messages_dropped",
    "slow_peers_closed",
    "handler_panics",
    "http_requests",
];

/// Counters shown per reactor.
const PER_REACTOR: [&str; 10] = [
    "active_connections",
    "connections_accepted",
    "connections_closed",
    "handshake_failures",
    "protocol_errors",
    "handler_panics",
    "messages_dropped",
    "slow_peers_closed",
    "pool_buffers_outstanding",
    "http_requests",
];

/// One dashboard viewer.
pub(crate) struct Feed {
    info: Arc<FeedInfo>,
    /// The previous sample's totals, per-reactor counters and time.
    previous: Option<(MetricsSnapshot, Vec<MetricsSnapshot>, Instant)>,
    /// Samples not sent because the viewer was behind.
    skipped: u64,
}

impl Feed {
    /// A feed handler for one connection.
    pub(crate) fn new(info: Arc<FeedInfo>) -> Self {
        Self { info, previous: None, skipped: 0 }
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = Instant::now();
        let handle = ctx.handle();
        let totals = handle.metrics();
        let reactors: Vec<MetricsSnapshot> =
            (0..handle.reactors()).map(|i| handle.reactor_metrics(i).unwrap_or_default()).collect();
        let (before, before_reactors, interval) = match &self.previous {
            Some((t, r, at)) => (*t, r.clone(), now.saturating_duration_since(*at)),
            None => (totals, reactors.clone(), Duration::ZERO),
        };
        if ctx.buffered_amount() > MAX_BACKLOG {
            self.skipped += 1;
        } else {
            let uptime = now.saturating_duration_since(self.info.started);
            let sample = sample_json(uptime, interval, &before, &totals, &before_reactors, &reactors, self.skipped);
            let _ = ctx.send_text(&sample.to_string());
        }
        self.previous = Some((totals, reactors, now));
        ctx.set_timer(self.info.interval);
    }
}

impl Handler for Feed {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let info = &self.info;
        let hello = json!({
            "type": "hello",
            "server": concat!("wsloop ", env!("CARGO_PKG_VERSION")),
            "addr": ctx.handle().local_addr().to_string(),
            "mode": info.mode,
            "reactors": ctx.handle().reactors(),
            "interval_ms": info.interval.as_millis() as u64,
            "metrics_enabled": wsloop::metrics::ENABLED,
            "pool_buffer_bytes": info.pool_buffer_bytes,
            "close_codes": CloseCodeBucket::ALL.iter().map(|b| b.label()).collect::<Vec<_>>(),
            "handshake_failure_reasons": HandshakeFailure::ALL.iter().map(|k| k.label()).collect::<Vec<_>>(),
        });
        let _ = ctx.send_text(&hello.to_string());
        self.tick(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.tick(ctx);
    }

    /// The feed is one-way; whatever a viewer sends is ignored.
    fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message<'_>) {}
}

fn rates_json(before: &MetricsSnapshot, now: &MetricsSnapshot, interval: Duration) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, v) in Rates::between(before, now, interval).fields() {
        map.insert(name.to_owned(), json!(v));
    }
    let secs = interval.as_secs_f64();
    for name in RATED {
        let delta = now.get(name).unwrap_or(0).saturating_sub(before.get(name).unwrap_or(0));
        let rate = if secs > 0.0 { delta as f64 / secs } else { 0.0 };
        map.insert(format!("{name}_per_second"), json!(rate));
    }
    map
}

/// One sample: totals (every counter by name), rates over the interval, closes by code, handshake
/// failures by reason, and per reactor the counters of [`PER_REACTOR`] and their rates.
pub(crate) fn sample_json(
    uptime: Duration,
    interval: Duration,
    before: &MetricsSnapshot,
    now: &MetricsSnapshot,
    before_reactors: &[MetricsSnapshot],
    reactors: &[MetricsSnapshot],
    skipped: u64,
) -> Value {
    let totals: Map<String, Value> = now.fields().into_iter().map(|(n, v)| (n.to_owned(), json!(v))).collect();
    let mut totals = totals;
    totals.insert("messages_received".into(), json!(now.messages_received()));
    totals.insert("bytes_sent".into(), json!(now.bytes_sent()));
    let closes: Map<String, Value> =
        CloseCodeBucket::ALL.iter().map(|b| (b.label().to_owned(), json!(now.closed_with(*b)))).collect();
    let failures: Map<String, Value> =
        HandshakeFailure::ALL.iter().map(|k| (k.label().to_owned(), json!(now.handshake_failures_for(*k)))).collect();
    let per_reactor: Vec<Value> = reactors
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let b = before_reactors.get(i).unwrap_or(r);
            let mut m: Map<String, Value> =
                PER_REACTOR.iter().map(|n| ((*n).to_owned(), json!(r.get(n).unwrap_or(0)))).collect();
            m.insert("index".into(), json!(i));
            m.insert("rates".into(), Value::Object(rates_json(b, r, interval)));
            Value::Object(m)
        })
        .collect();
    json!({
        "type": "sample",
        "uptime_s": uptime.as_secs_f64(),
        "interval_s": interval.as_secs_f64(),
        "skipped": skipped,
        "totals": totals,
        "rates": rates_json(before, now, interval),
        "closes_by_code": closes,
        "handshake_failures_by_reason": failures,
        "reactors": per_reactor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_has_totals_rates_buckets_and_reactors() {
        let before = MetricsSnapshot { messages_sent: 10, bytes_written: 1_000, ..Default::default() };
        let mut now = MetricsSnapshot {
            messages_sent: 30,
            bytes_written: 5_000,
            active_connections: 3,
            text_messages_received: 8,
            slow_peers_closed: 2,
            ..Default::default()
        };
        now.connections_closed_by_code[CloseCodeBucket::GoingAway.index()] = 4;
        now.handshake_failures_by_reason[HandshakeFailure::NotFound.index()] = 1;
        let r0 = MetricsSnapshot { active_connections: 1, ..Default::default() };
        let r1 = MetricsSnapshot { active_connections: 2, messages_dropped: 6, ..Default::default() };
        let s = sample_json(
            Duration::from_secs(7),
            Duration::from_secs(2),
            &before,
            &now,
            &[MetricsSnapshot::default(), MetricsSnapshot::default()],
            &[r0, r1],
            0,
        );
        assert_eq!(s["type"], "sample");
        assert_eq!(s["uptime_s"], 7.0);
        assert_eq!(s["totals"]["active_connections"], 3);
        assert_eq!(s["totals"]["messages_received"], 8);
        assert_eq!(s["rates"]["messages_sent_per_second"], 10.0);
        assert_eq!(s["rates"]["bytes_written_per_second"], 2_000.0);
        assert_eq!(s["rates"]["slow_peers_closed_per_second"], 1.0);
        assert_eq!(s["closes_by_code"]["1001"], 4);
        assert_eq!(s["handshake_failures_by_reason"]["not_found"], 1);
        assert_eq!(s["reactors"][1]["index"], 1);
        assert_eq!(s["reactors"][1]["active_connections"], 2);
        assert_eq!(s["reactors"][1]["rates"]["messages_dropped_per_second"], 3.0);
    }

    #[test]
    fn the_first_sample_has_zero_rates() {
        let now = MetricsSnapshot { messages_sent: 30, ..Default::default() };
        let s = sample_json(Duration::ZERO, Duration::ZERO, &now, &now, &[now], &[now], 0);
        assert_eq!(s["rates"]["messages_sent_per_second"], 0.0);
        assert_eq!(s["reactors"][0]["rates"]["bytes_written_per_second"], 0.0);
    }
}

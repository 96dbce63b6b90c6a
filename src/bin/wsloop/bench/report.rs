//! The result of a run and its outputs: the text summary, the `--json` object and the data behind the
//! HTML report (percentiles, the distribution curves). Reads the finished run; never sends.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::cpu::CpuUse;
use super::samples::Samples;
use super::state::{lock, new_histogram, totals, Run};
use super::BenchArgs;
use crate::util::{micros, si};

/// Percentiles of a histogram for the report's distribution chart: `[percentile, value]` pairs from
/// the HDR quantile iteration (more points towards the tail), ending at the maximum.
fn percentile_curve(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!([]);
    }
    let mut points: Vec<Value> =
        h.iter_quantiles(4).map(|v| json!([v.quantile_iterated_to() * 100.0, v.value_iterated_to()])).collect();
    points.dedup();
    Value::Array(points)
}

/// The result of a run.
pub(super) struct Report {
    url: String,
    requested: u64,
    opened: u64,
    failed: u64,
    connect_errors: BTreeMap<&'static str, u64>,
    closes: BTreeMap<u16, u64>,
    handshake: Histogram<u64>,
    handshake_secs: f64,
    size: usize,
    text: bool,
    pipeline: usize,
    threads: usize,
    sent: u64,
    received: u64,
    measured: u64,
    measured_bytes: u64,
    measured_secs: f64,
    mismatched: u64,
    unexpected: u64,
    unanswered: u64,
    latency: Histogram<u64>,
    pub(super) cpu: CpuUse,
}

impl Report {
    /// `elapsed`: from the end of the warmup to the end of the run.
    pub(super) fn collect(args: &BenchArgs, run: &Run, elapsed: Duration, duration: Option<Duration>) -> Self {
        let t = totals(run);
        let measured_secs = match duration {
            Some(d) => d.min(elapsed).as_secs_f64(),
            None => {
                let finish = run.finish_ticks.load(Relaxed).saturating_sub(run.measure_from);
                run.clock.duration(finish).as_secs_f64()
            }
        };
        let mut latency = new_histogram();
        // The histogram holds ticks: re-record every bucket in microseconds.
        for v in lock(&run.latency).iter_recorded() {
            let _ = latency.record_n(run.clock.micros(v.value_iterated_to()), v.count_at_value());
        }
        Self {
            url: args.url.clone(),
            requested: args.connections as u64,
            opened: run.opened.load(Relaxed),
            failed: run.failed.load(Relaxed),
            connect_errors: lock(&run.connect_errors).clone(),
            closes: lock(&run.closes).clone(),
            handshake: lock(&run.handshake).clone(),
            handshake_secs: Duration::from_nanos(run.last_open_ns.load(Relaxed)).as_secs_f64(),
            size: run.size,
            text: run.text,
            pipeline: run.pipeline,
            threads: args.threads.max(1),
            sent: t.sent,
            received: t.received,
            measured: t.measured,
            measured_bytes: t.measured_bytes,
            measured_secs,
            mismatched: t.mismatched,
            unexpected: t.unexpected,
            unanswered: run.unanswered.load(Relaxed),
            latency,
            cpu: CpuUse::default(),
        }
    }

    fn per_second(&self, v: u64) -> f64 {
        if self.measured_secs > 0.0 {
            v as f64 / self.measured_secs
        } else {
            0.0
        }
    }

    fn handshakes_per_second(&self) -> f64 {
        if self.handshake_secs > 0.0 {
            self.opened as f64 / self.handshake_secs
        } else {
            0.0
        }
    }

    /// Whether the run passes (exit status 0): every connection opened, at least one echo came back,
    /// every message was echoed with the right type and length, every close was our 1000.
    pub(super) fn ok(&self) -> bool {
        self.received > 0
            && self.failed == 0
            && self.mismatched == 0
            && self.unexpected == 0
            && self.unanswered == 0
            && self.abnormal_closes() == 0
    }

    /// Closes other than the normal 1000 that ends every connection.
    fn abnormal_closes(&self) -> u64 {
        self.closes.iter().filter(|(code, _)| **code != 1000).map(|(_, n)| n).sum()
    }

    fn percentiles(h: &Histogram<u64>) -> [(&'static str, u64); 6] {
        [
            ("p50", h.value_at_quantile(0.5)),
            ("p90", h.value_at_quantile(0.9)),
            ("p99", h.value_at_quantile(0.99)),
            ("p99_9", h.value_at_quantile(0.999)),
            ("max", h.max()),
            ("mean", h.mean().round() as u64),
        ]
    }

    pub(super) fn json(&self) -> Value {
        let pct = |h: &Histogram<u64>| -> Value {
            let mut m = serde_json::Map::new();
            for (name, v) in Self::percentiles(h) {
                m.insert(name.to_owned(), json!(v));
            }
            m.insert("count".into(), json!(h.len()));
            Value::Object(m)
        };
        json!({
            "url": self.url,
            "threads": self.threads,
            "connections": {
                "requested": self.requested,
                "opened": self.opened,
                "failed": self.failed,
                "handshake_us": pct(&self.handshake),
                "handshakes_per_second": self.handshakes_per_second(),
            },
            "messages": {
                "kind": if self.text { "text" } else { "binary" },
                "size": self.size,
                "pipeline": self.pipeline,
                "sent": self.sent,
                "received": self.received,
            },
            "measured": {
                "seconds": self.measured_secs,
                "received": self.measured,
                "messages_per_second": self.per_second(self.measured),
                "megabytes_per_second": self.per_second(self.measured_bytes) / 1e6,
            },
            "latency_us": pct(&self.latency),
            "errors": {
                "connect": self.connect_errors,
                "length_or_type_mismatch": self.mismatched,
                "unexpected_messages": self.unexpected,
                "unanswered": self.unanswered,
                "abnormal_closes": self.abnormal_closes(),
            },
            "bench_cpu": {
                "percent_of_one_core": self.cpu.percent(),
                "user_seconds": self.cpu.user.as_secs_f64(),
                "system_seconds": self.cpu.system.as_secs_f64(),
                "wall_seconds": self.cpu.wall.as_secs_f64(),
            },
            "closes": self.closes.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Everything the HTML report shows: the configuration, the result (as `--json` prints it), the
    /// per-second samples and the latency and handshake distributions.
    pub(super) fn html_data(&self, args: &BenchArgs, samples: &Samples, duration: Option<Duration>) -> Value {
        let config = json!({
            "url": self.url,
            "connections": self.requested,
            "size": self.size,
            "kind": if self.text { "text" } else { "binary" },
            "pipeline": self.pipeline,
            "threads": self.threads,
            "duration_seconds": duration.map(|d| d.as_secs_f64()),
            "messages": args.messages,
            "rate_per_second": args.rate,
            "ramp_per_second": args.ramp,
            "warmup_seconds": args.warmup.as_secs_f64(),
            "connect_timeout_seconds": args.connect_timeout.as_secs_f64(),
            "protocols": args.protocols,
            // Header values may be credentials: only the names go into a file meant to be shared.
            "header_names": args.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
            "source_ips": args.source_ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        });
        json!({
            "generated_utc": crate::util::utc_timestamp(std::time::SystemTime::now()),
            "wsloop": env!("CARGO_PKG_VERSION"),
            "ok": self.ok(),
            "config": config,
            "result": self.json(),
            "samples": samples.json(self.size),
            "latency_percentiles_us": percentile_curve(&self.latency),
            "handshake_percentiles_us": percentile_curve(&self.handshake),
        })
    }

    pub(super) fn human(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let kind = if self.text { "text" } else { "binary" };
        let _ = writeln!(
            s,
            "wsloop bench {}: {} connections, {} B {kind} messages, {} in flight each, {} thread(s)",
            self.url, self.requested, self.size, self.pipeline, self.threads
        );
        let h = &self.handshake;
        let _ = writeln!(
            s,
            "connections: {} opened, {} failed; handshake p50 {} p99 {} max {} ({:.0} handshakes/s)",
            self.opened,
            self.failed,
            micros(h.value_at_quantile(0.5)),
            micros(h.value_at_quantile(0.99)),
            micros(h.max()),
            self.handshakes_per_second()
        );
        let _ = writeln!(s, "messages:    {} sent, {} received", self.sent, self.received);
        let _ = writeln!(
            s,
            "throughput:  {} msg/s, {:.2} MB/s echoed payload ({} messages in {:.2} s measured)",
            si(self.per_second(self.measured)),
            self.per_second(self.measured_bytes) / 1e6,
            self.measured,
            self.measured_secs
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency:     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            micros(l.value_at_quantile(0.5)),
            micros(l.value_at_quantile(0.9)),
            micros(l.value_at_quantile(0.99)),
            micros(l.value_at_quantile(0.999)),
            micros(l.max()),
            micros(l.mean().round() as u64)
        );
        let closes: Vec<String> = self.closes.iter().map(|(code, n)| format!("{code}×{n}")).collect();
        let connect: Vec<String> = self.connect_errors.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        let _ = writeln!(
            s,
            "errors:      connect [{}], closes [{}], length/type mismatches {}, unexpected {}, unanswered {}",
            connect.join(" "),
            closes.join(" "),
            self.mismatched,
            self.unexpected,
            self.unanswered
        );
        let _ = writeln!(
            s,
            "bench cpu:   {:.0}% of one core (user {:.2} s, system {:.2} s over {:.2} s; near {}% means the bench, \
             not the server, is the limit)",
            self.cpu.percent(),
            self.cpu.user.as_secs_f64(),
            self.cpu.system.as_secs_f64(),
            self.cpu.wall.as_secs_f64(),
            100 * self.threads
        );
        s
    }
}

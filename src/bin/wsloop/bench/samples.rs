//! The run's totals sampled about once a second, for the HTML report's throughput over time.
//! Reads totals handed to it; never touches the shared state or the connections.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::state::Totals;

/// The run's totals about once a second, for the HTML report's throughput over time.
pub(super) struct Samples {
    epoch: Instant,
    last: Option<Instant>,
    /// Seconds since the start, messages sent and received so far, connections open.
    points: Vec<(f64, u64, u64, u64)>,
}

impl Samples {
    pub(super) fn starting_at(epoch: Instant) -> Self {
        Self { epoch, last: None, points: vec![(0.0, 0, 0, 0)] }
    }

    /// Records a point when a second has passed since the last one.
    pub(super) fn maybe_record(&mut self, now: Instant, t: &Totals, open: u64) {
        let due = self.last.map_or(now.saturating_duration_since(self.epoch), |at| now.saturating_duration_since(at));
        if due >= Duration::from_secs(1) {
            self.record(now, t, open);
        }
    }

    fn record(&mut self, now: Instant, t: &Totals, open: u64) {
        self.last = Some(now);
        self.points.push((now.saturating_duration_since(self.epoch).as_secs_f64(), t.sent, t.received, open));
    }

    /// The last point, at the end of the run; a stub interval shorter than half a second is merged into
    /// the one before it (its rate would say little).
    pub(super) fn finish(&mut self, now: Instant, t: &Totals, open: u64) {
        let since_last = self.last.map(|at| now.saturating_duration_since(at));
        if self.points.len() > 2 && since_last.is_some_and(|d| d < Duration::from_millis(500)) {
            self.points.pop();
        }
        self.record(now, t, open);
    }

    /// One object per interval between points: its end (`t`, seconds since the start), the rates over
    /// it and the totals at its end.
    pub(super) fn json(&self, size: usize) -> Value {
        let rows: Vec<Value> = self
            .points
            .windows(2)
            .filter(|w| w[1].0 > w[0].0)
            .map(|w| {
                let ((t0, sent0, received0, _), (t1, sent1, received1, open)) = (w[0], w[1]);
                let secs = t1 - t0;
                let received = received1.saturating_sub(received0) as f64 / secs;
                json!({
                    "t": t1,
                    "seconds": secs,
                    "sent_per_second": sent1.saturating_sub(sent0) as f64 / secs,
                    "received_per_second": received,
                    "megabytes_per_second": received * size as f64 / 1e6,
                    "sent": sent1,
                    "received": received1,
                    "open_connections": open,
                })
            })
            .collect();
        Value::Array(rows)
    }
}

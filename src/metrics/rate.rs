//! Rates over the last interval, computed from two snapshots. Sans-clock: the caller passes `now`.

use std::time::{Duration, Instant};

use super::MetricsSnapshot;

/// Per-second rates over one interval, computed from two snapshots.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Messages received and sent per second.
    pub messages_per_second: f64,
    /// Messages received (text and binary) per second.
    pub messages_received_per_second: f64,
    /// Messages sent per second (from `messages_sent`).
    pub messages_sent_per_second: f64,
    /// Payload bytes received per second (from `bytes_received`).
    pub bytes_received_per_second: f64,
    /// Payload bytes sent per second (from `text_bytes_sent` + `binary_bytes_sent`).
    pub bytes_sent_per_second: f64,
}

impl Rates {
    /// The names [`Rates::get`] answers, in [`Rates::fields`] order.
    pub const NAMES: [&'static str; 5] = [
        "messages_per_second",
        "messages_received_per_second",
        "messages_sent_per_second",
        "bytes_received_per_second",
        "bytes_sent_per_second",
    ];

    /// The rates from `previous` to `current` over `interval`. A zero interval gives zero rates; a
    /// counter that went backwards (a reset) counts as no change.
    pub fn between(previous: &MetricsSnapshot, current: &MetricsSnapshot, interval: Duration) -> Self {
        let secs = interval.as_secs_f64();
        let per_second = |before: u64, after: u64| {
            if secs > 0.0 {
                after.saturating_sub(before) as f64 / secs
            } else {
                0.0
            }
        };
        let received = per_second(previous.messages_received(), current.messages_received());
        let sent = per_second(previous.messages_sent, current.messages_sent);
        Self {
            messages_per_second: received + sent,
            messages_received_per_second: received,
            messages_sent_per_second: sent,
            bytes_received_per_second: per_second(previous.bytes_received, current.bytes_received),
            bytes_sent_per_second: per_second(previous.bytes_sent(), current.bytes_sent()),
        }
    }

    /// Looks a rate up by its name (e.g. `"messages_per_second"`).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.fields().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every rate as `(name, value)`.
    pub fn fields(&self) -> [(&'static str, f64); 5] {
        let n = Self::NAMES;
        [
            (n[0], self.messages_per_second),
            (n[1], self.messages_received_per_second),
            (n[2], self.messages_sent_per_second),
            (n[3], self.bytes_received_per_second),
            (n[4], self.bytes_sent_per_second),
        ]
    }
}

/// Totals and the rates over the last interval: what [`super::format_metrics`] and
/// [`super::prometheus_text`] print.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct MetricsReport {
    /// The counters at the end of the interval.
    pub totals: MetricsSnapshot,
    /// Rates over the interval.
    pub rates: Rates,
    /// How long the interval was (zero when there was no earlier snapshot).
    pub interval: Duration,
}

impl MetricsReport {
    /// A report of totals alone: zero rates over a zero interval (enough for [`super::prometheus_text`],
    /// which exports no rates).
    pub fn from_totals(totals: MetricsSnapshot) -> Self {
        Self { totals, rates: Rates::default(), interval: Duration::ZERO }
    }

    /// Looks up a counter (e.g. `"active_connections"`, `"connections_closed_1000"`) or a rate (e.g.
    /// `"messages_per_second"`) by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.totals.get(name).map(|v| v as f64).or_else(|| self.rates.get(name))
    }

    /// Every counter, then every rate, as `(name, value)`.
    pub fn fields(&self) -> Vec<(&'static str, f64)> {
        let mut fields: Vec<_> = self.totals.fields().into_iter().map(|(n, v)| (n, v as f64)).collect();
        fields.extend(self.rates.fields());
        fields
    }
}

/// Keeps the previous snapshot and when it was taken, and turns each new snapshot into a
/// [`MetricsReport`] with the rates since the previous one.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wsloop::metrics::{MetricsSnapshot, RateMeter};
///
/// let t0 = Instant::now();
/// let mut meter = RateMeter::starting_at(MetricsSnapshot::default(), t0);
/// let now = MetricsSnapshot {
///     messages_sent: 50,
///     ..Default::default()
/// };
/// let report = meter.report(now, t0 + Duration::from_secs(2));
/// assert_eq!(report.get("messages_sent_per_second"), Some(25.0));
/// ```
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    previous: Option<(MetricsSnapshot, Instant)>,
}

impl RateMeter {
    /// A meter with no baseline: its first report has zero rates and becomes the baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A meter whose first interval starts at `at` with `baseline` (e.g. all zeros when counting
    /// started at `at`).
    pub fn starting_at(baseline: MetricsSnapshot, at: Instant) -> Self {
        Self { previous: Some((baseline, at)) }
    }

    /// The report for `totals` taken at `now`, with rates since the previous report (or baseline);
    /// `totals` and `now` become the new baseline. A `now` earlier than the baseline gives a zero
    /// interval and zero rates.
    pub fn report(&mut self, totals: MetricsSnapshot, now: Instant) -> MetricsReport {
        let report = self.peek(totals, now);
        self.previous = Some((totals, now));
        report
    }

    /// Like [`RateMeter::report`] but keeps the current baseline.
    pub fn peek(&self, totals: MetricsSnapshot, now: Instant) -> MetricsReport {
        match &self.previous {
            Some((before, at)) => {
                let interval = now.saturating_duration_since(*at);
                MetricsReport { totals, rates: Rates::between(before, &totals, interval), interval }
            }
            None => MetricsReport::from_totals(totals),
        }
    }

    /// The baseline the next interval starts from, if any.
    pub fn baseline(&self) -> Option<(&MetricsSnapshot, Instant)> {
        self.previous.as_ref().map(|(s, at)| (s, *at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_two_seconds() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new();
        let first = meter.report(MetricsSnapshot::default(), t0);
        assert_eq!(first.rates, Rates::default());
        assert_eq!(first.interval, Duration::ZERO);

        let s = MetricsSnapshot {
            text_messages_received: 10,
            binary_messages_received: 6,
            messages_sent: 4,
            bytes_received: 1000,
            text_bytes_sent: 300,
            binary_bytes_sent: 100,
            ..Default::default()
        };
        let r = meter.report(s, t0 + Duration::from_secs(2));
        assert_eq!(r.interval, Duration::from_secs(2));
        assert_eq!(r.rates.messages_received_per_second, 8.0);
        assert_eq!(r.rates.messages_sent_per_second, 2.0);
        assert_eq!(r.rates.messages_per_second, 10.0);
        assert_eq!(r.rates.bytes_received_per_second, 500.0);
        assert_eq!(r.rates.bytes_sent_per_second, 200.0);

        // Nothing happened in the next interval.
        let r = meter.report(s, t0 + Duration::from_secs(3));
        assert_eq!(r.rates, Rates::default());
        assert_eq!(r.get("messages_sent"), Some(4.0));
    }

    #[test]
    fn peek_keeps_the_baseline_and_time_going_back_gives_zero() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let meter = RateMeter::starting_at(MetricsSnapshot::default(), t0);
        let s = MetricsSnapshot { messages_sent: 10, ..Default::default() };
        assert_eq!(meter.peek(s, t0 + Duration::from_secs(1)).rates.messages_sent_per_second, 10.0);
        assert_eq!(meter.baseline().map(|(_, at)| at), Some(t0));
        let back = meter.peek(s, t0 - Duration::from_secs(1));
        assert_eq!(back.interval, Duration::ZERO);
        assert_eq!(back.rates, Rates::default());
    }

    #[test]
    fn counter_reset_counts_as_no_change() {
        let before = MetricsSnapshot { messages_sent: 100, ..Default::default() };
        let r = Rates::between(&before, &MetricsSnapshot::default(), Duration::from_secs(1));
        assert_eq!(r.messages_sent_per_second, 0.0);
    }

    #[test]
    fn rates_are_found_by_name() {
        let r = Rates {
            messages_per_second: 1.0,
            messages_received_per_second: 2.0,
            messages_sent_per_second: 3.0,
            bytes_received_per_second: 4.0,
            bytes_sent_per_second: 5.0,
        };
        for (i, name) in Rates::NAMES.iter().enumerate() {
            assert_eq!(r.get(name), Some(i as f64 + 1.0));
        }
        assert_eq!(r.get("active_connections"), None);
    }
}

//! The text formats: a human table ([`format_metrics`]) and the Prometheus text exposition format
//! 0.0.4 ([`prometheus_text`]).

use std::fmt::Write as _;

use super::{counter_descriptors, CloseCodeBucket, Group, HandshakeFailure, MetricKind, MetricsReport, TcpPhase};

/// A human-readable table of a report: one section per [`Group`] (connections, messages, bytes,
/// frames, errors/limits, timeouts, buffers), then the rates with two decimals. Names are in the
/// left column, values right-aligned in the right one. Non-zero close-code and handshake-failure
/// buckets are listed under their totals; every TCP phase is listed under `tcp_connections`, zeros
/// included (a gauge reading zero is a reading).
///
/// ```
/// use wsloop::metrics::{format_metrics, MetricsReport, MetricsSnapshot};
///
/// let totals = MetricsSnapshot {
///     active_connections: 3,
///     ..Default::default()
/// };
/// let table = format_metrics(&MetricsReport::from_totals(totals));
/// assert!(table.contains("active_connections"));
/// assert!(table.contains("messages_per_second"));
/// ```
pub fn format_metrics(report: &MetricsReport) -> String {
    enum Row {
        Title(String),
        Value(String, String),
    }
    let totals = &report.totals;
    let mut rows = Vec::new();
    for group in Group::ALL {
        rows.push(Row::Title(group.title().to_owned()));
        for d in counter_descriptors().iter().filter(|d| d.group() == group) {
            rows.push(Row::Value(format!("  {}", d.name()), totals.get(d.name()).unwrap_or(0).to_string()));
            match d.name() {
                "connections_closed" => {
                    for b in CloseCodeBucket::ALL {
                        let n = totals.closed_with(b);
                        if n > 0 {
                            rows.push(Row::Value(format!("    code {}", b.label()), n.to_string()));
                        }
                    }
                }
                "handshake_failures" => {
                    for k in HandshakeFailure::ALL {
                        let n = totals.handshake_failures_for(k);
                        if n > 0 {
                            rows.push(Row::Value(format!("    reason {}", k.label()), n.to_string()));
                        }
                    }
                }
                "tcp_connections" => {
                    for p in TcpPhase::ALL {
                        rows.push(Row::Value(
                            format!("    phase {}", p.label()),
                            totals.tcp_connections_in(p).to_string(),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    rows.push(Row::Title(format!("rates (per second, over {:.2} s)", report.interval.as_secs_f64())));
    for (name, value) in report.rates.fields() {
        rows.push(Row::Value(format!("  {name}"), format!("{value:.2}")));
    }

    let (name_width, value_width) = rows.iter().fold((0, 0), |(n, v), row| match row {
        Row::Value(name, value) => (n.max(name.len()), v.max(value.len())),
        Row::Title(_) => (n, v),
    });
    let mut out = String::new();
    for row in &rows {
        match row {
            Row::Title(title) => {
                let _ = writeln!(out, "{title}");
            }
            Row::Value(name, value) => {
                let _ = writeln!(out, "{name:<name_width$}  {value:>value_width$}");
            }
        }
    }
    out
}

/// The counters of a report in the Prometheus text exposition format (version 0.0.4), each family
/// with its `# HELP` and `# TYPE` lines.
///
/// Names are `{prefix}_{counter}`; `prefix` may be empty, and characters not allowed in a metric
/// name are replaced by `_`. Monotonic counters are `counter`s named `..._total`; gauges
/// (`active_connections`, `tcp_connections`, `pool_buffers_outstanding`) are `gauge`s. Closes are one
/// family with a `code` label (`{prefix}_connections_closed_total{code="1000"}`, ..., `code="1006"`
/// for closes without a close frame, `code="other"`) and handshake failures one family with a
/// `reason` label (`{prefix}_handshake_failures_total{reason="not_found"}`); every bucket is always
/// present, and closes or failures counted without a bucket are reported under `"other"`, so the
/// family sums to the total. Held TCP connections are one gauge family with a `phase` label
/// (`{prefix}_tcp_connections{phase="handshake"}`, `"http"`, `"open"`, `"closing"`), every phase
/// always present and no unlabelled total (`sum()` of the family is the total). Rates are not
/// exported: Prometheus computes them.
///
/// ```
/// use wsloop::metrics::{prometheus_text, MetricsReport, MetricsSnapshot};
///
/// let totals = MetricsSnapshot {
///     connections_accepted: 7,
///     ..Default::default()
/// };
/// let text = prometheus_text(&MetricsReport::from_totals(totals), "wsloop");
/// assert!(text.contains("# TYPE wsloop_connections_accepted_total counter\n"));
/// assert!(text.contains("\nwsloop_connections_accepted_total 7\n"));
/// ```
pub fn prometheus_text(report: &MetricsReport, prefix: &str) -> String {
    let prefix = sanitize_prefix(prefix);
    let totals = &report.totals;
    let mut out = String::new();
    for d in counter_descriptors() {
        let (suffix, kind) = match d.kind() {
            MetricKind::Counter => ("_total", "counter"),
            MetricKind::Gauge => ("", "gauge"),
        };
        let name = format!("{prefix}{}{suffix}", d.name());
        match d.name() {
            "connections_closed" => {
                let help = "Connections closed, by close code (1006: ended without a close frame).";
                header(&mut out, &name, help, kind);
                let values = bucket_values(
                    totals.connections_closed,
                    &totals.connections_closed_by_code,
                    CloseCodeBucket::Other.index(),
                );
                for (b, value) in CloseCodeBucket::ALL.iter().zip(values) {
                    let _ = writeln!(out, "{name}{{code=\"{}\"}} {value}", b.label());
                }
            }
            "handshake_failures" => {
                let help = "Opening handshakes that failed, by reason.";
                header(&mut out, &name, help, kind);
                let values = bucket_values(
                    totals.handshake_failures,
                    &totals.handshake_failures_by_reason,
                    HandshakeFailure::Other.index(),
                );
                for (k, value) in HandshakeFailure::ALL.iter().zip(values) {
                    let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", k.label());
                }
            }
            "tcp_connections" => {
                let help = "TCP connections held, by phase: handshake (no request yet), http (plain HTTP, not \
                            upgraded), open (WebSocket), closing (WebSocket close handshake in progress).";
                header(&mut out, &name, help, kind);
                for p in TcpPhase::ALL {
                    let _ = writeln!(out, "{name}{{phase=\"{}\"}} {}", p.label(), totals.tcp_connections_in(p));
                }
            }
            other => {
                header(&mut out, &name, d.help(), kind);
                let _ = writeln!(out, "{name} {}", totals.get(other).unwrap_or(0));
            }
        }
    }
    out
}

/// The buckets of a labelled family, with whatever the total counted beyond their sum added to the
/// `other` bucket (counts made without a bucket, e.g. by code not yet using the `record_*` helpers).
fn bucket_values<const N: usize>(total: u64, buckets: &[u64; N], other: usize) -> [u64; N] {
    let mut values = *buckets;
    let sum = buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b));
    values[other] = values[other].wrapping_add(total.saturating_sub(sum));
    values
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `prefix` made a valid metric name start (`[a-zA-Z_:][a-zA-Z0-9_:]*`) followed by `_`, or empty.
fn sanitize_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let mut out: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if !out.ends_with('_') {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsSnapshot;
    use std::time::Duration;

    fn sample() -> MetricsReport {
        let mut totals = MetricsSnapshot {
            connections_accepted: 12,
            active_connections: 2,
            tcp_connections: 4,
            connections_closed: 10,
            handshake_failures: 3,
            messages_sent: 123_456_789,
            ..Default::default()
        };
        totals.connections_closed_by_code[CloseCodeBucket::Normal.index()] = 8;
        totals.connections_closed_by_code[CloseCodeBucket::Abnormal.index()] = 1;
        totals.handshake_failures_by_reason[HandshakeFailure::NotFound.index()] = 3;
        totals.tcp_connections_by_phase = [0, 2, 1, 1];
        let mut report = MetricsReport::from_totals(totals);
        report.interval = Duration::from_secs(2);
        report.rates.messages_per_second = 1.5;
        report
    }

    #[test]
    fn table_is_grouped_and_aligned() {
        let table = format_metrics(&sample());
        let titles: Vec<_> = table.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(
            titles,
            [
                "connections",
                "messages",
                "bytes",
                "frames",
                "errors/limits",
                "timeouts",
                "buffers",
                "rates (per second, over 2.00 s)"
            ]
        );
        let values: Vec<_> = table.lines().filter(|l| l.starts_with(' ')).collect();
        let width = values[0].len();
        assert!(values.iter().all(|l| l.len() == width), "{table}");
        assert!(table.contains("    code 1000"));
        assert!(table.contains("    code 1006"));
        assert!(!table.contains("    code 1001"));
        assert!(table.contains("    reason not_found"));
        // Every phase under its total, zeros included, in order.
        let phases: Vec<_> = values
            .iter()
            .filter(|l| l.starts_with("    phase "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect();
        assert_eq!(
            phases,
            [["phase", "handshake", "0"], ["phase", "http", "2"], ["phase", "open", "1"], ["phase", "closing", "1"]]
        );
        let total = values.iter().position(|l| l.starts_with("  tcp_connections ")).unwrap();
        assert!(values[total].ends_with(" 4"), "{table}");
        assert!(values[total + 1].starts_with("    phase handshake "), "{table}");
        let rate = values.iter().find(|l| l.trim_start().starts_with("messages_per_second")).unwrap();
        assert!(rate.ends_with(" 1.50"), "{rate}");
        let sent = values.iter().find(|l| l.trim_start().starts_with("messages_sent ")).unwrap();
        assert!(sent.ends_with(" 123456789"), "{sent}");
    }

    #[test]
    fn prometheus_families_and_unbucketed_remainder() {
        let text = prometheus_text(&sample(), "wsloop");
        assert!(text.contains("# TYPE wsloop_active_connections gauge\nwsloop_active_connections 2\n"));
        assert!(text.contains("wsloop_connections_closed_total{code=\"1000\"} 8\n"));
        assert!(text.contains("wsloop_connections_closed_total{code=\"1006\"} 1\n"));
        // 10 closed, 9 in buckets: the remaining one shows under "other".
        assert!(text.contains("wsloop_connections_closed_total{code=\"other\"} 1\n"));
        assert!(text.contains("wsloop_handshake_failures_total{reason=\"not_found\"} 3\n"));
        assert!(text.contains("wsloop_handshake_failures_total{reason=\"other\"} 0\n"));
        // One gauge family by phase, every phase present, no unlabelled total beside them.
        let family = "# TYPE wsloop_tcp_connections gauge\n\
                      wsloop_tcp_connections{phase=\"handshake\"} 0\n\
                      wsloop_tcp_connections{phase=\"http\"} 2\n\
                      wsloop_tcp_connections{phase=\"open\"} 1\n\
                      wsloop_tcp_connections{phase=\"closing\"} 1\n";
        assert!(text.contains(family), "{text}");
        assert!(!text.contains("wsloop_tcp_connections 4"), "{text}");
        assert_eq!(text.matches("# TYPE wsloop_tcp_connections ").count(), 1);
        assert!(!text.contains("per_second"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn prefixes_are_sanitized() {
        assert_eq!(sanitize_prefix(""), "");
        assert_eq!(sanitize_prefix("wsloop"), "wsloop_");
        assert_eq!(sanitize_prefix("my-app.ws"), "my_app_ws_");
        assert_eq!(sanitize_prefix("9lives"), "_9lives_");
        let text = prometheus_text(&sample(), "");
        assert!(text.contains("\nconnections_accepted_total 12\n"));
    }
}

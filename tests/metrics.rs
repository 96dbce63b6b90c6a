//! Metrics from the outside: the Prometheus text checked by an independent parser, the collector under
//! concurrent writers, rates from synthetic instants, and lookup by name for every counter.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_parse::{LineInfo, Scrape, Value};
use wsloop::metrics::{
    counter_descriptors, format_metrics, prometheus_text, CloseCodeBucket, Counters, HandshakeFailure, MessageKind,
    MetricKind, MetricsCollector, MetricsReport, MetricsSnapshot, RateMeter, Rates, TcpPhase,
};

/// A snapshot in which every counter, bucket included, has a distinct non-zero value, set by name.
fn distinct_snapshot() -> MetricsSnapshot {
    let c = Counters::default();
    let names: Vec<&str> = MetricsSnapshot::default().fields().into_iter().map(|(n, _)| n).collect();
    for (i, name) in names.iter().enumerate() {
        let counter = c.counter(name).unwrap_or_else(|| panic!("no counter {name}"));
        Counters::add(counter, 1000 + i as u64);
    }
    let mut s = MetricsSnapshot::default();
    s.add(&c);
    s
}

#[test]
fn every_field_is_found_by_name() {
    let s = distinct_snapshot();
    let fields = s.fields();
    let values: HashSet<u64> = fields.iter().map(|(_, v)| *v).collect();
    assert_eq!(values.len(), fields.len(), "values are distinct");
    let mut report = MetricsReport::from_totals(s);
    report.rates = Rates {
        messages_per_second: 1.25,
        messages_received_per_second: 2.5,
        messages_sent_per_second: 3.75,
        bytes_received_per_second: 5.0,
        bytes_sent_per_second: 6.25,
    };
    for (i, (name, value)) in fields.iter().enumerate() {
        assert_eq!(*value, 1000 + i as u64, "{name}");
        assert_eq!(s.get(name), Some(*value), "{name}");
        assert_eq!(report.get(name), Some(*value as f64), "{name}");
    }
    for (name, value) in report.rates.fields() {
        assert_eq!(report.get(name), Some(value), "{name}");
    }
    assert_eq!(report.get("messages_per_second"), Some(1.25));
    assert_eq!(report.get("active_connections"), Some(s.active_connections as f64));
    assert_eq!(report.fields().len(), fields.len() + Rates::NAMES.len());
    assert_eq!(report.get("nope"), None);
    // The struct fields and the names agree.
    assert_eq!(s.get("bytes_written"), Some(s.bytes_written));
    assert_eq!(s.get("pool_buffers_outstanding"), Some(s.pool_buffers_outstanding));
    assert_eq!(s.get("connections_closed_1006"), Some(s.closed_with(CloseCodeBucket::Abnormal)));
    assert_eq!(s.get("handshake_failures_too_large"), Some(s.handshake_failures_for(HandshakeFailure::TooLarge)));
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

#[test]
fn prometheus_text_parses_with_families_types_labels_and_values() {
    let c = Counters::default();
    Counters::add(&c.connections_accepted, 12);
    // Two WebSockets (one closing), one keep-alive HTTP connection, one fresh: four held.
    c.record_tcp_opened(TcpPhase::Handshake);
    c.record_tcp_opened(TcpPhase::Handshake);
    c.record_tcp_phase(TcpPhase::Handshake, TcpPhase::Http);
    c.record_tcp_opened(TcpPhase::Handshake);
    c.record_tcp_phase(TcpPhase::Handshake, TcpPhase::Open);
    c.record_tcp_opened(TcpPhase::Handshake);
    c.record_tcp_phase(TcpPhase::Handshake, TcpPhase::Open);
    c.record_tcp_phase(TcpPhase::Open, TcpPhase::Closing);
    Counters::set(&c.pool_buffers_outstanding, 5);
    c.record_close(1000);
    c.record_close(1000);
    c.record_close(1006);
    c.record_close(4001);
    c.record_handshake_failure(HandshakeFailure::NotFound);
    c.record_handshake_failure(HandshakeFailure::Timeout);
    c.record_message_sent(MessageKind::Text, 100);
    c.record_message_received(MessageKind::Binary, 200);
    Counters::add(&c.pings_sent, 4);
    let mut totals = MetricsSnapshot::default();
    totals.add(&c);
    let mut report = MetricsReport::from_totals(totals);
    report.rates.messages_per_second = 99.0;
    let text = prometheus_text(&report, "wsloop");

    // Every line is something the parser understands (it skips what it does not).
    for line in text.lines() {
        assert!(!matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty), "unparsed line: {line:?}");
    }
    // Every family has HELP then TYPE, before its samples, and families are contiguous.
    let mut seen = HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(seen.insert(name.clone()), "family {name} twice");
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert_eq!(rest.split(' ').next().unwrap(), current);
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample outside its family");
        }
    }

    let scrape = parse(&text);
    let mut by_name: BTreeMap<&str, Vec<&prometheus_parse::Sample>> = BTreeMap::new();
    for s in &scrape.samples {
        by_name.entry(s.metric.as_str()).or_default().push(s);
    }
    // One family per scalar counter, named and typed by kind; no rate exported.
    assert_eq!(by_name.len(), counter_descriptors().len());
    assert_eq!(scrape.docs.len(), counter_descriptors().len());
    assert!(!text.contains("per_second"));
    for d in counter_descriptors() {
        let name = match d.kind() {
            MetricKind::Counter => format!("wsloop_{}_total", d.name()),
            MetricKind::Gauge => format!("wsloop_{}", d.name()),
            other => panic!("{}: no Prometheus type for {other:?}", d.name()),
        };
        let samples = by_name.get(name.as_str()).unwrap_or_else(|| panic!("{name} missing"));
        assert!(scrape.docs.contains_key(&name), "{name} has no HELP");
        for s in samples {
            match (d.kind(), &s.value) {
                (MetricKind::Counter, Value::Counter(_)) | (MetricKind::Gauge, Value::Gauge(_)) => {}
                (kind, value) => panic!("{name}: {kind:?} exported as {value:?}"),
            }
        }
        if !matches!(d.name(), "connections_closed" | "handshake_failures" | "tcp_connections") {
            assert_eq!(samples.len(), 1, "{name}");
            let v = match samples[0].value {
                Value::Counter(v) | Value::Gauge(v) => v,
                ref other => panic!("{other:?}"),
            };
            assert_eq!(v, totals.get(d.name()).unwrap() as f64, "{name}");
        }
    }
    assert_eq!(by_name["wsloop_active_connections"][0].value, Value::Gauge(2.0), "the open and the closing one");
    assert_eq!(by_name["wsloop_pool_buffers_outstanding"][0].value, Value::Gauge(5.0));
    assert_eq!(by_name["wsloop_connections_accepted_total"][0].value, Value::Counter(12.0));
    assert_eq!(by_name["wsloop_text_bytes_sent_total"][0].value, Value::Counter(100.0));
    assert_eq!(by_name["wsloop_binary_bytes_received_total"][0].value, Value::Counter(200.0));

    // Closes: one family labelled by code, every bucket present.
    let closed = &by_name["wsloop_connections_closed_total"];
    assert_eq!(closed.len(), CloseCodeBucket::COUNT);
    let by_code: BTreeMap<&str, f64> = closed
        .iter()
        .map(|s| match s.value {
            Value::Counter(v) => (s.labels.get("code").expect("code label"), v),
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(by_code.len(), CloseCodeBucket::COUNT);
    assert_eq!(by_code["1000"], 2.0);
    assert_eq!(by_code["1006"], 1.0);
    assert_eq!(by_code["other"], 1.0);
    assert_eq!(by_code["1011"], 0.0);
    assert_eq!(by_code.values().sum::<f64>(), 4.0);

    // Handshake failures: one family labelled by reason.
    let failures = &by_name["wsloop_handshake_failures_total"];
    let by_reason: BTreeMap<&str, f64> = failures
        .iter()
        .map(|s| match s.value {
            Value::Counter(v) => (s.labels.get("reason").expect("reason label"), v),
            ref other => panic!("{other:?}"),
        })
        .collect();
    let reasons: Vec<&str> = HandshakeFailure::ALL.iter().map(|k| k.label()).collect();
    let mut expected = reasons.clone();
    expected.sort_unstable();
    assert_eq!(by_reason.keys().copied().collect::<Vec<_>>(), expected);
    assert_eq!(by_reason["not_found"], 1.0);
    assert_eq!(by_reason["timeout"], 1.0);
    assert_eq!(by_reason["version"], 0.0);
    assert_eq!(by_name["wsloop_handshake_timeouts_total"][0].value, Value::Counter(1.0));

    // Held TCP connections: one gauge family labelled by phase, every phase present, no unlabelled
    // total (so `sum(wsloop_tcp_connections)` is the total, counted once).
    let tcp = &by_name["wsloop_tcp_connections"];
    assert_eq!(tcp.len(), TcpPhase::COUNT);
    let by_phase: BTreeMap<&str, f64> = tcp
        .iter()
        .map(|s| match s.value {
            Value::Gauge(v) => (s.labels.get("phase").expect("phase label"), v),
            ref other => panic!("{other:?}"),
        })
        .collect();
    let expected: BTreeMap<&str, f64> = [("handshake", 1.0), ("http", 1.0), ("open", 1.0), ("closing", 1.0)].into();
    assert_eq!(by_phase, expected);
    assert_eq!(by_phase.values().sum::<f64>(), totals.tcp_connections as f64);
}

#[test]
fn prometheus_text_of_a_zero_snapshot_and_other_prefixes_parses() {
    for prefix in ["", "ws", "my-app"] {
        let text = prometheus_text(&MetricsReport::default(), prefix);
        for line in text.lines() {
            assert!(!matches!(LineInfo::parse(line), LineInfo::Ignored), "{line:?}");
        }
        let scrape = parse(&text);
        assert!(scrape.samples.iter().all(|s| matches!(s.value, Value::Counter(0.0) | Value::Gauge(0.0))));
    }
}

#[test]
fn collector_under_eight_threads_gives_exact_totals() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 10_000;
    let metrics = Arc::new(MetricsCollector::new());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let metrics = Arc::clone(&metrics);
            thread::spawn(move || {
                for i in 0..ROUNDS {
                    metrics.record_connection_opened();
                    metrics.record_message_sent(MessageKind::Text, 10);
                    metrics.record_message_sent(MessageKind::Binary, 3);
                    metrics.record_message_received(MessageKind::Binary, 7);
                    metrics.record_ping_sent();
                    metrics.record_pong_received();
                    if i % 2 == 0 {
                        metrics.record_error();
                        metrics.record_handshake_failure(HandshakeFailure::BadRequest);
                    }
                    // Each thread leaves one connection open.
                    if i + 1 < ROUNDS {
                        metrics.record_connection_closed(if t % 2 == 0 { 1000 } else { 1006 });
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    let s = metrics.snapshot();
    let n = (THREADS * ROUNDS) as u64;
    let closes = (THREADS * (ROUNDS - 1)) as u64;
    assert_eq!(s.connections_upgraded, n);
    assert_eq!(s.active_connections, THREADS as u64);
    assert_eq!(s.connections_closed, closes);
    assert_eq!(s.closed_with(CloseCodeBucket::Normal), closes / 2);
    assert_eq!(s.closed_with(CloseCodeBucket::Abnormal), closes / 2);
    assert_eq!(s.messages_sent, 2 * n);
    assert_eq!(s.text_messages_sent, n);
    assert_eq!(s.binary_messages_sent, n);
    assert_eq!(s.text_bytes_sent, 10 * n);
    assert_eq!(s.binary_bytes_sent, 3 * n);
    assert_eq!(s.binary_messages_received, n);
    assert_eq!(s.bytes_received, 7 * n);
    assert_eq!(s.binary_bytes_received, 7 * n);
    assert_eq!(s.pings_sent, n);
    assert_eq!(s.pongs_received, n);
    assert_eq!(s.errors, n / 2);
    assert_eq!(s.handshake_failures, n / 2);
    assert_eq!(s.handshake_failures_for(HandshakeFailure::BadRequest), n / 2);
}

#[test]
fn rates_from_two_snapshots_two_seconds_apart() {
    let t0 = Instant::now();
    let t2 = t0 + Duration::from_secs(2);
    let before = MetricsSnapshot {
        text_messages_received: 100,
        messages_sent: 50,
        bytes_received: 1_000,
        text_bytes_sent: 500,
        ..Default::default()
    };
    let mut after = before;
    after.text_messages_received += 30;
    after.binary_messages_received += 10;
    after.messages_sent += 21;
    after.bytes_received += 4_001;
    after.text_bytes_sent += 600;
    after.binary_bytes_sent += 400;

    let mut meter = RateMeter::starting_at(before, t0);
    let report = meter.report(after, t2);
    assert_eq!(report.interval, Duration::from_secs(2));
    assert_eq!(report.get("messages_received_per_second"), Some(20.0));
    assert_eq!(report.get("messages_sent_per_second"), Some(10.5));
    assert_eq!(report.get("messages_per_second"), Some(30.5));
    assert_eq!(report.get("bytes_received_per_second"), Some(2000.5));
    assert_eq!(report.get("bytes_sent_per_second"), Some(500.0));
    assert_eq!(report.totals, after);
    assert_eq!(report.rates, Rates::between(&before, &after, Duration::from_secs(2)));

    let table = format_metrics(&report);
    assert!(table.contains("rates (per second, over 2.00 s)"), "{table}");
    let line = table.lines().find(|l| l.trim_start().starts_with("messages_per_second")).unwrap();
    assert!(line.ends_with(" 30.50"), "{line}");

    // The same through a collector, with synthetic instants.
    let metrics = MetricsCollector::starting_at(t0);
    for _ in 0..8 {
        metrics.record_message_received(MessageKind::Text, 25);
    }
    metrics.record_message_sent(MessageKind::Binary, 1_000);
    let report = metrics.report(t2);
    assert_eq!(report.get("messages_per_second"), Some(4.5));
    assert_eq!(report.get("bytes_received_per_second"), Some(100.0));
    assert_eq!(report.get("bytes_sent_per_second"), Some(500.0));
    // The next report measures from t2.
    metrics.record_message_sent(MessageKind::Text, 10);
    let report = metrics.report(t2 + Duration::from_secs(2));
    assert_eq!(report.get("messages_sent_per_second"), Some(0.5));
    assert_eq!(report.get("messages_received_per_second"), Some(0.0));
}

#[test]
fn table_lists_every_counter_once() {
    let s = distinct_snapshot();
    let table = format_metrics(&MetricsReport::from_totals(s));
    for d in counter_descriptors() {
        let rows: Vec<_> = table.lines().filter(|l| l.split_whitespace().next() == Some(d.name())).collect();
        assert_eq!(rows.len(), 1, "{}", d.name());
        assert!(rows[0].ends_with(&format!(" {}", s.get(d.name()).unwrap())));
    }
}

//! `peers-report`: turns a `scripts/bench-peers.sh` results file into a markdown section and an SVG chart.
//!
//! ```text
//! peers-report RESULTS.json [--markdown FILE] [--svg FILE]
//! ```
//!
//! Always prints the tables (medians, min-max, ratios to wsloop) to stdout. `--markdown FILE` rewrites the
//! part of FILE between `<!-- peers:begin -->` and `<!-- peers:end -->` (both markers are appended at the
//! end of the file if absent; the file is created if missing). `--svg FILE` draws the chart: throughput
//! relative to wsloop per scenario (median bars, min-max whiskers) and idle memory per connection.
//!
//! The results file (schema `wsloop-bench-peers/1`) is what the script writes: metadata, the server
//! order, and per scenario a list of runs, one object per (server, round), each either `"ok": true` with
//! the figures or `"ok": false` with an `"error"`.

use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- peers:begin -->";
const END: &str = "<!-- peers:end -->";
const REFERENCE: &str = "wsloop";

/// Median, min and max of a non-empty sample.
#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stat(mut xs: Vec<f64>) -> Option<Stat> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    let median = if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 };
    Some(Stat { median, min: xs[0], max: xs[n - 1], n })
}

/// The figure `key` (a dotted path, e.g. `latency_us.p99`) of every successful run of `server`.
fn figure(runs: &[Value], server: &str, key: &str) -> Option<Stat> {
    let xs = runs
        .iter()
        .filter(|r| r["server"] == server && r["ok"] == true)
        .filter_map(|r| key.split('.').try_fold(r, |v, k| v.get(k)).and_then(Value::as_f64))
        .collect();
    stat(xs)
}

/// `reference`'s figure `key` divided by `server`'s, round by round (the two runs of a round are neighbours
/// in time, so they share the machine's state): the median and spread of those per-round ratios.
fn paired(runs: &[Value], reference: &str, server: &str, key: &str) -> Option<Stat> {
    let value = |name: &str, round: &Value| {
        runs.iter()
            .find(|r| r["server"] == name && r["ok"] == true && r["round"] == *round)
            .and_then(|r| key.split('.').try_fold(r, |v, k| v.get(k)).and_then(Value::as_f64))
    };
    let xs = runs
        .iter()
        .filter(|r| r["server"] == server && r["ok"] == true)
        .filter_map(|r| Some(value(reference, &r["round"])? / value(server, &r["round"])?))
        .collect();
    stat(xs)
}

/// Rows measured by benches/peers' independent `loadgen` (`scripts/bench-peers.sh --crosscheck`).
const LOADGEN_SUFFIX: &str = " [loadgen]";

/// The row a server's figures are divided by: wsloop measured by the same load generator.
fn reference_for(server: &str) -> String {
    if server.ends_with(LOADGEN_SUFFIX) {
        format!("{REFERENCE}{LOADGEN_SUFFIX}")
    } else {
        REFERENCE.to_owned()
    }
}

fn errors(runs: &[Value], server: &str) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .filter(|r| r["server"] == server && r["ok"] != true)
        .map(|r| r["error"].as_str().unwrap_or("failed").to_owned())
        .collect();
    out.dedup();
    out
}

/// A human number: 3 significant digits, thousands separated by a thin space.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{x:.digits$}");
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} ({}-{})", num(s.median), num(s.min), num(s.max)),
        Some(s) => num(s.median),
        None => "-".into(),
    }
}

/// A paired ratio: median, and the min-max over rounds when there are several.
fn paired_cell(s: Option<Stat>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.2}x ({:.2}-{:.2})", s.median, s.min, s.max),
        Some(s) => format!("{:.2}x", s.median),
        None => "-".into(),
    }
}

fn ratio(s: Option<Stat>, reference: Option<Stat>) -> String {
    match (s, reference) {
        (Some(s), Some(r)) if r.median > 0.0 => format!("{:.2}x", s.median / r.median),
        _ => "-".into(),
    }
}

struct Report<'a> {
    doc: &'a Value,
    /// Every server with a run (table rows).
    servers: Vec<String>,
    /// The servers the script was asked to measure (chart series); cross-check rows are left out.
    charted: Vec<String>,
}

impl<'a> Report<'a> {
    fn new(doc: &'a Value) -> Self {
        let charted: Vec<String> =
            doc["servers"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        let mut servers = charted.clone();
        // Servers that only appear in runs (an older or hand-edited file) still get a row.
        for sc in doc["scenarios"].as_array().into_iter().flatten() {
            for r in sc["runs"].as_array().into_iter().flatten() {
                if let Some(s) = r["server"].as_str() {
                    if !servers.iter().any(|x| x == s) {
                        servers.push(s.to_owned());
                    }
                }
            }
        }
        let charted = if charted.is_empty() { servers.clone() } else { charted };
        Report { doc, servers, charted }
    }

    fn scenarios(&self, kind: &str) -> Vec<&'a Value> {
        self.doc["scenarios"].as_array().into_iter().flatten().filter(|s| s["kind"] == kind).collect()
    }

    fn header(&self) -> String {
        let d = self.doc;
        let mut out = String::new();
        let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
        let _ = writeln!(
            out,
            "- **Run:** {} UTC, `{}` mode, {} round(s) interleaved (every server once per round, in turn), {} s per throughput run.",
            s(&d["date_utc"]),
            s(&d["mode"]),
            s(&d["rounds"]),
            s(&d["duration_s"])
        );
        let m = &d["machine"];
        let _ = writeln!(
            out,
            "- **Machine:** {}, {} cores, kernel {}; load average at start {}.",
            s(&m["cpu"]),
            s(&m["cores"]),
            s(&m["kernel"]),
            s(&m["loadavg_start"])
        );
        if let Some(v) = d["versions"].as_object() {
            let list: Vec<String> = v.iter().map(|(k, v)| format!("{k} {}", s(v))).collect();
            let _ = writeln!(out, "- **Versions:** {}.", list.join(", "));
        }
        if let Some(c) = d["command"].as_str() {
            let _ = writeln!(out, "- **Command:** `{c}`.");
        }
        out
    }

    fn throughput_tables(&self) -> String {
        let mut out = String::new();
        for sc in self.scenarios("throughput") {
            let runs = sc["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let _ =
                writeln!(out, "\n### ({}) {}\n", sc["id"].as_str().unwrap_or("?"), sc["title"].as_str().unwrap_or(""));
            if let Some(a) = sc["bench_args"].as_str() {
                let placement = match (sc["pinned"] == true, sc["server_quota_percent"].as_u64()) {
                    (true, Some(q)) => format!(
                        "; server on core 0 held to {q} % of it (a CPU cgroup, 10 ms period), client free on core 1"
                    ),
                    (true, None) => "; server on core 0, client on core 1".to_owned(),
                    (false, _) => "; no pinning".to_owned(),
                };
                let _ = writeln!(out, "`wsloop bench {a}`{placement}\n");
            }
            out.push_str(
                "| server | msgs/s median (min-max) | vs wsloop | p50 µs | p99 µs | msgs per server CPU-s | vs wsloop \
                 | load generator CPU % | wsloop ÷ server, msgs/s, paired | wsloop ÷ server, per CPU-s, paired |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for server in &self.servers {
                let reference = reference_for(server);
                let ref_rate = figure(runs, &reference, "messages_per_second");
                let ref_eff = figure(runs, &reference, "messages_per_server_cpu_second");
                let rate = figure(runs, server, "messages_per_second");
                let eff = figure(runs, server, "messages_per_server_cpu_second");
                if rate.is_none() {
                    let errs = errors(runs, server);
                    if !errs.is_empty() {
                        let _ = writeln!(
                            out,
                            "| {server} | not measured: {} | | | | | | | | |",
                            errs.join("; ").replace('|', "/")
                        );
                    }
                    continue;
                }
                let _ = writeln!(
                    out,
                    "| {server} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    cell(rate),
                    ratio(rate, ref_rate),
                    figure(runs, server, "latency_us.p50").map_or("-".into(), |s| num(s.median)),
                    figure(runs, server, "latency_us.p99").map_or("-".into(), |s| num(s.median)),
                    cell(eff),
                    ratio(eff, ref_eff),
                    figure(runs, server, "bench_cpu_percent").map_or("-".into(), |s| format!("{:.0}", s.median)),
                    if *server == reference {
                        "-".into()
                    } else {
                        paired_cell(paired(runs, &reference, server, "messages_per_second"))
                    },
                    if *server == reference {
                        "-".into()
                    } else {
                        paired_cell(paired(runs, &reference, server, "messages_per_server_cpu_second"))
                    },
                );
            }
            out.push_str(&self.crosscheck_table(runs));
        }
        out
    }

    /// `wsloop bench` against the independent `loadgen`, server by server, when the run has both.
    fn crosscheck_table(&self, runs: &[Value]) -> String {
        let mut rows = String::new();
        for server in self.servers.iter().filter(|s| !s.ends_with(LOADGEN_SUFFIX)) {
            let other = format!("{server}{LOADGEN_SUFFIX}");
            let (Some(bench), Some(loadgen)) =
                (figure(runs, server, "messages_per_second"), figure(runs, &other, "messages_per_second"))
            else {
                continue;
            };
            let cpu =
                |name: &str| figure(runs, name, "bench_cpu_percent").map_or("-".into(), |s| format!("{:.0}", s.median));
            let _ = writeln!(
                rows,
                "| {server} | {} | {} | {} | {} | {} |",
                num(bench.median),
                num(loadgen.median),
                paired_cell(paired(runs, server, &other, "messages_per_second")),
                cpu(server),
                cpu(&other),
            );
        }
        if rows.is_empty() {
            return rows;
        }
        format!(
            "\nCross-check: the same server measured by `wsloop bench` and, right after, by the independent \
             `loadgen` (benches/peers, no wsloop code).\n\n\
             | server | wsloop bench msgs/s | loadgen msgs/s | bench ÷ loadgen, paired | bench CPU % | loadgen CPU % |\n\
             |---|---:|---:|---:|---:|---:|\n{rows}"
        )
    }

    fn idle_tables(&self) -> String {
        let mut out = String::new();
        for sc in self.scenarios("idle") {
            let runs = sc["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let _ =
                writeln!(out, "\n### ({}) {}\n", sc["id"].as_str().unwrap_or("?"), sc["title"].as_str().unwrap_or(""));
            if let Some(t) = sc["method"].as_str() {
                let _ = writeln!(out, "{t}\n");
            }
            out.push_str(
                "| server | RSS growth, bytes per idle connection (min-max) | vs wsloop | handshakes/s (min-max) | vs wsloop | handshakes per server CPU-s |\n\
                 |---|---:|---:|---:|---:|---:|\n",
            );
            let ref_mem = figure(runs, REFERENCE, "bytes_per_connection");
            let ref_hs = figure(runs, REFERENCE, "handshakes_per_second");
            for server in &self.servers {
                let mem = figure(runs, server, "bytes_per_connection");
                if mem.is_none() {
                    let errs = errors(runs, server);
                    if !errs.is_empty() {
                        let _ =
                            writeln!(out, "| {server} | not measured: {} | | | | |", errs.join("; ").replace('|', "/"));
                    }
                    continue;
                }
                let hs = figure(runs, server, "handshakes_per_second");
                let _ = writeln!(
                    out,
                    "| {server} | {} | {} | {} | {} | {} |",
                    cell(mem),
                    ratio(mem, ref_mem),
                    cell(hs),
                    ratio(hs, ref_hs),
                    cell(figure(runs, server, "handshakes_per_server_cpu_second")),
                );
            }
        }
        out
    }

    fn markdown(&self, svg_link: Option<&str>) -> String {
        let mut out = String::from("## Side by side with other servers\n\n");
        out.push_str(
            "Generated by `scripts/bench-peers.sh` (echo servers in `benches/peers/`) from the results file; \
             do not edit by hand between the markers. Every server runs single-threaded (`wsloop serve --threads 1`, \
             tokio `current_thread`, Node.js and Bun (one JavaScript event loop each), Go with `GOMAXPROCS=1`, ws-rs' one event loop). Medians over the \
             rounds, with min-max; \"vs wsloop\" divides a server's median by wsloop's (for bytes per connection, \
             lower is better). Server CPU is utime + stime of the server process over the run. The \"paired\" \
             columns divide wsloop's figure by the server's within each round (the two runs are seconds apart \
             and share the machine's state) and give the median with the min-max over rounds: on this \
             noisy machine they are the steadier comparison. When the bench CPU nears 100 %, the load generator \
             shares the limit and msgs per server CPU-s is the fair figure.\n\n",
        );
        out.push_str(&self.header());
        if let Some(link) = svg_link {
            let _ = writeln!(out, "\n![throughput relative to wsloop and memory per idle connection]({link})");
        }
        out.push_str(&self.throughput_tables());
        out.push_str(&self.idle_tables());
        out
    }

    fn chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(760);
        let colors: Vec<RGBColor> = vec![
            RGBColor(0x1f, 0x77, 0xb4),
            RGBColor(0xff, 0x7f, 0x0e),
            RGBColor(0x2c, 0xa0, 0x2c),
            RGBColor(0xd6, 0x27, 0x28),
            RGBColor(0x94, 0x67, 0xbd),
            RGBColor(0x8c, 0x56, 0x4b),
            RGBColor(0xe3, 0x77, 0xc2),
            RGBColor(0x7f, 0x7f, 0x7f),
        ];
        let color = |i: usize| colors[i % colors.len()];

        // Left: throughput relative to wsloop's median, per scenario.
        let scen = self.scenarios("throughput");
        let mut bars: Vec<(usize, usize, Stat)> = Vec::new(); // (scenario, server, ratio stat)
        for (si, sc) in scen.iter().enumerate() {
            let runs = sc["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let Some(reference) = figure(runs, REFERENCE, "messages_per_second") else { continue };
            for (ki, server) in self.charted.iter().enumerate() {
                if let Some(s) = figure(runs, server, "messages_per_second") {
                    let r = |x: f64| x / reference.median;
                    bars.push((si, ki, Stat { median: r(s.median), min: r(s.min), max: r(s.max), n: s.n }));
                }
            }
        }
        // Headroom above the tallest whisker for the legend (upper right).
        let ymax = bars.iter().map(|b| b.2.max).fold(1.0f64, f64::max) * 1.45;
        let nscen = scen.len().max(1);
        let mut chart = ChartBuilder::on(&left)
            .caption("Echo throughput relative to wsloop (median; whiskers: min-max)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..nscen as f64 - 0.5, 0f64..ymax)?;
        let labels: Vec<String> = scen
            .iter()
            .map(|s| format!("({}) {}", s["id"].as_str().unwrap_or("?"), s["short"].as_str().unwrap_or("")))
            .collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(nscen * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("msgs/s ÷ wsloop's msgs/s")
            .draw()?;
        let nsrv = self.charted.len().max(1);
        let width = 0.8 / nsrv as f64;
        for (ki, server) in self.charted.iter().enumerate() {
            let mine: Vec<_> = bars.iter().filter(|b| b.1 == ki).collect();
            if mine.is_empty() {
                continue;
            }
            let c = color(ki);
            let x0 = |si: usize| si as f64 - 0.4 + ki as f64 * width;
            chart
                .draw_series(mine.iter().map(|b| {
                    Rectangle::new([(x0(b.0) + width * 0.05, 0.0), (x0(b.0) + width * 0.95, b.2.median)], c.filled())
                }))?
                .label(server.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            chart.draw_series(mine.iter().map(|b| {
                let xc = x0(b.0) + width / 2.0;
                PathElement::new(vec![(xc, b.2.min), (xc, b.2.max)], BLACK.stroke_width(1))
            }))?;
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (nscen as f64 - 0.5, 1.0)],
            BLACK.mix(0.5),
        )))?;
        if bars.is_empty() {
            left.draw(&Text::new("no throughput results yet", (260, 220), ("sans-serif", 16).into_font()))?;
        } else {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }

        // Right: RSS growth per idle connection.
        let idle = self.scenarios("idle");
        let runs: &[Value] = idle.first().and_then(|s| s["runs"].as_array()).map(Vec::as_slice).unwrap_or(&[]);
        let mem: Vec<(usize, Stat)> = self
            .charted
            .iter()
            .enumerate()
            .filter_map(|(i, s)| figure(runs, s, "bytes_per_connection").map(|st| (i, st)))
            .collect();
        // Log scale: the figures span three orders of magnitude.
        let ymin = mem.iter().map(|m| m.1.min).fold(1e12f64, f64::min).min(1e12) / 2.0;
        let ymin = if ymin.is_finite() && ymin > 1.0 && ymin < 1e11 { ymin } else { 64.0 };
        let ymax = mem.iter().map(|m| m.1.max).fold(1024.0f64, f64::max) * 3.0;
        let n = self.charted.len().max(1);
        let title = match idle.first().and_then(|s| s["connections"].as_u64()) {
            Some(c) => format!("RSS growth per idle connection, log scale ({} conns)", num(c as f64)),
            None => "RSS growth per idle connection, log scale".to_owned(),
        };
        let mut chart = ChartBuilder::on(&right)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (ymin..ymax).log_scale())?;
        let names = self.charted.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{} B", num(*y)))
            .draw()?;
        chart.draw_series(mem.iter().map(|(i, s)| {
            Rectangle::new([(*i as f64 - 0.35, ymin), (*i as f64 + 0.35, s.median)], color(*i).filled())
        }))?;
        chart.draw_series(
            mem.iter()
                .map(|(i, s)| PathElement::new(vec![(*i as f64, s.min), (*i as f64, s.max)], BLACK.stroke_width(1))),
        )?;
        chart.draw_series(mem.iter().map(|(i, s)| {
            Text::new(format!("{} B", num(s.median)), (*i as f64 - 0.3, s.max * 1.5), ("sans-serif", 13).into_font())
        }))?;
        root.present()?;
        Ok(())
    }
}

/// Replaces the marked section of `path` with `body` (appending the markers if absent).
fn splice(path: &Path, body: &str) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let section = format!("{BEGIN}\n{}\n{END}", body.trim_end());
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + END.len()..]),
        _ => {
            let mut s = old.trim_end().to_owned();
            if !s.is_empty() {
                s.push_str("\n\n");
            }
            format!("{s}{section}\n")
        }
    };
    std::fs::write(path, new)
}

/// How the markdown file refers to the SVG: relative to the markdown file's folder when the SVG is below it.
fn link(markdown: &Path, svg: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let dir = abs(markdown).parent().map(Path::to_path_buf).unwrap_or_default();
    let svg = abs(svg);
    svg.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(svg).to_string_lossy().into_owned()
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut input, mut markdown, mut svg): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) = (None, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--markdown" => markdown = args.next().map(PathBuf::from),
            "--svg" => svg = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: peers-report RESULTS.json [--markdown FILE] [--svg FILE]");
                return std::process::ExitCode::SUCCESS;
            }
            _ if input.is_none() && !a.starts_with('-') => input = Some(PathBuf::from(a)),
            _ => {
                eprintln!("peers-report: unexpected argument {a:?} (see --help)");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(input) = input else {
        eprintln!("usage: peers-report RESULTS.json [--markdown FILE] [--svg FILE]");
        return std::process::ExitCode::from(2);
    };
    let doc: Value = match std::fs::read_to_string(&input)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("peers-report: {}: {e}", input.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let report = Report::new(&doc);
    if let Some(svg) = &svg {
        if let Some(dir) = svg.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = report.chart(svg) {
            eprintln!("peers-report: chart {}: {e}", svg.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let svg_link = match (&markdown, &svg) {
        (Some(m), Some(s)) => Some(link(m, s)),
        _ => None,
    };
    let body = report.markdown(svg_link.as_deref());
    print!("{}", report.throughput_tables());
    print!("{}", report.idle_tables());
    if let Some(md) = &markdown {
        if let Err(e) = splice(md, &body) {
            eprintln!("peers-report: {}: {e}", md.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

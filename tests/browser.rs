//! The pages as a person uses them, in a real browser: `wsloop serve --mode chat` and Debian's headless
//! Chromium, driven over the DevTools protocol (a WebSocket, spoken with wsloop's own blocking client).
//!
//! One test opens the dashboard and two chat tabs, has two people join a room and talk (typing with
//! `Input` events, reading the DOM), runs `wsloop bench` against the same server and watches the
//! dashboard's figures move, opens the report `wsloop bench --html` wrote, and fails if any page throws
//! or logs an error. It takes a screenshot of each page: into `docs/img/` when
//! `WSLOOP_UPDATE_SCREENSHOTS=1` is set (that is how the committed ones were made), else into
//! `target/tmp/browser-screenshots/`, so that a plain `cargo test` leaves the work tree as it was.
//!
//! Needs `/usr/bin/chromium` (Debian: `apt-get install chromium`; `WSLOOP_CHROMIUM=/path` points
//! elsewhere); without it the test fails and says how to install it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cdp::{start_chromium, Cdp, Group};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");

/// A directory removed (with everything in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `wsloop serve --mode chat` on a free port: (process, address).
fn start_server() -> (Group, String) {
    let mut server = Group::spawn(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2", "--mode", "chat"])
            .args(["--dashboard-interval", "500ms"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let addr = line
        .strip_prefix("wsloop serving on ws://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line of wsloop serve: {line:?}"))
        .to_owned();
    (server, addr)
}

fn shots_dir() -> PathBuf {
    let dir = if std::env::var_os("WSLOOP_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots")
    };
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

const MESSAGES: &str = "Array.from(document.querySelectorAll('#messages .msg')).map(m => \
                        [m.dataset.from, m.querySelector('.text').textContent])";
const MEMBERS: &str = "Array.from(document.querySelectorAll('#members li')).map(li => li.dataset.name).sort()";

#[test]
fn dashboard_chat_and_bench_report_work_in_headless_chromium() {
    let started = Instant::now();
    let profile = TempDir::new("profile");
    let work = TempDir::new("work");
    let shots = shots_dir();
    let (mut server, addr) = start_server();
    let (mut chromium, devtools) = start_chromium(&profile.0, &[]);
    let mut cdp = Cdp::connect(&devtools);

    // The error detector itself: a thrown exception and a console.error on a blank page are caught.
    let canary = cdp.open("canary", "about:blank", 600);
    cdp.eval(&canary, "setTimeout(() => { throw new Error('canary exception'); }, 0); console.error('canary log'); 1");
    cdp.pump(Duration::from_millis(500));
    assert!(cdp.errors.iter().any(|e| e.contains("canary exception")), "exceptions are not detected: {:?}", cdp.errors);
    assert!(cdp.errors.iter().any(|e| e.contains("canary log")), "console errors are not detected: {:?}", cdp.errors);
    cdp.errors.clear();

    // The dashboard connects to its feed and shows figures.
    let dashboard = cdp.open("dashboard", &format!("http://{addr}/dashboard"), 900);
    cdp.wait(&dashboard, "the feed", "document.getElementById('status').textContent === 'live'");
    cdp.wait(&dashboard, "two updates", "Number(document.getElementById('sample-count').dataset.value) >= 2");
    let reactors = cdp.number(&dashboard, "document.querySelectorAll('#reactors tbody tr').length");
    assert_eq!(reactors, 2.0, "one table row per reactor");

    // Two people join #lobby, each in a tab, by typing a name and clicking Join.
    let mut tabs = Vec::new();
    for name in ["alice", "bob"] {
        let tab = cdp.open(name, &format!("http://{addr}/chat/lobby"), 760);
        assert_eq!(
            cdp.eval(&tab, "document.getElementById('join-room').value"),
            "lobby",
            "the room comes from the URL"
        );
        cdp.type_into(&tab, "#join-name", name, false);
        cdp.click(&tab, "#join-button");
        cdp.wait(&tab, "the welcome", "!document.getElementById('compose').disabled");
        tabs.push(tab);
    }
    let (alice, bob) = (tabs[0].clone(), tabs[1].clone());
    for tab in [&alice, &bob] {
        cdp.wait(tab, "both members present", &format!("JSON.stringify({MEMBERS}) === '[\"alice\",\"bob\"]'"));
    }
    cdp.wait(&dashboard, "the chat connections", "Number(document.getElementById('v-conns').dataset.value) >= 3");

    // They talk: typed text plus Enter; everyone sees it, the sender included; markup stays text.
    cdp.type_into(&alice, "#compose", "Hello Bob, this is Alice.", true);
    let seen = format!("JSON.stringify({MESSAGES}).includes('Hello Bob, this is Alice.')");
    cdp.wait(&bob, "alice's message at bob's", &seen);
    cdp.wait(&alice, "alice's message at alice's", &seen);
    cdp.type_into(&bob, "#compose", "Hi Alice! <b>bold?</b> No: text.", true);
    let reply = format!("JSON.stringify({MESSAGES}).includes('<b>bold?</b>')");
    cdp.wait(&alice, "bob's reply at alice's", &reply);
    cdp.wait(&bob, "bob's reply at bob's", &reply);
    assert_eq!(cdp.eval(&alice, "document.querySelectorAll('#messages b').length"), 0, "messages are not HTML");
    let at_alice = cdp.eval(&alice, MESSAGES);
    assert_eq!(
        at_alice,
        json!([["alice", "Hello Bob, this is Alice."], ["bob", "Hi Alice! <b>bold?</b> No: text."]]),
        "alice's view"
    );
    assert_eq!(cdp.eval(&bob, MESSAGES), at_alice, "bob sees the same conversation");
    cdp.type_into(&alice, "#compose", "Load test coming: watch the dashboard.", true);
    cdp.wait(&bob, "alice's third message", "document.querySelectorAll('#messages .msg').length === 3");

    // A load runs against the same server (paths outside /chat/ echo); the dashboard's figures move.
    let report = work.0.join("bench-report.html");
    let before = cdp.number(&dashboard, "Number(document.getElementById('v-accepted').dataset.value)");
    let mut bench = Group::spawn(
        Command::new(BIN)
            .args(["bench", &format!("ws://{addr}/load"), "-c", "24", "-s", "64", "-p", "2", "-d", "6s", "-q"])
            .arg("--html")
            .arg(&report)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let (mut peak_rate, mut peak_conns) = (0.0f64, 0.0f64);
    let load_started = Instant::now();
    let mut dashboard_shot = false;
    let status = loop {
        if let Some(status) = bench.0.try_wait().expect("bench") {
            break status;
        }
        assert!(load_started.elapsed() < Duration::from_secs(40), "the bench did not finish");
        peak_rate = peak_rate.max(cdp.number(&dashboard, "Number(document.getElementById('v-msgs-in').dataset.value)"));
        peak_conns = peak_conns.max(cdp.number(&dashboard, "Number(document.getElementById('v-conns').dataset.value)"));
        if !dashboard_shot && load_started.elapsed() > Duration::from_millis(4500) && peak_rate > 0.0 {
            // Mid-run, so the picture shows live figures.
            cdp.screenshot(&dashboard, &shots.join("dashboard.png"));
            dashboard_shot = true;
        }
        cdp.pump(Duration::from_millis(250));
    };
    assert!(status.success(), "wsloop bench failed: {status:?}");
    assert!(dashboard_shot, "the dashboard was captured during the load");
    assert!(peak_rate > 500.0, "the dashboard showed at most {peak_rate} messages/s in during the load");
    assert!(peak_conns >= 27.0, "the dashboard showed at most {peak_conns} open connections (24 bench + 3)");
    let after = cdp.number(&dashboard, "Number(document.getElementById('v-accepted').dataset.value)");
    assert!(after >= before + 24.0, "accepted connections went from {before} to {after}");
    assert!(cdp.inked(&dashboard, "chart-msgs") > 2_000, "the messages chart is drawn");
    cdp.wait(&dashboard, "the bench's closes", "Number(document.querySelector('#closes .count').dataset.value) >= 24");

    // The chat page, and the report the bench wrote, opened from its file.
    cdp.screenshot(&alice, &shots.join("chat.png"));
    let report_url = format!("file://{}", report.display());
    let report_page = cdp.open("bench report", &report_url, 900);
    cdp.wait(&report_page, "the report's figures", "document.getElementById('t-rate').textContent");
    assert_eq!(cdp.eval(&report_page, "document.getElementById('verdict').textContent"), "passed");
    assert_eq!(cdp.eval(&report_page, "document.getElementById('t-errors').textContent"), "0");
    let rows = cdp.number(&report_page, "document.querySelectorAll('#percentiles tbody tr').length");
    assert_eq!(rows, 7.0, "six percentiles and the sample count");
    for canvas in ["chart-throughput", "chart-latency", "chart-conns"] {
        assert!(cdp.inked(&report_page, canvas) > 2_000, "the report's {canvas} is drawn");
    }
    cdp.screenshot(&report_page, &shots.join("bench-report.png"));

    // No page logged a script error, from the first load to here.
    cdp.pump(Duration::from_millis(300));
    assert!(cdp.errors.is_empty(), "the pages logged errors:\n{}", cdp.errors.join("\n"));

    let _ = cdp.client.send_text(&json!({ "id": 0, "method": "Browser.close" }).to_string());
    chromium.kill();
    server.kill();
    eprintln!("browser test: {:.1} s, screenshots in {}", started.elapsed().as_secs_f64(), shots.display());
}

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

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use wsloop::client::{connect, Client, ClientOptions, Error, Message};

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");
const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u64 = 1280;

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

/// A child process started in a process group of its own; the whole group is killed when dropped
/// (Chromium's renderer and helper processes included), on success and on failure alike.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
    }

    fn kill(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // It was started with process_group(0), so its pid is the group id.
            let _ = wsloop::sys::kill_process_group(self.0.id());
        }
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
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

/// Headless Chromium with a fresh profile, and the DevTools WebSocket URL it announced.
fn start_chromium(profile: &Path) -> (Group, String) {
    let binary = std::env::var("WSLOOP_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&binary).exists(),
        "{binary} is missing: this test drives Debian's headless Chromium. Install it with\n    \
         sudo apt-get update && sudo apt-get install -y chromium\n(.ci/run does this when it is missing)"
    );
    let chromium = Group::spawn(
        Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Chromium writes "PORT\n/devtools/browser/ID" once it listens.
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return (chromium, format!("ws://127.0.0.1:{}{}", port.trim(), path.trim()));
            }
        }
        assert!(Instant::now() < deadline, "Chromium did not write {} within 30 s", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One attached page: its DevTools session and a name for messages.
#[derive(Clone)]
struct Page {
    name: &'static str,
    session: String,
}

/// A DevTools protocol connection to the browser (flat sessions: one socket for every page).
struct Cdp {
    client: Client,
    next_id: u64,
    /// Script errors seen on any page: uncaught exceptions, console errors, error log entries.
    errors: Vec<String>,
    /// Session id → page name, for error messages.
    names: Vec<(String, &'static str)>,
}

impl Cdp {
    fn connect(url: &str) -> Self {
        let client = connect(url, ClientOptions::default()).unwrap_or_else(|e| panic!("DevTools {url}: {e}"));
        Self { client, next_id: 1, errors: Vec::new(), names: Vec::new() }
    }

    fn page_name(&self, session: Option<&str>) -> &'static str {
        session.and_then(|s| self.names.iter().find(|(id, _)| id == s)).map_or("browser", |(_, n)| n)
    }

    /// Notes the events that mean a page went wrong.
    fn event(&mut self, v: &Value) {
        let page = self.page_name(v["sessionId"].as_str());
        let p = &v["params"];
        let error = match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?");
                Some(format!("uncaught exception at {}:{}: {what}", d["url"], d["lineNumber"]))
            }
            Some("Runtime.consoleAPICalled") if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                Some(format!("console.{}: {}", p["type"].as_str().unwrap_or("?"), p["args"]))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                Some(format!("log ({}): {} {}", e["source"], e["text"], e["url"]))
            }
            _ => None,
        };
        if let Some(error) = error {
            self.errors.push(format!("{page}: {error}"));
        }
    }

    fn read(&mut self, timeout: Duration) -> Option<Value> {
        match self.client.read_message(Some(timeout)) {
            Ok(Message::Text(text)) => Some(serde_json::from_str(&text).expect("DevTools sends JSON")),
            Ok(other) => panic!("DevTools sent a non-text message: {other:?}"),
            Err(Error::Timeout(_)) => None,
            Err(e) => panic!("the DevTools connection failed: {e}"),
        }
    }

    /// Sends a command and waits for its answer, noting the events that arrive meanwhile.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.client.send_text(&command.to_string()).expect("send a DevTools command");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(v) = self.read(Duration::from_millis(500)) else { continue };
            if v["id"].as_u64() == Some(id) {
                if !v["error"].is_null() {
                    panic!("{method} failed: {}", v["error"]);
                }
                return v["result"].clone();
            }
            if v["method"].is_string() {
                self.event(&v);
            }
        }
        panic!("no answer to {method} within 30 s");
    }

    /// Reads events for `d`.
    fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.read(left.max(Duration::from_millis(1))) {
                Some(v) if v["method"].is_string() => self.event(&v),
                Some(_) => {}
                None => break,
            }
        }
    }

    /// A new tab, attached, with error reporting on, then sent to `url`.
    fn open(&mut self, name: &'static str, url: &str, height: u64) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        let session = attached["sessionId"].as_str().expect("sessionId").to_owned();
        self.names.push((session.clone(), name));
        let s = Some(session.as_str());
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(s, domain, json!({}));
        }
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        self.call(s, "Emulation.setFocusEmulationEnabled", json!({ "enabled": true }));
        let page = Page { name, session };
        if url != "about:blank" {
            self.navigate(&page, url);
        }
        page
    }

    fn navigate(&mut self, page: &Page, url: &str) {
        let result = self.call(Some(&page.session), "Page.navigate", json!({ "url": url }));
        assert!(result["errorText"].is_null(), "{}: cannot open {url}: {}", page.name, result["errorText"]);
        self.wait(page, &format!("{url} loaded"), "document.readyState === 'complete'");
    }

    /// Evaluates `expression` in the page; returns its value (JSON).
    fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let r = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if !r["exceptionDetails"].is_null() {
            panic!("{}: evaluating {expression:?} threw: {}", page.name, r["exceptionDetails"]);
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (15 s at most); returns its value.
    fn wait(&mut self, page: &Page, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.eval(page, expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "{}: waited 15 s for {what} ({expression})", page.name);
            self.pump(Duration::from_millis(100));
        }
    }

    /// Clicks the centre of the element `selector`, as a mouse would.
    fn click(&mut self, page: &Page, selector: &str) {
        let rect = self.eval(
            page,
            &format!(
                "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ),
        );
        let (x, y) = (rect[0].as_f64().expect("x"), rect[1].as_f64().expect("y"));
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                Some(&page.session),
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Focuses the input `selector`, clears it, types `text`, and optionally presses Enter.
    fn type_into(&mut self, page: &Page, selector: &str, text: &str, enter: bool) {
        self.call(Some(&page.session), "Page.bringToFront", json!({}));
        self.eval(
            page,
            &format!("(() => {{ const e = document.querySelector({selector:?}); e.focus(); e.value = ''; }})()"),
        );
        self.call(Some(&page.session), "Input.insertText", json!({ "text": text }));
        if enter {
            for kind in ["keyDown", "keyUp"] {
                let mut key = json!({ "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13 });
                if kind == "keyDown" {
                    key["text"] = json!("\r");
                }
                self.call(Some(&page.session), "Input.dispatchKeyEvent", key);
            }
        }
    }

    /// A PNG of the whole page (the viewport grown to the page's height), written to `path`.
    fn screenshot(&mut self, page: &Page, path: &Path) {
        let s = Some(page.session.as_str());
        self.call(s, "Page.bringToFront", json!({}));
        let height = self.eval(page, "Math.ceil(document.documentElement.scrollHeight)").as_u64().unwrap_or(900);
        let height = height.clamp(600, 2400);
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        self.pump(Duration::from_millis(400));
        let shot = self.call(s, "Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}: not a PNG", page.name);
        let (w, h) =
            (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
        assert_eq!((u64::from(w), u64::from(h)), (WIDTH, height), "{}: screenshot size", page.name);
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Painted pixels of a canvas (alpha > 0): more than a frame and labels means a chart was drawn.
    fn inked(&mut self, page: &Page, canvas: &str) -> u64 {
        let expr = format!(
            "(() => {{ const c = document.getElementById({canvas:?}); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
             for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }})()"
        );
        self.eval(page, &expr).as_u64().unwrap_or(0)
    }

    fn number(&mut self, page: &Page, expression: &str) -> f64 {
        let v = self.eval(page, expression);
        v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
    }
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
    let (mut chromium, devtools) = start_chromium(&profile.0);
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

//! Headless Chromium driven over the DevTools protocol (CDP), for the tests that check pages in a real
//! browser: the browser in a process group of its own (killed with its helpers when dropped), and a
//! [`Cdp`] connection (a WebSocket, spoken with wsloop's own blocking client) that opens pages,
//! evaluates scripts in them and waits, with a deadline, until a condition holds.
//!
//! Needs `/usr/bin/chromium` (Debian: `apt-get install chromium`; `WSLOOP_CHROMIUM=/path` points
//! elsewhere); without it [`start_chromium`] fails and says how to install it.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use wsloop::client::{connect, Client, ClientOptions, Error, Message};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The width of every page's viewport (and of its screenshots), in CSS pixels.
pub(crate) const WIDTH: u64 = 1280;

/// A child process started in a process group of its own; the whole group is killed when dropped
/// (Chromium's renderer and helper processes included), on success and on failure alike.
pub(crate) struct Group(pub(crate) Child);

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
    }

    /// Kills the whole group (if the leader still runs) and reaps the leader.
    pub(crate) fn kill(&mut self) {
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

/// Headless Chromium with a fresh profile and the switches `extra` (e.g. a certificate pin), and the
/// DevTools WebSocket URL it announced.
pub(crate) fn start_chromium(profile: &Path, extra: &[String]) -> (Group, String) {
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
            .args(extra)
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
pub(crate) struct Page {
    /// The name given to [`Cdp::open`], for messages.
    pub(crate) name: &'static str,
    /// The DevTools session id of the page.
    pub(crate) session: String,
}

/// A DevTools protocol connection to the browser (flat sessions: one socket for every page).
pub(crate) struct Cdp {
    /// The DevTools WebSocket.
    pub(crate) client: Client,
    next_id: u64,
    /// Script errors seen on any page: uncaught exceptions, console errors, error log entries.
    pub(crate) errors: Vec<String>,
    /// Everything any page logged (console calls, exceptions, log entries), as `page: text` lines.
    log: Vec<String>,
    /// Session id → page name, for error messages.
    names: Vec<(String, &'static str)>,
}

impl Cdp {
    /// Connects to the browser's DevTools WebSocket `url`.
    pub(crate) fn connect(url: &str) -> Self {
        let client = connect(url, ClientOptions::default()).unwrap_or_else(|e| panic!("DevTools {url}: {e}"));
        Self { client, next_id: 1, errors: Vec::new(), log: Vec::new(), names: Vec::new() }
    }

    fn page_name(&self, session: Option<&str>) -> &'static str {
        session.and_then(|s| self.names.iter().find(|(id, _)| id == s)).map_or("browser", |(_, n)| n)
    }

    /// Notes what a page logged, and the events that mean a page went wrong.
    fn event(&mut self, v: &Value) {
        let page = self.page_name(v["sessionId"].as_str());
        let p = &v["params"];
        let logged = match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> =
                    p["args"].as_array().into_iter().flatten().map(|a| a["value"].to_string()).collect();
                Some(format!("console.{}: {}", p["type"].as_str().unwrap_or("?"), args.join(" ")))
            }
            Some("Runtime.exceptionThrown") => Some(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") => Some(format!("log {}: {}", p["entry"]["level"], p["entry"]["text"])),
            _ => None,
        };
        if let Some(logged) = logged {
            self.log.push(format!("{page}: {logged}"));
        }
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
    pub(crate) fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
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
    pub(crate) fn pump(&mut self, d: Duration) {
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
    pub(crate) fn open(&mut self, name: &'static str, url: &str, height: u64) -> Page {
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

    /// Sends `page` to `url` and waits until it loaded; fails when the browser cannot open it (e.g. a
    /// refused certificate).
    pub(crate) fn navigate(&mut self, page: &Page, url: &str) {
        let result = self.call(Some(&page.session), "Page.navigate", json!({ "url": url }));
        assert!(result["errorText"].is_null(), "{}: cannot open {url}: {}", page.name, result["errorText"]);
        self.wait(page, &format!("{url} loaded"), "document.readyState === 'complete'");
    }

    /// Evaluates `expression` in the page; returns its value (JSON).
    pub(crate) fn eval(&mut self, page: &Page, expression: &str) -> Value {
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
    pub(crate) fn wait(&mut self, page: &Page, what: &str, expression: &str) -> Value {
        self.wait_within(page, Duration::from_secs(15), what, expression)
    }

    /// Polls `expression` until it is truthy or `limit` has passed; returns its value. On the deadline
    /// it fails with the page's text and everything the page logged.
    pub(crate) fn wait_within(&mut self, page: &Page, limit: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + limit;
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
            if Instant::now() >= deadline {
                let report = self.report(page);
                panic!("{}: waited {limit:?} for {what} ({expression})\n{report}", page.name);
            }
            self.pump(Duration::from_millis(100));
        }
    }

    /// What `page` shows (its URL and text) and what it logged, for a failure message.
    pub(crate) fn report(&mut self, page: &Page) -> String {
        let shown = self.eval(
            page,
            "JSON.stringify({ url: location.href, readyState: document.readyState, \
             text: document.body ? document.body.innerText : document.documentElement.outerHTML })",
        );
        let prefix = format!("{}: ", page.name);
        let logged: Vec<&str> = self.log.iter().filter_map(|l| l.strip_prefix(&prefix)).collect();
        format!("the page: {}\nwhat it logged:\n  {}", shown.as_str().unwrap_or("?"), logged.join("\n  "))
    }

    /// Clicks the centre of the element `selector`, as a mouse would.
    pub(crate) fn click(&mut self, page: &Page, selector: &str) {
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
    pub(crate) fn type_into(&mut self, page: &Page, selector: &str, text: &str, enter: bool) {
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
    pub(crate) fn screenshot(&mut self, page: &Page, path: &Path) {
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
    pub(crate) fn inked(&mut self, page: &Page, canvas: &str) -> u64 {
        let expr = format!(
            "(() => {{ const c = document.getElementById({canvas:?}); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
             for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }})()"
        );
        self.eval(page, &expr).as_u64().unwrap_or(0)
    }

    /// Evaluates `expression` as a number (a numeric string counts); NaN when it is neither.
    pub(crate) fn number(&mut self, page: &Page, expression: &str) -> f64 {
        let v = self.eval(page, expression);
        v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
    }
}

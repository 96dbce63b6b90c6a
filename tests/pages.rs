//! What `wsloop serve` and `wsloop bench` add for people to look at, checked without a browser: the
//! dashboard page and its WebSocket feed, the chat mode's publish and presence protocol, and the bench
//! report written with `--html`. (tests/browser.rs drives the same pages in headless Chromium.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wsloop::client::{connect, Client, ClientOptions, Error, Message};

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");

/// A `wsloop serve` on a free port of 127.0.0.1, killed when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--threads", "2"];
        args.extend_from_slice(extra);
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wsloop serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let addr = line
            .strip_prefix("wsloop serving on ws://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    fn ws(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        connect(&url, ClientOptions::default()).unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP GET: (status, head, body).
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

const WAIT: Duration = Duration::from_secs(5);

/// The next message, as JSON.
fn next_json(client: &mut Client) -> Value {
    match client.read_message(Some(WAIT)) {
        Ok(Message::Text(text)) => serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

/// Reads JSON messages until one satisfies `want` (within 5 s); returns it.
fn until(client: &mut Client, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let v = next_json(client);
        if want(&v) {
            return v;
        }
        seen.push(v);
    }
    panic!("no {what} within {WAIT:?}; saw {seen:#?}");
}

/// Asserts that nothing arrives for `quiet`.
fn silent(client: &mut Client, quiet: Duration) {
    match client.read_message(Some(quiet)) {
        Err(Error::Timeout(_)) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

fn names(members: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        members.as_array().expect("members").iter().map(|m| m["name"].as_str().expect("name").to_owned()).collect();
    names.sort();
    names
}

#[test]
fn the_dashboard_page_is_served_by_default_and_its_feed_pushes_samples_at_the_interval() {
    let serve = Serve::start(&["--dashboard-interval", "200ms"]);
    let (status, head, body) = get(&serve.addr, "/dashboard");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert!(head.contains("Content-Security-Policy: default-src 'none'"), "{head}");
    assert!(body.contains("<canvas") && body.contains("content=\"/dashboard/ws\""), "the dashboard page");
    assert!(!body.contains("http://") && !body.contains("https://"), "the page loads nothing from elsewhere");
    assert_eq!(get(&serve.addr, "/dashboard/").0, 200);

    let mut feed = serve.ws("/dashboard/ws");
    let hello = next_json(&mut feed);
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!((hello["reactors"].as_u64(), hello["interval_ms"].as_u64()), (Some(2), Some(200)), "{hello}");
    assert_eq!(hello["mode"], "echo");
    let first = next_json(&mut feed);
    assert_eq!(first["type"], "sample");
    assert_eq!(first["interval_s"], 0.0, "the first sample comes at once, without rates");

    // Load: one echo client, 200 messages.
    let mut echo = serve.ws("/anything");
    for i in 0..200 {
        echo.send_text(&format!("message {i}")).expect("send");
        assert!(matches!(echo.read_message(Some(WAIT)), Ok(Message::Text(_))));
    }
    let busy = until(&mut feed, "a sample with the echoes", |s| {
        s["totals"]["messages_received"].as_u64() >= Some(200)
            && s["rates"]["messages_received_per_second"].as_f64() > Some(0.0)
    });
    assert!(busy["totals"]["active_connections"].as_u64() >= Some(2), "feed and echo client: {busy}");
    assert!(busy["totals"]["messages_sent"].as_u64() >= Some(200), "{busy}");
    assert!(busy["rates"]["bytes_written_per_second"].as_f64() > Some(0.0), "{busy}");
    let reactors = busy["reactors"].as_array().expect("reactors");
    assert_eq!(reactors.len(), 2);
    let per_reactor: u64 = reactors.iter().map(|r| r["active_connections"].as_u64().unwrap()).sum();
    assert_eq!(Some(per_reactor), busy["totals"]["active_connections"].as_u64(), "the table adds up");

    // Pushed at the interval: five samples take about a second, never less (a handler timer does not
    // fire early); the upper bounds only catch a feed that stalls, with room for a loaded machine.
    let started = Instant::now();
    let mut uptimes = Vec::new();
    for _ in 0..5 {
        let s = next_json(&mut feed);
        assert_eq!(s["type"], "sample");
        uptimes.push(s["uptime_s"].as_f64().unwrap());
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(10), "5 samples in {took:?}");
    for pair in uptimes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((0.199..2.5).contains(&gap), "samples {gap} s apart: {uptimes:?}");
    }
}

#[test]
fn no_dashboard_turns_page_and_feed_off_and_the_path_can_move() {
    let off = Serve::start(&["--no-dashboard"]);
    assert_eq!(get(&off.addr, "/dashboard").0, 426, "without the dashboard, /dashboard is an echo route");
    let mut echo = off.ws("/dashboard/ws");
    echo.send_text("ping?").expect("send");
    assert!(matches!(echo.read_message(Some(WAIT)), Ok(Message::Text(t)) if t == "ping?"), "an echo, not a feed");

    let moved = Serve::start(&["--dashboard-path", "/ops/"]);
    assert_eq!(get(&moved.addr, "/ops").0, 200);
    assert_eq!(get(&moved.addr, "/dashboard").0, 426);
    let mut feed = moved.ws("/ops/ws");
    assert_eq!(next_json(&mut feed)["type"], "hello");

    let bad = Command::new(BIN).args(["serve", "--dashboard-path", "ops"]).output().expect("run");
    assert_eq!(bad.status.code(), Some(2), "a path without / is refused by the argument parser");
}

#[test]
fn chat_rooms_reach_every_member_and_track_who_is_present() {
    let serve = Serve::start(&["--mode", "chat", "--chat-max-text", "64"]);
    let mut alice = serve.ws("/chat/lobby?name=alice");
    let welcome = next_json(&mut alice);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!((welcome["room"].as_str(), welcome["you"]["name"].as_str()), (Some("lobby"), Some("alice")));
    assert_eq!(names(&welcome["members"]), ["alice"]);
    let alice_id = welcome["you"]["id"].as_str().unwrap().to_owned();
    let own_join = next_json(&mut alice);
    assert_eq!((own_join["type"].as_str(), own_join["member"]["name"].as_str()), (Some("join"), Some("alice")));

    let mut bob = serve.ws("/chat/lobby?name=bob");
    let bob_welcome = next_json(&mut bob);
    assert_eq!(names(&bob_welcome["members"]), ["alice", "bob"]);
    assert!(bob_welcome["version"].as_u64() > welcome["version"].as_u64(), "presence versions grow");
    let joined = until(&mut alice, "bob's join", |v| v["type"] == "join" && v["member"]["name"] == "bob");
    assert_eq!(joined["count"], 2);
    until(&mut bob, "bob's own join", |v| v["type"] == "join");

    // Another room is another topic.
    let mut carol = serve.ws("/chat/kitchen?name=carol");
    assert_eq!(names(&next_json(&mut carol)["members"]), ["carol"]);
    until(&mut carol, "carol's own join", |v| v["type"] == "join");

    // A text message reaches every member of the room, the sender included.
    bob.send_text("hello, lobby").expect("send");
    for member in [&mut alice, &mut bob] {
        let m = until(member, "bob's message", |v| v["type"] == "message");
        assert_eq!((m["from"]["name"].as_str(), m["text"].as_str()), (Some("bob"), Some("hello, lobby")), "{m}");
        assert!(m["ts"].as_u64() > Some(1_600_000_000_000), "{m}");
    }
    silent(&mut carol, Duration::from_millis(300));

    // Names are unique per room; a guest name is picked when none is given.
    let mut bob2 = serve.ws("/chat/lobby?name=bob");
    assert_eq!(next_json(&mut bob2)["you"]["name"], "bob-2");
    let mut guest = serve.ws("/chat/lobby");
    let guest_name = next_json(&mut guest)["you"]["name"].as_str().unwrap().to_owned();
    assert!(guest_name.starts_with("guest-"), "{guest_name}");
    drop((bob2, guest));

    // Errors go to the sender only.
    alice.send_binary(b"\x01\x02").expect("send");
    let error = until(&mut alice, "an error", |v| v["type"] == "error");
    assert!(error["error"].as_str().unwrap().contains("text"), "{error}");
    alice.send_text(&"x".repeat(65)).expect("send");
    let error = until(&mut alice, "an error", |v| v["type"] == "error");
    assert!(error["error"].as_str().unwrap().contains("64"), "{error}");

    // Leaving is announced to those who stay.
    bob.close(wsloop::proto::CloseCode::NORMAL, "bye").expect("close");
    let _ = bob.wait_for_close(Some(WAIT));
    let left = until(&mut alice, "bob's leave", |v| v["type"] == "leave" && v["member"]["name"] == "bob");
    assert_ne!(left["member"]["id"].as_str(), Some(alice_id.as_str()));
    assert!(left["version"].as_u64() > joined["version"].as_u64());
    // alice still chats; carol never heard any of it.
    alice.send_text("still here").expect("send");
    until(&mut alice, "alice's message", |v| v["type"] == "message" && v["text"] == "still here");
    silent(&mut carol, Duration::from_millis(200));

    // A bad room name is refused with 1008; every path outside /chat/ echoes.
    let mut bad = serve.ws("/chat/no%20spaces");
    match bad.read_message(Some(WAIT)) {
        Err(Error::Closed { code: Some(code), .. }) => assert_eq!(code.0, 1008),
        other => panic!("expected a 1008 close, got {other:?}"),
    }
    let mut echo = serve.ws("/echo");
    echo.send_text("plain").expect("send");
    assert!(matches!(echo.read_message(Some(WAIT)), Ok(Message::Text(t)) if t == "plain"));

    // The chat page answers plain GETs, in chat mode only.
    let (status, _, body) = get(&serve.addr, "/chat/lobby");
    assert_eq!(status, 200);
    assert!(body.contains("id=\"compose\"") && body.contains("id=\"members\""), "the chat page");
    assert_eq!(get(&serve.addr, "/chat").0, 200);
    let echo_mode = Serve::start(&[]);
    assert_eq!(get(&echo_mode.addr, "/chat/lobby").0, 426, "no chat page outside chat mode");
}

/// The JSON embedded in a bench report.
fn report_data(html: &str) -> Value {
    let start = html.find("<script type=\"application/json\" id=\"bench-data\">").expect("the data element");
    let rest = &html[start..];
    let json = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("the embedded data is not JSON ({e})"))
}

#[test]
fn bench_html_writes_a_self_contained_report_with_samples_and_percentiles() {
    let serve = Serve::start(&["--no-dashboard"]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("report.html");
    let url = format!("ws://{}/", serve.addr);
    let out = Command::new(BIN)
        .args([
            "bench",
            &url,
            "-c",
            "4",
            "-s",
            "32",
            "-d",
            "2500ms",
            "--warmup",
            "500ms",
            "--json",
            "-H",
            "Authorization: Bearer s3cret",
        ])
        .arg("--html")
        .arg(&file)
        .output()
        .expect("run bench");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("--json output");
    let html = std::fs::read_to_string(&file).expect("the report");
    let _ = std::fs::remove_dir_all(&dir);

    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script src"), "self-contained");
    assert!(!html.contains("s3cret"), "header values are not written to the report");
    let data = report_data(&html);
    assert_eq!(data["ok"], true);
    assert_eq!(data["result"], printed, "the report holds the same result as --json");
    let config = &data["config"];
    assert_eq!((config["connections"].as_u64(), config["size"].as_u64()), (Some(4), Some(32)));
    assert_eq!((config["duration_seconds"].as_f64(), config["warmup_seconds"].as_f64()), (Some(2.5), Some(0.5)));
    assert_eq!(config["header_names"], serde_json::json!(["Authorization"]));

    // Throughput over time: a sample about every second, adding up to what was received.
    let samples = data["samples"].as_array().expect("samples");
    assert!(samples.len() >= 2, "{samples:?}");
    let last = samples.last().unwrap();
    assert_eq!(last["received"], printed["messages"]["received"], "the last sample is the end of the run");
    assert!(samples.iter().any(|s| s["received_per_second"].as_f64() > Some(0.0)));
    for pair in samples.windows(2) {
        assert!(pair[1]["t"].as_f64() > pair[0]["t"].as_f64());
        assert!(pair[1]["received"].as_u64() >= pair[0]["received"].as_u64());
    }

    // The latency distribution: percentiles and values both grow, up to the maximum.
    let curve = data["latency_percentiles_us"].as_array().expect("percentiles");
    assert!(curve.len() >= 10, "{curve:?}");
    for pair in curve.windows(2) {
        assert!(pair[1][0].as_f64() >= pair[0][0].as_f64() && pair[1][1].as_u64() >= pair[0][1].as_u64(), "{pair:?}");
    }
    let (top_pct, top_value) = (curve.last().unwrap()[0].as_f64().unwrap(), curve.last().unwrap()[1].as_u64().unwrap());
    assert_eq!(top_pct, 100.0);
    let max = printed["latency_us"]["max"].as_u64().unwrap();
    assert!(top_value >= max && top_value <= max + max / 100 + 1, "curve ends at {top_value}, max {max}");
    assert!(!data["handshake_percentiles_us"].as_array().unwrap().is_empty());

    let unwritable = Command::new(BIN)
        .args(["bench", &url, "-c", "1", "-n", "10", "-q", "--html", "/nonexistent-dir/report.html"])
        .output()
        .expect("run bench");
    assert!(!unwritable.status.success());
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("cannot write the HTML report"));
}

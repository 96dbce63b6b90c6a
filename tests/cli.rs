//! The `wsloop` binary, spawned as users and scripts run it: `serve`, `bench`, `client`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");

/// The proxy peers of tests/proxy (tinyproxy, danted), for the client's and bench's proxy options.
#[path = "proxy/peers.rs"]
#[allow(dead_code)]
mod peers;

/// The proxy variables `client` and `bench` read; cleared for every run, so the machine's own settings
/// never route a test through a proxy.
const PROXY_VARS: [&str; 12] = [
    "ws_proxy",
    "WS_PROXY",
    "wss_proxy",
    "WSS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

fn wsloop(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "warn");
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Waits up to `timeout` for the child to exit.
fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// A `wsloop serve` on a free port, killed when dropped.
struct Serve {
    child: Child,
    stdout: BufReader<ChildStdout>,
    first_line: String,
    url: String,
}

impl Serve {
    fn start(extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--threads", "1"];
        args.extend_from_slice(extra);
        let mut child = wsloop(&args).stdout(Stdio::piped()).spawn().expect("spawn wsloop serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).expect("read the first line");
        let addr = first_line
            .strip_prefix("wsloop serving on ws://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {first_line:?}"))
            .to_owned();
        Self { child, stdout, first_line, url: format!("ws://{addr}/") }
    }

    fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read a line");
        line
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion (with stdin data) within a timeout: (status, stdout, stderr).
fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_for(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("timed out: {cmd:?}\nstderr: {}", err_reader.join().unwrap_or_default());
    };
    (status, out_reader.join().expect("stdout reader"), err_reader.join().expect("stderr reader"))
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn serve_prints_its_url_and_exits_cleanly_on_sigterm() {
    let mut serve = Serve::start(&[]);
    assert!(serve.first_line.starts_with("wsloop serving on ws://127.0.0.1:"), "{}", serve.first_line);
    assert!(serve.first_line.contains("(1 reactor threads)"), "{}", serve.first_line);
    signal(&serve.child, "TERM");
    let status = wait_for(&mut serve.child, Duration::from_secs(10)).expect("serve exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_exits_cleanly_on_sigint_with_a_client_connected() {
    let mut serve = Serve::start(&[]);
    let mut client = wsloop(&["client", &serve.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client");
    std::thread::sleep(Duration::from_millis(300));
    signal(&serve.child, "INT");
    let status = wait_for(&mut serve.child, Duration::from_secs(10)).expect("serve exits after SIGINT");
    assert!(status.success(), "{status:?}");
    // The server closed the client with 1001 (going away): a normal end for the client.
    let client_status = wait_for(&mut client, Duration::from_secs(10)).expect("client exits");
    assert_eq!(client_status.code(), Some(0));
}

#[test]
fn serve_stats_prints_a_line_every_second() {
    let mut serve = Serve::start(&["--stats"]);
    let started = Instant::now();
    for _ in 0..2 {
        let line = serve.next_line();
        assert!(line.starts_with("conns 0 | in 0 msg/s"), "{line:?}");
        assert!(line.contains("| out ") && line.contains("| errors 0"), "{line:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1500), "two lines came too fast");
}

#[test]
fn serve_stats_counts_traffic() {
    let mut serve = Serve::start(&["--stats"]);
    let bench = wsloop(&["bench", &serve.url, "-c", "2", "-d", "2500ms", "--quiet"]);
    let bench = std::thread::spawn(move || run(bench, b"", Duration::from_secs(30)));
    let busy =
        (0..6).map(|_| serve.next_line()).find(|line| line.starts_with("conns 2 ") && !line.contains(" in 0 msg/s"));
    assert!(busy.is_some(), "no --stats line showed the bench's traffic");
    let (status, _, stderr) = bench.join().expect("bench thread");
    assert!(status.success(), "{stderr}");
}

#[test]
fn bench_json_counts_every_message() {
    let serve = Serve::start(&[]);
    let (status, stdout, stderr) =
        run(wsloop(&["bench", &serve.url, "-c", "10", "-n", "1000", "--json"]), b"", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["messages"]["sent"], 1000, "{v}");
    assert_eq!(v["messages"]["received"], 1000, "{v}");
    assert_eq!(v["connections"]["opened"], 10, "{v}");
    assert_eq!(v["connections"]["failed"], 0, "{v}");
    assert_eq!(v["latency_us"]["count"], 1000, "{v}");
    assert_eq!(v["closes"]["1000"], 10, "{v}");
    assert_eq!(v["errors"]["length_or_type_mismatch"], 0, "{v}");
    assert_eq!(v["errors"]["unanswered"], 0, "{v}");
    assert!(v["measured"]["messages_per_second"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert!(v["latency_us"]["p50"].as_u64().is_some(), "{v}");
}

#[test]
fn bench_pipelines_text_messages() {
    let serve = Serve::start(&[]);
    let args = ["bench", &serve.url, "-c", "4", "-n", "1001", "-p", "8", "-s", "300", "--text", "-t", "2", "--json"];
    let (status, stdout, stderr) = run(wsloop(&args), b"", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["messages"]["kind"], "text", "{v}");
    assert_eq!(v["messages"]["sent"], 1001, "{v}");
    assert_eq!(v["messages"]["received"], 1001, "{v}");
    assert_eq!(v["threads"], 2, "{v}");
}

#[test]
fn bench_human_output_for_a_timed_run() {
    let serve = Serve::start(&[]);
    let args = ["bench", &serve.url, "-c", "3", "-d", "600ms", "--warmup", "200ms", "-p", "4", "--ramp", "100/s"];
    let (status, stdout, stderr) = run(wsloop(&args), b"", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    for needle in
        ["connections: 3 opened, 0 failed", "throughput:", "latency:     p50", "closes [1000×3]", "bench cpu:"]
    {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // With --json or --quiet, and when stderr is not a terminal, there is no progress bar.
    assert!(!stderr.contains('%'), "{stderr}");
}

#[test]
fn bench_rate_limits_the_send_rate() {
    let serve = Serve::start(&[]);
    let args = ["bench", &serve.url, "-c", "2", "-n", "100", "--rate", "200/s", "--json"];
    let started = Instant::now();
    let (status, stdout, stderr) = run(wsloop(&args), b"", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert_eq!(json(&stdout)["messages"]["received"], 100);
    // 100 messages at 200/s take about half a second.
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    // Sends wait for their slot on a handler timer, not by sleeping the reactor: an echo is read when it
    // arrives, so the median latency is a loopback round trip, far below the 5 ms pacing interval.
    let p50 = json(&stdout)["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 < 4_000, "p50 {p50} us");
}

#[test]
fn bench_fails_when_the_server_goes_away_mid_run() {
    let serve = Serve::start(&[]);
    let mut bench = wsloop(&["bench", &serve.url, "-c", "3", "-d", "20s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bench");
    std::thread::sleep(Duration::from_millis(700));
    signal(&serve.child, "TERM");
    let status = wait_for(&mut bench, Duration::from_secs(15)).expect("bench ends when the server closes");
    assert_eq!(status.code(), Some(1));
    let mut stdout = String::new();
    bench.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    let v = json(&stdout);
    assert_eq!(v["closes"]["1001"], 3, "{v}");
    assert_eq!(v["errors"]["abnormal_closes"], 3, "{v}");
}

#[test]
fn bench_reports_connection_failures() {
    // A port nobody listens on: take a free one and close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let url = format!("ws://127.0.0.1:{port}/");
    let (status, stdout, _) =
        run(wsloop(&["bench", &url, "-c", "3", "-n", "10", "--json"]), b"", Duration::from_secs(30));
    assert!(!status.success());
    let v = json(&stdout);
    assert_eq!(v["connections"]["failed"], 3, "{v}");
    assert_eq!(v["errors"]["connect"]["tcp"], 3, "{v}");
}

#[test]
fn client_sends_stdin_lines_prints_echoes_and_exits_0() {
    let serve = Serve::start(&[]);
    let (status, stdout, stderr) =
        run(wsloop(&["client", &serve.url]), b"hello\nworld\r\n\nlast line without newline", Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hello\nworld\n\nlast line without newline\n");
}

#[test]
fn client_binary_messages_print_as_hex_or_raw() {
    let serve = Serve::start(&[]);
    let (status, stdout, _) = run(wsloop(&["client", "--binary", &serve.url]), b"AB\n\x01\n", Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, "4142\n01\n");
    let (status, stdout, _) =
        run(wsloop(&["client", "--binary", "--raw", &serve.url]), b"AB\nCD\n", Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, "ABCD");
}

#[test]
fn client_offers_protocols_and_headers() {
    let serve = Serve::start(&["--protocol", "chat"]);
    let args = ["client", "-v", "--protocol", "other", "--protocol", "chat", "-H", "X-Test: 1", &serve.url];
    let (status, stdout, stderr) = run(wsloop(&args), b"hi\n", Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert!(stderr.contains("subprotocol chat"), "{stderr}");
    assert!(stderr.contains("closed with 1000"), "{stderr}");
}

#[test]
fn client_exits_1_when_it_cannot_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    for url in [format!("ws://127.0.0.1:{port}/"), "not a url".to_owned(), "http://127.0.0.1/".to_owned()] {
        let (status, _, stderr) = run(wsloop(&["client", &url]), b"", Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.starts_with("wsloop client: "), "{stderr}");
    }
    let url = format!("ws://127.0.0.1:{port}/");
    let (status, _, stderr) = run(wsloop(&["client", "-H", "no colon", &url]), b"", Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expected 'Name: value'"), "{stderr}");
}

#[test]
fn client_exits_2_when_the_server_fails_the_connection() {
    // The server refuses a message over 8 bytes with 1009 (message too big).
    let serve = Serve::start(&["--max-message-size", "8", "--max-frame-size", "8"]);
    let (status, stdout, stderr) =
        run(wsloop(&["client", &serve.url]), b"ok\nthis line is too long\n", Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stdout, "ok\n");
    assert!(stderr.contains("1009"), "{stderr}");
}

/// Sends one plain HTTP request to `addr` and returns the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn serve_answers_healthz_and_metrics_on_the_same_port_by_default() {
    let serve = Serve::start(&[]);
    let addr = serve.url.trim_start_matches("ws://").trim_end_matches('/').to_owned();
    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("# TYPE wsloop_connections_accepted_total counter"), "{metrics}");
    assert!(http_get(&addr, "/other").starts_with("HTTP/1.1 426"), "every path is a WebSocket route in serve");
    let off = Serve::start(&["--metrics-path", "", "--health-path", ""]);
    let addr = off.url.trim_start_matches("ws://").trim_end_matches('/').to_owned();
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 426"));
}

#[test]
fn bench_spreads_connections_over_source_addresses() {
    let serve = Serve::start(&[]);
    let (status, stdout, stderr) = run(
        wsloop(&[
            "bench",
            &serve.url,
            "-c",
            "4",
            "-n",
            "100",
            "--json",
            "--source-ip",
            "127.0.0.2",
            "--source-ip",
            "127.0.0.3",
        ]),
        b"",
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["connections"]["opened"], 4, "{v}");
    assert_eq!(v["messages"]["received"], 100, "{v}");
}

#[test]
fn client_goes_through_proxy_flag_and_environment_as_curl_decides() {
    let serve = Serve::start(&[]);
    let proxy = peers::ProxyProcess::tinyproxy(None);
    let port = serve.url.trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    let connects = || proxy.log().matches(&format!("CONNECT 127.0.0.1:{port} ")).count();
    let echo = |mut cmd: Command| {
        cmd.arg(&serve.url);
        let (status, stdout, stderr) = run(cmd, b"via\n", Duration::from_secs(20));
        assert!(status.success(), "{stderr}");
        assert_eq!(stdout, "via\n");
        stderr
    };
    let stderr = echo(wsloop(&["client", "-v", "--proxy", &proxy.url("http")]));
    assert!(stderr.contains(&format!("through proxy {}", proxy.url("http"))), "{stderr}");
    assert!(peers::eventually(peers::WAIT, || connects() == 1), "{}", proxy.log());
    // http_proxy (lowercase) is read for ws://; NO_PROXY and --no-proxy bypass it; HTTP_PROXY is not read.
    echo({
        let mut cmd = wsloop(&["client"]);
        cmd.env("http_proxy", proxy.url("http"));
        cmd
    });
    assert!(peers::eventually(peers::WAIT, || connects() == 2), "{}", proxy.log());
    echo({
        let mut cmd = wsloop(&["client"]);
        cmd.env("http_proxy", proxy.url("http")).env("NO_PROXY", "localhost,127.0.0.1");
        cmd
    });
    echo({
        let mut cmd = wsloop(&["client", "--no-proxy"]);
        cmd.env("ALL_PROXY", proxy.url("http"));
        cmd
    });
    echo({
        let mut cmd = wsloop(&["client"]);
        cmd.env("HTTP_PROXY", proxy.url("http"));
        cmd
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(connects(), 2, "NO_PROXY, --no-proxy and HTTP_PROXY went around the proxy: {}", proxy.log());
}

#[test]
fn client_exits_1_naming_a_proxy_it_cannot_reach() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy = format!("socks5h://{nobody}");
    let (status, _, stderr) =
        run(wsloop(&["client", "--proxy", &proxy, "ws://example.invalid/"]), b"", Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("proxy {proxy}: cannot connect to the proxy")), "{stderr}");
    let (status, _, stderr) =
        run(wsloop(&["client", "--proxy", "socks4://h", "ws://example.invalid/"]), b"", Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unsupported proxy scheme"), "{stderr}");
}

#[test]
fn bench_goes_through_a_socks5_proxy() {
    let serve = Serve::start(&[]);
    let dante = peers::ProxyProcess::dante();
    let args = ["bench", &serve.url, "-c", "4", "-n", "400", "--json", "--proxy", &dante.url("socks5h")];
    let (status, stdout, stderr) = run(wsloop(&args), b"", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["messages"]["received"], 400, "{v}");
    assert_eq!(v["connections"]["opened"], 4, "{v}");
    let port = serve.url.trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    assert!(
        peers::eventually(peers::WAIT, || dante.log().matches(&format!("127.0.0.1.{port}")).count() >= 4),
        "{}",
        dante.log()
    );
}

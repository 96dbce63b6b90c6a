//! Clients through proxies: a real HTTP proxy (Debian's `tinyproxy`, with and without basic auth) and a
//! real SOCKS5 server (Debian's `danted`, no authentication, local and remote DNS), an in-test SOCKS5
//! relay for username/password (danted takes those from system accounts, which a test cannot make), and
//! fake proxies for the failures: refusal, garbage, silence, nothing listening. Every client style goes
//! through them: pull, callback, pool, reconnecting, and the in-loop clients (`Handle::connect`,
//! `Handle::connect_url`, `client::connect_async`).
//!
//! Needs `/usr/bin/tinyproxy` and `/usr/sbin/danted` (or `WSLOOP_TINYPROXY`, `WSLOOP_DANTED`); `.ci/run`
//! installs them when missing.

mod peers;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use peers::{echo_server, eventually, fake_proxy, ProxyProcess, Socks5Relay, WAIT};
use wsloop::client::{
    connect, connect_async, connect_with_callback, ClientOptions, Error, Message, Pool, PoolOptions, Proxy, ProxyError,
    ReconnectPolicy, ReconnectingClient,
};
use wsloop::metrics::TcpPhase;
use wsloop::server::{self, ConnectError, ConnectOptions, Ctx, Handler, Server};

const SEC: Duration = Duration::from_secs(1);

fn through(proxy: &str) -> ClientOptions {
    ClientOptions::default().connect_timeout(5 * SEC).proxy(Proxy::parse(proxy).unwrap())
}

/// Connects to `url` with `options`, sends one text and expects it echoed.
fn echo(url: &str, options: ClientOptions) -> Result<(), Error> {
    let mut client = connect(url, options)?;
    client.send_text("through the tunnel")?;
    assert_eq!(client.read_message(Some(5 * SEC))?, Message::Text("through the tunnel".into()));
    client.close_and_wait(wsloop::proto::CloseCode::NORMAL, "", Some(5 * SEC)).map(drop)
}

fn proxy_error(result: Result<(), Error>) -> (String, ProxyError) {
    match result {
        Err(Error::Proxy { proxy, kind }) => (proxy, kind),
        other => panic!("expected Error::Proxy, got {other:?}"),
    }
}

#[test]
fn tinyproxy_tunnels_the_pull_and_callback_clients_and_logs_the_connect() {
    let server = echo_server();
    let proxy = ProxyProcess::tinyproxy(None);
    let port = server.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/x");
    echo(&url, through(&proxy.url("http"))).unwrap();
    // The proxy resolves names: the CONNECT carries `localhost`, not an address. The proxy's own name is
    // resolved by the client (each of its addresses tried in turn).
    echo(&format!("ws://localhost:{port}/"), through(&format!("http://localhost:{}", proxy.port))).unwrap();
    let (tx, rx) = mpsc::channel();
    let options = through(&proxy.url("http")).on_message(move |_, m| {
        let _ = tx.send(m);
    });
    let client = connect_with_callback(&url, options).unwrap();
    client.send_text("callback").unwrap();
    assert_eq!(rx.recv_timeout(5 * SEC).unwrap(), Message::Text("callback".into()));
    drop(client);
    assert!(
        eventually(WAIT, || proxy.log().contains(&format!("CONNECT 127.0.0.1:{port} "))
            && proxy.log().contains(&format!("CONNECT localhost:{port} "))),
        "tinyproxy's log shows no CONNECT to the server: {}",
        proxy.log()
    );
}

#[test]
fn tinyproxy_basic_auth_lets_the_right_credentials_through_and_refuses_others() {
    let server = echo_server();
    let proxy = ProxyProcess::tinyproxy(Some(("alice", "s3cret")));
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    echo(&url, through(&format!("http://alice:s3cret@127.0.0.1:{}", proxy.port))).unwrap();
    let (named, kind) = proxy_error(echo(&url, through(&format!("http://alice:wrong@127.0.0.1:{}", proxy.port))));
    assert_eq!(named, proxy.url("http"), "the error names the proxy, without the credentials");
    // tinyproxy answers wrong credentials with 401, missing ones with 407.
    assert!(matches!(kind, ProxyError::Rejected { status: 401, .. }), "{kind:?}");
    assert!(kind.to_string().contains("wants authentication"), "{kind}");
    let (_, kind) = proxy_error(echo(&url, through(&proxy.url("http"))));
    assert!(matches!(kind, ProxyError::Rejected { status: 407, .. }), "{kind:?}");
}

#[test]
fn tinyproxy_that_cannot_reach_the_server_is_a_refusal() {
    let proxy = ProxyProcess::tinyproxy(None);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (_, kind) = proxy_error(echo(&format!("ws://{closed}/"), through(&proxy.url("http"))));
    assert!(matches!(kind, ProxyError::Rejected { status, .. } if status >= 500), "{kind:?}");
}

#[test]
fn dante_tunnels_with_local_and_remote_dns() {
    let server = echo_server();
    let proxy = ProxyProcess::dante();
    let port = server.local_addr().port();
    echo(&format!("ws://127.0.0.1:{port}/"), through(&proxy.url("socks5"))).unwrap();
    echo(&format!("ws://localhost:{port}/"), through(&proxy.url("socks5h"))).unwrap();
    assert!(
        eventually(WAIT, || proxy.log().matches(&format!("127.0.0.1.{port}")).count() >= 2),
        "danted's log shows no two connects to the server: {}",
        proxy.log()
    );
}

#[test]
fn socks5_user_password_against_a_relay_that_checks_them_and_remote_dns_sends_the_name() {
    let server = echo_server();
    let relay = Socks5Relay::start("bob", "pa:ss");
    let port = server.local_addr().port();
    echo(&format!("ws://localhost:{port}/"), through(&relay.url("socks5h", "bob", "pa%3Ass"))).unwrap();
    echo(&format!("ws://localhost:{port}/"), through(&relay.url("socks5", "bob", "pa%3Ass"))).unwrap();
    let seen = relay.requests.lock().unwrap().clone();
    assert_eq!(seen[0].atyp, 3, "socks5h sends the name: {seen:?}");
    assert_eq!(seen[0].target, format!("localhost:{port}"));
    assert!(matches!(seen[1].atyp, 1 | 4), "socks5 sends an address the client resolved: {seen:?}");
    let (_, kind) = proxy_error(echo(&format!("ws://localhost:{port}/"), through(&relay.url("socks5h", "bob", "no"))));
    assert!(matches!(kind, ProxyError::AuthFailed), "{kind:?}");
    let without = format!("socks5h://{}", relay.addr);
    let (_, kind) = proxy_error(echo(&format!("ws://localhost:{port}/"), through(&without)));
    assert!(matches!(kind, ProxyError::NoAcceptableAuth), "{kind:?}");
}

#[test]
fn refusals_garbage_silence_and_a_dead_proxy_are_typed_errors_naming_the_proxy() {
    let url = "ws://127.0.0.1:9/";
    let http_refuses = fake_proxy(Some(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
    let (named, kind) = proxy_error(echo(url, through(&format!("http://{http_refuses}"))));
    assert_eq!(named, format!("http://{http_refuses}"));
    assert!(matches!(kind, ProxyError::Rejected { status: 403, .. }), "{kind:?}");

    let socks_refuses = fake_proxy(Some(&[5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]));
    let (_, kind) = proxy_error(echo(url, through(&format!("socks5://{socks_refuses}"))));
    assert!(matches!(kind, ProxyError::Socks5Failure { code: 2 }), "{kind:?}");

    let garbage = fake_proxy(Some(b"SSH-2.0-OpenSSH_9.2p1\r\n"));
    let (_, kind) = proxy_error(echo(url, through(&format!("http://{garbage}"))));
    assert!(matches!(kind, ProxyError::Malformed(_)), "{kind:?}");
    let (_, kind) = proxy_error(echo(url, through(&format!("socks5://{garbage}"))));
    assert!(matches!(kind, ProxyError::Malformed(_)), "{kind:?}");

    let hangs_up = fake_proxy(Some(b""));
    let (_, kind) = proxy_error(echo(url, through(&format!("http://{hangs_up}"))));
    assert!(matches!(kind, ProxyError::Closed), "{kind:?}");

    let silent = fake_proxy(None);
    let started = Instant::now();
    let options = through(&format!("socks5h://{silent}")).connect_timeout(Duration::from_millis(300));
    let (_, kind) = proxy_error(echo(url, options));
    assert!(matches!(kind, ProxyError::Timeout), "{kind:?}");
    assert!(started.elapsed() < 3 * SEC, "the connect timeout bounds the proxy's handshake: {:?}", started.elapsed());

    let (named, kind) = proxy_error(echo(url, through("socks5h://no-such-proxy.invalid:1080")));
    assert_eq!(named, "socks5h://no-such-proxy.invalid:1080");
    // Without a reachable DNS server the lookup may instead run out of time.
    assert!(matches!(kind, ProxyError::Resolve(_) | ProxyError::Timeout), "{kind:?}");

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (_, kind) = proxy_error(echo(url, through(&format!("http://{nobody}"))));
    assert!(matches!(kind, ProxyError::Connect(_)), "{kind:?}");
    let message = proxy_error(echo(url, through(&format!("http://{nobody}")))).1.to_string();
    assert!(message.contains("cannot connect to the proxy"), "{message}");
}

#[test]
fn the_pool_and_the_reconnecting_client_go_through_the_proxy() {
    let server = echo_server();
    let proxy = ProxyProcess::dante();
    let port = server.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let pool = Pool::new(PoolOptions::default().client(through(&proxy.url("socks5"))));
    let mut lease = pool.acquire(&url, Some(5 * SEC)).unwrap();
    lease.send_text("pooled").unwrap();
    assert_eq!(lease.read_message(Some(5 * SEC)).unwrap(), Message::Text("pooled".into()));
    drop(lease);
    pool.close_pool();

    let mut client =
        ReconnectingClient::connect(&url, through(&proxy.url("socks5")), ReconnectPolicy::default(), ()).unwrap();
    client.send_text("again").unwrap();
    assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Text("again".into()));
    assert!(
        eventually(WAIT, || proxy.log().matches(&format!("127.0.0.1.{port}")).count() >= 2),
        "danted's log shows the pool's and the reconnecting client's connects: {}",
        proxy.log()
    );
}

/// An in-loop client handler: sends "in-loop" on open, reports the echo or the failure.
struct InLoop(mpsc::Sender<Result<String, String>>);

impl Handler for InLoop {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_text("in-loop");
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        if let server::Message::Text(t) = message {
            let _ = self.0.send(Ok(t.to_owned()));
        }
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        let what = match error {
            ConnectError::Client(Error::Proxy { proxy, kind: ProxyError::Timeout }) => format!("{proxy} timeout"),
            ConnectError::Client(Error::Proxy { proxy, kind: ProxyError::Rejected { status, .. } }) => {
                format!("{proxy} {status}")
            }
            ConnectError::Client(Error::Proxy { proxy, kind: ProxyError::Connect(_) }) => format!("{proxy} connect"),
            ConnectError::Client(Error::Proxy { proxy, kind: ProxyError::Closed }) => format!("{proxy} closed"),
            ConnectError::Client(Error::Proxy { proxy, kind: ProxyError::Malformed(_) }) => {
                format!("{proxy} garbage")
            }
            other => format!("other {other:?}"),
        };
        // Where the failure was seen: the reactor ran the proxy handshake, or a helper thread did.
        let on = match std::thread::current().name() {
            Some(name) if name.starts_with("wsloop-reactor") => "reactor",
            Some("wsloop-connect") => "helper",
            other => panic!("on_connect_error on thread {other:?}"),
        };
        let _ = self.0.send(Err(format!("{what} on {on}")));
    }
}

fn in_loop() -> (InLoop, mpsc::Receiver<Result<String, String>>) {
    let (tx, rx) = mpsc::channel();
    (InLoop(tx), rx)
}

fn via(proxy: &str, timeout: Duration) -> ConnectOptions {
    ConnectOptions { timeout, proxy: Some(Proxy::parse(proxy).unwrap()), ..ConnectOptions::default() }
}

#[test]
fn in_loop_clients_go_through_the_proxies_and_report_their_failures() {
    let server = echo_server();
    let port = server.local_addr().port();
    let engine =
        Server::new(server::Config { threads: 1, ..server::Config::default() }).start_without_listeners().unwrap();
    let handle = engine.handle();

    // Handle::connect to an address, through tinyproxy.
    let tinyproxy = ProxyProcess::tinyproxy(None);
    let (handler, seen) = in_loop();
    handle.connect(server.local_addr(), "127.0.0.1", "/", via(&tinyproxy.url("http"), 5 * SEC), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Ok("in-loop".into()));
    assert!(
        eventually(WAIT, || tinyproxy.log().contains(&format!("CONNECT 127.0.0.1:{port} "))),
        "{}",
        tinyproxy.log()
    );
    // The reactor dials the proxy itself, so a source address applies.
    let (handler, seen) = in_loop();
    let from =
        ConnectOptions { local_addr: Some("127.0.0.2:0".parse().unwrap()), ..via(&tinyproxy.url("http"), 5 * SEC) };
    handle.connect(server.local_addr(), "127.0.0.1", "/", from, handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Ok("in-loop".into()));
    assert!(eventually(WAIT, || tinyproxy.log().contains("): 127.0.0.2")), "{}", tinyproxy.log());

    // connect_async by name through a SOCKS5 relay with credentials: the name goes to the proxy.
    let relay = Socks5Relay::start("carol", "pw");
    let (handler, seen) = in_loop();
    let url = format!("ws://localhost:{port}/");
    connect_async(&url, via(&relay.url("socks5h", "carol", "pw"), 5 * SEC), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Ok("in-loop".into()));
    assert_eq!(relay.requests.lock().unwrap()[0].target, format!("localhost:{port}"));

    // A proxy that refuses, and one that says nothing: typed errors naming it, within the timeout.
    let refuses = fake_proxy(Some(b"HTTP/1.1 403 Forbidden\r\n\r\n"));
    let (handler, seen) = in_loop();
    handle.connect_url(&url, via(&format!("http://{refuses}"), 5 * SEC), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Err(format!("http://{refuses} 403 on reactor")));
    let silent = fake_proxy(None);
    let (handler, seen) = in_loop();
    let started = Instant::now();
    handle.connect_url(&url, via(&format!("socks5h://{silent}"), Duration::from_millis(300)), handler);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Err(format!("socks5h://{silent} timeout on reactor")));
    assert!(started.elapsed() < 3 * SEC, "{:?}", started.elapsed());
}

/// A proxy given by address runs its handshake in the loop (no helper thread: the reactor maps TCP,
/// timeout and end-of-stream failures to the proxy); one given by name, or `socks5://` to a name, goes
/// through a helper thread. Both report the same errors.
#[test]
fn in_loop_proxy_failures_are_the_same_in_the_loop_and_on_the_helper_thread() {
    let server = echo_server();
    let port = server.local_addr().port();
    let engine =
        Server::new(server::Config { threads: 1, ..server::Config::default() }).start_without_listeners().unwrap();
    let handle = engine.handle();
    let url = format!("ws://127.0.0.1:{port}/");
    let expect = |proxy: String, want: String| {
        let (handler, seen) = in_loop();
        handle.connect_url(&url, via(&proxy, 5 * SEC), handler);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), Err(want), "through {proxy}");
    };
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hangs_up = fake_proxy(Some(b""));
    let garbage = fake_proxy(Some(b"SSH-2.0-OpenSSH_9.2p1\r\n"));
    for (addr, what) in [(nobody, "connect"), (hangs_up, "closed"), (garbage, "garbage")] {
        let port = addr.port();
        // In the loop: the proxy by address.
        expect(format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{port} {what} on reactor"));
        expect(format!("socks5h://127.0.0.1:{port}"), format!("socks5h://127.0.0.1:{port} {what} on reactor"));
        // On the helper thread: the proxy by name.
        expect(format!("http://localhost:{port}"), format!("http://localhost:{port} {what} on helper"));
    }
    // Every failed connection is gone from the engine's gauges (the proxy's socket is closed).
    let held = || {
        let m = handle.metrics();
        [TcpPhase::Handshake, TcpPhase::Http, TcpPhase::Open, TcpPhase::Closing].map(|p| m.tcp_connections_in(p))
    };
    assert!(eventually(WAIT, || held() == [0; 4]), "{:?}", held());
    // Both paths open real tunnels: danted by address (in the loop) and by name (helper thread), with a
    // socks5:// target name the client resolves (helper thread).
    let dante = ProxyProcess::dante();
    for (proxy, target) in [
        (dante.url("socks5h"), format!("ws://localhost:{port}/")),
        (format!("socks5h://localhost:{}", dante.port), format!("ws://localhost:{port}/")),
        (dante.url("socks5"), format!("ws://localhost:{port}/")),
    ] {
        let (handler, seen) = in_loop();
        handle.connect_url(&target, via(&proxy, 5 * SEC), handler);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), Ok("in-loop".into()), "through {proxy}");
    }
}

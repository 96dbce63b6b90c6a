//! Abuse limits over real sockets on 127.0.0.1: the global connection cap (503), the per-IP caps on
//! open connections and on handshakes per second (429), and the per-connection message and byte rates
//! under both policies (pause: nothing lost; close: 1008). Each refusal carries its status or code, bumps
//! its own counter and leaves the other counters and connections alone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wsloop::metrics::MetricsSnapshot;
use wsloop::server::{Config, Ctx, Handler, Message, RateLimit, RateLimitPolicy, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn start(mut config: Config) -> RunningServer {
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.close_timeout = Duration::from_millis(300);
    config.metrics_path = Some("/metrics".into());
    config.io_uring = io_uring();
    let mut server = Server::new(config);
    server.register_handler("*", |_| Echo);
    start_server(server)
}

/// The refusal counters, in a fixed order, to check that exactly one moved.
fn refusals(m: &MetricsSnapshot) -> [u64; 5] {
    [
        m.connections_refused,
        m.connections_refused_per_ip,
        m.handshakes_refused_per_ip,
        m.rate_limit_pauses,
        m.rate_limit_closes,
    ]
}

fn echo_works(client: &mut TestClient, text: &str) {
    client.send_text(text);
    assert_eq!(client.recv_ok(), Got::Text(text.into()));
}

#[test]
fn the_global_cap_answers_503_and_counts_only_connections_refused() {
    let server = start(Config { threads: 1, max_connections: 1, ..Config::default() });
    let handle = server.handle();
    let mut first = TestClient::connect(server.local_addr(), "/");
    let answer = raw_request(server.local_addr(), &upgrade_request("/", ""));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection limit"), "{answer}");
    assert_eq!(refusals(&handle.metrics()), [1, 0, 0, 0, 0]);
    echo_works(&mut first, "still served");
    server.stop();
}

#[test]
fn the_per_ip_connection_cap_answers_429_and_frees_a_place_when_one_leaves() {
    let server = start(Config { threads: 2, max_connections_per_ip: Some(2), ..Config::default() });
    let handle = server.handle();
    let addr = server.local_addr();
    let mut a = TestClient::connect(addr, "/");
    let b = TestClient::connect(addr, "/");
    let answer = raw_request(addr, &upgrade_request("/", ""));
    assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests"), "{answer}");
    assert!(answer.contains("too many connections from your address"), "{answer}");
    assert_eq!(refusals(&handle.metrics()), [0, 1, 0, 0, 0]);
    echo_works(&mut a, "a is served");
    drop(b);
    assert!(eventually(5 * SEC, || handle.metrics().active_connections == 1));
    let mut c = TestClient::connect(addr, "/");
    echo_works(&mut c, "c took b's place");
    drop((a, c));
    assert!(eventually(5 * SEC, || handle.metrics().active_connections == 0));
    // The refusal shows in /metrics (the scrape is one of the two connections the address may have).
    let page = raw_request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(page.contains("wsloop_connections_refused_per_ip_total 1"), "{page}");
    server.stop();
}

#[test]
fn the_per_ip_handshake_rate_answers_429_beyond_its_burst() {
    let rate = RateLimit { per_second: 0.1, burst: 3.0 };
    let server = start(Config { threads: 2, handshake_rate_per_ip: Some(rate), ..Config::default() });
    let handle = server.handle();
    let addr = server.local_addr();
    let mut clients: Vec<TestClient> = (0..3).map(|_| TestClient::connect(addr, "/")).collect();
    let answer = raw_request(addr, &upgrade_request("/", ""));
    assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests"), "{answer}");
    assert!(answer.contains("slow down"), "{answer}");
    assert_eq!(refusals(&handle.metrics()), [0, 0, 1, 0, 0]);
    for (i, c) in clients.iter_mut().enumerate() {
        echo_works(c, &format!("client {i} is served"));
    }
    server.stop();
}

#[test]
fn over_the_message_rate_under_close_the_connection_gets_1008_and_others_live_on() {
    let config = Config {
        threads: 1,
        message_rate: Some(RateLimit { per_second: 10.0, burst: 5.0 }),
        rate_limit_policy: RateLimitPolicy::Close,
        ..Config::default()
    };
    let server = start(config);
    let handle = server.handle();
    let mut flooder = TestClient::connect(server.local_addr(), "/");
    let mut other = TestClient::connect(server.local_addr(), "/");
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(client_frame(wsloop::proto::OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    flooder.send_raw(&burst);
    let mut echoed = 0;
    let close = loop {
        match flooder.recv(5 * SEC) {
            Some(Got::Text(_)) => echoed += 1,
            other => break other,
        }
    };
    assert_eq!(close, Some(Got::Close(Some((1008, "rate limit exceeded".into())))));
    // Charged message by message: the one that went into debt is the last the handler saw, even though
    // all 20 arrived in one read.
    assert_eq!(echoed, 6, "messages echoed past a burst of 5");
    assert_eq!(refusals(&handle.metrics()), [0, 0, 0, 0, 1]);
    echo_works(&mut other, "other is served");
    server.stop();
}

#[test]
fn over_the_byte_rate_under_close_the_connection_gets_1008() {
    let config = Config {
        threads: 1,
        byte_rate: Some(RateLimit { per_second: 1000.0, burst: 1000.0 }),
        rate_limit_policy: RateLimitPolicy::Close,
        ..Config::default()
    };
    let server = start(config);
    let handle = server.handle();
    let mut client = TestClient::connect(server.local_addr(), "/");
    echo_works(&mut client, "small is fine");
    client.send_binary(&[7u8; 4000]);
    let close = loop {
        match client.recv(5 * SEC) {
            Some(Got::Binary(_)) => {}
            other => break other,
        }
    };
    assert_eq!(close, Some(Got::Close(Some((1008, "rate limit exceeded".into())))));
    assert_eq!(refusals(&handle.metrics()), [0, 0, 0, 0, 1]);
    server.stop();
}

#[test]
fn over_the_message_rate_under_pause_reading_waits_and_nothing_is_lost() {
    let config = Config {
        threads: 1,
        timer_tick: Duration::from_millis(10),
        message_rate: Some(RateLimit { per_second: 20.0, burst: 5.0 }),
        ..Config::default()
    };
    let server = start(config);
    let handle = server.handle();
    let mut flooder = TestClient::connect(server.local_addr(), "/");
    let mut other = TestClient::connect(server.local_addr(), "/");
    let mut burst = Vec::new();
    for i in 0..40 {
        burst.extend(client_frame(wsloop::proto::OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    // 40 frames in one read: all are delivered, in order (nothing is dropped), but paced: the burst of 5
    // and the one that goes into debt at once, then one per token, 34 tokens at 20/s = 1.7 s, while the
    // socket is not read.
    let sent = Instant::now();
    flooder.send_raw(&burst);
    for i in 0..6 {
        assert_eq!(flooder.recv_ok(), Got::Text(format!("m{i}")));
    }
    assert!(handle.metrics().rate_limit_pauses >= 1);
    // Meanwhile another connection is served at once.
    let asked = Instant::now();
    echo_works(&mut other, "other is not paused");
    assert!(asked.elapsed() < Duration::from_millis(500), "the other connection waited {:?}", asked.elapsed());
    for i in 6..40 {
        assert_eq!(flooder.recv_ok(), Got::Text(format!("m{i}")));
    }
    let paced = sent.elapsed();
    assert!(paced >= Duration::from_millis(1500), "40 messages in {paced:?}: the pace did not hold");
    flooder.send_text("after the pause");
    assert_eq!(flooder.recv_ok(), Got::Text("after the pause".into()));
    let m = handle.metrics();
    assert_eq!(m.rate_limit_closes, 0);
    assert_eq!(m.active_connections, 2);
    assert_eq!([m.connections_refused, m.connections_refused_per_ip, m.handshakes_refused_per_ip], [0, 0, 0]);
    server.stop();
}

#[test]
fn over_the_byte_rate_under_pause_large_messages_all_arrive() {
    let config = Config {
        threads: 1,
        timer_tick: Duration::from_millis(10),
        byte_rate: Some(RateLimit { per_second: 256.0 * 1024.0, burst: 64.0 * 1024.0 }),
        ..Config::default()
    };
    let server = start(config);
    let handle = server.handle();
    let mut client = TestClient::connect(server.local_addr(), "/");
    let started = Instant::now();
    // 1 MiB at 256 KiB/s after a 64 KiB burst: about 3.75 s, paused several times, nothing lost.
    for i in 0..16u8 {
        client.send_binary(&vec![i; 64 * 1024]);
    }
    for i in 0..16u8 {
        assert_eq!(client.recv(20 * SEC), Some(Got::Binary(vec![i; 64 * 1024])), "message {i}");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "1 MiB took {took:?}: faster than the byte rate");
    assert!(handle.metrics().rate_limit_pauses >= 2);
    assert_eq!(handle.metrics().rate_limit_closes, 0);
    server.stop();
}

// Peers that send faster than the reactor reads them (their echoes read as fast as they come) must not
// keep it on their sockets: a readiness event reads a bounded amount and leaves the rest for the next
// turn, so the listener and a new connection still get their turn. In a debug build, without the bound,
// the new connection's handshake never completed.
#[test]
fn peers_that_send_faster_than_they_are_read_do_not_starve_the_loop() {
    let server = start(Config { threads: 1, ..Config::default() });
    let addr = server.local_addr();
    let flood = Flood::start(addr, 3, 1024);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let connected = std::thread::spawn(move || {
        let mut late = TestClient::connect(addr, "/");
        late.send_text("still served");
        late.recv(Duration::from_secs(5))
    });
    let got = connected.join();
    let waited = started.elapsed();
    flood.stop();
    assert_eq!(got.ok().flatten(), Some(Got::Text("still served".into())), "after {waited:?}");
    assert!(waited < Duration::from_secs(3), "the new connection waited {waited:?}");
    server.stop();
}

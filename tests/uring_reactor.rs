//! The reactor with `Config::io_uring` (EXPERIMENTAL): what only that mode has to get right. The
//! shared behaviour (echo, fragments, split messages, ping/pong, both closes, protocol errors, timers,
//! rate limits, backpressure, shutdown) is the server, limits and timers suites run with the ring on:
//! `WSLOOP_TEST_IO_URING=1 cargo test --features io-uring --test server --test limits --test timers`.
//! The fallback without a ring is tests/uring_fallback.rs (its own process: it installs seccomp).

mod common;

use std::time::Duration;

use common::*;
use wsloop::proto::OpCode;
use wsloop::server::{Config, RunningServer, Server};

const SEC: Duration = Duration::from_secs(5);

fn start(threads: usize) -> RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads,
        io_uring: true,
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Echo);
    server.start().unwrap()
}

/// Writes `count` messages (`message(k)`, `gap` apart) from another thread without waiting for their
/// echoes, and checks that every echo comes back whole and in order.
fn echoed_in_flight(
    client: &mut TestClient,
    count: usize,
    gap: Duration,
    message: impl Fn(usize) -> Got + Send + Clone + 'static,
) {
    let frame = |got: Got| match got {
        Got::Text(t) => client_frame(OpCode::Text, true, t.as_bytes()),
        Got::Binary(b) => client_frame(OpCode::Binary, true, &b),
        other => panic!("not a message: {other:?}"),
    };
    let writer = {
        let mut raw = client.stream.try_clone().unwrap();
        let message = message.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for k in 0..count {
                raw.write_all(&frame(message(k))).unwrap();
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                }
            }
        })
    };
    for k in 0..count {
        assert_eq!(client.recv(SEC).unwrap(), message(k), "message {k}");
    }
    writer.join().unwrap();
}

#[test]
fn each_reactor_makes_a_ring_and_serves_through_it() {
    let server = start(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while io_uring_fds() < 2 {
        assert!(std::time::Instant::now() < deadline, "two reactors, two rings: {} io_uring fds", io_uring_fds());
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut client = TestClient::connect(server.local_addr(), "/");
    client.send_text("through the ring");
    assert_eq!(client.recv(SEC).unwrap(), Got::Text("through the ring".into()));
    client.send_binary(&[0, 1, 2, 255]);
    assert_eq!(client.recv(SEC).unwrap(), Got::Binary(vec![0, 1, 2, 255]));
    server.stop();
}

// 2,000 connections at once, each with a message in flight before any is answered: every receive
// armed, buffers cycling through the ring, every echo to its own connection.
#[test]
fn two_thousand_connections_at_once_each_get_their_own_echo() {
    let server = start(1);
    let addr = server.local_addr();
    let mut clients: Vec<TestClient> = (0..2000).map(|_| TestClient::connect(addr, "/")).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_text(&format!("client {i}"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.recv(SEC).unwrap(), Got::Text(format!("client {i}")), "client {i}");
    }
    for (i, client) in clients.iter_mut().enumerate().step_by(7) {
        let big = vec![(i % 251) as u8; 40_000];
        client.send_binary(&big);
        assert_eq!(client.recv(SEC).unwrap(), Got::Binary(big), "client {i}");
    }
    server.stop();
}

// Connections that go with bytes still arriving, and new ones in their slots at once: nothing of a
// gone connection reaches the next one in its slot (completions carry the slot's generation).
#[test]
fn a_reused_slot_gets_nothing_of_the_connection_before_it() {
    let server = start(1);
    let addr = server.local_addr();
    for round in 0..200 {
        let mut gone = TestClient::connect(addr, "/");
        // A message, then more bytes of one that never completes, then the socket goes.
        gone.send_text(&format!("old {round}"));
        let partial = client_frame(OpCode::Text, true, b"never whole");
        gone.send_raw(&partial[..partial.len() - 3]);
        drop(gone);
        let mut next = TestClient::connect(addr, "/");
        next.send_text(&format!("new {round}"));
        assert_eq!(next.recv(SEC).unwrap(), Got::Text(format!("new {round}")), "round {round}");
    }
    server.stop();
}

// A message trickled a few bytes per write: one receive completion per write, the tail kept between
// them exactly as a readiness read keeps it.
#[test]
fn a_message_trickled_over_many_receives_arrives_whole() {
    let server = start(1);
    let mut client = TestClient::connect(server.local_addr(), "/");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    let frame = client_frame(OpCode::Binary, true, &payload);
    for chunk in frame.chunks(7) {
        client.send_raw(chunk);
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(client.recv(SEC).unwrap(), Got::Binary(payload));
    server.stop();
}

// Peers that never stop sending (their echoes read as fast as they come) must not keep the reactor
// reaping their completions: the loop still gets to the listener, and a new connection is served. A
// liveness bound only: it did not tell reaping until the queue is empty (the first version, which
// strace showed making 11 epoll_waits in 500,000 messages of (i)) from reaping once per event; in a
// debug build the new connection waited 0.5-0.65 s with either.
#[test]
fn peers_that_never_stop_sending_do_not_starve_the_loop() {
    let server = start(1);
    let addr = server.local_addr();
    let flood = Flood::start(addr, 3, 16);
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut late = TestClient::connect(addr, "/");
    late.send_text("still served");
    let got = late.recv(SEC);
    let waited = started.elapsed();
    flood.stop();
    assert_eq!(got, Some(Got::Text("still served".into())), "after {waited:?}");
    assert!(waited < Duration::from_secs(2), "the new connection waited {waited:?}");
    server.stop();
}

/// On "burst N": N binary messages of 4 KiB (below the size written straight to the socket, so they
/// go out corked, as ring sends), message k filled with k; and every eighth of them also a
/// text message "k" to itself through the server's `Handle` (the command path, written by the loop
/// between ring sends).
struct Burst;

impl wsloop::server::Handler for Burst {
    fn on_message(&mut self, ctx: &mut wsloop::server::Ctx<'_>, message: wsloop::server::Message<'_>) {
        let wsloop::server::Message::Text(text) = message else { return };
        let Some(n) = text.strip_prefix("burst ").and_then(|n| n.parse::<u32>().ok()) else { return };
        let id = ctx.id();
        for k in 0..n {
            let _ = ctx.send_binary(&vec![(k % 251) as u8; 4 << 10]);
            if k % 8 == 0 {
                ctx.handle().send_text(id, &k.to_string());
            }
        }
    }
}

// Output far past what the socket takes (a peer that reads only later): ring sends come back short or
// with EAGAIN, the rest is queued and written as the socket drains, and the commands' messages are
// written by the loop meanwhile. Every byte arrives, in the order written.
#[test]
fn output_past_the_socket_buffer_arrives_whole_and_in_order() {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        io_uring: true,
        max_buffered_bytes: 64 << 20,
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Burst);
    let server = server.start().unwrap();
    let mut client = TestClient::connect(server.local_addr(), "/");
    for _ in 0..4 {
        client.send_text("burst 400");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut texts = Vec::new();
    for round in 0..4 {
        let mut k = 0;
        while k < 400 {
            match client.recv(SEC).unwrap() {
                Got::Binary(data) => {
                    assert_eq!(data, vec![(k % 251) as u8; 4 << 10], "round {round}, message {k}");
                    k += 1;
                }
                Got::Text(text) => texts.push(text),
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
    while texts.len() < 4 * 50 {
        match client.recv(SEC).unwrap() {
            Got::Text(text) => texts.push(text),
            other => panic!("after the bursts: {other:?}"),
        }
    }
    let expected: Vec<String> = (0..4).flat_map(|_| (0..400).step_by(8).map(|k: u32| k.to_string())).collect();
    assert_eq!(texts, expected);
    server.stop();
}

// The loop waits in io_uring_enter, not in epoll_wait: a command from another thread (its waker is in
// epoll) must still wake it at once, with no timer due for seconds.
#[test]
fn a_command_from_another_thread_wakes_the_wait_in_the_ring() {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        io_uring: true,
        timer_tick: Duration::from_secs(3),
        ..Config::default()
    };
    let (ids, opened) = std::sync::mpsc::channel();
    let mut server = Server::new(config);
    server.register_handler("*", move |_| Tell(ids.clone()));
    let server = server.start().unwrap();
    let mut client = TestClient::connect(server.local_addr(), "/");
    let id = opened.recv_timeout(SEC).unwrap();
    // Let the loop go back to its wait (nothing else is due).
    std::thread::sleep(Duration::from_millis(200));
    let sent = std::time::Instant::now();
    server.handle().send_text(id, "woken");
    assert_eq!(client.recv(SEC).unwrap(), Got::Text("woken".into()));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "the command waited {took:?} (for a timer, not the waker)");
    server.stop();
}

/// Sends each connection's id on open.
struct Tell(std::sync::mpsc::Sender<wsloop::server::ConnId>);

impl wsloop::server::Handler for Tell {
    fn on_open(&mut self, ctx: &mut wsloop::server::Ctx<'_>) {
        let _ = self.0.send(ctx.id());
    }
}

// Bulk traffic (receives that fill whole ring buffers) moves a connection to readiness reads: its
// receive is cancelled, and mio reads from where the last completion ended. Messages in flight across
// the switch, large and small, all come back whole and in order, and the connection goes on working.
#[test]
fn a_connection_moved_to_readiness_reads_by_bulk_traffic_loses_nothing() {
    let server = start(1);
    let mut client = TestClient::connect(server.local_addr(), "/");
    // 30 messages written before any echo is read: 4 MB in flight, far past a few whole buffers.
    echoed_in_flight(&mut client, 30, Duration::ZERO, |k| {
        let len = if k % 3 == 2 { 100 } else { 200_000 };
        Got::Binary((0..len).map(|i| ((i + k * 7) % 251) as u8).collect())
    });
    client.send_text("still here");
    assert_eq!(client.recv(SEC).unwrap(), Got::Text("still here".into()));
    server.stop();
}

// A connection bulk traffic moved to readiness reads comes back to the ring once its traffic is small
// again (64 readiness events in a row of one small read each), and moves again when bulk returns:
// counted in `io_uring_to_readiness` and `io_uring_to_ring`, with every message echoed whole and in
// order through each move.
#[test]
fn a_connection_moved_by_bulk_traffic_comes_back_when_its_traffic_is_small_again() {
    let server = start(1);
    let handle = server.handle();
    let mut client = TestClient::connect(server.local_addr(), "/");
    // 8 messages of 200 KB written before any echo is read: receives that fill whole buffers.
    let bulk = |client: &mut TestClient, round: usize| {
        echoed_in_flight(client, 8, Duration::ZERO, move |k| {
            Got::Binary((0..200_000).map(|i| ((i + k * 7 + round) % 251) as u8).collect())
        });
    };
    // One small message at a time, each echoed before the next: one short read per readiness event.
    let small = |client: &mut TestClient, count: usize| {
        for i in 0..count {
            client.send_text(&format!("small {i}"));
            assert_eq!(client.recv(SEC).unwrap(), Got::Text(format!("small {i}")));
        }
    };
    // Small messages written 100 µs apart without waiting for their echoes: some are in flight while
    // the connection moves.
    let paced = |client: &mut TestClient, count: usize| {
        echoed_in_flight(client, count, Duration::from_micros(100), |i| Got::Text(format!("paced {i}")));
    };
    bulk(&mut client, 0);
    assert!(eventually(SEC, || handle.metrics().io_uring_to_readiness == 1), "bulk traffic did not move it");
    assert_eq!(handle.metrics().io_uring_to_ring, 0);
    small(&mut client, 100);
    assert!(eventually(SEC, || handle.metrics().io_uring_to_ring == 1), "small traffic did not bring it back");
    // Back in the ring: small messages still come back, and bulk moves it again.
    small(&mut client, 10);
    bulk(&mut client, 1);
    assert!(eventually(SEC, || handle.metrics().io_uring_to_readiness == 2), "bulk traffic did not move it again");
    paced(&mut client, 400);
    assert!(eventually(SEC, || handle.metrics().io_uring_to_ring == 2));
    client.send_text("still here");
    assert_eq!(client.recv(SEC).unwrap(), Got::Text("still here".into()));
    server.stop();
}

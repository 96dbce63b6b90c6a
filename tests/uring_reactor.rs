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
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let server = start(1);
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let batch: Vec<u8> = (0..64).flat_map(|_| client_frame(OpCode::Binary, true, &[1; 16])).collect();
    let mut threads = Vec::new();
    for _ in 0..3 {
        let flood = TestClient::connect(addr, "/");
        let (mut writer, mut reader) = (flood.stream.try_clone().unwrap(), flood.stream.try_clone().unwrap());
        let (flag, batch) = (stop.clone(), batch.clone());
        threads.push(std::thread::spawn(
            move || {
                while !flag.load(Ordering::Relaxed) && writer.write_all(&batch).is_ok() {}
            },
        ));
        let flag = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut sink = vec![0; 1 << 16];
            reader.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            while !flag.load(Ordering::Relaxed) {
                let _ = reader.read(&mut sink);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut late = TestClient::connect(addr, "/");
    late.send_text("still served");
    let got = late.recv(SEC);
    let waited = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(got, Some(Got::Text("still served".into())), "after {waited:?}");
    assert!(waited < Duration::from_secs(2), "the new connection waited {waited:?}");
    server.stop();
}

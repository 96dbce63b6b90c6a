//! Messages sent through a `Handle` from other threads, over real sockets on 127.0.0.1: the bytes a
//! reactor has not taken yet are bounded by `Config::max_pending_command_bytes` (past it a message is
//! dropped and counted in `commands_dropped`, and nothing else is lost), and a reactor carries out a
//! large backlog of commands over several loop turns without losing or reordering any.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wsloop::server::{Config, Ctx, Handle, Handler, Message, RunningServer, Server};

/// Echoes, except that "hold" blocks the reactor for a while (a slow handler) before answering "held";
/// the flag is set when the handler has begun to hold.
struct HoldOrEcho(Arc<AtomicBool>);

impl Handler for HoldOrEcho {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text("hold") => {
                self.0.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(600));
                ctx.send_text("held")
            }
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

/// A one-reactor server of [`HoldOrEcho`], and the flag its handlers set when they begin to hold.
fn start(max_pending_command_bytes: usize) -> (RunningServer, Arc<AtomicBool>) {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        close_timeout: Duration::from_millis(300),
        max_pending_command_bytes,
        ..Config::default()
    };
    let mut server = Server::new(config);
    let holding = Arc::new(AtomicBool::new(false));
    let flag = holding.clone();
    server.register_handler("*", move |_| HoldOrEcho(flag.clone()));
    (server.start().unwrap(), holding)
}

/// Sends "hold" and returns once the reactor is inside that handler's sleep: nothing posted to it
/// after this is taken until the handler returns.
fn hold(client: &mut TestClient, holding: &AtomicBool) {
    client.send_text("hold");
    assert!(eventually(Duration::from_secs(5), || holding.load(Ordering::SeqCst)), "the handler never ran");
}

/// Broadcasts `count` messages of 1 KiB while the reactor is held up by a slow handler; returns how many
/// the client then received and the server's `commands_dropped`.
fn broadcast_while_held(limit: usize, count: usize) -> (usize, u64) {
    let (server, holding) = start(limit);
    let mut client = TestClient::connect(server.local_addr(), "/");
    hold(&mut client, &holding);
    let handle: Handle = server.handle();
    let body = "x".repeat(1024);
    for _ in 0..count {
        handle.broadcast_text(&body);
    }
    assert_eq!(client.recv_ok(), Got::Text("held".into()));
    let mut received = 0;
    while let Some(got) = client.recv(Duration::from_secs(1)) {
        assert_eq!(got, Got::Text(body.clone()));
        received += 1;
    }
    let dropped = server.handle().metrics().commands_dropped;
    server.stop();
    (received, dropped)
}

#[test]
fn past_the_pending_limit_handle_messages_are_dropped_and_counted_and_the_rest_delivered() {
    // 64 KiB holds 63 of these 1,030-byte frames (and the first is always taken).
    let (received, dropped) = broadcast_while_held(64 << 10, 1000);
    assert!((60..=64).contains(&received), "received {received} of 1000 with a 64 KiB limit");
    if wsloop::metrics::ENABLED {
        assert_eq!(dropped, 1000 - received as u64, "every message not delivered is counted");
    }
    // The default limit (64 MiB) takes all of them.
    let (received, dropped) = broadcast_while_held(Config::default().max_pending_command_bytes, 1000);
    assert_eq!(received, 1000);
    assert_eq!(dropped, 0);
}

#[test]
fn a_backlog_larger_than_one_turn_of_commands_is_delivered_whole_and_in_order() {
    // More commands than a reactor carries out per loop turn, posted while it is held up, so that they
    // are all waiting at one wake: the rest must be taken on the following turns without a new wake.
    let (server, holding) = start(Config::default().max_pending_command_bytes);
    let mut client = TestClient::connect(server.local_addr(), "/");
    client.send_text("ping");
    assert_eq!(client.recv_ok(), Got::Text("ping".into()));
    // A broadcast reaches this one connection and keeps the order the commands were posted in.
    let handle = server.handle();
    hold(&mut client, &holding);
    const N: usize = 20_000;
    for i in 0..N {
        handle.broadcast_text(&i.to_string());
    }
    assert_eq!(client.recv_ok(), Got::Text("held".into()));
    for i in 0..N {
        match client.recv(Duration::from_secs(5)) {
            Some(Got::Text(t)) => assert_eq!(t, i.to_string(), "out of order"),
            other => panic!("message {i} of {N} did not arrive: {other:?}"),
        }
    }
    // The loop still serves its sockets.
    client.send_text("after");
    assert_eq!(client.recv_ok(), Got::Text("after".into()));
    server.stop();
}

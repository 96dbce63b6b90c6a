//! Handler timers: `Ctx::set_timer`, `Ctx::cancel_timer` and `Handler::on_timer`, over real sockets.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use wsloop::server::{Config, Ctx, Handler, Message, RunningServer, Server};

const SEC: Duration = Duration::from_secs(1);

/// Commands, as text messages: "once MS" arms the timer, "tick MS N" ticks N times every MS,
/// "forever" arms it with `Duration::MAX`, "spin" re-arms it with a zero delay from every firing, "cancel" disarms it, "panic" makes `on_timer` panic, anything
/// else is echoed. Each firing sends "fired K" and counts in `fired` (shared by every connection).
struct Timed {
    /// Re-arm with a zero delay on every firing, forever, sending nothing.
    spin: bool,
    period: Duration,
    remaining: usize,
    count: usize,
    fired: Arc<AtomicUsize>,
}

impl Handler for Timed {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        let words: Vec<&str> = text.split(' ').collect();
        match words.as_slice() {
            ["once", ms] => {
                self.remaining = 1;
                ctx.set_timer(Duration::from_millis(ms.parse().unwrap()));
            }
            ["tick", ms, n] => {
                self.period = Duration::from_millis(ms.parse().unwrap());
                self.remaining = n.parse().unwrap();
                ctx.set_timer(self.period);
            }
            ["cancel"] => ctx.cancel_timer(),
            ["spin"] => {
                self.spin = true;
                ctx.set_timer(Duration::ZERO);
            }
            ["forever"] => {
                self.remaining = 1;
                ctx.set_timer(Duration::MAX);
            }
            ["panic"] => ctx.set_timer(Duration::ZERO),
            _ => ctx.send_text(text).unwrap(),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.fired.fetch_add(1, Ordering::SeqCst);
        if self.spin {
            ctx.set_timer(Duration::ZERO);
            return;
        }
        if self.remaining == 0 {
            panic!("timer handler panics on purpose");
        }
        self.count += 1;
        self.remaining -= 1;
        ctx.send_text(&format!("fired {}", self.count)).unwrap();
        if self.remaining > 0 {
            ctx.set_timer(self.period);
        }
    }
}

/// A server, its firing count and one connected client.
fn setup() -> (RunningServer, Arc<AtomicUsize>, TestClient) {
    let fired = Arc::new(AtomicUsize::new(0));
    let server = server(&fired);
    let client = TestClient::connect(server.local_addr(), "/");
    (server, fired, client)
}

fn server(fired: &Arc<AtomicUsize>) -> RunningServer {
    let mut server = Server::new(Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        io_uring: io_uring(),
        ..Config::default()
    });
    let fired = fired.clone();
    server.register_handler("*", move |_| Timed {
        spin: false,
        period: Duration::ZERO,
        remaining: 0,
        count: 0,
        fired: fired.clone(),
    });
    start_server(server)
}

#[test]
fn a_timer_fires_once_after_its_delay_and_can_send() {
    let (server, fired, mut c) = setup();
    let armed = Instant::now();
    c.send_text("once 80");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("fired 1".into())));
    assert!(armed.elapsed() >= Duration::from_millis(80), "fired early: {:?}", armed.elapsed());
    // Once: nothing more comes, and the connection is still served.
    assert_eq!(c.recv(Duration::from_millis(300)), None);
    c.send_text("echo");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("echo".into())));
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    drop(c); // gone before the stop, which would otherwise wait for its close reply
    server.stop();
}

#[test]
fn re_arming_from_on_timer_makes_a_periodic_tick() {
    let (server, fired, mut c) = setup();
    let armed = Instant::now();
    c.send_text("tick 20 5");
    for k in 1..=5 {
        assert_eq!(c.recv(5 * SEC), Some(Got::Text(format!("fired {k}"))));
    }
    assert!(armed.elapsed() >= Duration::from_millis(100), "{:?}", armed.elapsed());
    assert_eq!(c.recv(Duration::from_millis(200)), None);
    assert_eq!(fired.load(Ordering::SeqCst), 5);
    drop(c); // gone before the stop, which would otherwise wait for its close reply
    server.stop();
}

#[test]
fn a_cancelled_or_replaced_timer_does_not_fire() {
    let (server, fired, mut c) = setup();
    c.send_text("once 100");
    c.send_text("cancel");
    assert_eq!(c.recv(Duration::from_millis(400)), None, "a cancelled timer fired");
    // Replacing: the 10 s deadline gives way to 50 ms, and fires once.
    c.send_text("once 10000");
    c.send_text("once 50");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("fired 1".into())));
    assert_eq!(c.recv(Duration::from_millis(300)), None);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    drop(c); // gone before the stop, which would otherwise wait for its close reply
    server.stop();
}

#[test]
fn re_arming_thousands_of_times_keeps_exactly_the_last_deadline() {
    // Each re-arm replaces the deadline (the reactor's heap keeps the replaced entries until a sweep, see
    // `server::handler_timers`): only the last one fires, once.
    let (server, fired, mut c) = setup();
    for _ in 0..3000 {
        c.send_text("once 10000");
    }
    c.send_text("once 50");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("fired 1".into())));
    assert_eq!(c.recv(Duration::from_millis(300)), None);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    drop(c); // gone before the stop, which would otherwise wait for its close reply
    server.stop();
}

#[test]
fn a_timer_re_armed_with_zero_delay_forever_does_not_stall_the_loop() {
    let (server, fired, mut c) = setup();
    let mut bystander = TestClient::connect(server.local_addr(), "/");
    c.send_text("spin");
    assert!(common::eventually(5 * SEC, || fired.load(Ordering::SeqCst) > 100), "the timer does not fire");
    // Each firing re-arms for the next turn of the loop, so reads are still served in between.
    for i in 0..20 {
        bystander.send_text(&format!("b{i}"));
        assert_eq!(bystander.recv(5 * SEC), Some(Got::Text(format!("b{i}"))));
        c.send_text(&format!("c{i}"));
        assert_eq!(c.recv(5 * SEC), Some(Got::Text(format!("c{i}"))));
    }
    drop((c, bystander)); // gone before the stop, which would otherwise wait for their close replies
    server.stop();
}

#[test]
fn a_delay_too_long_for_the_clock_never_fires_and_harms_nothing() {
    let (server, fired, mut c) = setup();
    let mut bystander = TestClient::connect(server.local_addr(), "/");
    c.send_text("forever");
    c.send_text("echo");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("echo".into())));
    bystander.send_text("still here");
    assert_eq!(bystander.recv(5 * SEC), Some(Got::Text("still here".into())));
    assert_eq!(c.recv(Duration::from_millis(200)), None);
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    drop((c, bystander)); // gone before the stop, which would otherwise wait for their close replies
    server.stop();
}

#[test]
fn timers_of_closed_connections_never_fire_not_even_in_a_reused_slot() {
    let fired = Arc::new(AtomicUsize::new(0));
    let server = server(&fired);
    for _ in 0..20 {
        let mut c = TestClient::connect(server.local_addr(), "/");
        c.send_text("once 150");
        c.send_text("echo");
        assert_eq!(c.recv(5 * SEC), Some(Got::Text("echo".into())));
        c.close(1000, "");
    }
    // The 20 connections (each likely in the slot the last one left) are gone before their timers are due.
    let mut c = TestClient::connect(server.local_addr(), "/");
    std::thread::sleep(Duration::from_millis(400));
    c.send_text("echo");
    assert_eq!(c.recv(5 * SEC), Some(Got::Text("echo".into())));
    assert_eq!(fired.load(Ordering::SeqCst), 0, "a timer fired for a closed connection");
    drop(c); // gone before the stop, which would otherwise wait for its close reply
    server.stop();
}

#[test]
fn a_panic_in_on_timer_closes_only_that_connection_with_1011() {
    let fired = Arc::new(AtomicUsize::new(0));
    let server = server(&fired);
    let mut bystander = TestClient::connect(server.local_addr(), "/");
    let mut c = TestClient::connect(server.local_addr(), "/");
    c.send_text("panic");
    assert!(matches!(c.recv(5 * SEC), Some(Got::Close(Some((1011, _))))));
    bystander.send_text("still here");
    assert_eq!(bystander.recv(5 * SEC), Some(Got::Text("still here".into())));
    assert_eq!(server.handle().metrics().handler_panics, 1);
    drop((c, bystander)); // gone before the stop, which would otherwise wait for their close replies
    server.stop();
}

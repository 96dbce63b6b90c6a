//! Connections per second through each way into the engine: its own listener, an axum route
//! (`get(wsloop_upgrade)`: hyper parses, the engine adopts after the 101), and peeking before hyper
//! (`peek`). Each connection: TCP connect, upgrade, one 16-byte echo, close.
//!
//! `cargo run --release --bin handshake-rate -- [CONNECTIONS] [CLIENT_THREADS]` (default 5000, 2).
//! One engine reactor and one tokio worker, on the same machine as the clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wsloop::server::{Config, Ctx, Handler, Message, RunningServer, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => ctx.send_text(text),
            Message::Binary(data) => ctx.send_binary(data),
        };
    }
}

const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked text frame of 16 bytes (mask 0: the payload is sent as is) and the server's echo of it.
const FRAME: &[u8] = b"\x81\x90\x00\x00\x00\x00sixteen bytes ok";
const ECHO: &[u8] = b"\x81\x10sixteen bytes ok";

fn one(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head = loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf));
    buf.drain(..head);
    s.write_all(FRAME).unwrap();
    while buf.len() < ECHO.len() {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the echo");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&buf[..ECHO.len()], ECHO);
}

fn rate(addr: SocketAddr, connections: usize, threads: usize) -> f64 {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || (0..connections / threads).for_each(|_| one(addr))))
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    (connections / threads * threads) as f64 / start.elapsed().as_secs_f64()
}

fn engine(listen: bool) -> RunningServer {
    let addr = "127.0.0.1:0".parse().unwrap();
    let mut engine = Server::new(Config { threads: 1, addr, ..Config::default() });
    engine.register_handler("/ws", |_| Echo);
    if listen {
        engine.start().unwrap()
    } else {
        engine.start_without_listeners().unwrap()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().map_or(5000, |a| a.parse().expect("CONNECTIONS"));
    let threads: usize = args.next().map_or(2, |a| a.parse().expect("CLIENT_THREADS"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let direct = engine(true);
    rate(direct.local_addr(), 200, threads); // warm-up
    let own = rate(direct.local_addr(), connections, threads);
    direct.stop();

    let routed = engine(false);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_handoff::app(routed.handle());
    runtime.spawn(async move { axum::serve(listener, app).await });
    rate(addr, 200, threads);
    let axum = rate(addr, connections, threads);
    routed.stop();

    let peeked = engine(false);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(axum_handoff::peek::serve(listener, peeked.handle(), axum_handoff::peek::plain_app()));
    rate(addr, 200, threads);
    let peek = rate(addr, connections, threads);
    peeked.stop();

    println!("{connections} connections, {threads} client threads (connect, upgrade, one echo, close):");
    println!("  wsloop's own listener : {own:>8.0} connections/s");
    println!("  axum route (adopted)  : {axum:>8.0} connections/s");
    println!("  peek before hyper     : {peek:>8.0} connections/s");
    runtime.shutdown_background();
}

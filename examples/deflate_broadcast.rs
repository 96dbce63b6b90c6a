//! A broadcast to many permessage-deflate connections: how many compressions it costs and how long until
//! every connection has it.
//!
//! ```text
//! cargo run --release --example deflate_broadcast [CONNECTIONS] [BYTES]
//! ```
//!
//! Starts a server in this process (`Config::deflate` shared, 2 reactors), opens CONNECTIONS (default
//! 9,000: the server's and the clients' sockets share this process's 20,000 open files) raw connections
//! offering `permessage-deflate`, broadcasts one BYTES-long text (default 4096, JSON-like), reads the frame
//! on every connection (checking RSV1), and prints the time from the broadcast call until the last
//! connection had its frame, and the compressions counted (`messages_compressed`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wsloop::proto::deflate::{DeflateConfig, DeflateMode};
use wsloop::server::{Config, Handler, Server};

struct Quiet;
impl Handler for Quiet {}

fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    )
    .expect("request");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101") && head.contains("permessage-deflate"), "{head}");
    s
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(9_000, |a| a.parse().expect("CONNECTIONS"));
    let bytes: usize = args.next().map_or(4096, |a| a.parse().expect("BYTES"));
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ping_interval: None,
        max_connections: n + 100,
        deflate: DeflateConfig::with_mode(DeflateMode::Shared),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/", |_| Quiet);
    let server = server.start().expect("start");
    let addr = server.local_addr();
    let mut conns: Vec<TcpStream> = (0..n).map(|_| open(addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut text = String::new();
    let mut i = 0u32;
    while text.len() < bytes {
        text.push_str(&format!(
            "{{\"id\":{i},\"user\":\"name{}\",\"score\":{}}}\n",
            i % 1000,
            i.wrapping_mul(7919) % 10007
        ));
        i += 1;
    }
    text.truncate(bytes);
    let handle = server.handle();
    let before = handle.metrics().messages_compressed;
    let start = Instant::now();
    handle.broadcast_text(&text);
    let mut wire_len = 0;
    for c in &mut conns {
        let mut head = [0u8; 2];
        c.read_exact(&mut head).expect("frame");
        assert_eq!(head[0] & 0x40, 0x40, "RSV1: compressed");
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                c.read_exact(&mut l).unwrap();
                usize::from(u16::from_be_bytes(l))
            }
            127 => panic!("unexpectedly long"),
            l => usize::from(l),
        };
        let mut payload = vec![0u8; len];
        c.read_exact(&mut payload).unwrap();
        wire_len = len;
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let compressions = handle.metrics().messages_compressed - before;
    println!(
        "connections={n} message_bytes={bytes} compressed_bytes={wire_len} reactors=2 compressions={compressions} \
         all_delivered_after_ms={:.1}",
        elapsed.as_secs_f64() * 1000.0
    );
    drop(conns);
    server.stop();
}

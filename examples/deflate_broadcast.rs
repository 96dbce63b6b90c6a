//! A broadcast to many permessage-deflate connections: how many compressions it costs and how long until
//! every connection has it.
//!
//! ```text
//! cargo run --release --example deflate_broadcast [CONNECTIONS] [BYTES]
//! ```
//!
//! Starts the server as a child process (this example again, with `--serve`: `Config::deflate` shared, 2
//! reactors), so that the server's and the clients' sockets each have a process's 20,000 open files;
//! opens CONNECTIONS (default 10,000) raw connections offering `permessage-deflate`, has the server
//! broadcast one BYTES-long text (default 4096, JSON-like) through `Handle::broadcast_text`, reads the
//! frame on every connection (checking RSV1 and that all frames are the same bytes), and prints the time
//! from the command to the last connection having its frame, and the compressions the server counted
//! (`messages_compressed`). The child takes its commands on stdin (`broadcast`, `count`) and answers on
//! stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
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

fn json_like(bytes: usize) -> String {
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
    text
}

/// The child: a server with room for `n` connections; prints `port=P`, then answers `broadcast` (prints
/// `sent`) and `count` (prints `compressions=C`, counted since the last `broadcast`) on stdin/stdout.
fn serve(n: usize, bytes: usize) {
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
    let handle = server.handle();
    let text = json_like(bytes);
    let mut out = std::io::stdout();
    writeln!(out, "port={}", server.local_addr().port()).unwrap();
    out.flush().unwrap();
    let mut before = 0;
    for line in std::io::stdin().lock().lines() {
        match line.expect("stdin").trim() {
            "broadcast" => {
                before = handle.metrics().messages_compressed;
                handle.broadcast_text(&text);
                writeln!(out, "sent").unwrap();
            }
            "count" => writeln!(out, "compressions={}", handle.metrics().messages_compressed - before).unwrap(),
            other => panic!("unknown command {other:?}"),
        }
        out.flush().unwrap();
    }
    server.stop();
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let child = args.peek().is_some_and(|a| a == "--serve");
    if child {
        args.next();
    }
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("CONNECTIONS"));
    let bytes: usize = args.next().map_or(4096, |a| a.parse().expect("BYTES"));
    if child {
        return serve(n, bytes);
    }
    let mut server = Command::new(std::env::current_exe().expect("this example's path"))
        .args(["--serve", &n.to_string(), &bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut commands = server.stdin.take().unwrap();
    let mut answers = BufReader::new(server.stdout.take().unwrap());
    let mut answer = || {
        let mut line = String::new();
        answers.read_line(&mut line).expect("the server's answer");
        line.trim().to_owned()
    };
    let port: u16 = answer().strip_prefix("port=").expect("port=").parse().expect("a port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conns: Vec<TcpStream> = (0..n).map(|_| open(addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    writeln!(commands, "broadcast").unwrap();
    commands.flush().unwrap();
    let mut first: Option<Vec<u8>> = None;
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
        match &first {
            None => first = Some(payload),
            Some(f) => assert_eq!(*f, payload, "every connection gets the same compressed bytes"),
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(answer(), "sent");
    // A reactor publishes its compression count once per loop turn.
    std::thread::sleep(Duration::from_millis(300));
    writeln!(commands, "count").unwrap();
    commands.flush().unwrap();
    let compressions: u64 = answer().strip_prefix("compressions=").expect("compressions=").parse().expect("a count");
    println!(
        "connections={n} message_bytes={bytes} compressed_bytes={} reactors=2 compressions={compressions} \
         all_delivered_after_ms={:.1}",
        first.map_or(0, |f| f.len()),
        elapsed.as_secs_f64() * 1000.0
    );
    drop(conns);
    drop(commands);
    let _ = server.wait();
}

//! The EXPERIMENTAL io_uring echo server (`wsloop::server::uring`): a real server on 127.0.0.1:0 and a
//! hand-written client (raw handshake and frames), so nothing of the server's own code checks it.
#![cfg(all(feature = "io-uring", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wsloop::server::uring::{run_echo, UringEchoConfig, UringEchoStats};

struct Running {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<UringEchoStats>>,
}

impl Running {
    fn start(config: UringEchoConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || run_echo(listener, config, &flag));
        Self { addr, stop, thread }
    }

    fn stop(self) -> UringEchoStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    s
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed in the head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "a server frame is not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    (h[0] & 0x0f, payload)
}

fn assert_closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn echoes_text_binary_pipelined_and_large_messages() {
    let server = Running::start(UringEchoConfig::default());
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(server.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        // 32 pipelined small frames in one write, then a 200 KiB one: it spans many 8 KiB receive
        // buffers (the incomplete-frame path), then a text message.
        let mut burst = Vec::new();
        for j in 0..32u8 {
            burst.extend(frame(2, &[i as u8, j, 7, 7]));
        }
        c.write_all(&burst).unwrap();
        let big: Vec<u8> = (0..200 * 1024).map(|k| (k * 31 + i) as u8).collect();
        c.write_all(&frame(2, &big)).unwrap();
        c.write_all(&frame(1, "héllo".as_bytes())).unwrap();
        for j in 0..32u8 {
            assert_eq!(read_frame(c), (2, vec![i as u8, j, 7, 7]));
        }
        assert_eq!(read_frame(c), (2, big));
        assert_eq!(read_frame(c), (1, "héllo".as_bytes().to_vec()));
    }
    // A clean close: the server answers 1000 and closes the TCP connection.
    let c = &mut clients[0];
    c.write_all(&frame(8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(read_frame(c), (8, 1000u16.to_be_bytes().to_vec()));
    assert_closed(c);
    drop(clients);
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.upgraded), (5, 5));
    assert_eq!(stats.messages, 5 * 34);
    assert!(stats.ring.enters > 0 && stats.ring.sends > 0, "{stats:?}");
}

#[test]
fn a_protocol_error_closes_that_connection_only_with_1002() {
    let server = Running::start(UringEchoConfig::default());
    let mut bad = connect(server.addr);
    let mut good = connect(server.addr);
    // An unmasked client frame is a protocol error (RFC 6455 §5.1).
    bad.write_all(&[0x82, 0x02, 1, 2]).unwrap();
    let (op, payload) = read_frame(&mut bad);
    assert_eq!((op, &payload[..2]), (8, &1002u16.to_be_bytes()[..]));
    assert_closed(&mut bad);
    good.write_all(&frame(2, b"still here")).unwrap();
    assert_eq!(read_frame(&mut good), (2, b"still here".to_vec()));
    server.stop();
}

#[test]
fn a_bad_upgrade_gets_an_http_error_and_a_close() {
    let server = Running::start(UringEchoConfig::default());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    assert_closed(&mut s);
    // A head that never ends is cut at the limit (431), not buffered without end.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nX: ");
    let _ = s.write_all(&vec![b'a'; 20_000]);
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    server.stop();
}

#[test]
fn a_peer_that_does_not_read_is_closed_at_the_backlog_limit() {
    let server = Running::start(UringEchoConfig { max_backlog: 256 << 10, ..UringEchoConfig::default() });
    let mut s = connect(server.addr);
    let mut probe = connect(server.addr);
    // 64 MiB of echoes asked for and none read: the server must not queue them all.
    let msg = frame(2, &vec![9; 64 << 10]);
    let mut written = 0usize;
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..1024 {
        if s.write_all(&msg).is_err() {
            break;
        }
        written += msg.len();
    }
    // Meanwhile the loop serves others.
    probe.write_all(&frame(2, b"ping")).unwrap();
    assert_eq!(read_frame(&mut probe), (2, b"ping".to_vec()));
    assert!(written < 64 << 20, "the server kept reading a peer that never reads ({written} bytes)");
    let stats = server.stop();
    assert_eq!(stats.backlog_closes, 1, "{stats:?}");
}

#[test]
fn exit_when_idle_returns_after_the_last_connection_closed() {
    let server = Running::start(UringEchoConfig { exit_when_idle: true, ..UringEchoConfig::default() });
    let mut a = connect(server.addr);
    let b = connect(server.addr);
    a.write_all(&frame(2, b"x")).unwrap();
    assert_eq!(read_frame(&mut a), (2, b"x".to_vec()));
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!server.thread.is_finished(), "one connection is still open");
    drop(b);
    for _ in 0..100 {
        if server.thread.is_finished() {
            let stats = server.thread.join().unwrap().unwrap();
            assert_eq!((stats.accepted, stats.messages), (2, 1));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the loop did not return once idle");
}

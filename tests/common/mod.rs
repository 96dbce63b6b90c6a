//! A minimal blocking test client built on the protocol core, for driving the server over real sockets.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wsloop::proto::{encode_frame, CloseCode, Connection, ConnectionConfig, Event, OpCode, Role};

/// Headless Chromium over the DevTools protocol (the `cli` feature brings the JSON it speaks).
#[cfg(feature = "cli")]
pub(crate) mod cdp;

/// An owned event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

pub(crate) struct TestClient {
    pub stream: TcpStream,
    pub conn: Connection,
    buf: Vec<u8>,
    pub response_head: String,
}

pub(crate) const KEY: [u8; 4] = [9, 8, 7, 6];

/// Sends a raw HTTP request and returns the whole response head plus whatever followed.
pub(crate) fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl TestClient {
    pub(crate) fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, path, "", ConnectionConfig::default())
    }

    pub(crate) fn connect_with(addr: SocketAddr, path: &str, extra_headers: &str, config: ConnectionConfig) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(upgrade_request(path, extra_headers).as_bytes()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed during handshake: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let response_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(response_head.starts_with("HTTP/1.1 101"), "upgrade refused: {response_head}");
        assert!(response_head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "bad accept key: {response_head}");
        buf.drain(..head_end);
        Self { stream, conn: Connection::new(Role::Client, config, std::time::Instant::now()), buf, response_head }
    }

    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub(crate) fn send_text(&mut self, text: &str) {
        let mut out = Vec::new();
        self.conn.send_text(text, &mut out).unwrap();
        self.send_raw(&out);
    }

    pub(crate) fn send_binary(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.conn.send_binary(data, &mut out).unwrap();
        self.send_raw(&out);
    }

    pub(crate) fn send_ping(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.conn.send_ping(data, &mut out).unwrap();
        self.send_raw(&out);
    }

    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        let mut out = Vec::new();
        self.conn.close(std::time::Instant::now(), CloseCode(code), reason, &mut out).unwrap();
        self.send_raw(&out);
    }

    /// The next event within `timeout`, or `None` on timeout or EOF.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut out = Vec::new();
            let (n, got) = match self.conn.read(&mut self.buf, &mut out) {
                Ok((n, ev)) => (n, ev.map(to_got)),
                Err(e) => panic!("client saw a protocol error: {e}"),
            };
            self.buf.drain(..n);
            if !out.is_empty() {
                let _ = self.stream.write_all(&out);
            }
            if got.is_some() {
                return got;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = vec![0u8; 256 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
                Err(_) => return None,
            }
        }
    }

    pub(crate) fn recv_ok(&mut self) -> Got {
        self.recv(Duration::from_secs(10)).expect("expected an event")
    }

    /// Waits until the server closes TCP; true when it did within `timeout`.
    pub(crate) fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
    }
}

pub(crate) fn to_got(e: Event<'_>) -> Got {
    match e {
        Event::Text(t) => Got::Text(t.into_owned()),
        Event::Binary(b) => Got::Binary(b.into_owned()),
        Event::Ping(p) => Got::Ping(p.to_vec()),
        Event::Pong(p) => Got::Pong(p.to_vec()),
        Event::Close(c) => Got::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
    }
}

/// A masked client frame.
pub(crate) fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, fin, 0, Some(KEY), payload);
    out
}

/// Polls `cond` until it holds or `timeout` passes.
pub(crate) fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

impl TestClient {
    /// Wraps a stream whose upgrade request was already written: reads the 101 head.
    pub(crate) fn from_stream_after_handshake(mut stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let response_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(response_head.starts_with("HTTP/1.1 101"), "{response_head}");
        buf.drain(..head_end);
        Self {
            stream,
            conn: Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now()),
            buf,
            response_head,
        }
    }
}

/// Whether the suites that run their bodies both ways (server, limits, timers) run this time with
/// `Config::io_uring` on: `WSLOOP_TEST_IO_URING=1 cargo test --features io-uring --test server --test
/// limits --test timers`. Each server they start then checks that a ring exists (`io_uring_fds`).
pub(crate) fn io_uring() -> bool {
    std::env::var_os("WSLOOP_TEST_IO_URING").is_some_and(|v| v == "1")
}

/// The io_uring descriptors this process holds (`/proc/self/fd` links to `anon_inode:[io_uring]`).
pub(crate) fn io_uring_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains("io_uring"))
                .count()
        })
        .unwrap_or(0)
}

/// Starts `server` with `Config::io_uring` as [`io_uring`] says (set on its config by the caller) and,
/// when on, fails unless a ring exists afterwards.
pub(crate) fn start_server(server: wsloop::server::Server) -> wsloop::server::RunningServer {
    let running = server.start().unwrap();
    if io_uring() {
        // Each reactor makes its ring on its own thread, which may not have run yet.
        let deadline = Instant::now() + Duration::from_secs(5);
        while io_uring_fds() == 0 {
            assert!(Instant::now() < deadline, "WSLOOP_TEST_IO_URING=1 but no io_uring was made");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    running
}

/// A handler that echoes every message as it came (text as text, binary as binary).
pub(crate) struct Echo;

impl wsloop::server::Handler for Echo {
    fn on_message(&mut self, ctx: &mut wsloop::server::Ctx<'_>, message: wsloop::server::Message<'_>) {
        let _ = match message {
            wsloop::server::Message::Text(t) => ctx.send_text(t),
            wsloop::server::Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

/// Peers that send a batch of frames as fast as the server takes them, and read and drop what comes
/// back, until [`Flood::stop`]: the load that must not keep the reactor from its other connections.
pub(crate) struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Connects `peers` clients to `addr`; each writes 64 binary frames of `payload` bytes in a loop
    /// from one thread and drains its socket from another.
    pub(crate) fn start(addr: SocketAddr, peers: usize, payload: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let batch: Vec<u8> = (0..64).flat_map(|_| client_frame(OpCode::Binary, true, &vec![1; payload])).collect();
        let mut threads = Vec::new();
        for _ in 0..peers {
            let flood = TestClient::connect(addr, "/");
            let (mut writer, mut reader) = (flood.stream.try_clone().unwrap(), flood.stream.try_clone().unwrap());
            let (flag, batch) = (stop.clone(), batch.clone());
            threads.push(std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) && writer.write_all(&batch).is_ok() {}
            }));
            let flag = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut sink = vec![0; 1 << 16];
                reader.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                while !flag.load(Ordering::Relaxed) {
                    let _ = reader.read(&mut sink);
                }
            }));
        }
        Self { stop, threads }
    }

    /// Stops every peer's threads and waits for them.
    pub(crate) fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

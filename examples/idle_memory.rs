//! Measures the user-space memory a `wsloop serve` process spends per idle WebSocket connection, and its
//! handshake rate.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/idle_memory [CONNECTIONS] [SERVER_BINARY] [SERVER_FLAGS...]
//! ```
//!
//! Starts `SERVER_BINARY serve --addr 127.0.0.1:0 --threads 1 SERVER_FLAGS...` (default
//! `target/release/wsloop`, default configuration: keepalive pings every 30 s, so each connection also has
//! a timer armed; `--ping-interval 0` measures without), reads its RSS from `/proc/PID/status`, opens CONNECTIONS (default 10,000)
//! WebSocket connections with raw blocking sockets (handshake only, then idle), reads the RSS again once
//! they are all upgraded and idle, and prints the growth per connection. Needs CONNECTIONS + ~20 open
//! files in this process (the limit here is 20,000). The server, and any process it started, is killed on
//! every way out of the example, a panic included.
//!
//! permessage-deflate: `IDLE_OFFER='permessage-deflate; client_max_window_bits'` sends that
//! `Sec-WebSocket-Extensions` offer (start the server with `--deflate shared|dedicated`), and
//! `IDLE_USE=1` then has every connection send one compressed 4 KiB text message and read the
//! compressed echo before going idle, so that dedicated zlib streams exist ("once used").
//!
//! With `--tls` (or `--tls-full`) as the first SERVER_FLAGS, the example makes a CA and a certificate
//! for localhost (rcgen), starts the server with `--tls-cert`/`--tls-key`, and opens the connections
//! over TLS (rustls, ring); `--tls` lets connections after the warm-up one resume its session (so the
//! handshake rate is that of resumed handshakes), `--tls-full` turns resumption off (full handshakes).
//! The rate is measured from one client thread doing each handshake in turn, so it includes the
//! client's own TLS work.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The server child, owned: when dropped (at the end, on a panic, on any early exit) it is stopped,
/// every process it started is stopped and killed, then it is killed and reaped, so that no server is
/// left running. It stays in this process's group, so a Ctrl-C or a `timeout` (which signal the whole
/// group) still reach it directly as before.
struct ServerProcess(Child);

impl ServerProcess {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our child is not reaped before this, so its pid cannot have been reused. Stopped first, it
        // starts nothing more; then each new layer of descendants is stopped until none is new (a
        // killed parent's children would go to init, out of reach), then all of them are killed.
        let pid = self.pid();
        signal("-STOP", &[pid]);
        let mut stopped: Vec<u32> = Vec::new();
        loop {
            let new: Vec<u32> = descendants(pid).into_iter().filter(|p| !stopped.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            signal("-STOP", &new);
            stopped.extend(new);
        }
        signal("-KILL", &stopped);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`-STOP`, `-KILL`) to `pids` with kill(1); errors (a process already gone) are ignored.
fn signal(signal: &str, pids: &[u32]) {
    if !pids.is_empty() {
        let _ = Command::new("kill").arg(signal).args(pids.iter().map(u32::to_string)).stderr(Stdio::null()).status();
    }
}

/// Every live process below `root` (children, their children, ...), from the parent pids in /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so split after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

/// A folder removed with everything in it when dropped (the TLS certificate and key).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a connection is: a plain socket, or a TLS session over one (kept open, idle).
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

fn handshake(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>, offer: Option<&str>) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr)?;
    match tls {
        None => upgrade(stream, offer).map(Conn::Plain),
        Some(config) => {
            let session = rustls::ClientConnection::new(config.clone(), "localhost".try_into().expect("a name"))
                .map_err(std::io::Error::other)?;
            let tls = rustls::StreamOwned::new(session, stream);
            upgrade(tls, offer).map(|s| Conn::Tls(Box::new(s)))
        }
    }
}

/// Makes a CA and a certificate for localhost in `dir`; returns the client settings trusting the CA
/// (resumption off with `full`) and the server's flags.
fn make_tls(dir: &std::path::Path, full: bool) -> (Arc<rustls::ClientConfig>, Vec<String>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).expect("temp dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "idle_memory CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("params").signed_by(&key, &issuer).expect("leaf");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, leaf.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let mut client = wsloop::client::ClientTls::with_ca_pem(ca_cert.pem().as_bytes()).expect("CA");
    if full {
        client = client.without_resumption();
    }
    let flags = vec![
        "--tls-cert".to_owned(),
        cert_path.to_string_lossy().into_owned(),
        "--tls-key".to_owned(),
        key_path.to_string_lossy().into_owned(),
    ];
    (client.rustls().clone(), flags)
}

fn upgrade<S: Read + Write>(mut stream: S, offer: Option<&str>) -> std::io::Result<S> {
    let extensions = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
    stream.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        )
        .as_bytes(),
    )?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(stream)
}

/// A masked text frame carrying a compressed 4 KiB message (no context: valid for any agreement).
fn compressed_frame() -> Vec<u8> {
    let text: String = (0..500).map(|i| format!("item {i:04} ")).collect::<String>()[..4096].to_owned();
    let mut packed = Vec::new();
    wsloop::sys::Deflater::new(1, 9, 1).unwrap().compress_sync(text.as_bytes(), &mut packed).unwrap();
    packed.truncate(packed.len() - 4);
    let mut frame = Vec::new();
    wsloop::proto::encode_frame(
        &mut frame,
        wsloop::proto::OpCode::Text,
        true,
        wsloop::proto::RSV1,
        Some([1, 2, 3, 4]),
        &packed,
    );
    frame
}

/// Sends `frame` and reads one whole frame back.
fn use_once(stream: &mut impl ReadWrite, frame: &[u8]) {
    stream.write_all(frame).expect("send");
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("echo header");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).expect("length");
            usize::from(u16::from_be_bytes(b))
        }
        127 => panic!("echo too long"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("echo payload");
    assert_eq!(head[0] & 0x40, 0x40, "the echo is compressed (RSV1): is the server's --deflate on?");
}

/// A connection's byte stream, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Conn {
    fn use_once(&mut self, frame: &[u8]) {
        match self {
            Self::Plain(s) => use_once(s, frame),
            Self::Tls(s) => use_once(&mut **s, frame),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("CONNECTIONS"));
    let binary = args.next().unwrap_or_else(|| "target/release/wsloop".to_owned());
    let mut flags: Vec<String> = args.collect();
    let tls_mode = flags.first().filter(|f| *f == "--tls" || *f == "--tls-full").cloned();
    let tls_dir = TempDir(std::env::temp_dir().join(format!("wsloop-idle-memory-{}", std::process::id())));
    let tls = tls_mode.as_ref().map(|mode| {
        flags.remove(0);
        let (client, server_flags) = make_tls(&tls_dir.0, mode == "--tls-full");
        flags.extend(server_flags);
        client
    });
    let mut server = ServerProcess(
        Command::new(&binary)
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1"])
            .args(&flags)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}")),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("server banner");
    let addr: SocketAddr = line
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("cannot find the address in {line:?}"));
    // Warm up: one connection, so lazily allocated reactor state is not counted per connection.
    let offer = std::env::var("IDLE_OFFER").ok();
    let used = std::env::var("IDLE_USE").is_ok_and(|v| v == "1");
    let frame = compressed_frame();
    let mut warm = handshake(addr, tls.as_ref(), offer.as_deref()).expect("warm-up connection");
    if used {
        warm.use_once(&frame);
    }
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(server.pid());
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        match handshake(addr, tls.as_ref(), offer.as_deref()) {
            Ok(mut s) => {
                if used {
                    s.use_once(&frame);
                }
                conns.push(s)
            }
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let resumed = conns
        .iter()
        .filter(|c| matches!(c, Conn::Tls(t) if t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)))
        .count();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.pid());
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "tls={tls_mode:?} flags={flags:?} offer={offer:?} used={used} connections={n} rss_before_kib={before} rss_after_kib={after} bytes_per_connection={per_conn:.0} \
         handshakes_per_second={:.0} resumed={resumed}",
        n as f64 / elapsed.as_secs_f64()
    );
    drop(conns);
    // `server` and `tls_dir` are dropped here: the server killed and reaped, the folder removed.
}

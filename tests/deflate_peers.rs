//! Real clients through permessage-deflate: Python `websockets` and node `ws` each connect to a
//! `Config::deflate` server, negotiate the extension (their own default offers) and echo 1 MiB text
//! and binary messages compressed both ways. The packages are installed under `target/` on first use
//! (`.ci/run` does it beforehand): a venv with `pip install websockets`, and `npm install ws`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wsloop::proto::deflate::{DeflateConfig, DeflateMode};
use wsloop::server::{self, Config, Ctx, Handler, RunningServer, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        let _ = match message {
            server::Message::Text(t) => ctx.send_text(t),
            server::Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn serve(mode: DeflateMode) -> RunningServer {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        deflate: DeflateConfig::with_mode(mode),
        ..Config::default()
    };
    let mut server = Server::new(config);
    server.register_handler("/", |_| Echo);
    server.start().unwrap()
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// target/py-venv with `websockets`, made on first use.
fn python() -> PathBuf {
    let venv = target_dir().join("py-venv");
    let python = venv.join("bin/python3");
    if !Command::new(&python).args(["-c", "import websockets"]).output().is_ok_and(|o| o.status.success()) {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "websockets==15.0.1"]));
    }
    python
}

/// target/deflate-node with `ws`, made on first use.
fn node_modules() -> PathBuf {
    let dir = target_dir().join("deflate-node");
    if !dir.join("node_modules/ws/package.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("ws@8.18.3"));
    }
    dir.join("node_modules")
}

const PY: &str = r#"
import sys
from websockets.sync.client import connect
url = sys.argv[1]
text = "".join('{"id":%d,"user":"name%d","score":%d}\n' % (i, i % 1000, i * 7919 % 10007) for i in range(30000))[: 1 << 20]
data = bytes((i * 31 + (i >> 12)) % 256 for i in range(1 << 20))
with connect(url, max_size=None, open_timeout=10) as ws:
    print("extensions:", ws.response.headers.get("Sec-WebSocket-Extensions"))
    for _ in range(2):
        ws.send(text)
        assert ws.recv(timeout=20) == text, "text echo differs"
        ws.send(data)
        assert ws.recv(timeout=20) == data, "binary echo differs"
print("ok")
"#;

const JS: &str = r#"
const WebSocket = require('ws');
const url = process.argv[process.argv.length - 1];
let text = '';
for (let i = 0; text.length < (1 << 20); i++) text += `{"id":${i},"user":"name${i % 1000}","score":${(i * 7919) % 10007}}\n`;
text = text.slice(0, 1 << 20);
const data = Buffer.alloc(1 << 20);
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 12)) % 256;
const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 0 });
const steps = [text, data, text, data];
let n = 0;
ws.on('upgrade', (res) => console.log('extensions:', res.headers['sec-websocket-extensions']));
ws.on('open', () => ws.send(steps[0]));
ws.on('message', (msg, isBinary) => {
  const want = steps[n];
  const ok = typeof want === 'string' ? (!isBinary && msg.toString() === want) : (isBinary && Buffer.compare(msg, want) === 0);
  if (!ok) { console.log('echo', n, 'differs'); process.exit(1); }
  n += 1;
  if (n === steps.length) { console.log('ok'); ws.close(1000); } else ws.send(steps[n]);
});
ws.on('close', () => process.exit(n === steps.length ? 0 : 1));
ws.on('error', (e) => { console.log('error', e.message); process.exit(1); });
setTimeout(() => { console.log('timeout'); process.exit(1); }, 60000);
"#;

fn check(output: &str, server: &RunningServer) {
    assert!(output.contains("extensions: permessage-deflate"), "not negotiated:\n{output}");
    assert!(output.trim_end().ends_with("ok"), "{output}");
    std::thread::sleep(Duration::from_millis(200));
    let m = server.handle().metrics();
    assert!(m.messages_compressed >= 2, "the server compressed {} echoes", m.messages_compressed);
}

#[test]
fn python_websockets_round_trips_deflated_megabytes() {
    let python = python();
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        let server = serve(mode);
        let url = format!("ws://{}/", server.local_addr());
        let out = run(Command::new(&python).args(["-c", PY, &url]));
        eprintln!("{mode:?}: {out}");
        check(&out, &server);
        // Dedicated answers client_no_context_takeover to an offer without it (RFC 7692 §7.1.1.2): the
        // peer must take it (its messages then inflate with the reactor's shared decompressor).
        assert!(out.contains("client_no_context_takeover"), "{mode:?}: {out}");
        server.stop();
    }
}

#[test]
fn node_ws_round_trips_deflated_megabytes() {
    let modules = node_modules();
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        let server = serve(mode);
        let url = format!("ws://{}/", server.local_addr());
        let out = run(Command::new("node").env("NODE_PATH", &modules).args(["-e", JS, "--", &url]));
        eprintln!("{mode:?}: {out}");
        check(&out, &server);
        // Dedicated answers client_no_context_takeover to an offer without it (RFC 7692 §7.1.1.2): the
        // peer must take it (its messages then inflate with the reactor's shared decompressor).
        assert!(out.contains("client_no_context_takeover"), "{mode:?}: {out}");
        server.stop();
    }
}

/// The pinned Bun binary under target/deflate-bun, installed on first use.
fn bun() -> PathBuf {
    let dir = target_dir().join("deflate-bun");
    let bin = dir.join("node_modules/@oven/bun-linux-x64/bin/bun");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("@oven/bun-linux-x64@1.4.5"));
    }
    bin
}

/// Connects to `port` offering permessage-deflate, sends one uncompressed 4 KiB text frame and returns
/// the answer's `Sec-WebSocket-Extensions` line and the echo frame's first byte and payload length.
fn raw_echo(port: u16) -> (String, u8, usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let extensions =
        head.lines().find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-extensions:")).unwrap_or("").to_owned();
    let text = "{\"id\": 1, \"user\": \"someone\", \"score\": 12345} ".repeat(92);
    let mut frame = Vec::new();
    wsloop::proto::encode_frame(&mut frame, wsloop::proto::OpCode::Text, true, 0, Some([1, 2, 3, 4]), text.as_bytes());
    s.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    s.read_exact(&mut header).unwrap();
    let len = match header[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("an echo of 4 KiB with a 64-bit length"),
        n => usize::from(n),
    };
    (extensions, header[0], len)
}

#[test]
fn bun_echo_compresses_its_echoes_with_deflate() {
    let bun = bun();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/bun/echo.js");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(&bun)
        .arg(&script)
        .arg(port.to_string())
        .arg("--deflate")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "bun did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (extensions, first, len) = raw_echo(port);
    let _ = child.kill();
    let _ = child.wait();
    assert!(extensions.contains("permessage-deflate"), "not negotiated: {extensions:?}");
    assert_eq!(first & 0x0f, 1, "a text frame");
    assert_eq!(first & 0x40, 0x40, "RSV1: Bun compressed its echo ({len} bytes)");
    assert!(len < 4140 / 2, "{len} bytes for a 4,140-byte message");
}

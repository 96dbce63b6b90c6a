//! Headless Chromium through permessage-deflate: a page served by a `Config::deflate` server opens a
//! WebSocket (Chromium offers permessage-deflate by default), echoes 1 MiB text and binary messages
//! compressed both ways, and reports the negotiated extensions and the outcome over the same socket.
//!
//! Needs `/usr/bin/chromium` (`.ci/run` installs it when missing; `WSLOOP_CHROMIUM=/path` points
//! elsewhere).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wsloop::http::{HttpRequest, HttpResponse};
use wsloop::proto::deflate::{DeflateConfig, DeflateMode};
use wsloop::server::{self, Config, Ctx, Handler, Server};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>deflate</title><script>
let text = '';
for (let i = 0; text.length < (1 << 20); i++) text += `{"id":${i},"user":"name${i % 1000}","score":${(i * 7919) % 10007}}\n`;
text = text.slice(0, 1 << 20);
const data = new Uint8Array(1 << 20);
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 12)) % 256;
const steps = [text, data, text, data];
let n = 0;
const ws = new WebSocket(`ws://${location.host}/echo`);
ws.binaryType = 'arraybuffer';
ws.onopen = () => ws.send(steps[0]);
ws.onmessage = (e) => {
  const want = steps[n];
  let ok;
  if (typeof want === 'string') ok = e.data === want;
  else { const got = new Uint8Array(e.data); ok = got.length === want.length && got.every((b, i) => b === want[i]); }
  if (!ok) { ws.send(`REPORT echo ${n} differs`); return; }
  n += 1;
  if (n === steps.length) ws.send(`REPORT ok extensions=${ws.extensions}`); else ws.send(steps[n]);
};
ws.onerror = () => console.log('error');
</script>"#;

/// Echoes, except that a text starting with `REPORT ` goes to the test.
struct Echo(mpsc::Sender<String>);

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: server::Message<'_>) {
        let _ = match message {
            server::Message::Text(t) if t.starts_with("REPORT ") => {
                let _ = self.0.send(t["REPORT ".len()..].to_owned());
                Ok(())
            }
            server::Message::Text(t) => ctx.send_text(t),
            server::Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

/// Chromium in a process group of its own, killed with its helpers when dropped.
struct Chromium(Child);

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = wsloop::sys::kill_process_group(self.0.id());
        let _ = self.0.wait();
    }
}

#[test]
fn headless_chromium_round_trips_deflated_megabytes() {
    let binary = std::env::var("WSLOOP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&binary).exists(), "{binary} is missing: apt-get install chromium (.ci/run does)");
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        let (tx, rx) = mpsc::channel();
        let config = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            deflate: DeflateConfig::with_mode(mode),
            ..Config::default()
        };
        let mut server = Server::new(config);
        server.register_handler("/echo", move |_| Echo(tx.clone()));
        server.set_http_handler(|req: &HttpRequest| {
            (req.path == "/page").then(|| HttpResponse::with_body(200, "text/html; charset=utf-8", PAGE))
        });
        let server = server.start().unwrap();
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deflate-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let _chromium = Chromium(
            Command::new(&binary)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
                .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
                .arg("--remote-debugging-port=0")
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("http://{}/page", server.local_addr()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let report = rx.recv_timeout(Duration::from_secs(60)).expect("the page reported nothing within 60 s");
        eprintln!("{mode:?}: {report}");
        assert!(report.starts_with("ok extensions=permessage-deflate"), "{mode:?}: {report}");
        let compressed = server.handle().metrics().messages_compressed;
        assert!(compressed >= 4, "{mode:?}: the server compressed {compressed} echoes");
        server.stop();
        let _ = std::fs::remove_dir_all(&profile);
    }
}

//! The `wsloop` binary over TLS: `serve --tls-cert/--tls-key`, `client wss:// --ca`, `bench wss:// --ca`,
//! with a CA and a certificate made in the test (rcgen) and written to a temporary folder.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::cdp::{start_chromium, Cdp, Group};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_wsloop");

/// A folder with ca.pem, cert.pem (for localhost) and key.pem; removed when dropped.
struct Pems {
    dir: PathBuf,
    /// The leaf's SubjectPublicKeyInfo, DER (what Chromium's SPKI pin is a hash of).
    spki: Vec<u8>,
}

impl Pems {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wsloop-tls-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "cli CA");
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Self { dir, spki: key.subject_public_key_info() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Pems {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `wsloop serve` over TLS on a free port; killed when dropped. Returns the process and the wss URL.
fn serve(pems: &Pems) -> (Group, String) {
    let mut child = Group::spawn(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1", "--tls-cert", &pems.path("cert.pem")])
            .args(["--tls-key", &pems.path("key.pem")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped()),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first
        .strip_prefix("wsloop serving on wss://")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let port = addr.rsplit(':').next().unwrap().to_owned();
    (child, format!("wss://localhost:{port}/"))
}

fn run(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let killer = {
        let id = child.id();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
        })
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let ok = child.wait().unwrap().success();
    drop(killer);
    (ok, out, err)
}

#[test]
fn client_and_bench_reach_a_tls_serve_with_the_ca_and_fail_clearly_without() {
    let pems = Pems::new("both");
    let (mut server, url) = serve(&pems);
    let (ok, out, err) = run(&["client", &url, "--ca", &pems.path("ca.pem")], b"hello tls\n");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "hello tls");

    // Without --ca the Mozilla roots do not know the test CA: a clear error, exit 1.
    let (ok, _, err) = run(&["client", &url], b"x\n");
    assert!(!ok);
    assert!(err.contains("not from a trusted CA"), "{err}");

    let (ok, out, err) = run(&["bench", &url, "--ca", &pems.path("ca.pem"), "-c", "4", "-n", "400", "--json"], b"");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["messages"]["received"], 400, "{v}");
    assert_eq!(v["connections"]["opened"], 4, "{v}");
    let (ok, out, err) =
        run(&["bench", &url, "--ca", &pems.path("ca.pem"), "--no-tls-resume", "-c", "2", "-n", "20", "--json"], b"");
    assert!(ok, "{err}");
    assert!(out.contains("\"received\":20"), "{out}");
    server.kill();
}

/// SHA-256 with the TLS provider's own hash (no hash crate of our own).
fn sha256(bytes: &[u8]) -> Vec<u8> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    suite.tls13().expect("a TLS 1.3 suite").common.hash_provider.hash(bytes).as_ref().to_vec()
}

/// Chromium's `--ignore-certificate-errors-spki-list` switch trusting exactly the key of `pems`' leaf.
fn pin_switch(pems: &Pems) -> String {
    let pin = base64::engine::general_purpose::STANDARD.encode(sha256(&pems.spki));
    format!("--ignore-certificate-errors-spki-list={pin}")
}

/// The dashboard over https:// in headless Chromium, driven over DevTools: the page loads, trusting
/// exactly the pinned key, and its live feed arrives over wss://. The test waits (20 s at most) for the
/// feed's first message in the page itself, not for a virtual-time budget that does not wait for
/// WebSockets.
#[test]
fn headless_chromium_loads_the_dashboard_over_https_and_its_feed_over_wss() {
    let pems = Pems::new("chromium");
    // Declared in this order so that they drop in the other: Chromium, then the server, then the folder
    // (Chromium's profile is in it), on every exit path.
    let (_server, url) = serve(&pems);
    let page = url.replace("wss://", "https://") + "dashboard";
    let (_chromium, devtools) = start_chromium(&pems.dir.join("profile"), &[pin_switch(&pems)]);
    let mut cdp = Cdp::connect(&devtools);
    // Fails when Chromium refuses the certificate (the navigation's errorText), else waits for the load.
    let dashboard = cdp.open("dashboard", &page, 900);
    assert_eq!(cdp.eval(&dashboard, "location.protocol"), "https:", "the dashboard came over https://");
    // The feed's first message fills the header line: it came over wss:// from the TLS listener.
    let header = cdp.wait_within(
        &dashboard,
        Duration::from_secs(20),
        "the feed's first message",
        "(() => { const t = document.getElementById('server').textContent; return t.includes('echo mode') && t; })()",
    );
    let header = header.as_str().unwrap_or_default().to_owned();
    assert!(header.contains("wss://"), "the dashboard should show the wss:// address: {header}");
    let report = cdp.report(&dashboard);
    assert_eq!(cdp.eval(&dashboard, "document.getElementById('status').textContent"), "live", "{report}");

    // Exactly that key: a server with another certificate from the same kind of CA is refused.
    let other = Pems::new("chromium-other");
    let (_other_server, other_url) = serve(&other);
    let refused = cdp.call(
        Some(&dashboard.session),
        "Page.navigate",
        json!({ "url": other_url.replace("wss://", "https://") + "dashboard" }),
    );
    assert!(
        refused["errorText"].as_str().is_some_and(|e| e.contains("CERT")),
        "a certificate with another key should be refused: {refused}"
    );
}

/// `wsloop serve --tls-cert --tls-key --plain-listen ADDR`: wss:// on --addr, ws:// on ADDR (announced
/// on stderr), both answered by the same server.
#[test]
fn serve_with_plain_listen_answers_ws_beside_wss() {
    let pems = Pems::new("plain");
    let mut child = Group::spawn(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1", "--tls-cert", &pems.path("cert.pem")])
            .args(["--tls-key", &pems.path("key.pem"), "--plain-listen", "127.0.0.1:0", "--no-dashboard"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let port = first
        .strip_prefix("wsloop serving on wss://")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    let plain = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no plain listener announced");
        if let Some(url) = line.trim().strip_prefix("wsloop: plain ws:// also on ") {
            break url.to_owned();
        }
    };
    let (ok, out, stderr) = run(&["client", &format!("{plain}/"), "--ca", &pems.path("ca.pem")], b"plain one\n");
    assert!(ok, "{stderr}");
    assert_eq!(out.trim(), "plain one");
    let wss = format!("wss://localhost:{port}/");
    let (ok, out, stderr) = run(&["client", &wss, "--ca", &pems.path("ca.pem")], b"secure one\n");
    assert!(ok, "{stderr}");
    assert_eq!(out.trim(), "secure one");
    child.kill();
}

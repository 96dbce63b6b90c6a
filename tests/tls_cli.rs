//! The `wsloop` binary over TLS: `serve --tls-cert/--tls-key`, `client wss:// --ca`, `bench wss:// --ca`,
//! with a CA and a certificate made in the test (rcgen) and written to a temporary folder.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};

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

/// `wsloop serve` over TLS on a free port; killed when dropped. Returns the child and the wss URL.
fn serve(pems: &Pems) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1", "--tls-cert", &pems.path("cert.pem")])
        .args(["--tls-key", &pems.path("key.pem")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
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
    let _ = server.kill();
    let _ = server.wait();
}

/// SHA-256 with the TLS provider's own hash (no hash crate of our own).
/// Chromium's `--dump-dom` of `page` with a fresh profile, trusting exactly the key pinned by `pin`;
/// a page that never loads (a refused certificate) is given 30 s at most.
fn dump_dom(chromium: &str, profile: &std::path::Path, pin: &str, page: &str) -> Vec<u8> {
    let mut browser = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--ignore-certificate-errors-spki-list={pin}"))
        .args(["--virtual-time-budget=5000", "--dump-dom", page])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = browser.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    // A page that never loads (a refused certificate) keeps Chromium waiting: 30 s at most.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while browser.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = wsloop::sys::kill_process_group(browser.id());
    let _ = browser.wait();
    reader.join().unwrap()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    suite.tls13().expect("a TLS 1.3 suite").common.hash_provider.hash(bytes).as_ref().to_vec()
}

#[test]
fn headless_chromium_loads_the_dashboard_over_https_and_its_feed_over_wss() {
    let chromium = std::env::var("WSLOOP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does this when it is missing)"
    );
    let pems = Pems::new("chromium");
    let (mut server, url) = serve(&pems);
    let page = url.replace("wss://", "https://") + "dashboard";
    // Trust exactly this certificate's key (Chromium's SPKI pin), not every certificate.
    let pin = base64::engine::general_purpose::STANDARD.encode(sha256(&pems.spki));
    // `--dump-dom` prints the page once Chromium's virtual time budget is spent, and virtual time does
    // not wait for a WebSocket: on a loaded machine the dump can come before the feed's first message
    // (about one run in five under heavy load). Up to three tries, each a fresh profile; the assertion
    // below still needs the feed to have arrived over wss:// in one of them.
    let mut out = Vec::new();
    for attempt in 0..3 {
        out = dump_dom(&chromium, &pems.dir.join(format!("profile-{attempt}")), &pin, &page);
        if String::from_utf8_lossy(&out).contains("echo mode") {
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let dom = String::from_utf8_lossy(&out);
    // The feed's first message fills the header line: it came over wss:// from the TLS listener.
    assert!(dom.contains("echo mode"), "the dashboard's feed did not arrive: {dom}");
    assert!(dom.contains("wss://"), "the dashboard should show the wss:// address: {dom}");
}

/// `wsloop serve --tls-cert --tls-key --plain-listen ADDR`: wss:// on --addr, ws:// on ADDR (announced
/// on stderr), both answered by the same server.
#[test]
fn serve_with_plain_listen_answers_ws_beside_wss() {
    let pems = Pems::new("plain");
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--threads", "1", "--tls-cert", &pems.path("cert.pem")])
        .args(["--tls-key", &pems.path("key.pem"), "--plain-listen", "127.0.0.1:0", "--no-dashboard"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let port = first
        .strip_prefix("wsloop serving on wss://")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let mut err = BufReader::new(child.stderr.take().unwrap());
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
    let _ = child.kill();
    let _ = child.wait();
}

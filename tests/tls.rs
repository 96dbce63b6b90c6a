//! wss:// end to end, with a CA and certificates made in the test (rcgen): the server's TLS inside the
//! reactor (echo, 16 MiB messages, many connections, `/metrics` over TLS, SNI, client certificates,
//! resumption) and the client's typed errors (unknown CA, wrong host name, expired certificate,
//! handshake timeout); a peer that sends garbage or stops mid-handshake loses only its own connection.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use wsloop::client::{connect, ClientOptions, ClientTls, Error, Message, Operation, TlsFailure};
use wsloop::metrics::HandshakeFailure;
use wsloop::server::{Config, Ctx, Handler, RunningServer, Server, TlsConfig};

const SEC: Duration = Duration::from_secs(1);

/// A test CA and the PEM of its certificate.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf certificate for `names` (PEM chain, PEM key).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_with(names, |_| {})
    }

    fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::with_ca_pem(self.pem.as_bytes()).unwrap()
    }
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: wsloop::server::Message<'_>) {
        let _ = match message {
            wsloop::server::Message::Text(t) => ctx.send_text(t),
            wsloop::server::Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn serve(tls: TlsConfig, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        close_timeout: Duration::from_millis(300),
        metrics_path: Some("/metrics".into()),
        tls: Some(tls),
        ..Config::default()
    };
    tweak(&mut config);
    let mut server = Server::new(config);
    server.register_handler("/echo", |_| Echo);
    server.start().unwrap()
}

fn localhost_server(ca: &Ca) -> RunningServer {
    let (cert, key) = ca.leaf(&["localhost"]);
    serve(TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap(), |_| {})
}

fn options(tls: ClientTls) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.tls = Some(tls);
    o.handshake_timeout = 5 * SEC;
    o
}

fn url(addr: SocketAddr) -> String {
    format!("wss://localhost:{}/echo", addr.port())
}

fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// A rustls client over a blocking socket, for what the WebSocket client does not do (raw requests,
/// server names that do not resolve, bytes outside the protocol).
fn raw_tls(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(5 * SEC)).unwrap();
    let conn = rustls::ClientConnection::new(config, name.to_owned().try_into().unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

#[test]
fn echo_over_wss_and_metrics_over_https() {
    let ca = Ca::new("echo CA");
    let server = localhost_server(&ca);
    let mut client = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    client.send_text("hello over TLS").unwrap();
    assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Text("hello over TLS".into()));
    client.send_binary(&[1, 2, 3]).unwrap();
    assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Binary(vec![1, 2, 3]));
    client.close_and_wait(wsloop::proto::CloseCode::NORMAL, "", Some(5 * SEC)).unwrap();

    let mut https = raw_tls(server.local_addr(), "localhost", ca.client_tls().rustls().clone());
    assert_eq!(https.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    https.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = https.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("wsloop_connections_accepted_total"), "{body}");
    server.stop();
}

/// Sends one 60,000-byte binary message as soon as the connection opens.
struct Greeter;

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_binary(&[7u8; 60_000]);
    }
}

#[test]
fn records_the_session_holds_while_the_socket_is_full_go_out_when_it_drains() {
    // One message small enough to be encrypted at once, to a peer with a tiny receive buffer that
    // reads late: the socket blocks with records inside the TLS session and nothing in the queue.
    // They must go out on the next writable event (fails if the reactor only flushes queues).
    let ca = Ca::new("held CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let mut config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        tls: Some(TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap()),
        ..Config::default()
    };
    config.close_timeout = Duration::from_millis(300);
    let mut server = Server::new(config);
    server.register_handler("/greet", |_| Greeter);
    let server = server.start().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    // A small MSS keeps the server's send buffer small too (Linux sizes it by segments).
    socket.set_tcp_mss(536).unwrap();
    socket.connect(&server.local_addr().into()).unwrap();
    let sock: TcpStream = socket.into();
    sock.set_read_timeout(Some(5 * SEC)).unwrap();
    let conn =
        rustls::ClientConnection::new(ca.client_tls().rustls().clone(), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        b"GET /greet HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_and_frame = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + 4 + 60_000 {
                break end + 4;
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) => panic!("closed after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("stalled after {} bytes: {e}", got.len()),
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 101"));
    assert_eq!(&got[head_and_frame..head_and_frame + 4], &[0x82, 126, 0xea, 0x60]);
    assert!(got[head_and_frame + 4..].iter().all(|&b| b == 7));
    server.stop();
}

#[test]
fn a_16_mib_message_goes_both_ways() {
    let ca = Ca::new("big CA");
    let server = localhost_server(&ca);
    let mut client = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    client.send_binary(&big).unwrap();
    match client.read_message(Some(30 * SEC)).unwrap() {
        Message::Binary(got) => assert!(got == big, "16 MiB echo differs (len {})", got.len()),
        other => panic!("expected binary, got {other:?}"),
    }
    server.stop();
}

#[test]
fn many_connections_echo_at_once() {
    let ca = Ca::new("many CA");
    let server = localhost_server(&ca);
    let tls = ca.client_tls();
    let mut clients: Vec<_> =
        (0..64).map(|_| connect(&url(server.local_addr()), options(tls.clone())).unwrap()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_text(&format!("m{i}")).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text(format!("m{i}")));
    }
    assert_eq!(server.handle().metrics().active_connections, 64);
    server.stop();
}

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let ca = Ca::new("garbage CA");
    let server = localhost_server(&ca);
    let mut good = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    let mut bad = TcpStream::connect(server.local_addr()).unwrap();
    bad.set_read_timeout(Some(5 * SEC)).unwrap();
    bad.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // The server answers with an alert (or nothing) and closes.
    let mut sink = Vec::new();
    let _ = bad.read_to_end(&mut sink);
    assert!(sink.len() < 64, "a plaintext request got {} bytes back", sink.len());
    let handle = server.handle();
    assert!(eventually(5 * SEC, || handle.metrics().handshake_failures_for(HandshakeFailure::TlsProtocol) == 1));
    good.send_text("still here").unwrap();
    assert_eq!(good.read_message(Some(5 * SEC)).unwrap(), Message::Text("still here".into()));
    server.stop();
}

#[test]
fn a_corrupt_record_after_the_handshake_closes_only_that_connection() {
    let ca = Ca::new("corrupt CA");
    let server = localhost_server(&ca);
    let mut good = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    let mut bad = raw_tls(server.local_addr(), "localhost", ca.client_tls().rustls().clone());
    // An application-data record whose ciphertext is garbage: decryption fails on the server.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend_from_slice(&[0x5a; 0x40]);
    bad.sock.write_all(&record).unwrap();
    let mut sink = [0u8; 256];
    let ended = loop {
        match bad.sock.read(&mut sink) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(ended, "the server kept a connection whose record did not decrypt");
    good.send_text("unaffected").unwrap();
    assert_eq!(good.read_message(Some(5 * SEC)).unwrap(), Message::Text("unaffected".into()));
    server.stop();
}

#[test]
fn a_peer_that_stops_mid_handshake_is_dropped_at_the_handshake_deadline() {
    let ca = Ca::new("stall CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let tls = TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap();
    let server = serve(tls, |c| c.handshake_timeout = Duration::from_millis(300));
    // The first bytes of a TLS handshake record, then silence.
    let mut stalled = TcpStream::connect(server.local_addr()).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    stalled.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut good = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = stalled.read_to_end(&mut sink);
    assert!(started.elapsed() < 3 * SEC, "the stalled peer was kept {:?}", started.elapsed());
    assert_eq!(server.handle().metrics().handshake_failures_for(HandshakeFailure::Timeout), 1);
    good.send_text("fine").unwrap();
    assert_eq!(good.read_message(Some(5 * SEC)).unwrap(), Message::Text("fine".into()));
    server.stop();
}

#[test]
fn the_second_connection_resumes_the_first_ones_session() {
    let ca = Ca::new("resume CA");
    let server = localhost_server(&ca);
    let tls = ca.client_tls();
    let mut first = connect(&url(server.local_addr()), options(tls.clone())).unwrap();
    // The session tickets arrive after the handshake: one message round trip makes sure they are in.
    first.send_text("x").unwrap();
    first.read_message(Some(5 * SEC)).unwrap();
    assert_eq!(first.tls_resumed(), Some(false));
    let second = connect(&url(server.local_addr()), options(tls.clone())).unwrap();
    assert_eq!(second.tls_resumed(), Some(true));
    // Other settings (another session cache) start afresh.
    let third = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    assert_eq!(third.tls_resumed(), Some(false));
    server.stop();
}

#[test]
fn sni_picks_the_certificate_for_the_name_asked() {
    let ca = Ca::new("sni CA");
    let (default_cert, default_key) = ca.leaf(&["localhost"]);
    let (other_cert, other_key) = ca.leaf(&["other.test"]);
    let tls = TlsConfig::builder()
        .certificate_pem(default_cert.as_bytes(), default_key.as_bytes())
        .unwrap()
        .sni_certificate_pem("Other.Test", other_cert.as_bytes(), other_key.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let server = serve(tls, |_| {});
    let config = ca.client_tls().rustls().clone();
    let first_cert = |name: &str| {
        let s = raw_tls(server.local_addr(), name, config.clone());
        s.conn.peer_certificates().unwrap()[0].to_vec()
    };
    let der = |pem: &str| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    };
    assert_eq!(first_cert("other.test"), der(&other_cert));
    assert_eq!(first_cert("localhost"), der(&default_cert));
    server.stop();
}

#[test]
fn a_required_client_certificate_admits_holders_and_refuses_others() {
    let ca = Ca::new("mtls CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let clients_ca = Ca::new("clients CA");
    let tls = TlsConfig::builder()
        .certificate_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
        .client_ca_pem(clients_ca.pem.as_bytes(), true)
        .unwrap()
        .build()
        .unwrap();
    let server = serve(tls, |_| {});
    let (client_cert, client_key) = clients_ca.leaf(&["client one"]);
    let holder =
        ClientTls::with_client_certificate(ca.pem.as_bytes(), client_cert.as_bytes(), client_key.as_bytes()).unwrap();
    let mut ok = connect(&url(server.local_addr()), options(holder)).unwrap();
    ok.send_text("let in").unwrap();
    assert_eq!(ok.read_message(Some(5 * SEC)).unwrap(), Message::Text("let in".into()));

    match connect(&url(server.local_addr()), options(ca.client_tls())) {
        Err(Error::Tls { failure: TlsFailure::CertificateRefused, .. }) => {}
        other => panic!("expected a refused client certificate, got {other:?}"),
    }
    // A certificate from another CA is refused too.
    let (stray_cert, stray_key) = ca.leaf(&["stray"]);
    let stray =
        ClientTls::with_client_certificate(ca.pem.as_bytes(), stray_cert.as_bytes(), stray_key.as_bytes()).unwrap();
    assert!(matches!(
        connect(&url(server.local_addr()), options(stray)),
        Err(Error::Tls { failure: TlsFailure::CertificateRefused, .. })
    ));
    let handle = server.handle();
    assert!(eventually(5 * SEC, || handle.metrics().handshake_failures_for(HandshakeFailure::TlsCertificate) == 2));
    server.stop();
}

#[test]
fn an_unknown_ca_is_a_typed_error_and_the_server_counts_the_refusal() {
    let ca = Ca::new("private CA");
    let server = localhost_server(&ca);
    // The default roots (Mozilla's) do not include the test CA.
    let err = connect(&url(server.local_addr()), ClientOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::UnknownIssuer, .. }), "{err:?}");
    assert!(err.to_string().contains("trusted CA"), "{err}");
    // Another CA's trust is no better.
    let err = connect(&url(server.local_addr()), options(Ca::new("other CA").client_tls())).unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::UnknownIssuer, .. }), "{err:?}");
    let handle = server.handle();
    assert!(eventually(5 * SEC, || handle.metrics().handshake_failures_for(HandshakeFailure::TlsCertificate) == 2));
    server.stop();
}

#[test]
fn a_wrong_host_name_is_a_typed_error() {
    let ca = Ca::new("names CA");
    let (cert, key) = ca.leaf(&["not-this-host.test"]);
    let server =
        serve(TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap(), |_| {});
    let err = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::WrongHostName, .. }), "{err:?}");
    server.stop();
}

#[test]
fn an_expired_certificate_is_a_typed_error() {
    let ca = Ca::new("old CA");
    let (cert, key) = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let server =
        serve(TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap(), |_| {});
    let err = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::Expired, .. }), "{err:?}");
    server.stop();
}

#[test]
fn a_server_that_never_answers_the_client_hello_is_a_tls_handshake_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let ca = Ca::new("silent CA");
    let mut o = options(ca.client_tls());
    o.handshake_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = connect(&url(addr), o).unwrap_err();
    assert!(matches!(err, Error::Timeout(Operation::TlsHandshake)), "{err:?}");
    assert!(started.elapsed() < 3 * SEC);
    drop(silent);
}

#[test]
fn pem_files_load_and_bad_pem_is_a_clear_error() {
    let ca = Ca::new("files CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let dir = std::env::temp_dir().join(format!("wsloop-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let server = serve(TlsConfig::from_pem_files(&cert_path, &key_path).unwrap(), |_| {});
    let mut client = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
    client.send_text("from files").unwrap();
    assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Text("from files".into()));
    server.stop();
    // The key file as the certificate: no certificate in it.
    assert!(matches!(TlsConfig::from_pem_files(&key_path, &key_path), Err(wsloop::server::TlsError::NoCertificate)));
    // The certificate file as the key: no key in it.
    assert!(matches!(TlsConfig::from_pem_files(&cert_path, &cert_path), Err(wsloop::server::TlsError::NoPrivateKey)));
    // A key that is not the certificate's.
    let (_, other_key) = ca.leaf(&["localhost"]);
    assert!(TlsConfig::builder().certificate_pem(cert.as_bytes(), other_key.as_bytes()).is_err());
    let missing = TlsConfig::from_pem_files(dir.join("missing.pem"), &key_path).unwrap_err();
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An in-loop client that sends one text on open and records what it hears.
struct Probe {
    tx: std::sync::mpsc::Sender<Result<String, String>>,
}

impl Handler for Probe {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_text("in-loop over TLS");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: wsloop::server::Message<'_>) {
        if let wsloop::server::Message::Text(t) = message {
            let _ = self.tx.send(Ok(t.to_owned()));
        }
        let _ = ctx.close(wsloop::proto::CloseCode::NORMAL, "");
    }

    fn on_connect_error(&mut self, error: &wsloop::server::ConnectError) {
        let verdict = match error {
            wsloop::server::ConnectError::Tls { failure: TlsFailure::UnknownIssuer, .. } => "unknown issuer".into(),
            other => format!("other: {other}"),
        };
        let _ = self.tx.send(Err(verdict));
    }
}

#[test]
fn in_loop_clients_speak_wss_and_report_an_unknown_ca_by_type() {
    let ca = Ca::new("in-loop CA");
    let server = localhost_server(&ca);
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    let host = format!("localhost:{}", server.local_addr().port());
    let (tx, rx) = std::sync::mpsc::channel();
    let trusted = wsloop::server::ConnectOptions { tls: Some(ca.client_tls()), ..Default::default() };
    engine.handle().connect(server.local_addr(), &host, "/echo", trusted, Probe { tx: tx.clone() });
    assert_eq!(rx.recv_timeout(5 * SEC).unwrap(), Ok("in-loop over TLS".to_owned()));
    let untrusted = wsloop::server::ConnectOptions { tls: Some(ClientTls::default()), ..Default::default() };
    engine.handle().connect(server.local_addr(), &host, "/echo", untrusted, Probe { tx });
    assert_eq!(rx.recv_timeout(5 * SEC).unwrap(), Err("unknown issuer".to_owned()));
    engine.stop();
    server.stop();
}

#[test]
fn the_pool_and_the_reconnecting_client_speak_wss() {
    let ca = Ca::new("pool CA");
    let server = localhost_server(&ca);
    let target = url(server.local_addr());
    let mut pool_options = wsloop::client::PoolOptions::default();
    pool_options.client = options(ca.client_tls());
    let pool = wsloop::client::Pool::new(pool_options);
    {
        let mut conn = pool.acquire(&target, Some(5 * SEC)).unwrap();
        conn.send_text("pooled").unwrap();
        assert_eq!(conn.read_message(Some(5 * SEC)).unwrap(), Message::Text("pooled".into()));
    }
    // Returned to the pool and lent again: the same TLS connection.
    let mut again = pool.acquire(&target, Some(5 * SEC)).unwrap();
    again.send_text("again").unwrap();
    assert_eq!(again.read_message(Some(5 * SEC)).unwrap(), Message::Text("again".into()));
    assert_eq!(server.handle().metrics().connections_accepted, 1);

    let mut rc = wsloop::client::ReconnectingClient::connect(
        &target,
        options(ca.client_tls()),
        wsloop::client::ReconnectPolicy::default(),
        (),
    )
    .unwrap();
    rc.send_text("reconnecting").unwrap();
    assert_eq!(rc.read_message(Some(5 * SEC)).unwrap(), Message::Text("reconnecting".into()));
    server.stop();
}

/// Python's `websockets` (a venv made by .ci/run: `target/py-venv`, shared with tests/deflate_peers.rs, or `WSLOOP_PYTHON`), with the test
/// CA as its only trust anchor and host name checking on.
#[test]
fn python_websockets_echoes_over_wss_with_the_ca_trusted() {
    let python = std::env::var("WSLOOP_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/py-venv/bin/python3").to_owned());
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: python3 -m venv target/py-venv && target/py-venv/bin/pip install websockets \
         (.ci/run does this)"
    );
    let ca = Ca::new("python CA");
    let server = localhost_server(&ca);
    let dir = std::env::temp_dir().join(format!("wsloop-tls-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let script = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with connect(sys.argv[1], ssl=ctx) as ws:
        await ws.send("hello from python")
        print(await ws.recv())
        await ws.send(bytes(range(256)) * 1024)
        reply = await ws.recv()
        print(len(reply), reply == bytes(range(256)) * 1024)
asyncio.run(main())
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &url(server.local_addr()), &ca_path.to_string_lossy()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "hello from python\n262144 True\n");
    // The same client without the CA: refused by its own verification.
    let out = std::process::Command::new(&python)
        .args(["-c", &script.replace("cafile=sys.argv[2]", ""), &url(server.local_addr()), ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED"));
    std::fs::remove_dir_all(&dir).unwrap();
    server.stop();
}

/// The proxy peers of tests/proxy (tinyproxy, danted).
#[path = "proxy/peers.rs"]
#[allow(dead_code)]
mod peers;

/// Sends "tunnel" on open and reports the echo (or the failure).
struct TunnelProbe(std::sync::mpsc::Sender<Result<String, String>>);

impl Handler for TunnelProbe {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_text("tunnel");
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: wsloop::server::Message<'_>) {
        if let wsloop::server::Message::Text(t) = message {
            let _ = self.0.send(Ok(t.to_owned()));
        }
    }

    fn on_connect_error(&mut self, error: &wsloop::server::ConnectError) {
        let _ = self.0.send(Err(error.to_string()));
    }
}

#[test]
fn wss_goes_through_http_and_socks5_proxies_blocking_and_in_loop() {
    use wsloop::client::Proxy;
    let ca = Ca::new("proxy CA");
    let server = localhost_server(&ca);
    let port = server.local_addr().port();
    let tinyproxy = peers::ProxyProcess::tinyproxy(None);
    let dante = peers::ProxyProcess::dante();
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    for proxy in [tinyproxy.url("http"), dante.url("socks5h")] {
        // Blocking: TLS over the tunnelled stream, the server's name verified end to end.
        let mut o = options(ca.client_tls());
        o.proxy = Some(Proxy::parse(&proxy).unwrap());
        let mut client = connect(&url(server.local_addr()), o).unwrap();
        client.send_text("tls in a tunnel").unwrap();
        assert_eq!(client.read_message(Some(5 * SEC)).unwrap(), Message::Text("tls in a tunnel".into()), "{proxy}");
        // In the loop: the tunnel on the helper thread, then the reactor's TLS session over it.
        let (tx, rx) = std::sync::mpsc::channel();
        let options = wsloop::server::ConnectOptions {
            tls: Some(ca.client_tls()),
            proxy: Some(Proxy::parse(&proxy).unwrap()),
            ..Default::default()
        };
        engine.handle().connect_url(&url(server.local_addr()), options, TunnelProbe(tx));
        assert_eq!(rx.recv_timeout(10 * SEC).unwrap(), Ok("tunnel".into()), "{proxy}");
    }
    assert!(
        eventually(10 * SEC, || tinyproxy.log().matches(&format!("CONNECT localhost:{port} ")).count() == 2),
        "{}",
        tinyproxy.log()
    );
    assert!(eventually(10 * SEC, || dante.log().matches(&format!("127.0.0.1.{port}")).count() >= 2), "{}", dante.log());
    server.stop();
}

/// The handshake of a rustls client over a blocking socket, to its end: `Err` with the rustls error
/// when it fails.
fn raw_handshake(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<(), rustls::Error> {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(e
                .into_inner()
                .and_then(|inner| inner.downcast::<rustls::Error>().ok())
                .map_or_else(|| rustls::Error::General("io".into()), |e| *e));
        }
    }
    Ok(())
}

/// At the connection cap (503 on a plain listener) and at a per-IP cap (429), a TLS listener refuses
/// with a fatal TLS alert, which the client reads as such (not as a corrupt record), and counts the
/// refusal; the connection already open is served on.
#[test]
fn refusals_on_a_tls_listener_are_tls_alerts_and_counted() {
    let ca = Ca::new("refusal CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let tls = || TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap();
    let config = ca.client_tls().rustls().clone();
    for per_ip in [false, true] {
        let server = serve(tls(), |c| {
            if per_ip {
                c.max_connections_per_ip = Some(1);
            } else {
                c.max_connections = 1;
            }
        });
        let handle = server.handle();
        let mut held = connect(&url(server.local_addr()), options(ca.client_tls())).unwrap();
        let refused = raw_handshake(server.local_addr(), config.clone());
        assert!(
            matches!(refused, Err(rustls::Error::AlertReceived(rustls::AlertDescription::InternalError))),
            "per_ip {per_ip}: {refused:?}"
        );
        let m = handle.metrics();
        let counted = if per_ip { m.connections_refused_per_ip } else { m.connections_refused };
        assert_eq!(counted, 1, "per_ip {per_ip}");
        held.send_text("served on").unwrap();
        assert_eq!(held.read_message(Some(5 * SEC)).unwrap(), Message::Text("served on".into()));
        server.stop();
    }
}

/// `Config::plain_addr`: a plain listener beside the TLS one, on the same two reactors: wss:// on
/// one address, ws:// (and http:// for /metrics) on the other, counted in the same metrics; a TLS
/// hello on the plain listener is not TLS to it (no TLS session: it gets no ServerHello).
#[test]
fn a_plain_listener_serves_ws_beside_the_tls_one() {
    let ca = Ca::new("plain beside CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let tls = TlsConfig::builder().certificate_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap();
    let server = serve(tls, |c| {
        c.threads = 2;
        c.plain_addr = Some("127.0.0.1:0".parse().unwrap());
    });
    let plain = server.plain_addr().expect("a plain listener");
    assert_ne!(plain.port(), server.local_addr().port());
    let mut secure = Vec::new();
    let mut clear = Vec::new();
    for i in 0..4 {
        secure.push(connect(&url(server.local_addr()), options(ca.client_tls())).unwrap());
        clear.push(connect(&format!("ws://127.0.0.1:{}/echo", plain.port()), ClientOptions::default()).unwrap());
        for c in [secure.last_mut().unwrap(), clear.last_mut().unwrap()] {
            c.send_text(&format!("m{i}")).unwrap();
            assert_eq!(c.read_message(Some(5 * SEC)).unwrap(), Message::Text(format!("m{i}")));
        }
    }
    // Plain HTTP on the plain listener.
    let mut http = TcpStream::connect(plain).unwrap();
    http.set_read_timeout(Some(5 * SEC)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = http.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body:.80}");
    // A TLS client on the plain listener: the server parses its hello as HTTP and refuses it.
    let refused = raw_handshake(plain, ca.client_tls().rustls().clone());
    assert!(refused.is_err());
    let handle = server.handle();
    assert!(eventually(5 * SEC, || handle.metrics().active_connections == 8));
    drop(secure);
    drop(clear);
    server.stop();
}

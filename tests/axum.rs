//! A real axum app (axum::serve on 127.0.0.1) whose WebSocket routes hand the socket to a wsloop engine
//! after the app's own middleware ran: `wsloop::integrations::axum`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use common::{client_frame, eventually, raw_request, upgrade_request, Got, TestClient};
use wsloop::client::{self, ClientOptions, Message as ClientMessage};
use wsloop::integrations::axum::{wsloop_upgrade, WsloopUpgrade};
use wsloop::metrics::{HandshakeFailure, MetricsSnapshot};
use wsloop::proto::deflate::{DeflateConfig, DeflateMode};
use wsloop::proto::OpCode;
use wsloop::server::{Config, Ctx, Handle, Handler, Message, RunningServer, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => ctx.send_text(text),
            Message::Binary(data) => ctx.send_binary(data),
        };
    }
}

/// What the auth layer attaches to an authenticated request.
#[derive(Clone)]
struct UserId(String);

/// Greets with what reached its factory (the user id from the auth layer, the path and query), then
/// echoes.
struct Greeter {
    user: String,
    target: String,
}

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let agent = ctx.header("x-agent").unwrap_or("-").to_owned();
        let _ = ctx.send_text(&format!("hello {} at {} from {agent}", self.user, self.target));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        Echo.on_message(ctx, message);
    }
}

/// `Authorization: Bearer <user>` or 401.
async fn auth(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match user {
        Some(user) => {
            request.extensions_mut().insert(UserId(user));
            next.run(request).await
        }
        None => (StatusCode::UNAUTHORIZED, "token required\n").into_response(),
    }
}

async fn chat(upgrade: WsloopUpgrade, Extension(UserId(user)): Extension<UserId>) -> Response {
    let target = match &upgrade.request().query {
        Some(q) => format!("{}?{q}", upgrade.request().path),
        None => upgrade.request().path.clone(),
    };
    upgrade.on_upgrade(move |_request| Greeter { user, target })
}

struct App {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    engine: RunningServer,
}

impl App {
    fn start(threads: usize) -> Self {
        Self::start_with(Config { threads, ..Config::default() })
    }

    fn start_with(config: Config) -> Self {
        let mut engine = Server::new(config);
        engine.register_handler("/echo", |_| Echo);
        let engine = engine.start_without_listeners().unwrap();
        let app = Router::new()
            .route("/hello", get(|| async { "hello from axum\n" }))
            .route("/chat", get(chat).route_layer(middleware::from_fn(auth)))
            .route("/echo", get(wsloop_upgrade))
            .route("/unrouted", get(wsloop_upgrade))
            // A response layer of the app's own: it applies to the 101 too.
            .layer(middleware::map_response(|mut response: Response| async move {
                response.headers_mut().insert("x-app", HeaderValue::from_static("layered"));
                response
            }))
            .with_state(engine.handle());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { runtime, addr, engine }
    }

    fn handle(&self) -> Handle {
        self.engine.handle()
    }

    fn stop(self) {
        self.runtime.shutdown_background();
        self.engine.stop();
    }
}

fn held(m: &MetricsSnapshot) -> u64 {
    m.tcp_connections_by_phase.iter().sum()
}

#[test]
fn the_auth_layer_refuses_without_a_token_and_the_engine_counts_nothing() {
    let app = App::start(1);
    let response = raw_request(app.addr, &upgrade_request("/chat", "Connection: close\r\n"));
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.ends_with("token required\n"), "{response}");
    // Give a stray command time to arrive before asserting that there was none.
    std::thread::sleep(Duration::from_millis(100));
    let m = app.handle().metrics();
    assert_eq!((m.connections_accepted, m.connections_upgraded, m.handshake_failures, held(&m)), (0, 0, 0, 0));

    let mut ws = TestClient::connect_with(
        app.addr,
        "/chat?room=7",
        "Authorization: Bearer alice\r\nX-Agent: test\r\n",
        Default::default(),
    );
    assert!(ws.response_head.contains("x-app: layered"), "the app's layers apply to the 101: {}", ws.response_head);
    assert_eq!(ws.recv_ok(), Got::Text("hello alice at /chat?room=7 from test".into()));
    ws.send_text("echo me");
    assert_eq!(ws.recv_ok(), Got::Text("echo me".into()));
    let m = app.handle().metrics();
    assert_eq!((m.connections_accepted, m.connections_upgraded, m.active_connections), (1, 1, 1));
    app.stop();
}

#[test]
fn frames_pipelined_right_after_the_request_head_are_not_lost() {
    let app = App::start(1);
    let mut stream = TcpStream::connect(app.addr).unwrap();
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend(client_frame(OpCode::Text, true, b"first"));
    bytes.extend(client_frame(OpCode::Text, true, b"second"));
    // One write: hyper reads the frames together with the head, into its own buffer.
    stream.write_all(&bytes).unwrap();
    let mut ws = TestClient::from_stream_after_handshake(stream);
    assert_eq!(ws.recv_ok(), Got::Text("first".into()));
    assert_eq!(ws.recv_ok(), Got::Text("second".into()));
    app.stop();
}

#[test]
fn bad_upgrades_get_their_4xx_from_the_axum_side_and_are_counted() {
    let app = App::start(1);
    let no_key = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n";
    let response = raw_request(app.addr, no_key);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("Missing Sec-WebSocket-Key"), "{response}");
    let v12 = upgrade_request("/echo", "Connection: close\r\n").replace("Version: 13", "Version: 12");
    let response = raw_request(app.addr, &v12);
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(response.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{response}");
    // A route mounted in axum for a path the engine has no handler for.
    let response = raw_request(app.addr, &upgrade_request("/unrouted", "Connection: close\r\n"));
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let handle = app.handle();
    assert!(eventually(Duration::from_secs(5), || handle.metrics().handshake_failures == 3));
    let m = handle.metrics();
    assert_eq!(m.handshake_failures_for(HandshakeFailure::BadRequest), 1);
    assert_eq!(m.handshake_failures_for(HandshakeFailure::Version), 1);
    assert_eq!(m.handshake_failures_for(HandshakeFailure::NotFound), 1);
    assert_eq!((m.connections_accepted, held(&m)), (0, 0));
    app.stop();
}

#[test]
fn a_thousand_connections_are_handed_over_and_echoed_while_plain_routes_keep_working() {
    const CONNS: usize = 1000;
    let app = App::start(2);
    let addr = app.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let hellos = Arc::new(AtomicU64::new(0));
    let http = {
        let (stop, hellos) = (stop.clone(), hellos.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                let mut response = String::new();
                s.read_to_string(&mut response).unwrap();
                assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("hello from axum\n"), "{response}");
                hellos.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut clients = Vec::new();
                for i in 0..CONNS / 4 {
                    let mut ws = TestClient::connect(addr, "/echo");
                    let text = format!("{w}-{i}");
                    ws.send_text(&text);
                    assert_eq!(ws.recv_ok(), Got::Text(text));
                    clients.push(ws);
                }
                clients
            })
        })
        .collect();
    let clients: Vec<TestClient> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert_eq!(clients.len(), CONNS);
    let m = app.handle().metrics();
    assert_eq!((m.connections_upgraded, m.active_connections), (CONNS as u64, CONNS as u64));
    stop.store(true, Ordering::Relaxed);
    http.join().unwrap();
    assert!(hellos.load(Ordering::Relaxed) > 0, "plain routes answered meanwhile");
    drop(clients);
    let handle = app.handle();
    assert!(eventually(Duration::from_secs(10), || held(&handle.metrics()) == 0));
    app.stop();
}

#[test]
fn permessage_deflate_is_negotiated_by_the_engine_on_the_handed_over_path() {
    let deflate = DeflateConfig::with_mode(DeflateMode::Shared);
    let app = App::start_with(Config { threads: 1, deflate, ..Config::default() });
    let options = ClientOptions::default().deflate(deflate).read_timeout(Duration::from_secs(10));
    let mut ws = client::connect(&format!("ws://{}/echo", app.addr), options).unwrap();
    let text = "compressible ".repeat(1000);
    ws.send_text(&text).unwrap();
    match ws.read_message(Some(Duration::from_secs(10))).unwrap() {
        ClientMessage::Text(echo) => assert_eq!(echo, text),
        other => panic!("expected text, got {other:?}"),
    }
    // The reactor publishes its compression count once per loop turn: read it when it has.
    let handle = app.handle();
    assert!(
        eventually(Duration::from_secs(5), || handle.metrics().messages_compressed >= 1),
        "the echo went out compressed"
    );
    drop(ws);
    app.stop();
}

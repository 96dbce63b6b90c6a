//! axum serves HTTP; WebSocket upgrades reach wsloop either through an axum route (`app`: middleware
//! runs first) or by peeking before hyper (`peek`: zero overhead, path only).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use wsloop::client::{connect, ClientOptions, Message as ClientMessage};
use wsloop::proto::CloseCode;
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

fn engine() -> RunningServer {
    let mut engine = Server::new(Config { threads: 1, ..Config::default() });
    engine.register_handler("/ws", |_| Echo);
    engine.start_without_listeners().unwrap()
}

fn get(addr: SocketAddr, target: &str) -> String {
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    write!(http, "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    response
}

fn echo_once(addr: SocketAddr, handle: &Handle) {
    let mut ws = connect(&format!("ws://{addr}/ws"), ClientOptions::default()).unwrap();
    ws.send_text("through axum to wsloop").unwrap();
    match ws.read_message(Some(Duration::from_secs(5))).unwrap() {
        ClientMessage::Text(text) => assert_eq!(text, "through axum to wsloop"),
        other => panic!("expected text, got {other:?}"),
    }
    ws.close_and_wait(CloseCode::NORMAL, "done", Some(Duration::from_secs(5))).unwrap();
    assert_eq!(handle.metrics().connections_upgraded, 1);
    assert_eq!(handle.metrics().connections_accepted, 1, "wsloop accepted nothing itself: it adopted the socket");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

#[test]
fn an_axum_route_hands_websockets_to_wsloop_after_its_middleware() {
    let engine = engine();
    let handle = engine.handle();
    let runtime = runtime();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, axum_handoff::app(handle)).await });
    let handle = engine.handle();

    let response = get(addr, "/hello");
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("hello from axum\n"), "{response}");
    echo_once(addr, &handle);

    // The auth layer answers before wsloop sees anything.
    let refused = connect(&format!("ws://{addr}/me/ws"), ClientOptions::default()).unwrap_err();
    assert!(refused.to_string().contains("401"), "no user: refused with 401, got: {refused}");
    assert_eq!(handle.metrics().handshake_failures, 0, "the engine never saw the refused request");
    let mut me = connect(&format!("ws://{addr}/me/ws?user=ada"), ClientOptions::default()).unwrap();
    match me.read_message(Some(Duration::from_secs(5))).unwrap() {
        ClientMessage::Text(text) => assert_eq!(text, "hello ada"),
        other => panic!("expected text, got {other:?}"),
    }
    drop(me);
    runtime.shutdown_background();
    engine.stop();
}

#[test]
fn peeking_hands_websockets_to_wsloop_before_hyper() {
    let engine = engine();
    let handle = engine.handle();
    let runtime = runtime();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(axum_handoff::peek::serve(listener, handle.clone(), axum_handoff::peek::plain_app()));

    let response = get(addr, "/hello");
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("hello from axum\n"), "{response}");
    echo_once(addr, &handle);
    runtime.shutdown_background();
    engine.stop();
}

#[test]
fn only_websocket_upgrades_under_ws_are_peeked_away() {
    use axum_handoff::peek::is_websocket_request;
    assert!(is_websocket_request(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    assert!(is_websocket_request(b"GET /ws?room=1 HTTP/1.1\r\nupgrade: WebSocket\r\n"));
    assert!(!is_websocket_request(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!is_websocket_request(b"GET /hello HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    assert!(!is_websocket_request(b"GET /wsx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
}

//! axum serves HTTP; `/ws` upgrades are handed to wsloop, which completes them and echoes.

use std::io::{Read, Write};
use std::time::Duration;

use wsloop::client::{connect, ClientOptions, Message as ClientMessage};
use wsloop::proto::CloseCode;
use wsloop::server::{Config, Ctx, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => ctx.send_text(text),
            Message::Binary(data) => ctx.send_binary(data),
        };
    }
}

#[test]
fn axum_serves_http_and_hands_websockets_to_wsloop() {
    let mut engine = Server::new(Config { threads: 1, ..Config::default() });
    engine.register_handler("/ws", |_| Echo);
    let engine = engine.start_without_listeners().unwrap();
    let handle = engine.handle();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(axum_handoff::serve(listener, handle.clone(), axum_handoff::app()));

    // Plain HTTP goes to axum.
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from axum\n"), "{response}");

    // WebSockets go to wsloop.
    let mut ws = connect(&format!("ws://{addr}/ws"), ClientOptions::default()).unwrap();
    ws.send_text("through axum to wsloop").unwrap();
    match ws.read_message(Some(Duration::from_secs(5))).unwrap() {
        ClientMessage::Text(text) => assert_eq!(text, "through axum to wsloop"),
        other => panic!("expected text, got {other:?}"),
    }
    ws.close_and_wait(CloseCode::NORMAL, "done", Some(Duration::from_secs(5))).unwrap();
    assert_eq!(handle.metrics().connections_upgraded, 1);
    assert_eq!(handle.metrics().connections_accepted, 1, "wsloop accepted nothing itself: it adopted the socket");

    runtime.shutdown_background();
    engine.stop();
}

#[test]
fn only_websocket_upgrades_under_ws_are_handed_over() {
    assert!(axum_handoff::is_websocket_request(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    assert!(axum_handoff::is_websocket_request(b"GET /ws?room=1 HTTP/1.1\r\nupgrade: WebSocket\r\n"));
    assert!(!axum_handoff::is_websocket_request(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!axum_handoff::is_websocket_request(b"GET /hello HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    assert!(!axum_handoff::is_websocket_request(b"GET /wsx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
}

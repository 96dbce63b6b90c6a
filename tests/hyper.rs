//! `wsloop::integrations::hyper` on a bare hyper 1 HTTP/1 server (no axum, no hyper-util `auto`
//! builder: the upgraded transport is the plain `TokioIo<TcpStream>`).

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::TcpStream;

use common::{client_frame, raw_request, upgrade_request, Got, TestClient};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use wsloop::integrations::hyper::{accept, refusal_response};
use wsloop::proto::OpCode;
use wsloop::server::{Config, Ctx, Handle, Handler, Message, Server};

/// Says which user its factory was given, then echoes.
struct Echo(String);

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_text(&format!("user {}", self.0));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            let _ = ctx.send_text(text);
        }
    }
}

async fn route(engine: Handle, request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let (mut parts, _body) = request.into_parts();
    if parts.uri.path() != "/ws" {
        return Ok(Response::new("plain\n".to_owned()));
    }
    let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("nobody").to_owned();
    Ok(match accept(&engine, &mut parts) {
        Ok(upgrade) => upgrade.with_handler(move |_| Echo(user)).respond(),
        Err(refusal) => refusal_response(&refusal),
    })
}

#[test]
fn a_bare_hyper_server_hands_upgrades_over_with_their_pipelined_frames() {
    let engine = Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners().unwrap();
    let handle = engine.handle();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = handle.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let engine = served.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| route(engine.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });

    let response = raw_request(addr, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("plain\n"), "{response}");
    let response =
        raw_request(addr, &upgrade_request("/ws", "Connection: close\r\n").replace("Version: 13", "Version: 7"));
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");

    let mut stream = TcpStream::connect(addr).unwrap();
    let mut bytes = upgrade_request("/ws", "X-User: bob\r\n").into_bytes();
    bytes.extend(client_frame(OpCode::Text, true, b"right behind the head"));
    stream.write_all(&bytes).unwrap();
    let mut ws = TestClient::from_stream_after_handshake(stream);
    assert_eq!(ws.recv_ok(), Got::Text("user bob".into()));
    assert_eq!(ws.recv_ok(), Got::Text("right behind the head".into()));
    assert_eq!(handle.metrics().connections_upgraded, 1);
    drop(ws);
    runtime.shutdown_background();
    engine.stop();
}

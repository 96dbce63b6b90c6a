//! `Handle::accept_upgrade` + `Handle::adopt_upgraded` driven by a hand-written "other HTTP server" (std
//! sockets and httparse): the engine checks the request, computes the 101, and a connection it adopts
//! after that 101 gets the same limits, timeouts and metrics as one it accepted itself.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{client_frame, eventually, upgrade_request, Got, TestClient};
use wsloop::proto::negotiate::SubprotocolPolicy;
use wsloop::proto::OpCode;
use wsloop::server::{AcceptedUpgrade, Config, Ctx, Handle, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let opened = format!("open {} {}", ctx.path(), ctx.protocol().unwrap_or("-"));
        let _ = ctx.send_text(&opened);
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => ctx.send_text(text),
            Message::Binary(data) => ctx.send_binary(data),
        };
    }
}

/// The other server's side of one connection: reads the request head (and whatever followed it), asks
/// the engine, answers, and hands the socket over. Returns the refusal status, if any.
fn serve_one(listener: &TcpListener, engine: &Handle) -> Option<u16> {
    let (mut stream, _) = listener.accept().unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, method, target, headers) = loop {
        let n = stream.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        if let httparse::Status::Complete(len) = req.parse(&buf).unwrap() {
            let headers: Vec<(String, Vec<u8>)> =
                req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
            break (len, req.method.unwrap().to_owned(), req.path.unwrap().to_owned(), headers);
        }
    };
    match engine.accept_upgrade(&method, 1, &target, headers) {
        Ok(accepted) => {
            write_101(&mut stream, &accepted);
            engine.adopt_upgraded(stream, accepted, buf[head_len..].to_vec());
            None
        }
        Err(refusal) => {
            let head = format!("HTTP/1.1 {} Refused\r\nContent-Length: {}\r\n\r\n", refusal.status, refusal.body.len());
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(refusal.body.as_bytes()).unwrap();
            Some(refusal.status)
        }
    }
}

fn write_101(stream: &mut TcpStream, accepted: &AcceptedUpgrade) {
    let mut response = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in accepted.response_headers() {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).unwrap();
}

fn engine(config: Config) -> (wsloop::server::RunningServer, TcpListener, SocketAddr) {
    let mut server = Server::new(Config { threads: 1, ..config });
    server.register_handler("/echo", |_| Echo);
    let running = server.start_without_listeners().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (running, listener, addr)
}

#[test]
fn an_adopted_connection_opens_with_the_engines_subprotocol_and_its_pipelined_frames() {
    let config = Config { subprotocols: SubprotocolPolicy::Preferred(vec!["chat".into()]), ..Config::default() };
    let (running, listener, addr) = engine(config);
    let handle = running.handle();
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut bytes = upgrade_request("/echo", "Sec-WebSocket-Protocol: other, chat\r\n").into_bytes();
    bytes.extend(client_frame(OpCode::Text, true, b"pipelined"));
    stream.write_all(&bytes).unwrap();
    assert_eq!(serve_one(&listener, &handle), None);
    let mut ws = TestClient::from_stream_after_handshake(stream);
    assert!(ws.response_head.contains("Sec-WebSocket-Protocol: chat\r\n"), "{}", ws.response_head);
    assert_eq!(ws.recv_ok(), Got::Text("open /echo chat".into()));
    assert_eq!(ws.recv_ok(), Got::Text("pipelined".into()));
    let m = handle.metrics();
    assert_eq!((m.connections_accepted, m.connections_upgraded, m.active_connections), (1, 1, 1));
    drop(ws);
    running.stop();
}

#[test]
fn an_adopted_connection_keeps_the_engines_frame_limit_and_idle_timeout() {
    let config = Config { max_frame_size: 16, idle_timeout: Some(Duration::from_millis(300)), ..Config::default() };
    let (running, listener, addr) = engine(config);
    let handle = running.handle();

    let stream = TcpStream::connect(addr).unwrap();
    (&stream).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    serve_one(&listener, &handle);
    let mut ws = TestClient::from_stream_after_handshake(stream);
    assert_eq!(ws.recv_ok(), Got::Text("open /echo -".into()));
    ws.send_text("far more than sixteen bytes");
    assert!(matches!(ws.recv_ok(), Got::Close(Some((1009, _)))));

    let stream = TcpStream::connect(addr).unwrap();
    (&stream).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    serve_one(&listener, &handle);
    let mut idle = TestClient::from_stream_after_handshake(stream);
    assert_eq!(idle.recv_ok(), Got::Text("open /echo -".into()));
    assert!(matches!(idle.recv(Duration::from_secs(5)), Some(Got::Close(Some((1001, _))))));
    assert!(eventually(Duration::from_secs(5), || handle.metrics().idle_timeouts == 1));
    drop((ws, idle));
    running.stop();
}

#[test]
fn the_engine_refuses_bad_requests_and_past_its_ceiling_closes_with_1013() {
    let (running, listener, addr) = engine(Config { max_connections: 1, ..Config::default() });
    let handle = running.handle();
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.write_all(upgrade_request("/echo", "").replace("Version: 13", "Version: 8").as_bytes()).unwrap();
    assert_eq!(serve_one(&listener, &handle), Some(426));
    assert!(eventually(Duration::from_secs(5), || handle.metrics().handshake_failures == 1));

    // Two requests accepted while the engine holds nothing, then both adopted: the second is one too many.
    let streams: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut accepted = Vec::new();
    for stream in &streams {
        let mut s = stream;
        s.write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        let mut head = vec![0u8; 4096];
        let n = server_side.read(&mut head).unwrap();
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        req.parse(&head[..n]).unwrap();
        let headers = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
        let upgrade = handle.accept_upgrade("GET", 1, "/echo", headers).unwrap();
        write_101(&mut server_side, &upgrade);
        accepted.push((server_side, upgrade));
    }
    for (server_side, upgrade) in accepted {
        handle.adopt_upgraded(server_side, upgrade, Vec::new());
    }
    let mut clients = streams.into_iter().map(TestClient::from_stream_after_handshake);
    let (mut first, mut second) = (clients.next().unwrap(), clients.next().unwrap());
    assert_eq!(first.recv_ok(), Got::Text("open /echo -".into()));
    assert!(matches!(second.recv_ok(), Got::Close(Some((1013, _)))));
    assert!(second.wait_eof(Duration::from_secs(5)));
    let m = handle.metrics();
    assert_eq!((m.connections_accepted, m.connections_refused, m.active_connections), (2, 1, 1));
    // With one connection held, the engine refuses before any 101.
    let third = TcpStream::connect(addr).unwrap();
    (&third).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    assert_eq!(serve_one(&listener, &handle), Some(503));
    drop(first);
    running.stop();
}

/// Asks the engine about `stream`'s request (already written) and sends the 101, without adopting.
fn accept_only(listener: &TcpListener, engine: &Handle) -> (TcpStream, AcceptedUpgrade) {
    let (mut server_side, _) = listener.accept().unwrap();
    let mut head = vec![0u8; 4096];
    let n = server_side.read(&mut head).unwrap();
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    req.parse(&head[..n]).unwrap();
    let headers = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    let upgrade = engine.accept_upgrade("GET", 1, "/echo", headers).unwrap();
    write_101(&mut server_side, &upgrade);
    (server_side, upgrade)
}

#[test]
fn a_panicking_factory_closes_with_1011_and_a_stopping_engine_with_1001() {
    let (running, listener, addr) = engine(Config::default());
    let handle = running.handle();
    let client = TcpStream::connect(addr).unwrap();
    (&client).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    let (server_side, upgrade) = accept_only(&listener, &handle);
    let upgrade = upgrade.with_handler(|_| -> Echo { panic!("factory fails (expected by this test)") });
    handle.adopt_upgraded(server_side, upgrade, Vec::new());
    let mut ws = TestClient::from_stream_after_handshake(client);
    assert!(matches!(ws.recv_ok(), Got::Close(Some((1011, _)))));
    assert!(ws.wait_eof(Duration::from_secs(5)));
    assert!(eventually(Duration::from_secs(5), || handle.metrics().connections_refused == 1));
    assert_eq!(handle.metrics().connections_upgraded, 0);

    // A connection that does not answer the stop's close keeps the reactor alive (stopping) for up to
    // the close timeout; one accepted before the stop and adopted after it gets a 1001 and no on_open.
    let holder = TcpStream::connect(addr).unwrap();
    (&holder).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    serve_one(&listener, &handle);
    let mut holder = TestClient::from_stream_after_handshake(holder);
    assert_eq!(holder.recv_ok(), Got::Text("open /echo -".into()));
    let client = TcpStream::connect(addr).unwrap();
    (&client).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    let (server_side, upgrade) = accept_only(&listener, &handle);
    // Not read (so not answered) until the end: the stop's 1001 waits for the holder's reply.
    handle.stop();
    handle.adopt_upgraded(server_side, upgrade, Vec::new());
    let mut late = TestClient::from_stream_after_handshake(client);
    assert!(matches!(late.recv_ok(), Got::Close(Some((1001, _)))));
    assert!(late.wait_eof(Duration::from_secs(5)));
    assert_eq!(handle.metrics().connections_refused, 2);
    assert!(matches!(holder.recv_ok(), Got::Close(Some((1001, _)))));
    drop(holder);
    running.join();
}

#[test]
fn an_adopted_connection_keeps_the_engines_message_rate_limit() {
    use wsloop::server::{RateLimit, RateLimitPolicy};
    let config = Config {
        message_rate: Some(RateLimit { per_second: 10.0, burst: 5.0 }),
        rate_limit_policy: RateLimitPolicy::Close,
        ..Config::default()
    };
    let (running, listener, addr) = engine(config);
    let handle = running.handle();
    let stream = TcpStream::connect(addr).unwrap();
    (&stream).write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
    assert_eq!(serve_one(&listener, &handle), None);
    let mut ws = TestClient::from_stream_after_handshake(stream);
    assert_eq!(ws.recv_ok(), Got::Text("open /echo -".into()));
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(client_frame(OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    ws.send_raw(&burst);
    let mut echoed = 0;
    let close = loop {
        match ws.recv(Duration::from_secs(5)) {
            Some(Got::Text(_)) => echoed += 1,
            other => break other,
        }
    };
    assert_eq!(close, Some(Got::Close(Some((1008, "rate limit exceeded".into())))));
    assert_eq!(echoed, 6, "messages echoed past a burst of 5");
    assert!(eventually(Duration::from_secs(5), || handle.metrics().rate_limit_closes == 1));
    running.stop();
}

//! Echo server on fastwebsockets (hyper 1 upgrade), one current-thread tokio runtime (one core).
//!
//! `fastws-echo PORT`: listens on 127.0.0.1:PORT and echoes every text message as text and every binary
//! message as binary, on any path. `FragmentCollector` reassembles fragmented messages (and checks UTF-8 of
//! text); auto-close and auto-pong are on (fastwebsockets' defaults, set explicitly). The default
//! maximum message size (64 MiB) is well above the 64 KiB the benchmarks send.

use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn on_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: fastws-echo PORT");
        std::process::exit(2)
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("fastws-echo listening on ws://127.0.0.1:{port}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(on_request))
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

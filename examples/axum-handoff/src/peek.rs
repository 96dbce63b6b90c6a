//! The zero-overhead hand-off: each accepted connection is peeked at before hyper sees it; a WebSocket
//! upgrade for a path under `/ws` is read up to the end of its request head and handed, with those
//! bytes, to the wsloop engine (`Handle::adopt`), which completes the upgrade on one of its reactors.
//! Everything else is served by axum through hyper. No axum layer runs for a WebSocket: use this only
//! when the path alone decides (no authentication, no session), else use [`crate::app`].

use std::io;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use wsloop::server::Handle;

/// The axum side: plain HTTP routes.
pub fn plain_app() -> axum::Router {
    axum::Router::new().route("/hello", axum::routing::get(|| async { "hello from axum\n" }))
}

/// Whether a (possibly partial) request head asks for a WebSocket upgrade on a `/ws` path.
pub fn is_websocket_request(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    let upgrade = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade") && value.to_ascii_lowercase().contains("websocket")
        })
    });
    (path == "/ws" || path.starts_with("/ws/") || path.starts_with("/ws?")) && upgrade
}

/// Accepts connections forever, routing each one to wsloop or axum.
pub async fn serve(listener: TcpListener, engine: Handle, app: axum::Router) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let engine = engine.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = route(stream, engine, app).await {
                eprintln!("connection failed: {e}");
            }
        });
    }
}

async fn route(mut stream: TcpStream, engine: Handle, app: axum::Router) -> io::Result<()> {
    // Peek until the request head is complete (or the peek buffer is full).
    let mut peeked = vec![0u8; 8192];
    let seen = loop {
        let seen = stream.peek(&mut peeked).await?;
        if seen == 0 || seen == peeked.len() || peeked[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    };
    if is_websocket_request(&peeked[..seen]) {
        // Read the head for real (it and anything behind it go to wsloop), then hand the socket over.
        let mut already_read = Vec::with_capacity(seen);
        let mut chunk = [0u8; 4096];
        while !already_read.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            already_read.extend_from_slice(&chunk[..n]);
        }
        engine.adopt(stream.into_std()?, already_read);
        return Ok(());
    }
    let service = TowerToHyperService::new(app);
    Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(|e| io::Error::other(e.to_string()))
}

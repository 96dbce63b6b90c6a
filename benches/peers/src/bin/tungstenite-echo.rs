//! Echo server on tokio-tungstenite, one current-thread tokio runtime (one core).
//!
//! `tungstenite-echo PORT`: listens on 127.0.0.1:PORT and echoes every text message as text and every binary
//! message as binary, on any path. tungstenite answers pings and close frames itself; its default limits
//! (64 MiB messages, 16 MiB frames) are well above the 64 KiB the benchmarks send.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let (write, read) = ws.split();
    // `forward` feeds the sink while the stream has messages ready and flushes when it would wait:
    // several echoes that arrived in one read leave in one write.
    let _ = read.try_filter(|m| future::ready(m.is_text() || m.is_binary())).forward(write).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: tungstenite-echo PORT");
        std::process::exit(2)
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("tungstenite-echo listening on ws://127.0.0.1:{port}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

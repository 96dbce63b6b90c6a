//! Echo server on the `ws` crate (ws-rs 0.9): one mio event loop on one thread, by design.
//!
//! `wsrs-echo PORT`: listens on 127.0.0.1:PORT and echoes every text message as text and every binary
//! message as binary, on any path. ws-rs answers pings and close frames itself. Its default connection
//! cap (100) is raised so the idle-connection scenario fits; its default frame and message limits are
//! unbounded.

struct Echo(ws::Sender);

impl ws::Handler for Echo {
    fn on_message(&mut self, msg: ws::Message) -> ws::Result<()> {
        self.0.send(msg)
    }
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: wsrs-echo PORT");
        std::process::exit(2)
    });
    let socket = ws::Builder::new()
        .with_settings(ws::Settings { max_connections: 20_000, tcp_nodelay: true, ..ws::Settings::default() })
        .build(Echo)
        .expect("ws-rs builder");
    println!("wsrs-echo listening on ws://127.0.0.1:{port}");
    socket.listen(("127.0.0.1", port)).expect("ws-rs listen");
}

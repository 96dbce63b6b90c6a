//! The smallest wsloop server: echoes every message on every path.
//!
//! `cargo run --release --example echo` then connect to ws://127.0.0.1:9001/

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

fn main() -> std::io::Result<()> {
    let mut server = Server::new(Config::default());
    server.register_handler("*", |_| Echo);
    let running = server.start()?;
    println!("echo server on ws://{}/", running.local_addr());
    running.join();
    Ok(())
}

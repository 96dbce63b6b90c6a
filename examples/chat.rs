//! A chat room: every message a client sends goes to everyone in its room (`/chat?room=NAME`), across
//! every reactor thread, through wsloop's topics.
//!
//! `cargo run --release --example chat` then open several connections to ws://127.0.0.1:9001/chat?room=a

use wsloop::proto::CloseCode;
use wsloop::server::{Config, Ctx, Handler, Message, Server};

struct Member {
    room: String,
}

impl Handler for Member {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.subscribe(&self.room);
        ctx.publish_text(&self.room, &format!("{} joined", ctx.id()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => ctx.publish_text(&self.room, &format!("{}: {text}", ctx.id())),
            Message::Binary(_) => {
                let _ = ctx.close(CloseCode::UNSUPPORTED_DATA, "text only");
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: CloseCode, _reason: &str) {
        ctx.publish_text(&self.room, &format!("{} left", ctx.id()));
    }
}

fn main() -> std::io::Result<()> {
    let mut server = Server::new(Config::default());
    server.register_handler("/chat", |request| {
        let room = request
            .query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("room=")))
            .unwrap_or("lobby");
        Member { room: room.to_owned() }
    });
    let running = server.start()?;
    println!("chat on ws://{}/chat?room=lobby", running.local_addr());
    running.join();
    Ok(())
}

//! `cargo run` (in examples/axum-handoff): axum on 127.0.0.1:8080 serves `/hello`; WebSocket upgrades
//! to `/ws` (echo) and `/me/ws?user=NAME` (a greeting, after an auth layer) are handed to a wsloop
//! engine after axum's routing and middleware ran.

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut engine = Server::new(Config::default());
    engine.register_handler("/ws", |_| Echo);
    let engine = engine.start_without_listeners()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("axum on http://127.0.0.1:8080/hello, WebSockets on ws://127.0.0.1:8080/ws (served by wsloop)");
    axum::serve(listener, axum_handoff::app(engine.handle())).await
}

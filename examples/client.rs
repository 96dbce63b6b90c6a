//! A blocking client: sends a message to an echo server and prints the answer.
//!
//! `cargo run --release --example echo` in one terminal, then `cargo run --release --example client`.

use std::time::Duration;

use wsloop::client::{with_connection, ClientOptions, Message};

fn main() -> Result<(), wsloop::client::Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let answer = with_connection(&url, ClientOptions::default(), |conn| {
        conn.send_text("Hello, WebSocket!")?;
        conn.read_message(Some(Duration::from_secs(5)))
    })?;
    match answer {
        Message::Text(text) => println!("received: {text}"),
        Message::Binary(data) => println!("received {} bytes", data.len()),
    }
    Ok(())
}

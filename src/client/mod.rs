//! The WebSocket client: URLs, errors, a blocking client over `std::net::TcpStream`, and on top of it
//! a connection pool ([`pool`]), circuit breakers ([`breaker`]) and a reconnecting client
//! ([`reconnect`]).
//!
//! Owns: the client side of a connection, from URL to closing handshake. Never touches: server
//! internals. The protocol itself (frames, handshake, close codes) is [`crate::proto`]'s, shared with
//! the server.
//!
//! ```no_run
//! use wsloop::client::{with_connection, ClientOptions};
//! use std::time::Duration;
//!
//! let reply = with_connection("ws://127.0.0.1:9001/echo", ClientOptions::default(), |client| {
//!     client.send_text("Hello, WebSocket!")?;
//!     client.read_message(Some(Duration::from_secs(5)))
//! })?;
//! println!("{reply:?}");
//! # Ok::<(), wsloop::client::Error>(())
//! ```

pub mod blocking;
pub mod breaker;
pub mod error;
pub mod pool;
pub mod reconnect;
pub mod url;

pub use blocking::{
    connect, connect_with_callback, with_connection, CallbackClient, Client, ClientOptions, ClientSender, CloseInfo,
    ExtensionFactory, Message, MessageCallback,
};
pub use breaker::{BreakerOptions, BreakerRegistry, BreakerState, CircuitBreaker};
pub use error::{Error, Operation};
pub use pool::{Pool, PoolOptions, PoolStats, PooledConnection};
pub use reconnect::{Backoff, ReconnectListener, ReconnectPolicy, ReconnectingClient};
pub use url::{Host, Scheme, UrlError, WsUrl};

//! The WebSocket client: URLs, errors, proxies, a blocking client over `std::net::TcpStream`, and on top
//! of it a connection pool ([`Pool`]), circuit breakers ([`CircuitBreaker`], [`BreakerRegistry`]) and a reconnecting
//! client ([`ReconnectingClient`]).
//!
//! Owns: the client side of a connection, from URL to closing handshake. Never touches: server
//! internals. The protocol itself (frames, handshake, close codes) is [`crate::proto`]'s, shared with
//! the server.
//!
//! The blocking client comes in two styles:
//! - Pull style: [`connect`] returns a [`Client`]; call [`Client::read_message`] to get the next
//!   message. [`with_connection`] wraps a [`Client`] so that the closing handshake runs on every exit.
//! - Push style: [`connect_with_callback`] starts a reader thread that calls
//!   [`ClientOptions::on_message`] for each message; the [`CallbackClient`] (and every
//!   [`ClientSender`] cloned from it) can still send, and [`CallbackClient::wait_for_close`] blocks until
//!   the connection ends.
//!
//! Every client style can go through a proxy ([`ClientOptions::proxy`]: HTTP `CONNECT` or SOCKS5, see
//! [`Proxy`]). [`connect_async`] opens an in-loop client by URL (a [`crate::server::Handler`] driven on a
//! reactor thread) without a server of one's own.
//!
//! Every item has one path, `client::Name`: the files that hold them (`blocking`, `proxy`, `inloop`,
//! `pool`, `breaker`, `reconnect`, `url`, `error`) are private.
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

mod blocking;
mod breaker;
mod error;
mod inloop;
mod pool;
mod proxy;
mod reconnect;
mod tls;
mod url;

pub(crate) use blocking::connect_stream;
pub use blocking::{
    connect, connect_with_callback, with_connection, CallbackClient, Client, ClientOptions, ClientSender, CloseInfo,
    ExtensionFactory, Message, MessageCallback,
};
pub use inloop::connect_async;
pub(crate) use proxy::{open_tunnel, Progress, Target, Tunnel};

pub use breaker::{BreakerOptions, BreakerPermit, BreakerRegistry, BreakerState, CircuitBreaker};
pub use error::{Error, Operation};
pub use pool::{AcquireOptions, Pool, PoolOptions, PoolStats, PooledConnection};
pub use proxy::{Proxy, ProxyAddr, ProxyAuth, ProxyError, ProxyUrlError, DEFAULT_PROXY_PORT};
pub use reconnect::{Backoff, ReconnectListener, ReconnectPolicy, ReconnectingClient};
#[cfg(feature = "tls")]
pub(crate) use tls::classify as tls_classify;
#[cfg(feature = "tls")]
pub use tls::ClientTls;
pub use tls::TlsFailure;
pub use url::{Host, Scheme, UrlError, WsUrl};

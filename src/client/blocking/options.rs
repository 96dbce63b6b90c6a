//! Client settings and what a connection hands back: [`ClientOptions`], [`Message`], [`CloseInfo`].
//!
//! Owns: every client setting with its documented default, and the message and close types. Never
//! touches: sockets.

#[cfg(doc)]
use super::super::error::Operation;
#[cfg(doc)]
use super::{connect, connect_with_callback, with_connection, Client};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::MetricsCollector;
use crate::proto::handshake::HandshakeLimits;
use crate::proto::negotiate::ExtensionOffer;
use crate::proto::{CloseCode, ConnectionConfig, Extension};

use super::super::error::Error;
use super::super::proxy::Proxy;
use super::callback::ClientSender;

/// The callback of [`ClientOptions::on_message`]: called on the reader thread with a sender for
/// replies and the message.
pub type MessageCallback = Arc<dyn Fn(&ClientSender, Message) + Send + Sync>;

/// Makes the client side of an extension the server accepted (its answer's parameters are in the
/// offer); `None` when it cannot (the connection then fails with [`Error::UnsupportedExtension`]).
pub type ExtensionFactory = Arc<dyn Fn(&ExtensionOffer) -> Option<Box<dyn Extension>> + Send + Sync>;

/// An owned, complete data message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload, consuming the message.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) => b,
        }
    }
}

/// How a connection ended: the code and reason to report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloseInfo {
    /// The peer's close code, or ours when we failed the connection. `None`: the peer's close frame
    /// carried no code (1005). `Some(CloseCode::ABNORMAL)` (1006): TCP ended without a closing
    /// handshake (reset, pong timeout, close timeout, ...).
    pub code: Option<CloseCode>,
    /// The reason (may be empty).
    pub reason: String,
}

impl CloseInfo {
    pub(super) fn abnormal(reason: &str) -> Self {
        Self { code: Some(CloseCode::ABNORMAL), reason: reason.to_owned() }
    }

    pub(super) fn to_error(&self) -> Error {
        Error::Closed { code: self.code, reason: self.reason.clone() }
    }
}

/// Client settings. Start from [`ClientOptions::default`] and chain the setters; every default is
/// documented on its field.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Time allowed to open the TCP connection, per resolved address tried. Default 10 s. It also bounds
    /// the host name's resolution (run on a thread of its own, since the system resolver has no timeout):
    /// [`Error::Timeout`]`(`[`Operation::Resolve`]`)`.
    pub connect_timeout: Duration,
    /// Time allowed for the opening handshake (request written, 101 response read). Default 10 s.
    pub handshake_timeout: Duration,
    /// Default timeout of [`Client::read_message`] when it is given `None`. Default `None`: wait
    /// indefinitely.
    pub read_timeout: Option<Duration>,
    /// Timeout for writing one batch of frames. Default `None`: a write blocks until the peer reads.
    /// When it fires, part of a frame may be on the wire, so the connection is closed
    /// ([`Error::Timeout`] with [`Operation::Write`]).
    pub write_timeout: Option<Duration>,
    /// Time allowed for the closing handshake: for the peer's close frame after ours, and then for the
    /// server to close TCP (RFC 6455 §7.1.1: the client waits for it). Used by [`with_connection`],
    /// [`Client::close_and_wait`], the callback reader thread and [`Client::wait_for_close`] after
    /// [`Client::close`]. Default 5 s.
    pub close_timeout: Duration,
    /// Extra request headers (`Origin`, `Authorization`, `User-Agent`, ...). Default none.
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered, most preferred first (`Sec-WebSocket-Protocol`). Default none. The
    /// server's choice is [`Client::protocol`].
    pub subprotocols: Vec<String>,
    /// The `Sec-WebSocket-Extensions` value offered, formatted (see [`negotiate::format_extensions`](crate::proto::negotiate::format_extensions)).
    /// Default `None`. An extension the server accepts needs [`ClientOptions::extension_factory`].
    pub extensions: Option<String>,
    /// Builds the extensions the server accepted. Default `None`: accepting any offered extension
    /// fails the connection with [`Error::UnsupportedExtension`].
    pub extension_factory: Option<ExtensionFactory>,
    /// permessage-deflate (RFC 7692) to offer. Default off. When on, its offer is sent (after
    /// [`ClientOptions::extensions`], if any) and the server's answer is checked strictly: a bad one fails
    /// with `HandshakeError::InvalidDeflateResponse`.
    pub deflate: crate::proto::deflate::DeflateConfig,
    /// Frame and message size limits and auto-pong (defaults: 16 MiB frames, 64 MiB messages, pings
    /// answered). A bigger message fails the connection with 1009. With `auto_pong` off, received pings
    /// are consumed without an answer.
    pub connection: ConnectionConfig,
    /// Send a ping when nothing was received for this long, while a read is in progress (the callback
    /// reader thread reads all the time; a [`Client`] only inside [`Client::read_message`] and
    /// [`Client::wait_for_close`]). Default `None`: no keepalive.
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: when nothing at all (pong or other traffic) arrives within this time after
    /// a keepalive ping, the peer is considered dead: a close frame (1001, "pong timeout") is sent, TCP
    /// is closed without waiting, and the read fails with [`Error::Timeout`]`(`[`Operation::Pong`]`)`.
    /// Default 10 s.
    pub pong_timeout: Duration,
    /// Set `TCP_NODELAY` (small messages leave at once). Default true.
    pub nodelay: bool,
    /// Bounds on the server's response head. Default [`HandshakeLimits::default`] (8 KiB, 64 headers).
    pub handshake_limits: HandshakeLimits,
    /// For [`connect_with_callback`]: called on the reader thread for every message. Default `None`:
    /// messages are dropped. [`connect`] ignores it.
    pub on_message: Option<MessageCallback>,
    /// A collector to feed: connections opened and closed (by code), messages sent and received (by kind
    /// and size). Default `None`.
    pub metrics: Option<Arc<MetricsCollector>>,
    /// Reach the server through this proxy (HTTP `CONNECT` or SOCKS5). Default `None`: connect directly
    /// (the environment is not read; [`Proxy::from_env`] does that). With a proxy, `connect_timeout`
    /// bounds everything up to the open tunnel: the proxy's name, its TCP connect and its handshake. A
    /// proxy that refuses, times out or answers garbage fails with [`Error::Proxy`], which names it.
    pub proxy: Option<Proxy>,
    /// TLS settings for `wss://` URLs (feature `tls`). Default `None`: [`ClientTls::default`], the
    /// Mozilla root CAs and one process-wide session cache. The host name is always verified; the TLS
    /// handshake gets its own `handshake_timeout`, failing with
    /// [`Error::Timeout`]`(`[`Operation::TlsHandshake`]`)`, and a certificate problem is an
    /// [`Error::Tls`] whose [`TlsFailure`](crate::client::TlsFailure) says which.
    ///
    /// [`ClientTls::default`]: crate::client::ClientTls
    #[cfg(feature = "tls")]
    pub tls: Option<crate::client::ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_timeout: None,
            write_timeout: None,
            close_timeout: Duration::from_secs(5),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            extensions: None,
            extension_factory: None,
            deflate: crate::proto::deflate::DeflateConfig::default(),
            connection: ConnectionConfig::default(),
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            nodelay: true,
            handshake_limits: HandshakeLimits::default(),
            on_message: None,
            metrics: None,
            proxy: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("headers", &self.headers)
            .field("subprotocols", &self.subprotocols)
            .field("extensions", &self.extensions)
            .field("extension_factory", &self.extension_factory.is_some())
            .field("connection", &self.connection)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("nodelay", &self.nodelay)
            .field("handshake_limits", &self.handshake_limits)
            .field("on_message", &self.on_message.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::metrics`]: the connection feeds this collector.
    pub fn metrics(mut self, collector: Arc<MetricsCollector>) -> Self {
        self.metrics = Some(collector);
        self
    }

    /// Sets [`ClientOptions::proxy`].
    #[must_use]
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Sets [`ClientOptions::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::handshake_timeout`].
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::read_timeout`].
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Sets [`ClientOptions::write_timeout`] (zero means none).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Sets [`ClientOptions::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a subprotocol to offer (after those already added).
    #[must_use]
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the `Sec-WebSocket-Extensions` offer.
    #[must_use]
    pub fn extensions(mut self, offer: impl Into<String>) -> Self {
        self.extensions = Some(offer.into());
        self
    }

    /// Sets [`ClientOptions::deflate`]: offer permessage-deflate with these settings.
    #[must_use]
    pub fn deflate(mut self, config: crate::proto::deflate::DeflateConfig) -> Self {
        self.deflate = config;
        self
    }

    /// Sets [`ClientOptions::extension_factory`].
    #[must_use]
    pub fn extension_factory(
        mut self,
        factory: impl Fn(&ExtensionOffer) -> Option<Box<dyn Extension>> + Send + Sync + 'static,
    ) -> Self {
        self.extension_factory = Some(Arc::new(factory));
        self
    }

    /// Sets the largest accepted frame payload in bytes.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.connection.max_frame_size = bytes;
        self
    }

    /// Sets the largest accepted message in bytes.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.connection.max_message_size = bytes;
        self
    }

    /// Turns automatic pong answers on or off.
    #[must_use]
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.connection.auto_pong = on;
        self
    }

    /// Sets [`ClientOptions::ping_interval`].
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Sets [`ClientOptions::pong_timeout`].
    #[must_use]
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::tls`] (feature `tls`).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::client::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`ClientOptions::nodelay`].
    #[must_use]
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets [`ClientOptions::on_message`].
    #[must_use]
    pub fn on_message(mut self, callback: impl Fn(&ClientSender, Message) + Send + Sync + 'static) -> Self {
        self.on_message = Some(Arc::new(callback));
        self
    }
}

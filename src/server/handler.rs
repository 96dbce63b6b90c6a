//! The user surface inside the loop: the [`Handler`] trait, the [`Message`] it receives and the [`Ctx`]
//! it acts through.
//!
//! Callbacks run synchronously on the reactor thread that owns the connection: they must not block. A
//! panic in a callback closes that connection with 1011; the loop and other connections live on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::proto::{self, encode_frame, CloseCode, Connection, OpCode};

use super::reactor::Writer;
use super::Handle;

/// A connection's identity, unique within one server for its lifetime (reactor, slot and generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(reactor: usize, slot: usize, generation: u32) -> Self {
        Self(((reactor as u64) << 56) | ((u64::from(generation) & 0xff_ffff) << 32) | (slot as u64 & 0xffff_ffff))
    }
    pub(crate) fn reactor(self) -> usize {
        (self.0 >> 56) as usize
    }
    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    pub(crate) fn generation(self) -> u32 {
        ((self.0 >> 32) & 0xff_ffff) as u32
    }
    /// The raw value, e.g. for logs or maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}.{}", self.reactor(), self.slot(), self.generation())
    }
}

/// A complete data message, borrowed from the reactor's buffers for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

/// Per-connection callbacks. Every method has an empty default; implement what you need.
///
/// One handler instance serves one connection. It lives on its reactor thread, so it need not be `Send`.
#[allow(unused_variables)]
pub trait Handler: 'static {
    /// The upgrade completed. Request headers are readable here (see [`Ctx::header`]).
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {}
    /// A complete message arrived. It borrows the reactor's buffer: copy what you keep.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {}
    /// A ping arrived (already answered when auto-pong is on).
    fn on_ping(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {}
    /// A pong arrived.
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {}
    /// The connection ended: `code` is the peer's close code, ours when we closed, 1005 for a close frame
    /// without a code, or 1006 when the transport closed without a close handshake. Called once.
    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: CloseCode, reason: &str) {}
    /// Every byte queued for a slow peer was written: the backlog is gone.
    fn on_drain(&mut self, ctx: &mut Ctx<'_>) {}
    /// The timer armed with [`Ctx::set_timer`] is due. It fires once; arm it again here for a periodic tick.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {}
    /// The peer broke the protocol (the connection is being failed with `error.close_code()`) or a limit was hit.
    fn on_error(&mut self, ctx: &mut Ctx<'_>, error: &proto::ProtocolError) {}
    /// An outgoing (in-loop client) connection could not be established: TCP connect, the handshake, or
    /// their timeout failed; for a connection by URL or through a proxy also the URL, the name or the
    /// proxy ([`ConnectError::Client`]). No other callback is called for it. A failure before the reactor
    /// had the socket is reported on the thread that set it up (the caller's for a bad URL, else the
    /// connect helper thread), which is why in-loop client handlers are `Send`.
    fn on_connect_error(&mut self, error: &ConnectError) {}
}

/// Why an in-loop client connection failed before it opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection failed (refused, unreachable, reset).
    Io(std::io::Error),
    /// The server answered the upgrade request with something other than a valid 101.
    Handshake(crate::proto::handshake::HandshakeError),
    /// The connection or the handshake did not complete within the configured timeout.
    Timeout,
    /// The server closed the connection before its 101 response was complete.
    ClosedDuringHandshake,
    /// The engine is stopping (or the reactor is at its connection limit) and took no new connection.
    Refused,
    /// The connection failed before the reactor had a socket, with the error the blocking client gives
    /// for the same failure: a bad URL ([`client::Error::InvalidUrl`](crate::client::Error::InvalidUrl)),
    /// `wss://` ([`client::Error::TlsUnsupported`](crate::client::Error::TlsUnsupported)), the host's name
    /// (`Resolve`, `Timeout(Operation::Resolve)`), the TCP connect (`Connect`, `Timeout(Operation::Connect)`)
    /// or the proxy (`Proxy`). From [`Handle::connect_url`](super::Handle::connect_url),
    /// [`client::connect_async`](crate::client::connect_async) and a connect through a proxy.
    Client(crate::client::Error),
    /// The TLS handshake failed (a `wss://` connection, `ConnectOptions::tls`); `failure` says why
    /// (unknown CA, wrong host name, expired certificate, ...), `detail` is rustls' description.
    Tls {
        /// Why, in a bucket to match.
        failure: crate::client::TlsFailure,
        /// rustls' description of the error.
        detail: String,
    },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "TCP connection failed: {e}"),
            Self::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Self::Timeout => f.write_str("connect or handshake timed out (check the address and the server's load)"),
            Self::ClosedDuringHandshake => f.write_str("the server closed the connection during the handshake"),
            Self::Refused => f.write_str("the engine is stopping or at its connection limit"),
            Self::Client(e) => e.fmt(f),
            Self::Tls { failure, detail } => write!(f, "TLS failed: {failure} ({detail})"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Handshake(e) => Some(e),
            Self::Client(e) => e.source(),
            _ => None,
        }
    }
}

/// Why a send through [`Ctx`] did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The protocol state refused it (closing, or a control payload over 125 bytes).
    Protocol(proto::SendError),
    /// The peer's buffered bytes are at the ceiling and the policy drops messages.
    Dropped,
    /// The peer's buffered bytes are at the ceiling and the policy closes slow peers: it is being closed.
    SlowPeer,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(e) => e.fmt(f),
            Self::Dropped => f.write_str("message dropped: the peer's buffered bytes are at the ceiling"),
            Self::SlowPeer => f.write_str("the peer does not read and is being closed (buffered bytes ceiling)"),
        }
    }
}

impl std::error::Error for SendError {}

/// What a callback asked the reactor to do after it returns (things that touch other connections).
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    pub broadcasts: Vec<Bytes>,
    pub publishes: Vec<(String, Bytes)>,
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    /// The connection's handler timer: `Some(Some(delay))` arms it, `Some(None)` cancels it.
    pub timer: Option<Option<std::time::Duration>>,
}

impl Deferred {
    pub(crate) fn is_empty(&self) -> bool {
        self.broadcasts.is_empty()
            && self.publishes.is_empty()
            && self.subscribe.is_empty()
            && self.unsubscribe.is_empty()
            && self.timer.is_none()
    }
}

/// A request header as received: name as sent, raw value.
pub(crate) type Header = (String, Vec<u8>);

/// What the reactor knows about a connection that a callback may read. Kept small: an idle connection
/// pays for every byte here.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The request path, interned per reactor (connections to the same path share it; a thin pointer).
    pub path: Arc<String>,
    /// The rarer parts, allocated only when one of them is present.
    pub extra: Option<Box<ConnExtra>>,
}

/// Request details most connections do not have.
#[derive(Debug, Default)]
pub(crate) struct ConnExtra {
    pub query: Option<Box<str>>,
    pub protocol: Option<Box<str>>,
    pub headers: Option<Box<[Header]>>,
    /// Topics the connection subscribed to.
    pub topics: Vec<Arc<str>>,
    /// Its rate-limit buckets, only when `Config::message_rate` or `byte_rate` is set (so a server
    /// without rate limits gives no connection this box for them, and `Conn` does not grow).
    pub rate: Option<super::rate_limit::ConnRate>,
}

impl ConnInfo {
    pub(crate) fn new(
        path: Arc<String>,
        query: Option<Box<str>>,
        protocol: Option<Box<str>>,
        headers: Option<Box<[Header]>>,
    ) -> Self {
        let extra = (query.is_some() || protocol.is_some() || headers.is_some())
            .then(|| Box::new(ConnExtra { query, protocol, headers, topics: Vec::new(), rate: None }));
        Self { path, extra }
    }
}

/// The connection a callback runs for, and the server around it.
///
/// Sends are queued into the reactor's write path (corked, and written once the callback returns);
/// `Ctx` never touches the socket itself.
pub struct Ctx<'a> {
    pub(crate) id: ConnId,
    pub(crate) proto: &'a mut Connection,
    pub(crate) info: &'a ConnInfo,
    pub(crate) headers: Option<&'a [Header]>,
    pub(crate) out: Writer<'a>,
    pub(crate) deferred: &'a mut Deferred,
    pub(crate) handle: &'a Handle,
    pub(crate) now: Instant,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("id", &self.id).field("path", &self.info.path).finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// This connection's id (usable with [`Handle::send_text`] from any thread).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address (asked of the socket: not stored per connection). `None` if the socket can
    /// no longer tell (the peer is gone).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.out.peer_addr()
    }

    /// The request path, without the query.
    pub fn path(&self) -> &str {
        &self.info.path
    }

    /// The request query (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.info.extra.as_ref()?.query.as_deref()
    }

    /// The subprotocol chosen during the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.info.extra.as_ref()?.protocol.as_deref()
    }

    /// A request header (case-insensitive name). Available in `on_open`, and in every callback when
    /// `Config::keep_request_headers` is set.
    pub fn header(&self, name: &str) -> Option<&str> {
        let kept = self.info.extra.as_ref().and_then(|e| e.headers.as_deref());
        let headers = self.headers.or(kept)?;
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Bytes queued for this peer and not yet taken by the socket (backpressure).
    pub fn buffered_amount(&self) -> usize {
        self.out.buffered()
    }

    /// A handle to the server, usable from any thread.
    pub fn handle(&self) -> &Handle {
        self.handle
    }

    /// Whether data may still be sent (no close frame sent yet).
    pub fn is_open(&self) -> bool {
        self.proto.can_send() && !self.out.is_slow_peer()
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(OpCode::Text, text.as_bytes(), crate::metrics::MessageKind::Text)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(OpCode::Binary, data, crate::metrics::MessageKind::Binary)
    }

    /// A text or binary message (`opcode` says which): admitted by the backpressure policy, then framed
    /// into the cork. A large one takes [`Ctx::send_large`], out of line, so the small message's path
    /// carries no test or register save for the uncopied write.
    #[inline(always)]
    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        kind: crate::metrics::MessageKind,
    ) -> Result<(), SendError> {
        if self.out.may_take_direct(payload.len()) {
            return self.send_large(opcode, payload, kind);
        }
        self.out.admit(payload.len())?;
        self.proto.send_data(opcode, payload, self.out.cork()).map_err(SendError::Protocol)?;
        self.out.counters().record_message_sent(kind, payload.len());
        Ok(())
    }

    /// [`Ctx::send_data`] for a payload large enough to be written without copying it into the cork
    /// (when nothing is queued behind the cork).
    #[inline(never)]
    fn send_large(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        kind: crate::metrics::MessageKind,
    ) -> Result<(), SendError> {
        self.out.admit(payload.len())?;
        if self.out.takes_direct(payload.len()) {
            self.send_direct(opcode, payload)?;
        } else {
            self.proto.send_data(opcode, payload, self.out.cork()).map_err(SendError::Protocol)?;
        }
        self.out.counters().record_message_sent(kind, payload.len());
        Ok(())
    }

    /// Sends a text or binary message as it is, never through permessage-deflate whatever its size (the
    /// per-send override of [`DeflateConfig::threshold`](crate::proto::deflate::DeflateConfig::threshold),
    /// e.g. for data that is already compressed). Without a negotiated extension it is
    /// [`Ctx::send_text`] / [`Ctx::send_binary`].
    pub fn send_uncompressed(&mut self, message: Message<'_>) -> Result<(), SendError> {
        let (opcode, payload, kind) = match message {
            Message::Text(t) => (OpCode::Text, t.as_bytes(), crate::metrics::MessageKind::Text),
            Message::Binary(b) => (OpCode::Binary, b, crate::metrics::MessageKind::Binary),
        };
        if !self.proto.has_extensions() {
            return match message {
                Message::Text(t) => self.send_text(t),
                Message::Binary(b) => self.send_binary(b),
            };
        }
        self.out.admit(payload.len())?;
        self.proto.send_frame(opcode, true, payload, self.out.cork()).map_err(SendError::Protocol)?;
        self.out.counters().record_message_sent(kind, payload.len());
        Ok(())
    }

    /// Sends a large message without copying its payload into the cork: the write path writes what is
    /// corked so far, the frame header and the payload together; only what the socket does not take is
    /// copied (keeping the order).
    fn send_direct(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.proto.send_message_split(opcode, payload, self.out.cork()).map_err(SendError::Protocol)? {
            self.out.write_through(payload);
        }
        Ok(())
    }

    /// Queues bytes that already are one or more complete frames valid for this connection's role, e.g.
    /// masked client frames a load generator built once and sends many times. Only "may data still be
    /// sent" is checked (and the backpressure policy applied); the caller vouches for everything else —
    /// a malformed frame here breaks the connection. Not counted in `messages_sent`. Like `send_binary`,
    /// 16 KiB or more go to the socket straight from `frames` (one `writev` with what is corked), uncopied.
    pub fn send_raw(&mut self, frames: &[u8]) -> Result<(), SendError> {
        if !self.proto.can_send() {
            return Err(SendError::Protocol(proto::SendError::Closed));
        }
        self.out.admit(frames.len())?;
        if self.out.takes_direct(frames.len()) {
            self.out.write_through(frames);
        } else {
            self.out.cork().extend_from_slice(frames);
        }
        Ok(())
    }

    /// Arms this connection's timer: [`Handler::on_timer`] is called once, `after` from now (to the
    /// millisecond; never early). One timer per connection: arming it again replaces the previous
    /// deadline, and [`Ctx::cancel_timer`] disarms it. It never fires after `on_close`, nor for a delay
    /// too long for the clock to represent (e.g. `Duration::MAX`: that disarms it). Connections
    /// without a timer pay nothing for this (the reactor keeps armed timers in a heap of its own).
    pub fn set_timer(&mut self, after: std::time::Duration) {
        self.deferred.timer = Some(Some(after));
    }

    /// Disarms this connection's timer, if armed (also one armed earlier in the same callback).
    pub fn cancel_timer(&mut self) {
        self.deferred.timer = Some(None);
    }

    /// Sends a ping (payload at most 125 bytes). Never dropped by the backpressure policy.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.proto.send_ping(payload, self.out.cork()).map_err(SendError::Protocol)?;
        crate::metrics::Counters::add(&self.out.counters().pings_sent, 1);
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason`; the socket closes when the peer answers or
    /// the close timeout passes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.proto.close(self.now, code, reason, self.out.cork()).map_err(SendError::Protocol)?;
        crate::metrics::Counters::add(&self.out.counters().closes_sent, 1);
        Ok(())
    }

    /// Sends a text message to every open connection of the server (this one included). The frame is
    /// encoded once and shared.
    pub fn broadcast_text(&mut self, text: &str) {
        self.deferred.broadcasts.push(server_frame(OpCode::Text, text.as_bytes()));
    }

    /// Sends a binary message to every open connection of the server (this one included).
    pub fn broadcast_binary(&mut self, data: &[u8]) {
        self.deferred.broadcasts.push(server_frame(OpCode::Binary, data));
    }

    /// Subscribes this connection to `topic` (takes effect when the callback returns).
    pub fn subscribe(&mut self, topic: &str) {
        self.deferred.subscribe.push(topic.to_owned());
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.deferred.unsubscribe.push(topic.to_owned());
    }

    /// Sends a text message to every subscriber of `topic`, on every reactor (this connection included
    /// when it is subscribed).
    pub fn publish_text(&mut self, topic: &str, text: &str) {
        self.deferred.publishes.push((topic.to_owned(), server_frame(OpCode::Text, text.as_bytes())));
    }

    /// Sends a binary message to every subscriber of `topic`.
    pub fn publish_binary(&mut self, topic: &str, data: &[u8]) {
        self.deferred.publishes.push((topic.to_owned(), server_frame(OpCode::Binary, data)));
    }
}

/// Encodes an unmasked single-frame message once, to be shared by reference between connections.
pub(crate) fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_frame(&mut out, opcode, true, 0, None, payload);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_packs_reactor_slot_and_generation() {
        let id = ConnId::new(3, 123_456, 0xabcdef);
        assert_eq!((id.reactor(), id.slot(), id.generation()), (3, 123_456, 0xabcdef));
    }
}

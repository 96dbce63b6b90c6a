//! A blocking WebSocket client over `std::net::TcpStream`, in two styles.
//!
//! Owns: opening the TCP connection, the client side of the opening handshake, reading and writing
//! frames with deadlines, keepalive pings, the closing handshake as the client plays it (wait for the
//! server to close TCP first), and the callback reader thread. Never touches: server internals, TLS,
//! pooling (a pool leases [`Client`]s through [`Client::is_open`] and [`Client::check_health`]).
//!
//! - Pull style: [`connect`] returns a [`Client`]; call [`Client::read_message`] to get the next
//!   message. [`with_connection`] wraps a [`Client`] so that the closing handshake runs on every exit.
//! - Push style: [`connect_with_callback`] starts a reader thread that calls
//!   [`ClientOptions::on_message`] for each message; the [`CallbackClient`] (and every
//!   [`ClientSender`] cloned from it) can still send, and [`CallbackClient::wait_for_close`] blocks until
//!   the connection ends.
//!
//! # Design
//! The protocol state ([`Connection`]) sits in a mutex that is held only to parse received bytes or to
//! encode frames, never across a blocking socket call. Frames are encoded into a queue and written by
//! whoever holds a second, writer mutex, in the order they were encoded. A reader that must answer a
//! ping or a close only queues the answer and *tries* the writer mutex: if a sender is blocked in a
//! write (a peer that does not read), the reader does not wait for it; the sender writes the queued
//! answer when its own write finishes. So reading never waits behind writing.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::proto::handshake::{ClientHandshake, ClientRequest, HandshakeLimits, UpgradeResponse};
use crate::proto::negotiate::ExtensionOffer;
use crate::proto::{
    CloseCode, CloseState, Connection, ConnectionConfig, Event, Extension, ProtocolError, Role, SendError, Timeout,
};

use super::error::{Error, Operation};
use super::url::{Host, WsUrl};
use crate::metrics::{MessageKind, MetricsCollector};

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
    fn abnormal(reason: &str) -> Self {
        Self { code: Some(CloseCode::ABNORMAL), reason: reason.to_owned() }
    }

    fn to_error(&self) -> Error {
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
            connection: ConnectionConfig::default(),
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            nodelay: true,
            handshake_limits: HandshakeLimits::default(),
            on_message: None,
            metrics: None,
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
            .finish()
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::metrics`]: the connection feeds this collector.
    pub fn metrics(mut self, collector: Arc<MetricsCollector>) -> Self {
        self.metrics = Some(collector);
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

// -------------------------------------------------------------------------------------------------
// The shared connection: protocol state, outgoing queue, socket.

/// Writer buffers above this capacity are released after use (after a large message).
const KEEP_BUFFER: usize = 1 << 20;
/// The read buffer grows in steps of at least this much.
const MIN_READ: usize = 64 * 1024;
/// The callback reader wakes at least this often to notice a close started by another thread.
const READER_WAKE: Duration = Duration::from_millis(250);
/// The write timeout used for the close frame sent when a client is dropped.
const DROP_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct LinkState {
    conn: Connection,
    /// Encoded frames not yet handed to the writer, in encoding order.
    pending: Vec<u8>,
    /// Our close frame's code and reason, once sent.
    local_close: Option<CloseInfo>,
    /// Set once nothing more can be received: the peer's close frame, our failure, or the end of TCP.
    closed: Option<CloseInfo>,
    /// The socket was shut down (by us) or reached EOF.
    tcp_done: bool,
    /// The callback reader thread finished.
    reader_done: bool,
    /// Why the callback reader thread finished, when it was an error.
    reader_error: Option<Error>,
}

impl LinkState {
    fn closed_error(&self) -> Error {
        self.closed
            .as_ref()
            .or(self.local_close.as_ref())
            .map_or_else(|| CloseInfo::abnormal("").to_error(), CloseInfo::to_error)
    }
}

#[derive(Debug)]
struct Link {
    stream: TcpStream,
    state: Mutex<LinkState>,
    /// Held while writing; the buffer being written.
    writer: Mutex<Vec<u8>>,
    /// Signalled when the callback reader thread finishes.
    finished: Condvar,
    close_timeout: Duration,
    metrics: Option<Arc<MetricsCollector>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            let code = st
                .closed
                .as_ref()
                .and_then(|c| c.code)
                .or_else(|| st.local_close.as_ref().and_then(|c| c.code))
                .unwrap_or(CloseCode::ABNORMAL);
            metrics.record_connection_closed(code.0);
        }
    }
}

impl Link {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        lock(&self.state)
    }

    /// [`Link::send`] for a data message, counted in the metrics once sent.
    fn send_message(
        &self,
        kind: MessageKind,
        len: usize,
        encode: impl FnOnce(&mut LinkState) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        self.send(encode)?;
        if let Some(metrics) = &self.metrics {
            metrics.record_message_sent(kind, len);
        }
        Ok(())
    }

    /// Encodes frames with `encode` (into `state.pending`) and writes everything queued.
    fn send(&self, encode: impl FnOnce(&mut LinkState) -> Result<(), SendError>) -> Result<(), Error> {
        let mut out = lock(&self.writer);
        {
            let mut st = self.state();
            if st.tcp_done {
                return Err(st.closed_error());
            }
            let mark = st.pending.len();
            if let Err(e) = encode(&mut st) {
                st.pending.truncate(mark);
                return Err(match e {
                    SendError::Closed => st.closed_error(),
                    other => Error::Send(other),
                });
            }
            out.clear();
            std::mem::swap(&mut *out, &mut st.pending);
        }
        let written = self.write_out(&mut out);
        drop(out);
        written?;
        self.flush_pending()
    }

    /// Writes `out` (the writer mutex is held); a failure closes the connection.
    fn write_out(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let result = (&self.stream).write_all(out);
        out.clear();
        if out.capacity() > KEEP_BUFFER {
            *out = Vec::new();
        }
        result.map_err(|e| {
            let err = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                Error::Timeout(Operation::Write)
            } else {
                Error::Io(e)
            };
            self.teardown(&mut self.state(), "write failed");
            err
        })
    }

    /// Writes queued frames unless a writer is busy (it writes them after its own write: every writer
    /// calls this after releasing the writer mutex, so nothing is left behind).
    fn flush_pending(&self) -> Result<(), Error> {
        loop {
            if self.state().pending.is_empty() {
                return Ok(());
            }
            let mut out = match self.writer.try_lock() {
                Ok(out) => out,
                Err(TryLockError::WouldBlock) => return Ok(()),
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            {
                let mut st = self.state();
                if st.tcp_done {
                    st.pending.clear();
                    return Ok(());
                }
                out.clear();
                std::mem::swap(&mut *out, &mut st.pending);
            }
            self.write_out(&mut out)?;
        }
    }

    /// Writes queued frames now, waiting for a busy writer (used before shutting the socket).
    fn flush_pending_blocking(&self) -> Result<(), Error> {
        let mut out = lock(&self.writer);
        {
            let mut st = self.state();
            if st.tcp_done || st.pending.is_empty() {
                return Ok(());
            }
            out.clear();
            std::mem::swap(&mut *out, &mut st.pending);
        }
        self.write_out(&mut out)
    }

    /// Shuts the socket down both ways; records an abnormal close unless the end is already known.
    fn teardown(&self, st: &mut LinkState, reason: &str) {
        if st.closed.is_none() {
            st.closed = Some(CloseInfo::abnormal(reason));
        }
        if !st.tcp_done {
            st.tcp_done = true;
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    fn is_open(&self) -> bool {
        let st = self.state();
        !st.tcp_done && st.closed.is_none() && st.conn.can_send()
    }

    fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.send(|st| {
            st.conn.close(Instant::now(), code, reason, &mut st.pending)?;
            st.local_close = Some(CloseInfo { code: Some(code), reason: reason.to_owned() });
            Ok(())
        })
    }

    /// Best effort, for `Drop`: a 1001 close frame if still open, then the socket is shut down.
    fn abandon(&self) {
        let mut st = self.state();
        if st.tcp_done {
            return;
        }
        if st.conn.can_send() {
            let s = &mut *st;
            let _ = s.conn.close(Instant::now(), CloseCode::GOING_AWAY, "client dropped", &mut s.pending);
        }
        drop(st);
        let _ = self.stream.set_write_timeout(Some(DROP_WRITE_TIMEOUT));
        let _ = self.flush_pending_blocking();
        self.teardown(&mut self.state(), "client dropped");
    }
}

// -------------------------------------------------------------------------------------------------
// Reading

/// Received bytes not yet parsed: `data[start..end]`, with room to read into after `end`.
#[derive(Debug, Default)]
struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > KEEP_BUFFER {
                self.data = Vec::new();
            }
        }
    }

    /// Room to read into, compacting or growing so that there is at least `MIN_READ`.
    fn spare(&mut self) -> &mut [u8] {
        if self.data.len() - self.end < MIN_READ {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < MIN_READ {
                let len = (self.data.len() * 2).max(self.end + MIN_READ);
                self.data.resize(len, 0);
            }
        }
        &mut self.data[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn push(&mut self, bytes: &[u8]) {
        self.spare();
        if self.data.len() - self.end < bytes.len() {
            self.data.resize(self.end + bytes.len(), 0);
        }
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }
}

/// What parsing the buffered bytes gave.
enum Step {
    Message(Message),
    Control,
    Close(CloseInfo),
    NeedMore,
    Failed(ProtocolError),
}

/// The reading side: the receive buffer. Used by one thread at a time. Keepalive, the pong deadline and
/// the close-handshake timeout are the protocol core's ([`Connection::poll_timeout`]); the reader only
/// waits until the deadline the core gives and lets it act.
#[derive(Debug)]
struct Reader {
    buf: ReadBuf,
    /// The read timeout currently set on the socket.
    socket_timeout: Option<Option<Duration>>,
}

impl Reader {
    fn set_timeout(&mut self, link: &Link, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        if self.socket_timeout != Some(timeout) {
            link.stream.set_read_timeout(timeout)?;
            self.socket_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Parses one step from the buffered bytes.
    fn parse(&mut self, link: &Link) -> Result<Step, Error> {
        let mut st = link.state();
        if let Some(closed) = &st.closed {
            return Err(closed.to_error());
        }
        let st = &mut *st;
        let (consumed, step) = match st.conn.read(self.buf.filled_mut(), &mut st.pending) {
            Ok((n, event)) => (
                n,
                match event {
                    None => Step::NeedMore,
                    Some(Event::Text(t)) => {
                        if let Some(metrics) = &link.metrics {
                            metrics.record_message_received(MessageKind::Text, t.len());
                        }
                        Step::Message(Message::Text(t.into_owned()))
                    }
                    Some(Event::Binary(b)) => {
                        if let Some(metrics) = &link.metrics {
                            metrics.record_message_received(MessageKind::Binary, b.len());
                        }
                        Step::Message(Message::Binary(b.into_owned()))
                    }
                    Some(Event::Ping(_) | Event::Pong(_)) => Step::Control,
                    Some(Event::Close(frame)) => {
                        let info = CloseInfo {
                            code: frame.map(|f| f.code),
                            reason: frame.map_or_else(String::new, |f| f.reason.to_owned()),
                        };
                        st.closed = Some(info.clone());
                        Step::Close(info)
                    }
                },
            ),
            Err(e) => {
                st.closed = Some(CloseInfo { code: Some(e.code), reason: e.reason.to_owned() });
                (self.buf.end - self.buf.start, Step::Failed(e))
            }
        };
        self.buf.consume(consumed);
        Ok(step)
    }

    /// The next data message. Answers pings, consumes pongs, sends keepalive pings. Fails with
    /// `Timeout(Read)` at `deadline` (the connection stays usable), `Closed` when the peer's close
    /// frame arrives or the connection had ended, `Protocol` after failing the connection.
    /// `enforce_close_deadline` fails the read with `Timeout(Close)` when our close frame's answer is
    /// late (otherwise the caller's own deadline governs); `max_block` bounds each socket wait.
    fn next_message(
        &mut self,
        link: &Link,
        deadline: Option<Instant>,
        enforce_close_deadline: bool,
        max_block: Option<Duration>,
    ) -> Result<Message, Error> {
        let mut attempted_read = false;
        loop {
            loop {
                let step = self.parse(link)?;
                match step {
                    Step::Message(m) => {
                        link.flush_pending()?;
                        return Ok(m);
                    }
                    Step::Control => link.flush_pending()?,
                    Step::NeedMore => break,
                    Step::Close(info) => {
                        link.flush_pending()?;
                        return Err(info.to_error());
                    }
                    Step::Failed(e) => {
                        self.fail(link, e);
                        return Err(Error::Protocol(e));
                    }
                }
            }
            let now = Instant::now();
            let mut wait = deadline.map(|d| d.saturating_duration_since(now));
            if attempted_read && deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout(Operation::Read));
            }
            if let Some(due) = self.timeouts(link, now, enforce_close_deadline)? {
                wait = min_wait(wait, due.saturating_duration_since(now));
            }
            if let Some(cap) = max_block {
                wait = min_wait(wait, cap);
            }
            attempted_read = true;
            let read = if wait == Some(Duration::ZERO) && cfg!(unix) {
                // Nothing left to wait for (a zero timeout, or the deadline is now): take what the socket
                // holds without blocking, instead of the 1 ms a socket read timeout needs at least.
                recv_now(&link.stream, self.buf.spare())
            } else {
                self.set_timeout(link, wait)?;
                (&link.stream).read(self.buf.spare())
            };
            match read {
                Ok(0) => {
                    let mut st = link.state();
                    link.teardown(&mut st, "connection closed without a close frame");
                    return Err(st.closed_error());
                }
                Ok(n) => {
                    self.buf.filled(n);
                    link.state().conn.received_at(Instant::now());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    let mut st = link.state();
                    if st.tcp_done {
                        // Shut down by another thread (a drop or a failed write).
                        return Err(st.closed_error());
                    }
                    link.teardown(&mut st, "connection reset");
                    return Err(Error::Io(e));
                }
            }
        }
    }

    /// Lets the protocol core act on a deadline that passed (a keepalive ping, a pong timeout, our close
    /// frame unanswered) and returns its next deadline. The close-handshake deadlines are left alone
    /// unless `enforce_close` (a pull client's caller bounds that wait itself).
    fn timeouts(&mut self, link: &Link, now: Instant, enforce_close: bool) -> Result<Option<Instant>, Error> {
        let fired = {
            let mut st = link.state();
            let s = &mut *st;
            if !enforce_close && s.conn.close_state() != CloseState::Open {
                return Ok(None);
            }
            let fired = s.conn.handle_timeout(now, &mut s.pending);
            if fired.is_none() || fired == Some(Timeout::Ping) {
                let next = s.conn.poll_timeout();
                drop(st);
                if fired.is_some() {
                    link.flush_pending()?;
                }
                return Ok(next);
            }
            fired
        };
        match fired {
            Some(Timeout::Pong) => {
                log::debug!("websocket client: no answer to a keepalive ping within the pong timeout");
                let _ = link.flush_pending_blocking();
                link.teardown(&mut link.state(), "pong timeout");
                Err(Error::Timeout(Operation::Pong))
            }
            Some(Timeout::Idle) => {
                link.flush_pending()?;
                Ok(link.state().conn.poll_timeout())
            }
            _ => {
                link.teardown(&mut link.state(), "close handshake timed out");
                Err(Error::Timeout(Operation::Close))
            }
        }
    }

    /// After a protocol error: send the close frame (queued by the protocol core), half-close, and
    /// let the server close TCP first (bounded by the close timeout), so that our close frame is not
    /// lost to a reset.
    fn fail(&mut self, link: &Link, err: ProtocolError) {
        log::debug!("websocket client: failing the connection: {err}");
        if link.flush_pending_blocking().is_ok() {
            let _ = link.stream.shutdown(Shutdown::Write);
            self.wait_eof(link, Instant::now() + link.close_timeout);
        }
        link.teardown(&mut link.state(), err.reason);
    }

    /// Reads and discards until the server closes TCP or `deadline` passes, then shuts the socket down.
    /// Returns whether the server closed first.
    fn wait_eof(&mut self, link: &Link, deadline: Instant) -> bool {
        let mut scratch = [0u8; 4096];
        let eof = loop {
            if link.state().tcp_done {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            if self.set_timeout(link, Some(deadline - now)).is_err() {
                break false;
            }
            match (&link.stream).read(&mut scratch) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => break true,
            }
        };
        link.teardown(&mut link.state(), "closed");
        eof
    }
}

fn min_wait(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

// -------------------------------------------------------------------------------------------------
// Connecting

/// What opening a connection produced.
struct Opened {
    link: Arc<Link>,
    reader: Reader,
    response: UpgradeResponse,
    url: WsUrl,
}

/// The addresses of `url`'s host: IP literals as they are; a name through the system resolver, given at most
/// `timeout` (the resolver itself has none).
fn resolve(url: &WsUrl, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    let port = url.port();
    match url.host() {
        Host::Ipv4(ip) => Ok(vec![SocketAddr::from((*ip, port))]),
        Host::Ipv6(ip) => Ok(vec![SocketAddr::from((*ip, port))]),
        Host::Domain(name) => {
            let query = (name.clone(), port);
            let addrs = resolve_within(name, timeout, move || {
                query.to_socket_addrs().map(Iterator::collect::<Vec<SocketAddr>>)
            })?;
            if addrs.is_empty() {
                let source = io::Error::new(ErrorKind::NotFound, "the name has no addresses");
                return Err(Error::Resolve { host: name.clone(), source });
            }
            Ok(addrs)
        }
    }
}

/// Runs `lookup` on a thread of its own and waits for it at most `timeout`. A lookup still running then is
/// left to finish on its own (its answer is dropped): a blocking resolver call cannot be cancelled.
fn resolve_within(
    host: &str,
    timeout: Duration,
    lookup: impl FnOnce() -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<Vec<SocketAddr>, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    thread::Builder::new()
        .name("wsloop-resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup());
        })
        .map_err(Error::Io)?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(source)) => Err(Error::Resolve { host: host.to_owned(), source }),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout(Operation::Resolve)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::other("the resolver thread ended without an answer"),
        }),
    }
}

fn tcp_connect(url: &WsUrl, timeout: Duration) -> Result<TcpStream, Error> {
    let timeout = timeout.max(Duration::from_millis(1));
    let mut last = None;
    let mut all_timed_out = true;
    for addr in resolve(url, timeout)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                log::debug!("websocket client: connecting to {addr} failed: {e}");
                if !matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
                    all_timed_out = false;
                }
                last = Some((addr, e));
            }
        }
    }
    match last {
        Some(_) if all_timed_out => Err(Error::Timeout(Operation::Connect)),
        Some((addr, source)) => Err(Error::Connect { addr, source }),
        None => Err(Error::Timeout(Operation::Connect)),
    }
}

fn handshake_io(e: io::Error) -> Error {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        Error::Timeout(Operation::Handshake)
    } else {
        Error::Io(e)
    }
}

/// Writes the upgrade request and reads the response; returns it with the bytes that followed it.
fn handshake(stream: &TcpStream, url: &WsUrl, options: &ClientOptions) -> Result<(UpgradeResponse, Vec<u8>), Error> {
    let deadline = Instant::now() + options.handshake_timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Error::Timeout(Operation::Handshake))
    };
    let mut request = ClientRequest::new(url.host_header(), url.path_and_query());
    request.protocols.clone_from(&options.subprotocols);
    request.extensions.clone_from(&options.extensions);
    request.headers.clone_from(&options.headers);
    let mut out = Vec::new();
    let mut machine = ClientHandshake::start(&request, options.handshake_limits, &mut out)?;
    stream.set_write_timeout(Some(remaining()?))?;
    (&*stream).write_all(&out).map_err(handshake_io)?;

    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining()?))?;
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering the upgrade request",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(handshake_io(e)),
        };
        if let Some((response, used)) = machine.feed(&chunk[..n])? {
            return Ok((response, chunk[used..n].to_vec()));
        }
    }
}

fn open(url: &str, options: &ClientOptions) -> Result<Opened, Error> {
    let parsed = WsUrl::parse(url).map_err(|reason| Error::InvalidUrl { url: url.to_owned(), reason })?;
    if parsed.is_secure() {
        return Err(Error::TlsUnsupported);
    }
    let stream = tcp_connect(&parsed, options.connect_timeout)?;
    stream.set_nodelay(options.nodelay)?;
    let (response, leftover) = handshake(&stream, &parsed, options)?;
    let config = ConnectionConfig {
        ping_interval: options.ping_interval.filter(|i| !i.is_zero()).or(options.connection.ping_interval),
        pong_timeout: options.pong_timeout,
        close_timeout: options.close_timeout,
        ..options.connection.clone()
    };
    let mut conn = Connection::new(Role::Client, config, Instant::now());
    for accepted in &response.extensions {
        let extension = options
            .extension_factory
            .as_ref()
            .and_then(|factory| factory(accepted))
            .ok_or_else(|| Error::UnsupportedExtension { name: accepted.name.clone() })?;
        conn.add_extension(extension);
    }
    stream.set_write_timeout(options.write_timeout.filter(|t| !t.is_zero()))?;
    stream.set_read_timeout(None)?;
    let mut buf = ReadBuf::default();
    buf.push(&leftover);
    let link = Arc::new(Link {
        stream,
        state: Mutex::new(LinkState {
            conn,
            pending: Vec::new(),
            local_close: None,
            closed: None,
            tcp_done: false,
            reader_done: false,
            reader_error: None,
        }),
        writer: Mutex::new(Vec::new()),
        finished: Condvar::new(),
        close_timeout: options.close_timeout,
        metrics: options.metrics.clone(),
    });
    if let Some(metrics) = &link.metrics {
        metrics.record_connection_opened();
    }
    let reader = Reader { buf, socket_timeout: Some(None) };
    Ok(Opened { link, reader, response, url: parsed })
}

// -------------------------------------------------------------------------------------------------
// The pull-style client

/// A connected WebSocket client (pull style): send with `send_*`, receive with
/// [`Client::read_message`], end with [`Client::close`] + [`Client::wait_for_close`] (or
/// [`Client::close_and_wait`]).
///
/// Dropping an open client sends a close frame (1001, "client dropped"; at most 1 s of waiting for the
/// socket to take it) and closes TCP without waiting for the server.
#[derive(Debug)]
pub struct Client {
    link: Arc<Link>,
    reader: Reader,
    response: UpgradeResponse,
    url: WsUrl,
    read_timeout: Option<Duration>,
}

/// Connects to `url` (`ws://host[:port]/path?query`) and performs the opening handshake.
///
/// Resolves the host, tries each address with [`ClientOptions::connect_timeout`], then runs the
/// handshake within [`ClientOptions::handshake_timeout`]. Frames the server sent right after its 101
/// response are kept and returned by the first reads. `wss://` URLs fail with
/// [`Error::TlsUnsupported`]. [`ClientOptions::on_message`] is ignored (see [`connect_with_callback`]).
pub fn connect(url: &str, options: ClientOptions) -> Result<Client, Error> {
    let opened = open(url, &options)?;
    Ok(Client {
        link: opened.link,
        reader: opened.reader,
        response: opened.response,
        url: opened.url,
        read_timeout: options.read_timeout,
    })
}

impl Client {
    /// Sends a text message (one frame).
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.link.send_message(MessageKind::Text, text.len(), |st| st.conn.send_text(text, &mut st.pending))
    }

    /// Sends a binary message (one frame).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.link.send_message(MessageKind::Binary, data.len(), |st| st.conn.send_binary(data, &mut st.pending))
    }

    /// Sends a ping (payload at most 125 bytes, else [`Error::Send`]). Its pong is consumed by the next
    /// reads.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.link.send(|st| st.conn.send_ping(payload, &mut st.pending))
    }

    /// Waits for the next text or binary message.
    ///
    /// `timeout`: `Some` bounds this call (`Some(Duration::ZERO)` polls: a message already received is
    /// returned, otherwise the call fails at once, without blocking); `None` uses
    /// [`ClientOptions::read_timeout`] (by default: wait indefinitely). While waiting, pings are answered,
    /// pongs consumed and keepalive pings sent (see [`ClientOptions::ping_interval`]).
    ///
    /// Errors: [`Error::Timeout`]`(`[`Operation::Read`]`)` when the time is up (the connection stays
    /// usable, a partly received message is kept); [`Error::Closed`] when the peer's close frame
    /// arrives (it was answered; call [`Client::wait_for_close`] to let the server close TCP), or on
    /// any call after the connection ended; [`Error::Protocol`] when the server broke the protocol
    /// (the connection was failed with the matching close code);
    /// [`Error::Timeout`]`(`[`Operation::Pong`]`)` when a keepalive ping went unanswered; [`Error::Io`].
    pub fn read_message(&mut self, timeout: Option<Duration>) -> Result<Message, Error> {
        let deadline = timeout.or(self.read_timeout).map(|t| Instant::now() + t);
        self.reader.next_message(&self.link, deadline, false, None)
    }

    /// Sends a close frame with `code` (one allowed on the wire, else [`Error::Send`]) and `reason`
    /// (cut to 123 bytes). Messages may still arrive until the server's close frame; nothing more can
    /// be sent. Follow with [`Client::wait_for_close`] to complete the closing handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.link.close(code, reason)
    }

    /// Completes the closing handshake: reads (discarding messages) until the server's close frame —
    /// answering it if the server started the close — then waits for the server to close TCP (a
    /// client must not close first, RFC 6455 §7.1.1) and closes the socket.
    ///
    /// `timeout`: `Some` bounds the whole wait; `None` waits until [`ClientOptions::close_timeout`]
    /// after our [`Client::close`], or indefinitely for a server-initiated close when we sent none.
    /// Returns how the connection ended (also when it had ended before the call). Fails with
    /// [`Error::Timeout`]`(`[`Operation::Close`]`)` when the server's close frame did not come in time
    /// (TCP is then closed by us), or with the error that ended the connection while waiting.
    pub fn wait_for_close(&mut self, timeout: Option<Duration>) -> Result<CloseInfo, Error> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + t),
            None => {
                let st = self.link.state();
                if st.conn.close_state() == CloseState::CloseSent {
                    st.conn.poll_timeout()
                } else {
                    None
                }
            }
        };
        loop {
            match self.reader.next_message(&self.link, deadline, false, None) {
                Ok(_) => {}
                Err(Error::Closed { .. }) => break,
                Err(Error::Timeout(Operation::Read)) => {
                    self.link.teardown(&mut self.link.state(), "close handshake timed out");
                    return Err(Error::Timeout(Operation::Close));
                }
                Err(e) => return Err(e),
            }
        }
        let tcp_deadline = deadline.unwrap_or_else(|| Instant::now() + self.link.close_timeout);
        if !self.reader.wait_eof(&self.link, tcp_deadline) {
            log::debug!("websocket client: the server did not close TCP in time; closed it");
        }
        let st = self.link.state();
        Ok(st.closed.clone().unwrap_or_else(|| CloseInfo::abnormal("closed")))
    }

    /// [`Client::close`] then [`Client::wait_for_close`] with `timeout` (`None`:
    /// [`ClientOptions::close_timeout`]). A connection the peer already closed is only finished.
    pub fn close_and_wait(
        &mut self,
        code: CloseCode,
        reason: &str,
        timeout: Option<Duration>,
    ) -> Result<CloseInfo, Error> {
        match self.close(code, reason) {
            Ok(()) | Err(Error::Closed { .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait_for_close(Some(timeout.unwrap_or(self.link.close_timeout)))
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.response.protocol.as_deref()
    }

    /// The server's 101 response: headers (see [`UpgradeResponse::header`]) and accepted extensions.
    pub fn response(&self) -> &UpgradeResponse {
        &self.response
    }

    /// The URL connected to.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// Whether messages can still be sent and received: no close frame was sent or received and the
    /// transport is up as far as this client knows. Costs one uncontended lock; see
    /// [`Client::check_health`] to also notice a server that went away.
    pub fn is_open(&self) -> bool {
        self.link.is_open()
    }

    /// [`Client::is_open`], plus a non-blocking look at the socket: a server that closed or reset the
    /// TCP connection is noticed (the client becomes closed). Bytes that arrived are kept for the next
    /// read, so nothing is lost; a close frame among them is seen by that read. For a pool to check a
    /// connection before lending it.
    pub fn check_health(&mut self) -> bool {
        if !self.is_open() {
            return false;
        }
        let stream = &self.link.stream;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let result = (&*stream).read(self.reader.buf.spare());
        let restored = stream.set_nonblocking(false).is_ok();
        let alive = match result {
            Ok(0) => false,
            Ok(n) => {
                self.reader.buf.filled(n);
                self.link.state().conn.received_at(Instant::now());
                true
            }
            Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        };
        if !alive || !restored {
            self.link.teardown(&mut self.link.state(), "connection lost while idle");
            return false;
        }
        true
    }

    /// Bytes received but not yet parsed into messages (kept by [`Client::check_health`] or left over
    /// from an earlier read). A pool uses it to notice a stale message or a close frame on an idle
    /// connection.
    pub fn buffered_input(&self) -> usize {
        self.reader.buf.end - self.reader.buf.start
    }

    /// How the connection ended, once it has (or once the peer's close frame arrived).
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.link.state().closed.clone()
    }

    /// The local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.link.stream.local_addr()
    }

    /// The server's socket address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.link.stream.peer_addr()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.link.abandon();
    }
}

/// Connects, runs `f` with the client, then runs the closing handshake (1000) on every exit path: when
/// `f` returns `Ok`, returns `Err`, or panics (the panic then continues). The Rust form of
/// `with-websocket-connection`.
///
/// `f`'s error is returned as is. When `f` succeeded, a failed closing handshake (a server that does
/// not answer within [`ClientOptions::close_timeout`]) is logged, not returned: the work is done.
pub fn with_connection<T>(
    url: &str,
    options: ClientOptions,
    f: impl FnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut client = connect(url, options)?;
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&mut client)));
    if let Err(e) = client.close_and_wait(CloseCode::NORMAL, "", None) {
        log::debug!("websocket client: closing handshake with {} failed: {e}", client.url);
    }
    match result {
        Ok(result) => result,
        Err(payload) => panic::resume_unwind(payload),
    }
}

// -------------------------------------------------------------------------------------------------
// The push-style client

/// A cloneable handle that sends on a connection, from any thread (the callback gets one).
#[derive(Debug, Clone)]
pub struct ClientSender {
    link: Arc<Link>,
}

impl ClientSender {
    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.link.send_message(MessageKind::Text, text.len(), |st| st.conn.send_text(text, &mut st.pending))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.link.send_message(MessageKind::Binary, data.len(), |st| st.conn.send_binary(data, &mut st.pending))
    }

    /// Sends a ping (payload at most 125 bytes).
    pub fn send_ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.link.send(|st| st.conn.send_ping(payload, &mut st.pending))
    }

    /// Starts the closing handshake; the reader thread completes it (within
    /// [`ClientOptions::close_timeout`]).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.link.close(code, reason)
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        self.link.is_open()
    }
}

/// A connected client whose reader thread delivers messages to [`ClientOptions::on_message`].
///
/// Dropping it while the connection is open sends a close frame (1001), closes TCP and joins the reader
/// thread.
#[derive(Debug)]
pub struct CallbackClient {
    sender: ClientSender,
    thread: Option<JoinHandle<()>>,
    response: UpgradeResponse,
    url: WsUrl,
}

/// Connects like [`connect`], then starts a reader thread that calls [`ClientOptions::on_message`] for
/// every message (dropping messages when it is `None`) until the connection ends.
///
/// The thread answers pings, sends keepalive pings, answers the server's close frame, waits for the
/// server to close TCP, and enforces [`ClientOptions::close_timeout`] after a close we started. A
/// panicking callback is caught: the connection is closed with 1011.
pub fn connect_with_callback(url: &str, options: ClientOptions) -> Result<CallbackClient, Error> {
    let opened = open(url, &options)?;
    let sender = ClientSender { link: opened.link.clone() };
    let callback = options.on_message.clone();
    let thread_sender = sender.clone();
    let mut reader = opened.reader;
    let thread = thread::Builder::new()
        .name("wsloop-client-reader".into())
        .spawn(move || run_reader(&mut reader, &thread_sender, callback.as_ref()))?;
    Ok(CallbackClient { sender, thread: Some(thread), response: opened.response, url: opened.url })
}

fn run_reader(reader: &mut Reader, sender: &ClientSender, callback: Option<&MessageCallback>) {
    let link = &*sender.link;
    let error = loop {
        match reader.next_message(link, None, true, Some(READER_WAKE)) {
            Ok(message) => {
                let Some(callback) = callback else { continue };
                if panic::catch_unwind(AssertUnwindSafe(|| callback(sender, message))).is_err() {
                    log::error!("websocket client: on_message panicked; closing with 1011");
                    let _ = sender.close(CloseCode::INTERNAL_ERROR, "callback panicked");
                }
            }
            Err(Error::Closed { .. }) => {
                reader.wait_eof(link, Instant::now() + link.close_timeout);
                break None;
            }
            Err(e) => break Some(e),
        }
    };
    let mut st = link.state();
    link.teardown(&mut st, "closed");
    st.reader_done = true;
    st.reader_error = error;
    link.finished.notify_all();
}

impl CallbackClient {
    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.sender.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.sender.send_binary(data)
    }

    /// Sends a ping (payload at most 125 bytes).
    pub fn send_ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.sender.send_ping(payload)
    }

    /// Starts the closing handshake; the reader thread completes it. Wait with
    /// [`CallbackClient::wait_for_close`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.sender.close(code, reason)
    }

    /// A sender for other threads.
    pub fn sender(&self) -> ClientSender {
        self.sender.clone()
    }

    /// Blocks until the connection has ended and the reader thread finished (`timeout`: `None` waits
    /// indefinitely). Returns how it ended; the first call after the reader failed returns that
    /// error instead ([`Error::Protocol`], [`Error::Io`], a pong or close timeout).
    ///
    /// On [`Error::Timeout`]`(`[`Operation::Close`]`)` nothing is changed: the connection stays as
    /// it is (call [`CallbackClient::close`] to end it).
    pub fn wait_for_close(&self, timeout: Option<Duration>) -> Result<CloseInfo, Error> {
        let link = &*self.sender.link;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = link.state();
        while !st.reader_done {
            match deadline {
                None => st = link.finished.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout(Operation::Close));
                    }
                    st = link.finished.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        }
        if let Some(e) = st.reader_error.take() {
            return Err(e);
        }
        Ok(st.closed.clone().unwrap_or_else(|| CloseInfo::abnormal("closed")))
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.response.protocol.as_deref()
    }

    /// The server's 101 response.
    pub fn response(&self) -> &UpgradeResponse {
        &self.response
    }

    /// The URL connected to.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        self.sender.is_open()
    }

    /// The local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sender.link.stream.local_addr()
    }

    /// The server's socket address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sender.link.stream.peer_addr()
    }
}

impl Drop for CallbackClient {
    fn drop(&mut self) {
        self.sender.link.abandon();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Reads what `stream` holds right now, without blocking: `MSG_DONTWAIT` applies to this one call, whereas
/// switching the socket to non-blocking mode would also make another thread's blocking writes on the same
/// socket fail with `WouldBlock`.
#[cfg(unix)]
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call (an exclusive borrow), and
    // the descriptor is `stream`'s own, kept open by the shared borrow for the whole call. `recv` writes at
    // most `buf.len()` bytes and returns how many, or -1 with errno set.
    let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Elsewhere the caller never takes this path (`cfg!(unix)` is false); a blocking read keeps it correct.
#[cfg(not(unix))]
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    (&*stream).read(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_that_hangs_times_out_and_a_quick_one_answers() {
        let slow = resolve_within("slow.example", Duration::from_millis(50), || {
            thread::sleep(Duration::from_secs(2));
            Ok(vec![])
        });
        assert!(matches!(slow, Err(Error::Timeout(Operation::Resolve))), "{slow:?}");
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let quick = resolve_within("quick.example", Duration::from_secs(5), move || Ok(vec![addr]));
        assert_eq!(quick.unwrap(), vec![addr]);
        let failed = resolve_within("bad.example", Duration::from_secs(5), || Err(io::Error::other("no such host")));
        assert!(matches!(failed, Err(Error::Resolve { ref host, .. }) if host == "bad.example"), "{failed:?}");
    }

    #[cfg(unix)]
    #[test]
    fn recv_now_takes_what_is_there_and_leaves_the_socket_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let empty = recv_now(&ours, &mut buf).unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::WouldBlock);
        peer.write_all(b"hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let n = loop {
            match recv_now(&ours, &mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        // The socket itself is still blocking: a plain read waits for the timeout instead of failing at once.
        ours.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let started = Instant::now();
        let err = (&ours).read(&mut buf).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(40), "{:?}", started.elapsed());
    }

    #[test]
    fn read_buf_keeps_unconsumed_bytes_across_growth() {
        let mut buf = ReadBuf::default();
        buf.push(b"hello");
        buf.consume(2);
        let spare = buf.spare();
        assert!(spare.len() >= MIN_READ);
        spare[..3].copy_from_slice(b"abc");
        buf.filled(3);
        assert_eq!(buf.filled_mut(), b"lloabc");
        buf.consume(6);
        assert_eq!(buf.filled_mut(), b"");
    }

    #[test]
    fn options_defaults_are_as_documented() {
        let o = ClientOptions::default();
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.handshake_timeout, Duration::from_secs(10));
        assert_eq!(o.read_timeout, None);
        assert_eq!(o.write_timeout, None);
        assert_eq!(o.ping_interval, None);
        assert!(o.connection.auto_pong);
        assert!(o.nodelay);
        let o = o.max_message_size(5).subprotocol("a").header("Origin", "x");
        assert_eq!(o.connection.max_message_size, 5);
        assert_eq!(o.subprotocols, ["a"]);
    }
}

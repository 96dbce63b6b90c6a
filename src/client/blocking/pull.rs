//! The pull-style client: [`Client`] and [`with_connection`].
//!
//! Owns: the caller-driven read loop's entry points and the close sequence a pull client runs. Never
//! touches: threads (a `Client` is used by one thread at a time).

#[cfg(doc)]
use super::connect_with_callback;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::MessageKind;
use crate::proto::handshake::UpgradeResponse;
use crate::proto::{CloseCode, CloseState};

use super::super::error::{Error, Operation};
use super::super::url::WsUrl;
use super::connect::open;
use super::link::Link;
use super::options::{ClientOptions, CloseInfo, Message};
use super::reader::Reader;

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
/// Resolves the host, tries each address with [`ClientOptions::connect_timeout`] (or opens a tunnel
/// through [`ClientOptions::proxy`]), then runs the handshake within
/// [`ClientOptions::handshake_timeout`]. Frames the server sent right after its 101
/// response are kept and returned by the first reads. `wss://` URLs fail with
/// [`Error::TlsUnsupported`]. [`ClientOptions::on_message`] is ignored (see [`connect_with_callback`]).
///
/// A [`Client`] has no thread of its own: pings are answered and keepalive pings
/// ([`ClientOptions::ping_interval`]) sent only while it reads ([`Client::read_message`],
/// [`Client::wait_for_close`], [`Client::poll`]). Between reads nothing is sent; call [`Client::poll`]
/// now and then to keep pinging, or use [`connect_with_callback`], whose reader thread reads all the time.
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

    /// Does what a read does, without waiting: takes what arrived, answers pings, consumes pongs, sends the
    /// keepalive ping when one is due ([`ClientOptions::ping_interval`]) and notices a pong timeout.
    /// Returns a message that is complete, `None` when there is none (the connection stays usable).
    ///
    /// Keepalive runs only while the client reads: inside [`Client::read_message`],
    /// [`Client::wait_for_close`] and this call. A client that only sends, or waits on something else
    /// between reads, calls `poll` every so often (more often than the ping interval) to keep pinging.
    /// Errors: those of [`Client::read_message`], except the read timeout.
    pub fn poll(&mut self) -> Result<Option<Message>, Error> {
        match self.read_message(Some(Duration::ZERO)) {
            Ok(message) => Ok(Some(message)),
            Err(Error::Timeout(Operation::Read)) => Ok(None),
            Err(e) => Err(e),
        }
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
        if stream.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let result = stream.read(self.reader.buf.spare());
        let restored = stream.tcp().set_nonblocking(false).is_ok();
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

    /// For a `wss://` connection, whether its TLS handshake resumed an earlier session (a second
    /// connection made with the same [`ClientTls`](crate::client::ClientTls) does); `None` for `ws://`.
    #[cfg(feature = "tls")]
    pub fn tls_resumed(&self) -> Option<bool> {
        self.link.stream.resumed()
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

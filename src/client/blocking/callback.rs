//! The push-style client: [`CallbackClient`], its reader thread, and [`ClientSender`] for any thread.
//!
//! Owns: the reader thread's loop and its hand-over of how the connection ended. Never touches: the
//! handshake.

#[cfg(doc)]
use super::connect;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::metrics::MessageKind;
use crate::proto::handshake::UpgradeResponse;
use crate::proto::CloseCode;

use super::super::error::{Error, Operation};
use super::super::url::WsUrl;
use super::connect::open;
use super::link::{Link, READER_WAKE};
use super::options::{ClientOptions, CloseInfo, MessageCallback};
use super::reader::Reader;

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

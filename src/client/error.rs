//! The client's error type: one enum a caller can match, each variant saying what happened and what
//! to check.
//!
//! Owns: the classification of client failures. Never touches: I/O.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::handshake::HandshakeError;
use crate::proto::{CloseCode, ProtocolError, SendError};

use super::proxy::ProxyError;
use super::tls::TlsFailure;
use super::url::UrlError;

/// The operation whose time ran out, in [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Resolving the host name (bounded by `ClientOptions::connect_timeout`).
    Resolve,
    /// Opening the TCP connection (`ClientOptions::connect_timeout`, per address tried).
    Connect,
    /// The HTTP upgrade exchange (`ClientOptions::handshake_timeout`).
    Handshake,
    /// The TLS handshake of a `wss://` connection (`ClientOptions::handshake_timeout`).
    TlsHandshake,
    /// Waiting for a message (the `read_message` timeout or `ClientOptions::read_timeout`). The
    /// connection stays usable.
    Read,
    /// Writing a frame (`ClientOptions::write_timeout`). Part of a frame may have been written, so the
    /// connection is closed.
    Write,
    /// The closing handshake: the peer's close frame did not arrive in time. The connection is closed.
    Close,
    /// Waiting for a connection from a pool.
    Acquire,
    /// A keepalive ping (`ClientOptions::ping_interval`) got no answer within
    /// `ClientOptions::pong_timeout`. The connection was closed (1001, "pong timeout").
    Pong,
}

impl Operation {
    fn describe(self) -> &'static str {
        match self {
            Self::Resolve => {
                "resolving the host name timed out (is a DNS server reachable? the lookup is bounded by \
                 ClientOptions::connect_timeout)"
            }
            Self::Connect => {
                "connecting timed out (is the host reachable and the port open? raise \
                 ClientOptions::connect_timeout for slow networks)"
            }
            Self::Handshake => {
                "the server did not answer the upgrade request in time (is it a WebSocket \
                 endpoint? is it overloaded? see ClientOptions::handshake_timeout)"
            }
            Self::TlsHandshake => {
                "the server did not complete the TLS handshake in time (is it a TLS port? see \
                 ClientOptions::handshake_timeout)"
            }
            Self::Read => "no message arrived in time; the connection is still usable",
            Self::Write => {
                "writing timed out: the peer is not reading (see ClientOptions::write_timeout); \
                 the connection was closed"
            }
            Self::Close => {
                "the peer did not complete the closing handshake in time; the connection was \
                 closed"
            }
            Self::Acquire => "no pooled connection became available in time",
            Self::Pong => {
                "the peer did not answer a keepalive ping within the pong timeout; the \
                 connection was closed as dead"
            }
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resolve => "resolve",
            Self::Connect => "connect",
            Self::Handshake => "handshake",
            Self::TlsHandshake => "TLS handshake",
            Self::Read => "read",
            Self::Write => "write",
            Self::Close => "close",
            Self::Acquire => "acquire",
            Self::Pong => "pong",
        })
    }
}

/// Everything a WebSocket client operation can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed.
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: UrlError,
    },
    /// The URL is `wss://` and this build has no TLS (the `tls` feature is off).
    TlsUnsupported,
    /// The TLS handshake or session failed; `failure` says why in a bucket to match, `detail` is
    /// rustls' own description.
    Tls {
        /// Why, e.g. [`TlsFailure::UnknownIssuer`] or [`TlsFailure::WrongHostName`].
        failure: TlsFailure,
        /// rustls' description of the error.
        detail: String,
    },
    /// The host name could not be resolved to any address.
    Resolve {
        /// The host looked up.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the host accepted the TCP connection; `addr` is the last one tried.
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed (refused, unreachable, ...).
        source: io::Error,
    },
    /// The tunnel through the proxy (`ClientOptions::proxy`) could not be opened: the proxy could not be
    /// reached, refused, timed out or answered garbage.
    Proxy {
        /// The proxy, as its URL without credentials (`http://127.0.0.1:3128`).
        proxy: String,
        /// What went wrong.
        kind: ProxyError,
    },
    /// The opening handshake failed. A non-101 answer is [`HandshakeError::Rejected`], which holds the
    /// HTTP status and the response headers.
    Handshake(HandshakeError),
    /// The server accepted an extension this client has no implementation for (see
    /// `ClientOptions::extension_factory`). The connection was dropped.
    UnsupportedExtension {
        /// The extension's name.
        name: String,
    },
    /// An operation ran out of time; [`Operation`] says which and whether the connection survives.
    Timeout(Operation),
    /// The peer broke the protocol; the connection was failed with the error's close code (sent to the
    /// peer) and closed.
    Protocol(ProtocolError),
    /// The connection is closed, or closing so that nothing more can be sent or received.
    ///
    /// `code` is the peer's close code, or the one we closed with when we failed the connection.
    /// `None`: the peer's close frame carried no code (1005). `Some(CloseCode::ABNORMAL)` (1006): the
    /// TCP connection ended without a closing handshake.
    Closed {
        /// The close code, if any (see above).
        code: Option<CloseCode>,
        /// The close reason (may be empty).
        reason: String,
    },
    /// A send was refused by the protocol rules: a ping payload over 125 bytes, a close code that may
    /// not be sent, or an extension failing to encode. The connection is unaffected.
    Send(SendError),
    /// The pool has no free connection and may not open another.
    PoolExhausted,
    /// The pool was closed.
    PoolClosed,
    /// Recent failures to this host opened the circuit breaker: no attempt is made until `retry_in`
    /// has passed.
    CircuitOpen {
        /// The host whose circuit is open.
        host: String,
        /// Time until the next attempt is allowed.
        retry_in: Duration,
    },
    /// An I/O error on an established connection (reset by the peer, ...). The connection is closed.
    Io(io::Error),
}

impl Error {
    /// Whether the connection this error came from is still usable: true only for a read timeout and
    /// a refused send. Every other error either ended the connection or came before there was one.
    pub fn keeps_connection(&self) -> bool {
        matches!(self, Self::Timeout(Operation::Read) | Self::Send(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => {
                write!(f, "invalid WebSocket URL {url:?}: {reason}")
            }
            Self::TlsUnsupported => {
                f.write_str("TLS (wss://) is not in this build: enable the `tls` feature, or use a ws:// URL")
            }
            Self::Tls { failure, detail } => write!(f, "TLS failed: {failure} ({detail})"),
            Self::Resolve { host, source } => {
                write!(f, "cannot resolve host {host:?}: {source} (check the name and the DNS configuration)")
            }
            Self::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source} (is the server running and the port right?)")
            }
            Self::Proxy { proxy, kind } => write!(f, "proxy {proxy}: {kind}"),
            Self::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Self::UnsupportedExtension { name } => write!(
                f,
                "the server accepted extension {name:?}, which this client cannot run (offer only \
                 extensions the extension factory implements)"
            ),
            Self::Timeout(op) => write!(f, "{op} timeout: {}", op.describe()),
            Self::Protocol(e) => {
                write!(
                    f,
                    "the server broke the WebSocket protocol ({e}); the connection was closed with {}",
                    e.close_code()
                )
            }
            Self::Closed { code, reason } => {
                f.write_str("the WebSocket connection is closed")?;
                match code {
                    Some(CloseCode::ABNORMAL) => f.write_str(" abnormally (1006: no closing handshake)")?,
                    Some(code) => write!(f, " with code {code}")?,
                    None => f.write_str(" without a status code (1005)")?,
                }
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
            Self::Send(e) => write!(f, "cannot send: {e}"),
            Self::PoolExhausted => f.write_str("connection pool exhausted (raise its maximum or release connections)"),
            Self::PoolClosed => f.write_str("the connection pool is closed"),
            Self::CircuitOpen { host, retry_in } => {
                write!(f, "circuit open for {host}: recent connection attempts failed; retry in {retry_in:?}")
            }
            Self::Io(e) => write!(f, "WebSocket I/O error: {e}; the connection is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidUrl { reason, .. } => Some(reason),
            Self::Resolve { source, .. } | Self::Connect { source, .. } => Some(source),
            Self::Handshake(e) => Some(e),
            Self::Proxy { kind, .. } => Some(kind),
            Self::Protocol(e) => Some(e),
            Self::Send(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_says_what_happened_and_what_to_check() {
        let e = Error::Timeout(Operation::Handshake);
        assert!(e.to_string().contains("handshake timeout"));
        let e = Error::Closed { code: Some(CloseCode::NORMAL), reason: "bye".into() };
        assert_eq!(e.to_string(), "the WebSocket connection is closed with code 1000: bye");
        assert!(Error::TlsUnsupported.to_string().contains("TLS (wss://) is not in this build"));
        let e = Error::Handshake(HandshakeError::Rejected { status: 404, headers: Vec::new() });
        assert!(e.to_string().contains("404"));
        assert!(e.source().is_some());
    }

    #[test]
    fn only_read_timeouts_and_refused_sends_keep_the_connection() {
        assert!(Error::Timeout(Operation::Read).keeps_connection());
        assert!(Error::Send(SendError::ControlTooLong).keeps_connection());
        assert!(!Error::Timeout(Operation::Write).keeps_connection());
        assert!(!Error::Io(io::ErrorKind::ConnectionReset.into()).keeps_connection());
    }
}

//! [`HandshakeError`]: everything that can go wrong in the opening handshake, with the HTTP status a
//! server answers it with.

use std::fmt;

use super::super::negotiate::NegotiateError;
#[cfg(doc)]
use super::{error_response, write_request, write_response, HandshakeLimits};

/// Everything that can go wrong in the opening handshake.
///
/// Errors found in a request (server side) map to the HTTP status to answer with
/// ([`HandshakeError::status`]) and [`error_response`] builds that answer. Errors found in a response
/// (client side: [`HandshakeError::Rejected`], `Response*`, [`HandshakeError::AcceptMismatch`],
/// `Unoffered*`, [`HandshakeError::MultipleProtocols`]) are never answered; their status is 502, what a
/// gateway would say. Variants shared by both sides (limits, malformed head, header syntax) carry the
/// server's status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is longer than [`HandshakeLimits::max_head_bytes`] (431).
    HeadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The head has more header lines than [`HandshakeLimits::max_headers`] (431).
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// The bytes are not an HTTP/1.x head (400).
    MalformedHead {
        /// What the HTTP parser refused.
        reason: &'static str,
    },
    /// The message is HTTP/1.`minor` with `minor != 1`; the handshake needs HTTP/1.1 (400).
    UnsupportedHttpVersion {
        /// The minor version received (0 for HTTP/1.0).
        minor: u8,
    },
    /// A plain HTTP request: no `Upgrade` header listing `websocket` (426, advertising
    /// `Upgrade: websocket`). The engine may serve such requests itself instead.
    NotUpgrade,
    /// The upgrade request's method is not GET (405, with `Allow: GET`).
    MethodNotAllowed {
        /// The method received.
        method: String,
    },
    /// The request target is neither origin-form (`/path?query`) nor absolute-form (400).
    InvalidTarget {
        /// The request target received.
        target: String,
    },
    /// No `Host` header (400).
    MissingHost,
    /// A header that must appear at most once appeared several times (400).
    DuplicateHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header value is not valid UTF-8 (400).
    InvalidHeaderValue {
        /// The header's name.
        name: &'static str,
    },
    /// The upgrade request announces a body (`Content-Length` other than 0, or `Transfer-Encoding`);
    /// the bytes after the head must be WebSocket frames (400).
    UnexpectedBody,
    /// The `Connection` header is missing or does not list `upgrade` (400).
    MissingConnectionUpgrade {
        /// The `Connection` value(s) received, if any.
        connection: Option<String>,
    },
    /// No `Sec-WebSocket-Key` header (400).
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of exactly 16 bytes (400).
    InvalidKey {
        /// The key received.
        key: String,
    },
    /// `Sec-WebSocket-Version` is missing or not 13 (426, advertising `Sec-WebSocket-Version: 13`).
    UnsupportedVersion {
        /// The version received, if any.
        version: Option<String>,
    },
    /// A `Sec-WebSocket-Protocol` header is not a comma-separated list of tokens (400).
    InvalidProtocols(NegotiateError),
    /// A `Sec-WebSocket-Extensions` header does not follow RFC 6455 §9.1 (400).
    InvalidExtensions(NegotiateError),
    /// Client side: the server answered with a status other than 101 (502).
    Rejected {
        /// The status code received.
        status: u16,
        /// The response headers, names as sent.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Client side: the 101 response has no `Upgrade` header listing `websocket` (502).
    ResponseMissingUpgrade {
        /// The `Upgrade` value(s) received, if any.
        upgrade: Option<String>,
    },
    /// Client side: the 101 response's `Connection` header does not list `upgrade` (502).
    ResponseMissingConnectionUpgrade {
        /// The `Connection` value(s) received, if any.
        connection: Option<String>,
    },
    /// Client side: `Sec-WebSocket-Accept` is missing or does not match the key sent (502).
    AcceptMismatch {
        /// The value derived from the key sent.
        expected: String,
        /// The value received, if any.
        got: Option<String>,
    },
    /// Client side: the server chose a subprotocol the client did not offer (502).
    UnofferedProtocol {
        /// The subprotocol received.
        protocol: String,
    },
    /// Client side: the server's `Sec-WebSocket-Protocol` names more than one subprotocol (502).
    MultipleProtocols {
        /// The subprotocols received.
        protocols: Vec<String>,
    },
    /// Client side: the server accepted an extension the client did not offer (502).
    UnofferedExtension {
        /// The extension name received.
        name: String,
    },
    /// Client side: the server's permessage-deflate answer breaks RFC 7692 (unknown, duplicate or
    /// out-of-range parameters, or not what was offered) (502).
    InvalidDeflateResponse(crate::proto::deflate::DeflateResponseError),
    /// Local: a value given to [`write_request`] or [`write_response`] cannot be written as a header
    /// without breaking the HTTP message (CR/LF or other control bytes, a name that is not a token,
    /// a header the handshake writes itself). Nothing was written (500).
    InvalidOutgoingHeader {
        /// The header (or request part) at fault.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl HandshakeError {
    /// The HTTP status a server answers this error with (see the type's documentation for errors
    /// found on the client side).
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::MethodNotAllowed { .. } => 405,
            Self::NotUpgrade | Self::UnsupportedVersion { .. } => 426,
            Self::MalformedHead { .. }
            | Self::UnsupportedHttpVersion { .. }
            | Self::InvalidTarget { .. }
            | Self::MissingHost
            | Self::DuplicateHeader { .. }
            | Self::InvalidHeaderValue { .. }
            | Self::UnexpectedBody
            | Self::MissingConnectionUpgrade { .. }
            | Self::MissingKey
            | Self::InvalidKey { .. }
            | Self::InvalidProtocols(_)
            | Self::InvalidExtensions(_) => 400,
            Self::Rejected { .. }
            | Self::ResponseMissingUpgrade { .. }
            | Self::ResponseMissingConnectionUpgrade { .. }
            | Self::AcceptMismatch { .. }
            | Self::UnofferedProtocol { .. }
            | Self::MultipleProtocols { .. }
            | Self::UnofferedExtension { .. }
            | Self::InvalidDeflateResponse(_) => 502,
            Self::InvalidOutgoingHeader { .. } => 500,
        }
    }

    /// The short body sent to the peer by [`error_response`]. Fixed text: nothing the peer sent is
    /// echoed back.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::HeadTooLarge { .. } => "The request head is too large.\n",
            Self::TooManyHeaders { .. } => "The request has too many headers.\n",
            Self::MalformedHead { .. } => "Malformed HTTP request.\n",
            Self::UnsupportedHttpVersion { .. } => "A WebSocket handshake requires HTTP/1.1.\n",
            Self::NotUpgrade => {
                "This is a WebSocket endpoint: send an HTTP/1.1 GET with \
                 Upgrade: websocket and Connection: Upgrade.\n"
            }
            Self::MethodNotAllowed { .. } => "A WebSocket handshake must use GET.\n",
            Self::InvalidTarget { .. } => "Invalid request target.\n",
            Self::MissingHost => "Missing Host header.\n",
            Self::DuplicateHeader { .. } => "A handshake header appears more than once.\n",
            Self::InvalidHeaderValue { .. } => "A header value is not valid UTF-8.\n",
            Self::UnexpectedBody => "A WebSocket handshake request must not have a body.\n",
            Self::MissingConnectionUpgrade { .. } => "The Connection header must list Upgrade.\n",
            Self::MissingKey => "Missing Sec-WebSocket-Key header.\n",
            Self::InvalidKey { .. } => "Sec-WebSocket-Key must be the base64 encoding of 16 bytes.\n",
            Self::UnsupportedVersion { .. } => "Unsupported WebSocket version: this server speaks 13.\n",
            Self::InvalidProtocols(_) => "Malformed Sec-WebSocket-Protocol header.\n",
            Self::InvalidExtensions(_) => "Malformed Sec-WebSocket-Extensions header.\n",
            Self::Rejected { .. }
            | Self::ResponseMissingUpgrade { .. }
            | Self::ResponseMissingConnectionUpgrade { .. }
            | Self::AcceptMismatch { .. }
            | Self::UnofferedProtocol { .. }
            | Self::MultipleProtocols { .. }
            | Self::UnofferedExtension { .. }
            | Self::InvalidDeflateResponse(_) => "Invalid WebSocket handshake response upstream.\n",
            Self::InvalidOutgoingHeader { .. } => "Internal error.\n",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeadTooLarge { limit } => write!(
                f,
                "handshake head exceeds {limit} bytes without ending (check for a runaway client, \
                 or raise HandshakeLimits::max_head_bytes)"
            ),
            Self::TooManyHeaders { limit } => write!(
                f,
                "handshake head has more than {limit} headers (raise HandshakeLimits::max_headers \
                 if this peer is legitimate)"
            ),
            Self::MalformedHead { reason } => write!(
                f,
                "handshake head is not valid HTTP/1.x: {reason} (is the peer speaking TLS or \
                 HTTP/2 to a plain HTTP/1.1 port?)"
            ),
            Self::UnsupportedHttpVersion { minor } => {
                write!(f, "handshake uses HTTP/1.{minor}; a WebSocket handshake requires HTTP/1.1")
            }
            Self::NotUpgrade => f.write_str(
                "not a WebSocket upgrade: no Upgrade header listing `websocket` (a plain HTTP \
                 request, or a proxy that strips hop-by-hop headers)",
            ),
            Self::MethodNotAllowed { method } => {
                write!(f, "upgrade request method is {method:?}; a WebSocket handshake must be a GET")
            }
            Self::InvalidTarget { target } => {
                write!(f, "request target {target:?} is neither /path?query nor an absolute URI")
            }
            Self::MissingHost => f.write_str("upgrade request has no Host header"),
            Self::DuplicateHeader { name } => {
                write!(f, "header {name} appears more than once; it must be sent once")
            }
            Self::InvalidHeaderValue { name } => {
                write!(f, "header {name} is not valid UTF-8")
            }
            Self::UnexpectedBody => f.write_str(
                "upgrade request announces a body (Content-Length or Transfer-Encoding); bytes \
                 after the head must be WebSocket frames",
            ),
            Self::MissingConnectionUpgrade { connection } => write!(
                f,
                "Connection header {connection:?} does not list `upgrade` (check proxies that \
                 rewrite Connection)"
            ),
            Self::MissingKey => f.write_str("upgrade request has no Sec-WebSocket-Key header"),
            Self::InvalidKey { key } => {
                write!(f, "Sec-WebSocket-Key {key:?} is not the base64 encoding of exactly 16 bytes")
            }
            Self::UnsupportedVersion { version } => {
                write!(f, "Sec-WebSocket-Version is {version:?}; only version 13 (RFC 6455) is supported")
            }
            Self::InvalidProtocols(e) => write!(f, "malformed Sec-WebSocket-Protocol: {e}"),
            Self::InvalidExtensions(e) => write!(f, "malformed Sec-WebSocket-Extensions: {e}"),
            Self::Rejected { status, .. } => write!(
                f,
                "server answered {status} instead of 101 Switching Protocols (check the URL path, \
                 authentication, Origin and the response headers)"
            ),
            Self::ResponseMissingUpgrade { upgrade } => {
                write!(f, "101 response's Upgrade header {upgrade:?} does not list `websocket`")
            }
            Self::ResponseMissingConnectionUpgrade { connection } => {
                write!(f, "101 response's Connection header {connection:?} does not list `upgrade`")
            }
            Self::AcceptMismatch { expected, got } => write!(
                f,
                "Sec-WebSocket-Accept is {got:?}, expected {expected:?} (the server, or a proxy \
                 in between, did not answer this request's key)"
            ),
            Self::UnofferedProtocol { protocol } => {
                write!(f, "server chose subprotocol {protocol:?}, which this client did not offer")
            }
            Self::MultipleProtocols { protocols } => {
                write!(f, "server answered several subprotocols {protocols:?}; it must choose at most one")
            }
            Self::UnofferedExtension { name } => {
                write!(f, "server accepted extension {name:?}, which this client did not offer")
            }
            Self::InvalidDeflateResponse(e) => write!(f, "invalid permessage-deflate answer: {e}"),
            Self::InvalidOutgoingHeader { name, reason } => {
                write!(f, "cannot write header {name:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidProtocols(e) | Self::InvalidExtensions(e) => Some(e),
            Self::InvalidDeflateResponse(e) => Some(e),
            _ => None,
        }
    }
}

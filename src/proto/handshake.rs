//! The opening handshake (RFC 6455 §4), sans-IO: parsing and validating the HTTP/1.1 upgrade request
//! and response, and writing them.
//!
//! Owns: the HTTP head of both handshake messages, the `Sec-WebSocket-Key` / `Sec-WebSocket-Accept`
//! exchange, the HTTP error answers to a bad upgrade request, and the client's check that the server
//! only chose what was offered. Never touches: sockets, timeouts, the Origin/path/query policy (that is
//! the application's), or what a negotiated extension does (see [`crate::proto::negotiate`] for the
//! header grammar and [`Extension`](crate::proto::Extension) for the extensions themselves).
//!
//! Both parsers take the bytes read so far and answer `Ok(None)` until the head is complete. On
//! success they return how many bytes the head took: whatever follows (`buf[n..]`) already belongs to
//! the WebSocket connection (a client may pipeline frames after its request, a server may send
//! frames right after its 101) and must be fed to the frame parser, never dropped.
//!
//! Server flow: [`parse_request`] → choose a subprotocol and extensions → [`write_response`], or on
//! error [`error_response`] and close. Client flow: [`write_request`] → [`parse_response`].

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::negotiate::{self, ExtensionOffer, NegotiateError};

/// The GUID appended to `Sec-WebSocket-Key` before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this crate speaks (`Sec-WebSocket-Version: 13`).
pub const WEBSOCKET_VERSION: &str = "13";

/// Bounds on a handshake head, so that a peer cannot make us buffer or parse without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// The largest head (request or status line, headers, final blank line) accepted, in bytes.
    /// Default 8192. A longer head fails with [`HandshakeError::HeadTooLarge`] (431).
    pub max_head_bytes: usize,
    /// The most header lines accepted. Default 64. More fail with
    /// [`HandshakeError::TooManyHeaders`] (431).
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_head_bytes: 8192, max_headers: 64 }
    }
}

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
            | Self::UnofferedExtension { .. } => 502,
            Self::InvalidOutgoingHeader { .. } => 500,
        }
    }

    /// The short body sent to the peer by [`error_response`]. Fixed text: nothing the peer sent is
    /// echoed back.
    fn public_message(&self) -> &'static str {
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
            | Self::UnofferedExtension { .. } => "Invalid WebSocket handshake response upstream.\n",
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
            _ => None,
        }
    }
}

/// A validated WebSocket upgrade request (server side), owning everything it holds.
///
/// It does not judge Origin, path or query: that is the application's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRequest {
    /// The path of the request target, without the query, not percent-decoded (e.g. `/chat`).
    pub path: String,
    /// The query after `?`, not percent-decoded, if the target had one.
    pub query: Option<String>,
    /// The `Host` header, trimmed.
    pub host: String,
    /// The `Sec-WebSocket-Key` header, trimmed (validated: base64 of 16 bytes). Give it to
    /// [`write_response`].
    pub key: String,
    /// The offered subprotocols, in the client's order, from every `Sec-WebSocket-Protocol` line.
    pub protocols: Vec<String>,
    /// The offered extensions, in the client's order, from every `Sec-WebSocket-Extensions` line.
    pub extensions: Vec<ExtensionOffer>,
    /// The `Origin` header, trimmed, if sent.
    pub origin: Option<String>,
    /// Every header in order, names as sent, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl UpgradeRequest {
    /// The first header named `name` (ASCII case-insensitive), trimmed, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The offered subprotocols as string slices, the shape
    /// [`SubprotocolPolicy::select`](negotiate::SubprotocolPolicy::select) takes.
    pub fn offered_protocols(&self) -> Vec<&str> {
        self.protocols.iter().map(String::as_str).collect()
    }
}

/// A validated 101 response to this client's upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeResponse {
    /// The subprotocol the server chose (one the client offered), if any.
    pub protocol: Option<String>,
    /// The extensions the server accepted, with the parameters it answered (each one offered by the
    /// client; their parameters are for the extension to check).
    pub extensions: Vec<ExtensionOffer>,
    /// Every header in order, names as sent, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl UpgradeResponse {
    /// The first header named `name` (ASCII case-insensitive), trimmed, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// ```
/// use wsloop::proto::handshake::accept_key;
/// // The example of RFC 6455 §1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

// ---------------------------------------------------------------------------------------------------
// Header helpers

fn find_header<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::trim)
}

fn header_values<'h>(headers: &'h [(String, Vec<u8>)], name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Whether any comma-separated element of any `name` header equals `token` (ASCII case-insensitive).
fn lists_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    header_values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Every `name` header joined with ", " (lossy), for error reports; `None` if absent.
fn joined_lossy(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in header_values(headers, name) {
        let s = out.get_or_insert_with(String::new);
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(String::from_utf8_lossy(v).trim());
    }
    out
}

/// The only `name` header, trimmed: `Ok(None)` if absent, an error if repeated or not UTF-8.
fn single_header<'h>(headers: &'h [(String, Vec<u8>)], name: &'static str) -> Result<Option<&'h str>, HandshakeError> {
    let mut values = header_values(headers, name);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader { name });
    }
    std::str::from_utf8(first).map(|s| Some(s.trim())).map_err(|_| HandshakeError::InvalidHeaderValue { name })
}

/// Every `name` header as UTF-8 strings, in order.
fn utf8_values<'h>(headers: &'h [(String, Vec<u8>)], name: &'static str) -> Result<Vec<&'h str>, HandshakeError> {
    header_values(headers, name)
        .map(|v| std::str::from_utf8(v).map_err(|_| HandshakeError::InvalidHeaderValue { name }))
        .collect()
}

fn parse_protocol_headers(headers: &[(String, Vec<u8>)]) -> Result<Vec<String>, HandshakeError> {
    let mut out = Vec::new();
    for v in utf8_values(headers, "Sec-WebSocket-Protocol")? {
        out.extend(negotiate::parse_protocol_list(v).map_err(HandshakeError::InvalidProtocols)?);
    }
    Ok(out)
}

fn parse_extension_headers(headers: &[(String, Vec<u8>)]) -> Result<Vec<ExtensionOffer>, HandshakeError> {
    negotiate::parse_extension_headers(utf8_values(headers, "Sec-WebSocket-Extensions")?)
        .map_err(HandshakeError::InvalidExtensions)
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect()
}

fn malformed(err: httparse::Error, limits: &HandshakeLimits) -> HandshakeError {
    let reason = match err {
        httparse::Error::TooManyHeaders => return HandshakeError::TooManyHeaders { limit: limits.max_headers },
        httparse::Error::HeaderName => "invalid byte in a header name",
        httparse::Error::HeaderValue => "invalid byte in a header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid response status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::Version => "invalid HTTP version",
    };
    HandshakeError::MalformedHead { reason }
}

/// Storage for httparse's header slots: on the stack for the usual limits, on the heap beyond.
struct HeaderSlots<'b> {
    stack: [httparse::Header<'b>; 64],
    heap: Vec<httparse::Header<'b>>,
}

impl<'b> HeaderSlots<'b> {
    fn new() -> Self {
        Self { stack: [httparse::EMPTY_HEADER; 64], heap: Vec::new() }
    }

    fn get(&mut self, n: usize) -> &mut [httparse::Header<'b>] {
        if n <= self.stack.len() {
            &mut self.stack[..n]
        } else {
            self.heap = vec![httparse::EMPTY_HEADER; n];
            &mut self.heap
        }
    }
}

/// The part of `buf` the head may occupy, and what to answer if it is incomplete there.
fn head_window<'b>(buf: &'b [u8], limits: &HandshakeLimits) -> &'b [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

fn incomplete<T>(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<T>, HandshakeError> {
    if buf.len() > limits.max_head_bytes {
        Err(HandshakeError::HeadTooLarge { limit: limits.max_head_bytes })
    } else {
        Ok(None)
    }
}

/// Splits an origin-form or absolute-form request target into path and query.
fn split_target(target: &str) -> Option<(String, Option<String>)> {
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return None;
        }
        rest.find(['/', '?']).map_or("", |i| &rest[i..])
    };
    let (path, query) = match origin_form.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (origin_form, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Some((path.to_owned(), query))
}

// ---------------------------------------------------------------------------------------------------
// Server side

/// Parses and validates a WebSocket upgrade request from the bytes received so far.
///
/// Returns `Ok(None)` while the head is incomplete (call again with more bytes), and
/// `Ok(Some((request, n)))` once it is complete and valid: the head took `buf[..n]` and `buf[n..]`
/// already belongs to the WebSocket connection. A head longer than `limits.max_head_bytes` fails with
/// [`HandshakeError::HeadTooLarge`] as soon as more bytes than that have arrived without its end.
///
/// Checks, in order: HTTP syntax and limits (400 / 431); an `Upgrade` header listing `websocket`
/// (otherwise [`HandshakeError::NotUpgrade`], 426: a plain HTTP request); method GET (405); HTTP/1.1
/// (400); `Host` (400); `Connection` listing `upgrade` (400); `Sec-WebSocket-Version: 13` (426);
/// `Sec-WebSocket-Key` decoding to 16 bytes (400); no request body (400); well-formed
/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` (400). Answer an error with
/// [`error_response`].
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    let mut slots = HeaderSlots::new();
    let mut req = httparse::Request::new(slots.get(limits.max_headers));
    let n = match req.parse(head_window(buf, limits)).map_err(|e| malformed(e, limits))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return incomplete(buf, limits),
    };
    let headers = owned_headers(req.headers);

    if !lists_token(&headers, "Upgrade", "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    // httparse fills method, path and version on a complete parse; be defensive anyway.
    let method = req.method.unwrap_or_default();
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed { method: method.to_owned() });
    }
    let minor = req.version.unwrap_or(0);
    if minor != 1 {
        return Err(HandshakeError::UnsupportedHttpVersion { minor });
    }
    let target = req.path.unwrap_or_default();
    let Some((path, query)) = split_target(target) else {
        return Err(HandshakeError::InvalidTarget { target: target.to_owned() });
    };
    let host = single_header(&headers, "Host")?.ok_or(HandshakeError::MissingHost)?.to_owned();
    if !lists_token(&headers, "Connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade { connection: joined_lossy(&headers, "Connection") });
    }
    match single_header(&headers, "Sec-WebSocket-Version") {
        Ok(Some(WEBSOCKET_VERSION)) => {}
        Ok(other) => return Err(HandshakeError::UnsupportedVersion { version: other.map(str::to_owned) }),
        Err(HandshakeError::InvalidHeaderValue { .. }) => {
            return Err(HandshakeError::UnsupportedVersion { version: joined_lossy(&headers, "Sec-WebSocket-Version") })
        }
        Err(e) => return Err(e),
    }
    let key = single_header(&headers, "Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?.to_owned();
    if !BASE64.decode(&key).is_ok_and(|k| k.len() == 16) {
        return Err(HandshakeError::InvalidKey { key });
    }
    let has_body = header_values(&headers, "Transfer-Encoding").next().is_some()
        || header_values(&headers, "Content-Length").any(|v| v.trim_ascii() != b"0");
    if has_body {
        return Err(HandshakeError::UnexpectedBody);
    }
    let protocols = parse_protocol_headers(&headers)?;
    let extensions = parse_extension_headers(&headers)?;
    let origin = single_header(&headers, "Origin")?.map(str::to_owned);

    Ok(Some((UpgradeRequest { path, query, host, key, protocols, extensions, origin, headers }, n)))
}

/// The reason phrase for the statuses this module writes.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// A complete, minimal HTTP/1.1 answer to a failed upgrade request: status line, `Connection:
/// close`, `Content-Type`, `Content-Length` and a short fixed text body (nothing the peer sent is
/// echoed). A 426 also carries `Upgrade: websocket` and `Sec-WebSocket-Version: 13`; a 405 carries
/// `Allow: GET`. Write it, then close the connection.
pub fn error_response(err: &HandshakeError) -> Vec<u8> {
    let status = err.status();
    let body = err.public_message();
    let mut extra = "";
    if status == 426 {
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    } else if status == 405 {
        extra = "Allow: GET\r\n";
    }
    format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {len}\r\n{extra}\r\n{body}",
        reason = reason_phrase(status),
        len = body.len(),
    )
    .into_bytes()
}

/// A minimal HTTP/1.1 response with a short text body and `Connection: close`, for refusals decided
/// above the protocol (unknown path: 404, origin not allowed: 403, ...).
pub fn plain_response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {len}\r\n\r\n{body}",
        reason = reason_phrase(status),
        len = body.len(),
    )
    .into_bytes()
}

/// Whether `value` can be written as a header value: HTAB, SP, visible ASCII and obs-text (no CR,
/// LF, NUL or other controls).
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

fn check_extra_headers(extra: &[(&str, &str)], reserved: &[&str]) -> Result<(), HandshakeError> {
    for (name, value) in extra {
        let invalid = |reason| Err(HandshakeError::InvalidOutgoingHeader { name: (*name).to_owned(), reason });
        if !negotiate::is_token(name) {
            return invalid("header name is not an HTTP token");
        }
        if !is_header_value(value) {
            return invalid("header value contains CR, LF or another control character");
        }
        if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return invalid("the handshake writes this header itself");
        }
    }
    Ok(())
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the `101 Switching Protocols` response to `out`.
///
/// `key` is the client's `Sec-WebSocket-Key` ([`UpgradeRequest::key`]); the `Sec-WebSocket-Accept`
/// value is derived from it. `protocol` is the chosen subprotocol (one the client offered, see
/// [`negotiate::SubprotocolPolicy`]), `extensions` the formatted `Sec-WebSocket-Extensions` answer (see
/// [`negotiate::format_extensions`]), and `extra_headers` anything else (e.g. `Set-Cookie`).
///
/// Fails, writing nothing, with [`HandshakeError::InvalidOutgoingHeader`] if `protocol` is not a
/// token, if a value holds CR/LF or other control bytes, if an extra header name is not a token, or
/// if an extra header is one the handshake writes itself (`Upgrade`, `Connection`,
/// `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`).
pub fn write_response(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Result<(), HandshakeError> {
    if protocol.is_some_and(|p| !negotiate::is_token(p)) {
        return Err(HandshakeError::InvalidOutgoingHeader {
            name: "Sec-WebSocket-Protocol".to_owned(),
            reason: "subprotocol is not an HTTP token",
        });
    }
    if extensions.is_some_and(|e| !is_header_value(e)) {
        return Err(HandshakeError::InvalidOutgoingHeader {
            name: "Sec-WebSocket-Extensions".to_owned(),
            reason: "header value contains CR, LF or another control character",
        });
    }
    check_extra_headers(
        extra_headers,
        &["Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"],
    )?;

    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Accept", &accept_key(key.as_bytes()));
    if let Some(p) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", p);
    }
    if let Some(e) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", e);
    }
    for (name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Client side

/// What a client puts in its upgrade request. Build it with [`ClientRequest::new`] and the `with_*`
/// methods, or set the public fields; [`write_request`] writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientRequest {
    /// The `Host` header: the host, with `:port` when the port is not the scheme's default
    /// (80 for ws, 443 for wss).
    pub host: String,
    /// The request target: path and optional query, starting with `/` (e.g. `/chat?room=1`).
    pub path_and_query: String,
    /// The subprotocols to offer, most preferred first (`Sec-WebSocket-Protocol`); each a token,
    /// no duplicates. Empty: the header is not sent.
    pub protocols: Vec<String>,
    /// The `Sec-WebSocket-Extensions` value to offer, already formatted (see
    /// [`negotiate::format_extensions`]). `None`: the header is not sent.
    pub extensions: Option<String>,
    /// Extra headers (e.g. `Origin`, `Authorization`, `User-Agent`), written in order.
    pub headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `path_and_query` on `host` with no subprotocols, extensions or extra headers.
    pub fn new(host: impl Into<String>, path_and_query: impl Into<String>) -> Self {
        Self { host: host.into(), path_and_query: path_and_query.into(), ..Self::default() }
    }

    /// Adds a subprotocol to offer (after those already added).
    #[must_use]
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets the `Sec-WebSocket-Extensions` value to offer.
    #[must_use]
    pub fn with_extensions(mut self, extensions: impl Into<String>) -> Self {
        self.extensions = Some(extensions.into());
        self
    }

    /// Adds an extra header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn validate(&self) -> Result<(), HandshakeError> {
        let invalid = |name: &str, reason| Err(HandshakeError::InvalidOutgoingHeader { name: name.to_owned(), reason });
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_graphic()) {
            return invalid("Host", "host must be non-empty visible ASCII without spaces");
        }
        if !self.path_and_query.starts_with('/') || !self.path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
            return invalid(
                "request target",
                "path must start with `/` and be visible ASCII without spaces (percent-encode it)",
            );
        }
        for (i, p) in self.protocols.iter().enumerate() {
            if !negotiate::is_token(p) {
                return invalid("Sec-WebSocket-Protocol", "subprotocol is not an HTTP token");
            }
            if self.protocols[..i].contains(p) {
                return invalid("Sec-WebSocket-Protocol", "subprotocol offered twice");
            }
        }
        if self.extensions.as_deref().is_some_and(|e| !is_header_value(e)) {
            return invalid("Sec-WebSocket-Extensions", "header value contains CR, LF or another control character");
        }
        let extra: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        check_extra_headers(
            &extra,
            &[
                "Host",
                "Upgrade",
                "Connection",
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Version",
                "Sec-WebSocket-Protocol",
                "Sec-WebSocket-Extensions",
                "Content-Length",
                "Transfer-Encoding",
            ],
        )
    }
}

/// Appends the upgrade request to `out` with a fresh random 16-byte key, and returns that key (the
/// `Sec-WebSocket-Key` value) for [`parse_response`].
///
/// Fails, writing nothing, with [`HandshakeError::InvalidOutgoingHeader`] if a field cannot be written
/// safely: an empty or spaced host, a target not starting with `/` or holding spaces or controls, a
/// subprotocol that is not a token or is repeated, CR/LF/control bytes in a value, an extra header
/// whose name is not a token or that the handshake writes itself (`Host`, `Upgrade`, `Connection`,
/// `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`).
pub fn write_request(req: &ClientRequest, out: &mut Vec<u8>) -> Result<String, HandshakeError> {
    write_request_with_nonce(req, &rand::random::<[u8; 16]>(), out)
}

/// [`write_request`] with a caller-chosen nonce, for deterministic tests. The nonce must be random for
/// each real connection (RFC 6455 §4.1); use [`write_request`] outside tests.
pub fn write_request_with_nonce(
    req: &ClientRequest,
    nonce: &[u8; 16],
    out: &mut Vec<u8>,
) -> Result<String, HandshakeError> {
    req.validate()?;
    let key = BASE64.encode(nonce);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_header(out, "Host", &req.host);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Key", &key);
    push_header(out, "Sec-WebSocket-Version", WEBSOCKET_VERSION);
    if !req.protocols.is_empty() {
        push_header(out, "Sec-WebSocket-Protocol", &req.protocols.join(", "));
    }
    if let Some(e) = &req.extensions {
        push_header(out, "Sec-WebSocket-Extensions", e);
    }
    for (name, value) in &req.headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(key)
}

/// Parses and validates the server's answer to an upgrade request from the bytes received so far.
///
/// `expected_key` is what [`write_request`] returned; `offered_protocols` the subprotocols offered;
/// `offered_extensions` the names of the extensions offered. Returns `Ok(None)` while the head is
/// incomplete, and `Ok(Some((response, n)))` once complete and valid: `buf[n..]` holds frames the
/// server sent right after its 101 and belongs to the WebSocket connection.
///
/// Checks, in order: HTTP syntax and limits; status 101 (otherwise [`HandshakeError::Rejected`] with
/// the status and headers received); HTTP/1.1; `Upgrade` listing `websocket`; `Connection` listing
/// `upgrade`; `Sec-WebSocket-Accept` matching the key; at most one subprotocol, one that was offered
/// (compared exactly); only extensions that were offered (names compared ASCII case-insensitively).
/// The accepted extensions' parameters are left to the extensions to check.
pub fn parse_response(
    buf: &[u8],
    expected_key: &str,
    offered_protocols: &[String],
    offered_extensions: &[String],
    limits: &HandshakeLimits,
) -> Result<Option<(UpgradeResponse, usize)>, HandshakeError> {
    let mut slots = HeaderSlots::new();
    let mut res = httparse::Response::new(slots.get(limits.max_headers));
    let n = match res.parse(head_window(buf, limits)).map_err(|e| malformed(e, limits))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return incomplete(buf, limits),
    };
    let headers = owned_headers(res.headers);

    let status = res.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Rejected { status, headers });
    }
    let minor = res.version.unwrap_or(0);
    if minor != 1 {
        return Err(HandshakeError::UnsupportedHttpVersion { minor });
    }
    if !lists_token(&headers, "Upgrade", "websocket") {
        return Err(HandshakeError::ResponseMissingUpgrade { upgrade: joined_lossy(&headers, "Upgrade") });
    }
    if !lists_token(&headers, "Connection", "upgrade") {
        return Err(HandshakeError::ResponseMissingConnectionUpgrade {
            connection: joined_lossy(&headers, "Connection"),
        });
    }
    let expected = accept_key(expected_key.as_bytes());
    let got = single_header(&headers, "Sec-WebSocket-Accept")?;
    if got != Some(expected.as_str()) {
        return Err(HandshakeError::AcceptMismatch { got: got.map(str::to_owned), expected });
    }

    let mut protocols = parse_protocol_headers(&headers)?;
    if protocols.len() > 1 {
        return Err(HandshakeError::MultipleProtocols { protocols });
    }
    let protocol = protocols.pop();
    if let Some(p) = &protocol {
        if !offered_protocols.contains(p) {
            return Err(HandshakeError::UnofferedProtocol { protocol: p.clone() });
        }
    }
    let extensions = parse_extension_headers(&headers)?;
    if let Some(e) = extensions.iter().find(|e| !offered_extensions.iter().any(|o| o.eq_ignore_ascii_case(&e.name))) {
        return Err(HandshakeError::UnofferedExtension { name: e.name.clone() });
    }

    Ok(Some((UpgradeResponse { protocol, extensions, headers }, n)))
}

/// The client side of the opening handshake as a sans-IO state machine: it writes the request, then is fed
/// the bytes that come back, in any pieces, until the response is complete and checked.
///
/// Used alike by the blocking client and the engine's in-loop clients. A head split across reads is kept
/// in a buffer of its own (bounded by [`HandshakeLimits::max_head_bytes`]); a head that arrives whole is
/// parsed in place, uncopied.
#[derive(Debug)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    extensions: Vec<String>,
    limits: HandshakeLimits,
    /// The start of a head that arrived in pieces; empty otherwise.
    partial: Vec<u8>,
}

impl ClientHandshake {
    /// Writes `request` into `out` (with a fresh random key) and returns the machine waiting for the answer.
    /// The extension names offered in `request.extensions` are the only ones the response may accept.
    pub fn start(request: &ClientRequest, limits: HandshakeLimits, out: &mut Vec<u8>) -> Result<Self, HandshakeError> {
        let extensions = match &request.extensions {
            Some(offer) => super::negotiate::parse_extensions(offer)
                .map_err(HandshakeError::InvalidExtensions)?
                .into_iter()
                .map(|o| o.name)
                .collect(),
            None => Vec::new(),
        };
        let key = write_request(request, out)?;
        Ok(Self { key, protocols: request.protocols.clone(), extensions, limits, partial: Vec::new() })
    }

    /// Feeds bytes received from the server. Returns `Ok(None)` while the response head is incomplete (the
    /// bytes were taken; feed the next ones), and `Ok(Some((response, n)))` once it is complete and valid:
    /// the first `n` bytes of `input` finished the head, and `input[n..]` holds frames the server sent
    /// right after its 101 (they belong to the WebSocket connection). Checks as [`parse_response`].
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<(UpgradeResponse, usize)>, HandshakeError> {
        if self.partial.is_empty() {
            return match parse_response(input, &self.key, &self.protocols, &self.extensions, &self.limits)? {
                Some(done) => Ok(Some(done)),
                None => {
                    self.partial.extend_from_slice(input);
                    Ok(None)
                }
            };
        }
        let before = self.partial.len();
        self.partial.extend_from_slice(input);
        match parse_response(&self.partial, &self.key, &self.protocols, &self.extensions, &self.limits)? {
            Some((response, head)) => {
                self.partial = Vec::new();
                Ok(Some((response, head - before)))
            }
            None => Ok(None),
        }
    }
}

/// The server side of the opening handshake: the limits a request is parsed within and the policy its
/// answer follows. Sans-IO; the caller keeps the received bytes, because a connection may carry plain
/// HTTP requests (keep-alive, pipelined) before its upgrade and those are parsed from the same buffer.
#[derive(Debug, Clone, Default)]
pub struct ServerHandshake {
    /// Limits on the request head.
    pub limits: HandshakeLimits,
}

impl ServerHandshake {
    /// A server handshake within `limits`.
    pub fn new(limits: HandshakeLimits) -> Self {
        Self { limits }
    }

    /// Parses an upgrade request from the start of `buf`: `Ok(None)` while its head is incomplete,
    /// `Ok(Some((request, n)))` once complete and valid (`buf[n..]` are the bytes that followed the head),
    /// or why it is refused ([`HandshakeError::NotUpgrade`] for a plain HTTP request; answer others with
    /// [`error_response`]).
    pub fn parse(&self, buf: &[u8]) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
        parse_request(buf, &self.limits)
    }

    /// Writes the 101 answer to `request` into `out`, with the chosen subprotocol and extensions.
    pub fn accept(
        &self,
        request: &UpgradeRequest,
        protocol: Option<&str>,
        extensions: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        write_response(out, &request.key, protocol, extensions, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    /// RFC 6455 §1.3's example answer (cross-checked with Python's hashlib and `openssl sha1`).
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A valid request with `extra` header lines inserted before the blank line.
    fn request_with(extra: &str) -> Vec<u8> {
        format!(
            "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        )
        .into_bytes()
    }

    /// A request built from exactly these header lines.
    fn request_lines(request_line: &str, lines: &[&str]) -> Vec<u8> {
        let mut s = format!("{request_line}\r\n");
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    const BASE: [&str; 5] = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    /// `BASE` with the line starting with `prefix` replaced by `replacement` (or removed if `None`).
    fn base_with(prefix: &str, replacement: Option<&str>) -> Vec<u8> {
        let lines: Vec<&str> =
            BASE.iter().filter_map(|l| if l.starts_with(prefix) { replacement } else { Some(*l) }).collect();
        request_lines("GET / HTTP/1.1", &lines)
    }

    /// Replaces every `~` with the byte 0xff (not UTF-8, but obs-text that HTTP allows in values).
    fn non_utf8(mut buf: Vec<u8>) -> Vec<u8> {
        for b in &mut buf {
            if *b == b'~' {
                *b = 0xff;
            }
        }
        buf
    }

    fn server_err(buf: &[u8]) -> HandshakeError {
        match parse_request(buf, &HandshakeLimits::default()) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    fn parse_ok(buf: &[u8]) -> (UpgradeRequest, usize) {
        match parse_request(buf, &HandshakeLimits::default()) {
            Ok(Some(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn response_with(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn client_parse(
        buf: &[u8],
        protocols: &[&str],
        extensions: &[&str],
    ) -> Result<Option<(UpgradeResponse, usize)>, HandshakeError> {
        let protocols: Vec<String> = protocols.iter().map(|s| (*s).to_owned()).collect();
        let extensions: Vec<String> = extensions.iter().map(|s| (*s).to_owned()).collect();
        parse_response(buf, KEY, &protocols, &extensions, &HandshakeLimits::default())
    }

    fn client_err(buf: &[u8], protocols: &[&str], extensions: &[&str]) -> HandshakeError {
        match client_parse(buf, protocols, extensions) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    // --- accept key -------------------------------------------------------------------------------

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    }

    // --- request parsing: success, incompleteness, trailing bytes ---------------------------------

    #[test]
    fn parses_valid_request_fields() {
        let buf = request_with(
            "Origin: https://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Protocol: v2\r\nSec-WebSocket-Extensions: permessage-deflate; \
             client_max_window_bits\r\nX-Custom: a\r\n",
        );
        let (req, n) = parse_ok(&buf);
        assert_eq!(n, buf.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query.as_deref(), Some("room=1"));
        assert_eq!(req.host, "example.com:8080");
        assert_eq!(req.key, KEY);
        assert_eq!(req.protocols, ["chat", "superchat", "v2"]);
        assert_eq!(req.offered_protocols(), ["chat", "superchat", "v2"]);
        assert_eq!(
            req.extensions,
            [ExtensionOffer::new("permessage-deflate").with_param("client_max_window_bits", None)]
        );
        assert_eq!(req.origin.as_deref(), Some("https://example.com"));
        assert_eq!(req.header("x-custom"), Some("a"));
        assert_eq!(req.header("SEC-WEBSOCKET-KEY"), Some(KEY));
        assert_eq!(req.header("missing"), None);
        assert!(req.headers.iter().any(|(n, _)| n == "X-Custom"), "names kept as sent");
    }

    #[test]
    fn request_without_query_or_origin_has_none() {
        let (req, _) = parse_ok(&base_with("Host", Some("Host: h")));
        assert_eq!(req.path, "/");
        assert_eq!(req.query, None);
        assert_eq!(req.origin, None);
        assert!(req.protocols.is_empty());
        assert!(req.extensions.is_empty());
    }

    #[test]
    fn returns_none_until_head_is_complete() {
        let buf = request_with("");
        for len in 0..buf.len() {
            assert_eq!(parse_request(&buf[..len], &HandshakeLimits::default()), Ok(None), "prefix of {len} bytes");
        }
        assert!(parse_request(&buf, &HandshakeLimits::default()).is_ok_and(|r| r.is_some_and(|(_, n)| n == buf.len())));
    }

    #[test]
    fn keeps_bytes_after_head_for_the_connection() {
        let head = request_with("");
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut buf = head.clone();
        buf.extend_from_slice(&frame);
        let (_, n) = parse_ok(&buf);
        assert_eq!(n, head.len());
        assert_eq!(&buf[n..], &frame);
    }

    #[test]
    fn accepts_absolute_form_target() {
        let (req, _) = parse_ok(&request_lines("GET ws://example.com/a/b?x=1 HTTP/1.1", &BASE[..]));
        assert_eq!(req.path, "/a/b");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        let (req, _) = parse_ok(&request_lines("GET http://example.com HTTP/1.1", &BASE[..]));
        assert_eq!(req.path, "/");
        assert_eq!(req.query, None);
        let (req, _) = parse_ok(&request_lines("GET https://example.com?q HTTP/1.1", &BASE[..]));
        assert_eq!(req.path, "/");
        assert_eq!(req.query.as_deref(), Some("q"));
    }

    #[test]
    fn rejects_asterisk_and_authority_form_targets_with_400() {
        for target in ["*", "example.com:80", "://x/"] {
            let err = server_err(&request_lines(&format!("GET {target} HTTP/1.1"), &BASE[..]));
            assert_eq!(err, HandshakeError::InvalidTarget { target: target.to_owned() });
            assert_eq!(err.status(), 400);
        }
    }

    // --- limits ------------------------------------------------------------------------------------

    #[test]
    fn rejects_oversized_incomplete_head_with_431() {
        let limits = HandshakeLimits { max_head_bytes: 64, ..HandshakeLimits::default() };
        let mut buf = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        buf.resize(64, b'a');
        assert_eq!(parse_request(&buf, &limits), Ok(None), "exactly at the limit");
        buf.push(b'a');
        let err = parse_request(&buf, &limits).err();
        assert_eq!(err, Some(HandshakeError::HeadTooLarge { limit: 64 }));
        assert_eq!(err.map(|e| e.status()), Some(431));
    }

    #[test]
    fn rejects_complete_head_longer_than_limit_with_431() {
        let buf = request_with("");
        let limits = HandshakeLimits { max_head_bytes: buf.len() - 1, ..HandshakeLimits::default() };
        let mut with_frames = buf.clone();
        with_frames.extend_from_slice(&[0x81, 0x80, 0, 0, 0, 0]);
        assert_eq!(parse_request(&with_frames, &limits), Err(HandshakeError::HeadTooLarge { limit: buf.len() - 1 }));
        let exact = HandshakeLimits { max_head_bytes: buf.len(), ..HandshakeLimits::default() };
        assert!(parse_request(&with_frames, &exact).is_ok_and(|r| r.is_some()));
    }

    #[test]
    fn rejects_too_many_headers_with_431() {
        let limits = HandshakeLimits { max_headers: 5, ..HandshakeLimits::default() };
        let buf = request_with("X-One: 1\r\n");
        let err = parse_request(&buf, &limits).err();
        assert_eq!(err, Some(HandshakeError::TooManyHeaders { limit: 5 }));
        assert_eq!(err.map(|e| e.status()), Some(431));
        let ok = HandshakeLimits { max_headers: 6, ..HandshakeLimits::default() };
        assert!(parse_request(&buf, &ok).is_ok_and(|r| r.is_some()));
    }

    #[test]
    fn max_headers_above_the_stack_slots_works() {
        let extra: String = (0..100).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let limits = HandshakeLimits { max_headers: 200, ..HandshakeLimits::default() };
        let (req, _) = parse_request(&request_with(&extra), &limits)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("expected a request"));
        assert_eq!(req.headers.len(), 105);
    }

    #[test]
    fn rejects_malformed_head_with_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            let err = server_err(bad);
            assert!(matches!(err, HandshakeError::MalformedHead { .. }), "{bad:?}: {err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    // --- request validation rules ------------------------------------------------------------------

    #[test]
    fn plain_http_request_is_not_upgrade_with_426() {
        let err = server_err(b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(err, HandshakeError::NotUpgrade);
        assert_eq!(err.status(), 426);
        assert_eq!(
            server_err(b"POST /api HTTP/1.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            HandshakeError::NotUpgrade
        );
    }

    #[test]
    fn upgrade_to_another_protocol_is_not_upgrade() {
        let err = server_err(&base_with("Upgrade", Some("Upgrade: h2c")));
        assert_eq!(err, HandshakeError::NotUpgrade);
        assert_eq!(err.status(), 426);
    }

    #[test]
    fn accepts_upgrade_token_case_insensitively_in_a_list() {
        parse_ok(&base_with("Upgrade", Some("Upgrade: foo/2, WebSocket")));
        parse_ok(&base_with("Upgrade", Some("upgrade: WEBSOCKET")));
    }

    #[test]
    fn rejects_non_get_method_with_405() {
        let err = server_err(&request_lines("POST / HTTP/1.1", &BASE[..]));
        assert_eq!(err, HandshakeError::MethodNotAllowed { method: "POST".to_owned() });
        assert_eq!(err.status(), 405);
        let err = server_err(&request_lines("get / HTTP/1.1", &BASE[..]));
        assert_eq!(err.status(), 405, "methods are case-sensitive");
    }

    #[test]
    fn rejects_http_1_0_with_400() {
        let err = server_err(&request_lines("GET / HTTP/1.0", &BASE[..]));
        assert_eq!(err, HandshakeError::UnsupportedHttpVersion { minor: 0 });
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_missing_host_with_400() {
        let err = server_err(&base_with("Host", None));
        assert_eq!(err, HandshakeError::MissingHost);
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_duplicate_host_with_400() {
        let err = server_err(&base_with("Host", Some("Host: a\r\nHost: b")));
        assert_eq!(err, HandshakeError::DuplicateHeader { name: "Host" });
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn accepts_connection_token_list_with_upgrade() {
        parse_ok(&base_with("Connection", Some("Connection: keep-alive, Upgrade")));
        parse_ok(&base_with("Connection", Some("Connection: keep-alive\r\nConnection: UPGRADE")));
    }

    #[test]
    fn rejects_connection_without_upgrade_with_400() {
        let err = server_err(&base_with("Connection", Some("Connection: keep-alive")));
        assert_eq!(err, HandshakeError::MissingConnectionUpgrade { connection: Some("keep-alive".to_owned()) });
        assert_eq!(err.status(), 400);
        let err = server_err(&base_with("Connection", None));
        assert_eq!(err, HandshakeError::MissingConnectionUpgrade { connection: None });
        assert_eq!(err.status(), 400);
        // A substring is not a token.
        let err = server_err(&base_with("Connection", Some("Connection: upgraded")));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_missing_key_with_400() {
        let err = server_err(&base_with("Sec-WebSocket-Key", None));
        assert_eq!(err, HandshakeError::MissingKey);
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_key_that_is_not_16_base64_bytes_with_400() {
        for key in [
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAA",     // 15 bytes
            "AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
            "",
            "dGhlIHNhbXBsZSBub25jZQ", // missing padding
        ] {
            let line = format!("Sec-WebSocket-Key: {key}");
            let err = server_err(&base_with("Sec-WebSocket-Key", Some(&line)));
            assert_eq!(err, HandshakeError::InvalidKey { key: key.to_owned() });
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn rejects_duplicate_key_with_400() {
        let line = format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}");
        let err = server_err(&base_with("Sec-WebSocket-Key", Some(&line)));
        assert_eq!(err, HandshakeError::DuplicateHeader { name: "Sec-WebSocket-Key" });
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_unsupported_version_with_426_advertising_13() {
        for (line, version) in [
            (Some("Sec-WebSocket-Version: 8"), Some("8")),
            (Some("Sec-WebSocket-Version: 13, 8"), Some("13, 8")),
            (Some("Sec-WebSocket-Version: ~"), Some("\u{fffd}")),
            (None, None),
        ] {
            let err = server_err(&non_utf8(base_with("Sec-WebSocket-Version", line)));
            assert_eq!(err, HandshakeError::UnsupportedVersion { version: version.map(str::to_owned) });
            assert_eq!(err.status(), 426);
            let resp = String::from_utf8_lossy(&error_response(&err)).into_owned();
            assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
            assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{resp}");
        }
    }

    #[test]
    fn rejects_request_body_with_400() {
        for line in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
            let err = server_err(&request_with(&format!("{line}\r\n")));
            assert_eq!(err, HandshakeError::UnexpectedBody);
            assert_eq!(err.status(), 400);
        }
        parse_ok(&request_with("Content-Length: 0\r\n"));
    }

    #[test]
    fn rejects_malformed_protocol_list_with_400() {
        let err = server_err(&request_with("Sec-WebSocket-Protocol: a b\r\n"));
        assert_eq!(err, HandshakeError::InvalidProtocols(NegotiateError::InvalidChar { at: 2, found: 'b' }));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_malformed_extensions_with_400() {
        let err = server_err(&request_with("Sec-WebSocket-Extensions: x; a=\"open\r\n"));
        assert_eq!(err, HandshakeError::InvalidExtensions(NegotiateError::UnterminatedQuote { at: 5 }));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_non_utf8_origin_with_400() {
        let err = server_err(&non_utf8(request_with("Origin: ~\r\n")));
        assert_eq!(err, HandshakeError::InvalidHeaderValue { name: "Origin" });
        assert_eq!(err.status(), 400);
    }

    // --- error responses ---------------------------------------------------------------------------

    /// Parses an HTTP response with httparse: status, headers (lowercased names), body.
    fn parse_http_response(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut slots);
        let n = match res.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not a complete response: {other:?}"),
        };
        let headers = res
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        (res.code.unwrap_or(0), headers, bytes[n..].to_vec())
    }

    #[test]
    fn error_response_is_a_minimal_http_response_that_closes() {
        let errors = [
            HandshakeError::MissingHost,
            HandshakeError::NotUpgrade,
            HandshakeError::MethodNotAllowed { method: "POST<script>".to_owned() },
            HandshakeError::HeadTooLarge { limit: 8192 },
            HandshakeError::UnsupportedVersion { version: None },
        ];
        for err in errors {
            let (status, headers, body) = parse_http_response(&error_response(&err));
            let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            assert_eq!(status, err.status());
            assert_eq!(get("connection"), Some("close"));
            assert_eq!(get("content-length"), Some(body.len().to_string().as_str()));
            assert!(!body.is_empty());
            assert!(!String::from_utf8_lossy(&body).contains("script"), "peer input is not echoed");
            match status {
                426 => {
                    assert_eq!(get("sec-websocket-version"), Some("13"));
                    assert_eq!(get("upgrade"), Some("websocket"));
                }
                405 => assert_eq!(get("allow"), Some("GET")),
                _ => assert_eq!(get("sec-websocket-version"), None),
            }
        }
    }

    #[test]
    fn every_error_has_a_display_message() {
        let e = NegotiateError::EmptyToken { at: 0 };
        let all = [
            HandshakeError::HeadTooLarge { limit: 1 },
            HandshakeError::TooManyHeaders { limit: 1 },
            HandshakeError::MalformedHead { reason: "x" },
            HandshakeError::UnsupportedHttpVersion { minor: 0 },
            HandshakeError::NotUpgrade,
            HandshakeError::MethodNotAllowed { method: "P".into() },
            HandshakeError::InvalidTarget { target: "*".into() },
            HandshakeError::MissingHost,
            HandshakeError::DuplicateHeader { name: "Host" },
            HandshakeError::InvalidHeaderValue { name: "Origin" },
            HandshakeError::UnexpectedBody,
            HandshakeError::MissingConnectionUpgrade { connection: None },
            HandshakeError::MissingKey,
            HandshakeError::InvalidKey { key: "k".into() },
            HandshakeError::UnsupportedVersion { version: None },
            HandshakeError::InvalidProtocols(e.clone()),
            HandshakeError::InvalidExtensions(e),
            HandshakeError::Rejected { status: 404, headers: vec![] },
            HandshakeError::ResponseMissingUpgrade { upgrade: None },
            HandshakeError::ResponseMissingConnectionUpgrade { connection: None },
            HandshakeError::AcceptMismatch { expected: "a".into(), got: None },
            HandshakeError::UnofferedProtocol { protocol: "p".into() },
            HandshakeError::MultipleProtocols { protocols: vec![] },
            HandshakeError::UnofferedExtension { name: "x".into() },
            HandshakeError::InvalidOutgoingHeader { name: "X".into(), reason: "r" },
        ];
        for err in all {
            assert!(err.to_string().len() > 10, "{err:?}");
            assert!(err.public_message().ends_with('\n'));
            assert!([400, 405, 426, 431, 500, 502].contains(&err.status()));
        }
    }

    // --- writing the 101 ---------------------------------------------------------------------------

    #[test]
    fn write_response_writes_101_with_accept_protocol_and_extensions() {
        let mut out = b"prefix".to_vec();
        let r = write_response(&mut out, KEY, Some("chat"), Some("permessage-deflate"), &[("Set-Cookie", "a=b")]);
        assert_eq!(r, Ok(()));
        let expected = format!(
            "prefixHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\nSet-Cookie: a=b\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn write_response_omits_absent_protocol_and_extensions() {
        let mut out = Vec::new();
        assert_eq!(write_response(&mut out, KEY, None, None, &[]), Ok(()));
        let s = String::from_utf8_lossy(&out);
        assert!(!s.contains("Sec-WebSocket-Protocol"));
        assert!(!s.contains("Sec-WebSocket-Extensions"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn write_response_refuses_header_injection_and_writes_nothing() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 5] = [
            (Some("chat\r\nX: y"), None, &[]),
            (None, Some("x\r\nX: y"), &[]),
            (None, None, &[("X-A", "1\r\nX-B: 2")]),
            (None, None, &[("Bad Name", "1")]),
            (None, None, &[("connection", "close")]),
        ];
        for (protocol, extensions, extra) in cases {
            let mut out = Vec::new();
            let err = write_response(&mut out, KEY, protocol, extensions, extra).err();
            assert!(matches!(err, Some(HandshakeError::InvalidOutgoingHeader { .. })), "{err:?}");
            assert_eq!(err.map(|e| e.status()), Some(500));
            assert!(out.is_empty());
        }
    }

    // --- writing the request -----------------------------------------------------------------------

    #[test]
    fn write_request_writes_handshake_headers_with_a_fresh_key() {
        let req = ClientRequest::new("example.com:8080", "/chat?x=1")
            .with_protocol("chat")
            .with_protocol("v2")
            .with_extensions("permessage-deflate; client_max_window_bits")
            .with_header("Origin", "https://example.com");
        let mut a = Vec::new();
        let mut b = Vec::new();
        let key_a = write_request(&req, &mut a).unwrap_or_default();
        let key_b = write_request(&req, &mut b).unwrap_or_default();
        assert_ne!(key_a, key_b, "a fresh key per request");
        assert!(BASE64.decode(&key_a).is_ok_and(|k| k.len() == 16));
        let expected = format!(
            "GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key_a}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, v2\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Origin: https://example.com\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(&a), expected);
    }

    #[test]
    fn write_request_with_nonce_is_deterministic() {
        let req = ClientRequest::new("h", "/");
        let mut out = Vec::new();
        let key = write_request_with_nonce(&req, b"the sample nonce", &mut out);
        assert_eq!(key.as_deref(), Ok(KEY));
    }

    #[test]
    fn write_request_refuses_header_injection_and_writes_nothing() {
        let bad = [
            ClientRequest::new("", "/"),
            ClientRequest::new("h\r\nX: y", "/"),
            ClientRequest::new("h", "no-slash"),
            ClientRequest::new("h", "/a b"),
            ClientRequest::new("h", "/").with_protocol("a b"),
            ClientRequest::new("h", "/").with_protocol("a").with_protocol("a"),
            ClientRequest::new("h", "/").with_extensions("x\ny"),
            ClientRequest::new("h", "/").with_header("X", "1\r\n\r\nGET /evil"),
            ClientRequest::new("h", "/").with_header("Sec-WebSocket-Key", KEY),
            ClientRequest::new("h", "/").with_header("Content-Length", "4"),
        ];
        for req in bad {
            let mut out = Vec::new();
            let err = write_request(&req, &mut out).err();
            assert!(matches!(err, Some(HandshakeError::InvalidOutgoingHeader { .. })), "{req:?}: {err:?}");
            assert!(out.is_empty());
        }
    }

    // --- response parsing --------------------------------------------------------------------------

    #[test]
    fn parses_valid_response() {
        let buf = response_with(
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_no_context_takeover\r\nX-Server: t\r\n",
        );
        let Ok(Some((res, n))) = client_parse(&buf, &["v2", "chat"], &["permessage-deflate"]) else {
            panic!("expected a response");
        };
        assert_eq!(n, buf.len());
        assert_eq!(res.protocol.as_deref(), Some("chat"));
        assert_eq!(
            res.extensions,
            [ExtensionOffer::new("permessage-deflate").with_param("server_no_context_takeover", None)]
        );
        assert_eq!(res.header("x-server"), Some("t"));
    }

    #[test]
    fn response_returns_none_until_head_is_complete() {
        let buf = response_with("");
        for len in 0..buf.len() {
            assert_eq!(client_parse(&buf[..len], &[], &[]), Ok(None), "{len}");
        }
    }

    #[test]
    fn response_keeps_bytes_after_head_for_the_connection() {
        let head = response_with("");
        let frame = [0x81, 0x02, b'h', b'i'];
        let mut buf = head.clone();
        buf.extend_from_slice(&frame);
        let Ok(Some((_, n))) = client_parse(&buf, &[], &[]) else {
            panic!("expected a response");
        };
        assert_eq!(n, head.len());
        assert_eq!(&buf[n..], &frame);
    }

    #[test]
    fn response_other_than_101_is_rejected_with_status_and_headers() {
        let buf = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nX-Why: origin\r\n\r\nno!";
        let err = client_err(buf, &[], &[]);
        assert_eq!(
            err,
            HandshakeError::Rejected {
                status: 403,
                headers: vec![("Content-Length".to_owned(), b"3".to_vec()), ("X-Why".to_owned(), b"origin".to_vec()),],
            }
        );
        assert_eq!(err.status(), 502);
    }

    #[test]
    fn response_over_http_1_0_is_rejected() {
        let mut buf = response_with("");
        buf[7] = b'0';
        let err = client_err(&buf, &[], &[]);
        assert_eq!(err, HandshakeError::UnsupportedHttpVersion { minor: 0 });
    }

    #[test]
    fn response_requires_upgrade_websocket() {
        let buf = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        let err = client_err(buf.as_bytes(), &[], &[]);
        assert_eq!(err, HandshakeError::ResponseMissingUpgrade { upgrade: Some("h2c".to_owned()) });
        assert_eq!(err.status(), 502);
        let buf = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(client_err(buf.as_bytes(), &[], &[]), HandshakeError::ResponseMissingUpgrade { upgrade: None });
    }

    #[test]
    fn response_requires_connection_upgrade() {
        let buf = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        let err = client_err(buf.as_bytes(), &[], &[]);
        assert_eq!(err, HandshakeError::ResponseMissingConnectionUpgrade { connection: Some("keep-alive".to_owned()) });
        assert_eq!(err.status(), 502);
    }

    #[test]
    fn response_requires_matching_accept() {
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        let err = client_err(wrong, &[], &[]);
        assert_eq!(err, HandshakeError::AcceptMismatch { expected: ACCEPT.to_owned(), got: Some("AAAA".to_owned()) });
        assert_eq!(err.status(), 502);
        let missing = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            client_err(missing, &[], &[]),
            HandshakeError::AcceptMismatch { expected: ACCEPT.to_owned(), got: None }
        );
    }

    #[test]
    fn response_cannot_pick_unoffered_protocol() {
        let buf = response_with("Sec-WebSocket-Protocol: evil\r\n");
        let err = client_err(&buf, &["chat"], &[]);
        assert_eq!(err, HandshakeError::UnofferedProtocol { protocol: "evil".to_owned() });
        assert_eq!(err.status(), 502);
        assert_eq!(
            client_err(&buf, &[], &[]),
            HandshakeError::UnofferedProtocol { protocol: "evil".to_owned() },
            "no protocol offered, none may be answered"
        );
        let buf = response_with("Sec-WebSocket-Protocol: Chat\r\n");
        assert_eq!(
            client_err(&buf, &["chat"], &[]),
            HandshakeError::UnofferedProtocol { protocol: "Chat".to_owned() },
            "subprotocols compare case-sensitively"
        );
    }

    #[test]
    fn response_cannot_pick_several_protocols() {
        let buf = response_with("Sec-WebSocket-Protocol: a, b\r\n");
        let err = client_err(&buf, &["a", "b"], &[]);
        assert_eq!(err, HandshakeError::MultipleProtocols { protocols: vec!["a".to_owned(), "b".to_owned()] });
        assert_eq!(err.status(), 502);
    }

    #[test]
    fn response_cannot_accept_unoffered_extension() {
        let buf = response_with("Sec-WebSocket-Extensions: permessage-deflate, x-evil\r\n");
        let err = client_err(&buf, &[], &["permessage-deflate"]);
        assert_eq!(err, HandshakeError::UnofferedExtension { name: "x-evil".to_owned() });
        assert_eq!(err.status(), 502);
        let buf = response_with("Sec-WebSocket-Extensions: Permessage-Deflate\r\n");
        assert!(client_parse(&buf, &[], &["permessage-deflate"]).is_ok_and(|r| r.is_some()));
    }

    #[test]
    fn response_with_malformed_extensions_is_rejected() {
        let buf = response_with("Sec-WebSocket-Extensions: ;\r\n");
        assert_eq!(
            client_err(&buf, &[], &["x"]),
            HandshakeError::InvalidExtensions(NegotiateError::EmptyToken { at: 0 })
        );
    }

    #[test]
    fn response_over_head_limit_is_rejected() {
        let limits = HandshakeLimits { max_head_bytes: 32, ..HandshakeLimits::default() };
        let buf = response_with("");
        assert_eq!(parse_response(&buf, KEY, &[], &[], &limits), Err(HandshakeError::HeadTooLarge { limit: 32 }));
    }

    // --- round trip --------------------------------------------------------------------------------

    #[test]
    fn client_server_round_trip() {
        let offered_exts = vec![ExtensionOffer::new("permessage-deflate").with_param("client_max_window_bits", None)];
        let req = ClientRequest::new("example.com:9001", "/echo?x=y")
            .with_protocol("v1.chat")
            .with_protocol("v2.chat")
            .with_extensions(negotiate::format_extensions(&offered_exts))
            .with_header("Origin", "https://example.com");
        let mut wire = Vec::new();
        let key = write_request(&req, &mut wire).unwrap_or_default();
        wire.extend_from_slice(&[0x89, 0x80, 1, 2, 3, 4]); // a pipelined masked ping

        // Server side.
        let (upgrade, n) = parse_ok(&wire);
        assert_eq!(&wire[n..], &[0x89, 0x80, 1, 2, 3, 4]);
        assert_eq!(upgrade.path, "/echo");
        assert_eq!(upgrade.query.as_deref(), Some("x=y"));
        assert_eq!(upgrade.host, "example.com:9001");
        assert_eq!(upgrade.origin.as_deref(), Some("https://example.com"));
        assert_eq!(upgrade.key, key);
        assert_eq!(upgrade.extensions, offered_exts);
        let policy = negotiate::SubprotocolPolicy::Preferred(vec!["v2.chat".into()]);
        let protocol = policy.select(&upgrade.offered_protocols());
        assert_eq!(protocol.as_deref(), Some("v2.chat"));
        let accepted = negotiate::format_extensions(&[ExtensionOffer::new("permessage-deflate")]);
        let mut answer = Vec::new();
        assert_eq!(write_response(&mut answer, &upgrade.key, protocol.as_deref(), Some(&accepted), &[]), Ok(()));
        answer.extend_from_slice(&[0x81, 0x00]); // the server's first frame

        // Client side.
        let names: Vec<String> = offered_exts.iter().map(|e| e.name.clone()).collect();
        let parsed = parse_response(&answer, &key, &req.protocols, &names, &HandshakeLimits::default());
        let Ok(Some((response, m))) = parsed else {
            panic!("expected a response, got {parsed:?}");
        };
        assert_eq!(&answer[m..], &[0x81, 0x00]);
        assert_eq!(response.protocol.as_deref(), Some("v2.chat"));
        assert_eq!(response.extensions, [ExtensionOffer::new("permessage-deflate")]);
    }

    #[test]
    fn client_detects_response_to_another_key() {
        let mut answer = Vec::new();
        assert_eq!(write_response(&mut answer, "b3RoZXIga2V5IDE2Ynl0ZQ==", None, None, &[]), Ok(()));
        assert!(matches!(client_err(&answer, &[], &[]), HandshakeError::AcceptMismatch { .. }));
    }

    // --- robustness (the fuzz target's body, run as a test) ----------------------------------------

    fn exercise(data: &[u8]) {
        let limits = HandshakeLimits::default();
        if let Ok(Some((_, n))) = parse_request(data, &limits) {
            assert!(n <= data.len());
        }
        if let Ok(Some((_, n))) = parse_response(data, KEY, &["chat".into()], &["x".into()], &limits) {
            assert!(n <= data.len());
        }
        let tiny = HandshakeLimits { max_head_bytes: 16, max_headers: 0 };
        let _ = parse_request(data, &tiny);
        let _ = parse_response(data, KEY, &[], &[], &tiny);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes() {
        fn prop(data: Vec<u8>) -> bool {
            exercise(&data);
            true
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn parsers_never_panic_on_mutated_handshakes() {
        fn prop(seed: Vec<(u16, u8)>, truncate: u16) -> TestResult {
            let mut req = request_with("Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Extensions: x; y=\"z\"\r\n");
            let mut res = response_with("Sec-WebSocket-Protocol: chat\r\n");
            for (at, byte) in &seed {
                let i = usize::from(*at);
                let len = req.len();
                if let Some(b) = req.get_mut(i % len) {
                    *b = *byte;
                }
                let len = res.len();
                if let Some(b) = res.get_mut(i % len) {
                    *b = *byte;
                }
            }
            req.truncate(usize::from(truncate).max(req.len() / 2));
            exercise(&req);
            exercise(&res);
            TestResult::passed()
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<(u16, u8)>, u16) -> TestResult);
    }
}

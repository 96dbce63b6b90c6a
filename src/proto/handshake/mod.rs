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

mod client;
mod error;
mod headers;
mod server;

use headers::find_header;

pub use client::{parse_response, write_request, write_request_with_nonce, ClientHandshake, ClientRequest};
pub use error::HandshakeError;
pub use server::{error_response, parse_request, plain_response, validate_request, write_response, ServerHandshake};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::negotiate::{self, ExtensionOffer};

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
    accept_key_into(key, &mut [0; ACCEPT_LEN]).to_owned()
}

/// The length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1 digest.
pub(crate) const ACCEPT_LEN: usize = 28;

/// [`accept_key`] written into `out` (no allocation: the server writes one per handshake).
pub(crate) fn accept_key_into<'a>(key: &[u8], out: &'a mut [u8; ACCEPT_LEN]) -> &'a str {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    // 20 bytes encode to exactly 28 base64 characters, all ASCII.
    let n = BASE64.encode_slice(sha.finalize(), out).unwrap_or(0);
    std::str::from_utf8(&out[..n]).unwrap_or_default()
}

#[cfg(test)]
mod tests;

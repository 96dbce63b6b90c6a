//! The client side: [`ClientRequest`], writing the request, checking the response, and the sans-IO
//! [`ClientHandshake`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::super::negotiate;
use super::headers::*;
use super::{accept_key, HandshakeError, HandshakeLimits, UpgradeResponse, WEBSOCKET_VERSION};

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

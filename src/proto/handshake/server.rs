//! The server side: parsing and validating an upgrade request, the 101 answer, HTTP error answers, and
//! [`ServerHandshake`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::super::negotiate;
use super::headers::*;
use super::{accept_key_into, HandshakeError, HandshakeLimits, UpgradeRequest, ACCEPT_LEN, WEBSOCKET_VERSION};

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
    let mut slots = UninitHeaderSlots::new();
    let mut req = httparse::Request::new(&mut []);
    let n = match req
        .parse_with_uninit_headers(head_window(buf, limits), slots.get(limits.max_headers))
        .map_err(|e| malformed(e, limits))?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return incomplete(buf, limits),
    };
    // httparse fills method, path and version on a complete parse; be defensive anyway.
    let (method, minor, target) =
        (req.method.unwrap_or_default(), req.version.unwrap_or(0), req.path.unwrap_or_default());
    // The usual request passes in one pass over the borrowed headers; anything it does not accept
    // takes the full validation, which finds the exact error (the same checks, in their order).
    if let Some(request) = validate_borrowed(method, minor, target, req.headers) {
        return request.map(|r| Some((r, n)));
    }
    let request = validate_request(method, minor, target, owned_headers(req.headers))?;
    Ok(Some((request, n)))
}

/// Whether `key` is what the full validation accepts as a `Sec-WebSocket-Key` (canonical standard
/// base64 of 16 bytes, which the decoder checks) without decoding it: 22 alphabet characters, the last
/// of which carries 2 bits and 4 zero bits, then `==`.
pub(super) fn is_key(key: &[u8]) -> bool {
    let b64 = |c: u8| -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let [data @ .., last, b'=', b'='] = key else { return false };
    data.len() == 21 && data.iter().all(|&c| b64(c).is_some()) && b64(*last).is_some_and(|v| v & 0x0f == 0)
}

/// At most one header of a name: what one pass saw.
#[derive(Clone, Copy)]
enum Single<'b> {
    Absent,
    One(&'b [u8]),
    Repeated,
}

impl<'b> Single<'b> {
    fn add(&mut self, value: &'b [u8]) {
        *self = match self {
            Self::Absent => Self::One(value),
            _ => Self::Repeated,
        };
    }

    /// The one value, trimmed as [`single_header`] trims it: `None` if repeated or not UTF-8;
    /// `Some(None)` if absent.
    fn get(self) -> Option<Option<&'b str>> {
        match self {
            Self::Absent => Some(None),
            Self::One(v) => std::str::from_utf8(v).ok().map(|s| Some(s.trim())),
            Self::Repeated => None,
        }
    }
}

/// [`validate_request`] for a request that passes every check, in one pass over the borrowed headers
/// (each name compared once, not once per check), copying each header once into the result.
/// `None`: some check failed, or may have; [`validate_request`] then decides (and names the error).
/// `Some(Err)` only for a subprotocol or extension list that does not parse, which
/// [`validate_request`] would report the same way (every check before it passed).
fn validate_borrowed(
    method: &str,
    minor: u8,
    target: &str,
    headers: &[httparse::Header<'_>],
) -> Option<Result<UpgradeRequest, HandshakeError>> {
    if method != "GET" || minor != 1 {
        return None;
    }
    let lists = |value: &[u8], token: &[u8]| {
        value.split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
    };
    let (mut upgrade, mut connection, mut body, mut protocols, mut extensions) = (false, false, false, false, false);
    let (mut host, mut version, mut key, mut origin) = (Single::Absent, Single::Absent, Single::Absent, Single::Absent);
    for h in headers {
        let name = h.name.as_bytes();
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        match name.len() {
            4 if is("Host") => host.add(h.value),
            6 if is("Origin") => origin.add(h.value),
            7 if is("Upgrade") => upgrade |= lists(h.value, b"websocket"),
            10 if is("Connection") => connection |= lists(h.value, b"upgrade"),
            14 if is("Content-Length") => body |= h.value.trim_ascii() != b"0",
            17 if is("Transfer-Encoding") => body = true,
            17 if is("Sec-WebSocket-Key") => key.add(h.value),
            21 if is("Sec-WebSocket-Version") => version.add(h.value),
            22 if is("Sec-WebSocket-Protocol") => protocols = true,
            24 if is("Sec-WebSocket-Extensions") => extensions = true,
            _ => {}
        }
    }
    if !upgrade || !connection || body {
        return None;
    }
    let (path, query) = split_target(target)?;
    let host = host.get()??;
    if version.get()?? != WEBSOCKET_VERSION {
        return None;
    }
    let key = key.get()??;
    if !is_key(key.as_bytes()) {
        return None;
    }
    let origin = origin.get()?;
    let (host, key, origin) = (host.to_owned(), key.to_owned(), origin.map(str::to_owned));
    let headers = owned_headers(headers);
    let lists = (|| {
        let protocols = if protocols { parse_protocol_headers(&headers)? } else { Vec::new() };
        let extensions = if extensions { parse_extension_headers(&headers)? } else { Vec::new() };
        Ok((protocols, extensions))
    })();
    Some(lists.map(|(protocols, extensions)| UpgradeRequest {
        path,
        query,
        host,
        key,
        protocols,
        extensions,
        origin,
        headers,
    }))
}

/// Validates an upgrade request whose head another HTTP parser already read (an HTTP server that
/// hands the connection over, see `Handle::adopt_upgraded`): `method`, the HTTP/1 minor version,
/// the request target and every header in order. The checks and their order are exactly those of
/// [`parse_request`] after the HTTP syntax (so [`HandshakeError::NotUpgrade`] comes first); limits
/// are the caller's (see [`ServerHandshake::parse_parts`]).
pub fn validate_request(
    method: &str,
    minor: u8,
    target: &str,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<UpgradeRequest, HandshakeError> {
    if !lists_token(&headers, "Upgrade", "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed { method: method.to_owned() });
    }
    if minor != 1 {
        return Err(HandshakeError::UnsupportedHttpVersion { minor });
    }
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
    // Base64 of 16 bytes is 24 characters; a longer key decodes to more. Decoded on the stack.
    if key.len() > 24 || BASE64.decode_slice(&key, &mut [0u8; 18]) != Ok(16) {
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

    Ok(UpgradeRequest { path, query, host, key, protocols, extensions, origin, headers })
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
    push_header(out, "Sec-WebSocket-Accept", accept_key_into(key.as_bytes(), &mut [0; ACCEPT_LEN]));
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

    /// Validates a request head another HTTP parser read (see [`validate_request`]) within these
    /// limits: more than `max_headers` headers fail with [`HandshakeError::TooManyHeaders`], and a
    /// head whose HTTP/1.1 form (request line, `name: value` lines, blank line) is longer than
    /// `max_head_bytes` with [`HandshakeError::HeadTooLarge`], as [`ServerHandshake::parse`] would.
    pub fn parse_parts(
        &self,
        method: &str,
        minor: u8,
        target: &str,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<UpgradeRequest, HandshakeError> {
        if headers.len() > self.limits.max_headers {
            return Err(HandshakeError::TooManyHeaders { limit: self.limits.max_headers });
        }
        // "GET /t HTTP/1.1\r\n", each "name: value\r\n", then "\r\n".
        let head = method.len()
            + 1
            + target.len()
            + 11
            + headers.iter().map(|(n, v)| n.len() + 2 + v.len() + 2).sum::<usize>()
            + 2;
        if head > self.limits.max_head_bytes {
            return Err(HandshakeError::HeadTooLarge { limit: self.limits.max_head_bytes });
        }
        validate_request(method, minor, target, headers)
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

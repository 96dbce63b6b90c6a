//! Header helpers shared by both sides: finding, splitting and checking header values, and writing
//! them. Never touches: which headers a handshake requires (the sides decide).

use super::super::negotiate::{self, ExtensionOffer};
use super::{HandshakeError, HandshakeLimits};

// ---------------------------------------------------------------------------------------------------
// Header helpers

pub(super) fn find_header<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::trim)
}

pub(super) fn header_values<'h>(
    headers: &'h [(String, Vec<u8>)],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Whether any comma-separated element of any `name` header equals `token` (ASCII case-insensitive).
pub(super) fn lists_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    header_values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Every `name` header joined with ", " (lossy), for error reports; `None` if absent.
pub(super) fn joined_lossy(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
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
pub(super) fn single_header<'h>(
    headers: &'h [(String, Vec<u8>)],
    name: &'static str,
) -> Result<Option<&'h str>, HandshakeError> {
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
pub(super) fn utf8_values<'h>(
    headers: &'h [(String, Vec<u8>)],
    name: &'static str,
) -> Result<Vec<&'h str>, HandshakeError> {
    header_values(headers, name)
        .map(|v| std::str::from_utf8(v).map_err(|_| HandshakeError::InvalidHeaderValue { name }))
        .collect()
}

pub(super) fn parse_protocol_headers(headers: &[(String, Vec<u8>)]) -> Result<Vec<String>, HandshakeError> {
    let mut out = Vec::new();
    for v in utf8_values(headers, "Sec-WebSocket-Protocol")? {
        out.extend(negotiate::parse_protocol_list(v).map_err(HandshakeError::InvalidProtocols)?);
    }
    Ok(out)
}

pub(super) fn parse_extension_headers(headers: &[(String, Vec<u8>)]) -> Result<Vec<ExtensionOffer>, HandshakeError> {
    negotiate::parse_extension_headers(utf8_values(headers, "Sec-WebSocket-Extensions")?)
        .map_err(HandshakeError::InvalidExtensions)
}

pub(super) fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect()
}

pub(super) fn malformed(err: httparse::Error, limits: &HandshakeLimits) -> HandshakeError {
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
pub(super) struct HeaderSlots<'b> {
    stack: [httparse::Header<'b>; 64],
    heap: Vec<httparse::Header<'b>>,
}

impl<'b> HeaderSlots<'b> {
    pub(super) fn new() -> Self {
        Self { stack: [httparse::EMPTY_HEADER; 64], heap: Vec::new() }
    }

    pub(super) fn get(&mut self, n: usize) -> &mut [httparse::Header<'b>] {
        if n <= self.stack.len() {
            &mut self.stack[..n]
        } else {
            self.heap = vec![httparse::EMPTY_HEADER; n];
            &mut self.heap
        }
    }
}

/// Uninitialised header slots for the server's parse: on the stack for the usual limits (nothing
/// written until httparse fills them), on the heap beyond.
pub(super) struct UninitHeaderSlots<'b> {
    stack: [std::mem::MaybeUninit<httparse::Header<'b>>; 64],
    heap: Vec<std::mem::MaybeUninit<httparse::Header<'b>>>,
}

impl<'b> UninitHeaderSlots<'b> {
    pub(super) fn new() -> Self {
        Self { stack: [const { std::mem::MaybeUninit::uninit() }; 64], heap: Vec::new() }
    }

    pub(super) fn get(&mut self, n: usize) -> &mut [std::mem::MaybeUninit<httparse::Header<'b>>] {
        if n <= self.stack.len() {
            &mut self.stack[..n]
        } else {
            self.heap = std::iter::repeat_with(std::mem::MaybeUninit::uninit).take(n).collect();
            &mut self.heap
        }
    }
}

/// The part of `buf` the head may occupy, and what to answer if it is incomplete there.
pub(super) fn head_window<'b>(buf: &'b [u8], limits: &HandshakeLimits) -> &'b [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

pub(super) fn incomplete<T>(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<T>, HandshakeError> {
    if buf.len() > limits.max_head_bytes {
        Err(HandshakeError::HeadTooLarge { limit: limits.max_head_bytes })
    } else {
        Ok(None)
    }
}

/// Splits an origin-form or absolute-form request target into path and query.
pub(super) fn split_target(target: &str) -> Option<(String, Option<String>)> {
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

pub(super) fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

pub(super) fn check_extra_headers(extra: &[(&str, &str)], reserved: &[&str]) -> Result<(), HandshakeError> {
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

pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

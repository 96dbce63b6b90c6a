//! Tests of both sides of the opening handshake.

use super::*;
use crate::proto::negotiate::NegotiateError;
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

mod agreement;
mod requests;
mod responses;

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

// --- accept key -------------------------------------------------------------------------------

#[test]
fn accept_key_matches_rfc_6455_example() {
    assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    assert_eq!(super::accept_key_into(KEY.as_bytes(), &mut [0; super::ACCEPT_LEN]), ACCEPT);
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
    assert_eq!(req.extensions, [ExtensionOffer::new("permessage-deflate").with_param("client_max_window_bits", None)]);
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
    let (req, _) =
        parse_request(&request_with(&extra), &limits).ok().flatten().unwrap_or_else(|| panic!("expected a request"));
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
    assert_eq!(server_err(b"POST /api HTTP/1.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), HandshakeError::NotUpgrade);
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
        "dGhlIHNhbXBsZSBub25jZQ",           // missing padding
        "AAAAAAAAAAAAAAAAAAAAAAAA",         // 18 bytes in 24 characters
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 24 bytes: longer than the stack buffer
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
        HandshakeError::InvalidDeflateResponse(crate::proto::deflate::DeflateResponseError::AcceptedTwice),
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
    assert_eq!(client_err(&buf, &[], &["x"]), HandshakeError::InvalidExtensions(NegotiateError::EmptyToken { at: 0 }));
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

/// The key a `ClientHandshake` put in its request.
fn key_of(request: &[u8]) -> String {
    let text = std::str::from_utf8(request).unwrap();
    let line = text.lines().find(|l| l.starts_with("Sec-WebSocket-Key: ")).unwrap();
    line["Sec-WebSocket-Key: ".len()..].to_owned()
}

fn answer_for(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[test]
fn client_handshake_takes_the_answer_in_any_pieces_and_says_where_the_frames_start() {
    let frames = b"\x81\x02hi";
    for split in [1usize, 2, 7, 40, 1000] {
        let mut request = Vec::new();
        let mut machine =
            ClientHandshake::start(&ClientRequest::new("x", "/"), HandshakeLimits::default(), &mut request).unwrap();
        let mut wire = answer_for(&key_of(&request));
        let head_len = wire.len();
        wire.extend_from_slice(frames);
        let mut fed = 0;
        let mut done = None;
        for piece in wire.chunks(split) {
            match machine.feed(piece).unwrap() {
                None => fed += piece.len(),
                Some((response, used)) => {
                    assert_eq!(fed + used, head_len, "split {split}: the head ends where it ends");
                    done = Some((response, piece[used..].to_vec()));
                    break;
                }
            }
        }
        let (response, rest) = done.unwrap_or_else(|| panic!("split {split}: never completed"));
        assert_eq!(response.protocol, None);
        // What followed the head in the completing piece is the start of the frames.
        assert!(frames.starts_with(&rest), "split {split}: {rest:?}");
    }
}

#[test]
fn client_handshake_rejects_a_wrong_accept_and_an_endless_head() {
    let mut request = Vec::new();
    let mut machine =
        ClientHandshake::start(&ClientRequest::new("x", "/"), HandshakeLimits::default(), &mut request).unwrap();
    let wrong = answer_for("dGhlIHNhbXBsZSBub25jZQ==");
    assert!(matches!(machine.feed(&wrong), Err(HandshakeError::AcceptMismatch { .. })));

    let limits = HandshakeLimits { max_head_bytes: 64, max_headers: 64 };
    let mut machine = ClientHandshake::start(&ClientRequest::new("x", "/"), limits, &mut Vec::new()).unwrap();
    let mut result = machine.feed(b"HTTP/1.1 101 Switching Protocols\r\n");
    assert_eq!(result, Ok(None));
    for _ in 0..20 {
        result = machine.feed(b"X-Filler: aaaaaaaaaa\r\n");
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result.unwrap_err(), HandshakeError::HeadTooLarge { limit: 64 });
}

/// Splits a complete head the way another HTTP parser would hand it over.
fn parts_of(buf: &[u8]) -> (String, u8, String, Vec<(String, Vec<u8>)>) {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    assert!(req.parse(buf).unwrap().is_complete());
    let headers = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    (req.method.unwrap().to_owned(), req.version.unwrap(), req.path.unwrap().to_owned(), headers)
}

#[test]
fn parse_parts_judges_a_head_parsed_elsewhere_as_parse_does() {
    let heads = [
        request_with("Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: https://a.example\r\n"),
        base_with("Sec-WebSocket-Key", None),
        base_with("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
        base_with("Upgrade", None),
        base_with("Connection", Some("Connection: keep-alive")),
        base_with("Host", None),
        request_lines("POST / HTTP/1.1", &BASE),
        request_lines("GET / HTTP/1.0", &BASE),
        request_with("Content-Length: 5\r\n"),
    ];
    let handshake = ServerHandshake::default();
    for head in heads {
        let (method, minor, target, headers) = parts_of(&head);
        let elsewhere = handshake.parse_parts(&method, minor, &target, headers);
        let here = handshake.parse(&head).map(|r| r.map(|(request, _)| request));
        assert_eq!(elsewhere.map(Some), here, "{}", String::from_utf8_lossy(&head));
    }
}

#[test]
fn parse_parts_applies_the_head_limits_at_the_same_sizes() {
    let head = request_with("");
    let exact = HandshakeLimits { max_head_bytes: head.len(), max_headers: 5 };
    let (method, minor, target, headers) = parts_of(&head);
    let handshake = ServerHandshake::new(exact);
    assert!(handshake.parse(&head).unwrap().is_some());
    assert!(handshake.parse_parts(&method, minor, &target, headers.clone()).is_ok());
    let short = ServerHandshake::new(HandshakeLimits { max_head_bytes: head.len() - 1, ..exact });
    assert_eq!(short.parse(&head), Err(HandshakeError::HeadTooLarge { limit: head.len() - 1 }));
    assert_eq!(
        short.parse_parts(&method, minor, &target, headers.clone()),
        Err(HandshakeError::HeadTooLarge { limit: head.len() - 1 })
    );
    let few = ServerHandshake::new(HandshakeLimits { max_headers: 4, ..exact });
    assert_eq!(few.parse(&head), Err(HandshakeError::TooManyHeaders { limit: 4 }));
    assert_eq!(few.parse_parts(&method, minor, &target, headers), Err(HandshakeError::TooManyHeaders { limit: 4 }));
}

/// `parse_request` as it was before its one-pass path: httparse, then `validate_request` on owned
/// headers. The reference the one-pass path must agree with, result for result.
fn parse_request_reference(buf: &[u8]) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => panic!("the corpus holds well-formed heads only"),
    };
    let owned = headers::owned_headers(req.headers);
    validate_request(req.method.unwrap(), req.version.unwrap(), req.path.unwrap(), owned).map(|r| Some((r, n)))
}

// Every way a known header can be off (absent, repeated, non-UTF-8, padded, other case, a bad
// value), alone and in pairs, plus bodies, methods, versions and targets: the one-pass path gives
// the very result (request or error) the full validation gives.
#[test]
fn one_pass_validation_agrees_with_the_full_validation() {
    let variants: &[(&str, &[&str])] = &[
        ("Host", &["Host: example.com", "host:  example.com  ", "Host: ~", "Host: a\r\nHost: b", ""]),
        ("Upgrade", &["Upgrade: websocket", "upgrade: h2c, WebSocket", "Upgrade: h2c", "Upgrade: ~", ""]),
        ("Connection", &["Connection: Upgrade", "connection: keep-alive, upgrade", "Connection: close", ""]),
        (
            "Sec-WebSocket-Key",
            &[
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== ",
                "Sec-WebSocket-Key: c2hvcnQ=",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key: ~",
                "",
            ],
        ),
        (
            "Sec-WebSocket-Version",
            &[
                "Sec-WebSocket-Version: 13",
                "sec-websocket-version: 13 ",
                "Sec-WebSocket-Version: 8",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13",
                "Sec-WebSocket-Version: ~",
                "",
            ],
        ),
    ];
    let extras: &[&str] = &[
        "",
        "Origin: https://a.example",
        "Origin: a\r\nOrigin: b",
        "Origin: ~",
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: v2",
        "Sec-WebSocket-Protocol: ,bad token,",
        "Sec-WebSocket-Protocol: ~",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Extensions: ;;",
        "Content-Length: 0",
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Cookie: a=b\r\nX-Other: ~",
    ];
    let request_lines_: &[&str] =
        &["GET /chat?x=1 HTTP/1.1", "GET http://h/p?q HTTP/1.1", "GET * HTTP/1.1", "POST / HTTP/1.1", "GET / HTTP/1.0"];
    let mut checked = 0;
    for line in request_lines_ {
        for (i, (_, values)) in variants.iter().enumerate() {
            for value in values.iter() {
                for (j, (_, others)) in variants.iter().enumerate() {
                    // One header varied alone, or together with one value of another.
                    for other in others.iter().take(if i == j { 1 } else { others.len() }) {
                        for extra in extras {
                            let mut lines: Vec<&str> = variants.iter().map(|(_, v)| v[0]).collect();
                            lines[i] = value;
                            if i != j {
                                lines[j] = other;
                            }
                            lines.push(extra);
                            let lines: Vec<&str> = lines.into_iter().filter(|l| !l.is_empty()).collect();
                            let buf = non_utf8(request_lines(line, &lines));
                            let got = parse_request(&buf, &HandshakeLimits::default());
                            assert_eq!(got, parse_request_reference(&buf), "{}", String::from_utf8_lossy(&buf));
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 5000, "{checked}");
}

// The one-pass path's key check accepts exactly the keys that decode (canonically) to 16 bytes:
// every 24-byte key built from a random 16-byte value (valid), with any one byte changed to any
// value, and random short strings.
#[test]
fn key_check_agrees_with_the_decoder() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let decodes = |k: &[u8]| k.len() <= 24 && STANDARD.decode_slice(k, &mut [0u8; 18]) == Ok(16);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..200 {
        let raw: [u8; 16] = std::array::from_fn(|_| next() as u8);
        let key = STANDARD.encode(raw).into_bytes();
        assert!(server::is_key(&key));
        for pos in 0..key.len() {
            for byte in 0..=255u8 {
                let mut k = key.clone();
                k[pos] = byte;
                let expected = decodes(&k);
                assert_eq!(server::is_key(&k), expected, "{:?}", String::from_utf8_lossy(&k));
                if expected {
                    valid += 1
                } else {
                    invalid += 1
                }
            }
        }
        let short = &key[..(next() % 24) as usize];
        assert_eq!(server::is_key(short), decodes(short));
    }
    assert!(valid > 1000 && invalid > 1000, "{valid} {invalid}");
}

//! The server side: the accept key, parsing and judging upgrade requests, and the error responses.

use super::*;

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

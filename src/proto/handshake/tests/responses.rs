//! The client side and both together: writing the 101 and the request, parsing and checking the
//! response, round trips, and parsers fed arbitrary or mutated bytes.

use super::*;

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

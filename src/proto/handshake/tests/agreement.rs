//! Paths that must agree: `parse_parts` against `parse`, the one-pass request check against the full
//! validation, the key check against the base64 decoder.

use super::*;

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

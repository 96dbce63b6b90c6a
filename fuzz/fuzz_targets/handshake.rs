//! Fuzz target for the opening handshake: `parse_request` and `parse_response` on arbitrary bytes,
//! under the default limits and under tiny ones. Beyond "never panics" it checks that a reported head
//! length lies within the input, that a parse is stable when only the head is given, that a prefix of
//! a complete head is reported incomplete, and that an accepted request can be answered and the
//! answer accepted by the client parser.
//!
//! Run: `cargo +nightly fuzz run handshake` from the repository root (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::proto::handshake::{
    accept_key, error_response, parse_request, parse_response, write_response, HandshakeLimits,
};

/// The RFC 6455 §1.3 sample key, so that a fuzzed response can carry a matching accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let default = HandshakeLimits::default();
    let tiny = HandshakeLimits {
        max_head_bytes: 64,
        max_headers: 2,
    };
    for limits in [&default, &tiny] {
        check_request(data, limits);
        check_response(data, limits);
    }
});

fn check_request(data: &[u8], limits: &HandshakeLimits) {
    match parse_request(data, limits) {
        Ok(Some((req, n))) => {
            assert!(n > 0 && n <= data.len() && n <= limits.max_head_bytes);
            // The head alone parses the same: nothing after it influenced the result.
            assert_eq!(
                parse_request(&data[..n], limits),
                Ok(Some((req.clone(), n)))
            );
            // A strict prefix of a complete head is incomplete, not an error.
            assert_eq!(parse_request(&data[..n / 2], limits), Ok(None));
            // An accepted request can be answered, and the answer passes the client's checks.
            let offered = req.protocols.clone();
            let names: Vec<String> = req.extensions.iter().map(|e| e.name.clone()).collect();
            let mut answer = Vec::new();
            write_response(
                &mut answer,
                &req.key,
                offered.first().map(String::as_str),
                None,
                &[],
            )
            .expect("a parsed key and an offered protocol can always be written");
            let parsed = parse_response(&answer, &req.key, &offered, &names, &default_limits());
            assert!(
                matches!(parsed, Ok(Some((_, m))) if m == answer.len()),
                "{parsed:?}"
            );
        }
        Ok(None) => assert!(data.len() <= limits.max_head_bytes),
        Err(err) => {
            // Every server-side error has an answer that is a well-formed head.
            let answer = error_response(&err);
            assert!(answer.starts_with(b"HTTP/1.1 "));
            assert!(answer.windows(4).any(|w| w == b"\r\n\r\n"));
            let _ = err.to_string();
        }
    }
}

fn check_response(data: &[u8], limits: &HandshakeLimits) {
    let protocols = ["chat".to_owned()];
    let extensions = ["permessage-deflate".to_owned()];
    match parse_response(data, KEY, &protocols, &extensions, limits) {
        Ok(Some((res, n))) => {
            assert!(n > 0 && n <= data.len() && n <= limits.max_head_bytes);
            assert!(!matches!(res.protocol.as_deref(), Some(p) if p != "chat"));
            assert!(res
                .extensions
                .iter()
                .all(|e| e.name.eq_ignore_ascii_case("permessage-deflate")));
            assert_eq!(
                res.header("sec-websocket-accept"),
                Some(accept_key(KEY.as_bytes()).as_str())
            );
        }
        Ok(None) => assert!(data.len() <= limits.max_head_bytes),
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

fn default_limits() -> HandshakeLimits {
    HandshakeLimits::default()
}

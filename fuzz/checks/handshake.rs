//! Checks for the opening handshake, run on arbitrary bytes: `parse_request` and `parse_response` under
//! the default limits and under tiny ones. Beyond "never panics": a reported head length lies within the
//! input and the limits, a parse is stable when only the head is given, a prefix of a complete head is
//! reported incomplete, an accepted request can be answered and the answer accepted by the client parser,
//! and every request error has a well-formed HTTP answer with a server-side status.
//!
//! Shared by the `handshake` fuzz target (`fuzz/fuzz_targets/handshake.rs`) and `cargo test`
//! (`tests/fuzz_seeds.rs`, over `fuzz/seeds/handshake/`); it uses only wsloop's public API.

use wsloop::proto::handshake::{
    accept_key, error_response, parse_request, parse_response, write_response, HandshakeLimits,
};

/// The RFC 6455 §1.3 sample key, so that a fuzzed response can carry a matching accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Runs every handshake check on `data`; panics when an invariant is broken.
pub(crate) fn check(data: &[u8]) {
    let default = HandshakeLimits::default();
    let tiny = HandshakeLimits { max_head_bytes: 64, max_headers: 2 };
    for limits in [&default, &tiny] {
        check_request(data, limits);
        check_response(data, limits);
    }
}

fn check_request(data: &[u8], limits: &HandshakeLimits) {
    match parse_request(data, limits) {
        Ok(Some((req, n))) => {
            assert!(n > 0 && n <= data.len() && n <= limits.max_head_bytes);
            assert!(req.path.starts_with('/'), "path {:?}", req.path);
            // The head alone parses the same: nothing after it influenced the result.
            assert_eq!(parse_request(&data[..n], limits), Ok(Some((req.clone(), n))));
            // A strict prefix of a complete head is incomplete, not an error.
            assert_eq!(parse_request(&data[..n - 1], limits), Ok(None));
            assert_eq!(parse_request(&data[..n / 2], limits), Ok(None));
            // An accepted request can be answered, and the answer passes the client's checks.
            let offered = req.protocols.clone();
            let names: Vec<String> = req.extensions.iter().map(|e| e.name.clone()).collect();
            let mut answer = Vec::new();
            write_response(&mut answer, &req.key, offered.first().map(String::as_str), None, &[])
                .expect("a parsed key and an offered protocol can always be written");
            let parsed = parse_response(&answer, &req.key, &offered, &names, &HandshakeLimits::default());
            assert!(matches!(parsed, Ok(Some((_, m))) if m == answer.len()), "{parsed:?}");
        }
        Ok(None) => assert!(data.len() <= limits.max_head_bytes),
        Err(err) => {
            // Every error in a request is answered by the server, with a well-formed head.
            let status = err.status();
            assert!(matches!(status, 400 | 405 | 426 | 431), "request error {err:?} has status {status}");
            let answer = error_response(&err);
            assert!(answer.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
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
            assert!(res.extensions.iter().all(|e| e.name.eq_ignore_ascii_case("permessage-deflate")));
            assert_eq!(res.header("sec-websocket-accept"), Some(accept_key(KEY.as_bytes()).as_str()));
            assert_eq!(parse_response(&data[..n - 1], KEY, &protocols, &extensions, limits), Ok(None));
        }
        Ok(None) => assert!(data.len() <= limits.max_head_bytes),
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

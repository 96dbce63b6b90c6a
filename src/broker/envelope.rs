//! What travels through the broker: a 24-byte header, then the message payload.
//!
//! ```text
//! 0      4       5          8            16                      24
//! | magic | kind | reserved | node (LE)  | published at, µs (LE) | payload ...
//! ```
//!
//! The magic (`FF 'W' 'S' 01`, the last byte the version) starts with a byte that never occurs in
//! UTF-8, so a plain text message published by something else (`redis-cli PUBLISH wsloop:room hi`) is
//! never taken for an envelope; such messages are delivered as they are ([`decode`] says `Foreign`).
//! `kind` is the WebSocket opcode (1 text, 2 binary). The time is the publishing node's wall clock
//! (microseconds since the Unix epoch), for the lag metric.

use std::time::{SystemTime, UNIX_EPOCH};

/// The first four bytes of every envelope.
pub(crate) const MAGIC: [u8; 4] = [0xff, b'W', b'S', 1];
/// Header length.
pub(crate) const HEADER: usize = 24;

/// Text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Binary,
}

/// A decoded message from the broker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A wsloop envelope.
    Envelope { kind: Kind, node: u64, published_us: u64, payload: &'a [u8] },
    /// Anything without the magic: UTF-8 text is text, the rest binary.
    Foreign { kind: Kind, payload: &'a [u8] },
    /// The magic, then something that is not a valid envelope (a newer version, a bad kind, too short).
    Malformed,
}

/// Microseconds since the Unix epoch now (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Appends the envelope of one message to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, kind: Kind, node: u64, published_us: u64, payload: &[u8]) {
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(match kind {
        Kind::Text => 1,
        Kind::Binary => 2,
    });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(&published_us.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads one message from the broker.
pub(crate) fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < MAGIC.len() || bytes[..3] != MAGIC[..3] {
        let kind = if simdutf8::basic::from_utf8(bytes).is_ok() { Kind::Text } else { Kind::Binary };
        return Decoded::Foreign { kind, payload: bytes };
    }
    if bytes[3] != MAGIC[3] || bytes.len() < HEADER {
        return Decoded::Malformed;
    }
    let kind = match bytes[4] {
        1 => Kind::Text,
        2 => Kind::Binary,
        _ => return Decoded::Malformed,
    };
    let payload = &bytes[HEADER..];
    if kind == Kind::Text && simdutf8::basic::from_utf8(payload).is_err() {
        return Decoded::Malformed;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Decoded::Envelope { kind, node: word(8), published_us: word(16), payload }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Text, 0x0102_0304_0506_0708, 42, "héllo".as_bytes());
        assert_eq!(out.len(), HEADER + 6);
        assert_eq!(
            decode(&out),
            Decoded::Envelope {
                kind: Kind::Text,
                node: 0x0102_0304_0506_0708,
                published_us: 42,
                payload: "héllo".as_bytes()
            }
        );
        out.clear();
        encode(&mut out, Kind::Binary, 7, 9, &[0xff, 0]);
        assert_eq!(
            decode(&out),
            Decoded::Envelope { kind: Kind::Binary, node: 7, published_us: 9, payload: &[0xff, 0] }
        );
    }

    #[test]
    fn foreign_and_malformed() {
        assert_eq!(decode(b"hi"), Decoded::Foreign { kind: Kind::Text, payload: b"hi" });
        assert_eq!(decode(b""), Decoded::Foreign { kind: Kind::Text, payload: b"" });
        assert_eq!(decode(&[0xfe, 1]), Decoded::Foreign { kind: Kind::Binary, payload: &[0xfe, 1] });
        // The magic's first three bytes make an envelope; anything wrong after them is malformed.
        assert_eq!(decode(&[0xff, b'W', b'S', 2, 1]), Decoded::Malformed);
        assert_eq!(decode(&MAGIC), Decoded::Malformed);
        let mut bad_kind = Vec::new();
        encode(&mut bad_kind, Kind::Text, 1, 1, b"x");
        bad_kind[4] = 9;
        assert_eq!(decode(&bad_kind), Decoded::Malformed);
        let mut bad_text = Vec::new();
        encode(&mut bad_text, Kind::Text, 1, 1, &[0xc3]);
        assert_eq!(decode(&bad_text), Decoded::Malformed);
    }
}

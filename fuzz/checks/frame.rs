//! Checks for the frame layer of the protocol core, run on arbitrary bytes: header parsing (lenient and
//! strict) and re-encoding, whole-frame encoding, masking (word-wise against the RFC's byte-wise
//! definition), close payload parsing and incremental UTF-8 validation (two pieces against
//! `std::str::from_utf8`).
//!
//! Shared by the `frame` fuzz target (`fuzz/fuzz_targets/frame.rs`) and `cargo test`
//! (`tests/fuzz_seeds.rs`, over `fuzz/seeds/frame/`); it uses only wsloop's public API.

use wsloop::proto::utf8::{validate, Utf8Validator};
use wsloop::proto::{
    apply_mask, apply_mask_bytewise, encode_frame, parse_close_payload, CloseCode, ClosePayloadError, FrameHeader,
    HeaderError, HeaderParse, OpCode, MAX_HEADER_LEN,
};

/// Runs every frame-layer check on `data`; panics when an invariant is broken.
pub(crate) fn check(data: &[u8]) {
    check_header(data);
    check_encode_frame(data);
    check_mask(data);
    check_close_payload(data);
    check_utf8(data);
}

/// Parses `data` as a frame header; a complete header must re-encode to bytes that parse back to the same
/// header (and, when its length was minimally encoded, to exactly the input bytes).
fn check_header(data: &[u8]) {
    let lenient = FrameHeader::parse(data);
    let strict = FrameHeader::parse_strict(data);
    match lenient {
        Ok(HeaderParse::Complete { header, header_len }) => {
            assert!(header_len <= data.len() && header_len <= MAX_HEADER_LEN);
            assert!(matches!(header_len, 2 | 4 | 6 | 8 | 10 | 14), "odd header length {header_len}");
            assert_eq!(header.payload_len >> 63, 0);
            assert_eq!(header.mask.is_some(), data[1] & 0x80 != 0);

            // Every shorter prefix is incomplete, and says truthfully how much is missing.
            for k in 0..header_len {
                match FrameHeader::parse(&data[..k]) {
                    Ok(HeaderParse::Incomplete { needed }) => {
                        assert!(needed > 0 && k + needed <= header_len, "prefix {k}: needed {needed}");
                    }
                    other => panic!("prefix of {k} bytes of a {header_len}-byte header parsed as {other:?}"),
                }
            }

            // Re-encode (always in the minimal form).
            let mut out = Vec::new();
            header.encode(&mut out);
            assert_eq!(out.len(), header.encoded_len());
            assert!(out.len() <= header_len);
            assert_eq!(out[0], data[0], "first byte (FIN, RSV, opcode) must round-trip");
            assert_eq!(FrameHeader::parse_strict(&out), Ok(HeaderParse::Complete { header, header_len: out.len() }));
            let mut fixed = [0u8; MAX_HEADER_LEN];
            let n = header.encode_into(&mut fixed);
            assert_eq!(&fixed[..n], &out[..]);

            match strict {
                Ok(parsed) => {
                    // Minimal input: the encoding is byte for byte the input.
                    assert_eq!(parsed, lenient.unwrap());
                    assert_eq!(&out[..], &data[..header_len]);
                }
                Err(HeaderError::NonMinimalLength) => assert!(out.len() < header_len),
                Err(e) => panic!("strict parse failed with {e:?} where the lenient one succeeded"),
            }
        }
        Ok(HeaderParse::Incomplete { needed }) => {
            assert!(needed > 0 && data.len() + needed <= MAX_HEADER_LEN);
            assert_eq!(strict, lenient);
        }
        Err(HeaderError::LengthTopBitSet) => assert_eq!(strict, lenient),
        Err(HeaderError::NonMinimalLength) => panic!("lenient parse reported a non-minimal length"),
        Err(e) => panic!("lenient parse failed with an unknown error {e:?}"),
    }
}

/// A whole frame built by `encode_frame` (FIN, RSV and opcode from the first byte, a key from the next
/// four when the second byte is odd, the rest as payload) parses back strictly to the same header, and
/// unmasks to the same payload.
fn check_encode_frame(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let (fin, rsv, opcode) = (data[0] & 0x80 != 0, data[0] & 0x70, OpCode::from_u8(data[0] & 0x0f));
    assert_eq!(opcode.as_u8(), data[0] & 0x0f);
    let mask = (data[1] & 1 == 1).then(|| [data[2], data[3], data[4], data[5]]);
    let payload = &data[6..];

    let mut out = Vec::new();
    encode_frame(&mut out, opcode, fin, rsv, mask, payload);
    let Ok(HeaderParse::Complete { header, header_len }) = FrameHeader::parse_strict(&out) else {
        panic!("encode_frame wrote a header that does not parse strictly: {:?}", &out[..out.len().min(14)]);
    };
    let expected = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
    assert_eq!(header, expected);
    assert_eq!(out.len(), header_len + payload.len());
    let body = &mut out[header_len..];
    if let Some(key) = mask {
        apply_mask(body, key, 0);
    }
    assert_eq!(body, payload);
}

/// Word-wise masking must equal the byte-wise definition at any offset, and undo itself.
fn check_mask(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let key = [data[0], data[1], data[2], data[3]];
    let offset = usize::from(data[4]);
    let payload = &data[5..];

    let mut fast = payload.to_vec();
    let mut slow = payload.to_vec();
    apply_mask(&mut fast, key, offset);
    apply_mask_bytewise(&mut slow, key, offset);
    assert_eq!(fast, slow);

    // Unmasking in two pieces (with the running offset) equals unmasking at once.
    let cut = usize::from(data[0]) % (payload.len() + 1);
    let mut pieces = payload.to_vec();
    let (a, b) = pieces.split_at_mut(cut);
    apply_mask(a, key, offset);
    apply_mask(b, key, offset.wrapping_add(cut));
    assert_eq!(pieces, fast);

    apply_mask(&mut fast, key, offset);
    assert_eq!(fast, payload);
}

/// A close payload parses to nothing when empty, to the code in its first two bytes (when that code is
/// allowed on the wire) and the UTF-8 reason after them, and fails with the matching error otherwise.
fn check_close_payload(data: &[u8]) {
    if let [a, b, ..] = *data {
        let code = u16::from_be_bytes([a, b]);
        assert_eq!(CloseCode(code).is_allowed_on_wire(), frame_code_allowed(code), "close code {code}");
    }
    match parse_close_payload(data) {
        Ok(None) => assert!(data.is_empty()),
        Ok(Some(frame)) => {
            assert_eq!(frame.code.0, u16::from_be_bytes([data[0], data[1]]));
            assert!(frame_code_allowed(frame.code.0));
            assert_eq!(frame.reason.as_bytes(), &data[2..]);
        }
        Err(ClosePayloadError::TooShort) => assert_eq!(data.len(), 1),
        Err(ClosePayloadError::CodeNotAllowed(code)) => {
            assert_eq!(code, u16::from_be_bytes([data[0], data[1]]));
            assert!(!frame_code_allowed(code));
        }
        Err(ClosePayloadError::InvalidUtf8) => {
            assert!(frame_code_allowed(u16::from_be_bytes([data[0], data[1]])));
            assert!(std::str::from_utf8(&data[2..]).is_err());
        }
        Err(e) => panic!("unknown close payload error {e:?}"),
    }
}

/// RFC 6455 §7.4: the codes a close frame may carry, written out independently of `CloseCode`.
fn frame_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The incremental validator fed in two pieces, and the one-shot `validate`, agree with std; the first
/// piece fails exactly when std says no continuation can make it valid (fail-fast, RFC 6455 §8.1).
fn check_utf8(data: &[u8]) {
    let expected = std::str::from_utf8(data).is_ok();
    assert_eq!(validate(data).is_ok(), expected);

    let cut = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])) % (data.len() + 1),
        _ => 0,
    };
    let (first, second) = data.split_at(cut);
    let mut v = Utf8Validator::new();
    let first_ok = v.feed(first).is_ok();
    let first_std = std::str::from_utf8(first);
    // Err with no `error_len`: valid up to an incomplete code point at the end.
    let could_continue = first_std.as_ref().map_or_else(|e| e.error_len().is_none(), |_| true);
    assert_eq!(first_ok, could_continue, "fail-fast on the first {cut} bytes");
    if first_ok {
        // What remains pending is exactly the incomplete code point at the end, if any.
        assert_eq!(v.is_mid_code_point(), first_std.is_err());
    }
    let ok = first_ok && v.feed(second).is_ok() && v.finish().is_ok();
    assert_eq!(ok, expected, "two pieces split at {cut}");
}

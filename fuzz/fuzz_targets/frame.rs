//! Fuzz target for the frame layer of the protocol core: header parsing (lenient and strict) and
//! re-encoding, masking (word-wise against the RFC's byte-wise definition) and incremental UTF-8
//! validation (two pieces against `std::str::from_utf8`).
//!
//! Run: `cargo +nightly fuzz run frame` from the repository root (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::proto::frame::{FrameHeader, HeaderError, HeaderParse, MAX_HEADER_LEN};
use wsloop::proto::mask::{apply_mask, apply_mask_bytewise};
use wsloop::proto::utf8::{validate, Utf8Validator};

fuzz_target!(|data: &[u8]| {
    check_header(data);
    check_mask(data);
    check_utf8(data);
});

/// Parses `data` as a frame header; a complete header must re-encode to bytes that parse back to the same
/// header (and, when its length was minimally encoded, to exactly the input bytes).
fn check_header(data: &[u8]) {
    let lenient = FrameHeader::parse(data);
    let strict = FrameHeader::parse_strict(data);
    match lenient {
        Ok(HeaderParse::Complete { header, header_len }) => {
            assert!(header_len <= data.len() && header_len <= MAX_HEADER_LEN);
            assert!(
                matches!(header_len, 2 | 4 | 6 | 8 | 10 | 14),
                "odd header length {header_len}"
            );
            assert_eq!(header.payload_len >> 63, 0);
            assert_eq!(header.mask.is_some(), data[1] & 0x80 != 0);

            // Every shorter prefix is incomplete, and says truthfully how much is missing.
            for k in 0..header_len {
                match FrameHeader::parse(&data[..k]) {
                    Ok(HeaderParse::Incomplete { needed }) => {
                        assert!(
                            needed > 0 && k + needed <= header_len,
                            "prefix {k}: needed {needed}"
                        );
                    }
                    other => panic!(
                        "prefix of {k} bytes of a {header_len}-byte header parsed as {other:?}"
                    ),
                }
            }

            // Re-encode (always in the minimal form).
            let mut out = Vec::new();
            header.encode(&mut out);
            assert_eq!(out.len(), header.encoded_len());
            assert!(out.len() <= header_len);
            assert_eq!(
                out[0], data[0],
                "first byte (FIN, RSV, opcode) must round-trip"
            );
            assert_eq!(
                FrameHeader::parse_strict(&out),
                Ok(HeaderParse::Complete {
                    header,
                    header_len: out.len()
                })
            );
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
    }
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

/// The incremental validator fed in two pieces, and the one-shot `validate`, agree with std.
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
    if first_ok {
        // What remains pending is a proper prefix of a code point.
        assert!(!v.is_mid_code_point() || std::str::from_utf8(first).is_err());
    } else {
        // Failing on the first piece means no continuation can make the message valid.
        assert!(!expected);
    }
    let ok = first_ok && v.feed(second).is_ok() && v.finish().is_ok();
    assert_eq!(ok, expected, "two pieces split at {cut}");
}

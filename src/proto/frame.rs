//! Frames on the wire (RFC 6455 §5.2): header parsing from partial input, header and frame encoding into a
//! caller's buffer.
//!
//! Owns: the frame wire format. Never touches: message rules or connection state.

use std::fmt;

/// A frame opcode. Reserved opcodes are kept so that an extension may claim them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// 0x3-0x7: reserved non-control opcodes.
    ReservedData(u8),
    /// 0xB-0xF: reserved control opcodes.
    ReservedControl(u8),
}

impl OpCode {
    /// Decodes the low four bits of the first header byte.
    pub fn from_u8(bits: u8) -> Self {
        match bits & 0x0f {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            b @ 0x3..=0x7 => Self::ReservedData(b),
            b => Self::ReservedControl(b),
        }
    }

    /// The four-bit wire value.
    #[inline]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
            Self::ReservedData(b) | Self::ReservedControl(b) => b & 0x0f,
        }
    }

    /// Control frames (close, ping, pong and reserved 0xB-0xF) have the high opcode bit set.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x08 != 0
    }

    /// Whether the opcode is one of the six that RFC 6455 defines.
    pub fn is_reserved(self) -> bool {
        matches!(self, Self::ReservedData(_) | Self::ReservedControl(_))
    }
}

/// RSV1 bit in the first header byte (claimed by permessage-deflate).
pub const RSV1: u8 = 0x40;
/// RSV2 bit in the first header byte.
pub const RSV2: u8 = 0x20;
/// RSV3 bit in the first header byte.
pub const RSV3: u8 = 0x10;

/// The longest possible header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// The RSV1-3 bits, in their wire positions (a subset of `RSV1 | RSV2 | RSV3`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// The result of parsing a header from possibly partial input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse {
    /// A full header was decoded from the first `header_len` bytes.
    Complete {
        /// The decoded header.
        header: FrameHeader,
        /// How many bytes the header took.
        header_len: usize,
    },
    /// At least this many more bytes are needed before the header can be decoded.
    Incomplete {
        /// Bytes still missing.
        needed: usize,
    },
}

/// A header that can never be valid, whatever the connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// A 64-bit length had its most significant bit set (RFC 6455 §5.2).
    LengthTopBitSet,
    /// A 16- or 64-bit extended length encoded a value that fits a shorter form. Only reported by
    /// [`FrameHeader::parse_strict`]; RFC 6455 requires the minimal form but peers in the wild break it.
    NonMinimalLength,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthTopBitSet => f.write_str("64-bit payload length has its most significant bit set"),
            Self::NonMinimalLength => f.write_str("payload length not in its minimal encoding"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// Decodes a header from the start of `buf`, which may hold only part of it.
    pub fn parse(buf: &[u8]) -> Result<HeaderParse, HeaderError> {
        if buf.len() < 2 {
            return Ok(HeaderParse::Incomplete { needed: 2 - buf.len() });
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(HeaderParse::Incomplete { needed: header_len - buf.len() });
        }
        let payload_len = match len7 {
            126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            127 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthTopBitSet);
                }
                len
            }
            n => u64::from(n),
        };
        let mask = if masked {
            let k = 2 + ext_len;
            Some([buf[k], buf[k + 1], buf[k + 2], buf[k + 3]])
        } else {
            None
        };
        Ok(HeaderParse::Complete {
            header: Self {
                fin: b0 & 0x80 != 0,
                rsv: b0 & (RSV1 | RSV2 | RSV3),
                opcode: OpCode::from_u8(b0),
                mask,
                payload_len,
            },
            header_len,
        })
    }

    /// Like [`FrameHeader::parse`], but also rejects lengths not in their minimal encoding.
    pub fn parse_strict(buf: &[u8]) -> Result<HeaderParse, HeaderError> {
        let parsed = Self::parse(buf)?;
        if let HeaderParse::Complete { header, .. } = parsed {
            let minimal = match buf[1] & 0x7f {
                126 => header.payload_len >= 126,
                127 => header.payload_len > u64::from(u16::MAX),
                _ => true,
            };
            if !minimal {
                return Err(HeaderError::NonMinimalLength);
            }
        }
        Ok(parsed)
    }

    /// How many bytes [`FrameHeader::encode`] writes for this header.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header, in its minimal length encoding, into `out[..self.encoded_len()]` and returns
    /// the number of bytes written.
    ///
    /// # Panics
    /// If `out` is shorter than [`FrameHeader::encoded_len`] or `payload_len` has its top bit set.
    pub fn encode_into(&self, out: &mut [u8]) -> usize {
        assert!(self.payload_len >> 63 == 0, "payload length too large for a frame");
        let mut b0 = self.opcode.as_u8() | (self.rsv & (RSV1 | RSV2 | RSV3));
        if self.fin {
            b0 |= 0x80;
        }
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out[0] = b0;
        let mut n = 2;
        match self.payload_len {
            len @ 0..=125 => out[1] = mask_bit | len as u8,
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                n = 4;
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                n = 10;
            }
        }
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }

    /// Appends the header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut tmp = [0u8; MAX_HEADER_LEN];
        let n = self.encode_into(&mut tmp);
        out.extend_from_slice(&tmp[..n]);
    }
}

/// Appends a whole frame (header, then payload) to `out`, masking the payload copy when `mask` is set.
///
/// A server frame is unmasked, so it can be encoded once and sent to many connections.
#[inline]
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) {
    // This is on the path of every message a server sends. The common case, a small unmasked frame, is
    // inlined into the caller (where the opcode and flags are usually constants): a two-byte header of
    // constant size, two stores, no call but the payload's copy, and `out` grows at most once. The rest
    // is out of line, so this adds no register saves to the common case.
    let len = payload.len();
    if len < 126 && mask.is_none() {
        out.reserve(2 + len);
        out.extend_from_slice(&[first_byte(opcode, fin, rsv), len as u8]);
        out.extend_from_slice(payload);
        return;
    }
    encode_frame_general(out, opcode, fin, rsv, mask, payload);
}

/// A frame's first byte: FIN, the RSV bits and the opcode.
#[inline]
fn first_byte(opcode: OpCode, fin: bool, rsv: u8) -> u8 {
    opcode.as_u8() | (rsv & (RSV1 | RSV2 | RSV3)) | if fin { 0x80 } else { 0 }
}

/// [`encode_frame`] for a masked frame or one with an extended length: the header built in one pass
/// (no `FrameHeader`, no length re-derived for `reserve`), and `out` grows at most once.
#[inline(never)]
fn encode_frame_general(out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) {
    let len = payload.len();
    let b0 = first_byte(opcode, fin, rsv);
    let mut head = [0u8; MAX_HEADER_LEN];
    head[0] = b0;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        head[1] = mask_bit | len as u8;
    } else if len <= 0xffff {
        head[1] = mask_bit | 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        // A slice is at most isize::MAX bytes long: the top bit of the 64-bit length is clear.
        head[1] = mask_bit | 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        head[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    out.reserve(n + len);
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        super::mask::apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen};

    fn complete(buf: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(buf).unwrap() {
            HeaderParse::Complete { header, header_len } => (header, header_len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn parses_short_unmasked_text_header() {
        let (h, n) = complete(&[0x81, 0x05]);
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, None);
    }

    #[test]
    fn parses_16_and_64_bit_lengths_with_mask() {
        let (h, n) = complete(&[0x02, 0xfe, 0x01, 0x00, 1, 2, 3, 4]);
        assert_eq!((h.payload_len, n, h.fin, h.mask), (256, 8, false, Some([1, 2, 3, 4])));
        let mut buf = vec![0x82, 0x7f];
        buf.extend_from_slice(&65536u64.to_be_bytes());
        let (h, n) = complete(&buf);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn partial_header_says_how_many_bytes_are_missing() {
        assert_eq!(FrameHeader::parse(&[]).unwrap(), HeaderParse::Incomplete { needed: 2 });
        assert_eq!(FrameHeader::parse(&[0x81]).unwrap(), HeaderParse::Incomplete { needed: 1 });
        // 64-bit length + mask: 14 bytes in all.
        assert_eq!(FrameHeader::parse(&[0x82, 0xff, 0]).unwrap(), HeaderParse::Incomplete { needed: 11 });
        assert_eq!(FrameHeader::parse(&[0x82, 0xfe]).unwrap(), HeaderParse::Incomplete { needed: 6 });
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit_set() {
        let mut buf = vec![0x82, 0x7f];
        buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&buf), Err(HeaderError::LengthTopBitSet));
    }

    #[test]
    fn strict_parse_rejects_non_minimal_lengths() {
        assert_eq!(FrameHeader::parse_strict(&[0x82, 0x7e, 0, 5]), Err(HeaderError::NonMinimalLength));
        let mut buf = vec![0x82, 0x7f];
        buf.extend_from_slice(&300u64.to_be_bytes());
        assert_eq!(FrameHeader::parse_strict(&buf), Err(HeaderError::NonMinimalLength));
        assert!(FrameHeader::parse(&buf).is_ok());
    }

    #[test]
    fn rsv_bits_and_reserved_opcodes_are_reported() {
        let (h, _) = complete(&[0xf3, 0x00]);
        assert_eq!(h.rsv, RSV1 | RSV2 | RSV3);
        assert_eq!(h.opcode, OpCode::ReservedData(3));
        assert!(h.opcode.is_reserved());
        assert!(!h.opcode.is_control());
        let (h, _) = complete(&[0x8b, 0x00]);
        assert_eq!(h.opcode, OpCode::ReservedControl(0xb));
        assert!(h.opcode.is_control());
    }

    #[test]
    fn every_opcode_round_trips_through_its_wire_value() {
        for bits in 0..16u8 {
            assert_eq!(OpCode::from_u8(bits).as_u8(), bits);
        }
    }

    #[derive(Debug, Clone)]
    struct AnyHeader(FrameHeader);

    impl Arbitrary for AnyHeader {
        fn arbitrary(g: &mut Gen) -> Self {
            let len = match u8::arbitrary(g) % 4 {
                0 => u64::from(u8::arbitrary(g) % 126),
                1 => u64::from(u16::arbitrary(g)),
                2 => u64::arbitrary(g) >> 1,
                _ => 126,
            };
            Self(FrameHeader {
                fin: bool::arbitrary(g),
                rsv: u8::arbitrary(g) & (RSV1 | RSV2 | RSV3),
                opcode: OpCode::from_u8(u8::arbitrary(g)),
                mask: if bool::arbitrary(g) { Some(<[u8; 4]>::arbitrary(g)) } else { None },
                payload_len: len,
            })
        }
    }

    /// `encode_frame` builds its header by itself: it must agree with `FrameHeader::encode` followed by the
    /// payload (masked with the key when there is one), for every header field and at every length
    /// boundary of the three length encodings.
    fn encode_frame_agrees(h: &FrameHeader, payload: &[u8]) -> bool {
        let mut fast = vec![0xee];
        encode_frame(&mut fast, h.opcode, h.fin, h.rsv, h.mask, payload);
        let mut slow = vec![0xee];
        FrameHeader { payload_len: payload.len() as u64, ..*h }.encode(&mut slow);
        let start = slow.len();
        slow.extend_from_slice(payload);
        if let Some(key) = h.mask {
            super::super::mask::apply_mask_bytewise(&mut slow[start..], key, 0);
        }
        fast == slow
    }

    #[test]
    fn encode_frame_agrees_at_length_boundaries() {
        let h = FrameHeader { fin: true, rsv: RSV1, opcode: OpCode::Text, mask: Some([9, 8, 7, 6]), payload_len: 0 };
        for len in [0, 1, 125, 126, 127, 0xffff, 0x1_0000, 0x1_0001] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert!(encode_frame_agrees(&h, &payload), "masked, {len} bytes");
            assert!(encode_frame_agrees(&FrameHeader { mask: None, ..h }, &payload), "unmasked, {len} bytes");
        }
    }

    quickcheck! {
        fn encode_frame_agrees_with_header_encode(h: AnyHeader, payload: Vec<u8>) -> bool {
            encode_frame_agrees(&h.0, &payload)
        }

        fn encode_then_parse_round_trips(h: AnyHeader) -> bool {
            let mut out = Vec::new();
            h.0.encode(&mut out);
            out.len() == h.0.encoded_len()
                && FrameHeader::parse_strict(&out) == Ok(HeaderParse::Complete { header: h.0, header_len: out.len() })
        }

        fn every_strict_prefix_is_incomplete(h: AnyHeader) -> bool {
            let mut out = Vec::new();
            h.0.encode(&mut out);
            (0..out.len()).all(|k| matches!(
                FrameHeader::parse(&out[..k]),
                Ok(HeaderParse::Incomplete { needed }) if needed > 0 && k + needed <= out.len()
            ))
        }
    }
}

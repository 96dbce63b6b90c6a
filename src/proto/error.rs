//! The protocol core's error type: which rule the peer broke (or which limit it hit), with what was
//! expected and what came, and the close code that answers it.
//!
//! Owns: the variants, their close codes, the short reasons sent in close frames and the sentences shown
//! to users. Never touches: the connection state (see [`Connection::read`](super::Connection::read)).

use std::fmt;

use super::close::{CloseCode, ClosePayloadError};
use super::frame::HeaderError;

/// A protocol violation (or a limit hit) that fails the connection with a close code.
///
/// One variant per rule, so that a caller can match on what happened:
///
/// ```
/// use wsloop::proto::{CloseCode, ProtocolError};
///
/// fn describe(err: &ProtocolError) -> String {
///     match err {
///         ProtocolError::FrameTooLarge { limit, len } => format!("raise max_frame_size above {limit} ({len})"),
///         ProtocolError::InvalidUtf8Text => "the peer sent bad text".to_owned(),
///         other => other.to_string(),
///     }
/// }
///
/// let err = ProtocolError::FrameTooLarge { limit: 100, len: 101 };
/// assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
/// assert_eq!(describe(&err), "raise max_frame_size above 100 (101)");
/// ```
///
/// [`ProtocolError::close_code`] is the code sent to the peer in the close frame, [`ProtocolError::reason`]
/// the short text sent with it, and `Display` a sentence for people (with the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame used an opcode RFC 6455 reserves (0x3-0x7, 0xB-0xF) that no extension claims (→ 1002).
    ReservedOpcode {
        /// The four-bit opcode received.
        opcode: u8,
    },
    /// A client sent a frame without a masking key (→ 1002, RFC 6455 §5.1).
    UnmaskedClientFrame,
    /// A server sent a masked frame (→ 1002, RFC 6455 §5.1).
    MaskedServerFrame,
    /// A control frame had RSV bits set (→ 1002): no extension may claim them on control frames.
    ReservedBitsOnControlFrame {
        /// The RSV bits received, in their wire positions (a subset of `RSV1 | RSV2 | RSV3`).
        rsv: u8,
    },
    /// A continuation frame had RSV bits set (→ 1002): extensions set them on a message's first frame only.
    ReservedBitsOnContinuation {
        /// The RSV bits received, in their wire positions.
        rsv: u8,
    },
    /// The first frame of a data message set RSV bits that no negotiated extension claims (→ 1002).
    ReservedBitsNotNegotiated {
        /// The RSV bits received, in their wire positions.
        rsv: u8,
        /// The RSV bits the negotiated extensions claim (0 without extensions).
        negotiated: u8,
    },
    /// A control frame (close, ping, pong) came without FIN: control frames may not be fragmented
    /// (→ 1002).
    FragmentedControlFrame,
    /// A control frame's payload was longer than the 125 bytes RFC 6455 allows (→ 1002).
    ControlFrameTooLong {
        /// The payload length received.
        len: u64,
    },
    /// A continuation frame came while no fragmented message was open (→ 1002).
    ContinuationWithoutMessage,
    /// A text or binary frame came while a fragmented message was still open (→ 1002).
    NewMessageInsideFragmented,
    /// A 64-bit payload length had its most significant bit set (→ 1002).
    LengthTopBitSet,
    /// A payload length was not in its minimal encoding (→ 1002). [`Connection`](super::Connection) never
    /// reports it (it accepts such lengths, as peers in the wild send them); it is what a
    /// [`HeaderError`] from [`FrameHeader::parse_strict`](super::FrameHeader::parse_strict)
    /// converts to.
    NonMinimalLength,
    /// A data frame's payload was larger than `max_frame_size` (→ 1009). Detected from the header alone.
    FrameTooLarge {
        /// The configured limit (`ConnectionConfig::max_frame_size`).
        limit: u64,
        /// The frame's payload length.
        len: u64,
    },
    /// A message, summed over its fragments, was larger than `max_message_size` (→ 1009).
    MessageTooLarge {
        /// The configured limit (`ConnectionConfig::max_message_size`).
        limit: u64,
        /// The message's length so far, this frame included.
        len: u64,
    },
    /// A message decoded by an extension (decompressed) was larger than `max_message_size` (→ 1009).
    DecodedMessageTooLarge {
        /// The configured limit (`ConnectionConfig::max_message_size`).
        limit: u64,
    },
    /// A text message was not valid UTF-8 (→ 1007). Detected as soon as the bad bytes arrive.
    InvalidUtf8Text,
    /// A close frame's payload was a single byte: too short for a status code (→ 1002).
    OneByteClosePayload,
    /// A close frame carried a status code that may not be sent on the wire (→ 1002, RFC 6455 §7.4).
    InvalidCloseCode {
        /// The status code received.
        code: u16,
    },
    /// A close frame's reason was not valid UTF-8 (→ 1007).
    InvalidUtf8CloseReason,
    /// A negotiated extension failed (e.g. corrupt compressed data: 1007; a message that decompresses past
    /// the limit: 1009). Built by [`Extension`](super::Extension) implementations.
    Extension {
        /// The close code to send.
        code: CloseCode,
        /// A short reason, also sent in the close frame (at most 123 bytes are sent).
        reason: &'static str,
    },
}

impl ProtocolError {
    /// The close code sent to the peer when this error fails the connection (1002, 1007, 1009, ...).
    pub const fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } | Self::DecodedMessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            Self::InvalidUtf8Text | Self::InvalidUtf8CloseReason => CloseCode::INVALID_PAYLOAD,
            Self::Extension { code, .. } => *code,
            Self::ReservedOpcode { .. }
            | Self::UnmaskedClientFrame
            | Self::MaskedServerFrame
            | Self::ReservedBitsOnControlFrame { .. }
            | Self::ReservedBitsOnContinuation { .. }
            | Self::ReservedBitsNotNegotiated { .. }
            | Self::FragmentedControlFrame
            | Self::ControlFrameTooLong { .. }
            | Self::ContinuationWithoutMessage
            | Self::NewMessageInsideFragmented
            | Self::LengthTopBitSet
            | Self::NonMinimalLength
            | Self::OneByteClosePayload
            | Self::InvalidCloseCode { .. } => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The short reason sent to the peer in the close frame (without numbers, so that it never varies).
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::ReservedOpcode { .. } => "reserved opcode",
            Self::UnmaskedClientFrame => "unmasked frame from a client",
            Self::MaskedServerFrame => "masked frame from a server",
            Self::ReservedBitsOnControlFrame { .. } => "reserved bits set on a control frame",
            Self::ReservedBitsOnContinuation { .. } => "reserved bits set on a continuation frame",
            Self::ReservedBitsNotNegotiated { .. } => "reserved bits set without a negotiated extension",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::ControlFrameTooLong { .. } => "control frame payload longer than 125 bytes",
            Self::ContinuationWithoutMessage => "continuation frame without a message to continue",
            Self::NewMessageInsideFragmented => "new data frame inside a fragmented message",
            Self::LengthTopBitSet => "64-bit payload length with its top bit set",
            Self::NonMinimalLength => "payload length not minimally encoded",
            Self::FrameTooLarge { .. } => "frame larger than the maximum frame size",
            Self::MessageTooLarge { .. } => "message larger than the maximum message size",
            Self::DecodedMessageTooLarge { .. } => "decoded message larger than the maximum message size",
            Self::InvalidUtf8Text => "invalid UTF-8 in text message",
            Self::OneByteClosePayload => "close payload of one byte",
            Self::InvalidCloseCode { .. } => "close code not allowed on the wire",
            Self::InvalidUtf8CloseReason => "close reason is not valid UTF-8",
            Self::Extension { reason, .. } => reason,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ReservedOpcode { opcode } => {
                write!(f, "the peer sent a frame with reserved opcode {opcode:#x}, which no extension claims")
            }
            Self::UnmaskedClientFrame => f.write_str("the client sent a frame without a masking key"),
            Self::MaskedServerFrame => f.write_str("the server sent a masked frame"),
            Self::ReservedBitsOnControlFrame { rsv } => {
                write!(f, "the peer set reserved bits {rsv:#04x} on a control frame")
            }
            Self::ReservedBitsOnContinuation { rsv } => {
                write!(f, "the peer set reserved bits {rsv:#04x} on a continuation frame")
            }
            Self::ReservedBitsNotNegotiated { rsv, negotiated } => write!(
                f,
                "the peer set reserved bits {rsv:#04x} on a data frame, but the negotiated extensions claim only \
                 {negotiated:#04x}"
            ),
            Self::FragmentedControlFrame => f.write_str("the peer sent a control frame without FIN (fragmented)"),
            Self::ControlFrameTooLong { len } => {
                write!(f, "the peer sent a control frame with a {len}-byte payload; the limit is 125 bytes")
            }
            Self::ContinuationWithoutMessage => {
                f.write_str("the peer sent a continuation frame while no fragmented message was open")
            }
            Self::NewMessageInsideFragmented => {
                f.write_str("the peer started a new data message before finishing its fragmented message")
            }
            Self::LengthTopBitSet => {
                f.write_str("the peer sent a 64-bit payload length with its most significant bit set")
            }
            Self::NonMinimalLength => f.write_str("the peer sent a payload length not in its minimal encoding"),
            Self::FrameTooLarge { limit, len } => {
                write!(f, "the peer sent a frame of {len} bytes; the maximum frame size is {limit} bytes")
            }
            Self::MessageTooLarge { limit, len } => {
                write!(f, "the peer sent a message of at least {len} bytes; the maximum message size is {limit} bytes")
            }
            Self::DecodedMessageTooLarge { limit } => {
                write!(f, "the peer sent a message that decodes to more than the maximum message size of {limit} bytes")
            }
            Self::InvalidUtf8Text => f.write_str("the peer sent a text message that is not valid UTF-8"),
            Self::OneByteClosePayload => {
                f.write_str("the peer sent a close frame with a one-byte payload (too short for a status code)")
            }
            Self::InvalidCloseCode { code } => {
                write!(f, "the peer sent close code {code}, which may not be sent on the wire")
            }
            Self::InvalidUtf8CloseReason => f.write_str("the peer sent a close reason that is not valid UTF-8"),
            Self::Extension { code, reason } => write!(f, "a negotiated extension failed with {code}: {reason}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<ClosePayloadError> for ProtocolError {
    fn from(e: ClosePayloadError) -> Self {
        match e {
            ClosePayloadError::TooShort => Self::OneByteClosePayload,
            ClosePayloadError::CodeNotAllowed(code) => Self::InvalidCloseCode { code },
            ClosePayloadError::InvalidUtf8 => Self::InvalidUtf8CloseReason,
        }
    }
}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::LengthTopBitSet => Self::LengthTopBitSet,
            HeaderError::NonMinimalLength => Self::NonMinimalLength,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of every variant. `index` below has no wildcard arm, so a new variant does not compile
    /// until it is added there, and the test fails until it is added here.
    fn all() -> Vec<ProtocolError> {
        use ProtocolError::*;
        vec![
            ReservedOpcode { opcode: 0x3 },
            UnmaskedClientFrame,
            MaskedServerFrame,
            ReservedBitsOnControlFrame { rsv: 0x40 },
            ReservedBitsOnContinuation { rsv: 0x20 },
            ReservedBitsNotNegotiated { rsv: 0x30, negotiated: 0x40 },
            FragmentedControlFrame,
            ControlFrameTooLong { len: 126 },
            ContinuationWithoutMessage,
            NewMessageInsideFragmented,
            LengthTopBitSet,
            NonMinimalLength,
            FrameTooLarge { limit: 100, len: 101 },
            MessageTooLarge { limit: 10, len: 12 },
            DecodedMessageTooLarge { limit: 64 },
            InvalidUtf8Text,
            OneByteClosePayload,
            InvalidCloseCode { code: 1005 },
            InvalidUtf8CloseReason,
            Extension { code: CloseCode::INVALID_PAYLOAD, reason: "corrupt deflate stream" },
        ]
    }

    fn index(e: &ProtocolError) -> usize {
        use ProtocolError::*;
        match e {
            ReservedOpcode { .. } => 0,
            UnmaskedClientFrame => 1,
            MaskedServerFrame => 2,
            ReservedBitsOnControlFrame { .. } => 3,
            ReservedBitsOnContinuation { .. } => 4,
            ReservedBitsNotNegotiated { .. } => 5,
            FragmentedControlFrame => 6,
            ControlFrameTooLong { .. } => 7,
            ContinuationWithoutMessage => 8,
            NewMessageInsideFragmented => 9,
            LengthTopBitSet => 10,
            NonMinimalLength => 11,
            FrameTooLarge { .. } => 12,
            MessageTooLarge { .. } => 13,
            DecodedMessageTooLarge { .. } => 14,
            InvalidUtf8Text => 15,
            OneByteClosePayload => 16,
            InvalidCloseCode { .. } => 17,
            InvalidUtf8CloseReason => 18,
            Extension { .. } => 19,
        }
    }

    #[test]
    fn the_list_holds_every_variant_once() {
        let indices: Vec<usize> = all().iter().map(index).collect();
        assert_eq!(indices, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn every_variant_has_a_short_reason_and_a_distinct_sentence_with_its_numbers() {
        let mut sentences = std::collections::HashSet::new();
        for err in all() {
            let reason = err.reason();
            assert!(!reason.is_empty(), "{err:?}");
            assert!(reason.len() <= super::super::close::MAX_CLOSE_REASON, "{err:?}");
            let text = err.to_string();
            assert!(text.len() > reason.len() / 2, "{err:?}: {text:?}");
            assert!(sentences.insert(text.clone()), "{err:?} repeats {text:?}");
            let numbers: Vec<String> = match err {
                ProtocolError::ReservedOpcode { opcode } => vec![format!("{opcode:#x}")],
                ProtocolError::ReservedBitsOnControlFrame { rsv }
                | ProtocolError::ReservedBitsOnContinuation { rsv } => {
                    vec![format!("{rsv:#04x}")]
                }
                ProtocolError::ReservedBitsNotNegotiated { rsv, negotiated } => {
                    vec![format!("{rsv:#04x}"), format!("{negotiated:#04x}")]
                }
                ProtocolError::ControlFrameTooLong { len } => vec![len.to_string(), "125".into()],
                ProtocolError::FrameTooLarge { limit, len } | ProtocolError::MessageTooLarge { limit, len } => {
                    vec![limit.to_string(), len.to_string()]
                }
                ProtocolError::DecodedMessageTooLarge { limit } => vec![limit.to_string()],
                ProtocolError::InvalidCloseCode { code } => vec![code.to_string()],
                ProtocolError::Extension { code, reason } => vec![code.to_string(), reason.to_owned()],
                _ => vec![],
            };
            for n in numbers {
                assert!(text.contains(&n), "{err:?}: {text:?} should name {n}");
            }
        }
    }

    #[test]
    fn close_codes_follow_the_rule_broken() {
        for err in all() {
            let expected = match err {
                ProtocolError::FrameTooLarge { .. }
                | ProtocolError::MessageTooLarge { .. }
                | ProtocolError::DecodedMessageTooLarge { .. } => 1009,
                ProtocolError::InvalidUtf8Text | ProtocolError::InvalidUtf8CloseReason => 1007,
                ProtocolError::Extension { code, .. } => code.0,
                _ => 1002,
            };
            assert_eq!(err.close_code(), CloseCode(expected), "{err:?}");
        }
    }

    #[test]
    fn close_payload_errors_keep_their_code_and_reason() {
        for e in [ClosePayloadError::TooShort, ClosePayloadError::CodeNotAllowed(999), ClosePayloadError::InvalidUtf8] {
            let err = ProtocolError::from(e);
            assert_eq!(err.close_code(), e.close_code(), "{e:?}");
            assert_eq!(err.reason(), e.reason(), "{e:?}");
        }
        assert_eq!(
            ProtocolError::from(ClosePayloadError::CodeNotAllowed(999)),
            ProtocolError::InvalidCloseCode { code: 999 }
        );
    }
}

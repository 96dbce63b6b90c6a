//! Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).
//!
//! Owns: which status codes may appear on the wire, parsing and encoding of close payloads.
//! Never touches: the close handshake state (see [`Connection`](crate::proto::Connection)).

use std::fmt;

/// A WebSocket close status code.
///
/// Any `u16` can be held; [`CloseCode::is_allowed_on_wire`] says whether a peer may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition (e.g. a handler panicked).
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may be sent in a close frame.
    ///
    /// Allowed: 1000-1003, 1007-1014 (registered), and 3000-4999 (libraries, frameworks, applications).
    /// Forbidden: below 1000, 1004-1006, 1015, the unassigned 1016-2999, and 5000 or more.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A parsed close frame payload: a status code and a UTF-8 reason borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: &'a str,
}

/// Why a close payload was rejected, with the close code to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClosePayloadError {
    /// A one-byte payload cannot hold a status code (→ 1002).
    TooShort,
    /// The status code may not appear on the wire (→ 1002).
    CodeNotAllowed(u16),
    /// The reason is not valid UTF-8 (→ 1007).
    InvalidUtf8,
}

impl ClosePayloadError {
    /// The close code to send back for this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::TooShort | Self::CodeNotAllowed(_) => CloseCode::PROTOCOL_ERROR,
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
        }
    }

    /// A short human-readable reason, suitable for a close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooShort => "close payload of one byte",
            Self::CodeNotAllowed(_) => "close code not allowed on the wire",
            Self::InvalidUtf8 => "close reason is not valid UTF-8",
        }
    }
}

impl fmt::Display for ClosePayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CodeNotAllowed(code) => write!(f, "close code {code} is not allowed on the wire"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ClosePayloadError {}

/// Parses a close frame payload (already unmasked).
///
/// Returns `Ok(None)` for an empty payload (no status code), the code and reason otherwise.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ClosePayloadError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ClosePayloadError::TooShort),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_allowed_on_wire() {
                return Err(ClosePayloadError::CodeNotAllowed(code.0));
            }
            let reason = simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| ClosePayloadError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// The longest close reason that fits a control frame (125 - 2 bytes of code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Truncates `reason` to at most [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_allowed_codes_follow_rfc_6455_section_7_4() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(CloseCode(code).is_allowed_on_wire(), "{code} should be allowed");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_allowed_on_wire(), "{code} should be rejected");
        }
    }

    #[test]
    fn empty_close_payload_has_no_code() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_close_payload_is_1002() {
        let err = parse_close_payload(&[3]).unwrap_err();
        assert_eq!(err, ClosePayloadError::TooShort);
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn forbidden_close_code_is_1002() {
        let err = parse_close_payload(&1005u16.to_be_bytes()).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn invalid_utf8_reason_is_1007() {
        let err = parse_close_payload(&[0x03, 0xe8, 0xff]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn valid_close_payload_borrows_reason() {
        let payload = [0x03, 0xe8, b'b', b'y', b'e'];
        let frame = parse_close_payload(&payload).unwrap().unwrap();
        assert_eq!(frame.code, CloseCode::NORMAL);
        assert_eq!(frame.reason, "bye");
    }

    #[test]
    fn truncate_reason_keeps_char_boundary() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON);
        assert_eq!(cut.len(), 122);
    }
}

//! The protocol core's error type: what went wrong and the close code that answers it.

use std::fmt;

use super::close::CloseCode;

/// A protocol violation (or a limit hit) that fails the connection with a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code sent to the peer (1002, 1007, 1009, ...).
    pub code: CloseCode,
    /// A short reason, also sent in the close frame.
    pub reason: &'static str,
}

impl ProtocolError {
    /// A protocol error with a code and reason.
    pub const fn new(code: CloseCode, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// A 1002 protocol error.
    pub const fn protocol(reason: &'static str) -> Self {
        Self::new(CloseCode::PROTOCOL_ERROR, reason)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket protocol error {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

//! The `Extension` trait: how a negotiated extension (permessage-deflate, RFC 7692) sits between the
//! message layer and the frame layer.
//!
//! Owns: the contract between [`crate::proto::Connection`] and an extension. Never touches: header
//! negotiation (see [`crate::proto::negotiate`]) or any particular algorithm.

use std::fmt;

use super::error::ProtocolError;
use super::frame::OpCode;

/// A negotiated WebSocket extension that transforms whole message payloads and claims RSV bits.
///
/// The connection calls [`Extension::decode_message`] once per incoming message whose first frame
/// carries one of [`Extension::rsv_bits`], after the message has been assembled, and
/// [`Extension::encode_message`] once per outgoing data message. State that outlives one message
/// (a compression context kept under context takeover, window bits) lives in the implementation.
pub trait Extension: Send + fmt::Debug {
    /// The extension token as it appears in `Sec-WebSocket-Extensions` (e.g. `permessage-deflate`).
    fn name(&self) -> &str;

    /// The RSV bits (a subset of [`super::frame::RSV1`] | `RSV2` | `RSV3`) this extension claims.
    /// Frames carrying bits no extension claims are rejected with 1002.
    fn rsv_bits(&self) -> u8;

    /// Reverses the transform on an incoming message whose first frame carried `rsv`, appending the
    /// original payload to `out`. An error closes the connection with its code (1007 for corrupt data,
    /// 1009 when the decoded size would pass `max_size`).
    fn decode_message(
        &mut self,
        rsv: u8,
        payload: &[u8],
        max_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError>;

    /// [`Extension::decode_message`] for a text message. An implementation that produces its output in
    /// pieces should validate each piece as UTF-8 as it comes and fail with
    /// [`ProtocolError::InvalidUtf8Text`] (1007) at the first invalid one, so that invalid text is refused
    /// before the rest is decoded (permessage-deflate does). The connection validates the whole message
    /// afterwards in any case; the default only decodes.
    fn decode_text_message(
        &mut self,
        rsv: u8,
        payload: &[u8],
        max_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.decode_message(rsv, payload, max_size, out)
    }

    /// Transforms an outgoing data message. Returns `Some(rsv)` with the transformed payload appended to
    /// `out` and the RSV bits to set on its first frame, or `None` to send the message untouched (for
    /// example when it is below a size threshold), in which case `out` must be left as it was.
    fn encode_message(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, ProtocolError>;

    /// `Some(key)` when [`Extension::encode_message`] keeps no state between messages, so that its output
    /// depends only on the message and `key`: a frame encoded for one connection may then be sent as is
    /// to every connection whose extension has the same key (a broadcast is compressed once per
    /// reactor). `None` (the default): encode for each connection.
    fn shared_encoding(&self) -> Option<u64> {
        None
    }
}

/// How a frame encoded once may be shared among connections (see [`Extension::shared_encoding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameSharing {
    /// No extension transforms outgoing messages: the plain frame fits.
    Plain,
    /// The frame encoded for any connection with this key fits.
    Keyed(u64),
    /// The connection's extension keeps state: encode for it alone.
    Own,
}

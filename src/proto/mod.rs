//! The sans-IO RFC 6455 protocol core.
//!
//! Owns: frame headers, masking, incremental UTF-8 validation, close codes and the close handshake, the
//! per-connection state machine with its timeouts, the opening handshake and extension negotiation.
//! Never touches: sockets, threads, clocks. Callers feed bytes in and take bytes out.
//!
//! # One path per item
//! Items named for what they are (the state machine [`Connection`] and its [`Event`]s, [`CloseCode`],
//! [`FrameHeader`], [`OpCode`], [`apply_mask`], [`ProtocolError`], ...) live here, at `proto::`; the files
//! that hold them are private. The three modules whose functions are named relative to the module stay
//! public and nothing of theirs is repeated here: [`handshake`] (`handshake::parse_request`,
//! `handshake::write_response`, ...), [`negotiate`] (`negotiate::parse_extensions`, ...) and [`utf8`]
//! (`utf8::validate`, `utf8::Utf8Validator`).

mod close;
mod connection;
pub mod deflate;
mod error;
mod extension;
mod frame;
pub mod handshake;
mod mask;
mod mask_keys;
pub mod negotiate;
#[cfg(test)]
mod pair;
mod timeouts;
pub mod utf8;

pub use close::{parse_close_payload, truncate_reason, CloseCode, CloseFrame, ClosePayloadError, MAX_CLOSE_REASON};
pub use connection::{CloseState, Connection, ConnectionConfig, Event, Payload, Role, SendError};
pub use error::ProtocolError;
pub use extension::{Extension, FrameSharing};
pub use frame::{encode_frame, FrameHeader, HeaderError, HeaderParse, OpCode, MAX_HEADER_LEN, RSV1, RSV2, RSV3};
pub use mask::{apply_mask, apply_mask_bytewise};
pub use mask_keys::{MaskSource, SeededMasks};
pub use timeouts::Timeout;

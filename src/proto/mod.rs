//! The sans-IO RFC 6455 protocol core.
//!
//! Owns: frame headers, masking, incremental UTF-8 validation, close codes and the close handshake, the
//! per-connection state machine with its timeouts, the opening handshake and extension negotiation.
//! Never touches: sockets, threads, clocks. Callers feed bytes in and take bytes out.

pub mod close;
pub mod connection;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod mask_keys;
pub mod negotiate;
#[cfg(test)]
mod pair;
pub mod timeouts;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{CloseState, Connection, ConnectionConfig, Event, Role, SendError};
pub use error::ProtocolError;
pub use extension::Extension;
pub use frame::{FrameHeader, OpCode};
pub use mask_keys::{MaskSource, SeededMasks};
pub use timeouts::Timeout;

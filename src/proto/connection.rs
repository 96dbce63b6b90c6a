//! The per-connection protocol state machine, shared by the server and client roles.
//!
//! Owns: frame sequencing and message assembly, role rules for masking, size limits, fail-fast UTF-8 for
//! text, control frame rules, automatic pong, the close handshake, and every timeout of an open
//! connection (keepalive ping, pong deadline, idle timeout, close-handshake timeout; see
//! [`Connection::poll_timeout`]). Never touches: sockets, clocks or threads: the caller passes `now`.
//! Bytes go in through [`Connection::read`] (`connection/read.rs`); frames come out into a caller's
//! `Vec<u8>` (`connection/send.rs`). This file holds the state, its configuration and the timeouts.
//!
//! # Time
//! Drivers (the reactor, the blocking client) call [`Connection::received_at`] when bytes arrive,
//! [`Connection::handle_timeout`] when the instant [`Connection::poll_timeout`] gave has passed, and ask
//! `poll_timeout` again after each of those calls and after [`Connection::close`] or a failed `read`.
//! Arrivals only move deadlines later, so a driver with a coarse timer may leave an earlier timer armed
//! after a read: when it fires, `handle_timeout` does nothing and `poll_timeout` tells the new deadline.
//!
//! # Reading
//! [`Connection::read`] parses frames from the start of a caller's buffer and returns the number of bytes
//! it consumed plus at most one [`Event`]. Payloads are unmasked **in place**, so a message that arrived in
//! one frame reaches the caller as a slice of that buffer ([`Cow::Borrowed`]); a fragmented message is
//! assembled once into an owned buffer. Bytes not consumed (an incomplete frame) must be presented again,
//! unchanged, at the start of the next call's buffer: the connection remembers how much of that frame it
//! already unmasked and validated, which is how invalid UTF-8 is rejected before a frame is complete.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::close::{parse_close_payload, truncate_reason, CloseCode, CloseFrame};
use super::deflate::SharedDeflate;
use super::error::ProtocolError;
use super::extension::{Extension, FrameSharing};
use super::frame::{encode_frame, FrameHeader, HeaderParse, OpCode};
use super::mask::apply_mask;
use super::mask_keys::MaskSource;
use super::timeouts::{Clock, Limits, Timeout, Wait};
use super::utf8::{self, Utf8Validator};

use std::ops::Range;

/// Which end of the connection this state machine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections: expects masked frames, sends unmasked ones.
    Server,
    /// Opens connections: expects unmasked frames, masks every frame it sends with a fresh random key.
    Client,
}

/// Limits, switches and timeouts of a [`Connection`]. Shared (an `Arc`) by the connections made from it,
/// so a connection pays one pointer for all of it.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Largest accepted frame payload in bytes (default 16 MiB). A larger frame fails with 1009.
    pub max_frame_size: usize,
    /// Largest accepted message in bytes, summed over its fragments and after decompression
    /// (default 64 MiB). A larger message fails with 1009.
    pub max_message_size: usize,
    /// Answer every ping with a pong automatically (default true).
    pub auto_pong: bool,
    /// Send a keepalive ping after this long without any bytes from the peer. Default `None`: no
    /// keepalive.
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, fail the connection ([`Timeout::Pong`]) when nothing at all (a pong or
    /// any other bytes) arrives within this time. Default 30 s.
    pub pong_timeout: Duration,
    /// Start the close handshake (1001, "idle timeout") after this long without any bytes from the peer.
    /// Default `None`.
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame after ours ([`Timeout::Close`]), and for the transport
    /// to close once the close handshake is over ([`Timeout::Linger`]). Default 5 s.
    pub close_timeout: Duration,
    /// Where a client's masking keys come from. Default `None`: a fresh key from the thread-local CSPRNG
    /// for every frame. Set a [`SeededMasks`](super::SeededMasks) for reproducible tests.
    pub mask_source: Option<Arc<dyn MaskSource>>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            ping_interval: None,
            pong_timeout: Duration::from_secs(30),
            idle_timeout: None,
            close_timeout: Duration::from_secs(5),
            mask_source: None,
        }
    }
}

impl ConnectionConfig {
    fn limits(&self) -> Limits {
        Limits {
            ping_interval: self.ping_interval.filter(|i| !i.is_zero()),
            pong_timeout: self.pong_timeout,
            idle_timeout: self.idle_timeout.filter(|i| !i.is_zero()),
            close_timeout: self.close_timeout,
        }
    }
}

/// Something the peer sent, borrowed from the buffer given to [`Connection::read`] where possible.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (already validated as UTF-8).
    Text(Cow<'a, str>),
    /// A complete binary message.
    Binary(Cow<'a, [u8]>),
    /// A ping with its payload (already answered when auto-pong is on).
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A close frame; `None` when it carried no status code. The reply was written when it was due.
    Close(Option<CloseFrame<'a>>),
}

/// A data message payload to send, or one just received.
pub type Payload<'a> = Cow<'a, [u8]>;

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseState {
    /// Data flows both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Both close frames have been exchanged (we replied to the peer's, or the peer answered ours).
    Closed,
    /// We failed the connection after a protocol error; the close frame (if any) was written.
    Failed,
    /// A deadline passed ([`Timeout::Pong`] or [`Timeout::Close`]): the transport must close now.
    TimedOut,
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent (or the connection failed): nothing more may be sent.
    Closed,
    /// A control frame payload was longer than 125 bytes.
    ControlTooLong,
    /// The close code may not be sent on the wire.
    InvalidCloseCode(CloseCode),
    /// An extension failed to encode the message.
    Extension(ProtocolError),
    /// [`Connection::send_frame`] takes data opcodes only (text, binary, continuation).
    NotDataOpcode(OpCode),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection is closing: nothing may be sent after a close frame"),
            Self::ControlTooLong => f.write_str("control frame payload longer than 125 bytes"),
            Self::InvalidCloseCode(code) => {
                write!(f, "close code {code} may not be sent on the wire")
            }
            Self::Extension(e) => write!(f, "could not encode the message: {e}"),
            Self::NotDataOpcode(op) => write!(f, "{op:?} is not a data opcode; use send_ping/send_pong/close"),
        }
    }
}

impl std::error::Error for SendError {}

/// The frame currently being read: its header was validated, part of its payload may be processed.
#[derive(Debug, Clone, Copy)]
struct CurrentFrame {
    payload_len: usize,
    /// Payload bytes already unmasked (and UTF-8 checked for uncompressed text).
    processed: usize,
    /// The masking key; present exactly when the role is the server's (`check_header` enforces it), so
    /// the key is kept without an `Option` ([`Connection::mask_of`]): 24 bytes instead of 32.
    key: [u8; 4],
    opcode: OpCode,
    fin: bool,
    header_len: u8,
}

/// [`OpenMessage::extension`] of a message for the inline [`Connection::add_shared_deflate`] one.
const INLINE_DEFLATE: u8 = u8::MAX;

/// The data message being received.
#[derive(Debug, Clone, Copy)]
struct OpenMessage {
    text: bool,
    /// Index of the extension that must decode this message, when its first frame carried RSV bits.
    extension: Option<u8>,
    /// Whether a non-final frame was seen (the payload lives in the assembly buffer).
    fragmented: bool,
    /// Bytes received so far over all frames.
    len: usize,
    /// The text validator of this message (4 bytes, in what was padding: the validator lives only while
    /// its message does, and `Connection` is 8 bytes smaller for it).
    utf8: Utf8Validator,
}

/// The RFC 6455 state machine of one connection.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Arc<ConnectionConfig>,
    clock: Clock,
    /// What the clock waits for (kept beside the other one-byte fields, not inside `Clock`, so that it
    /// costs no padding).
    wait: Wait,
    close: CloseState,
    close_received: bool,
    current: Option<CurrentFrame>,
    message: Option<OpenMessage>,
    /// The payload of a fragmented message so far; allocated only while one is being received.
    // One pointer instead of a three-word `Vec` while no fragmented message is open: idle connections
    // pay for every word here.
    #[allow(clippy::box_collection)]
    assembly: Option<Box<Vec<u8>>>,
    /// Negotiated extensions, allocated only when there are some (one word while there are none).
    #[allow(clippy::box_collection)]
    extensions: Option<Box<Vec<Box<dyn Extension>>>>,
    /// permessage-deflate without context takeover, inline (one byte, in what was padding): a
    /// shared-mode connection allocates nothing for its extension. It claims RSV1 before `extensions`.
    deflate: Option<SharedDeflate>,
    allowed_rsv: u8,
    /// The longest 7-bit-length payload [`Connection::small_frame`] takes (16-bit ones are checked against the limits): 125, or less
    /// when a configured limit is lower. Derived from the config once (it never changes).
    small_max: u8,
}

/// A frame [`Connection::small_frame`] recognised: complete, in the buffer, delivered without the general
/// path.
#[derive(Debug, Clone, Copy)]
struct SmallFrame {
    header_len: usize,
    len: usize,
    mask: Option<[u8; 4]>,
    text: bool,
}

/// What [`Connection::advance`] found: positions into the read buffer, or an owned message.
#[derive(Debug)]
enum Deliver {
    None,
    /// An unfragmented text message in the buffer; `validated` when it was already checked piece by piece.
    Text(Range<usize>),
    Binary(Range<usize>),
    OwnedText(Vec<u8>),
    OwnedBinary(Vec<u8>),
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close(Range<usize>),
}

impl Connection {
    /// A connection in the open state (the opening handshake completed at `now`). Pass an
    /// `Arc<ConnectionConfig>` to share one config between many connections without a copy each.
    pub fn new(role: Role, config: impl Into<Arc<ConnectionConfig>>, now: Instant) -> Self {
        let config = config.into();
        // At most 125, so it fits.
        let small_max = 125.min(config.max_frame_size).min(config.max_message_size) as u8;
        Self {
            role,
            config,
            clock: Clock::new(now),
            wait: Wait::Traffic,
            close: CloseState::Open,
            close_received: false,
            current: None,
            message: None,
            assembly: None,
            extensions: None,
            deflate: None,
            allowed_rsv: 0,
            small_max,
        }
    }

    /// Adds a negotiated extension; its RSV bits become legal on the first frame of a data message.
    pub fn add_extension(&mut self, extension: Box<dyn Extension>) {
        self.allowed_rsv |= extension.rsv_bits();
        self.extensions.get_or_insert_with(|| Box::new(Vec::with_capacity(1))).push(extension);
    }

    /// Adds permessage-deflate without context takeover in either direction, kept inline (no
    /// allocation); RSV1 becomes legal on the first frame of a data message. It decodes the messages
    /// that carry RSV1 and encodes outgoing ones ahead of any [`Connection::add_extension`] one.
    pub fn add_shared_deflate(&mut self, deflate: SharedDeflate) {
        self.allowed_rsv |= super::frame::RSV1;
        self.deflate = Some(deflate);
    }

    /// Whether a frame encoded for another connection may be sent on this one as is (broadcasts): the
    /// first extension decides, as in [`Connection::send_text`].
    pub fn frame_sharing(&self) -> FrameSharing {
        if let Some(deflate) = self.deflate {
            return deflate.shared_encoding().map_or(FrameSharing::Own, FrameSharing::Keyed);
        }
        match self.extensions.as_ref().and_then(|all| all.first()) {
            None => FrameSharing::Plain,
            Some(e) => e.shared_encoding().map_or(FrameSharing::Own, FrameSharing::Keyed),
        }
    }

    /// Whether an extension was negotiated.
    pub fn has_extensions(&self) -> bool {
        self.extensions.is_some() || self.deflate.is_some()
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits and timeouts in force.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Tells the connection that bytes arrived from the peer at `now` (call it once per read from the
    /// transport, before [`Connection::read`]): the idle and keepalive clocks restart, and a wait for the
    /// answer to a keepalive ping ends (any bytes prove the peer alive).
    #[inline]
    pub fn received_at(&mut self, now: Instant) {
        self.clock.received(&mut self.wait, now);
    }

    /// Tells the connection that the transport took bytes at `now` that were queued before it (a backlog
    /// draining). The peer is reading, and a keepalive ping written behind that backlog may only now be
    /// leaving, so the pong deadline counts from `now`. The idle clock is not touched (sending is not
    /// receiving). Drivers that write synchronously never need this.
    pub fn backlog_sent_at(&mut self, now: Instant) {
        self.clock.sent_backlog(self.wait, now);
    }

    /// The last time bytes arrived ([`Connection::received_at`]), or when the connection opened.
    pub fn last_received(&self) -> Instant {
        self.clock.last_rx()
    }

    /// When [`Connection::handle_timeout`] must be called next, or `None` while no deadline is pending
    /// (no keepalive or idle timeout configured, or the transport must close now).
    ///
    /// Ask again after every call to [`Connection::received_at`], [`Connection::handle_timeout`] and
    /// [`Connection::close`], and after a [`Connection::read`] that failed or received the peer's close
    /// frame. Arrivals only ever move the deadline later: a driver may keep an earlier timer armed and ask
    /// again when it fires.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clock.next(self.wait, &self.config.limits())
    }

    /// Acts on the deadline that passed at `now`, if any, writing what it sends into `out` (a ping, or a
    /// close frame), and says what it did. `None` when nothing was due (e.g. bytes arrived since the
    /// timer was armed). After [`Timeout::Pong`], [`Timeout::Close`] and [`Timeout::Linger`] the
    /// transport must close (after writing `out`); the close state is then [`CloseState::TimedOut`]
    /// for the first two.
    #[must_use = "a Timeout may require closing the transport"]
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Timeout> {
        let due = self.clock.due(self.wait, &self.config.limits(), now)?;
        match due {
            Timeout::Ping => {
                if self.send_control(OpCode::Ping, &[], out).is_ok() {
                    self.clock.begin(&mut self.wait, Wait::Pong, now);
                } else {
                    // Cannot happen while open; never spin on it.
                    self.clock.begin(&mut self.wait, Wait::Done, now);
                }
            }
            Timeout::Idle => {
                if self.close(now, CloseCode::GOING_AWAY, "idle timeout", out).is_err() {
                    self.clock.begin(&mut self.wait, Wait::Done, now);
                }
            }
            Timeout::Pong => {
                if self.can_send() {
                    self.write_close(out, CloseCode::GOING_AWAY, "pong timeout");
                }
                self.time_out(now);
            }
            Timeout::Close => self.time_out(now),
            Timeout::Linger => self.clock.begin(&mut self.wait, Wait::Done, now),
        }
        Some(due)
    }

    fn time_out(&mut self, now: Instant) {
        self.close = CloseState::TimedOut;
        self.clock.begin(&mut self.wait, Wait::Done, now);
        self.current = None;
        self.message = None;
        self.assembly = None;
    }

    /// Where the close handshake stands.
    pub fn close_state(&self) -> CloseState {
        self.close
    }

    /// Whether data frames may still be sent.
    pub fn can_send(&self) -> bool {
        self.close == CloseState::Open
    }

    /// Whether the peer's close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether the transport may now be closed: both close frames were exchanged or the connection
    /// failed. A server then closes TCP at once; a client waits (with a timeout) for the server to do so.
    pub fn transport_may_close(&self) -> bool {
        matches!(self.close, CloseState::Closed | CloseState::Failed | CloseState::TimedOut)
    }

    /// Whether a frame or a fragmented message is partly received.
    pub fn is_mid_message(&self) -> bool {
        self.current.is_some() || self.message.is_some()
    }

    // Reading: `read.rs`; sending and closing: `send.rs`.
}

mod read;
mod send;

#[cfg(test)]
mod tests;

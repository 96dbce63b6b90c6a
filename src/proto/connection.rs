//! The per-connection protocol state machine, shared by the server and client roles.
//!
//! Owns: frame sequencing and message assembly, role rules for masking, size limits, fail-fast UTF-8 for
//! text, control frame rules, automatic pong, the close handshake, and every timeout of an open
//! connection (keepalive ping, pong deadline, idle timeout, close-handshake timeout; see
//! [`Connection::poll_timeout`]). Never touches: sockets, clocks or threads: the caller passes `now`.
//! Bytes go in through [`Connection::read`]; frames come out into a caller's `Vec<u8>`.
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
    /// The longest payload [`Connection::small_frame`] takes: 125 (the 7-bit length's largest), or less
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

    /// Parses frames from the start of `buf` until one yields an event or the buffer runs out.
    ///
    /// Returns the number of bytes consumed and the event, if any. `Ok((n, None))` means more bytes are
    /// needed: keep `buf[n..]` and present it again, unchanged and followed by new bytes, on the next call.
    /// Automatic replies (pong, the close reply) are appended to `out`. On a protocol error a close frame
    /// with the error's code is appended to `out`, the connection enters [`CloseState::Failed`] and the
    /// error is returned: send `out`, then close the transport. After the peer's close frame or a failure,
    /// further bytes are consumed and ignored.
    pub fn read<'a>(
        &mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        if let Some(frame) = self.small_frame(buf) {
            return self.read_small_frame(buf, frame, out);
        }
        self.read_general(buf, out)
    }

    /// The common case, recognised from the first two header bytes: a complete, final text or binary
    /// frame with a 7-bit length within the limits, masked as the role requires, without RSV bits,
    /// arriving while the connection is open and no frame or message is in progress. Every rule
    /// [`Connection::read_general`] would apply to such a frame holds by construction (a frame without
    /// RSV bits never goes through an extension), so it skips the header parse, the per-frame state and
    /// the message bookkeeping. `None`: take the general path, which applies every rule.
    #[inline]
    fn small_frame(&self, buf: &[u8]) -> Option<SmallFrame> {
        let [b0, b1, ..] = *buf else { return None };
        // FIN set, RSV clear, opcode text (1) or binary (2).
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let len7 = b1 & 0x7f;
        let len = usize::from(len7);
        let masked = b1 & 0x80 != 0;
        let header_len = if masked { 6 } else { 2 };
        // `small_max` is at most 125 and within both size limits. (The peer's close frame moves the close
        // state off `Open`, so `close_received` needs no check.)
        if len7 > self.small_max
            || masked != (self.role == Role::Server)
            || buf.len() < header_len + len
            || self.close != CloseState::Open
            || self.current.is_some()
            || self.message.is_some()
        {
            return None;
        }
        let mask = if masked {
            let key: [u8; 4] = buf.get(2..6)?.try_into().ok()?;
            Some(key)
        } else {
            None
        };
        Some(SmallFrame { header_len, len, mask, text })
    }

    /// Delivers the frame [`Connection::small_frame`] recognised: unmasked in place, text validated.
    #[inline]
    fn read_small_frame<'a>(
        &mut self,
        buf: &'a mut [u8],
        frame: SmallFrame,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let end = frame.header_len + frame.len;
        let payload = &mut buf[frame.header_len..end];
        if let Some(key) = frame.mask {
            apply_mask(payload, key, 0);
        }
        let payload: &'a [u8] = payload;
        if !frame.text {
            return Ok((end, Some(Event::Binary(Cow::Borrowed(payload)))));
        }
        match utf8::validate(payload) {
            Ok(text) => Ok((end, Some(Event::Text(Cow::Borrowed(text))))),
            Err(_) => {
                self.fail(ProtocolError::InvalidUtf8Text, out);
                Err(ProtocolError::InvalidUtf8Text)
            }
        }
    }

    /// [`Connection::read`] for any input: every frame kind, partial frames, fragments, extensions. Out
    /// of line, so that `read` itself stays small for the fast path.
    #[inline(never)]
    fn read_general<'a>(
        &mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let (consumed, deliver) = match self.advance(buf, out) {
            Ok(step) => step,
            Err(err) => {
                self.fail(err, out);
                return Err(err);
            }
        };
        let buf: &'a [u8] = buf;
        let event = match deliver {
            Deliver::None => None,
            Deliver::Text(range) => match utf8::validate(&buf[range]) {
                Ok(text) => Some(Event::Text(Cow::Borrowed(text))),
                Err(_) => {
                    self.fail(ProtocolError::InvalidUtf8Text, out);
                    return Err(ProtocolError::InvalidUtf8Text);
                }
            },
            Deliver::Binary(range) => Some(Event::Binary(Cow::Borrowed(&buf[range]))),
            Deliver::OwnedText(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(Event::Text(Cow::Owned(text))),
                Err(_) => {
                    self.fail(ProtocolError::InvalidUtf8Text, out);
                    return Err(ProtocolError::InvalidUtf8Text);
                }
            },
            Deliver::OwnedBinary(bytes) => Some(Event::Binary(Cow::Owned(bytes))),
            Deliver::Ping(range) => Some(Event::Ping(&buf[range])),
            Deliver::Pong(range) => Some(Event::Pong(&buf[range])),
            // Validated in `control_frame`, so it parses again.
            Deliver::Close(range) => Some(Event::Close(parse_close_payload(&buf[range]).ok().flatten())),
        };
        Ok((consumed, event))
    }

    /// Walks frames, unmasking and validating in place, until something is to be delivered.
    fn advance(&mut self, buf: &mut [u8], out: &mut Vec<u8>) -> Result<(usize, Deliver), ProtocolError> {
        let mut pos = 0;
        loop {
            if self.close_received || matches!(self.close, CloseState::Failed | CloseState::TimedOut) {
                return Ok((buf.len(), Deliver::None));
            }
            let frame = match self.current {
                Some(frame) => frame,
                None => match self.begin_frame(&buf[pos..])? {
                    Some(frame) => frame,
                    None => return Ok((pos, Deliver::None)),
                },
            };
            let is_control = frame.opcode.is_control();
            let payload_start = pos + usize::from(frame.header_len);
            let available = buf.len() - pos;
            if available < usize::from(frame.header_len) + frame.payload_len {
                // Incomplete: unmask and check what we have of a data frame now, to fail fast.
                let have = available - usize::from(frame.header_len);
                if !is_control && have > frame.processed {
                    let validate = self.message.is_some_and(|m| m.text && m.extension.is_none());
                    let part = &mut buf[payload_start + frame.processed..payload_start + have];
                    self.process_data(part, frame.processed, self.mask_of(&frame), validate)?;
                    if let Some(current) = self.current.as_mut() {
                        current.processed = have;
                    }
                }
                return Ok((pos, Deliver::None));
            }
            self.current = None;
            pos = payload_start + frame.payload_len;
            let range = payload_start..pos;
            if is_control {
                if let Some(key) = self.mask_of(&frame) {
                    apply_mask(&mut buf[range.clone()], key, 0);
                }
                let deliver = self.control_frame(frame.opcode, &buf[range.clone()], range, out)?;
                return Ok((pos, deliver));
            }
            // A text or binary frame opened a message in `check_header`: only a continuation gets here.
            let Some(message) = self.message else {
                return Err(ProtocolError::ContinuationWithoutMessage);
            };
            let whole_in_one_frame = frame.fin && !message.fragmented && frame.processed == 0;
            if frame.payload_len > frame.processed {
                // A text message that arrived whole in one frame is validated once, at delivery.
                let validate = message.text && message.extension.is_none() && !whole_in_one_frame;
                let part = &mut buf[payload_start + frame.processed..range.end];
                self.process_data(part, frame.processed, self.mask_of(&frame), validate)?;
            }
            if let Some(deliver) = self.finish_data_frame(frame.fin, &buf[range.clone()], range)? {
                return Ok((pos, deliver));
            }
        }
    }

    /// The key `frame` is masked with: client frames (read by a server) are masked, server frames not.
    #[inline]
    fn mask_of(&self, frame: &CurrentFrame) -> Option<[u8; 4]> {
        (self.role == Role::Server).then_some(frame.key)
    }

    /// Parses and checks the next frame header; `None` when it is incomplete.
    fn begin_frame(&mut self, bytes: &[u8]) -> Result<Option<CurrentFrame>, ProtocolError> {
        let (header, header_len) = match FrameHeader::parse(bytes) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, header_len),
            Ok(HeaderParse::Incomplete { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.check_header(&header)?;
        let frame = CurrentFrame {
            key: header.mask.unwrap_or_default(),
            opcode: header.opcode,
            fin: header.fin,
            // At most 14.
            header_len: header_len as u8,
            // check_header bounded it by max_frame_size (or 125 for control frames).
            payload_len: header.payload_len as usize,
            processed: 0,
        };
        self.current = Some(frame);
        Ok(Some(frame))
    }

    /// Applies every per-frame rule and opens or extends the current message.
    fn check_header(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let opcode = header.opcode;
        if opcode.is_reserved() {
            return Err(ProtocolError::ReservedOpcode { opcode: opcode.as_u8() });
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if opcode.is_control() {
            if header.rsv != 0 {
                return Err(ProtocolError::ReservedBitsOnControlFrame { rsv: header.rsv });
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len: header.payload_len });
            }
            return Ok(());
        }
        if header.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                limit: self.config.max_frame_size as u64,
                len: header.payload_len,
            });
        }
        let message_too_large =
            |len: usize| ProtocolError::MessageTooLarge { limit: self.config.max_message_size as u64, len: len as u64 };
        let len = header.payload_len as usize;
        match opcode {
            OpCode::Continuation => {
                let Some(message) = self.message.as_mut() else {
                    return Err(ProtocolError::ContinuationWithoutMessage);
                };
                if header.rsv != 0 {
                    return Err(ProtocolError::ReservedBitsOnContinuation { rsv: header.rsv });
                }
                message.len = message.len.saturating_add(len);
                if message.len > self.config.max_message_size {
                    return Err(message_too_large(message.len));
                }
            }
            _ => {
                if self.message.is_some() {
                    return Err(ProtocolError::NewMessageInsideFragmented);
                }
                if header.rsv & !self.allowed_rsv != 0 {
                    return Err(ProtocolError::ReservedBitsNotNegotiated {
                        rsv: header.rsv,
                        negotiated: self.allowed_rsv,
                    });
                }
                if len > self.config.max_message_size {
                    return Err(message_too_large(len));
                }
                let extension = if header.rsv == 0 {
                    None
                } else if self.deflate.is_some() && header.rsv & super::frame::RSV1 != 0 {
                    Some(INLINE_DEFLATE)
                } else {
                    self.extensions
                        .as_ref()
                        .and_then(|all| all.iter().position(|e| e.rsv_bits() & header.rsv != 0))
                        .map(|i| i as u8)
                };
                let text = opcode == OpCode::Text;
                self.message =
                    Some(OpenMessage { text, extension, fragmented: false, len, utf8: Utf8Validator::new() });
            }
        }
        Ok(())
    }

    /// Unmasks part of a data frame's payload and, for uncompressed text, validates it.
    fn process_data(
        &mut self,
        part: &mut [u8],
        offset: usize,
        mask: Option<[u8; 4]>,
        validate: bool,
    ) -> Result<(), ProtocolError> {
        if let Some(key) = mask {
            apply_mask(part, key, offset);
        }
        if validate {
            // `validate` is only set while a text message is open.
            if let Some(message) = self.message.as_mut() {
                message.utf8.feed(part).map_err(|_| ProtocolError::InvalidUtf8Text)?;
            }
        }
        Ok(())
    }

    /// Handles a fully received (and unmasked) data frame: delivers the message when it is complete.
    fn finish_data_frame(
        &mut self,
        fin: bool,
        payload: &[u8],
        range: Range<usize>,
    ) -> Result<Option<Deliver>, ProtocolError> {
        let Some(message) = self.message.as_mut() else {
            // Unreachable: `advance` checked that a message is open.
            return Err(ProtocolError::ContinuationWithoutMessage);
        };
        if !fin {
            message.fragmented = true;
            self.assembly.get_or_insert_with(Default::default).extend_from_slice(payload);
            return Ok(None);
        }
        let mut message = *message;
        self.message = None;
        let text = message.text;
        if message.extension.is_none() && message.text && (message.fragmented || message.utf8.is_mid_code_point()) {
            message.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8Text)?;
        }
        let whole = if message.fragmented {
            let mut whole = self.assembly.take().map_or_else(Vec::new, |b| *b);
            whole.extend_from_slice(payload);
            Some(whole)
        } else {
            None
        };
        if let Some(index) = message.extension {
            let input: &[u8] = whole.as_deref().unwrap_or(payload);
            return self.decode_with_extension(index, input, text).map(Some);
        }
        Ok(Some(match (whole, text) {
            (Some(bytes), true) => Deliver::OwnedText(bytes),
            (Some(bytes), false) => Deliver::OwnedBinary(bytes),
            (None, true) => Deliver::Text(range),
            (None, false) => Deliver::Binary(range),
        }))
    }

    /// Decodes a whole message with the extension that claimed its first frame (off the hot path: a
    /// connection without extensions never comes here).
    #[cold]
    #[inline(never)]
    fn decode_with_extension(&mut self, index: u8, input: &[u8], text: bool) -> Result<Deliver, ProtocolError> {
        let mut decoded = Vec::new();
        let max = self.config.max_message_size;
        if let (INLINE_DEFLATE, Some(deflate)) = (index, self.deflate) {
            deflate.decode_message(input, max, text, &mut decoded)?;
            return Ok(if text { Deliver::OwnedText(decoded) } else { Deliver::OwnedBinary(decoded) });
        }
        let Some(extension) = self.extensions.as_mut().and_then(|all| all.get_mut(usize::from(index))) else {
            // Unreachable: `check_header` names an extension only when one claims the frame's bits. The
            // bits themselves are not kept past the header.
            return Err(ProtocolError::ReservedBitsNotNegotiated { rsv: 0, negotiated: self.allowed_rsv });
        };
        let rsv = extension.rsv_bits();
        if text {
            extension.decode_text_message(rsv, input, max, &mut decoded)?;
        } else {
            extension.decode_message(rsv, input, max, &mut decoded)?;
        }
        if decoded.len() > self.config.max_message_size {
            return Err(ProtocolError::DecodedMessageTooLarge { limit: self.config.max_message_size as u64 });
        }
        Ok(if text { Deliver::OwnedText(decoded) } else { Deliver::OwnedBinary(decoded) })
    }

    /// Handles a complete, unmasked control frame.
    #[inline(never)]
    fn control_frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        range: Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<Deliver, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.close == CloseState::Open {
                    self.write_frame(out, OpCode::Pong, true, 0, payload);
                }
                Ok(Deliver::Ping(range))
            }
            OpCode::Pong => Ok(Deliver::Pong(range)),
            OpCode::Close => {
                let parsed = parse_close_payload(payload)?;
                self.close_received = true;
                if self.close == CloseState::Open {
                    // Echo the peer's code (RFC 6455 §5.5.1); a close without a code is answered in kind.
                    let reply = parsed.map(|frame| frame.code.0.to_be_bytes());
                    let reply: &[u8] = reply.as_ref().map_or(&[], |code| code.as_slice());
                    self.write_frame(out, OpCode::Close, true, 0, reply);
                }
                self.close = CloseState::Closed;
                self.clock.closing_done(&mut self.wait);
                Ok(Deliver::Close(range))
            }
            // Unreachable: `check_header` rejected reserved opcodes.
            _ => Err(ProtocolError::ReservedOpcode { opcode: opcode.as_u8() }),
        }
    }

    /// Fails the connection: writes a close frame with the error's code unless one was sent already.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, err: ProtocolError, out: &mut Vec<u8>) {
        if self.close == CloseState::Open {
            self.write_close(out, err.close_code(), err.reason());
        }
        if self.close != CloseState::TimedOut {
            self.close = CloseState::Failed;
        }
        self.clock.closing_done(&mut self.wait);
        self.current = None;
        self.message = None;
        self.assembly = None;
    }

    fn write_close(&mut self, out: &mut Vec<u8>, code: CloseCode, reason: &str) {
        let reason = truncate_reason(reason);
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.write_frame(out, OpCode::Close, true, 0, &payload[..2 + reason.len()]);
    }

    #[inline]
    fn write_frame(&mut self, out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(self.next_mask_key()),
        };
        encode_frame(out, opcode, fin, rsv, mask, payload);
    }

    /// A client frame's masking key (out of line: a server, the common sender, never needs one).
    #[inline(never)]
    fn next_mask_key(&self) -> [u8; 4] {
        match &self.config.mask_source {
            Some(source) => source.next_key(),
            None => rand::random::<[u8; 4]>(),
        }
    }

    /// Appends a text message as one frame to `out` (through the negotiated extension, if any).
    #[inline]
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(OpCode::Text, text.as_bytes(), out)
    }

    /// Appends a binary message as one frame to `out` (through the negotiated extension, if any).
    #[inline]
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(OpCode::Binary, data, out)
    }

    #[inline]
    fn send_message(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if self.extensions.is_some() || self.deflate.is_some() {
            return self.send_with_extension(opcode, payload, out);
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// [`Connection::send_message`] on a connection with extensions (out of line: the frame path of a
    /// connection without any carries none of this).
    #[inline(never)]
    fn send_with_extension(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if let Some(deflate) = self.deflate {
            let mut encoded = Vec::new();
            if let Some(rsv) = deflate.encode_message(payload, &mut encoded).map_err(SendError::Extension)? {
                self.write_frame(out, opcode, true, rsv, &encoded);
                return Ok(());
            }
        } else if let Some(extension) = self.extensions.as_mut().and_then(|all| all.first_mut()) {
            let mut encoded = Vec::new();
            if let Some(rsv) = extension.encode_message(opcode, payload, &mut encoded).map_err(SendError::Extension)? {
                self.write_frame(out, opcode, true, rsv, &encoded);
                return Ok(());
            }
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// Like [`Connection::send_text`] / [`Connection::send_binary`] (`opcode` is `Text` or `Binary`), but
    /// for a caller that wants to write a large payload itself without copying it (e.g. with `writev`):
    /// appends only the frame header to `out` and returns `Ok(true)`; the caller must then write
    /// `payload`, unchanged, right after `out`. Returns `Ok(false)` when the frame cannot be split that way
    /// (client role: the payload must be masked; or an extension transforms it): the whole frame was
    /// appended to `out` as usual.
    pub fn send_message_split(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<bool, SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if opcode.is_control() || opcode.is_reserved() || opcode == OpCode::Continuation {
            return Err(SendError::NotDataOpcode(opcode));
        }
        if self.role == Role::Client || self.has_extensions() {
            self.send_message(opcode, payload, out)?;
            return Ok(false);
        }
        let header = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
        header.encode(out);
        Ok(true)
    }

    /// Appends one raw data frame to `out`, for callers that fragment messages themselves: `opcode` is
    /// `Text` or `Binary` on the first frame and `Continuation` after it; `fin` on the last. Extensions are
    /// not applied.
    pub fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if opcode.is_control() || opcode.is_reserved() {
            return Err(SendError::NotDataOpcode(opcode));
        }
        self.write_frame(out, opcode, fin, 0, payload);
        Ok(())
    }

    /// Appends a ping (payload at most 125 bytes) to `out`.
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload, out)
    }

    /// Appends a pong (payload at most 125 bytes) to `out`; useful when auto-pong is off.
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload, out)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong);
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// Starts the close handshake at `now`: appends a close frame with `code` and `reason` (cut to 123
    /// bytes on a character boundary) to `out`. Afterwards nothing more may be sent; keep reading until
    /// [`Connection::transport_may_close`]. The peer's answer is due within `close_timeout`
    /// ([`Timeout::Close`]); ask [`Connection::poll_timeout`] again.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code));
        }
        self.write_close(out, code, reason);
        self.close = CloseState::CloseSent;
        self.clock.begin(&mut self.wait, Wait::CloseReply, now);
        Ok(())
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;

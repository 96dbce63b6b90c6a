//! [`PerMessageDeflate`]: compressing outgoing and inflating incoming messages (RFC 7692 §7.2), with
//! zlib streams shared per thread where no context is kept, and the inflated size bounded while it
//! is inflated.

use std::cell::{Cell, RefCell};
use std::num::NonZeroU8;
use std::sync::Mutex;

use super::super::close::CloseCode;
use super::super::connection::Role;
use super::super::error::ProtocolError;
use super::super::extension::Extension;
use super::super::frame::{OpCode, RSV1};
use super::super::utf8::Utf8Validator;
use super::{DeflateConfig, DeflateParams, EXTENSION_NAME};
use crate::sys::{Deflater, Inflater, ZlibError};

/// The empty stored block a sync flush ends with; removed on send, put back on receive (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// One compressor per setting and one decompressor (15-bit window: inflates any peer's stream) per
/// thread, for the directions that keep no context. A reactor is one thread, so this is one set per
/// reactor.
#[derive(Default)]
struct SharedStreams {
    deflaters: Vec<((u8, u8, i8), Deflater)>,
    inflater: Option<Inflater>,
    /// This thread's copy of [`PROFILES`] (refreshed when an index past its end is asked for).
    profiles: Vec<Profile>,
}

thread_local! {
    static SHARED: RefCell<SharedStreams> = RefCell::new(SharedStreams::default());
    static COMPRESSIONS: Cell<u64> = const { Cell::new(0) };
}

/// What a connection's compressor needs besides its zlib stream: the window it may use (0: never
/// compress), memLevel, level and the size threshold. Negotiated per connection, but a server's
/// connections share a handful of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Profile {
    tx_bits: u8,
    mem_level: u8,
    level: i8,
    threshold: u32,
}

/// The distinct [`Profile`]s of every [`SharedDeflate`] made in this process, in order: a
/// `SharedDeflate` is an index into it. Append-only and bounded ([`MAX_PROFILES`]): a server has one
/// per window its clients negotiate (at most 7), so the bound is reached only by a process that builds
/// hundreds of differently configured servers; past it, [`SharedDeflate::new`] declines and the
/// connection gets a boxed [`PerMessageDeflate`] (correct, 112 bytes more).
static PROFILES: Mutex<Vec<Profile>> = Mutex::new(Vec::new());

/// At most this many profiles (a `SharedDeflate` is the index plus one in a `NonZeroU8`).
const MAX_PROFILES: usize = 255;

impl Profile {
    fn key(&self) -> (u8, u8, i8) {
        (self.tx_bits, self.mem_level, self.level)
    }
}

/// Messages compressed on this thread so far (by every [`PerMessageDeflate`] the thread used). The
/// reactor reads it to count compressions in its metrics.
pub fn thread_compressions() -> u64 {
    COMPRESSIONS.with(Cell::get)
}

/// The permessage-deflate extension of one connection.
///
/// A direction without context takeover borrows the thread's shared stream for one message and resets
/// it; a direction with takeover allocates its own stream on first use and keeps it.
pub struct PerMessageDeflate {
    /// Our compressor's window (`tx_bits`: 9-15, or 0: never compress, the peer demanded a window of
    /// 8), memLevel, level, threshold.
    profile: Profile,
    tx_takeover: bool,
    rx_bits: u8,
    rx_takeover: bool,
    tx: Option<Deflater>,
    rx: Option<Inflater>,
}

impl std::fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("tx_bits", &self.profile.tx_bits)
            .field("tx_takeover", &self.tx_takeover)
            .field("rx_bits", &self.rx_bits)
            .field("rx_takeover", &self.rx_takeover)
            .field("memory", &self.memory())
            .finish()
    }
}

impl PerMessageDeflate {
    /// The extension for our `role` with the `agreed` parameters and our `config` (window, memLevel,
    /// level, threshold). No zlib state is allocated here.
    pub fn new(role: Role, agreed: &DeflateParams, config: &DeflateConfig) -> Self {
        let (ours_nct, ours_mwb, theirs_nct, theirs_mwb) = match role {
            Role::Server => (
                agreed.server_no_context_takeover,
                agreed.server_max_window_bits,
                agreed.client_no_context_takeover,
                agreed.client_max_window_bits,
            ),
            Role::Client => (
                agreed.client_no_context_takeover,
                agreed.client_max_window_bits,
                agreed.server_no_context_takeover,
                agreed.server_max_window_bits,
            ),
        };
        let tx_bits = config.window_bits.clamp(9, 15).min(ours_mwb.unwrap_or(15));
        Self {
            profile: Profile {
                // zlib cannot deflate within 256 bytes: send uncompressed rather than break the promise.
                tx_bits: if tx_bits < 9 { 0 } else { tx_bits },
                mem_level: config.mem_level.clamp(1, 9),
                level: config.level.clamp(-1, 9),
                threshold: config.threshold.min(u32::MAX as usize) as u32,
            },
            tx_takeover: !ours_nct,
            // A zlib peer asked for 8 really uses 9 (deflateInit2 turns 8 into 9); a larger window
            // inflates a smaller one's stream (§7.1.2.2).
            rx_bits: theirs_mwb.unwrap_or(15).max(9),
            rx_takeover: !theirs_nct,
            tx: None,
            rx: None,
        }
    }

    /// Boxed, for [`Connection::add_extension`](super::super::Connection::add_extension).
    pub fn boxed(role: Role, agreed: &DeflateParams, config: &DeflateConfig) -> Box<dyn Extension> {
        Box::new(Self::new(role, agreed, config))
    }

    /// Bytes of zlib state this connection owns (0 until a context-takeover direction is first used;
    /// always 0 without takeover).
    pub fn memory(&self) -> usize {
        self.tx.as_ref().map_or(0, Deflater::memory) + self.rx.as_ref().map_or(0, Inflater::memory)
    }

    fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ZlibError> {
        let p = self.profile;
        if self.tx_takeover {
            let d = match &mut self.tx {
                Some(d) => d,
                None => self.tx.insert(Deflater::new(p.level.into(), p.tx_bits, p.mem_level)?),
            };
            return d.compress_sync(payload, out);
        }
        SHARED.with(|shared| shared_compress(&mut shared.borrow_mut(), p, payload, out))
    }
}

/// Compresses one message with the thread's compressor for `p` (made on first use) and resets it.
fn shared_compress(shared: &mut SharedStreams, p: Profile, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ZlibError> {
    let key = p.key();
    let i = match shared.deflaters.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let d = Deflater::new(p.level.into(), p.tx_bits, p.mem_level)?;
            shared.deflaters.push((key, d));
            shared.deflaters.len() - 1
        }
    };
    let d = &mut shared.deflaters[i].1;
    let result = d.compress_sync(payload, out);
    d.reset();
    result
}

/// Inflates one message with the thread's decompressor (15-bit window, made on first use) and resets
/// it: for a peer that compresses without context takeover.
fn shared_inflate(payload: &[u8], max_size: usize, text: bool, out: &mut Vec<u8>) -> Result<(), ZlibError> {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        let i = match &mut shared.inflater {
            Some(i) => i,
            None => shared.inflater.insert(Inflater::new(15)?),
        };
        let result = inflate_message(i, payload, max_size, text, out);
        i.reset();
        result
    })
}

/// Encodes one outgoing message for `p`: `Ok(None)` to send it uncompressed. `compress` appends the
/// compressed bytes (ending in the sync-flush tail) to `out`.
fn encode_with(
    p: Profile,
    takeover: bool,
    payload: &[u8],
    out: &mut Vec<u8>,
    compress: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), ZlibError>,
) -> Result<Option<u8>, ProtocolError> {
    if p.tx_bits == 0 || payload.len() < p.threshold as usize {
        return Ok(None);
    }
    let start = out.len();
    if compress(payload, out).is_err() {
        out.truncate(start);
        if takeover {
            // The window may hold part of this message: later messages could not be inflated.
            return Err(ProtocolError::Extension { code: CloseCode::INTERNAL_ERROR, reason: "deflate failed" });
        }
        return Ok(None);
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if !takeover && out.len() - start >= payload.len() {
        // Incompressible and no context to keep in step: the plain message is shorter.
        out.truncate(start);
        return Ok(None);
    }
    COMPRESSIONS.with(|c| c.set(c.get() + 1));
    Ok(Some(RSV1))
}

/// The broadcast key of a no-takeover compressor with profile `p` (see
/// [`Extension::shared_encoding`]): equal keys give equal frames.
fn encoding_key(p: Profile) -> Option<u64> {
    (p.tx_bits != 0).then(|| {
        u64::from(p.tx_bits)
            | u64::from(p.mem_level) << 8
            | u64::from(p.level as u8) << 16
            | u64::from(p.threshold) << 24
    })
}

/// permessage-deflate without context takeover in either direction, in one byte: what a shared-mode
/// connection negotiated (our window, memLevel, level, threshold) as an index into a process-wide
/// table of the few distinct settings. A [`Connection`](super::super::Connection) keeps it inline
/// ([`Connection::add_shared_deflate`](super::super::Connection::add_shared_deflate)), so such a
/// connection allocates nothing for its extension; it compresses and inflates with the thread's
/// shared zlib streams, like a [`PerMessageDeflate`] without takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedDeflate(NonZeroU8);

impl SharedDeflate {
    /// The inline form of what [`PerMessageDeflate::new`] would make, when `agreed` keeps no context
    /// in either direction; `None` when a direction keeps context (use a [`PerMessageDeflate`]) or, in
    /// a process that has made more than 255 distinct settings, when the table is full.
    pub fn new(role: Role, agreed: &DeflateParams, config: &DeflateConfig) -> Option<Self> {
        let full = PerMessageDeflate::new(role, agreed, config);
        if full.tx_takeover || full.rx_takeover {
            return None;
        }
        let mut all = PROFILES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = match all.iter().position(|p| *p == full.profile) {
            Some(i) => i,
            None if all.len() < MAX_PROFILES => {
                all.push(full.profile);
                all.len() - 1
            }
            None => return None,
        };
        // index < 255, so index + 1 fits and is not zero.
        NonZeroU8::new(index as u8 + 1).map(Self)
    }

    fn profile_in(self, shared: &mut SharedStreams) -> Profile {
        let i = usize::from(self.0.get() - 1);
        if i >= shared.profiles.len() {
            shared.profiles = PROFILES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        }
        // Every index was handed out by `new` after its profile was pushed: the refreshed copy has it.
        shared.profiles[i]
    }

    fn profile(self) -> Profile {
        SHARED.with(|shared| self.profile_in(&mut shared.borrow_mut()))
    }

    /// As [`Extension::decode_message`]: inflates `payload` into `out` with the thread's decompressor,
    /// at most `max_size` bytes; `text` validates the inflated bytes as UTF-8 chunk by chunk.
    pub fn decode_message(
        self,
        payload: &[u8],
        max_size: usize,
        text: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        shared_inflate(payload, max_size, text, out).map_err(|e| inflate_error(e, max_size))
    }

    /// As [`Extension::encode_message`], with the thread's compressor for this setting.
    pub fn encode_message(self, payload: &[u8], out: &mut Vec<u8>) -> Result<Option<u8>, ProtocolError> {
        SHARED.with(|shared| {
            let mut shared = shared.borrow_mut();
            let p = self.profile_in(&mut shared);
            encode_with(p, false, payload, out, |payload, out| shared_compress(&mut shared, p, payload, out))
        })
    }

    /// As [`Extension::shared_encoding`]: the key under which a frame encoded for one connection fits
    /// every other with the same key.
    pub fn shared_encoding(self) -> Option<u64> {
        encoding_key(self.profile())
    }
}

/// Inflates one message (`payload` plus the sync-flush tail) into `out`, at most `max_size` bytes.
/// With `text`, each inflated chunk is validated as UTF-8 as soon as it is produced: invalid text
/// stops inflating ([`ZlibError::Rejected`]) after at most one chunk past the bad bytes.
fn inflate_message(
    i: &mut Inflater,
    payload: &[u8],
    max_size: usize,
    text: bool,
    out: &mut Vec<u8>,
) -> Result<(), ZlibError> {
    let mut utf8 = Utf8Validator::new();
    let mut validate = |chunk: &[u8]| !text || utf8.feed(chunk).is_ok();
    let ended = i.inflate_checked(payload, out, max_size, &mut validate)?
        || i.inflate_checked(&TAIL, out, max_size, &mut validate)?;
    if ended {
        // A final block ended the stream: the tail would be data after it. Start afresh next time.
        i.reset();
    }
    if text && utf8.finish().is_err() {
        return Err(ZlibError::Rejected);
    }
    Ok(())
}

fn inflate_error(e: ZlibError, max_size: usize) -> ProtocolError {
    match e {
        ZlibError::TooLarge => ProtocolError::DecodedMessageTooLarge { limit: max_size as u64 },
        ZlibError::Corrupt => {
            ProtocolError::Extension { code: CloseCode::INVALID_PAYLOAD, reason: "corrupt deflate stream" }
        }
        ZlibError::Rejected => ProtocolError::InvalidUtf8Text,
        _ => ProtocolError::Extension { code: CloseCode::INTERNAL_ERROR, reason: "deflate unavailable" },
    }
}

impl PerMessageDeflate {
    fn decode(&mut self, payload: &[u8], max_size: usize, text: bool, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let result = if self.rx_takeover {
            let i = match &mut self.rx {
                Some(i) => i,
                None => self.rx.insert(Inflater::new(self.rx_bits).map_err(|e| inflate_error(e, max_size))?),
            };
            inflate_message(i, payload, max_size, text, out)
        } else {
            shared_inflate(payload, max_size, text, out)
        };
        result.map_err(|e| inflate_error(e, max_size))
    }
}

impl Extension for PerMessageDeflate {
    fn name(&self) -> &str {
        EXTENSION_NAME
    }

    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode_message(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        max_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.decode(payload, max_size, false, out)
    }

    fn decode_text_message(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        max_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.decode(payload, max_size, true, out)
    }

    fn encode_message(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, ProtocolError> {
        let takeover = self.tx_takeover;
        encode_with(self.profile, takeover, payload, out, |payload, out| self.compress(payload, out))
    }

    fn shared_encoding(&self) -> Option<u64> {
        if self.tx_takeover {
            return None;
        }
        encoding_key(self.profile)
    }
}

//! [`PerMessageDeflate`]: compressing outgoing and inflating incoming messages (RFC 7692 §7.2), with
//! zlib streams shared per thread where no context is kept, and the inflated size bounded while it
//! is inflated.

use std::cell::{Cell, RefCell};

use super::super::close::CloseCode;
use super::super::connection::Role;
use super::super::error::ProtocolError;
use super::super::extension::Extension;
use super::super::frame::{OpCode, RSV1};
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
}

thread_local! {
    static SHARED: RefCell<SharedStreams> = RefCell::new(SharedStreams::default());
    static COMPRESSIONS: Cell<u64> = const { Cell::new(0) };
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
    /// Our compressor's window (9-15), or 0: never compress (the peer demanded a window of 8).
    tx_bits: u8,
    tx_takeover: bool,
    rx_bits: u8,
    rx_takeover: bool,
    mem_level: u8,
    level: i8,
    threshold: u32,
    tx: Option<Deflater>,
    rx: Option<Inflater>,
}

impl std::fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("tx_bits", &self.tx_bits)
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
            // zlib cannot deflate within 256 bytes: send uncompressed rather than break the promise.
            tx_bits: if tx_bits < 9 { 0 } else { tx_bits },
            tx_takeover: !ours_nct,
            // A zlib peer asked for 8 really uses 9 (deflateInit2 turns 8 into 9); a larger window
            // inflates a smaller one's stream (§7.1.2.2).
            rx_bits: theirs_mwb.unwrap_or(15).max(9),
            rx_takeover: !theirs_nct,
            mem_level: config.mem_level.clamp(1, 9),
            level: config.level.clamp(-1, 9),
            threshold: config.threshold.min(u32::MAX as usize) as u32,
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
        if self.tx_takeover {
            let d = match &mut self.tx {
                Some(d) => d,
                None => self.tx.insert(Deflater::new(self.level.into(), self.tx_bits, self.mem_level)?),
            };
            return d.compress_sync(payload, out);
        }
        let key = (self.tx_bits, self.mem_level, self.level);
        SHARED.with(|shared| {
            let mut shared = shared.borrow_mut();
            let i = match shared.deflaters.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let d = Deflater::new(self.level.into(), self.tx_bits, self.mem_level)?;
                    shared.deflaters.push((key, d));
                    shared.deflaters.len() - 1
                }
            };
            let d = &mut shared.deflaters[i].1;
            let result = d.compress_sync(payload, out);
            d.reset();
            result
        })
    }
}

fn inflate_message(i: &mut Inflater, payload: &[u8], max_size: usize, out: &mut Vec<u8>) -> Result<(), ZlibError> {
    if i.inflate(payload, out, max_size)? {
        // A final block ended the stream: the tail would be data after it. Start afresh next time.
        i.reset();
        return Ok(());
    }
    if i.inflate(&TAIL, out, max_size)? {
        i.reset();
    }
    Ok(())
}

fn inflate_error(e: ZlibError, max_size: usize) -> ProtocolError {
    match e {
        ZlibError::TooLarge => ProtocolError::DecodedMessageTooLarge { limit: max_size as u64 },
        ZlibError::Corrupt => {
            ProtocolError::Extension { code: CloseCode::INVALID_PAYLOAD, reason: "corrupt deflate stream" }
        }
        _ => ProtocolError::Extension { code: CloseCode::INTERNAL_ERROR, reason: "deflate unavailable" },
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
        let result = if self.rx_takeover {
            let i = match &mut self.rx {
                Some(i) => i,
                None => self.rx.insert(Inflater::new(self.rx_bits).map_err(|e| inflate_error(e, max_size))?),
            };
            inflate_message(i, payload, max_size, out)
        } else {
            SHARED.with(|shared| {
                let mut shared = shared.borrow_mut();
                let i = match &mut shared.inflater {
                    Some(i) => i,
                    None => shared.inflater.insert(Inflater::new(15)?),
                };
                let result = inflate_message(i, payload, max_size, out);
                i.reset();
                result
            })
        };
        result.map_err(|e| inflate_error(e, max_size))
    }

    fn encode_message(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, ProtocolError> {
        if self.tx_bits == 0 || payload.len() < self.threshold as usize {
            return Ok(None);
        }
        let start = out.len();
        if self.compress(payload, out).is_err() {
            out.truncate(start);
            if self.tx_takeover {
                // The window may hold part of this message: later messages could not be inflated.
                return Err(ProtocolError::Extension { code: CloseCode::INTERNAL_ERROR, reason: "deflate failed" });
            }
            return Ok(None);
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if !self.tx_takeover && out.len() - start >= payload.len() {
            // Incompressible and no context to keep in step: the plain message is shorter.
            out.truncate(start);
            return Ok(None);
        }
        COMPRESSIONS.with(|c| c.set(c.get() + 1));
        Ok(Some(RSV1))
    }

    fn shared_encoding(&self) -> Option<u64> {
        (!self.tx_takeover && self.tx_bits != 0).then(|| {
            u64::from(self.tx_bits)
                | u64::from(self.mem_level) << 8
                | u64::from(self.level as u8) << 16
                | u64::from(self.threshold) << 24
        })
    }
}

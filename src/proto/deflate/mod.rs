//! permessage-deflate (RFC 7692): its settings, the negotiation of its four parameters, and the
//! extension that compresses and inflates messages.
//!
//! Owns: [`DeflateConfig`] (mode, window bits, memLevel, level, threshold), the offer/response rules
//! ([`accept_offers`] for a server, [`client_offer`] and [`check_response`] for a client), and
//! [`PerMessageDeflate`], the [`Extension`](super::Extension) a connection gets once it is agreed.
//! Never touches: sockets, clocks, the reactor. zlib itself is behind [`crate::sys::Deflater`] and
//! [`crate::sys::Inflater`].
//!
//! # Memory
//! A direction without context takeover uses one compressor (or decompressor) per thread, reset for
//! every message: a reactor's connections share it, and an idle connection owns no zlib state. A
//! direction with context takeover ([`DeflateMode::Dedicated`]) gets its own zlib stream on the first
//! message that needs it, never at the handshake.

mod codec;
mod params;

pub use codec::{thread_compressions, PerMessageDeflate, SharedDeflate};
pub use params::{accept_offers, check_response, client_offer, DeflateParams, DeflateResponseError, EXTENSION_NAME};

/// How much memory permessage-deflate may use per connection, and whether it is offered or accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeflateMode {
    /// Not offered (client) and declined (server). The default.
    #[default]
    Off,
    /// No context takeover in either direction: one compressor and one decompressor per thread
    /// (reactor), reset per message. An idle connection owns no zlib state.
    Shared,
    /// Context takeover where the peer allows it: each connection gets its own compressor and
    /// decompressor, allocated on the first message that needs them.
    Dedicated,
}

impl DeflateMode {
    /// Parses `off`, `shared` or `dedicated`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "shared" => Some(Self::Shared),
            "dedicated" => Some(Self::Dedicated),
            _ => None,
        }
    }
}

/// The settings of permessage-deflate for one side (server or client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Off, shared or dedicated (default [`DeflateMode::Off`]).
    pub mode: DeflateMode,
    /// The largest window our compressor uses, as log2 (9-15, default 15). Stock zlib cannot make a raw
    /// deflate stream with an 8-bit window, so a server declines an offer that demands
    /// `server_max_window_bits=8`, and a client told `client_max_window_bits=8` sends uncompressed.
    pub window_bits: u8,
    /// The window we ask the peer's compressor to stay within (8-15, default 15: no request), where the
    /// protocol lets us ask: a server answers `client_max_window_bits` only to a client that offered it;
    /// a client offers `server_max_window_bits` when this is below 15. Smaller windows mean smaller
    /// dedicated decompressors (zlib: `2^bits` bytes plus ~7 KiB).
    pub peer_window_bits: u8,
    /// zlib's memLevel for our compressors (1-9, default 8): the hash table is `2^(memLevel + 9)` bytes.
    pub mem_level: u8,
    /// zlib's compression level (0-9, or -1 for zlib's own default, 6). Default 1: about five times
    /// faster than 6 for about 15 % more bytes (docs/benchmarks.md#permessage-deflate).
    pub level: i8,
    /// Messages shorter than this many bytes go out uncompressed (default 64).
    pub threshold: usize,
    /// Server, [`DeflateMode::Dedicated`]: answer `client_no_context_takeover` even when the offer did
    /// not ask for it (RFC 7692 §7.1.1.2 allows it), so that the client resets its compressor after
    /// every message and this server inflates with the reactor's shared decompressor: a dedicated
    /// connection then owns a compressor only (window bits 11, memLevel 1: 14.8 KiB instead of 23.8).
    /// The trade: client-to-server messages compress a little worse (no back-references into earlier
    /// messages). Default `true`; shared mode answers it anyway, and a client ignores this setting.
    pub request_client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            mode: DeflateMode::Off,
            window_bits: 15,
            peer_window_bits: 15,
            mem_level: 8,
            level: 1,
            threshold: 64,
            request_client_no_context_takeover: true,
        }
    }
}

impl DeflateConfig {
    /// The default settings in `mode`.
    pub fn with_mode(mode: DeflateMode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// Whether permessage-deflate is to be offered or accepted.
    pub fn enabled(&self) -> bool {
        self.mode != DeflateMode::Off
    }

    /// Checks that every setting is in range; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(9..=15).contains(&self.window_bits) {
            return Err(format!(
                "deflate window_bits must be 9-15 (zlib cannot deflate with 8), not {}",
                self.window_bits
            ));
        }
        if !(8..=15).contains(&self.peer_window_bits) {
            return Err(format!("deflate peer_window_bits must be 8-15, not {}", self.peer_window_bits));
        }
        if !(1..=9).contains(&self.mem_level) {
            return Err(format!("deflate mem_level must be 1-9, not {}", self.mem_level));
        }
        if !(-1..=9).contains(&self.level) {
            return Err(format!("deflate level must be -1-9, not {}", self.level));
        }
        Ok(())
    }
}

/// Adds the `agreed` permessage-deflate to `conn` for our `role` and `config`: inline
/// ([`SharedDeflate`], no allocation) when neither direction keeps context, else a boxed
/// [`PerMessageDeflate`] (whose zlib streams are allocated on first use).
pub fn add_to(conn: &mut super::Connection, role: super::Role, agreed: &DeflateParams, config: &DeflateConfig) {
    match SharedDeflate::new(role, agreed, config) {
        Some(shared) => conn.add_shared_deflate(shared),
        None => conn.add_extension(PerMessageDeflate::boxed(role, agreed, config)),
    }
}

/// A client's whole deflate step for a handshake: the `Sec-WebSocket-Extensions` value to offer
/// (`None` when off), formatted.
pub fn client_offer_header(config: &DeflateConfig) -> Option<String> {
    client_offer(config).map(|offer| super::negotiate::format_extensions(&[offer]))
}

/// A client's check of the server's accepted `extensions` (see [`check_response`]), giving the
/// extension to add to the connection, if deflate was agreed; a bad answer fails the handshake with
/// [`HandshakeError::InvalidDeflateResponse`](super::handshake::HandshakeError::InvalidDeflateResponse).
pub fn client_extension(
    config: &DeflateConfig,
    extensions: &[super::negotiate::ExtensionOffer],
) -> Result<Option<Box<dyn super::Extension>>, super::handshake::HandshakeError> {
    if !config.enabled() {
        return Ok(None);
    }
    let agreed =
        check_response(config, extensions).map_err(super::handshake::HandshakeError::InvalidDeflateResponse)?;
    Ok(agreed.map(|mut agreed| {
        // We offered client_no_context_takeover in shared mode: we keep to it even if the answer
        // leaves it out (RFC 7692 §7.1.1.2 lets the server omit it).
        agreed.client_no_context_takeover |= config.mode == DeflateMode::Shared;
        PerMessageDeflate::boxed(super::Role::Client, &agreed, config)
    }))
}

#[cfg(test)]
mod tests;

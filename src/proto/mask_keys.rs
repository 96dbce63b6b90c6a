//! Where a client's masking keys come from (RFC 6455 §5.3: a fresh, unpredictable key per frame).
//!
//! Owns: the [`MaskSource`] seam and a seeded generator for deterministic tests. Never touches: frames or
//! the masking transform itself ([`apply_mask`](super::mask::apply_mask)).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of masking keys for client frames. The default (no source in
/// [`ConnectionConfig::mask_source`](super::ConnectionConfig::mask_source)) draws each key from the
/// thread-local CSPRNG of the `rand` crate, as the RFC asks; a custom source is for tests that need
/// reproducible bytes on the wire ([`SeededMasks`]). Shared by every connection of a config, hence `&self`.
pub trait MaskSource: Send + Sync + Debug {
    /// The key for the next frame.
    fn next_key(&self) -> [u8; 4];
}

/// A deterministic key sequence (xorshift64*) from a seed: the same seed gives the same keys in the same
/// order. Predictable by design: for tests only, never for traffic a browser-side attacker could shape.
#[derive(Debug)]
pub struct SeededMasks {
    state: AtomicU64,
}

impl SeededMasks {
    /// A sequence starting from `seed` (0 is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> Self {
        Self { state: AtomicU64::new(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed }) }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x
}

impl MaskSource for SeededMasks {
    fn next_key(&self) -> [u8; 4] {
        let previous =
            self.state.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(xorshift(x))).unwrap_or_else(|x| x);
        let word = xorshift(previous).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let bytes = (word >> 32).to_le_bytes();
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_keys_and_another_seed_others() {
        let a = SeededMasks::new(7);
        let b = SeededMasks::new(7);
        let c = SeededMasks::new(8);
        let ka: Vec<[u8; 4]> = (0..16).map(|_| a.next_key()).collect();
        let kb: Vec<[u8; 4]> = (0..16).map(|_| b.next_key()).collect();
        let kc: Vec<[u8; 4]> = (0..16).map(|_| c.next_key()).collect();
        assert_eq!(ka, kb);
        assert_ne!(ka, kc);
        assert!(ka.windows(2).all(|w| w[0] != w[1]), "consecutive keys differ");
    }
}

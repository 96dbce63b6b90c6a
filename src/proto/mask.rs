//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, in place, on machine words.
//!
//! Owns: the masking transform. Never touches: headers or where keys come from.

/// XORs `buf` in place with `key`, as if `buf` started `offset` bytes into a masked payload.
///
/// Masking is its own inverse, so this both masks and unmasks. `offset` lets a caller unmask a payload
/// that arrives in pieces: pass the number of payload bytes already processed.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as seen from `offset` bytes into the payload: byte i of this little-endian word is
    // key[(offset + i) % 4]. An integer rotation, not `<[u8; 4]>::rotate_left` (an out-of-line call
    // per frame).
    let k = u32::from_le_bytes(key).rotate_right(((offset & 3) * 8) as u32);
    let word = u64::from(k) | (u64::from(k) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_le_bytes(raw) ^ word).to_le_bytes());
    }
    // Chunks are a multiple of 4 bytes long, so the tail starts at key phase 0.
    let key = k.to_le_bytes();
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The byte-by-byte definition from RFC 6455 §5.3, kept as the reference for tests and benchmarks.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset.wrapping_add(i)) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn masks_rfc_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = original.clone();
        let (a, rest) = pieces.split_at_mut(7);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, key, 0);
        apply_mask(b, key, 7);
        apply_mask(c, key, 37);
        assert_eq!(whole, pieces);
    }

    quickcheck! {
        fn matches_bytewise_definition(data: Vec<u8>, key: (u8, u8, u8, u8), offset: usize) -> bool {
            let key = [key.0, key.1, key.2, key.3];
            let mut fast = data.clone();
            let mut slow = data;
            apply_mask(&mut fast, key, offset);
            apply_mask_bytewise(&mut slow, key, offset);
            fast == slow
        }

        fn is_its_own_inverse(data: Vec<u8>, key: (u8, u8, u8, u8), offset: usize) -> bool {
            let key = [key.0, key.1, key.2, key.3];
            let mut buf = data.clone();
            apply_mask(&mut buf, key, offset);
            apply_mask(&mut buf, key, offset);
            buf == data
        }
    }
}

//! Incremental UTF-8 validation that fails fast (RFC 6455 §8.1).
//!
//! Owns: validating a text message delivered in pieces (fragments, or a frame arriving in several reads),
//! rejecting it at the first byte that can never be part of valid UTF-8, while accepting a code point split
//! across pieces. Bulk validation is simdutf8's. Never touches: frames or buffers.

use simdutf8::compat::from_utf8;

/// The input can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Streaming validator: feed pieces with [`Utf8Validator::feed`], end the message with
/// [`Utf8Validator::finish`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Validator {
    /// Bytes of a code point started in an earlier piece (at most 3: a fourth would complete it).
    pending: [u8; 3],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self { pending: [0; 3], pending_len: 0 }
    }

    /// Whether a code point is still incomplete.
    pub fn is_mid_code_point(&self) -> bool {
        self.pending_len != 0
    }

    /// Validates the next piece. Fails as soon as the bytes seen so far cannot start valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let width = sequence_width(self.pending[0]);
            let take = (width - have).min(data.len());
            let mut tmp = [0u8; 4];
            tmp[..have].copy_from_slice(&self.pending[..have]);
            tmp[have..have + take].copy_from_slice(&data[..take]);
            let candidate = &tmp[..have + take];
            match from_utf8(candidate) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix of a code point (so at most 3 bytes): wait for more.
                    let len = candidate.len();
                    self.pending[..len].copy_from_slice(&tmp[..len]);
                    self.pending_len = len as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
            data = &data[take..];
        }
        match from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Utf8Error),
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Ends the message: fails if a code point was left incomplete. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.pending_len != 0;
        self.pending_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }

    /// Forgets any partial code point.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// The length of the sequence a lead byte announces (1 for bytes that cannot lead one; they fail anyway).
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Validates a complete piece of UTF-8 in one go (the fast path for an unfragmented text message).
pub fn validate(data: &[u8]) -> Result<&str, Utf8Error> {
    simdutf8::basic::from_utf8(data).map_err(|_| Utf8Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn the_validator_is_four_bytes_and_keeps_a_three_byte_prefix_across_pieces() {
        assert_eq!(std::mem::size_of::<Utf8Validator>(), 4);
        // U+1F600 (four bytes) split after three: the three are kept, the fourth completes them.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf0, 0x9f, 0x98]), Ok(()));
        assert!(v.is_mid_code_point());
        assert_eq!(v.feed(&[0x80]), Ok(()));
        assert_eq!(v.finish(), Ok(()));
        // One byte at a time, the same.
        let mut v = Utf8Validator::new();
        for b in [0xf0, 0x9f, 0x98, 0x80, b'a'] {
            assert_eq!(v.feed(&[b]), Ok(()));
        }
        assert_eq!(v.finish(), Ok(()));
    }

    fn feed_pieces(pieces: &[&[u8]]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn accepts_code_point_split_across_pieces() {
        let euro = "€".as_bytes(); // e2 82 ac
        assert_eq!(feed_pieces(&[&euro[..1], &euro[1..2], &euro[2..]]), Ok(()));
        let emoji = "😀".as_bytes();
        assert_eq!(feed_pieces(&[b"ab", &emoji[..3], &emoji[3..], b"cd"]), Ok(()));
    }

    #[test]
    fn fails_fast_on_first_invalid_byte_before_message_ends() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"hello"), Ok(()));
        // 0xf4 0x90 would be above U+10FFFF: known to be invalid at the second byte.
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
    }

    #[test]
    fn fails_fast_on_invalid_byte_in_one_piece() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xff, b'b']), Err(Utf8Error));
    }

    #[test]
    fn incomplete_code_point_at_end_fails_on_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert!(v.is_mid_code_point());
        assert_eq!(v.finish(), Err(Utf8Error));
    }

    #[test]
    fn surrogates_and_overlongs_fail_at_once() {
        assert_eq!(Utf8Validator::new().feed(&[0xed, 0xa0]), Err(Utf8Error));
        assert_eq!(Utf8Validator::new().feed(&[0xc0]), Err(Utf8Error));
        assert_eq!(Utf8Validator::new().feed(&[0xe0, 0x80]), Err(Utf8Error));
    }

    quickcheck! {
        fn agrees_with_std_for_any_fragmentation(data: Vec<u8>, cuts: Vec<usize>) -> bool {
            let expected = std::str::from_utf8(&data).is_ok();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut v = Utf8Validator::new();
            let mut start = 0;
            let mut ok = true;
            for c in cuts.into_iter().chain(std::iter::once(data.len())) {
                if v.feed(&data[start..c]).is_err() { ok = false; break; }
                start = c;
            }
            ok = ok && v.finish().is_ok();
            ok == expected
        }

        fn agrees_with_std_on_mostly_valid_text(s: String, junk: u8, at: usize, cut: usize) -> bool {
            let mut data = s.into_bytes();
            let at = at % (data.len() + 1);
            data.insert(at, junk);
            let expected = std::str::from_utf8(&data).is_ok();
            let cut = cut % (data.len() + 1);
            let mut v = Utf8Validator::new();
            let ok = v.feed(&data[..cut]).is_ok() && v.feed(&data[cut..]).is_ok() && v.finish().is_ok();
            ok == expected
        }

        fn fails_no_later_than_std_valid_prefix(data: Vec<u8>) -> bool {
            // Fed byte by byte, the validator must reject at the byte where std's error is known.
            match std::str::from_utf8(&data) {
                Ok(_) => true,
                Err(e) => match e.error_len() {
                    None => true,
                    Some(len) => {
                        let mut v = Utf8Validator::new();
                        let fail_at = data.iter().position(|b| v.feed(&[*b]).is_err());
                        fail_at.is_some_and(|i| i <= e.valid_up_to() + len)
                    }
                },
            }
        }
    }
}

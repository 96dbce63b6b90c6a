//! A connection's inbound tail buffer: the unparsed end of the stream, kept between reads.

use std::error::Error;
use std::fmt;
use std::io::{self, Read};

/// Smallest capacity [`InboundBuf`] grows to when it has no storage yet (normally it gets a pool buffer).
const MIN_GROWTH: usize = 4096;

/// What one [`InboundBuf::fill_from`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "Eof and Full need handling"]
#[non_exhaustive]
pub enum Fill {
    /// This many bytes (at least one) were read and appended to the readable region.
    Read(usize),
    /// The reader reported end of stream (`read` returned `Ok(0)`); nothing was appended.
    Eof,
    /// The buffer already holds `limit` unparsed bytes; nothing was read. If the parser cannot make progress
    /// with what is buffered, the frame is larger than allowed: fail the connection (1009).
    Full,
}

/// A request to hold more unparsed bytes than the limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    /// How many unparsed bytes would have had to fit.
    pub needed: usize,
    /// The limit the caller passed.
    pub limit: usize,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inbound buffer would need {} bytes, over the limit of {}", self.needed, self.limit)
    }
}

impl Error for LimitExceeded {}

/// The unparsed tail of a connection's inbound stream, kept contiguous so the parser can unmask in place
/// and borrow slices of it.
///
/// The readable bytes are always one contiguous slice ([`readable_mut`](Self::readable_mut)); the buffer
/// never wraps. [`consume`](Self::consume) moves the start forward; when the free space at the end runs
/// short and the consumed gap at the front is at least as large, the readable bytes are moved to the
/// front (a copy of the unparsed bytes only). When everything is consumed the start resets to zero for free.
///
/// Storage is a `Vec<u8>` meant to come from the reactor's [`BufferPool`](super::BufferPool):
/// [`from_vec`](Self::from_vec)`(pool.take())` when a tail must be kept, and
/// `pool.give(buf.`[`into_vec`](Self::into_vec)`())` once [`is_empty`](Self::is_empty), so an idle connection
/// owns no buffer. `Option<InboundBuf>` is the same size as `InboundBuf` (40 bytes on 64-bit targets).
///
/// Growth: [`append`](Self::append) always fits its bytes (the parser bounds frame sizes before the reactor
/// keeps a tail). [`fill_from`](Self::fill_from) and [`reserve`](Self::reserve) take a `limit` on the
/// unparsed bytes held (the max frame size) and grow the storage by doubling, never past `limit`; at the
/// limit `fill_from` reads nothing and returns [`Fill::Full`]. A buffer that grew is freed, not kept, when
/// given back to the pool.
///
/// Reading straight from a socket needs initialised memory: the first read into fresh storage zeroes its
/// spare capacity once (up to the capacity, or `limit` if smaller); later reads reuse it.
#[derive(Default)]
pub struct InboundBuf {
    /// `buf.len()` is how far the storage has been initialised, not how much is readable.
    buf: Vec<u8>,
    /// Readable bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl InboundBuf {
    /// An empty buffer with no storage (allocates nothing).
    pub const fn new() -> Self {
        Self { buf: Vec::new(), start: 0, end: 0 }
    }

    /// An empty buffer using `storage` (normally from [`BufferPool::take`](super::BufferPool::take)).
    /// Any bytes already in `storage` are discarded.
    pub fn from_vec(mut storage: Vec<u8>) -> Self {
        storage.clear();
        Self { buf: storage, start: 0, end: 0 }
    }

    /// Gives up the storage, emptied, to hand back to the pool. Unconsumed bytes are discarded.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.clear();
        self.buf
    }

    /// Unparsed bytes held.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether no unparsed bytes are held (the storage can go back to the pool).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of storage.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The unparsed bytes, contiguous.
    pub fn readable(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The unparsed bytes, contiguous and mutable (the parser unmasks payloads in place).
    pub fn readable_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Marks the first `n` readable bytes as parsed.
    ///
    /// # Panics
    /// If `n > self.len()`.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consume({n}) past the {} readable bytes", self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Discards every unparsed byte, keeping the storage.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Appends `data` (an incomplete tail copied from the reactor's scratch buffer), compacting and then
    /// growing the storage if it does not fit.
    pub fn append(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.buf.capacity() - self.end < data.len() {
            self.compact();
            let needed = self.end + data.len();
            if needed > self.buf.capacity() {
                // Amortised doubling; `reserve` counts from `buf.len()` (initialised), which is >= `end`.
                self.buf.reserve(needed - self.buf.len());
            }
        }
        let initialised = self.buf.len() - self.end;
        if initialised >= data.len() {
            self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        } else {
            let (head, tail) = data.split_at(initialised);
            self.buf[self.end..].copy_from_slice(head);
            self.buf.extend_from_slice(tail);
        }
        self.end += data.len();
    }

    /// Makes room for `additional` more bytes without exceeding `limit` unparsed bytes, compacting and, if
    /// needed, growing the storage (doubling, capped at `limit`).
    ///
    /// Useful once a frame header is parsed: reserving the whole frame avoids growing step by step.
    pub fn reserve(&mut self, additional: usize, limit: usize) -> Result<(), LimitExceeded> {
        let needed = self.len().saturating_add(additional);
        if needed > limit {
            return Err(LimitExceeded { needed, limit });
        }
        if self.buf.capacity() - self.end >= additional {
            return Ok(());
        }
        self.compact();
        if needed > self.buf.capacity() {
            let doubled = match self.buf.capacity() {
                0 => MIN_GROWTH,
                capacity => capacity.saturating_mul(2),
            }
            .min(limit);
            let new_capacity = needed.max(doubled);
            self.buf.reserve_exact(new_capacity - self.buf.len());
        }
        Ok(())
    }

    /// The free space after the readable bytes, initialised, at most `limit - len()` bytes long; write into
    /// it and then [`commit`](Self::commit) what was written. Compacts when worthwhile; never grows (see
    /// [`reserve`](Self::reserve)), so it is empty when the storage is full.
    pub fn spare_mut(&mut self, limit: usize) -> &mut [u8] {
        self.make_room();
        let allowed_end = self.buf.capacity().min(self.start.saturating_add(limit));
        if allowed_end <= self.end {
            return &mut [];
        }
        if self.buf.len() < allowed_end {
            self.buf.resize(allowed_end, 0);
        }
        &mut self.buf[self.end..allowed_end]
    }

    /// Appends the first `n` bytes of the last [`spare_mut`](Self::spare_mut) slice to the readable region.
    ///
    /// # Panics
    /// If `n` is longer than that slice was.
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit({n}) past the initialised spare space");
        self.end += n;
    }

    /// Reads once from `src` straight into the free space, growing the storage (doubling, capped so that
    /// at most `limit` unparsed bytes are held) when there is no free space left.
    ///
    /// Returns [`Fill::Full`] without reading when `limit` bytes are already held, and [`Fill::Eof`] when
    /// `src` reports end of stream. Retries on [`io::ErrorKind::Interrupted`]; every other error,
    /// including [`io::ErrorKind::WouldBlock`], is returned as is.
    pub fn fill_from<R: Read + ?Sized>(&mut self, src: &mut R, limit: usize) -> io::Result<Fill> {
        if self.len() >= limit {
            return Ok(Fill::Full);
        }
        self.make_room();
        if self.end == self.buf.capacity() {
            // `len() < limit`, so one more byte is always allowed.
            self.reserve(1, limit).map_err(io::Error::other)?;
        }
        loop {
            let spare = self.spare_mut(limit);
            debug_assert!(!spare.is_empty());
            match src.read(spare) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.commit(n);
                    return Ok(Fill::Read(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Resets an empty buffer to the front, or moves the readable bytes to the front when the consumed gap
    /// there is at least as large as the free space at the end (so each byte is moved at most once per
    /// buffer-length of input).
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.start >= self.buf.capacity() - self.end {
            self.compact();
        }
    }

    /// Moves the readable bytes to the front of the storage.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

impl fmt::Debug for InboundBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundBuf")
            .field("len", &self.len())
            .field("start", &self.start)
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::BufferPool;

    /// A reader that hands out `data` at most `step` bytes per call, with scripted errors first.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        errors: Vec<io::ErrorKind>,
    }

    impl Trickle {
        fn new(data: &[u8], step: usize) -> Self {
            Self { data: data.to_vec(), pos: 0, step, errors: Vec::new() }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if let Some(kind) = self.errors.pop() {
                return Err(kind.into());
            }
            let n = out.len().min(self.step).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn option_of_inbound_buf_costs_nothing_extra() {
        assert_eq!(std::mem::size_of::<Option<InboundBuf>>(), std::mem::size_of::<InboundBuf>());
        assert!(std::mem::size_of::<InboundBuf>() <= 40);
    }

    #[test]
    fn new_buffer_owns_no_storage() {
        let buf = InboundBuf::new();
        assert_eq!((buf.len(), buf.capacity()), (0, 0));
        assert!(buf.is_empty());
    }

    #[test]
    fn append_then_consume_exposes_the_unparsed_bytes_contiguously() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(16));
        buf.append(b"hello ");
        buf.append(b"world");
        assert_eq!(buf.readable(), b"hello world");
        buf.consume(6);
        assert_eq!(buf.readable(), b"world");
        buf.readable_mut()[0] = b'W';
        assert_eq!(buf.readable(), b"World");
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn consuming_everything_resets_to_the_front() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        buf.append(b"abcdef");
        buf.consume(6);
        assert!(buf.is_empty());
        buf.append(b"12345678");
        assert_eq!(buf.readable(), b"12345678");
        assert_eq!(buf.capacity(), 8, "reset to the front instead of growing");
    }

    #[test]
    fn append_compacts_instead_of_wrapping_or_growing() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        buf.append(b"abcdefgh");
        buf.consume(5);
        buf.append(b"12345");
        assert_eq!(buf.readable(), b"fgh12345");
        assert_eq!(buf.capacity(), 8);
    }

    #[test]
    fn append_grows_when_compaction_is_not_enough() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        buf.append(b"abcdefgh");
        buf.consume(2);
        buf.append(b"0123456789");
        assert_eq!(buf.readable(), b"cdefgh0123456789");
        assert!(buf.capacity() >= 16);
    }

    #[test]
    #[should_panic(expected = "past the 3 readable bytes")]
    fn consume_past_the_end_panics() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        buf.append(b"abc");
        buf.consume(4);
    }

    #[test]
    fn fill_from_reads_into_spare_space_and_appends() {
        let data = pattern(100);
        let mut src = Trickle::new(&data, 30);
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(256));
        buf.append(&[0xAA]);
        assert_eq!(buf.fill_from(&mut src, 1024).unwrap(), Fill::Read(30));
        assert_eq!(buf.fill_from(&mut src, 1024).unwrap(), Fill::Read(30));
        assert_eq!(buf.len(), 61);
        assert_eq!(buf.readable()[0], 0xAA);
        assert_eq!(&buf.readable()[1..], &data[..60]);
    }

    #[test]
    fn fill_from_compacts_when_the_front_gap_is_large() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(16));
        buf.append(&pattern(16));
        buf.consume(12);
        let mut src = Trickle::new(b"XYZW", 64);
        assert_eq!(buf.fill_from(&mut src, 64).unwrap(), Fill::Read(4));
        let mut expected = pattern(16)[12..].to_vec();
        expected.extend_from_slice(b"XYZW");
        assert_eq!(buf.readable(), &expected[..]);
        assert_eq!(buf.capacity(), 16);
    }

    #[test]
    fn fill_from_grows_by_doubling_up_to_the_limit_then_reports_full() {
        let data = pattern(10_000);
        let mut src = Trickle::new(&data, usize::MAX);
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(1024));
        let limit = 5000;
        let mut reads = 0;
        loop {
            match buf.fill_from(&mut src, limit).unwrap() {
                Fill::Read(_) => reads += 1,
                Fill::Full => break,
                Fill::Eof => panic!("unexpected EOF"),
            }
        }
        assert_eq!(buf.len(), limit, "exactly `limit` bytes held");
        assert_eq!(buf.readable(), &data[..limit]);
        assert_eq!(buf.capacity(), limit, "1024 -> 2048 -> 4096 -> capped at 5000");
        assert_eq!(reads, 4);
        // Once something is parsed, reading resumes.
        buf.consume(1000);
        assert_eq!(buf.fill_from(&mut src, limit).unwrap(), Fill::Read(1000));
        assert_eq!(buf.readable(), &data[1000..6000]);
    }

    #[test]
    fn fill_from_never_holds_more_than_a_limit_below_capacity() {
        let mut src = Trickle::new(&pattern(100), 100);
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(64));
        assert_eq!(buf.fill_from(&mut src, 10).unwrap(), Fill::Read(10));
        assert_eq!(buf.fill_from(&mut src, 10).unwrap(), Fill::Full);
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn fill_from_without_storage_allocates() {
        let mut src = Trickle::new(b"abc", 10);
        let mut buf = InboundBuf::new();
        assert_eq!(buf.fill_from(&mut src, 1 << 20).unwrap(), Fill::Read(3));
        assert_eq!(buf.readable(), b"abc");
        assert_eq!(buf.capacity(), MIN_GROWTH);
    }

    #[test]
    fn fill_from_reports_eof_and_passes_would_block_through() {
        let mut src = Trickle::new(b"", 10);
        src.errors = vec![io::ErrorKind::WouldBlock];
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        let err = buf.fill_from(&mut src, 8).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(buf.fill_from(&mut src, 8).unwrap(), Fill::Eof);
        assert!(buf.is_empty());
    }

    #[test]
    fn fill_from_retries_when_interrupted() {
        let mut src = Trickle::new(b"ab", 10);
        src.errors = vec![io::ErrorKind::Interrupted, io::ErrorKind::Interrupted];
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        assert_eq!(buf.fill_from(&mut src, 8).unwrap(), Fill::Read(2));
    }

    #[test]
    fn reserve_grows_for_a_whole_frame_or_refuses_past_the_limit() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(16));
        buf.append(b"header");
        assert_eq!(buf.reserve(100, 1000), Ok(()));
        assert!(buf.capacity() >= 106);
        assert_eq!(buf.readable(), b"header");
        assert_eq!(buf.reserve(995, 1000), Err(LimitExceeded { needed: 1001, limit: 1000 }));
    }

    #[test]
    fn spare_mut_and_commit_append_what_was_written() {
        let mut buf = InboundBuf::from_vec(Vec::with_capacity(8));
        buf.append(b"ab");
        let spare = buf.spare_mut(usize::MAX);
        assert_eq!(spare.len(), 6);
        spare[..3].copy_from_slice(b"cde");
        buf.commit(3);
        assert_eq!(buf.readable(), b"abcde");
        // Appending after a read reuses the initialised spare bytes correctly.
        buf.append(b"fgh");
        assert_eq!(buf.readable(), b"abcdefgh");
        assert!(buf.spare_mut(usize::MAX).is_empty());
    }

    #[test]
    fn storage_goes_back_to_the_pool_and_is_reused() {
        let mut pool = BufferPool::new(1024, 4);
        let mut buf = InboundBuf::from_vec(pool.take());
        buf.append(b"tail");
        buf.consume(4);
        assert!(buf.is_empty());
        pool.give(buf.into_vec());
        assert_eq!((pool.outstanding(), pool.idle(), pool.allocated_total()), (0, 1, 1));

        // A buffer that grew for a large frame is freed on give-back, not kept.
        let mut big = InboundBuf::from_vec(pool.take());
        big.reserve(4096, 1 << 20).unwrap();
        pool.give(big.into_vec());
        assert_eq!((pool.outstanding(), pool.idle(), pool.freed_total()), (0, 0, 1));
    }
}

//! A connection's outbound queue: bytes the socket has not taken yet, owned or shared.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

use super::BufferPool;

/// Shared chunks up to this many bytes are copied into the owned tail when it has room: a small copy is
/// cheaper than an extra iovec plus a reference-count round trip.
const SHARED_COPY_MAX: usize = 256;

/// How many iovecs [`OutboundQueue::write_to`] passes to one `writev` (on the stack).
const WRITE_IOVECS: usize = 64;

enum Chunk {
    /// A pool buffer; bytes before `pos` are already written.
    Owned { buf: Vec<u8>, pos: usize },
    /// A reference to bytes encoded once and queued on many connections; advanced in place.
    Shared(Bytes),
}

impl Chunk {
    fn remaining(&self) -> &[u8] {
        match self {
            Self::Owned { buf, pos } => &buf[*pos..],
            Self::Shared(bytes) => bytes,
        }
    }
}

/// Bytes waiting for a connection's socket to become writable, in order.
///
/// Two kinds of chunk share one `VecDeque`:
/// - owned: bytes copied in with [`push_owned`](Self::push_owned) (what the cork buffer could not flush).
///   They go into pool buffers: small writes coalesce into the last buffer while it has room; a large one
///   fills the last buffer and then as many fresh pool buffers as needed, so every owned chunk is a
///   pool-sized buffer that goes back to the pool once written.
/// - shared: [`Bytes`] queued by reference with [`push_shared`](Self::push_shared) (a broadcast frame
///   encoded once). Small ones (≤ 256 bytes) are copied into the owned tail instead when it has room.
///
/// Write with [`fill_iovecs`](Self::fill_iovecs) + `writev` + [`advance`](Self::advance), or
/// [`write_to`](Self::write_to) which does the three. Methods that can free or need a buffer take the
/// reactor's [`BufferPool`]; call [`clear`](Self::clear) before dropping a non-empty queue so its buffers
/// go back to the pool.
///
/// Memory: [`new`](Self::new) allocates nothing; the chunk ring itself (40 bytes per chunk) is allocated
/// the first time something is queued and kept for the queue's life. Drop an empty queue (or keep it in
/// an `Option`) to release it.
#[derive(Default)]
pub struct OutboundQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl OutboundQueue {
    /// An empty queue (allocates nothing).
    pub const fn new() -> Self {
        Self { chunks: VecDeque::new(), len: 0 }
    }

    /// Bytes queued and not yet written (the connection's buffered amount).
    pub fn len_bytes(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunks queued, i.e. how many iovecs a full [`fill_iovecs`](Self::fill_iovecs) would use.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Queues a copy of `data`, coalescing into the last owned chunk while it has room and taking buffers
    /// from `pool` for the rest.
    pub fn push_owned(&mut self, data: &[u8], pool: &mut BufferPool) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        let mut rest = data;
        if let Some(Chunk::Owned { buf, .. }) = self.chunks.back_mut() {
            let n = (buf.capacity() - buf.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        while !rest.is_empty() {
            let mut buf = pool.take();
            // Pool buffers have a non-zero capacity, so this always makes progress.
            let n = buf.capacity().clamp(1, rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.chunks.push_back(Chunk::Owned { buf, pos: 0 });
        }
    }

    /// Moves every chunk of `other` behind this queue's, in order.
    pub fn append(&mut self, mut other: Self) {
        self.len += other.len;
        self.chunks.append(&mut other.chunks);
    }

    /// Queues `bytes` by reference (no copy), or copies it into the owned tail when it is small and fits.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if bytes.len() <= SHARED_COPY_MAX {
            if let Some(Chunk::Owned { buf, .. }) = self.chunks.back_mut() {
                if buf.capacity() - buf.len() >= bytes.len() {
                    buf.extend_from_slice(&bytes);
                    return;
                }
            }
        }
        self.chunks.push_back(Chunk::Shared(bytes));
    }

    /// Points `dst` at the queued bytes, in order, one iovec per chunk; returns how many were filled
    /// (`min(dst.len(), chunk_count())`). Pass `&dst[..n]` to `writev`, then [`advance`](Self::advance)
    /// by what it wrote.
    pub fn fill_iovecs<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk.remaining());
            n += 1;
        }
        n
    }

    /// Drops the first `n` queued bytes (written to the socket), giving emptied owned buffers back to `pool`.
    ///
    /// # Panics
    /// If `n > self.len_bytes()`.
    pub fn advance(&mut self, mut n: usize, pool: &mut BufferPool) {
        assert!(n <= self.len, "advance({n}) past the {} queued bytes", self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                unreachable!("queued length counts every chunk byte");
            };
            let remaining = front.remaining().len();
            if n < remaining {
                match front {
                    Chunk::Owned { pos, .. } => *pos += n,
                    Chunk::Shared(bytes) => bytes.advance(n),
                }
                return;
            }
            n -= remaining;
            if let Some(Chunk::Owned { buf, .. }) = self.chunks.pop_front() {
                pool.give(buf);
            }
        }
    }

    /// Writes as much as `dst` takes with one vectored write of up to 64 chunks, then advances past it.
    ///
    /// Returns the bytes written (0 when the queue is empty). Errors, including
    /// [`io::ErrorKind::WouldBlock`] and [`io::ErrorKind::Interrupted`], are returned unchanged with nothing
    /// dropped from the queue. An `Ok(0)` from a non-empty queue means the writer accepts no more bytes.
    pub fn write_to<W: Write + ?Sized>(&mut self, dst: &mut W, pool: &mut BufferPool) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let (written, offered) = {
            let mut iovecs = [IoSlice::new(&[]); WRITE_IOVECS];
            let count = self.fill_iovecs(&mut iovecs);
            let offered: usize = iovecs[..count].iter().map(|s| s.len()).sum();
            (dst.write_vectored(&iovecs[..count])?, offered)
        };
        if written > offered {
            return Err(io::Error::other("writer reported more bytes than it was given"));
        }
        self.advance(written, pool);
        Ok(written)
    }

    /// Drops everything queued, giving owned buffers back to `pool`.
    pub fn clear(&mut self, pool: &mut BufferPool) {
        for chunk in self.chunks.drain(..) {
            if let Chunk::Owned { buf, .. } = chunk {
                pool.give(buf);
            }
        }
        self.len = 0;
    }
}

impl fmt::Debug for OutboundQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundQueue").field("len_bytes", &self.len).field("chunks", &self.chunks.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Concatenates what `fill_iovecs` exposes.
    fn exposed(q: &OutboundQueue) -> Vec<u8> {
        let mut iov = vec![IoSlice::new(&[]); q.chunk_count() + 1];
        let n = q.fill_iovecs(&mut iov);
        assert_eq!(n, q.chunk_count());
        iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// A writer that takes at most `step` bytes per call, with scripted errors first.
    struct Stingy {
        out: Vec<u8>,
        step: usize,
        errors: Vec<io::ErrorKind>,
        calls: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if let Some(kind) = self.errors.pop() {
                return Err(kind.into());
            }
            let mut left = self.step;
            for b in bufs {
                let n = b.len().min(left);
                self.out.extend_from_slice(&b[..n]);
                left -= n;
            }
            Ok(self.step - left)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn small_owned_writes_coalesce_into_one_chunk() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = OutboundQueue::new();
        for part in [&b"ab"[..], b"cd", b"efg"] {
            q.push_owned(part, &mut pool);
        }
        assert_eq!((q.len_bytes(), q.chunk_count(), pool.outstanding()), (7, 1, 1));
        assert_eq!(exposed(&q), b"abcdefg");
    }

    #[test]
    fn large_owned_write_fills_the_tail_then_pool_sized_chunks() {
        let mut pool = BufferPool::new(16, 8);
        let mut q = OutboundQueue::new();
        q.push_owned(b"0123456789", &mut pool);
        let big = pattern(40, 1);
        q.push_owned(&big, &mut pool);
        // 10 + 40 = 50 bytes: 16 + 16 + 16 + 2.
        assert_eq!((q.chunk_count(), pool.outstanding()), (4, 4));
        let mut expected = b"0123456789".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(exposed(&q), expected);
        q.advance(50, &mut pool);
        assert_eq!((q.chunk_count(), pool.outstanding(), pool.idle()), (0, 0, 4));
        assert_eq!(pool.freed_total(), 0, "no owned chunk outgrew the pool's capacity");
    }

    #[test]
    fn shared_chunks_are_queued_by_reference() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = OutboundQueue::new();
        let frame = Bytes::from(pattern(1000, 7));
        q.push_shared(frame.clone());
        let mut iov = [IoSlice::new(&[])];
        assert_eq!(q.fill_iovecs(&mut iov), 1);
        assert_eq!(iov[0].as_ptr(), frame.as_ptr(), "no copy");
        q.advance(1000, &mut pool);
        assert!(q.is_empty());
    }

    #[test]
    fn small_shared_chunk_is_copied_into_the_owned_tail() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = OutboundQueue::new();
        q.push_owned(b"head", &mut pool);
        q.push_shared(Bytes::from_static(b"ping"));
        assert_eq!(q.chunk_count(), 1);
        // Without an owned tail it stays shared.
        let mut q2 = OutboundQueue::new();
        q2.push_shared(Bytes::from_static(b"ping"));
        assert_eq!(q2.chunk_count(), 1);
        assert_eq!(exposed(&q), b"headping");
        q.clear(&mut pool);
        assert_eq!(pool.outstanding(), 0);
    }

    #[test]
    fn owned_bytes_after_a_shared_chunk_are_not_coalesced_before_it() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = OutboundQueue::new();
        q.push_owned(b"A", &mut pool);
        q.push_shared(Bytes::from(pattern(300, 0)));
        q.push_owned(b"B", &mut pool);
        assert_eq!(q.chunk_count(), 3);
        let mut expected = b"A".to_vec();
        expected.extend_from_slice(&pattern(300, 0));
        expected.push(b'B');
        assert_eq!(exposed(&q), expected);
        q.clear(&mut pool);
    }

    #[test]
    fn empty_pushes_are_ignored() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = OutboundQueue::new();
        q.push_owned(b"", &mut pool);
        q.push_shared(Bytes::new());
        assert!(q.is_empty());
        assert_eq!((q.chunk_count(), pool.allocated_total()), (0, 0));
    }

    #[test]
    fn partial_advance_crosses_chunk_boundaries() {
        let mut pool = BufferPool::new(8, 8);
        let mut q = OutboundQueue::new();
        let owned1 = pattern(8, 1);
        let shared = pattern(300, 2);
        let owned2 = pattern(12, 3);
        q.push_owned(&owned1, &mut pool);
        q.push_shared(Bytes::from(shared.clone()));
        q.push_owned(&owned2, &mut pool);
        let all: Vec<u8> = [owned1, shared, owned2].concat();
        assert_eq!((q.len_bytes(), q.chunk_count()), (320, 4));

        let mut consumed = 0;
        for step in [3, 5, 1, 298, 2, 6, 5] {
            q.advance(step, &mut pool);
            consumed += step;
            assert_eq!(q.len_bytes(), 320 - consumed);
            assert_eq!(exposed(&q), &all[consumed..], "after advancing to {consumed}");
        }
        assert!(q.is_empty());
        assert_eq!(pool.outstanding(), 0, "every owned buffer went back");
    }

    #[test]
    #[should_panic(expected = "past the 3 queued bytes")]
    fn advance_past_the_end_panics() {
        let mut pool = BufferPool::new(8, 8);
        let mut q = OutboundQueue::new();
        q.push_owned(b"abc", &mut pool);
        q.advance(4, &mut pool);
    }

    #[test]
    fn fill_iovecs_stops_at_the_slice_length() {
        let mut pool = BufferPool::new(4, 8);
        let mut q = OutboundQueue::new();
        q.push_owned(&pattern(14, 0), &mut pool);
        assert_eq!(q.chunk_count(), 4);
        let mut iov = [IoSlice::new(&[]); 2];
        assert_eq!(q.fill_iovecs(&mut iov), 2);
        assert_eq!(&*iov[0], &pattern(14, 0)[..4]);
        assert_eq!(&*iov[1], &pattern(14, 0)[4..8]);
        assert_eq!(q.fill_iovecs(&mut []), 0);
        q.clear(&mut pool);
    }

    #[test]
    fn write_to_drains_in_order_through_partial_writes() {
        let mut pool = BufferPool::new(16, 8);
        let mut q = OutboundQueue::new();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            if i % 3 == 0 {
                let b = Bytes::from(pattern(400 + usize::from(i), i));
                expected.extend_from_slice(&b);
                q.push_shared(b);
            } else {
                let o = pattern(usize::from(i) * 10, i);
                expected.extend_from_slice(&o);
                q.push_owned(&o, &mut pool);
            }
        }
        assert!(q.chunk_count() > WRITE_IOVECS, "more chunks than one writev takes");
        let mut w = Stingy { out: Vec::new(), step: 37, errors: vec![io::ErrorKind::WouldBlock], calls: 0 };
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(q.len_bytes(), expected.len(), "an error drops nothing");
        while !q.is_empty() {
            let before = q.len_bytes();
            let n = q.write_to(&mut w, &mut pool).unwrap();
            assert_eq!(q.len_bytes(), before - n);
        }
        assert_eq!(w.out, expected);
        assert_eq!(pool.outstanding(), 0);
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), 0);
    }

    #[test]
    fn write_to_rejects_a_writer_claiming_too_much() {
        struct Liar;
        impl Write for Liar {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len() + 1)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut pool = BufferPool::new(16, 8);
        let mut q = OutboundQueue::new();
        q.push_owned(b"abc", &mut pool);
        assert!(q.write_to(&mut Liar, &mut pool).is_err());
        assert_eq!(q.len_bytes(), 3);
        q.clear(&mut pool);
    }

    #[test]
    fn warm_queue_reuses_pool_buffers() {
        let mut pool = BufferPool::new(32, 4);
        let mut q = OutboundQueue::new();
        for _ in 0..100 {
            q.push_owned(&pattern(20, 0), &mut pool);
            q.push_owned(&pattern(20, 1), &mut pool);
            let n = q.len_bytes();
            q.advance(n, &mut pool);
        }
        assert_eq!(pool.allocated_total(), 2);
        assert_eq!(pool.outstanding(), 0);
    }
}

//! The per-reactor pool of fixed-capacity byte buffers.

use std::fmt;

/// The default capacity of a pooled buffer: 64 KiB.
pub const DEFAULT_BUFFER_CAPACITY: usize = 64 * 1024;

/// The default number of idle buffers a pool keeps: 32 (2 MiB at the default capacity).
pub const DEFAULT_MAX_IDLE: usize = 32;

/// The smallest size class [`BufferPool::take_for`] hands out.
const MIN_CLASS: usize = 64;

/// A single-threaded pool of reusable byte buffers, all of one configured capacity.
///
/// Each reactor owns one pool. Buffers travel as plain `Vec<u8>`, so a connection can hold one in an
/// `Option<Vec<u8>>` (or inside an [`InboundBuf`](super::InboundBuf) / [`OutboundQueue`](super::OutboundQueue))
/// at no extra cost, and give it back when it is empty.
///
/// - [`take`](Self::take) pops an idle buffer, or allocates one when none is idle.
/// - [`give`](Self::give) keeps a buffer for reuse if its capacity is exactly the configured one and fewer than
///   `max_idle` buffers are idle; otherwise the buffer is freed. A buffer that grew for a large message is
///   therefore freed, never kept, so idle memory is bounded by `max_idle × buffer_capacity`.
///
/// Once warm (enough idle buffers for what is in flight), neither call allocates.
pub struct BufferPool {
    idle: Vec<Vec<u8>>,
    buffer_capacity: usize,
    max_idle: usize,
    outstanding: usize,
    allocated_total: usize,
    freed_total: usize,
}

impl BufferPool {
    /// A pool of buffers of `buffer_capacity` bytes that keeps at most `max_idle` idle buffers.
    ///
    /// Allocates nothing until the first [`take`](Self::take) or [`prefill`](Self::prefill).
    ///
    /// # Panics
    /// If `buffer_capacity` is zero.
    pub fn new(buffer_capacity: usize, max_idle: usize) -> Self {
        assert!(buffer_capacity > 0, "BufferPool buffer capacity must be non-zero");
        Self { idle: Vec::new(), buffer_capacity, max_idle, outstanding: 0, allocated_total: 0, freed_total: 0 }
    }

    /// Allocates idle buffers until `count` are idle (capped at `max_idle`), so the first connections do not
    /// pay for allocation.
    pub fn prefill(&mut self, count: usize) {
        let target = count.min(self.max_idle);
        self.idle.reserve(target.saturating_sub(self.idle.len()));
        while self.idle.len() < target {
            self.allocated_total += 1;
            self.idle.push(Vec::with_capacity(self.buffer_capacity));
        }
    }

    /// Takes an empty buffer (`len() == 0`, `capacity() == buffer_capacity()`).
    ///
    /// Reuses an idle buffer when there is one; allocates otherwise.
    #[must_use = "a taken buffer should be used and given back"]
    pub fn take(&mut self) -> Vec<u8> {
        self.outstanding += 1;
        match self.idle.pop() {
            Some(buf) => buf,
            None => {
                self.allocated_total += 1;
                Vec::with_capacity(self.buffer_capacity)
            }
        }
    }

    /// Takes an empty buffer for a tail of `len` bytes: up to half the pool's capacity, a buffer of the
    /// smallest size class that holds it (powers of two from 64 bytes, allocated, never pooled), so a
    /// connection that stalls part-way holds about what it sent; beyond that, a pool buffer as
    /// [`take`](Self::take) gives. Either counts in [`outstanding`](Self::outstanding) until given back.
    #[must_use = "a taken buffer should be used and given back"]
    pub fn take_for(&mut self, len: usize) -> Vec<u8> {
        if len > self.buffer_capacity / 2 {
            return self.take();
        }
        self.outstanding += 1;
        self.allocated_total += 1;
        Vec::with_capacity(len.next_power_of_two().max(MIN_CLASS))
    }

    /// Whether a buffer of `capacity` bytes is of the pool's own size (not a small class of
    /// [`take_for`](Self::take_for)).
    pub fn is_pool_sized(&self, capacity: usize) -> bool {
        capacity >= self.buffer_capacity
    }

    /// Gives a buffer back. Its contents are discarded.
    ///
    /// The buffer is kept for reuse if its capacity is exactly [`buffer_capacity`](Self::buffer_capacity)
    /// and fewer than [`max_idle`](Self::max_idle) buffers are idle; otherwise it is freed and counted in
    /// [`freed_total`](Self::freed_total). Give back only buffers taken from this pool: the
    /// [`outstanding`](Self::outstanding) count assumes it.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        debug_assert!(self.outstanding > 0, "BufferPool::give without a matching take");
        self.outstanding = self.outstanding.saturating_sub(1);
        if buf.capacity() == self.buffer_capacity && self.idle.len() < self.max_idle {
            buf.clear();
            self.idle.push(buf);
        } else {
            self.freed_total += 1;
        }
    }

    /// The capacity of every buffer this pool hands out.
    pub fn buffer_capacity(&self) -> usize {
        self.buffer_capacity
    }

    /// The most idle buffers this pool keeps.
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// Buffers taken and not (yet) given back. Buffers dropped instead of given back stay counted here, so
    /// a count that only grows points at a leak.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Buffers idle in the pool, ready for [`take`](Self::take).
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// Buffers this pool has allocated over its lifetime.
    pub fn allocated_total(&self) -> usize {
        self.allocated_total
    }

    /// Buffers given back and freed (over the idle cap, or not of the pool's capacity) over its lifetime.
    pub fn freed_total(&self) -> usize {
        self.freed_total
    }
}

impl Default for BufferPool {
    /// A pool of [`DEFAULT_BUFFER_CAPACITY`] buffers keeping at most [`DEFAULT_MAX_IDLE`] idle.
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_CAPACITY, DEFAULT_MAX_IDLE)
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("buffer_capacity", &self.buffer_capacity)
            .field("max_idle", &self.max_idle)
            .field("idle", &self.idle.len())
            .field("outstanding", &self.outstanding)
            .field("allocated_total", &self.allocated_total)
            .field("freed_total", &self.freed_total)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_for_gives_a_size_class_up_to_half_the_capacity_and_a_pool_buffer_beyond() {
        let mut pool = BufferPool::new(64 * 1024, 4);
        let cases = [(1, 64), (30, 64), (100, 128), (4096, 4096), (4097, 8192), (32 * 1024, 32 * 1024)];
        for (len, capacity) in cases {
            let b = pool.take_for(len);
            assert_eq!(b.capacity(), capacity, "a tail of {len} bytes");
            assert!(!pool.is_pool_sized(b.capacity()));
            pool.give(b);
        }
        let big = pool.take_for(32 * 1024 + 1);
        assert_eq!(big.capacity(), 64 * 1024);
        assert!(pool.is_pool_sized(big.capacity()));
        assert_eq!(pool.outstanding(), 1, "size-classed buffers count while out, too");
        pool.give(big);
        assert_eq!((pool.outstanding(), pool.idle()), (0, 1), "only the pool-sized one is kept");
    }

    #[test]
    fn take_allocates_only_when_no_buffer_is_idle() {
        let mut pool = BufferPool::new(1024, 4);
        let a = pool.take();
        assert_eq!((a.len(), a.capacity()), (0, 1024));
        assert_eq!((pool.outstanding(), pool.idle(), pool.allocated_total()), (1, 0, 1));
        pool.give(a);
        assert_eq!((pool.outstanding(), pool.idle()), (0, 1));
        let b = pool.take();
        assert_eq!(pool.allocated_total(), 1, "the idle buffer is reused");
        pool.give(b);
    }

    #[test]
    fn given_back_buffer_comes_back_empty() {
        let mut pool = BufferPool::new(64, 4);
        let mut a = pool.take();
        a.extend_from_slice(b"stale");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take();
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        pool.give(b);
    }

    #[test]
    fn idle_buffers_are_capped_and_excess_is_freed() {
        let mut pool = BufferPool::new(64, 2);
        let bufs: Vec<_> = (0..5).map(|_| pool.take()).collect();
        assert_eq!((pool.outstanding(), pool.allocated_total()), (5, 5));
        for b in bufs {
            pool.give(b);
        }
        assert_eq!((pool.outstanding(), pool.idle(), pool.freed_total()), (0, 2, 3));
    }

    #[test]
    fn grown_or_foreign_buffers_are_freed_not_kept() {
        let mut pool = BufferPool::new(64, 4);
        let mut grown = pool.take();
        grown.extend_from_slice(&[0; 65]);
        assert!(grown.capacity() > 64);
        pool.give(grown);
        let mut small = pool.take();
        small.shrink_to(16);
        pool.give(small);
        // (`small` may or may not have shrunk; either way, nothing of the wrong capacity is idle.)
        assert!(pool.idle() <= 1);
        assert_eq!(pool.freed_total() + pool.idle(), 2);
        let b = pool.take();
        assert_eq!(b.capacity(), 64);
        pool.give(b);
    }

    #[test]
    fn prefill_warms_up_to_the_idle_cap() {
        let mut pool = BufferPool::new(32, 3);
        pool.prefill(10);
        assert_eq!((pool.idle(), pool.allocated_total()), (3, 3));
        let bufs: Vec<_> = (0..3).map(|_| pool.take()).collect();
        assert_eq!(pool.allocated_total(), 3);
        bufs.into_iter().for_each(|b| pool.give(b));
    }

    #[test]
    fn zero_max_idle_frees_everything() {
        let mut pool = BufferPool::new(32, 0);
        let a = pool.take();
        pool.give(a);
        assert_eq!((pool.idle(), pool.freed_total()), (0, 1));
    }

    #[test]
    #[should_panic(expected = "non-zero")]
    fn zero_capacity_is_rejected() {
        let _ = BufferPool::new(0, 1);
    }
}

//! The ring of send instants of one connection's messages in flight. Knows nothing of sockets,
//! clocks or counters: it stores and returns `u64`s in order.

/// Send times (ticks) of the messages in flight, oldest first. Up to [`Ring::INLINE`] live in the
/// handler itself (no second allocation to miss in cache with thousands of connections); a deeper
/// pipeline gets one heap slice, allocated once.
pub(super) struct Ring {
    head: usize,
    len: usize,
    capacity: usize,
    inline: [u64; Self::INLINE],
    heap: Box<[u64]>,
}

impl Ring {
    const INLINE: usize = 4;

    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let heap = if capacity > Self::INLINE { vec![0; capacity].into_boxed_slice() } else { Box::default() };
        Self { head: 0, len: 0, capacity, inline: [0; Self::INLINE], heap }
    }

    fn slots(&mut self) -> &mut [u64] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends; a full ring (more sends than `-p`: cannot happen) drops the value.
    pub(super) fn push_back(&mut self, at: u64) {
        let (head, len, capacity) = (self.head, self.len, self.capacity);
        if len < capacity {
            // head < capacity and len < capacity: one conditional subtraction wraps (no division per message).
            let mut i = head + len;
            if i >= capacity {
                i -= capacity;
            }
            self.slots()[i] = at;
            self.len += 1;
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let (head, capacity) = (self.head, self.capacity);
        let at = self.slots()[head];
        self.head = if head + 1 == capacity { 0 } else { head + 1 };
        self.len -= 1;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_fifo_inline_and_on_the_heap() {
        for capacity in [1, 4, 5, 16] {
            let mut ring = Ring::new(capacity);
            for round in 0..3u64 {
                for i in 0..capacity as u64 {
                    ring.push_back(round * 100 + i);
                }
                ring.push_back(999); // full: dropped
                assert_eq!(ring.len(), capacity);
                for i in 0..capacity as u64 {
                    assert_eq!(ring.pop_front(), Some(round * 100 + i));
                }
                assert!(ring.is_empty());
                assert_eq!(ring.pop_front(), None);
            }
        }
    }

    #[test]
    fn ring_wraps_around_like_a_deque() {
        // Pushes and pops interleaved so the head visits every slot and the tail wraps past the end.
        for capacity in [1, 3, 4, 5, 16] {
            let mut ring = Ring::new(capacity);
            let mut model = std::collections::VecDeque::new();
            let mut x = 7u64;
            for step in 0..2_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if !(x >> 33).is_multiple_of(3) {
                    ring.push_back(step);
                    if model.len() < capacity {
                        model.push_back(step);
                    }
                } else {
                    assert_eq!(ring.pop_front(), model.pop_front(), "capacity {capacity}, step {step}");
                }
                assert_eq!(ring.len(), model.len());
            }
        }
    }
}

//! Handler timers (`Ctx::set_timer`): at most one per connection, with exact deadlines, kept by each
//! reactor apart from its timer wheel (whose tick is coarse, and whose entries idle connections pay for).
//! Only connections with a timer armed cost anything here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Deadlines in a min-heap of `(due, slot, arming)`, and the arming each slot's timer currently has. A
/// heap entry whose arming is not its slot's current one was replaced or cancelled (or its connection is
/// gone) and is dropped when it comes up, or by a sweep once such entries outnumber the live ones.
#[derive(Debug, Default)]
pub(crate) struct HandlerTimers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    armed: HashMap<usize, u64>,
    armings: u64,
}

/// Stale heap entries tolerated beyond twice the live ones before a sweep.
const SWEEP_SLACK: usize = 1024;

impl HandlerTimers {
    /// Arms (or re-arms) `slot`'s timer for `due`.
    pub(crate) fn arm(&mut self, slot: usize, due: Instant) {
        self.armings += 1;
        self.armed.insert(slot, self.armings);
        self.heap.push(Reverse((due, slot, self.armings)));
        // Re-arming on every message leaves replaced entries behind: sweep them once they outnumber the
        // live ones, so the heap stays proportional to the armed timers (amortised O(1) per arm).
        if self.heap.len() > 2 * self.armed.len() + SWEEP_SLACK {
            let armed = &self.armed;
            self.heap.retain(|Reverse((_, slot, arming))| armed.get(slot) == Some(arming));
        }
    }

    /// Disarms `slot`'s timer (when the handler cancels it, or the connection goes).
    pub(crate) fn cancel(&mut self, slot: usize) {
        self.armed.remove(&slot);
    }

    /// The earliest deadline in the heap (possibly of a timer since replaced: waking up for it is harmless).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Disarms the timers due at `now` and appends their slots to `due`, earliest first. (The caller
    /// reuses `due`, and fires the timers after this returns, so a timer re-armed with a zero delay while
    /// firing waits for the next turn of the loop.)
    pub(crate) fn take_due(&mut self, now: Instant, due: &mut Vec<usize>) {
        while let Some(&Reverse((at, slot, arming))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.armed.get(&slot) == Some(&arming) {
                self.armed.remove(&slot);
                due.push(slot);
            }
        }
    }

    /// [`HandlerTimers::take_due`] into a new vector.
    #[cfg(test)]
    fn due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        self.take_due(now, &mut due);
        due
    }

    /// Heap entries, live and stale.
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_due_timers_in_order_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = HandlerTimers::default();
        timers.arm(3, ms(30));
        timers.arm(1, ms(10));
        timers.arm(2, ms(20));
        assert_eq!(timers.next_due(), Some(ms(10)));
        assert_eq!(timers.due(ms(5)), Vec::<usize>::new());
        assert_eq!(timers.due(ms(20)), vec![1, 2]);
        assert_eq!(timers.due(ms(100)), vec![3]);
        assert_eq!(timers.due(ms(1000)), Vec::<usize>::new());
        assert_eq!(timers.next_due(), None);
    }

    #[test]
    fn a_replaced_or_cancelled_timer_does_not_fire() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = HandlerTimers::default();
        timers.arm(1, ms(10));
        timers.arm(1, ms(50)); // replaces
        timers.arm(2, ms(10));
        timers.cancel(2);
        assert_eq!(timers.due(ms(20)), Vec::<usize>::new());
        assert_eq!(timers.due(ms(50)), vec![1]);
        // A slot reused by a new connection: the old entry stays dead, the new arming fires.
        timers.arm(4, ms(60));
        timers.cancel(4);
        timers.arm(4, ms(70));
        assert_eq!(timers.due(ms(65)), Vec::<usize>::new());
        assert_eq!(timers.due(ms(70)), vec![4]);
    }

    #[test]
    fn re_arming_forever_keeps_the_heap_bounded_and_the_live_timers() {
        let t0 = Instant::now();
        let mut timers = HandlerTimers::default();
        // Nine timers armed once, long ago (in heap terms), and one re-armed 100,000 times: every sweep
        // must keep the nine and the newest arming of the tenth.
        for slot in 1..10 {
            timers.arm(slot, t0 + Duration::from_secs(500));
        }
        for i in 0..100_000u64 {
            timers.arm(0, t0 + Duration::from_millis(1_000 + i));
            assert!(timers.heap_len() <= 2 * 10 + SWEEP_SLACK + 1, "heap grew to {}", timers.heap_len());
        }
        assert_eq!(timers.due(t0 + Duration::from_secs(100)), Vec::<usize>::new(), "a stale arming fired");
        let mut fired = timers.due(t0 + Duration::from_secs(1_000));
        fired.sort_unstable();
        assert_eq!(fired, (0..10).collect::<Vec<_>>());
        assert_eq!(timers.due(t0 + Duration::from_secs(10_000)), Vec::<usize>::new());
    }
}

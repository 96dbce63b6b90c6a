//! The hashed timer wheel that drives a reactor's deadlines.
//!
//! Owns: timers (a deadline and a value) and the arithmetic between ticks and [`Instant`]s.
//! Never touches: the clock (the caller passes `now` in; nothing here calls `Instant::now()`), sockets,
//! threads.
//!
//! One [`TimerWheel`] per reactor holds the handshake, idle, ping, pong and close-handshake deadlines of all
//! its connections: O(1) [`insert`](TimerWheel::insert), [`cancel`](TimerWheel::cancel) and
//! [`reschedule`](TimerWheel::reschedule), and a [`poll`](TimerWheel::poll) whose cost is proportional to
//! the ticks elapsed plus the timers it looks at, not to the number of timers armed.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wsloop::timer::TimerWheel;
//!
//! let start = Instant::now(); // the reactor reads the clock, the wheel never does
//! let mut wheel = TimerWheel::new(start);
//! let idle = wheel.insert_at(start + Duration::from_secs(60), "idle timeout");
//! wheel.insert_at(start + Duration::from_secs(10), "handshake timeout");
//!
//! // The reactor sleeps until the next tick that may have work, at the latest.
//! assert!(wheel.next_deadline().unwrap() <= start + Duration::from_secs(10));
//!
//! let now = start + Duration::from_secs(11);
//! while let Some(expired) = wheel.poll_at(now) {
//!     assert_eq!(expired, "handshake timeout");
//! }
//! assert_eq!(wheel.cancel(idle), Some("idle timeout"));
//! assert!(wheel.is_empty());
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use slab::Slab;

/// The default tick: 100 ms. Timers fire at most one tick late (plus however late the caller polls);
/// every deadline the reactor keeps (handshake, idle, ping, pong, close) is seconds long, so a coarse tick
/// costs nothing in precision and wakes an armed reactor at most ten times a second.
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);

/// The default number of slots: 512, one rotation is 51.2 s at the default tick. Longer deadlines wait
/// for their rotation in the same slots.
pub const DEFAULT_SLOTS: usize = 512;

/// The end of an intrusive list.
const NIL: u32 = u32::MAX;

/// A handle to an armed timer, returned by [`TimerWheel::insert`].
///
/// Keys are generation-checked: once a timer has fired or been cancelled, its key never matches another
/// timer that reuses the same storage slot until the 32-bit generation counter wraps (after 4 billion
/// timers). `Option<TimerKey>` is 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: NonZeroU32,
}

struct Entry<T> {
    value: T,
    /// The tick at which the timer is due: its deadline, or the first unswept tick if that was later.
    when: u64,
    generation: NonZeroU32,
    /// Which list holds the entry: a slot index, or the ready list (`slots`).
    list: u32,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List { head: NIL, tail: NIL };

/// A hashed timing wheel: timers hashed by deadline tick into a power-of-two number of slots, each slot a
/// doubly linked list threaded through a slab of entries.
///
/// Time is counted in ticks since an `origin` [`Instant`] chosen by the caller: tick `t` covers
/// `[origin + t·tick, origin + (t+1)·tick)`. Every method comes in a tick flavour (`insert`, `poll`, ...) and
/// an `Instant` flavour (`insert_at`, `poll_at`, ...); deadlines round *up* to a tick and `now` rounds
/// *down*, so a timer never fires before its deadline, and at most one tick after it (when polled on time).
///
/// **When a timer fires.** The wheel remembers the last tick it was polled at. A timer fires at the first
/// [`poll`](Self::poll) whose `now` is at least its deadline tick *and* later than the last polled tick.
/// So a deadline already in the past fires on the next poll that reaches a new tick, at most one tick late
/// — never during the same drain loop it was inserted in, which keeps a handler that re-arms a zero-delay
/// timer from spinning the reactor.
///
/// **Order.** Within one poll, timers fire in deadline-tick order, and in insertion order within a tick —
/// unless more than one full rotation of ticks passed since the last poll (a stalled reactor), in which
/// case every due timer still fires but in slot order.
///
/// **Far deadlines.** A timer more than one rotation away shares its slot with nearer ones; each entry keeps
/// its absolute deadline tick (the "rounds" counter, stored as a tick rather than decremented), and a
/// slot's sweep fires only the entries that are due.
///
/// Single-threaded, no locks. The slab and the slot array are allocated up front or grow amortised; once
/// warm, inserting and cancelling allocate nothing.
pub struct TimerWheel<T> {
    entries: Slab<Entry<T>>,
    /// `slots` wheel lists, then the ready list (swept as due, not yet returned by `poll`).
    lists: Box<[List]>,
    /// `slots - 1`.
    mask: u64,
    /// The first tick not yet swept. Every entry in a slot list has `when >= cursor`.
    cursor: u64,
    next_generation: u32,
    origin: Instant,
    tick: Duration,
}

impl<T> TimerWheel<T> {
    /// A wheel with [`DEFAULT_TICK`] and [`DEFAULT_SLOTS`], counting ticks from `origin`.
    pub fn new(origin: Instant) -> Self {
        Self::with_config(origin, DEFAULT_TICK, DEFAULT_SLOTS)
    }

    /// A wheel of `slots` slots of `tick` each, counting ticks from `origin`.
    ///
    /// # Panics
    /// If `tick` is zero or `slots` is not a power of two.
    pub fn with_config(origin: Instant, tick: Duration, slots: usize) -> Self {
        assert!(!tick.is_zero(), "TimerWheel tick must be non-zero");
        assert!(slots.is_power_of_two(), "TimerWheel slots must be a power of two, got {slots}");
        assert!(slots < u32::MAX as usize / 2, "TimerWheel slots must fit a u32 index, got {slots}");
        Self {
            entries: Slab::new(),
            lists: vec![EMPTY_LIST; slots + 1].into_boxed_slice(),
            mask: slots as u64 - 1,
            cursor: 0,
            next_generation: 1,
            origin,
            tick,
        }
    }

    /// Timers armed (including expired ones not yet returned by [`poll`](Self::poll)).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reserves room for at least `additional` more timers, so that arming them does not reallocate.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Bytes one armed timer takes in the wheel's slab (for memory budgets).
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// The length of a tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The number of slots (ticks per rotation).
    pub fn slots(&self) -> usize {
        self.lists.len() - 1
    }

    /// The instant tick 0 starts at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The tick `now` falls in (rounded down; instants before the origin are tick 0).
    pub fn now_tick(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / self.tick.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The first tick that starts at or after `deadline` (rounded up), so a timer never fires early.
    pub fn deadline_tick(&self, deadline: Instant) -> u64 {
        let nanos = deadline.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos.div_ceil(self.tick.as_nanos())).unwrap_or(u64::MAX)
    }

    /// The instant tick `tick` starts at, or `None` if [`Instant`] cannot represent it.
    pub fn instant_of(&self, tick: u64) -> Option<Instant> {
        let nanos = self.tick.as_nanos().checked_mul(u128::from(tick))?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        // The remainder is below 10^9, so it fits.
        let subsec = (nanos % 1_000_000_000) as u32;
        self.origin.checked_add(Duration::new(secs, subsec))
    }

    /// Arms a timer due at tick `deadline`; O(1).
    ///
    /// A deadline at or before the last polled tick fires on the next poll that reaches a new tick.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let generation = NonZeroU32::new(self.next_generation).unwrap_or(NonZeroU32::MIN);
        self.next_generation = generation.get().wrapping_add(1);
        let when = deadline.max(self.cursor);
        let index = self.entries.insert(Entry { value, when, generation, list: NIL, prev: NIL, next: NIL });
        let index = u32::try_from(index).expect("fewer than 4 billion timers are armed");
        self.link_back(self.slot_of(when), index);
        TimerKey { index, generation }
    }

    /// Arms a timer due at `deadline` (rounded up to a tick); O(1).
    pub fn insert_at(&mut self, deadline: Instant, value: T) -> TimerKey {
        self.insert(self.deadline_tick(deadline), value)
    }

    /// Disarms a timer and returns its value; O(1). `None` if it already fired or was cancelled (a stale
    /// key never touches another timer).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        if !self.contains(key) {
            return None;
        }
        self.unlink(key.index);
        Some(self.entries.remove(key.index as usize).value)
    }

    /// Whether `key`'s timer is still armed (not fired, not cancelled).
    pub fn contains(&self, key: TimerKey) -> bool {
        self.entries.get(key.index as usize).is_some_and(|e| e.generation == key.generation)
    }

    /// Moves an armed timer to tick `deadline`, keeping its key; O(1), no allocation. Returns `false`
    /// (and does nothing) if the timer already fired or was cancelled.
    ///
    /// Cheaper than cancel + insert for deadlines that keep moving, such as an idle timeout.
    pub fn reschedule(&mut self, key: TimerKey, deadline: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        self.unlink(key.index);
        let when = deadline.max(self.cursor);
        self.entries[key.index as usize].when = when;
        self.link_back(self.slot_of(when), key.index);
        true
    }

    /// [`reschedule`](Self::reschedule) to `deadline` (rounded up to a tick).
    pub fn reschedule_at(&mut self, key: TimerKey, deadline: Instant) -> bool {
        self.reschedule(key, self.deadline_tick(deadline))
    }

    /// Returns the value of one expired timer (deadline tick ≤ `now`), removing it, or `None` when no more
    /// timers are due at `now`.
    ///
    /// Call it in a loop until it returns `None` (`while let Some(v) = wheel.poll(now)`); the wheel is free
    /// to use between calls, so a handler can insert, cancel or reschedule timers. Call it again (with a
    /// new `now`) after the time [`next_expiry`](Self::next_expiry) reports. Ticks are swept one at a time,
    /// or all slots at once when more than a rotation has passed. `now` is capped at `u64::MAX - 1`, so a
    /// timer at tick `u64::MAX` never fires.
    #[must_use = "an expired timer's value is returned only once"]
    pub fn poll(&mut self, now: u64) -> Option<T> {
        let now = now.min(u64::MAX - 1);
        loop {
            if let Some(index) = self.pop_ready() {
                return Some(self.entries.remove(index as usize).value);
            }
            if self.cursor > now {
                return None;
            }
            if now - self.cursor > self.mask {
                // More than a rotation to catch up: one pass over every slot, starting at the cursor's.
                for offset in 0..=self.mask {
                    self.sweep(self.slot_of(self.cursor + offset), now);
                }
                self.cursor = now + 1;
            } else {
                self.sweep(self.slot_of(self.cursor), self.cursor);
                self.cursor += 1;
            }
        }
    }

    /// [`poll`](Self::poll) at the tick `now` falls in.
    #[must_use = "an expired timer's value is returned only once"]
    pub fn poll_at(&mut self, now: Instant) -> Option<T> {
        self.poll(self.now_tick(now))
    }

    /// An iterator over the values of the timers expired at tick `now` (see [`poll`](Self::poll)).
    /// The wheel is borrowed until the iterator is dropped; use `poll` to re-arm timers while draining.
    pub fn expired(&mut self, now: u64) -> Expired<'_, T> {
        Expired { wheel: self, now }
    }

    /// A tick at which to poll next, or `None` when no timer is armed.
    ///
    /// Never later than the earliest timer's tick, and exact when that timer is less than a rotation away;
    /// it may be earlier (a slot holding only timers of later rotations), in which case the poll at that
    /// tick fires nothing and the next call looks further. Returns the last polled tick when expired
    /// timers are waiting to be returned by [`poll`](Self::poll). O(slots) in the worst case, no allocation.
    #[must_use]
    pub fn next_expiry(&self) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        if self.lists[self.ready_list() as usize].head != NIL {
            return Some(self.cursor.saturating_sub(1));
        }
        (0..=self.mask)
            .map_while(|offset| self.cursor.checked_add(offset))
            .find(|&tick| self.lists[self.slot_of(tick) as usize].head != NIL)
    }

    /// The instant [`next_expiry`](Self::next_expiry) begins at: when to call [`poll_at`](Self::poll_at) next.
    /// `None` when no timer is armed. Compute the reactor's poll timeout as
    /// `deadline.saturating_duration_since(now)`.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_expiry().and_then(|tick| self.instant_of(tick))
    }

    fn slot_of(&self, tick: u64) -> u32 {
        // The mask is below the slot count, which fits a `u32` (checked in `with_config`).
        (tick & self.mask) as u32
    }

    fn ready_list(&self) -> u32 {
        (self.lists.len() - 1) as u32
    }

    /// Moves the entries of `slot` due at or before `limit` to the back of the ready list, in list order.
    fn sweep(&mut self, slot: u32, limit: u64) {
        let ready = self.ready_list();
        let mut index = self.lists[slot as usize].head;
        while index != NIL {
            let entry = &self.entries[index as usize];
            let (next, due) = (entry.next, entry.when <= limit);
            if due {
                self.unlink(index);
                self.link_back(ready, index);
            }
            index = next;
        }
    }

    fn pop_ready(&mut self) -> Option<u32> {
        let head = self.lists[self.ready_list() as usize].head;
        if head == NIL {
            return None;
        }
        self.unlink(head);
        Some(head)
    }

    fn link_back(&mut self, list: u32, index: u32) {
        let tail = self.lists[list as usize].tail;
        let entry = &mut self.entries[index as usize];
        entry.list = list;
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[list as usize].head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[list as usize].tail = index;
    }

    fn unlink(&mut self, index: u32) {
        let Entry { list, prev, next, .. } = self.entries[index as usize];
        if prev == NIL {
            self.lists[list as usize].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list as usize].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.entries.len())
            .field("tick", &self.tick)
            .field("slots", &self.slots())
            .field("next_unswept_tick", &self.cursor)
            .finish()
    }
}

/// The values of expired timers, from [`TimerWheel::expired`].
pub struct Expired<'a, T> {
    wheel: &'a mut TimerWheel<T>,
    now: u64,
}

impl<T> Iterator for Expired<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.wheel.poll(self.now)
    }
}

impl<T> fmt::Debug for Expired<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expired").field("now", &self.now).field("wheel", &self.wheel).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

    use super::*;

    fn wheel<T>(slots: usize) -> TimerWheel<T> {
        TimerWheel::with_config(Instant::now(), Duration::from_millis(10), slots)
    }

    fn drain<T>(w: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        w.expired(now).collect()
    }

    #[test]
    fn fires_in_deadline_order_at_the_right_tick() {
        let mut w = wheel(8);
        w.insert(5, "five");
        w.insert(3, "three");
        w.insert(7, "seven");
        w.insert(3, "three again");
        assert_eq!(drain(&mut w, 2), Vec::<&str>::new());
        assert_eq!(drain(&mut w, 3), ["three", "three again"]);
        assert_eq!(drain(&mut w, 4), Vec::<&str>::new());
        w.insert(6, "six");
        assert_eq!(drain(&mut w, 7), ["five", "six", "seven"]);
        assert!(w.is_empty());
    }

    #[test]
    fn does_not_fire_before_its_tick() {
        let mut w = wheel(16);
        w.insert(10, ());
        for now in 0..10 {
            assert_eq!(w.poll(now), None, "fired early at {now}");
        }
        assert_eq!(w.poll(10), Some(()));
    }

    #[test]
    fn cancel_before_firing_returns_the_value_and_it_never_fires() {
        let mut w = wheel(8);
        let a = w.insert(4, 'a');
        w.insert(4, 'b');
        assert!(w.contains(a));
        assert_eq!(w.cancel(a), Some('a'));
        assert!(!w.contains(a));
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, 100), ['b']);
    }

    #[test]
    fn cancel_after_firing_returns_none() {
        let mut w = wheel(8);
        let k = w.insert(1, 1);
        assert_eq!(drain(&mut w, 1), [1]);
        assert_eq!(w.cancel(k), None);
        assert_eq!(w.cancel(k), None);
    }

    #[test]
    fn stale_key_cannot_cancel_a_timer_that_reused_its_slot() {
        let mut w = wheel(8);
        let old = w.insert(3, "old");
        assert_eq!(w.cancel(old), Some("old"));
        let new = w.insert(3, "new");
        assert_eq!(old.index, new.index, "the slab slot was reused");
        assert_eq!(w.cancel(old), None);
        assert!(!w.reschedule(old, 100));
        assert!(w.contains(new));
        assert_eq!(drain(&mut w, 3), ["new"]);

        // The same after firing rather than cancelling.
        let fired = w.insert(5, "fired");
        assert_eq!(drain(&mut w, 5), ["fired"]);
        let reused = w.insert(9, "reused");
        assert_eq!(fired.index, reused.index);
        assert_eq!(w.cancel(fired), None);
        assert_eq!(w.cancel(reused), Some("reused"));
    }

    #[test]
    fn far_deadlines_wait_for_their_rotation() {
        let mut w = wheel(8);
        w.insert(3, "near");
        w.insert(3 + 8, "one rotation");
        w.insert(3 + 8 * 5, "five rotations");
        let mut fired = Vec::new();
        for now in 0..=50 {
            for v in w.expired(now) {
                fired.push((now, v));
            }
        }
        assert_eq!(fired, [(3, "near"), (11, "one rotation"), (43, "five rotations")]);
    }

    #[test]
    fn a_jump_over_several_rotations_fires_exactly_the_due_timers() {
        let mut w = wheel(8);
        for deadline in [2, 9, 17, 30, 31, 32, 33, 100] {
            w.insert(deadline, deadline);
        }
        let mut fired = drain(&mut w, 31);
        fired.sort_unstable();
        assert_eq!(fired, [2, 9, 17, 30, 31]);
        assert_eq!(drain(&mut w, 32), [32]);
        assert_eq!(drain(&mut w, 99), [33]);
        assert_eq!(drain(&mut w, 100), [100]);
    }

    #[test]
    fn many_timers_in_one_slot() {
        let mut w = wheel(8);
        for i in 0..1000u32 {
            // Ticks 4, 12, 20: all in slot 4.
            w.insert(4 + 8 * u64::from(i % 3), i);
        }
        let at4 = drain(&mut w, 4);
        assert_eq!(at4, (0..1000).filter(|i| i % 3 == 0).collect::<Vec<_>>(), "insertion order within a tick");
        assert_eq!(drain(&mut w, 11), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 12).len(), 333);
        assert_eq!(drain(&mut w, 20).len(), 333);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll_that_reaches_a_new_tick() {
        let mut w = wheel(8);
        w.insert(0, "at origin");
        assert_eq!(w.poll(0), Some("at origin"));
        assert_eq!(w.poll(10), None);
        w.insert(3, "late");
        w.insert(10, "now");
        assert_eq!(w.poll(10), None, "tick 10 was already swept");
        assert_eq!(w.next_expiry(), Some(11));
        assert_eq!(drain(&mut w, 11), ["late", "now"]);
    }

    #[test]
    fn rearming_a_zero_delay_timer_while_draining_does_not_spin() {
        let mut w = wheel(8);
        w.insert(1, 0u32);
        let mut fired = 0;
        while let Some(n) = w.poll(1) {
            fired += 1;
            assert!(fired < 10, "re-armed timer fired in the same drain");
            w.insert(1, n + 1);
        }
        assert_eq!(fired, 1);
        assert_eq!(w.poll(2), Some(1));
    }

    #[test]
    fn handlers_can_cancel_other_due_timers_while_draining() {
        let mut w = wheel(8);
        w.insert(2, 'a');
        let b = w.insert(2, 'b');
        w.insert(2, 'c');
        assert_eq!(w.poll(2), Some('a'));
        assert_eq!(w.cancel(b), Some('b'), "a due but not yet returned timer can be cancelled");
        assert_eq!(w.poll(2), Some('c'));
        assert_eq!(w.poll(2), None);
    }

    #[test]
    fn reschedule_moves_a_timer_and_keeps_its_key() {
        let mut w = wheel(8);
        let k = w.insert(3, "idle");
        assert!(w.reschedule(k, 20));
        assert_eq!(drain(&mut w, 19), Vec::<&str>::new());
        assert!(w.reschedule(k, 21));
        assert_eq!(drain(&mut w, 20), Vec::<&str>::new());
        assert!(w.reschedule(k, 5), "moving into the past: fires on the next new tick");
        assert_eq!(drain(&mut w, 21), ["idle"]);
        assert!(!w.reschedule(k, 30));
    }

    #[test]
    fn next_expiry_is_exact_within_a_rotation_and_never_late() {
        let mut w = wheel(8);
        assert_eq!(w.next_expiry(), None);
        w.insert(21, ());
        // Slot 5 only holds a timer two rotations away: an early wake-up is allowed, a late one is not.
        assert_eq!(w.next_expiry(), Some(5));
        assert_eq!(w.poll(5), None);
        assert_eq!(w.next_expiry(), Some(13));
        assert_eq!(w.poll(13), None);
        assert_eq!(w.next_expiry(), Some(21));
        w.insert(15, ());
        assert_eq!(w.next_expiry(), Some(15));
        w.insert(14, ());
        w.insert(14, ());
        assert_eq!(w.poll(14), Some(()));
        assert_eq!(w.next_expiry(), Some(14), "an expired timer is still waiting to be returned");
        assert_eq!(w.poll(14), Some(()));
        assert_eq!(w.next_expiry(), Some(15));
    }

    #[test]
    fn instants_round_deadlines_up_and_now_down() {
        let origin = Instant::now();
        let mut w = TimerWheel::with_config(origin, Duration::from_millis(100), 8);
        let ms = Duration::from_millis;
        assert_eq!(w.now_tick(origin + ms(299)), 2);
        assert_eq!(w.deadline_tick(origin + ms(201)), 3);
        assert_eq!(w.deadline_tick(origin + ms(300)), 3);
        assert_eq!(w.now_tick(origin.checked_sub(ms(5)).unwrap_or(origin)), 0);
        w.insert_at(origin + ms(250), "t");
        assert_eq!(w.next_deadline(), Some(origin + ms(300)));
        assert_eq!(w.poll_at(origin + ms(299)), None, "never early");
        assert_eq!(w.poll_at(origin + ms(300)), Some("t"));
        assert_eq!(w.next_deadline(), None);
        // Far ticks saturate to `None` or a far instant, never a panic.
        let _ = w.instant_of(u64::MAX);
    }

    #[test]
    fn default_config_is_documented() {
        let w: TimerWheel<()> = TimerWheel::new(Instant::now());
        assert_eq!((w.tick(), w.slots()), (DEFAULT_TICK, DEFAULT_SLOTS));
        assert_eq!(std::mem::size_of::<Option<TimerKey>>(), 8);
        // Debug does not need `T: Debug`.
        struct Opaque;
        let _ = format!("{:?}", wheel::<Opaque>(8));
    }

    #[test]
    fn polling_at_the_end_of_time_terminates() {
        let mut w = wheel(8);
        let never = w.insert(u64::MAX, "never");
        w.insert(5, "soon");
        assert_eq!(drain(&mut w, u64::MAX), ["soon"]);
        assert_eq!(w.poll(u64::MAX), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_expiry(), Some(u64::MAX), "no overflow at the end of time");
        assert_eq!(w.cancel(never), Some("never"));
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn slots_must_be_a_power_of_two() {
        let _ = TimerWheel::<()>::with_config(Instant::now(), DEFAULT_TICK, 500);
    }

    /// One step of the model-checking property.
    #[derive(Clone, Debug)]
    enum Op {
        /// Insert at `last polled tick + offset` (negative: in the past).
        Insert(i8),
        /// Cancel the n-th key ever returned (maybe fired or cancelled already).
        Cancel(usize),
        /// Reschedule the n-th key ever returned to `last polled tick + offset`.
        Reschedule(usize, i8),
        /// Poll until `None` at `last polled tick + delta`.
        Advance(u8),
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            // Offsets and jumps span several rotations of the 8-slot wheel under test.
            let offset = |g: &mut Gen| (i8::arbitrary(g) % 40) - 4;
            match u8::arbitrary(g) % 8 {
                0..=2 => Self::Insert(offset(g)),
                3 => Self::Cancel(usize::arbitrary(g)),
                4 => Self::Reschedule(usize::arbitrary(g), offset(g)),
                _ => Self::Advance(u8::arbitrary(g) % 30),
            }
        }

        fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
            match *self {
                Self::Insert(o) => Box::new(o.shrink().map(Op::Insert)),
                Self::Cancel(i) => Box::new(i.shrink().map(Op::Cancel)),
                Self::Reschedule(i, o) => Box::new(i.shrink().map(move |i| Self::Reschedule(i, o))),
                Self::Advance(d) => Box::new(d.shrink().map(Op::Advance)),
            }
        }
    }

    /// The reference: pending timers as id → due tick, and the first tick not yet polled.
    struct Model {
        pending: BTreeMap<u64, u64>,
        cursor: u64,
    }

    impl Model {
        fn due(&self, deadline: u64) -> u64 {
            deadline.max(self.cursor)
        }

        /// Removes and returns the ids due at `now`, as a set.
        fn advance(&mut self, now: u64) -> BTreeMap<u64, u64> {
            if now < self.cursor {
                return BTreeMap::new();
            }
            let due: BTreeMap<u64, u64> =
                self.pending.iter().filter(|(_, &when)| when <= now).map(|(&id, &when)| (id, when)).collect();
            for id in due.keys() {
                self.pending.remove(id);
            }
            self.cursor = now + 1;
            due
        }
    }

    fn matches_the_model(ops: Vec<Op>) -> Result<(), String> {
        const SLOTS: u64 = 8;
        let mut w = wheel::<u64>(SLOTS as usize);
        let mut model = Model { pending: BTreeMap::new(), cursor: 0 };
        let mut keys: Vec<(u64, TimerKey)> = Vec::new();
        let mut now = 0u64;
        let at = |now: u64, offset: i8| now.saturating_add_signed(i64::from(offset));
        for op in ops {
            match op {
                Op::Insert(offset) => {
                    let id = keys.len() as u64;
                    let deadline = at(now, offset);
                    keys.push((id, w.insert(deadline, id)));
                    model.pending.insert(id, model.due(deadline));
                }
                Op::Cancel(i) if !keys.is_empty() => {
                    let (id, key) = keys[i % keys.len()];
                    let expected = model.pending.remove(&id).map(|_| id);
                    let got = w.cancel(key);
                    if got != expected {
                        return Err(format!("cancel({id}): wheel {got:?}, model {expected:?}"));
                    }
                }
                Op::Reschedule(i, offset) if !keys.is_empty() => {
                    let (id, key) = keys[i % keys.len()];
                    let deadline = at(now, offset);
                    let due = model.due(deadline);
                    let expected = model.pending.get_mut(&id).map(|when| *when = due).is_some();
                    let got = w.reschedule(key, deadline);
                    if got != expected {
                        return Err(format!("reschedule({id}): wheel {got}, model {expected}"));
                    }
                }
                Op::Cancel(_) | Op::Reschedule(..) => {}
                Op::Advance(delta) => {
                    let lag = now + u64::from(delta) - model.cursor.min(now + u64::from(delta));
                    now += u64::from(delta);
                    let fired: Vec<u64> = w.expired(now).collect();
                    let expected = model.advance(now);
                    let fired_set: BTreeMap<u64, u64> =
                        fired.iter().map(|id| (*id, expected.get(id).copied().unwrap_or(u64::MAX))).collect();
                    if fired.len() != fired_set.len() || fired_set != expected {
                        return Err(format!(
                            "advance to {now}: wheel fired {fired:?}, model {:?}",
                            expected.keys().collect::<Vec<_>>()
                        ));
                    }
                    if lag < SLOTS {
                        let whens: Vec<u64> = fired.iter().map(|id| expected[id]).collect();
                        if whens.windows(2).any(|p| p[0] > p[1]) {
                            return Err(format!("advance to {now}: out of order {fired:?} (due {whens:?})"));
                        }
                    }
                }
            }
            if w.len() != model.pending.len() {
                return Err(format!("len: wheel {}, model {}", w.len(), model.pending.len()));
            }
            let earliest = model.pending.values().min().copied();
            match (w.next_expiry(), earliest) {
                (None, None) => {}
                (Some(next), Some(earliest)) if next <= earliest && next >= model.cursor => {}
                (next, earliest) => return Err(format!("next_expiry {next:?} vs earliest due {earliest:?}")),
            }
        }
        Ok(())
    }

    #[test]
    fn random_operations_fire_exactly_what_a_btreemap_model_fires() {
        fn prop(ops: Vec<Op>) -> TestResult {
            match matches_the_model(ops) {
                Ok(()) => TestResult::passed(),
                Err(msg) => TestResult::error(msg),
            }
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<Op>) -> TestResult);
    }
}

//! The run's shared state: the fixed settings every connection reads ([`Run`]), the per-thread
//! counters and histograms ([`Shard`], [`Local`]) and their totals. Sends nothing and prints nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;

use super::clock::Clock;

/// Fixed settings of a run, shared by every connection, and the rarely touched shared state.
pub(super) struct Run {
    /// One masked data frame.
    pub(super) frame: Box<[u8]>,
    /// `pipeline` copies of `frame`, back to back: the first burst of a connection, in one write.
    pub(super) burst: Box<[u8]>,
    pub(super) pipeline: usize,
    pub(super) size: usize,
    pub(super) text: bool,
    pub(super) clock: Clock,
    pub(super) epoch: Instant,
    /// The end of the warmup and the deadline, in ticks.
    pub(super) measure_from: u64,
    pub(super) deadline: Option<u64>,
    /// Ticks between two sends of one reactor thread (`--rate` split over the threads).
    pub(super) pace: Option<u64>,
    pub(super) opened: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) closed: AtomicU64,
    /// Nanoseconds since `epoch` of the last handshake completed.
    pub(super) last_open_ns: AtomicU64,
    /// Ticks of the last connection finishing its share (with -n).
    pub(super) finish_ticks: AtomicU64,
    /// Echoes never received, summed over connections when they close.
    pub(super) unanswered: AtomicU64,
    pub(super) connect_errors: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) closes: Mutex<BTreeMap<u16, u64>>,
    pub(super) latency: Mutex<Histogram<u64>>,
    pub(super) handshake: Mutex<Histogram<u64>>,
    pub(super) shards: Mutex<Vec<Arc<Shard>>>,
}

/// Counters of one reactor thread, written only by that thread (relaxed load + store), read by the
/// main thread for the progress bar and the result.
#[derive(Default)]
pub(super) struct Shard {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) measured: AtomicU64,
    pub(super) measured_bytes: AtomicU64,
    pub(super) mismatched: AtomicU64,
    pub(super) unexpected: AtomicU64,
}

/// A thread's counters as plain integers; published to its [`Shard`] every [`PUBLISH_EVERY`] messages
/// received and whenever a connection opens or closes.
#[derive(Default, Debug, Clone, Copy)]
pub(super) struct Counts {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) measured: u64,
    pub(super) measured_bytes: u64,
    pub(super) mismatched: u64,
    pub(super) unexpected: u64,
}

/// How often (in messages received) a thread publishes its counts for the progress bar.
pub(super) const PUBLISH_EVERY: u64 = 64;

impl Shard {
    pub(super) fn publish(&self, c: &Counts) {
        self.sent.store(c.sent, Relaxed);
        self.received.store(c.received, Relaxed);
        self.measured.store(c.measured, Relaxed);
        self.measured_bytes.store(c.measured_bytes, Relaxed);
        self.mismatched.store(c.mismatched, Relaxed);
        self.unexpected.store(c.unexpected, Relaxed);
    }
}

/// What a reactor thread keeps for itself: its counters and histograms (merged into [`Run`] when its
/// connections close) and its pacing clock.
pub(super) struct Local {
    pub(super) shard: Arc<Shard>,
    pub(super) counts: Counts,
    pub(super) latency: Histogram<u64>,
    pub(super) handshake: Histogram<u64>,
    pub(super) next_send: Option<u64>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // Latencies are recorded in clock ticks: up to an hour of ticks at 10 GHz, 3 significant digits.
    Histogram::new_with_bounds(1, 36_000_000_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Run {
    /// Runs `f` with this reactor thread's [`Local`], made (and its shard registered) on first use.
    pub(super) fn local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|cell| {
            let mut slot = cell.borrow_mut();
            let local = slot.get_or_insert_with(|| {
                let shard = Arc::new(Shard::default());
                lock(&self.shards).push(shard.clone());
                Local {
                    shard,
                    counts: Counts::default(),
                    latency: new_histogram(),
                    handshake: new_histogram(),
                    next_send: None,
                }
            });
            f(local)
        })
    }

    /// Moves this thread's histograms into the run's (when a connection ends, so the last one to end on
    /// each thread leaves nothing behind).
    pub(super) fn flush_local(&self) {
        self.local(|l| {
            l.shard.publish(&l.counts);
            if !l.latency.is_empty() {
                let _ = lock(&self.latency).add(&l.latency);
                l.latency.reset();
            }
            if !l.handshake.is_empty() {
                let _ = lock(&self.handshake).add(&l.handshake);
                l.handshake.reset();
            }
        });
    }

    pub(super) fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub(super) fn finished(&self) -> u64 {
        self.closed.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// Totals summed over the reactor threads' shards.
#[derive(Default, Debug, Clone, Copy)]
pub(super) struct Totals {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) measured: u64,
    pub(super) measured_bytes: u64,
    pub(super) mismatched: u64,
    pub(super) unexpected: u64,
}

pub(super) fn totals(run: &Run) -> Totals {
    let mut t = Totals::default();
    for s in lock(&run.shards).iter() {
        t.sent += s.sent.load(Relaxed);
        t.received += s.received.load(Relaxed);
        t.measured += s.measured.load(Relaxed);
        t.measured_bytes += s.measured_bytes.load(Relaxed);
        t.mismatched += s.mismatched.load(Relaxed);
        t.unexpected += s.unexpected.load(Relaxed);
    }
    t
}

/// Connections open now (opened and not yet closed).
pub(super) fn open_connections(run: &Run) -> u64 {
    let opened = run.opened.load(Relaxed);
    opened - run.closed.load(Relaxed).min(opened)
}

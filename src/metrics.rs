//! Per-reactor counters: relaxed atomics in a cache-line-aligned block, written only by their reactor
//! thread and read by anyone through a [`MetricsSnapshot`].
//!
//! Owns: counting. Never touches: I/O or formatting for a particular scraper beyond the snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// One reactor's counters. Aligned to a cache line so reactors never share one.
        #[repr(align(128))]
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A point-in-time copy of counters, summed over reactors.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl MetricsSnapshot {
            /// Adds one reactor's counters to this snapshot.
            pub fn add(&mut self, c: &Counters) {
                $( self.$name += c.$name.load(Relaxed); )*
            }

            /// Looks a counter up by its name (e.g. `"active_connections"`).
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => None,
                }
            }

            /// Every counter as `(name, value)`.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
        }
    };
}

counters! {
    /// TCP connections accepted.
    connections_accepted,
    /// Connections that completed the WebSocket upgrade.
    connections_upgraded,
    /// Connections currently held by reactors (handshaking or open).
    active_connections,
    /// Connections closed (for any reason).
    connections_closed,
    /// Connections refused at accept because `max_connections` was reached.
    connections_refused,
    /// Upgrade requests answered with an HTTP error.
    handshake_failures,
    /// Text messages received.
    text_messages_received,
    /// Binary messages received.
    binary_messages_received,
    /// Payload bytes of messages received.
    bytes_received,
    /// Messages sent (including broadcast and published copies).
    messages_sent,
    /// Bytes written to sockets.
    bytes_written,
    /// Pings received.
    pings_received,
    /// Pongs received.
    pongs_received,
    /// Close frames received.
    closes_received,
    /// Connections failed for a protocol violation or a size limit.
    protocol_errors,
    /// Handler callbacks that panicked (each closed its connection with 1011).
    handler_panics,
    /// Messages dropped by the `Drop` backpressure policy.
    messages_dropped,
    /// Peers closed by the `Close` backpressure policy.
    slow_peers_closed,
    /// Handshakes that timed out.
    handshake_timeouts,
    /// Connections closed for idleness.
    idle_timeouts,
    /// Connections closed because a ping went unanswered.
    pong_timeouts,
    /// Close handshakes that timed out.
    close_timeouts,
    /// Buffers currently taken from reactor pools.
    pool_buffers_outstanding,
}

impl Counters {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n` from a gauge.
    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_reactors_and_looks_up_by_name() {
        let a = Counters::default();
        let b = Counters::default();
        Counters::add(&a.active_connections, 2);
        Counters::add(&b.active_connections, 3);
        Counters::sub(&b.active_connections, 1);
        let mut snap = MetricsSnapshot::default();
        snap.add(&a);
        snap.add(&b);
        assert_eq!(snap.active_connections, 4);
        assert_eq!(snap.get("active_connections"), Some(4));
        assert_eq!(snap.get("no_such_counter"), None);
    }

    #[test]
    fn counters_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<Counters>() >= 64);
    }
}

//! Counters and what is made of them: per-reactor relaxed atomics in a cache-line-aligned block
//! ([`Counters`], written only by their reactor thread), a point-in-time sum over reactors
//! ([`MetricsSnapshot`]), rates over the last interval ([`RateMeter`], [`MetricsReport`]), a human table
//! ([`format_metrics`]) and the Prometheus text format ([`prometheus_text`]). [`MetricsCollector`] is
//! the thread-safe variant for code outside the engine (the blocking client, the pool).
//!
//! Owns: counting, rates and the text formats. Never touches: I/O or clocks (every rate takes the
//! caller's `now`; only [`MetricsCollector::new`] reads the clock once, for its baseline).
//!
//! Every counter has a name (the field name), a kind ([`MetricKind`]), a group ([`Group`]) and a help
//! text; [`counter_descriptors`] lists them in display order. Three counters are also broken down into
//! fixed buckets: closes by close code ([`CloseCodeBucket`], flat names such as
//! `connections_closed_1000`), handshake failures by reason ([`HandshakeFailure`], flat names such
//! as `handshake_failures_not_found`) and held TCP connections by phase ([`TcpPhase`], flat names such
//! as `tcp_connections_open`).
//!
//! Two gauges count connections, and they answer different questions: `active_connections` is the
//! number of WebSocket connections (open, or in their close handshake); `tcp_connections` is every
//! TCP connection held, by [`TcpPhase`] (handshake, http, open, closing). A plain HTTP connection, such
//! as the one scraping `/metrics`, is in `tcp_connections{phase="http"}` and not in
//! `active_connections`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

mod buckets;
mod collector;
mod format;
mod rate;

pub use buckets::{CloseCodeBucket, HandshakeFailure, MessageKind, TcpPhase};
pub use collector::MetricsCollector;

/// Whether the engine's counters are compiled in (the default `metrics` feature). Without it every
/// `Counters` update is a no-op and snapshots read zero: that build exists to measure what counting
/// costs (see docs/benchmarks.md).
pub const ENABLED: bool = cfg!(feature = "metrics");
pub use format::{format_metrics, prometheus_text};
pub use rate::{MetricsReport, RateMeter, Rates};

/// Whether a counter only grows or can go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// Monotonic: only grows (exported as a Prometheus `counter` named `..._total`).
    Counter,
    /// Goes up and down (exported as a Prometheus `gauge`).
    Gauge,
}

/// The section a counter is shown in by [`format_metrics`], in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Group {
    /// Accepted, upgraded, active and closed connections.
    Connections,
    /// Messages received and sent.
    Messages,
    /// Payload bytes received and sent, bytes written to sockets.
    Bytes,
    /// Control frames (ping, pong, close) received and sent.
    Frames,
    /// Refusals, failures, protocol errors, panics and backpressure limits.
    Errors,
    /// Connections ended by a deadline.
    Timeouts,
    /// Buffer pools.
    Buffers,
}

impl Group {
    /// Every group, in display order.
    pub const ALL: [Self; 7] =
        [Self::Connections, Self::Messages, Self::Bytes, Self::Frames, Self::Errors, Self::Timeouts, Self::Buffers];

    /// The section title (e.g. `"errors/limits"`).
    pub fn title(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Messages => "messages",
            Self::Bytes => "bytes",
            Self::Frames => "frames",
            Self::Errors => "errors/limits",
            Self::Timeouts => "timeouts",
            Self::Buffers => "buffers",
        }
    }
}

/// What is known about one scalar counter: its name, kind, group and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterDescriptor {
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    group: Group,
}

impl CounterDescriptor {
    /// The counter's name: its field name in [`Counters`] and [`MetricsSnapshot`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One line saying what it counts.
    pub fn help(&self) -> &'static str {
        self.help.trim()
    }

    /// Counter or gauge.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The section it is shown in.
    pub fn group(&self) -> Group {
        self.group
    }
}

macro_rules! counters {
    ($( #[doc = $help:literal] $name:ident : $kind:ident in $group:ident, )*) => {
        /// One reactor's counters. Aligned to a cache line so reactors never share one.
        ///
        /// Written only by the owning reactor thread, through [`Counters::add`], [`Counters::sub`],
        /// [`Counters::set`] and the `record_*` helpers (relaxed load + store: no read-modify-write);
        /// read by anyone through [`MetricsSnapshot::add`].
        #[repr(align(128))]
        #[derive(Debug, Default)]
        pub struct Counters {
            $( #[doc = $help] pub $name: AtomicU64, )*
            /// Connections closed, by close code, indexed by [`CloseCodeBucket::index`]. Their sum
            /// equals `connections_closed` when every close goes through [`Counters::record_close`].
            pub connections_closed_by_code: [AtomicU64; CloseCodeBucket::COUNT],
            /// Handshake failures, by reason, indexed by [`HandshakeFailure::index`]. Their sum equals
            /// `handshake_failures` when every failure goes through
            /// [`Counters::record_handshake_failure`].
            pub handshake_failures_by_reason: [AtomicU64; HandshakeFailure::COUNT],
            /// Held TCP connections, by phase, indexed by [`TcpPhase::index`]. Their sum equals
            /// `tcp_connections` when every change goes through [`Counters::record_tcp_opened`],
            /// [`Counters::record_tcp_phase`] and [`Counters::record_tcp_closed`].
            pub tcp_connections_by_phase: [AtomicU64; TcpPhase::COUNT],
        }

        impl Counters {
            /// The counter called `name` (a scalar counter, or a bucket by its flat name such as
            /// `"connections_closed_1000"`), for code that picks counters by name.
            pub fn counter(&self, name: &str) -> Option<&AtomicU64> {
                match name {
                    $( stringify!($name) => Some(&self.$name), )*
                    _ => {
                        if let Some(b) = CloseCodeBucket::ALL.iter().find(|b| b.field_name() == name) {
                            return Some(&self.connections_closed_by_code[b.index()]);
                        }
                        if let Some(p) = TcpPhase::ALL.iter().find(|p| p.field_name() == name) {
                            return Some(&self.tcp_connections_by_phase[p.index()]);
                        }
                        HandshakeFailure::ALL
                            .iter()
                            .find(|k| k.field_name() == name)
                            .map(|k| &self.handshake_failures_by_reason[k.index()])
                    }
                }
            }
        }

        /// A point-in-time copy of counters, summed over reactors.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $( #[doc = $help] pub $name: u64, )*
            /// Connections closed, by close code, indexed by [`CloseCodeBucket::index`].
            pub connections_closed_by_code: [u64; CloseCodeBucket::COUNT],
            /// Handshake failures, by reason, indexed by [`HandshakeFailure::index`].
            pub handshake_failures_by_reason: [u64; HandshakeFailure::COUNT],
            /// Held TCP connections, by phase, indexed by [`TcpPhase::index`].
            pub tcp_connections_by_phase: [u64; TcpPhase::COUNT],
        }

        impl MetricsSnapshot {
            /// Adds one reactor's counters to this snapshot.
            pub fn add(&mut self, c: &Counters) {
                $( self.$name = self.$name.wrapping_add(c.$name.load(Relaxed)); )*
                for (sum, c) in self
                    .connections_closed_by_code
                    .iter_mut()
                    .zip(&c.connections_closed_by_code)
                {
                    *sum = sum.wrapping_add(c.load(Relaxed));
                }
                for (sum, c) in self
                    .handshake_failures_by_reason
                    .iter_mut()
                    .zip(&c.handshake_failures_by_reason)
                {
                    *sum = sum.wrapping_add(c.load(Relaxed));
                }
                for (sum, c) in self.tcp_connections_by_phase.iter_mut().zip(&c.tcp_connections_by_phase) {
                    *sum = sum.wrapping_add(c.load(Relaxed));
                }
            }

            /// Looks a counter up by its name (e.g. `"active_connections"`, `"connections_closed_1000"`,
            /// `"handshake_failures_not_found"`, `"tcp_connections_http"`).
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => {
                        if let Some(b) = CloseCodeBucket::ALL.iter().find(|b| b.field_name() == name) {
                            return Some(self.closed_with(*b));
                        }
                        if let Some(p) = TcpPhase::ALL.iter().find(|p| p.field_name() == name) {
                            return Some(self.tcp_connections_in(*p));
                        }
                        HandshakeFailure::ALL
                            .iter()
                            .find(|k| k.field_name() == name)
                            .map(|k| self.handshake_failures_for(*k))
                    }
                }
            }

            /// Every counter as `(name, value)`: the scalar counters in [`counter_descriptors`] order,
            /// then the close-code buckets, then the handshake-failure buckets, then the TCP phases (by
            /// their flat names).
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                let mut fields = vec![$( (stringify!($name), self.$name), )*];
                fields.extend(CloseCodeBucket::ALL.iter().map(|b| (b.field_name(), self.closed_with(*b))));
                fields.extend(
                    HandshakeFailure::ALL
                        .iter()
                        .map(|k| (k.field_name(), self.handshake_failures_for(*k))),
                );
                fields.extend(TcpPhase::ALL.iter().map(|p| (p.field_name(), self.tcp_connections_in(*p))));
                fields
            }
        }

        static DESCRIPTORS: &[CounterDescriptor] = &[
            $( CounterDescriptor {
                name: stringify!($name),
                help: $help,
                kind: MetricKind::$kind,
                group: Group::$group,
            }, )*
        ];
    };
}

counters! {
    /// TCP connections accepted.
    connections_accepted: Counter in Connections,
    /// Connections that completed the WebSocket upgrade (server) or opening handshake (client).
    connections_upgraded: Counter in Connections,
    /// WebSocket connections now (open or in their close handshake); plain HTTP and handshaking ones are not.
    active_connections: Gauge in Connections,
    /// TCP connections held now, in every phase (handshake, http, open, closing).
    tcp_connections: Gauge in Connections,
    /// Connections closed (for any reason).
    connections_closed: Counter in Connections,
    /// Plain HTTP requests answered on the WebSocket port (health, metrics, application handler).
    http_requests: Counter in Connections,
    /// io_uring mode: connections moved from the ring to readiness reads by bulk traffic.
    io_uring_to_readiness: Counter in Connections,
    /// io_uring mode: connections moved back to the ring once their traffic was small again.
    io_uring_to_ring: Counter in Connections,
    /// Text messages received.
    text_messages_received: Counter in Messages,
    /// Binary messages received.
    binary_messages_received: Counter in Messages,
    /// Messages sent (including broadcast and published copies).
    messages_sent: Counter in Messages,
    /// Text messages sent (including broadcast and published copies).
    text_messages_sent: Counter in Messages,
    /// Binary messages sent (including broadcast and published copies).
    binary_messages_sent: Counter in Messages,
    /// Payload bytes of messages received.
    bytes_received: Counter in Bytes,
    /// Payload bytes of text messages received.
    text_bytes_received: Counter in Bytes,
    /// Payload bytes of binary messages received.
    binary_bytes_received: Counter in Bytes,
    /// Payload bytes of text messages sent.
    text_bytes_sent: Counter in Bytes,
    /// Payload bytes of binary messages sent.
    binary_bytes_sent: Counter in Bytes,
    /// Bytes written to sockets (frames and handshakes).
    bytes_written: Counter in Bytes,
    /// Pings received.
    pings_received: Counter in Frames,
    /// Pongs received.
    pongs_received: Counter in Frames,
    /// Close frames received.
    closes_received: Counter in Frames,
    /// Pings sent.
    pings_sent: Counter in Frames,
    /// Pongs sent (including automatic answers to pings).
    pongs_sent: Counter in Frames,
    /// Close frames sent.
    closes_sent: Counter in Frames,
    /// Messages compressed with permessage-deflate (a broadcast to connections without context takeover: once per reactor).
    messages_compressed: Counter in Frames,
    /// Connections refused at accept (503) because `max_connections` was reached.
    connections_refused: Counter in Errors,
    /// Connections refused at accept (429) because their address held `max_connections_per_ip`.
    connections_refused_per_ip: Counter in Errors,
    /// Connections refused at accept (429) because their address passed `handshake_rate_per_ip`.
    handshakes_refused_per_ip: Counter in Errors,
    /// Times a connection's reading was paused for passing `message_rate` or `byte_rate`.
    rate_limit_pauses: Counter in Errors,
    /// Connections closed with 1008 for passing `message_rate` or `byte_rate`.
    rate_limit_closes: Counter in Errors,
    /// Times `accept` failed for lack of descriptors (EMFILE, ENFILE) and the listener rested.
    accept_fd_exhausted: Counter in Errors,
    /// Connections accepted with the reserve descriptor while out of descriptors, answered 503 and closed.
    connections_shed: Counter in Errors,
    /// Opening handshakes that failed (refused with an HTTP error, or timed out).
    handshake_failures: Counter in Errors,
    /// Connections failed for a protocol violation or a size limit.
    protocol_errors: Counter in Errors,
    /// Handler callbacks that panicked (each closed its connection with 1011).
    handler_panics: Counter in Errors,
    /// Messages dropped by the `Drop` backpressure policy.
    messages_dropped: Counter in Errors,
    /// Peers closed by the `Close` backpressure policy.
    slow_peers_closed: Counter in Errors,
    /// Messages sent through a `Handle` (to an id, broadcast, publish) dropped: the reactor's pending ones held `max_pending_command_bytes`.
    commands_dropped: Counter in Errors,
    /// Other errors (I/O failures and the like) reported by clients and pools.
    errors: Counter in Errors,
    /// Handshakes that timed out.
    handshake_timeouts: Counter in Timeouts,
    /// Connections closed for idleness.
    idle_timeouts: Counter in Timeouts,
    /// Connections closed because a ping went unanswered.
    pong_timeouts: Counter in Timeouts,
    /// Close handshakes that timed out.
    close_timeouts: Counter in Timeouts,
    /// Buffers currently taken from reactor pools.
    pool_buffers_outstanding: Gauge in Buffers,
    /// Bytes of messages sent through a `Handle` not yet taken by the reactor (as of its last look at its command channel).
    pending_command_bytes: Gauge in Buffers,
}

/// Every scalar counter, in display order (grouped by [`Group`]). The bucketed breakdowns
/// (`connections_closed_by_code`, `handshake_failures_by_reason`, `tcp_connections_by_phase`) are not
/// listed: see [`CloseCodeBucket`], [`HandshakeFailure`] and [`TcpPhase`].
pub fn counter_descriptors() -> &'static [CounterDescriptor] {
    DESCRIPTORS
}

/// Looks up the descriptor of a scalar counter by name.
pub fn counter_descriptor(name: &str) -> Option<&'static CounterDescriptor> {
    DESCRIPTORS.iter().find(|d| d.name == name)
}

impl MetricsSnapshot {
    /// Connections closed with a code in `bucket`.
    pub fn closed_with(&self, bucket: CloseCodeBucket) -> u64 {
        self.connections_closed_by_code[bucket.index()]
    }

    /// Handshake failures for `reason`.
    pub fn handshake_failures_for(&self, reason: HandshakeFailure) -> u64 {
        self.handshake_failures_by_reason[reason.index()]
    }

    /// Held TCP connections in `phase`.
    pub fn tcp_connections_in(&self, phase: TcpPhase) -> u64 {
        self.tcp_connections_by_phase[phase.index()]
    }

    /// Messages received (text and binary).
    pub fn messages_received(&self) -> u64 {
        self.text_messages_received.wrapping_add(self.binary_messages_received)
    }

    /// Payload bytes of messages sent (text and binary).
    pub fn bytes_sent(&self) -> u64 {
        self.text_bytes_sent.wrapping_add(self.binary_bytes_sent)
    }
}

/// How a `record_*` helper bumps one counter: a single-writer load + store ([`Counters::add`]) or an
/// atomic `fetch_add` ([`MetricsCollector`]).
type Bump = fn(&AtomicU64, u64);

fn record_close_with(c: &Counters, code: u16, bump: Bump) {
    bump(&c.connections_closed, 1);
    bump(&c.connections_closed_by_code[CloseCodeBucket::from_code(code).index()], 1);
}

fn record_handshake_failure_with(c: &Counters, kind: HandshakeFailure, bump: Bump) {
    if kind == HandshakeFailure::Timeout {
        bump(&c.handshake_timeouts, 1);
    }
    bump(&c.handshake_failures, 1);
    bump(&c.handshake_failures_by_reason[kind.index()], 1);
}

fn record_message_sent_with(c: &Counters, kind: MessageKind, len: usize, bump: Bump) {
    let len = len as u64;
    bump(&c.messages_sent, 1);
    match kind {
        MessageKind::Text => {
            bump(&c.text_messages_sent, 1);
            bump(&c.text_bytes_sent, len);
        }
        MessageKind::Binary => {
            bump(&c.binary_messages_sent, 1);
            bump(&c.binary_bytes_sent, len);
        }
    }
}

fn record_message_received_with(c: &Counters, kind: MessageKind, len: usize, bump: Bump) {
    let len = len as u64;
    bump(&c.bytes_received, len);
    match kind {
        MessageKind::Text => {
            bump(&c.text_messages_received, 1);
            bump(&c.text_bytes_received, len);
        }
        MessageKind::Binary => {
            bump(&c.binary_messages_received, 1);
            bump(&c.binary_bytes_received, len);
        }
    }
}

impl Counters {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if ENABLED {
            counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    /// Adds `n` to a counter that threads other than its reactor write (an atomic read-modify-write;
    /// [`Counters::add`] assumes the reactor is the only writer).
    #[inline]
    pub fn add_from_any_thread(counter: &AtomicU64, n: u64) {
        if ENABLED {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Subtracts `n` from a gauge.
    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        if ENABLED {
            counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
        }
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(counter: &AtomicU64, n: u64) {
        if ENABLED {
            counter.store(n, Relaxed);
        }
    }

    /// Counts a closed connection: `connections_closed` and its close-code bucket (1006 for a
    /// connection that ended without a close frame). Does not touch the gauges (see
    /// [`Counters::record_tcp_closed`]).
    #[inline]
    pub fn record_close(&self, code: u16) {
        record_close_with(self, code, Self::add);
    }

    /// Counts a TCP connection now held, in `phase`: `tcp_connections` and the phase's bucket (and
    /// `active_connections` for a WebSocket phase).
    #[inline]
    pub fn record_tcp_opened(&self, phase: TcpPhase) {
        Self::add(&self.tcp_connections, 1);
        Self::add(&self.tcp_connections_by_phase[phase.index()], 1);
        if phase.is_websocket() {
            Self::add(&self.active_connections, 1);
        }
    }

    /// Moves one held TCP connection from phase `from` to phase `to` (`active_connections` goes up
    /// when it becomes a WebSocket, down if it stops being one). Nothing when they are the same.
    #[inline]
    pub fn record_tcp_phase(&self, from: TcpPhase, to: TcpPhase) {
        if from == to {
            return;
        }
        Self::sub(&self.tcp_connections_by_phase[from.index()], 1);
        Self::add(&self.tcp_connections_by_phase[to.index()], 1);
        match (from.is_websocket(), to.is_websocket()) {
            (false, true) => Self::add(&self.active_connections, 1),
            (true, false) => Self::sub(&self.active_connections, 1),
            _ => {}
        }
    }

    /// Counts a held TCP connection closed while counted under `phase`: `tcp_connections` and the
    /// phase's bucket go down (and `active_connections` for a WebSocket phase). Does not count the
    /// close itself (see [`Counters::record_close`]).
    #[inline]
    pub fn record_tcp_closed(&self, phase: TcpPhase) {
        Self::sub(&self.tcp_connections, 1);
        Self::sub(&self.tcp_connections_by_phase[phase.index()], 1);
        if phase.is_websocket() {
            Self::sub(&self.active_connections, 1);
        }
    }

    /// Counts a failed opening handshake: `handshake_failures` and its reason bucket, and
    /// `handshake_timeouts` too for [`HandshakeFailure::Timeout`].
    #[inline]
    pub fn record_handshake_failure(&self, kind: HandshakeFailure) {
        record_handshake_failure_with(self, kind, Self::add);
    }

    /// Counts a message sent with `payload_len` payload bytes: `messages_sent`, and
    /// `text_messages_sent` + `text_bytes_sent` or `binary_messages_sent` + `binary_bytes_sent`.
    #[inline]
    pub fn record_message_sent(&self, kind: MessageKind, payload_len: usize) {
        record_message_sent_with(self, kind, payload_len, Self::add);
    }

    /// Counts a message received with `payload_len` payload bytes: `bytes_received`, and
    /// `text_messages_received` + `text_bytes_received` or `binary_messages_received` +
    /// `binary_bytes_received`.
    #[inline]
    pub fn record_message_received(&self, kind: MessageKind, payload_len: usize) {
        record_message_received_with(self, kind, payload_len, Self::add);
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

    #[test]
    fn close_codes_fall_in_their_buckets() {
        let c = Counters::default();
        for code in [1000, 1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1005, 4000, 0] {
            c.record_close(code);
        }
        let mut s = MetricsSnapshot::default();
        s.add(&c);
        assert_eq!(s.connections_closed, 13);
        assert_eq!(s.closed_with(CloseCodeBucket::Normal), 2);
        assert_eq!(s.closed_with(CloseCodeBucket::Abnormal), 1);
        assert_eq!(s.closed_with(CloseCodeBucket::Other), 3);
        assert_eq!(s.get("connections_closed_1011"), Some(1));
        assert_eq!(s.get("connections_closed_other"), Some(3));
        assert_eq!(s.connections_closed_by_code.iter().sum::<u64>(), 13);
        for b in CloseCodeBucket::ALL {
            assert_eq!(CloseCodeBucket::ALL[b.index()], b);
            if let Ok(code) = b.label().parse::<u16>() {
                assert_eq!(CloseCodeBucket::from_code(code), b);
                assert!(b.field_name().ends_with(b.label()));
            }
        }
    }

    #[test]
    fn handshake_failures_by_reason() {
        let c = Counters::default();
        c.record_handshake_failure(HandshakeFailure::NotFound);
        c.record_handshake_failure(HandshakeFailure::NotFound);
        c.record_handshake_failure(HandshakeFailure::Timeout);
        let mut s = MetricsSnapshot::default();
        s.add(&c);
        assert_eq!(s.handshake_failures, 3);
        assert_eq!(s.handshake_timeouts, 1);
        assert_eq!(s.handshake_failures_for(HandshakeFailure::NotFound), 2);
        assert_eq!(s.get("handshake_failures_timeout"), Some(1));
        assert_eq!(s.get("handshake_failures_forbidden"), Some(0));
        for k in HandshakeFailure::ALL {
            assert_eq!(HandshakeFailure::ALL[k.index()], k);
            assert!(k.field_name().ends_with(k.label()));
        }
    }

    #[test]
    fn handshake_failures_map_from_status_and_error() {
        use crate::proto::handshake::HandshakeError;
        assert_eq!(HandshakeFailure::from_http_status(404), HandshakeFailure::NotFound);
        assert_eq!(HandshakeFailure::from_http_status(403), HandshakeFailure::Forbidden);
        assert_eq!(HandshakeFailure::from_http_status(500), HandshakeFailure::Other);
        assert_eq!(HandshakeFailure::from(&HandshakeError::NotUpgrade), HandshakeFailure::BadRequest);
        assert_eq!(HandshakeFailure::from(&HandshakeError::MissingKey), HandshakeFailure::BadRequest);
    }

    /// The phase gauges over one reactor's life: a keep-alive HTTP connection that upgrades, a
    /// WebSocket that closes, a fresh connection that goes away. Every gauge ends at zero, and
    /// `active_connections` only ever counts the WebSocket phases.
    #[test]
    fn tcp_phases_move_once_and_return_to_zero() {
        let c = Counters::default();
        let read = |c: &Counters| {
            let mut s = MetricsSnapshot::default();
            s.add(c);
            s
        };
        c.record_tcp_opened(TcpPhase::Handshake);
        c.record_tcp_opened(TcpPhase::Handshake);
        c.record_tcp_phase(TcpPhase::Handshake, TcpPhase::Http);
        // A second plain request on the same connection is no transition.
        c.record_tcp_phase(TcpPhase::Http, TcpPhase::Http);
        let s = read(&c);
        assert_eq!(s.tcp_connections, 2);
        assert_eq!(s.tcp_connections_by_phase, [1, 1, 0, 0]);
        assert_eq!(s.active_connections, 0, "HTTP and handshaking connections are no WebSockets");
        c.record_tcp_phase(TcpPhase::Http, TcpPhase::Open);
        assert_eq!(read(&c).active_connections, 1);
        c.record_tcp_phase(TcpPhase::Open, TcpPhase::Closing);
        let s = read(&c);
        assert_eq!((s.active_connections, s.tcp_connections), (1, 2), "a closing WebSocket is still one");
        assert_eq!(s.get("tcp_connections_closing"), Some(1));
        assert_eq!(s.get("tcp_connections_open"), Some(0));
        c.record_tcp_closed(TcpPhase::Closing);
        c.record_tcp_closed(TcpPhase::Handshake);
        let s = read(&c);
        assert_eq!((s.active_connections, s.tcp_connections), (0, 0));
        assert_eq!(s.tcp_connections_by_phase, [0; TcpPhase::COUNT]);
        for p in TcpPhase::ALL {
            assert_eq!(TcpPhase::ALL[p.index()], p);
            assert!(p.field_name().ends_with(p.label()));
            assert_eq!(p.is_websocket(), matches!(p, TcpPhase::Open | TcpPhase::Closing));
        }
    }

    #[test]
    fn messages_split_by_kind() {
        let c = Counters::default();
        c.record_message_sent(MessageKind::Text, 100);
        c.record_message_sent(MessageKind::Binary, 7);
        c.record_message_received(MessageKind::Binary, 200);
        let mut s = MetricsSnapshot::default();
        s.add(&c);
        assert_eq!(s.messages_sent, 2);
        assert_eq!((s.text_messages_sent, s.text_bytes_sent), (1, 100));
        assert_eq!((s.binary_messages_sent, s.binary_bytes_sent), (1, 7));
        assert_eq!(s.bytes_sent(), 107);
        assert_eq!(s.binary_messages_received, 1);
        assert_eq!((s.bytes_received, s.binary_bytes_received), (200, 200));
        assert_eq!(s.messages_received(), 1);
    }

    #[test]
    fn every_field_is_found_by_name_and_described() {
        let c = Counters::default();
        // Give every field a distinct value through the snapshot.
        let mut s = MetricsSnapshot::default();
        s.add(&c);
        let names: Vec<_> = s.fields().into_iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate counter names");
        assert_eq!(
            names.len(),
            counter_descriptors().len() + CloseCodeBucket::COUNT + HandshakeFailure::COUNT + TcpPhase::COUNT
        );
        for d in counter_descriptors() {
            assert!(s.get(d.name()).is_some(), "{}", d.name());
            assert!(!d.help().is_empty());
            assert_eq!(counter_descriptor(d.name()), Some(d));
        }
        // Groups come in display order.
        let groups: Vec<_> = counter_descriptors().iter().map(|d| d.group()).collect();
        assert!(groups.windows(2).all(|w| w[0] <= w[1]));
    }
}

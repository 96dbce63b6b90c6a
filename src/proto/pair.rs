//! A simulated pair (tests only): a client and a server [`Connection`] wired together in memory, with a
//! simulated clock, seeded chunking in both directions and optional latency, to test the timeouts and the
//! close handshake as two cores play them against each other.
//!
//! Owns: the simulated network (what each side wrote that the other has not read yet, and the unconsumed
//! tail of each reader), the simulated clock, the transport rules of the engine (a server closes its
//! transport as soon as [`Connection::transport_may_close`]; a client waits for the server to close; a
//! [`Timeout::Pong`], [`Timeout::Close`] or [`Timeout::Linger`] closes; end of stream closes), and two
//! invariants checked on every step: no side writes after its close frame, and a driver never spins (a
//! deadline `poll_timeout` says has passed makes `handle_timeout` act). Never touches: sockets, threads
//! or the real clock (one `Instant` is read, as the origin of simulated time).
//!
//! Driving: [`Pair::act`] (and its shorthands) runs a call on one side and queues what it wrote for the
//! other; [`Pair::drive`] delivers every byte that has arrived by now, both ways, in chunks the
//! [`Chunking`] policy cuts (calling `received_at(now)` then `read` in a loop, as the engine does); and
//! [`Pair::advance`] moves the clock forward, stopping at every deadline and every arrival on the way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::close::CloseCode;
use super::connection::{Connection, ConnectionConfig, Event, Role, SendError};
use super::error::ProtocolError;
use super::frame::{FrameHeader, HeaderParse, OpCode};
use super::mask::apply_mask;
use super::mask_keys::SeededMasks;
use super::timeouts::Timeout;

#[path = "pair_tests.rs"]
mod tests;

/// One end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    Client,
    Server,
}

impl Who {
    fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }

    pub(super) fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// An owned copy of an [`Event`], for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl From<Event<'_>> for Got {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Text(t) => Self::Text(t.into_owned()),
            Event::Binary(b) => Self::Binary(b.into_owned()),
            Event::Ping(p) => Self::Ping(p.to_vec()),
            Event::Pong(p) => Self::Pong(p.to_vec()),
            Event::Close(c) => Self::Close(c.map(|c| (c.code.0, c.reason.to_string()))),
        }
    }
}

/// A frame as a side wrote it, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WireFrame {
    pub(super) opcode: OpCode,
    pub(super) fin: bool,
    pub(super) payload: Vec<u8>,
}

impl WireFrame {
    /// The code and reason of a close frame (`Some(None)` for a close without a code); `None` for other frames.
    pub(super) fn close(&self) -> Option<Option<(u16, String)>> {
        if self.opcode != OpCode::Close {
            return None;
        }
        Some((self.payload.len() >= 2).then(|| {
            let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
            (code, String::from_utf8_lossy(&self.payload[2..]).into_owned())
        }))
    }
}

/// Splits whole frames written by a side (as `Connection` writes them: whole frames only) and unmasks them.
pub(super) fn parse_wire(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (header, header_len) = match FrameHeader::parse(bytes) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, header_len),
            other => panic!("a side wrote an incomplete or invalid frame header: {other:?}"),
        };
        let end = header_len + header.payload_len as usize;
        assert!(bytes.len() >= end, "a side wrote an incomplete frame");
        let mut payload = bytes[header_len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push(WireFrame { opcode: header.opcode, fin: header.fin, payload });
        bytes = &bytes[end..];
    }
    frames
}

/// A small deterministic generator (xorshift64*), for chunk sizes and for the tests' scripts.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        // Spread small seeds apart; never zero.
        Self((seed ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// How the network cuts the bytes that have arrived into the reads of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunking {
    /// Everything that has arrived in one read; the client's direction first.
    Whole,
    /// Seeded random sizes (a quarter of them one byte, the rest up to everything), and a random choice of
    /// direction at each read.
    Random,
}

/// One end: its connection, what is on the way to it, and what it saw and did.
#[derive(Debug)]
pub(super) struct Side {
    pub(super) conn: Connection,
    /// Bytes the peer wrote that the network has not delivered yet, each with the instant it can arrive.
    inbound: VecDeque<(Duration, Vec<u8>)>,
    /// Bytes delivered but not consumed by `read` (an incomplete frame), presented again next time.
    tail: Vec<u8>,
    /// Events, with the simulated time they were read at.
    pub(super) events: Vec<(Duration, Got)>,
    /// Deadlines that fired, with when.
    pub(super) timeouts: Vec<(Duration, Timeout)>,
    /// Errors `read` returned.
    pub(super) errors: Vec<(Duration, ProtocolError)>,
    /// Everything this side wrote, delivered or not.
    pub(super) wire: Vec<u8>,
    close_written: bool,
    /// The network stopped delivering what this side writes (it went silent, as far as the peer knows).
    cut: bool,
    /// This side never closes its transport on its own (a peer that keeps TCP open); it still closes at
    /// end of stream.
    stalled: bool,
    /// When its transport closed; `None` while open.
    pub(super) closed_at: Option<Duration>,
    /// Whether its transport closed because the peer's end of stream arrived.
    pub(super) saw_eof: bool,
}

impl Side {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            inbound: VecDeque::new(),
            tail: Vec::new(),
            events: Vec::new(),
            timeouts: Vec::new(),
            errors: Vec::new(),
            wire: Vec::new(),
            close_written: false,
            cut: false,
            stalled: false,
            closed_at: None,
            saw_eof: false,
        }
    }

    pub(super) fn open(&self) -> bool {
        self.closed_at.is_none()
    }

    /// The events without their times.
    pub(super) fn got(&self) -> Vec<Got> {
        self.events.iter().map(|(_, g)| g.clone()).collect()
    }

    /// The frames this side wrote.
    pub(super) fn frames(&self) -> Vec<WireFrame> {
        parse_wire(&self.wire)
    }

    /// The close frames this side wrote.
    pub(super) fn closes_written(&self) -> Vec<Option<(u16, String)>> {
        self.frames().iter().filter_map(WireFrame::close).collect()
    }

    fn ready_len(&self, now: Duration) -> usize {
        self.inbound.iter().take_while(|(at, _)| *at <= now).map(|(_, b)| b.len()).sum()
    }

    fn take(&mut self, mut n: usize, into: &mut Vec<u8>) {
        while n > 0 {
            let Some((_, front)) = self.inbound.front_mut() else { break };
            if front.len() <= n {
                n -= front.len();
                into.extend_from_slice(front);
                self.inbound.pop_front();
            } else {
                into.extend_from_slice(&front[..n]);
                front.drain(..n);
                n = 0;
            }
        }
    }
}

/// A client and a server connection, the network between them and a simulated clock.
#[derive(Debug)]
pub(super) struct Pair {
    sides: [Side; 2],
    t0: Instant,
    now: Duration,
    latency: Duration,
    chunking: Chunking,
    rng: Rng,
}

/// Steps at one instant before the harness calls it a spin.
const SPIN_LIMIT: usize = 100_000;

/// Deadlines one side may fire at one instant (the longest chain is a ping or idle close, then a zero pong or
/// close timeout) before the harness calls it a spin.
const MAX_AT_ONCE: usize = 4;

impl Pair {
    /// A pair opened at simulated time zero. The client masks with [`SeededMasks`] from `seed` unless its
    /// config has a mask source; `seed` also drives the chunking.
    pub(super) fn new(mut client: ConnectionConfig, server: ConnectionConfig, seed: u64) -> Self {
        if client.mask_source.is_none() {
            client.mask_source = Some(Arc::new(SeededMasks::new(seed)));
        }
        let t0 = Instant::now();
        Self {
            sides: [
                Side::new(Connection::new(Role::Client, client, t0)),
                Side::new(Connection::new(Role::Server, server, t0)),
            ],
            t0,
            now: Duration::ZERO,
            latency: Duration::ZERO,
            chunking: Chunking::Random,
            rng: Rng::new(seed),
        }
    }

    pub(super) fn with_chunking(mut self, chunking: Chunking) -> Self {
        self.chunking = chunking;
        self
    }

    /// Reseeds the chunking alone (the client's masks stay those of the seed given to [`Pair::new`]).
    pub(super) fn with_chunk_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// One-way delay of the network, both directions (end of stream included).
    pub(super) fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub(super) fn now(&self) -> Instant {
        self.t0 + self.now
    }

    pub(super) fn side(&self, who: Who) -> &Side {
        &self.sides[who.index()]
    }

    pub(super) fn conn(&self, who: Who) -> &Connection {
        &self.side(who).conn
    }

    fn side_mut(&mut self, who: Who) -> &mut Side {
        &mut self.sides[who.index()]
    }

    /// From now on the network delivers nothing `who` writes (its peer hears silence), end of stream
    /// included.
    pub(super) fn cut(&mut self, who: Who) {
        self.side_mut(who).cut = true;
    }

    /// `who` never closes its transport on its own (after the handshake, a failure or a deadline); it
    /// still closes when the peer's end of stream arrives.
    pub(super) fn stall(&mut self, who: Who) {
        self.side_mut(who).stalled = true;
    }

    /// Runs `f` on `who`'s connection at the current instant and queues what it wrote for the peer.
    pub(super) fn act<R>(&mut self, who: Who, f: impl FnOnce(&mut Connection, Instant, &mut Vec<u8>) -> R) -> R {
        let now = self.now();
        let mut out = Vec::new();
        let r = f(&mut self.side_mut(who).conn, now, &mut out);
        self.emit(who, out);
        r
    }

    pub(super) fn send_text(&mut self, who: Who, text: &str) -> Result<(), SendError> {
        self.act(who, |c, _, out| c.send_text(text, out))
    }

    pub(super) fn send_binary(&mut self, who: Who, data: &[u8]) -> Result<(), SendError> {
        self.act(who, |c, _, out| c.send_binary(data, out))
    }

    pub(super) fn send_frame(&mut self, who: Who, opcode: OpCode, fin: bool, data: &[u8]) -> Result<(), SendError> {
        self.act(who, |c, _, out| c.send_frame(opcode, fin, data, out))
    }

    pub(super) fn ping(&mut self, who: Who, payload: &[u8]) -> Result<(), SendError> {
        self.act(who, |c, _, out| c.send_ping(payload, out))
    }

    pub(super) fn pong(&mut self, who: Who, payload: &[u8]) -> Result<(), SendError> {
        self.act(who, |c, _, out| c.send_pong(payload, out))
    }

    pub(super) fn close(&mut self, who: Who, code: u16, reason: &str) -> Result<(), SendError> {
        self.act(who, |c, now, out| c.close(now, CloseCode(code), reason, out))
    }

    /// Puts raw bytes on the wire as if `from` wrote them, bypassing its connection (a misbehaving peer).
    pub(super) fn inject(&mut self, from: Who, bytes: &[u8]) {
        let at = self.now + self.latency;
        if self.side(from).open() && self.side(from.peer()).open() {
            self.side_mut(from.peer()).inbound.push_back((at, bytes.to_vec()));
        }
    }

    /// Records what `who` wrote and puts it on the way to the peer (unless either transport is closed).
    fn emit(&mut self, who: Who, out: Vec<u8>) {
        if out.is_empty() {
            return;
        }
        let frames = parse_wire(&out);
        let at = self.now + self.latency;
        let peer_open = self.side(who.peer()).open();
        let side = self.side_mut(who);
        assert!(!side.close_written, "{who:?} wrote {frames:?} after its close frame");
        side.close_written = frames.iter().any(|f| f.opcode == OpCode::Close);
        side.wire.extend_from_slice(&out);
        if side.open() && peer_open {
            self.side_mut(who.peer()).inbound.push_back((at, out));
        }
    }

    fn close_transport(&mut self, who: Who, eof: bool) {
        let now = self.now;
        let side = self.side_mut(who);
        if side.open() {
            side.closed_at = Some(now);
            side.saw_eof = eof;
            side.inbound.clear();
            side.tail.clear();
        }
    }

    /// Whether the network can deliver to `who` now.
    fn deliverable(&self, who: Who) -> usize {
        let side = self.side(who);
        if !side.open() || self.side(who.peer()).cut {
            return 0;
        }
        side.ready_len(self.now)
    }

    /// Closes the transports the engine would close now: a server that may, and whoever got end of stream;
    /// until nothing changes (a server closing at once ends the stream of a client with no latency).
    fn settle_transports(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for who in [Who::Client, Who::Server] {
                let (side, peer) = (self.side(who), self.side(who.peer()));
                if !side.open() {
                    continue;
                }
                let eof = !peer.cut
                    && side.inbound.is_empty()
                    && peer.closed_at.is_some_and(|at| at + self.latency <= self.now);
                let may = who == Who::Server && !side.stalled && side.conn.transport_may_close();
                if eof || may {
                    self.close_transport(who, eof);
                    changed = true;
                }
            }
        }
    }

    /// Delivers one chunk to `who`: `received_at(now)`, then `read` until it needs more bytes.
    fn deliver(&mut self, who: Who, n: usize) {
        let now = self.now;
        let instant = self.now();
        let mut out = Vec::new();
        let side = self.side_mut(who);
        let mut chunk = Vec::with_capacity(n);
        side.take(n, &mut chunk);
        side.conn.received_at(instant);
        side.tail.extend_from_slice(&chunk);
        let Side { conn, tail, events, errors, .. } = side;
        let mut pos = 0;
        loop {
            match conn.read(&mut tail[pos..], &mut out) {
                Ok((consumed, event)) => {
                    pos += consumed;
                    match event {
                        Some(event) => events.push((now, Got::from(event))),
                        None => break,
                    }
                }
                Err(err) => {
                    errors.push((now, err));
                    pos = tail.len();
                    break;
                }
            }
        }
        tail.drain(..pos);
        self.emit(who, out);
    }

    /// Delivers everything that has arrived by now, both ways, until nothing more is on the way at this
    /// instant (replies included).
    pub(super) fn drive(&mut self) {
        for _ in 0..SPIN_LIMIT {
            self.settle_transports();
            let ready = [self.deliverable(Who::Client), self.deliverable(Who::Server)];
            let who = match (ready, self.chunking) {
                ([0, 0], _) => return,
                ([_, 0], _) => Who::Client,
                ([0, _], _) => Who::Server,
                (_, Chunking::Whole) => Who::Client,
                (_, Chunking::Random) => {
                    if self.rng.chance(50) {
                        Who::Client
                    } else {
                        Who::Server
                    }
                }
            };
            let have = ready[who.index()];
            let n = match self.chunking {
                Chunking::Whole => have,
                Chunking::Random => match self.rng.below(4) {
                    0 => 1,
                    1 => self.rng.range(1, 7),
                    2 => self.rng.range(1, 64),
                    _ => self.rng.range(1, have),
                },
            };
            self.deliver(who, n.min(have));
        }
        panic!("drive: still delivering after {SPIN_LIMIT} reads at {:?}", self.now);
    }

    /// Calls `handle_timeout` on each open side whose deadline has passed; whether any fired.
    fn fire_due(&mut self) -> bool {
        let (instant, now, t0) = (self.now(), self.now, self.t0);
        let mut fired = false;
        for who in [Who::Client, Who::Server] {
            loop {
                let side = self.side_mut(who);
                if !side.open() {
                    break;
                }
                let Some(at) = side.conn.poll_timeout() else { break };
                if at > instant {
                    break;
                }
                let mut out = Vec::new();
                let Some(timeout) = side.conn.handle_timeout(instant, &mut out) else {
                    panic!(
                        "{who:?}: poll_timeout said {:?} had passed at {:?} but handle_timeout found nothing due: \
                         a driver would spin",
                        at - t0,
                        now
                    );
                };
                side.timeouts.push((now, timeout));
                let at_once = side.timeouts.iter().rev().take_while(|(at, _)| *at == now).count();
                assert!(
                    at_once <= MAX_AT_ONCE,
                    "{who:?}: {at_once} deadlines fired at {now:?} ({:?}): a driver would spin",
                    &side.timeouts[side.timeouts.len() - at_once..]
                );
                let stalled = side.stalled;
                fired = true;
                self.emit(who, out);
                if matches!(timeout, Timeout::Pong | Timeout::Close | Timeout::Linger) && !stalled {
                    self.close_transport(who, false);
                }
            }
        }
        fired
    }

    /// Delivers and fires deadlines at the current instant until nothing more happens at it.
    fn quiesce(&mut self) {
        for _ in 0..SPIN_LIMIT {
            self.drive();
            if !self.fire_due() {
                self.settle_transports();
                return;
            }
        }
        panic!("spin: deadlines keep firing at {:?}", self.now);
    }

    /// The next instant something happens on its own: a deadline of an open side, an arrival, or an end of
    /// stream reaching its side.
    fn next_instant(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut consider = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        for who in [Who::Client, Who::Server] {
            let (side, peer) = (self.side(who), self.side(who.peer()));
            if !side.open() {
                continue;
            }
            if let Some(at) = side.conn.poll_timeout() {
                consider(at.saturating_duration_since(self.t0));
            }
            if !peer.cut {
                if let Some((at, _)) = side.inbound.front() {
                    consider(*at);
                }
                if let Some(closed) = peer.closed_at {
                    consider(closed + self.latency);
                }
            }
        }
        next
    }

    /// Moves the clock `by` forward, stopping at every deadline and arrival on the way: deliveries first,
    /// then the deadlines due at that instant.
    pub(super) fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..SPIN_LIMIT {
            self.quiesce();
            match self.next_instant() {
                Some(t) if t <= target => {
                    assert!(t > self.now, "next instant {t:?} not after now {:?}", self.now);
                    self.now = t;
                }
                _ => {
                    self.now = target;
                    self.quiesce();
                    return;
                }
            }
        }
        panic!("advance: more than {SPIN_LIMIT} steps before {target:?}");
    }

    /// Advances to `at` (simulated time since the pair opened).
    pub(super) fn advance_to(&mut self, at: Duration) {
        assert!(at >= self.now, "the clock only moves forward");
        self.advance(at - self.now);
    }
}

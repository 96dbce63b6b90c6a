//! Connection state: what one slab entry of a reactor holds, phase by phase.
//!
//! Owns: the [`Conn`] entry (transport, phase, buffers only while bytes are in flight, one timer key, the
//! phase it is counted under in `tcp_connections`) and the open connection's parts ([`OpenConn`]:
//! protocol core, handler, request details). Never touches: the poll, other connections, I/O.

use crate::buf::{BufferPool, InboundBuf, OutboundQueue};
use crate::metrics::{Counters, TcpPhase};
use crate::proto::handshake::ClientHandshake;
use crate::proto::{CloseCode, CloseState, Connection};
use crate::timer::TimerKey;

use super::super::handler::{ConnExtra, ConnInfo, Handler};
use super::super::rate_limit::ConnRate;

/// An in-loop client connection on its way to open.
pub(super) struct PendingClient {
    pub(super) handler: Box<dyn Handler>,
    /// The upgrade request, written once TCP connects.
    pub(super) request: Vec<u8>,
    /// The client side of the handshake, fed the server's answer.
    pub(super) handshake: ClientHandshake,
    pub(super) path_and_query: String,
    pub(super) timeout_ms: u64,
    /// permessage-deflate as offered, to check the answer against.
    pub(super) deflate: crate::proto::deflate::DeflateConfig,
    /// A proxy tunnel to open first (the socket connects to the proxy); `None` once open, or without a
    /// proxy.
    pub(super) tunnel: Option<Box<PendingTunnel>>,
}

/// A proxy handshake an in-loop client runs before its upgrade request (sans-IO, `client::Tunnel`).
pub(super) struct PendingTunnel {
    pub(super) machine: crate::client::Tunnel,
    /// The first bytes for the proxy, written once TCP connects.
    pub(super) first: Vec<u8>,
    /// The proxy, as errors name it (its URL without credentials).
    pub(super) proxy: String,
}

/// Where a connection stands.
pub(super) enum Phase {
    /// Waiting for the upgrade request (plain HTTP requests may come first).
    Handshake,
    /// Upgraded: frames flow. Inline, not boxed: an open connection is the common case.
    Open(OpenConn),
    /// An HTTP error response is being written; the socket closes once it is out.
    Rejected,
    /// In-loop client: TCP connect in progress.
    Connecting(Box<PendingClient>),
    /// In-loop client: request sent, waiting for the 101 response.
    AwaitingResponse(Box<PendingClient>),
}

/// An upgraded connection: the protocol core (which also keeps its timeouts), the handler and what the
/// handler may read about the request.
pub(super) struct OpenConn {
    pub(super) proto: Connection,
    pub(super) handler: Box<dyn Handler>,
    pub(super) info: ConnInfo,
    /// The handler panicked: it is never called again.
    pub(super) poisoned: bool,
    /// `on_close` was called.
    pub(super) notified: bool,
    /// Backlog seen since the last `on_drain`.
    pub(super) drain_pending: bool,
    /// The code `on_close` reported (recorded in the metrics when the connection goes).
    pub(super) close_code: CloseCode,
}

impl OpenConn {
    pub(super) fn new(proto: Connection, handler: Box<dyn Handler>, info: ConnInfo) -> Self {
        Self {
            proto,
            handler,
            info,
            poisoned: false,
            notified: false,
            drain_pending: false,
            close_code: CloseCode::ABNORMAL,
        }
    }

    /// Its rate-limit buckets, if it has any (kept in `ConnInfo::extra`: one pointer check without).
    pub(super) fn rate(&self) -> Option<&ConnRate> {
        self.info.extra.as_ref()?.rate.as_ref()
    }

    /// Its rate-limit buckets, mutable.
    pub(super) fn rate_mut(&mut self) -> Option<&mut ConnRate> {
        self.info.extra.as_mut()?.rate.as_mut()
    }

    /// Gives it rate-limit buckets (`None` takes them away).
    pub(super) fn set_rate(&mut self, rate: Option<ConnRate>) {
        match (rate, self.info.extra.as_mut()) {
            (rate, Some(extra)) => extra.rate = rate,
            (Some(rate), None) => {
                self.info.extra = Some(Box::new(ConnExtra { rate: Some(rate), ..ConnExtra::default() }))
            }
            (None, None) => {}
        }
    }
}

/// One slab entry.
pub(super) struct Conn {
    /// The socket (a TLS session, if any, is kept beside the slab: `Reactor::tls`).
    pub(super) stream: mio::net::TcpStream,
    pub(super) phase: Phase,
    /// The unparsed tail of the stream, only while there is one (its buffer comes from the pool).
    pub(super) inbound: Option<Box<InboundBuf>>,
    /// Bytes the socket did not take yet, only while there are some.
    pub(super) outbound: Option<Box<OutboundQueue>>,
    pub(super) timer: Option<TimerKey>,
    pub(super) generation: u32,
    /// Before the upgrade: accept (or connect) time, then the last time bytes arrived, in ms since the
    /// reactor epoch modulo 2^32 (read it with [`Conn::last_read_ms`]): a connection is this old for at
    /// most its handshake or connect timeout, far below the 49 days a `u32` of ms wraps at. An open
    /// connection's protocol core keeps its own clock. Four bytes, beside `generation`.
    pub(super) last_read: u32,
    /// Close the socket as soon as the outbound queue is empty.
    pub(super) close_when_flushed: bool,
    /// The phase this connection is counted under in `tcp_connections` (and, for open and closing,
    /// `active_connections`): set when it is inserted, moved by [`count_as`] where a phase changes, and
    /// subtracted when it is removed. One byte, in what was padding.
    pub(super) counted: TcpPhase,
}

/// Moves a connection's count from the phase it is counted under to `to` (nothing if it is there
/// already). Every phase change goes through here, so each is counted once.
pub(super) fn count_as(counted: &mut TcpPhase, to: TcpPhase, counters: &Counters) {
    if *counted != to {
        counters.record_tcp_phase(*counted, to);
        *counted = to;
    }
}

/// A time in ms since the reactor epoch as [`Conn::last_read`] stores it.
pub(super) fn stamp_ms(ms: u64) -> u32 {
    ms as u32
}

/// The time in ms since the reactor epoch that `stamp` (from [`stamp_ms`]) stands for, given the time
/// `now_ms`, which is not earlier and less than 2^32 ms later.
fn unstamp_ms(stamp: u32, now_ms: u64) -> u64 {
    now_ms.saturating_sub(u64::from(stamp_ms(now_ms).wrapping_sub(stamp)))
}

impl Conn {
    /// [`Conn::last_read`] in ms since the reactor epoch, given the time now (not earlier than it).
    pub(super) fn last_read_ms(&self, now_ms: u64) -> u64 {
        unstamp_ms(self.last_read, now_ms)
    }

    /// Bytes queued and not yet taken by the socket.
    pub(super) fn queued(&self) -> usize {
        self.outbound.as_ref().map_or(0, |q| q.len_bytes())
    }

    /// Counts an open WebSocket as closing once its close handshake started (a close frame sent or
    /// received, the connection failed or timed out) or its socket is to close when flushed. Called
    /// after every event that may have changed that (one comparison when nothing did).
    pub(super) fn count_closing(&mut self, counters: &Counters) {
        if self.counted != TcpPhase::Open {
            return;
        }
        if let Phase::Open(open) = &self.phase {
            if self.close_when_flushed || open.proto.close_state() != CloseState::Open {
                count_as(&mut self.counted, TcpPhase::Closing, counters);
            }
        }
    }

    /// Gives the connection's buffers back to the pool.
    pub(super) fn release_buffers(&mut self, pool: &mut BufferPool) {
        if let Some(inbound) = self.inbound.take() {
            pool.give((*inbound).into_vec());
        }
        if let Some(mut outbound) = self.outbound.take() {
            outbound.clear(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_read_survives_the_wrap_of_its_u32() {
        for (at, now) in [(0u64, 0u64), (5, 10_005), ((1 << 32) - 3, (1 << 32) + 7), (7 << 32, (7 << 32) + 1)] {
            assert_eq!(unstamp_ms(stamp_ms(at), now), at, "stored at {at}, read at {now}");
        }
    }

    /// The memory budget: an idle open connection is one slab entry (no buffer, no other allocation for
    /// a zero-sized handler and an interned path). In release builds mio's `TcpStream` is 4 bytes; debug
    /// builds add a selector id, hence the margin. Release builds at 2026-12-01: `Conn` 168 bytes with
    /// or without the `tls` feature (the entry keeps the socket; a TLS session lives beside the slab,
    /// `transport::TlsSessions`), `Connection` 88; with the 32-byte keepalive timer entry, 200 B per
    /// idle connection (docs/benchmarks.md).
    #[test]
    fn an_open_connection_fits_the_idle_memory_budget() {
        let entry = std::mem::size_of::<Conn>();
        eprintln!(
            "CONNSIZE {entry} phase {} open {} proto {} info {}",
            std::mem::size_of::<Phase>(),
            std::mem::size_of::<OpenConn>(),
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<ConnInfo>()
        );
        assert!(
            entry <= 256,
            "Conn is {entry} bytes (OpenConn {}, Connection {}, ConnInfo {}, Phase {})",
            std::mem::size_of::<OpenConn>(),
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<ConnInfo>(),
            std::mem::size_of::<Phase>()
        );
        assert!(std::mem::size_of::<Connection>() <= 96, "Connection is {} bytes", std::mem::size_of::<Connection>());
        if !cfg!(debug_assertions) {
            assert!(entry <= 168, "Conn is {entry} bytes in a release build");
        }
    }
}

//! One reactor: a thread with its own `mio::Poll`, listener, slab of connections, timer wheel, buffer pool
//! and counters. Nothing here is shared with other reactors except through the command channel.
//!
//! Read path: read until `WouldBlock` into the reactor's scratch buffer, parse and unmask in place, hand
//! borrowed slices to the handler; only an incomplete tail is copied into a connection buffer taken from
//! the pool (and given back once empty). Write path: sends made while handling one readiness event are
//! corked in one buffer and written with one `write`; what the socket does not take is queued on the
//! connection (owned bytes, or shared broadcast frames by reference) and written with `writev` when the
//! socket becomes writable again.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::buf::{BufferPool, Fill, InboundBuf, OutboundQueue};
use crate::http::{self, HttpLimits, HttpRequest, HttpResponse};
use crate::metrics::Counters;
use crate::metrics::{HandshakeFailure, MessageKind, MetricsReport};
use crate::proto::handshake::{self, HandshakeError, HandshakeLimits, UpgradeRequest};
use crate::proto::{CloseCode, CloseState, Connection, ConnectionConfig, Event, Role};
use crate::timer::{TimerKey, TimerWheel};
use std::ops::Not;

use super::handler::{ConnId, ConnInfo, ConnectError, Ctx, Deferred, Handler, Message};
use super::handler_timers::HandlerTimers;
use super::router::Router;
use super::{Config, Handle, ReactorLink};

const LISTENER: Token = Token(usize::MAX - 1);
/// Smallest per-reactor read buffer.
const MIN_SCRATCH: usize = 256 * 1024;
const WAKER: Token = Token(usize::MAX);

/// Work sent to a reactor from other threads.
pub(crate) enum Command {
    Broadcast(Bytes),
    Publish(Arc<str>, Bytes),
    SendTo(ConnId, Bytes),
    Close(ConnId, CloseCode, String),
    Connect(Box<ClientStart>),
    Adopt(std::net::TcpStream, Vec<u8>),
    Stop,
}

/// An in-loop client connection to open.
pub(crate) struct ClientStart {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path_and_query: String,
    pub(crate) options: super::ConnectOptions,
    pub(crate) handler: Box<dyn Handler + Send>,
}

/// An in-loop client connection on its way to open.
struct PendingClient {
    handler: Box<dyn Handler>,
    /// The upgrade request, written once TCP connects.
    request: Vec<u8>,
    key: String,
    protocols: Vec<String>,
    path_and_query: String,
    timeout_ms: u64,
}

/// Starts a non-blocking TCP connect to `addr`, from `local` when given (e.g. another 127.0.0.x address to
/// get past one source address's ephemeral ports).
fn connect_nonblocking(addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr);
    };
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Fails with `AddrInUse` when another socket already listens on `addr`, which `SO_REUSEPORT` would
/// otherwise hide (a second server would silently share the port and its connections). Returns the
/// address with the port the kernel picked when port 0 was asked for.
pub(crate) fn probe_exclusive(addr: SocketAddr) -> io::Result<SocketAddr> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(io::ErrorKind::AddrInUse, format!("{addr} is already in use by another listener"))
        } else {
            e
        }
    })?;
    let local = probe.local_addr()?.as_socket().unwrap_or(addr);
    Ok(local)
}

/// Binds a non-blocking listener with `SO_REUSEPORT`, so each reactor can have its own.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Where a connection stands.
enum Phase {
    /// Waiting for the upgrade request.
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

struct OpenConn {
    proto: Connection,
    handler: Box<dyn Handler>,
    info: ConnInfo,
    /// The handler panicked: it is never called again.
    poisoned: bool,
    /// `on_close` was called.
    notified: bool,
    /// Backlog seen since the last `on_drain`.
    drain_pending: bool,
    /// The reply we wait for, if any (our ping's pong, or the peer's close frame).
    awaiting: Awaiting,
    /// The code `on_close` reported (recorded in the metrics when the connection goes).
    close_code: CloseCode,
}

/// The reply an open connection waits for (times in ms since the reactor epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    /// Our ping went out at this time.
    Pong(u64),
    /// Our close frame went out at this time; pings no longer matter.
    CloseReply(u64),
}

impl Awaiting {
    fn pong_since(self) -> Option<u64> {
        match self {
            Self::Pong(since) => Some(since),
            _ => None,
        }
    }

    fn is_close_reply(self) -> bool {
        matches!(self, Self::CloseReply(_))
    }
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// The unparsed tail of the stream, only while there is one (its buffer comes from the pool).
    inbound: Option<Box<InboundBuf>>,
    /// Bytes the socket did not take yet, only while there are some.
    outbound: Option<Box<OutboundQueue>>,
    timer: Option<TimerKey>,
    generation: u32,
    /// Accept time, then last time bytes arrived (ms since the reactor epoch).
    last_read: u64,
    /// Close the socket as soon as the outbound queue is empty.
    close_when_flushed: bool,
}

impl Conn {
    /// Bytes queued and not yet taken by the socket.
    fn queued(&self) -> usize {
        self.outbound.as_ref().map_or(0, |q| q.len_bytes())
    }

    /// Gives the connection's buffers back to the pool.
    fn release_buffers(&mut self, pool: &mut BufferPool) {
        if let Some(inbound) = self.inbound.take() {
            pool.give((*inbound).into_vec());
        }
        if let Some(mut outbound) = self.outbound.take() {
            outbound.clear(pool);
        }
    }
}

/// What a reactor thread starts from (everything here is `Send`; the reactor itself is not).
pub(crate) struct ReactorSeed {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    rx: Receiver<Command>,
    counters: Arc<Counters>,
    config: Arc<Config>,
    router: Arc<Router>,
}

impl ReactorSeed {
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Builds the reactor on the current thread and runs its loop until a stop completes.
    pub(crate) fn run(self, handle: Handle) {
        Reactor::from_seed(self).run(handle);
    }
}

pub(crate) struct Reactor {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    next_generation: u32,
    scratch: Vec<u8>,
    cork: Vec<u8>,
    pool: BufferPool,
    /// Timers by connection slot (a `u32` keeps each wheel entry small).
    wheel: TimerWheel<u32>,
    topics: HashMap<Arc<str>, Vec<usize>>,
    paths: HashMap<Box<str>, Arc<String>>,
    rx: Receiver<Command>,
    counters: Arc<Counters>,
    config: Arc<Config>,
    proto_config: ConnectionConfig,
    limits: HandshakeLimits,
    http_limits: HttpLimits,
    router: Arc<Router>,
    epoch: Instant,
    now: u64,
    stopping: Option<u64>,
    max_conns: usize,
    deferred: Deferred,
    dropped: u64,
    /// Handler timers (`Ctx::set_timer`), and the slots due this turn (kept to reuse its allocation).
    handler_timers: HandlerTimers,
    due_timers: Vec<usize>,
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Reactor {
    /// Makes the parts that cross into the reactor thread, and the link other threads use to reach it.
    pub(crate) fn prepare(
        index: usize,
        mut listener: Option<TcpListener>,
        config: Arc<Config>,
        router: Arc<Router>,
    ) -> io::Result<(ReactorSeed, ReactorLink)> {
        let poll = Poll::new()?;
        if let Some(listener) = listener.as_mut() {
            poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = channel();
        let counters = Arc::new(Counters::default());
        let seed = ReactorSeed { index, poll, listener, rx, counters: counters.clone(), config, router };
        Ok((seed, ReactorLink { tx, waker, counters }))
    }

    fn from_seed(seed: ReactorSeed) -> Self {
        let ReactorSeed { index, poll, listener, rx, counters, config, router } = seed;
        let threads = config.threads.max(1);
        Self {
            index,
            poll,
            listener,
            conns: Slab::new(),
            next_generation: 0,
            // One per reactor, so it can be large: a 64 KiB message and its header arrive in one read.
            scratch: vec![0; config.read_buffer_size.max(MIN_SCRATCH)],
            cork: Vec::with_capacity(config.read_buffer_size),
            pool: BufferPool::new(config.read_buffer_size.max(4096), config.pooled_buffers),
            wheel: TimerWheel::with_config(Instant::now(), config.timer_tick, 512),
            topics: HashMap::new(),
            paths: HashMap::new(),
            rx,
            counters,
            proto_config: ConnectionConfig {
                max_frame_size: config.max_frame_size,
                max_message_size: config.max_message_size,
                auto_pong: config.auto_pong,
            },
            limits: HandshakeLimits { max_head_bytes: config.max_request_head, max_headers: config.max_headers },
            http_limits: HttpLimits {
                max_head_bytes: config.max_request_head,
                max_headers: config.max_headers,
                max_body_bytes: config.max_http_body,
            },
            max_conns: config.max_connections.div_ceil(threads),
            config,
            router,
            epoch: Instant::now(),
            now: 0,
            stopping: None,
            deferred: Deferred::default(),
            handler_timers: HandlerTimers::default(),
            due_timers: Vec::new(),
            dropped: 0,
        }
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Runs the loop until a stop completes.
    fn run(mut self, handle: Handle) {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout =
                if self.wheel.is_empty() && self.stopping.is_none() { None } else { Some(self.config.timer_tick) };
            if let Some(due) = self.handler_timers.next_due() {
                let until = due.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("reactor {}: poll failed: {e}", self.index);
                break;
            }
            self.now = millis(self.epoch.elapsed());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.drain_commands(&handle),
                    Token(slot) => {
                        if event.is_writable() {
                            self.on_writable(slot, &handle);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // Unless the peer also closed (or errored), a short read means the socket is
                            // drained: the next arrival raises a new edge, so no extra read for WouldBlock.
                            let to_eof = event.is_read_closed() || event.is_error();
                            self.on_readable(slot, &handle, to_eof);
                        }
                    }
                }
            }
            self.fire_timers(&handle);
            self.fire_handler_timers(&handle);
            if let Some(deadline) = self.stopping {
                if self.conns.is_empty() {
                    break;
                }
                if self.now >= deadline {
                    let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for slot in slots {
                        Counters::add(&self.counters.close_timeouts, 1);
                        self.remove(slot, &handle, CloseCode::ABNORMAL, "server stopped");
                    }
                    break;
                }
            }
        }
        log::debug!("reactor {} stopped", self.index);
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    Counters::add(&self.counters.connections_accepted, 1);
                    if self.conns.len() >= self.max_conns {
                        Counters::add(&self.counters.connections_refused, 1);
                        log::warn!("reactor {}: max connections reached, refusing {peer}", self.index);
                        continue;
                    }
                    if let Err((e, _)) = self.insert_conn(stream, Phase::Handshake, None) {
                        log::warn!("reactor {}: register failed: {e}", self.index);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog for the next readiness event.
                    log::warn!("reactor {}: accept failed: {e}", self.index);
                    return;
                }
            }
        }
    }

    /// The next deadline this connection cares about, in ms since the epoch.
    fn deadline(&self, conn: &Conn) -> Option<u64> {
        let c = &self.config;
        match &conn.phase {
            Phase::Handshake | Phase::Rejected => Some(conn.last_read + millis(c.handshake_timeout)),
            Phase::Connecting(p) | Phase::AwaitingResponse(p) => Some(conn.last_read + p.timeout_ms),
            Phase::Open(open) => {
                if let Awaiting::CloseReply(sent) = open.awaiting {
                    return Some(sent + millis(c.close_timeout));
                }
                if open.proto.transport_may_close() {
                    // A client waits for the server to close TCP, up to the close timeout.
                    return Some(self.now + millis(c.close_timeout));
                }
                let mut next: Option<u64> = None;
                let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
                if let Some(idle) = c.idle_timeout {
                    consider(conn.last_read + millis(idle));
                }
                match (open.awaiting.pong_since(), c.ping_interval) {
                    (Some(sent), _) => consider(sent + millis(c.pong_timeout)),
                    (None, Some(interval)) => consider(conn.last_read + millis(interval)),
                    (None, None) => {}
                }
                next
            }
        }
    }

    /// (Re)arms the connection's single timer for its next deadline.
    fn arm(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let deadline = self.deadline(conn);
        let conn = &mut self.conns[slot];
        if let Some(key) = conn.timer.take() {
            self.wheel.cancel(key);
        }
        if let Some(deadline) = deadline {
            let at = self.epoch + Duration::from_millis(deadline);
            conn.timer = Some(self.wheel.insert_at(at, slot as u32));
        }
    }

    fn fire_timers(&mut self, handle: &Handle) {
        let now = self.instant(self.now);
        while let Some(slot) = self.wheel.poll_at(now) {
            let slot = slot as usize;
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.timer = None;
                self.on_timer(slot, handle);
            }
        }
    }

    /// Calls `on_timer` for every handler timer due now. Timers armed by these calls wait for the next turn
    /// of the loop, even with a zero delay, so a handler cannot keep the loop here.
    fn fire_handler_timers(&mut self, handle: &Handle) {
        // No timer armed (the common case): no clock read.
        if self.handler_timers.next_due().is_none() {
            return;
        }
        let mut due = std::mem::take(&mut self.due_timers);
        self.handler_timers.take_due(Instant::now(), &mut due);
        for &slot in &due {
            self.call_handler(slot, handle, |h, ctx| h.on_timer(ctx));
        }
        due.clear();
        self.due_timers = due;
    }

    /// Runs one callback of an open connection outside a read (`on_drain`, `on_timer`), then finishes the
    /// event as a read does (flush, deferred work, close checks). Nothing is called after `on_close`.
    fn call_handler(&mut self, slot: usize, handle: &Handle, f: impl FnOnce(&mut dyn Handler, &mut Ctx<'_>)) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let queued = conn.queued();
        let Phase::Open(open) = &mut conn.phase else { return };
        if open.notified {
            return;
        }
        let mut env = Env {
            id: ConnId::new(self.index, slot, conn.generation),
            stream: &conn.stream,
            cork: &mut self.cork,
            queued,
            config: &self.config,
            slow_peer: false,
            dropped: &mut self.dropped,
            deferred: &mut self.deferred,
            handle,
            counters: &self.counters,
        };
        invoke(open, &mut env, None, f);
        let slow_peer = env.slow_peer;
        self.after_event(slot, handle, slow_peer);
    }

    fn on_timer(&mut self, slot: usize, handle: &Handle) {
        let now = self.now;
        let c = self.config.clone();
        let conn = &mut self.conns[slot];
        match &mut conn.phase {
            Phase::Connecting(p) | Phase::AwaitingResponse(p) => {
                if now >= conn.last_read + p.timeout_ms {
                    self.counters.record_handshake_failure(HandshakeFailure::Timeout);
                    self.fail_client(slot, ConnectError::Timeout);
                    return;
                }
            }
            Phase::Handshake | Phase::Rejected => {
                if now >= conn.last_read + millis(c.handshake_timeout) {
                    self.counters.record_handshake_failure(HandshakeFailure::Timeout);
                    log::debug!("reactor {}: handshake timeout on slot {slot}", self.index);
                    self.remove(slot, handle, CloseCode::ABNORMAL, "handshake timeout");
                    return;
                }
            }
            Phase::Open(open) => {
                if open.proto.transport_may_close() && !open.awaiting.is_close_reply() {
                    // Client role: the server never closed TCP after the close handshake.
                    self.remove(slot, handle, CloseCode::NORMAL, "");
                    return;
                }
                if let Awaiting::CloseReply(sent) = open.awaiting {
                    if now >= sent + millis(c.close_timeout) {
                        Counters::add(&self.counters.close_timeouts, 1);
                        self.remove(slot, handle, CloseCode::ABNORMAL, "close handshake timeout");
                        return;
                    }
                } else if open.awaiting.pong_since().is_some_and(|sent| now >= sent + millis(c.pong_timeout)) {
                    Counters::add(&self.counters.pong_timeouts, 1);
                    log::debug!("reactor {}: pong timeout on slot {slot}", self.index);
                    if open.proto.close(CloseCode::GOING_AWAY, "pong timeout", &mut self.cork).is_ok() {
                        Counters::add(&self.counters.closes_sent, 1);
                    }
                    self.flush(slot, handle);
                    self.remove(slot, handle, CloseCode::ABNORMAL, "pong timeout");
                    return;
                } else if c.idle_timeout.is_some_and(|idle| now >= conn.last_read + millis(idle)) {
                    Counters::add(&self.counters.idle_timeouts, 1);
                    if open.proto.close(CloseCode::GOING_AWAY, "idle timeout", &mut self.cork).is_ok() {
                        Counters::add(&self.counters.closes_sent, 1);
                        open.awaiting = Awaiting::CloseReply(now);
                    }
                    self.flush(slot, handle);
                } else if open.awaiting.pong_since().is_none()
                    && c.ping_interval.is_some_and(|interval| now >= conn.last_read + millis(interval))
                {
                    if open.proto.send_ping(b"", &mut self.cork).is_ok() {
                        Counters::add(&self.counters.pings_sent, 1);
                        open.awaiting = Awaiting::Pong(now);
                    }
                    self.flush(slot, handle);
                }
            }
        }
        if self.conns.contains(slot) {
            self.arm(slot);
        }
    }

    fn on_writable(&mut self, slot: usize, handle: &Handle) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if matches!(conn.phase, Phase::Connecting(_)) {
            self.check_connected(slot, handle);
            return;
        }
        if conn.outbound.is_none() {
            return;
        }
        self.write_queued(slot, handle);
    }

    /// Writes the outbound queue until it is empty or the socket would block.
    fn write_queued(&mut self, slot: usize, handle: &Handle) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        while let Some(queue) = conn.outbound.as_mut() {
            if queue.is_empty() {
                conn.outbound = None;
                break;
            }
            match queue.write_to(&mut conn.stream, &mut self.pool) {
                Ok(0) => {
                    self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset");
                    return;
                }
                Ok(n) => Counters::add(&self.counters.bytes_written, n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset");
                    return;
                }
            }
        }
        // Drained.
        if conn.close_when_flushed {
            self.remove(slot, handle, CloseCode::NORMAL, "");
            return;
        }
        if let Phase::Open(open) = &mut conn.phase {
            if open.drain_pending {
                open.drain_pending = false;
                self.call_handler(slot, handle, |h, ctx| h.on_drain(ctx));
            }
        }
    }

    /// Sends the cork to the connection: straight to the socket when nothing is queued before it, the
    /// rest into the outbound queue.
    fn flush(&mut self, slot: usize, handle: &Handle) {
        if self.cork.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            self.cork.clear();
            return;
        };
        let mut written = 0;
        if conn.outbound.is_none() {
            while written < self.cork.len() {
                match conn.stream.write(&self.cork[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.cork.clear();
                        self.remove(slot, handle, CloseCode::ABNORMAL, "connection reset");
                        return;
                    }
                }
            }
            Counters::add(&self.counters.bytes_written, written as u64);
        }
        if written < self.cork.len() {
            conn.outbound.get_or_insert_with(Default::default).push_owned(&self.cork[written..], &mut self.pool);
            if let Phase::Open(open) = &mut conn.phase {
                open.drain_pending = true;
            }
        }
        self.cork.clear();
        self.update_pool_gauge();
    }

    fn update_pool_gauge(&self) {
        Counters::set(&self.counters.pool_buffers_outstanding, self.pool.outstanding() as u64);
    }

    fn on_readable(&mut self, slot: usize, handle: &Handle, to_eof: bool) {
        if matches!(self.conns.get(slot).map(|c| &c.phase), Some(Phase::Connecting(_))) {
            self.check_connected(slot, handle);
        }
        loop {
            let Some(conn) = self.conns.get_mut(slot) else { return };
            if matches!(conn.phase, Phase::Connecting(_)) {
                return;
            }
            if matches!(conn.phase, Phase::Rejected) || conn.close_when_flushed {
                // Discard whatever arrives while an error response or a final close goes out.
                match conn.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        self.remove(slot, handle, CloseCode::ABNORMAL, "");
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.remove(slot, handle, CloseCode::ABNORMAL, "");
                        return;
                    }
                }
            }
            let read = match conn.inbound.as_mut() {
                Some(inbound) => {
                    let limit = self.config.max_frame_size.saturating_add(14).max(self.config.max_request_head);
                    match inbound.fill_from(&mut conn.stream, limit) {
                        Ok(Fill::Read(n)) => Ok(Some((n, false))),
                        Ok(Fill::Eof) => Ok(None),
                        Ok(Fill::Full) => Err(io::Error::other("inbound buffer full")),
                        Err(e) => Err(e),
                    }
                }
                None => match conn.stream.read(&mut self.scratch) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some((n, true))),
                    Err(e) => Err(e),
                },
            };
            match read {
                Ok(Some((n, from_scratch))) => {
                    conn.last_read = self.now;
                    let drained = from_scratch && n < self.scratch.len() && !to_eof;
                    let outcome = self.process(slot, handle, from_scratch.then_some(n));
                    self.after_event(slot, handle, outcome.slow_peer);
                    if outcome.upgraded {
                        self.arm(slot);
                    }
                    if drained {
                        return;
                    }
                }
                Ok(None) => {
                    if matches!(self.conns[slot].phase, Phase::AwaitingResponse(_)) {
                        self.fail_client(slot, ConnectError::ClosedDuringHandshake);
                    } else {
                        self.remove(slot, handle, CloseCode::ABNORMAL, "");
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("reactor {}: read error on slot {slot}: {e}", self.index);
                    self.remove(slot, handle, CloseCode::ABNORMAL, "");
                    return;
                }
            }
        }
    }

    /// Parses what was read (in the scratch buffer when `from_scratch` is set, else in the connection's
    /// inbound buffer) and dispatches events. Keeps any incomplete tail in the connection's buffer.
    fn process(&mut self, slot: usize, handle: &Handle, from_scratch: Option<usize>) -> Outcome {
        let index = self.index;
        let Self {
            conns,
            scratch,
            cork,
            pool,
            counters,
            deferred,
            dropped,
            config,
            router,
            limits,
            http_limits,
            proto_config,
            paths,
            ..
        } = self;
        let Some(conn) = conns.get_mut(slot) else {
            return Outcome::default();
        };
        let id = ConnId::new(index, slot, conn.generation);
        let queued = conn.queued();
        let Conn { inbound, phase, stream, .. } = conn;
        let mut env = Env { id, stream, cork, queued, config, slow_peer: false, dropped, deferred, handle, counters };
        let buf: &mut [u8] = match from_scratch {
            Some(n) => &mut scratch[..n],
            None => match inbound.as_mut() {
                Some(inbound) => inbound.readable_mut(),
                None => return Outcome::default(),
            },
        };
        let mut pos = 0;
        let mut upgraded = false;
        // Plain HTTP requests may come first (keep-alive, pipelined), then possibly an upgrade.
        while matches!(phase, Phase::Handshake) && pos < buf.len() {
            match handshake::parse_request(&buf[pos..], limits) {
                Ok(None) => break,
                Ok(Some((request, head_len))) => {
                    pos += head_len;
                    match upgrade(&request, env.config, router, paths, env.cork, proto_config.clone()) {
                        Ok(open) => {
                            Counters::add(&env.counters.connections_upgraded, 1);
                            upgraded = true;
                            *phase = Phase::Open(open);
                            if let Phase::Open(open) = phase {
                                invoke(open, &mut env, Some(&request.headers), |h, ctx| h.on_open(ctx));
                            }
                        }
                        Err((status, response)) => {
                            env.counters.record_handshake_failure(HandshakeFailure::from_http_status(status));
                            env.cork.extend_from_slice(&response);
                            *phase = Phase::Rejected;
                        }
                    }
                }
                Err(HandshakeError::NotUpgrade) => match http::parse_request(&buf[pos..], http_limits) {
                    Ok(None) => break,
                    Ok(Some((request, len))) => {
                        pos += len;
                        Counters::add(&env.counters.http_requests, 1);
                        let keep_alive = request.keep_alive() && env.handle.is_stopping().not();
                        let response = answer_http(&request, env.config, router, env.handle);
                        response.write(env.cork, request.method == "HEAD", keep_alive);
                        if !keep_alive {
                            *phase = Phase::Rejected;
                        }
                    }
                    Err(err) => {
                        Counters::add(&env.counters.http_requests, 1);
                        log::debug!("reactor {index}: HTTP request refused: {err}");
                        HttpResponse::text(err.status(), format!("{err}\n")).write(env.cork, false, false);
                        *phase = Phase::Rejected;
                    }
                },
                Err(err) => {
                    env.counters.record_handshake_failure(HandshakeFailure::from(&err));
                    log::debug!("reactor {index}: upgrade request refused: {err}");
                    env.cork.extend_from_slice(&handshake::error_response(&err));
                    *phase = Phase::Rejected;
                }
            }
        }
        if matches!(phase, Phase::AwaitingResponse(_)) {
            let Phase::AwaitingResponse(pending) = std::mem::replace(phase, Phase::Rejected) else {
                unreachable!("checked above")
            };
            match handshake::parse_response(buf, &pending.key, &pending.protocols, &[], limits) {
                Ok(None) => *phase = Phase::AwaitingResponse(pending),
                Ok(Some((response, head_len))) => {
                    pos = head_len;
                    upgraded = true;
                    Counters::add(&env.counters.connections_upgraded, 1);
                    let PendingClient { handler, path_and_query, .. } = *pending;
                    let (path, query) = match path_and_query.split_once('?') {
                        Some((p, q)) => (p, Some(q.to_owned().into_boxed_str())),
                        None => (path_and_query.as_str(), None),
                    };
                    let protocol = response.protocol.clone().map(String::into_boxed_str);
                    *phase = Phase::Open(OpenConn {
                        proto: Connection::new(Role::Client, proto_config.clone()),
                        handler,
                        info: ConnInfo::new(intern(paths, path), query, protocol, None),
                        poisoned: false,
                        notified: false,
                        drain_pending: false,
                        awaiting: Awaiting::Nothing,
                        close_code: CloseCode::ABNORMAL,
                    });
                    if let Phase::Open(open) = phase {
                        invoke(open, &mut env, Some(&response.headers), |h, ctx| h.on_open(ctx));
                    }
                }
                Err(err) => {
                    env.counters.record_handshake_failure(HandshakeFailure::from(&err));
                    let mut handler = pending.handler;
                    let error = ConnectError::Handshake(err);
                    if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(&error))).is_err() {
                        Counters::add(&env.counters.handler_panics, 1);
                    }
                    // The phase stays Rejected: the socket closes once settled.
                }
            }
        }
        if let Phase::Open(open) = phase {
            while !env.slow_peer {
                match open.proto.read(&mut buf[pos..], env.cork) {
                    Ok((n, None)) => {
                        pos += n;
                        break;
                    }
                    Ok((n, Some(event))) => {
                        pos += n;
                        dispatch(open, &mut env, event);
                    }
                    Err(err) => {
                        pos = buf.len();
                        Counters::add(&env.counters.protocol_errors, 1);
                        log::debug!("reactor {index}: {} failed: {err}", env.id);
                        if !open.awaiting.is_close_reply() {
                            // The state machine wrote a close frame with the error's code.
                            Counters::add(&env.counters.closes_sent, 1);
                        }
                        invoke(open, &mut env, None, |h, ctx| h.on_error(ctx, &err));
                        notify_close(open, &mut env, err.code, err.reason);
                        break;
                    }
                }
            }
        } else if matches!(phase, Phase::Rejected) {
            pos = buf.len();
        }
        // Keep the incomplete tail, and only that.
        match from_scratch {
            Some(n) => {
                if pos < n {
                    let tail = inbound.get_or_insert_with(|| Box::new(InboundBuf::from_vec(pool.take())));
                    tail.append(&scratch[pos..n]);
                }
            }
            None => {
                if let Some(tail) = inbound.as_mut() {
                    tail.consume(pos);
                    if tail.is_empty() {
                        if let Some(tail) = inbound.take() {
                            pool.give((*tail).into_vec());
                        }
                    }
                }
            }
        }
        Outcome { slow_peer: env.slow_peer, upgraded }
    }

    /// Settles a connection after its callbacks ran: flush, then close or re-arm as its state asks, then
    /// carry out what the callbacks deferred (broadcasts, publishes, subscriptions).
    fn after_event(&mut self, slot: usize, handle: &Handle, slow_peer: bool) {
        self.flush(slot, handle);
        if slow_peer {
            Counters::add(&self.counters.slow_peers_closed, 1);
            log::info!("reactor {}: closing a peer that does not read (buffered bytes ceiling)", self.index);
            self.remove(slot, handle, CloseCode::ABNORMAL, "slow peer");
        }
        if let Some(conn) = self.conns.get_mut(slot) {
            let mut rearm = false;
            match &mut conn.phase {
                Phase::Rejected => conn.close_when_flushed = true,
                Phase::Open(open) => {
                    if open.proto.transport_may_close() {
                        if open.proto.role() == Role::Server || open.proto.close_state() == CloseState::Failed {
                            conn.close_when_flushed = true;
                        } else {
                            // Client: the server closes TCP first; wait for it (bounded by the close timeout).
                            rearm = true;
                        }
                    } else if !open.awaiting.is_close_reply() && open.proto.close_state() == CloseState::CloseSent {
                        open.awaiting = Awaiting::CloseReply(self.now);
                        rearm = true;
                    }
                }
                Phase::Handshake | Phase::Connecting(_) | Phase::AwaitingResponse(_) => {}
            }
            if conn.close_when_flushed && conn.outbound.is_none() {
                self.remove(slot, handle, CloseCode::NORMAL, "");
            } else if rearm {
                self.arm(slot);
            }
        }
        if self.dropped > 0 {
            Counters::add(&self.counters.messages_dropped, std::mem::take(&mut self.dropped));
        }
        self.update_pool_gauge();
        if !self.deferred.is_empty() {
            self.apply_deferred(slot, handle);
        }
    }

    fn apply_deferred(&mut self, slot: usize, handle: &Handle) {
        let deferred = std::mem::take(&mut self.deferred);
        if let Some(change) = deferred.timer {
            // Only a connection still open gets a timer (not one that was just removed, e.g. from `on_close`).
            let open = matches!(self.conns.get(slot), Some(Conn { phase: Phase::Open(open), .. }) if !open.notified);
            match change {
                // A delay too long for the clock to represent (e.g. `Duration::MAX`) is a timer that never
                // fires: it disarms, instead of panicking the reactor with an overflow.
                Some(after) if open => match Instant::now().checked_add(after) {
                    Some(due) => self.handler_timers.arm(slot, due),
                    None => self.handler_timers.cancel(slot),
                },
                _ => self.handler_timers.cancel(slot),
            }
        }
        if let Some(Conn { phase: Phase::Open(open), .. }) = self.conns.get_mut(slot) {
            for topic in deferred.subscribe {
                let subscribed = &mut open.info.extra.get_or_insert_with(Default::default).topics;
                if subscribed.iter().any(|t| **t == *topic) {
                    continue;
                }
                let key: Arc<str> = match self.topics.get_key_value(topic.as_str()) {
                    Some((key, _)) => key.clone(),
                    None => Arc::from(topic.as_str()),
                };
                self.topics.entry(key.clone()).or_default().push(slot);
                subscribed.push(key);
            }
            for topic in deferred.unsubscribe {
                let Some(extra) = open.info.extra.as_mut() else {
                    break;
                };
                let subscribed = &mut extra.topics;
                if let Some(i) = subscribed.iter().position(|t| **t == *topic) {
                    let key = subscribed.swap_remove(i);
                    unsubscribe(&mut self.topics, &key, slot);
                }
            }
        }
        for frame in deferred.broadcasts {
            self.broadcast_local(&frame, handle);
            handle.broadcast_frame_except(self.index, frame);
        }
        for (topic, frame) in deferred.publishes {
            let topic: Arc<str> = Arc::from(topic);
            self.publish_local(&topic, &frame, handle);
            handle.publish_except(self.index, &topic, &frame);
        }
    }

    fn broadcast_local(&mut self, frame: &Bytes, handle: &Handle) {
        let slots: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.phase, Phase::Open(o) if o.proto.can_send()))
            .map(|(k, _)| k)
            .collect();
        for slot in slots {
            self.queue_frame(slot, frame.clone(), handle);
        }
    }

    fn publish_local(&mut self, topic: &str, frame: &Bytes, handle: &Handle) {
        let Some(slots) = self.topics.get(topic) else {
            return;
        };
        for slot in slots.clone() {
            self.queue_frame(slot, frame.clone(), handle);
        }
    }

    /// Queues a shared, pre-encoded frame on one connection, applying the backpressure policy.
    fn queue_frame(&mut self, slot: usize, frame: Bytes, handle: &Handle) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let queued = conn.queued();
        let Phase::Open(open) = &mut conn.phase else {
            return;
        };
        if !open.proto.can_send() {
            return;
        }
        if open.proto.role() == Role::Client {
            // Shared frames are unmasked server frames; a client must mask every frame it sends.
            let (kind, payload_len) = shared_frame_kind(&frame);
            let payload = &frame[frame.len() - payload_len..];
            let sent = match kind {
                MessageKind::Text => std::str::from_utf8(payload)
                    .map_err(|_| ())
                    .and_then(|t| open.proto.send_text(t, &mut self.cork).map_err(|_| ())),
                MessageKind::Binary => open.proto.send_binary(payload, &mut self.cork).map_err(|_| ()),
            };
            if sent.is_ok() {
                self.counters.record_message_sent(kind, payload_len);
            }
            self.flush(slot, handle);
            return;
        }
        if queued > 0 && queued + frame.len() > self.config.max_buffered_bytes {
            match self.config.backpressure {
                super::BackpressurePolicy::Drop => Counters::add(&self.counters.messages_dropped, 1),
                super::BackpressurePolicy::Close => {
                    Counters::add(&self.counters.slow_peers_closed, 1);
                    self.remove(slot, handle, CloseCode::ABNORMAL, "slow peer");
                }
            }
            return;
        }
        let (kind, payload_len) = shared_frame_kind(&frame);
        self.counters.record_message_sent(kind, payload_len);
        if queued == 0 {
            let mut written = 0;
            while written < frame.len() {
                match conn.stream.write(&frame[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            Counters::add(&self.counters.bytes_written, written as u64);
            if written < frame.len() {
                conn.outbound.get_or_insert_with(Default::default).push_shared(frame.slice(written..));
                open.drain_pending = true;
            }
        } else {
            conn.outbound.get_or_insert_with(Default::default).push_shared(frame);
        }
    }

    /// Removes a connection: tells its handler (once), unsubscribes it, returns its buffers, closes the
    /// socket.
    fn remove(&mut self, slot: usize, handle: &Handle, code: CloseCode, reason: &str) {
        let Some(mut conn) = self.conns.try_remove(slot) else {
            return;
        };
        // Its heap entry, if any, is skipped when it comes up (a new connection in this slot arms anew).
        self.handler_timers.cancel(slot);
        let mut recorded = CloseCode::ABNORMAL;
        if let Some(key) = conn.timer.take() {
            self.wheel.cancel(key);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Phase::Open(open) = &mut conn.phase {
            let mut env = Env {
                id: ConnId::new(self.index, slot, conn.generation),
                stream: &conn.stream,
                cork: &mut self.cork,
                queued: 0,
                config: &self.config,
                slow_peer: false,
                dropped: &mut self.dropped,
                deferred: &mut self.deferred,
                handle,
                counters: &self.counters,
            };
            notify_close(open, &mut env, code, reason);
            recorded = open.close_code;
            self.cork.clear();
            for topic in open.info.extra.take().into_iter().flat_map(|e| e.topics) {
                unsubscribe(&mut self.topics, &topic, slot);
            }
        }
        conn.release_buffers(&mut self.pool);
        Counters::sub(&self.counters.active_connections, 1);
        self.counters.record_close(recorded.0);
        self.update_pool_gauge();
        // Deferred work from on_close (e.g. a broadcast that someone left) still runs.
        if !self.deferred.is_empty() {
            self.apply_deferred(slot, handle);
        }
    }

    fn drain_commands(&mut self, handle: &Handle) {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Broadcast(frame)) => self.broadcast_local(&frame, handle),
                Ok(Command::Publish(topic, frame)) => self.publish_local(&topic, &frame, handle),
                Ok(Command::SendTo(id, frame)) => {
                    if self.conns.get(id.slot()).is_some_and(|c| c.generation == id.generation()) {
                        self.queue_frame(id.slot(), frame, handle);
                    }
                }
                Ok(Command::Close(id, code, reason)) => {
                    let slot = id.slot();
                    if let Some(Conn { phase: Phase::Open(open), generation, .. }) = self.conns.get_mut(slot) {
                        if *generation == id.generation() {
                            if open.proto.close(code, &reason, &mut self.cork).is_ok() {
                                Counters::add(&self.counters.closes_sent, 1);
                            }
                            self.after_event(slot, handle, false);
                        }
                    }
                }
                Ok(Command::Connect(start)) => self.start_client(*start, handle),
                Ok(Command::Adopt(stream, already_read)) => self.adopt(stream, already_read, handle),
                Ok(Command::Stop) => self.begin_stop(handle),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Registers a socket with the poll, stores it as a new connection and arms its first timer. On failure
    /// the phase comes back (an in-loop client's handler must still hear about it).
    #[allow(clippy::result_large_err)] // rare path; boxing would cost an allocation on the common one
    fn insert_conn(
        &mut self,
        mut stream: TcpStream,
        phase: Phase,
        inbound: Option<Box<InboundBuf>>,
    ) -> Result<usize, (io::Error, Phase)> {
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
        {
            if let Some(inbound) = inbound {
                self.pool.give((*inbound).into_vec());
            }
            return Err((e, phase));
        }
        self.next_generation = self.next_generation.wrapping_add(1) & 0xff_ffff;
        entry.insert(Conn {
            stream,
            phase,
            inbound,
            outbound: None,
            timer: None,
            generation: self.next_generation,
            last_read: self.now,
            close_when_flushed: false,
        });
        Counters::add(&self.counters.active_connections, 1);
        self.arm(slot);
        Ok(slot)
    }

    /// Starts an in-loop client connection: non-blocking TCP connect, request written once connected.
    fn start_client(&mut self, start: ClientStart, _handle: &Handle) {
        let ClientStart { addr, host, path_and_query, options, handler } = start;
        let mut handler: Box<dyn Handler> = handler;
        let counters = self.counters.clone();
        let fail = |handler: &mut Box<dyn Handler>, error: ConnectError| {
            if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(&error))).is_err() {
                Counters::add(&counters.handler_panics, 1);
            }
        };
        if self.stopping.is_some() || self.conns.len() >= self.max_conns {
            return fail(&mut handler, ConnectError::Refused);
        }
        let mut req = handshake::ClientRequest::new(host, path_and_query.clone());
        for protocol in &options.protocols {
            req = req.with_protocol(protocol.clone());
        }
        for (name, value) in &options.headers {
            req = req.with_header(name.clone(), value.clone());
        }
        let mut request = Vec::with_capacity(256);
        let key = match handshake::write_request(&req, &mut request) {
            Ok(key) => key,
            Err(e) => return fail(&mut handler, ConnectError::Handshake(e)),
        };
        let stream = match connect_nonblocking(addr, options.local_addr) {
            Ok(stream) => stream,
            Err(e) => return fail(&mut handler, ConnectError::Io(e)),
        };
        let pending = PendingClient {
            handler,
            request,
            key,
            protocols: options.protocols,
            path_and_query,
            timeout_ms: millis(options.timeout),
        };
        if let Err((e, Phase::Connecting(mut pending))) =
            self.insert_conn(stream, Phase::Connecting(Box::new(pending)), None)
        {
            fail(&mut pending.handler, ConnectError::Io(e));
        }
    }

    /// Takes over a socket accepted elsewhere (e.g. by an HTTP server), with the bytes already read from
    /// it, as if this reactor had accepted it: the upgrade request is parsed from those bytes first.
    fn adopt(&mut self, stream: std::net::TcpStream, already_read: Vec<u8>, handle: &Handle) {
        Counters::add(&self.counters.connections_accepted, 1);
        if self.stopping.is_some() || self.conns.len() >= self.max_conns {
            Counters::add(&self.counters.connections_refused, 1);
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("reactor {}: cannot adopt a socket: {e}", self.index);
            return;
        }
        let stream = TcpStream::from_std(stream);
        let inbound = (!already_read.is_empty()).then(|| {
            let mut buf = InboundBuf::from_vec(self.pool.take());
            buf.append(&already_read);
            Box::new(buf)
        });
        let slot = match self.insert_conn(stream, Phase::Handshake, inbound) {
            Ok(slot) => slot,
            Err((e, _)) => {
                log::warn!("reactor {}: cannot adopt a socket: {e}", self.index);
                return;
            }
        };
        if self.conns[slot].inbound.is_some() {
            let outcome = self.process(slot, handle, None);
            self.after_event(slot, handle, outcome.slow_peer);
            if outcome.upgraded {
                self.arm(slot);
            }
        }
        // Bytes that arrived after the hand-off are picked up by the readiness event registration gives.
    }

    /// A connecting socket became ready: find out whether TCP connected, then send the upgrade request.
    fn check_connected(&mut self, slot: usize, handle: &Handle) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.fail_client(slot, ConnectError::Io(e)),
            Ok(None) => {}
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.fail_client(slot, ConnectError::Io(e)),
        }
        let Phase::Connecting(pending) = std::mem::replace(&mut conn.phase, Phase::Rejected) else { return };
        self.cork.extend_from_slice(&pending.request);
        conn.phase = Phase::AwaitingResponse(pending);
        self.flush(slot, handle);
    }

    /// Reports a failed in-loop client connection to its handler and drops it.
    fn fail_client(&mut self, slot: usize, error: ConnectError) {
        let Some(mut conn) = self.conns.try_remove(slot) else { return };
        if let Some(key) = conn.timer.take() {
            self.wheel.cancel(key);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Phase::Connecting(pending) | Phase::AwaitingResponse(pending) = &mut conn.phase {
            if catch_unwind(AssertUnwindSafe(|| pending.handler.on_connect_error(&error))).is_err() {
                Counters::add(&self.counters.handler_panics, 1);
            }
        }
        conn.release_buffers(&mut self.pool);
        Counters::sub(&self.counters.active_connections, 1);
        self.counters.record_close(CloseCode::ABNORMAL.0);
    }

    /// Graceful shutdown: stop accepting, send 1001 to every open connection, drop the rest.
    fn begin_stop(&mut self, handle: &Handle) {
        if self.stopping.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.stopping = Some(self.now + millis(self.config.close_timeout));
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            match &mut self.conns[slot].phase {
                Phase::Open(open) => {
                    if open.proto.close(CloseCode::GOING_AWAY, "server shutting down", &mut self.cork).is_ok() {
                        Counters::add(&self.counters.closes_sent, 1);
                    }
                    self.after_event(slot, handle, false);
                }
                _ => self.remove(slot, handle, CloseCode::ABNORMAL, "server shutting down"),
            }
        }
    }
}

fn unsubscribe(topics: &mut HashMap<Arc<str>, Vec<usize>>, topic: &Arc<str>, slot: usize) {
    if let Some(slots) = topics.get_mut(topic) {
        if let Some(i) = slots.iter().position(|s| *s == slot) {
            slots.swap_remove(i);
        }
        if slots.is_empty() {
            topics.remove(topic);
        }
    }
}

/// What parsing one read led to.
#[derive(Debug, Default)]
struct Outcome {
    /// A send found the peer at the buffered-bytes ceiling under the `Close` policy.
    slow_peer: bool,
    /// The upgrade completed: the connection's deadlines changed.
    upgraded: bool,
}

/// What a callback's [`Ctx`] borrows from the reactor.
struct Env<'a> {
    id: ConnId,
    stream: &'a TcpStream,
    cork: &'a mut Vec<u8>,
    queued: usize,
    config: &'a Config,
    slow_peer: bool,
    dropped: &'a mut u64,
    deferred: &'a mut Deferred,
    handle: &'a Handle,
    counters: &'a Counters,
}

/// Runs one callback, isolating a panic: the connection is closed with 1011 and never called again.
fn invoke(
    open: &mut OpenConn,
    env: &mut Env<'_>,
    headers: Option<&[(String, Vec<u8>)]>,
    f: impl FnOnce(&mut dyn Handler, &mut Ctx<'_>),
) {
    if open.poisoned {
        return;
    }
    let OpenConn { proto, handler, info, poisoned, .. } = open;
    let result = {
        let mut ctx = Ctx {
            id: env.id,
            proto,
            out: env.cork,
            info,
            stream: env.stream,
            headers,
            queued: env.queued,
            max_buffered: env.config.max_buffered_bytes,
            policy: env.config.backpressure,
            slow_peer: &mut env.slow_peer,
            dropped: env.dropped,
            deferred: env.deferred,
            handle: env.handle,
            counters: env.counters,
        };
        catch_unwind(AssertUnwindSafe(|| f(handler.as_mut(), &mut ctx)))
    };
    if result.is_err() {
        *poisoned = true;
        Counters::add(&env.counters.handler_panics, 1);
        log::error!("handler panicked on connection {}: closing it with 1011", env.id);
        if proto.close(CloseCode::INTERNAL_ERROR, "internal error", env.cork).is_ok() {
            Counters::add(&env.counters.closes_sent, 1);
        }
    }
}

/// Calls `on_close` once per connection.
fn notify_close(open: &mut OpenConn, env: &mut Env<'_>, code: CloseCode, reason: &str) {
    if open.notified {
        return;
    }
    open.notified = true;
    open.close_code = code;
    invoke(open, env, None, |h, ctx| h.on_close(ctx, code, reason));
}

/// Hands one protocol event to the handler.
fn dispatch(open: &mut OpenConn, env: &mut Env<'_>, event: Event<'_>) {
    let counters = env.counters;
    match event {
        Event::Text(text) => {
            counters.record_message_received(MessageKind::Text, text.len());
            invoke(open, env, None, |h, ctx| h.on_message(ctx, Message::Text(&text)));
        }
        Event::Binary(data) => {
            counters.record_message_received(MessageKind::Binary, data.len());
            invoke(open, env, None, |h, ctx| h.on_message(ctx, Message::Binary(&data)));
        }
        Event::Ping(payload) => {
            if env.config.auto_pong && open.proto.can_send() {
                Counters::add(&counters.pongs_sent, 1);
            }
            Counters::add(&counters.pings_received, 1);
            invoke(open, env, None, |h, ctx| h.on_ping(ctx, payload));
        }
        Event::Pong(payload) => {
            Counters::add(&counters.pongs_received, 1);
            if open.awaiting.pong_since().is_some() {
                open.awaiting = Awaiting::Nothing;
            }
            invoke(open, env, None, |h, ctx| h.on_pong(ctx, payload));
        }
        Event::Close(frame) => {
            if !open.awaiting.is_close_reply() {
                // Answered with the peer's code by the state machine.
                Counters::add(&counters.closes_sent, 1);
            }
            Counters::add(&counters.closes_received, 1);
            let (code, reason) = frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
            notify_close(open, env, code, reason);
        }
    }
}

/// Checks an upgrade request against the origin policy and the routes, makes the handler and writes the
/// 101 response into `out`. On refusal, returns the HTTP response to send instead.
fn upgrade(
    request: &UpgradeRequest,
    config: &Config,
    router: &Router,
    paths: &mut HashMap<Box<str>, Arc<String>>,
    out: &mut Vec<u8>,
    proto: ConnectionConfig,
) -> Result<OpenConn, (u16, Vec<u8>)> {
    if let Some(allowed) = &config.allowed_origins {
        let ok = request.origin.as_deref().is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err((403, handshake::plain_response(403, "origin not allowed\n")));
        }
    }
    let Some(factory) = router.route(&request.path) else {
        return Err((404, handshake::plain_response(404, "no WebSocket handler for this path\n")));
    };
    let handler = match catch_unwind(AssertUnwindSafe(|| factory(request))) {
        Ok(handler) => handler,
        Err(_) => {
            log::error!("handler factory for {} panicked", request.path);
            return Err((500, handshake::plain_response(500, "handler factory failed\n")));
        }
    };
    let protocol = config.subprotocols.select(&request.offered_protocols());
    if let Err(e) = handshake::write_response(out, &request.key, protocol.as_deref(), None, &[]) {
        log::error!("cannot write the upgrade response: {e}");
        return Err((500, handshake::plain_response(500, "cannot complete the upgrade\n")));
    }
    Ok(OpenConn {
        proto: Connection::new(Role::Server, proto),
        handler,
        info: ConnInfo::new(
            intern(paths, &request.path),
            request.query.clone().map(String::into_boxed_str),
            protocol.map(String::into_boxed_str),
            config.keep_request_headers.then(|| request.headers.clone().into_boxed_slice()),
        ),
        poisoned: false,
        notified: false,
        drain_pending: false,
        awaiting: Awaiting::Nothing,
        close_code: CloseCode::ABNORMAL,
    })
}

/// Interned paths kept per reactor at most; further distinct paths get their own copy.
const MAX_INTERNED_PATHS: usize = 1024;

/// The shared copy of `path`, so that connections to one path share one allocation.
fn intern(paths: &mut HashMap<Box<str>, Arc<String>>, path: &str) -> Arc<String> {
    if let Some(shared) = paths.get(path) {
        return shared.clone();
    }
    let shared = Arc::new(path.to_owned());
    if paths.len() < MAX_INTERNED_PATHS {
        paths.insert(path.into(), shared.clone());
    }
    shared
}

/// The kind and payload length of a pre-encoded, unmasked single-frame message.
fn shared_frame_kind(frame: &[u8]) -> (MessageKind, usize) {
    let kind = if frame.first().is_some_and(|b| b & 0x0f == 0x1) { MessageKind::Text } else { MessageKind::Binary };
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    (kind, frame.len().saturating_sub(header))
}

/// Answers a plain HTTP request: the application's handler first, then the built-in endpoints, then
/// 426 for a WebSocket route asked without an upgrade, else 404.
fn answer_http(request: &HttpRequest, config: &Config, router: &Router, handle: &Handle) -> HttpResponse {
    if let Some(user) = router.http_handler() {
        match catch_unwind(AssertUnwindSafe(|| user.handle(request))) {
            Ok(Some(response)) => return response,
            Ok(None) => {}
            Err(_) => {
                log::error!("HTTP handler panicked on {} {}", request.method, request.path);
                return HttpResponse::text(500, "internal error\n");
            }
        }
    }
    let get = request.method == "GET" || request.method == "HEAD";
    if get && config.metrics_path.as_deref() == Some(request.path.as_str()) {
        let report = MetricsReport::from_totals(handle.metrics());
        let body = crate::metrics::prometheus_text(&report, "wsloop");
        return HttpResponse::with_body(200, "text/plain; version=0.0.4; charset=utf-8", body);
    }
    if get && config.health_path.as_deref() == Some(request.path.as_str()) {
        let status = if handle.is_stopping() { 503 } else { 200 };
        return HttpResponse::text(status, if status == 200 { "ok\n" } else { "stopping\n" });
    }
    if router.route(&request.path).is_some() {
        return HttpResponse::text(426, "this path expects a WebSocket upgrade\n")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13");
    }
    HttpResponse::text(404, "not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory budget: an idle open connection is one slab entry (no buffer, no other allocation for
    /// a zero-sized handler and an interned path). In release builds mio's `TcpStream` is 4 bytes; debug
    /// builds add a selector id, hence the margin.
    #[test]
    fn an_open_connection_fits_the_idle_memory_budget() {
        let entry = std::mem::size_of::<Conn>();
        assert!(
            entry <= 256,
            "Conn is {entry} bytes (OpenConn {}, Connection {}, ConnInfo {}, Phase {})",
            std::mem::size_of::<OpenConn>(),
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<ConnInfo>(),
            std::mem::size_of::<Phase>()
        );
        assert!(std::mem::size_of::<Connection>() <= 128, "Connection is {} bytes", std::mem::size_of::<Connection>());
    }

    #[test]
    fn paths_are_interned_up_to_a_limit() {
        let mut paths = HashMap::new();
        let a = intern(&mut paths, "/chat");
        let b = intern(&mut paths, "/chat");
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..MAX_INTERNED_PATHS + 10 {
            intern(&mut paths, &format!("/p{i}"));
        }
        assert_eq!(paths.len(), MAX_INTERNED_PATHS);
        assert_eq!(&*intern(&mut paths, "/new"), "/new");
    }
}

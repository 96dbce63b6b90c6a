//! One reactor: a thread with its own `mio::Poll`, listener, slab of connections, timer wheel, buffer
//! pool and counters. Nothing here is shared with other reactors except through the command channel.
//!
//! This module is the event loop and the connection lifecycle (accept, adopt, insert, settle after an
//! event, remove, stop). Its rooms:
//!
//! | room | owns |
//! |---|---|
//! | [`conn`] | the slab entry and the open connection's parts |
//! | [`read`] | readiness → bytes → handshake or frames → handler |
//! | [`write`] | the cork, outbound queues, backpressure, `on_drain` |
//! | [`calls`] | handler calls: their environment, built in one place; panic isolation |
//! | [`admit`] | accept-time admission: the global and per-IP caps, refusals, descriptor exhaustion |
//! | [`upgrade`] | plain HTTP and the opening handshake (server side and in-loop clients) |
//! | [`commands`] | the command channel, broadcast, topics, deferred work |
//! | [`clients`] | in-loop clients: connect, request, connect errors |
//! | [`adopt`] | connections whose upgrade another HTTP server completed |
//! | [`timers`] | the wheel timer per connection (driven by the protocol core) and handler timers |
//! | [`ring`] | EXPERIMENTAL: io_uring receives for plain server connections (`Config::io_uring`) |
//!
//! Every byte goes through the connection's [`Transport`](super::transport::Transport).

mod admit;
mod adopt;
mod calls;
mod clients;
mod commands;
mod conn;
mod read;
mod ring;
mod timers;
mod upgrade;
mod write;

pub(crate) use write::Writer;

use super::mailbox::{mailbox, Inbox};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::buf::{BufferPool, InboundBuf};
use crate::http::HttpLimits;
use crate::metrics::{Counters, TcpPhase};
use crate::proto::handshake::{HandshakeLimits, ServerHandshake};
use crate::proto::{CloseCode, CloseState, ConnectionConfig, Role};
use crate::timer::TimerWheel;

use super::handler::{ConnId, Handler};
use super::handler_timers::HandlerTimers;
use super::ip_limits::IpLimits;
use super::router::Router;
use super::transport::{NewTransport, TlsSessions, Transport};
use super::{Config, Handle, ReactorLink};
use calls::{notify_close, CallState, Env, EnvParts};
use commands::{unsubscribe, Topics};
use conn::{Conn, Phase};
use ring::RingReads;

const LISTENER: Token = Token(usize::MAX - 1);
/// The plain listener beside a TLS one (`Config::plain_addr`).
const PLAIN_LISTENER: Token = Token(usize::MAX - 2);
/// Smallest per-reactor read buffer.
const MIN_SCRATCH: usize = 256 * 1024;
const WAKER: Token = Token(usize::MAX);
/// Connection and timer slots reserved up front, so that each slab's first array is above glibc's
/// default 128 KiB mmap threshold (1,024 x 200 B and 4,096 x 32 B). Grown by doubling from empty, the
/// smaller arrays would live in the reactor thread's malloc arena and, once outgrown, leave about 130 KiB
/// of freed but resident memory there, in every reactor (measured: 268 B per idle connection with two
/// reactors at 10,000 connections instead of 240). Unused mmapped capacity costs no RSS, and growing an
/// mmapped array is an `mremap`, not a copy.
const RESERVED_CONNS: usize = 1024;
const RESERVED_TIMERS: usize = 4096;
/// glibc's default `M_MMAP_THRESHOLD`.
#[cfg(test)]
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Work sent to a reactor from other threads.
pub(crate) enum Command {
    Broadcast(Bytes),
    Publish(Arc<str>, Bytes),
    SendTo(ConnId, Bytes),
    Close(ConnId, CloseCode, String),
    Connect(Box<ClientStart>),
    Adopt(std::net::TcpStream, Vec<u8>),
    /// A socket whose upgrade another HTTP server completed (`Handle::adopt_upgraded`).
    AdoptUpgraded(std::net::TcpStream, Box<super::AcceptedUpgrade>, Vec<u8>),
    /// An upgrade another HTTP server refused for the engine (`Handle::accept_upgrade`), to count.
    CountRefusal(crate::metrics::HandshakeFailure),
    Stop,
}

impl Command {
    /// The bytes of the message a command carries (what counts against
    /// `Config::max_pending_command_bytes`); 0 for a control command.
    pub(crate) fn message_bytes(&self) -> usize {
        match self {
            Self::Broadcast(frame) | Self::SendTo(_, frame) => frame.len(),
            Self::Publish(topic, frame) => topic.len() + frame.len(),
            _ => 0,
        }
    }
}

/// An in-loop client connection to open.
pub(crate) struct ClientStart {
    pub(crate) addr: SocketAddr,
    /// A stream already connected (through a proxy, or by a helper thread that resolved the host); `None`:
    /// the reactor connects to `addr` itself.
    pub(crate) stream: Option<std::net::TcpStream>,
    /// A tunnel to open through a proxy first, in the loop: `addr` is then the proxy's address.
    pub(crate) tunnel: Option<(crate::client::Proxy, crate::client::Target)>,
    pub(crate) host: String,
    pub(crate) path_and_query: String,
    pub(crate) options: super::ConnectOptions,
    pub(crate) handler: Box<dyn Handler + Send>,
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

/// Whether accepted sockets inherit the listener's `TCP_NODELAY` (Linux; checked by a test below).
/// Elsewhere each accepted socket sets it.
const ACCEPTED_INHERIT_NODELAY: bool = cfg!(target_os = "linux");

/// Binds a non-blocking listener with `SO_REUSEPORT` and `TCP_NODELAY`, so each reactor can have its own.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Linux gives accepted sockets the listener's TCP_NODELAY: then `accept_from` needs no `setsockopt`
    // per connection (one system call of the six a handshake makes).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A reactor's listeners: its share of the server's address (TLS when the server has TLS settings),
/// and a plain one beside a TLS one (`Config::plain_addr`). Both `None`: in-loop clients only.
#[derive(Default)]
pub(crate) struct Listeners {
    pub(crate) main: Option<TcpListener>,
    pub(crate) plain: Option<TcpListener>,
}

/// What a reactor thread starts from (everything here is `Send`; the reactor itself is not).
pub(crate) struct ReactorSeed {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    plain_listener: Option<TcpListener>,
    rx: Inbox,
    counters: Arc<Counters>,
    config: Arc<Config>,
    router: Arc<Router>,
    ip_limits: Option<Arc<IpLimits>>,
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
    /// Plain TCP beside a TLS `listener` (`Config::plain_addr`).
    plain_listener: Option<TcpListener>,
    conns: Slab<Conn>,
    next_generation: u32,
    scratch: Vec<u8>,
    /// The TLS sessions of TLS connections, by slot (beside the slab, so a plain entry does not grow).
    tls: TlsSessions,
    calls: CallState,
    pool: BufferPool,
    /// Timers by connection slot (a `u32` keeps each wheel entry small).
    wheel: TimerWheel<u32>,
    topics: Topics,
    paths: HashMap<Box<str>, Arc<String>>,
    rx: Inbox,
    counters: Arc<Counters>,
    config: Arc<Config>,
    /// Shared by every connection of this reactor (one pointer each).
    proto_config: Arc<ConnectionConfig>,
    handshake: ServerHandshake,
    http_limits: HttpLimits,
    router: Arc<Router>,
    epoch: Instant,
    /// This turn of the loop's time (read once per poll wake-up).
    now: Instant,
    stopping: Option<Instant>,
    max_conns: usize,
    /// Handler timers (`Ctx::set_timer`), and the slots due this turn (kept to reuse its allocation).
    handler_timers: HandlerTimers,
    due_timers: Vec<usize>,
    /// Admission state: per-IP table, each connection's counted address, the reserve descriptor.
    admit: admit::Admission,
    /// `Config::message_rate` or `byte_rate` is set: the read path looks for a connection's buckets
    /// only then (without, one test of this flag per read).
    rate_limited: bool,
    /// Sockets a readiness event left unread (a peer sending faster than it is read): slot,
    /// generation, and whether that event said the peer closed. Read again after the next poll.
    reread: Vec<(usize, u32, bool)>,
    /// EXPERIMENTAL: the io_uring that reads plain server connections (`Config::io_uring`), if made.
    ring: Option<RingReads>,
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Milliseconds from `epoch` to `now`.
fn ms_since(epoch: Instant, now: Instant) -> u64 {
    millis(now.saturating_duration_since(epoch))
}

impl Reactor {
    /// Makes the parts that cross into the reactor thread, and the link other threads use to reach it.
    pub(crate) fn prepare(
        index: usize,
        listeners: Listeners,
        config: Arc<Config>,
        router: Arc<Router>,
        ip_limits: Option<Arc<IpLimits>>,
    ) -> io::Result<(ReactorSeed, ReactorLink)> {
        let poll = Poll::new()?;
        let Listeners { main: mut listener, plain: mut plain_listener } = listeners;
        if let Some(listener) = listener.as_mut() {
            poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        }
        if let Some(listener) = plain_listener.as_mut() {
            poll.registry().register(listener, PLAIN_LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mailbox(config.max_pending_command_bytes);
        let counters = Arc::new(Counters::default());
        let seed = ReactorSeed {
            index,
            poll,
            listener,
            plain_listener,
            rx,
            counters: counters.clone(),
            config,
            router,
            ip_limits,
        };
        Ok((seed, ReactorLink { tx, waker, counters }))
    }

    fn from_seed(seed: ReactorSeed) -> Self {
        let ReactorSeed { index, poll, listener, plain_listener, rx, counters, config, router, ip_limits } = seed;
        let rate_limited = config.message_rate.is_some() || config.byte_rate.is_some();
        let threads = config.threads.max(1);
        let now = Instant::now();
        let ring = Self::make_ring(&config, &poll, index);
        Self {
            index,
            poll,
            listener,
            plain_listener,
            conns: Slab::with_capacity(RESERVED_CONNS),
            next_generation: 0,
            // One per reactor, so it can be large: a 64 KiB message and its header arrive in one read.
            scratch: vec![0; config.read_buffer_size.max(MIN_SCRATCH)],
            tls: TlsSessions::default(),
            calls: CallState { cork: Vec::with_capacity(config.read_buffer_size), ..CallState::default() },
            pool: BufferPool::new(config.read_buffer_size.max(4096), config.pooled_buffers),
            wheel: {
                let mut wheel = TimerWheel::with_config(now, config.timer_tick, 512);
                wheel.reserve(RESERVED_TIMERS);
                wheel
            },
            topics: HashMap::new(),
            paths: HashMap::new(),
            rx,
            counters,
            proto_config: Arc::new(config.connection_config()),
            handshake: ServerHandshake::new(HandshakeLimits {
                max_head_bytes: config.max_request_head,
                max_headers: config.max_headers,
            }),
            http_limits: HttpLimits {
                max_head_bytes: config.max_request_head,
                max_headers: config.max_headers,
                max_body_bytes: config.max_http_body,
            },
            max_conns: config.max_connections.div_ceil(threads),
            config,
            router,
            epoch: now,
            now,
            stopping: None,
            handler_timers: HandlerTimers::default(),
            due_timers: Vec::new(),
            admit: admit::Admission::new(ip_limits),
            rate_limited,
            reread: Vec::new(),
            ring,
        }
    }

    /// This turn's time in ms since the reactor epoch (for the phases before the upgrade).
    fn now_ms(&self) -> u64 {
        ms_since(self.epoch, self.now)
    }

    /// Runs the loop until a stop completes.
    fn run(mut self, handle: Handle) {
        let mut events = Events::with_capacity(1024);
        // Commands left for the next turn by `drain_commands`' cap (the waker will not fire for them again).
        let mut commands_left = false;
        loop {
            let mut timeout =
                if self.wheel.is_empty() && self.stopping.is_none() { None } else { Some(self.config.timer_tick) };
            if commands_left || !self.reread.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            if let Some(due) = self.handler_timers.next_due() {
                let until = due.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
            if let Some(due) = self.admit.accept_paused_until {
                let until = due.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
            // With an io_uring (`Config::io_uring`) that has receives or sends in it, the loop waits in
            // the ring, which polls the epoll descriptor too; mio is then polled only when that fired.
            let ring = self.ring_wait(timeout);
            if !ring {
                if let Err(e) = self.poll.poll(&mut events, timeout) {
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    log::error!("reactor {}: poll failed: {e}", self.index);
                    break;
                }
            }
            self.now = Instant::now();
            if ring {
                events.clear();
                if self.ring_process(&handle) {
                    match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) if events.iter().count() == events.capacity() => self.ring_poll_again(),
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => self.ring_poll_again(),
                        Err(e) => {
                            log::error!("reactor {}: poll failed: {e}", self.index);
                            break;
                        }
                    }
                }
            }
            let mut drained = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(false),
                    PLAIN_LISTENER => self.accept(true),
                    WAKER => {
                        commands_left = self.drain_commands(&handle);
                        drained = true;
                    }
                    Token(slot) => {
                        if event.is_writable() {
                            self.on_writable(slot, &handle);
                        }
                        // A connection the ring reads: its receive reports bytes, EOF and errors.
                        if (event.is_readable() || event.is_read_closed() || event.is_error()) && !self.ring_reads(slot)
                        {
                            // Unless the peer also closed (or errored), a short read means the socket is
                            // drained: the next arrival raises a new edge, so no extra read for WouldBlock.
                            let to_eof = event.is_read_closed() || event.is_error();
                            self.on_readable(slot, &handle, to_eof);
                        }
                    }
                }
            }
            if !self.reread.is_empty() {
                self.reread(&handle);
            }
            if commands_left && !drained {
                commands_left = self.drain_commands(&handle);
            }
            self.fire_timers(&handle);
            self.fire_handler_timers(&handle);
            // Receives re-armed and cancelled this turn go to the kernel together.
            self.ring_submit();
            if self.admit.accept_paused_until.is_some_and(|t| self.now >= t) {
                self.admit.accept_paused_until = None;
                // Both listeners get their turn: a failure on the first (EMFILE comes even with an
                // empty queue) rests accepting again, but must not skip the second, whose pending
                // connections would then wait for an edge that never comes.
                self.accept_from(false);
                self.accept_from(true);
            }
            // This thread's permessage-deflate compressions (a thread-local count: one read per poll).
            Counters::set(&self.counters.messages_compressed, crate::proto::deflate::thread_compressions());
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
        // In-loop clients asked for while the loop wound down are refused, not dropped unheard.
        while let Ok(command) = self.rx.try_recv() {
            if let Command::Connect(start) = command {
                super::refuse_connect(start);
            }
        }
        log::debug!("reactor {} stopped", self.index);
    }

    /// Accepts what the listener (`plain`: the plain one beside a TLS one) has pending, unless
    /// accepting rests after running out of descriptors (the timer retries both listeners).
    fn accept(&mut self, plain: bool) {
        if self.admit.accept_paused_until.is_none() {
            self.accept_from(plain);
        }
    }

    /// Accepts from one listener until it has nothing pending or fails.
    fn accept_from(&mut self, plain: bool) {
        loop {
            let Some(listener) = (if plain { &self.plain_listener } else { &self.listener }).as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    Counters::add(&self.counters.connections_accepted, 1);
                    let tls = !plain && self.tls_listener();
                    let Some(stream) = self.admit_or_refuse(stream, peer, tls) else { continue };
                    let Some(transport) = self.accepted_transport(stream, tls) else {
                        self.admit.release_ip(peer.ip());
                        continue;
                    };
                    if !ACCEPTED_INHERIT_NODELAY {
                        let _ = transport.stream.set_nodelay(true);
                    }
                    // Plain server connections are read by the ring when there is one.
                    let by_ring = !tls && self.ring.is_some();
                    match self.insert_conn(transport, Phase::Handshake, None, by_ring) {
                        Ok(slot) => self.admit.counted(slot, peer),
                        Err((e, _)) => {
                            self.admit.release_ip(peer.ip());
                            log::warn!("reactor {}: register failed: {e}", self.index);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A peer that reset before its turn: the next one may be fine.
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // EMFILE and friends: shed one, rest the listener, retry on a timer (admit.rs).
                    self.accept_failed(&e, plain);
                    return;
                }
            }
        }
    }

    /// The transport for a socket a listener accepted: a TLS session from the TLS listener (`tls`; `None`
    /// if rustls refuses to start one, which only bad settings cause), else plain TCP.
    fn accepted_transport(&self, stream: TcpStream, tls: bool) -> Option<NewTransport> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.config.tls.as_ref().filter(|_| tls) {
            return match rustls::server::UnbufferedServerConnection::new(tls.rustls().clone()) {
                Ok(session) => Some(NewTransport::tls(stream, super::tls_session::TlsStream::server(session))),
                Err(e) => {
                    log::warn!("reactor {}: cannot start a TLS session: {e}", self.index);
                    None
                }
            };
        }
        let _ = tls;
        Some(NewTransport::tcp(stream))
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
        let _ = stream.set_nodelay(true);
        let inbound = (!already_read.is_empty()).then(|| {
            let mut buf = InboundBuf::from_vec(self.pool.take_for(already_read.len()));
            buf.append(&already_read);
            Box::new(buf)
        });
        let slot = match self.insert_conn(NewTransport::tcp(stream), Phase::Handshake, inbound, false) {
            Ok(slot) => slot,
            Err((e, _)) => {
                log::warn!("reactor {}: cannot adopt a socket: {e}", self.index);
                return;
            }
        };
        if self.conns[slot].inbound.is_some() {
            let outcome = self.process(slot, handle, None);
            self.after_event(slot, handle, outcome.slow_peer);
            if outcome.upgraded || outcome.paused {
                self.arm(slot);
            }
        }
        // Bytes that arrived after the hand-off are picked up by the readiness event registration gives.
    }

    /// Registers a socket with the poll, stores it as a new connection and arms its first timer; `by_ring`:
    /// its reads go to the io_uring (the poll then reports only writability), or to mio if the receive
    /// cannot be armed. On failure the phase comes back (an in-loop client's handler must still hear
    /// about it).
    #[allow(clippy::result_large_err)] // rare path; boxing would cost an allocation on the common one
    fn insert_conn(
        &mut self,
        mut transport: NewTransport,
        phase: Phase,
        inbound: Option<Box<InboundBuf>>,
        by_ring: bool,
    ) -> Result<usize, (io::Error, Phase)> {
        let last_read = conn::stamp_ms(self.now_ms());
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        let interest = if by_ring { Interest::WRITABLE } else { Interest::READABLE | Interest::WRITABLE };
        if let Err(e) = self.poll.registry().register(&mut transport.stream, Token(slot), interest) {
            if let Some(inbound) = inbound {
                self.pool.give((*inbound).into_vec());
            }
            return Err((e, phase));
        }
        self.next_generation = self.next_generation.wrapping_add(1) & 0xff_ffff;
        // Accepted, adopted or connecting: through no request yet.
        let counted = if matches!(phase, Phase::Open(_)) { TcpPhase::Open } else { TcpPhase::Handshake };
        self.tls.insert(slot, &mut transport);
        entry.insert(Conn {
            stream: transport.stream,
            phase,
            inbound,
            outbound: None,
            timer: None,
            generation: self.next_generation,
            last_read,
            close_when_flushed: false,
            counted,
        });
        self.counters.record_tcp_opened(counted);
        self.arm(slot);
        if by_ring && !self.ring_arm(slot) {
            let conn = &mut self.conns[slot];
            if let Err(e) =
                self.poll.registry().reregister(&mut conn.stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
            {
                log::warn!("reactor {}: cannot read slot {slot} through mio either: {e}", self.index);
            }
        }
        Ok(slot)
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
                    let state = open.proto.close_state();
                    if open.proto.transport_may_close() {
                        // A server closes TCP first; so does a client after a failure. Otherwise a client
                        // waits for the server to close (the core bounds that with `Timeout::Linger`).
                        if open.proto.role() == Role::Server || state != CloseState::Closed {
                            conn.close_when_flushed = true;
                        }
                        rearm = true;
                    } else if state == CloseState::CloseSent {
                        // The close-handshake deadline may be earlier than the armed one.
                        rearm = true;
                    }
                }
                Phase::Handshake | Phase::Connecting(_) | Phase::AwaitingResponse(_) => {}
            }
            conn.count_closing(&self.counters);
            if conn.close_when_flushed
                && conn.outbound.is_none()
                && !self.tls.transport(&mut conn.stream, slot).wants_write()
            {
                self.remove(slot, handle, CloseCode::NORMAL, "");
            } else if rearm {
                self.arm(slot);
            }
        }
        if self.calls.dropped > 0 {
            Counters::add(&self.counters.messages_dropped, std::mem::take(&mut self.calls.dropped));
        }
        self.update_pool_gauge();
        if !self.calls.deferred.is_empty() {
            self.apply_deferred(slot, handle);
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
        // Its TLS session, if any, leaves the table with it (and is dropped at the end of this call).
        #[cfg_attr(not(feature = "tls"), allow(unused_variables, unused_mut))]
        let mut tls = self.tls.remove(slot);
        #[cfg(feature = "tls")]
        let mut transport = Transport::with_tls(&mut conn.stream, tls.as_deref_mut());
        #[cfg(not(feature = "tls"))]
        let mut transport = Transport::tcp(&mut conn.stream);
        transport.close_notify();
        if let Phase::Open(open) = &mut conn.phase {
            let parts = EnvParts {
                calls: &mut self.calls,
                config: &self.config,
                handle,
                counters: &self.counters,
                now: self.now,
            };
            let mut env = Env::new(ConnId::new(self.index, slot, conn.generation), transport.reborrow(), 0, parts);
            notify_close(open, &mut env, code, reason);
            recorded = open.close_code;
            self.calls.cork.clear();
            for topic in open.info.extra.take().into_iter().flat_map(|e| e.topics) {
                unsubscribe(&mut self.topics, &topic, slot, handle);
            }
        }
        // Before the socket closes: its io_uring receive, if any, is cancelled (submitted now).
        self.ring_forget(slot, conn.generation);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        conn.release_buffers(&mut self.pool);
        self.admit.removed(slot);
        self.counters.record_tcp_closed(conn.counted);
        self.counters.record_close(recorded.0);
        self.update_pool_gauge();
        // Deferred work from on_close (e.g. a broadcast that someone left) still runs.
        if !self.calls.deferred.is_empty() {
            self.apply_deferred(slot, handle);
        }
    }

    /// Graceful shutdown: stop accepting, send 1001 to every open connection, drop the rest.
    fn begin_stop(&mut self, handle: &Handle) {
        if self.stopping.is_some() {
            return;
        }
        for mut listener in [self.listener.take(), self.plain_listener.take()].into_iter().flatten() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.stopping = Some(self.now + self.config.close_timeout);
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            match &mut self.conns[slot].phase {
                Phase::Open(open) => {
                    if open
                        .proto
                        .close(self.now, CloseCode::GOING_AWAY, "server shutting down", &mut self.calls.cork)
                        .is_ok()
                    {
                        Counters::add(&self.counters.closes_sent, 1);
                    }
                    self.after_event(slot, handle, false);
                }
                _ => self.remove(slot, handle, CloseCode::ABNORMAL, "server shutting down"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_slabs_start_above_the_mmap_threshold() {
        // The slab stores `Entry<Conn>` (the value plus a tag); the value alone is a lower bound.
        assert!(RESERVED_CONNS * std::mem::size_of::<Conn>() > MMAP_THRESHOLD);
        assert!(RESERVED_TIMERS * TimerWheel::<u32>::entry_size() >= MMAP_THRESHOLD);
    }

    #[test]
    fn accepted_sockets_have_nodelay_without_setting_it_where_the_listener_passes_it_on() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("accept: {e}"),
            }
        };
        // What `accept_from` relies on when it skips the `setsockopt`.
        if ACCEPTED_INHERIT_NODELAY {
            assert!(accepted.nodelay().unwrap(), "an accepted socket without TCP_NODELAY");
        }
        drop(client);
    }
}

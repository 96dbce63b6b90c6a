//! EXPERIMENTAL (feature `io-uring`, Linux): a single-threaded echo server on io_uring, over the same
//! sans-IO core as the reactor ([`parse_request`], [`write_response`], [`Connection`]), written to
//! measure whether an io_uring backend would beat the mio reactor (issue 18; the result is in
//! docs/benchmarks.md). It is not a backend: no [`Handler`](super::Handler), routing, timers (no idle,
//! ping or close timeouts), TLS, metrics or commands. Run it with `examples/uring_echo.rs`.
//!
//! Owns: one loop turn = queue a send for every connection with output and no send in flight, one
//! `io_uring_enter` that submits all of them and waits, then every completion: multishot accept,
//! multishot receive into the ring's provided buffers (frames parsed and unmasked in place in the
//! buffer; only a frame's incomplete tail is copied), send completions. Never touches: `unsafe` (all
//! of it is in [`crate::sys::uring`]).

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::handshake::{error_response, parse_request, write_response, HandshakeLimits};
use crate::proto::{Connection, ConnectionConfig, Event, Role};
use crate::sys::uring::{Completion, Received, Ring, RingConfig, RingStats};

/// Settings of [`run_echo`].
#[derive(Debug, Clone)]
pub struct UringEchoConfig {
    /// The ring and its receive buffers.
    pub ring: RingConfig,
    /// Limits and behaviour of every WebSocket connection (its timeouts are not run here).
    pub connection: ConnectionConfig,
    /// Limits on the upgrade request's head.
    pub handshake: HandshakeLimits,
    /// Output bytes a connection may have waiting behind its send in flight; beyond it (a peer that
    /// does not read) the connection is closed. Default 4 MiB.
    pub max_backlog: usize,
    /// Connections at once; more are closed as soon as accepted. Default 10,000.
    pub max_connections: usize,
    /// Return once every connection has closed, after the first was accepted (default false): for
    /// measuring under valgrind, whose signal delivery does not reach a thread that lives in
    /// `io_uring_enter`.
    pub exit_when_idle: bool,
}

impl Default for UringEchoConfig {
    fn default() -> Self {
        Self {
            ring: RingConfig::default(),
            connection: ConnectionConfig::default(),
            handshake: HandshakeLimits::default(),
            max_backlog: 4 << 20,
            max_connections: 10_000,
            exit_when_idle: false,
        }
    }
}

/// What [`run_echo`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringEchoStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Upgrades completed.
    pub upgraded: u64,
    /// Data messages echoed.
    pub messages: u64,
    /// Connections closed because their backlog passed `max_backlog`.
    pub backlog_closes: u64,
    /// Connections refused because `max_connections` were open.
    pub refused: u64,
    /// The ring's counters.
    pub ring: RingStats,
}

struct Conn {
    stream: TcpStream,
    ws: Option<Connection>,
    /// Bytes received and not yet consumed (an incomplete head or frame).
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The last send's buffer, cleared, for the next swap.
    spare: Vec<u8>,
    sending: bool,
    recv_armed: bool,
    /// Nothing more is read; flush `out`, then shut the socket down.
    closing: bool,
    shut: bool,
    dirty: bool,
}

/// The loop's state.
struct Echo {
    config: UringEchoConfig,
    ws_config: Arc<ConnectionConfig>,
    conns: slab::Slab<Conn>,
    dirty: Vec<u32>,
    stats: UringEchoStats,
}

/// Runs an echo server on `listener` (every path, every text and binary message sent back) until
/// `stop` is set (checked at least every 100 ms). Fails if a ring cannot be made (io_uring
/// unavailable) or the ring itself fails.
pub fn run_echo(listener: TcpListener, config: UringEchoConfig, stop: &AtomicBool) -> io::Result<UringEchoStats> {
    let mut echo = Echo {
        ws_config: Arc::new(config.connection.clone()),
        conns: slab::Slab::new(),
        dirty: Vec::new(),
        stats: UringEchoStats::default(),
        config,
    };
    // Declared after `echo`, so dropped before its sockets: the ring cancels what is in flight first.
    let mut ring = Ring::new(echo.config.ring)?;
    ring.accept(&listener)?;
    let mut completions = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        echo.flush_dirty(&mut ring)?;
        ring.submit_and_wait(1, Some(Duration::from_millis(100)))?;
        ring.reap(&mut completions);
        let now = Instant::now();
        for completion in completions.drain(..) {
            echo.complete(&mut ring, &listener, completion, now)?;
        }
        if echo.config.exit_when_idle && echo.stats.accepted > 0 && echo.conns.is_empty() {
            break;
        }
    }
    echo.stats.ring = ring.stats();
    Ok(echo.stats)
}

impl Echo {
    fn mark(&mut self, token: u32) {
        if let Some(conn) = self.conns.get_mut(token as usize) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// One send per connection with output and none in flight; a closing connection without output
    /// is shut down (which ends its receive).
    fn flush_dirty(&mut self, ring: &mut Ring) -> io::Result<()> {
        for token in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(token as usize) else { continue };
            conn.dirty = false;
            if conn.sending {
                continue;
            }
            if !conn.out.is_empty() {
                let buf = std::mem::replace(&mut conn.out, std::mem::take(&mut conn.spare));
                ring.send(conn.stream.as_raw_fd(), u64::from(token), buf, 0, false)?;
                conn.sending = true;
            } else if conn.closing && !conn.shut {
                let _ = conn.stream.shutdown(Shutdown::Both);
                conn.shut = true;
            }
        }
        Ok(())
    }

    /// Drops the connection once the kernel holds nothing of it (receive ended, no send in flight).
    fn maybe_remove(&mut self, token: u32) {
        if self.conns.get(token as usize).is_some_and(|c| !c.recv_armed && !c.sending) {
            self.conns.remove(token as usize);
        }
    }

    fn complete(
        &mut self,
        ring: &mut Ring,
        listener: &TcpListener,
        completion: Completion,
        now: Instant,
    ) -> io::Result<()> {
        match completion {
            Completion::Accepted { result, more } => {
                if !more {
                    ring.accept(listener)?;
                }
                match result {
                    Ok(stream) if self.conns.len() >= self.config.max_connections => {
                        self.stats.refused += 1;
                        drop(stream);
                    }
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let fd = stream.as_raw_fd();
                        let token = self.conns.insert(Conn {
                            stream,
                            ws: None,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            spare: Vec::new(),
                            sending: false,
                            recv_armed: true,
                            closing: false,
                            shut: false,
                            dirty: false,
                        }) as u32;
                        self.stats.accepted += 1;
                        if let Err(e) = ring.recv(fd, u64::from(token)) {
                            self.conns.remove(token as usize);
                            return Err(e);
                        }
                    }
                    Err(e) => log::warn!("io_uring echo: accept: {e}"),
                }
            }
            Completion::Recv { token, received, more } => {
                let token = token as u32; // run_echo arms receives with its u32 slots
                let Some(conn) = self.conns.get_mut(token as usize) else { return Ok(()) };
                conn.recv_armed = more;
                match received {
                    Received::Data(buf) => {
                        let data = ring.buf_mut(&buf);
                        let (messages, upgraded) = on_data(conn, data, &self.config, &self.ws_config, now);
                        ring.recycle(buf);
                        self.stats.messages += messages;
                        self.stats.upgraded += u64::from(upgraded);
                        if conn.out.len() > self.config.max_backlog && conn.sending {
                            // A peer that does not read: shut down now (the send in flight fails).
                            self.stats.backlog_closes += 1;
                            conn.out.clear();
                            conn.closing = true;
                            let _ = conn.stream.shutdown(Shutdown::Both);
                            conn.shut = true;
                        }
                    }
                    Received::Eof => conn.closing = true,
                    Received::Error(e) if e.raw_os_error() == Some(libc::ENOBUFS) && !more && !conn.closing => {
                        ring.recv(conn.stream.as_raw_fd(), u64::from(token))?;
                        conn.recv_armed = true;
                    }
                    Received::Error(_) => {
                        conn.closing = true;
                        if !conn.shut {
                            let _ = conn.stream.shutdown(Shutdown::Both);
                            conn.shut = true;
                        }
                    }
                }
                self.mark(token);
                self.maybe_remove(token);
            }
            Completion::Sent { token, result, mut buf, start } => {
                let token = token as u32;
                let Some(conn) = self.conns.get_mut(token as usize) else { return Ok(()) };
                conn.sending = false;
                match result {
                    Ok(n) if start + n < buf.len() && n > 0 => {
                        ring.send(conn.stream.as_raw_fd(), u64::from(token), buf, start + n, false)?;
                        conn.sending = true;
                    }
                    Ok(n) if n > 0 => {
                        buf.clear();
                        conn.spare = buf;
                    }
                    _ => {
                        // Failed (or sent nothing): the peer is gone.
                        conn.out.clear();
                        conn.closing = true;
                        if !conn.shut {
                            let _ = conn.stream.shutdown(Shutdown::Both);
                            conn.shut = true;
                        }
                    }
                }
                self.mark(token);
                self.maybe_remove(token);
            }
            Completion::Polled { .. } => {} // this loop polls nothing
        }
        Ok(())
    }
}

/// Feeds received bytes to the connection: the handshake first, then frames, echoing every data
/// message into `conn.out`. Returns (messages echoed, whether the upgrade completed now).
fn on_data(
    conn: &mut Conn,
    data: &mut [u8],
    config: &UringEchoConfig,
    ws_config: &Arc<ConnectionConfig>,
    now: Instant,
) -> (u64, bool) {
    if conn.closing {
        return (0, false);
    }
    if let Some(ws) = conn.ws.as_mut() {
        ws.received_at(now);
    }
    if conn.inbuf.is_empty() && conn.ws.is_some() {
        let (used, messages, upgraded) = process(conn, data, config, ws_config, now);
        if used < data.len() && !conn.closing {
            conn.inbuf.extend_from_slice(&data[used..]);
        }
        return (messages, upgraded);
    }
    let mut inbuf = std::mem::take(&mut conn.inbuf);
    inbuf.extend_from_slice(data);
    let (used, messages, upgraded) = process(conn, &mut inbuf, config, ws_config, now);
    inbuf.drain(..used.min(inbuf.len()));
    if !conn.closing {
        conn.inbuf = inbuf;
    }
    (messages, upgraded)
}

/// Consumes what it can from `buf`: (bytes used, messages echoed, upgraded now).
fn process(
    conn: &mut Conn,
    buf: &mut [u8],
    config: &UringEchoConfig,
    ws_config: &Arc<ConnectionConfig>,
    now: Instant,
) -> (usize, u64, bool) {
    let mut pos = 0;
    let mut upgraded = false;
    if conn.ws.is_none() {
        match parse_request(buf, &config.handshake) {
            Ok(None) => return (0, 0, false),
            Ok(Some((request, n))) => {
                if let Err(e) = write_response(&mut conn.out, &request.key, None, None, &[]) {
                    conn.out.extend_from_slice(&error_response(&e));
                    conn.closing = true;
                    return (buf.len(), 0, false);
                }
                conn.ws = Some(Connection::new(Role::Server, Arc::clone(ws_config), now));
                pos = n;
                upgraded = true;
            }
            Err(e) => {
                conn.out.extend_from_slice(&error_response(&e));
                conn.closing = true;
                return (buf.len(), 0, false);
            }
        }
    }
    let Conn { ws, out, closing, .. } = conn;
    let Some(ws) = ws.as_mut() else { return (pos, 0, upgraded) };
    let mut messages = 0;
    while pos < buf.len() {
        match ws.read(&mut buf[pos..], out) {
            Ok((n, event)) => {
                pos += n;
                match event {
                    None => break,
                    Some(Event::Binary(payload)) => {
                        let _ = ws.send_binary(&payload, out);
                        messages += 1;
                    }
                    Some(Event::Text(text)) => {
                        let _ = ws.send_text(&text, out);
                        messages += 1;
                    }
                    Some(Event::Ping(_) | Event::Pong(_) | Event::Close(_)) => {}
                }
                if ws.transport_may_close() {
                    *closing = true;
                    break;
                }
            }
            Err(_) => {
                // The close frame with the error's code is in `out`.
                *closing = true;
                break;
            }
        }
    }
    (pos, messages, upgraded)
}

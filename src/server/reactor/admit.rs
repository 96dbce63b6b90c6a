//! Admission: what happens between `accept` and a new connection's slab entry.
//!
//! Owns: the global connection cap, the per-IP caps (open connections, handshakes per second, through
//! the server's shared [`IpLimits`]), refusing a connection with a short HTTP answer, and running out of
//! descriptors (EMFILE, ENFILE): shedding one pending connection with the reserve descriptor, resting
//! the listener and retrying on a timer, so the loop never spins on a listener it cannot serve. Never
//! touches: connections already admitted, parsing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::http::HttpResponse;
use crate::metrics::Counters;

use super::super::ip_limits::{IpLimits, IpRefusal};
use super::Reactor;

/// A reactor's admission state.
pub(super) struct Admission {
    ip_limits: Option<Arc<IpLimits>>,
    /// The address each admitted connection is counted under (only with per-IP limits).
    ips: HashMap<usize, IpAddr>,
    /// A descriptor held in reserve: closed to accept (and refuse) one connection when the process is
    /// out of descriptors, then opened again.
    reserve: Option<File>,
    /// The listener rests until then after `accept` failed.
    pub(super) accept_paused_until: Option<Instant>,
    /// Refusals logged at most once a second; how many were not.
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Admission {
    pub(super) fn new(ip_limits: Option<Arc<IpLimits>>) -> Self {
        Self {
            ip_limits,
            ips: HashMap::new(),
            reserve: open_reserve(),
            accept_paused_until: None,
            last_log: None,
            unlogged: 0,
        }
    }

    /// The connection from `peer` admitted by [`Reactor::admit_or_refuse`] now lives in `slot`.
    pub(super) fn counted(&mut self, slot: usize, peer: SocketAddr) {
        if self.ip_limits.is_some() {
            self.ips.insert(slot, peer.ip());
        }
    }

    /// A connection admitted for `ip` never got a slot.
    pub(super) fn release_ip(&self, ip: IpAddr) {
        if let Some(limits) = &self.ip_limits {
            limits.release(ip);
        }
    }

    /// The connection in `slot` is gone: its address's count goes down.
    pub(super) fn removed(&mut self, slot: usize) {
        if let Some(limits) = &self.ip_limits {
            if let Some(ip) = self.ips.remove(&slot) {
                limits.release(ip);
            }
        }
    }

    /// Whether a refusal at `now` should be logged (once a second), with how many were not since.
    fn log_now(&mut self, now: Instant) -> Option<u64> {
        if self.last_log.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.unlogged += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Answers `status` with `body` and closes: the answer is small enough for an empty socket buffer, so
/// one write either sends it or the peer is gone. The write side is shut first, so the peer reads the
/// answer and an end of stream.
///
/// On a TLS listener (`tls`) an HTTP answer would reach the client as a record that is not TLS, so the
/// refusal is a fatal TLS alert instead ([`REFUSAL_ALERT`]): the client reports that the server
/// refused the handshake, never a corrupt record. Finishing the handshake to answer in HTTP was not
/// chosen: it would spend a full handshake (a signature) on every refused connection, under the very
/// load (a flood from one address, the connection cap, no descriptors left) that made the server
/// refuse, and keep a session per refusal.
fn refuse(mut stream: TcpStream, status: u16, body: &str, tls: bool) {
    if tls {
        let _ = stream.write(&REFUSAL_ALERT);
    } else {
        let mut out = Vec::with_capacity(160);
        HttpResponse::text(status, body).write(&mut out, false, false);
        let _ = stream.write(&out);
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// A plaintext TLS record (valid before any handshake): content type alert (21), legacy version 3.3,
/// length 2, level fatal (2), description `internal_error` (80): the server cannot serve this
/// connection, for reasons of its own.
const REFUSAL_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 80];

/// Whether an `accept` error means the process or the system ran out of descriptors (or of memory for
/// one).
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl Reactor {
    /// Lets an accepted connection in, or refuses it with an HTTP answer (503 at the global cap, 429 at a
    /// per-IP cap), counted per kind, and returns `None`.
    /// `tls`: it came from a TLS listener (a refusal is then a TLS alert).
    pub(super) fn admit_or_refuse(&mut self, stream: TcpStream, peer: SocketAddr, tls: bool) -> Option<TcpStream> {
        // (A stopping reactor has no listener: nothing is accepted then.)
        let refusal = if self.conns.len() >= self.max_conns {
            Counters::add(&self.counters.connections_refused, 1);
            Some((503, "max connections reached", "server at its connection limit, try again later\n"))
        } else if let Some(limits) = &self.admit.ip_limits {
            match limits.admit(peer.ip(), self.now) {
                Ok(()) => None,
                Err(IpRefusal::TooManyConnections) => {
                    Counters::add(&self.counters.connections_refused_per_ip, 1);
                    Some((429, "per-IP connection cap reached", "too many connections from your address\n"))
                }
                Err(IpRefusal::HandshakeRate) => {
                    Counters::add(&self.counters.handshakes_refused_per_ip, 1);
                    Some((
                        429,
                        "per-IP handshake rate exceeded",
                        "too many new connections from your address, slow down\n",
                    ))
                }
            }
        } else {
            None
        };
        let Some((status, what, body)) = refusal else {
            return Some(stream);
        };
        if let Some(unlogged) = self.admit.log_now(self.now) {
            log::warn!(
                "reactor {}: {what}: refusing {peer} with {status} ({unlogged} more refusals not logged)",
                self.index
            );
        }
        refuse(stream, status, body, tls);
        None
    }

    /// Whether the main listener speaks TLS (its refusals are then TLS alerts; a plain listener beside
    /// it never does).
    pub(super) fn tls_listener(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// `accept` failed with `e`. Out of descriptors: count it, shed one pending connection through the
    /// reserve descriptor (answered 503), and rest the listener for `accept_retry` (the connections held
    /// are served meanwhile; accepting resumes on the timer). Any other error rests the listener too, so
    /// a persistent failure cannot spin the loop.
    pub(super) fn accept_failed(&mut self, e: &io::Error, plain: bool) {
        if out_of_descriptors(e) {
            Counters::add(&self.counters.accept_fd_exhausted, 1);
            if let Some(reserve) = self.admit.reserve.take() {
                drop(reserve);
                let listener = if plain { &self.plain_listener } else { &self.listener };
                if let Some(Ok((stream, _))) = listener.as_ref().map(|l| l.accept()) {
                    Counters::add(&self.counters.connections_shed, 1);
                    let tls = !plain && self.tls_listener();
                    refuse(stream, 503, "server out of file descriptors, try again later\n", tls);
                }
                self.admit.reserve = open_reserve();
            }
        }
        log::warn!(
            "reactor {}: accept failed: {e}; serving the {} connections held, accepting again in {:?}",
            self.index,
            self.conns.len(),
            self.config.accept_retry
        );
        self.admit.accept_paused_until = Some(self.now + self.config.accept_retry);
    }
}

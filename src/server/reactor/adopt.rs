//! Adopting a connection whose upgrade another HTTP server completed (`Handle::adopt_upgraded`).
//!
//! Owns: taking such a socket in as an open WebSocket (the ceiling and stopping checks, the handler
//! factory, the permessage-deflate agreed before the 101, `on_open`, the bytes the other server read
//! past the request head as the first input; plain TCP only: a TLS session stays with the server that
//! holds it), and counting refusals that server answered for the engine. Never touches: HTTP (the
//! request was checked by `server::handoff` before the 101 went out), frames (the read path parses
//! them).

use std::io::Write as _;

use mio::net::TcpStream;

use crate::buf::InboundBuf;
use crate::metrics::Counters;
use crate::proto::deflate;
use crate::proto::{encode_frame, CloseCode, Connection, OpCode, Role};

use super::super::handler::{ConnId, ConnInfo};
use super::super::handoff::AcceptedUpgrade;
use super::super::rate_limit::ConnRate;
use super::super::transport::NewTransport;
use super::super::Handle;
use super::calls::{invoke, Env, EnvParts};
use super::conn::{OpenConn, Phase};
use super::upgrade::intern;
use super::Reactor;

/// A close frame written straight to a socket that will not be adopted (its 101 is already out, so the
/// peer is owed a WebSocket close, not an HTTP status). Best effort: the socket is dropped after it.
fn refuse_open(mut stream: std::net::TcpStream, code: CloseCode, reason: &str) {
    let mut payload = code.0.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    let mut frame = Vec::with_capacity(payload.len() + 2);
    encode_frame(&mut frame, OpCode::Close, true, 0, None, &payload);
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(&frame);
}

impl Reactor {
    /// Takes in a socket whose 101 another server sent, as an open WebSocket: `already_read` (frames the
    /// client pipelined behind its request) is parsed first, as if this reactor had read it.
    pub(super) fn adopt_upgraded(
        &mut self,
        stream: std::net::TcpStream,
        upgrade: AcceptedUpgrade,
        already_read: Vec<u8>,
        handle: &Handle,
    ) {
        Counters::add(&self.counters.connections_accepted, 1);
        if self.stopping.is_some() || self.conns.len() >= self.max_conns {
            Counters::add(&self.counters.connections_refused, 1);
            let (code, reason) = if self.stopping.is_some() {
                (CloseCode::GOING_AWAY, "server shutting down")
            } else {
                (CloseCode(1013), "try again later")
            };
            log::warn!("reactor {}: not adopting an upgraded connection: {reason}", self.index);
            refuse_open(stream, code, reason);
            return;
        }
        let AcceptedUpgrade { request, protocol, deflate, make } = upgrade;
        let Some(handler) = make.and_then(|make| make.make(&request)) else {
            // No route and no factory (a caller's mistake: `has_handler` said so), or the factory panicked.
            Counters::add(&self.counters.connections_refused, 1);
            refuse_open(stream, CloseCode(1011), "handler factory failed");
            return;
        };
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("reactor {}: cannot adopt an upgraded socket: {e}", self.index);
            return;
        }
        let info = ConnInfo::new(
            intern(&mut self.paths, &request.path),
            request.query.clone().map(String::into_boxed_str),
            protocol.map(String::into_boxed_str),
            self.config.keep_request_headers.then(|| request.headers.clone().into_boxed_slice()),
        );
        let mut proto = Connection::new(Role::Server, self.proto_config.clone(), self.now);
        if let Some((agreed, _)) = deflate {
            deflate::add_to(&mut proto, Role::Server, &agreed, &self.config.deflate);
        }
        let mut open = OpenConn::new(proto, handler, info);
        // The message and byte rate limits of a connection the engine accepted (`upgrade::accept`).
        open.set_rate(ConnRate::new(self.config.message_rate, self.config.byte_rate, self.now));
        let inbound = (!already_read.is_empty()).then(|| {
            let mut buf = InboundBuf::from_vec(self.pool.take_for(already_read.len()));
            buf.append(&already_read);
            Box::new(buf)
        });
        let transport = NewTransport::tcp(TcpStream::from_std(stream));
        let _ = transport.stream.set_nodelay(true);
        let slot = match self.insert_conn(transport, Phase::Open(open), inbound, false) {
            Ok(slot) => slot,
            Err((e, _)) => {
                log::warn!("reactor {}: cannot adopt an upgraded socket: {e}", self.index);
                return;
            }
        };
        Counters::add(&self.counters.connections_upgraded, 1);
        let conn = &mut self.conns[slot];
        let id = ConnId::new(self.index, slot, conn.generation);
        let parts =
            EnvParts { calls: &mut self.calls, config: &self.config, handle, counters: &self.counters, now: self.now };
        let mut env = Env::new(id, self.tls.transport(&mut conn.stream, slot), 0, parts);
        let mut slow_peer = false;
        if let Phase::Open(open) = &mut conn.phase {
            invoke(open, &mut env, Some(&request.headers), |h, ctx| h.on_open(ctx));
            slow_peer = env.slow_peer();
        }
        if self.conns[slot].inbound.is_some() {
            slow_peer |= self.process(slot, handle, None).slow_peer;
        }
        self.after_event(slot, handle, slow_peer);
        self.arm(slot);
        // Bytes that arrived after the hand-off are picked up by the readiness event registration gives.
    }
}

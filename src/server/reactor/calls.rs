//! Handler calls: the environment a callback runs in, built in one place, and panic isolation.
//!
//! Owns: [`CallState`] (the reactor's per-call scratch: cork, deferred work, drop count, slow-peer
//! flag), [`Env`] and its one constructor, `invoke` (a callback under `catch_unwind`), `on_close` exactly
//! once, and the dispatch of protocol events to the handler. Never touches: sockets beyond what
//! [`Writer`] offers, timers, the slab.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::metrics::{Counters, MessageKind};
use crate::proto::{CloseCode, Event};

use super::super::config::Config;
use super::super::handler::{ConnId, Ctx, Deferred, Handler, Message};
use super::super::transport::Transport;
use super::super::Handle;
use super::conn::{OpenConn, Phase};
use super::write::Writer;
use super::Reactor;

/// What handler calls share on one reactor: reused between calls, so a call allocates nothing.
#[derive(Default)]
pub(super) struct CallState {
    /// Frames written during one event; flushed (or queued) at its end.
    pub(super) cork: Vec<u8>,
    /// Work a callback asked for that touches other connections.
    pub(super) deferred: Deferred,
    /// Messages dropped by the backpressure policy, not yet counted.
    pub(super) dropped: u64,
    /// A send during the current event found the peer at the ceiling under the `Close` policy.
    pub(super) slow_peer: bool,
}

/// What a callback's [`Ctx`] borrows from the reactor.
pub(super) struct Env<'a> {
    pub(super) id: ConnId,
    pub(super) writer: Writer<'a>,
    pub(super) deferred: &'a mut Deferred,
    pub(super) config: &'a Config,
    pub(super) handle: &'a Handle,
    pub(super) counters: &'a Counters,
    pub(super) now: Instant,
}

/// The reactor-wide parts an [`Env`] is made of.
pub(super) struct EnvParts<'a> {
    pub(super) calls: &'a mut CallState,
    pub(super) config: &'a Config,
    pub(super) handle: &'a Handle,
    pub(super) counters: &'a Counters,
    pub(super) now: Instant,
}

impl<'a> Env<'a> {
    /// The one place an environment is built: for connection `id`, writing to `transport` behind
    /// `queued` bytes already queued. Resets the slow-peer flag for the new event.
    pub(super) fn new(id: ConnId, transport: Transport<'a>, queued: usize, parts: EnvParts<'a>) -> Self {
        let EnvParts { calls, config, handle, counters, now } = parts;
        calls.slow_peer = false;
        let CallState { cork, deferred, dropped, slow_peer } = calls;
        Self {
            id,
            writer: Writer { cork, transport, queued, config, slow_peer, dropped, counters },
            deferred,
            config,
            handle,
            counters,
            now,
        }
    }

    pub(super) fn slow_peer(&self) -> bool {
        *self.writer.slow_peer
    }
}

impl Reactor {
    /// Runs one callback of an open connection outside a read (`on_drain`, `on_timer`), then finishes the
    /// event as a read does (flush, deferred work, close checks). Nothing is called after `on_close`.
    pub(super) fn call_handler(
        &mut self,
        slot: usize,
        handle: &Handle,
        f: impl FnOnce(&mut dyn Handler, &mut Ctx<'_>),
    ) {
        let index = self.index;
        let in_ring = usize::from(self.ring_sending(slot));
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let queued = conn.queued() + in_ring;
        let Phase::Open(open) = &mut conn.phase else { return };
        if open.notified {
            return;
        }
        let parts =
            EnvParts { calls: &mut self.calls, config: &self.config, handle, counters: &self.counters, now: self.now };
        let transport = self.tls.transport(&mut conn.stream, slot);
        let mut env = Env::new(ConnId::new(index, slot, conn.generation), transport, queued, parts);
        invoke(open, &mut env, None, f);
        let slow_peer = env.slow_peer();
        self.after_event(slot, handle, slow_peer);
    }
}

/// Runs one callback, isolating a panic: the connection is closed with 1011 and never called again.
pub(super) fn invoke(
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
            info,
            headers,
            out: env.writer.reborrow(),
            deferred: env.deferred,
            handle: env.handle,
            now: env.now,
        };
        catch_unwind(AssertUnwindSafe(|| f(handler.as_mut(), &mut ctx)))
    };
    if result.is_err() {
        *poisoned = true;
        Counters::add(&env.counters.handler_panics, 1);
        log::error!("handler panicked on connection {}: closing it with 1011", env.id);
        if proto.close(env.now, CloseCode::INTERNAL_ERROR, "internal error", env.writer.cork).is_ok() {
            Counters::add(&env.counters.closes_sent, 1);
        }
    }
}

/// Calls `on_close` once per connection.
pub(super) fn notify_close(open: &mut OpenConn, env: &mut Env<'_>, code: CloseCode, reason: &str) {
    if open.notified {
        return;
    }
    open.notified = true;
    open.close_code = code;
    invoke(open, env, None, |h, ctx| h.on_close(ctx, code, reason));
}

/// Hands one protocol event to the handler. `was_open`: whether data could still be sent before the
/// read that produced it (then the state machine answered a close frame with one of its own).
pub(super) fn dispatch(open: &mut OpenConn, env: &mut Env<'_>, event: Event<'_>, was_open: bool) {
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
            invoke(open, env, None, |h, ctx| h.on_pong(ctx, payload));
        }
        Event::Close(frame) => {
            if was_open {
                // Answered with the peer's code by the state machine.
                Counters::add(&counters.closes_sent, 1);
            }
            Counters::add(&counters.closes_received, 1);
            let (code, reason) = frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
            notify_close(open, env, code, reason);
        }
    }
}

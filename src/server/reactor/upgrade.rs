//! Upgrade and plain HTTP: what happens to a connection's bytes before it is a WebSocket.
//!
//! Owns: parsing requests on a fresh connection (plain HTTP requests, keep-alive and pipelined, then
//! possibly an upgrade), the server side of the opening handshake (origin policy, routing, the handler
//! factory, subprotocol choice, the 101), the built-in HTTP endpoints, and the client side for in-loop
//! clients (checking the 101 through [`ClientHandshake`](crate::proto::handshake::ClientHandshake)).
//! Never touches: sockets (it writes into the cork), frames after the upgrade.

use std::collections::HashMap;
use std::ops::Not;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::http::{self, HttpLimits, HttpRequest, HttpResponse};
use crate::metrics::{Counters, HandshakeFailure, MetricsReport, TcpPhase};
use crate::proto::handshake::{self, HandshakeError, ServerHandshake, UpgradeRequest};
use crate::proto::{deflate, negotiate, Connection, ConnectionConfig, Role};

use super::super::config::Config;
use super::super::handler::{ConnInfo, ConnectError};
use super::super::rate_limit::ConnRate;
use super::super::router::Router;
use super::super::Handle;
use super::calls::{invoke, Env};
use super::conn::{count_as, OpenConn, PendingClient, Phase};
use crate::client::{Progress, ProxyError};

/// The reactor parts an upgrade needs.
pub(super) struct Upgrade<'a> {
    pub(super) handshake: &'a ServerHandshake,
    pub(super) http_limits: &'a HttpLimits,
    pub(super) router: &'a Router,
    pub(super) paths: &'a mut HashMap<Box<str>, Arc<String>>,
    pub(super) proto_config: &'a Arc<ConnectionConfig>,
}

/// Serves the requests at the start of `buf` on a connection in the `Handshake` phase: plain HTTP
/// requests are answered (into the cork) until one is an upgrade, which opens the connection (the
/// handler's `on_open` runs) or is refused. Returns how many bytes were consumed and whether the
/// connection opened; the phase says where it stands, and `counted` follows it (http from the first
/// plain request on, before its answer is built, so a `/metrics` scrape counts itself; open on the
/// upgrade; a refused upgrade stays where it was).
pub(super) fn server_requests(
    up: &mut Upgrade<'_>,
    buf: &[u8],
    phase: &mut Phase,
    counted: &mut TcpPhase,
    env: &mut Env<'_>,
) -> (usize, bool) {
    let mut pos = 0;
    while matches!(phase, Phase::Handshake) && pos < buf.len() {
        match up.handshake.parse(&buf[pos..]) {
            Ok(None) => break,
            Ok(Some((request, head_len))) => {
                pos += head_len;
                match accept(&request, env.config, up, env.writer.cork, env.now) {
                    Ok(open) => {
                        Counters::add(&env.counters.connections_upgraded, 1);
                        count_as(counted, TcpPhase::Open, env.counters);
                        *phase = Phase::Open(open);
                        if let Phase::Open(open) = phase {
                            invoke(open, env, Some(&request.headers), |h, ctx| h.on_open(ctx));
                        }
                        return (pos, true);
                    }
                    Err((status, response)) => {
                        env.counters.record_handshake_failure(HandshakeFailure::from_http_status(status));
                        env.writer.cork.extend_from_slice(&response);
                        *phase = Phase::Rejected;
                    }
                }
            }
            Err(HandshakeError::NotUpgrade) => match http::parse_request(&buf[pos..], up.http_limits) {
                Ok(None) => break,
                Ok(Some((request, len))) => {
                    pos += len;
                    Counters::add(&env.counters.http_requests, 1);
                    count_as(counted, TcpPhase::Http, env.counters);
                    let keep_alive = request.keep_alive() && env.handle.is_stopping().not();
                    let response = answer_http(&request, env.config, up.router, env.handle);
                    response.write(env.writer.cork, request.method == "HEAD", keep_alive);
                    if !keep_alive {
                        *phase = Phase::Rejected;
                    }
                }
                Err(err) => {
                    Counters::add(&env.counters.http_requests, 1);
                    count_as(counted, TcpPhase::Http, env.counters);
                    log::debug!("{}: HTTP request refused: {err}", env.id);
                    HttpResponse::text(err.status(), format!("{err}\n")).write(env.writer.cork, false, false);
                    *phase = Phase::Rejected;
                }
            },
            Err(err) => {
                env.counters.record_handshake_failure(HandshakeFailure::from(&err));
                log::debug!("{}: upgrade request refused: {err}", env.id);
                env.writer.cork.extend_from_slice(&handshake::error_response(&err));
                *phase = Phase::Rejected;
            }
        }
    }
    (pos, false)
}

/// Feeds an in-loop client's bytes to its handshake. On a valid 101 the connection opens (`on_open`
/// runs) and the bytes after the head are left for the frame parser; on a refusal the handler hears
/// `on_connect_error` and the phase becomes `Rejected` (the socket closes once settled). Returns how many
/// bytes were consumed and whether the connection opened (then `counted` moves to open).
pub(super) fn client_response(
    up: &mut Upgrade<'_>,
    buf: &[u8],
    phase: &mut Phase,
    counted: &mut TcpPhase,
    env: &mut Env<'_>,
) -> (usize, bool) {
    let Phase::AwaitingResponse(pending) = std::mem::replace(phase, Phase::Rejected) else {
        return (0, false);
    };
    let mut pending = pending;
    if let Some(mut tunnel) = pending.tunnel.take() {
        let kind = match tunnel.machine.feed(buf, env.writer.cork) {
            Ok(Progress::NeedMore) => {
                pending.tunnel = Some(tunnel);
                *phase = Phase::AwaitingResponse(pending);
                return (buf.len(), false);
            }
            Ok(Progress::Done { used }) if used == buf.len() => {
                // The tunnel is open: the upgrade request goes through it now.
                env.writer.cork.extend_from_slice(&std::mem::take(&mut pending.request));
                *phase = Phase::AwaitingResponse(pending);
                return (buf.len(), false);
            }
            Ok(Progress::Done { .. }) => {
                ProxyError::Malformed("bytes after the proxy's answer, before any request".into())
            }
            Err(kind) => kind,
        };
        let mut handler = pending.handler;
        let error = ConnectError::Client(crate::client::Error::Proxy { proxy: tunnel.proxy, kind });
        if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(&error))).is_err() {
            Counters::add(&env.counters.handler_panics, 1);
        }
        return (buf.len(), false);
    }
    let fed = pending.handshake.feed(buf).and_then(|done| match done {
        Some((response, consumed)) => {
            let extension = deflate::client_extension(&pending.deflate, &response.extensions)?;
            Ok(Some((response, consumed, extension)))
        }
        None => Ok(None),
    });
    match fed {
        Ok(None) => {
            *phase = Phase::AwaitingResponse(pending);
            (buf.len(), false)
        }
        Ok(Some((response, consumed, extension))) => {
            Counters::add(&env.counters.connections_upgraded, 1);
            count_as(counted, TcpPhase::Open, env.counters);
            let PendingClient { handler, path_and_query, .. } = *pending;
            let (path, query) = match path_and_query.split_once('?') {
                Some((p, q)) => (p, Some(q.to_owned().into_boxed_str())),
                None => (path_and_query.as_str(), None),
            };
            let protocol = response.protocol.clone().map(String::into_boxed_str);
            let mut proto = Connection::new(Role::Client, up.proto_config.clone(), env.now);
            if let Some(extension) = extension {
                proto.add_extension(extension);
            }
            *phase = Phase::Open(OpenConn::new(
                proto,
                handler,
                ConnInfo::new(intern(up.paths, path), query, protocol, None),
            ));
            if let Phase::Open(open) = phase {
                invoke(open, env, Some(&response.headers), |h, ctx| h.on_open(ctx));
            }
            (consumed, true)
        }
        Err(err) => {
            env.counters.record_handshake_failure(HandshakeFailure::from(&err));
            let mut handler = pending.handler;
            let error = ConnectError::Handshake(err);
            if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(&error))).is_err() {
                Counters::add(&env.counters.handler_panics, 1);
            }
            (buf.len(), false)
        }
    }
}

/// Checks an upgrade request against the origin policy and the routes, makes the handler and writes the
/// 101 response into `out`. On refusal, returns the HTTP response to send instead.
fn accept(
    request: &UpgradeRequest,
    config: &Config,
    up: &mut Upgrade<'_>,
    out: &mut Vec<u8>,
    now: std::time::Instant,
) -> Result<OpenConn, (u16, Vec<u8>)> {
    if let Some(allowed) = &config.allowed_origins {
        let ok = request.origin.as_deref().is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err((403, handshake::plain_response(403, "origin not allowed\n")));
        }
    }
    let Some(factory) = up.router.route(&request.path) else {
        return Err((404, handshake::plain_response(404, "no WebSocket handler for this path\n")));
    };
    let Ok(handler) = catch_unwind(AssertUnwindSafe(|| factory(request))) else {
        log::error!("handler factory for {} panicked", request.path);
        return Err((500, handshake::plain_response(500, "handler factory failed\n")));
    };
    let protocol = config.subprotocols.select(&request.offered_protocols());
    let deflate = deflate::accept_offers(&config.deflate, &request.extensions);
    let answer = deflate.as_ref().map(|(_, answer)| negotiate::format_extensions(std::slice::from_ref(answer)));
    if let Err(e) = up.handshake.accept(request, protocol.as_deref(), answer.as_deref(), out) {
        log::error!("cannot write the upgrade response: {e}");
        return Err((500, handshake::plain_response(500, "cannot complete the upgrade\n")));
    }
    let info = ConnInfo::new(
        intern(up.paths, &request.path),
        request.query.clone().map(String::into_boxed_str),
        protocol.map(String::into_boxed_str),
        config.keep_request_headers.then(|| request.headers.clone().into_boxed_slice()),
    );
    // The 101 is corked now; the connection's clock starts with it.
    let mut proto = Connection::new(Role::Server, up.proto_config.clone(), now);
    if let Some((agreed, _)) = deflate {
        deflate::add_to(&mut proto, Role::Server, &agreed, &config.deflate);
    }
    let mut open = OpenConn::new(proto, handler, info);
    open.set_rate(ConnRate::new(config.message_rate, config.byte_rate, now));
    Ok(open)
}

/// Interned paths kept per reactor at most; further distinct paths get their own copy.
pub(super) const MAX_INTERNED_PATHS: usize = 1024;

/// The shared copy of `path`, so that connections to one path share one allocation.
pub(super) fn intern(paths: &mut HashMap<Box<str>, Arc<String>>, path: &str) -> Arc<String> {
    if let Some(shared) = paths.get(path) {
        return shared.clone();
    }
    let shared = Arc::new(path.to_owned());
    if paths.len() < MAX_INTERNED_PATHS {
        paths.insert(path.into(), shared.clone());
    }
    shared
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
        let mut body = crate::metrics::prometheus_text(&report, "wsloop");
        if let Some(broker) = handle.broker_metrics() {
            body.push_str(&broker.prometheus_text("wsloop"));
        }
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

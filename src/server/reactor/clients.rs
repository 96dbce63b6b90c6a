//! In-loop clients: outgoing connections the reactor opens and drives with the same `Handler` trait.
//!
//! Owns: the non-blocking connect (or taking over a stream connected off the reactor: see
//! `server::dial`), writing the upgrade request once TCP connects, and reporting a
//! failure before the upgrade (`on_connect_error`). The 101 itself is checked by the upgrade room through
//! [`ClientHandshake`]. Never touches: frames after the upgrade.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mio::net::TcpStream;

use crate::client::{Error, ProxyError, Tunnel};
use crate::metrics::Counters;
use crate::proto::handshake::{ClientHandshake, ClientRequest};
use crate::proto::CloseCode;

use super::super::handler::{ConnectError, Handler};
use super::super::transport::NewTransport;
use super::super::Handle;
use super::conn::{PendingClient, PendingTunnel, Phase};
use super::{millis, ClientStart, Reactor};

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

/// While a proxy tunnel is still being opened, a failure is the proxy's: the same `Error::Proxy` a blocking
/// client reports. `connecting`: TCP to the proxy is not up yet.
fn through_proxy(tunnel: Option<&PendingTunnel>, connecting: bool, error: ConnectError) -> ConnectError {
    let Some(tunnel) = tunnel else { return error };
    let kind = match error {
        ConnectError::Io(e) if connecting => ProxyError::Connect(e),
        ConnectError::Io(e) => ProxyError::Io(e),
        ConnectError::Timeout => ProxyError::Timeout,
        ConnectError::ClosedDuringHandshake => ProxyError::Closed,
        other => return other,
    };
    ConnectError::Client(Error::Proxy { proxy: tunnel.proxy.clone(), kind })
}

/// Plain TCP, or with `options.tls` a client TLS session for `host` (its port, if any, dropped).
fn client_transport(stream: TcpStream, host: &str, options: &super::super::ConnectOptions) -> io::Result<NewTransport> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &options.tls {
        let name = host_without_port(host);
        let name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let session = rustls::client::UnbufferedClientConnection::new(tls.rustls().clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        return Ok(NewTransport::tls(stream, super::super::tls_session::TlsStream::client(session)?));
    }
    let _ = (host, options);
    Ok(NewTransport::tcp(stream))
}

/// `example.com:8443` → `example.com`, `[::1]:443` → `::1`, `example.com` as it is.
#[cfg(feature = "tls")]
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
}

impl Reactor {
    /// Starts an in-loop client connection: non-blocking TCP connect, request written once connected.
    pub(super) fn start_client(&mut self, start: ClientStart) {
        let ClientStart { addr, stream, tunnel, host, path_and_query, options, handler } = start;
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
        let mut req = ClientRequest::new(host, path_and_query.clone());
        for protocol in &options.protocols {
            req = req.with_protocol(protocol.clone());
        }
        for (name, value) in &options.headers {
            req = req.with_header(name.clone(), value.clone());
        }
        if let Some(offer) = crate::proto::deflate::client_offer_header(&options.deflate) {
            req = req.with_extensions(offer);
        }
        let mut request = Vec::with_capacity(256);
        let handshake = match ClientHandshake::start(&req, self.handshake.limits, &mut request) {
            Ok(handshake) => handshake,
            Err(e) => return fail(&mut handler, ConnectError::Handshake(e)),
        };
        let tunnel = tunnel.map(|(proxy, target)| {
            let mut first = Vec::new();
            let machine = Tunnel::start(&proxy, &target, &mut first);
            Box::new(PendingTunnel { machine, first, proxy: proxy.to_string() })
        });
        let connected = match stream {
            // Registered like a connecting socket: its first writable event sends the request.
            Some(stream) => stream.set_nonblocking(true).map(|()| TcpStream::from_std(stream)),
            None => connect_nonblocking(addr, options.local_addr),
        };
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => return fail(&mut handler, through_proxy(tunnel.as_deref(), true, ConnectError::Io(e))),
        };
        let _ = stream.set_nodelay(true);
        let transport = match client_transport(stream, &req.host, &options) {
            Ok(transport) => transport,
            Err(e) => return fail(&mut handler, ConnectError::Io(e)),
        };
        let pending = PendingClient {
            handler,
            request,
            handshake,
            path_and_query,
            timeout_ms: millis(options.timeout),
            deflate: options.deflate,
            tunnel,
        };
        if let Err((e, Phase::Connecting(mut pending))) =
            self.insert_conn(transport, Phase::Connecting(Box::new(pending)), None, false)
        {
            fail(&mut pending.handler, ConnectError::Io(e));
        }
    }

    /// A connecting socket became ready: find out whether TCP connected, then send the upgrade request.
    pub(super) fn check_connected(&mut self, slot: usize, handle: &Handle) {
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
        let Phase::Connecting(mut pending) = std::mem::replace(&mut conn.phase, Phase::Rejected) else { return };
        // Through a proxy, its handshake goes first; the request follows once the tunnel is open.
        let first = match &mut pending.tunnel {
            Some(tunnel) => std::mem::take(&mut tunnel.first),
            None => std::mem::take(&mut pending.request),
        };
        self.calls.cork.extend_from_slice(&first);
        conn.phase = Phase::AwaitingResponse(pending);
        self.flush(slot, handle);
    }

    /// Reports a failed in-loop client connection to its handler and drops it.
    pub(super) fn fail_client(&mut self, slot: usize, error: ConnectError) {
        let Some(mut conn) = self.conns.try_remove(slot) else { return };
        if let Some(key) = conn.timer.take() {
            self.wheel.cancel(key);
        }
        self.tls.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let connecting = matches!(conn.phase, Phase::Connecting(_));
        if let Phase::Connecting(pending) | Phase::AwaitingResponse(pending) = &mut conn.phase {
            let error = through_proxy(pending.tunnel.as_deref(), connecting, error);
            if catch_unwind(AssertUnwindSafe(|| pending.handler.on_connect_error(&error))).is_err() {
                Counters::add(&self.counters.handler_panics, 1);
            }
        }
        conn.release_buffers(&mut self.pool);
        self.counters.record_tcp_closed(conn.counted);
        self.counters.record_close(CloseCode::ABNORMAL.0);
    }
}

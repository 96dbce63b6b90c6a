//! In-loop clients by URL and through a proxy: where their socket is set up. When something must be
//! resolved (the server's name, a proxy's name, or the server's name for `socks5://`), a helper thread
//! gets the connected stream exactly as the blocking client does (`client::connect_stream`), then hands
//! it to a reactor, which writes the upgrade request. A proxy given by address with a target the client
//! need not resolve runs entirely in the loop: the reactor connects to the proxy and runs the sans-IO
//! proxy handshake (`client::Tunnel`) before the upgrade request.
//!
//! Owns: [`Handle::connect_url`] and the proxy branch of [`Handle::connect`]. Never touches: the reactor's
//! state (everything goes over the command channel like any other connect).

use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::client::{Error, Proxy, Target, WsUrl};

use super::handler::{ConnectError, Handler};
use super::reactor::ClientStart;
use super::{ConnectOptions, Handle};

impl Handle {
    /// Opens an in-loop client connection to a `ws://` URL on one of the reactors and returns at once.
    /// A helper thread resolves the host (IP literals as they are), connects (each address in turn, or
    /// through [`ConnectOptions::proxy`]) within [`ConnectOptions::timeout`], and hands the stream to a
    /// reactor, which completes the handshake within what is left of the timeout. Through a proxy given
    /// by address, with a target the client need not resolve (an IP literal, or a name for an HTTP or
    /// `socks5h://` proxy), no thread is involved: the reactor runs the proxy handshake itself. Success is
    /// reported through `handler.on_open`; failure through `handler.on_connect_error`, with
    /// [`ConnectError::Client`] holding the blocking client's error for everything before the handshake.
    pub fn connect_url<H: Handler + Send>(&self, url: &str, options: ConnectOptions, handler: H) {
        let mut handler: Box<dyn Handler + Send> = Box::new(handler);
        let parsed = match WsUrl::parse(url) {
            Ok(parsed) => parsed,
            Err(reason) => return report(&mut handler, Error::InvalidUrl { url: url.to_owned(), reason }),
        };
        #[cfg(not(feature = "tls"))]
        if parsed.is_secure() {
            return report(&mut handler, Error::TlsUnsupported);
        }
        // wss:// without TLS settings: the defaults (Mozilla roots), as the blocking client.
        #[cfg(feature = "tls")]
        let options = {
            let mut options = options;
            if parsed.is_secure() {
                options.tls.get_or_insert_with(Default::default);
            }
            options
        };
        // A proxy at an IP address, and a target the client need not resolve: all of it in the loop.
        if let Some(proxy) = options.proxy.as_ref().filter(|_| !uses_tls(&options)) {
            let target = Target::without_lookup(proxy, parsed.host(), parsed.port());
            if let (Some(proxy_addr), Some(target)) = (proxy.addr().socket_addr(), target) {
                let (host, path) = (parsed.host_header(), parsed.path_and_query().to_owned());
                let proxy = proxy.clone();
                return self.connect_tunnelled(proxy_addr, proxy, target, host, path, options, handler);
            }
        }
        let handle = self.clone();
        let started = Instant::now();
        spawn(handler, move |handler| {
            let stream = crate::client::connect_stream(&parsed, options.timeout, options.proxy.as_ref());
            handle.hand_over(
                stream,
                started,
                parsed.host_header(),
                parsed.path_and_query().to_owned(),
                options,
                handler,
            )
        });
    }

    /// Gives a stream connected elsewhere (or the error that prevented it) to a reactor.
    fn hand_over(
        &self,
        stream: Result<TcpStream, Error>,
        started: Instant,
        host: String,
        path_and_query: String,
        mut options: ConnectOptions,
        mut handler: Box<dyn Handler + Send>,
    ) {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => return report(&mut handler, e),
        };
        let addr = match stream.peer_addr() {
            Ok(addr) => addr,
            Err(e) => return report(&mut handler, Error::Io(e)),
        };
        // The reactor's timer bounds the handshake with what is left.
        options.timeout = options.timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let reactors = self.shared.links.len().max(1);
        let reactor = self.shared.next_client_reactor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % reactors;
        let start = ClientStart { addr, stream: Some(stream), tunnel: None, host, path_and_query, options, handler };
        self.send_connect(reactor, Box::new(start));
    }

    /// Starts a connection whose proxy handshake runs in the loop (the sans-IO `client::Tunnel`): the
    /// reactor connects to `proxy_addr`, writes the proxy's request once connected, feeds it the answer and
    /// sends the upgrade request through the open tunnel; no helper thread.
    #[allow(clippy::too_many_arguments)]
    fn connect_tunnelled(
        &self,
        proxy_addr: SocketAddr,
        proxy: Proxy,
        target: Target,
        host: String,
        path_and_query: String,
        options: ConnectOptions,
        handler: Box<dyn Handler + Send>,
    ) {
        let reactors = self.shared.links.len().max(1);
        let reactor = self.shared.next_client_reactor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % reactors;
        let tunnel = Some((proxy, target));
        let start = ClientStart { addr: proxy_addr, stream: None, tunnel, host, path_and_query, options, handler };
        self.send_connect(reactor, Box::new(start));
    }
}

/// [`Handle::connect`] with a proxy: in the loop when the proxy is given by address, else the tunnel to
/// `addr` is opened on a helper thread (which resolves the proxy's name).
pub(super) fn through_proxy(
    handle: Handle,
    proxy: Proxy,
    addr: SocketAddr,
    host: &str,
    path_and_query: &str,
    options: ConnectOptions,
    handler: Box<dyn Handler + Send>,
) {
    let (host, path_and_query) = (host.to_owned(), path_and_query.to_owned());
    if let Some(proxy_addr) = proxy.addr().socket_addr().filter(|_| !uses_tls(&options)) {
        return handle.connect_tunnelled(proxy_addr, proxy, Target::Addr(addr), host, path_and_query, options, handler);
    }
    let started = Instant::now();
    spawn(handler, move |handler| {
        let target = match addr {
            SocketAddr::V4(a) => crate::client::Host::Ipv4(*a.ip()),
            SocketAddr::V6(a) => crate::client::Host::Ipv6(*a.ip()),
        };
        let stream = crate::client::open_tunnel(&proxy, &target, addr.port(), options.timeout);
        handle.hand_over(stream, started, host, path_and_query, options, handler);
    });
}

/// Whether the reactor wraps the connection in TLS as soon as it registers it: then a proxy handshake
/// cannot run in the loop (its bytes would be encrypted), so the helper thread opens the tunnel and the
/// TLS session starts over the tunnelled stream.
fn uses_tls(options: &ConnectOptions) -> bool {
    #[cfg(feature = "tls")]
    return options.tls.is_some();
    #[cfg(not(feature = "tls"))]
    {
        let _ = options;
        false
    }
}

/// Runs `work` on a helper thread of its own; when no thread can be made, reports that to the handler.
fn spawn(handler: Box<dyn Handler + Send>, work: impl FnOnce(Box<dyn Handler + Send>) + Send + 'static) {
    // The handler moves into the thread only if it starts; `spawn` gives the closure back on failure
    // only by dropping it, so keep the handler in a slot the error path can still reach.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(handler)));
    let inner = slot.clone();
    let spawned = std::thread::Builder::new().name("wsloop-connect".into()).spawn(move || {
        let handler = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(handler) = handler {
            work(handler);
        }
    });
    if let Err(e) = spawned {
        let handler = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(mut handler) = handler {
            report(&mut handler, Error::Io(e));
        }
    }
}

/// Calls `on_connect_error` with the client's error (a panic in it is caught and logged).
fn report(handler: &mut Box<dyn Handler + Send>, error: Error) {
    let error = ConnectError::Client(error);
    if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(&error))).is_err() {
        log::error!("a handler panicked in on_connect_error ({error})");
    }
}

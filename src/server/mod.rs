//! The engine: reactor threads (one `mio::Poll` each) serving WebSocket connections through [`Handler`]s.
//!
//! Owns: listeners, the per-reactor slab of connections, the read and write paths, timers, routing, and
//! the cross-thread [`Handle`]. Never touches: protocol rules (those are [`crate::proto`]'s).
//!
//! ```no_run
//! use wsloop::server::{Config, Ctx, Handler, Message, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
//!         let _ = match message {
//!             Message::Text(text) => ctx.send_text(text),
//!             Message::Binary(data) => ctx.send_binary(data),
//!         };
//!     }
//! }
//!
//! let mut server = Server::new(Config::default());
//! server.register_handler("/echo", |_req| Echo);
//! let running = server.start().expect("bind");
//! println!("listening on ws://{}/echo", running.local_addr());
//! running.join();
//! ```

mod config;
mod dial;
mod handler;
mod handler_timers;
mod handoff;
mod ip_limits;
mod mailbox;
mod rate_limit;
mod reactor;
mod router;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
mod tls_session;
mod transport;
#[cfg(all(feature = "io-uring", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(feature = "io-uring")))]
pub mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

pub use config::{BackpressurePolicy, Config};
pub use handler::{ConnId, ConnectError, Ctx, Handler, Message, SendError};
pub use handoff::{AcceptedUpgrade, UpgradeRefusal};
pub use rate_limit::{RateLimit, RateLimitPolicy};
#[cfg(feature = "tls")]
pub(crate) use tls::{
    certificates_from_pem as tls_certificates_from_pem, provider as tls_provider, read_file as tls_read_file,
};
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsConfigBuilder, TlsError};

use crate::broker::{Attached, Broker, BrokerSnapshot};
use crate::client::Proxy;
use crate::http::HttpHandler;
use crate::metrics::{Counters, MetricsSnapshot};
use crate::proto::handshake::UpgradeRequest;
use crate::proto::{CloseCode, OpCode};
pub(crate) use handler::server_frame;
use reactor::{Command, Reactor};
use router::Router;

/// A server being configured: add handlers, then [`Server::start`] it.
pub struct Server {
    config: Config,
    router: Router,
    broker: Option<Arc<dyn Broker>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config` and no handlers yet.
    pub fn new(config: Config) -> Self {
        Self { config, router: Router::default(), broker: None }
    }

    /// Routes upgrade requests for `path` (exact match, without the query) to handlers made by
    /// `factory`, one per connection. The path `"*"` matches every path without its own route.
    /// Requests for an unrouted path are answered with 404.
    pub fn register_handler<F, H>(&mut self, path: &str, factory: F) -> &mut Self
    where
        F: Fn(&UpgradeRequest) -> H + Send + Sync + 'static,
        H: Handler,
    {
        self.router.add(path, Arc::new(move |req: &UpgradeRequest| Box::new(factory(req)) as Box<dyn Handler>));
        self
    }

    /// Answers plain (non-upgrade) HTTP requests on the same port with `handler`. It is asked first;
    /// when it returns `None`, the built-in endpoints (`Config::metrics_path`, `Config::health_path`)
    /// answer, then 426 for a WebSocket route and 404 for anything else.
    pub fn set_http_handler(&mut self, handler: impl HttpHandler) -> &mut Self {
        self.router.set_http_handler(Arc::new(handler));
        self
    }

    /// Shares this server's topics with other nodes through `broker` (see [`crate::broker`]): a publish
    /// here also reaches the topic's subscribers on every node using the same broker, and theirs reach
    /// the subscribers here. Off by default. The broker starts with the server and stops after it
    /// ([`RunningServer::join`]).
    pub fn set_broker(&mut self, broker: impl Broker) -> &mut Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Binds one listener per reactor (`SO_REUSEPORT`) and starts the reactor threads.
    pub fn start(self) -> io::Result<RunningServer> {
        let threads = self.config.threads.max(1);
        // SO_REUSEPORT lets every reactor have its own listener, but would also let this server silently
        // share a port another process already serves: check that nobody listens there first.
        let mut addr = reactor::probe_exclusive(self.config.addr)?;
        let mut plain = self.plain_listener_addr().map(reactor::probe_exclusive).transpose()?;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads {
            let listener = reactor::bind_listener(addr)?;
            addr = listener.local_addr()?;
            let plain_listener = match plain {
                Some(plain_addr) => {
                    let listener = reactor::bind_listener(plain_addr)?;
                    plain = Some(listener.local_addr()?);
                    Some(listener)
                }
                None => None,
            };
            listeners.push(reactor::Listeners { main: Some(listener), plain: plain_listener });
        }
        self.spawn(listeners, addr, plain)
    }

    /// Starts the reactor threads without listeners, to host in-loop client connections only (see
    /// [`Handle::connect`]). `Config::addr` is ignored.
    pub fn start_without_listeners(self) -> io::Result<RunningServer> {
        let threads = self.config.threads.max(1);
        let addr = SocketAddr::from(([0, 0, 0, 0], 0));
        self.spawn((0..threads).map(|_| reactor::Listeners::default()).collect(), addr, None)
    }

    /// Where the plain listener beside a TLS one goes (`Config::plain_addr`, with `Config::tls` only).
    fn plain_listener_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "tls")]
        if self.config.tls.is_some() {
            return self.config.plain_addr;
        }
        None
    }

    fn spawn(
        self,
        listeners: Vec<reactor::Listeners>,
        addr: SocketAddr,
        plain_addr: Option<SocketAddr>,
    ) -> io::Result<RunningServer> {
        let threads = listeners.len();
        self.config.deflate.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let config = Arc::new(self.config);
        let router = Arc::new(self.router);
        let ip_limits = ip_limits::IpLimits::new(
            config.max_connections_per_ip,
            config.handshake_rate_per_ip,
            config.per_ip_ipv6_prefix,
        )
        .map(Arc::new);
        let mut reactors = Vec::with_capacity(threads);
        let mut links = Vec::with_capacity(threads);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (reactor, link) = Reactor::prepare(index, listener, config.clone(), router.clone(), ip_limits.clone())?;
            reactors.push(reactor);
            links.push(link);
        }
        let broker = match self.broker {
            Some(broker) => {
                let reactors = Reactors { links: links.iter().cloned().collect() };
                Some(Attached::start(broker, reactors)?)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            config,
            router,
            counters: links.iter().map(|l| l.counters.clone()).collect(),
            links,
            broker,
            local_addr: addr,
            plain_addr,
            stopping: AtomicBool::new(false),
            next_client_reactor: AtomicUsize::new(0),
        });
        let handle = Handle { shared };
        let mut joins = Vec::with_capacity(threads);
        for reactor in reactors {
            let handle = handle.clone();
            let name = format!("wsloop-reactor-{}", reactor.index());
            joins.push(std::thread::Builder::new().name(name).spawn(move || reactor.run(handle))?);
        }
        Ok(RunningServer { handle, threads: joins })
    }
}

/// A started server: its [`Handle`] and its threads.
#[derive(Debug)]
pub struct RunningServer {
    handle: Handle,
    threads: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// A handle usable from any thread.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The address the listeners are bound to (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The address of the plain listener beside the TLS one (`Config::plain_addr`), if there is one.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.handle.shared.plain_addr
    }

    /// Waits for every reactor thread to finish (after [`Handle::stop`]), then stops the broker, if any.
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                log::error!("a reactor thread panicked");
            }
        }
        if let Some(broker) = &self.handle.shared.broker {
            broker.stop();
        }
    }

    /// Stops gracefully (close every connection with 1001, wait for the close handshakes up to the close
    /// timeout) and joins the threads.
    pub fn stop(self) {
        self.handle.stop();
        self.join();
    }
}

/// Settings of one in-loop client connection ([`Handle::connect`], [`Handle::connect_url`],
/// [`client::connect_async`](crate::client::connect_async)). Frame and message limits, ping
/// interval and timeouts other than these two come from the engine's [`Config`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Time allowed for TCP connect plus the handshake. Default 10 s.
    pub timeout: Duration,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Local address to connect from (e.g. `127.0.0.2:0` to use another source address's ephemeral
    /// ports), for the connections a reactor dials itself: [`Handle::connect`], and a proxy given by
    /// address (not a helper thread's connect). Default: chosen by the kernel.
    pub local_addr: Option<SocketAddr>,
    /// Reach the server through this proxy (HTTP `CONNECT` or SOCKS5). Default `None`. A proxy given by
    /// address whose target needs no resolving by the client, on a connection without TLS, has its
    /// handshake run by the reactor;
    /// otherwise a helper thread opens the tunnel (blocking, within `timeout`) and the reactor takes the
    /// stream over. A proxy's failure is [`ConnectError::Client`] with
    /// [`client::Error::Proxy`](crate::client::Error::Proxy) either way.
    pub proxy: Option<Proxy>,
    /// TLS (wss://) for this connection (feature `tls`): the server name sent (SNI) and verified is the
    /// host given to [`Handle::connect`] without its port. Default `None`: plain TCP (ws://).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::client::ClientTls>,
    /// permessage-deflate to offer (default off); a bad answer fails the connect with
    /// `HandshakeError::InvalidDeflateResponse`.
    pub deflate: crate::proto::deflate::DeflateConfig,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            protocols: Vec::new(),
            headers: Vec::new(),
            local_addr: None,
            proxy: None,
            #[cfg(feature = "tls")]
            tls: None,
            deflate: crate::proto::deflate::DeflateConfig::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct ReactorLink {
    pub(crate) tx: mailbox::Mailbox,
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) counters: Arc<Counters>,
}

/// Every reactor's command channel, for a thread outside the engine that delivers to topics (the
/// broker's [`Inbound`](crate::broker::Inbound)).
#[derive(Clone)]
pub(crate) struct Reactors {
    links: Arc<[ReactorLink]>,
}

impl Reactors {
    /// Queues `frame` for the subscribers of `topic` on every reactor.
    pub(crate) fn publish(&self, topic: &Arc<str>, frame: Bytes) {
        for link in self.links.iter() {
            if link.tx.post(Command::Publish(topic.clone(), frame.clone()), &link.counters) == mailbox::Posted::Queued {
                let _ = link.waker.wake();
            }
        }
    }
}

struct Shared {
    /// What [`Handle::accept_upgrade`] checks a request parsed elsewhere against.
    config: Arc<Config>,
    router: Arc<Router>,
    links: Vec<ReactorLink>,
    broker: Option<Attached>,
    counters: Vec<Arc<Counters>>,
    local_addr: SocketAddr,
    /// The plain listener's address beside a TLS one, if any.
    plain_addr: Option<SocketAddr>,
    stopping: AtomicBool,
    next_client_reactor: AtomicUsize,
}

/// A cheap, cloneable, `Send` handle to a running server, usable from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("local_addr", &self.shared.local_addr).finish_non_exhaustive()
    }
}

impl Handle {
    fn send(&self, reactor: usize, command: Command) {
        if let Some(link) = self.shared.links.get(reactor) {
            // A message past `max_pending_command_bytes` is dropped (and counted) here.
            if link.tx.post(command, &link.counters) == mailbox::Posted::Queued {
                if let Err(e) = link.waker.wake() {
                    log::warn!("could not wake reactor {reactor}: {e}");
                }
            }
        }
    }

    /// Hands an in-loop client's start to `reactor`. If that reactor has already exited (the engine
    /// stopped), its handler hears [`ConnectError::Refused`] at once, on this thread, instead of being
    /// dropped without a word.
    pub(crate) fn send_connect(&self, reactor: usize, start: Box<reactor::ClientStart>) {
        let Some(link) = self.shared.links.get(reactor) else {
            return refuse_connect(start);
        };
        match link.tx.post_control(Command::Connect(start)) {
            Ok(()) => {
                if let Err(e) = link.waker.wake() {
                    log::warn!("could not wake reactor {reactor}: {e}");
                }
            }
            Err(Command::Connect(start)) => refuse_connect(start),
            Err(_) => unreachable!("the command sent was a Connect"),
        }
    }

    /// The next reactor, round robin (in-loop clients and adopted sockets).
    fn next_reactor(&self) -> usize {
        let reactors = self.shared.links.len().max(1);
        self.shared.next_client_reactor.fetch_add(1, Ordering::Relaxed) % reactors
    }

    fn send_all(&self, make: impl Fn() -> Command) {
        for reactor in 0..self.shared.links.len() {
            self.send(reactor, make());
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Starts a graceful shutdown: listeners close, every connection gets a 1001 close, reactors exit once
    /// the close handshakes finish or the close timeout passes. Returns at once.
    pub fn stop(&self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            self.send_all(|| Command::Stop);
        }
    }

    /// Whether [`Handle::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Sends a text message to every open connection (encoded once, shared by reference).
    pub fn broadcast_text(&self, text: &str) {
        let frame = server_frame(OpCode::Text, text.as_bytes());
        self.send_all(|| Command::Broadcast(frame.clone()));
    }

    /// Sends a binary message to every open connection.
    pub fn broadcast_binary(&self, data: &[u8]) {
        let frame = server_frame(OpCode::Binary, data);
        self.send_all(|| Command::Broadcast(frame.clone()));
    }

    /// Sends a text message to every subscriber of `topic`.
    pub fn publish_text(&self, topic: &str, text: &str) {
        self.publish(topic, server_frame(OpCode::Text, text.as_bytes()));
    }

    /// Sends a binary message to every subscriber of `topic`.
    pub fn publish_binary(&self, topic: &str, data: &[u8]) {
        self.publish(topic, server_frame(OpCode::Binary, data));
    }

    pub(crate) fn publish(&self, topic: &str, frame: Bytes) {
        let topic: Arc<str> = Arc::from(topic);
        self.send_all(|| Command::Publish(topic.clone(), frame.clone()));
        self.publish_to_broker(&topic, &frame);
    }

    /// Hands a publish already delivered on this node to the broker, if there is one.
    pub(crate) fn publish_to_broker(&self, topic: &Arc<str>, frame: &Bytes) {
        if let Some(broker) = &self.shared.broker {
            broker.publish(topic, frame);
        }
    }

    /// A reactor has its first subscriber to `topic` (the broker counts reactors per topic).
    pub(crate) fn topic_opened(&self, topic: &Arc<str>) {
        if let Some(broker) = &self.shared.broker {
            broker.topic_opened(topic);
        }
    }

    /// A reactor's last subscriber to `topic` left.
    pub(crate) fn topic_closed(&self, topic: &Arc<str>) {
        if let Some(broker) = &self.shared.broker {
            broker.topic_closed(topic);
        }
    }

    /// This node's id on the broker (it tags the node's messages), when the server has one.
    pub fn broker_node(&self) -> Option<u64> {
        self.shared.broker.as_ref().map(Attached::node)
    }

    /// The broker's counters (messages to and from it, losses, reconnects, lag), when the server has
    /// one ([`Server::set_broker`]).
    pub fn broker_metrics(&self) -> Option<BrokerSnapshot> {
        self.shared.broker.as_ref().map(Attached::snapshot)
    }

    pub(crate) fn broadcast_frame_except(&self, skip: usize, frame: Bytes) {
        for reactor in 0..self.shared.links.len() {
            if reactor != skip {
                self.send(reactor, Command::Broadcast(frame.clone()));
            }
        }
    }

    pub(crate) fn publish_except(&self, skip: usize, topic: &Arc<str>, frame: &Bytes) {
        for reactor in 0..self.shared.links.len() {
            if reactor != skip {
                self.send(reactor, Command::Publish(topic.clone(), frame.clone()));
            }
        }
    }

    /// Sends a text message to one connection (dropped silently if it is gone).
    pub fn send_text(&self, id: ConnId, text: &str) {
        self.send(id.reactor(), Command::SendTo(id, server_frame(OpCode::Text, text.as_bytes())));
    }

    /// Sends a binary message to one connection.
    pub fn send_binary(&self, id: ConnId, data: &[u8]) {
        self.send(id.reactor(), Command::SendTo(id, server_frame(OpCode::Binary, data)));
    }

    /// Starts the close handshake on one connection.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) {
        self.send(id.reactor(), Command::Close(id, code, reason.to_owned()));
    }

    /// Opens an in-loop client connection to `addr` on one of the reactors (round robin) and returns at
    /// once. Success is reported through `handler.on_open`, failure through `handler.on_connect_error`;
    /// afterwards the handler is driven exactly like a server-side one. `host` is the `Host` header value
    /// and `path_and_query` the request target (e.g. `/chat?room=1`). With [`ConnectOptions::proxy`], the tunnel
    /// to `addr` is opened first (in the loop for a proxy given by address, see
    /// [`ConnectOptions::proxy`]); to reach a URL by name, use [`Handle::connect_url`]. On an engine that
    /// has stopped, `on_connect_error` hears [`ConnectError::Refused`] at once, on the calling thread.
    pub fn connect<H: Handler + Send>(
        &self,
        addr: SocketAddr,
        host: &str,
        path_and_query: &str,
        options: ConnectOptions,
        handler: H,
    ) {
        let reactors = self.shared.links.len().max(1);
        let reactor = self.shared.next_client_reactor.fetch_add(1, Ordering::Relaxed) % reactors;
        if let Some(proxy) = options.proxy.clone() {
            return dial::through_proxy(self.clone(), proxy, addr, host, path_and_query, options, Box::new(handler));
        }
        let request = Box::new(reactor::ClientStart {
            addr,
            stream: None,
            tunnel: None,
            host: host.to_owned(),
            path_and_query: path_and_query.to_owned(),
            options,
            handler: Box::new(handler),
        });
        self.send_connect(reactor, request);
    }

    /// Hands a socket accepted elsewhere (an HTTP server, say) to the engine, with every byte already
    /// read from it (the upgrade request head and anything after it). A reactor (round robin) takes it
    /// over and completes the upgrade as if it had accepted the connection itself; a request it cannot
    /// upgrade is answered as usual (400, 404, 426, ...). Returns at once.
    pub fn adopt(&self, stream: std::net::TcpStream, already_read: Vec<u8>) {
        self.send(self.next_reactor(), Command::Adopt(stream, already_read));
    }

    /// The counters of every reactor, summed.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        for counters in &self.shared.counters {
            snapshot.add(counters);
        }
        snapshot
    }

    /// Number of reactor threads.
    pub fn reactors(&self) -> usize {
        self.shared.links.len()
    }

    /// Counters of one reactor (for tests and per-core views).
    pub fn reactor_metrics(&self, reactor: usize) -> Option<MetricsSnapshot> {
        self.shared.counters.get(reactor).map(|c| {
            let mut snapshot = MetricsSnapshot::default();
            snapshot.add(c);
            snapshot
        })
    }
}

/// Tells an in-loop client's handler that no reactor took its connection (the engine has stopped); a
/// panic in the handler is caught, as in the loop.
pub(crate) fn refuse_connect(start: Box<reactor::ClientStart>) {
    let mut handler = start.handler;
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.on_connect_error(&ConnectError::Refused);
    }));
    if refused.is_err() {
        log::warn!("an in-loop client's on_connect_error panicked");
    }
}

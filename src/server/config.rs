//! Server configuration: every limit and timeout, with defaults safe for the internet.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::deflate::DeflateConfig;
use crate::proto::negotiate::SubprotocolPolicy;
use crate::proto::ConnectionConfig;

use super::rate_limit::{RateLimit, RateLimitPolicy};

/// What to do when a peer reads slower than we send and its buffered bytes reach the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackpressurePolicy {
    /// Close the slow peer (it is counted in `slow_peers_closed`). The default.
    Close,
    /// Drop the data message that would pass the ceiling (counted in `messages_dropped`); pongs and close
    /// frames are never dropped.
    Drop,
}

/// Server settings. Build with [`Config::default`] and adjust fields; every default is documented.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:9001`.
    pub addr: SocketAddr,
    /// Reactor threads, each with its own listener (`SO_REUSEPORT`). Default: the number of cores.
    pub threads: usize,
    /// Maximum connections per server (split evenly over reactors); more are accepted and closed at
    /// once. Default 100,000.
    pub max_connections: usize,
    /// Largest request head (request line + headers) in bytes. Default 8 KiB; beyond it: 431.
    pub max_request_head: usize,
    /// Most request headers. Default 64.
    pub max_headers: usize,
    /// Largest frame payload. Default 16 MiB; beyond it the connection fails with 1009.
    pub max_frame_size: usize,
    /// Largest message. Default 64 MiB; beyond it the connection fails with 1009.
    pub max_message_size: usize,
    /// Ceiling on bytes queued for one peer that does not read. Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// What happens at that ceiling. Default [`BackpressurePolicy::Close`].
    pub backpressure: BackpressurePolicy,
    /// Ceiling on the bytes of messages sent through a [`Handle`](super::Handle) (`send_text`/`send_binary`
    /// to an id, broadcasts, publishes, and those a callback's `Ctx` sends to other reactors) that one
    /// reactor has not taken yet. Past it such a message is dropped and counted in `commands_dropped`;
    /// one message is always taken when nothing is pending. Control commands (close, connect, adopt, stop)
    /// are never dropped. It bounds the channel when threads produce faster than a reactor delivers, or
    /// while a slow handler holds the reactor up. Default 64 MiB per reactor.
    pub max_pending_command_bytes: usize,
    /// Time allowed from accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Close a connection that received nothing for this long (1001). Default `None`: keepalive pings
    /// already reap dead peers.
    pub idle_timeout: Option<Duration>,
    /// Time allowed for the peer's close frame after ours, before the socket is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// Send a ping after this long without traffic from the peer. Default 30 s; `None` disables it.
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, close the connection when nothing at all (a pong or any other bytes)
    /// arrives within this time. Default 30 s.
    pub pong_timeout: Duration,
    /// How the server picks a subprotocol among those offered. Default: none is picked.
    pub subprotocols: SubprotocolPolicy,
    /// When set, only upgrade requests whose `Origin` is in this list are accepted (403 otherwise).
    /// Default `None`: every origin (and none) is accepted.
    pub allowed_origins: Option<Vec<String>>,
    /// Answer pings automatically. Default true.
    pub auto_pong: bool,
    /// Size of each reactor's read buffer and of pooled connection buffers. Default 64 KiB.
    pub read_buffer_size: usize,
    /// Idle buffers each reactor's pool keeps for reuse. Default 64.
    pub pooled_buffers: usize,
    /// Resolution of the timer wheel. Default 100 ms.
    pub timer_tick: Duration,
    /// Path of the built-in Prometheus endpoint for plain HTTP requests on the same port (e.g.
    /// `/metrics`). Default `None`: off (`wsloop serve` turns it on).
    pub metrics_path: Option<String>,
    /// Path of the built-in health endpoint (200 `ok`, 503 while stopping). Default `None`: off.
    pub health_path: Option<String>,
    /// Largest body of a plain HTTP request (`Content-Length`). Default 64 KiB; beyond it: 413.
    pub max_http_body: usize,
    /// Keep the request headers for the connection's whole life (readable from any callback). Default
    /// false: headers are readable in `on_open` only, so an idle connection holds no copy of them.
    pub keep_request_headers: bool,
    /// TLS for every connection the listeners accept (wss://, and https:// for the built-in
    /// endpoints); `None` (the default): plain TCP. The TLS handshake is bounded by
    /// `handshake_timeout`, like the upgrade request after it.
    #[cfg(feature = "tls")]
    pub tls: Option<super::TlsConfig>,
    /// With `tls` set: a second address to listen on with plain TCP (ws://, and http:// for the built-in
    /// endpoints), beside the TLS listener at `addr`; its connections are served by the same reactors,
    /// handlers and limits. Port 0 picks a free port ([`RunningServer::plain_addr`] says which).
    /// Ignored without `tls`. Default `None`.
    ///
    /// [`RunningServer::plain_addr`]: super::RunningServer::plain_addr
    #[cfg(feature = "tls")]
    pub plain_addr: Option<SocketAddr>,
    /// Most open connections from one IP address (over all reactors); more are answered 429 and closed
    /// at accept (`connections_refused_per_ip`). Default `None`: no cap (benchmarks and proxies put
    /// many connections behind one address).
    pub max_connections_per_ip: Option<usize>,
    /// Most new connections (handshakes) per second from one IP address, with a burst; more are answered
    /// 429 and closed at accept (`handshakes_refused_per_ip`). Default `None`: no limit.
    pub handshake_rate_per_ip: Option<RateLimit>,
    /// For both per-IP limits, IPv6 peers are counted by this many leading bits of their address (one
    /// host usually holds a whole /64 and can change addresses within it); 128 counts each address. IPv4
    /// (also mapped into IPv6) counts by address. Default 64.
    pub per_ip_ipv6_prefix: u8,
    /// Frames (messages and control frames) per second one connection may send, with a burst. Default
    /// `None`: no limit (and no per-message cost).
    pub message_rate: Option<RateLimit>,
    /// Bytes per second one connection may send (frames as parsed), with a burst. Default `None`.
    pub byte_rate: Option<RateLimit>,
    /// What a connection over `message_rate` or `byte_rate` gets. Default [`RateLimitPolicy::Pause`].
    pub rate_limit_policy: RateLimitPolicy,
    /// When `accept` fails for lack of descriptors (EMFILE, ENFILE), how long the listener rests before
    /// it tries again (one pending connection is shed with the reserve descriptor meanwhile). Default
    /// 100 ms.
    pub accept_retry: Duration,
    /// permessage-deflate (RFC 7692): accepted from clients and offered by in-loop clients when its mode
    /// is not off. Default off. [`DeflateMode::Shared`](crate::proto::deflate::DeflateMode::Shared) keeps
    /// no zlib state per connection; see [`DeflateConfig`] for window bits, memLevel, level and threshold.
    pub deflate: DeflateConfig,
    /// EXPERIMENTAL (Linux, feature `io-uring`): each reactor waits in `io_uring_enter` instead of
    /// `epoll_wait` (its epoll descriptor is polled through the ring), reads its plain server
    /// connections (not TLS, not in-loop clients, not adopted sockets) with a multishot io_uring
    /// receive, and writes their output as ring sends, all of a turn's together; what a socket does
    /// not take is queued and written on writability as without it. A connection whose receives fill
    /// whole buffers (bulk traffic) moves to readiness reads, and back to the ring after 64 readiness
    /// events in a row of one small read each (counted in `io_uring_to_readiness` and
    /// `io_uring_to_ring`). Faster than mio at the 50 % quota for
    /// many small messages, the same for 64 KiB ones (docs/benchmarks.md). When the ring cannot be made
    /// (an old kernel, seccomp, `kernel.io_uring_disabled`) or the feature is off, a warning is logged
    /// once and the reactor runs on mio as without it. Default false.
    pub io_uring: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 100_000,
            max_request_head: 8 * 1024,
            max_headers: 64,
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_buffered_bytes: 16 << 20,
            backpressure: BackpressurePolicy::Close,
            max_pending_command_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
            close_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            subprotocols: SubprotocolPolicy::None,
            allowed_origins: None,
            auto_pong: true,
            read_buffer_size: 64 * 1024,
            pooled_buffers: 64,
            timer_tick: Duration::from_millis(100),
            metrics_path: None,
            health_path: None,
            max_http_body: 64 * 1024,
            keep_request_headers: false,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            plain_addr: None,
            max_connections_per_ip: None,
            handshake_rate_per_ip: None,
            per_ip_ipv6_prefix: 64,
            message_rate: None,
            byte_rate: None,
            rate_limit_policy: RateLimitPolicy::Pause,
            accept_retry: Duration::from_millis(100),
            deflate: DeflateConfig::default(),
            io_uring: false,
        }
    }
}

impl Config {
    /// The protocol core's settings for this server's connections: limits and every timeout of an open
    /// connection (the core enforces them; the reactor only schedules).
    pub fn connection_config(&self) -> ConnectionConfig {
        ConnectionConfig {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            auto_pong: self.auto_pong,
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            idle_timeout: self.idle_timeout,
            close_timeout: self.close_timeout,
            mask_source: None,
        }
    }
}

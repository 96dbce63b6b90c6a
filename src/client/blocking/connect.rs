//! Connecting: resolving the host within the connect timeout, TCP connect, and the opening handshake
//! through the sans-IO [`ClientHandshake`](crate::proto::handshake::ClientHandshake).
//!
//! Owns: everything from URL to an open [`Link`](super::link::Link). Never touches: frames.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self};
use std::time::{Duration, Instant};

use crate::proto::deflate;
use crate::proto::handshake::{ClientHandshake, ClientRequest, UpgradeResponse};
use crate::proto::{Connection, ConnectionConfig, Role};

use super::super::error::{Error, Operation};
use super::super::proxy::{open_tunnel, Proxy};
use super::super::url::{Host, WsUrl};
use super::link::{Link, LinkState};
use super::options::ClientOptions;
use super::reader::{ReadBuf, Reader};
use super::stream::Stream;

/// What opening a connection produced.
pub(super) struct Opened {
    pub(super) link: Arc<Link>,
    pub(super) reader: Reader,
    pub(super) response: UpgradeResponse,
    pub(super) url: WsUrl,
}

/// The addresses of `url`'s host: IP literals as they are; a name through the system resolver, given at most
/// `timeout` (the resolver itself has none).
pub(super) fn resolve(url: &WsUrl, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    resolve_host(url.host(), url.port(), timeout)
}

/// The addresses of `host` at `port` (see [`resolve`]); never empty.
pub(crate) fn resolve_host(host: &Host, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    match host {
        Host::Ipv4(ip) => Ok(vec![SocketAddr::from((*ip, port))]),
        Host::Ipv6(ip) => Ok(vec![SocketAddr::from((*ip, port))]),
        Host::Domain(name) => {
            let query = (name.clone(), port);
            let addrs = resolve_within(name, timeout, move || {
                query.to_socket_addrs().map(Iterator::collect::<Vec<SocketAddr>>)
            })?;
            if addrs.is_empty() {
                let source = io::Error::new(ErrorKind::NotFound, "the name has no addresses");
                return Err(Error::Resolve { host: name.clone(), source });
            }
            Ok(addrs)
        }
    }
}

/// Runs `lookup` on a thread of its own and waits for it at most `timeout`. A lookup still running then is
/// left to finish on its own (its answer is dropped): a blocking resolver call cannot be cancelled.
pub(super) fn resolve_within(
    host: &str,
    timeout: Duration,
    lookup: impl FnOnce() -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<Vec<SocketAddr>, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    thread::Builder::new()
        .name("wsloop-resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup());
        })
        .map_err(Error::Io)?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(source)) => Err(Error::Resolve { host: host.to_owned(), source }),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout(Operation::Resolve)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::other("the resolver thread ended without an answer"),
        }),
    }
}

pub(super) fn tcp_connect(url: &WsUrl, timeout: Duration) -> Result<TcpStream, Error> {
    let timeout = timeout.max(Duration::from_millis(1));
    let mut last = None;
    let mut all_timed_out = true;
    for addr in resolve(url, timeout)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                log::debug!("websocket client: connecting to {addr} failed: {e}");
                if !matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
                    all_timed_out = false;
                }
                last = Some((addr, e));
            }
        }
    }
    match last {
        Some(_) if all_timed_out => Err(Error::Timeout(Operation::Connect)),
        Some((addr, source)) => Err(Error::Connect { addr, source }),
        None => Err(Error::Timeout(Operation::Connect)),
    }
}

/// A connected TCP stream to `url`'s host and port, directly or through `proxy`: the one place a client
/// gets its stream (a TLS layer wraps what this returns). Direct: `timeout` per address tried; through a
/// proxy: `timeout` for everything up to the open tunnel.
pub(crate) fn connect_stream(url: &WsUrl, timeout: Duration, proxy: Option<&Proxy>) -> Result<TcpStream, Error> {
    match proxy {
        None => tcp_connect(url, timeout),
        Some(proxy) => open_tunnel(proxy, url.host(), url.port(), timeout),
    }
}

pub(super) fn handshake_io(e: io::Error) -> Error {
    #[cfg(feature = "tls")]
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return super::stream::tls_io_error(e, Operation::Handshake);
    }
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        Error::Timeout(Operation::Handshake)
    } else {
        Error::Io(e)
    }
}

/// Writes the upgrade request and reads the response; returns it with the bytes that followed it.
pub(super) fn handshake(
    stream: &Stream,
    url: &WsUrl,
    options: &ClientOptions,
) -> Result<(UpgradeResponse, Vec<u8>), Error> {
    let deadline = Instant::now() + options.handshake_timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Error::Timeout(Operation::Handshake))
    };
    let mut request = ClientRequest::new(url.host_header(), url.path_and_query());
    request.protocols.clone_from(&options.subprotocols);
    request.extensions = match (&options.extensions, deflate::client_offer_header(&options.deflate)) {
        (Some(other), Some(deflate)) => Some(format!("{other}, {deflate}")),
        (other, deflate) => other.clone().or(deflate),
    };
    request.headers.clone_from(&options.headers);
    let mut out = Vec::new();
    let mut machine = ClientHandshake::start(&request, options.handshake_limits, &mut out)?;
    stream.set_write_timeout(Some(remaining()?))?;
    stream.write_all(&out).map_err(handshake_io)?;

    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining()?))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering the upgrade request",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(handshake_io(e)),
        };
        if let Some((response, used)) = machine.feed(&chunk[..n])? {
            return Ok((response, chunk[used..n].to_vec()));
        }
    }
}

/// The stream for a connected socket: TLS on top for `wss://` (any connected socket, e.g. one through a
/// proxy tunnel, can be wrapped), plain for `ws://`.
pub(super) fn secure(tcp: TcpStream, url: &WsUrl, options: &ClientOptions) -> Result<Stream, Error> {
    if !url.is_secure() {
        return Ok(Stream::plain(tcp));
    }
    #[cfg(feature = "tls")]
    {
        let host = match url.host() {
            Host::Domain(name) => name.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let tls = options.tls.clone().unwrap_or_default();
        Stream::tls(tcp, &host, &tls, options.handshake_timeout)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tcp, options);
        Err(Error::TlsUnsupported)
    }
}

pub(super) fn open(url: &str, options: &ClientOptions) -> Result<Opened, Error> {
    let parsed = WsUrl::parse(url).map_err(|reason| Error::InvalidUrl { url: url.to_owned(), reason })?;
    let tcp = connect_stream(&parsed, options.connect_timeout, options.proxy.as_ref())?;
    tcp.set_nodelay(options.nodelay)?;
    let stream = secure(tcp, &parsed, options)?;
    let (response, leftover) = handshake(&stream, &parsed, options)?;
    let config = ConnectionConfig {
        ping_interval: options.ping_interval.filter(|i| !i.is_zero()).or(options.connection.ping_interval),
        pong_timeout: options.pong_timeout,
        close_timeout: options.close_timeout,
        ..options.connection.clone()
    };
    let mut conn = Connection::new(Role::Client, config, Instant::now());
    if let Some(extension) = deflate::client_extension(&options.deflate, &response.extensions)? {
        conn.add_extension(extension);
    }
    let deflate_on = options.deflate.enabled();
    for accepted in &response.extensions {
        if deflate_on && accepted.name.eq_ignore_ascii_case(deflate::EXTENSION_NAME) {
            continue;
        }
        let extension = options
            .extension_factory
            .as_ref()
            .and_then(|factory| factory(accepted))
            .ok_or_else(|| Error::UnsupportedExtension { name: accepted.name.clone() })?;
        conn.add_extension(extension);
    }
    stream.set_write_timeout(options.write_timeout.filter(|t| !t.is_zero()))?;
    stream.set_read_timeout(None)?;
    let mut buf = ReadBuf::default();
    buf.push(&leftover);
    let link = Arc::new(Link {
        stream,
        state: Mutex::new(LinkState {
            conn,
            pending: Vec::new(),
            local_close: None,
            closed: None,
            tcp_done: false,
            reader_done: false,
            reader_error: None,
        }),
        writer: Mutex::new(Vec::new()),
        finished: Condvar::new(),
        close_timeout: options.close_timeout,
        metrics: options.metrics.clone(),
    });
    if let Some(metrics) = &link.metrics {
        metrics.record_connection_opened();
    }
    let reader = Reader { buf, socket_timeout: Some(None) };
    Ok(Opened { link, reader, response, url: parsed })
}

//! Opening a tunnel over blocking sockets: resolve and connect to the proxy, then run the handshake
//! machine until the tunnel is open, all within one deadline.
//!
//! Owns: the I/O around [`Tunnel`]. Never touches: what goes through the tunnel afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::super::blocking::resolve_host;
use super::super::error::Error;
use super::super::url::Host;
use super::{Progress, Proxy, ProxyError, Target, Tunnel};

/// A TCP stream to `host:port` through `proxy`, open and ready for the upgrade request: the proxy's name
/// resolved, TCP connected to it, the tunnel handshake done, all within `timeout`. Every failure is
/// [`Error::Proxy`] naming the proxy, except resolving the server's own name locally (`socks5://`), which
/// fails as a direct connection would ([`Error::Resolve`], [`Error::Timeout`]).
pub(crate) fn open_tunnel(proxy: &Proxy, host: &Host, port: u16, timeout: Duration) -> Result<TcpStream, Error> {
    let deadline = Instant::now() + timeout.max(Duration::from_millis(1));
    let fail = |kind: ProxyError| Error::Proxy { proxy: proxy.to_string(), kind };
    let remaining = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let target = match Target::without_lookup(proxy, host, port) {
        Some(target) => target,
        None => {
            let addrs = resolve_host(host, port, remaining().ok_or_else(|| fail(ProxyError::Timeout))?)?;
            Target::Addr(addrs[0])
        }
    };
    let proxy_addr = proxy.addr();
    let addrs =
        match resolve_host(&proxy_addr.host, proxy_addr.port, remaining().ok_or_else(|| fail(ProxyError::Timeout))?) {
            Ok(addrs) => addrs,
            Err(Error::Resolve { source, .. }) => return Err(fail(ProxyError::Resolve(source))),
            Err(Error::Timeout(_)) => return Err(fail(ProxyError::Timeout)),
            Err(other) => return Err(other),
        };
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        let Some(left) = remaining() else { break };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => {
                log::debug!("websocket client: connecting to proxy {proxy} at {addr} failed: {e}");
                last = Some(e);
            }
        }
    }
    let stream = match (stream, last) {
        (Some(stream), _) => stream,
        (None, Some(e)) if !matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Err(fail(ProxyError::Connect(e)))
        }
        (None, _) => return Err(fail(ProxyError::Timeout)),
    };
    handshake(&stream, proxy, &target, remaining).map_err(fail)?;
    stream.set_read_timeout(None).map_err(Error::Io)?;
    stream.set_write_timeout(None).map_err(Error::Io)?;
    Ok(stream)
}

/// Runs the tunnel handshake over `stream` until the proxy says the tunnel is open.
fn handshake(
    mut stream: &TcpStream,
    proxy: &Proxy,
    target: &Target,
    remaining: impl Fn() -> Option<Duration>,
) -> Result<(), ProxyError> {
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ProxyError::Timeout,
        _ => ProxyError::Io(e),
    };
    let mut out = Vec::new();
    let mut tunnel = Tunnel::start(proxy, target, &mut out);
    let mut chunk = [0u8; 1024];
    loop {
        if !out.is_empty() {
            stream.set_write_timeout(Some(remaining().ok_or(ProxyError::Timeout)?)).map_err(ProxyError::Io)?;
            stream.write_all(&out).map_err(io)?;
            out.clear();
        }
        stream.set_read_timeout(Some(remaining().ok_or(ProxyError::Timeout)?)).map_err(ProxyError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(ProxyError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        match tunnel.feed(&chunk[..n], &mut out)? {
            Progress::NeedMore => {}
            Progress::Done { used } if used == n => return Ok(()),
            // The server cannot speak before the upgrade request it has not been sent yet.
            Progress::Done { .. } => {
                return Err(ProxyError::Malformed("bytes after the proxy's answer, before any request".into()))
            }
        }
    }
}

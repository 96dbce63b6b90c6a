//! Proxies between a client and its server: HTTP `CONNECT` and SOCKS5, configured as [`Proxy`].
//!
//! Owns: what a proxy is ([`Proxy`], parsed from `http://`, `socks5://` and `socks5h://` URLs), the two
//! tunnel handshakes as sans-IO machines (`http`, `socks5`: bytes in, bytes out, no sockets), the blocking
//! driver that runs one over a `TcpStream` (`dial`), the curl-style environment lookup (`env`) and the
//! proxy's errors ([`ProxyError`]). Never touches: WebSocket frames or the upgrade request, which go through
//! the tunnel afterwards like over any TCP stream.

use std::fmt;

use super::url::{parse_port, split_host_port, Host, UrlError};

mod dial;
mod env;
mod error;
mod http;
mod socks5;

pub(crate) use dial::open_tunnel;

impl ProxyAddr {
    /// The socket address, when the host is an IP literal (no resolution needed).
    pub(crate) fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        match self.host {
            Host::Ipv4(ip) => Some((ip, self.port).into()),
            Host::Ipv6(ip) => Some((ip, self.port).into()),
            Host::Domain(_) => None,
        }
    }
}
pub use error::{ProxyError, ProxyUrlError};

/// The port of a proxy URL that names none: 1080, as curl assumes for every proxy scheme.
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// A proxy's address: a host (resolved when connecting, unless it is an IP literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyAddr {
    /// The proxy's host.
    pub host: Host,
    /// The proxy's port.
    pub port: u16,
}

impl fmt::Display for ProxyAddr {
    /// `host:port`, IPv6 literals in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Credentials for a proxy: HTTP basic authentication (`Proxy-Authorization`) or SOCKS5
/// username/password authentication (RFC 1929). `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl ProxyAuth {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: password.into() }
    }
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth").field("username", &self.username).field("password", &"<hidden>").finish()
    }
}

/// A proxy to reach the server through (`ClientOptions::proxy`, `ConnectOptions::proxy`).
///
/// ```
/// use wsloop::client::Proxy;
/// let proxy = Proxy::parse("socks5h://alice:secret@proxy.example:1081").unwrap();
/// assert!(matches!(proxy, Proxy::Socks5 { remote_dns: true, .. }));
/// // Display never shows the credentials: it is what errors name the proxy by.
/// assert_eq!(proxy.to_string(), "socks5h://proxy.example:1081");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Proxy {
    /// An HTTP proxy: the client asks it for a tunnel with `CONNECT host:port` (RFC 9110 §9.3.6), with
    /// `Proxy-Authorization: Basic` when `auth` is set. The proxy resolves the server's name.
    Http {
        /// Where the proxy listens.
        addr: ProxyAddr,
        /// Basic authentication credentials, if the proxy wants them.
        auth: Option<ProxyAuth>,
    },
    /// A SOCKS5 proxy (RFC 1928): no authentication, or username/password (RFC 1929) when `auth` is set.
    Socks5 {
        /// Where the proxy listens.
        addr: ProxyAddr,
        /// Username/password credentials, if the proxy wants them.
        auth: Option<ProxyAuth>,
        /// Whether the proxy resolves the server's name (`socks5h://`, the domain address type) rather
        /// than the client (`socks5://`: the client resolves it and sends an IP address). An IP literal in
        /// the WebSocket URL is always sent as an address.
        remote_dns: bool,
    },
}

impl Proxy {
    /// An HTTP `CONNECT` proxy without credentials.
    pub fn http(host: Host, port: u16) -> Self {
        Self::Http { addr: ProxyAddr { host, port }, auth: None }
    }

    /// A SOCKS5 proxy without credentials that resolves the server's name itself (`socks5h://`).
    pub fn socks5(host: Host, port: u16) -> Self {
        Self::Socks5 { addr: ProxyAddr { host, port }, auth: None, remote_dns: true }
    }

    /// Parses a proxy URL: `http://[user:password@]host[:port][/]`, `socks5://...` (the client resolves
    /// the server's name) or `socks5h://...` (the proxy does). No scheme means `http://`; no port means
    /// [`DEFAULT_PROXY_PORT`] (1080, as curl). The user name and password may be percent-encoded
    /// (`%40` for `@`).
    pub fn parse(input: &str) -> Result<Self, ProxyUrlError> {
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace());
        let (scheme, rest) = match input.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), input),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(ProxyUrlError::Path);
        }
        let (auth, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(parse_userinfo(userinfo)?), authority),
            None => (None, rest),
        };
        if authority.is_empty() {
            return Err(ProxyUrlError::Url(UrlError::MissingHost));
        }
        let (host, port) = split_host_port(authority).map_err(ProxyUrlError::Url)?;
        let port = match port {
            None | Some("") => DEFAULT_PROXY_PORT,
            Some(p) => parse_port(p).map_err(ProxyUrlError::Url)?,
        };
        let addr = ProxyAddr { host, port };
        match scheme.as_str() {
            "http" => Ok(Self::Http { addr, auth }),
            "socks5" => Ok(Self::Socks5 { addr, auth, remote_dns: false }),
            "socks5h" => Ok(Self::Socks5 { addr, auth, remote_dns: true }),
            _ => Err(ProxyUrlError::UnsupportedScheme { scheme }),
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_auth(mut self, credentials: ProxyAuth) -> Self {
        match &mut self {
            Self::Http { auth, .. } | Self::Socks5 { auth, .. } => *auth = Some(credentials),
        }
        self
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> &ProxyAddr {
        match self {
            Self::Http { addr, .. } | Self::Socks5 { addr, .. } => addr,
        }
    }

    /// The credentials, if any.
    pub fn auth(&self) -> Option<&ProxyAuth> {
        match self {
            Self::Http { auth, .. } | Self::Socks5 { auth, .. } => auth.as_ref(),
        }
    }

    /// The proxy for connecting to `url` from the environment, as curl reads it: `ws_proxy` (or
    /// `WS_PROXY`), then `http_proxy` (lowercase only: curl ignores `HTTP_PROXY`, which a CGI
    /// program's `Proxy:` request header can set), then `all_proxy` / `ALL_PROXY`; for `wss://`,
    /// `wss_proxy` / `WSS_PROXY`, `https_proxy` / `HTTPS_PROXY`, then `all_proxy` / `ALL_PROXY`. An empty
    /// variable counts as unset. `None` when no variable is set or when `no_proxy` / `NO_PROXY` names the
    /// host: a comma-separated list of names (matching the name and every name under it; a leading dot
    /// is allowed), IP addresses, CIDR ranges (`10.0.0.0/8`), or `*` for every host.
    pub fn from_env(url: &super::WsUrl) -> Result<Option<Self>, ProxyUrlError> {
        env::proxy_for(url, |name| std::env::var(name).ok())
    }
}

impl fmt::Display for Proxy {
    /// The proxy's URL without credentials (errors and logs name a proxy by it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { addr, .. } => write!(f, "http://{addr}"),
            Self::Socks5 { addr, remote_dns: false, .. } => write!(f, "socks5://{addr}"),
            Self::Socks5 { addr, remote_dns: true, .. } => write!(f, "socks5h://{addr}"),
        }
    }
}

impl std::str::FromStr for Proxy {
    type Err = ProxyUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_userinfo(userinfo: &str) -> Result<ProxyAuth, ProxyUrlError> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    Ok(ProxyAuth { username: percent_decode(user)?, password: percent_decode(password)? })
}

fn percent_decode(s: &str) -> Result<String, ProxyUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or(ProxyUrlError::Credentials)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ProxyUrlError::Credentials)
}

/// Where the tunnel should lead: the WebSocket server's address or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An address (an IP literal in the URL, or a name the client resolved).
    Addr(std::net::SocketAddr),
    /// A name for the proxy to resolve.
    Name(String, u16),
}

impl Target {
    /// Where a tunnel through `proxy` to `host:port` leads, when that needs no name resolution by the
    /// client: an IP literal, or a name the proxy resolves (HTTP, `socks5h://`). `None` for a name
    /// through `socks5://` (the client resolves it first).
    pub(crate) fn without_lookup(proxy: &Proxy, host: &Host, port: u16) -> Option<Self> {
        match (proxy, host) {
            (_, Host::Ipv4(ip)) => Some(Self::Addr((*ip, port).into())),
            (_, Host::Ipv6(ip)) => Some(Self::Addr((*ip, port).into())),
            (Proxy::Socks5 { remote_dns: false, .. }, Host::Domain(_)) => None,
            (_, Host::Domain(name)) => Some(Self::Name(name.clone(), port)),
        }
    }

    /// `host:port` as a `CONNECT` request target (IPv6 in brackets).
    fn authority(&self) -> String {
        match self {
            Self::Addr(addr) => addr.to_string(),
            Self::Name(name, port) => format!("{name}:{port}"),
        }
    }
}

/// What a tunnel handshake says after a [`Tunnel::feed`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The proxy's answer is not complete: read more.
    NeedMore,
    /// The tunnel is open; the first `used` bytes of the last input were the proxy's, the rest (if any)
    /// came from the server through it.
    Done {
        /// Bytes of the last input that belonged to the proxy's answer.
        used: usize,
    },
}

/// One proxy handshake in progress, sans-IO: [`Tunnel::start`] writes the first bytes to send,
/// [`Tunnel::feed`] takes what the proxy answered (in any pieces) and writes what to send next.
#[derive(Debug)]
pub(crate) enum Tunnel {
    /// HTTP `CONNECT`.
    Http(http::HttpConnect),
    /// SOCKS5.
    Socks5(socks5::Socks5),
}

impl Tunnel {
    /// Starts the handshake with `proxy` for a tunnel to `target`; appends the bytes to send to `out`.
    pub(crate) fn start(proxy: &Proxy, target: &Target, out: &mut Vec<u8>) -> Self {
        match proxy {
            Proxy::Http { auth, .. } => Self::Http(http::HttpConnect::start(target, auth.as_ref(), out)),
            Proxy::Socks5 { auth, .. } => Self::Socks5(socks5::Socks5::start(target, auth.clone(), out)),
        }
    }

    /// Takes bytes the proxy sent; appends what to send next to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ProxyError> {
        match self {
            Self::Http(machine) => machine.feed(input),
            Self::Socks5(machine) => machine.feed(input, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes_credentials_and_default_port() {
        let p = Proxy::parse("http://u%40x:p%3Aw@127.0.0.1:3128/").unwrap();
        let Proxy::Http { addr, auth: Some(auth) } = &p else { panic!("{p:?}") };
        assert_eq!(addr.to_string(), "127.0.0.1:3128");
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u@x", "p:w"));
        assert_eq!(p.to_string(), "http://127.0.0.1:3128");
        assert!(!format!("{p:?}").contains("p:w"), "Debug hides the password");

        let p = Proxy::parse("socks5://[::1]").unwrap();
        assert!(matches!(&p, Proxy::Socks5 { remote_dns: false, auth: None, addr } if addr.port == 1080), "{p:?}");
        assert_eq!(p.to_string(), "socks5://[::1]:1080");
        let p = Proxy::parse("SOCKS5H://Proxy.Example:9").unwrap();
        assert!(matches!(&p, Proxy::Socks5 { remote_dns: true, .. }), "{p:?}");
        assert_eq!(p.to_string(), "socks5h://proxy.example:9");
        let p = Proxy::parse("proxy.example:8080").unwrap();
        assert_eq!(p.to_string(), "http://proxy.example:8080");
    }

    #[test]
    fn constructors_match_what_parse_gives() {
        let host = Host::Ipv4([127, 0, 0, 1].into());
        let auth = ProxyAuth::new("u", "p");
        assert_eq!(
            Proxy::http(host.clone(), 3128).with_auth(auth.clone()),
            Proxy::parse("http://u:p@127.0.0.1:3128").unwrap()
        );
        let socks = Proxy::socks5(host, 1080).with_auth(auth.clone());
        assert_eq!(socks, Proxy::parse("socks5h://u:p@127.0.0.1").unwrap());
        assert_eq!(socks.auth(), Some(&auth));
        assert_eq!(socks.addr().socket_addr(), Some("127.0.0.1:1080".parse().unwrap()));
        assert_eq!(Proxy::parse("http://proxy.example:1").unwrap().addr().socket_addr(), None);
    }

    #[test]
    fn refuses_what_is_not_a_proxy_url() {
        assert!(matches!(Proxy::parse("socks4://h:1"), Err(ProxyUrlError::UnsupportedScheme { .. })));
        assert!(matches!(Proxy::parse("https://h:1"), Err(ProxyUrlError::UnsupportedScheme { .. })));
        assert!(matches!(Proxy::parse("http://h:1/path"), Err(ProxyUrlError::Path)));
        assert!(matches!(Proxy::parse("http://h:0"), Err(ProxyUrlError::Url(UrlError::InvalidPort { .. }))));
        assert!(matches!(Proxy::parse("http://"), Err(ProxyUrlError::Url(UrlError::MissingHost))));
        assert!(matches!(Proxy::parse("http://u:%zz@h"), Err(ProxyUrlError::Credentials)));
    }
}

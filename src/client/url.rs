//! WebSocket URLs: `ws://host[:port]/path?query` and `wss://...`.
//!
//! Owns: splitting a URL into scheme, host, port and request target; the default ports (80 for `ws`,
//! 443 for `wss`); the `Host` header value. Never touches: name resolution or sockets (see
//! [`connect`](crate::client::connect)).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The two WebSocket URL schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `ws://`: plain TCP, default port 80.
    Ws,
    /// `wss://`: TLS, default port 443.
    Wss,
}

impl Scheme {
    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Ws => 80,
            Self::Wss => 443,
        }
    }

    /// The scheme as written in a URL (`ws` or `wss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

/// The host part of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A DNS name, lowercased (resolved when connecting).
    Domain(String),
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal (written `[...]` in the URL).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    /// The host as it appears in a URL or `Host` header: IPv6 literals in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(name) => f.write_str(name),
            Self::Ipv4(ip) => write!(f, "{ip}"),
            Self::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// Why a string is not a usable WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://` prefix.
    MissingScheme,
    /// A scheme other than `ws` or `wss`.
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// Nothing between `//` and the path.
    MissingHost,
    /// The host is neither an IPv4 literal, a bracketed IPv6 literal nor a DNS name.
    InvalidHost {
        /// The host found.
        host: String,
    },
    /// The port is not a number from 1 to 65535.
    InvalidPort {
        /// The port found.
        port: String,
    },
    /// The URL carries user information (`user:password@`), which WebSocket URLs cannot.
    UserInfo,
    /// The URL has a `#fragment`, which RFC 6455 §3 forbids.
    Fragment,
    /// A control character (or DEL) in the path or query.
    InvalidCharacter {
        /// The character found.
        ch: char,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingScheme => f.write_str("missing scheme: the URL must start with ws:// or wss://"),
            Self::UnsupportedScheme { scheme } => {
                write!(f, "unsupported scheme {scheme:?}: a WebSocket URL starts with ws:// or wss://")
            }
            Self::MissingHost => f.write_str("missing host after the scheme"),
            Self::InvalidHost { host } => write!(
                f,
                "invalid host {host:?}: expected an IPv4 address, an IPv6 address in brackets \
                 or a DNS name (internationalized names in their xn-- form)"
            ),
            Self::InvalidPort { port } => {
                write!(f, "invalid port {port:?}: expected a number from 1 to 65535")
            }
            Self::UserInfo => f.write_str(
                "user information (user:password@) is not allowed in a WebSocket URL; send \
                 credentials in a header (ClientOptions::header)",
            ),
            Self::Fragment => f.write_str("a WebSocket URL may not have a #fragment"),
            Self::InvalidCharacter { ch } => {
                write!(f, "control character {ch:?} in the path or query")
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// A parsed `ws://` or `wss://` URL.
///
/// The grammar is the part of RFC 3986 that RFC 6455 §3 allows: no user information, no fragment.
/// Hosts are IPv4 literals, bracketed IPv6 literals (`[::1]`, without zone ids) or DNS names (ASCII
/// letters, digits, `-`, `_` and dots; write internationalized names in their `xn--` form). Spaces and
/// non-ASCII characters in the path or query are percent-encoded; control characters are refused.
///
/// ```
/// use wsloop::client::{Host, WsUrl};
/// let url = WsUrl::parse("ws://[::1]:9001/chat?room=1").unwrap();
/// assert_eq!(url.host(), &Host::Ipv6("::1".parse().unwrap()));
/// assert_eq!(url.port(), 9001);
/// assert_eq!(url.path_and_query(), "/chat?room=1");
/// assert_eq!(url.host_header(), "[::1]:9001");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WsUrl {
    scheme: Scheme,
    host: Host,
    port: u16,
    path_and_query: String,
}

impl WsUrl {
    /// Parses a WebSocket URL. Leading and trailing ASCII whitespace is ignored.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace());
        let (scheme, rest) = input.split_once("://").ok_or(UrlError::MissingScheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("ws") {
            Scheme::Ws
        } else if scheme.eq_ignore_ascii_case("wss") {
            Scheme::Wss
        } else if scheme.is_empty() {
            return Err(UrlError::MissingScheme);
        } else {
            return Err(UrlError::UnsupportedScheme { scheme: scheme.to_owned() });
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        if authority.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => parse_port(p)?,
        };
        Ok(Self { scheme, host, port, path_and_query: normalize_target(target)? })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the URL asks for TLS (`wss://`).
    pub fn is_secure(&self) -> bool {
        self.scheme == Scheme::Wss
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port: the one written, or the scheme's default (80 for `ws`, 443 for `wss`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: the path (at least `/`) and the query, if any (`/chat?room=1`).
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The `Host` header value: the host (IPv6 in brackets), with `:port` only when the port is not the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for WsUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for WsUrl {
    /// The normalized URL (default port omitted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.host_header(), self.path_and_query)
    }
}

pub(super) fn split_host_port(authority: &str) -> Result<(Host, Option<&str>), UrlError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let invalid = || UrlError::InvalidHost { host: authority.to_owned() };
        let (ip, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        return Ok((Host::Ipv6(ip), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    Ok((parse_host(host)?, port))
}

fn parse_host(host: &str) -> Result<Host, UrlError> {
    let invalid = || UrlError::InvalidHost { host: host.to_owned() };
    let labels = host.strip_suffix('.').unwrap_or(host);
    // A name whose last label is numeric must be an IPv4 literal (as WHATWG URLs decide).
    let last = labels.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return labels.parse().map(Host::Ipv4).map_err(|_| invalid());
    }
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if labels.len() > 253 || !labels.split('.').all(label_ok) {
        return Err(invalid());
    }
    Ok(Host::Domain(host.to_ascii_lowercase()))
}

pub(super) fn parse_port(port: &str) -> Result<u16, UrlError> {
    let invalid = || UrlError::InvalidPort { port: port.to_owned() };
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(p) => Ok(p),
    }
}

/// `/` for an empty path; spaces and non-ASCII percent-encoded; control characters refused.
fn normalize_target(target: &str) -> Result<String, UrlError> {
    let mut out = String::with_capacity(target.len() + 1);
    if !target.starts_with('/') {
        out.push('/');
    }
    for ch in target.chars() {
        if ch.is_ascii_control() {
            return Err(UrlError::InvalidCharacter { ch });
        }
        if ch == ' ' || !ch.is_ascii() {
            let mut bytes = [0u8; 4];
            for b in ch.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_dns_host_with_default_port_and_root_path() {
        let u = url("ws://Example.COM");
        assert_eq!(u.scheme(), Scheme::Ws);
        assert_eq!(u.host(), &Host::Domain("example.com".into()));
        assert_eq!(u.port(), 80);
        assert_eq!(u.path_and_query(), "/");
        assert_eq!(u.host_header(), "example.com");
        assert_eq!(u.to_string(), "ws://example.com/");
    }

    #[test]
    fn wss_defaults_to_port_443_and_is_secure() {
        let u = url("WSS://example.com/a");
        assert!(u.is_secure());
        assert_eq!(u.port(), 443);
        assert_eq!(u.host_header(), "example.com");
    }

    #[test]
    fn host_header_carries_the_port_only_when_not_default() {
        assert_eq!(url("ws://h:80/").host_header(), "h");
        assert_eq!(url("ws://h:443/").host_header(), "h:443");
        assert_eq!(url("wss://h:443/").host_header(), "h");
        assert_eq!(url("wss://h:80/").host_header(), "h:80");
        assert_eq!(url("ws://127.0.0.1:9001").host_header(), "127.0.0.1:9001");
    }

    #[test]
    fn parses_ipv4_and_bracketed_ipv6() {
        let u = url("ws://127.0.0.1:9001/x");
        assert_eq!(u.host(), &Host::Ipv4(Ipv4Addr::LOCALHOST));
        assert_eq!(u.port(), 9001);
        let u = url("ws://[::1]/x");
        assert_eq!(u.host(), &Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port(), 80);
        assert_eq!(u.host_header(), "[::1]");
        let u = url("ws://[2001:db8::1]:8080?q");
        assert_eq!(u.host_header(), "[2001:db8::1]:8080");
        assert_eq!(u.path_and_query(), "/?q");
    }

    #[test]
    fn keeps_path_and_query_and_encodes_spaces_and_non_ascii() {
        assert_eq!(url("ws://h/runCase?case=1&agent=x").path_and_query(), "/runCase?case=1&agent=x");
        assert_eq!(url("ws://h?x=1").path_and_query(), "/?x=1");
        assert_eq!(url("ws://h/a b/é").path_and_query(), "/a%20b/%C3%A9");
    }

    #[test]
    fn empty_port_means_default() {
        assert_eq!(url("ws://h:/").port(), 80);
    }

    #[test]
    fn rejects_what_is_not_a_websocket_url() {
        let err = |s: &str| WsUrl::parse(s).unwrap_err();
        assert_eq!(err("example.com"), UrlError::MissingScheme);
        assert_eq!(err("://h"), UrlError::MissingScheme);
        assert_eq!(err("http://h/"), UrlError::UnsupportedScheme { scheme: "http".into() });
        assert_eq!(err("ws:///path"), UrlError::MissingHost);
        assert_eq!(err("ws://:80/"), UrlError::MissingHost);
        assert_eq!(err("ws://h/#frag"), UrlError::Fragment);
        assert_eq!(err("ws://u:p@h/"), UrlError::UserInfo);
        assert!(matches!(err("ws://h:0/"), UrlError::InvalidPort { .. }));
        assert!(matches!(err("ws://h:65536/"), UrlError::InvalidPort { .. }));
        assert!(matches!(err("ws://h:8o/"), UrlError::InvalidPort { .. }));
        assert!(matches!(err("ws://[::1/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://[::1]x/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://[nope]/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://::1/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://1.2.3.256/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://bad host/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://a..b/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://é.example/"), UrlError::InvalidHost { .. }));
        assert!(matches!(err("ws://h/a\r\nb"), UrlError::InvalidCharacter { .. }));
    }

    #[test]
    fn accepts_trailing_dot_and_underscores_in_names() {
        assert_eq!(url("ws://my_host.local./").host_header(), "my_host.local.");
    }
}

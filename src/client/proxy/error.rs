//! What can go wrong with a proxy: its URL ([`ProxyUrlError`]) and its tunnel ([`ProxyError`]).
//!
//! Owns: the classification and the wording. Never touches: I/O.

use std::fmt;
use std::io;

use super::super::url::UrlError;

/// Why a proxy URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyUrlError {
    /// A scheme other than `http`, `socks5` and `socks5h`.
    UnsupportedScheme {
        /// The scheme found (lowercased).
        scheme: String,
    },
    /// The host or port is not valid (the same rules as a WebSocket URL's).
    Url(UrlError),
    /// A path, query or fragment after the address.
    Path,
    /// The user name or password has a bad percent-escape or is not UTF-8 once decoded.
    Credentials,
}

impl fmt::Display for ProxyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported proxy scheme {scheme:?}: use http://, socks5:// (local DNS) or socks5h:// (the proxy \
                 resolves names)"
            ),
            Self::Url(e) => write!(f, "invalid proxy address: {e}"),
            Self::Path => f.write_str("a proxy URL is scheme://[user:password@]host[:port], without a path or query"),
            Self::Credentials => f.write_str("invalid percent-escape in the proxy's user name or password"),
        }
    }
}

impl std::error::Error for ProxyUrlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Url(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a tunnel through a proxy could not be opened (in `client::Error::Proxy`, which names the proxy).
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy's own host name could not be resolved.
    Resolve(io::Error),
    /// The TCP connection to the proxy failed (refused, unreachable).
    Connect(io::Error),
    /// The proxy did not complete its handshake within the connect timeout (its TCP connect included).
    Timeout,
    /// The proxy closed the connection before its answer was complete.
    Closed,
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx (403: not allowed; 407, or 401
    /// from some proxies: it wants credentials, or other ones; 500 or 502: it could not reach the
    /// server).
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy answered the connect request with a failure code (RFC 1928 §6).
    Socks5Failure {
        /// The reply code (1 to 255).
        code: u8,
    },
    /// The SOCKS5 proxy accepts none of the authentication methods offered (no authentication, and
    /// username/password when credentials are set).
    NoAcceptableAuth,
    /// The SOCKS5 proxy refused the user name and password.
    AuthFailed,
    /// The answer is not the protocol the proxy should speak (or its head is over 16 KiB).
    Malformed(String),
    /// An I/O error while talking to the proxy.
    Io(io::Error),
}

impl ProxyError {
    /// Whether the proxy reported that the *target* failed (it could not reach the WebSocket server):
    /// an HTTP proxy's 502, 503 or 504, a SOCKS5 reply of network or host unreachable, connection
    /// refused or TTL expired. Every other proxy error is the proxy's own (it cannot be reached, wants
    /// other credentials, refuses by rule, times out or answers garbage) and says nothing about the
    /// target, so a circuit breaker guarding the target does not count it.
    pub fn blames_target(&self) -> bool {
        matches!(self, Self::Rejected { status: 502..=504, .. } | Self::Socks5Failure { code: 3..=6 })
    }

    fn socks5_reply(code: u8) -> &'static str {
        match code {
            1 => "general SOCKS server failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused by the destination",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unassigned reply code",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "cannot resolve the proxy's host: {e}"),
            Self::Connect(e) => write!(f, "cannot connect to the proxy: {e} (is it running, and the port right?)"),
            Self::Timeout => f.write_str("the proxy did not answer within the connect timeout"),
            Self::Closed => f.write_str("the proxy closed the connection before answering"),
            Self::Rejected { status: status @ (401 | 407), reason } => write!(
                f,
                "the proxy wants authentication ({status} {reason}): put user:password@ in the proxy URL, or check \
                 them"
            ),
            Self::Rejected { status, reason } => write!(f, "the proxy refused the tunnel: {status} {reason}"),
            Self::Socks5Failure { code } => {
                write!(f, "the SOCKS5 proxy refused the tunnel: reply {code} ({})", Self::socks5_reply(*code))
            }
            Self::NoAcceptableAuth => f.write_str(
                "the SOCKS5 proxy accepts none of the offered authentication methods (does it want a user and \
                 password?)",
            ),
            Self::AuthFailed => f.write_str("the SOCKS5 proxy refused the user name and password"),
            Self::Malformed(what) => write!(f, "the proxy's answer is garbage: {what}"),
            Self::Io(e) => write!(f, "I/O error talking to the proxy: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Resolve(e) | Self::Connect(e) | Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

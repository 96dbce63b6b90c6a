//! Hand-off after an upgrade another HTTP server parsed: [`Handle::accept_upgrade`] checks the request
//! and computes the 101 answer, [`Handle::adopt_upgraded`] gives the socket to a reactor once the
//! other server sent that answer.
//!
//! Owns: the checks an upgrade request parsed elsewhere goes through (the same handshake rules and
//! limits, origin policy, stopping, the connection ceiling, routes), the subprotocol choice, the 101's
//! headers, the refusal an HTTP server answers instead, and counting refusals on a reactor. Never
//! touches: sockets (the reactor does, in `reactor::adopt`), any HTTP server's types.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::metrics::HandshakeFailure;
use crate::proto::deflate::{self, DeflateParams};
use crate::proto::handshake::{accept_key, HandshakeError, HandshakeLimits, ServerHandshake, UpgradeRequest};
use crate::proto::negotiate::{self, ExtensionOffer};

use super::config::Config;
use super::handler::Handler;
use super::reactor::Command;
use super::router::Factory;
use super::Handle;

/// A factory for one connection's handler.
type OnceFactory = Box<dyn FnOnce(&UpgradeRequest) -> Box<dyn Handler> + Send>;

/// How the handler of an accepted upgrade is made, on the reactor thread that adopts the connection.
pub(crate) enum MakeHandler {
    /// The engine's route for the request path ([`Server::register_handler`](super::Server::register_handler)).
    Routed(Factory),
    /// A factory given for this one connection ([`AcceptedUpgrade::with_handler`]).
    Once(OnceFactory),
}

impl MakeHandler {
    /// Makes the handler; `None` (logged) when the factory panicked.
    pub(crate) fn make(self, request: &UpgradeRequest) -> Option<Box<dyn Handler>> {
        let made = match self {
            Self::Routed(factory) => catch_unwind(AssertUnwindSafe(|| factory(request))),
            Self::Once(factory) => catch_unwind(AssertUnwindSafe(|| factory(request))),
        };
        if made.is_err() {
            log::error!("handler factory for {} panicked (adopted connection)", request.path);
        }
        made.ok()
    }
}

/// An upgrade request that another HTTP server (hyper, axum, ...) parsed and the engine accepted: the
/// request, the subprotocol the engine chose and how the connection's handler will be made.
///
/// Made by [`Handle::accept_upgrade`]. Send [`AcceptedUpgrade::response_headers`] with status 101, then
/// give the socket to [`Handle::adopt_upgraded`] together with this value.
pub struct AcceptedUpgrade {
    pub(crate) request: UpgradeRequest,
    pub(crate) protocol: Option<String>,
    /// permessage-deflate as agreed (`Config::deflate`) and the answer the 101 carries.
    pub(crate) deflate: Option<(DeflateParams, ExtensionOffer)>,
    pub(crate) make: Option<MakeHandler>,
}

impl fmt::Debug for AcceptedUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedUpgrade")
            .field("path", &self.request.path)
            .field("protocol", &self.protocol)
            .field("deflate", &self.deflate.as_ref().map(|(agreed, _)| agreed))
            .field("has_handler", &self.make.is_some())
            .finish_non_exhaustive()
    }
}

impl AcceptedUpgrade {
    /// The validated request (path, query, headers, offered subprotocols and extensions).
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The subprotocol the engine chose (`Config::subprotocols`), if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Whether a handler will be made: the engine has a route for the path, or
    /// [`AcceptedUpgrade::with_handler`] gave a factory.
    pub fn has_handler(&self) -> bool {
        self.make.is_some()
    }

    /// Makes this connection's handler with `factory` instead of the engine's route. The factory is
    /// called once, on the reactor thread that adopts the connection (so the handler need not be
    /// `Send`), with the request; capture what the application knows (a user id) in it.
    pub fn with_handler<F, H>(mut self, factory: F) -> Self
    where
        F: FnOnce(&UpgradeRequest) -> H + Send + 'static,
        H: Handler,
    {
        self.make = Some(MakeHandler::Once(Box::new(move |req| Box::new(factory(req)) as Box<dyn Handler>)));
        self
    }

    /// Whether permessage-deflate was agreed (`Config::deflate` and the client's offers).
    pub fn deflate(&self) -> bool {
        self.deflate.is_some()
    }

    /// The headers of the `101 Switching Protocols` answer, in order: `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol` when a subprotocol was chosen, and
    /// `Sec-WebSocket-Extensions` when permessage-deflate was agreed (the answer the engine's own
    /// handshake would write).
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Upgrade", "websocket".to_owned()),
            ("Connection", "Upgrade".to_owned()),
            ("Sec-WebSocket-Accept", accept_key(self.request.key.as_bytes())),
        ];
        if let Some(protocol) = &self.protocol {
            headers.push(("Sec-WebSocket-Protocol", protocol.clone()));
        }
        if let Some((_, answer)) = &self.deflate {
            headers.push(("Sec-WebSocket-Extensions", negotiate::format_extensions(std::slice::from_ref(answer))));
        }
        headers
    }
}

/// Why the engine refused an upgrade request parsed elsewhere: the HTTP answer to send instead of a
/// 101 (status, headers, a short fixed body that echoes nothing the peer sent), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRefusal {
    /// The HTTP status: 400, 405, 426 or 431 for a request breaking the handshake rules (as
    /// [`HandshakeError::status`]), 403 for an origin not allowed, 404 for a path without a route, 503
    /// while the engine stops or is at `Config::max_connections`.
    pub status: u16,
    /// Headers the answer carries besides the body's (`Upgrade` and `Sec-WebSocket-Version` with a 426,
    /// `Allow` with a 405).
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body text.
    pub body: &'static str,
    /// The handshake rule the request broke, when that is why.
    pub error: Option<HandshakeError>,
}

impl UpgradeRefusal {
    fn from_error(error: HandshakeError) -> Self {
        let status = error.status();
        let headers = match status {
            426 => vec![("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            405 => vec![("Allow", "GET")],
            _ => Vec::new(),
        };
        Self { status, headers, body: error.public_message(), error: Some(error) }
    }

    fn policy(status: u16, body: &'static str) -> Self {
        Self { status, headers: Vec::new(), body, error: None }
    }

    /// The 404 for a path the engine has no route for.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn not_found() -> Self {
        Self::policy(404, "no WebSocket handler for this path\n")
    }

    /// The 500 for a connection the HTTP server cannot hand over (no upgrade available, no runtime).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn cannot_upgrade() -> Self {
        Self::policy(500, "this connection cannot be upgraded\n")
    }
}

impl fmt::Display for UpgradeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(e) => write!(f, "upgrade refused ({}): {e}", self.status),
            None => write!(f, "upgrade refused ({}): {}", self.status, self.body.trim_end()),
        }
    }
}

impl std::error::Error for UpgradeRefusal {}

/// The checks a connection the engine accepted itself goes through before its 101, in the same order
/// (`reactor::upgrade::accept`): the handshake rules within the engine's limits, then the origin
/// policy; then what only a hand-off needs (stopping, the connection ceiling). Routing is the caller's.
fn check(
    config: &Config,
    stopping: bool,
    held: u64,
    method: &str,
    minor: u8,
    target: &str,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<UpgradeRequest, UpgradeRefusal> {
    let limits = HandshakeLimits { max_head_bytes: config.max_request_head, max_headers: config.max_headers };
    let request =
        ServerHandshake::new(limits).parse_parts(method, minor, target, headers).map_err(UpgradeRefusal::from_error)?;
    if let Some(allowed) = &config.allowed_origins {
        let ok = request.origin.as_deref().is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err(UpgradeRefusal::policy(403, "origin not allowed\n"));
        }
    }
    if stopping {
        return Err(UpgradeRefusal::policy(503, "the WebSocket engine is stopping\n"));
    }
    if held >= config.max_connections as u64 {
        return Err(UpgradeRefusal::policy(503, "the WebSocket engine is at its connection limit\n"));
    }
    Ok(request)
}

impl Handle {
    /// Checks an upgrade request another HTTP server parsed (its method, HTTP/1 minor version, request
    /// target and headers in order) as the engine checks one it reads itself: the handshake rules
    /// within `Config::max_request_head` / `max_headers`, then `Config::allowed_origins`; it also
    /// refuses (503) while the engine stops or holds `Config::max_connections` connections. The
    /// subprotocol is chosen by `Config::subprotocols`. The connection's handler comes from the route
    /// registered for the path, if any, or from [`AcceptedUpgrade::with_handler`]; permessage-deflate
    /// is accepted as `Config::deflate` says.
    ///
    /// A refusal is counted in `handshake_failures` (by reason) like one the engine answers itself;
    /// nothing is counted for an accepted request until [`Handle::adopt_upgraded`].
    pub fn accept_upgrade(
        &self,
        method: &str,
        minor: u8,
        target: &str,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<AcceptedUpgrade, UpgradeRefusal> {
        let config = &self.shared.config;
        let held = self.metrics().tcp_connections_by_phase.iter().sum();
        match check(config, self.is_stopping(), held, method, minor, target, headers) {
            Ok(request) => {
                let protocol = config.subprotocols.select(&request.offered_protocols());
                let deflate = deflate::accept_offers(&config.deflate, &request.extensions);
                let make = self.shared.router.route(&request.path).cloned().map(MakeHandler::Routed);
                Ok(AcceptedUpgrade { request, protocol, deflate, make })
            }
            Err(refusal) => {
                log::debug!("{refusal} (request parsed by another HTTP server)");
                self.count_refusal(refusal.status);
                Err(refusal)
            }
        }
    }

    /// Counts a refused upgrade (by the status it was answered with) on a reactor: counters have one
    /// writer each, their reactor.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn count_refusal(&self, status: u16) {
        self.send(self.next_reactor(), Command::CountRefusal(HandshakeFailure::from_http_status(status)));
    }

    /// Hands a connection whose upgrade another HTTP server completed to the engine: `stream` is its
    /// socket (the 101 made from [`AcceptedUpgrade::response_headers`] already sent), `upgrade` what
    /// [`Handle::accept_upgrade`] returned, `already_read` every byte the other server read after the
    /// request head (frames the client pipelined: they are processed first). A reactor (round robin)
    /// registers the socket as an open WebSocket: it counts it as accepted and upgraded, makes the
    /// handler, calls `on_open` (request headers readable), and from then on the connection has every
    /// limit, timeout and metric of one the engine accepted itself. When that reactor is stopping or at
    /// its share of `Config::max_connections`, it sends a close frame (1001 or 1013) and drops the
    /// socket, counted in `connections_refused`. Returns at once.
    pub fn adopt_upgraded(&self, stream: std::net::TcpStream, upgrade: AcceptedUpgrade, already_read: Vec<u8>) {
        self.send(self.next_reactor(), Command::AdoptUpgraded(stream, Box::new(upgrade), already_read));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect()
    }

    const GOOD: &[(&str, &str)] = &[
        ("Host", "x"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Origin", "https://a.example"),
    ];

    #[test]
    fn a_valid_request_passes_and_the_rules_map_to_their_status() {
        let config = Config::default();
        let ok = check(&config, false, 0, "GET", 1, "/ws?a=1", headers(GOOD)).unwrap();
        assert_eq!((ok.path.as_str(), ok.query.as_deref()), ("/ws", Some("a=1")));
        let no_key: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != "Sec-WebSocket-Key").collect();
        let refusal = check(&config, false, 0, "GET", 1, "/ws", headers(&no_key)).unwrap_err();
        assert_eq!(refusal.status, 400);
        assert_eq!(refusal.error, Some(HandshakeError::MissingKey));
        let mut v12 = GOOD.to_vec();
        v12[3] = ("Sec-WebSocket-Version", "12");
        let refusal = check(&config, false, 0, "GET", 1, "/ws", headers(&v12)).unwrap_err();
        assert_eq!(refusal.status, 426);
        assert!(refusal.headers.contains(&("Sec-WebSocket-Version", "13")));
        assert_eq!(check(&config, false, 0, "POST", 1, "/ws", headers(GOOD)).unwrap_err().status, 405);
    }

    #[test]
    fn limits_origin_stopping_and_the_ceiling_refuse() {
        let mut config = Config { max_headers: 5, ..Config::default() };
        assert_eq!(check(&config, false, 0, "GET", 1, "/ws", headers(GOOD)).unwrap_err().status, 431);
        config.max_headers = 64;
        config.max_request_head = 100;
        assert_eq!(check(&config, false, 0, "GET", 1, "/ws", headers(GOOD)).unwrap_err().status, 431);
        config.max_request_head = 8192;
        config.allowed_origins = Some(vec!["https://b.example".to_owned()]);
        assert_eq!(check(&config, false, 0, "GET", 1, "/ws", headers(GOOD)).unwrap_err().status, 403);
        config.allowed_origins = Some(vec!["https://A.example".to_owned()]);
        assert!(check(&config, false, 0, "GET", 1, "/ws", headers(GOOD)).is_ok());
        assert_eq!(check(&config, true, 0, "GET", 1, "/ws", headers(GOOD)).unwrap_err().status, 503);
        config.max_connections = 3;
        assert!(check(&config, false, 2, "GET", 1, "/ws", headers(GOOD)).is_ok());
        assert_eq!(check(&config, false, 3, "GET", 1, "/ws", headers(GOOD)).unwrap_err().status, 503);
    }

    #[test]
    fn the_101_headers_carry_the_accept_key_and_the_chosen_subprotocol() {
        let request = check(&Config::default(), false, 0, "GET", 1, "/ws", headers(GOOD)).unwrap();
        let mut up = AcceptedUpgrade { request, protocol: None, deflate: None, make: None };
        let names: Vec<_> = up.response_headers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Upgrade", "Connection", "Sec-WebSocket-Accept"]);
        // RFC 6455 §1.3's example key.
        assert_eq!(up.response_headers()[2].1, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        up.protocol = Some("chat".to_owned());
        assert_eq!(up.response_headers()[3], ("Sec-WebSocket-Protocol", "chat".to_owned()));
        assert!(!up.has_handler());
        struct Nop;
        impl Handler for Nop {}
        assert!(up.with_handler(|_| Nop).has_handler());
    }
}

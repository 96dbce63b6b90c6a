//! hyper 1: answer an upgrade request with the engine's 101, then hand the connection to the engine.
//!
//! ```no_run
//! # use wsloop::server::{Ctx, Handle, Handler};
//! # struct Chat { user: String }
//! # impl Handler for Chat {}
//! fn route(engine: &Handle, request: http::Request<()>, user: String) -> http::Response<String> {
//!     let (mut parts, _body) = request.into_parts();
//!     match wsloop::integrations::hyper::accept(engine, &mut parts) {
//!         Ok(upgrade) => upgrade.with_handler(move |_req| Chat { user }).respond(),
//!         Err(refusal) => wsloop::integrations::hyper::refusal_response(&refusal),
//!     }
//! }
//! ```
//!
//! Why the 101 is hyper's to send (and not the engine's, after taking the socket before any answer):
//! hyper yields the connection only after it wrote a 101 (`hyper::upgrade::on`), and then gives back
//! every byte it had read past the request head (`read_buf`: frames the client pipelined), which are
//! the adopted connection's first input; and the application's response layers (CORS headers, a
//! session's `Set-Cookie`) apply to that 101 like to any response. What the 101 says (accept key,
//! subprotocol) is still computed by the engine ([`AcceptedUpgrade::response_headers`]).
//!
//! The hand-off needs the connection's transport to be a tokio `TcpStream` (what `axum::serve` and
//! hyper-util's servers use for a `TcpListener`, wrapped or not by hyper-util's `auto` builder); any
//! other (TLS, a Unix socket) cannot be adopted, and is dropped with an error in the log.

use std::io;

use ::hyper::upgrade::{OnUpgrade, Upgraded};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proto::handshake::UpgradeRequest;
use crate::server::{AcceptedUpgrade, Handle, Handler, UpgradeRefusal};

/// An upgrade request the engine accepted, waiting for its 101 to be returned to hyper.
#[derive(Debug)]
pub struct PendingUpgrade {
    handle: Handle,
    accepted: AcceptedUpgrade,
    on_upgrade: OnUpgrade,
}

/// Checks the upgrade request in `parts` with [`Handle::accept_upgrade`] (method, version, target,
/// headers, in hyper's order) and takes hyper's `OnUpgrade` out of its extensions. Refuses, like the
/// engine would, a request breaking the handshake rules, an origin not allowed, a stopping or full
/// engine; and with 500 a request hyper cannot upgrade (no `OnUpgrade`: HTTP/2, or a server built
/// without `with_upgrades`). A refusal is counted in the engine's `handshake_failures`.
pub fn accept(handle: &Handle, parts: &mut Parts) -> Result<PendingUpgrade, UpgradeRefusal> {
    let minor = if parts.version == Version::HTTP_11 { 1 } else { 0 };
    let headers =
        parts.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect();
    let target = parts.uri.to_string();
    let accepted = handle.accept_upgrade(parts.method.as_str(), minor, &target, headers)?;
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        let refusal = UpgradeRefusal::cannot_upgrade();
        handle.count_refusal(refusal.status);
        return Err(refusal);
    };
    Ok(PendingUpgrade { handle: handle.clone(), accepted, on_upgrade })
}

impl PendingUpgrade {
    /// The validated request.
    pub fn request(&self) -> &UpgradeRequest {
        self.accepted.request()
    }

    /// The accepted upgrade (the chosen subprotocol, whether a handler will be made).
    pub fn accepted(&self) -> &AcceptedUpgrade {
        &self.accepted
    }

    /// Makes the connection's handler with `factory` (called once, on the adopting reactor thread)
    /// instead of the engine's route: see [`AcceptedUpgrade::with_handler`].
    pub fn with_handler<F, H>(mut self, factory: F) -> Self
    where
        F: FnOnce(&UpgradeRequest) -> H + Send + 'static,
        H: Handler,
    {
        self.accepted = self.accepted.with_handler(factory);
        self
    }

    /// The response to return to hyper: the 101 (headers from
    /// [`AcceptedUpgrade::response_headers`]), after starting a tokio task that waits for hyper to send
    /// it and hands the socket and hyper's unread bytes to [`Handle::adopt_upgraded`]. Refused with 404
    /// when there is no handler (no route for the path and no [`PendingUpgrade::with_handler`]), and with
    /// 500 outside a tokio runtime.
    pub fn respond<B: From<&'static str>>(self) -> Response<B> {
        let Self { handle, accepted, on_upgrade } = self;
        if !accepted.has_handler() {
            handle.count_refusal(404);
            return refusal_response(&UpgradeRefusal::not_found());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            handle.count_refusal(500);
            return refusal_response(&UpgradeRefusal::cannot_upgrade());
        };
        let mut response = Response::new(B::from(""));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in accepted.response_headers() {
            // The engine wrote these values: tokens and base64, always valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        runtime.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => match into_tcp(upgraded) {
                    Ok((stream, already_read)) => handle.adopt_upgraded(stream, accepted, already_read),
                    Err(e) => log::error!("cannot hand an upgraded connection to the engine: {e}"),
                },
                Err(e) => log::debug!("the upgrade did not complete: {e}"),
            }
        });
        response
    }
}

/// The socket under hyper's `Upgraded` and the bytes hyper read past the request head.
fn into_tcp(upgraded: Upgraded) -> io::Result<(std::net::TcpStream, Vec<u8>)> {
    // hyper-util's `auto` builder (axum::serve) wraps the transport in a private type of its own.
    let (io, read_buf) = match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
        Ok(parts) => (parts.io, parts.read_buf),
        Err(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (parts.io, parts.read_buf),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the connection's transport is not a tokio TcpStream (TLS or another stream cannot be adopted)",
                ))
            }
        },
    };
    Ok((io.into_inner().into_std()?, read_buf.to_vec()))
}

/// The HTTP answer to a refused upgrade: its status, its headers, `Content-Type: text/plain` and its
/// fixed body.
pub fn refusal_response<B: From<&'static str>>(refusal: &UpgradeRefusal) -> Response<B> {
    let mut response = Response::new(B::from(refusal.body));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    for (name, value) in &refusal.headers {
        headers.append(*name, HeaderValue::from_static(value));
    }
    response
}

//! axum 0.8: the [`WsloopUpgrade`] extractor and the [`wsloop_upgrade`] handler.
//!
//! The route is an ordinary axum route, so the app's layers run first (a 401 from an auth layer never
//! reaches the engine) and its extractors are at hand:
//!
//! ```no_run
//! use axum::{routing::get, Extension, Router};
//! use wsloop::integrations::axum::{wsloop_upgrade, WsloopUpgrade};
//! use wsloop::server::{Ctx, Handle, Handler};
//!
//! #[derive(Clone)]
//! struct UserId(String);
//! struct Chat { user: String }
//! impl Handler for Chat {}
//!
//! async fn chat(upgrade: WsloopUpgrade, Extension(UserId(user)): Extension<UserId>) -> axum::response::Response {
//!     upgrade.on_upgrade(move |_request| Chat { user })
//! }
//!
//! fn app(engine: Handle) -> Router {
//!     Router::new()
//!         .route("/chat", get(chat))          // a handler made here, with the user id
//!         .route("/echo", get(wsloop_upgrade)) // the engine's route for /echo (Server::register_handler)
//!         .with_state(engine)
//! }
//! ```
//!
//! The engine's [`Handle`] comes from the router's state (`Handle: FromRef<S>`: the state is the
//! handle, or implement `FromRef` for yours). How the connection is handed over:
//! [`crate::integrations::hyper`].

use axum_core::extract::{FromRef, FromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::proto::handshake::UpgradeRequest;
use crate::server::{Handle, Handler, UpgradeRefusal};

use super::hyper::{accept, refusal_response, PendingUpgrade};

/// An upgrade request the engine accepted (extracting it checks the request: see
/// [`hyper::accept`](super::hyper::accept)). Return [`WsloopUpgrade::on_upgrade`] with a handler factory,
/// or the extractor itself (it is a response) to use the engine's route for the path.
#[derive(Debug)]
pub struct WsloopUpgrade {
    pending: PendingUpgrade,
}

/// A refused upgrade, answered with its status, headers and fixed body.
#[derive(Debug)]
pub struct WsloopRejection(pub UpgradeRefusal);

impl IntoResponse for WsloopRejection {
    fn into_response(self) -> Response {
        refusal_response(&self.0)
    }
}

impl<S> FromRequestParts<S> for WsloopUpgrade
where
    Handle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WsloopRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let handle = Handle::from_ref(state);
        accept(&handle, parts).map(|pending| Self { pending }).map_err(WsloopRejection)
    }
}

impl WsloopUpgrade {
    /// The validated request (path, query, headers, offered subprotocols).
    pub fn request(&self) -> &UpgradeRequest {
        self.pending.request()
    }

    /// The subprotocol the engine chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.pending.accepted().protocol()
    }

    /// The 101, with this connection's handler made by `factory` (called once, on the reactor thread
    /// that adopts the connection, with the request; capture what the app knows, e.g. a user id).
    pub fn on_upgrade<F, H>(self, factory: F) -> Response
    where
        F: FnOnce(&UpgradeRequest) -> H + Send + 'static,
        H: Handler,
    {
        self.pending.with_handler(factory).respond()
    }
}

impl IntoResponse for WsloopUpgrade {
    /// The 101, with the handler made by the engine's route for the path (404 without one).
    fn into_response(self) -> Response {
        self.pending.respond()
    }
}

/// A handler that upgrades to the engine's route for the request path:
/// `.route("/ws", get(wsloop_upgrade))`.
pub async fn wsloop_upgrade(upgrade: WsloopUpgrade) -> Response {
    upgrade.into_response()
}

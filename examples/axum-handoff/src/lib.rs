//! An axum application that serves HTTP and hands WebSocket connections to a wsloop engine.
//!
//! [`app`] is the way to do it: `/ws` is an ordinary axum route (`get(wsloop_upgrade)`), so the app's
//! layers and extractors run first; wsloop checks the upgrade, computes the 101, and takes the socket
//! over once hyper has sent it (`wsloop::integrations::axum`). `/me/ws` shows a handler made in the
//! route from what a layer attached (a user name).
//!
//! [`peek`] is the zero-overhead alternative for an app that routes WebSockets by path only: it looks at
//! each new connection before hyper does and hands upgrade requests for `/ws` to wsloop untouched, so
//! no middleware runs for them.

pub mod peek;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use wsloop::integrations::axum::{wsloop_upgrade, WsloopUpgrade};
use wsloop::server::{Ctx, Handle, Handler};

/// The user a request authenticated as (`?user=` here; a real app reads a session or a token).
#[derive(Clone, Debug)]
pub struct User(pub String);

/// Greets its user, then stays open.
#[derive(Debug)]
pub struct Greeter(pub String);

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx.send_text(&format!("hello {}", self.0));
    }
}

async fn authenticate(mut request: Request, next: Next) -> Response {
    let user = request.uri().query().and_then(|q| q.strip_prefix("user=")).map(str::to_owned);
    match user {
        Some(user) => {
            request.extensions_mut().insert(User(user));
            next.run(request).await
        }
        None => (StatusCode::UNAUTHORIZED, "who are you?\n").into_response(),
    }
}

async fn me(upgrade: WsloopUpgrade, Extension(User(name)): Extension<User>) -> Response {
    upgrade.on_upgrade(move |_request| Greeter(name))
}

/// The app: `/hello` is plain axum, `/ws` goes to the engine's route for `/ws`, `/me/ws` to a handler
/// made from the authenticated user.
pub fn app(engine: Handle) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from axum\n" }))
        .route("/ws", get(wsloop_upgrade))
        .route("/me/ws", get(me).route_layer(middleware::from_fn(authenticate)))
        .with_state(engine)
}

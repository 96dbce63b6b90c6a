//! Putting a WebSocket route on an existing HTTP server: the application's server reads the request and
//! runs its own middleware (authentication, sessions, CORS); the engine checks the upgrade, computes the
//! 101 and takes the socket over once the server sent it.
//!
//! - [`hyper`] (feature `hyper`): for any hyper 1 server on tokio TCP sockets.
//! - [`axum`] (feature `axum`): an extractor and a handler an axum app mounts like any route.
//!
//! The engine side ([`Handle::accept_upgrade`](crate::server::Handle::accept_upgrade),
//! [`Handle::adopt_upgraded`](crate::server::Handle::adopt_upgraded)) needs neither feature.

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod hyper;

//! # wsloop
//!
//! An RFC 6455 WebSocket server and client engine built around one reactor thread per core.
//!
//! The crate is layered so that data flows one way:
//!
//! - [`proto`]: the sans-IO protocol core (frames, masking, UTF-8, close handshake, handshake, extensions).
//!   It never touches sockets, threads or clocks.
//! - [`buf`]: buffers and per-reactor buffer pools.
//! - [`timer`]: the hashed timer wheel that drives deadlines.
//! - [`server`]: the reactor engine: per-core mio loops serving connections through [`server::Handler`]s.
//! - [`metrics`]: per-reactor counters, snapshots, rates, a text table and Prometheus text.
//! - [`http`]: plain HTTP/1.1 requests on the WebSocket port (health, metrics, an application handler).
//! - `integrations` (features `hyper`, `axum`): a WebSocket route on an existing hyper or axum app.
//! - [`client`]: a blocking WebSocket client (pull style and callback style) on the same protocol core, a
//!   connection pool, per-host circuit breakers and a reconnecting client.
//! - [`broker`]: topics shared by many nodes through a message broker (Redis pub/sub with the `redis`
//!   feature).
//!
//! # Cargo features
//!
//! - `metrics` (default): the engine's per-reactor counters. Without it the [`metrics`] API stays the
//!   same, but every counter update compiles to nothing and snapshots read zero ([`metrics::ENABLED`]
//!   says which build this is); that build exists to measure what counting costs.
//! - `cli` (default): the `wsloop` binary and its dependencies (clap, env_logger, signal-hook,
//!   hdrhistogram, indicatif, serde_json). It adds nothing to the library; an embedder can use
//!   `default-features = false, features = ["metrics"]`.
//! - `hyper`: `integrations::hyper`, a WebSocket route on a hyper 1 server whose socket the engine
//!   adopts after hyper sent the engine's 101. `axum` (implies `hyper`): `integrations::axum`, an
//!   extractor and a handler an axum app mounts like any route.
//! - `tls` (default; `cli` turns it on): `wss://` on the server and in every client, with rustls and
//!   the ring provider: `server::TlsConfig`, `client::ClientTls`, `Config::tls`, `ClientOptions::tls`,
//!   `ConnectOptions::tls` (see `docs/tls.md`). Without it a `wss://` URL is `Error::TlsUnsupported`.
//!
//! Items that exist only with a feature carry a banner saying so in the documentation built by docs.rs
//! (`--cfg docsrs`); `tls` gates the TLS types and fields, `hyper` and `axum` their `integrations` modules.
//!
//! # Lints
//!
//! `Cargo.toml`'s `[lints]` table holds every target to `unsafe_code = "deny"` (only [`sys`] allows it),
//! `missing_docs`, `missing_debug_implementations`, `unreachable_pub`, and clippy's `use_self` and
//! `manual_let_else`; CI turns warnings into errors.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod broker;
pub mod buf;
pub mod client;
pub mod http;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod integrations;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod sys;
pub mod timer;

/// The README's code blocks, compiled (and, unless marked `no_run`, run) by `cargo test --doc`, so the
/// quick starts cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

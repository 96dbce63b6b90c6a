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
//! - [`client`]: the blocking client, pool, circuit breaker and reconnecting client.
//! - [`client`]: a blocking WebSocket client (pull style and callback style) on the same protocol core.
//! - [`broker`]: topics shared by many nodes through a message broker (Redis pub/sub with the `redis`
//!   feature).
#![warn(missing_docs, missing_debug_implementations)]

pub mod broker;
pub mod buf;
pub mod client;
pub mod http;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod sys;
pub mod timer;

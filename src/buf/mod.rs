//! Buffers and the per-reactor buffer pool.
//!
//! Owns: byte storage on the read and write paths — the [`BufferPool`] each reactor keeps, a connection's
//! [`InboundBuf`] (the unparsed tail of its stream) and its [`OutboundQueue`] (bytes the socket has not
//! taken yet). Never touches: sockets (readers and writers are passed in), WebSocket framing, threads.
//!
//! Everything here is single-threaded and lock-free by construction: one reactor owns its pool and its
//! connections' buffers. Once the pool is warm, the read and write paths do not allocate.
//!
//! Typical reactor use:
//!
//! ```
//! use wsloop::buf::{BufferPool, InboundBuf, OutboundQueue};
//!
//! let mut pool = BufferPool::default();
//! let mut inbound: Option<InboundBuf> = None; // an idle connection owns no buffer
//!
//! // A read left an incomplete frame at the end of the scratch buffer: keep it.
//! let tail = b"\x81\x05hel";
//! inbound.get_or_insert_with(|| InboundBuf::from_vec(pool.take())).append(tail);
//!
//! // ... later the parser consumed it: give the storage back.
//! if let Some(buf) = inbound.as_mut() {
//!     let n = buf.len();
//!     buf.consume(n);
//! }
//! if inbound.as_ref().is_some_and(InboundBuf::is_empty) {
//!     pool.give(inbound.take().unwrap().into_vec());
//! }
//!
//! // The socket would block: queue what it did not take, then write it when writable.
//! let mut outbound = OutboundQueue::new();
//! outbound.push_owned(b"\x81\x02hi", &mut pool);
//! let mut socket = Vec::new(); // stands in for a non-blocking TcpStream
//! outbound.write_to(&mut socket, &mut pool).unwrap();
//! assert!(outbound.is_empty());
//! assert_eq!(pool.outstanding(), 0);
//! ```

mod inbound;
mod outbound;
mod pool;

pub use inbound::{Fill, InboundBuf, LimitExceeded};
pub use outbound::OutboundQueue;
pub use pool::{BufferPool, DEFAULT_BUFFER_CAPACITY, DEFAULT_MAX_IDLE};

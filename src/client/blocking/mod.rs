//! A blocking WebSocket client over `std::net::TcpStream`, in two styles.
//!
//! Owns: opening the TCP connection, the client side of the opening handshake, reading and writing
//! frames with deadlines, keepalive pings, the closing handshake as the client plays it (wait for the
//! server to close TCP first), and the callback reader thread. Never touches: server internals, TLS,
//! pooling (a pool leases [`Client`]s through [`Client::is_open`] and [`Client::check_health`]).
//!
//! # Design
//! The protocol state ([`Connection`]) sits in a mutex that is held only to parse received bytes or to
//! encode frames, never across a blocking socket call. Frames are encoded into a queue and written by
//! whoever holds a second, writer mutex, in the order they were encoded. A reader that must answer a
//! ping or a close only queues the answer and *tries* the writer mutex: if a sender is blocked in a
//! write (a peer that does not read), the reader does not wait for it; the sender writes the queued
//! answer when its own write finishes. So reading never waits behind writing.

#[cfg(doc)]
use crate::proto::Connection;
mod callback;
mod connect;
mod link;
mod options;
mod pull;
mod reader;
mod stream;

pub(crate) use connect::{connect_stream, resolve_host};

pub use callback::{connect_with_callback, CallbackClient, ClientSender};
pub use options::{ClientOptions, CloseInfo, ExtensionFactory, Message, MessageCallback};
pub use pull::{connect, with_connection, Client};

#[cfg(test)]
use connect::resolve_within;
#[cfg(test)]
use reader::ReadBuf;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    use super::link::MIN_READ;
    use std::net::SocketAddr;
    use std::thread;
    use std::time::Duration;

    use super::super::error::{Error, Operation};

    #[test]
    fn a_lookup_that_hangs_times_out_and_a_quick_one_answers() {
        let slow = resolve_within("slow.example", Duration::from_millis(50), || {
            thread::sleep(Duration::from_secs(2));
            Ok(vec![])
        });
        assert!(matches!(slow, Err(Error::Timeout(Operation::Resolve))), "{slow:?}");
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let quick = resolve_within("quick.example", Duration::from_secs(5), move || Ok(vec![addr]));
        assert_eq!(quick.unwrap(), vec![addr]);
        let failed = resolve_within("bad.example", Duration::from_secs(5), || Err(io::Error::other("no such host")));
        assert!(matches!(failed, Err(Error::Resolve { ref host, .. }) if host == "bad.example"), "{failed:?}");
    }

    #[test]
    fn read_buf_keeps_unconsumed_bytes_across_growth() {
        let mut buf = ReadBuf::default();
        buf.push(b"hello");
        buf.consume(2);
        let spare = buf.spare();
        assert!(spare.len() >= MIN_READ);
        spare[..3].copy_from_slice(b"abc");
        buf.filled(3);
        assert_eq!(buf.filled_mut(), b"lloabc");
        buf.consume(6);
        assert_eq!(buf.filled_mut(), b"");
    }

    #[test]
    fn options_defaults_are_as_documented() {
        let o = ClientOptions::default();
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.handshake_timeout, Duration::from_secs(10));
        assert_eq!(o.read_timeout, None);
        assert_eq!(o.write_timeout, None);
        assert_eq!(o.ping_interval, None);
        assert!(o.connection.auto_pong);
        assert!(o.nodelay);
        let o = o.max_message_size(5).subprotocol("a").header("Origin", "x");
        assert_eq!(o.connection.max_message_size, 5);
        assert_eq!(o.subprotocols, ["a"]);
    }
}

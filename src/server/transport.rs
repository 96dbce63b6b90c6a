//! The transport seam: every byte a connection reads or writes goes through a [`Transport`].
//!
//! Owns: the socket of a connection, reading from it, and the engine's one write-until-`WouldBlock` loop
//! ([`Transport::write_until_blocked`]) over anything that can offer bytes as iovecs ([`Outgoing`]).
//! Never touches: WebSocket frames, buffers' pooling policy, handlers.
//!
//! Plain TCP, or (feature `tls`) a TLS session over it (plaintext in, records out, driven by the same
//! readiness events; `server::tls_session`). A connection's slab entry keeps only its socket; its TLS
//! session, if any, lives beside the slab in the reactor's [`TlsSessions`], and a [`Transport`] joins
//! the two for one event. The reactor and `Ctx` only see this interface; the one thing TLS adds for
//! them is [`Transport::wants_write`]: records a session holds because the socket would block, flushed
//! on the next writable event like a queue.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::buf::{BufferPool, OutboundQueue};

/// How many iovecs one vectored write of a queue passes (on the stack).
const WRITE_IOVECS: usize = 64;

/// Bytes waiting to be written, in order, and how to offer them to one write call.
pub(crate) trait Outgoing {
    /// Whether nothing is left.
    fn is_empty(&self) -> bool;
    /// One write call of (some of) the bytes, in order: `write` for one slice, `write_vectored` for
    /// several. Returns what `w` took.
    fn write_once(&self, w: &mut impl Write) -> io::Result<usize>;
    /// Drops the first `n` bytes offered (the transport took them).
    fn advance(&mut self, n: usize);
}

/// A connection's outbound queue with the pool its emptied buffers go back to.
pub(crate) struct Queued<'a> {
    pub(crate) queue: &'a mut OutboundQueue,
    pub(crate) pool: &'a mut BufferPool,
}

impl Outgoing for Queued<'_> {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn write_once(&self, w: &mut impl Write) -> io::Result<usize> {
        let mut iovecs = [IoSlice::new(&[]); WRITE_IOVECS];
        let count = self.queue.fill_iovecs(&mut iovecs);
        match count {
            1 => w.write(&iovecs[0]),
            _ => w.write_vectored(&iovecs[..count]),
        }
    }

    fn advance(&mut self, n: usize) {
        self.queue.advance(n, self.pool);
    }
}

/// Up to two borrowed slices written in order (e.g. the cork and a large payload after it).
pub(crate) struct Slices<'s> {
    parts: [&'s [u8]; 2],
}

impl<'s> Slices<'s> {
    pub(crate) fn new(first: &'s [u8], second: &'s [u8]) -> Self {
        Self { parts: [first, second] }
    }
}

impl Outgoing for Slices<'_> {
    fn is_empty(&self) -> bool {
        self.parts[0].is_empty() && self.parts[1].is_empty()
    }

    fn write_once(&self, w: &mut impl Write) -> io::Result<usize> {
        match self.parts {
            [only, []] | [[], only] => w.write(only),
            [first, second] => w.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]),
        }
    }

    fn advance(&mut self, mut n: usize) {
        for part in &mut self.parts {
            let take = n.min(part.len());
            *part = &part[take..];
            n -= take;
        }
    }
}

/// A new connection's socket and, with TLS, its session, before the reactor stores them: the socket
/// goes into the connection's slab entry, the session into the reactor's [`TlsSessions`] beside it (so
/// a plain connection's entry holds the socket and nothing more).
#[derive(Debug)]
pub(crate) struct NewTransport {
    pub(crate) stream: TcpStream,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<super::tls_session::TlsStream>>,
}

impl NewTransport {
    /// Plain TCP.
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        Self {
            stream,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS over TCP.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(stream: TcpStream, tls: super::tls_session::TlsStream) -> Self {
        Self { stream, tls: Some(Box::new(tls)) }
    }
}

/// The TLS sessions of one reactor's connections, by slab slot: empty (no allocation) while none is
/// TLS. An entry is written whenever a connection is stored in its slot (so a slot never shows the
/// session of a connection that was there before) and taken when it is removed.
#[derive(Debug, Default)]
pub(crate) struct TlsSessions {
    #[cfg(feature = "tls")]
    by_slot: Vec<Option<Box<super::tls_session::TlsStream>>>,
}

impl TlsSessions {
    /// The transport of the connection in `slot` whose socket is `stream`.
    #[inline]
    pub(crate) fn transport<'a>(&'a mut self, stream: &'a mut TcpStream, slot: usize) -> Transport<'a> {
        let _ = slot;
        Transport {
            stream,
            #[cfg(feature = "tls")]
            tls: self.by_slot.get_mut(slot).and_then(|tls| tls.as_deref_mut()),
        }
    }

    /// Stores the session (or none) of the connection just stored in `slot`.
    pub(crate) fn insert(&mut self, slot: usize, new: &mut NewTransport) {
        let _ = (slot, &new);
        #[cfg(feature = "tls")]
        match new.tls.take() {
            Some(tls) => {
                if self.by_slot.len() <= slot {
                    self.by_slot.resize_with(slot + 1, || None);
                }
                self.by_slot[slot] = Some(tls);
            }
            None => {
                if let Some(entry) = self.by_slot.get_mut(slot) {
                    *entry = None;
                }
            }
        }
    }

    /// Takes the session of the connection removed from `slot`, if it had one (`close_notify` is the
    /// caller's; the session is dropped with what it returns).
    #[cfg(feature = "tls")]
    pub(crate) fn remove(&mut self, slot: usize) -> Option<Box<super::tls_session::TlsStream>> {
        self.by_slot.get_mut(slot).and_then(Option::take)
    }

    /// Takes the session of the connection removed from `slot` (none without the `tls` feature).
    #[cfg(not(feature = "tls"))]
    pub(crate) fn remove(&mut self, slot: usize) -> Option<std::convert::Infallible> {
        let _ = slot;
        None
    }
}

/// The byte stream under one connection, for one event: its socket and, for TLS, its session.
#[derive(Debug)]
pub(crate) struct Transport<'a> {
    stream: &'a mut TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<&'a mut super::tls_session::TlsStream>,
}

impl<'a> Transport<'a> {
    /// Plain TCP over `stream`.
    #[cfg(any(test, not(feature = "tls")))]
    pub(crate) fn tcp(stream: &'a mut TcpStream) -> Self {
        Self {
            stream,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS over `stream`, or plain TCP without a session.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(stream: &'a mut TcpStream, tls: Option<&'a mut super::tls_session::TlsStream>) -> Self {
        Self { stream, tls }
    }

    /// The same transport for a shorter borrow.
    pub(crate) fn reborrow(&mut self) -> Transport<'_> {
        Transport {
            stream: self.stream,
            #[cfg(feature = "tls")]
            tls: self.tls.as_deref_mut(),
        }
    }

    /// The peer's address (asked of the socket, not stored).
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Reads what is there into `buf` (`Ok(0)`: the peer closed).
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.read(self.stream, buf);
        }
        self.stream.read(buf)
    }

    /// Whether bytes already taken from a writer are still waiting for the socket inside the transport
    /// (a TLS session's records); plain TCP holds none. The reactor treats this like a non-empty queue:
    /// it flushes on writable and closes only once it is false.
    pub(crate) fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref() {
            return tls.wants_write();
        }
        false
    }

    /// Writes what the transport holds ([`Transport::wants_write`]) until done or the socket would
    /// block.
    pub(crate) fn flush_held(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.flush(self.stream).map(drop);
        }
        Ok(())
    }

    /// Before the socket closes: a TLS session sends `close_notify` (best effort).
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.close_notify(self.stream);
        }
    }

    /// The engine's one write loop: writes what `src` offers, in order, until it offers nothing more or
    /// the socket would block, and returns how many bytes were taken (what was not taken stays in `src`).
    /// An error other than `WouldBlock` (or a socket that takes nothing) is returned: the connection is
    /// broken.
    pub(crate) fn write_until_blocked(&mut self, src: &mut impl Outgoing) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.write_until_blocked(self.stream, src);
        }
        let stream = &mut *self.stream;
        let mut written = 0;
        while !src.is_empty() {
            // `sendmsg(MSG_NOSIGNAL)`: a reset peer is an error here, never a SIGPIPE for the host process.
            let result = src.write_once(&mut crate::sys::NoSigPipe(&*stream));
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    src.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}

impl Read for Transport<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Transport::read(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_offer_their_parts_in_order_and_advance_across_them() {
        let mut s = Slices::new(b"abc", b"defg");
        let mut out = Vec::new();
        assert_eq!(s.write_once(&mut out).unwrap(), 7);
        assert_eq!(out, b"abcdefg");
        s.advance(4);
        out.clear();
        assert_eq!(s.write_once(&mut out).unwrap(), 3);
        assert_eq!(out, b"efg");
        assert!(!s.is_empty());
        s.advance(3);
        assert!(s.is_empty());
        assert!(Slices::new(&[], &[]).is_empty());
    }

    #[test]
    fn write_until_blocked_takes_everything_a_socket_accepts_then_stops_at_would_block() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(server);
        let mut transport = Transport::tcp(&mut stream);
        // Small: all of it is taken at once.
        let written = transport.write_until_blocked(&mut Slices::new(b"hello ", b"world")).unwrap();
        assert_eq!(written, 11);
        // Far more than the socket buffers hold while nobody reads: it stops at WouldBlock, short.
        let big = vec![7u8; 64 << 20];
        let written = transport.write_until_blocked(&mut Slices::new(&[], &big)).unwrap();
        assert!(written > 0 && written < big.len(), "wrote {written}");
        drop(client);
    }
}

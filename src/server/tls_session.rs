//! One reactor connection's TLS session (feature `tls`; the server side of an accepted connection, or
//! the client side of an in-loop client): records in from the socket, plaintext out to the
//! reactor's buffer; plaintext in from the write path, records out; driven by the same readiness events
//! as plain TCP, on the reactor thread.
//!
//! Owns: the `rustls::Connection` and its socket, the handshake (advanced by reads, its flights
//! written at once or when the socket is writable again), what a failure is counted as. Never touches:
//! WebSocket frames, the reactor's buffers.

use std::io::{self, Read};

use mio::net::TcpStream;
use rustls::Connection;

use crate::metrics::HandshakeFailure;

use super::transport::Outgoing;

/// A TLS failure on a connection: the rustls error, and whether it happened during the handshake (then
/// it is counted as a handshake failure with [`TlsFailure::reason`]).
#[derive(Debug)]
pub(crate) struct TlsFailure {
    pub(crate) error: rustls::Error,
    pub(crate) during_handshake: bool,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = if self.during_handshake { "TLS handshake failed" } else { "TLS failed" };
        write!(f, "{when}: {}", self.error)
    }
}

impl std::error::Error for TlsFailure {}

impl TlsFailure {
    /// The handshake-failure bucket for this error: the peer's certificate (or the peer's verdict on
    /// ours, sent as an alert), else the protocol (garbage records, no common version, cipher or ALPN).
    pub(crate) fn reason(&self) -> HandshakeFailure {
        use rustls::{AlertDescription as A, Error as E};
        match &self.error {
            E::InvalidCertificate(_) | E::NoCertificatesPresented => HandshakeFailure::TlsCertificate,
            E::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired,
            ) => HandshakeFailure::TlsCertificate,
            _ => HandshakeFailure::TlsProtocol,
        }
    }

    /// The failure inside an I/O error returned by a TLS transport, if it is one.
    pub(crate) fn of(e: &io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// The most plaintext encrypted ahead of the socket (its records wait inside the session while the
/// socket is blocked; the rest of what the write path offers stays in the connection's queue). Above
/// 64 KiB, so that a 64 KiB message and its header become one run of records and one `writev`.
const RECORDS_AHEAD: usize = 128 * 1024;

/// The most ciphertext one `recv` takes (the reactor's scratch buffer is at least this large).
const CIPHER_READ: usize = 256 * 1024;

thread_local! {
    /// Ciphertext just read, before the session takes it: one buffer per reactor thread (grown to at
    /// most [`CIPHER_READ`] on first use), never one per connection.
    static CIPHER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How far a read filled the caller's buffer, and whether it is over.
struct Filled {
    len: usize,
    end: Option<usize>,
}

/// A TLS session over a non-blocking socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    pub(crate) stream: TcpStream,
    session: Connection,
}

impl TlsStream {
    pub(crate) fn new(stream: TcpStream, mut session: Connection) -> Self {
        session.set_buffer_limit(Some(RECORDS_AHEAD));
        Self { stream, session }
    }

    /// Records written by the session that the socket has not taken yet.
    pub(crate) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Writes pending records until none are left (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads plaintext into `buf` until it is full or the socket would block, so that a short read still
    /// means the socket is drained (the reactor relies on that with edge-triggered readiness). `Ok(0)`:
    /// the peer closed (with or without `close_notify`). Handshake flights are written as they arise.
    ///
    /// Ciphertext is read with one `recv` of up to the room left in `buf` (at most [`CIPHER_READ`])
    /// into this thread's ciphertext buffer, then fed to the session from memory: rustls reading the
    /// socket itself would take 4 KiB per call. Since a record's plaintext is never longer than its
    /// ciphertext, everything decrypted from one `recv` fits in `buf`, so nothing is left over.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = self.take_plaintext(buf, 0)?;
        if let Some(n) = filled.end {
            return Ok(n);
        }
        CIPHER.with(|cipher| {
            let mut cipher = cipher.borrow_mut();
            loop {
                let room = (buf.len() - filled.len).min(CIPHER_READ);
                if room == 0 {
                    return Ok(filled.len);
                }
                if cipher.len() < room {
                    cipher.resize(room, 0);
                }
                let n = match self.stream.read(&mut cipher[..room]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.flush()?;
                        return if filled.len > 0 { Ok(filled.len) } else { Err(e) };
                    }
                    Err(e) => return Err(e),
                };
                let mut arrived = &cipher[..n];
                loop {
                    // `Ok(0)` from an empty slice tells the session the socket ended; from a non-empty
                    // one, that the session takes nothing more (after `close_notify`): the rest is dropped.
                    let took = self.session.read_tls(&mut arrived)?;
                    self.process()?;
                    filled = self.take_plaintext(buf, filled.len)?;
                    if arrived.is_empty() || took == 0 {
                        break;
                    }
                }
                if let Some(n) = filled.end {
                    return Ok(n);
                }
                if n == 0 {
                    return Ok(filled.len);
                }
                if n < room {
                    // The socket had no more: drained (with nothing decrypted, e.g. a handshake flight:
                    // would block, never `Ok(0)`, which means the peer closed).
                    return if filled.len > 0 { Ok(filled.len) } else { Err(io::ErrorKind::WouldBlock.into()) };
                }
            }
        })
    }

    /// Moves decrypted plaintext into `buf[from..]`. `end` is set when the read is over: `buf` is full,
    /// or the peer closed (then `len` is what was filled, possibly 0).
    fn take_plaintext(&mut self, buf: &mut [u8], from: usize) -> io::Result<Filled> {
        let mut len = from;
        loop {
            if len == buf.len() {
                return Ok(Filled { len, end: Some(len) });
            }
            match self.session.reader().read(&mut buf[len..]) {
                Ok(0) => return Ok(Filled { len, end: Some(len) }),
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Filled { len, end: None }),
                // The socket ended without close_notify: an end like any other for the reactor.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Filled { len, end: Some(len) }),
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypts what arrived and advances the handshake; on failure the alert goes out (best effort).
    fn process(&mut self) -> io::Result<()> {
        let during_handshake = self.session.is_handshaking();
        match self.session.process_new_packets() {
            Ok(_) => {
                if self.session.wants_write() {
                    self.flush()?;
                }
                Ok(())
            }
            Err(error) => {
                let _ = self.flush();
                Err(io::Error::new(io::ErrorKind::InvalidData, TlsFailure { error, during_handshake }))
            }
        }
    }

    /// Encrypts what `src` offers and writes the records until `src` is empty or the socket would
    /// block. Returns the plaintext bytes taken. At most [`RECORDS_AHEAD`] of plaintext (as
    /// records) stays inside the session while the socket is blocked; the rest stays in `src`.
    pub(crate) fn write_until_blocked(&mut self, src: &mut impl Outgoing) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            if !self.flush()? || src.is_empty() {
                return Ok(taken);
            }
            let n = src.write_once(&mut self.session.writer())?;
            if n == 0 && !self.session.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            src.advance(n);
            taken += n;
        }
    }

    /// Sends `close_notify` (best effort: the socket closes next).
    pub(crate) fn close_notify(&mut self) {
        self.session.send_close_notify();
        let _ = self.flush();
    }
}

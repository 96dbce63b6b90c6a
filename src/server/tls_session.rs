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

/// A TLS session over a non-blocking socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    pub(crate) stream: TcpStream,
    session: Connection,
}

impl TlsStream {
    pub(crate) fn new(stream: TcpStream, session: Connection) -> Self {
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
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.session.reader().read(&mut buf[filled..]) {
                Ok(0) if filled < buf.len() => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: an end like any other for the reactor.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            match self.session.read_tls(&mut self.stream) {
                Ok(0) => {
                    // End of the socket: whatever was decrypted is returned, then `Ok(0)`.
                    self.process()?;
                    if filled > 0 {
                        return Ok(filled);
                    }
                    continue;
                }
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush()?;
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
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
    /// block. Returns the plaintext bytes taken. At most the session's buffer limit (64 KiB of
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

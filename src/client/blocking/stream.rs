//! The byte stream under a blocking client: a TCP socket, or (feature `tls`) a TLS session over one.
//!
//! Owns: [`Stream`] (read with the socket's timeout, read without waiting, write everything, shut
//! down) and the TLS handshake. Any connected `TcpStream` can be wrapped, so a socket that came through
//! a proxy tunnel gets TLS on top the same way. Never touches: WebSocket frames.
//!
//! With TLS, reading and writing share one session behind a mutex held only while bytes are decrypted
//! or encrypted, never while the socket blocks: the reader waits on the socket alone, then feeds what
//! arrived. Records are written in the order they were encrypted because every write happens under
//! the link's writer mutex.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

#[cfg(feature = "tls")]
use std::sync::Mutex;

#[cfg(feature = "tls")]
use super::super::error::{Error, Operation};

/// A connected client stream.
#[derive(Debug)]
pub(super) struct Stream {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Mutex<rustls::ClientConnection>>,
}

/// How much ciphertext one socket read takes (one full TLS record and its overhead).
#[cfg(feature = "tls")]
const CIPHER_READ: usize = 16 * 1024 + 512;
/// How much plaintext is encrypted under the session lock before the records are written.
#[cfg(feature = "tls")]
const PLAIN_CHUNK: usize = 256 * 1024;

impl Stream {
    /// A plain TCP stream.
    pub(super) fn plain(tcp: TcpStream) -> Self {
        Self {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Runs the TLS handshake over `tcp` for `host` (verified against the certificate), within
    /// `timeout`.
    #[cfg(feature = "tls")]
    pub(super) fn tls(
        mut tcp: TcpStream,
        host: &str,
        tls: &super::super::tls::ClientTls,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| Error::Tls { failure: super::super::TlsFailure::WrongHostName, detail: e.to_string() })?;
        let mut session = rustls::ClientConnection::new(tls.rustls().clone(), name).map_err(tls_error)?;
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        tcp.set_read_timeout(timeout)?;
        tcp.set_write_timeout(timeout)?;
        while session.is_handshaking() || session.wants_write() {
            match session.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) => return Err(tls_io_error(e, Operation::TlsHandshake)),
            }
        }
        Ok(Self { tcp, tls: Some(Mutex::new(session)) })
    }

    /// Whether the handshake resumed an earlier session (`None` on plain TCP).
    #[cfg(feature = "tls")]
    pub(super) fn resumed(&self) -> Option<bool> {
        let tls = self.tls.as_ref()?;
        let kind = super::link::lock(tls).handshake_kind();
        Some(kind == Some(rustls::HandshakeKind::Resumed))
    }

    /// The socket, for timeouts, addresses and blocking mode.
    pub(super) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(super) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(t)
    }

    pub(super) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(t)
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Reads what is there, waiting as the socket's read timeout allows (`Ok(0)`: the peer closed).
    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, |tcp, b| (&*tcp).read(b))
    }

    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    pub(super) fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, crate::sys::recv_now)
    }

    fn read_with(
        &self,
        buf: &mut [u8],
        read_socket: impl Fn(&TcpStream, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return read_tls(&self.tcp, tls, buf, read_socket);
        }
        read_socket(&self.tcp, buf)
    }

    /// Writes all of `bytes` (the caller holds the link's writer mutex).
    pub(super) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let mut records = Vec::new();
            let mut rest = bytes;
            loop {
                {
                    let mut session = super::link::lock(tls);
                    let chunk = rest.len().min(PLAIN_CHUNK);
                    let mut taken = 0;
                    while taken < chunk {
                        let n = session.writer().write(&rest[taken..chunk])?;
                        taken += n;
                        // Drain the records (and any the reader left, e.g. a key update), in order.
                        session.write_tls(&mut records)?;
                        if n == 0 && !session.wants_write() {
                            return Err(io::ErrorKind::WriteZero.into());
                        }
                    }
                    while session.wants_write() {
                        session.write_tls(&mut records)?;
                    }
                    rest = &rest[chunk..];
                }
                (&self.tcp).write_all(&records)?;
                records.clear();
                if rest.is_empty() {
                    return Ok(());
                }
            }
        }
        (&self.tcp).write_all(bytes)
    }
}

/// Plaintext the session already holds, else one socket read fed to the session.
#[cfg(feature = "tls")]
fn read_tls(
    tcp: &TcpStream,
    tls: &Mutex<rustls::ClientConnection>,
    buf: &mut [u8],
    read_socket: impl Fn(&TcpStream, &mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut cipher = [0u8; CIPHER_READ];
    loop {
        {
            let mut session = super::link::lock(tls);
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let n = read_socket(tcp, &mut cipher)?;
        let mut session = super::link::lock(tls);
        let mut arrived = &cipher[..n];
        loop {
            session.read_tls(&mut arrived)?;
            session.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if arrived.is_empty() {
                break;
            }
        }
    }
}

/// A rustls error as the client's typed error.
#[cfg(feature = "tls")]
pub(super) fn tls_error(e: rustls::Error) -> Error {
    Error::Tls { failure: super::super::tls::classify(&e), detail: e.to_string() }
}

/// An I/O error from a TLS session: the rustls error inside it, a timeout of `op`, or I/O.
#[cfg(feature = "tls")]
pub(super) fn tls_io_error(e: io::Error, op: Operation) -> Error {
    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        return Error::Timeout(op);
    }
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        let inner = e.into_inner().and_then(|b| b.downcast::<rustls::Error>().ok());
        if let Some(inner) = inner {
            return tls_error(*inner);
        }
        return Error::Io(io::Error::other("TLS failure"));
    }
    Error::Io(e)
}

//! One reactor connection's TLS session (feature `tls`; the server side of an accepted connection, or
//! the client side of an in-loop client): records in from the socket, plaintext out to the
//! reactor's buffer; plaintext in from the write path, records out; driven by the same readiness events
//! as plain TCP, on the reactor thread.
//!
//! The session is rustls' *unbuffered* one (`UnbufferedServerConnection` / `UnbufferedClientConnection`):
//! it owns no byte buffer of its own. Ciphertext is read into, and records are encrypted into, buffers
//! of the reactor thread (one each per thread, never one per connection); a connection holds bytes of
//! its own only while some are in flight, each in a buffer of just their size, freed once empty: the
//! ciphertext of a record that arrived in part, records the socket did not take, plaintext decrypted
//! beyond what the caller's buffer held, and (a client) plaintext offered before the handshake ended.
//! An idle connection holds none of them.
//!
//! Owns: the rustls session and its socket, the handshake (advanced by reads, its flights written at
//! once or when the socket is writable again), what a failure is counted as. Never touches: WebSocket
//! frames, the reactor's buffers.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::ops::DerefMut;

use mio::net::TcpStream;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus, WriteTraffic,
};

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

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// The most plaintext encrypted ahead of the socket in one go (records the socket does not take wait
/// in the connection while it is blocked; the rest of what the write path offers stays in the
/// connection's queue). Above 64 KiB, so that a 64 KiB message and its header become one run of
/// records and one `write`.
const RECORDS_AHEAD: usize = 128 * 1024;

/// The most ciphertext one `recv` takes (the reactor's scratch buffer is at least this large).
const CIPHER_READ: usize = 256 * 1024;

/// The least ciphertext one `recv` asks for, however little room the caller's buffer has left: a whole
/// record (16 KiB of plaintext and its overhead) fits. Plaintext beyond the caller's room waits in the
/// connection.
const MIN_READ: usize = 17 * 1024;

/// The largest plaintext of one record.
const RECORD: usize = 16 * 1024;

/// What one record adds to its plaintext, at most, with every cipher suite rustls offers (TLS 1.2
/// AES-GCM: 29 bytes; TLS 1.3: 22), rounded up.
const RECORD_OVERHEAD: usize = 64;

/// Room for the records of [`RECORDS_AHEAD`] bytes of plaintext, cut into records at every one of up
/// to 64 iovec boundaries as well as every 16 KiB.
const CIPHER_OUT: usize = RECORDS_AHEAD + (RECORDS_AHEAD / RECORD + 64) * RECORD_OVERHEAD;

thread_local! {
    /// Ciphertext just read (after the kept part of a record), before the session decrypts it: one
    /// buffer per reactor thread (grown on first use), never one per connection.
    static CIPHER_IN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Records just encrypted, before the socket takes them, and small plaintext pieces gathered into
    /// one record: one pair per reactor thread.
    static SEAL: RefCell<Seal> = const { RefCell::new(Seal { out: Vec::new(), stage: Vec::new() }) };
}

/// The reactor thread's write buffers.
struct Seal {
    /// Encrypted records ([`CIPHER_OUT`] bytes once used).
    out: Vec<u8>,
    /// Plaintext pieces smaller than a record, gathered (at most [`RECORD`] bytes).
    stage: Vec<u8>,
}

/// The two sides' unbuffered sessions behind one interface.
trait Session: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> {
    type Data;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Session for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

impl Session for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

/// A server or client session.
enum Sessions {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// What a connection holds between events: only bytes in flight, each `Vec` empty (unallocated) when
/// there are none.
#[derive(Default)]
struct Held {
    /// Ciphertext of a record (or a handshake message) that arrived in part, front-aligned as the
    /// session last saw it.
    incoming: Vec<u8>,
    /// Records the socket has not taken, from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// Plaintext decrypted beyond the caller's buffer, from `plain_pos` on.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Plaintext offered before the session could encrypt (a client before its handshake ended).
    early: Vec<u8>,
    /// The peer sent `close_notify`: reads end once `plain` is delivered.
    peer_closed: bool,
    /// The session failed: it is never asked anything again (its parse state would not match the
    /// bytes kept, which were dropped), only its held records may still go out.
    failed: bool,
}

impl Held {
    /// Moves held plaintext into `buf`; returns how much.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let left = &self.plain[self.plain_pos..];
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        n
    }

    fn wants_write(&self) -> bool {
        self.out_sent < self.out.len()
    }

    /// Writes held records until none are left (`Ok(true)`) or the socket would block (`Ok(false)`);
    /// the buffer is freed once empty.
    fn flush(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        while self.out_sent < self.out.len() {
            match stream.write(&self.out[self.out_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out = Vec::new();
        self.out_sent = 0;
        Ok(true)
    }

    /// Appends what `encode` writes (a handshake record, an alert) to the held records, growing the
    /// buffer to the size the session asks for.
    fn encode(&mut self, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
        let start = self.out.len();
        let mut want = 512;
        loop {
            self.out.resize(start + want, 0);
            match encode(&mut self.out[start..]) {
                Ok(n) => {
                    self.out.truncate(start + n);
                    return;
                }
                Err(EncodeError::InsufficientSize(e)) => want = e.required_size,
                Err(_) => {
                    self.out.truncate(start);
                    return;
                }
            }
        }
    }
}

/// Where decrypted plaintext goes: the caller's buffer, then the connection's held plaintext.
struct Sink<'b> {
    buf: &'b mut [u8],
    filled: usize,
}

impl Sink<'_> {
    fn deliver(&mut self, payload: &[u8], held: &mut Held) {
        let n = payload.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&payload[..n]);
        self.filled += n;
        if n < payload.len() {
            held.plain.extend_from_slice(&payload[n..]);
        }
    }
}

/// Where a session rests after [`pump`]: what it needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// Application data may be encrypted; more records may be read.
    Write,
    /// The handshake needs more records from the peer.
    Blocked,
    /// Both sides sent `close_notify`.
    Closed,
}

/// One state the session reached, handled: plaintext delivered, handshake records held for the
/// socket. Returns the resting state, if it is one, and the `WriteTraffic` handle when it is that.
enum Step<'c, D> {
    Again,
    Rest(Rest),
    Write(WriteTraffic<'c, D>),
}

fn handle<'c, D>(
    state: ConnectionState<'c, '_, D>,
    held: &mut Held,
    sink: &mut Option<&mut Sink<'_>>,
) -> Result<Step<'c, D>, rustls::Error> {
    Ok(match state {
        ConnectionState::ReadTraffic(mut read) => {
            while let Some(record) = read.next_record() {
                let record = record?;
                match sink {
                    Some(sink) => sink.deliver(record.payload, held),
                    None => held.plain.extend_from_slice(record.payload),
                }
            }
            Step::Again
        }
        // Early data is never enabled (`max_early_data_size` stays 0), so this cannot come; were it to,
        // failing the connection beats looping on data that is never taken.
        ConnectionState::ReadEarlyData(_) => return Err(rustls::Error::General("unexpected early data".into())),
        ConnectionState::EncodeTlsData(mut encode) => {
            held.encode(|out| encode.encode(out));
            Step::Again
        }
        // Held records go out with the connection's next flush (in order: all of them are in `out`).
        ConnectionState::TransmitTlsData(transmit) => {
            transmit.done();
            Step::Again
        }
        ConnectionState::PeerClosed => {
            held.peer_closed = true;
            Step::Again
        }
        ConnectionState::BlockedHandshake => Step::Rest(Rest::Blocked),
        ConnectionState::WriteTraffic(write) => Step::Write(write),
        ConnectionState::Closed => Step::Rest(Rest::Closed),
        _ => Step::Rest(Rest::Blocked),
    })
}

/// Runs the session over `tls` until it rests; returns how many bytes of `tls` it is done with (to
/// drop from the front before the next call: also on failure, with the error) and where it rests.
fn pump<S: Session>(
    session: &mut S,
    held: &mut Held,
    tls: &mut [u8],
    mut sink: Option<&mut Sink<'_>>,
) -> Result<(usize, Rest), (usize, rustls::Error)> {
    let mut done = 0;
    loop {
        let UnbufferedStatus { discard, state } = session.process(&mut tls[done..]);
        let step = state.and_then(|state| handle(state, held, &mut sink));
        done += discard;
        match step {
            Ok(Step::Again) => {}
            Ok(Step::Rest(rest)) => return Ok((done, rest)),
            Ok(Step::Write(_)) => return Ok((done, Rest::Write)),
            Err(error) => return Err((done, error)),
        }
    }
}

/// Calls `f` with the session's `WriteTraffic` once it is there (handling what comes before it: a
/// ticket to send, say); `None` while the session cannot encrypt yet (or any more). `tls` is the
/// ciphertext the session was last left with (a partial record, front-aligned); returns how much of
/// it to drop from the front, too.
fn with_write<S: Session, R>(
    session: &mut S,
    held: &mut Held,
    tls: &mut [u8],
    f: impl FnOnce(&mut WriteTraffic<'_, S::Data>, &mut Held) -> R,
) -> Result<(usize, Option<R>), rustls::Error> {
    let mut done = 0;
    loop {
        let UnbufferedStatus { discard, state } = session.process(&mut tls[done..]);
        done += discard;
        match handle(state?, held, &mut None)? {
            Step::Again => {}
            Step::Rest(_) => return Ok((done, None)),
            Step::Write(mut write) => return Ok((done, Some(f(&mut write, held)))),
        }
    }
}

/// [`with_write`] with the connection's kept ciphertext.
fn with_write_held<S: Session, R>(
    session: &mut S,
    held: &mut Held,
    f: impl FnOnce(&mut WriteTraffic<'_, S::Data>, &mut Held) -> R,
) -> Result<Option<R>, rustls::Error> {
    if held.failed {
        return Err(rustls::Error::General("the TLS session failed".into()));
    }
    let mut incoming = std::mem::take(&mut held.incoming);
    let result = with_write(session, held, &mut incoming, f);
    match &result {
        Ok((done, _)) => drop(incoming.drain(..*done)),
        Err(_) => held.failed = true,
    }
    if !incoming.is_empty() {
        held.incoming = incoming;
    }
    result.map(|(_, r)| r)
}

/// Encrypts plaintext as records into the thread's write buffer, gathering pieces smaller than a
/// record into one (so a cork of many small frames, or a queue of them, becomes few records).
struct Sealer<'w, 'c, D> {
    write: &'w mut WriteTraffic<'c, D>,
    seal: &'w mut Seal,
    /// Bytes of `seal.out` used.
    used: usize,
    /// Plaintext still to be taken in this go.
    budget: usize,
    failed: Option<EncryptError>,
}

impl<D> Sealer<'_, '_, D> {
    /// Encrypts `data` (not staged) after what is there; false if it does not fit.
    fn encrypt(&mut self, data: &[u8]) -> bool {
        let out = &mut self.seal.out[self.used..];
        match self.write.encrypt(data, out) {
            Ok(n) => {
                self.used += n;
                true
            }
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    /// Encrypts the staged pieces as one record.
    fn seal_stage(&mut self) {
        if self.seal.stage.is_empty() {
            return;
        }
        let stage = std::mem::take(&mut self.seal.stage);
        self.encrypt(&stage);
        self.seal.stage = stage;
        self.seal.stage.clear();
    }

    /// Takes what fits of `data` (pieces under a record are staged; whole records are encrypted from
    /// `data` itself); returns how much. Stops at the budget or a failure.
    fn take(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        while taken < data.len() && self.budget > 0 && self.failed.is_none() {
            let rest = &data[taken..];
            let n = if self.seal.stage.is_empty() && rest.len() >= RECORD {
                let n = rest.len().min(self.budget);
                if !self.encrypt(&rest[..n]) {
                    break;
                }
                n
            } else {
                let n = rest.len().min(RECORD - self.seal.stage.len()).min(self.budget);
                self.seal.stage.extend_from_slice(&rest[..n]);
                if self.seal.stage.len() == RECORD {
                    self.seal_stage();
                }
                n
            };
            taken += n;
            self.budget -= n;
        }
        taken
    }
}

impl<D> Write for Sealer<'_, '_, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what fits of `bufs`, in order. [`CIPHER_OUT`] has room for every record the budget can
    /// make (pieces are staged into at most 9 records, and at most 8 slices of a record or more are
    /// encrypted directly, each one record more than its whole records), so a failure is the session's
    /// (its key exhausted): an error, which closes the connection.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut taken = 0;
        for buf in bufs {
            let n = self.take(buf);
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        self.seal_stage();
        match self.failed.take() {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(taken),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS session over a non-blocking socket (the socket is the connection's: each call is given it).
pub(crate) struct TlsStream {
    session: Sessions,
    held: Held,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.session {
            Sessions::Server(_) => "server",
            Sessions::Client(_) => "client",
        };
        f.debug_struct("TlsStream").field("side", &side).finish_non_exhaustive()
    }
}

/// Runs `$body` with `$s` bound to the session of either side (the code is generic over [`Session`]).
macro_rules! either {
    ($self:ident, $s:ident => $body:expr) => {
        match &mut $self.session {
            Sessions::Server($s) => $body,
            Sessions::Client($s) => $body,
        }
    };
}

impl TlsStream {
    /// An accepted connection's server session.
    pub(crate) fn server(session: UnbufferedServerConnection) -> Self {
        Self { session: Sessions::Server(session), held: Held::default() }
    }

    /// An in-loop client's session: its ClientHello is held, ready for the socket's first writable event.
    pub(crate) fn client(session: UnbufferedClientConnection) -> io::Result<Self> {
        let mut tls = Self { session: Sessions::Client(session), held: Held::default() };
        if let Sessions::Client(session) = &mut tls.session {
            pump(session, &mut tls.held, &mut [], None)
                .map_err(|(_, error)| TlsFailure { error, during_handshake: true }.into_io())?;
        }
        Ok(tls)
    }

    /// Records written by the session that the socket has not taken yet.
    pub(crate) fn wants_write(&self) -> bool {
        self.held.wants_write()
    }

    /// Writes pending records until none are left (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub(crate) fn flush(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        self.held.flush(stream)
    }

    /// Reads plaintext into `buf` until it is full or the socket would block, so that a short read still
    /// means the socket is drained (the reactor relies on that with edge-triggered readiness). `Ok(0)`:
    /// the peer closed (with or without `close_notify`). Handshake flights are written as they arise.
    ///
    /// Ciphertext is read with one `recv` of up to the room left in `buf` (at least a record, at most
    /// [`CIPHER_READ`]) into this thread's ciphertext buffer, after the kept part of a record, and
    /// decrypted there; what is left of a partial record is kept in a buffer of its size, plaintext
    /// beyond `buf` likewise.
    pub(crate) fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let Self { session, held } = self;
        match session {
            Sessions::Server(s) => read_into(s, held, stream, buf),
            Sessions::Client(s) => read_into(s, held, stream, buf),
        }
    }

    /// Encrypts what `src` offers and writes the records until `src` is empty or the socket would
    /// block. Returns the plaintext bytes taken. At most [`RECORDS_AHEAD`] of plaintext (as
    /// records) stays in the connection while the socket is blocked; the rest stays in `src`.
    pub(crate) fn write_until_blocked(&mut self, stream: &mut TcpStream, src: &mut impl Outgoing) -> io::Result<usize> {
        let Self { session, held } = self;
        match session {
            Sessions::Server(s) => write_into(s, held, stream, src),
            Sessions::Client(s) => write_into(s, held, stream, src),
        }
    }

    /// Sends `close_notify` (best effort: the socket closes next).
    pub(crate) fn close_notify(&mut self, stream: &mut TcpStream) {
        let held = &mut self.held;
        let _ = either!(self, s => with_write_held(s, held, |write, held| {
            held.encode(|out| write.queue_close_notify(out).map_err(|_| EncodeError::AlreadyEncoded));
        }));
        let _ = self.flush(stream);
    }

    /// Bytes this connection holds in buffers of its own (none while idle): for tests.
    #[cfg(test)]
    fn held_capacity(&self) -> usize {
        let h = &self.held;
        h.incoming.capacity() + h.out.capacity() + h.plain.capacity() + h.early.capacity()
    }
}

/// After a failure, sends the alert the session queued (best effort) and wraps the error. `tls`: the
/// ciphertext of the failed call, less what it was done with.
fn fail<S: Session>(
    session: &mut S,
    held: &mut Held,
    stream: &mut TcpStream,
    tls: &mut [u8],
    error: rustls::Error,
    during_handshake: bool,
) -> io::Error {
    held.failed = true;
    // The session checks for plaintext and for records to send before it reads `tls` again, so the
    // queued alert comes out without the failed bytes being parsed a second time (which rustls does
    // not expect: it asserts a fatal alert is sent once). Plaintext decrypted before the failure is
    // dropped.
    let mut done = 0;
    for _ in 0..4 {
        let UnbufferedStatus { discard, state } = session.process(&mut tls[done..]);
        done += discard;
        match state {
            Ok(ConnectionState::ReadTraffic(mut read)) => while let Some(Ok(_)) = read.next_record() {},
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                held.encode(|out| encode.encode(out));
                break;
            }
            _ => break,
        }
    }
    let _ = held.flush(stream);
    TlsFailure { error, during_handshake }.into_io()
}

/// Encrypts plaintext a client offered before its handshake ended, now that it can (`tls`: the kept
/// ciphertext, as for [`with_write`], whose count of bytes done it returns).
fn seal_early<S: Session>(session: &mut S, held: &mut Held, tls: &mut [u8]) -> Result<usize, rustls::Error> {
    if held.early.is_empty() {
        return Ok(0);
    }
    let early = std::mem::take(&mut held.early);
    let (done, sealed) = with_write(session, held, tls, |write, held| {
        let start = held.out.len();
        let mut want = early.len() + (early.len() / RECORD + 1) * RECORD_OVERHEAD;
        loop {
            held.out.resize(start + want, 0);
            match write.encrypt(&early, &mut held.out[start..]) {
                Ok(n) => {
                    held.out.truncate(start + n);
                    return Ok(());
                }
                Err(EncryptError::InsufficientSize(e)) => want = e.required_size,
                Err(EncryptError::EncryptExhausted) => {
                    held.out.truncate(start);
                    return Err(rustls::Error::EncryptError);
                }
            }
        }
    })?;
    match sealed {
        Some(result) => result?,
        None => held.early = early,
    }
    Ok(done)
}

fn read_into<S: Session>(
    session: &mut S,
    held: &mut Held,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    if held.failed {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the TLS session failed"));
    }
    let mut sink = Sink { filled: 0, buf };
    sink.filled = held.take_plain(sink.buf);
    if sink.filled == sink.buf.len() || held.peer_closed {
        return Ok(sink.filled);
    }
    CIPHER_IN.with(|cipher| {
        let mut cipher = cipher.borrow_mut();
        let mut kept = held.incoming.len();
        if cipher.len() < kept + MIN_READ {
            cipher.resize((kept + MIN_READ).max(CIPHER_READ), 0);
        }
        cipher[..kept].copy_from_slice(&held.incoming);
        held.incoming = Vec::new();
        // `Some(n)`: return n; `None`: the socket is drained.
        let result: io::Result<Option<usize>> = loop {
            let want = (sink.buf.len() - sink.filled).clamp(MIN_READ, CIPHER_READ);
            if cipher.len() < kept + want {
                cipher.resize(kept + want, 0);
            }
            let n = match stream.read(&mut cipher[kept..kept + want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(None),
                Err(e) => break Err(e),
            };
            let total = kept + n;
            let during_handshake = session.is_handshaking();
            match pump(session, held, &mut cipher[..total], Some(&mut sink)) {
                Ok((done, rest)) => {
                    cipher.copy_within(done..total, 0);
                    kept = total - done;
                    if rest == Rest::Write {
                        match seal_early(session, held, &mut cipher[..kept]) {
                            Ok(done) => {
                                cipher.copy_within(done..kept, 0);
                                kept -= done;
                            }
                            Err(error) => {
                                held.failed = true;
                                break Err(TlsFailure { error, during_handshake }.into_io());
                            }
                        }
                    }
                }
                Err((done, error)) => {
                    break Err(fail(session, held, stream, &mut cipher[done..total], error, during_handshake))
                }
            }
            if held.peer_closed || n == 0 || sink.filled == sink.buf.len() {
                break Ok(Some(sink.filled));
            }
            if n < want {
                break Ok(None);
            }
        };
        // Kept whatever happened to the socket (the session's parse state refers to these bytes), unless
        // the session itself failed.
        if kept > 0 && !held.failed {
            held.incoming = cipher[..kept].to_vec();
        }
        let result = result?;
        held.flush(stream)?;
        match result {
            Some(n) => Ok(n),
            None if sink.filled > 0 => Ok(sink.filled),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    })
}

fn write_into<S: Session>(
    session: &mut S,
    held: &mut Held,
    stream: &mut TcpStream,
    src: &mut impl Outgoing,
) -> io::Result<usize> {
    let mut taken = 0;
    loop {
        if !held.flush(stream)? || src.is_empty() {
            return Ok(taken);
        }
        let sealed = SEAL.with(|seal| {
            let mut seal = seal.borrow_mut();
            if seal.out.len() < CIPHER_OUT {
                seal.out.resize(CIPHER_OUT, 0);
                seal.stage.reserve(RECORD);
            }
            let seal = &mut *seal;
            let during_handshake = session.is_handshaking();
            let result = with_write_held(session, held, |write, _| {
                let mut sealer = Sealer { write, seal, used: 0, budget: RECORDS_AHEAD, failed: None };
                let n = src.write_once(&mut sealer);
                (n, sealer.used)
            });
            let (n, used) = match result {
                Ok(Some((n, used))) => (n?, used),
                Ok(None) => return Ok(None),
                Err(error) => return Err(TlsFailure { error, during_handshake }.into_io()),
            };
            // The records go to the socket from the thread's buffer; what it does not take is held.
            let mut sent = 0;
            while sent < used {
                match stream.write(&seal.out[sent..used]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(k) => sent += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if sent < used {
                held.out.extend_from_slice(&seal.out[sent..used]);
            }
            Ok(Some(n))
        })?;
        match sealed {
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(n) => {
                src.advance(n);
                taken += n;
            }
            None => {
                // Not able to encrypt yet (a client mid-handshake): hold the plaintext until it can, up
                // to the same bound as records.
                let room = RECORDS_AHEAD.saturating_sub(held.early.len());
                if room == 0 {
                    return Ok(taken);
                }
                let mut early = std::mem::take(&mut held.early);
                let n = src.write_once(&mut Limited { out: &mut early, room })?;
                held.early = early;
                src.advance(n);
                taken += n;
                return Ok(taken);
            }
        }
    }
}

/// A `Write` into a `Vec` that takes at most `room` bytes.
struct Limited<'v> {
    out: &'v mut Vec<u8>,
    room: usize,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.room);
        self.out.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A connected pair of sockets: the server end non-blocking (mio), the client end blocking (std).
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (TcpStream::from_std(server), client)
    }

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let provider = super::super::tls::provider();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Reads on the server side until `want` plaintext bytes arrived (polling: the socket is
    /// non-blocking).
    fn read_all(tls: &mut TlsStream, stream: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 300];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < want {
            assert!(std::time::Instant::now() < deadline, "got {} of {want}", got.len());
            match tls.read(stream, &mut buf) {
                Ok(0) => panic!("closed after {}", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    /// A blocking rustls client against the unbuffered server session: the handshake, plaintext both
    /// ways (reads into a buffer smaller than a record, so plaintext waits in the connection), and an
    /// idle session that holds no buffer afterwards.
    #[test]
    fn an_unbuffered_server_session_echoes_and_holds_nothing_when_idle() {
        let (server_config, client_config) = configs();
        let (mut stream, client) = pair();
        let mut tls = TlsStream::server(UnbufferedServerConnection::new(server_config).unwrap());
        let peer = std::thread::spawn(move || {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(client_config, name).unwrap();
            let mut client = rustls::StreamOwned::new(conn, client);
            let message: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            client.write_all(&message).unwrap();
            client.flush().unwrap();
            let mut back = vec![0u8; 5];
            client.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"hello");
            // Keep the socket open until the server side is done.
            let mut rest = [0u8; 1];
            let _ = client.read(&mut rest);
        });
        let got = read_all(&mut tls, &mut stream, 100_000);
        assert_eq!(got, (0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let mut src = super::super::transport::Slices::new(b"hel", b"lo");
        assert_eq!(tls.write_until_blocked(&mut stream, &mut src).unwrap(), 5);
        assert!(!tls.wants_write());
        assert_eq!(tls.held_capacity(), 0, "an idle session holds no buffer");
        tls.close_notify(&mut stream);
        drop(tls);
        peer.join().unwrap();
    }

    /// Garbage instead of a ClientHello is a handshake failure of the protocol kind (in a debug build,
    /// rustls asserts that its alert is produced once: the failed bytes are not parsed again).
    #[test]
    fn garbage_is_a_handshake_failure() {
        let (server_config, _) = configs();
        let (mut stream, mut client) = pair();
        let mut tls = TlsStream::server(UnbufferedServerConnection::new(server_config).unwrap());
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let err = loop {
            match tls.read(&mut stream, &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => break other.unwrap_err(),
            }
        };
        let failure = TlsFailure::of(&err).expect("a TLS failure");
        assert!(failure.during_handshake);
        assert_eq!(failure.reason(), HandshakeFailure::TlsProtocol);
        // A failed session is not asked again: closing it and reading it are safe no-ops and errors.
        tls.close_notify(&mut stream);
        assert!(tls.read(&mut stream, &mut buf).is_err());
    }
}

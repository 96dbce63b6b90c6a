//! The shared connection: the protocol state, the queue of encoded frames and the socket, behind two
//! mutexes (state, writer) so that reading never waits behind writing.
//!
//! Owns: encoding under the state lock, writing under the writer lock, teardown. Never touches: reading.

use std::io::ErrorKind;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::metrics::{MessageKind, MetricsCollector};
use crate::proto::{CloseCode, Connection, SendError};

use super::super::error::{Error, Operation};
use super::options::CloseInfo;

/// Writer buffers above this capacity are released after use (after a large message).
pub(super) const KEEP_BUFFER: usize = 1 << 20;
/// The read buffer grows in steps of at least this much.
pub(super) const MIN_READ: usize = 64 * 1024;
/// The callback reader wakes at least this often to notice a close started by another thread.
pub(super) const READER_WAKE: Duration = Duration::from_millis(250);
/// The write timeout used for the close frame sent when a client is dropped.
pub(super) const DROP_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) conn: Connection,
    /// Encoded frames not yet handed to the writer, in encoding order.
    pub(super) pending: Vec<u8>,
    /// Our close frame's code and reason, once sent.
    pub(super) local_close: Option<CloseInfo>,
    /// Set once nothing more can be received: the peer's close frame, our failure, or the end of TCP.
    pub(super) closed: Option<CloseInfo>,
    /// The socket was shut down (by us) or reached EOF.
    pub(super) tcp_done: bool,
    /// The callback reader thread finished.
    pub(super) reader_done: bool,
    /// Why the callback reader thread finished, when it was an error.
    pub(super) reader_error: Option<Error>,
}

impl LinkState {
    pub(super) fn closed_error(&self) -> Error {
        self.closed
            .as_ref()
            .or(self.local_close.as_ref())
            .map_or_else(|| CloseInfo::abnormal("").to_error(), CloseInfo::to_error)
    }
}

#[derive(Debug)]
pub(super) struct Link {
    pub(super) stream: super::stream::Stream,
    pub(super) state: Mutex<LinkState>,
    /// Held while writing; the buffer being written.
    pub(super) writer: Mutex<Vec<u8>>,
    /// Signalled when the callback reader thread finishes.
    pub(super) finished: Condvar,
    pub(super) close_timeout: Duration,
    pub(super) metrics: Option<Arc<MetricsCollector>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            let code = st
                .closed
                .as_ref()
                .and_then(|c| c.code)
                .or_else(|| st.local_close.as_ref().and_then(|c| c.code))
                .unwrap_or(CloseCode::ABNORMAL);
            metrics.record_connection_closed(code.0);
        }
    }
}

impl Link {
    pub(super) fn state(&self) -> MutexGuard<'_, LinkState> {
        lock(&self.state)
    }

    /// [`Link::send`] for a data message, counted in the metrics once sent.
    pub(super) fn send_message(
        &self,
        kind: MessageKind,
        len: usize,
        encode: impl FnOnce(&mut LinkState) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        self.send(encode)?;
        if let Some(metrics) = &self.metrics {
            metrics.record_message_sent(kind, len);
        }
        Ok(())
    }

    /// Encodes frames with `encode` (into `state.pending`) and writes everything queued.
    pub(super) fn send(&self, encode: impl FnOnce(&mut LinkState) -> Result<(), SendError>) -> Result<(), Error> {
        let mut out = lock(&self.writer);
        {
            let mut st = self.state();
            if st.tcp_done {
                return Err(st.closed_error());
            }
            let mark = st.pending.len();
            if let Err(e) = encode(&mut st) {
                st.pending.truncate(mark);
                return Err(match e {
                    SendError::Closed => st.closed_error(),
                    other => Error::Send(other),
                });
            }
            out.clear();
            std::mem::swap(&mut *out, &mut st.pending);
        }
        let written = self.write_out(&mut out);
        drop(out);
        written?;
        self.flush_pending()
    }

    /// Writes `out` (the writer mutex is held); a failure closes the connection.
    pub(super) fn write_out(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let result = self.stream.write_all(out);
        out.clear();
        if out.capacity() > KEEP_BUFFER {
            *out = Vec::new();
        }
        result.map_err(|e| {
            let err = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                Error::Timeout(Operation::Write)
            } else {
                Error::Io(e)
            };
            self.teardown(&mut self.state(), "write failed");
            err
        })
    }

    /// Writes queued frames unless a writer is busy (it writes them after its own write: every writer
    /// calls this after releasing the writer mutex, so nothing is left behind).
    pub(super) fn flush_pending(&self) -> Result<(), Error> {
        loop {
            if self.state().pending.is_empty() {
                return Ok(());
            }
            let mut out = match self.writer.try_lock() {
                Ok(out) => out,
                Err(TryLockError::WouldBlock) => return Ok(()),
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            {
                let mut st = self.state();
                if st.tcp_done {
                    st.pending.clear();
                    return Ok(());
                }
                out.clear();
                std::mem::swap(&mut *out, &mut st.pending);
            }
            self.write_out(&mut out)?;
        }
    }

    /// Writes queued frames now, waiting for a busy writer (used before shutting the socket).
    pub(super) fn flush_pending_blocking(&self) -> Result<(), Error> {
        let mut out = lock(&self.writer);
        {
            let mut st = self.state();
            if st.tcp_done || st.pending.is_empty() {
                return Ok(());
            }
            out.clear();
            std::mem::swap(&mut *out, &mut st.pending);
        }
        self.write_out(&mut out)
    }

    /// Shuts the socket down both ways; records an abnormal close unless the end is already known.
    pub(super) fn teardown(&self, st: &mut LinkState, reason: &str) {
        if st.closed.is_none() {
            st.closed = Some(CloseInfo::abnormal(reason));
        }
        if !st.tcp_done {
            st.tcp_done = true;
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    pub(super) fn is_open(&self) -> bool {
        let st = self.state();
        !st.tcp_done && st.closed.is_none() && st.conn.can_send()
    }

    pub(super) fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.send(|st| {
            st.conn.close(Instant::now(), code, reason, &mut st.pending)?;
            st.local_close = Some(CloseInfo { code: Some(code), reason: reason.to_owned() });
            Ok(())
        })
    }

    /// Best effort, for `Drop`: a 1001 close frame if still open, then the socket is shut down.
    pub(super) fn abandon(&self) {
        let mut st = self.state();
        if st.tcp_done {
            return;
        }
        if st.conn.can_send() {
            let s = &mut *st;
            let _ = s.conn.close(Instant::now(), CloseCode::GOING_AWAY, "client dropped", &mut s.pending);
        }
        drop(st);
        let _ = self.stream.set_write_timeout(Some(DROP_WRITE_TIMEOUT));
        let _ = self.flush_pending_blocking();
        self.teardown(&mut self.state(), "client dropped");
    }
}

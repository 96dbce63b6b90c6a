//! The reading side: the receive buffer, parsing with the protocol core, waiting on the socket until
//! the next deadline (the caller's, or the core's keepalive, pong and close deadlines), and the client's
//! part of the close (waiting for the server to close TCP first).
//!
//! Owns: [`Reader`] and its buffer. Never touches: connecting, the handshake.

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::metrics::MessageKind;
use crate::proto::{CloseState, Event, ProtocolError, Timeout};

use super::super::error::{Error, Operation};
use super::link::{Link, KEEP_BUFFER, MIN_READ};
use super::options::{CloseInfo, Message};

/// Received bytes not yet parsed: `data[start..end]`, with room to read into after `end`.
#[derive(Debug, Default)]
pub(super) struct ReadBuf {
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl ReadBuf {
    pub(super) fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > KEEP_BUFFER {
                self.data = Vec::new();
            }
        }
    }

    /// Room to read into, compacting or growing so that there is at least `MIN_READ`.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        if self.data.len() - self.end < MIN_READ {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < MIN_READ {
                let len = (self.data.len() * 2).max(self.end + MIN_READ);
                self.data.resize(len, 0);
            }
        }
        &mut self.data[self.end..]
    }

    pub(super) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.spare();
        if self.data.len() - self.end < bytes.len() {
            self.data.resize(self.end + bytes.len(), 0);
        }
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }
}

/// What parsing the buffered bytes gave.
pub(super) enum Step {
    Message(Message),
    Control,
    Close(CloseInfo),
    NeedMore,
    Failed(ProtocolError),
}

/// The reading side: the receive buffer. Used by one thread at a time. Keepalive, the pong deadline and
/// the close-handshake timeout are the protocol core's ([`Connection::poll_timeout`]); the reader only
/// waits until the deadline the core gives and lets it act.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) buf: ReadBuf,
    /// The read timeout currently set on the socket.
    pub(super) socket_timeout: Option<Option<Duration>>,
}

impl Reader {
    pub(super) fn set_timeout(&mut self, link: &Link, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        if self.socket_timeout != Some(timeout) {
            link.stream.set_read_timeout(timeout)?;
            self.socket_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Parses one step from the buffered bytes.
    pub(super) fn parse(&mut self, link: &Link) -> Result<Step, Error> {
        let mut st = link.state();
        if let Some(closed) = &st.closed {
            return Err(closed.to_error());
        }
        let st = &mut *st;
        let (consumed, step) = match st.conn.read(self.buf.filled_mut(), &mut st.pending) {
            Ok((n, event)) => (
                n,
                match event {
                    None => Step::NeedMore,
                    Some(Event::Text(t)) => {
                        if let Some(metrics) = &link.metrics {
                            metrics.record_message_received(MessageKind::Text, t.len());
                        }
                        Step::Message(Message::Text(t.into_owned()))
                    }
                    Some(Event::Binary(b)) => {
                        if let Some(metrics) = &link.metrics {
                            metrics.record_message_received(MessageKind::Binary, b.len());
                        }
                        Step::Message(Message::Binary(b.into_owned()))
                    }
                    Some(Event::Ping(_) | Event::Pong(_)) => Step::Control,
                    Some(Event::Close(frame)) => {
                        let info = CloseInfo {
                            code: frame.map(|f| f.code),
                            reason: frame.map_or_else(String::new, |f| f.reason.to_owned()),
                        };
                        st.closed = Some(info.clone());
                        Step::Close(info)
                    }
                },
            ),
            Err(e) => {
                st.closed = Some(CloseInfo { code: Some(e.close_code()), reason: e.reason().to_owned() });
                (self.buf.end - self.buf.start, Step::Failed(e))
            }
        };
        self.buf.consume(consumed);
        Ok(step)
    }

    /// The next data message. Answers pings, consumes pongs, sends keepalive pings. Fails with
    /// `Timeout(Read)` at `deadline` (the connection stays usable), `Closed` when the peer's close
    /// frame arrives or the connection had ended, `Protocol` after failing the connection.
    /// `enforce_close_deadline` fails the read with `Timeout(Close)` when our close frame's answer is
    /// late (otherwise the caller's own deadline governs); `max_block` bounds each socket wait.
    pub(super) fn next_message(
        &mut self,
        link: &Link,
        deadline: Option<Instant>,
        enforce_close_deadline: bool,
        max_block: Option<Duration>,
    ) -> Result<Message, Error> {
        let mut attempted_read = false;
        loop {
            loop {
                let step = self.parse(link)?;
                match step {
                    Step::Message(m) => {
                        link.flush_pending()?;
                        return Ok(m);
                    }
                    Step::Control => link.flush_pending()?,
                    Step::NeedMore => break,
                    Step::Close(info) => {
                        link.flush_pending()?;
                        return Err(info.to_error());
                    }
                    Step::Failed(e) => {
                        self.fail(link, e);
                        return Err(Error::Protocol(e));
                    }
                }
            }
            let now = Instant::now();
            let mut wait = deadline.map(|d| d.saturating_duration_since(now));
            if attempted_read && deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout(Operation::Read));
            }
            if let Some(due) = self.timeouts(link, now, enforce_close_deadline)? {
                wait = min_wait(wait, due.saturating_duration_since(now));
            }
            if let Some(cap) = max_block {
                wait = min_wait(wait, cap);
            }
            attempted_read = true;
            let read = if wait == Some(Duration::ZERO) && cfg!(unix) {
                // Nothing left to wait for (a zero timeout, or the deadline is now): take what the socket
                // holds without blocking, instead of the 1 ms a socket read timeout needs at least.
                link.stream.recv_now(self.buf.spare())
            } else {
                self.set_timeout(link, wait)?;
                link.stream.read(self.buf.spare())
            };
            match read {
                Ok(0) => {
                    let mut st = link.state();
                    link.teardown(&mut st, "connection closed without a close frame");
                    return Err(st.closed_error());
                }
                Ok(n) => {
                    self.buf.filled(n);
                    link.state().conn.received_at(Instant::now());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    let mut st = link.state();
                    if st.tcp_done {
                        // Shut down by another thread (a drop or a failed write).
                        return Err(st.closed_error());
                    }
                    link.teardown(&mut st, "connection reset");
                    return Err(Error::Io(e));
                }
            }
        }
    }

    /// Lets the protocol core act on a deadline that passed (a keepalive ping, a pong timeout, our close
    /// frame unanswered) and returns its next deadline. The close-handshake deadlines are left alone
    /// unless `enforce_close` (a pull client's caller bounds that wait itself).
    pub(super) fn timeouts(
        &mut self,
        link: &Link,
        now: Instant,
        enforce_close: bool,
    ) -> Result<Option<Instant>, Error> {
        let fired = {
            let mut st = link.state();
            let s = &mut *st;
            if !enforce_close && s.conn.close_state() != CloseState::Open {
                return Ok(None);
            }
            let fired = s.conn.handle_timeout(now, &mut s.pending);
            if fired.is_none() || fired == Some(Timeout::Ping) {
                let next = s.conn.poll_timeout();
                drop(st);
                if fired.is_some() {
                    link.flush_pending()?;
                }
                return Ok(next);
            }
            fired
        };
        match fired {
            Some(Timeout::Pong) => {
                log::debug!("websocket client: no answer to a keepalive ping within the pong timeout");
                let _ = link.flush_pending_blocking();
                link.teardown(&mut link.state(), "pong timeout");
                Err(Error::Timeout(Operation::Pong))
            }
            Some(Timeout::Idle) => {
                link.flush_pending()?;
                Ok(link.state().conn.poll_timeout())
            }
            _ => {
                link.teardown(&mut link.state(), "close handshake timed out");
                Err(Error::Timeout(Operation::Close))
            }
        }
    }

    /// After a protocol error: send the close frame (queued by the protocol core), half-close, and
    /// let the server close TCP first (bounded by the close timeout), so that our close frame is not
    /// lost to a reset.
    pub(super) fn fail(&mut self, link: &Link, err: ProtocolError) {
        log::debug!("websocket client: failing the connection: {err}");
        if link.flush_pending_blocking().is_ok() {
            let _ = link.stream.shutdown(Shutdown::Write);
            self.wait_eof(link, Instant::now() + link.close_timeout);
        }
        link.teardown(&mut link.state(), err.reason());
    }

    /// Reads and discards until the server closes TCP or `deadline` passes, then shuts the socket down.
    /// Returns whether the server closed first.
    pub(super) fn wait_eof(&mut self, link: &Link, deadline: Instant) -> bool {
        let mut scratch = [0u8; 4096];
        let eof = loop {
            if link.state().tcp_done {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            if self.set_timeout(link, Some(deadline - now)).is_err() {
                break false;
            }
            match link.stream.read(&mut scratch) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => break true,
            }
        };
        link.teardown(&mut link.state(), "closed");
        eof
    }
}

pub(super) fn min_wait(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

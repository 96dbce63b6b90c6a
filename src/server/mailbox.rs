//! The command channel from other threads to one reactor, bounded in bytes for messages.
//!
//! Owns: [`Mailbox`] (the sending side: a `Handle`'s sends to an id, broadcasts and publishes, and the
//! control commands) and [`Inbox`] (the reactor's side), and the one count they share: the bytes of
//! messages posted and not yet taken by the reactor. A message that would take that count past
//! `Config::max_pending_command_bytes` is dropped and counted (`commands_dropped`), so a thread that
//! produces faster than a reactor can deliver (or a reactor held up by a slow handler) cannot grow the
//! channel without bound. Control commands (close, connect, adopt, stop, ...) are never dropped: they
//! are few and each is small. Never touches: what a reactor does with a command.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, SendError, Sender, TryRecvError};
use std::sync::Arc;

use crate::metrics::Counters;

use super::reactor::Command;

/// The sending side of one reactor's command channel (cloned per thread that sends).
#[derive(Clone)]
pub(crate) struct Mailbox {
    tx: Sender<Command>,
    shared: Arc<Shared>,
    limit: usize,
}

/// What both sides of one channel count.
#[derive(Default)]
struct Shared {
    /// Bytes of messages posted and not yet taken.
    pending: AtomicUsize,
    /// Messages dropped so far (for the log: with metrics compiled out the counters do not count).
    dropped: AtomicUsize,
}

/// The reactor's side of its command channel.
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    shared: Arc<Shared>,
}

/// A channel whose messages may hold at most `limit` bytes at once (`Config::max_pending_command_bytes`).
pub(crate) fn mailbox(limit: usize) -> (Mailbox, Inbox) {
    let (tx, rx) = channel();
    let shared = Arc::new(Shared::default());
    (Mailbox { tx, shared: shared.clone(), limit }, Inbox { rx, shared })
}

/// What became of a posted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Posted {
    /// Queued for the reactor: wake it.
    Queued,
    /// A message past the byte limit: dropped and counted.
    Dropped,
    /// The reactor has exited.
    Gone,
}

impl Mailbox {
    /// Posts `command`. A message ([`Command::message_bytes`] above zero) that would take the bytes
    /// pending past the limit is dropped and counted in `counters.commands_dropped` (a warning is
    /// logged at the 1st, 2nd, 4th, 8th, ... drop, so a flood does not flood the log). One message is
    /// always taken when nothing is pending, however large.
    pub(crate) fn post(&self, command: Command, counters: &Counters) -> Posted {
        let bytes = command.message_bytes();
        if bytes > 0 {
            let before = self.shared.pending.fetch_add(bytes, Ordering::Relaxed);
            if before > 0 && before.saturating_add(bytes) > self.limit {
                self.shared.pending.fetch_sub(bytes, Ordering::Relaxed);
                Counters::add_from_any_thread(&counters.commands_dropped, 1);
                let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    log::warn!(
                        "a reactor's pending messages reached max_pending_command_bytes ({} bytes): {dropped} \
                         message(s) sent through the Handle dropped so far (commands_dropped)",
                        self.limit
                    );
                }
                return Posted::Dropped;
            }
        }
        match self.tx.send(command) {
            Ok(()) => Posted::Queued,
            Err(SendError(command)) => {
                self.shared.pending.fetch_sub(command.message_bytes(), Ordering::Relaxed);
                Posted::Gone
            }
        }
    }

    /// Posts a control command (never dropped); gives it back when the reactor has exited.
    pub(crate) fn post_control(&self, command: Command) -> Result<(), Command> {
        debug_assert_eq!(command.message_bytes(), 0, "a message goes through post");
        self.tx.send(command).map_err(|SendError(command)| command)
    }
}

impl Inbox {
    /// The next command, if one is waiting; its message bytes no longer count as pending.
    pub(crate) fn try_recv(&self) -> Result<Command, TryRecvError> {
        let command = self.rx.try_recv()?;
        let bytes = command.message_bytes();
        if bytes > 0 {
            self.shared.pending.fetch_sub(bytes, Ordering::Relaxed);
        }
        Ok(command)
    }

    /// Bytes of messages posted and not yet taken.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(len: usize) -> Command {
        Command::Broadcast(Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn messages_past_the_limit_are_dropped_and_counted_until_the_reactor_takes_some() {
        let counters = Counters::default();
        let (mailbox, inbox) = mailbox(1000);
        // One message is always taken, however large, when nothing is pending.
        assert_eq!(mailbox.post(message(1500), &counters), Posted::Queued);
        assert_eq!(inbox.pending_bytes(), 1500);
        assert_eq!(mailbox.post(message(10), &counters), Posted::Dropped);
        assert!(inbox.try_recv().is_ok());
        assert_eq!(inbox.pending_bytes(), 0);
        for _ in 0..4 {
            assert_eq!(mailbox.post(message(250), &counters), Posted::Queued);
        }
        assert_eq!(mailbox.post(message(1), &counters), Posted::Dropped);
        assert_eq!(inbox.pending_bytes(), 1000);
        // Control commands are never dropped.
        assert!(mailbox.post_control(Command::Stop).is_ok());
        assert_eq!(mailbox.shared.dropped.load(Ordering::Relaxed), 2);
        if crate::metrics::ENABLED {
            assert_eq!(counters.commands_dropped.load(Ordering::Relaxed), 2);
        }
        let mut taken = 0;
        while inbox.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 5);
        assert_eq!(inbox.pending_bytes(), 0);
    }

    #[test]
    fn a_message_to_a_reactor_that_exited_is_gone_and_not_left_pending() {
        let counters = Counters::default();
        let (mailbox, inbox) = mailbox(1000);
        drop(inbox);
        assert_eq!(mailbox.post(message(100), &counters), Posted::Gone);
        assert_eq!(mailbox.shared.pending.load(Ordering::Relaxed), 0);
        assert!(mailbox.post_control(Command::Stop).is_err());
    }
}

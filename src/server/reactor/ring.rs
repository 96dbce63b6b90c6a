//! The io_uring path (EXPERIMENTAL, `Config::io_uring`, feature `io-uring`, Linux): the loop waits in
//! `io_uring_enter` (task work deferred to it), plain server connections are read by a multishot
//! receive into the ring's provided buffers and written by ring sends, and the reactor's epoll
//! descriptor is one more thing the ring polls (mio is polled only when it fired).
//!
//! Owns: the reactor's [`Ring`], which receive each slot has armed (by connection generation, so a
//! completion for a connection that went is recognised and dropped), cancelling a receive when its
//! connection pauses or goes, re-arming it when it resumes or when the kernel ended it; a connection's
//! output as a ring send (`MSG_DONTWAIT`, so it completes when submitted; at most one per connection in
//! the ring, and every other write to that connection settles it first, so bytes leave in order);
//! submitting a turn's sends together; moving a bulk connection (receives that fill whole buffers) to
//! readiness reads; leaving the loop's wait to epoll when the ring has nothing in it. Never touches: parsing, handlers (`read_from`, `after_event` and
//! the write path do that, as for a readiness read), sockets it was not given (TLS, in-loop clients and
//! adopted sockets are read and written by mio).
//!
//! Without the feature (or off Linux) [`RingReads`] is uninhabited and every hook is a no-op, so the
//! reactor calls them unconditionally.

#[cfg(not(all(feature = "io-uring", target_os = "linux")))]
use super::{super::Handle, Reactor};

#[cfg(all(feature = "io-uring", target_os = "linux"))]
pub(super) use imp::RingReads;

/// Never made: reactors built without the io-uring feature read through mio only.
#[cfg(not(all(feature = "io-uring", target_os = "linux")))]
pub(super) enum RingReads {}

#[cfg(not(all(feature = "io-uring", target_os = "linux")))]
impl Reactor {
    pub(super) fn make_ring(config: &super::Config, _poll: &mio::Poll, index: usize) -> Option<RingReads> {
        if config.io_uring {
            warn_once(index, "this build has no io-uring feature");
        }
        None
    }
    pub(super) fn ring_reads(&self, _slot: usize) -> bool {
        false
    }
    pub(super) fn ring_arm(&mut self, _slot: usize) -> bool {
        false
    }
    pub(super) fn ring_forget(&mut self, _slot: usize, _generation: u32) {}
    pub(super) fn ring_resume(&mut self, slot: usize, handle: &Handle) {
        self.on_readable(slot, handle, true);
    }
    pub(super) fn ring_submit(&mut self) {}
    pub(super) fn ring_wait(&mut self, _timeout: Option<std::time::Duration>) -> bool {
        false
    }
    pub(super) fn ring_process(&mut self, _handle: &Handle) -> bool {
        true
    }
    pub(super) fn ring_poll_again(&mut self) {}
    pub(super) fn ring_stage(&mut self, _slot: usize, _handle: &Handle) -> bool {
        false
    }
    pub(super) fn ring_sending(&self, _slot: usize) -> bool {
        false
    }
    pub(super) fn ring_settle(&mut self, _handle: &Handle) {}
    pub(super) fn ring_small_read(&mut self, _slot: usize, _bytes: usize, _only_read: bool) {}
}

/// Logs, once per process, that the reactors read through mio although `Config::io_uring` asked for
/// the ring.
fn warn_once(index: usize, why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| log::warn!("reactor {index}: io_uring reads are off ({why}); reading through mio"));
}

#[cfg(all(feature = "io-uring", target_os = "linux"))]
mod imp {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use mio::Poll;

    use crate::buf::InboundBuf;
    use crate::sys::uring::{Completion, Received, Ring, RingConfig};

    use super::super::super::Handle;
    use super::super::conn::Phase;
    use super::super::{Config, Reactor};
    use super::warn_once;

    /// What the ring does for one slot's connection.
    #[derive(Debug, Default, Clone, Copy)]
    struct SlotRead {
        /// The connection (by generation) this entry is about; `reads` false: none.
        generation: u32,
        /// The slot's connection is read by the ring (not by mio).
        reads: bool,
        /// Its multishot receive is armed: completions may come until one says it ended.
        armed: bool,
        /// Its bytes go to the handler; false while a rate-limit pause holds them (as the tail).
        delivering: bool,
        /// A send of its output is in the ring (queued or in flight): every other write to it waits
        /// for that send's completion, so that bytes leave in the order they were written.
        sending: bool,
        /// Receives that filled a whole buffer (saturating): bulk traffic.
        full: u8,
        /// Its receive is being cancelled so that mio reads it from then on (bulk traffic).
        to_mio: bool,
        /// Bulk traffic moved it to mio: it may come back (`ring_small_read`).
        moved: bool,
        /// Readiness events in a row, since it moved, that each brought one small read.
        small: u8,
    }

    /// A reactor's ring and what it receives for whom.
    pub(in super::super) struct RingReads {
        /// The size of each receive buffer.
        buffer_size: usize,
        ring: Ring,
        slots: Vec<SlotRead>,
        /// Completions reaped and not yet handled (kept to reuse the allocation).
        done: Vec<Completion>,
        /// The bytes of the receive buffers gathered for one connection (`staged`), copied out so
        /// each buffer goes back to the kernel at once.
        staging: Vec<u8>,
        /// The token whose bytes `staging` holds, until they are delivered.
        staged: Option<u64>,
        /// Send buffers back from their completions, reused as the next cork (a few, small ones).
        spare: Vec<Vec<u8>>,
        /// The poll on the reactor's epoll descriptor fired: mio has events (listeners, the waker,
        /// writability, connections mio reads).
        mio_due: bool,
    }

    /// The token of the poll on the reactor's epoll descriptor (a kind of its own in the ring).
    const EPOLL_TOKEN: u64 = 0;
    /// Whole-buffer receives after which a connection is read by mio instead: bulk data reads faster
    /// into the reactor's warm read buffer, in place, than through the ring's buffers (which cycle
    /// through megabytes) and the copies out of them. Docs/benchmarks.md, "Step 2 inside the reactor".
    const BULK_RECEIVES: u8 = 4;
    /// Readiness events in a row that each brought at most a quarter of a ring buffer, after which a
    /// connection moved to mio comes back to the ring (its traffic is small again).
    const SMALL_READS: u8 = 64;
    /// Send buffers kept for reuse, and the largest one kept.
    const SPARE_BUFFERS: usize = 64;
    const SPARE_CAPACITY: usize = 64 << 10;

    /// user_data's token for a slot's connection: its generation (24 bits) above its slot (32).
    fn token(slot: usize, generation: u32) -> u64 {
        u64::from(generation) << 32 | slot as u64 & 0xffff_ffff
    }

    fn untoken(token: u64) -> (usize, u32) {
        ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
    }

    impl Reactor {
        /// The reactor's ring, polling the reactor's epoll descriptor, when `Config::io_uring` asks for
        /// one and the kernel makes one; otherwise `None` (logged once).
        pub(in super::super) fn make_ring(config: &Config, poll: &Poll, index: usize) -> Option<RingReads> {
            if !config.io_uring {
                return None;
            }
            // Buffers of the read buffer's size (64 KiB by default, as a readiness read takes): a large
            // frame then comes in one receive, not in eight 8 KiB ones (each a `recvmsg` in the kernel).
            // 16 MiB of them per reactor; each goes back to the kernel as soon as it is copied out.
            let buffer_size = config.read_buffer_size.clamp(4096, 1 << 20);
            let buffers = ((16 << 20) / buffer_size).clamp(64, 1024).next_power_of_two() as u16;
            // Task work deferred to our own `io_uring_enter`: the loop waits there (not in epoll_wait),
            // and the epoll descriptor is one more thing the ring polls.
            let sizes =
                RingConfig { buffers, buffer_size: buffer_size as u32, defer_taskrun: true, ..RingConfig::default() };
            let mut ring = match Ring::new(sizes) {
                Ok(ring) => ring,
                Err(e) => {
                    warn_once(index, &format!("cannot make a ring: {e}"));
                    return None;
                }
            };
            if let Err(e) = ring.poll_readable(poll.as_raw_fd(), EPOLL_TOKEN) {
                warn_once(index, &format!("cannot poll the reactor's epoll through the ring: {e}"));
                return None;
            }
            log::debug!("reactor {index}: reading and writing plain connections through io_uring");
            Some(RingReads {
                buffer_size,
                ring,
                slots: Vec::new(),
                done: Vec::new(),
                staging: Vec::new(),
                staged: None,
                spare: Vec::new(),
                mio_due: true,
            })
        }

        /// Whether the slot's connection is read by the ring (its readiness events carry no reads).
        pub(in super::super) fn ring_reads(&self, slot: usize) -> bool {
            self.ring.as_ref().is_some_and(|r| r.slots.get(slot).is_some_and(|s| s.reads))
        }

        /// Hands a newly inserted connection's reads to the ring: arms its multishot receive. False
        /// (nothing changed) when there is no ring or the receive cannot be queued.
        pub(in super::super) fn ring_arm(&mut self, slot: usize) -> bool {
            let (Some(rr), Some(conn)) = (self.ring.as_mut(), self.conns.get(slot)) else { return false };
            if rr.slots.len() <= slot {
                rr.slots.resize(slot + 1, SlotRead::default());
            }
            let generation = conn.generation;
            if let Err(e) = rr.ring.recv(conn.stream.as_raw_fd(), token(slot, generation)) {
                log::warn!("reactor {}: io_uring receive not armed: {e}", self.index);
                return false;
            }
            rr.slots[slot] = SlotRead { generation, reads: true, armed: true, delivering: true, ..SlotRead::default() };
            true
        }

        /// The connection in `slot` (of `generation`) goes: its receive is cancelled and submitted now,
        /// before the caller closes the socket; whatever still completes for it is dropped.
        pub(in super::super) fn ring_forget(&mut self, slot: usize, generation: u32) {
            let Some(rr) = self.ring.as_mut() else { return };
            let Some(s) = rr.slots.get_mut(slot).filter(|s| (s.reads || s.sending) && s.generation == generation)
            else {
                return;
            };
            let armed = s.armed;
            *s = SlotRead::default();
            // A send still queued goes to the kernel now, before the caller closes the descriptor (whose
            // number a later socket may get); its completion is then dropped.
            let cancelled = if armed { rr.ring.cancel_recv(token(slot, generation)) } else { Ok(()) };
            if let Err(e) = cancelled.and_then(|()| rr.ring.submit()) {
                log::warn!("reactor {}: io_uring cancel: {e}", self.index);
            }
        }

        /// A rate-limit pause is over (the held tail was processed): reading resumes, through the ring
        /// for its connections (re-armed unless the cancelled receive has not ended yet: its end
        /// re-arms it), through mio for the rest.
        pub(in super::super) fn ring_resume(&mut self, slot: usize, handle: &Handle) {
            if !self.ring_reads(slot) {
                self.on_readable(slot, handle, true);
                return;
            }
            if self.paused(slot) {
                return;
            }
            let Some(rr) = self.ring.as_mut() else { return };
            rr.slots[slot].delivering = true;
            if !rr.slots[slot].armed {
                self.rearm(slot, handle);
            }
        }

        /// Nothing to do: what the turn queued (re-arms, cancels) goes with the next wait's enter.
        pub(in super::super) fn ring_submit(&mut self) {}

        /// With a ring, the loop's wait: one `io_uring_enter` submits everything queued and waits for
        /// a completion or `timeout` (none when completions or mio events are already waiting). False
        /// without a ring, or with one that has nothing to do (every connection it had moved to mio, or
        /// went): the caller then waits in mio, as without a ring.
        pub(in super::super) fn ring_wait(&mut self, timeout: Option<Duration>) -> bool {
            let index = self.index;
            let Some(rr) = self.ring.as_mut() else { return false };
            if rr.done.is_empty() && !rr.mio_due && rr.ring.is_idle() {
                return false;
            }
            let timeout = if rr.mio_due || !rr.done.is_empty() { Some(Duration::ZERO) } else { timeout };
            if let Err(e) = rr.ring.submit_and_wait(1, timeout) {
                log::warn!("reactor {index}: io_uring wait: {e}");
            }
            rr.ring.reap(&mut rr.done);
            while rr.ring.cq_overflowed() {
                let before = rr.done.len();
                let _ = rr.ring.submit_and_wait(0, Some(Duration::ZERO));
                rr.ring.reap(&mut rr.done);
                if rr.done.len() == before {
                    break;
                }
            }
            true
        }

        /// Handles what the ring completed: receives (bytes to the handlers, whose output is queued
        /// as sends), sends, the epoll poll. Then submits the sends this queued and handles their
        /// completions, so that nothing of this connection's output is left in the ring when mio's
        /// events, commands and timers write. Returns whether mio has events.
        pub(in super::super) fn ring_process(&mut self, handle: &Handle) -> bool {
            let index = self.index;
            loop {
                let Some(rr) = self.ring.as_mut() else { return true };
                if rr.done.is_empty() {
                    if !rr.ring.has_queued() {
                        break;
                    }
                    if let Err(e) = rr.ring.submit() {
                        log::warn!("reactor {index}: io_uring submit: {e}");
                    }
                    rr.ring.reap(&mut rr.done);
                    if rr.done.is_empty() {
                        break;
                    }
                }
                let mut done = std::mem::take(&mut rr.done);
                for completion in done.drain(..) {
                    match completion {
                        Completion::Recv { token, received, more } => self.on_received(token, received, more, handle),
                        Completion::Sent { token, result, buf, start } => {
                            self.flush_staged(handle);
                            self.on_sent(token, result, buf, start, handle);
                        }
                        Completion::Polled { more, .. } => {
                            let Some(rr) = self.ring.as_mut() else { break };
                            rr.mio_due = true;
                            if !more {
                                if let Err(e) = rr.ring.poll_readable(self.poll.as_raw_fd(), EPOLL_TOKEN) {
                                    log::error!("reactor {index}: cannot poll epoll through the ring again: {e}");
                                }
                            }
                        }
                        Completion::Accepted { .. } => {}
                    }
                }
                self.flush_staged(handle);
                let Some(rr) = self.ring.as_mut() else { return true };
                if rr.done.is_empty() {
                    rr.done = done;
                } else {
                    // Completions a settle reaped meanwhile: taken on the next pass.
                    rr.done.append(&mut done);
                    rr.done.shrink_to(4096);
                }
            }
            self.ring.as_mut().is_some_and(|rr| std::mem::take(&mut rr.mio_due))
        }

        /// mio's poll filled its events: poll it again next turn, without waiting.
        pub(in super::super) fn ring_poll_again(&mut self) {
            if let Some(rr) = self.ring.as_mut() {
                rr.mio_due = true;
            }
        }

        /// Whether a send of `slot`'s connection is in the ring.
        pub(in super::super) fn ring_sending(&self, slot: usize) -> bool {
            self.ring.as_ref().is_some_and(|r| r.slots.get(slot).is_some_and(|s| s.sending))
        }

        /// Submits the queued sends now and handles their completions (others wait for `ring_process`).
        pub(in super::super) fn ring_settle(&mut self, handle: &Handle) {
            let index = self.index;
            let Some(rr) = self.ring.as_mut() else { return };
            if let Err(e) = rr.ring.submit() {
                log::warn!("reactor {index}: io_uring submit: {e}");
            }
            let mut reaped = Vec::new();
            rr.ring.reap(&mut reaped);
            for completion in reaped {
                match completion {
                    Completion::Sent { token, result, buf, start } => self.on_sent(token, result, buf, start, handle),
                    other => {
                        if let Some(rr) = self.ring.as_mut() {
                            rr.done.push(other);
                        }
                    }
                }
            }
        }

        /// The cork (non-empty) of `slot`'s connection goes out as a ring send (queued; submitted with
        /// the turn's others) when the ring reads that connection and it is open with nothing queued.
        /// False: the caller writes it as usual. A send still in the ring for it is settled first;
        /// if it is still there after that, the cork is queued behind it (sent on its completion).
        pub(in super::super) fn ring_stage(&mut self, slot: usize, handle: &Handle) -> bool {
            if self.ring_sending(slot) {
                self.ring_settle(handle);
                if self.ring_sending(slot) {
                    let Self { conns, pool, calls, .. } = self;
                    if let Some(conn) = conns.get_mut(slot) {
                        conn.outbound.get_or_insert_with(Default::default).push_owned(&calls.cork, pool);
                    }
                    calls.cork.clear();
                    return true;
                }
            }
            if !self.ring_reads(slot) {
                return false;
            }
            let Some(conn) = self.conns.get(slot) else { return false };
            let generation = conn.generation;
            let open = match &conn.phase {
                Phase::Open(open) if conn.outbound.is_none() && !conn.close_when_flushed => open,
                _ => return false,
            };
            if open.proto.transport_may_close() || open.proto.close_state() != crate::proto::CloseState::Open {
                return false;
            }
            let fd = conn.stream.as_raw_fd();
            let Some(rr) = self.ring.as_mut() else { return false };
            if rr.slots.get(slot).map(|s| s.generation) != Some(generation) {
                return false;
            }
            let mut buf = rr.spare.pop().unwrap_or_default();
            std::mem::swap(&mut buf, &mut self.calls.cork);
            match rr.ring.send(fd, token(slot, generation), buf, 0, true) {
                Ok(()) => rr.slots[slot].sending = true,
                Err(e) => {
                    log::warn!("reactor {}: io_uring send not queued: {e}", self.index);
                    self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "connection reset");
                }
            }
            true
        }

        /// A ring send completed: what the socket did not take is queued (written when it is writable);
        /// output queued behind the send goes now.
        fn on_sent(
            &mut self,
            token: u64,
            result: std::io::Result<usize>,
            mut buf: Vec<u8>,
            start: usize,
            handle: &Handle,
        ) {
            let (slot, generation) = untoken(token);
            // Its connection, whether or not the ring still reads it (a bulk one moved to mio).
            let current = self.conns.get(slot).is_some_and(|c| c.generation == generation)
                && self
                    .ring
                    .as_ref()
                    .is_some_and(|r| r.slots.get(slot).is_some_and(|s| s.sending && s.generation == generation));
            if current {
                if let Some(rr) = self.ring.as_mut() {
                    rr.slots[slot].sending = false;
                }
                let sent = match result {
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(0),
                    Err(_) => None,
                };
                match sent {
                    None => self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "connection reset"),
                    Some(n) => {
                        crate::metrics::Counters::add(&self.counters.bytes_written, n as u64);
                        let Self { conns, pool, .. } = self;
                        let conn = &mut conns[slot];
                        let rest = &buf[(start + n).min(buf.len())..];
                        if !rest.is_empty() {
                            let queue = conn.outbound.get_or_insert_with(Default::default);
                            // Output queued behind the send (only if it was still in the ring at a write)
                            // stays behind what the socket did not take.
                            let behind = std::mem::take(queue);
                            queue.push_owned(rest, pool);
                            queue.append(*behind);
                            if let Phase::Open(open) = &mut conn.phase {
                                open.drain_pending = true;
                            }
                            self.update_pool_gauge();
                        } else if conn.outbound.is_some() {
                            self.write_queued(slot, handle);
                        }
                    }
                }
            }
            if let Some(rr) = self.ring.as_mut() {
                if rr.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_CAPACITY {
                    buf.clear();
                    rr.spare.push(buf);
                }
            }
        }

        /// Whether `slot` still holds the connection of `generation` and the ring reads it.
        fn is_current(&self, slot: usize, generation: u32) -> bool {
            self.ring.as_ref().is_some_and(|r| r.slots.get(slot).is_some_and(|s| s.reads && s.generation == generation))
                && self.conns.get(slot).is_some_and(|c| c.generation == generation)
        }

        /// One receive completion. Bytes are gathered: the completions of one connection that follow
        /// each other in a batch (a 64 KiB message comes as eight 8 KiB buffers) are delivered together,
        /// as one readiness read would bring them, so that a large message is not re-copied as its tail
        /// grows. Anything else delivers what was gathered first: EOF and errors then go through the
        /// readiness path's removal code; a receive the kernel ended (buffers ran out, our cancel) is
        /// re-armed unless a pause holds it.
        fn on_received(&mut self, token: u64, received: Received, more: bool, handle: &Handle) {
            if !matches!(received, Received::Data(_)) || self.ring.as_ref().is_some_and(|r| r.staged != Some(token)) {
                self.flush_staged(handle);
            }
            let (slot, generation) = untoken(token);
            let current = self.is_current(slot, generation);
            let Some(rr) = self.ring.as_mut() else { return };
            if !current {
                // A connection that went (or its slot's next one): nothing reaches it.
                if let Received::Data(buf) = received {
                    rr.ring.recycle(buf);
                }
                return;
            }
            if !more {
                rr.slots[slot].armed = false;
            }
            match received {
                Received::Data(buf) => {
                    let s = &mut rr.slots[slot];
                    if buf.len() == rr.buffer_size {
                        s.full = s.full.saturating_add(1);
                        if s.full >= BULK_RECEIVES && s.armed && !s.to_mio {
                            // Bulk traffic: mio reads it once this receive has ended (its last bytes
                            // delivered first).
                            s.to_mio = true;
                            if let Err(e) = rr.ring.cancel_recv(token) {
                                log::warn!("reactor {}: io_uring cancel: {e}", self.index);
                            }
                        }
                    }
                    rr.staging.extend_from_slice(rr.ring.buf_mut(&buf));
                    rr.ring.recycle(buf);
                    rr.staged = Some(token);
                    if more {
                        return; // delivered with what follows, or at the end of the batch
                    }
                    self.flush_staged(handle);
                }
                Received::Eof => {
                    self.read_ended(slot, handle);
                    return;
                }
                // Our cancellation (a pause), or the buffer ring ran dry: not the connection's fault.
                Received::Error(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::ENOBUFS)) => {}
                Received::Error(e) => {
                    self.read_failed(slot, handle, e);
                    return;
                }
            }
            self.rearm_if_ended(slot, generation, handle);
        }

        /// Delivers the bytes gathered for one connection (if it is still there), then re-arms its
        /// receive if the kernel ended it meanwhile.
        fn flush_staged(&mut self, handle: &Handle) {
            let Some(rr) = self.ring.as_mut() else { return };
            let Some(token) = rr.staged.take() else { return };
            let mut staging = std::mem::take(&mut rr.staging);
            let (slot, generation) = untoken(token);
            if self.is_current(slot, generation) {
                self.deliver(slot, &staging, handle);
            }
            staging.clear();
            if staging.capacity() > 1 << 20 {
                // A burst of many buffers: do not keep megabytes for the usual few bytes.
                staging.shrink_to(256 << 10);
            }
            if let Some(rr) = self.ring.as_mut() {
                rr.staging = staging;
            }
            self.rearm_if_ended(slot, generation, handle);
        }

        /// Arms the receive of `slot`'s connection again if it ended and nothing holds it.
        fn rearm_if_ended(&mut self, slot: usize, generation: u32, handle: &Handle) {
            if !self.is_current(slot, generation) {
                return;
            }
            let Some(rr) = self.ring.as_ref() else { return };
            let s = rr.slots[slot];
            if !s.armed && s.to_mio {
                self.ring_to_mio(slot, handle);
            } else if !s.armed && s.delivering {
                self.rearm(slot, handle);
            }
        }

        /// The connection's receive has ended after a switch to bulk: from now on mio reads it (and
        /// writes it: sends through the ring need it read by the ring), starting with what the socket
        /// holds. A send still in the ring is settled first.
        fn ring_to_mio(&mut self, slot: usize, handle: &Handle) {
            if self.ring_sending(slot) {
                self.ring_settle(handle);
            }
            let Some(rr) = self.ring.as_mut() else { return };
            let s = &mut rr.slots[slot];
            s.reads = false;
            s.to_mio = false;
            s.moved = true;
            s.small = 0;
            crate::metrics::Counters::add(&self.counters.io_uring_to_readiness, 1);
            let Some(conn) = self.conns.get_mut(slot) else { return };
            let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
            if let Err(e) = self.poll.registry().reregister(&mut conn.stream, mio::Token(slot), interest) {
                log::warn!("reactor {}: cannot hand slot {slot} to mio: {e}", self.index);
                self.remove(slot, handle, crate::proto::CloseCode::ABNORMAL, "");
                return;
            }
            log::debug!("reactor {}: slot {slot} moves to readiness reads (bulk traffic)", self.index);
            self.on_readable(slot, handle, false);
        }

        /// A readiness event of `slot` ended in a short read; `small`: it was the event's only read and
        /// brought at most a quarter of a ring buffer. A connection bulk traffic moved to mio comes back
        /// to the ring after `SMALL_READS` such events in a row: its socket is drained now, so the
        /// receive armed here starts with the next bytes, and its readiness events no longer report
        /// reads.
        pub(in super::super) fn ring_small_read(&mut self, slot: usize, bytes: usize, only_read: bool) {
            let Some(rr) = self.ring.as_mut() else { return };
            let small = only_read && bytes <= rr.buffer_size / 4;
            let Some(conn) = self.conns.get_mut(slot) else { return };
            let Some(s) = rr.slots.get_mut(slot).filter(|s| s.moved && !s.reads && s.generation == conn.generation)
            else {
                return;
            };
            if !small {
                s.small = 0;
                return;
            }
            s.small += 1;
            if s.small < SMALL_READS {
                return;
            }
            s.small = 0;
            let ready = matches!(&conn.phase, Phase::Open(open)
                if !conn.close_when_flushed && open.rate().is_none_or(|r| r.paused_until.is_none()));
            if !ready || s.sending {
                return;
            }
            if let Err(e) = self.poll.registry().reregister(&mut conn.stream, mio::Token(slot), mio::Interest::WRITABLE)
            {
                log::warn!("reactor {}: slot {slot} stays on readiness reads: {e}", self.index);
                return;
            }
            let token = token(slot, conn.generation);
            if let Err(e) = rr.ring.recv(conn.stream.as_raw_fd(), token) {
                log::warn!("reactor {}: io_uring receive not armed again: {e}", self.index);
                let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                let _ = self.poll.registry().reregister(&mut conn.stream, mio::Token(slot), interest);
                return;
            }
            *s = SlotRead {
                generation: s.generation,
                reads: true,
                armed: true,
                delivering: true,
                ..SlotRead::default()
            };
            crate::metrics::Counters::add(&self.counters.io_uring_to_ring, 1);
            log::debug!("reactor {}: slot {slot} moves back to the ring (small traffic)", self.index);
        }

        /// Bytes a receive brought for `slot`'s connection: processed as a readiness read's are, unless
        /// the connection is paused, in which case they (and whatever a pause leaves of them) are kept
        /// as its tail and the receive is cancelled until the pause ends.
        fn deliver(&mut self, slot: usize, bytes: &[u8], handle: &Handle) {
            if self.ring_sending(slot) {
                // Its handler may write straight to the socket: the send in the ring goes first.
                self.ring_settle(handle);
            }
            let mut rest = bytes;
            while !rest.is_empty() && self.conns.contains(slot) && !self.paused(slot) {
                let before = rest.len();
                self.read_from(slot, handle, false, Some(&mut rest));
                if rest.len() == before {
                    break;
                }
            }
            if rest.is_empty() || !self.conns.contains(slot) {
                return;
            }
            // Paused: hold the bytes as the mio path leaves them in the socket, and stop the receive.
            let Self { conns, pool, ring, .. } = self;
            let conn = &mut conns[slot];
            let tail = conn.inbound.get_or_insert_with(|| Box::new(InboundBuf::from_vec(pool.take_for(rest.len()))));
            tail.append(rest);
            let Some(rr) = ring.as_mut() else { return };
            let s = &mut rr.slots[slot];
            if s.delivering {
                s.delivering = false;
                if s.armed {
                    if let Err(e) = rr.ring.cancel_recv(token(slot, conn.generation)) {
                        log::warn!("reactor {}: io_uring cancel: {e}", self.index);
                    }
                }
            }
        }

        /// Whether the slot's open connection is held by a rate-limit pause.
        fn paused(&self, slot: usize) -> bool {
            self.rate_limited
                && matches!(self.conns.get(slot).map(|c| &c.phase),
                    Some(Phase::Open(open)) if open.rate().is_some_and(|r| r.paused_until.is_some()))
        }

        /// Arms the slot's receive again; if that fails, its connection goes (nothing would read it).
        fn rearm(&mut self, slot: usize, handle: &Handle) {
            let (Some(rr), Some(conn)) = (self.ring.as_mut(), self.conns.get(slot)) else { return };
            match rr.ring.recv(conn.stream.as_raw_fd(), token(slot, conn.generation)) {
                Ok(()) => rr.slots[slot].armed = true,
                Err(e) => self.read_failed(slot, handle, e),
            }
        }
    }
}

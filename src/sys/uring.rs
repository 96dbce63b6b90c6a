//! io_uring, EXPERIMENTAL (feature `io-uring`, Linux): a safe [`Ring`] for the one server loop that
//! measures io_uring against the mio reactor (`crate::server::uring`, docs/benchmarks.md, issue 18).
//! Not a reactor backend.
//!
//! Owns: the ring, a provided-buffer ring (`IORING_REGISTER_PBUF_RING`) that multishot receives fill,
//! and every send buffer while the kernel may read it. Never touches: WebSocket state, which
//! connection a token names, when a socket closes (the caller owns its sockets).
//!
//! How it stays sound: the kernel writes into a receive buffer only while that buffer is published
//! in the buffer ring; a completion hands it to the caller as a [`RecvBuf`] (neither `Copy` nor
//! `Clone`), readable through [`Ring::buf_mut`] until [`Ring::recycle`] publishes it again. A send's
//! `Vec` moves into the ring and comes back only with its completion. The buffer memory is raw
//! (never a Rust reference to the whole area, which the kernel writes in parallel). On drop, anything
//! still in flight is cancelled synchronously and reaped; if that fails the memory is leaked, never
//! freed under the kernel.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// The provided-buffer group this ring's receives select from.
const BGID: u16 = 0;
/// user_data = kind << KIND_SHIFT | token or send slot.
const KIND_SHIFT: u32 = 56;
const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_CANCEL: u64 = 4;
const KIND_POLL: u64 = 5;
/// The bits of user_data below the kind: a receive's token has at most this many.
pub const TOKEN_BITS: u32 = KIND_SHIFT;

/// Distinguishes rings, so that a [`RecvBuf`] is only ever read or recycled by the ring it came from.
static NEXT_RING_ID: AtomicU32 = AtomicU32::new(1);

/// One entry of a provided-buffer ring: the kernel's `struct io_uring_buf` (16 bytes). The first
/// entry's `resv` is the ring's tail, which the kernel reads at any time, so entries are written field
/// by field through raw pointers, never through a reference to a whole entry.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Sizes of a [`Ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (the completion queue gets twice as many). Default 1024.
    pub entries: u32,
    /// Receive buffers in the provided-buffer ring: a power of two, at most 32768. Default 1024.
    pub buffers: u16,
    /// Bytes per receive buffer (a multishot receive fills at most one per completion). Default 8192.
    pub buffer_size: u32,
    /// `IORING_SETUP_DEFER_TASKRUN` (with `SINGLE_ISSUER`) where the kernel has it: completions are
    /// posted only inside [`Ring::submit_and_wait`]. Default true (the prototype's loop waits there).
    /// A ring waited on through epoll instead ([`Ring::as_raw_fd`]) sets it false, so that the kernel
    /// posts completions on its own and the ring's fd turns readable; it is then made with
    /// `IORING_SETUP_COOP_TASKRUN` (no interrupt per completion) where the kernel has it.
    pub defer_taskrun: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self { entries: 1024, buffers: 1024, buffer_size: 8192, defer_taskrun: true }
    }
}

/// A receive buffer the kernel filled, lent to the caller until [`Ring::recycle`] gives it back.
/// Dropping it instead loses the buffer for this ring's lifetime (the pool shrinks; nothing unsafe).
#[derive(Debug)]
pub struct RecvBuf {
    ring: u32,
    bid: u16,
    len: usize,
}

impl RecvBuf {
    /// How many bytes were received into it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes (never, for a buffer a completion handed out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a multishot receive completion says.
#[derive(Debug)]
pub enum Received {
    /// Bytes, in a buffer of the ring (see [`Ring::buf_mut`]; give it back with [`Ring::recycle`]).
    Data(RecvBuf),
    /// The peer closed its side (or the socket was shut down): the receive ended.
    Eof,
    /// The receive failed (`ENOBUFS`: the buffer ring ran dry; re-arm with [`Ring::recv`]).
    Error(io::Error),
}

/// One completion, as [`Ring::reap`] hands them out.
#[derive(Debug)]
pub enum Completion {
    /// The multishot accept produced a connection (non-blocking, close-on-exec) or an error. `more`
    /// false: the accept ended, arm it again with [`Ring::accept`].
    Accepted {
        /// The new connection.
        result: io::Result<TcpStream>,
        /// Whether the multishot accept is still armed.
        more: bool,
    },
    /// A multishot receive for `token` completed. `more` false: it ended (after [`Received::Eof`], an
    /// error, or a cancellation) and no further completion comes for it until it is armed again.
    Recv {
        /// The caller's token given to [`Ring::recv`].
        token: u64,
        /// What arrived.
        received: Received,
        /// Whether the receive is still armed.
        more: bool,
    },
    /// A send finished: `result` bytes of `buf[start..]` went out (possibly fewer than all). The
    /// buffer is the caller's again.
    Sent {
        /// The caller's token given to [`Ring::send`].
        token: u64,
        /// Bytes sent, or why not.
        result: io::Result<usize>,
        /// The buffer given to [`Ring::send`], returned.
        buf: Vec<u8>,
        /// Where in `buf` the send started.
        start: usize,
    },
    /// The descriptor of a [`Ring::poll_readable`] turned readable.
    Polled {
        /// The caller's token given to [`Ring::poll_readable`].
        token: u64,
        /// Whether the poll is still armed.
        more: bool,
    },
}

/// Counters of a [`Ring`] (for the measurements: syscalls per message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// `io_uring_enter` calls made by [`Ring::submit_and_wait`] and by a full submission queue.
    pub enters: u64,
    /// Completions reaped.
    pub completions: u64,
    /// Sends submitted.
    pub sends: u64,
    /// Receive completions that carried bytes.
    pub recvs: u64,
}

/// An io_uring with a provided-buffer ring: multishot accept and receive, sends whose buffers the ring
/// holds until they complete, one `io_uring_enter` per [`Ring::submit_and_wait`] for everything queued.
pub struct Ring {
    ring: IoUring,
    id: u32,
    /// The buffer ring (entries × 16 bytes, page aligned), registered with the kernel as group BGID.
    entries: NonNull<RawBuf>,
    entries_layout: Layout,
    /// The receive buffers: `buffers × buffer_size` bytes; buffer `bid` starts at `bid × buffer_size`.
    data: NonNull<u8>,
    data_layout: Layout,
    buffers: u16,
    buffer_size: u32,
    /// Our copy of the buffer ring's tail (the kernel's is in the first entry's `resv`).
    tail: u16,
    /// Sends in flight: (token, buffer, start). The key is the send's user_data.
    sends: slab::Slab<(u64, Vec<u8>, usize)>,
    recvs_armed: usize,
    polls_armed: usize,
    accepts_armed: usize,
    raw: Vec<(u64, i32, u32)>,
    stats: RingStats,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("id", &self.id)
            .field("buffers", &self.buffers)
            .field("buffer_size", &self.buffer_size)
            .field("sends_in_flight", &self.sends.len())
            .field("recvs_armed", &self.recvs_armed)
            .field("accepts_armed", &self.accepts_armed)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Ring {
    /// A ring (single issuer, task work deferred to [`Ring::submit_and_wait`] where the kernel
    /// supports it) with `config.buffers` receive buffers of `config.buffer_size` bytes registered
    /// and published. Fails when io_uring is unavailable or refused (seccomp, `io_uring_disabled`) or
    /// the sizes are invalid.
    pub fn new(config: RingConfig) -> io::Result<Self> {
        let RingConfig { entries, buffers, buffer_size, defer_taskrun } = config;
        if !buffers.is_power_of_two() || buffers > 32768 || buffer_size == 0 || entries == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "io_uring: invalid ring sizes"));
        }
        let cq = entries.saturating_mul(2);
        let preferred = if defer_taskrun {
            IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_cqsize(cq).build(entries)
        } else {
            // COOP_TASKRUN: the task work that posts a completion waits for this thread's next system
            // call (or wakes it from a sleep) instead of interrupting it with an IPI, which in a VM is
            // an exit per completion (measured: without it the reactor's ring mode took 2.3x the CPU
            // per message of its mio mode in (i)).
            IoUring::builder().setup_single_issuer().setup_coop_taskrun().setup_cqsize(cq).build(entries)
        };
        let ring = preferred.or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))?;
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "io_uring: buffer sizes overflow");
        let entries_layout =
            Layout::from_size_align(usize::from(buffers) * size_of::<RawBuf>(), 4096).map_err(|_| invalid())?;
        let data_len = usize::from(buffers).checked_mul(buffer_size as usize).ok_or_else(invalid)?;
        let data_layout = Layout::from_size_align(data_len, 64).map_err(|_| invalid())?;
        // SAFETY: both layouts have a non-zero size (buffers ≥ 1, buffer_size ≥ 1, checked above).
        // The entries are zeroed: the kernel reads the tail (entry 0's `resv`) as soon as the ring
        // is registered, and it must read 0 (nothing published) then.
        let (entries_ptr, data_ptr) = unsafe { (alloc::alloc_zeroed(entries_layout), alloc::alloc(data_layout)) };
        let (Some(entries_ptr), Some(data_ptr)) = (NonNull::new(entries_ptr.cast::<RawBuf>()), NonNull::new(data_ptr))
        else {
            alloc::handle_alloc_error(data_layout)
        };
        // SAFETY: `entries_ptr` points to `buffers` zeroed, page-aligned entries that stay allocated
        // until the group is unregistered in `Drop` (or forever, if that drop cannot prove the kernel
        // is done with them). The ring is ours and nothing else is registered under BGID.
        let registered =
            unsafe { ring.submitter().register_buf_ring_with_flags(entries_ptr.as_ptr() as u64, buffers, BGID, 0) };
        if let Err(e) = registered {
            // SAFETY: the registration failed, so the kernel never saw these allocations; they were
            // allocated above with exactly these layouts.
            unsafe {
                alloc::dealloc(entries_ptr.as_ptr().cast(), entries_layout);
                alloc::dealloc(data_ptr.as_ptr(), data_layout);
            }
            return Err(e);
        }
        let mut this = Self {
            ring,
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            entries: entries_ptr,
            entries_layout,
            data: data_ptr,
            data_layout,
            buffers,
            buffer_size,
            tail: 0,
            sends: slab::Slab::new(),
            recvs_armed: 0,
            polls_armed: 0,
            accepts_armed: 0,
            raw: Vec::with_capacity(cq as usize),
            stats: RingStats::default(),
        };
        for bid in 0..buffers {
            this.write_entry(bid);
        }
        this.publish_tail();
        Ok(this)
    }

    /// Counters since the ring was made.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Sends in flight, receives and accepts armed: what a drop would have to cancel.
    pub fn in_flight(&self) -> usize {
        self.sends.len() + self.recvs_armed + self.accepts_armed + self.polls_armed
    }

    /// Writes the entry at our tail for buffer `bid` (not yet visible to the kernel: see
    /// [`Ring::publish_tail`]).
    fn write_entry(&mut self, bid: u16) {
        debug_assert!(bid < self.buffers);
        let slot = usize::from(self.tail & (self.buffers - 1));
        let size = self.buffer_size as usize;
        // SAFETY: `slot < buffers`, so the entry lies inside the entries allocation. The kernel does
        // not read this entry's fields now: it reads entries between its head and the published tail,
        // and `slot` is at the tail (not yet published; the ring has `buffers` slots and at most
        // `buffers` buffers exist, so the kernel's head never laps it). Only `addr`, `len` and `bid`
        // are written, not `resv` (which in entry 0 is the tail the kernel may read concurrently).
        // `bid × size` is inside the data allocation, checked by `bid < buffers`.
        unsafe {
            let entry = self.entries.as_ptr().add(slot);
            ptr::addr_of_mut!((*entry).addr).write(self.data.as_ptr().add(usize::from(bid) * size) as u64);
            ptr::addr_of_mut!((*entry).len).write(self.buffer_size);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written so far visible to the kernel (a release store of the tail).
    fn publish_tail(&self) {
        // SAFETY: entry 0's `resv` is the buffer ring's tail (`io_uring_buf_ring`), a 2-byte-aligned
        // u16 inside our live allocation that the kernel only reads; AtomicU16 has the same size and
        // alignment as u16, and every access to it from our side goes through this atomic.
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*self.entries.as_ptr()).resv)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Pushes one submission, submitting what is queued first if the queue is full.
    ///
    /// # Safety
    /// Every buffer `entry` points to must stay valid (and, for a receive, unread and unwritten by us)
    /// until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: passed on from the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.stats.enters += 1;
            self.ring.submit()?;
        }
    }

    /// Arms a multishot accept on `listener` (the listener must outlive the accept: close it only
    /// after the accept ended or the ring dropped).
    pub fn accept(&mut self, listener: &TcpListener) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(KIND_ACCEPT << KIND_SHIFT);
        // SAFETY: a multishot accept without an address buffer points to no memory of ours.
        unsafe { self.push(&entry)? };
        self.accepts_armed += 1;
        Ok(())
    }

    /// Arms a multishot receive on `fd` into the ring's buffers; its completions carry `token` (its
    /// low [`TOKEN_BITS`] bits). The socket must stay open until the receive ended (`more` false);
    /// shut it down or [`Ring::cancel_recv`] to end it.
    pub fn recv(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        let token = token & ((1 << KIND_SHIFT) - 1);
        let entry = opcode::RecvMulti::new(types::Fd(fd), BGID).build().user_data(KIND_RECV << KIND_SHIFT | token);
        // SAFETY: the receive selects its buffers from group BGID, which stays registered and
        // allocated until the ring is dropped (and `Drop` waits for every receive to end); the kernel
        // only writes into buffers that are published, which we never read until a completion hands
        // them out.
        unsafe { self.push(&entry)? };
        self.recvs_armed += 1;
        Ok(())
    }

    /// Queues the cancellation of the receive armed with `token` (submitted by the next
    /// [`Ring::submit`] or [`Ring::submit_and_wait`]). The receive then ends with a completion whose
    /// `more` is false (`ECANCELED`, or whatever it had already come to); completions already posted
    /// for it are still reaped. The socket may be closed before that: the kernel holds its own
    /// reference until the receive ended.
    pub fn cancel_recv(&mut self, token: u64) -> io::Result<()> {
        let target = KIND_RECV << KIND_SHIFT | (token & ((1 << KIND_SHIFT) - 1));
        let entry = opcode::AsyncCancel::new(target).build().user_data(KIND_CANCEL << KIND_SHIFT);
        // SAFETY: a cancellation names its target by user_data and points to no memory of ours.
        unsafe { self.push(&entry) }
    }

    /// Arms a multishot poll for `fd` turning readable; each wakeup is a [`Completion::Polled`] with
    /// `token` (until one says `more` false: then arm it again). `fd` must stay open until then or
    /// until the ring is dropped.
    pub fn poll_readable(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        let token = token & ((1 << KIND_SHIFT) - 1);
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(KIND_POLL << KIND_SHIFT | token);
        // SAFETY: a poll points to no memory of ours.
        unsafe { self.push(&entry)? };
        self.polls_armed += 1;
        Ok(())
    }

    /// Whether nothing is queued and nothing is in flight but polls: no send, receive or accept.
    pub fn is_idle(&mut self) -> bool {
        self.sends.is_empty() && self.recvs_armed == 0 && self.accepts_armed == 0 && !self.has_queued()
    }

    /// Whether submissions are queued that no `io_uring_enter` has passed to the kernel yet.
    pub fn has_queued(&mut self) -> bool {
        !self.ring.submission().is_empty()
    }

    /// Whether the kernel holds completions back in its overflow list (the completion queue was full):
    /// an `io_uring_enter` that gets events ([`Ring::submit_and_wait`]) moves them into the queue.
    pub fn cq_overflowed(&mut self) -> bool {
        self.ring.submission().cq_overflow()
    }

    /// Submits everything queued without waiting for anything (one `io_uring_enter`, none when the
    /// queue is empty).
    pub fn submit(&mut self) -> io::Result<()> {
        if !self.has_queued() {
            return Ok(());
        }
        self.stats.enters += 1;
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Queues a send of `buf[start..]` on `fd` (`MSG_NOSIGNAL`); the buffer is held until its
    /// [`Completion::Sent`], which returns it. Submitted by the next [`Ring::submit_and_wait`].
    /// `nowait`: `MSG_DONTWAIT` too, so the send completes when it is submitted, with what the socket
    /// took (possibly less) or `EAGAIN`, instead of waiting in the kernel for room.
    ///
    /// # Panics
    /// If `start >= buf.len()`.
    pub fn send(&mut self, fd: RawFd, token: u64, buf: Vec<u8>, start: usize, nowait: bool) -> io::Result<()> {
        assert!(start < buf.len(), "io_uring send: nothing to send");
        let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
        let slot = self.sends.insert((token, buf, start));
        let ptr = self.sends[slot].1[start..].as_ptr();
        let flags = if nowait { libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT } else { libc::MSG_NOSIGNAL };
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(flags)
            .build()
            .user_data(KIND_SEND << KIND_SHIFT | slot as u64);
        // SAFETY: `ptr..ptr + len` lies in the heap buffer of the Vec now held in `self.sends[slot]`;
        // it stays there, unmoved (moving a Vec does not move its heap buffer) and unmodified, until
        // `reap` takes it out on this send's completion, or `Drop` proves the send ended (else leaks).
        if let Err(e) = unsafe { self.push(&entry) } {
            self.sends.remove(slot);
            return Err(e);
        }
        self.stats.sends += 1;
        Ok(())
    }

    /// Submits everything queued and waits until at least `want` completions are ready or `timeout`
    /// passes: one `io_uring_enter`. A timeout or a signal is not an error (nothing is ready).
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.stats.enters += 1;
        let result = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves every ready completion into `out` (appended).
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        self.raw.clear();
        for cqe in self.ring.completion() {
            self.raw.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        self.stats.completions += self.raw.len() as u64;
        for i in 0..self.raw.len() {
            let (user_data, res, flags) = self.raw[i];
            let more = cqueue::more(flags);
            let low = (user_data & ((1 << KIND_SHIFT) - 1)) as u32;
            if user_data >> KIND_SHIFT == KIND_CANCEL {
                continue; // its target's own completion says how the receive ended
            }
            match user_data >> KIND_SHIFT {
                KIND_ACCEPT => {
                    if !more {
                        self.accepts_armed -= 1;
                    }
                    let result = if res < 0 {
                        Err(io::Error::from_raw_os_error(-res))
                    } else {
                        // SAFETY: a successful accept's result is a new descriptor that the kernel
                        // just opened for this process and that nothing else refers to: ours to own.
                        Ok(unsafe { TcpStream::from_raw_fd(res) })
                    };
                    out.push(Completion::Accepted { result, more });
                }
                KIND_RECV => {
                    if !more {
                        self.recvs_armed -= 1;
                    }
                    let buffer = cqueue::buffer_select(flags);
                    let received = match (res, buffer) {
                        (n, Some(bid)) if n > 0 && bid < self.buffers && n as u32 <= self.buffer_size => {
                            self.stats.recvs += 1;
                            Received::Data(RecvBuf { ring: self.id, bid, len: n as usize })
                        }
                        (n, buffer) => {
                            // A buffer that carries nothing usable goes straight back.
                            if let Some(bid) = buffer.filter(|&b| b < self.buffers) {
                                self.write_entry(bid);
                                self.publish_tail();
                            }
                            match n {
                                0 => Received::Eof,
                                n if n < 0 => Received::Error(io::Error::from_raw_os_error(-n)),
                                _ => Received::Error(io::Error::other("io_uring: receive without a valid buffer")),
                            }
                        }
                    };
                    out.push(Completion::Recv { token: user_data & ((1 << KIND_SHIFT) - 1), received, more });
                }
                KIND_POLL => {
                    if !more {
                        self.polls_armed -= 1;
                    }
                    out.push(Completion::Polled { token: user_data & ((1 << KIND_SHIFT) - 1), more });
                }
                KIND_SEND => {
                    let Some((token, buf, start)) = self.sends.try_remove(low as usize) else {
                        continue;
                    };
                    let result = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as usize) };
                    out.push(Completion::Sent { token, result, buf, start });
                }
                _ => {}
            }
        }
    }

    /// The bytes a receive put into `buf`, to read and modify in place (unmasking) until recycled.
    ///
    /// # Panics
    /// If `buf` came from another ring.
    pub fn buf_mut(&mut self, buf: &RecvBuf) -> &mut [u8] {
        assert_eq!(buf.ring, self.id, "io_uring: a receive buffer of another ring");
        // SAFETY: `buf.bid < buffers` and `buf.len <= buffer_size` (checked in `reap` before the
        // RecvBuf was made), so the range lies in the data allocation, inside buffer `bid`. The kernel
        // filled it and gave it to us with the completion: it is not in the buffer ring, so the
        // kernel does not write it until `recycle` publishes it again, which takes the RecvBuf by
        // value (there is one RecvBuf per handed-out buffer), and the returned slice borrows `self`
        // mutably, so it cannot outlive the call to `recycle`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.data.as_ptr().add(usize::from(buf.bid) * self.buffer_size as usize),
                buf.len,
            )
        }
    }

    /// Gives a receive buffer back to the kernel.
    ///
    /// # Panics
    /// If `buf` came from another ring.
    pub fn recycle(&mut self, buf: RecvBuf) {
        assert_eq!(buf.ring, self.id, "io_uring: a receive buffer of another ring");
        self.write_entry(buf.bid);
        self.publish_tail();
    }
}

impl std::os::fd::AsRawFd for Ring {
    /// The ring's descriptor: pollable, readable while completions wait to be reaped (with
    /// [`RingConfig::defer_taskrun`] false; a deferred ring posts them only when entered).
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight() > 0 {
            let _ = self.ring.submit();
            let ts = types::Timespec::new().sec(1);
            let _ = self.ring.submitter().register_sync_cancel(Some(ts), types::CancelBuilder::any());
            let mut done = Vec::new();
            for _ in 0..100 {
                self.reap(&mut done);
                done.clear(); // sends' buffers are ours again once their completion is reaped
                if self.in_flight() == 0 {
                    break;
                }
                let _ = self.submit_and_wait(1, Some(Duration::from_millis(10)));
            }
            if self.in_flight() > 0 {
                // The kernel may still use them: leak rather than free under it.
                for (_, buf, _) in self.sends.drain() {
                    std::mem::forget(buf);
                }
                return;
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: nothing is in flight (every receive ended, every send completed), and the buffer
        // group is unregistered, so the kernel holds no pointer into either allocation; both were
        // allocated in `new` with these layouts. Any RecvBuf still held elsewhere cannot be read:
        // `buf_mut` needs this ring.
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.data.as_ptr(), self.data_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn small() -> RingConfig {
        RingConfig { entries: 64, buffers: 8, buffer_size: 64, defer_taskrun: true }
    }

    /// A connected client and its non-blocking server side.
    fn connected_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn wait_for(ring: &mut Ring, out: &mut Vec<Completion>, pred: impl Fn(&Completion) -> bool) {
        for _ in 0..200 {
            ring.submit_and_wait(1, Some(Duration::from_millis(20))).unwrap();
            ring.reap(out);
            if out.iter().any(&pred) {
                return;
            }
        }
        panic!("no such completion: {out:?}");
    }

    #[test]
    fn rejects_bad_sizes() {
        for config in [RingConfig { buffers: 3, ..small() }, RingConfig { buffer_size: 0, ..small() }] {
            assert_eq!(Ring::new(config).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }

    // accept → recv into provided buffers (data read and modified in place, recycled) → send back →
    // EOF ends the receive; every buffer cycles through the ring more than once.
    #[test]
    fn accept_recv_send_roundtrip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut ring = Ring::new(small()).unwrap();
        ring.accept(&listener).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Accepted { .. }));
        let Some(Completion::Accepted { result, more: true }) = out.pop() else { panic!("{out:?}") };
        let server = result.unwrap();
        ring.recv(server.as_raw_fd(), 7).unwrap();
        // 20 rounds of 50 bytes through 8 buffers of 64 bytes: each buffer is reused.
        for round in 0..20u8 {
            let msg = vec![round; 50];
            client.write_all(&msg).unwrap();
            let mut got = Vec::new();
            while got.len() < msg.len() {
                out.clear();
                wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { .. }));
                for c in out.drain(..) {
                    let Completion::Recv { token: 7, received: Received::Data(buf), more: true } = c else {
                        panic!("{c:?}")
                    };
                    let data = ring.buf_mut(&buf);
                    data.iter_mut().for_each(|b| *b = b.wrapping_add(1));
                    got.extend_from_slice(data);
                    ring.recycle(buf);
                }
            }
            ring.send(server.as_raw_fd(), 9, got, 0, false).unwrap();
            out.clear();
            wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Sent { .. }));
            let Some(Completion::Sent { token: 9, result, buf, start: 0 }) = out.pop() else { panic!("{out:?}") };
            assert_eq!(result.unwrap(), 50);
            let mut echo = vec![0; 50];
            client.read_exact(&mut echo).unwrap();
            assert_eq!(echo, vec![round + 1; 50]);
            assert_eq!(buf, echo);
        }
        drop(client);
        out.clear();
        wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { received: Received::Eof, .. }));
        assert!(matches!(out.last(), Some(Completion::Recv { token: 7, received: Received::Eof, more: false })));
        assert_eq!(ring.in_flight(), 1, "only the accept is left");
        let stats = ring.stats();
        assert!(stats.recvs >= 20 && stats.sends == 20, "{stats:?}");
    }

    // A receive on a socket that gets more than the buffer ring holds, without recycling, runs the
    // ring dry: the receive ends with ENOBUFS; recycling and re-arming brings the rest.
    #[test]
    fn dry_buffer_ring_ends_the_receive_and_rearming_resumes() {
        let (mut client, server) = connected_pair();
        let mut ring = Ring::new(small()).unwrap();
        let total = 8 * 64 + 200;
        client.write_all(&vec![5u8; total]).unwrap();
        ring.recv(server.as_raw_fd(), 1).unwrap();
        let mut out = Vec::new();
        wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { more: false, .. }));
        let mut held = Vec::new();
        let mut got = 0;
        for c in out.drain(..) {
            match c {
                Completion::Recv { received: Received::Data(buf), .. } => {
                    got += buf.len();
                    held.push(buf);
                }
                Completion::Recv { received: Received::Error(e), more: false, .. } => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(held.len(), 8, "every buffer handed out");
        for buf in held {
            ring.recycle(buf);
        }
        ring.recv(server.as_raw_fd(), 1).unwrap();
        while got < total {
            out.clear();
            wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { .. }));
            for c in out.drain(..) {
                if let Completion::Recv { received: Received::Data(buf), .. } = c {
                    assert!(ring.buf_mut(&buf).iter().all(|&b| b == 5));
                    got += buf.len();
                    ring.recycle(buf);
                }
            }
        }
        assert_eq!(got, total);
        // Dropped with the receive armed: Drop cancels it and frees (nothing leaks to the kernel).
        assert_eq!(ring.in_flight(), 1);
    }

    /// Waits on `ring`'s descriptor through epoll (mio), as the reactor does; true if it turned readable.
    fn readable_within(poll: &mut mio::Poll, ms: u64) -> bool {
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(ms))).ok();
        events.iter().any(|e| e.token() == mio::Token(1) && e.is_readable())
    }

    // The reactor waits in epoll_wait, not in io_uring_enter: a ring made without DEFER_TASKRUN must
    // wake it when a receive completes, with nothing entered in between.
    #[test]
    fn an_undeferred_ring_fd_turns_readable_through_epoll() {
        let (mut client, server) = connected_pair();
        let mut ring = Ring::new(RingConfig { defer_taskrun: false, ..small() }).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let fd = ring.as_raw_fd();
        poll.registry().register(&mut mio::unix::SourceFd(&fd), mio::Token(1), mio::Interest::READABLE).unwrap();
        ring.recv(server.as_raw_fd(), (1 << 40) | 3).unwrap();
        ring.submit().unwrap();
        assert!(!ring.has_queued());
        assert!(!readable_within(&mut poll, 50), "nothing arrived yet");
        for round in 0..3u8 {
            client.write_all(&[round; 10]).unwrap();
            let mut seen = false;
            for _ in 0..20 {
                // EINTR (the task work that posts the completion) may end the first wait early.
                if readable_within(&mut poll, 100) {
                    seen = true;
                    break;
                }
                let mut out = Vec::new();
                ring.reap(&mut out);
                if !out.is_empty() {
                    panic!("completion posted but the fd never turned readable: {out:?}");
                }
            }
            assert!(seen, "round {round}: the ring's fd did not turn readable");
            let mut out = Vec::new();
            ring.reap(&mut out);
            let Some(Completion::Recv { token, received: Received::Data(buf), more: true }) = out.pop() else {
                panic!("{out:?}")
            };
            assert_eq!(token, (1 << 40) | 3, "the whole 56-bit token comes back");
            assert_eq!(ring.buf_mut(&buf), &[round; 10]);
            ring.recycle(buf);
        }
    }

    // A cancelled receive ends (more false) and takes nothing sent after it.
    #[test]
    fn a_cancelled_receive_ends_and_reads_no_more() {
        let (mut client, mut server) = connected_pair();
        let mut ring = Ring::new(small()).unwrap();
        ring.recv(server.as_raw_fd(), 5).unwrap();
        client.write_all(b"before").unwrap();
        let mut out = Vec::new();
        wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { .. }));
        for c in out.drain(..) {
            if let Completion::Recv { received: Received::Data(buf), .. } = c {
                ring.recycle(buf);
            }
        }
        ring.cancel_recv(5).unwrap();
        wait_for(&mut ring, &mut out, |c| matches!(c, Completion::Recv { more: false, .. }));
        assert!(
            matches!(out.last(), Some(Completion::Recv { token: 5, received: Received::Error(e), more: false })
                if e.raw_os_error() == Some(libc::ECANCELED)),
            "{out:?}"
        );
        assert_eq!(ring.in_flight(), 0);
        client.write_all(b"after").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ring.submit_and_wait(0, Some(Duration::from_millis(10))).unwrap();
        out.clear();
        ring.reap(&mut out);
        assert!(out.is_empty(), "{out:?}");
        let mut rest = [0u8; 16];
        let n = server.read(&mut rest).unwrap();
        assert_eq!(&rest[..n], b"after", "the bytes stay in the socket");
    }

    #[test]
    #[should_panic(expected = "another ring")]
    fn a_buffer_of_another_ring_is_refused() {
        let mut a = Ring::new(small()).unwrap();
        let b = Ring::new(small()).unwrap();
        let foreign = RecvBuf { ring: b.id, bid: 0, len: 1 };
        let _ = a.buf_mut(&foreign);
    }

    // A send still in flight when the ring drops (a peer that never reads, a big buffer): Drop cancels
    // it and returns without freeing memory under the kernel.
    #[test]
    fn drop_with_a_send_in_flight() {
        let (client, server) = connected_pair();
        let mut ring = Ring::new(small()).unwrap();
        ring.send(server.as_raw_fd(), 1, vec![1; 64 << 20], 0, false).unwrap();
        ring.submit_and_wait(0, Some(Duration::from_millis(10))).unwrap();
        drop(ring);
        drop(client);
    }
}

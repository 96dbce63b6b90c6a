//! The one module that may use `unsafe`: thin, safe wrappers over the few OS calls the standard library,
//! mio and socket2 do not offer. Every `unsafe` block carries a `// SAFETY:` argument and a test below.
//!
//! Owns: a non-blocking `recv` on a blocking socket (`MSG_DONTWAIT`), socket writes that never raise
//! `SIGPIPE` ([`NoSigPipe`]: `send`/`sendmsg` with `MSG_NOSIGNAL`), the process's CPU time
//! (`getrusage`), a cheap cycle counter for the load generator's hot path, and raw-deflate streams over
//! stock zlib ([`Deflater`], [`Inflater`]: permessage-deflate's backend, with every byte zlib allocates
//! counted in [`zlib_bytes`]). Never touches: WebSocket state, buffers' ownership beyond the call.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpStream;
use std::time::Duration;

// ------------------------------------------------------------------------------------------------
// io_uring (EXPERIMENTAL, feature `io-uring`): its own file, src/sys/uring.rs.
#[cfg(all(feature = "io-uring", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(feature = "io-uring")))]
pub mod uring;

/// Reads what `stream` holds right now, without blocking: `MSG_DONTWAIT` applies to this one call,
/// whereas switching the socket to non-blocking mode would also make another thread's blocking writes on
/// the same socket fail with `WouldBlock`. Fails with `WouldBlock` when nothing is there; `Ok(0)` means
/// the peer closed.
#[cfg(unix)]
pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call (an exclusive borrow), and
    // the descriptor is `stream`'s own, kept open by the shared borrow for the whole call. `recv` writes at
    // most `buf.len()` bytes and returns how many, or -1 with errno set.
    let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Elsewhere a plain (blocking) read keeps it correct; the client only takes this path on unix.
#[cfg(not(unix))]
pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    (&*stream).read(buf)
}

/// Sends SIGKILL to every process of the process group `pgid` (a child started with
/// `CommandExt::process_group(0)` leads a group whose id is its pid), so that a test can stop a program
/// together with the helpers it forked.
#[cfg(unix)]
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        // 0 would signal our own group and 1 (as -1) every process we may signal: never that.
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid addresses the
    // process group, and pgid > 1 was checked so the call can only reach that group.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time this process used so far: (user, system). Zero when the OS cannot tell.
#[cfg(unix)]
pub fn process_cpu_time() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: RUSAGE_SELF with a valid pointer to a live, writable `rusage`; getrusage only writes into it.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zeroed is a valid `rusage` (plain integers), and getrusage succeeded, filling it.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.clamp(0, 999_999) as u32) * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Without `getrusage`: unknown (zero).
#[cfg(not(unix))]
pub fn process_cpu_time() -> (Duration, Duration) {
    (Duration::ZERO, Duration::ZERO)
}

/// A cheap monotonic tick counter for hot paths: the CPU's time-stamp counter on x86_64 (the kernel
/// trusts it as its clocksource on the machines this is measured on), nanoseconds since a process epoch
/// elsewhere. Calibrate ticks against `Instant` before turning them into time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn ticks() -> u64 {
    // SAFETY: RDTSC has no preconditions; every x86_64 CPU has it. (Newer compilers consider the intrinsic
    // safe, hence the allow.)
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Nanoseconds since the first call (no time-stamp counter on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub fn ticks() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

// ---- writes that never raise SIGPIPE -------------------------------------------------------------------

/// A socket borrowed for writing so that a peer that has gone (EPIPE) is an error and never a `SIGPIPE`.
///
/// `std` writes one slice with `send(MSG_NOSIGNAL)` on Linux, but `write_vectored` is a plain `writev`,
/// which raises `SIGPIPE` on a reset peer; a host whose `main` is not Rust's (which ignores the signal)
/// would be killed by it. Here the vectored write is a `sendmsg` with `MSG_NOSIGNAL` too. On systems
/// without `MSG_NOSIGNAL` it forwards to the socket's own `Write`.
#[derive(Debug)]
pub struct NoSigPipe<'a, S>(pub &'a S);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl<S: std::os::fd::AsRawFd> io::Write for NoSigPipe<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call (a shared borrow), and
        // the descriptor is the socket's own, kept open by the borrow in `self`. `send` reads at most
        // `buf.len()` bytes and returns how many it took, or -1 with errno set.
        let n = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // More than IOV_MAX (1024 on Linux) would fail with EINVAL: offer the first 1024, as writev's
        // callers must anyway be ready for a short write.
        let bufs = &bufs[..bufs.len().min(1024)];
        // SAFETY: a zeroed `msghdr` is valid (null name and control, zero lengths). `IoSlice` is
        // guaranteed ABI-compatible with `iovec` on unix, so `msg_iov` points at `bufs.len()` valid
        // iovecs, each valid for reads of its length, borrowed for the whole call; sendmsg only reads them
        // (the pointer is `*mut` in the C type only). The descriptor is the socket's own, kept open by
        // the borrow in `self`.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len() as _;
            libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl<S> io::Write for NoSigPipe<'_, S>
where
    for<'s> &'s S: io::Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.0).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&mut &*self.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---- zlib: raw deflate streams (RFC 1951) for permessage-deflate -------------------------------------

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes zlib asked for through [`Deflater`] and [`Inflater`] and has not freed, in this process.
static ZLIB_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes zlib holds right now for every [`Deflater`] and [`Inflater`] of this process (what it asked for;
/// malloc's own overhead is not counted). Zero while no stream exists: an idle permessage-deflate
/// connection that owns no stream adds nothing here.
pub fn zlib_bytes() -> usize {
    ZLIB_BYTES.load(Ordering::Relaxed)
}

/// Size of the header in front of each zlib allocation that remembers its length for `zfree`.
const ZHEADER: usize = 16;

unsafe extern "C" fn zalloc(opaque: libz_sys::voidpf, items: libz_sys::uInt, size: libz_sys::uInt) -> libz_sys::voidpf {
    let Some(n) = (items as usize).checked_mul(size as usize).and_then(|n| n.checked_add(ZHEADER)) else {
        return std::ptr::null_mut();
    };
    // SAFETY: calloc takes plain integers; a null result is handed to zlib, which reports Z_MEM_ERROR.
    // Zeroed memory: zlib reads parts of its window before writing them in some paths (valgrind-clean).
    let p = unsafe { libc::calloc(1, n) }.cast::<u8>();
    if p.is_null() {
        return std::ptr::null_mut();
    }
    ZLIB_BYTES.fetch_add(n - ZHEADER, Ordering::Relaxed);
    // SAFETY: `opaque` is the `held` counter of the `Stream` this z_stream lives in (set by `new_stream`,
    // which boxes both together, so the pointer stays valid while zlib can call us).
    unsafe { *opaque.cast::<usize>() += n - ZHEADER };
    // SAFETY: `p` is a fresh allocation of `n >= ZHEADER` bytes, aligned for any type (malloc's
    // guarantee, 16 on x86_64 and aarch64), so the first word may hold the length, and `p + ZHEADER`
    // stays inside it (and keeps 16-byte alignment for zlib).
    unsafe {
        p.cast::<usize>().write(n);
        p.add(ZHEADER).cast()
    }
}

unsafe extern "C" fn zfree(opaque: libz_sys::voidpf, address: libz_sys::voidpf) {
    if address.is_null() {
        return;
    }
    // SAFETY: zlib frees only what `zalloc` returned, so `address - ZHEADER` is the start of that
    // allocation and its first word is the length `zalloc` wrote there.
    unsafe {
        let p = address.cast::<u8>().sub(ZHEADER);
        let n = p.cast::<usize>().read();
        ZLIB_BYTES.fetch_sub(n - ZHEADER, Ordering::Relaxed);
        *opaque.cast::<usize>() -= n - ZHEADER;
        libc::free(p.cast());
    }
}

/// A z_stream and the bytes zlib holds for it.
struct Stream {
    z: libz_sys::z_stream,
    held: usize,
}

/// A zeroed stream with our allocator, boxed: zlib keeps a pointer back to the stream in its state, and
/// the allocator one to `held`, so neither may move after `*Init2_`.
fn new_stream() -> Box<Stream> {
    let mut stream = Box::new(Stream {
        z: libz_sys::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        },
        held: 0,
    });
    stream.z.opaque = std::ptr::addr_of_mut!(stream.held).cast();
    stream
}

/// The most output [`Inflater::inflate_checked`] produces between two calls of its check (16 KiB).
pub const INFLATE_CHUNK: usize = 16 * 1024;

/// What went wrong in a zlib stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZlibError {
    /// A parameter out of zlib's range (window bits 9-15 for a compressor, 8-15 for a decompressor;
    /// memLevel 1-9; level -1-9).
    InvalidParameter,
    /// zlib could not allocate its state.
    OutOfMemory,
    /// The input is not a valid deflate stream (`Z_DATA_ERROR`, or a preset dictionary was asked for).
    Corrupt,
    /// Inflating would produce more than the limit given to [`Inflater::inflate`]; nothing past the limit
    /// was allocated.
    TooLarge,
    /// The check given to [`Inflater::inflate_checked`] refused a chunk of output; inflating stopped there.
    Rejected,
}

/// A raw-deflate compressor (zlib's `deflateInit2` with negative window bits): window bits and memLevel
/// as given, so its memory follows zlib's formula `(1 << (windowBits + 2)) + (1 << (memLevel + 9))`
/// plus about 6 KiB of state.
pub struct Deflater {
    stream: Box<Stream>,
}

// SAFETY: the stream is owned exclusively by this value (no other pointer to it or its state exists
// outside zlib's own back-pointer), and zlib keeps no thread-affine state, so moving it to another
// thread is sound.
unsafe impl Send for Deflater {}

impl Deflater {
    /// A compressor at `level` (0-9, or -1 for zlib's default 6) with a `2^window_bits`-byte window
    /// (9-15: stock zlib refuses 8 for raw deflate) and `mem_level` (1-9).
    pub fn new(level: i32, window_bits: u8, mem_level: u8) -> Result<Self, ZlibError> {
        if !(9..=15).contains(&window_bits) || !(1..=9).contains(&mem_level) || !(-1..=9).contains(&level) {
            return Err(ZlibError::InvalidParameter);
        }
        let mut stream = new_stream();
        // SAFETY: `stream` is a valid, boxed (never moving) z_stream with our allocator; the version
        // string and struct size are the ones libz-sys was built against, as deflateInit2_ requires.
        let rc = unsafe {
            libz_sys::deflateInit2_(
                &mut stream.z,
                level,
                libz_sys::Z_DEFLATED,
                -i32::from(window_bits),
                i32::from(mem_level),
                libz_sys::Z_DEFAULT_STRATEGY,
                libz_sys::zlibVersion(),
                std::mem::size_of::<libz_sys::z_stream>() as i32,
            )
        };
        match rc {
            libz_sys::Z_OK => Ok(Self { stream }),
            libz_sys::Z_MEM_ERROR => Err(ZlibError::OutOfMemory),
            _ => Err(ZlibError::InvalidParameter),
        }
    }

    /// Compresses `input` and sync-flushes (`Z_SYNC_FLUSH`), appending to `out`; the output ends with
    /// the empty stored block `00 00 ff ff` (permessage-deflate removes it, RFC 7692 §7.2.1).
    pub fn compress_sync(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ZlibError> {
        let s = &mut self.stream.z;
        s.next_in = input.as_ptr().cast_mut();
        s.avail_in = input.len().try_into().map_err(|_| ZlibError::InvalidParameter)?;
        out.reserve(input.len() / 2 + 64);
        loop {
            let spare = (out.capacity() - out.len()).min(u32::MAX as usize);
            // SAFETY: `next_out` points at the `spare` writable bytes past `out.len()` inside `out`'s
            // allocation; `next_in` at `avail_in` readable bytes of `input` (zlib never writes through it).
            // Both stay valid for the call; `out.set_len` below covers exactly the bytes zlib wrote.
            let rc = unsafe {
                s.next_out = out.as_mut_ptr().add(out.len());
                s.avail_out = spare as u32;
                let rc = libz_sys::deflate(s, libz_sys::Z_SYNC_FLUSH);
                out.set_len(out.len() + (spare - s.avail_out as usize));
                rc
            };
            match rc {
                libz_sys::Z_OK | libz_sys::Z_BUF_ERROR => {}
                _ => return Err(ZlibError::Corrupt),
            }
            if s.avail_in == 0 && s.avail_out != 0 {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        Ok(())
    }

    /// Forgets the window (no context takeover): the next message is compressed as if it were the first.
    /// Keeps the memory.
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised by deflateInit2_ in `new` and not ended.
        unsafe { libz_sys::deflateReset(&mut self.stream.z) };
    }
}

impl Deflater {
    /// Bytes zlib holds for this stream now.
    pub fn memory(&self) -> usize {
        self.stream.held
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("held", &self.stream.held).finish()
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new`; deflateEnd frees its state through `zfree` once.
        unsafe { libz_sys::deflateEnd(&mut self.stream.z) };
    }
}

/// A raw-deflate decompressor (zlib's `inflateInit2` with negative window bits). zlib allocates its
/// `2^window_bits`-byte window on the first call that needs it.
pub struct Inflater {
    stream: Box<Stream>,
}

// SAFETY: as for `Deflater`: exclusively owned, no thread-affine state.
unsafe impl Send for Inflater {}

impl Inflater {
    /// A decompressor for streams made with a window of at most `2^window_bits` bytes (8-15).
    pub fn new(window_bits: u8) -> Result<Self, ZlibError> {
        if !(8..=15).contains(&window_bits) {
            return Err(ZlibError::InvalidParameter);
        }
        let mut stream = new_stream();
        // SAFETY: as in `Deflater::new`.
        let rc = unsafe {
            libz_sys::inflateInit2_(
                &mut stream.z,
                -i32::from(window_bits),
                libz_sys::zlibVersion(),
                std::mem::size_of::<libz_sys::z_stream>() as i32,
            )
        };
        match rc {
            libz_sys::Z_OK => Ok(Self { stream }),
            libz_sys::Z_MEM_ERROR => Err(ZlibError::OutOfMemory),
            _ => Err(ZlibError::InvalidParameter),
        }
    }

    /// Inflates `input` (sync-flushed), appending to `out`, and fails with [`ZlibError::TooLarge`] as soon
    /// as `out` would pass `limit` bytes: `out` never grows beyond `limit + 1`. Returns `true` when the
    /// stream ended (a final block): the decompressor must then be reset before it is used again.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, ZlibError> {
        self.inflate_checked(input, out, limit, &mut |_| true)
    }

    /// [`Inflater::inflate`], handing `check` each piece of output as soon as it is produced (at most
    /// [`INFLATE_CHUNK`] bytes at a time, in order): when `check` returns `false`, inflating stops with
    /// [`ZlibError::Rejected`] (used to validate inflated text as it comes, so that a message whose start
    /// is invalid UTF-8 is refused without inflating the rest).
    pub fn inflate_checked(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        check: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<bool, ZlibError> {
        let s = &mut self.stream.z;
        s.next_in = input.as_ptr().cast_mut();
        s.avail_in = input.len().try_into().map_err(|_| ZlibError::InvalidParameter)?;
        let result = loop {
            if out.len() > limit {
                break Err(ZlibError::TooLarge);
            }
            if out.capacity() == out.len() {
                // Grow by doubling from 4 KiB, but never past one byte over the limit.
                let want = out.len().max(4096).min(limit + 1 - out.len());
                out.reserve_exact(want);
            }
            let spare = (out.capacity() - out.len()).min(limit + 1 - out.len()).min(INFLATE_CHUNK);
            let before = out.len();
            // SAFETY: as in `Deflater::compress_sync`: `next_out` covers the `spare` bytes after
            // `out.len()` inside `out`'s allocation, `next_in` the unread part of `input`; zlib writes
            // only within them and `set_len` covers what it wrote.
            let rc = unsafe {
                s.next_out = out.as_mut_ptr().add(out.len());
                s.avail_out = spare as u32;
                let rc = libz_sys::inflate(s, libz_sys::Z_SYNC_FLUSH);
                out.set_len(out.len() + (spare - s.avail_out as usize));
                rc
            };
            if out.len() > before && !check(&out[before..]) {
                break Err(ZlibError::Rejected);
            }
            match rc {
                libz_sys::Z_STREAM_END => break if out.len() > limit { Err(ZlibError::TooLarge) } else { Ok(true) },
                libz_sys::Z_OK | libz_sys::Z_BUF_ERROR => {
                    if s.avail_in == 0 && s.avail_out != 0 {
                        break if out.len() > limit { Err(ZlibError::TooLarge) } else { Ok(false) };
                    }
                    if rc == libz_sys::Z_BUF_ERROR && s.avail_out != 0 {
                        // No progress possible with output space left: cannot happen with input left.
                        break Err(ZlibError::Corrupt);
                    }
                }
                libz_sys::Z_MEM_ERROR => break Err(ZlibError::OutOfMemory),
                _ => break Err(ZlibError::Corrupt),
            }
        };
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        result
    }

    /// Forgets the window (the peer compresses without context takeover, or after an error or a final
    /// block). Keeps the memory.
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised by inflateInit2_ in `new` and not ended.
        unsafe { libz_sys::inflateReset(&mut self.stream.z) };
    }
}

impl Inflater {
    /// Bytes zlib holds for this stream now.
    pub fn memory(&self) -> usize {
        self.stream.held
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("held", &self.stream.held).finish()
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new`; inflateEnd frees its state through `zfree` once.
        unsafe { libz_sys::inflateEnd(&mut self.stream.z) };
    }
}

// ---- a counting allocator, for measurements ------------------------------------------------------

/// A global allocator over [`std::alloc::System`] that counts the bytes live, for examples and tests
/// that measure what a piece of code allocates:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: wsloop::sys::CountingAllocator = wsloop::sys::CountingAllocator::new();
/// ```
#[derive(Debug)]
pub struct CountingAllocator {
    live: AtomicUsize,
}

impl CountingAllocator {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self { live: AtomicUsize::new(0) }
    }

    /// Bytes allocated through this allocator and not freed.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees (alignment, size, ownership) hold; the counter is only arithmetic on the side.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        self.live.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by its contract.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.live.fetch_add(new_size, Ordering::Relaxed);
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::thread;
    use std::time::Instant;

    /// Writes vectored to a socket whose peer has reset it, with SIGPIPE blocked in this thread (so a
    /// raised one stays pending instead of being ignored or killing the process), until the write fails;
    /// then reports whether a SIGPIPE is pending, and consumes it.
    #[cfg(target_os = "linux")]
    fn sigpipe_raised_by(write: fn(&TcpStream, &[std::io::IoSlice<'_>]) -> std::io::Result<usize>) -> bool {
        thread::spawn(move || {
            // SAFETY: sigset_t values are initialised by sigemptyset before use; pthread_sigmask,
            // sigpending and sigtimedwait only read and write the sets passed by valid pointers, and
            // affect this spawned thread's mask only.
            unsafe {
                let mut pipe: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut pipe);
                libc::sigaddset(&mut pipe, libc::SIGPIPE);
                assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, std::ptr::null_mut()), 0);
            }
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (peer, _) = listener.accept().unwrap();
            socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
            drop(peer); // an RST: the next writes fail with ECONNRESET, then EPIPE
            let part = [7u8; 64];
            let bufs = [std::io::IoSlice::new(&part), std::io::IoSlice::new(&part)];
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match write(&ours, &bufs) {
                    Ok(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
                    Ok(_) => panic!("writes to a reset peer kept succeeding"),
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
                    Err(_) => {} // ECONNRESET first; the one after it is EPIPE
                }
            }
            // SAFETY: as above; a zero timeout makes sigtimedwait a poll that consumes a pending SIGPIPE.
            unsafe {
                let mut pending: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut pending);
                assert_eq!(libc::sigpending(&mut pending), 0);
                let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
                let mut pipe: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut pipe);
                libc::sigaddset(&mut pipe, libc::SIGPIPE);
                let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                while libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
                raised
            }
        })
        .join()
        .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn vectored_writes_to_a_gone_peer_fail_without_sigpipe() {
        // The control: a plain writev does raise it, so the check below can fail.
        assert!(sigpipe_raised_by(|s, bufs| (&mut &*s).write_vectored(bufs)), "writev raised no SIGPIPE");
        assert!(!sigpipe_raised_by(|s, bufs| NoSigPipe(s).write_vectored(bufs)), "sendmsg raised SIGPIPE");
        assert!(!sigpipe_raised_by(|s, bufs| NoSigPipe(s).write(&bufs[0])), "send raised SIGPIPE");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn no_sigpipe_writes_deliver_every_slice_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let n = NoSigPipe(&ours)
            .write_vectored(&[std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b""), std::io::IoSlice::new(b"cde")])
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(NoSigPipe(&ours).write(b"f").unwrap(), 1);
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcdef");
    }

    #[test]
    fn recv_now_takes_what_is_there_and_leaves_the_socket_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        if cfg!(unix) {
            let empty = recv_now(&ours, &mut buf).unwrap_err();
            assert_eq!(empty.kind(), ErrorKind::WouldBlock);
        }
        peer.write_all(b"hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let n = loop {
            match recv_now(&ours, &mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        // The socket itself is still blocking: a plain read waits for the timeout instead of failing at once.
        ours.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let started = Instant::now();
        let err = (&ours).read(&mut buf).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(40), "{:?}", started.elapsed());
        // The peer closes: recv_now reports it as Ok(0).
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match recv_now(&ours, &mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => thread::yield_now(),
                other => panic!("expected EOF, got {other:?}"),
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn kill_process_group_stops_the_group_and_refuses_our_own() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30"]).process_group(0).spawn().unwrap();
        thread::sleep(Duration::from_millis(50));
        kill_process_group(child.id()).unwrap();
        let started = Instant::now();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(kill_process_group(0).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(kill_process_group(1).unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn process_cpu_time_grows_with_work() {
        let (user0, sys0) = process_cpu_time();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let (user1, sys1) = process_cpu_time();
        assert!(user1 + sys1 > user0 + sys0, "{user0:?}+{sys0:?} -> {user1:?}+{sys1:?}");
        assert!(user1 + sys1 < Duration::from_secs(24 * 3600));
    }

    #[test]
    fn ticks_never_go_backwards_and_advance() {
        let a = ticks();
        thread::sleep(Duration::from_millis(2));
        let b = ticks();
        assert!(b > a, "{a} -> {b}");
    }

    #[test]
    fn deflate_then_inflate_round_trips_and_counts_zlib_memory() {
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| format!("message {} ", i % 97).into_bytes()).collect();
        let mut d = Deflater::new(6, 11, 1).unwrap();
        let held = d.memory();
        // zlib's formula for windowBits 11, memLevel 1: 2^13 + 2^10, plus its ~6 KiB state.
        assert!((9 * 1024..17 * 1024).contains(&held), "{held}");
        let mut packed = Vec::new();
        d.compress_sync(&text, &mut packed).unwrap();
        assert_eq!(&packed[packed.len() - 4..], &[0, 0, 0xff, 0xff]);
        assert!(packed.len() < text.len() / 4, "{} of {}", packed.len(), text.len());
        let mut i = Inflater::new(11).unwrap();
        let mut got = Vec::new();
        assert!(!i.inflate(&packed, &mut got, usize::MAX - 1).unwrap());
        assert_eq!(got, text);
        // With the window kept, a second copy compresses to almost nothing and inflates with the context.
        let mut again = Vec::new();
        d.compress_sync(&text[..1000], &mut again).unwrap();
        assert!(again.len() < 100, "{}", again.len());
        got.clear();
        i.inflate(&again, &mut got, 1 << 20).unwrap();
        assert_eq!(got, &text[..1000]);
        // The decompressor's window came on first use: 2^11 bytes plus its ~7 KiB state.
        assert!((2048..10 * 1024).contains(&i.memory()), "{}", i.memory());
        let total = zlib_bytes();
        assert!(total >= d.memory() + i.memory());
    }

    #[test]
    fn inflate_stops_at_the_limit_without_growing_past_it() {
        let zeros = vec![0u8; 4 << 20];
        let mut packed = Vec::new();
        Deflater::new(9, 15, 8).unwrap().compress_sync(&zeros, &mut packed).unwrap();
        let mut i = Inflater::new(15).unwrap();
        let mut got = Vec::new();
        assert_eq!(i.inflate(&packed, &mut got, 100_000), Err(ZlibError::TooLarge));
        assert!(got.capacity() <= 100_001, "{}", got.capacity());
        i.reset();
        let mut exact = Vec::new();
        assert_eq!(i.inflate(&packed, &mut exact, 4 << 20), Ok(false));
        assert_eq!(exact.len(), 4 << 20);
    }

    #[test]
    fn corrupt_input_and_bad_parameters_are_errors() {
        let mut i = Inflater::new(15).unwrap();
        // BTYPE 11 is reserved: a data error.
        assert_eq!(i.inflate(&[0xff, 0xff, 0xff], &mut Vec::new(), 1000), Err(ZlibError::Corrupt));
        assert_eq!(Deflater::new(6, 8, 8).unwrap_err(), ZlibError::InvalidParameter);
        assert_eq!(Deflater::new(6, 15, 0).unwrap_err(), ZlibError::InvalidParameter);
        assert_eq!(Inflater::new(7).unwrap_err(), ZlibError::InvalidParameter);
        assert!(Inflater::new(8).is_ok());
    }

    #[test]
    fn the_counting_allocator_counts_live_bytes_through_alloc_realloc_and_dealloc() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = CountingAllocator::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a non-zero layout; the pointer is checked, written within its size, grown with
        // `realloc` under the same layout and freed once with the grown layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(7, 100);
            assert_eq!(a.live(), 100);
            let q = a.realloc(p, layout, 300);
            assert!(!q.is_null());
            assert_eq!(*q.add(99), 7, "realloc kept the bytes");
            assert_eq!(a.live(), 300);
            a.dealloc(q, Layout::from_size_align(300, 8).unwrap());
        }
        assert_eq!(a.live(), 0);
    }
}

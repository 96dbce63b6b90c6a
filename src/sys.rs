//! The one module that may use `unsafe`: thin, safe wrappers over the few OS calls the standard library,
//! mio and socket2 do not offer. Every `unsafe` block carries a `// SAFETY:` argument and a test below.
//!
//! Owns: a non-blocking `recv` on a blocking socket (`MSG_DONTWAIT`), the process's CPU time
//! (`getrusage`), and a cheap cycle counter for the load generator's hot path. Never touches: WebSocket
//! state, buffers' ownership beyond the call.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpStream;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::thread;
    use std::time::Instant;

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
}

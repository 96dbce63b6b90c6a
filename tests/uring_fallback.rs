//! `Config::io_uring` where no ring can be made: the engine still serves, through mio. The refusal is
//! the one containers give (a seccomp filter that fails `io_uring_setup`), installed on this test's
//! thread, which the reactor threads inherit; its own process, so no other test runs under it.
#![allow(unsafe_code)]

mod common;

use std::time::Duration;

use common::*;
use wsloop::server::{Config, Server};

/// Makes `io_uring_setup` fail with ENOSYS on this thread and the threads it starts from now on.
fn refuse_io_uring_setup() {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS: load seccomp_data.nr (offset 0)
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let filter = [
        libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: plain prctl calls; `program` and the filter it points to outlive the second one, which
    // copies them into the kernel.
    let (no_new_privs, seccomp) = unsafe {
        (
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog),
        )
    };
    assert_eq!((no_new_privs, seccomp), (0, 0), "seccomp: {}", std::io::Error::last_os_error());
}

#[test]
fn without_a_ring_the_engine_serves_through_mio() {
    refuse_io_uring_setup();
    assert!(wsloop::sys::uring::Ring::new(Default::default()).is_err(), "the filter refuses rings");
    let config = Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 2, io_uring: true, ..Config::default() };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Echo);
    let server = server.start().unwrap();
    for i in 0..4 {
        let mut client = TestClient::connect(server.local_addr(), "/");
        client.send_text(&format!("via mio {i}"));
        assert_eq!(client.recv(Duration::from_secs(5)), Some(Got::Text(format!("via mio {i}"))));
        let big = vec![7u8; 100_000];
        client.send_binary(&big);
        assert_eq!(client.recv(Duration::from_secs(5)), Some(Got::Binary(big)));
    }
    assert_eq!(io_uring_fds(), 0, "no ring was made");
    server.stop();
}

//! Fuzz target `server`: a whole server on 127.0.0.1 driven by arbitrary interleavings of connects,
//! bytes, frames, reads, closes, resets and clock ticks. The checks live in `fuzz/checks/server.rs`,
//! shared with `cargo test` (`tests/fuzz_seeds.rs` runs them over the seed corpus `fuzz/seeds/server/`).
//!
//! Run from the repository root (see fuzz/README.md):
//! `cargo +nightly fuzz run server fuzz/corpus/server fuzz/seeds/server`.
#![no_main]

#[path = "../checks/server.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(
    init: {
        // A Rust `main` ignores SIGPIPE before it starts; libFuzzer's C `main` does not, so a vectored
        // write (writev has no MSG_NOSIGNAL) to a peer that reset would kill the process instead of
        // failing with EPIPE as it does in `wsloop serve` and `cargo test`.
        // SAFETY: setting a signal's disposition to SIG_IGN, once, before any thread of the target starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    },
    |data: &[u8]| checks::check(data)
);

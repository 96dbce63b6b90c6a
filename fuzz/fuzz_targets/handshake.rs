//! Fuzz target `handshake`: the checks live in `fuzz/checks/handshake.rs`, shared with `cargo test`
//! (`tests/fuzz_seeds.rs` runs them over the seed corpus `fuzz/seeds/handshake/`).
//!
//! Run from the repository root (see fuzz/README.md):
//! `cargo +nightly fuzz run handshake fuzz/corpus/handshake fuzz/seeds/handshake`.
#![no_main]

#[path = "../checks/handshake.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));

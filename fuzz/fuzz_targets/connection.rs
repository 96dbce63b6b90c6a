//! Fuzz target `connection`: the checks live in `fuzz/checks/connection.rs`, shared with `cargo test`
//! (`tests/fuzz_seeds.rs` runs them over the seed corpus `fuzz/seeds/connection/`).
//!
//! Run from the repository root (see fuzz/README.md):
//! `cargo +nightly fuzz run connection fuzz/corpus/connection fuzz/seeds/connection`.
#![no_main]

#[path = "../checks/connection.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));

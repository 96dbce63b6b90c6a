//! Fuzz target `frame`: the checks live in `fuzz/checks/frame.rs`, shared with `cargo test`
//! (`tests/fuzz_seeds.rs` runs them over the seed corpus `fuzz/seeds/frame/`).
//!
//! Run from the repository root (see fuzz/README.md):
//! `cargo +nightly fuzz run frame fuzz/corpus/frame fuzz/seeds/frame`.
#![no_main]

#[path = "../checks/frame.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));

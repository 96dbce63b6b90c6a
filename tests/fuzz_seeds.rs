//! The fuzz targets' checks, run by `cargo test`: each target's check function (`fuzz/checks/<target>.rs`,
//! the same file the fuzz target compiles) over every file of its committed seed corpus
//! (`fuzz/seeds/<target>/`), then over a few thousand deterministic pseudo-random inputs: random bytes and
//! mutations of the seeds. No nightly compiler or cargo-fuzz needed; see fuzz/README.md.
//!
//! A failing generated input is written to `$CARGO_TARGET_TMPDIR/fuzz-seeds/<target>-<case>` so that it can
//! be replayed with the fuzz target or committed as a seed.

#[path = "../fuzz/checks/connection.rs"]
mod connection;
#[path = "../fuzz/checks/frame.rs"]
mod frame;
#[path = "../fuzz/checks/handshake.rs"]
mod handshake;
#[path = "../fuzz/checks/server.rs"]
mod server;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Random inputs per target, and mutated seeds per target.
const RANDOM_INPUTS: usize = 1000;
const MUTATED_INPUTS: usize = 3000;

/// xorshift64*: small, fast and reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Bytes that sit on the boundaries the parsers care about (7-bit length forms, opcodes, UTF-8 leads, CR/LF).
const INTERESTING: &[u8] =
    &[0x00, 0x01, 0x08, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x88, 0xc0, 0xed, 0xf4, 0xff];

/// One to four random edits of a random seed: bit flips, byte overwrites, insertions, deletions,
/// duplications, splices from another seed, truncation.
fn mutate(rng: &mut Rng, seeds: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.byte();
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(4);
                let extra = rng.bytes(n);
                data.splice(at..at, extra);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(8)).min(len);
                data.drain(at..end);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())].1;
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let end = (from + 1 + rng.below(other.len() - from)).min(other.len());
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[from..end].iter().copied());
                }
            }
            7 if len > 0 => data.truncate(rng.below(len)),
            _ => {}
        }
    }
    data
}

/// Every file of `fuzz/seeds/<target>/`, sorted by name; fails when there are none.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()));
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable seed directory").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()));
            (path, data)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "seed corpus {} is empty", dir.display());
    seeds
}

/// Runs `check` on one input; on a panic, says which input it was (saving a generated one) and fails.
fn run_one(target: &str, check: fn(&[u8]), what: &str, data: &[u8], save: bool) {
    if catch_unwind(AssertUnwindSafe(|| check(data))).is_ok() {
        return;
    }
    let mut note = String::new();
    if save {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-seeds");
        let path = dir.join(format!("{target}-{what}"));
        if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, data)).is_ok() {
            note = format!(", saved as {}", path.display());
        }
    }
    panic!("the {target} check failed on {what} ({} bytes{note}): {:02x?}", data.len(), &data[..data.len().min(64)]);
}

/// The seeds, then `RANDOM_INPUTS` random inputs of up to `max_random_len` bytes, then `MUTATED_INPUTS`
/// mutated seeds. `salt` keeps the targets' random streams apart.
fn run_target(target: &str, check: fn(&[u8]), salt: u64, max_random_len: usize) {
    run_target_with(target, check, salt, max_random_len, RANDOM_INPUTS, MUTATED_INPUTS);
}

/// [`run_target`] with its own counts of random and mutated inputs (a target that runs a server is
/// slower per input).
fn run_target_with(target: &str, check: fn(&[u8]), salt: u64, max_random_len: usize, random: usize, mutated: usize) {
    let seeds = seeds(target);
    for (path, data) in &seeds {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        run_one(target, check, &format!("seed {name}"), data, false);
    }
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ salt);
    for case in 0..random {
        // Mostly short inputs: they reach the most branches per byte.
        let len = if rng.below(4) == 0 { rng.below(max_random_len + 1) } else { rng.below(33) };
        let data = rng.bytes(len);
        run_one(target, check, &format!("random-{case}"), &data, true);
    }
    for case in 0..mutated {
        let data = mutate(&mut rng, &seeds);
        run_one(target, check, &format!("mutated-{case}"), &data, true);
    }
}

#[test]
fn frame_check_on_seeds_and_generated_inputs() {
    run_target("frame", frame::check, 1, 300);
}

#[test]
fn handshake_check_on_seeds_and_generated_inputs() {
    run_target("handshake", handshake::check, 2, 300);
}

#[test]
fn connection_check_on_seeds_and_generated_inputs() {
    run_target("connection", connection::check, 3, 300);
}

#[test]
fn server_check_on_seeds_and_generated_inputs() {
    run_target_with("server", server::check, 4, 200, 80, 160);
}

/// The generator itself: a fixed seed gives a fixed stream, and mutations stay within reach of the seeds.
#[test]
fn generator_is_deterministic() {
    let seeds = vec![(PathBuf::from("a"), b"abcdef".to_vec()), (PathBuf::from("b"), vec![0x81, 0x85])];
    let run = || {
        let mut rng = Rng::new(7);
        (0..50).map(|_| mutate(&mut rng, &seeds)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
    assert!(run().iter().any(|m| m != &seeds[0].1 && m != &seeds[1].1));
}

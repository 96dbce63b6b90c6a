//! Criterion benchmarks for the sans-IO protocol core.
//!
//! Every group carries a plain `memcpy` (`copy_from_slice`) of the same number of bytes as its baseline,
//! and reports throughput in bytes, so that each case reads as "fraction of memory bandwidth".
//!
//! Run: `cargo bench --bench proto -- --noplot` (results and figures: docs/benchmarks.md).
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsloop::proto::utf8::{validate, Utf8Validator};
use wsloop::proto::{apply_mask, apply_mask_bytewise, FrameHeader, HeaderParse, OpCode};

/// Payload sizes for unmasking and UTF-8 validation: 16 B, 1 KiB, 64 KiB, 1 MiB.
const SIZES: [usize; 4] = [16, 1 << 10, 64 << 10, 1 << 20];
/// Payload sizes for frame encoding (a 2-, 4- and 10-byte header respectively).
const ENCODE_SIZES: [usize; 3] = [16, 1 << 10, 64 << 10];
/// The piece size for the incremental validator (a typical read or fragment size).
const PIECE: usize = 4 << 10;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

/// `dst.copy_from_slice(src)` with the optimizer kept out of it: the baseline of every group.
fn bench_memcpy(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    len: usize,
) {
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    group.bench_function(id, |b| {
        b.iter(|| {
            black_box(&mut dst[..]).copy_from_slice(black_box(&src[..]));
            black_box(&dst);
        })
    });
}

fn header_parse(c: &mut Criterion) {
    let mut ext64 = vec![0x82, 0x7f];
    ext64.extend_from_slice(&65536u64.to_be_bytes());
    let mut ext64_masked = vec![0x82, 0xff];
    ext64_masked.extend_from_slice(&65536u64.to_be_bytes());
    ext64_masked.extend_from_slice(&KEY);
    let cases: [(&str, Vec<u8>); 4] = [
        // unmasked text, 7-bit length (a small server frame)
        ("2B", vec![0x81, 0x05]),
        // unmasked binary, 16-bit length
        ("4B", vec![0x82, 0x7e, 0x01, 0x00]),
        // unmasked binary, 64-bit length
        ("10B", ext64),
        // masked binary, 64-bit length: the longest header
        ("14B", ext64_masked),
    ];

    let mut group = c.benchmark_group("header_parse");
    for (name, bytes) in &cases {
        assert!(matches!(
            FrameHeader::parse(bytes),
            Ok(HeaderParse::Complete { header_len, .. }) if header_len == bytes.len()
        ));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("parse", name), |b| b.iter(|| FrameHeader::parse(black_box(&bytes[..]))));
        bench_memcpy(&mut group, BenchmarkId::new("memcpy", name), bytes.len());
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for &size in &SIZES {
        let name = label(size);
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        // In place, as the read path does. Masking twice restores the input, so the buffer stays bounded.
        group.bench_function(BenchmarkId::new("apply_mask", &name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf[..]), black_box(KEY), 0))
        });
        group.bench_function(BenchmarkId::new("bytewise", &name), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf[..]), black_box(KEY), 0))
        });
        bench_memcpy(&mut group, BenchmarkId::new("memcpy", &name), size);
    }
    group.finish();
}

/// `len` bytes of ASCII text.
fn ascii_text(len: usize) -> Vec<u8> {
    let pattern = b"The quick brown fox jumps over the lazy dog. 0123456789\n";
    pattern.iter().copied().cycle().take(len).collect()
}

/// `len` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte sequences (about a third of the bytes ASCII),
/// padded with ASCII to the exact length.
fn mixed_text(len: usize) -> Vec<u8> {
    let pattern = "wsloop: Grüße, ¿qué tal? Привет мир! 你好，世界。こんにちは 😀🚀 ";
    let mut out = String::with_capacity(len);
    for ch in pattern.chars().cycle() {
        if out.len() + ch.len_utf8() > len {
            break;
        }
        out.push(ch);
    }
    while out.len() < len {
        out.push('.');
    }
    out.into_bytes()
}

/// Makes `len` bytes of valid UTF-8.
type TextMaker = fn(usize) -> Vec<u8>;

fn utf8(c: &mut Criterion) {
    let kinds: [(&str, TextMaker); 2] = [("ascii", ascii_text), ("mixed", mixed_text)];
    for (kind, make) in kinds {
        let mut group = c.benchmark_group(format!("utf8_{kind}"));
        for &size in &SIZES {
            let name = label(size);
            let text = make(size);
            assert_eq!(text.len(), size);
            assert!(std::str::from_utf8(&text).is_ok());
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new("validate", &name), |b| {
                b.iter(|| validate(black_box(&text[..])).is_ok())
            });
            group.bench_function(BenchmarkId::new("validator_feed_4KiB", &name), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for piece in black_box(&text[..]).chunks(PIECE) {
                        v.feed(piece).unwrap();
                    }
                    v.finish().is_ok()
                })
            });
            group.bench_function(BenchmarkId::new("std_from_utf8", &name), |b| {
                b.iter(|| std::str::from_utf8(black_box(&text[..])).is_ok())
            });
            bench_memcpy(&mut group, BenchmarkId::new("memcpy", &name), size);
        }
        group.finish();
    }
}

fn frame_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    for &size in &ENCODE_SIZES {
        let name = label(size);
        let payload = vec![0x42u8; size];
        // A server frame: unmasked, final, binary.
        let header = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: size as u64 };
        let frame_len = header.encoded_len() + size;
        let mut out = Vec::with_capacity(frame_len);
        // Throughput counts the whole frame (header + payload); the memcpy baseline copies as many bytes.
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_function(BenchmarkId::new("encode_header_and_copy_payload", &name), |b| {
            b.iter(|| {
                out.clear();
                black_box(&header).encode(&mut out);
                out.extend_from_slice(black_box(&payload[..]));
                black_box(&out);
            })
        });
        bench_memcpy(&mut group, BenchmarkId::new("memcpy", &name), frame_len);
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1)).sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = header_parse, unmask, utf8, frame_encode
}
criterion_main!(benches);

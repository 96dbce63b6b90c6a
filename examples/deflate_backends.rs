//! Memory and speed of the deflate backends permessage-deflate could use: stock zlib (what wsloop links,
//! through `wsloop::sys`), flate2 on its default backend (miniz_oxide), and zlib-rs.
//!
//! ```text
//! cargo run --release --example deflate_backends
//! ```
//!
//! Memory is what each backend asks for: stock zlib through the byte counts of `wsloop::sys` (its
//! allocator callbacks), miniz_oxide and zlib-rs through a counting global allocator. A compressor is
//! measured after compressing one message (some allocate lazily); a decompressor after inflating one.
//! Speed: a 1 MiB JSON-like text compressed and inflated as one message, repeated, single thread.

use std::time::Instant;

#[global_allocator]
static ALLOC: wsloop::sys::CountingAllocator = wsloop::sys::CountingAllocator::new();

fn text() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u32;
    while s.len() < (1 << 20) {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"name{}\",\"score\":{}}}\n",
            i % 1000,
            i.wrapping_mul(7919) % 10007
        ));
        i += 1;
    }
    s.truncate(1 << 20);
    s.into_bytes()
}

fn kib(b: usize) -> String {
    format!("{:.1}", b as f64 / 1024.0)
}

/// Bytes a closure leaves allocated (through the global allocator).
fn held<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOC.live();
    let v = f();
    (v, ALLOC.live().saturating_sub(before))
}

fn zlib_rs_deflater(level: i32, bits: u8, mem: i32) -> zlib_rs::Deflate {
    zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
        level,
        window_bits: -i32::from(bits),
        mem_level: mem,
        ..zlib_rs::DeflateConfig::default()
    })
}

fn zlib_rs_compress(d: &mut zlib_rs::Deflate, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(input.len() + input.len() / 10 + 1024, 0);
    let before = d.total_out();
    d.compress(input, out, zlib_rs::DeflateFlush::SyncFlush).unwrap();
    out.truncate((d.total_out() - before) as usize);
}

fn main() {
    let msg = &text()[..4096];
    println!("memory per stream after one 4 KiB message, KiB (compressor | decompressor)");
    println!("| window bits | zlib memLevel 8 | zlib memLevel 1 | zlib inflate | miniz_oxide deflate | miniz_oxide inflate | zlib-rs memLevel 8 | zlib-rs memLevel 1 | zlib-rs inflate |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for bits in 9..=15u8 {
        let mut packed = Vec::new();
        let mut d8 = wsloop::sys::Deflater::new(6, bits, 8).unwrap();
        d8.compress_sync(msg, &mut packed).unwrap();
        let mut d1 = wsloop::sys::Deflater::new(6, bits, 1).unwrap();
        d1.compress_sync(msg, &mut Vec::new()).unwrap();
        let mut inf = wsloop::sys::Inflater::new(bits).unwrap();
        inf.inflate(&packed, &mut Vec::new(), 1 << 20).unwrap();

        let mut out = vec![0u8; 8192];
        let (mz, mz_bytes) = held(|| {
            let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
            c.compress(msg, &mut out, flate2::FlushCompress::Sync).unwrap();
            c
        });
        let mut mzout = vec![0u8; 8192];
        let (mzi, mzi_bytes) = held(|| {
            let mut d = flate2::Decompress::new(false);
            d.decompress(&packed, &mut mzout, flate2::FlushDecompress::Sync).unwrap();
            d
        });
        let (zr8, zr8_bytes) = held(|| {
            let mut d = zlib_rs_deflater(6, bits, 8);
            zlib_rs_compress(&mut d, msg, &mut Vec::new());
            d
        });
        let (zr1, zr1_bytes) = held(|| {
            let mut d = zlib_rs_deflater(6, bits, 1);
            zlib_rs_compress(&mut d, msg, &mut Vec::new());
            d
        });
        let (zri, zri_bytes) = held(|| {
            let mut i = zlib_rs::Inflate::new(false, bits);
            let mut o = vec![0u8; 8192];
            let _ = i.decompress(&packed, &mut o, zlib_rs::InflateFlush::SyncFlush);
            drop(o);
            i
        });
        println!(
            "| {bits} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kib(d8.memory()),
            kib(d1.memory()),
            kib(inf.memory()),
            kib(mz_bytes),
            kib(mzi_bytes),
            kib(zr8_bytes),
            kib(zr1_bytes),
            kib(zri_bytes)
        );
        drop((mz, mzi, zr8, zr1, zri));
    }

    let big = text();
    let rounds = 20;
    println!("\nspeed, 1 MiB JSON-like text as one message, window 15, memLevel 8, MB/s (ratio)");
    println!("| backend | level | compress | inflate | compressed size |");
    println!("|---|---:|---:|---:|---:|");
    for level in [1, 6] {
        let mut d = wsloop::sys::Deflater::new(level, 15, 8).unwrap();
        let mut packed = Vec::new();
        let t = Instant::now();
        for _ in 0..rounds {
            packed.clear();
            d.compress_sync(&big, &mut packed).unwrap();
            d.reset();
        }
        let c = t.elapsed();
        let mut i = wsloop::sys::Inflater::new(15).unwrap();
        let mut out = Vec::with_capacity(big.len() + 1);
        let t = Instant::now();
        for _ in 0..rounds {
            out.clear();
            i.inflate(&packed, &mut out, 2 << 20).unwrap();
            i.reset();
        }
        let u = t.elapsed();
        assert_eq!(out, big);
        let mbps = |d: std::time::Duration| (rounds * big.len()) as f64 / d.as_secs_f64() / 1e6;
        println!("| stock zlib | {level} | {:.0} | {:.0} | {} |", mbps(c), mbps(u), packed.len());

        let mut c2 = flate2::Compress::new(flate2::Compression::new(level as u32), false);
        let mut packed2 = Vec::with_capacity(big.len());
        let t = Instant::now();
        for _ in 0..rounds {
            packed2.clear();
            c2.reset();
            c2.compress_vec(&big, &mut packed2, flate2::FlushCompress::Sync).unwrap();
        }
        let c = t.elapsed();
        let mut d2 = flate2::Decompress::new(false);
        let mut out2 = Vec::with_capacity(big.len() + 64);
        let t = Instant::now();
        for _ in 0..rounds {
            out2.clear();
            d2.reset(false);
            d2.decompress_vec(&packed2, &mut out2, flate2::FlushDecompress::Sync).unwrap();
        }
        let u = t.elapsed();
        assert_eq!(out2, big);
        println!("| miniz_oxide (flate2 default) | {level} | {:.0} | {:.0} | {} |", mbps(c), mbps(u), packed2.len());

        let mut zr = zlib_rs_deflater(level, 15, 8);
        let mut packed3 = Vec::new();
        let t = Instant::now();
        for _ in 0..rounds {
            zr.reset();
            zlib_rs_compress(&mut zr, &big, &mut packed3);
        }
        let c = t.elapsed();
        let mut zi = zlib_rs::Inflate::new(false, 15);
        let mut out3 = vec![0u8; big.len() + 64];
        let t = Instant::now();
        let mut n = 0;
        for _ in 0..rounds {
            zi.reset(false);
            let before = zi.total_out();
            let _ = zi.decompress(&packed3, &mut out3, zlib_rs::InflateFlush::SyncFlush);
            n = (zi.total_out() - before) as usize;
        }
        let u = t.elapsed();
        assert_eq!(&out3[..n], &big[..]);
        println!("| zlib-rs | {level} | {:.0} | {:.0} | {} |", mbps(c), mbps(u), packed3.len());
    }
}

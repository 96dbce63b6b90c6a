//! A decompression bomb: a message that inflates to 1 GiB is refused at a 16 MiB limit with 1009, and
//! the process's peak RSS stays below 64 MiB. Its own test binary, so the peak is this test's alone.

use std::time::Instant;

use wsloop::proto::deflate::{accept_offers, client_offer, DeflateConfig, DeflateMode, PerMessageDeflate};
use wsloop::proto::{encode_frame, CloseCode, Connection, ConnectionConfig, OpCode, Role, RSV1};
use wsloop::sys::Deflater;

/// The process's peak resident set (VmHWM) in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn a_message_inflating_to_1_gib_is_refused_at_16_mib_with_1009_within_64_mib_of_rss() {
    // 1 GiB of zeros, compressed one MiB at a time into one deflate stream (~1 MiB on the wire).
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::new();
    let mut d = Deflater::new(9, 15, 8).unwrap();
    for _ in 0..1024 {
        d.compress_sync(&zeros, &mut bomb).unwrap();
    }
    bomb.truncate(bomb.len() - 4);
    drop(zeros);
    assert!(bomb.len() < 8 << 20, "{} bytes compressed", bomb.len());
    let mut wire = Vec::with_capacity(bomb.len() + 14);
    encode_frame(&mut wire, OpCode::Binary, true, RSV1, Some([0x12, 0x34, 0x56, 0x78]), &bomb);
    drop(bomb);

    let config = DeflateConfig::with_mode(DeflateMode::Shared);
    let (agreed, _) = accept_offers(&config, &[client_offer(&config).unwrap()]).unwrap();
    let limits = ConnectionConfig { max_message_size: 16 << 20, ..ConnectionConfig::default() };
    let mut server = Connection::new(Role::Server, limits, Instant::now());
    server.add_extension(PerMessageDeflate::boxed(Role::Server, &agreed, &config));
    let mut out = Vec::new();
    let err = server.read(&mut wire, &mut out).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG, "{err}");
    assert_eq!(&out[..4], &[0x88, out[1], 0x03, 0xf1], "a close frame with 1009 was written");
    let peak = peak_rss();
    eprintln!("peak RSS {:.1} MiB", peak as f64 / 1048576.0);
    assert!(peak < 64 << 20, "peak RSS {} MiB", peak >> 20);
}

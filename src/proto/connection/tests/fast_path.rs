//! The small-frame fast path of `Connection::read` against the general path.

use super::*;

/// One frame of a hostile or honest stream: any first byte (weighted towards the fast path's 0x81 and
/// 0x82), masked or not, any payload up to 130 bytes, sometimes up to 699 (ASCII, or arbitrary bytes that
/// are often invalid UTF-8), its length in the 7-bit or 16-bit form (non-minimal for a short one).
#[derive(Debug, Clone)]
struct RawFrame {
    b0: u8,
    masked: bool,
    long_form: bool,
    payload: Vec<u8>,
}

impl Arbitrary for RawFrame {
    fn arbitrary(g: &mut Gen) -> Self {
        const FIRST: [u8; 12] = [0x81, 0x82, 0x81, 0x82, 0x01, 0x02, 0x80, 0x00, 0x88, 0x89, 0x8a, 0xc1];
        let b0 = if u8::arbitrary(g) % 8 == 0 { u8::arbitrary(g) } else { *g.choose(&FIRST).unwrap_or(&0x82) };
        let len = match u8::arbitrary(g) % 8 {
            0..=3 => usize::from(u8::arbitrary(g)) % 8,
            4..=6 => usize::from(u8::arbitrary(g)) % 131,
            // 16-bit lengths beyond the 7-bit range (and around the test limits below).
            _ => usize::from(u16::arbitrary(g)) % 700,
        };
        let payload = if bool::arbitrary(g) {
            (0..len).map(|i| b'a' + (i % 26) as u8).collect()
        } else {
            (0..len).map(|_| u8::arbitrary(g)).collect()
        };
        Self { b0, masked: u8::arbitrary(g) % 8 != 0, long_form: u8::arbitrary(g) % 8 == 0, payload }
    }
}

impl RawFrame {
    fn encode(&self, flip_mask: bool, out: &mut Vec<u8>) {
        let masked = self.masked != flip_mask;
        let mask_bit = if masked { 0x80 } else { 0 };
        out.push(self.b0);
        let len = self.payload.len();
        if self.long_form || len >= 126 {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | len as u8);
        }
        let start = out.len() + if masked { 4 } else { 0 };
        if masked {
            out.extend_from_slice(&KEY);
        }
        out.extend_from_slice(&self.payload);
        if masked {
            apply_mask_bytewise(&mut out[start..], KEY, 0);
        }
    }
}

/// Like [`feed`], with the read function chosen by the caller; also returns the final close state.
fn feed_with(
    conn: &mut Connection,
    chunks: &[&[u8]],
    general_only: bool,
) -> (Vec<Got>, Vec<u8>, Option<ProtocolError>, CloseState) {
    let mut tail: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        tail.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let step = if general_only {
                conn.read_general(&mut tail[pos..], &mut out)
            } else {
                conn.read(&mut tail[pos..], &mut out)
            };
            match step {
                Ok((n, ev)) => {
                    pos += n;
                    match ev {
                        Some(ev) => events.push(Got::from(ev)),
                        None => break,
                    }
                }
                Err(e) => return (events, out, Some(e), conn.close_state()),
            }
        }
        tail.drain(..pos);
    }
    (events, out, None, conn.close_state())
}

/// `read` (fast path first) and `read_general` agree on every stream, split anywhere, in both roles
/// and under small limits: the same events, the same bytes written (pongs, close replies, the close
/// frame of a failure), the same error and the same close state. 3,000 cases: the rule interactions
/// (a final frame inside a fragmented message, data after the peer's close) need a few frames in a row.
#[test]
fn small_frame_path_agrees_with_the_general_path() {
    quickcheck::QuickCheck::new().tests(3000).quickcheck(agrees as fn(Vec<RawFrame>, Vec<usize>, bool, u8) -> bool);
    fn agrees(frames: Vec<RawFrame>, cuts: Vec<usize>, client: bool, limit: u8) -> bool {
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(client, &mut wire);
        }
        let mut points: Vec<usize> = cuts.into_iter().take(6).map(|c| c % (wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&wire[start..p]);
            start = p;
        }
        chunks.push(&wire[start..]);
        let make = || {
            let mut config = ConnectionConfig {
                mask_source: Some(Arc::new(crate::proto::SeededMasks::new(7))),
                ..ConnectionConfig::default()
            };
            match limit % 6 {
                0 => config.max_frame_size = 16,
                1 => config.max_message_size = 40,
                2 => config.max_frame_size = 300,
                3 => config.max_message_size = 500,
                _ => {}
            }
            let role = if client { Role::Client } else { Role::Server };
            Connection::new(role, config, std::time::Instant::now())
        };
        let fast = feed_with(&mut make(), &chunks, false);
        let general = feed_with(&mut make(), &chunks, true);
        fast == general
    }
}

#[test]
fn small_frame_rules_hold_inside_a_fragmented_message_and_after_a_close() {
    // A final text frame while a fragmented message is open is a new message inside it: 1002.
    let mut wire = cf(0x1, false, b"frag");
    wire.extend(cf(0x1, true, b"x"));
    let (got, _, err) = feed_all(&mut server(), &wire);
    assert_eq!((got, err), (vec![], Some(ProtocolError::NewMessageInsideFragmented)));
    // After the peer's close frame, data frames are ignored.
    let mut wire = cf(0x8, true, &[0x03, 0xe8]);
    wire.extend(cf(0x2, true, b"late"));
    let (got, _, err) = feed_all(&mut server(), &wire);
    assert_eq!((got, err), (vec![Got::Close(Some((1000, String::new())))], None));
    // After our close, the peer's data still arrives until its close frame (the general path decides).
    let mut conn = server();
    conn.close(std::time::Instant::now(), CloseCode::NORMAL, "", &mut Vec::new()).unwrap();
    assert!(conn.small_frame(&cf(0x2, true, b"y")).is_none());
    let (got, _, err) = feed_all(&mut conn, &cf(0x2, true, b"y"));
    assert_eq!((got, err), (vec![Got::Binary(b"y".to_vec())], None));
}

#[test]
fn small_frames_take_the_fast_path_and_deliver_as_the_general_path() {
    // Text and binary, masked, 7-bit and 16-bit lengths: the fast path's frames; the property above
    // compares them with the general path.
    let mut wire = cf(0x1, true, b"hello");
    wire.extend(cf(0x2, true, &[0, 159, 146, 150]));
    let conn = server();
    assert!(conn.small_frame(&wire).is_some());
    assert!(conn.small_frame(&wire[..wire.len() - 1]).is_some(), "the first frame is complete");
    assert!(conn.small_frame(&wire[..10]).is_none(), "incomplete");
    assert!(conn.small_frame(&cf(0x1, false, b"he")).is_none(), "not final");
    assert!(conn.small_frame(&frame(0x2, true, 0, None, b"x")).is_none(), "unmasked from a client");
    assert!(conn.small_frame(&frame(0x2, true, RSV1, Some(KEY), b"x")).is_none(), "RSV bit");
    // A 16-bit length is taken (the 512-byte text messages of the benchmarks' scenario (ii)); a 64-bit
    // one, or a 16-bit one past a size limit, is not.
    let medium = cf(0x2, true, &[1; 512]);
    assert!(conn.small_frame(&medium).is_none(), "16-bit length: not the 7-bit path");
    assert!(conn.medium_frame(&medium).is_some_and(|f| f.header_len == 8 && f.len == 512), "16-bit length");
    assert!(conn.medium_frame(&medium[..medium.len() - 1]).is_none(), "incomplete 16-bit frame");
    assert!(conn.medium_frame(&wire).is_none(), "7-bit length: not the 16-bit path");
    assert!(conn.medium_frame(&cf(0x2, true, &[1; 70_000])).is_none(), "64-bit length");
    assert!(conn.medium_frame(&cf(0x1, false, &[b'a'; 300])).is_none(), "not final");
    let limited = Connection::new(
        Role::Server,
        ConnectionConfig { max_frame_size: 511, ..ConnectionConfig::default() },
        std::time::Instant::now(),
    );
    assert!(limited.medium_frame(&medium).is_none(), "past max_frame_size: the general path fails it");
    let limited = Connection::new(
        Role::Server,
        ConnectionConfig { max_message_size: 511, ..ConnectionConfig::default() },
        std::time::Instant::now(),
    );
    assert!(limited.medium_frame(&medium).is_none(), "past max_message_size");
    let (got, _, err) = feed_all(&mut server(), &wire);
    assert_eq!(err, None);
    assert_eq!(got, vec![Got::Text("hello".into()), Got::Binary(vec![0, 159, 146, 150])]);
}

//! Tests of the connection state machine: each rule with the close code it produces, and properties
//! over arbitrary streams and splits.

use super::*;
use crate::proto::{apply_mask_bytewise, RSV1, RSV2, RSV3};
use quickcheck::{quickcheck, Arbitrary, Gen};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// An owned copy of an event, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl From<Event<'_>> for Got {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Text(t) => Self::Text(t.into_owned()),
            Event::Binary(b) => Self::Binary(b.into_owned()),
            Event::Ping(p) => Self::Ping(p.to_vec()),
            Event::Pong(p) => Self::Pong(p.to_vec()),
            Event::Close(c) => Self::Close(c.map(|c| (c.code.0, c.reason.to_string()))),
        }
    }
}

fn frame(opcode: u8, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, OpCode::from_u8(opcode), fin, rsv, mask, payload);
    out
}

/// A frame as a client sends it (masked).
fn cf(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, 0, Some(KEY), payload)
}

fn server() -> Connection {
    Connection::new(Role::Server, ConnectionConfig::default(), std::time::Instant::now())
}

/// Feeds `chunks` the way the engine does (keeping the unconsumed tail), collecting events, the bytes
/// written, and the first error.
fn feed(conn: &mut Connection, chunks: &[&[u8]]) -> (Vec<Got>, Vec<u8>, Option<ProtocolError>) {
    let mut tail: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        tail.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match conn.read(&mut tail[pos..], &mut out) {
                Ok((n, ev)) => {
                    pos += n;
                    match ev {
                        Some(ev) => events.push(Got::from(ev)),
                        None => break,
                    }
                }
                Err(e) => return (events, out, Some(e)),
            }
        }
        tail.drain(..pos);
    }
    (events, out, None)
}

fn feed_all(conn: &mut Connection, bytes: &[u8]) -> (Vec<Got>, Vec<u8>, Option<ProtocolError>) {
    feed(conn, &[bytes])
}

/// Parses the frames a server wrote (unmasked) as a client would.
fn client_reads(bytes: &[u8]) -> Vec<Got> {
    let mut client = Connection::new(
        Role::Client,
        ConnectionConfig { auto_pong: false, ..Default::default() },
        std::time::Instant::now(),
    );
    let (events, _, err) = feed_all(&mut client, bytes);
    assert_eq!(err, None, "server output should parse");
    events
}

fn assert_fails_with(bytes: &[u8], code: CloseCode) {
    let mut conn = server();
    let (_, out, err) = feed_all(&mut conn, bytes);
    let err = err.expect("should fail");
    assert_eq!(err.close_code(), code, "{err}");
    assert_eq!(conn.close_state(), CloseState::Failed);
    assert!(conn.transport_may_close());
    match client_reads(&out).as_slice() {
        [Got::Close(Some((c, _)))] => assert_eq!(*c, code.0),
        other => panic!("expected a close frame with {code}, got {other:?}"),
    }
}

#[test]
fn single_frame_text_is_borrowed_from_the_read_buffer() {
    let mut conn = server();
    let mut bytes = cf(1, true, b"hello");
    let mut out = Vec::new();
    let (n, ev) = conn.read(&mut bytes, &mut out).unwrap();
    assert_eq!(n, 11);
    match ev {
        Some(Event::Text(Cow::Borrowed(text))) => assert_eq!(text, "hello"),
        other => panic!("expected a borrowed text, got {other:?}"),
    }
    assert!(out.is_empty());
}

#[test]
fn single_frame_binary_is_borrowed() {
    let mut conn = server();
    let mut bytes = cf(2, true, &[0, 1, 2, 255]);
    let (_, ev) = conn.read(&mut bytes, &mut Vec::new()).unwrap();
    assert!(matches!(ev, Some(Event::Binary(Cow::Borrowed(&[0, 1, 2, 255])))));
}

#[test]
fn fragmented_message_is_assembled_and_pings_may_interleave() {
    let mut conn = server();
    let mut stream = cf(1, false, b"Hel");
    stream.extend(cf(9, true, b"p"));
    stream.extend(cf(0, false, b"lo, "));
    stream.extend(cf(0, true, "wörld".as_bytes()));
    let (events, out, err) = feed_all(&mut conn, &stream);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Ping(b"p".to_vec()), Got::Text("Hello, wörld".into())]);
    assert_eq!(client_reads(&out), vec![Got::Pong(b"p".to_vec())]);
}

#[test]
fn empty_messages_and_empty_fragments_are_delivered() {
    let mut conn = server();
    let mut stream = cf(1, true, b"");
    stream.extend(cf(2, false, b""));
    stream.extend(cf(0, true, b""));
    let (events, _, err) = feed_all(&mut conn, &stream);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Text(String::new()), Got::Binary(Vec::new())]);
}

#[test]
fn rejects_continuation_without_a_message_with_1002() {
    assert_fails_with(&cf(0, true, b"x"), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn rejects_new_data_frame_inside_fragmented_message_with_1002() {
    let mut stream = cf(1, false, b"a");
    stream.extend(cf(2, true, b"b"));
    assert_fails_with(&stream, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn rejects_control_frame_longer_than_125_with_1002() {
    assert_fails_with(&cf(9, true, &[0; 126]), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn rejects_fragmented_control_frame_with_1002() {
    assert_fails_with(&cf(9, false, b"x"), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn rejects_reserved_bits_without_extension_with_1002() {
    for rsv in [RSV1, RSV2, RSV3] {
        assert_fails_with(&frame(1, true, rsv, Some(KEY), b"x"), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn rejects_reserved_opcodes_with_1002() {
    for opcode in [3, 7, 0xb, 0xf] {
        assert_fails_with(&cf(opcode, true, b""), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn rejects_unmasked_client_frame_with_1002() {
    assert_fails_with(&frame(1, true, 0, None, b"x"), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn client_rejects_masked_server_frame_with_1002() {
    let mut conn = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    let (_, out, err) = feed_all(&mut conn, &cf(1, true, b"x"));
    assert_eq!(err.unwrap().close_code(), CloseCode::PROTOCOL_ERROR);
    // The client's own close frame is masked.
    let mut server = server();
    let (events, _, err) = feed_all(&mut server, &out);
    assert_eq!(err, None);
    assert!(matches!(events.as_slice(), [Got::Close(Some((1002, _)))]));
}

#[test]
fn rejects_64_bit_length_with_top_bit_set_with_1002() {
    let mut bytes = vec![0x82, 0xff];
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_fails_with(&bytes, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn frame_over_max_frame_size_fails_with_1009_from_its_header_alone() {
    let mut conn = Connection::new(
        Role::Server,
        ConnectionConfig { max_frame_size: 100, ..Default::default() },
        std::time::Instant::now(),
    );
    let bytes = cf(2, true, &[0; 101]);
    let (_, _, err) = feed_all(&mut conn, &bytes[..8]);
    assert_eq!(err.unwrap().close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn message_over_max_message_size_across_fragments_fails_with_1009() {
    let config = ConnectionConfig { max_message_size: 10, ..Default::default() };
    let mut conn = Connection::new(Role::Server, config, std::time::Instant::now());
    let mut stream = cf(2, false, &[0; 6]);
    stream.extend(cf(0, true, &[0; 6]));
    let (events, out, err) = feed_all(&mut conn, &stream);
    assert!(events.is_empty());
    assert_eq!(err.unwrap().close_code(), CloseCode::MESSAGE_TOO_BIG);
    assert!(matches!(client_reads(&out).as_slice(), [Got::Close(Some((1009, _)))]));
}

#[test]
fn invalid_utf8_in_single_frame_fails_with_1007() {
    assert_fails_with(&cf(1, true, &[b'a', 0xff]), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_fast_before_the_frame_is_complete() {
    let mut payload = vec![b'a'; 10];
    payload.push(0xff);
    payload.extend(vec![b'b'; 100]);
    let bytes = cf(1, true, &payload);
    let mut conn = server();
    // Header + 20 payload bytes: the invalid byte is there, the frame is not complete.
    let (_, _, err) = feed_all(&mut conn, &bytes[..4 + 20]);
    assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_fragment() {
    let mut conn = server();
    let first = cf(1, false, b"ok");
    let bad = cf(0, false, &[0xc0]);
    let (_, _, err) = feed(&mut conn, &[&first, &bad]);
    assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn code_point_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes();
    let mut stream = cf(1, false, &euro[..1]);
    stream.extend(cf(0, false, &euro[1..2]));
    stream.extend(cf(0, true, &euro[2..]));
    let (events, _, err) = feed_all(&mut server(), &stream);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Text("€".into())]);
}

#[test]
fn text_ending_mid_code_point_fails_with_1007() {
    let mut stream = cf(1, false, b"a");
    stream.extend(cf(0, true, &"€".as_bytes()[..2]));
    assert_fails_with(&stream, CloseCode::INVALID_PAYLOAD);
    // And unfragmented, arriving in pieces.
    let bytes = cf(1, true, &"€".as_bytes()[..2]);
    let mut conn = server();
    let (_, _, err) = feed(&mut conn, &[&bytes[..7], &bytes[7..]]);
    assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn peer_close_is_answered_with_its_code_and_ends_the_handshake() {
    let mut conn = server();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let (events, out, err) = feed_all(&mut conn, &cf(8, true, &payload));
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Close(Some((1000, "bye".into())))]);
    assert_eq!(client_reads(&out), vec![Got::Close(Some((1000, String::new())))]);
    assert!(conn.close_received());
    assert!(conn.transport_may_close());
    assert_eq!(conn.send_text("late", &mut Vec::new()), Err(SendError::Closed));
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let mut conn = server();
    let (events, out, _) = feed_all(&mut conn, &cf(8, true, b""));
    assert_eq!(events, vec![Got::Close(None)]);
    assert_eq!(client_reads(&out), vec![Got::Close(None)]);
}

#[test]
fn one_byte_close_payload_fails_with_1002() {
    assert_fails_with(&cf(8, true, &[3]), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn close_with_forbidden_code_fails_with_1002() {
    for code in [999u16, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_fails_with(&cf(8, true, &code.to_be_bytes()), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn close_with_invalid_utf8_reason_fails_with_1007() {
    assert_fails_with(&cf(8, true, &[0x03, 0xe8, 0xff]), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn bytes_after_the_peer_close_are_ignored() {
    let mut conn = server();
    let mut stream = cf(8, true, &1000u16.to_be_bytes());
    stream.extend(cf(1, true, b"ignored"));
    let (events, _, err) = feed_all(&mut conn, &stream);
    assert_eq!(err, None);
    assert_eq!(events.len(), 1);
}

#[test]
fn our_close_then_peer_reply_closes_and_nothing_is_sent_between() {
    let mut conn = server();
    let mut out = Vec::new();
    conn.close(std::time::Instant::now(), CloseCode::GOING_AWAY, "shutting down", &mut out).unwrap();
    assert_eq!(conn.close_state(), CloseState::CloseSent);
    assert!(!conn.transport_may_close());
    assert_eq!(conn.send_binary(b"x", &mut out), Err(SendError::Closed));
    assert_eq!(conn.send_ping(b"x", &mut out), Err(SendError::Closed));
    assert_eq!(conn.close(std::time::Instant::now(), CloseCode::NORMAL, "", &mut out), Err(SendError::Closed));
    assert_eq!(client_reads(&out), vec![Got::Close(Some((1001, "shutting down".into())))]);
    // Data still arrives while we wait; a ping is not answered after our close.
    let mut stream = cf(1, true, b"in flight");
    stream.extend(cf(9, true, b""));
    stream.extend(cf(8, true, &1001u16.to_be_bytes()));
    let mut reply_out = Vec::new();
    let (events, _, err) = {
        let (e, o, err) = feed_all(&mut conn, &stream);
        reply_out.extend(o);
        (e, (), err)
    };
    assert_eq!(err, None);
    assert_eq!(events[0], Got::Text("in flight".into()));
    assert!(reply_out.is_empty(), "no pong and no second close after our close");
    assert_eq!(conn.close_state(), CloseState::Closed);
    assert!(conn.transport_may_close());
}

#[test]
fn close_rejects_codes_not_allowed_on_the_wire() {
    let mut conn = server();
    assert_eq!(
        conn.close(std::time::Instant::now(), CloseCode::NO_STATUS, "", &mut Vec::new()),
        Err(SendError::InvalidCloseCode(CloseCode(1005)))
    );
    assert!(conn.can_send());
}

#[test]
fn auto_pong_can_be_turned_off() {
    let mut conn = Connection::new(
        Role::Server,
        ConnectionConfig { auto_pong: false, ..Default::default() },
        std::time::Instant::now(),
    );
    let (events, out, _) = feed_all(&mut conn, &cf(9, true, b"hi"));
    assert_eq!(events, vec![Got::Ping(b"hi".to_vec())]);
    assert!(out.is_empty());
}

#[test]
fn control_payload_over_125_cannot_be_sent() {
    let mut conn = server();
    assert_eq!(conn.send_ping(&[0; 126], &mut Vec::new()), Err(SendError::ControlTooLong));
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    let mut client = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    let mut a = Vec::new();
    let mut b = Vec::new();
    client.send_text("same", &mut a).unwrap();
    client.send_text("same", &mut b).unwrap();
    assert_eq!(a[1] & 0x80, 0x80, "mask bit set");
    assert_ne!(a[2..6], b[2..6], "fresh key per frame");
    let mut server = server();
    a.extend(b);
    let (events, _, err) = feed_all(&mut server, &a);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Text("same".into()), Got::Text("same".into())]);
}

#[test]
fn send_frame_fragments_and_rejects_control_opcodes() {
    let mut client = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    let mut out = Vec::new();
    client.send_frame(OpCode::Binary, false, b"ab", &mut out).unwrap();
    client.send_frame(OpCode::Continuation, true, b"cd", &mut out).unwrap();
    assert_eq!(client.send_frame(OpCode::Ping, true, b"", &mut out), Err(SendError::NotDataOpcode(OpCode::Ping)));
    let (events, _, _) = feed_all(&mut server(), &out);
    assert_eq!(events, vec![Got::Binary(b"abcd".to_vec())]);
}

/// A toy extension on RSV1 that reverses payloads, to exercise the extension hook.
#[derive(Debug)]
struct Reverse {
    threshold: usize,
}

impl Extension for Reverse {
    fn name(&self) -> &str {
        "x-reverse"
    }
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode_message(&mut self, _: u8, payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        if payload.len() > max {
            return Err(ProtocolError::Extension { code: CloseCode::MESSAGE_TOO_BIG, reason: "too big" });
        }
        out.extend(payload.iter().rev());
        Ok(())
    }
    fn encode_message(&mut self, _: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<Option<u8>, ProtocolError> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        out.extend(payload.iter().rev());
        Ok(Some(RSV1))
    }
}

#[test]
fn extension_claims_rsv1_and_transforms_messages_both_ways() {
    let mut client = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    client.add_extension(Box::new(Reverse { threshold: 3 }));
    let mut server = server();
    server.add_extension(Box::new(Reverse { threshold: 3 }));
    let mut wire = Vec::new();
    client.send_text("hello", &mut wire).unwrap();
    assert_eq!(wire[0] & RSV1, RSV1, "compressed message carries RSV1");
    assert_eq!(
        &wire[6..],
        &{
            let mut masked = b"olleh".to_vec();
            apply_mask(&mut masked, [wire[2], wire[3], wire[4], wire[5]], 0);
            masked
        }[..]
    );
    client.send_text("hi", &mut wire).unwrap(); // below threshold: untouched, no RSV1
    let (events, _, err) = feed_all(&mut server, &wire);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Text("hello".into()), Got::Text("hi".into())]);
    // A fragmented compressed message: RSV1 on the first frame only.
    let mut stream = frame(2, false, RSV1, Some(KEY), b"cb");
    stream.extend(cf(0, true, b"a"));
    let (events, _, err) = feed_all(&mut server, &stream);
    assert_eq!(err, None);
    assert_eq!(events, vec![Got::Binary(b"abc".to_vec())]);
}

#[test]
fn extension_rsv_on_continuation_or_control_frame_fails_with_1002() {
    for stream in
        [[cf(2, false, b"a"), frame(0, true, RSV1, Some(KEY), b"b")].concat(), frame(9, true, RSV1, Some(KEY), b"")]
    {
        let mut conn = server();
        conn.add_extension(Box::new(Reverse { threshold: 0 }));
        let (_, _, err) = feed_all(&mut conn, &stream);
        assert_eq!(err.unwrap().close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn server_output_is_unmasked_and_parses_as_a_client() {
    let mut conn = server();
    let mut out = Vec::new();
    conn.send_text("héllo", &mut out).unwrap();
    conn.send_binary(&[1, 2, 3], &mut out).unwrap();
    conn.send_ping(b"p", &mut out).unwrap();
    conn.send_pong(b"q", &mut out).unwrap();
    assert_eq!(out[1] & 0x80, 0);
    assert_eq!(
        client_reads(&out),
        vec![Got::Text("héllo".into()), Got::Binary(vec![1, 2, 3]), Got::Ping(b"p".to_vec()), Got::Pong(b"q".to_vec())]
    );
}

/// A message a client may send, with how to fragment it.
#[derive(Debug, Clone)]
enum Sent {
    Text(String, Vec<usize>),
    Binary(Vec<u8>, Vec<usize>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl Arbitrary for Sent {
    fn arbitrary(g: &mut Gen) -> Self {
        let cuts = |g: &mut Gen| Vec::<usize>::arbitrary(g).into_iter().take(3).collect();
        match u8::arbitrary(g) % 4 {
            0 => Self::Text(String::arbitrary(g), cuts(g)),
            1 => Self::Binary(Vec::arbitrary(g), cuts(g)),
            2 => Self::Ping(Vec::<u8>::arbitrary(g).into_iter().take(125).collect()),
            _ => Self::Pong(Vec::<u8>::arbitrary(g).into_iter().take(125).collect()),
        }
    }
}

/// Encodes messages as client frames, fragmenting data messages at the given cuts.
fn encode_stream(messages: &[Sent]) -> (Vec<u8>, Vec<Got>) {
    let mut client = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for m in messages {
        match m {
            Sent::Text(_, cuts) | Sent::Binary(_, cuts) if !cuts.is_empty() => {
                let (bytes, first, got) = match m {
                    Sent::Text(t, _) => (t.as_bytes().to_vec(), OpCode::Text, Got::Text(t.clone())),
                    Sent::Binary(b, _) => (b.clone(), OpCode::Binary, Got::Binary(b.clone())),
                    _ => unreachable!(),
                };
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                points.sort_unstable();
                let mut start = 0;
                let mut opcode = first;
                for p in points {
                    client.send_frame(opcode, false, &bytes[start..p], &mut wire).unwrap();
                    opcode = OpCode::Continuation;
                    start = p;
                }
                client.send_frame(opcode, true, &bytes[start..], &mut wire).unwrap();
                expected.push(got);
            }
            Sent::Text(t, _) => {
                client.send_text(t, &mut wire).unwrap();
                expected.push(Got::Text(t.clone()));
            }
            Sent::Binary(b, _) => {
                client.send_binary(b, &mut wire).unwrap();
                expected.push(Got::Binary(b.clone()));
            }
            Sent::Ping(p) => {
                client.send_ping(p, &mut wire).unwrap();
                expected.push(Got::Ping(p.clone()));
            }
            Sent::Pong(p) => {
                client.send_pong(p, &mut wire).unwrap();
                expected.push(Got::Pong(p.clone()));
            }
        }
    }
    (wire, expected)
}

quickcheck! {
    fn any_split_of_the_stream_yields_the_same_events(messages: Vec<Sent>, cuts: Vec<usize>) -> bool {
        let (wire, expected) = encode_stream(&messages);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&wire[start..p]);
            start = p;
        }
        chunks.push(&wire[start..]);
        let (whole, _, e1) = feed_all(&mut server(), &wire);
        let (split, _, e2) = feed(&mut server(), &chunks);
        e1.is_none() && e2.is_none() && whole == expected && split == expected
    }

    fn byte_by_byte_feeding_yields_the_same_events(messages: Vec<Sent>) -> bool {
        let (wire, expected) = encode_stream(&messages);
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        let (got, _, err) = feed(&mut server(), &chunks);
        err.is_none() && got == expected
    }
}

#[test]
fn split_send_writes_only_the_header_for_a_server_and_the_whole_frame_for_a_client() {
    let mut server = server();
    let mut out = Vec::new();
    assert_eq!(server.send_message_split(OpCode::Binary, &[7; 300], &mut out), Ok(true));
    assert_eq!(out, vec![0x82, 126, 0x01, 0x2c], "header only: FIN, binary, 16-bit length 300");
    out.extend_from_slice(&[7; 300]);
    assert_eq!(client_reads(&out), vec![Got::Binary(vec![7; 300])]);
    let mut client = Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now());
    let mut wire = Vec::new();
    assert_eq!(client.send_message_split(OpCode::Text, b"masked", &mut wire), Ok(false));
    assert_eq!(feed_all(&mut server, &wire).0, vec![Got::Text("masked".into())]);
    assert_eq!(server.send_message_split(OpCode::Ping, b"", &mut out), Err(SendError::NotDataOpcode(OpCode::Ping)));
    server.close(std::time::Instant::now(), CloseCode::NORMAL, "", &mut out).unwrap();
    assert_eq!(server.send_message_split(OpCode::Text, b"late", &mut out), Err(SendError::Closed));
}

/// A toy extension on RSV1 whose decoder is given, to produce what a real one may: a failure, or a
/// message larger than asked.
#[derive(Debug)]
struct Decoder(fn(&[u8], &mut Vec<u8>) -> Result<(), ProtocolError>);

impl Extension for Decoder {
    fn name(&self) -> &str {
        "x-decoder"
    }
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode_message(&mut self, _: u8, payload: &[u8], _: usize, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        (self.0)(payload, out)
    }
    fn encode_message(&mut self, _: OpCode, _: &[u8], _: &mut Vec<u8>) -> Result<Option<u8>, ProtocolError> {
        Ok(None)
    }
}

/// The error `conn` fails with on `bytes`, after checking that the close frame it wrote carries the
/// error's code and reason.
fn error_of(mut conn: Connection, bytes: &[u8]) -> ProtocolError {
    let (_, out, err) = feed_all(&mut conn, bytes);
    let err = err.expect("should fail");
    assert_eq!(conn.close_state(), CloseState::Failed);
    let peer = match conn.role() {
        Role::Server => Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now()),
        Role::Client => server(),
    };
    let mut peer = peer;
    let (events, _, peer_err) = feed_all(&mut peer, &out);
    assert_eq!(peer_err, None);
    assert_eq!(events, vec![Got::Close(Some((err.close_code().0, err.reason().to_owned())))], "{err:?}");
    err
}

fn server_with(config: ConnectionConfig) -> Connection {
    Connection::new(Role::Server, config, std::time::Instant::now())
}

fn server_with_extension(extension: impl Extension + 'static) -> Connection {
    let mut conn = server();
    conn.add_extension(Box::new(extension));
    conn
}

#[test]
fn errors_name_the_rule_with_what_was_expected_and_what_came() {
    use ProtocolError as E;
    let limits = ConnectionConfig { max_frame_size: 100, max_message_size: 10, ..Default::default() };
    let cases: Vec<(Connection, Vec<u8>, ProtocolError)> = vec![
        (server(), cf(3, true, b""), E::ReservedOpcode { opcode: 3 }),
        (server(), cf(0xb, true, b""), E::ReservedOpcode { opcode: 0xb }),
        (server(), frame(1, true, 0, None, b"x"), E::UnmaskedClientFrame),
        (
            Connection::new(Role::Client, ConnectionConfig::default(), std::time::Instant::now()),
            cf(1, true, b"x"),
            E::MaskedServerFrame,
        ),
        (server(), frame(9, true, RSV1, Some(KEY), b""), E::ReservedBitsOnControlFrame { rsv: RSV1 }),
        (server(), cf(9, false, b"x"), E::FragmentedControlFrame),
        (server(), cf(10, true, &[0; 126]), E::ControlFrameTooLong { len: 126 }),
        (server(), cf(0, true, b"x"), E::ContinuationWithoutMessage),
        (server(), [cf(1, false, b"a"), cf(2, true, b"b")].concat(), E::NewMessageInsideFragmented),
        (server(), frame(1, true, RSV2, Some(KEY), b"x"), E::ReservedBitsNotNegotiated { rsv: RSV2, negotiated: 0 }),
        (
            server_with_extension(Reverse { threshold: 0 }),
            frame(1, true, RSV1 | RSV2, Some(KEY), b"x"),
            E::ReservedBitsNotNegotiated { rsv: RSV1 | RSV2, negotiated: RSV1 },
        ),
        (
            server_with_extension(Reverse { threshold: 0 }),
            [frame(2, false, RSV1, Some(KEY), b"a"), frame(0, true, RSV1, Some(KEY), b"b")].concat(),
            E::ReservedBitsOnContinuation { rsv: RSV1 },
        ),
        (server(), [vec![0x82, 0xff], u64::MAX.to_be_bytes().to_vec(), KEY.to_vec()].concat(), E::LengthTopBitSet),
        (server_with(limits.clone()), cf(2, true, &[0; 101])[..8].to_vec(), E::FrameTooLarge { limit: 100, len: 101 }),
        (server_with(limits.clone()), cf(2, true, &[0; 11]), E::MessageTooLarge { limit: 10, len: 11 }),
        (
            server_with(limits.clone()),
            [cf(2, false, &[0; 6]), cf(0, false, &[0; 6])].concat(),
            E::MessageTooLarge { limit: 10, len: 12 },
        ),
        (server(), cf(1, true, &[b'a', 0xff]), E::InvalidUtf8Text),
        (server(), [cf(1, false, b"ok"), cf(0, false, &[0xc0])].concat(), E::InvalidUtf8Text),
        (server(), cf(8, true, &[3]), E::OneByteClosePayload),
        (server(), cf(8, true, &1005u16.to_be_bytes()), E::InvalidCloseCode { code: 1005 }),
        (server(), cf(8, true, &5000u16.to_be_bytes()), E::InvalidCloseCode { code: 5000 }),
        (server(), cf(8, true, &[0x03, 0xe8, 0xff]), E::InvalidUtf8CloseReason),
        (
            server_with_extension(Decoder(|_, _| {
                Err(E::Extension { code: CloseCode::INVALID_PAYLOAD, reason: "corrupt deflate stream" })
            })),
            frame(2, true, RSV1, Some(KEY), b"zz"),
            E::Extension { code: CloseCode::INVALID_PAYLOAD, reason: "corrupt deflate stream" },
        ),
    ];
    for (conn, bytes, expected) in cases {
        assert_eq!(error_of(conn, &bytes), expected);
    }
}

#[test]
fn a_message_decoded_past_the_limit_fails_with_1009_and_the_limit() {
    let mut conn = server_with(ConnectionConfig { max_message_size: 10, ..Default::default() });
    conn.add_extension(Box::new(Decoder(|payload, out| {
        out.extend(payload.iter().cycle().take(payload.len() * 4));
        Ok(())
    })));
    let err = error_of(conn, &frame(2, true, RSV1, Some(KEY), b"abc"));
    assert_eq!(err, ProtocolError::DecodedMessageTooLarge { limit: 10 });
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn a_frame_over_the_limit_reads_as_a_sentence_with_both_numbers() {
    let conn = server_with(ConnectionConfig { max_frame_size: 100, ..Default::default() });
    let err = error_of(conn, &cf(2, true, &[0; 101]));
    match err {
        ProtocolError::FrameTooLarge { limit, len } => assert_eq!((limit, len), (100, 101)),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(err.reason(), "frame larger than the maximum frame size");
    assert_eq!(err.to_string(), "the peer sent a frame of 101 bytes; the maximum frame size is 100 bytes");
}

#[test]
fn a_client_masks_with_its_configured_source() {
    let seeded = |seed| ConnectionConfig {
        mask_source: Some(std::sync::Arc::new(crate::proto::SeededMasks::new(seed))),
        ..ConnectionConfig::default()
    };
    let frames = |config: ConnectionConfig| {
        let mut conn = Connection::new(Role::Client, config, std::time::Instant::now());
        let mut out = Vec::new();
        for _ in 0..4 {
            conn.send_text("same text", &mut out).unwrap();
        }
        out
    };
    assert_eq!(frames(seeded(7)), frames(seeded(7)), "the same seed gives the same bytes on the wire");
    assert_ne!(frames(seeded(7)), frames(seeded(8)));
    // The default draws fresh random keys: two runs differ (2^-128 chance of a false failure).
    assert_ne!(frames(ConnectionConfig::default()), frames(ConnectionConfig::default()));
}

// ---- The small-frame fast path of `Connection::read` against the general path ----

/// One frame of a hostile or honest stream: any first byte (weighted towards the fast path's 0x81 and
/// 0x82), masked or not, any payload up to 130 bytes (ASCII, or arbitrary bytes that are often invalid
/// UTF-8), its length in the 7-bit or (non-minimal) 16-bit form.
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
        let len =
            if bool::arbitrary(g) { usize::from(u8::arbitrary(g)) % 8 } else { usize::from(u8::arbitrary(g)) % 131 };
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
            match limit % 4 {
                0 => config.max_frame_size = 16,
                1 => config.max_message_size = 40,
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
    // Text and binary, masked, 7-bit lengths: the fast path's frames; the property above compares them.
    let mut wire = cf(0x1, true, b"hello");
    wire.extend(cf(0x2, true, &[0, 159, 146, 150]));
    let conn = server();
    assert!(conn.small_frame(&wire).is_some());
    assert!(conn.small_frame(&wire[..wire.len() - 1]).is_some(), "the first frame is complete");
    assert!(conn.small_frame(&wire[..10]).is_none(), "incomplete");
    assert!(conn.small_frame(&cf(0x1, false, b"he")).is_none(), "not final");
    assert!(conn.small_frame(&frame(0x2, true, 0, None, b"x")).is_none(), "unmasked from a client");
    assert!(conn.small_frame(&frame(0x2, true, RSV1, Some(KEY), b"x")).is_none(), "RSV bit");
    assert!(conn.small_frame(&cf(0x2, true, &[1; 126])).is_none(), "16-bit length");
    let (got, _, err) = feed_all(&mut server(), &wire);
    assert_eq!(err, None);
    assert_eq!(got, vec![Got::Text("hello".into()), Got::Binary(vec![0, 159, 146, 150])]);
}

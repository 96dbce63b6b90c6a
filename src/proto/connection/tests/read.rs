//! Reading: the framing rules, each with the close code it produces, the size limits and UTF-8
//! validation of text, and the automatic pong.

use super::*;

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

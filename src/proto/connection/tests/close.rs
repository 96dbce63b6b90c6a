//! The closing handshake: the peer's close answered, ours completed, and the codes and reasons that
//! may be sent or received.

use super::*;

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

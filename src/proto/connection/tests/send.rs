//! Sending: control payload limits, masking (a fresh key per frame, or the configured source), frames
//! and split messages, and what a server writes.

use super::*;

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

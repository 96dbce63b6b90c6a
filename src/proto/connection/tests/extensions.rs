//! Extensions: an extension's RSV bit and its transform of messages both ways, and the RSV rules on
//! continuation and control frames.

use super::*;

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

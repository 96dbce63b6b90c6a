//! Errors as values: every rule's `ProtocolError` names what was expected and what came, and the close
//! frame written carries its code and reason.

use super::*;

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

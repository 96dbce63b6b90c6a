//! Tests of the connection state machine: each rule with the close code it produces, and properties
//! over arbitrary streams and splits. The helpers shared by all of them are here; the tests are grouped
//! by job in `tests/`: `read`, `close`, `send`, `extensions`, `errors`, `streams` and `fast_path`.

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

mod close;
mod errors;
mod extensions;
mod fast_path;
mod read;
mod send;
mod streams;

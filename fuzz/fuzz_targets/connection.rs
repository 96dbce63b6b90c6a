//! Fuzz target for the connection state machine: arbitrary bytes, fed whole and in arbitrary chunks, to a
//! server-role and a client-role `Connection`.
//!
//! Checks: no panic; `read` never consumes more than it was given; the events (and the first error) are
//! the same whether the stream arrives whole or in chunks; an error always leaves the state `Failed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsloop::proto::{CloseState, Connection, ConnectionConfig, Event, ProtocolError, Role};

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn got(e: Event<'_>) -> Got {
    match e {
        Event::Text(t) => Got::Text(t.into_owned()),
        Event::Binary(b) => Got::Binary(b.into_owned()),
        Event::Ping(p) => Got::Ping(p.to_vec()),
        Event::Pong(p) => Got::Pong(p.to_vec()),
        Event::Close(c) => Got::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
    }
}

fn run(role: Role, chunks: &[&[u8]]) -> (Vec<Got>, Option<ProtocolError>) {
    let config = ConnectionConfig { max_frame_size: 1 << 16, max_message_size: 1 << 17, auto_pong: true };
    let mut conn = Connection::new(role, config);
    let mut tail = Vec::new();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        tail.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let len = tail.len() - pos;
            match conn.read(&mut tail[pos..], &mut out) {
                Ok((n, ev)) => {
                    assert!(n <= len, "consumed {n} of {len}");
                    pos += n;
                    match ev {
                        Some(ev) => events.push(got(ev)),
                        None => break,
                    }
                }
                Err(e) => {
                    assert_eq!(conn.close_state(), CloseState::Failed);
                    return (events, Some(e));
                }
            }
        }
        tail.drain(..pos);
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the chunk size; the rest is the stream.
    let chunk = usize::from(data[0] % 17) + 1;
    let stream = &data[1..];
    for role in [Role::Server, Role::Client] {
        let whole = run(role, &[stream]);
        let pieces: Vec<&[u8]> = stream.chunks(chunk).collect();
        let split = run(role, &pieces);
        assert_eq!(whole, split, "chunking changed the outcome");
    }
});

//! Checks for the connection state machine, run on arbitrary bytes fed whole and in chunks to a
//! server-role and a client-role `Connection`.
//!
//! Input layout: the first byte holds the settings, the rest is the stream the peer sent.
//! - bits 0-3: the chunk size minus one (1 to 16 bytes per `read` in the chunked run);
//! - bit 4: start the close handshake (`close(1000)`) before reading anything;
//! - bit 5: automatic pong off;
//! - bit 6: tiny limits (64-byte frames, 128-byte messages) instead of 64 KiB / 128 KiB.
//!
//! Checks: no panic; `read` never consumes more than it was given; the events (and the first error) are
//! the same whether the stream arrives whole or in chunks; an error leaves the state `Failed` and, unless
//! a close frame was already sent, a close frame with the error's code in the output; the final close
//! state follows from what happened; and everything written to the output decodes, for a peer of the
//! other role, to exactly the expected frames: a pong echoing each ping received while open (auto pong
//! on), the close reply echoing the peer's code, the local close, the failure's close frame, nothing after
//! a close frame, and for the server role the same bytes in both runs.
//!
//! Shared by the `connection` fuzz target (`fuzz/fuzz_targets/connection.rs`) and `cargo test`
//! (`tests/fuzz_seeds.rs`, over `fuzz/seeds/connection/`); it uses only wsloop's public API.

use wsloop::proto::{
    CloseCode, CloseState, Connection, ConnectionConfig, Event, FrameHeader, HeaderParse, ProtocolError, Role,
};

// The only places that depend on the shape of `ProtocolError` and on `Connection::close`'s signature.

/// The close code a protocol error answers with.
fn error_code(err: &ProtocolError) -> u16 {
    err.close_code().0
}

/// Starts the close handshake with 1000 and no reason.
fn start_close(conn: &mut Connection, out: &mut Vec<u8>) {
    conn.close(std::time::Instant::now(), CloseCode::NORMAL, "", out).expect("an open connection can start closing");
}

/// What the connection under test delivered (or what its output decoded to), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Got {
    fn is_data(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Binary(_))
    }

    /// The payload's length on the wire (a close frame's code counts two bytes).
    fn payload_len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b.len(),
            Self::Close(c) => c.as_ref().map_or(0, |(_, reason)| 2 + reason.len()),
        }
    }
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

/// The settings the first input byte selects.
#[derive(Debug, Clone, Copy)]
struct Settings {
    chunk: usize,
    close_first: bool,
    auto_pong: bool,
    tiny: bool,
}

impl Settings {
    fn from_byte(b: u8) -> Self {
        Self {
            chunk: usize::from(b & 0x0f) + 1,
            close_first: b & 0x10 != 0,
            auto_pong: b & 0x20 == 0,
            tiny: b & 0x40 != 0,
        }
    }

    fn config(self) -> ConnectionConfig {
        let (max_frame_size, max_message_size) = if self.tiny { (64, 128) } else { (1 << 16, 1 << 17) };
        ConnectionConfig { max_frame_size, max_message_size, auto_pong: self.auto_pong, ..ConnectionConfig::default() }
    }
}

/// The outcome of one run: events, the first error, and the output bytes.
#[derive(Debug)]
struct Outcome {
    events: Vec<Got>,
    error: Option<ProtocolError>,
    out: Vec<u8>,
}

fn run(role: Role, settings: Settings, chunks: &[&[u8]]) -> Outcome {
    let config = settings.config();
    let mut conn = Connection::new(role, config.clone(), std::time::Instant::now());
    let mut out = Vec::new();
    // What the output must decode to, built up as the connection reports what it did.
    let mut expected_out = Vec::new();
    if settings.close_first {
        start_close(&mut conn, &mut out);
        expected_out.push(Got::Close(Some((1000, String::new()))));
    }
    let mut tail = Vec::new();
    let mut events = Vec::new();
    let mut error = None;
    // Whether the last expected close frame is the failure's, whose reason is the error's text.
    let mut failure_close = false;
    'feed: for chunk in chunks {
        tail.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let len = tail.len() - pos;
            let before = conn.close_state();
            match conn.read(&mut tail[pos..], &mut out) {
                Ok((n, ev)) => {
                    assert!(n <= len, "consumed {n} of {len}");
                    pos += n;
                    let Some(ev) = ev else { break };
                    let ev = got(ev);
                    // Delivered messages respect the limit, control payloads the 125 bytes of RFC 6455 §5.5.
                    let limit = if ev.is_data() { config.max_message_size } else { 125 };
                    assert!(ev.payload_len() <= limit, "{} bytes delivered, limit {limit}", ev.payload_len());
                    match &ev {
                        Got::Ping(p) if before == CloseState::Open && settings.auto_pong => {
                            expected_out.push(Got::Pong(p.clone()));
                        }
                        Got::Close(c) => {
                            assert!(conn.close_received());
                            if before == CloseState::Open {
                                expected_out.push(Got::Close(c.as_ref().map(|(code, _)| (*code, String::new()))));
                            }
                        }
                        _ => {}
                    }
                    events.push(ev);
                }
                Err(e) => {
                    assert_eq!(conn.close_state(), CloseState::Failed);
                    if before == CloseState::Open {
                        expected_out.push(Got::Close(Some((error_code(&e), String::new()))));
                        failure_close = true;
                    }
                    error = Some(e);
                    break 'feed;
                }
            }
        }
        tail.drain(..pos);
    }

    let closed_by_peer = events.iter().any(|e| matches!(e, Got::Close(_)));
    assert_eq!(conn.close_received(), closed_by_peer);
    let state = match (&error, closed_by_peer, settings.close_first) {
        (Some(_), _, _) => CloseState::Failed,
        (None, true, _) => CloseState::Closed,
        (None, false, true) => CloseState::CloseSent,
        (None, false, false) => CloseState::Open,
    };
    assert_eq!(conn.close_state(), state);

    let mut decoded = decode_output(role, &out);
    if failure_close {
        // The failure's close frame carries a reason; only its code is compared.
        if let Some(Got::Close(Some((_, reason)))) = decoded.last_mut() {
            reason.clear();
        }
    }
    assert_eq!(decoded, expected_out, "output of the {role:?}");
    Outcome { events, error, out }
}

/// Decodes what a connection of role `role` wrote, as its peer (the other role) reads it: it must be
/// valid frames and nothing after a close frame.
fn decode_output(role: Role, out: &[u8]) -> Vec<Got> {
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut peer = Connection::new(peer_role, ConnectionConfig::default(), std::time::Instant::now());
    let mut buf = out.to_vec();
    let mut replies = Vec::new();
    let mut decoded = Vec::new();
    let mut pos = 0;
    loop {
        let (n, ev) = peer.read(&mut buf[pos..], &mut replies).unwrap_or_else(|e| panic!("peer of the {role:?}: {e}"));
        let before = pos;
        pos += n;
        match ev {
            Some(Event::Close(c)) => {
                decoded.push(got(Event::Close(c)));
                // After its close frame the peer ignores the rest: there must be none.
                assert_eq!(before + frame_len(&buf[before..]), out.len(), "bytes after the close frame");
                break;
            }
            Some(ev) => decoded.push(got(ev)),
            None => {
                assert_eq!(pos, out.len(), "incomplete frame in the output");
                break;
            }
        }
    }
    decoded
}

/// The length of the (complete) frame at the start of `bytes`.
fn frame_len(bytes: &[u8]) -> usize {
    match FrameHeader::parse(bytes) {
        Ok(HeaderParse::Complete { header, header_len }) => header_len + header.payload_len as usize,
        other => panic!("not a frame header: {other:?}"),
    }
}

/// Runs every connection check on `data`; panics when an invariant is broken.
pub(crate) fn check(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let settings = Settings::from_byte(first);
    for role in [Role::Server, Role::Client] {
        let whole = run(role, settings, &[stream]);
        let pieces: Vec<&[u8]> = stream.chunks(settings.chunk).collect();
        let split = run(role, settings, &pieces);
        assert_eq!((&whole.events, &whole.error), (&split.events, &split.error), "chunking changed the outcome");
        if role == Role::Server {
            // Nothing random in what a server writes: the bytes themselves agree.
            assert_eq!(whole.out, split.out, "chunking changed the server's output");
        }
    }
}

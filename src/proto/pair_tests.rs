//! Two cores played against each other through [`Pair`]. Each test names the rule it checks; the timing
//! tests run over several chunking seeds and with latency, so the instants they assert are those of a
//! network, not of one shared buffer.

use super::*;
use crate::proto::connection::CloseState;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
/// Chunking seeds per timing test.
const SEEDS: u64 = 12;

fn cfg() -> ConnectionConfig {
    ConnectionConfig::default()
}

fn close_got(code: u16, reason: &str) -> Got {
    Got::Close(Some((code, reason.to_string())))
}

fn close_frame(code: u16, reason: &str) -> Option<(u16, String)> {
    Some((code, reason.to_string()))
}

fn kinds(frames: &[WireFrame]) -> Vec<OpCode> {
    frames.iter().map(|f| f.opcode).collect()
}

/// Keepalive: a ping after `ping_interval` without arrivals, answered by the peer's auto-pong; each pong
/// ends the pong wait and restarts the interval, across many intervals, and keeps both idle timeouts off.
/// Fails if `received()` leaves the pong wait running (a pong timeout at 1.3 s).
#[test]
fn keepalive_ping_after_ping_interval_is_answered_by_auto_pong_and_the_connection_stays_open() {
    for seed in 0..SEEDS {
        // Both sides would idle out after 1.5 s of silence: the keepalive traffic is what keeps them open.
        let client =
            ConnectionConfig { ping_interval: Some(S), pong_timeout: 300 * MS, idle_timeout: Some(1500 * MS), ..cfg() };
        let server = ConnectionConfig { idle_timeout: Some(1500 * MS), ..cfg() };
        let mut pair = Pair::new(client, server, seed).with_latency(20 * MS);
        pair.advance(10_500 * MS);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        // A 40 ms round trip: pings at 1 s, 2.04 s, 3.08 s, ... 10.36 s.
        assert_eq!(c.timeouts.len(), 10, "seed {seed}: {:?}", c.timeouts);
        assert!(c.timeouts.iter().all(|(_, t)| *t == Timeout::Ping), "seed {seed}: {:?}", c.timeouts);
        assert_eq!(c.timeouts[0].0, S);
        for (k, (at, _)) in c.events.iter().enumerate() {
            assert_eq!(*at, c.timeouts[k].0 + 40 * MS, "the pong comes back one round trip after the ping");
            if let Some((next, _)) = c.timeouts.get(k + 1) {
                assert_eq!(*next, *at + S, "the next ping goes ping_interval after the last arrival");
            }
        }
        assert_eq!(c.got(), vec![Got::Pong(vec![]); 10]);
        assert_eq!(s.got(), vec![Got::Ping(vec![]); 10]);
        assert_eq!(kinds(&c.frames()), vec![OpCode::Ping; 10]);
        assert_eq!(kinds(&s.frames()), vec![OpCode::Pong; 10]);
        assert!(s.timeouts.is_empty(), "{:?}", s.timeouts);
        for who in [Who::Client, Who::Server] {
            assert_eq!(pair.conn(who).close_state(), CloseState::Open);
            assert!(pair.side(who).open());
        }
    }
}

/// Pong deadline: a peer gone silent gets `Timeout::Ping` then `Timeout::Pong`; the pinger writes a close
/// 1001 "pong timeout" and is `TimedOut`. Fails if `handle_timeout` skips the pong-timeout close frame.
#[test]
fn a_silent_peer_gets_a_ping_then_a_pong_timeout_and_a_1001_pong_timeout_close() {
    for seed in 0..SEEDS {
        let client = ConnectionConfig { ping_interval: Some(S), pong_timeout: 500 * MS, ..cfg() };
        let mut pair = Pair::new(client, cfg(), seed).with_latency(10 * MS);
        pair.cut(Who::Server);
        pair.advance(3 * S);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        assert_eq!(c.timeouts, vec![(S, Timeout::Ping), (1500 * MS, Timeout::Pong)]);
        assert_eq!(c.conn.close_state(), CloseState::TimedOut);
        assert!(c.conn.transport_may_close());
        assert_eq!(c.closed_at, Some(1500 * MS), "the transport closes at the pong deadline");
        let frames = c.frames();
        assert_eq!(kinds(&frames), vec![OpCode::Ping, OpCode::Close]);
        assert_eq!(frames[1].close(), Some(close_frame(1001, "pong timeout")));
        assert!(c.events.is_empty());
        // The server did its part (the network lost it): it answered both and closed once it could.
        assert_eq!(s.got(), vec![Got::Ping(vec![]), close_got(1001, "pong timeout")]);
        assert_eq!(kinds(&s.frames()), vec![OpCode::Pong, OpCode::Close]);
        assert_eq!(s.closed_at, Some(1510 * MS));
    }
}

/// Any arriving bytes end the pong wait, a data message or a single byte of a header, not only a pong.
/// Fails if `received()` leaves the pong wait running.
#[test]
fn any_arriving_bytes_end_the_pong_wait_not_only_a_pong() {
    for seed in 0..SEEDS {
        let client = ConnectionConfig { ping_interval: Some(S), pong_timeout: 500 * MS, ..cfg() };
        // No pong ever: only other traffic can keep the client's pong deadline from passing.
        let server = ConnectionConfig { auto_pong: false, ..cfg() };
        let mut pair = Pair::new(client, server, seed).with_latency(10 * MS);
        pair.advance_to(1200 * MS);
        assert_eq!(pair.side(Who::Server).got(), vec![Got::Ping(vec![])]);
        pair.send_text(Who::Server, "still here").unwrap();
        pair.advance_to(2100 * MS);
        assert_eq!(pair.side(Who::Client).timeouts, vec![(S, Timeout::Ping)], "a text message ended the wait");
        assert_eq!(pair.side(Who::Client).got(), vec![Got::Text("still here".into())]);
        assert_eq!(pair.conn(Who::Client).close_state(), CloseState::Open);
        // The next ping goes 1 s after that arrival (2.21 s); then one byte, not even a frame header.
        pair.advance_to(2300 * MS);
        assert_eq!(pair.side(Who::Client).timeouts.last(), Some(&(2210 * MS, Timeout::Ping)));
        pair.inject(Who::Server, &[0x81]);
        pair.advance_to(3300 * MS);
        assert_eq!(pair.side(Who::Client).timeouts.len(), 2, "one byte ended the second wait");
        assert_eq!(pair.conn(Who::Client).close_state(), CloseState::Open);
        // With nothing more, the third ping (at 3.31 s) goes unanswered.
        pair.advance_to(4 * S);
        let c = pair.side(Who::Client);
        assert_eq!(
            c.timeouts,
            vec![
                (S, Timeout::Ping),
                (2210 * MS, Timeout::Ping),
                (3310 * MS, Timeout::Ping),
                (3810 * MS, Timeout::Pong)
            ]
        );
        assert_eq!(c.conn.close_state(), CloseState::TimedOut);
        assert_eq!(c.closes_written(), vec![close_frame(1001, "pong timeout")]);
    }
}

/// Idle timeout: after `idle_timeout` without arrivals, a close 1001 "idle timeout"; the peer echoes it, both
/// end `Closed` and may close the transport. Fails if the idle deadline counts from the open instead of the
/// last arrival, or if `poll_timeout` forgets it.
#[test]
fn idle_timeout_sends_1001_idle_timeout_the_peer_answers_and_both_transports_close() {
    for seed in 0..SEEDS {
        let server = ConnectionConfig { idle_timeout: Some(3 * S), close_timeout: 2 * S, ..cfg() };
        let mut pair = Pair::new(cfg(), server, seed).with_latency(10 * MS);
        pair.advance_to(S);
        pair.send_text(Who::Client, "hi").unwrap();
        pair.advance(10 * S);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        // Idle counts from the last arrival (1.01 s), not from the open.
        assert_eq!(s.timeouts, vec![(4010 * MS, Timeout::Idle)]);
        assert_eq!(s.closes_written(), vec![close_frame(1001, "idle timeout")]);
        assert_eq!(s.events, vec![(1010 * MS, Got::Text("hi".into())), (4030 * MS, close_got(1001, ""))]);
        assert_eq!(c.events, vec![(4020 * MS, close_got(1001, "idle timeout"))]);
        assert_eq!(c.closes_written(), vec![close_frame(1001, "")], "the client echoes the code");
        for who in [Who::Client, Who::Server] {
            assert_eq!(pair.conn(who).close_state(), CloseState::Closed, "{who:?}");
            assert!(pair.conn(who).transport_may_close());
        }
        // The server closes at once; the client when the end of stream arrives.
        assert_eq!(s.closed_at, Some(4030 * MS));
        assert_eq!((c.closed_at, c.saw_eof), (Some(4040 * MS), true));
        assert!(c.timeouts.is_empty(), "{:?}", c.timeouts);
    }
}

/// Close crossing close: both call `close` at once; each gets the other's code, replies to nothing, ends
/// `Closed`. Fails if a close received in `CloseSent` is answered (the harness sees a write after close).
#[test]
fn close_crossing_close_ends_closed_on_both_sides_with_each_others_code() {
    for seed in 0..SEEDS {
        // Zero latency: both frames are queued before either side reads; 25 ms: they cross in flight.
        let latency = if seed % 2 == 0 { Duration::ZERO } else { 25 * MS };
        let config = ConnectionConfig { close_timeout: 2 * S, ..cfg() };
        let mut pair = Pair::new(config.clone(), config, seed).with_latency(latency);
        pair.advance_to(S);
        pair.close(Who::Client, 1000, "client done").unwrap();
        pair.close(Who::Server, 4000, "server done").unwrap();
        pair.advance(5 * S);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        assert_eq!(c.events, vec![(S + latency, close_got(4000, "server done"))]);
        assert_eq!(s.events, vec![(S + latency, close_got(1000, "client done"))]);
        // Each wrote its own close and nothing else: no reply to a close that crossed ours.
        assert_eq!(c.closes_written(), vec![close_frame(1000, "client done")]);
        assert_eq!(s.closes_written(), vec![close_frame(4000, "server done")]);
        assert_eq!(c.frames().len() + s.frames().len(), 2);
        for who in [Who::Client, Who::Server] {
            assert_eq!(pair.conn(who).close_state(), CloseState::Closed, "{who:?}");
            assert!(pair.conn(who).close_received());
            assert!(pair.side(who).timeouts.is_empty(), "{who:?}: {:?}", pair.side(who).timeouts);
        }
        assert_eq!(s.closed_at, Some(S + latency));
        assert_eq!((c.closed_at, c.saw_eof), (Some(S + 2 * latency), true));
        for who in [Who::Client, Who::Server] {
            assert_eq!(pair.send_text(who, "late"), Err(SendError::Closed));
        }
    }
}

/// Close timeout: our close unanswered within `close_timeout` gives `Timeout::Close` and `TimedOut`. Fails if
/// `close()` does not start the close-reply wait.
#[test]
fn an_unanswered_close_times_out_after_close_timeout() {
    for seed in 0..SEEDS {
        let client = ConnectionConfig { close_timeout: 2 * S, ..cfg() };
        let mut pair = Pair::new(client, cfg(), seed).with_latency(10 * MS);
        pair.cut(Who::Server);
        pair.advance_to(500 * MS);
        pair.close(Who::Client, 1000, "bye").unwrap();
        pair.advance_to(2499 * MS);
        assert_eq!(pair.conn(Who::Client).close_state(), CloseState::CloseSent);
        assert!(!pair.conn(Who::Client).transport_may_close());
        pair.advance(5 * S);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        assert_eq!(c.timeouts, vec![(2500 * MS, Timeout::Close)]);
        assert_eq!(c.conn.close_state(), CloseState::TimedOut);
        assert_eq!(c.closed_at, Some(2500 * MS));
        assert!(!c.saw_eof, "the cut network carries no end of stream");
        assert_eq!(c.closes_written(), vec![close_frame(1000, "bye")]);
        // The server answered (lost on the way) and closed at once.
        assert_eq!(s.got(), vec![close_got(1000, "bye")]);
        assert_eq!(s.closed_at, Some(510 * MS));
    }
}

/// Linger: after the handshake a client waits for the server to close, at most `close_timeout` from the
/// arrival that ended the handshake, whatever arrives later. Fails if the bound counts from our close
/// instead, or if later arrivals restart it.
#[test]
fn a_client_waits_for_the_server_to_close_then_lingers_out_close_timeout_after_the_handshake() {
    for seed in 0..SEEDS {
        let config = ConnectionConfig { close_timeout: 2 * S, ..cfg() };
        let mut pair = Pair::new(config.clone(), config, seed).with_latency(10 * MS);
        // A server that never closes TCP, and keeps writing after the handshake.
        pair.stall(Who::Server);
        pair.advance_to(S);
        pair.close(Who::Client, 1000, "").unwrap();
        pair.advance_to(2 * S);
        assert_eq!(pair.conn(Who::Client).close_state(), CloseState::Closed);
        assert!(pair.side(Who::Client).open(), "a client waits for the server to close");
        pair.inject(Who::Server, &[0x89, 0x00]);
        pair.advance(5 * S);
        let (c, s) = (pair.side(Who::Client), pair.side(Who::Server));
        // The handshake ended when the reply arrived (1.02 s): the bound runs from there, whatever
        // arrives after it.
        assert_eq!(c.timeouts, vec![(3020 * MS, Timeout::Linger)]);
        assert_eq!((c.closed_at, c.saw_eof), (Some(3020 * MS), false));
        assert_eq!(c.conn.close_state(), CloseState::Closed);
        assert_eq!(c.events, vec![(1020 * MS, close_got(1000, ""))], "bytes after the close are ignored");
        // The stalled server's own bound ran from its last arrival (1.01 s); it closed at end of stream.
        assert_eq!(s.timeouts, vec![(3010 * MS, Timeout::Linger)]);
        assert_eq!((s.closed_at, s.saw_eof), (Some(3030 * MS), true));
    }
}

/// Priority: when the pong deadline and the idle timeout pass together, the pong timeout is what fires.
/// Fails if `due()` checks the idle timeout first.
#[test]
fn the_pong_deadline_wins_over_the_idle_timeout_when_both_pass_together() {
    for seed in 0..SEEDS {
        let client =
            ConnectionConfig { ping_interval: Some(S), pong_timeout: 500 * MS, idle_timeout: Some(1500 * MS), ..cfg() };
        let mut pair = Pair::new(client, cfg(), seed).with_latency(10 * MS);
        pair.cut(Who::Server);
        pair.advance(3 * S);
        let c = pair.side(Who::Client);
        assert_eq!(c.timeouts, vec![(S, Timeout::Ping), (1500 * MS, Timeout::Pong)]);
        assert_eq!(c.conn.close_state(), CloseState::TimedOut);
        assert_eq!(c.closes_written(), vec![close_frame(1001, "pong timeout")]);
    }
}

/// The idle timeout still runs while a keepalive ping waits for its answer. Fails if `poll_timeout` drops
/// the idle deadline during a pong wait.
#[test]
fn the_idle_timeout_still_runs_during_a_pong_wait() {
    for seed in 0..SEEDS {
        let client = ConnectionConfig {
            ping_interval: Some(S),
            pong_timeout: 500 * MS,
            idle_timeout: Some(1200 * MS),
            close_timeout: 2 * S,
            ..cfg()
        };
        let mut pair = Pair::new(client, cfg(), seed).with_latency(10 * MS);
        pair.cut(Who::Server);
        pair.advance(5 * S);
        let c = pair.side(Who::Client);
        assert_eq!(c.timeouts, vec![(S, Timeout::Ping), (1200 * MS, Timeout::Idle), (3200 * MS, Timeout::Close)]);
        assert_eq!(c.conn.close_state(), CloseState::TimedOut);
        assert_eq!(c.closes_written(), vec![close_frame(1001, "idle timeout")]);
    }
}

/// Fragmented messages both ways with control frames between the fragments; the client's text splits a
/// code point across fragments and has a read of the server in the middle.
fn fragmented_exchange(pair: &mut Pair) {
    let o_umlaut = "ö".as_bytes();
    pair.send_frame(Who::Server, OpCode::Binary, false, b"ab").unwrap();
    pair.ping(Who::Server, b"s1").unwrap();
    pair.send_frame(Who::Server, OpCode::Continuation, false, b"").unwrap();
    pair.send_frame(Who::Server, OpCode::Continuation, true, b"cd").unwrap();
    pair.send_text(Who::Server, "done").unwrap();

    pair.send_frame(Who::Client, OpCode::Text, false, b"Hel").unwrap();
    pair.ping(Who::Client, b"1").unwrap();
    pair.send_frame(Who::Client, OpCode::Continuation, false, &[b"lo, w", &o_umlaut[..1]].concat()).unwrap();
    pair.pong(Who::Client, b"u").unwrap();
    pair.drive();
    pair.send_frame(Who::Client, OpCode::Continuation, false, &o_umlaut[1..]).unwrap();
    pair.ping(Who::Client, b"2").unwrap();
    pair.send_frame(Who::Client, OpCode::Continuation, true, b"rld").unwrap();
    pair.send_frame(Who::Client, OpCode::Binary, false, &[0; 200]).unwrap();
    pair.ping(Who::Client, b"3").unwrap();
    pair.send_frame(Who::Client, OpCode::Continuation, true, &[1; 70_000]).unwrap();
    pair.send_text(Who::Client, "whole").unwrap();
    pair.advance(S);
}

fn data(events: &[Got]) -> Vec<Got> {
    events.iter().filter(|g| matches!(g, Got::Text(_) | Got::Binary(_))).cloned().collect()
}

fn controls(events: &[Got], pong: bool) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|g| match g {
            Got::Ping(p) if !pong => Some(p.clone()),
            Got::Pong(p) if pong => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Fragmentation: fragmented text (a code point split across fragments) and binary (16- and 64-bit
/// lengths) with pings and pongs between fragments arrive as whole messages, the same in any chunking,
/// each ping answered in order with its payload. Fails if auto-pong drops the payload, or if a partly read
/// frame is unmasked twice.
#[test]
fn fragmented_messages_with_interleaved_control_frames_arrive_whole_in_any_chunking() {
    for seed in 0..48 {
        let latency = [Duration::ZERO, MS, 7 * MS][seed as usize % 3];
        let mut whole = Pair::new(cfg(), cfg(), seed).with_chunking(Chunking::Whole).with_latency(latency);
        let mut random = Pair::new(cfg(), cfg(), seed).with_latency(latency);
        fragmented_exchange(&mut whole);
        fragmented_exchange(&mut random);
        for who in [Who::Client, Who::Server] {
            assert_eq!(random.side(who).events, whole.side(who).events, "seed {seed}, {who:?}");
            assert_eq!(random.side(who).wire, whole.side(who).wire, "seed {seed}, {who:?}");
            assert!(random.side(who).errors.is_empty(), "{:?}", random.side(who).errors);
        }
        let (c, s) = (random.side(Who::Client).got(), random.side(Who::Server).got());
        let big = [vec![0; 200], vec![1; 70_000]].concat();
        assert_eq!(
            data(&s),
            vec![Got::Text("Hello, wörld".into()), Got::Binary(big), Got::Text("whole".into())],
            "seed {seed}"
        );
        assert_eq!(data(&c), vec![Got::Binary(b"abcd".to_vec()), Got::Text("done".into())]);
        assert_eq!(controls(&s, false), vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(controls(&c, false), vec![b"s1".to_vec()]);
        // Pongs answer in the order of the pings; the server also got the client's unsolicited one.
        assert_eq!(controls(&c, true), vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        let mut server_pongs = controls(&s, true);
        server_pongs.sort();
        assert_eq!(server_pongs, vec![b"s1".to_vec(), b"u".to_vec()]);
        // The pings arrive before the messages they were sent inside of.
        let position = |g: &Got| s.iter().position(|e| e == g).unwrap();
        assert!(position(&Got::Ping(b"2".to_vec())) < position(&Got::Text("Hello, wörld".into())));
    }
}

/// One step of a random script.
#[derive(Debug, Clone)]
enum Step {
    /// A data message; several pieces are sent as fragments, with `between[i]` after piece `i`.
    Data {
        who: Who,
        text: bool,
        pieces: Vec<Vec<u8>>,
        between: Vec<Between>,
    },
    Ping(Who, Vec<u8>),
    Pong(Who, Vec<u8>),
    Close(Who, u16, String),
    Drive,
    Advance(Duration),
    /// The network stops carrying what `who` writes.
    Cut(Who),
    /// `who` puts a frame with a reserved opcode on the wire (the peer must fail with 1002).
    Violate(Who),
}

#[derive(Debug, Clone)]
enum Between {
    Nothing,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Drive,
    Advance(Duration),
}

#[derive(Debug, Clone)]
struct Script {
    client: ConnectionConfig,
    server: ConnectionConfig,
    latency: Duration,
    stall: Option<Who>,
    steps: Vec<Step>,
}

fn random_text(rng: &mut Rng, max: usize) -> String {
    const CHARS: [char; 8] = ['a', 'b', ' ', 'é', '€', '𝄞', '中', '\u{0}'];
    (0..rng.range(0, max)).map(|_| CHARS[rng.below(CHARS.len())]).collect()
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..rng.range(0, max)).map(|_| rng.next_u64() as u8).collect()
}

fn random_who(rng: &mut Rng) -> Who {
    if rng.chance(50) {
        Who::Client
    } else {
        Who::Server
    }
}

fn random_config(rng: &mut Rng) -> ConnectionConfig {
    ConnectionConfig {
        auto_pong: rng.chance(90),
        ping_interval: rng.chance(50).then(|| rng.range(200, 2000) as u32 * MS),
        // Now and then zero: the deadline is then due at the instant it is armed.
        pong_timeout: if rng.chance(10) { Duration::ZERO } else { rng.range(50, 1000) as u32 * MS },
        idle_timeout: rng.chance(40).then(|| rng.range(500, 5000) as u32 * MS),
        close_timeout: if rng.chance(10) { Duration::ZERO } else { rng.range(100, 3000) as u32 * MS },
        ..cfg()
    }
}

fn random_between(rng: &mut Rng) -> Between {
    match rng.below(10) {
        0..=3 => Between::Nothing,
        4 | 5 => Between::Ping(random_bytes(rng, 8)),
        6 => Between::Pong(random_bytes(rng, 8)),
        7 | 8 => Between::Drive,
        _ => Between::Advance(rng.range(0, 800) as u32 * MS),
    }
}

fn random_script(seed: u64) -> Script {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let client = random_config(&mut rng);
    let server = random_config(&mut rng);
    let latency = if rng.chance(50) { Duration::ZERO } else { rng.range(1, 60) as u32 * MS };
    let stall = rng.chance(15).then(|| random_who(&mut rng));
    let mut steps = Vec::new();
    for _ in 0..rng.range(3, 40) {
        let who = random_who(&mut rng);
        let step = match rng.below(100) {
            0..=34 => {
                let text = rng.chance(50);
                let payload = if text {
                    random_text(&mut rng, 40).into_bytes()
                } else if rng.chance(3) {
                    vec![0xa5; 70_000]
                } else {
                    random_bytes(&mut rng, 300)
                };
                let mut cuts: Vec<usize> = if rng.chance(50) {
                    Vec::new()
                } else {
                    (0..rng.range(1, 4)).map(|_| rng.range(0, payload.len())).collect()
                };
                cuts.sort_unstable();
                let mut pieces = Vec::new();
                let mut start = 0;
                for cut in cuts {
                    pieces.push(payload[start..cut].to_vec());
                    start = cut;
                }
                pieces.push(payload[start..].to_vec());
                let between = (0..pieces.len()).map(|_| random_between(&mut rng)).collect();
                Step::Data { who, text, pieces, between }
            }
            35..=44 => Step::Ping(who, random_bytes(&mut rng, 125)),
            45..=49 => Step::Pong(who, random_bytes(&mut rng, 20)),
            50..=64 => Step::Drive,
            65..=88 => Step::Advance(rng.range(0, 1500) as u32 * MS),
            89..=94 => {
                let code = [1000, 1001, 1003, 1008, 3000, 4999][rng.below(6)];
                let max = if rng.chance(20) { 60 } else { 8 };
                let reason = random_text(&mut rng, max);
                Step::Close(who, code, reason)
            }
            95..=97 => Step::Cut(who),
            _ => Step::Violate(who),
        };
        steps.push(step);
    }
    steps.push(Step::Advance(60 * S));
    Script { client, server, latency, stall, steps }
}

/// What one side saw and did over a run.
#[derive(Debug, PartialEq, Eq)]
struct SideOutcome {
    events: Vec<(Duration, Got)>,
    timeouts: Vec<(Duration, Timeout)>,
    errors: Vec<(Duration, ProtocolError)>,
    wire: Vec<u8>,
    state: CloseState,
    closed_at: Option<Duration>,
    saw_eof: bool,
    /// The data messages whose every frame was sent.
    sent: Vec<Got>,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    results: Vec<String>,
    sides: Vec<SideOutcome>,
}

fn run(script: &Script, seed: u64, chunking: Chunking, chunk_seed: u64) -> Outcome {
    let mut pair = Pair::new(script.client.clone(), script.server.clone(), seed)
        .with_chunking(chunking)
        .with_chunk_seed(chunk_seed)
        .with_latency(script.latency);
    if let Some(who) = script.stall {
        pair.stall(who);
    }
    let mut results = Vec::new();
    let mut sent = [Vec::new(), Vec::new()];
    for (i, step) in script.steps.iter().enumerate() {
        match step {
            Step::Data { who, text, pieces, between } => {
                let mut all_sent = true;
                if pieces.len() == 1 {
                    let r = if *text {
                        pair.send_text(*who, std::str::from_utf8(&pieces[0]).unwrap())
                    } else {
                        pair.send_binary(*who, &pieces[0])
                    };
                    all_sent &= r.is_ok();
                    results.push(format!("{i}: {r:?}"));
                }
                let fragments = if pieces.len() > 1 { &pieces[..] } else { &[] };
                for (k, piece) in fragments.iter().enumerate() {
                    let opcode = match (k, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    let r = pair.send_frame(*who, opcode, k + 1 == pieces.len(), piece);
                    all_sent &= r.is_ok();
                    results.push(format!("{i}.{k}: {r:?}"));
                    let r = match &between[k] {
                        Between::Nothing => Ok(()),
                        Between::Ping(p) => pair.ping(*who, p),
                        Between::Pong(p) => pair.pong(*who, p),
                        Between::Drive => {
                            pair.drive();
                            Ok(())
                        }
                        Between::Advance(d) => {
                            pair.advance(*d);
                            Ok(())
                        }
                    };
                    results.push(format!("{i}.{k} between: {r:?}"));
                }
                if all_sent {
                    let bytes = pieces.concat();
                    sent[who.index()].push(if *text {
                        Got::Text(String::from_utf8(bytes).unwrap())
                    } else {
                        Got::Binary(bytes)
                    });
                }
            }
            Step::Ping(who, p) => results.push(format!("{i}: {:?}", pair.ping(*who, p))),
            Step::Pong(who, p) => results.push(format!("{i}: {:?}", pair.pong(*who, p))),
            Step::Close(who, code, reason) => results.push(format!("{i}: {:?}", pair.close(*who, *code, reason))),
            Step::Drive => pair.drive(),
            Step::Advance(d) => pair.advance(*d),
            Step::Cut(who) => pair.cut(*who),
            Step::Violate(who) => {
                let frame: &[u8] = match who {
                    Who::Client => &[0x83, 0x80, 1, 2, 3, 4],
                    Who::Server => &[0x83, 0x00],
                };
                pair.inject(*who, frame);
            }
        }
    }
    let sides = [Who::Client, Who::Server]
        .into_iter()
        .map(|who| {
            let side = pair.side(who);
            SideOutcome {
                events: side.events.clone(),
                timeouts: side.timeouts.clone(),
                errors: side.errors.clone(),
                wire: side.wire.clone(),
                state: side.conn.close_state(),
                closed_at: side.closed_at,
                saw_eof: side.saw_eof,
                sent: std::mem::take(&mut sent[who.index()]),
            }
        })
        .collect();
    Outcome { results, sides }
}

/// How often each behaviour showed up over the seeds, so that the property is not vacuous.
#[derive(Debug, Default)]
struct Coverage {
    ping: usize,
    pong: usize,
    idle: usize,
    close: usize,
    linger: usize,
    failed: usize,
    closed_both: usize,
    fragmented: usize,
}

/// Chunking invariance: random scripts (messages, fragments with control frames between, pings, closes,
/// time, cut links, protocol violations, random timeouts) give the same events, deadlines, bytes written and
/// end states in random chunking as in whole reads; each side receives a prefix of what the other sent.
/// Fails if a partly read frame is unmasked twice.
#[test]
fn random_scripts_give_the_same_events_whatever_the_chunking() {
    let mut coverage = Coverage::default();
    for seed in 0..300 {
        let script = random_script(seed);
        let whole = run(&script, seed, Chunking::Whole, 0);
        for chunk_seed in [seed, seed + 10_000] {
            let random = run(&script, seed, Chunking::Random, chunk_seed);
            assert_eq!(random, whole, "seed {seed}, chunk seed {chunk_seed}: {script:#?}");
        }
        // What each side received is what the other sent, in order, up to where it stopped reading; no
        // errors but for the injected violations.
        for (who, side) in [Who::Client, Who::Server].into_iter().zip(&whole.sides) {
            let peer = &whole.sides[who.peer().index()];
            let received = data(&side.events.iter().map(|(_, g)| g.clone()).collect::<Vec<_>>());
            assert!(peer.sent.starts_with(&received), "seed {seed}, {who:?}: {received:?} vs {:?}", peer.sent);
            let violated = script.steps.iter().any(|s| matches!(s, Step::Violate(w) if *w == who.peer()));
            assert!(violated || side.errors.is_empty(), "seed {seed}, {who:?}: {:?}", side.errors);
        }
        let fired = |t: Timeout| whole.sides.iter().any(|s| s.timeouts.iter().any(|(_, x)| *x == t));
        coverage.ping += usize::from(fired(Timeout::Ping));
        coverage.pong += usize::from(fired(Timeout::Pong));
        coverage.idle += usize::from(fired(Timeout::Idle));
        coverage.close += usize::from(fired(Timeout::Close));
        coverage.linger += usize::from(fired(Timeout::Linger));
        coverage.failed += usize::from(whole.sides.iter().any(|s| s.state == CloseState::Failed));
        coverage.closed_both += usize::from(whole.sides.iter().all(|s| s.state == CloseState::Closed));
        coverage.fragmented +=
            usize::from(script.steps.iter().any(|s| matches!(s, Step::Data { pieces, .. } if pieces.len() > 2)));
    }
    let c = &coverage;
    for (what, n) in [
        ("ping", c.ping),
        ("pong", c.pong),
        ("idle", c.idle),
        ("close", c.close),
        ("linger", c.linger),
        ("failed", c.failed),
        ("closed_both", c.closed_both),
        ("fragmented", c.fragmented),
    ] {
        assert!(n >= 5, "only {n} of 300 scripts had {what}: {coverage:?}");
    }
}

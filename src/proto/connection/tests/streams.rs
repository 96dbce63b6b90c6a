//! Properties over arbitrary message streams: any split of the bytes, down to one byte at a time, reads
//! as the same events.

use super::*;

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

use std::time::Instant;

use super::*;
use crate::proto::negotiate::{format_extensions, parse_extensions, ExtensionOffer};
use crate::proto::{CloseCode, Connection, ConnectionConfig, Event, ProtocolError, Role, SeededMasks, RSV1};

fn offers(s: &str) -> Vec<ExtensionOffer> {
    parse_extensions(s).unwrap()
}

fn accept(config: &DeflateConfig, header: &str) -> Option<String> {
    accept_offers(config, &offers(header)).map(|(_, answer)| format_extensions(&[answer]))
}

fn shared() -> DeflateConfig {
    DeflateConfig::with_mode(DeflateMode::Shared)
}

/// Dedicated mode with context takeover both ways where the client allows it (the negotiation tests);
/// the default also asks the client to drop its context (see
/// `dedicated_by_default_answers_client_no_context_takeover_and_inflates_with_the_shared_stream`).
fn dedicated() -> DeflateConfig {
    DeflateConfig { request_client_no_context_takeover: false, ..DeflateConfig::with_mode(DeflateMode::Dedicated) }
}

#[test]
fn off_declines_everything() {
    assert_eq!(accept(&DeflateConfig::default(), "permessage-deflate"), None);
    assert_eq!(client_offer(&DeflateConfig::default()), None);
}

#[test]
fn shared_mode_answers_no_context_takeover_both_ways() {
    assert_eq!(
        accept(&shared(), "permessage-deflate; client_max_window_bits").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn dedicated_mode_keeps_takeover_unless_asked_and_echoes_server_no_context_takeover() {
    assert_eq!(accept(&dedicated(), "permessage-deflate").as_deref(), Some("permessage-deflate"));
    assert_eq!(
        accept(&dedicated(), "permessage-deflate; server_no_context_takeover").as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(
        accept(&dedicated(), "permessage-deflate; client_no_context_takeover").as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
}

#[test]
fn window_bits_with_and_without_values() {
    // Offered server_max_window_bits must be answered, with the same or a smaller value.
    assert_eq!(
        accept(&dedicated(), "permessage-deflate; server_max_window_bits=10").as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    let small = DeflateConfig { window_bits: 11, peer_window_bits: 9, ..dedicated() };
    assert_eq!(
        accept(&small, "permessage-deflate; server_max_window_bits=12; client_max_window_bits").as_deref(),
        Some("permessage-deflate; server_max_window_bits=11; client_max_window_bits=9")
    );
    // Our own window below 15 is announced even when not asked.
    assert_eq!(accept(&small, "permessage-deflate").as_deref(), Some("permessage-deflate; server_max_window_bits=11"));
    // client_max_window_bits is answered only to a client that offered it, and never above its value.
    assert_eq!(
        accept(&small, "permessage-deflate; client_max_window_bits=8").as_deref(),
        Some("permessage-deflate; server_max_window_bits=11")
    );
    let (agreed, _) = accept_offers(&small, &offers("permessage-deflate; client_max_window_bits=10")).unwrap();
    assert_eq!(agreed.client_max_window_bits, Some(9));
}

#[test]
fn window_bits_8_for_our_compressor_declines_that_offer_and_takes_the_next() {
    assert_eq!(accept(&dedicated(), "permessage-deflate; server_max_window_bits=8"), None);
    assert_eq!(
        accept(
            &dedicated(),
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9"
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=9")
    );
}

#[test]
fn malformed_unknown_or_duplicate_params_decline_the_offer_and_the_next_is_taken() {
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; x-unknown",
    ] {
        assert_eq!(accept(&dedicated(), bad), None, "{bad}");
        assert_eq!(
            accept(&dedicated(), &format!("{bad}, permessage-deflate; client_no_context_takeover")).as_deref(),
            Some("permessage-deflate; client_no_context_takeover"),
            "{bad}"
        );
    }
    // Other extensions are skipped; the quoted form of a good value is fine.
    assert_eq!(
        accept(&dedicated(), "x-other, permessage-deflate; server_max_window_bits=\"12\"").as_deref(),
        Some("permessage-deflate; server_max_window_bits=12")
    );
}

#[test]
fn client_offer_follows_the_mode() {
    let f = |c: &DeflateConfig| format_extensions(&[client_offer(c).unwrap()]);
    assert_eq!(f(&dedicated()), "permessage-deflate; client_max_window_bits");
    assert_eq!(
        f(&shared()),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    );
    assert_eq!(
        f(&DeflateConfig { peer_window_bits: 10, ..dedicated() }),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
    );
}

fn check(config: &DeflateConfig, answer: &str) -> Result<Option<DeflateParams>, DeflateResponseError> {
    check_response(config, &offers(answer))
}

#[test]
fn client_accepts_good_answers() {
    assert_eq!(check(&dedicated(), ""), Ok(None));
    assert_eq!(
        check(&dedicated(), "permessage-deflate; client_max_window_bits=9; server_max_window_bits=12"),
        Ok(Some(DeflateParams {
            client_max_window_bits: Some(9),
            server_max_window_bits: Some(12),
            ..DeflateParams::default()
        }))
    );
    assert_eq!(
        check(&shared(), "permessage-deflate; server_no_context_takeover"),
        Ok(Some(DeflateParams { server_no_context_takeover: true, ..DeflateParams::default() }))
    );
}

#[test]
fn client_fails_on_bad_answers_with_a_typed_error() {
    use DeflateResponseError as E;
    let name = |n: &str| n.to_owned();
    let cases: Vec<(DeflateConfig, &str, DeflateResponseError)> = vec![
        (dedicated(), "permessage-deflate; foo", E::UnknownParam { name: name("foo") }),
        (
            dedicated(),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            E::DuplicateParam { name: name("server_no_context_takeover") },
        ),
        (
            dedicated(),
            "permessage-deflate; server_max_window_bits=20",
            E::InvalidValue { name: name("server_max_window_bits"), value: name("20") },
        ),
        (
            dedicated(),
            "permessage-deflate; client_max_window_bits",
            E::MissingValue { name: name("client_max_window_bits") },
        ),
        (
            dedicated(),
            "permessage-deflate; client_no_context_takeover=x",
            E::UnexpectedValue { name: name("client_no_context_takeover") },
        ),
        (shared(), "permessage-deflate", E::TakeoverNotDropped),
        (
            DeflateConfig { peer_window_bits: 10, ..dedicated() },
            "permessage-deflate; server_max_window_bits=11",
            E::WindowTooLarge { offered: 10, answered: 11 },
        ),
        (dedicated(), "permessage-deflate, permessage-deflate", E::AcceptedTwice),
    ];
    for (config, answer, want) in cases {
        assert_eq!(check(&config, answer), Err(want), "{answer}");
    }
}

/// A client and a server connection with the agreed parameters from a real offer/answer exchange.
fn pair(client_config: &DeflateConfig, server_config: &DeflateConfig, limit: usize) -> (Connection, Connection) {
    let offer = client_offer(client_config).unwrap();
    let (agreed, answer) = accept_offers(server_config, &[offer]).unwrap();
    let agreed_by_client = check_response(client_config, &[answer]).unwrap().unwrap();
    assert_eq!(agreed, agreed_by_client);
    let config = ConnectionConfig {
        max_message_size: limit,
        mask_source: Some(std::sync::Arc::new(SeededMasks::new(7))),
        ..ConnectionConfig::default()
    };
    let now = Instant::now();
    let mut client = Connection::new(Role::Client, config.clone(), now);
    client.add_extension(PerMessageDeflate::boxed(Role::Client, &agreed, client_config));
    let mut server = Connection::new(Role::Server, config, now);
    // The server as the reactor does it (inline in shared mode), the client boxed: both forms meet.
    add_to(&mut server, Role::Server, &agreed, server_config);
    assert!(server.has_extensions());
    (client, server)
}

fn deliver(to: &mut Connection, mut wire: Vec<u8>) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    match to.read(&mut wire, &mut out)? {
        (_, Some(Event::Text(t))) => Ok(t.into_owned().into_bytes()),
        (_, Some(Event::Binary(b))) => Ok(b.into_owned()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn messages_round_trip_compressed_in_every_mode_both_ways() {
    let text: String = (0..2000u32).map(|i| format!("{} ", i.wrapping_mul(7919) % 10007)).collect();
    for (c, s) in [(shared(), shared()), (dedicated(), dedicated()), (dedicated(), shared()), (shared(), dedicated())] {
        let (mut client, mut server) = pair(&c, &s, 1 << 20);
        for round in 0..3 {
            let mut wire = Vec::new();
            client.send_text(&text, &mut wire).unwrap();
            assert_eq!(wire[0] & RSV1, RSV1, "compressed");
            assert!(wire.len() < text.len() * 3 / 5, "round {round}: {} of {} bytes", wire.len(), text.len());
            assert_eq!(deliver(&mut server, wire).unwrap(), text.as_bytes());
            let mut wire = Vec::new();
            server.send_binary(text.as_bytes(), &mut wire).unwrap();
            assert_eq!(wire[0] & RSV1, RSV1);
            let len = wire.len();
            assert_eq!(deliver(&mut client, wire).unwrap(), text.as_bytes());
            if round > 0 && s.mode == DeflateMode::Dedicated && c.mode == DeflateMode::Dedicated {
                // Context takeover: the repeat is a back-reference into the kept window.
                assert!(len < 500, "round {round}: {len} bytes");
            } else if round > 0 {
                assert!(len > 2000, "round {round}: {len} bytes: no context kept");
            }
        }
    }
}

#[test]
fn below_the_threshold_and_incompressible_messages_go_out_plain() {
    let (mut client, mut server) = pair(&shared(), &shared(), 1 << 20);
    let mut wire = Vec::new();
    client.send_text("short", &mut wire).unwrap();
    assert_eq!(wire[0] & RSV1, 0);
    assert_eq!(deliver(&mut server, wire).unwrap(), b"short");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut wire = Vec::new();
    server.send_binary(&noise, &mut wire).unwrap();
    assert_eq!(wire[0] & RSV1, 0, "random bytes do not shrink");
    assert_eq!(deliver(&mut client, wire).unwrap(), noise);
}

#[test]
fn shared_mode_owns_no_zlib_state_and_dedicated_allocates_on_first_use() {
    let agreed = accept_offers(&shared(), &[client_offer(&shared()).unwrap()]).unwrap().0;
    let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &shared());
    let mut out = Vec::new();
    use crate::proto::Extension;
    ext.encode_message(crate::proto::OpCode::Text, &[b'a'; 1000], &mut out).unwrap();
    assert_eq!(ext.memory(), 0);
    assert!(ext.shared_encoding().is_some());

    let small = DeflateConfig { window_bits: 11, peer_window_bits: 11, mem_level: 1, ..dedicated() };
    let agreed = accept_offers(&small, &[client_offer(&small).unwrap()]).unwrap().0;
    let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &small);
    assert_eq!(ext.memory(), 0, "nothing at the handshake");
    assert_eq!(ext.shared_encoding(), None);
    let mut out = Vec::new();
    ext.encode_message(crate::proto::OpCode::Text, &[b'a'; 1000], &mut out).unwrap();
    let tx = ext.memory();
    assert!(tx > 0);
    let mut back = Vec::new();
    ext.decode_message(RSV1, &out[..], 1 << 20, &mut back).unwrap();
    assert_eq!(back, vec![b'a'; 1000]);
    // Window bits 11, memLevel 1: about 15 KiB to compress, 9 KiB to inflate.
    assert!(ext.memory() <= 26 * 1024, "{}", ext.memory());
    assert!(tx <= 16 * 1024, "{tx}");
}

#[test]
fn a_corrupt_stream_closes_with_1007_and_inflated_bad_utf8_with_1007() {
    let (_, mut server) = pair(&shared(), &shared(), 1 << 20);
    let mut wire = Vec::new();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Binary, true, RSV1, Some([1, 2, 3, 4]), &[0xff; 8]);
    let mut out = Vec::new();
    let err = server.read(&mut wire, &mut out).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    assert_eq!(&out[2..4], &1007u16.to_be_bytes(), "a close frame, not a dropped connection");

    let (mut client, mut server) = pair(&shared(), &shared(), 1 << 20);
    let mut packed = Vec::new();
    crate::sys::Deflater::new(6, 15, 8).unwrap().compress_sync(&[0xc3, 0x28, b'a', b'b'], &mut packed).unwrap();
    packed.truncate(packed.len() - 4);
    let mut wire = Vec::new();
    client.send_frame(crate::proto::OpCode::Text, true, &[], &mut Vec::new()).unwrap();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Text, true, RSV1, Some([9, 9, 9, 9]), &packed);
    let err = deliver(&mut server, wire).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8Text);
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_is_1002() {
    let (_, mut server) = pair(&shared(), &shared(), 1 << 20);
    let mut wire = Vec::new();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Text, false, 0, Some([1, 2, 3, 4]), b"ab");
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Continuation, true, RSV1, Some([1, 2, 3, 4]), b"cd");
    let err = server.read(&mut wire, &mut Vec::new()).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    let (_, mut server) = pair(&shared(), &shared(), 1 << 20);
    let mut wire = Vec::new();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Ping, true, RSV1, Some([1, 2, 3, 4]), b"");
    assert_eq!(server.read(&mut wire, &mut Vec::new()).unwrap_err().close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_fragmented_compressed_message_is_inflated_once_whole() {
    let (mut client, mut server) = pair(&dedicated(), &dedicated(), 1 << 20);
    let text = "fragmented and compressed ".repeat(100);
    let mut one = Vec::new();
    client.send_text(&text, &mut one).unwrap();
    // Re-frame the compressed payload as three fragments: RSV1 on the first only.
    let header = crate::proto::FrameHeader::parse(&one).unwrap();
    let crate::proto::HeaderParse::Complete { header, header_len } = header else { panic!() };
    let mut payload = one[header_len..].to_vec();
    crate::proto::apply_mask(&mut payload, header.mask.unwrap(), 0);
    let (a, rest) = payload.split_at(payload.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = Vec::new();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Text, false, RSV1, Some([5, 6, 7, 8]), a);
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Continuation, false, 0, Some([5, 6, 7, 8]), b);
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Continuation, true, 0, Some([5, 6, 7, 8]), c);
    assert_eq!(deliver(&mut server, wire).unwrap(), text.as_bytes());
}

#[test]
fn the_size_limit_applies_to_the_inflated_message_with_1009() {
    let (mut client, mut server) = pair(&shared(), &shared(), 10_000);
    let mut wire = Vec::new();
    client.send_binary(&[0u8; 10_001], &mut wire).unwrap();
    assert!(wire.len() < 100);
    let mut out = Vec::new();
    let err = server.read(&mut wire, &mut out).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(&out[2..4], &1009u16.to_be_bytes());
    let (mut client, mut server) = pair(&shared(), &shared(), 10_000);
    let mut wire = Vec::new();
    client.send_binary(&[0u8; 10_000], &mut wire).unwrap();
    assert_eq!(deliver(&mut server, wire).unwrap().len(), 10_000, "exactly the limit passes");
}

#[test]
fn shared_mode_is_inline_and_dedicated_is_boxed() {
    let agreed = accept_offers(&shared(), &[client_offer(&shared()).unwrap()]).unwrap().0;
    let a = SharedDeflate::new(Role::Server, &agreed, &shared()).expect("no takeover either way: inline");
    let b = SharedDeflate::new(Role::Server, &agreed, &shared()).unwrap();
    assert_eq!(a, b, "the same settings share one profile");
    let other = DeflateConfig { threshold: 1000, ..shared() };
    let c = SharedDeflate::new(Role::Server, &agreed, &other).unwrap();
    assert_ne!(a, c);
    assert_ne!(a.shared_encoding(), c.shared_encoding(), "a different threshold is a different frame key");
    assert_eq!(std::mem::size_of::<Option<SharedDeflate>>(), 1);
    // Dedicated keeps context: no inline form.
    let agreed = accept_offers(&dedicated(), &[client_offer(&dedicated()).unwrap()]).unwrap().0;
    assert_eq!(SharedDeflate::new(Role::Server, &agreed, &dedicated()), None);
    // The inline form encodes as the boxed one does (equal frames: broadcasts may share them).
    let agreed = accept_offers(&shared(), &[client_offer(&shared()).unwrap()]).unwrap().0;
    let text = "inline or boxed, the same bytes ".repeat(40);
    let mut inline = Vec::new();
    assert_eq!(a.encode_message(text.as_bytes(), &mut inline).unwrap(), Some(RSV1));
    let mut boxed = Vec::new();
    use crate::proto::Extension;
    let mut full = PerMessageDeflate::new(Role::Server, &agreed, &shared());
    full.encode_message(crate::proto::OpCode::Text, text.as_bytes(), &mut boxed).unwrap();
    assert_eq!(inline, boxed);
    assert_eq!(full.shared_encoding(), a.shared_encoding());
    // Below the threshold: plain.
    assert_eq!(c.encode_message(&text.as_bytes()[..999], &mut Vec::new()).unwrap(), None);
}

#[test]
fn a_connection_pays_a_small_fixed_struct_for_the_extension() {
    // Settings and two empty Options; the zlib streams live elsewhere (shared) or come on first use.
    assert!(std::mem::size_of::<PerMessageDeflate>() <= 32, "{}", std::mem::size_of::<PerMessageDeflate>());
}

#[test]
fn a_shared_client_keeps_no_context_even_when_the_answer_omits_client_no_context_takeover() {
    let answer = offers("permessage-deflate; server_no_context_takeover");
    let ext = client_extension(&shared(), &answer).unwrap().unwrap();
    assert!(ext.shared_encoding().is_some(), "no per-connection compressor in shared mode");
    let ext = client_extension(&dedicated(), &offers("permessage-deflate")).unwrap().unwrap();
    assert_eq!(ext.shared_encoding(), None, "dedicated keeps its context");
}

#[test]
fn the_servers_frames_inflate_with_exactly_the_window_it_announced() {
    // A 2 KiB random block sent twice: a 15-bit window would reach back 2 KiB, a 9-bit one cannot.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let block: Vec<u8> = (0..2048)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    let message = [block.clone(), block].concat();
    let config = DeflateConfig { window_bits: 9, ..dedicated() };
    let (agreed, answer) = accept_offers(&config, &offers("permessage-deflate")).unwrap();
    assert_eq!(format_extensions(&[answer]), "permessage-deflate; server_max_window_bits=9");
    let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &config);
    let mut packed = Vec::new();
    use crate::proto::Extension;
    assert_eq!(ext.encode_message(crate::proto::OpCode::Text, &message, &mut packed).unwrap(), Some(RSV1));
    // zlib's inflate does not police the window for bytes still in its output, so check the compressor
    // itself: within 512 bytes it cannot point back at the first copy (a 15-bit window makes ~1,300 bytes).
    assert!(packed.len() > 2000, "{} bytes: the second copy was a back-reference past 512 bytes", packed.len());
    packed.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::new();
    crate::sys::Inflater::new(9).unwrap().inflate(&packed, &mut out, 1 << 20).unwrap();
    assert_eq!(out, message);
}

#[test]
fn inflated_text_is_validated_chunk_by_chunk_and_refused_after_at_most_one_chunk() {
    use crate::proto::Extension;
    use crate::sys::{Deflater, INFLATE_CHUNK};
    // Invalid UTF-8 first, then 8 MiB of valid text: deflates to a few KiB.
    let mut message = vec![b'x', 0xff, 0xfe];
    message.resize(8 << 20, b'a');
    let mut packed = Vec::new();
    Deflater::new(1, 15, 8).unwrap().compress_sync(&message, &mut packed).unwrap();
    packed.truncate(packed.len() - 4);
    assert!(packed.len() < 64 * 1024, "{}", packed.len());

    let agreed = accept_offers(&shared(), &[client_offer(&shared()).unwrap()]).unwrap().0;
    for config in [shared(), DeflateConfig { request_client_no_context_takeover: false, ..dedicated() }] {
        let agreed = if config.mode == DeflateMode::Shared {
            agreed
        } else {
            accept_offers(&config, &[client_offer(&config).unwrap()]).unwrap().0
        };
        let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &config);
        let mut out = Vec::new();
        let err = ext.decode_text_message(RSV1, &packed, 64 << 20, &mut out).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8Text, "{:?}", config.mode);
        assert!(out.len() <= INFLATE_CHUNK, "{:?}: inflated {} bytes before refusing", config.mode, out.len());
        // The same bytes as binary inflate whole.
        let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &config);
        let mut out = Vec::new();
        ext.decode_message(RSV1, &packed, 64 << 20, &mut out).unwrap();
        assert_eq!(out.len(), message.len());
    }
    let shared_inline = SharedDeflate::new(Role::Server, &agreed, &shared()).unwrap();
    let mut out = Vec::new();
    let err = shared_inline.decode_message(&packed, 64 << 20, true, &mut out).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8Text);
    assert!(out.len() <= INFLATE_CHUNK, "inline: inflated {} bytes before refusing", out.len());

    // Through a connection: a Close with 1007.
    let (_, mut server) = pair(&shared(), &shared(), 64 << 20);
    let mut wire = Vec::new();
    crate::proto::encode_frame(&mut wire, crate::proto::OpCode::Text, true, RSV1, Some([9, 8, 7, 6]), &packed);
    let mut out = Vec::new();
    let err = server.read(&mut wire, &mut out).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    assert_eq!(&out[2..4], &1007u16.to_be_bytes());

    // A message that ends inside a code point is refused too (checked at the end).
    let mut packed = Vec::new();
    Deflater::new(1, 15, 8).unwrap().compress_sync(&"é".repeat(100).as_bytes()[..199], &mut packed).unwrap();
    packed.truncate(packed.len() - 4);
    let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &shared());
    assert_eq!(ext.decode_text_message(RSV1, &packed, 1 << 20, &mut Vec::new()), Err(ProtocolError::InvalidUtf8Text));
}

#[test]
fn dedicated_by_default_answers_client_no_context_takeover_and_inflates_with_the_shared_stream() {
    let config = DeflateConfig::with_mode(DeflateMode::Dedicated);
    assert!(config.request_client_no_context_takeover);
    assert_eq!(
        accept(&config, "permessage-deflate").as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    assert_eq!(
        accept(&config, "permessage-deflate; client_max_window_bits; server_max_window_bits=12").as_deref(),
        Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=12")
    );
    // Our own client, told so, resets its compressor: the repeat is not a back-reference.
    let small = DeflateConfig { window_bits: 11, mem_level: 1, ..config };
    let (mut client, mut server) = pair(&dedicated(), &small, 1 << 20);
    let text = "the same message again and again, ".repeat(100);
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let mut wire = Vec::new();
        client.send_text(&text, &mut wire).unwrap();
        sizes.push(wire.len());
        assert_eq!(deliver(&mut server, wire).unwrap(), text.as_bytes());
    }
    assert_eq!(sizes[0], sizes[1], "no context kept by the client");
    // The server side owns a compressor once it sends, never a decompressor.
    let agreed = accept_offers(&small, &[client_offer(&dedicated()).unwrap()]).unwrap().0;
    assert!(agreed.client_no_context_takeover && !agreed.server_no_context_takeover);
    let mut ext = PerMessageDeflate::new(Role::Server, &agreed, &small);
    use crate::proto::Extension;
    let mut packed = Vec::new();
    PerMessageDeflate::new(Role::Client, &agreed, &dedicated())
        .encode_message(crate::proto::OpCode::Text, text.as_bytes(), &mut packed)
        .unwrap();
    ext.decode_text_message(RSV1, &packed, 1 << 20, &mut Vec::new()).unwrap();
    assert_eq!(ext.memory(), 0, "inflated with the thread's shared decompressor");
    ext.encode_message(crate::proto::OpCode::Text, text.as_bytes(), &mut Vec::new()).unwrap();
    let mut alone = crate::sys::Deflater::new(1, 11, 1).unwrap();
    alone.compress_sync(text.as_bytes(), &mut Vec::new()).unwrap();
    assert_eq!(ext.memory(), alone.memory(), "the compressor alone");
    assert!(ext.memory() <= 16 * 1024, "{}", ext.memory());
}

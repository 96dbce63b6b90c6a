//! A shared-mode permessage-deflate connection allocates nothing for its extension (issue 11: shared
//! mode adds 0 B per idle connection). One test in this binary, so that no other test thread
//! allocates while it counts.

use std::time::Instant;

use wsloop::proto::deflate::{self, accept_offers, client_offer, DeflateConfig, DeflateMode};
use wsloop::proto::{Connection, ConnectionConfig, Role};

#[global_allocator]
static ALLOC: wsloop::sys::CountingAllocator = wsloop::sys::CountingAllocator::new();

#[test]
fn adding_shared_deflate_allocates_nothing_and_dedicated_allocates_no_zlib_state() {
    let config = std::sync::Arc::new(ConnectionConfig::default());
    let now = Instant::now();
    let shared = DeflateConfig::with_mode(DeflateMode::Shared);
    let agreed = accept_offers(&shared, &[client_offer(&shared).unwrap()]).unwrap().0;
    // The first connection with these settings enters them in the process's table of profiles.
    let mut first = Connection::new(Role::Server, config.clone(), now);
    deflate::add_to(&mut first, Role::Server, &agreed, &shared);

    let mut conns = Vec::with_capacity(100);
    for _ in 0..100 {
        conns.push(Connection::new(Role::Server, config.clone(), now));
    }
    let before = ALLOC.live();
    for conn in &mut conns {
        deflate::add_to(conn, Role::Server, &agreed, &shared);
    }
    let added = ALLOC.live() - before;
    assert_eq!(added, 0, "100 shared-mode connections allocated {added} bytes for their extension");
    assert!(conns.iter().all(Connection::has_extensions));

    // Dedicated: a box (the settings), but no zlib state until a message needs it.
    let dedicated = DeflateConfig::with_mode(DeflateMode::Dedicated);
    let agreed = accept_offers(&dedicated, &[client_offer(&dedicated).unwrap()]).unwrap().0;
    let mut conn = Connection::new(Role::Server, config, now);
    let zlib = wsloop::sys::zlib_bytes();
    let before = ALLOC.live();
    deflate::add_to(&mut conn, Role::Server, &agreed, &dedicated);
    let added = ALLOC.live() - before;
    assert!(added > 0 && added < 256, "dedicated at the handshake: {added} bytes");
    assert_eq!(wsloop::sys::zlib_bytes(), zlib);

    // Dedicated at window bits 11 / memLevel 1, used both ways: by default the server answers
    // client_no_context_takeover, so the zlib bytes it holds are its compressor's alone.
    let small = DeflateConfig { window_bits: 11, mem_level: 1, ..dedicated };
    let client_config = DeflateConfig::with_mode(DeflateMode::Dedicated);
    let (agreed, _) = accept_offers(&small, &[client_offer(&client_config).unwrap()]).unwrap();
    assert!(agreed.client_no_context_takeover);
    let masks = ConnectionConfig {
        mask_source: Some(std::sync::Arc::new(wsloop::proto::SeededMasks::new(3))),
        ..ConnectionConfig::default()
    };
    let mut client = Connection::new(Role::Client, masks, now);
    deflate::add_to(&mut client, Role::Client, &agreed, &client_config);
    let text = "a JSON-like {\"id\": 17, \"name\": \"wsloop\"} message ".repeat(100);
    let mut wire = Vec::new();
    client.send_text(&text, &mut wire).unwrap();
    // Warm this thread's shared decompressor (a reactor has one from its first message on).
    let mut warm = Connection::new(Role::Server, ConnectionConfig::default(), now);
    deflate::add_to(&mut warm, Role::Server, &agreed, &small);
    let mut warm_wire = wire.clone();
    warm.read(&mut warm_wire, &mut Vec::new()).unwrap();
    drop(warm);

    let mut server = Connection::new(Role::Server, ConnectionConfig::default(), now);
    let zlib = wsloop::sys::zlib_bytes();
    deflate::add_to(&mut server, Role::Server, &agreed, &small);
    let (_, event) = server.read(&mut wire, &mut Vec::new()).unwrap();
    assert!(matches!(event, Some(wsloop::proto::Event::Text(ref t)) if *t == text));
    server.send_text(&text, &mut Vec::new()).unwrap();
    let held = wsloop::sys::zlib_bytes() - zlib;
    let mut alone = wsloop::sys::Deflater::new(1, 11, 1).unwrap();
    alone.compress_sync(text.as_bytes(), &mut Vec::new()).unwrap();
    assert_eq!(held, alone.memory(), "a used dedicated connection holds its compressor alone");
    assert!(held <= 16 * 1024, "{held} bytes");
    eprintln!("ZLIB dedicated wb 11 memLevel 1, used both ways: {held} bytes");
}

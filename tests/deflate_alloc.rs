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
}

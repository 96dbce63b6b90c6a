//! Per-IP admission: open connections per peer address and handshakes (accepted TCP connections) per
//! second per address, shared by every reactor of a server (the kernel spreads one address's
//! connections over all listeners).
//!
//! Owns: the table from address to its open count and handshake bucket, and pruning it. Never touches:
//! sockets, clocks (the caller passes `now`). Taken under a mutex at accept and at removal only, never on
//! the per-message path, and only when a per-IP limit is set.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::rate_limit::{RateLimit, TokenBucket};

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpRefusal {
    /// It already holds `max_connections_per_ip` connections.
    TooManyConnections,
    /// Its handshakes came faster than `handshake_rate_per_ip`.
    HandshakeRate,
}

#[derive(Debug)]
struct Entry {
    open: u32,
    handshakes: Option<TokenBucket>,
}

/// The shared table. Entries exist while an address has an open connection or a bucket that has not
/// refilled; the table is swept of the rest whenever it doubled since the last sweep.
#[derive(Debug)]
pub(crate) struct IpLimits {
    /// IPv6 addresses are counted by their first this many bits (a host usually has a whole /64).
    v6_prefix: u8,
    max_open: Option<usize>,
    handshakes: Option<RateLimit>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    sweep_at: usize,
}

impl IpLimits {
    /// The limits; `None` when neither is set (then nothing is looked up at accept).
    pub(crate) fn new(max_open: Option<usize>, handshakes: Option<RateLimit>, v6_prefix: u8) -> Option<Self> {
        (max_open.is_some() || handshakes.is_some()).then(|| Self {
            v6_prefix: v6_prefix.min(128),
            max_open,
            handshakes,
            table: Mutex::new(Table { entries: HashMap::new(), sweep_at: 1024 }),
        })
    }

    /// Admits a new connection from `ip` at `now` (counting it open) or says why not.
    pub(crate) fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), IpRefusal> {
        let ip = self.key(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { entries, sweep_at } = &mut *table;
        if entries.len() >= *sweep_at {
            entries.retain(|_, e| e.open > 0 || e.handshakes.is_some_and(|b| !b.is_full_at(now)));
            *sweep_at = (entries.len() * 2).max(1024);
        }
        let entry = entries
            .entry(ip)
            .or_insert_with(|| Entry { open: 0, handshakes: self.handshakes.map(|l| TokenBucket::new(l, now)) });
        if self.max_open.is_some_and(|max| entry.open as usize >= max) {
            return Err(IpRefusal::TooManyConnections);
        }
        if let Some(bucket) = entry.handshakes.as_mut() {
            if !bucket.try_take(now) {
                return Err(IpRefusal::HandshakeRate);
            }
        }
        entry.open += 1;
        Ok(())
    }

    /// A connection admitted for `ip` is gone.
    pub(crate) fn release(&self, ip: IpAddr) {
        let ip = self.key(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = table.entries.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && entry.handshakes.is_none() {
                table.entries.remove(&ip);
            }
        }
    }

    /// What `ip` is counted under: an IPv4 address (also one mapped into IPv6) as it is, an IPv6 address
    /// cut to its first `v6_prefix` bits.
    fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.v6_prefix)).unwrap_or(0);
                    IpAddr::V6((u128::from(v6) & mask).into())
                }
            },
        }
    }

    /// Open connections counted for `ip`.
    #[cfg(test)]
    pub(crate) fn open(&self, ip: IpAddr) -> u32 {
        let ip = self.key(ip);
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.entries.get(&ip).map_or(0, |e| e.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn no_limits_no_table() {
        assert!(IpLimits::new(None, None, 64).is_none());
    }

    #[test]
    fn ipv6_addresses_count_by_prefix_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let now = Instant::now();
        let limits = IpLimits::new(Some(1), None, 64).unwrap();
        assert_eq!(limits.admit(ip("2001:db8:1:2::1"), now), Ok(()));
        assert_eq!(limits.admit(ip("2001:db8:1:2:ffff::9"), now), Err(IpRefusal::TooManyConnections), "same /64");
        assert_eq!(limits.admit(ip("2001:db8:1:3::1"), now), Ok(()), "another /64");
        assert_eq!(limits.admit(ip("10.0.0.1"), now), Ok(()));
        assert_eq!(limits.admit(ip("::ffff:10.0.0.1"), now), Err(IpRefusal::TooManyConnections), "mapped IPv4");
        limits.release(ip("2001:db8:1:2::77"));
        assert_eq!(limits.open(ip("2001:db8:1:2::1")), 0, "released under the same /64");
        let exact = IpLimits::new(Some(1), None, 128).unwrap();
        assert_eq!(exact.admit(ip("2001:db8::1"), now), Ok(()));
        assert_eq!(exact.admit(ip("2001:db8::2"), now), Ok(()), "/128: per address");
        let all = IpLimits::new(Some(1), None, 0).unwrap();
        assert_eq!(all.admit(ip("2001:db8::1"), now), Ok(()));
        assert_eq!(all.admit(ip("fe80::1"), now), Err(IpRefusal::TooManyConnections), "/0: every IPv6 peer together");
    }

    #[test]
    fn open_connections_are_capped_per_address_and_released() {
        let limits = IpLimits::new(Some(2), None, 64).unwrap();
        let now = Instant::now();
        assert_eq!(limits.admit(A, now), Ok(()));
        assert_eq!(limits.admit(A, now), Ok(()));
        assert_eq!(limits.admit(A, now), Err(IpRefusal::TooManyConnections));
        assert_eq!(limits.admit(B, now), Ok(()), "another address is not affected");
        limits.release(A);
        assert_eq!(limits.open(A), 1);
        assert_eq!(limits.admit(A, now), Ok(()));
        limits.release(A);
        limits.release(A);
        assert_eq!(limits.open(A), 0);
    }

    #[test]
    fn handshakes_are_rate_limited_per_address() {
        let limits = IpLimits::new(None, Some(RateLimit { per_second: 2.0, burst: 2.0 }), 64).unwrap();
        let now = Instant::now();
        assert_eq!(limits.admit(A, now), Ok(()));
        assert_eq!(limits.admit(A, now), Ok(()));
        assert_eq!(limits.admit(A, now), Err(IpRefusal::HandshakeRate));
        assert_eq!(limits.admit(B, now), Ok(()));
        assert_eq!(limits.admit(A, now + Duration::from_millis(500)), Ok(()), "one token back after 0.5 s");
    }

    #[test]
    fn the_table_is_swept_of_idle_addresses() {
        let limits = IpLimits::new(None, Some(RateLimit { per_second: 1000.0, burst: 1.0 }), 64).unwrap();
        let now = Instant::now();
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            // One a millisecond: each bucket refills one millisecond after its address came.
            assert_eq!(limits.admit(ip, now + Duration::from_millis(u64::from(i))), Ok(()));
            limits.release(ip);
        }
        let len = limits.table.lock().unwrap().entries.len();
        assert!(len <= 1024, "the table holds {len} entries: the sweeps should have removed refilled ones");
    }
}

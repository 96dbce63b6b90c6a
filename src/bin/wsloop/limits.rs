//! `wsloop serve`'s abuse limits: per-IP caps, per-connection rate limits and their policy, and the
//! listener's rest after running out of descriptors. Every flag maps to one `Config` field.

use std::time::Duration;

use clap::{Args, ValueEnum};
use wsloop::server::{Config, RateLimit, RateLimitPolicy};

use crate::util::duration;

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Stop reading the connection until its tokens are back (nothing is dropped).
    Pause,
    /// Close the connection with 1008.
    Close,
}

/// The limits' flags (flattened into `serve`'s).
#[derive(Args)]
pub(crate) struct LimitArgs {
    /// Most open connections from one IP address (more are answered 429).
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// New connections per second from one IP address, as RATE or RATE/BURST (more are answered 429).
    #[arg(long, value_parser = rate)]
    handshake_rate_per_ip: Option<RateLimit>,
    /// IPv6 peers count toward the per-IP limits by this many leading bits (128: each address).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(0..=128))]
    per_ip_ipv6_prefix: u8,
    /// Frames per second one connection may send, as RATE or RATE/BURST.
    #[arg(long, value_parser = rate)]
    message_rate: Option<RateLimit>,
    /// Bytes per second one connection may send, as RATE or RATE/BURST.
    #[arg(long, value_parser = rate)]
    byte_rate: Option<RateLimit>,
    /// What a connection over --message-rate or --byte-rate gets.
    #[arg(long, value_enum, default_value = "pause")]
    rate_limit_policy: Policy,
    /// How long the listener rests when accept runs out of file descriptors, e.g. 100ms.
    #[arg(long, value_parser = duration, default_value = "100ms")]
    accept_retry: Duration,
}

impl LimitArgs {
    /// Sets the limits' fields of `config`.
    pub(crate) fn apply(&self, config: &mut Config) {
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.handshake_rate_per_ip = self.handshake_rate_per_ip;
        config.per_ip_ipv6_prefix = self.per_ip_ipv6_prefix;
        config.message_rate = self.message_rate;
        config.byte_rate = self.byte_rate;
        config.rate_limit_policy = match self.rate_limit_policy {
            Policy::Pause => RateLimitPolicy::Pause,
            Policy::Close => RateLimitPolicy::Close,
        };
        config.accept_retry = self.accept_retry;
    }
}

/// `RATE` (burst: one second's worth) or `RATE/BURST`, both positive numbers.
fn rate(s: &str) -> Result<RateLimit, String> {
    let number = |v: &str| -> Result<f64, String> {
        match v.trim().parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
            _ => Err(format!("{s:?}: expected RATE or RATE/BURST with positive numbers, e.g. 100 or 100/500")),
        }
    };
    match s.split_once('/') {
        Some((r, b)) => Ok(RateLimit { per_second: number(r)?, burst: number(b)? }),
        None => Ok(RateLimit::per_second(number(s)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        assert_eq!(rate("100").unwrap(), RateLimit { per_second: 100.0, burst: 100.0 });
        assert_eq!(rate("0.5").unwrap(), RateLimit { per_second: 0.5, burst: 1.0 });
        assert_eq!(rate("10/50").unwrap(), RateLimit { per_second: 10.0, burst: 50.0 });
        assert!(rate("0").is_err());
        assert!(rate("x/2").is_err());
        assert!(rate("10/-1").is_err());
    }
}

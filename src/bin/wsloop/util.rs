//! Small parsers and formatters shared by the subcommands.

use std::time::Duration;

/// Seconds as a plain number (`"10"`, `"0.5"`): the historic form of `serve`'s and `autobahn-client`'s
/// timeouts.
pub(crate) fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s}: out of range"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A duration with a unit (`"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"250us"`); a bare number is seconds.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let v: f64 = number.parse().map_err(|_| format!("{s:?}: expected a duration such as 10s, 500ms or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use us, ms, s, m or h)")),
    };
    let secs = v * scale;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A rate per second (`"100/s"` or `"100"`), greater than zero.
pub(crate) fn per_second(s: &str) -> Result<f64, String> {
    let number = s.trim().trim_end_matches("/s");
    let v: f64 = number.parse().map_err(|_| format!("{s:?}: expected a rate such as 500/s"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: the rate must be greater than zero"));
    }
    Ok(v)
}

/// A `Name: value` header.
pub(crate) fn header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(format!("{s:?}: invalid header name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// A human count: 1234567 → "1.23M".
pub(crate) fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Microseconds for humans: 950 → "950us", 12_345 → "12.35ms", 2_500_000 → "2.50s".
pub(crate) fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

/// A UTC time as `2026-11-30T14:55:00Z` (whole seconds; before 1970 reads as 1970).
pub(crate) fn utc_timestamp(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), in unsigned arithmetic.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(duration("ten").is_err());
        assert!(duration("3d").is_err());
    }

    #[test]
    fn rates_and_headers_parse() {
        assert_eq!(per_second("500/s"), Ok(500.0));
        assert_eq!(per_second("20"), Ok(20.0));
        assert!(per_second("0/s").is_err());
        assert_eq!(header("X-A: b c"), Ok(("X-A".into(), "b c".into())));
        assert!(header("nocolon").is_err());
        assert!(header(": v").is_err());
    }

    #[test]
    fn humans_read_these() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(micros(950), "950us");
        assert_eq!(micros(12_345), "12.35ms");
    }

    #[test]
    fn utc_timestamps() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_796_049_296)), "2026-11-30T14:34:56Z");
    }
}

/// `--proxy URL` and `--no-proxy`, shared by `client` and `bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ProxyArgs {
    /// Connect through this proxy: http://[user:password@]host[:port], socks5://... (local DNS) or
    /// socks5h://... (the proxy resolves names). Overrides the environment (ws_proxy, http_proxy,
    /// all_proxy, ...; wss_proxy, https_proxy for wss://) and NO_PROXY.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long, conflicts_with = "proxy")]
    pub(crate) no_proxy: bool,
}

impl ProxyArgs {
    /// The proxy to use for `url`: `--proxy`, else none with `--no-proxy`, else the environment as curl
    /// reads it ([`wsloop::client::Proxy::from_env`]).
    pub(crate) fn proxy_for(&self, url: &str) -> Result<Option<wsloop::client::Proxy>, String> {
        use wsloop::client::{Proxy, WsUrl};
        if let Some(proxy) = &self.proxy {
            return Proxy::parse(proxy).map(Some).map_err(|e| format!("--proxy {proxy}: {e}"));
        }
        if self.no_proxy {
            return Ok(None);
        }
        // A bad URL is reported by the connect itself.
        let Ok(parsed) = WsUrl::parse(url) else { return Ok(None) };
        Proxy::from_env(&parsed).map_err(|e| format!("proxy from the environment: {e}"))
    }
}

/// The permessage-deflate flags shared by `serve`, `client`, `bench` and `autobahn-client`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DeflateArgs {
    /// permessage-deflate (RFC 7692): off; shared (no context takeover either way, one zlib stream per
    /// reactor, an idle connection owns none); dedicated (context takeover, each connection's streams
    /// allocated on first use). Default: off (autobahn-client: dedicated).
    #[arg(long, value_parser = deflate_mode)]
    pub(crate) deflate: Option<wsloop::proto::deflate::DeflateMode>,
    /// log2 of our compressor's window, 9-15.
    #[arg(long, default_value_t = 15)]
    pub(crate) deflate_window_bits: u8,
    /// log2 of the window asked of the peer's compressor where the protocol allows it, 8-15.
    #[arg(long, default_value_t = 15)]
    pub(crate) deflate_peer_window_bits: u8,
    /// zlib memLevel of our compressors, 1-9 (hash table 2^(memLevel+9) bytes).
    #[arg(long, default_value_t = 8)]
    pub(crate) deflate_mem_level: u8,
    /// zlib compression level, 0-9.
    #[arg(long, default_value_t = 1)]
    pub(crate) deflate_level: i8,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 64)]
    pub(crate) deflate_threshold: usize,
    /// serve, dedicated mode: let clients keep their compression context (by default the server answers
    /// client_no_context_takeover, so it inflates with the reactor's shared decompressor and a connection
    /// owns only its compressor).
    #[arg(long)]
    pub(crate) deflate_keep_client_context: bool,
}

impl DeflateArgs {
    /// The settings, with `default` as the mode when `--deflate` was not given; an out-of-range value is
    /// an error naming the flag's setting.
    pub(crate) fn config(
        &self,
        default: wsloop::proto::deflate::DeflateMode,
    ) -> Result<wsloop::proto::deflate::DeflateConfig, String> {
        let config = wsloop::proto::deflate::DeflateConfig {
            mode: self.deflate.unwrap_or(default),
            window_bits: self.deflate_window_bits,
            peer_window_bits: self.deflate_peer_window_bits,
            mem_level: self.deflate_mem_level,
            level: self.deflate_level,
            threshold: self.deflate_threshold,
            request_client_no_context_takeover: !self.deflate_keep_client_context,
        };
        config.validate()?;
        Ok(config)
    }
}

fn deflate_mode(s: &str) -> Result<wsloop::proto::deflate::DeflateMode, String> {
    wsloop::proto::deflate::DeflateMode::parse(s).ok_or_else(|| format!("{s:?}: expected off, shared or dedicated"))
}

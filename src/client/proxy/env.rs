//! The proxy for a URL from environment variables, following curl's rules (see [`Proxy::from_env`]).
//!
//! Owns: which variable is read for which scheme, and `no_proxy` matching. Never touches: the process
//! environment itself (the caller passes a lookup, so tests need no global state).

use std::net::IpAddr;

use super::super::url::{Host, Scheme, WsUrl};
use super::{Proxy, ProxyUrlError};

/// The proxy `lookup` (a variable name to its value) configures for `url`, if any.
pub(super) fn proxy_for(url: &WsUrl, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Proxy>, ProxyUrlError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let either = |lower: &str| get(lower).or_else(|| get(&lower.to_ascii_uppercase()));
    let value = match url.scheme() {
        Scheme::Ws => either("ws_proxy").or_else(|| get("http_proxy")),
        Scheme::Wss => either("wss_proxy").or_else(|| either("https_proxy")),
    }
    .or_else(|| either("all_proxy"));
    let Some(value) = value else { return Ok(None) };
    if let Some(list) = either("no_proxy") {
        if no_proxy_matches(&list, url.host()) {
            return Ok(None);
        }
    }
    Proxy::parse(&value).map(Some)
}

/// Whether the `no_proxy` list names `host`.
pub(super) fn no_proxy_matches(list: &str, host: &Host) -> bool {
    let ip = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    };
    list.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        match (ip, host) {
            (Some(ip), _) => ip_matches(entry, ip),
            (None, Host::Domain(name)) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                let entry = entry.strip_prefix('.').unwrap_or(entry).to_ascii_lowercase();
                let entry = entry.strip_suffix('.').unwrap_or(&entry);
                name == entry || name.strip_suffix(entry).is_some_and(|head| head.ends_with('.'))
            }
            (None, _) => false,
        }
    })
}

/// An entry that is an IP address, or a CIDR range (`10.0.0.0/8`, `fd00::/8`), matching `ip`.
fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let entry = entry.trim_start_matches('[');
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => (addr, bits.parse::<u32>().ok()),
        None => (entry, None),
    };
    let Ok(net) = addr.trim_end_matches(']').parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(u128::from(u32::from(net)), u128::from(u32::from(ip)), 32, bits),
        (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), 128, bits),
        _ => false,
    }
}

fn prefix_eq(net: u128, ip: u128, width: u32, bits: Option<u32>) -> bool {
    let bits = bits.unwrap_or(width).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.get(name).cloned()
    }

    fn proxy(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        proxy_for(&WsUrl::parse(url).unwrap(), lookup(vars)).unwrap().map(|p| p.to_string())
    }

    #[test]
    fn ws_reads_ws_proxy_then_lowercase_http_proxy_then_all_proxy() {
        assert_eq!(proxy("ws://h/", &[]), None);
        assert_eq!(proxy("ws://h/", &[("http_proxy", "p1:1")]).as_deref(), Some("http://p1:1"));
        assert_eq!(proxy("ws://h/", &[("HTTP_PROXY", "p1:1")]), None, "curl ignores uppercase HTTP_PROXY");
        assert_eq!(proxy("ws://h/", &[("ALL_PROXY", "socks5h://p2")]).as_deref(), Some("socks5h://p2:1080"));
        let both = [("http_proxy", "p1:1"), ("all_proxy", "p2:2")];
        assert_eq!(proxy("ws://h/", &both).as_deref(), Some("http://p1:1"), "the scheme's variable wins");
        let ws = [("WS_PROXY", "p3:3"), ("http_proxy", "p1:1")];
        assert_eq!(proxy("ws://h/", &ws).as_deref(), Some("http://p3:3"));
        assert_eq!(proxy("ws://h/", &[("http_proxy", " "), ("all_proxy", "p2:2")]).as_deref(), Some("http://p2:2"));
    }

    #[test]
    fn wss_reads_https_proxy_in_either_case() {
        assert_eq!(proxy("wss://h/", &[("HTTPS_PROXY", "p:1")]).as_deref(), Some("http://p:1"));
        assert_eq!(proxy("wss://h/", &[("http_proxy", "p:1")]), None);
        let both = [("https_proxy", "lower:1"), ("HTTPS_PROXY", "upper:1")];
        assert_eq!(proxy("wss://h/", &both).as_deref(), Some("http://lower:1"), "lowercase first");
    }

    #[test]
    fn no_proxy_names_hosts_domains_addresses_ranges_and_everything() {
        let with = |list: &'static str| vec![("http_proxy", "p:1"), ("NO_PROXY", list)];
        assert_eq!(proxy("ws://example.com/", &with("example.com")), None);
        assert_eq!(proxy("ws://www.example.com/", &with(".example.com")), None);
        assert_eq!(proxy("ws://www.example.com/", &with("example.com")), None);
        assert!(proxy("ws://nonexample.com/", &with("example.com")).is_some(), "suffix only at a dot");
        assert_eq!(proxy("ws://10.1.2.3/", &with("localhost, 10.0.0.0/8")), None);
        assert!(proxy("ws://11.1.2.3/", &with("10.0.0.0/8")).is_some());
        assert_eq!(proxy("ws://127.0.0.1:9/", &with("127.0.0.1")), None);
        assert_eq!(proxy("ws://[::1]/", &with("::1")), None);
        assert_eq!(proxy("ws://anything/", &with("*")), None);
        assert!(proxy("ws://anything/", &with("other")).is_some());
    }

    #[test]
    fn a_bad_proxy_url_in_the_environment_is_an_error() {
        let err = proxy_for(&WsUrl::parse("ws://h/").unwrap(), lookup(&[("http_proxy", "socks4://p")]));
        assert!(matches!(err, Err(ProxyUrlError::UnsupportedScheme { .. })), "{err:?}");
    }
}

//! The client address of a request. The TCP peer is the client, unless the peer is one of the
//! configured trusted proxies: then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first address that is not one is the client. From any other peer the
//! header is ignored, so a client cannot choose its own address (for the audit log and the
//! failed-authentication throttle). `X-Forwarded-Proto` and `X-Forwarded-Host` are never used:
//! `Location` and `meta.location` come from the configured `public_base_url` only.
//!
//! A forwarding header from a peer that is not trusted usually means a reverse proxy missing
//! from `http.trusted_proxies`: every client behind it then shares its address (in the audit
//! log and in the failure budget). The first such request of each peer logs a warning naming
//! the peer and the setting; every one is counted
//! (`scim_bridge_untrusted_forwarded_requests_total`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::telemetry::metrics::Metrics;

/// Headers by which a proxy names the client. Only `X-Forwarded-For` is read (from trusted
/// proxies); all of them are noticed from untrusted peers.
const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

/// Most peers remembered as warned about; past that, new peers are counted, not logged.
const MAX_WARNED_PEERS: usize = 1024;

/// Marks a request that came over the bridge's own HTTPS listener (`http.tls`). Behind a
/// proxy that ends TLS the bridge knows HTTPS only from `public_base_url`, since
/// `X-Forwarded-Proto` is never believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTls;

/// The address a request came from, as far as the bridge can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// Used when the server runs without connection info (in-process tests).
    pub const UNKNOWN: ClientAddr = ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED));

    /// The address [`record_client`] recorded for `request` ([`ClientAddr::UNKNOWN`] without).
    pub fn of(request: &Request) -> IpAddr {
        request
            .extensions()
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr::UNKNOWN)
            .0
    }
}

/// The configured trusted proxies, and the untrusted peers already warned about.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
    warned: Arc<Mutex<HashSet<IpAddr>>>,
}

impl TrustedProxies {
    pub fn new(list: &[String]) -> Self {
        Self {
            nets: list
                .iter()
                .filter_map(|s| crate::config::parse_proxy(s))
                .collect(),
            warned: Arc::default(),
        }
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The forwarding header a request from `peer` carries in vain (`peer` is not trusted),
    /// and whether this is the first such request of `peer` (the one to warn about).
    fn ignored_forwarding(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Option<(&'static str, bool)> {
        let header = FORWARDING_HEADERS
            .into_iter()
            .find(|h| headers.contains_key(*h))?;
        let peer = canonical(peer);
        if self.contains(&peer) {
            return None;
        }
        let first = match self.warned.lock() {
            Ok(mut warned) if warned.len() < MAX_WARNED_PEERS => warned.insert(peer),
            _ => false,
        };
        Some((header, first))
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(&peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return peer;
            };
            for part in text.split(',') {
                match parse_hop(part) {
                    Some(ip) => hops.push(canonical(ip)),
                    // A hop that does not parse: nothing left of it can be trusted.
                    None => hops.clear(),
                }
            }
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            client = *hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port or in brackets.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Middleware: records the [`ClientAddr`] for everything below, and notices forwarding
/// headers from peers that are not trusted proxies.
pub async fn record_client(
    axum::extract::State((proxies, metrics)): axum::extract::State<(TrustedProxies, Metrics)>,
    mut request: Request,
    next: Next,
) -> Response {
    let addr = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => {
            let peer = canonical(peer.ip());
            if let Some((header, first)) = proxies.ignored_forwarding(peer, request.headers()) {
                metrics.untrusted_forwarded();
                if first {
                    tracing::warn!(
                        peer = %peer,
                        header,
                        "a request from {peer} carries {header}, but {peer} is not in \
                         http.trusted_proxies: the header is ignored and {peer} is taken as the \
                         client address, so every client behind it shares one failure budget \
                         and one address in the audit log; if {peer} is your reverse proxy, \
                         add it to http.trusted_proxies (logged once per peer)"
                    );
                }
            }
            ClientAddr(proxies.client(peer, request.headers()))
        }
        None => ClientAddr::UNKNOWN,
    };
    request.extensions_mut().insert(addr);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn header_from_an_untrusted_peer_is_ignored() {
        let p = TrustedProxies::new(&["10.0.0.0/8".into()]);
        assert_eq!(
            p.client(ip("203.0.113.9"), &headers(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::new(&[]);
        assert_eq!(
            none.client(ip("10.0.0.1"), &headers(&["1.2.3.4"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarding_from_an_untrusted_peer_is_noticed_once_per_peer() {
        let p = TrustedProxies::new(&["10.0.0.0/8".into()]);
        let a = ip("203.0.113.9");
        let b = ip("::ffff:203.0.113.10");
        assert_eq!(
            p.ignored_forwarding(a, &headers(&["1.2.3.4"])),
            Some(("x-forwarded-for", true))
        );
        assert_eq!(
            p.ignored_forwarding(a, &headers(&["1.2.3.4"])),
            Some(("x-forwarded-for", false))
        );
        let mut forwarded = HeaderMap::new();
        forwarded.insert("forwarded", HeaderValue::from_static("for=192.0.2.60"));
        assert_eq!(
            p.ignored_forwarding(b, &forwarded),
            Some(("forwarded", true))
        );
        // No header, or a trusted proxy: nothing to say.
        assert_eq!(
            p.ignored_forwarding(ip("198.51.100.1"), &headers(&[])),
            None
        );
        assert_eq!(
            p.ignored_forwarding(ip("10.1.2.3"), &headers(&["1.2.3.4"])),
            None
        );
        // The memory of warned peers is bounded.
        for i in 0..(MAX_WARNED_PEERS as u32 + 10) {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(0xc000_0000 + i));
            p.ignored_forwarding(peer, &headers(&["1.2.3.4"]));
        }
        assert_eq!(p.warned.lock().unwrap().len(), MAX_WARNED_PEERS);
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let p = TrustedProxies::new(&["10.0.0.0/8".into(), "192.168.1.1".into()]);
        // A client-supplied spoof on the left is not believed.
        let h = headers(&["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(p.client(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.1.2.3"), &headers(&[])), ip("10.1.2.3"));
        // Ports and IPv6 forms.
        assert_eq!(
            p.client(ip("10.1.2.3"), &headers(&["198.51.100.7:5555"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            p.client(ip("10.1.2.3"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // Garbage to the right of everything: the proxy's own address.
        assert_eq!(
            p.client(ip("10.1.2.3"), &headers(&["198.51.100.7, garbage"])),
            ip("10.1.2.3")
        );
        // IPv4-mapped peers match IPv4 ranges.
        assert_eq!(
            p.client(ip("::ffff:10.1.2.3"), &headers(&["198.51.100.7"])),
            ip("198.51.100.7")
        );
    }
}

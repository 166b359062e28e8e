//! The client address of a request. The TCP peer is the client, unless the peer is one of the
//! configured trusted proxies: then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first address that is not one is the client. From any other peer the
//! header is ignored, so a client cannot choose its own address (for the audit log and the
//! failed-authentication throttle). `X-Forwarded-Proto` and `X-Forwarded-Host` are never used:
//! `Location` and `meta.location` come from the configured `public_base_url` only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

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

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(list: &[String]) -> Self {
        Self(
            list.iter()
                .filter_map(|s| crate::config::parse_proxy(s))
                .collect(),
        )
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        self.0.iter().any(|net| net.contains(&ip))
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

/// Middleware: records the [`ClientAddr`] for everything below.
pub async fn record_client(
    axum::extract::State(proxies): axum::extract::State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let addr = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => ClientAddr(proxies.client(peer.ip(), request.headers())),
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

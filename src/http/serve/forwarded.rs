//! The client's address behind reverse proxies the operator trusts (`X-Forwarded-For`).
//!
//! Behind a load balancer every connection comes from the balancer, so the bad-key throttle
//! and the portal's sign-in backoff would count all clients as one. A proxy appends the
//! address it received the request from to `X-Forwarded-For`; anyone can send the header,
//! so it is read only when the connection itself comes from a trusted proxy, and then only
//! from its right end, as far as the addresses are trusted proxies too: the first address
//! that is not one is the client. What lies to the left of it was written by the client
//! and is ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Networks whose connections are reverse proxies that append to `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts connections from these networks; none trusts no header.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The address of the client of a request that arrived from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().unwrap_or(""))
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            // A hop that is not an address ends the walk: what is left of it cannot be
            // attributed, so the last proxy stands for the client.
            let Some(address) = parse_hop(hop.trim()) else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// A proxy's entry: an address, with a port appended by some proxies.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// IPv4 clients of a dual-stack listener arrive as IPv4-mapped IPv6 addresses.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Parses a trusted network: `10.0.0.0/8`, or one address (`10.0.0.7`, `::1`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or network (e.g. 10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            networks
                .iter()
                .map(|n| parse_network(n).expect("network"))
                .collect(),
        )
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_header_is_ignored_unless_the_connection_comes_from_a_trusted_proxy() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let spoofed = headers(&["203.0.113.9"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &spoofed),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.7"]);
        // The client wrote 1.1.1.1 itself; the edge proxy 192.0.2.7 appended the client's
        // real address, the inner balancer 10.0.0.2 appended the edge's.
        let chain = headers(&["1.1.1.1, 203.0.113.9, 192.0.2.7", "10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &chain), ip("203.0.113.9"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_only_gives_its_leftmost_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let chain = headers(&["10.0.0.5,10.0.0.4"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &chain), ip("10.0.0.5"));
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &headers(&[])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_ends_the_walk_at_the_last_proxy() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let chain = headers(&["203.0.113.9, unknown, 10.0.0.3"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &chain), ip("10.0.0.3"));
    }

    #[test]
    fn ports_ipv6_and_mapped_addresses_are_understood() {
        let trusted = proxies(&["::1", "127.0.0.1"]);
        assert_eq!(
            trusted.client(ip("::1"), &headers(&["[2001:db8::5]:4711"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.9:80"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix() {
        assert!(parse_network("10.0.0.0/8").is_ok());
        assert!(parse_network("fd00::/8").is_ok());
        assert!(parse_network("10.0.0.7").is_ok());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("balancer").is_err());
    }
}

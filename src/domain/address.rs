//! Which IP addresses a webhook may be sent to. Webhook targets come from API clients, so
//! without this rule webhookd could be used to reach the operator's private network
//! (server-side request forgery).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when `ip` is reachable on the public internet: not loopback, private, link-local,
/// carrier-grade NAT, unique-local, multicast, unspecified, documentation or reserved,
/// including the IPv4-mapped and IPv4-compatible IPv6 forms of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let shared_cgnat = a == 100 && (64..128).contains(&b); // 100.64.0.0/10
    let ietf_protocol = a == 192 && b == 0 && c == 0; // 192.0.0.0/24
    let benchmarking = a == 198 && (b == 18 || b == 19); // 198.18.0.0/15
    let reserved = a >= 240; // 240.0.0.0/4 and broadcast
    let this_network = a == 0; // 0.0.0.0/8
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared_cgnat
        || ietf_protocol
        || benchmarking
        || reserved
        || this_network)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // ::ffff:a.b.c.d and the deprecated ::a.b.c.d carry an IPv4 address: judge that.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6].iter().all(|&s| s == 0) && !ip.is_loopback() && !ip.is_unspecified() {
        return is_public_v4(Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        ));
    }
    let first = segments[0];
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let site_local = (first & 0xffc0) == 0xfec0; // fec0::/10, deprecated
    let documentation = first == 0x2001 && segments[1] == 0x0db8; // 2001:db8::/32
    let nat64 = first == 0x0064 && segments[1] == 0xff9b; // 64:ff9b::/96 can reach IPv4 space
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || site_local
        || documentation
        || nat64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn non_public_ipv4_ranges_are_refused() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
            "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1",
        ] {
            assert!(!public(ip), "{ip} should not be public");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_and_ipv4_forms_are_refused() {
        for ip in [
            "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::10.0.0.1", "2001:db8::1",
        ] {
            assert!(!public(ip), "{ip} should not be public");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(ip), "{ip} should be public");
        }
    }
}

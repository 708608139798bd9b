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
    let relay_anycast = a == 192 && b == 88 && c == 99; // 192.88.99.0/24, deprecated 6to4 relays
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
        || relay_anycast
        || benchmarking
        || reserved
        || this_network)
}

/// The IPv4 address in 32 bits of an IPv6 address, starting at segment `at`.
fn embedded_v4(segments: &[u16; 8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(segments[at]) << 16) | u32::from(segments[at + 1]))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if ip.is_loopback() || ip.is_unspecified() {
        return false;
    }
    // Forms that carry an IPv4 address, which a gateway or the host itself may reach:
    // judged by that address's own rules.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:a.b.c.d
    }
    if segments[..6].iter().all(|&s| s == 0) {
        return is_public_v4(embedded_v4(&segments, 6)); // ::a.b.c.d, deprecated "compatible"
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(&segments, 6)); // NAT64 well-known prefix 64:ff9b::/96
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(&segments, 1)); // 6to4 2002:a.b.c.d::/48
    }
    if segments[0] == 0x2001 && segments[1] == 0 {
        // Teredo 2001::/32: the server's address, and the client's with its bits inverted.
        let client = Ipv4Addr::from(!u32::from(embedded_v4(&segments, 6)));
        return is_public_v4(embedded_v4(&segments, 2)) && is_public_v4(client);
    }
    let first = segments[0];
    let local_nat64 = first == 0x64 && segments[1] == 0xff9b && segments[2] == 1; // 64:ff9b:1::/48
    let discard_only = first == 0x100 && segments[1..4] == [0, 0, 0]; // 100::/64
    let ietf_protocol = first == 0x2001 && segments[1] < 0x200; // 2001::/23: benchmarking, ORCHID…
    let documentation = (first == 0x2001 && segments[1] == 0x0db8) // 2001:db8::/32
        || (first == 0x3fff && segments[1] < 0x1000); // 3fff::/20
    let srv6 = first == 0x5f00; // 5f00::/16, segment routing identifiers
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let site_local = (first & 0xffc0) == 0xfec0; // fec0::/10, deprecated
    let global_unicast = (first & 0xe000) == 0x2000; // 2000::/3: everything else is reserved or local
    let special = ip.is_multicast()
        || local_nat64
        || discard_only
        || ietf_protocol
        || documentation
        || srv6
        || unique_local
        || link_local
        || site_local;
    global_unicast && !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn special_purpose_ipv4_ranges_are_refused() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
            "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
            "192.0.0.8", "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "198.19.255.254",
            "192.88.99.1",
        ] {
            assert!(!public(ip), "{ip} should not be public");
        }
    }

    #[test]
    fn special_purpose_ipv6_ranges_are_refused() {
        for ip in [
            "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "ff0e::1",
            "2001:db8::1", "3fff::1", "100::1", "2001:2::1", "2001:10::1", "5f00::1", "64:ff9b:1::1",
            "::ffff:0:7f00:1", "4000::1", "e000::1",
        ] {
            assert!(!public(ip), "{ip} should not be public");
        }
    }

    #[test]
    fn ipv6_forms_that_embed_ipv4_are_judged_by_the_embedded_address() {
        let cases = [
            ("::ffff:127.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:8.8.8.8", true),
            ("::10.0.0.1", false),
            ("::127.0.0.1", false),
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::a9fe:a9fe", false), // 169.254.169.254
            ("64:ff9b::8.8.8.8", true),
            ("2002:7f00:1::", false),      // 6to4 of 127.0.0.1
            ("2002:c0a8:101::1", false),   // 6to4 of 192.168.1.1
            ("2002:808:808::1", true),     // 6to4 of 8.8.8.8
            // Teredo: server 65.54.227.120, client 127.0.0.1 (inverted: 80ff:fffe).
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", false),
            // Teredo with a private server.
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", false),
            // Teredo: server 65.54.227.120, client 8.8.8.8 (inverted: f7f7:f7f7).
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", true),
        ];
        for (ip, expected) in cases {
            assert_eq!(public(ip), expected, "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"] {
            assert!(public(ip), "{ip} should be public");
        }
    }
}

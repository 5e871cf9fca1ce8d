//! Which addresses a webhook may reach.
//!
//! A webhook's URL is set by a user of the API, so without a check it could make
//! mailbridge POST mail to services on its own machine or network (the cloud
//! metadata service at 169.254.169.254, a database's HTTP port, the admin page of a
//! router). Only public unicast addresses are allowed unless the webhook says
//! otherwise; the check runs on every address the name resolves to, and the
//! connection goes to the checked addresses only (see [`crate::webhook`]), so a DNS
//! answer that changes between the check and the connection cannot slip through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of non-public address `ip` is, or `None` for a public unicast address.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            v6_kind(v6)
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if (a == 192 && b == 0 && ip.octets()[2] == 0) || (a == 198 && (18..20).contains(&b)) {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64: the IPv4 address inside decides.
        let s = ip.segments();
        let v4 = Ipv4Addr::new(
            (s[6] >> 8) as u8,
            (s[6] & 0xff) as u8,
            (s[7] >> 8) as u8,
            (s[7] & 0xff) as u8,
        );
        v4_kind(v4)
    } else {
        None
    }
}

/// Which non-public addresses a webhook may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public unicast addresses only (the default).
    #[default]
    PublicOnly,
    /// Any address, loopback and private networks included (a receiver on the same
    /// machine or network; the tests use it).
    AllowPrivate,
}

impl AddressPolicy {
    /// Whether `ip` may be reached; the kind of address refused otherwise.
    pub fn check(self, ip: IpAddr) -> Result<(), &'static str> {
        match (self, non_public_kind(ip)) {
            (AddressPolicy::AllowPrivate, _) | (AddressPolicy::PublicOnly, None) => Ok(()),
            (AddressPolicy::PublicOnly, Some(kind)) => Err(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast or reserved"),
            ("255.255.255.255", "multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private (unique local)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("ff02::1", "multicast or reserved"),
        ] {
            assert_eq!(non_public_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "52.96.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_kind(ip), None, "{ip}");
            assert!(AddressPolicy::PublicOnly.check(ip).is_ok());
        }
    }

    #[test]
    fn the_policy_allows_private_only_when_told() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(AddressPolicy::PublicOnly.check(lo), Err("loopback"));
        assert!(AddressPolicy::AllowPrivate.check(lo).is_ok());
    }
}

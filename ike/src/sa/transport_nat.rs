//! Transport mode through a NAT (RFC 7296 §2.23.1).
//!
//! In transport mode the selectors are the two hosts' own addresses, but a host behind a NAT
//! only knows its private address while its peer only sees the NAT's public one. Each side
//! therefore replaces, before narrowing or checking anything, the address of every selector
//! belonging to a host behind a NAT with the address it sees that host's IKE packets use:
//! the peer's selectors with the peer's observed IKE address when the peer is behind a NAT,
//! our own selectors with our local IKE address when we are. The CHILD_SA then carries the
//! addresses this host's datapath really sees, and the narrowed selectors a responder
//! returns are in its own view (§2.23.1: the client maps them back the same way).

use std::net::IpAddr;

use crate::wire::TsRange;

/// `ranges` with every address of `addr`'s family pinned to `addr` (ports and protocol
/// kept, duplicates dropped). Ranges of the other family are kept as they are: they cannot
/// name this host, and narrowing decides about them.
pub(super) fn pin(ranges: &[TsRange], addr: IpAddr) -> Vec<TsRange> {
    let mut out: Vec<TsRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let pinned = if r.start_addr.is_ipv4() == addr.is_ipv4() {
            TsRange {
                start_addr: addr,
                end_addr: addr,
                ..r.clone()
            }
        } else {
            r.clone()
        };
        if !out.contains(&pinned) {
            out.push(pinned);
        }
    }
    out
}

/// `ranges` with every single-host range of `old` moved to `new` (a peer behind a NAT whose
/// mapping changed, §2.23): the CHILD_SA's selectors keep naming the address the datapath
/// sees.
pub(super) fn move_host(ranges: &mut [TsRange], old: IpAddr, new: IpAddr) {
    for r in ranges {
        if r.start_addr == old && r.end_addr == old {
            r.start_addr = new;
            r.end_addr = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pin_replaces_addresses_and_keeps_ports() {
        let private = ip("192.168.1.5");
        let public = ip("203.0.113.9");
        let ranges = [
            TsRange::host(private, 6, Some(2049)),
            TsRange::host(private, 17, None),
            // Any IPv4 address (a wide proposal) becomes the one observed host.
            TsRange::any_v4(),
            TsRange::any_v6(),
        ];
        let pinned = pin(&ranges, public);
        assert_eq!(
            pinned,
            [
                TsRange::host(public, 6, Some(2049)),
                TsRange::host(public, 17, None),
                TsRange::host(public, 0, None),
                TsRange::any_v6(),
            ]
        );
        // Two proposals that differ only in the address collapse into one.
        let twice = [
            TsRange::host(private, 6, None),
            TsRange::host(public, 6, None),
        ];
        assert_eq!(pin(&twice, public), [TsRange::host(public, 6, None)]);
    }

    #[test]
    fn move_host_moves_only_the_old_host() {
        let (old, new, other) = (ip("198.51.100.1"), ip("198.51.100.2"), ip("10.1.1.1"));
        let mut ranges = vec![
            TsRange::host(old, 6, Some(2049)),
            TsRange::host(other, 0, None),
            TsRange::any_v4(),
        ];
        move_host(&mut ranges, old, new);
        assert_eq!(
            ranges,
            [
                TsRange::host(new, 6, Some(2049)),
                TsRange::host(other, 0, None),
                TsRange::any_v4()
            ]
        );
    }
}

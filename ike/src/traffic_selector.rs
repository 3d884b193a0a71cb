//! Traffic selector narrowing (RFC 7296 §2.9).
//!
//! The responder intersects what the initiator proposed with its own policy and answers with
//! the (possibly smaller) result; the initiator checks that the answer lies within what it
//! proposed.

use std::net::IpAddr;

use crate::wire::{TsRange, ANY_PROTOCOL};

fn addr_key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v4) => (4, u32::from(v4).into()),
        IpAddr::V6(v6) => (6, u128::from(v6)),
    }
}

/// The common part of two ranges, if any: same family, compatible protocol, overlapping ports
/// and addresses.
pub fn intersect(a: &TsRange, b: &TsRange) -> Option<TsRange> {
    let (fa, a_start) = addr_key(a.start_addr);
    let (fb, b_start) = addr_key(b.start_addr);
    if fa != fb || addr_key(a.end_addr).0 != fa || addr_key(b.end_addr).0 != fb {
        return None;
    }
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (ANY_PROTOCOL, p) | (p, ANY_PROTOCOL) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    if start_port > end_port {
        return None;
    }
    let (start, start_addr) = if a_start >= b_start {
        (a_start, a.start_addr)
    } else {
        (b_start, b.start_addr)
    };
    let (end, end_addr) = if addr_key(a.end_addr).1 <= addr_key(b.end_addr).1 {
        (addr_key(a.end_addr).1, a.end_addr)
    } else {
        (addr_key(b.end_addr).1, b.end_addr)
    };
    if start > end {
        return None;
    }
    Some(TsRange {
        ip_protocol,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// Whether `inner` lies entirely within `outer`.
pub fn contains(outer: &TsRange, inner: &TsRange) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// Every non-empty intersection of a proposed range with a policy range, without duplicates,
/// in the proposer's order (its first selector is the packet that triggered it, §2.9).
pub fn narrow(proposed: &[TsRange], policy: &[TsRange]) -> Vec<TsRange> {
    let mut out: Vec<TsRange> = Vec::new();
    for p in proposed {
        for q in policy {
            if let Some(r) = intersect(p, q) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    out
}

/// Whether each narrowed range lies within one of the proposed ranges.
pub fn is_narrowing_of(narrowed: &[TsRange], proposed: &[TsRange]) -> bool {
    !narrowed.is_empty()
        && narrowed
            .iter()
            .all(|n| proposed.iter().any(|p| contains(p, n)))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn host(a: [u8; 4], proto: u8, port: Option<u16>) -> TsRange {
        TsRange::host(IpAddr::V4(Ipv4Addr::from(a)), proto, port)
    }

    #[test]
    fn ibm_policy_narrows_to_hosts() {
        // IBM: local 0.0.0.0/0, remote <ip>/32; the initiator proposes its own address.
        let any = TsRange::any_v4();
        let proposed = [host([10, 0, 0, 5], 0, None)];
        assert_eq!(
            narrow(&proposed, std::slice::from_ref(&any)),
            proposed.to_vec()
        );
        let nfs = host([10, 0, 0, 5], 6, Some(2049));
        assert_eq!(
            narrow(std::slice::from_ref(&any), std::slice::from_ref(&nfs)),
            vec![nfs.clone()]
        );
        assert!(is_narrowing_of(std::slice::from_ref(&nfs), &[any]));
        assert!(!is_narrowing_of(&[host([10, 0, 0, 6], 0, None)], &[nfs]));
    }

    #[test]
    fn disjoint_protocols_ports_and_families_do_not_intersect() {
        let tcp = host([10, 0, 0, 5], 6, Some(2049));
        let udp = host([10, 0, 0, 5], 17, Some(2049));
        assert_eq!(intersect(&tcp, &udp), None);
        assert_eq!(intersect(&tcp, &host([10, 0, 0, 5], 6, Some(111))), None);
        assert_eq!(intersect(&tcp, &TsRange::any_v6()), None);
        assert_eq!(intersect(&tcp, &host([10, 0, 0, 6], 0, None)), None);
        assert!(narrow(&[tcp], &[udp]).is_empty());
    }

    #[test]
    fn ranges_overlap_partially() {
        let a = TsRange {
            start_addr: Ipv4Addr::new(10, 0, 0, 0).into(),
            end_addr: Ipv4Addr::new(10, 0, 0, 100).into(),
            ..TsRange::any_v4()
        };
        let b = TsRange {
            start_addr: Ipv4Addr::new(10, 0, 0, 50).into(),
            end_addr: Ipv4Addr::new(10, 0, 1, 0).into(),
            start_port: 1000,
            end_port: 3000,
            ..TsRange::any_v4()
        };
        let r = intersect(&a, &b).unwrap();
        assert_eq!(r.start_addr, IpAddr::from(Ipv4Addr::new(10, 0, 0, 50)));
        assert_eq!(r.end_addr, IpAddr::from(Ipv4Addr::new(10, 0, 0, 100)));
        assert_eq!((r.start_port, r.end_port), (1000, 3000));
        assert!(contains(&a, &r) && contains(&b, &r));
    }
}

//! The few facts about an IP packet the datapath acts on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the datapath needs from an IP packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IpHeader {
    /// Up to the transport header (IPv6: with the extension headers before it).
    pub(super) header_len: usize,
    /// ≤ the buffer's length.
    pub(super) total_len: usize,
    pub(super) protocol: u8,
    /// An IPv4 fragment (more-fragments flag or an offset): transport mode refuses it
    /// (RFC 4303 §3.3.4), tunnel mode carries it whole, checked against port-less selectors
    /// only. (IPv6 fragments are refused by the parser.)
    pub(super) fragment: bool,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
}

impl IpHeader {
    pub(super) fn parse(p: &[u8]) -> Option<IpHeader> {
        match p.first()? >> 4 {
            4 => Self::parse_v4(p),
            6 => {
                let l = crate::ip::IpLayout::parse(p).ok()?;
                let addr = |at: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&p[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                Some(IpHeader {
                    header_len: l.header_len,
                    total_len: l.total_len,
                    protocol: l.protocol,
                    fragment: false,
                    src: addr(8),
                    dst: addr(24),
                })
            }
            _ => None,
        }
    }

    fn parse_v4(p: &[u8]) -> Option<IpHeader> {
        let h = p.get(..crate::ip::IPV4_HEADER_LEN)?;
        let header_len = usize::from(h[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if header_len < 20 || total_len < header_len || total_len > p.len() {
            return None;
        }
        Some(IpHeader {
            header_len,
            total_len,
            protocol: h[9],
            fragment: u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
            src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
            dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        })
    }

    /// The ESP next header that carries this packet whole (tunnel mode).
    pub(super) fn tunnel_next_header(&self) -> u8 {
        match self.dst {
            IpAddr::V4(_) => crate::NEXT_HEADER_IPV4,
            IpAddr::V6(_) => crate::NEXT_HEADER_IPV6,
        }
    }

    /// The transport bytes selectors look at: none for a fragment, whose ports are unknown
    /// (or, in the first one, not to be trusted alone).
    pub(super) fn transport<'a>(&self, p: &'a [u8]) -> &'a [u8] {
        if self.fragment {
            &[]
        } else {
            &p[self.header_len..self.total_len]
        }
    }
}

/// Source and destination ports of TCP, UDP, SCTP and UDP-Lite, whose first four bytes
/// are the ports.
pub(super) fn ports(protocol: u8, transport: &[u8]) -> Option<(u16, u16)> {
    match (protocol, transport) {
        (6 | 17 | 132 | 136, [a, b, c, d, ..]) => {
            Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::Selector;

    #[test]
    fn ipv4_headers_and_fragments() {
        let mut p = vec![0u8; 48];
        crate::ip::write_ipv4_header(
            &mut p,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            28,
        )
        .unwrap();
        p[20..24].copy_from_slice(&[0, 7, 8, 1]);
        let v = IpHeader::parse(&p).unwrap();
        assert_eq!((v.header_len, v.total_len, v.protocol), (20, 48, 17));
        assert_eq!(v.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v.dst, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(v.tunnel_next_header(), 4);
        assert!(!v.fragment);
        assert_eq!(ports(17, v.transport(&p)), Some((7, 2049)));
        // More fragments: no ports to match, so only port-less selectors accept it.
        p[6] |= 0x20;
        let f = IpHeader::parse(&p).unwrap();
        assert!(f.fragment && f.transport(&p).is_empty());
        let nfs = Selector {
            protocol: Some(17),
            local_port: None,
            remote_port: Some(2049),
        };
        assert!(!nfs.matches(17, ports(17, f.transport(&p)), true));
        assert!(
            IpHeader::parse(&p[..47]).is_none(),
            "total length beyond the buffer"
        );
        assert!(IpHeader::parse(&p[..19]).is_none());
        p[0] = 0x55;
        assert!(IpHeader::parse(&p).is_none(), "version 5");
        // IPv6, UDP after the fixed header.
        let mut q = vec![0u8; 40 + 12];
        crate::ip::write_ipv6_header(
            &mut q,
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            17,
            12,
        )
        .unwrap();
        q[40..44].copy_from_slice(&[0, 7, 8, 1]);
        let v6 = IpHeader::parse(&q).unwrap();
        assert_eq!((v6.header_len, v6.total_len, v6.protocol), (40, 52, 17));
        assert_eq!(v6.dst, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(v6.tunnel_next_header(), 41);
        assert_eq!(ports(17, v6.transport(&q)), Some((7, 2049)));
    }

    #[test]
    fn ports_of_short_or_portless_payloads() {
        assert_eq!(ports(6, &[0, 80, 1, 0]), Some((80, 256)));
        assert_eq!(ports(6, &[0, 80, 1]), None);
        assert_eq!(ports(1, &[0, 80, 1, 0]), None);
    }
}

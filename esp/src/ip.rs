//! Just enough IPv4/IPv6 to place ESP in transport mode: where the transport payload starts,
//! which byte names its protocol, and header builders for packets the datapath rebuilds.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::{Error, Result};

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where things are in one IP packet, found by [`IpLayout::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLayout {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Bytes before the transport payload: the IPv4 header with options, or the IPv6 header
    /// with the extension headers that precede ESP (RFC 4303 §3.1.1: hop-by-hop, routing,
    /// destination options).
    pub header_len: usize,
    /// Offset of the byte holding the transport protocol (IPv4 protocol field, or the last
    /// next-header field of the IPv6 chain).
    pub protocol_offset: usize,
    /// The transport protocol.
    pub protocol: u8,
    /// The packet's length according to its header (≤ the buffer).
    pub total_len: usize,
}

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

impl IpLayout {
    /// Parses the headers of `packet`. Fragments are refused: transport-mode ESP applies to
    /// whole datagrams only (RFC 4303 §3.3.4).
    pub fn parse(packet: &[u8]) -> Result<Self> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Self::parse_v4(packet),
            Some(6) => Self::parse_v6(packet),
            Some(_) => Err(Error::MalformedIp("not IPv4 or IPv6")),
            None => Err(Error::MalformedIp("empty")),
        }
    }

    fn parse_v4(p: &[u8]) -> Result<Self> {
        if p.len() < IPV4_HEADER_LEN {
            return Err(Error::MalformedIp("IPv4 header truncated"));
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if ihl < IPV4_HEADER_LEN || total < ihl || total > p.len() {
            return Err(Error::MalformedIp("IPv4 lengths inconsistent"));
        }
        let frag = u16::from_be_bytes([p[6], p[7]]);
        // More-fragments flag or a fragment offset.
        if frag & 0x3fff != 0 {
            return Err(Error::MalformedIp("IPv4 fragment"));
        }
        Ok(IpLayout {
            version: IpVersion::V4,
            header_len: ihl,
            protocol_offset: 9,
            protocol: p[9],
            total_len: total,
        })
    }

    fn parse_v6(p: &[u8]) -> Result<Self> {
        if p.len() < IPV6_HEADER_LEN {
            return Err(Error::MalformedIp("IPv6 header truncated"));
        }
        let total = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([p[4], p[5]]));
        if total > p.len() {
            return Err(Error::MalformedIp("IPv6 payload length beyond packet"));
        }
        let mut protocol_offset = 6;
        let mut off = IPV6_HEADER_LEN;
        // Each step consumes at least 8 bytes of a bounded packet, so this terminates.
        loop {
            let nh = p[protocol_offset];
            match nh {
                IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                    if off + 8 > total {
                        return Err(Error::MalformedIp("IPv6 extension header truncated"));
                    }
                    let len = (usize::from(p[off + 1]) + 1) * 8;
                    if off + len > total {
                        return Err(Error::MalformedIp("IPv6 extension header truncated"));
                    }
                    protocol_offset = off;
                    off += len;
                }
                IPV6_FRAGMENT => return Err(Error::MalformedIp("IPv6 fragment")),
                _ => {
                    return Ok(IpLayout {
                        version: IpVersion::V6,
                        header_len: off,
                        protocol_offset,
                        protocol: nh,
                        total_len: total,
                    })
                }
            }
        }
    }

    /// Rewrites the header of `packet` (laid out as `self`, apart from lengths) for a new
    /// transport protocol and payload length; recomputes the IPv4 header checksum.
    pub fn rewrite(&self, packet: &mut [u8], protocol: u8, payload_len: usize) -> Result<()> {
        let total = self.header_len + payload_len;
        if packet.len() < self.header_len {
            return Err(Error::BufferTooSmall {
                needed: self.header_len,
                available: packet.len(),
            });
        }
        packet[self.protocol_offset] = protocol;
        match self.version {
            IpVersion::V4 => {
                let t = u16::try_from(total).map_err(|_| Error::PayloadTooLarge(payload_len))?;
                packet[2..4].copy_from_slice(&t.to_be_bytes());
                set_ipv4_checksum(&mut packet[..self.header_len]);
            }
            IpVersion::V6 => {
                let t = u16::try_from(total - IPV6_HEADER_LEN)
                    .map_err(|_| Error::PayloadTooLarge(payload_len))?;
                packet[4..6].copy_from_slice(&t.to_be_bytes());
            }
        }
        Ok(())
    }
}

/// The internet checksum (RFC 1071) of `data` plus `initial`, folded to 16 bits, not yet
/// complemented. Eight bytes are added at a time: the one's-complement sum of 16-bit words
/// can be accumulated in wider words and folded at the end (RFC 1071 §2).
pub fn ones_complement_sum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u128::from(initial);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        sum += u128::from(u64::from_be_bytes(w));
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u128::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = rest.remainder() {
        sum += u128::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sets the checksum field of an IPv4 header (`header` is the whole header with options).
pub fn set_ipv4_checksum(header: &mut [u8]) {
    if header.len() < IPV4_HEADER_LEN {
        return;
    }
    header[10] = 0;
    header[11] = 0;
    let c = !ones_complement_sum(header, 0);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes a 20-byte IPv4 header (no options, DF set, TTL 64) for a payload of `payload_len`
/// bytes into `buf`.
pub fn write_ipv4_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
) -> Result<()> {
    let available = buf.len();
    let h = buf
        .get_mut(..IPV4_HEADER_LEN)
        .ok_or(Error::BufferTooSmall {
            needed: IPV4_HEADER_LEN,
            available,
        })?;
    let total = u16::try_from(IPV4_HEADER_LEN + payload_len)
        .map_err(|_| Error::PayloadTooLarge(payload_len))?;
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&[0, 0]);
    h[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    set_ipv4_checksum(h);
    Ok(())
}

/// Writes a 40-byte IPv6 header (hop limit 64) for a payload of `payload_len` bytes.
pub fn write_ipv6_header(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    protocol: u8,
    payload_len: usize,
) -> Result<()> {
    let available = buf.len();
    let h = buf
        .get_mut(..IPV6_HEADER_LEN)
        .ok_or(Error::BufferTooSmall {
            needed: IPV6_HEADER_LEN,
            available,
        })?;
    let len = u16::try_from(payload_len).map_err(|_| Error::PayloadTooLarge(payload_len))?;
    h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = protocol;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real IPv4 header (from RFC 1071 discussions and Wikipedia's worked example) whose
    /// checksum is 0xb861.
    #[test]
    fn ipv4_checksum_known_value() {
        let mut h = hex::decode("450000730000400040110000c0a80001c0a800c7").unwrap();
        set_ipv4_checksum(&mut h);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
        assert_eq!(ones_complement_sum(&h, 0), 0xffff);
    }

    #[test]
    fn wide_checksum_matches_word_by_word() {
        let mut x = 7u32;
        for len in 0..300usize {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let mut naive: u32 = 0xabcd;
            for c in data.chunks(2) {
                naive += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            while naive > 0xffff {
                naive = (naive & 0xffff) + (naive >> 16);
            }
            assert_eq!(
                u32::from(ones_complement_sum(&data, 0xabcd)),
                naive,
                "len {len}"
            );
        }
    }

    #[test]
    fn parse_v4_with_options_and_trailing_bytes() {
        let mut p = vec![0u8; 60];
        p[0] = 0x46; // 24-byte header
        p[2..4].copy_from_slice(&50u16.to_be_bytes());
        p[9] = 6;
        let l = IpLayout::parse(&p).unwrap();
        assert_eq!((l.header_len, l.protocol, l.total_len), (24, 6, 50));
        p[6] = 0x20; // MF
        assert!(IpLayout::parse(&p).is_err());
        p[6] = 0x40; // DF is fine
        assert!(IpLayout::parse(&p).is_ok());
        p[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert!(IpLayout::parse(&p).is_err());
        p[0] = 0x44;
        assert!(IpLayout::parse(&p).is_err());
    }

    #[test]
    fn parse_v6_extension_chain() {
        let mut p = vec![0u8; 40 + 8 + 16 + 8];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&32u16.to_be_bytes());
        p[6] = 0; // hop-by-hop
        p[40] = 60; // → dest opts
        p[41] = 0; // 8 bytes
        p[48] = 17; // → UDP
        p[49] = 1; // 16 bytes
        let l = IpLayout::parse(&p).unwrap();
        assert_eq!(l.header_len, 64);
        assert_eq!(l.protocol_offset, 48);
        assert_eq!(l.protocol, 17);
        p[49] = 3; // extension runs past the end
        assert!(IpLayout::parse(&p).is_err());
        p[49] = 1;
        p[48] = 44;
        assert_eq!(
            IpLayout::parse(&p),
            Err(Error::MalformedIp("IPv6 fragment"))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..80 {
            for first in [0x00u8, 0x45, 0x4f, 0x60, 0xff] {
                let mut p = vec![0xffu8; len];
                if let Some(b) = p.first_mut() {
                    *b = first;
                }
                let _ = IpLayout::parse(&p);
            }
        }
    }

    #[test]
    fn header_builders() {
        let mut b = [0u8; 20];
        write_ipv4_header(
            &mut b,
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            17,
            95,
        )
        .unwrap();
        let l = IpLayout::parse(&[&b[..], &[0u8; 95]].concat()).unwrap();
        assert_eq!((l.protocol, l.total_len), (17, 115));
        assert_eq!(ones_complement_sum(&b, 0), 0xffff);
        let mut b6 = [0u8; 40];
        write_ipv6_header(&mut b6, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 6, 0).unwrap();
        assert_eq!(IpLayout::parse(&b6).unwrap().protocol, 6);
        assert!(write_ipv4_header(
            &mut [0u8; 19],
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            6,
            0
        )
        .is_err());
    }
}

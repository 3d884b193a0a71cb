//! `xfrm_address_t` and `struct xfrm_selector`: which packets an SA or policy applies to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::DecodeError;
use crate::netlink::{u16_at, u32_at};

/// AF_INET.
pub const AF_INET: u16 = libc::AF_INET as u16;
/// AF_INET6.
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// `sizeof(struct xfrm_selector)` on Linux (all ABIs).
pub const SELECTOR_LEN: usize = 56;

/// The address family number for `addr`.
pub fn family_of(addr: IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// Writes `addr` as an `xfrm_address_t` (16 bytes; IPv4 in the first four, network order).
pub(crate) fn put_addr(out: &mut [u8], addr: IpAddr) {
    out[..16].fill(0);
    match addr {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out[..16].copy_from_slice(&a.octets()),
    }
}

/// Reads an `xfrm_address_t` of `family` from the first 16 bytes of `b` (caller checked).
pub(crate) fn get_addr(b: &[u8], family: u16) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        AF_INET6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        other => Err(DecodeError::Unknown {
            what: "address family",
            value: u32::from(other),
        }),
    }
}

pub(crate) fn need(what: &'static str, b: &[u8], n: usize) -> Result<(), DecodeError> {
    if b.len() < n {
        Err(DecodeError::Truncated {
            what,
            need: n,
            got: b.len(),
        })
    } else {
        Ok(())
    }
}

/// Traffic selector (RFC 7296 §3.13.1 maps onto it): addresses with prefixes, an upper-layer
/// protocol and ports. Protocol 0 and port `None` mean "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Source address.
    pub src: IpAddr,
    /// Source prefix length.
    pub src_prefix: u8,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub dst_prefix: u8,
    /// Upper-layer protocol (6 TCP, 17 UDP, 0 any).
    pub proto: u8,
    /// Source port, `None` for any.
    pub src_port: Option<u16>,
    /// Destination port, `None` for any.
    pub dst_port: Option<u16>,
}

impl Selector {
    /// All traffic between two hosts (/32 or /128 on both ends), any protocol.
    pub fn host_to_host(src: IpAddr, dst: IpAddr) -> Self {
        let full = |a: IpAddr| if a.is_ipv4() { 32 } else { 128 };
        Selector {
            src,
            src_prefix: full(src),
            dst,
            dst_prefix: full(dst),
            proto: 0,
            src_port: None,
            dst_port: None,
        }
    }

    /// Subnet to subnet, any protocol.
    pub fn subnets(src: IpAddr, src_prefix: u8, dst: IpAddr, dst_prefix: u8) -> Self {
        Selector {
            src,
            src_prefix,
            dst,
            dst_prefix,
            proto: 0,
            src_port: None,
            dst_port: None,
        }
    }

    /// Restricts to one upper-layer protocol.
    pub fn with_proto(mut self, proto: u8) -> Self {
        self.proto = proto;
        self
    }

    /// Restricts to one source port.
    pub fn with_src_port(mut self, port: u16) -> Self {
        self.src_port = Some(port);
        self
    }

    /// Restricts to one destination port.
    pub fn with_dst_port(mut self, port: u16) -> Self {
        self.dst_port = Some(port);
        self
    }

    /// The same traffic seen from the other end (for the inbound policy of a pair).
    pub fn reversed(self) -> Self {
        Selector {
            src: self.dst,
            src_prefix: self.dst_prefix,
            dst: self.src,
            dst_prefix: self.src_prefix,
            proto: self.proto,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// Address family of the selector.
    pub fn family(&self) -> u16 {
        family_of(self.src)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err("selector mixes IPv4 and IPv6".into());
        }
        let max = if self.src.is_ipv4() { 32 } else { 128 };
        if self.src_prefix > max || self.dst_prefix > max {
            return Err(format!("selector prefix longer than {max}"));
        }
        Ok(())
    }

    /// Writes the 56-byte `xfrm_selector`.
    pub(crate) fn emit(&self, out: &mut [u8]) {
        out[..SELECTOR_LEN].fill(0);
        put_addr(&mut out[0..16], self.dst);
        put_addr(&mut out[16..32], self.src);
        let (dport, dmask) = port_and_mask(self.dst_port);
        let (sport, smask) = port_and_mask(self.src_port);
        out[32..34].copy_from_slice(&dport);
        out[34..36].copy_from_slice(&dmask);
        out[36..38].copy_from_slice(&sport);
        out[38..40].copy_from_slice(&smask);
        out[40..42].copy_from_slice(&self.family().to_ne_bytes());
        out[42] = self.dst_prefix;
        out[43] = self.src_prefix;
        out[44] = self.proto;
        // ifindex (48) and user (52) stay 0: any interface, any user.
    }

    /// Reads an `xfrm_selector`; `None` when its family is unspecified (an SA without a
    /// selector, as `ip xfrm state add` installs by default).
    pub(crate) fn parse(b: &[u8]) -> Result<Option<Self>, DecodeError> {
        need("xfrm_selector", b, SELECTOR_LEN)?;
        let family = u16_at(b, 40);
        if family == 0 {
            return Ok(None);
        }
        let port = |at: usize| {
            let mask = u16::from_be_bytes([b[at + 2], b[at + 3]]);
            (mask != 0).then(|| u16::from_be_bytes([b[at], b[at + 1]]))
        };
        let _ifindex = u32_at(b, 48);
        Ok(Some(Selector {
            dst: get_addr(&b[0..16], family)?,
            src: get_addr(&b[16..32], family)?,
            dst_port: port(32),
            src_port: port(36),
            dst_prefix: b[42],
            src_prefix: b[43],
            proto: b[44],
        }))
    }
}

fn port_and_mask(port: Option<u16>) -> ([u8; 2], [u8; 2]) {
    match port {
        Some(p) => (p.to_be_bytes(), [0xff, 0xff]),
        None => ([0, 0], [0, 0]),
    }
}

/// Writes an all-zero selector (family unspecified): the SA matches whatever its policy sends.
pub(crate) fn emit_any(out: &mut [u8]) {
    out[..SELECTOR_LEN].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_round_trip_v4_ports() {
        let s = Selector::host_to_host("10.99.0.2".parse().unwrap(), "10.99.0.1".parse().unwrap())
            .with_proto(6)
            .with_src_port(2049);
        let mut b = [0u8; SELECTOR_LEN];
        s.emit(&mut b);
        assert_eq!(&b[0..4], &[10, 99, 0, 1]);
        assert_eq!(&b[36..40], &[0x08, 0x01, 0xff, 0xff]);
        assert_eq!(Selector::parse(&b).unwrap(), Some(s));
        assert_eq!(s.reversed().reversed(), s);
    }

    #[test]
    fn selector_v6_and_unspecified() {
        let s = Selector::subnets(
            "2001:db8::".parse().unwrap(),
            64,
            "2001:db8:1::".parse().unwrap(),
            48,
        );
        let mut b = [0u8; SELECTOR_LEN];
        s.emit(&mut b);
        assert_eq!(Selector::parse(&b).unwrap(), Some(s));
        emit_any(&mut b);
        assert_eq!(Selector::parse(&b).unwrap(), None);
        assert!(Selector::parse(&b[..55]).is_err());
        b[40] = 99;
        assert!(Selector::parse(&b).is_err());
    }

    #[test]
    fn validate_rejects_mixed_families() {
        let mut s =
            Selector::host_to_host("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(s.validate().is_ok());
        s.dst = "::1".parse().unwrap();
        assert!(s.validate().is_err());
    }
}

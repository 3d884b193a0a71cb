//! The Traffic Selector payloads TSi and TSr (RFC 7296 §3.13).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::{len16, Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::{PayloadType, TsType};

const SELECTOR_HEADER_LEN: usize = 4;
const IPV4_SELECTOR_LEN: usize = 16;
const IPV6_SELECTOR_LEN: usize = 40;

/// IP protocol number meaning "any" in a selector.
pub const ANY_PROTOCOL: u8 = 0;

/// An address range selector: addresses, ports and IP protocol, all inclusive
/// (`TS_IPV4_ADDR_RANGE` or `TS_IPV6_ADDR_RANGE` by address family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsRange {
    /// IP protocol (0 = any; 6 = TCP, 17 = UDP).
    pub ip_protocol: u8,
    /// First port (0 with `end_port` 65535 = any).
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start_addr: IpAddr,
    /// Last address; must have the same family as `start_addr`.
    pub end_addr: IpAddr,
}

impl TsRange {
    /// All traffic of one protocol to/from one host, on one port or (with `None`) any port.
    pub fn host(addr: IpAddr, ip_protocol: u8, port: Option<u16>) -> Self {
        let (start_port, end_port) = port.map_or((0, u16::MAX), |p| (p, p));
        TsRange {
            ip_protocol,
            start_port,
            end_port,
            start_addr: addr,
            end_addr: addr,
        }
    }

    /// Everything in IPv4.
    pub fn any_v4() -> Self {
        TsRange {
            ip_protocol: ANY_PROTOCOL,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: Ipv4Addr::UNSPECIFIED.into(),
            end_addr: Ipv4Addr::BROADCAST.into(),
        }
    }

    /// Everything in IPv6.
    pub fn any_v6() -> Self {
        TsRange {
            ip_protocol: ANY_PROTOCOL,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: Ipv6Addr::UNSPECIFIED.into(),
            end_addr: Ipv6Addr::from(u128::MAX).into(),
        }
    }

    /// The selector type this range is sent as.
    pub fn ts_type(&self) -> TsType {
        match self.start_addr {
            IpAddr::V4(_) => TsType::Ipv4AddrRange,
            IpAddr::V6(_) => TsType::Ipv6AddrRange,
        }
    }
}

impl fmt::Display for TsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start_addr == self.end_addr {
            write!(f, "{}", self.start_addr)?;
        } else {
            write!(f, "{}-{}", self.start_addr, self.end_addr)?;
        }
        write!(f, "[{}/", self.ip_protocol)?;
        match (self.start_port, self.end_port) {
            (0, u16::MAX) => f.write_str("any]"),
            (s, e) if s == e => write!(f, "{s}]"),
            (s, e) => write!(f, "{s}-{e}]"),
        }
    }
}

/// One traffic selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficSelector {
    /// An IPv4 or IPv6 address range.
    Range(TsRange),
    /// Another selector type (e.g. `TS_SECLABEL`), kept as received so it can be refused or
    /// echoed by policy rather than by the codec.
    Other {
        /// Selector type.
        ts_type: TsType,
        /// The octet after the type (IP protocol or reserved, per type).
        second_octet: u8,
        /// The bytes after the selector length field.
        data: Vec<u8>,
    },
}

impl TrafficSelector {
    fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Range(r) => match r.start_addr {
                IpAddr::V4(_) => IPV4_SELECTOR_LEN,
                IpAddr::V6(_) => IPV6_SELECTOR_LEN,
            },
            TrafficSelector::Other { data, .. } => SELECTOR_HEADER_LEN + data.len(),
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let ts_type = TsType::from(r.u8()?);
        let second_octet = r.u8()?;
        let len = r.u16()? as usize;
        if len < SELECTOR_HEADER_LEN {
            return Err(Error::BadLength {
                what: "traffic selector",
                len,
            });
        }
        let body = r.take(len - SELECTOR_HEADER_LEN)?;
        let want = match ts_type {
            TsType::Ipv4AddrRange => IPV4_SELECTOR_LEN,
            TsType::Ipv6AddrRange => IPV6_SELECTOR_LEN,
            _ => {
                return Ok(TrafficSelector::Other {
                    ts_type,
                    second_octet,
                    data: body.to_vec(),
                });
            }
        };
        if len != want {
            return Err(Error::BadLength {
                what: "traffic selector",
                len,
            });
        }
        let mut b = Reader::new(body, "traffic selector");
        let start_port = b.u16()?;
        let end_port = b.u16()?;
        let (start_addr, end_addr) = if ts_type == TsType::Ipv4AddrRange {
            let s: [u8; 4] = b.array()?;
            let e: [u8; 4] = b.array()?;
            (IpAddr::from(s), IpAddr::from(e))
        } else {
            let s: [u8; 16] = b.array()?;
            let e: [u8; 16] = b.array()?;
            (IpAddr::from(s), IpAddr::from(e))
        };
        Ok(TrafficSelector::Range(TsRange {
            ip_protocol: second_octet,
            start_port,
            end_port,
            start_addr,
            end_addr,
        }))
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<()> {
        match self {
            TrafficSelector::Range(r) => {
                w.u8(r.ts_type().value())?;
                w.u8(r.ip_protocol)?;
                w.u16(self.buffer_len() as u16)?;
                w.u16(r.start_port)?;
                w.u16(r.end_port)?;
                match (r.start_addr, r.end_addr) {
                    (IpAddr::V4(s), IpAddr::V4(e)) => {
                        w.bytes(&s.octets())?;
                        w.bytes(&e.octets())
                    }
                    (IpAddr::V6(s), IpAddr::V6(e)) => {
                        w.bytes(&s.octets())?;
                        w.bytes(&e.octets())
                    }
                    _ => Err(Error::BadValue {
                        what: "traffic selector address families",
                        value: 0,
                    }),
                }
            }
            TrafficSelector::Other {
                ts_type,
                second_octet,
                data,
            } => {
                w.u8(ts_type.value())?;
                w.u8(*second_octet)?;
                w.u16(len16("traffic selector", self.buffer_len())?)?;
                w.bytes(data)
            }
        }
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficSelector::Range(r) => r.fmt(f),
            TrafficSelector::Other { ts_type, data, .. } => {
                write!(f, "{ts_type}({} bytes)", data.len())
            }
        }
    }
}

/// TSi / TSr: the sender's selectors for one side of a CHILD_SA.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficSelectors {
    /// The selectors (a u8 count on the wire).
    pub selectors: Vec<TrafficSelector>,
}

impl TrafficSelectors {
    /// A payload holding these ranges.
    pub fn new(ranges: impl IntoIterator<Item = TsRange>) -> Self {
        TrafficSelectors {
            selectors: ranges.into_iter().map(TrafficSelector::Range).collect(),
        }
    }

    /// The address ranges, skipping other selector types.
    pub fn ranges(&self) -> impl Iterator<Item = &TsRange> {
        self.selectors.iter().filter_map(|s| match s {
            TrafficSelector::Range(r) => Some(r),
            TrafficSelector::Other { .. } => None,
        })
    }
}

impl PayloadBody for TrafficSelectors {
    const PAYLOAD_TYPE: PayloadType = PayloadType::TsInitiator;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "TS payload");
        let count = r.u8()? as usize;
        r.take(3)?;
        let mut selectors = Vec::new();
        for _ in 0..count {
            selectors.push(TrafficSelector::parse(&mut r)?);
        }
        r.finish()?;
        Ok(TrafficSelectors { selectors })
    }

    fn buffer_len(&self) -> usize {
        4 + self
            .selectors
            .iter()
            .map(TrafficSelector::buffer_len)
            .sum::<usize>()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let count = u8::try_from(self.selectors.len()).map_err(|_| Error::TooMany {
            what: "traffic selectors",
            max: 255,
        })?;
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(count)?;
        w.bytes(&[0; 3])?;
        self.selectors.iter().try_for_each(|s| s.emit(&mut w))
    }
}

//! The rtnetlink messages of the datapath's policy routing (sans-IO: values in, bytes out,
//! and back): FIB rules (`RTM_NEWRULE`/`RTM_DELRULE`/`RTM_GETRULE`, `struct fib_rule_hdr` +
//! `FRA_*`), routes (`RTM_NEWROUTE`/`RTM_DELROUTE`/`RTM_GETROUTE`, `struct rtmsg` + `RTA_*`)
//! and the TUN's link settings (`RTM_NEWLINK`/`RTM_DELLINK`, `struct ifinfomsg`).
//!
//! Requests are laid out byte for byte as iproute2's `ip` lays out the command the datapath
//! used to run (the tests compare against `fixtures/rtnetlink/`, captured by its
//! `capture.sh`), so the kernel sees exactly what it saw before. The parsers read the kernel's
//! dump replies, which crash clean-up trusts only as far as their lengths go: every length is
//! checked, unknown attributes are skipped, nothing allocates from a length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xfrm::error::DecodeError;
use xfrm::netlink::{Attrs, Builder, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// `RTM_NEWLINK`.
pub(crate) const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`.
pub(crate) const RTM_DELLINK: u16 = 17;
/// `RTM_NEWROUTE`: a route (request or dump entry).
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_DELROUTE`.
pub(crate) const RTM_DELROUTE: u16 = 25;
/// `RTM_GETROUTE`.
pub(crate) const RTM_GETROUTE: u16 = 26;
/// `RTM_NEWRULE`: a FIB rule (request or dump entry).
pub const RTM_NEWRULE: u16 = 32;
/// `RTM_DELRULE`.
pub(crate) const RTM_DELRULE: u16 = 33;
/// `RTM_GETRULE`.
pub(crate) const RTM_GETRULE: u16 = 34;

const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

// include/uapi/linux/fib_rules.h
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_PROTOCOL: u16 = 21;
const FRA_IP_PROTO: u16 = 22;
const FRA_SPORT_RANGE: u16 = 23;
const FRA_DPORT_RANGE: u16 = 24;
/// `FR_ACT_TO_TBL`: look the packet up in the rule's table.
pub(crate) const FR_ACT_TO_TBL: u8 = 1;

// include/uapi/linux/rtnetlink.h
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
/// `RT_TABLE_MAIN`.
pub(crate) const RT_TABLE_MAIN: u32 = 254;
/// `RT_SCOPE_UNIVERSE`.
pub(crate) const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`: a destination reached directly on the device.
pub(crate) const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
/// `RTN_UNICAST`.
pub(crate) const RTN_UNICAST: u8 = 1;

const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = 1;

/// `sizeof(struct fib_rule_hdr)` and `sizeof(struct rtmsg)`.
const RULE_HDR_LEN: usize = 12;
const RTMSG_LEN: usize = 12;

/// Address family of a rule or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6`.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The `AF_*` number.
    pub fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    fn from_af(af: u8) -> Result<Self, DecodeError> {
        match i32::from(af) {
            libc::AF_INET => Ok(Family::V4),
            libc::AF_INET6 => Ok(Family::V6),
            _ => Err(DecodeError::Unknown {
                what: "address family",
                value: af.into(),
            }),
        }
    }

    /// A host prefix's length: 32 or 128.
    pub fn host_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// "IPv4" or "IPv6", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn addr(self, what: &'static str, b: &[u8]) -> Result<IpAddr, DecodeError> {
        match (self, b.len()) {
            (Family::V4, 4) => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            (Family::V6, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ok(IpAddr::V6(Ipv6Addr::from(a)))
            }
            (f, len) => Err(DecodeError::BadLength {
                what,
                len,
                max: if f == Family::V4 { 4 } else { 16 },
            }),
        }
    }

    fn check_len(self, what: &'static str, len: u8) -> Result<u8, DecodeError> {
        if len > self.host_len() {
            return Err(DecodeError::BadLength {
                what,
                len: len.into(),
                max: self.host_len().into(),
            });
        }
        Ok(len)
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address and prefix length (`to 10.0.0.2/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length, at most the family's host length.
    pub len: u8,
}

/// A port range (`struct fib_rule_port_range`); `sport N` is `N..=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// One port.
    pub fn one(port: u16) -> Self {
        PortRange {
            start: port,
            end: port,
        }
    }

    fn bytes(self) -> [u8; 4] {
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&self.start.to_ne_bytes());
        b[2..].copy_from_slice(&self.end.to_ne_bytes());
        b
    }
}

/// Whether a request adds or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `RTM_NEW*`: rules fail on an identical rule (`ip rule add`); routes replace
    /// (`ip route replace`).
    Add,
    /// `RTM_DEL*`.
    Delete,
}

/// A FIB (policy-routing) rule: the selectors and the action the datapath uses, and that
/// crash clean-up reads back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// IPv4 or IPv6 rule list.
    pub family: Family,
    /// `priority`; the kernel assigns one when absent.
    pub priority: Option<u32>,
    /// `from`.
    pub src: Option<Prefix>,
    /// `to`.
    pub dst: Option<Prefix>,
    /// `fwmark`.
    pub fwmark: Option<u32>,
    /// The mark's mask (the kernel reports all-ones for a bare `fwmark`).
    pub fwmask: Option<u32>,
    /// `ipproto`.
    pub ip_proto: Option<u8>,
    /// `sport`.
    pub sport: Option<PortRange>,
    /// `dport`.
    pub dport: Option<PortRange>,
    /// `lookup`.
    pub table: u32,
    /// `FR_ACT_*` (`FR_ACT_TO_TBL` for `lookup`).
    pub action: u8,
    /// `protocol`: who installed the rule.
    pub protocol: u8,
}

impl Rule {
    /// The request that adds (`ip rule add`, failing on an identical rule) or deletes the
    /// first rule matching every selector given here (`ip rule del`).
    pub fn request(&self, op: Op, seq: u32) -> Vec<u8> {
        let (kind, flags, action) = match op {
            Op::Add => (
                RTM_NEWRULE,
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
                self.action,
            ),
            Op::Delete => (RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, 0),
        };
        // Tables above 255 do not fit the header's byte: it says RT_TABLE_UNSPEC and
        // FRA_TABLE carries the number (as iproute2 does).
        let small_table = u8::try_from(self.table).ok();
        let hdr = [
            self.family.af(),
            self.dst.map_or(0, |p| p.len),
            self.src.map_or(0, |p| p.len),
            0, // tos
            small_table.unwrap_or(0),
            0,
            0,
            action,
            0,
            0,
            0,
            0, // flags
        ];
        let mut b = Builder::new(kind, flags, seq).fixed(&hdr);
        if let Some(p) = self.priority {
            b = b.attr(FRA_PRIORITY, &p.to_ne_bytes());
        }
        if let Some(src) = &self.src {
            b = b.attr(FRA_SRC, &addr_bytes(&src.addr));
        }
        if let Some(dst) = &self.dst {
            b = b.attr(FRA_DST, &addr_bytes(&dst.addr));
        }
        if let Some(m) = self.fwmark {
            b = b.attr(FRA_FWMARK, &m.to_ne_bytes());
        }
        if let Some(m) = self.fwmask {
            b = b.attr(FRA_FWMASK, &m.to_ne_bytes());
        }
        if let Some(p) = self.ip_proto {
            b = b.attr(FRA_IP_PROTO, &[p]);
        }
        if let Some(r) = self.sport {
            b = b.attr(FRA_SPORT_RANGE, &r.bytes());
        }
        if let Some(r) = self.dport {
            b = b.attr(FRA_DPORT_RANGE, &r.bytes());
        }
        if small_table.is_none() {
            b = b.attr(FRA_TABLE, &self.table.to_ne_bytes());
        }
        b.attr(FRA_PROTOCOL, &[self.protocol]).finish()
    }

    /// Parses the payload of an `RTM_NEWRULE` message (a dump entry): `fib_rule_hdr` and the
    /// attributes above; others are skipped.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let hdr = payload.get(..RULE_HDR_LEN).ok_or(DecodeError::Truncated {
            what: "fib_rule_hdr",
            need: RULE_HDR_LEN,
            got: payload.len(),
        })?;
        let family = Family::from_af(hdr[0])?;
        let dst_len = family.check_len("rule dst_len", hdr[1])?;
        let src_len = family.check_len("rule src_len", hdr[2])?;
        let mut rule = Rule {
            family,
            priority: None,
            src: None,
            dst: None,
            fwmark: None,
            fwmask: None,
            ip_proto: None,
            sport: None,
            dport: None,
            table: hdr[4].into(),
            action: hdr[7],
            protocol: 0,
        };
        for attr in Attrs::new(&payload[RULE_HDR_LEN..]) {
            let attr = attr?;
            let v = attr.value;
            match attr.kind {
                FRA_DST => {
                    rule.dst = Some(Prefix {
                        addr: family.addr("FRA_DST", v)?,
                        len: dst_len,
                    })
                }
                FRA_SRC => {
                    rule.src = Some(Prefix {
                        addr: family.addr("FRA_SRC", v)?,
                        len: src_len,
                    })
                }
                FRA_PRIORITY => rule.priority = Some(u32_value("FRA_PRIORITY", v)?),
                FRA_FWMARK => rule.fwmark = Some(u32_value("FRA_FWMARK", v)?),
                FRA_FWMASK => rule.fwmask = Some(u32_value("FRA_FWMASK", v)?),
                FRA_TABLE => rule.table = u32_value("FRA_TABLE", v)?,
                FRA_PROTOCOL => rule.protocol = u8_value("FRA_PROTOCOL", v)?,
                FRA_IP_PROTO => rule.ip_proto = Some(u8_value("FRA_IP_PROTO", v)?),
                FRA_SPORT_RANGE => rule.sport = Some(port_range("FRA_SPORT_RANGE", v)?),
                FRA_DPORT_RANGE => rule.dport = Some(port_range("FRA_DPORT_RANGE", v)?),
                _ => {}
            }
        }
        Ok(rule)
    }
}

/// A route: the datapath's `PEER/32 dev TUN src LOCAL table T proto 73`, and what a route
/// dump reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// IPv4 or IPv6.
    pub family: Family,
    /// The destination; `None` with length 0 is the default route.
    pub dst: Option<Prefix>,
    /// Output interface index (`dev`).
    pub oif: Option<u32>,
    /// Preferred source address (`src`).
    pub prefsrc: Option<IpAddr>,
    /// Routing table.
    pub table: u32,
    /// `proto`: who installed the route.
    pub protocol: u8,
    /// `RT_SCOPE_*` (iproute2 gives an IPv4 route through a device without gateway link
    /// scope, an IPv6 one universe).
    pub scope: u8,
    /// `RTN_*`.
    pub kind: u8,
}

impl Route {
    /// The request that adds or replaces (`ip route replace`) or deletes (`ip route del`,
    /// matching every field given) this route.
    pub fn request(&self, op: Op, seq: u32) -> Vec<u8> {
        let (kind, flags, scope, rtype) = match op {
            Op::Add => (
                RTM_NEWROUTE,
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE,
                self.scope,
                self.kind,
            ),
            // What `ip route del` sends: any type, and for IPv4 any scope (IPv6 routes have
            // no scope; iproute2 leaves it universe).
            Op::Delete => {
                let scope = match self.family {
                    Family::V4 => RT_SCOPE_NOWHERE,
                    Family::V6 => RT_SCOPE_UNIVERSE,
                };
                (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, scope, 0)
            }
        };
        let small_table = u8::try_from(self.table).ok();
        let hdr = [
            self.family.af(),
            self.dst.map_or(0, |p| p.len),
            0, // src_len
            0, // tos
            small_table.unwrap_or(0),
            self.protocol,
            scope,
            rtype,
            0,
            0,
            0,
            0, // flags
        ];
        let mut b = Builder::new(kind, flags, seq).fixed(&hdr);
        if let Some(dst) = &self.dst {
            b = b.attr(RTA_DST, &addr_bytes(&dst.addr));
        }
        if let Some(src) = &self.prefsrc {
            b = b.attr(RTA_PREFSRC, &addr_bytes(src));
        }
        if small_table.is_none() {
            b = b.attr(RTA_TABLE, &self.table.to_ne_bytes());
        }
        if let Some(oif) = self.oif {
            b = b.attr(RTA_OIF, &oif.to_ne_bytes());
        }
        b.finish()
    }

    /// Parses the payload of an `RTM_NEWROUTE` message (a dump entry): `rtmsg` and the
    /// attributes above; others (gateways, metrics, multipath …) are skipped.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let hdr = payload.get(..RTMSG_LEN).ok_or(DecodeError::Truncated {
            what: "rtmsg",
            need: RTMSG_LEN,
            got: payload.len(),
        })?;
        let family = Family::from_af(hdr[0])?;
        let dst_len = family.check_len("route dst_len", hdr[1])?;
        let mut route = Route {
            family,
            dst: None,
            oif: None,
            prefsrc: None,
            table: hdr[4].into(),
            protocol: hdr[5],
            scope: hdr[6],
            kind: hdr[7],
        };
        for attr in Attrs::new(&payload[RTMSG_LEN..]) {
            let attr = attr?;
            let v = attr.value;
            match attr.kind {
                RTA_DST => {
                    route.dst = Some(Prefix {
                        addr: family.addr("RTA_DST", v)?,
                        len: dst_len,
                    })
                }
                RTA_OIF => route.oif = Some(u32_value("RTA_OIF", v)?),
                RTA_PREFSRC => route.prefsrc = Some(family.addr("RTA_PREFSRC", v)?),
                RTA_TABLE => route.table = u32_value("RTA_TABLE", v)?,
                _ => {}
            }
        }
        Ok(route)
    }
}

/// `ip link set dev INDEX mtu MTU up`.
pub(crate) fn link_up(index: u32, mtu: u32, seq: u32) -> Vec<u8> {
    Builder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
        .fixed(&ifinfomsg(index, IFF_UP, IFF_UP))
        .attr(IFLA_MTU, &mtu.to_ne_bytes())
        .finish()
}

/// `ip link del dev INDEX`.
pub(crate) fn link_delete(index: u32, seq: u32) -> Vec<u8> {
    Builder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
        .fixed(&ifinfomsg(index, 0, 0))
        .finish()
}

/// `struct ifinfomsg`: family AF_UNSPEC, type 0, the index, flags and the change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// A dump of every rule of `family` (the entries are `RTM_NEWRULE`).
pub(crate) fn rule_dump(family: Family, seq: u32) -> Vec<u8> {
    let mut hdr = [0u8; RULE_HDR_LEN];
    hdr[0] = family.af();
    Builder::new(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq)
        .fixed(&hdr)
        .finish()
}

/// A dump of every route of `family` in every table (the entries are `RTM_NEWROUTE`).
pub(crate) fn route_dump(family: Family, seq: u32) -> Vec<u8> {
    let mut hdr = [0u8; RTMSG_LEN];
    hdr[0] = family.af();
    Builder::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq)
        .fixed(&hdr)
        .finish()
}

fn u32_value(what: &'static str, v: &[u8]) -> Result<u32, DecodeError> {
    match v {
        [a, b, c, d] => Ok(u32::from_ne_bytes([*a, *b, *c, *d])),
        _ => Err(DecodeError::BadLength {
            what,
            len: v.len(),
            max: 4,
        }),
    }
}

fn u8_value(what: &'static str, v: &[u8]) -> Result<u8, DecodeError> {
    match v {
        [a] => Ok(*a),
        _ => Err(DecodeError::BadLength {
            what,
            len: v.len(),
            max: 1,
        }),
    }
}

fn port_range(what: &'static str, v: &[u8]) -> Result<PortRange, DecodeError> {
    match v {
        [a, b, c, d] => Ok(PortRange {
            start: u16::from_ne_bytes([*a, *b]),
            end: u16::from_ne_bytes([*c, *d]),
        }),
        _ => Err(DecodeError::BadLength {
            what,
            len: v.len(),
            max: 4,
        }),
    }
}

/// Test support: the byte fixtures in `fixtures/rtnetlink/`.
#[cfg(test)]
pub(crate) mod fixtures {
    /// Decodes `fixtures/rtnetlink/NAME.hex` (captured by `capture.sh` there).
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/fixtures/rtnetlink/{name}.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let text = text.trim();
        assert!(!text.is_empty() && text.len() % 2 == 0, "{path}: bad hex");
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Byte-identical to iproute2's request except the sequence number and port id, which
    /// `ip` takes from the clock and the kernel.
    pub(crate) fn same_as_ip(ours: &[u8], name: &str) {
        let theirs = fixture(name);
        let mask = |b: &[u8]| {
            let mut b = b.to_vec();
            if b.len() >= 16 {
                b[8..16].fill(0);
            }
            b
        };
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&mask(ours)),
            hex(&mask(&theirs)),
            "{name}: ours (left) differs from ip's (right)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{fixture, same_as_ip};
    use super::*;
    use xfrm::netlink::Messages;

    const TUN_INDEX: u32 = 2;
    const TABLE: u32 = 485;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mark_rule(family: Family) -> Rule {
        Rule {
            family,
            priority: Some(10500),
            src: None,
            dst: None,
            fwmark: Some(0x1e5),
            fwmask: None,
            ip_proto: None,
            sport: None,
            dport: None,
            table: RT_TABLE_MAIN,
            action: FR_ACT_TO_TBL,
            protocol: 73,
        }
    }

    fn peer_rule(peer: &str, ip_proto: Option<u8>, sport: Option<u16>, dport: Option<u16>) -> Rule {
        let addr = v4(peer);
        let family = Family::of(addr);
        Rule {
            family,
            priority: Some(10501),
            dst: Some(Prefix {
                addr,
                len: family.host_len(),
            }),
            fwmark: None,
            ip_proto,
            sport: sport.map(PortRange::one),
            dport: dport.map(PortRange::one),
            table: TABLE,
            ..mark_rule(family)
        }
    }

    fn peer_route(peer: &str, src: &str) -> Route {
        let addr = v4(peer);
        let family = Family::of(addr);
        Route {
            family,
            dst: Some(Prefix {
                addr,
                len: family.host_len(),
            }),
            oif: Some(TUN_INDEX),
            prefsrc: Some(v4(src)),
            table: TABLE,
            protocol: 73,
            scope: if family == Family::V4 {
                RT_SCOPE_LINK
            } else {
                RT_SCOPE_UNIVERSE
            },
            kind: RTN_UNICAST,
        }
    }

    #[test]
    fn link_requests_match_iproute2() {
        same_as_ip(&link_up(TUN_INDEX, 1400, 7), "link_up");
        same_as_ip(&link_delete(TUN_INDEX, 7), "link_del");
    }

    #[test]
    fn rule_requests_match_iproute2() {
        same_as_ip(&mark_rule(Family::V4).request(Op::Add, 1), "rule_mark4");
        same_as_ip(&mark_rule(Family::V6).request(Op::Add, 1), "rule_mark6");
        same_as_ip(
            &mark_rule(Family::V4).request(Op::Delete, 1),
            "rule_del_mark4",
        );
        let all = peer_rule("10.0.0.2", None, None, None);
        same_as_ip(&all.request(Op::Add, 1), "rule_peer4");
        same_as_ip(&all.request(Op::Delete, 1), "rule_del_peer4");
        let nfs = peer_rule("10.0.0.2", Some(6), None, Some(2049));
        same_as_ip(&nfs.request(Op::Add, 1), "rule_peer4_tcp");
        let rpc = peer_rule("10.0.0.2", Some(17), Some(111), None);
        same_as_ip(&rpc.request(Op::Add, 1), "rule_peer4_udp");
        let nfs6 = peer_rule("fd00::2", Some(6), None, Some(2049));
        same_as_ip(&nfs6.request(Op::Add, 1), "rule_peer6_tcp");
        same_as_ip(&nfs6.request(Op::Delete, 1), "rule_del_peer6_tcp");
    }

    #[test]
    fn route_requests_match_iproute2() {
        let r4 = peer_route("10.0.0.2", "10.0.0.1");
        same_as_ip(&r4.request(Op::Add, 1), "route_peer4");
        same_as_ip(&r4.request(Op::Delete, 1), "route_del_peer4");
        let r6 = peer_route("fd00::2", "fd00::1");
        same_as_ip(&r6.request(Op::Add, 1), "route_peer6");
        same_as_ip(&r6.request(Op::Delete, 1), "route_del_peer6");
    }

    fn entries(name: &str, kind: u16) -> Vec<Vec<u8>> {
        let bytes = fixture(name);
        Messages::new(&bytes)
            .map(Result::unwrap)
            .filter(|m| m.header.kind == kind)
            .map(|m| m.payload.to_vec())
            .collect()
    }

    #[test]
    fn kernel_rule_dumps_parse() {
        // The capture's namespace held the kernel's defaults, our mark rule, our peer rules
        // (all traffic, NFS, RPC) and a foreign rule at our priority.
        let rules: Vec<Rule> = entries("reply_rule_dump4", RTM_NEWRULE)
            .iter()
            .map(|p| Rule::parse(p).unwrap())
            .collect();
        let local = &rules[0];
        assert_eq!(
            (local.priority, local.table, local.protocol),
            (None, 255, 2),
            "the kernel's local rule (priority 0 is not reported)"
        );
        let mark = Rule {
            fwmask: Some(0xffff_ffff),
            ..mark_rule(Family::V4)
        };
        assert_eq!(rules[1], mark);
        assert!(rules.contains(&peer_rule("10.0.0.2", None, None, None)));
        assert!(rules.contains(&peer_rule("10.0.0.2", Some(6), None, Some(2049))));
        assert!(rules.contains(&peer_rule("10.0.0.2", Some(17), Some(111), None)));
        let foreign: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.priority == Some(10501) && r.protocol != 73)
            .collect();
        assert_eq!(foreign.len(), 1);
        assert_eq!(
            foreign[0].dst,
            Some(Prefix {
                addr: v4("10.0.0.77"),
                len: 32
            })
        );
        assert_eq!(foreign[0].table, RT_TABLE_MAIN);

        let rules6: Vec<Rule> = entries("reply_rule_dump6", RTM_NEWRULE)
            .iter()
            .map(|p| Rule::parse(p).unwrap())
            .collect();
        assert!(rules6.contains(&Rule {
            fwmask: Some(0xffff_ffff),
            ..mark_rule(Family::V6)
        }));
        assert!(rules6.contains(&peer_rule("fd00::2", Some(6), None, Some(2049))));
    }

    #[test]
    fn kernel_route_dump_parses() {
        let routes: Vec<Route> = entries("reply_route_dump4", RTM_NEWROUTE)
            .iter()
            .map(|p| Route::parse(p).unwrap())
            .collect();
        assert_eq!(routes, [peer_route("10.0.0.2", "10.0.0.1")]);
    }

    #[test]
    fn requests_parse_back() {
        let rules = [
            mark_rule(Family::V4),
            mark_rule(Family::V6),
            peer_rule("10.0.0.2", Some(17), Some(111), Some(2049)),
            Rule {
                src: Some(Prefix {
                    addr: v4("fd00::9"),
                    len: 64,
                }),
                fwmask: Some(0xff),
                table: 7,
                ..peer_rule("fd00::2", Some(6), None, None)
            },
        ];
        for rule in rules {
            let msg = rule.request(Op::Add, 3);
            let m = Messages::new(&msg).next().unwrap().unwrap();
            assert_eq!(Rule::parse(m.payload).unwrap(), rule);
        }
        for route in [
            peer_route("10.0.0.2", "10.0.0.1"),
            peer_route("fd00::2", "fd00::1"),
            Route {
                dst: None,
                oif: None,
                prefsrc: None,
                table: 100,
                ..peer_route("10.0.0.2", "10.0.0.1")
            },
        ] {
            let msg = route.request(Op::Add, 3);
            let m = Messages::new(&msg).next().unwrap().unwrap();
            assert_eq!(Route::parse(m.payload).unwrap(), route);
        }
    }

    #[test]
    fn malformed_entries_are_typed_errors() {
        let good = entries("reply_rule_dump6", RTM_NEWRULE);
        for p in &good {
            // Every truncation either parses (cut at an attribute boundary) or fails typed.
            for cut in 0..p.len() {
                let _ = Rule::parse(&p[..cut]);
                let _ = Route::parse(&p[..cut]);
            }
        }
        assert!(matches!(
            Rule::parse(&[0; 4]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut bad_family = good[0].clone();
        bad_family[0] = 7;
        assert!(matches!(
            Rule::parse(&bad_family),
            Err(DecodeError::Unknown { value: 7, .. })
        ));
        let mut long_prefix = good[0].clone();
        long_prefix[1] = 129;
        assert!(matches!(
            Rule::parse(&long_prefix),
            Err(DecodeError::BadLength { len: 129, .. })
        ));
        // An IPv4 header with an IPv6 FRA_DST.
        let mut wrong_addr = peer_rule("fd00::2", None, None, None).request(Op::Add, 1);
        wrong_addr[16] = libc::AF_INET as u8;
        wrong_addr[17] = 32;
        assert!(matches!(
            Rule::parse(&wrong_addr[16..]),
            Err(DecodeError::BadLength {
                what: "FRA_DST",
                ..
            })
        ));
        // FRA_PRIORITY with 2 bytes; an attribute longer than the message.
        let short = [2u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 6, 0, 6, 0, 1, 2, 0, 0];
        assert!(matches!(
            Rule::parse(&short),
            Err(DecodeError::BadLength {
                what: "FRA_PRIORITY",
                ..
            })
        ));
        let past = [
            2u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 64, 0, 6, 0, 1, 2, 3, 4,
        ];
        assert!(matches!(
            Rule::parse(&past),
            Err(DecodeError::BadLength {
                what: "nla_len",
                ..
            })
        ));
        let route = peer_route("10.0.0.2", "10.0.0.1").request(Op::Add, 1);
        let mut oif = route[16..].to_vec();
        let n = oif.len();
        oif[n - 8] = 5; // RTA_OIF's length 8 → 5
        assert!(matches!(
            Route::parse(&oif),
            Err(DecodeError::BadLength {
                what: "RTA_OIF",
                ..
            })
        ));
    }
}

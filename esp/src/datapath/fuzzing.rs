//! The datapath's pure packet functions, reachable from the cargo-fuzz targets in `fuzz/`
//! (issue 9): the header parser used on TUN reads and on decrypted inner packets, the
//! virtio-net header, checksum completion, TSO segmentation, GRO coalescing and the raw
//! ESP socket read; and the rtnetlink codec crash clean-up reads kernel dumps with
//! ([`Rule::parse`], [`Route::parse`]). Thin wrappers with public types; not an API for
//! anything else.

use std::net::IpAddr;
use std::ops::Range;

use super::ip_header::{ports, IpHeader};
use super::offload::{self, Tcp4Super, TcpCoalescer, VnetHdr};
pub use super::rtnetlink::{Family, Op, PortRange, Prefix, Route, Rule, RTM_NEWROUTE, RTM_NEWRULE};

/// What [`parse_ip`] found (the datapath's `IpHeader`, plus the selector ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFacts {
    /// Up to the transport header.
    pub header_len: usize,
    /// The packet's length as its header says.
    pub total_len: usize,
    /// The transport protocol.
    pub protocol: u8,
    /// An IPv4 fragment.
    pub fragment: bool,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The bytes selectors look at (`transport()`), as a range of the packet.
    pub transport: Range<usize>,
    /// Ports for TCP/UDP/SCTP/UDP-Lite, from those bytes.
    pub ports: Option<(u16, u16)>,
    /// The ESP next header for tunnel mode.
    pub tunnel_next_header: u8,
}

/// Parses a packet as the datapath does (TUN reads, decrypted inner packets).
pub fn parse_ip(p: &[u8]) -> Option<IpFacts> {
    let h = IpHeader::parse(p)?;
    let t = h.transport(p);
    // Where `transport()` points into the packet (a fragment gets an empty slice of its own).
    let start = if h.fragment {
        0
    } else {
        (t.as_ptr() as usize).wrapping_sub(p.as_ptr() as usize)
    };
    Some(IpFacts {
        header_len: h.header_len,
        total_len: h.total_len,
        protocol: h.protocol,
        fragment: h.fragment,
        src: h.src,
        dst: h.dst,
        transport: start..start + t.len(),
        ports: ports(h.protocol, t),
        tunnel_next_header: h.tunnel_next_header(),
    })
}

/// The virtio-net header fields a TUN read starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetFacts {
    /// `flags`.
    pub flags: u8,
    /// `gso_type`.
    pub gso_type: u8,
    /// `gso_size` (the MSS).
    pub gso_size: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
    /// A TCPv4 segmentation request.
    pub tcp4_gso: bool,
    /// A partial checksum to complete.
    pub needs_csum: bool,
}

/// Parses the virtio-net header at the start of `b`.
pub fn parse_vnet(b: &[u8]) -> Option<VnetFacts> {
    let h = VnetHdr::parse(b)?;
    Some(VnetFacts {
        flags: h.flags,
        gso_type: h.gso_type,
        gso_size: h.gso_size,
        csum_start: h.csum_start,
        csum_offset: h.csum_offset,
        tcp4_gso: h.is_tcp4_gso(),
        needs_csum: h.needs_csum(),
    })
}

/// Completes a partial checksum in `packet` as described by the virtio header `vnet`.
pub fn complete_checksum(packet: &mut [u8], vnet: &[u8]) -> Option<bool> {
    Some(offload::complete_checksum(packet, &VnetHdr::parse(vnet)?))
}

/// TSO: the segments of a TCP/IPv4 super-packet with this MSS — TCP segments (transport
/// mode) or whole IPv4 packets (`whole`, tunnel mode) — or `None` where the datapath
/// refuses the packet. Also the bounds it promised (max segment len, max packet len) and
/// whether a segment one past the last was refused, as it must be.
#[allow(clippy::type_complexity)]
pub fn segment_tcp4(
    packet: &[u8],
    mss: u16,
    whole: bool,
) -> Option<(Vec<Vec<u8>>, usize, usize, bool)> {
    let s = Tcp4Super::new(packet, mss)?;
    let mut out = vec![0u8; s.max_packet_len()];
    let mut segs = Vec::with_capacity(s.segments());
    for i in 0..s.segments() {
        let n = if whole {
            s.write_packet(packet, i, &mut out)?
        } else {
            s.write_segment(packet, i, &mut out)?
        };
        segs.push(out[..n].to_vec());
    }
    // One past the last segment is refused, not written.
    let past = if whole {
        s.write_packet(packet, s.segments(), &mut out)
    } else {
        s.write_segment(packet, s.segments(), &mut out)
    };
    Some((
        segs,
        s.max_segment_len(),
        s.max_packet_len(),
        past.is_none(),
    ))
}

/// GRO: offers TCP segments (header + data, with their IPv4 source and destination) to one
/// coalescer as the inbound thread does — a refused one flushes what is held — and flushes
/// at the end. Returns whether each was taken, and the packets written to the TUN (virtio
/// header ‖ IPv4 ‖ TCP ‖ data).
pub fn coalesce(segments: &[(&[u8], [u8; 4], [u8; 4])]) -> (Vec<bool>, Vec<Vec<u8>>) {
    let mut c = TcpCoalescer::new();
    let mut written = Vec::new();
    let mut taken = Vec::with_capacity(segments.len());
    for (seg, src, dst) in segments {
        let mut write = |p: &[u8]| written.push(p.to_vec());
        let ok = c.add(seg, *src, *dst, &mut write);
        if !ok {
            c.flush(&mut write);
        }
        taken.push(ok);
    }
    c.flush(&mut |p: &[u8]| written.push(p.to_vec()));
    (taken, written)
}

/// Where a raw socket read holds the ESP packet, and its sender.
pub fn raw_esp(data: &[u8], v6: bool, from: Option<IpAddr>) -> Option<(Range<usize>, IpAddr)> {
    super::inbound::raw_esp(data, v6, from)
}

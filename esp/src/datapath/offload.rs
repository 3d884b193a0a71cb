//! TUN offloads: the virtio-net header in front of every TUN packet, TCP segmentation of the
//! large (TSO) packets the kernel hands us, and completion of partial checksums.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD(TSO4 | CSUM)` the local stack skips segmentation and
//! checksumming for the TUN and passes up to 64 KiB of one TCP flow in one read; segmenting
//! here, right before sealing, saves a TUN read and a trip through the stack per segment.
//! wireguard-go's TUN offload is the model.

use crate::ip::ones_complement_sum;

/// `struct virtio_net_hdr` (10 bytes, native byte order: the TUN is not in virtio-LE mode).
pub(crate) const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum.
const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the receiver may skip transport checksum verification.
const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit in `gso_type`.
const GSO_ECN: u8 = 0x80;

/// The fields of the virtio-net header we use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
}

impl VnetHdr {
    pub(crate) fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header for a packet we deliver whose transport checksum is intact. TUN ignores
    /// `DATA_VALID` (only `NEEDS_CSUM` reaches the skb), so the stack still verifies it; see
    /// [`VnetHdr::emit_partial_checksum`] where it may not match.
    pub(crate) fn emit_data_valid(b: &mut [u8]) {
        if let Some(h) = b.get_mut(..VNET_HDR_LEN) {
            h.fill(0);
            h[0] = F_DATA_VALID;
        }
    }

    /// The header for a transport-mode TCP or UDP packet we deliver from a peer behind a NAT
    /// (or to us behind one): the sender computed its checksum over addresses the NAT
    /// rewrote, so it cannot match the header we rebuilt (RFC 3948 §3.1.2). TUN ignores
    /// `DATA_VALID`, but takes `NEEDS_CSUM` as "the checksum is the sender's business" on
    /// local delivery; ESP's ICV already authenticated the segment. `packet` is the IP
    /// packet after `vnet`, with the header we wrote; its checksum field gets the partial
    /// sum of that header's pseudo-header, as `NEEDS_CSUM` requires. Anything else (other
    /// protocols, a transport header that does not fit) is marked `DATA_VALID` as before.
    pub(crate) fn emit_partial_checksum(vnet: &mut [u8], packet: &mut [u8]) {
        let Some(h) = vnet.get_mut(..VNET_HDR_LEN) else {
            return;
        };
        h.fill(0);
        h[0] = F_DATA_VALID;
        let (start, protocol, addrs) = match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => (usize::from(packet[0] & 0x0f) * 4, packet[9], 12..20),
            Some(6) if packet.len() >= 40 => (40, packet[6], 8..40),
            _ => return,
        };
        let offset = match protocol {
            6 => 16,
            17 => 6,
            _ => return,
        };
        let field = start + offset;
        if start < 20 || field + 2 > packet.len() {
            return;
        }
        let Ok(len) = u32::try_from(packet.len() - start) else {
            return;
        };
        let pseudo = ones_complement_sum(&packet[addrs], u32::from(protocol) + len);
        packet[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        h[0] = F_NEEDS_CSUM;
        h[6..8].copy_from_slice(&(start as u16).to_ne_bytes());
        h[8..10].copy_from_slice(&(offset as u16).to_ne_bytes());
    }

    /// Whether this is a TCP/IPv4 segmentation request.
    pub(crate) fn is_tcp4_gso(&self) -> bool {
        self.gso_type & !GSO_ECN == GSO_TCPV4 && self.gso_size > 0
    }

    pub(crate) fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Completes a partial checksum in `packet` (the IP packet after the virtio header): the
/// field holds the pseudo-header sum; add everything from `csum_start` on. Returns false if
/// the offsets do not fit the packet.
pub(crate) fn complete_checksum(packet: &mut [u8], h: &VnetHdr) -> bool {
    let start = usize::from(h.csum_start);
    let field = start + usize::from(h.csum_offset);
    if field + 2 > packet.len() || start > packet.len() {
        return false;
    }
    let c = !ones_complement_sum(&packet[start..], 0);
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The parts of a TCP/IPv4 super-packet that segmentation needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tcp4Super {
    ip_len: usize,
    tcp_len: usize,
    total: usize,
    mss: usize,
    seq: u32,
    pseudo: u32,
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

impl Tcp4Super {
    /// Checks `packet` (an IPv4/TCP packet) and records its layout; `mss` is the segment
    /// payload size from the virtio header.
    pub(crate) fn new(packet: &[u8], mss: u16) -> Option<Tcp4Super> {
        let ip_len = usize::from(*packet.first()? & 0x0f) * 4;
        if packet.len() < ip_len + 20 || ip_len < 20 || packet[9] != 6 || mss == 0 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
        let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
        if tcp_len < 20 || ip_len + tcp_len > total {
            return None;
        }
        let t = &packet[ip_len..];
        let mut pseudo = 6u32;
        for w in packet[12..20].chunks_exact(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        Some(Tcp4Super {
            ip_len,
            tcp_len,
            total,
            mss: usize::from(mss),
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            pseudo,
        })
    }

    fn payload_len(&self) -> usize {
        self.total - self.ip_len - self.tcp_len
    }

    /// Number of segments.
    pub(crate) fn segments(&self) -> usize {
        self.payload_len().div_ceil(self.mss).max(1)
    }

    /// The largest transport payload (TCP header + data) of one segment.
    pub(crate) fn max_segment_len(&self) -> usize {
        self.tcp_len + self.mss
    }

    /// The largest whole IP packet of one segment (tunnel mode).
    pub(crate) fn max_packet_len(&self) -> usize {
        self.ip_len + self.max_segment_len()
    }

    /// Writes segment `i` as a whole IPv4 packet — the original header with its length,
    /// identification and checksum fixed, then what [`write_segment`](Self::write_segment)
    /// writes — into `out`; returns its length. Tunnel mode seals these.
    pub(crate) fn write_packet(&self, packet: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
        let seg_len = self.write_segment(packet, i, out.get_mut(self.ip_len..)?)?;
        let total = u16::try_from(self.ip_len + seg_len).ok()?;
        let h = &mut out[..self.ip_len];
        h.copy_from_slice(&packet[..self.ip_len]);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        // Each segment is its own datagram (as the kernel's GSO numbers them).
        let id = u16::from_be_bytes([packet[4], packet[5]]).wrapping_add(i as u16);
        h[4..6].copy_from_slice(&id.to_be_bytes());
        crate::ip::set_ipv4_checksum(h);
        Some(usize::from(total))
    }

    /// Writes segment `i` — TCP header and data, with sequence number, flags and checksum
    /// fixed — into `out`; returns its length, or `None` if `i` or `out` is out of range.
    pub(crate) fn write_segment(&self, packet: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
        let off = i.checked_mul(self.mss)?;
        let payload = self.payload_len();
        if i >= self.segments() {
            return None;
        }
        let len = self.mss.min(payload - off);
        let seg_len = self.tcp_len + len;
        let out = out.get_mut(..seg_len)?;
        let tcp = &packet[self.ip_len..self.total];
        out[..self.tcp_len].copy_from_slice(&tcp[..self.tcp_len]);
        out[self.tcp_len..].copy_from_slice(&tcp[self.tcp_len + off..self.tcp_len + off + len]);
        let seq = self.seq.wrapping_add(off as u32);
        out[4..8].copy_from_slice(&seq.to_be_bytes());
        // FIN and PSH belong to the last segment, CWR to the first (as the kernel's own
        // tcp_gso_segment does).
        if i + 1 < self.segments() {
            out[13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            out[13] &= !TCP_CWR;
        }
        out[16] = 0;
        out[17] = 0;
        let c = !ones_complement_sum(out, self.pseudo + seg_len as u32);
        out[16..18].copy_from_slice(&c.to_be_bytes());
        Some(seg_len)
    }
}

/// Coalesces consecutive in-order TCP segments of one flow, as opened from one UDP GRO
/// read, into a single TSO packet for the TUN — the receive-side mirror of segmentation, so
/// the local stack handles one large packet instead of dozens (Linux's own `tcp_gro_receive`
/// rules: same ports, ACK number, window and options, contiguous sequence numbers, only the
/// last segment shorter or carrying PSH).
pub(crate) struct TcpCoalescer {
    /// virtio header ‖ IPv4 header ‖ TCP header ‖ payloads.
    buf: Vec<u8>,
    /// Bytes used in `buf` (0: empty).
    len: usize,
    segments: usize,
    mss: usize,
    tcp_len: usize,
    next_seq: u32,
    closed: bool,
}

const IP_OFF: usize = VNET_HDR_LEN;
const TCP_OFF: usize = VNET_HDR_LEN + 20;
const TCP_ACK: u8 = 0x10;
const MAX_IP_PACKET: usize = 65535;

impl TcpCoalescer {
    pub(crate) fn new() -> Self {
        TcpCoalescer {
            buf: vec![0u8; VNET_HDR_LEN + MAX_IP_PACKET],
            len: 0,
            segments: 0,
            mss: 0,
            tcp_len: 0,
            next_seq: 0,
            closed: false,
        }
    }

    /// Offers a TCP segment (header + data) from `src` to `dst`. Returns false if it cannot
    /// be coalesced at all (the caller flushes and delivers it alone); otherwise it was
    /// appended, or what was held was flushed through `write` and it starts a new packet.
    pub(crate) fn add(
        &mut self,
        seg: &[u8],
        src: [u8; 4],
        dst: [u8; 4],
        write: &mut impl FnMut(&[u8]),
    ) -> bool {
        if seg.len() < 20 {
            return false;
        }
        let tcp_len = usize::from(seg[12] >> 4) * 4;
        let flags = seg[13];
        if tcp_len < 20 || seg.len() <= tcp_len || flags & !(TCP_PSH) != TCP_ACK {
            return false;
        }
        let payload = seg.len() - tcp_len;
        let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
        if self.len > 0 && !self.fits(seg, tcp_len, payload, seq, src, dst) {
            self.flush(write);
        }
        if self.len == 0 {
            if TCP_OFF + seg.len() > self.buf.len() {
                return false;
            }
            self.buf[IP_OFF] = 0x45;
            self.buf[IP_OFF + 1] = 0;
            self.buf[IP_OFF + 4..IP_OFF + 9].copy_from_slice(&[0, 0, 0x40, 0, 64]);
            self.buf[IP_OFF + 9] = 6;
            self.buf[IP_OFF + 12..IP_OFF + 16].copy_from_slice(&src);
            self.buf[IP_OFF + 16..IP_OFF + 20].copy_from_slice(&dst);
            self.buf[TCP_OFF..TCP_OFF + seg.len()].copy_from_slice(seg);
            self.len = TCP_OFF + seg.len();
            self.segments = 1;
            self.mss = payload;
            self.tcp_len = tcp_len;
            self.closed = flags & TCP_PSH != 0;
        } else {
            self.buf[self.len..self.len + payload].copy_from_slice(&seg[tcp_len..]);
            self.len += payload;
            self.segments += 1;
            // A short segment or PSH ends the run; so does the flags byte of the last one.
            self.buf[TCP_OFF + 13] |= flags & TCP_PSH;
            self.closed = payload < self.mss || flags & TCP_PSH != 0;
        }
        self.next_seq = seq.wrapping_add(payload as u32);
        true
    }

    fn fits(
        &self,
        seg: &[u8],
        tcp_len: usize,
        payload: usize,
        seq: u32,
        src: [u8; 4],
        dst: [u8; 4],
    ) -> bool {
        let held = &self.buf[TCP_OFF..TCP_OFF + self.tcp_len];
        !self.closed
            // Several peers share one coalescer.
            && self.buf[IP_OFF + 12..IP_OFF + 16] == src
            && self.buf[IP_OFF + 16..IP_OFF + 20] == dst
            && tcp_len == self.tcp_len
            && seq == self.next_seq
            && payload <= self.mss
            && self.len + payload <= self.buf.len()
            // Ports.
            && seg[..4] == held[..4]
            // ACK number and window.
            && seg[8..12] == held[8..12]
            && seg[14..16] == held[14..16]
            && seg[20..tcp_len] == held[20..tcp_len]
    }

    /// Writes what is held (if anything) through `write` and empties the coalescer.
    pub(crate) fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        if self.len == 0 {
            return;
        }
        let total = self.len - IP_OFF;
        let tcp_total = total - 20;
        self.buf[IP_OFF + 2..IP_OFF + 4].copy_from_slice(&(total as u16).to_be_bytes());
        crate::ip::set_ipv4_checksum(&mut self.buf[IP_OFF..TCP_OFF]);
        // NEEDS_CSUM with the pseudo-header sum of the addresses written above tells the
        // stack the checksum is the sender's business, which ESP's ICV already vouched for;
        // the stack resegments nothing on local delivery. Even a single segment is marked so:
        // TUN ignores DATA_VALID and would verify the sender's checksum, which covers the
        // sender's addresses before any NAT (RFC 3948 §3.1.2), not necessarily these.
        let h = &mut self.buf[..VNET_HDR_LEN];
        h.fill(0);
        h[0] = F_NEEDS_CSUM;
        if self.segments > 1 {
            h[1] = GSO_TCPV4;
            h[2..4].copy_from_slice(&((20 + self.tcp_len) as u16).to_ne_bytes());
            h[4..6].copy_from_slice(&(self.mss as u16).to_ne_bytes());
        }
        h[6..8].copy_from_slice(&20u16.to_ne_bytes());
        h[8..10].copy_from_slice(&16u16.to_ne_bytes());
        let mut pseudo = 6u32 + tcp_total as u32;
        for w in self.buf[IP_OFF + 12..IP_OFF + 20].chunks_exact(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        let folded = ones_complement_sum(&[], pseudo);
        self.buf[TCP_OFF + 16..TCP_OFF + 18].copy_from_slice(&folded.to_be_bytes());
        write(&self.buf[..self.len]);
        self.len = 0;
        self.segments = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::write_ipv4_header;
    use core::net::Ipv4Addr;

    fn tcp_packet(data_len: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 32 + data_len];
        write_ipv4_header(
            &mut p,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            32 + data_len,
        )
        .unwrap();
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&2049u16.to_be_bytes());
        t[4..8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        t[12] = 8 << 4; // 32-byte header (timestamps)
        t[13] = flags;
        for (i, b) in t[32..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn tcp_checksum_ok(src: [u8; 4], dst: [u8; 4], seg: &[u8]) -> bool {
        let mut pseudo = 6u32 + seg.len() as u32;
        for w in src.chunks(2).chain(dst.chunks(2)) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        ones_complement_sum(seg, pseudo) == 0xffff
    }

    #[test]
    fn segments_reassemble_to_the_original_stream() {
        let p = tcp_packet(5000, TCP_PSH | TCP_FIN | TCP_CWR | 0x10);
        let s = Tcp4Super::new(&p, 1348).unwrap();
        assert_eq!(s.segments(), 4);
        let mut stream = Vec::new();
        let mut out = vec![0u8; 2000];
        for i in 0..s.segments() {
            let n = s.write_segment(&p, i, &mut out).unwrap();
            let seg = &out[..n];
            assert!(
                tcp_checksum_ok([10, 0, 0, 1], [10, 0, 0, 2], seg),
                "segment {i}"
            );
            let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
            assert_eq!(seq, 0xffff_ff00u32.wrapping_add((i * 1348) as u32));
            let last = i == 3;
            assert_eq!(seg[13] & TCP_FIN != 0, last);
            assert_eq!(seg[13] & TCP_PSH != 0, last);
            assert_eq!(seg[13] & TCP_CWR != 0, i == 0);
            assert_eq!(seg[13] & 0x10, 0x10, "ACK kept");
            assert_eq!(n, 32 + if last { 5000 - 3 * 1348 } else { 1348 });
            stream.extend_from_slice(&seg[32..]);
        }
        assert_eq!(&stream[..], &p[52..]);
        assert!(s.write_segment(&p, 4, &mut out).is_none());
        assert!(s.write_segment(&p, 0, &mut out[..100]).is_none());
    }

    /// Tunnel mode seals whole packets: each segment gets the original header with its own
    /// length, identification and a valid checksum.
    #[test]
    fn segments_as_whole_packets_for_tunnel_mode() {
        let mut p = tcp_packet(3000, 0x10);
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        crate::ip::set_ipv4_checksum(&mut p[..20]);
        let s = Tcp4Super::new(&p, 1348).unwrap();
        assert_eq!(s.max_packet_len(), 20 + 32 + 1348);
        let mut out = vec![0u8; 2000];
        let mut stream = Vec::new();
        for i in 0..s.segments() {
            let n = s.write_packet(&p, i, &mut out).unwrap();
            let pkt = &out[..n];
            let layout = crate::ip::IpLayout::parse(pkt).unwrap();
            assert_eq!(layout.total_len, n);
            assert_eq!(
                ones_complement_sum(&pkt[..20], 0),
                0xffff,
                "header checksum"
            );
            assert_eq!(&pkt[12..20], &p[12..20]);
            let id = u16::from_be_bytes([pkt[4], pkt[5]]);
            assert_eq!(id, 0xfffeu16.wrapping_add(i as u16));
            assert!(tcp_checksum_ok([10, 0, 0, 1], [10, 0, 0, 2], &pkt[20..]));
            stream.extend_from_slice(&pkt[52..]);
        }
        assert_eq!(&stream[..], &p[52..]);
        assert!(s.write_packet(&p, 0, &mut out[..30]).is_none());
    }

    #[test]
    fn header_only_packet_is_one_segment() {
        let p = tcp_packet(0, 0x10);
        let s = Tcp4Super::new(&p, 1000).unwrap();
        assert_eq!(s.segments(), 1);
        let mut out = [0u8; 64];
        assert_eq!(s.write_segment(&p, 0, &mut out), Some(32));
        assert!(tcp_checksum_ok([10, 0, 0, 1], [10, 0, 0, 2], &out[..32]));
    }

    #[test]
    fn malformed_super_packets_are_refused() {
        let p = tcp_packet(100, 0);
        assert!(Tcp4Super::new(&p[..30], 10).is_none());
        assert!(Tcp4Super::new(&p, 0).is_none());
        let mut q = p.clone();
        q[9] = 17;
        assert!(Tcp4Super::new(&q, 10).is_none());
        let mut q = p.clone();
        q[32] = 15 << 4; // TCP header longer than the packet
        assert!(Tcp4Super::new(&q[..60], 10).is_none());
    }

    #[test]
    fn partial_checksum_completion() {
        let mut p = tcp_packet(300, 0x18);
        // What the kernel leaves with CHECKSUM_PARTIAL: the pseudo-header sum, uncomplemented.
        let mut pseudo = 6u32 + 332;
        for w in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        let folded = ones_complement_sum(&[], pseudo);
        p[36..38].copy_from_slice(&folded.to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert!(complete_checksum(&mut p, &h));
        assert!(tcp_checksum_ok([10, 0, 0, 1], [10, 0, 0, 2], &p[20..]));
        let bad = VnetHdr {
            csum_start: 400,
            ..h
        };
        assert!(!complete_checksum(&mut p, &bad));
    }

    /// Segments a TSO packet, coalesces the segments again, and checks the result is the
    /// original packet apart from the checksum field, which holds the pseudo-header sum.
    #[test]
    fn coalescing_undoes_segmentation() {
        let p = tcp_packet(5000, 0x10 | TCP_PSH);
        let s = Tcp4Super::new(&p, 1348).unwrap();
        let mut c = TcpCoalescer::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut w = |b: &[u8]| written.push(b.to_vec());
        let mut out = vec![0u8; 2000];
        for i in 0..s.segments() {
            let n = s.write_segment(&p, i, &mut out).unwrap();
            assert!(c.add(&out[..n], [10, 0, 0, 1], [10, 0, 0, 2], &mut w));
        }
        c.flush(&mut w);
        assert_eq!(written.len(), 1);
        let got = &written[0];
        let h = VnetHdr::parse(got).unwrap();
        assert!(h.is_tcp4_gso() && h.needs_csum());
        assert_eq!(h.gso_size, 1348);
        let ip = &got[VNET_HDR_LEN..];
        assert_eq!(ip.len(), p.len());
        assert_eq!(ones_complement_sum(&ip[..20], 0), 0xffff);
        assert_eq!(&ip[12..20], &p[12..20]);
        assert_eq!(&ip[20..36], &p[20..36]);
        assert_eq!(&ip[38..], &p[38..]);
        assert!(complete_checksum(&mut ip.to_vec(), &h));
    }

    /// A segment sealed behind a NAT: its checksum covers the private source address, the
    /// header we deliver carries the NAT's. The coalescer must not pass the stale checksum
    /// on, even for a lone segment: the partial sum it leaves completes to a checksum valid
    /// over the addresses it wrote.
    #[test]
    fn lone_coalesced_segment_gets_the_written_addresses_pseudo_sum() {
        let p = tcp_packet(700, 0x10 | TCP_PSH);
        let private = [10, 0, 0, 1];
        let nat = [192, 0, 2, 77];
        let mut seg = p[20..].to_vec();
        // A real checksum over the sender's (private) pseudo-header.
        seg[16..18].fill(0);
        let mut pseudo = 6u32 + seg.len() as u32;
        for w in private.chunks(2).chain([10u8, 0, 0, 2].chunks(2)) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        let c = !ones_complement_sum(&seg, pseudo);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert!(tcp_checksum_ok(private, [10, 0, 0, 2], &seg));
        assert!(!tcp_checksum_ok(nat, [10, 0, 0, 2], &seg));

        let mut c = TcpCoalescer::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut w = |b: &[u8]| written.push(b.to_vec());
        assert!(c.add(&seg, nat, [10, 0, 0, 2], &mut w));
        c.flush(&mut w);
        let got = &written[0];
        let h = VnetHdr::parse(got).unwrap();
        assert!(h.needs_csum() && !h.is_tcp4_gso());
        assert_eq!((h.csum_start, h.csum_offset), (20, 16));
        let mut ip = got[VNET_HDR_LEN..].to_vec();
        assert!(complete_checksum(&mut ip, &h));
        assert!(tcp_checksum_ok(nat, [10, 0, 0, 2], &ip[20..]));
    }

    /// The same for packets delivered alone (TCP and UDP, IPv4 and IPv6).
    #[test]
    fn partial_checksum_for_a_delivered_packet() {
        for (v6, protocol, offset) in [
            (false, 6u8, 16u16),
            (false, 17, 6),
            (true, 6, 16),
            (true, 17, 6),
        ] {
            let header_len = if v6 { 40 } else { 20 };
            let mut p = vec![0u8; header_len + 48];
            let transport = 48;
            if v6 {
                crate::ip::write_ipv6_header(
                    &mut p[..40],
                    "2001:db8::1".parse().unwrap(),
                    "2001:db8::2".parse().unwrap(),
                    protocol,
                    transport,
                )
                .unwrap();
            } else {
                write_ipv4_header(
                    &mut p[..20],
                    Ipv4Addr::new(192, 0, 2, 77),
                    Ipv4Addr::new(10, 0, 0, 2),
                    protocol,
                    transport,
                )
                .unwrap();
            }
            for (i, b) in p[header_len..].iter_mut().enumerate() {
                *b = (i * 7) as u8;
            }
            let mut vnet = [0xffu8; VNET_HDR_LEN];
            VnetHdr::emit_partial_checksum(&mut vnet, &mut p);
            let h = VnetHdr::parse(&vnet).unwrap();
            assert!(h.needs_csum(), "{v6} {protocol}");
            assert_eq!(h.gso_type, 0);
            assert_eq!(
                (usize::from(h.csum_start), h.csum_offset),
                (header_len, offset)
            );
            assert!(complete_checksum(&mut p, &h));
            let (addrs, len) = if v6 { (8..40, 48u32) } else { (12..20, 48) };
            let pseudo = ones_complement_sum(&p[addrs], u32::from(protocol) + len);
            assert_eq!(
                ones_complement_sum(&p[header_len..], u32::from(pseudo)),
                0xffff
            );
        }
        // ICMP, and a TCP header cut short, stay DATA_VALID and untouched.
        let mut p = vec![0u8; 20 + 8];
        write_ipv4_header(
            &mut p,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1,
            8,
        )
        .unwrap();
        let before = p.clone();
        let mut vnet = [0u8; VNET_HDR_LEN];
        VnetHdr::emit_partial_checksum(&mut vnet, &mut p);
        assert_eq!(VnetHdr::parse(&vnet).unwrap().flags, F_DATA_VALID);
        assert_eq!(p, before);
        p[9] = 6;
        let before = p.clone();
        VnetHdr::emit_partial_checksum(&mut vnet, &mut p);
        assert_eq!(VnetHdr::parse(&vnet).unwrap().flags, F_DATA_VALID);
        assert_eq!(p, before);
    }

    #[test]
    fn coalescing_stops_at_gaps_and_differences() {
        let p = tcp_packet(4000, 0x10);
        let s = Tcp4Super::new(&p, 1000).unwrap();
        let segs: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let mut o = vec![0u8; 1100];
                let n = s.write_segment(&p, i, &mut o).unwrap();
                o.truncate(n);
                o
            })
            .collect();
        let mut c = TcpCoalescer::new();
        let written = std::cell::RefCell::new(Vec::<usize>::new());
        let mut w = |b: &[u8]| written.borrow_mut().push(b.len());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        // 0, then 2 (gap): flush 0 alone; 2 and 3 merge.
        assert!(c.add(&segs[0], a, b, &mut w));
        assert!(c.add(&segs[2], a, b, &mut w));
        assert!(c.add(&segs[3], a, b, &mut w));
        c.flush(&mut w);
        assert_eq!(*written.borrow(), vec![10 + 20 + 1032, 10 + 20 + 32 + 2000]);
        written.borrow_mut().clear();
        // A different ACK number does not merge.
        let mut other = segs[1].clone();
        other[8] ^= 1;
        assert!(c.add(&segs[0], a, b, &mut w));
        assert!(c.add(&other, a, b, &mut w));
        c.flush(&mut w);
        assert_eq!(written.borrow().len(), 2);
        // The same flow from another peer (the coalescer is shared) does not merge.
        let written_before = written.borrow().len();
        assert!(c.add(&segs[0], a, b, &mut w));
        assert!(c.add(&segs[1], [10, 0, 0, 3], b, &mut w));
        c.flush(&mut w);
        assert_eq!(written.borrow().len(), written_before + 2);
        // SYN/FIN/RST and pure ACKs are never held.
        let mut fin = segs[0].clone();
        fin[13] |= TCP_FIN;
        assert!(!c.add(&fin, a, b, &mut w));
        assert!(!c.add(&segs[0][..32], a, b, &mut w));
    }

    #[test]
    fn random_super_packets_never_panic() {
        let mut x = 0x0bad_cafe_dead_beefu64;
        let mut out = vec![0u8; 70_000];
        for n in 0..3000usize {
            let len = n % 200;
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len > 40 && n % 2 == 0 {
                p[0] = 0x45;
                p[9] = 6;
            }
            let mss = (x % 300) as u16;
            if let Some(s) = Tcp4Super::new(&p, mss) {
                for i in 0..s.segments() + 1 {
                    let _ = s.write_segment(&p, i, &mut out);
                }
            }
            if let Some(h) = VnetHdr::parse(&p) {
                let _ = complete_checksum(&mut p, &h);
            }
            let mut c = TcpCoalescer::new();
            let mut sink = |_: &[u8]| {};
            if p.len() > 20 {
                let _ = c.add(&p[20..], [1, 2, 3, 4], [5, 6, 7, 8], &mut sink);
                let _ = c.add(&p[..], [1, 2, 3, 4], [5, 6, 7, 8], &mut sink);
            }
            c.flush(&mut sink);
        }
    }

    #[test]
    fn vnet_header_round_trip() {
        let mut b = [0xffu8; 10];
        VnetHdr::emit_data_valid(&mut b);
        let h = VnetHdr::parse(&b).unwrap();
        assert_eq!(h.flags, F_DATA_VALID);
        assert!(!h.is_tcp4_gso());
        assert!(VnetHdr::parse(&b[..9]).is_none());
        let mut g = [0u8; 10];
        g[1] = GSO_TCPV4 | GSO_ECN;
        g[4..6].copy_from_slice(&1348u16.to_ne_bytes());
        assert!(VnetHdr::parse(&g).unwrap().is_tcp4_gso());
    }
}

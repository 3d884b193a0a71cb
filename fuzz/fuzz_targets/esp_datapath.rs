//! The userspace datapath's packet handling (`esp::datapath::fuzzing`, issue 9): the IP
//! header parser applied to TUN reads and to decrypted inner packets, the virtio-net header
//! and partial-checksum completion, TSO segmentation of TCP/IPv4 super-packets, GRO
//! coalescing of opened TCP segments, and locating ESP in raw socket reads. The first byte
//! picks the function; the rest is its input. Invariants beyond "never panics":
//!
//! * IP: `header_len ≤ total_len ≤ len`, the transport bytes lie inside and are empty for a
//!   fragment; ports are the first four transport bytes of TCP/UDP/SCTP/UDP-Lite;
//!   addresses are those at the family's offsets; agreement with `esp::ip::IpLayout` on
//!   non-fragments;
//! * checksum completion: only inside the packet, and afterwards the sum from `csum_start`
//!   verifies (0xffff) when the field was within it;
//! * TSO: the segments' data concatenate to the super-packet's payload, each within the
//!   promised bounds, consecutive sequence numbers, valid TCP checksums over the IPv4
//!   pseudo-header, FIN/PSH only on the last, CWR only on the first; in tunnel mode each is
//!   a valid IPv4 packet (length, header checksum) around that segment; a segment past the
//!   last is refused;
//! * GRO: the payloads of the segments taken come out in order, unchanged, in packets of at
//!   most 64 KiB whose IPv4 length and header checksum are right; coalescing the segments of
//!   a segmented ACK super-packet gives back its payload;
//! * raw ESP: the range lies inside the read.
#![no_main]

use std::net::IpAddr;

use esp::datapath::fuzzing::{
    coalesce, complete_checksum, parse_ip, parse_vnet, raw_esp, segment_tcp4,
};
use esp::ip::{ones_complement_sum, IpLayout};
use libfuzzer_sys::fuzz_target;

const VNET: usize = 10;

fn ip(p: &[u8]) {
    let Some(f) = parse_ip(p) else {
        return;
    };
    assert!(
        f.header_len <= f.total_len && f.total_len <= p.len(),
        "{f:?}"
    );
    assert!(f.transport.end <= f.total_len, "{f:?}");
    let t = &p[f.transport.clone()];
    if f.fragment {
        assert!(t.is_empty() && f.ports.is_none());
    } else {
        assert_eq!(f.transport, f.header_len..f.total_len);
    }
    match (f.protocol, t) {
        (6 | 17 | 132 | 136, [a, b, c, d, ..]) => assert_eq!(
            f.ports,
            Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
        ),
        _ => assert_eq!(f.ports, None),
    }
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            assert_eq!(p[0] >> 4, 4);
            assert!(f.header_len >= 20);
            assert_eq!((&s.octets()[..], &d.octets()[..]), (&p[12..16], &p[16..20]));
            assert_eq!(f.tunnel_next_header, 4);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            assert_eq!(p[0] >> 4, 6);
            assert!(f.header_len >= 40 && !f.fragment);
            assert_eq!((&s.octets()[..], &d.octets()[..]), (&p[8..24], &p[24..40]));
            assert_eq!(f.tunnel_next_header, 41);
        }
        _ => panic!("mixed families {f:?}"),
    }
    if !f.fragment {
        let l = IpLayout::parse(p).expect("the sans-IO parser agrees");
        assert_eq!(
            (l.header_len, l.total_len, l.protocol),
            (f.header_len, f.total_len, f.protocol)
        );
    }
}

fn checksum(data: &[u8]) {
    let Some(v) = parse_vnet(data) else {
        return;
    };
    assert_eq!(v.needs_csum, v.flags & 1 != 0);
    let mut packet = data[VNET..].to_vec();
    let before = packet.clone();
    let done = complete_checksum(&mut packet, &data[..VNET]).expect("header parses");
    let start = usize::from(v.csum_start);
    let field = start + usize::from(v.csum_offset);
    assert_eq!(done, field + 2 <= packet.len());
    if !done {
        assert_eq!(packet, before, "refused but written");
        return;
    }
    // Only the checksum field changed.
    assert_eq!(packet[..field], before[..field]);
    assert_eq!(packet[field + 2..], before[field + 2..]);
    // The field held the pseudo-header sum; with it added back, the range from
    // `csum_start` verifies when the field sits on a 16-bit boundary of it (the transport
    // checksums the kernel asks for always do).
    if (field - start) % 2 == 0 {
        let pseudo = u32::from(u16::from_be_bytes([before[field], before[field + 1]]));
        assert_eq!(ones_complement_sum(&packet[start..], pseudo), 0xffff);
    }
}

fn tcp_checksum_ok(src: &[u8], dst: &[u8], seg: &[u8]) -> bool {
    let mut pseudo = 6u32 + seg.len() as u32;
    for w in src.chunks(2).chain(dst.chunks(2)) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    ones_complement_sum(seg, pseudo) == 0xffff
}

/// Segments `packet` and checks the segments; returns them (TCP segments) when valid.
fn tso(packet: &[u8], mss: u16, whole: bool) -> Option<Vec<Vec<u8>>> {
    let (segs, max_seg, max_packet, past_refused) = segment_tcp4(packet, mss, whole)?;
    assert!(past_refused, "a segment past the last was written");
    let ip_len = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
    let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
    let payload = &packet[ip_len + tcp_len..total];
    assert_eq!(segs.len(), payload.len().div_ceil(usize::from(mss)).max(1));
    let seq0 = u32::from_be_bytes(packet[ip_len + 4..ip_len + 8].try_into().ok()?);
    let mut data = Vec::new();
    let mut tcp_segs = Vec::new();
    let n = segs.len();
    for (i, s) in segs.iter().enumerate() {
        let seg = if whole {
            assert!(s.len() <= max_packet);
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(
                ones_complement_sum(&s[..ip_len], 0),
                0xffff,
                "IPv4 checksum"
            );
            assert_eq!(s[12..20], packet[12..20]);
            &s[ip_len..]
        } else {
            &s[..]
        };
        assert!(seg.len() <= max_seg && seg.len() >= tcp_len);
        let seq = u32::from_be_bytes(seg[4..8].try_into().ok()?);
        assert_eq!(seq, seq0.wrapping_add(data.len() as u32));
        assert!(
            tcp_checksum_ok(&packet[12..16], &packet[16..20], seg),
            "TCP checksum"
        );
        let flags = seg[13];
        if i + 1 < n {
            assert_eq!(flags & 0x09, 0, "FIN/PSH before the last segment");
            assert_eq!(
                seg.len(),
                tcp_len + usize::from(mss),
                "short segment before the last"
            );
        }
        if i > 0 {
            assert_eq!(flags & 0x80, 0, "CWR after the first segment");
        }
        data.extend_from_slice(&seg[tcp_len..]);
        tcp_segs.push(seg.to_vec());
    }
    assert_eq!(data, payload, "segments do not add up to the payload");
    Some(tcp_segs)
}

fn segmentation(data: &[u8]) {
    let [m0, m1, mode, packet @ ..] = data else {
        return;
    };
    // Small MSS values reach many segments quickly; large ones the single-segment case.
    let mss = u16::from_be_bytes([*m0, *m1]) % 1500;
    let Some(segs) = tso(packet, mss, mode & 1 == 1) else {
        return;
    };
    // GRO undoes GSO: an ACK(+PSH) stream segmented, opened and coalesced is the stream.
    if mode & 1 == 1 || segs.is_empty() {
        return;
    }
    let (src, dst): ([u8; 4], [u8; 4]) = (
        packet[12..16].try_into().expect("4 bytes"),
        packet[16..20].try_into().expect("4 bytes"),
    );
    let offered: Vec<(&[u8], [u8; 4], [u8; 4])> =
        segs.iter().map(|s| (s.as_slice(), src, dst)).collect();
    let (taken, written) = gro_checks(&offered);
    let ip_len = usize::from(packet[0] & 0x0f) * 4;
    let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
    let flags = packet[ip_len + 13];
    let data = segs.iter().any(|s| s.len() > tcp_len);
    if flags & !0x08 == 0x10 && data {
        assert!(taken.iter().all(|t| *t), "a plain ACK segment refused");
        assert_eq!(
            written.len(),
            1,
            "one super-packet became {}",
            written.len()
        );
    }
}

/// Coalesces and checks the payload bookkeeping; returns what was taken and written.
fn gro_checks(offered: &[(&[u8], [u8; 4], [u8; 4])]) -> (Vec<bool>, Vec<Vec<u8>>) {
    let (taken, written) = coalesce(offered);
    assert_eq!(taken.len(), offered.len());
    let mut data_in = Vec::new();
    for ((seg, _, _), ok) in offered.iter().zip(&taken) {
        if *ok {
            let tcp_len = usize::from(seg[12] >> 4) * 4;
            data_in.extend_from_slice(&seg[tcp_len..]);
        }
    }
    let mut data_out = Vec::new();
    for p in &written {
        assert!(
            p.len() >= VNET + 40 && p.len() <= VNET + 65535,
            "{}",
            p.len()
        );
        let ip = &p[VNET..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(ones_complement_sum(&ip[..20], 0), 0xffff, "IPv4 checksum");
        assert_eq!(ip[9], 6);
        let tcp_len = usize::from(ip[32] >> 4) * 4;
        assert!(ip.len() > 20 + tcp_len, "a packet without data");
        let v = parse_vnet(p).expect("virtio header");
        if v.tcp4_gso {
            assert!(v.needs_csum && v.gso_size > 0);
            assert_eq!((v.csum_start, v.csum_offset), (20, 16));
        }
        data_out.extend_from_slice(&ip[20 + tcp_len..]);
    }
    assert_eq!(data_out, data_in, "coalescing changed the data");
    (taken, written)
}

fn gro(data: &[u8]) {
    // Segments separated by "SEG", each with a flow selector byte (source address).
    let mut offered = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && offered.len() < 64 {
        let (chunk, next) = match rest.windows(3).position(|w| w == b"SEG") {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &[][..]),
        };
        rest = next;
        if let [flow, seg @ ..] = chunk {
            offered.push((seg, [10, 0, 0, flow % 2], [10, 0, 0, 9]));
        }
    }
    gro_checks(&offered);
}

fn raw(data: &[u8]) {
    let [flags, read @ ..] = data else {
        return;
    };
    let from = (flags & 2 != 0).then(|| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1]));
    if let Some((range, _)) = raw_esp(read, flags & 1 != 0, from) {
        assert!(range.start <= range.end && range.end <= read.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => ip(rest),
        1 => checksum(rest),
        2 => segmentation(rest),
        3 => gro(rest),
        _ => raw(rest),
    }
});

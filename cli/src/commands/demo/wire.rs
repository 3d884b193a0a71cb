//! The demo's proof: what crossed the wire, read from tcpdump's pcap file.
//!
//! Every IP packet between the two hosts must be IKE (UDP 500, or UDP 4500 with the RFC 3948
//! non-ESP marker), ESP in UDP 4500, a NAT-T keepalive, or raw ESP; anything else is
//! cleartext that went around IPsec. The data the demo sends carries a marker line, which
//! must not appear in any captured byte.

/// Why a capture file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// Not a pcap file tcpdump writes.
    #[error("not a pcap file (magic {0:#010x})")]
    Magic(u32),
    /// The link type is neither Ethernet nor Linux cooked capture.
    #[error("unsupported pcap link type {0}")]
    LinkType(u32),
    /// A record claims more bytes than the file or the snapshot length holds.
    #[error("pcap record {index} is truncated or longer than the snapshot length")]
    Truncated {
        /// The record's position.
        index: usize,
    },
}

/// What one captured frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An IKE message.
    Ike,
    /// ESP inside UDP 4500.
    EspInUdp,
    /// ESP directly over IP (protocol 50).
    RawEsp,
    /// A NAT-T keepalive (one 0xFF byte to port 4500).
    Keepalive,
    /// An IP packet that is none of the above: cleartext.
    Other,
    /// ARP and other non-IP frames (link-layer housekeeping, no payload of ours).
    NonIp,
}

/// Counts by kind, and the cleartext packets described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// IKE messages.
    pub ike: usize,
    /// ESP in UDP.
    pub esp_in_udp: usize,
    /// Raw ESP.
    pub raw_esp: usize,
    /// NAT-T keepalives.
    pub keepalives: usize,
    /// Non-IP frames (ARP).
    pub non_ip: usize,
    /// Descriptions of the IP packets that were not IPsec, first few only.
    pub other: Vec<String>,
    /// How many IP packets were not IPsec.
    pub other_count: usize,
    /// Captured bytes in all frames.
    pub bytes: u64,
    /// Whether the plaintext marker appeared anywhere.
    pub marker_seen: bool,
}

impl Tally {
    /// Frames captured.
    pub fn frames(&self) -> usize {
        self.ike + self.esp_in_udp + self.raw_esp + self.keepalives + self.non_ip + self.other_count
    }

    /// The wire carried only IKE and ESP (and ARP), and never the marker.
    pub fn only_ipsec(&self) -> bool {
        self.other_count == 0 && !self.marker_seen && self.ike > 0
    }
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_LINUX_SLL: u32 = 113;
/// Bound on one record: tcpdump's largest snapshot length.
const MAX_RECORD: usize = 262_144;
/// How many cleartext packets to describe.
const SHOW_OTHER: usize = 5;

/// Reads a pcap file and classifies every frame; `marker` is searched for in every frame.
pub fn tally(data: &[u8], marker: &[u8]) -> Result<Tally, CaptureError> {
    let magic = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(CaptureError::Magic(0))?;
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        other => return Err(CaptureError::Magic(other)),
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let link = u32_at(data, 20).ok_or(CaptureError::Magic(magic))?;
    let link_header = match link {
        LINKTYPE_ETHERNET => 14,
        LINKTYPE_LINUX_SLL => 16,
        other => return Err(CaptureError::LinkType(other)),
    };
    let mut t = Tally::default();
    let mut at = 24;
    let mut index = 0;
    while at < data.len() {
        let caplen = u32_at(data, at + 8)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_RECORD)
            .ok_or(CaptureError::Truncated { index })?;
        let frame = data
            .get(at + 16..at + 16 + caplen)
            .ok_or(CaptureError::Truncated { index })?;
        at += 16 + caplen;
        index += 1;
        t.bytes += caplen as u64;
        if !marker.is_empty() && frame.windows(marker.len()).any(|w| w == marker) {
            t.marker_seen = true;
        }
        let ethertype = frame
            .get(link_header - 2..link_header)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let payload = frame.get(link_header..).unwrap_or_default();
        let (kind, what) = match ethertype {
            Some(0x0800) => classify_ipv4(payload),
            Some(0x86dd) => classify_ipv6(payload),
            _ => (Kind::NonIp, String::new()),
        };
        match kind {
            Kind::Ike => t.ike += 1,
            Kind::EspInUdp => t.esp_in_udp += 1,
            Kind::RawEsp => t.raw_esp += 1,
            Kind::Keepalive => t.keepalives += 1,
            Kind::NonIp => t.non_ip += 1,
            Kind::Other => {
                t.other_count += 1;
                if t.other.len() < SHOW_OTHER {
                    t.other.push(what);
                }
            }
        }
    }
    Ok(t)
}

fn classify_ipv4(ip: &[u8]) -> (Kind, String) {
    let Some(&first) = ip.first() else {
        return (Kind::Other, "truncated IPv4 header".into());
    };
    let header_len = usize::from(first & 0x0f) * 4;
    let (Some(&protocol), Some(src), Some(dst)) = (ip.get(9), ip.get(12..16), ip.get(16..20))
    else {
        return (Kind::Other, "truncated IPv4 header".into());
    };
    let describe = |p: &str| {
        format!(
            "{}.{}.{}.{} → {}.{}.{}.{} {p}",
            src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3]
        )
    };
    // Later fragments carry no transport header; the first one was classified.
    let fragment_offset = ip
        .get(6..8)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) & 0x1fff);
    classify_transport(
        protocol,
        ip.get(header_len..).unwrap_or_default(),
        fragment_offset != 0,
        describe,
    )
}

fn classify_ipv6(ip: &[u8]) -> (Kind, String) {
    let Some(&next) = ip.get(6) else {
        return (Kind::Other, "truncated IPv6 header".into());
    };
    classify_transport(next, ip.get(40..).unwrap_or_default(), false, |p| {
        format!("IPv6 {p}")
    })
}

fn classify_transport(
    protocol: u8,
    l4: &[u8],
    later_fragment: bool,
    describe: impl Fn(&str) -> String,
) -> (Kind, String) {
    match protocol {
        50 => (Kind::RawEsp, String::new()),
        17 if later_fragment => (Kind::EspInUdp, String::new()),
        17 => {
            let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            let (Some(sport), Some(dport)) = (port(0), port(2)) else {
                return (Kind::Other, describe("truncated UDP"));
            };
            let body = l4.get(8..).unwrap_or_default();
            if sport == 4500 || dport == 4500 {
                match body {
                    [0xff] => (Kind::Keepalive, String::new()),
                    [0, 0, 0, 0, ..] => (Kind::Ike, String::new()),
                    b if b.len() >= 8 => (Kind::EspInUdp, String::new()),
                    _ => (Kind::Other, describe(&format!("UDP {sport}→{dport}"))),
                }
            } else if sport == 500 || dport == 500 {
                (Kind::Ike, String::new())
            } else {
                (Kind::Other, describe(&format!("UDP {sport}→{dport}")))
            }
        }
        6 => {
            let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            let ports = port(0).zip(port(2));
            (
                Kind::Other,
                describe(&ports.map_or("TCP".into(), |(s, d)| format!("TCP {s}→{d}"))),
            )
        }
        1 => (Kind::Other, describe("ICMP")),
        58 => (Kind::Other, describe("ICMPv6")),
        p => (Kind::Other, describe(&format!("IP protocol {p}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&[2, 0, 4, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        for f in frames {
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn ipv4(protocol: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(l4);
        f.extend(ip);
        f
    }

    fn udp(sport: u16, dport: u16, body: &[u8]) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0; 4]);
        u.extend_from_slice(body);
        u
    }

    #[test]
    fn ike_esp_keepalives_and_arp_are_ipsec_and_the_rest_is_cleartext() {
        let ike_header = [7u8; 28];
        let mut natt_ike = vec![0, 0, 0, 0];
        natt_ike.extend_from_slice(&ike_header);
        let mut arp = vec![0; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        let frames = vec![
            ipv4(17, &udp(500, 500, &ike_header)),
            ipv4(17, &udp(4500, 4500, &natt_ike)),
            ipv4(17, &udp(4500, 4500, &[0, 0, 0, 9, 0, 0, 0, 1, 0xaa, 0xbb])),
            ipv4(17, &udp(4500, 4500, &[0xff])),
            ipv4(50, &[0, 0, 0, 9, 0, 0, 0, 1]),
            arp,
        ];
        let t = tally(&pcap(&frames), b"SECRET").unwrap();
        assert_eq!(
            (t.ike, t.esp_in_udp, t.keepalives, t.raw_esp, t.non_ip),
            (2, 1, 1, 1, 1)
        );
        assert!(t.only_ipsec(), "{t:?}");
        assert_eq!(t.frames(), 6);

        let mut frames = frames;
        frames.push(ipv4(
            6,
            &[0x08, 0x01, 0x9c, 0x40, b'S', b'E', b'C', b'R', b'E', b'T'],
        ));
        frames.push(ipv4(1, &[8, 0]));
        let t = tally(&pcap(&frames), b"SECRET").unwrap();
        assert!(!t.only_ipsec());
        assert!(t.marker_seen);
        assert_eq!(t.other_count, 2);
        assert_eq!(t.other[0], "10.0.0.1 → 10.0.0.2 TCP 2049→40000");
        assert_eq!(t.other[1], "10.0.0.1 → 10.0.0.2 ICMP");
    }

    #[test]
    fn a_capture_without_ike_proves_nothing() {
        let t = tally(&pcap(&[]), b"x").unwrap();
        assert!(!t.only_ipsec());
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        assert_eq!(tally(b"", b"x"), Err(CaptureError::Magic(0)));
        assert_eq!(
            tally(&[1, 2, 3, 4, 5], b"x"),
            Err(CaptureError::Magic(0x0403_0201))
        );
        let mut p = pcap(&[ipv4(17, &udp(500, 500, &[1; 28]))]);
        p.truncate(p.len() - 3);
        assert_eq!(tally(&p, b"x"), Err(CaptureError::Truncated { index: 0 }));
        let mut p = pcap(&[]);
        p[20] = 228;
        assert_eq!(tally(&p, b"x"), Err(CaptureError::LinkType(228)));
        // Truncated frames inside valid records are classified, not indexed out of bounds.
        for len in 0..40 {
            let mut f = ipv4(17, &udp(4500, 4500, &[0; 16]));
            f.truncate(len);
            tally(&pcap(&[f]), b"x").unwrap();
        }
    }
}

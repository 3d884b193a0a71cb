//! A small reader for the pcap files tcpdump writes: IPv4 packets with their protocol, UDP
//! ports and payloads, and the IKE messages among them (RFC 7296 §3.1 header, RFC 3948 §2.2
//! non-ESP marker on port 4500). Enough to assert on what crossed the wire.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::{LabError, Result};

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IKE's port.
pub const IKE_PORT: u16 = 500;
/// IKE and ESP-in-UDP after NAT-T floating (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;

/// One captured IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture time since the Unix epoch.
    pub time: Duration,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IP protocol (17 UDP, 50 ESP, 1 ICMP, …).
    pub protocol: u8,
    /// UDP ports (source, destination) when `protocol` is UDP.
    pub ports: Option<(u16, u16)>,
    /// The UDP payload for UDP, otherwise the IP payload.
    pub payload: Vec<u8>,
}

/// What kind of traffic a UDP datagram on the IKE ports carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpKind<'a> {
    /// An IKE message (on 4500 with the non-ESP marker already removed).
    Ike(&'a [u8]),
    /// ESP in UDP (RFC 3948): starts with a non-zero SPI.
    Esp(&'a [u8]),
    /// A NAT-T keepalive (one 0xFF octet).
    Keepalive,
}

/// The fixed IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeHeader {
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// First payload type.
    pub next_payload: u8,
    /// Exchange type (34 IKE_SA_INIT, 35 IKE_AUTH, 36 CREATE_CHILD_SA, 37 INFORMATIONAL).
    pub exchange: u8,
    /// Flags (0x08 Initiator, 0x10 Version, 0x20 Response).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message.
    pub length: u32,
}

impl IkeHeader {
    /// Parses the 28-byte header; `None` if too short or not IKEv2.
    pub fn parse(msg: &[u8]) -> Option<IkeHeader> {
        let h = msg.get(..28)?;
        if h[17] >> 4 != 2 {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap_or([0; 4]));
        Some(IkeHeader {
            spi_i: u64_at(0),
            spi_r: u64_at(8),
            next_payload: h[16],
            exchange: h[18],
            flags: h[19],
            message_id: u32_at(20),
            length: u32_at(24),
        })
    }

    /// Whether the Response flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & 0x20 != 0
    }

    /// Whether the Initiator flag is set (sent by the IKE SA's original initiator).
    pub fn from_initiator(&self) -> bool {
        self.flags & 0x08 != 0
    }

    /// The exchange's RFC name.
    pub fn exchange_name(&self) -> &'static str {
        match self.exchange {
            34 => "IKE_SA_INIT",
            35 => "IKE_AUTH",
            36 => "CREATE_CHILD_SA",
            37 => "INFORMATIONAL",
            _ => "UNKNOWN",
        }
    }
}

impl Packet {
    /// Classifies a UDP datagram on port 500 or 4500; `None` for other packets.
    pub fn udp_kind(&self) -> Option<UdpKind<'_>> {
        let (sport, dport) = self.ports?;
        if sport == NAT_T_PORT || dport == NAT_T_PORT {
            return match self.payload.as_slice() {
                [0xff] => Some(UdpKind::Keepalive),
                [0, 0, 0, 0, rest @ ..] => Some(UdpKind::Ike(rest)),
                p if p.len() >= 8 => Some(UdpKind::Esp(p)),
                _ => None,
            };
        }
        if sport == IKE_PORT || dport == IKE_PORT {
            return Some(UdpKind::Ike(&self.payload));
        }
        None
    }

    /// The IKE message this packet carries, if any, with its header.
    pub fn ike(&self) -> Option<(IkeHeader, &[u8])> {
        match self.udp_kind()? {
            UdpKind::Ike(msg) => IkeHeader::parse(msg).map(|h| (h, msg)),
            _ => None,
        }
    }
}

/// The IKE messages among `packets`, in capture order, with their headers.
pub fn ike_messages(packets: &[Packet]) -> Vec<(&Packet, IkeHeader)> {
    packets
        .iter()
        .filter_map(|p| p.ike().map(|(h, _)| (p, h)))
        .collect()
}

/// First IKE_SA_INIT request → last IKE_AUTH packet of the same IKE SA: the handshake as the
/// wire saw it. `None` if either end is missing from the capture.
pub fn handshake_span(packets: &[Packet]) -> Option<Duration> {
    let ike = ike_messages(packets);
    let (first, init) = ike
        .iter()
        .find(|(_, h)| h.exchange == 34 && !h.is_response())?;
    let (last, _) = ike
        .iter()
        .rev()
        .find(|(_, h)| h.exchange == 35 && h.spi_i == init.spi_i)?;
    last.time.checked_sub(first.time)
}

/// `EXCHANGE/request|response:sport` for every IKE message, for assertion messages.
pub fn exchange_summary(packets: &[Packet]) -> Vec<String> {
    ike_messages(packets)
        .iter()
        .map(|(p, h)| {
            format!(
                "{} {} {}→{} mid {}{}",
                h.exchange_name(),
                if h.is_response() {
                    "response"
                } else {
                    "request"
                },
                p.src,
                p.dst,
                h.message_id,
                if h.next_payload == 53 { " (SKF)" } else { "" }
            )
        })
        .collect()
}

/// ESP packets from `src` to `dst`, in UDP 4500 or raw (protocol 50).
pub fn esp_packets(packets: &[Packet], src: Ipv4Addr, dst: Ipv4Addr) -> usize {
    packets
        .iter()
        .filter(|p| p.src == src && p.dst == dst)
        .filter(|p| p.protocol == IPPROTO_ESP || matches!(p.udp_kind(), Some(UdpKind::Esp(_))))
        .count()
}

/// Bytes of ESP (UDP payload or IP payload) from `src` to `dst`. Unlike a packet count this
/// does not depend on segmentation offload: a sender using UDP GSO shows up in a veth capture
/// as few packets of up to 64 KiB.
pub fn esp_bytes(packets: &[Packet], src: Ipv4Addr, dst: Ipv4Addr) -> u64 {
    packets
        .iter()
        .filter(|p| p.src == src && p.dst == dst)
        .filter(|p| p.protocol == IPPROTO_ESP || matches!(p.udp_kind(), Some(UdpKind::Esp(_))))
        .map(|p| p.payload.len() as u64)
        .sum()
}

/// Packets that are neither IKE, ESP nor NAT-T keepalives between two hosts: traffic that
/// went around the tunnel (ICMP, TCP in the clear, …).
pub fn cleartext_packets(packets: &[Packet]) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| p.protocol != IPPROTO_ESP && p.udp_kind().is_none())
        .collect()
}

/// Parses a whole pcap file (microsecond or nanosecond, either byte order; Ethernet or Linux
/// cooked link type). Non-IPv4 frames are skipped; IPv4 fragments are returned as they are.
pub fn parse(data: &[u8]) -> Result<Vec<Packet>> {
    let header = data
        .get(..24)
        .ok_or_else(|| LabError::Pcap("shorter than its header".into()))?;
    let (big, nanos) = match header[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => {
            return Err(LabError::Pcap(format!(
                "unknown magic {:02x?}",
                &header[..4]
            )))
        }
    };
    let u32_at = |b: &[u8], i: usize| -> u32 {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if big {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let link_type = u32_at(header, 20);
    let link_header = match link_type {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked (tcpdump -i any)
        other => return Err(LabError::Pcap(format!("unsupported link type {other}"))),
    };
    let mut packets = Vec::new();
    let mut off = 24;
    while off < data.len() {
        let rec = data
            .get(off..off + 16)
            .ok_or_else(|| LabError::Pcap(format!("truncated record header at {off}")))?;
        let (sec, frac, incl) = (u32_at(rec, 0), u32_at(rec, 4), u32_at(rec, 8) as usize);
        off += 16;
        let frame = data
            .get(off..off + incl)
            .ok_or_else(|| LabError::Pcap(format!("truncated record at {off} ({incl} bytes)")))?;
        off += incl;
        let time = Duration::new(u64::from(sec), 0)
            + if nanos {
                Duration::from_nanos(u64::from(frac))
            } else {
                Duration::from_micros(u64::from(frac))
            };
        let Some(ethertype) = frame.get(link_header - 2..link_header) else {
            continue;
        };
        if ethertype != [0x08, 0x00] {
            continue;
        }
        if let Some(p) = ipv4(time, &frame[link_header..]) {
            packets.push(p);
        }
    }
    Ok(packets)
}

fn ipv4(time: Duration, ip: &[u8]) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let body = ip.get(ihl..total)?;
    let protocol = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    if protocol == IPPROTO_UDP && first_fragment && body.len() >= 8 {
        let sport = u16::from_be_bytes([body[0], body[1]]);
        let dport = u16::from_be_bytes([body[2], body[3]]);
        let len = usize::from(u16::from_be_bytes([body[4], body[5]])).clamp(8, body.len());
        return Some(Packet {
            time,
            src,
            dst,
            protocol,
            ports: Some((sport, dport)),
            payload: body[8..len].to_vec(),
        });
    }
    Some(Packet {
        time,
        src,
        dst,
        protocol,
        ports: None,
        payload: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 8 + payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0];
        ip[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0,
        ];
        for (i, f) in frames.iter().enumerate() {
            out.extend_from_slice(&(1_700_000_000u32 + u32::try_from(i).unwrap()).to_le_bytes());
            out.extend_from_slice(&250_000u32.to_le_bytes());
            out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn ike_header(exchange: u8, flags: u8, mid: u32, len: u32) -> Vec<u8> {
        let mut h = vec![
            1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 33, 0x20, exchange, flags,
        ];
        h.extend_from_slice(&mid.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h
    }

    #[test]
    fn reads_ike_on_500_and_4500_and_tells_esp_and_keepalives_apart() {
        let init = ike_header(34, 0x08, 0, 28);
        let mut marked = vec![0, 0, 0, 0];
        marked.extend_from_slice(&ike_header(35, 0x20, 1, 28));
        let esp = [0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 1, 9, 9];
        let file = pcap(&[
            frame([10, 0, 0, 1], [10, 0, 0, 2], 500, 500, &init),
            frame([10, 0, 0, 2], [10, 0, 0, 1], 4500, 4500, &marked),
            frame([10, 0, 0, 1], [10, 0, 0, 2], 4500, 4500, &esp),
            frame([10, 0, 0, 1], [10, 0, 0, 2], 4500, 4500, &[0xff]),
        ]);
        let packets = parse(&file).unwrap();
        assert_eq!(packets.len(), 4);
        assert_eq!(packets[0].time, Duration::new(1_700_000_000, 250_000_000));
        assert_eq!(packets[0].ports, Some((500, 500)));
        let (h, msg) = packets[0].ike().unwrap();
        assert_eq!(
            (h.exchange_name(), h.is_response(), h.from_initiator()),
            ("IKE_SA_INIT", false, true)
        );
        assert_eq!(msg, &init[..]);
        let (h, msg) = packets[1].ike().unwrap();
        assert_eq!(
            (h.exchange_name(), h.message_id, h.is_response()),
            ("IKE_AUTH", 1, true)
        );
        assert_eq!(msg.len(), 28, "non-ESP marker removed");
        assert_eq!(packets[2].udp_kind(), Some(UdpKind::Esp(&esp[..])));
        assert!(packets[2].ike().is_none());
        assert_eq!(packets[3].udp_kind(), Some(UdpKind::Keepalive));
    }

    #[test]
    fn handshake_span_esp_and_cleartext_counts() {
        let mut auth_response = vec![0, 0, 0, 0];
        auth_response.extend_from_slice(&ike_header(35, 0x20, 1, 28));
        let esp = [0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 1, 9, 9];
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let file = pcap(&[
            frame(a, b, 500, 500, &ike_header(34, 0x08, 0, 28)),
            frame(b, a, 500, 500, &ike_header(34, 0x20, 0, 28)),
            frame(b, a, 4500, 4500, &auth_response),
            frame(a, b, 4500, 4500, &esp),
            frame(a, b, 40000, 2049, b"nfs in the clear"),
        ]);
        let packets = parse(&file).unwrap();
        assert_eq!(handshake_span(&packets), Some(Duration::from_secs(2)));
        assert_eq!(esp_packets(&packets, a.into(), b.into()), 1);
        assert_eq!(esp_packets(&packets, b.into(), a.into()), 0);
        assert_eq!(esp_bytes(&packets, a.into(), b.into()), esp.len() as u64);
        let clear = cleartext_packets(&packets);
        assert_eq!(clear.len(), 1);
        assert_eq!(clear[0].ports, Some((40000, 2049)));
        let summary = exchange_summary(&packets);
        assert_eq!(summary.len(), 3);
        assert_eq!(summary[2], "IKE_AUTH response 10.0.0.2→10.0.0.1 mid 1");
        assert_eq!(handshake_span(&packets[..2]), None, "no IKE_AUTH yet");
    }

    #[test]
    fn rejects_garbage_and_truncation_without_panicking() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0u8; 24]).is_err());
        let mut file = pcap(&[frame(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            500,
            500,
            &ike_header(34, 8, 0, 28),
        )]);
        file.truncate(file.len() - 5);
        assert!(matches!(parse(&file), Err(LabError::Pcap(_))));
        // every truncation point either parses or errors, never panics
        let full = pcap(&[frame(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            4500,
            4500,
            &[0, 0, 0, 0, 1, 2],
        )]);
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
    }

    #[test]
    fn skips_non_ipv4_frames() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        assert!(parse(&pcap(&[arp])).unwrap().is_empty());
    }
}

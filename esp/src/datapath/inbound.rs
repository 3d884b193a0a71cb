//! The inbound thread: sockets → SA by SPI → open → TUN.

use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::offload::{TcpCoalescer, VnetHdr, VNET_HDR_LEN};
use super::{bump, lock, sys, Encapsulation, IpHeader, Peer, Shared, BUF_LEN, POLL_MS};
use crate::header::{EspHeader, NEXT_HEADER_NONE};
use crate::ip::{
    write_ipv4_header, write_ipv6_header, IpLayout, IpVersion, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
};
use crate::udp_encap::{classify, Encapsulated};
use crate::Mode;

/// Room in front of a received ESP packet for the virtio and IP headers we rebuild (IPv6:
/// 10 + 40 bytes; the 16 bytes of ESP header and IV cover the rest).
const HEADROOM: usize = 48;
/// Raw ESP has no GRO: one `recvmmsg` fills up to this many slots of `HEADROOM + BUF_LEN`.
const RAW_BATCH: usize = 16;
const SLOT_LEN: usize = HEADROOM + BUF_LEN;

/// The peer of the last SPI looked up, kept for the rest of one read (a GRO run is one flow,
/// nearly always one SA): a peer or SA removed meanwhile stops being served at the next read.
type SpiCache = Option<(u32, Arc<Peer>)>;

/// How an ESP packet reached us: its sender, and whether in UDP.
#[derive(Clone, Copy)]
pub(super) struct Arrival {
    pub(super) from: IpAddr,
    /// The sender's UDP port (ESP in UDP), or `None` (raw ESP).
    pub(super) port: Option<u16>,
}

pub(super) fn rx_loop(sh: &Shared, tun: &File) {
    let mut buf = vec![0u8; RAW_BATCH * SLOT_LEN];
    let mut coalescer = TcpCoalescer::new();
    let st = &sh.stats;
    let mut write_tun = |packet: &[u8]| {
        // A TUN write takes the whole packet or fails.
        match (&*tun).write(packet) {
            Ok(w) if w == packet.len() => {}
            _ => bump(&st.rx_dropped, 1),
        }
    };
    let mut lens = [0usize; RAW_BATCH];
    let mut from = [None; RAW_BATCH];
    while !sh.stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for held in sh.early.take_ready() {
            // Held before its SA existed (see `early`): opened like any packet now.
            let slot = &mut buf[..SLOT_LEN];
            let end = HEADROOM + held.esp.len();
            slot[HEADROOM..end].copy_from_slice(&held.esp);
            let mut cache = None;
            deliver_esp(
                sh,
                slot,
                HEADROOM..end,
                held.arrival,
                &mut cache,
                &mut coalescer,
                &mut write_tun,
            );
        }
        for udp in [&sh.udp, &sh.udp6].into_iter().flatten() {
            match sys::recv_gro(udp.as_raw_fd(), &mut buf[HEADROOM..SLOT_LEN]) {
                Ok((n, seg, from)) => {
                    idle = false;
                    deliver_udp(
                        sh,
                        &mut buf[..SLOT_LEN],
                        n,
                        seg,
                        from,
                        &mut coalescer,
                        &mut write_tun,
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => idle = false,
            }
        }
        for (raw, v6) in [(&sh.raw, false), (&sh.raw6, true)] {
            let Some(raw) = raw.get() else {
                continue;
            };
            let got = sys::recvmmsg_slots(
                raw.as_raw_fd(),
                &mut buf,
                SLOT_LEN,
                HEADROOM,
                &mut lens,
                &mut from,
            );
            match got {
                Ok(k) => {
                    idle = false;
                    if k > 1 {
                        bump(&st.rx_batched_reads, 1);
                    }
                    let mut cache = None;
                    for i in 0..k {
                        let slot = &mut buf[i * SLOT_LEN..(i + 1) * SLOT_LEN];
                        bump(&st.rx_bytes, lens[i] as u64);
                        let Some((esp, sender)) =
                            raw_esp(&slot[HEADROOM..HEADROOM + lens[i]], v6, from[i])
                        else {
                            bump(&st.rx_dropped, 1);
                            continue;
                        };
                        deliver_esp(
                            sh,
                            slot,
                            (HEADROOM + esp.start)..(HEADROOM + esp.end),
                            Arrival {
                                from: sender,
                                port: None,
                            },
                            &mut cache,
                            &mut coalescer,
                            &mut write_tun,
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => idle = false,
            }
        }
        if idle {
            // Nothing more queued: deliver what is held before sleeping. Holding segments
            // across reads lets coalescing work even when each read brings one packet
            // (raw ESP, or UDP without GRO); while packets keep coming, the coalescer
            // flushes itself when full or when the flow's run ends.
            coalescer.flush(&mut write_tun);
            let fds = [
                sh.udp.as_ref().map(|s| s.as_raw_fd()),
                sh.udp6.as_ref().map(|s| s.as_raw_fd()),
                sh.raw.get().map(|s| s.as_raw_fd()),
                sh.raw6.get().map(|s| s.as_raw_fd()),
            ];
            let _ = sys::wait_readable_any(&fds, POLL_MS);
        }
    }
    coalescer.flush(&mut write_tun);
}

/// Delivers what one UDP read left at `slot[HEADROOM..HEADROOM + n]`: with UDP GRO several
/// datagrams of `seg` bytes (the last may be shorter), each ESP, IKE or a keepalive.
fn deliver_udp(
    sh: &Shared,
    buf: &mut [u8],
    n: usize,
    seg: Option<usize>,
    from: SocketAddr,
    coalescer: &mut TcpCoalescer,
    write_tun: &mut impl FnMut(&[u8]),
) {
    let st = &sh.stats;
    bump(&st.rx_bytes, n as u64);
    let seg = seg.unwrap_or(n).max(1);
    if seg < n {
        bump(&st.rx_gro_reads, 1);
    }
    let arrival = Arrival {
        from: from.ip(),
        port: Some(from.port()),
    };
    // The headers built for one datagram may overwrite the tail of the one before, which
    // is already delivered or copied.
    let mut off = 0;
    let mut cache = None;
    while off < n {
        let len = seg.min(n - off);
        let at = HEADROOM + off;
        off += len;
        match classify(&buf[at..at + len]) {
            Ok(Encapsulated::Esp(_)) => deliver_esp(
                sh,
                buf,
                at..at + len,
                arrival,
                &mut cache,
                coalescer,
                write_tun,
            ),
            Ok(Encapsulated::Ike(msg)) => {
                bump(&st.rx_non_esp, 1);
                if let Some(handler) = lock(&sh.ike_handler).as_ref() {
                    handler(from, msg);
                }
            }
            Ok(Encapsulated::Keepalive) => bump(&st.rx_non_esp, 1),
            Err(_) => bump(&st.rx_dropped, 1),
        }
    }
}

/// Where the ESP packet lies in what a raw socket returned, and who sent it: IPv4 raw
/// sockets return the IP header too, IPv6 ones only the ESP packet (the sender comes with
/// it). `None` for an empty, truncated or unparseable read.
pub(super) fn raw_esp(
    data: &[u8],
    v6: bool,
    from: Option<IpAddr>,
) -> Option<(Range<usize>, IpAddr)> {
    if data.is_empty() {
        return None;
    }
    if v6 {
        return Some((0..data.len(), from?));
    }
    match IpLayout::parse(data) {
        Ok(l) if l.version == IpVersion::V4 => Some((
            l.header_len..l.total_len,
            IpAddr::V4(Ipv4Addr::new(data[12], data[13], data[14], data[15])),
        )),
        _ => None,
    }
}

/// Opens the ESP packet at `buf[esp]` and delivers what it carries, or counts why not.
fn deliver_esp(
    sh: &Shared,
    buf: &mut [u8],
    esp: Range<usize>,
    arrival: Arrival,
    cache: &mut SpiCache,
    coalescer: &mut TcpCoalescer,
    write_tun: &mut impl FnMut(&[u8]),
) {
    let st = &sh.stats;
    let Some((peer, next_header, payload)) = open_one(sh, buf, esp.clone(), arrival, cache) else {
        if !held_early(sh, &buf[esp], arrival) {
            bump(&st.rx_dropped, 1);
        }
        return;
    };
    let local = match peer.addr {
        IpAddr::V4(_) => Some(IpAddr::V4(sh.cfg.local)),
        IpAddr::V6(_) => sh.cfg.local6.map(IpAddr::V6),
    };
    let Some(local) = local else {
        bump(&st.rx_dropped, 1);
        return;
    };
    // TCP/IPv4 coalesces into TSO writes; the coalescer takes the addresses as octets.
    let v4 = match (peer.addr, local) {
        (IpAddr::V4(p), IpAddr::V4(l)) => Some((p, l)),
        _ => None,
    };
    match peer.cfg.mode {
        Mode::Transport => {
            if !peer.selected(next_header, &buf[payload.clone()], false) {
                bump(&st.rx_dropped, 1);
                return;
            }
            bump(&st.rx_packets, 1);
            if let Some((p, l)) = v4 {
                if next_header == 6
                    && coalescer.add(&buf[payload.clone()], p.octets(), l.octets(), write_tun)
                {
                    return;
                }
            }
            coalescer.flush(write_tun);
            // ESP header and IV (at least 16 bytes) plus headroom hold the virtio and IP
            // headers.
            let header_len = if v4.is_some() {
                IPV4_HEADER_LEN
            } else {
                IPV6_HEADER_LEN
            };
            let ip_start = payload.start - header_len;
            let vnet_start = ip_start - VNET_HDR_LEN;
            let header = &mut buf[ip_start..payload.start];
            let written = match (peer.addr, local) {
                (IpAddr::V4(p), IpAddr::V4(l)) => {
                    write_ipv4_header(header, p, l, next_header, payload.len())
                }
                (IpAddr::V6(p), IpAddr::V6(l)) => {
                    write_ipv6_header(header, p, l, next_header, payload.len())
                }
                _ => Err(crate::Error::MalformedIp("address families differ")),
            };
            if written.is_err() {
                bump(&st.rx_dropped, 1);
                return;
            }
            if matches!(peer.cfg.encapsulation, Encapsulation::Udp { .. }) {
                // ESP in UDP: a NAT may sit between us (RFC 7296 §2.23) and the sender's
                // transport checksum may cover addresses other than the ones just written.
                let (vnet, packet) = buf[vnet_start..payload.end].split_at_mut(VNET_HDR_LEN);
                VnetHdr::emit_partial_checksum(vnet, packet);
            } else {
                VnetHdr::emit_data_valid(&mut buf[vnet_start..ip_start]);
            }
            write_tun(&buf[vnet_start..payload.end]);
        }
        Mode::Tunnel => {
            // Host to host: the inner packet must be from the peer to us (RFC 4301 §5.2:
            // the inner header is checked against the SA's selectors).
            let inner = &buf[payload.clone()];
            let layout = match IpHeader::parse(inner) {
                Some(l)
                    if next_header == l.tunnel_next_header()
                        && l.src == peer.addr
                        && l.dst == local =>
                {
                    l
                }
                _ => {
                    bump(&st.rx_dropped, 1);
                    return;
                }
            };
            let transport = layout.transport(inner);
            if !peer.selected(layout.protocol, transport, false) {
                bump(&st.rx_dropped, 1);
                return;
            }
            bump(&st.rx_packets, 1);
            // Only whole, option-less IPv4 packets coalesce: the coalescer rebuilds a plain
            // header.
            if let Some((p, l)) = v4 {
                if layout.protocol == 6
                    && !layout.fragment
                    && layout.header_len == IPV4_HEADER_LEN
                    && coalescer.add(transport, p.octets(), l.octets(), write_tun)
                {
                    return;
                }
            }
            coalescer.flush(write_tun);
            let vnet_start = payload.start - VNET_HDR_LEN;
            VnetHdr::emit_data_valid(&mut buf[vnet_start..payload.start]);
            write_tun(&buf[vnet_start..payload.start + layout.total_len]);
        }
    }
}

/// Keeps a packet for an SPI we announced whose SA is not installed yet (see `early`);
/// false for anything else.
fn held_early(sh: &Shared, esp: &[u8], arrival: Arrival) -> bool {
    let Ok(header) = EspHeader::parse(esp) else {
        return false;
    };
    let held = sh.peer_by_spi(header.spi).is_none()
        && sh
            .early
            .hold(header.spi, esp, arrival, std::time::Instant::now());
    if held {
        bump(&sh.stats.rx_held_early, 1);
    }
    held
}

/// Finds the SA by SPI, checks the packet came from its peer the way the peer sends, and
/// opens it; returns the peer, the next header and where the decrypted payload lies.
fn open_one(
    sh: &Shared,
    buf: &mut [u8],
    esp: Range<usize>,
    arrival: Arrival,
    cache: &mut SpiCache,
) -> Option<(Arc<Peer>, u8, Range<usize>)> {
    let header = EspHeader::parse(&buf[esp.clone()]).ok()?;
    let peer = match cache {
        Some((spi, peer)) if *spi == header.spi => peer.clone(),
        _ => {
            let peer = sh.peer_by_spi(header.spi)?;
            *cache = Some((header.spi, peer.clone()));
            peer
        }
    };
    let via_udp = matches!(peer.cfg.encapsulation, Encapsulation::Udp { .. });
    if peer.addr != arrival.from || via_udp != arrival.port.is_some() {
        return None;
    }
    let opened = {
        let mut sas = lock(&peer.inbound);
        let sa = sas.iter_mut().find(|sa| sa.config().spi == header.spi)?;
        sa.open(&mut buf[esp.clone()]).ok()?
    };
    // Authentic: follow a NAT rebinding of the peer's port (RFC 3948 §3.1.1).
    if let Some(port) = arrival.port {
        peer.port.store(port, Ordering::Relaxed);
    }
    if opened.next_header == NEXT_HEADER_NONE {
        return None;
    }
    let payload = (esp.start + opened.payload.start)..(esp.start + opened.payload.end);
    Some((peer, opened.next_header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_reads_locate_esp_by_family() {
        // IPv4: the header comes with the packet and names the sender.
        let mut p = vec![0u8; 20 + 24];
        write_ipv4_header(
            &mut p,
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            50,
            24,
        )
        .unwrap();
        let (esp, from) = raw_esp(&p, false, None).unwrap();
        assert_eq!(
            (esp, from),
            (20..44, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
        );
        // IPv6: only ESP; the sender comes from recvmmsg, without which there is nothing.
        let peer: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(raw_esp(&p[20..], true, Some(peer)), Some((0..24, peer)));
        assert_eq!(raw_esp(&p[20..], true, None), None);
        assert_eq!(raw_esp(&[], false, None), None);
        assert_eq!(raw_esp(&p[..19], false, None), None);
    }

    #[test]
    fn random_reads_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..5000usize {
            let len = n % 120;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 0 && n % 3 == 0 {
                p[0] = if n % 2 == 0 { 0x45 } else { 0x60 };
            }
            let _ = raw_esp(&p, n % 2 == 0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            if let Some(h) = IpHeader::parse(&p) {
                assert!(h.header_len <= h.total_len && h.total_len <= p.len());
                let _ = h.transport(&p);
            }
        }
    }
}

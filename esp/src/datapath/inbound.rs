//! The inbound thread: sockets → SA by SPI → open → TUN.

use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::offload::{TcpCoalescer, VnetHdr, VNET_HDR_LEN};
use super::{bump, lock, sys, Encapsulation, Peer, Shared, BUF_LEN, POLL_MS, V4};
use crate::header::{EspHeader, NEXT_HEADER_IPV4, NEXT_HEADER_NONE};
use crate::ip::{write_ipv4_header, IpLayout, IpVersion, IPV4_HEADER_LEN};
use crate::udp_encap::{classify, Encapsulated};
use crate::Mode;

/// Room in front of a received ESP packet for the virtio and IPv4 headers we rebuild (the
/// 16 bytes of ESP header and IV cover the rest).
const HEADROOM: usize = 32;
/// Raw ESP has no GRO: one `recvmmsg` fills up to this many slots of `HEADROOM + BUF_LEN`.
const RAW_BATCH: usize = 16;
const SLOT_LEN: usize = HEADROOM + BUF_LEN;

/// The peer of the last SPI looked up, kept for the rest of one read (a GRO run is one flow,
/// nearly always one SA): a peer or SA removed meanwhile stops being served at the next read.
type SpiCache = Option<(u32, Arc<Peer>)>;

/// How an ESP packet reached us: its sender, and whether in UDP.
#[derive(Clone, Copy)]
struct Arrival {
    from: IpAddr,
    /// The sender's UDP port (ESP in UDP), or `None` (raw ESP).
    port: Option<u16>,
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
    while !sh.stop.load(Ordering::Relaxed) {
        let mut idle = true;
        if let Some(udp) = &sh.udp {
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
        if let Some(raw) = sh.raw_fd() {
            match sys::recvmmsg_slots(raw, &mut buf, SLOT_LEN, HEADROOM, &mut lens) {
                Ok(k) => {
                    idle = false;
                    if k > 1 {
                        bump(&st.rx_batched_reads, 1);
                    }
                    let mut cache = None;
                    for (i, &n) in lens.iter().enumerate().take(k) {
                        let slot = &mut buf[i * SLOT_LEN..(i + 1) * SLOT_LEN];
                        deliver_raw(sh, slot, n, &mut cache, &mut coalescer, &mut write_tun);
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
            let fds = [sh.udp.as_ref().map(|s| s.as_raw_fd()), sh.raw_fd()];
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

/// Delivers the raw IPv4 packet carrying ESP at `slot[HEADROOM..HEADROOM + n]` (`n` 0: empty
/// or truncated, which is dropped).
fn deliver_raw(
    sh: &Shared,
    slot: &mut [u8],
    n: usize,
    cache: &mut SpiCache,
    coalescer: &mut TcpCoalescer,
    write_tun: &mut impl FnMut(&[u8]),
) {
    let st = &sh.stats;
    bump(&st.rx_bytes, n as u64);
    let data = &slot[HEADROOM..HEADROOM + n];
    let esp = match IpLayout::parse(data) {
        Ok(l) if n > 0 && l.version == IpVersion::V4 => {
            (HEADROOM + l.header_len)..(HEADROOM + l.total_len)
        }
        _ => {
            bump(&st.rx_dropped, 1);
            return;
        }
    };
    let arrival = Arrival {
        from: IpAddr::V4(Ipv4Addr::new(data[12], data[13], data[14], data[15])),
        port: None,
    };
    deliver_esp(sh, slot, esp, arrival, cache, coalescer, write_tun);
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
    let Some((peer, next_header, payload)) = open_one(sh, buf, esp, arrival, cache) else {
        bump(&st.rx_dropped, 1);
        return;
    };
    let IpAddr::V4(peer4) = peer.addr else {
        bump(&st.rx_dropped, 1);
        return;
    };
    let (src, dst) = (peer4.octets(), sh.cfg.local.octets());
    match peer.cfg.mode {
        Mode::Transport => {
            if !peer.selected(next_header, &buf[payload.clone()], false) {
                bump(&st.rx_dropped, 1);
                return;
            }
            bump(&st.rx_packets, 1);
            if next_header == 6 && coalescer.add(&buf[payload.clone()], src, dst, write_tun) {
                return;
            }
            coalescer.flush(write_tun);
            // ESP header and IV (at least 16 bytes) plus headroom hold the virtio and IPv4
            // headers.
            let ip_start = payload.start - IPV4_HEADER_LEN;
            let vnet_start = ip_start - VNET_HDR_LEN;
            if write_ipv4_header(
                &mut buf[ip_start..payload.start],
                peer4,
                sh.cfg.local,
                next_header,
                payload.len(),
            )
            .is_err()
            {
                bump(&st.rx_dropped, 1);
                return;
            }
            VnetHdr::emit_data_valid(&mut buf[vnet_start..ip_start]);
            write_tun(&buf[vnet_start..payload.end]);
        }
        Mode::Tunnel => {
            // Host to host: the inner packet must be from the peer to us (RFC 4301 §5.2:
            // the inner header is checked against the SA's selectors).
            let inner = &buf[payload.clone()];
            let layout = match V4::parse(inner) {
                Some(l)
                    if next_header == NEXT_HEADER_IPV4
                        && l.src == peer4
                        && l.dst == sh.cfg.local =>
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
            // Only whole, option-less packets coalesce: the coalescer rebuilds a plain
            // header.
            if layout.protocol == 6
                && !layout.fragment
                && layout.header_len == IPV4_HEADER_LEN
                && coalescer.add(transport, src, dst, write_tun)
            {
                return;
            }
            coalescer.flush(write_tun);
            let vnet_start = payload.start - VNET_HDR_LEN;
            VnetHdr::emit_data_valid(&mut buf[vnet_start..payload.start]);
            write_tun(&buf[vnet_start..payload.start + layout.total_len]);
        }
    }
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

//! The outbound thread: TUN → peer lookup → seal → socket.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use super::offload::{complete_checksum, Tcp4Super, VnetHdr, VNET_HDR_LEN};
use super::{bump, lock, sys, Encapsulation, IpHeader, Peer, Shared, BUF_LEN, POLL_MS};
use crate::{Mode, MAX_OVERHEAD};

/// A UDP GSO send carries at most 64 segments and one IP datagram's worth of bytes.
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65000;
/// Room for the sealed segments of one TSO packet (64 KiB of payload at an MSS down to
/// about 500 bytes, plus inner IP headers in tunnel mode).
const ARENA_LEN: usize = 256 * 1024;

/// Where one peer's ESP goes.
#[derive(Clone, Copy)]
enum Dest<'a> {
    Udp(&'a UdpSocket, SocketAddr),
    Raw(RawFd, IpAddr),
}

impl Dest<'_> {
    fn of<'a>(sh: &'a Shared, peer: &Peer) -> Option<Dest<'a>> {
        match peer.cfg.encapsulation {
            Encapsulation::Udp { .. } => Some(Dest::Udp(sh.udp_for(peer.addr)?, peer.udp_addr())),
            Encapsulation::Raw => Some(Dest::Raw(sh.raw_for(peer.addr)?, peer.addr)),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Dest::Udp(s, _) => s.as_raw_fd(),
            Dest::Raw(fd, _) => *fd,
        }
    }
}

pub(super) fn tx_loop(sh: &Shared, tun: &File) {
    let mut pkt = vec![0u8; VNET_HDR_LEN + BUF_LEN];
    let mut arena = vec![0u8; ARENA_LEN.max(BUF_LEN + MAX_OVERHEAD)];
    let mut gso = true;
    let st = &sh.stats;
    while !sh.stop.load(Ordering::Relaxed) {
        let n = match (&*tun).read(&mut pkt) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = sys::wait_readable(tun.as_raw_fd(), POLL_MS);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                bump(&st.tx_errors, 1);
                let _ = sys::wait_readable(tun.as_raw_fd(), POLL_MS);
                continue;
            }
        };
        let Some(hdr) = VnetHdr::parse(&pkt[..n]) else {
            bump(&st.tx_dropped, 1);
            continue;
        };
        let packet = &mut pkt[VNET_HDR_LEN..n];
        let Some(layout) = IpHeader::parse(packet) else {
            bump(&st.tx_dropped, 1);
            continue;
        };
        let Some(peer) = sh.peer_by_addr(layout.dst) else {
            bump(&st.tx_dropped, 1);
            continue;
        };
        let tunnel = peer.cfg.mode == Mode::Tunnel;
        if (layout.fragment && !tunnel)
            || !peer.selected(layout.protocol, layout.transport(packet), true)
        {
            bump(&st.tx_dropped, 1);
            continue;
        }
        let Some(dest) = Dest::of(sh, &peer) else {
            bump(&st.tx_dropped, 1);
            continue;
        };

        let tso = hdr.is_tcp4_gso() && layout.dst.is_ipv4() && !layout.fragment;
        if hdr.gso_type != 0 && !tso {
            // A segmentation request we did not offer (we ask for TCP/IPv4 only).
            bump(&st.tx_dropped, 1);
            continue;
        }
        if tso {
            let Some(sup) = Tcp4Super::new(packet, hdr.gso_size) else {
                bump(&st.tx_dropped, 1);
                continue;
            };
            bump(&st.tx_tso_packets, 1);
            let count = sup.segments();
            let mut sealed = 0;
            let mut last_len = 0;
            let stride;
            {
                let mut guard = lock(&peer.outbound);
                let Some(sa) = guard.as_mut() else {
                    drop(guard);
                    bump(&st.tx_dropped, 1);
                    continue;
                };
                let off = sa.payload_offset();
                let inner = if tunnel {
                    sup.max_packet_len()
                } else {
                    sup.max_segment_len()
                };
                stride = sa.sealed_len(inner);
                if count * stride > arena.len() {
                    drop(guard);
                    bump(&st.tx_dropped, 1);
                    continue;
                }
                let next_header = if tunnel {
                    layout.tunnel_next_header()
                } else {
                    layout.protocol
                };
                for i in 0..count {
                    let slot = &mut arena[i * stride..(i + 1) * stride];
                    let written = if tunnel {
                        sup.write_packet(packet, i, &mut slot[off..])
                    } else {
                        sup.write_segment(packet, i, &mut slot[off..])
                    };
                    let Some(len) = written else {
                        break;
                    };
                    match sa.seal_in_place(next_header, slot, len) {
                        Ok(len) => {
                            last_len = len;
                            sealed += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            if sealed < count {
                bump(&st.tx_errors, (count - sealed) as u64);
            }
            if sealed > 0 {
                send_segments(sh, dest, &mut gso, &arena, stride, sealed, last_len);
            }
            continue;
        }

        // A single packet whose checksum the stack left to us.
        if hdr.needs_csum() && !complete_checksum(packet, &hdr) {
            bump(&st.tx_dropped, 1);
            continue;
        }
        let sealed = {
            let mut guard = lock(&peer.outbound);
            let Some(sa) = guard.as_mut() else {
                drop(guard);
                bump(&st.tx_dropped, 1);
                continue;
            };
            if tunnel {
                let next_header = layout.tunnel_next_header();
                sa.seal(next_header, &packet[..layout.total_len], &mut arena)
            } else {
                let transport = &packet[layout.header_len..layout.total_len];
                sa.seal(layout.protocol, transport, &mut arena)
            }
        };
        let len = match sealed {
            Ok(len) => len,
            Err(_) => {
                bump(&st.tx_errors, 1);
                continue;
            }
        };
        match send_one(sh, dest, &arena[..len]) {
            Ok(_) => {
                bump(&st.tx_packets, 1);
                bump(&st.tx_bytes, len as u64);
            }
            Err(_) => bump(&st.tx_errors, 1),
        }
    }
}

/// Sends one ESP packet, waiting for socket buffer space (back-pressure to the TUN queue)
/// rather than dropping.
fn send_one(sh: &Shared, dest: Dest<'_>, esp: &[u8]) -> io::Result<usize> {
    loop {
        let r = match dest {
            Dest::Udp(s, to) => s.send_to(esp, to),
            Dest::Raw(fd, to) => sys::send_to_raw(fd, esp, to),
        };
        match &r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !sh.stop.load(Ordering::Relaxed) => {
                let _ = sys::wait_writable(dest.fd(), POLL_MS);
            }
            _ => return r,
        }
    }
}

/// Sends `count` sealed segments laid out at `stride` in `arena` (the last one `last_len`
/// long): with UDP GSO in as few `sendmsg` calls as the 64 KiB datagram limit allows, raw
/// ESP in `sendmmsg` runs, else one by one. A GSO failure other than a full buffer turns
/// GSO off for good.
fn send_segments(
    sh: &Shared,
    dest: Dest<'_>,
    gso: &mut bool,
    arena: &[u8],
    stride: usize,
    count: usize,
    last_len: usize,
) {
    let st = &sh.stats;
    let seg_len = |i: usize| if i + 1 == count { last_len } else { stride };
    let per_send = (GSO_MAX_BYTES / stride).clamp(1, GSO_MAX_SEGMENTS);
    let mut first = 0;
    while first < count {
        let n = per_send.min(count - first);
        let bytes = &arena[first * stride..(first + n - 1) * stride + seg_len(first + n - 1)];
        match dest {
            Dest::Udp(s, to) if *gso && n > 1 => {
                if let Ok(seg) = u16::try_from(stride) {
                    loop {
                        match sys::send_gso(s.as_raw_fd(), bytes, seg, to) {
                            Ok(_) => {
                                bump(&st.tx_gso_segments, n as u64);
                                bump(&st.tx_packets, n as u64);
                                bump(&st.tx_bytes, bytes.len() as u64);
                                first += n;
                                break;
                            }
                            Err(e)
                                if e.kind() == io::ErrorKind::WouldBlock
                                    && !sh.stop.load(Ordering::Relaxed) =>
                            {
                                let _ = sys::wait_writable(s.as_raw_fd(), POLL_MS);
                            }
                            Err(_) => {
                                *gso = false;
                                break;
                            }
                        }
                    }
                } else {
                    *gso = false;
                }
                continue;
            }
            Dest::Raw(fd, to) => {
                // Raw ESP has no GSO: hand the kernel the whole run in one sendmmsg.
                let mut slices: [&[u8]; sys::MMSG_MAX] = [&[]; sys::MMSG_MAX];
                let k = n.min(sys::MMSG_MAX);
                for (j, slot) in slices.iter_mut().enumerate().take(k) {
                    let at = (first + j) * stride;
                    *slot = &arena[at..at + seg_len(first + j)];
                }
                let mut sent = 0;
                while sent < k {
                    match sys::sendmmsg_raw(fd, &slices[sent..k], to) {
                        Ok(m) if m > 0 => sent += m,
                        Err(e)
                            if e.kind() == io::ErrorKind::WouldBlock
                                && !sh.stop.load(Ordering::Relaxed) =>
                        {
                            let _ = sys::wait_writable(fd, POLL_MS);
                        }
                        _ => break,
                    }
                }
                let sent_bytes: usize = slices[..sent].iter().map(|b| b.len()).sum();
                bump(&st.tx_packets, sent as u64);
                bump(&st.tx_bytes, sent_bytes as u64);
                bump(&st.tx_errors, (k - sent) as u64);
                first += k;
            }
            Dest::Udp(..) => {
                for i in first..first + n {
                    let at = i * stride;
                    match send_one(sh, dest, &arena[at..at + seg_len(i)]) {
                        Ok(_) => {
                            bump(&st.tx_packets, 1);
                            bump(&st.tx_bytes, seg_len(i) as u64);
                        }
                        Err(_) => bump(&st.tx_errors, 1),
                    }
                }
                first += n;
            }
        }
    }
}

//! The userspace ESP datapath for hosts whose kernel has no ESP transform (Linux only).
//!
//! This is the I/O shell around the sans-IO [`OutboundSa`]/[`InboundSa`], in the spirit of
//! boringtun's `device/` around `noise/`:
//!
//! - **Capture.** A TUN device receives the packets the local stack sends to the peer:
//!   policy-routing rules send traffic to `peer/32` (narrowed by the traffic selectors) to a
//!   private table whose only route goes through the TUN. Our own sockets carry a firewall
//!   mark that a higher-priority rule sends to the main table, so ESP never loops back into
//!   the TUN (see [`routing`](self) for the exact layout).
//! - **Outbound.** Each captured IPv4 packet is sealed in transport mode — its transport
//!   payload becomes the ESP payload, its protocol the next header — and the ESP packet is
//!   sent from a marked UDP socket to the peer's port 4500 (RFC 3948; what IBM Cloud
//!   requires), or from a raw protocol-50 socket.
//! - **Inbound.** ESP received on that socket is opened in place; the IP header is rebuilt
//!   with source = peer, destination = us and protocol = the next header, and the packet is
//!   written to the TUN, from where the local stack delivers it to the application. The TUN
//!   gets `rp_filter = 2` (loose), because the route back to the peer is not the TUN for
//!   unmarked lookups of every flow.
//! - **Inbound policy.** Cleartext from the peer on a protected selector is dropped unless it
//!   came in through the TUN (nftables, see [`inbound_policy`](self)), as kernel XFRM's
//!   inbound policy would drop it.
//! - **Teardown.** Rules, the nftables table, the table's routes and the TUN are removed on shutdown or drop, and
//!   [`Datapath::start`] first removes anything a crashed predecessor left with the same
//!   names and numbers.
//!
//! One thread moves packets in each direction, draining every ready packet before it
//! sleeps in `poll(2)`. Offloads keep the per-packet system-call count low (the wireguard-go
//! recipe): the TUN runs with a virtio-net header and TCP segmentation offload, so one read
//! returns up to 64 KiB of a TCP flow that we segment ourselves right before sealing
//! ([`offload`](self)); the sealed segments leave in one `sendmsg` with UDP GSO; inbound,
//! UDP GRO hands us a run of datagrams per read (raw ESP: one `recvmmsg` takes up to 16
//! packets), whose TCP segments are coalesced back into one TSO packet per TUN write;
//! delivered packets are marked `DATA_VALID` (or `NEEDS_CSUM` when coalesced) so the stack
//! does not verify transport checksums that ESP already authenticated. Each offload falls back to the plain path where the kernel lacks it.
//! IPv4 only for now.

mod inbound_policy;
mod offload;
mod routing;
mod sys;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::header::{EspHeader, NEXT_HEADER_NONE};
use crate::ip::{write_ipv4_header, IpLayout, IpVersion, IPV4_HEADER_LEN};
use crate::udp_encap::{classify, Encapsulated, NAT_T_PORT};
use crate::{Event, InboundSa, OutboundSa, MAX_OVERHEAD};

use offload::{complete_checksum, Tcp4Super, TcpCoalescer, VnetHdr, VNET_HDR_LEN};

/// How ESP packets travel between the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    /// ESP in UDP (RFC 3948), from `local_port` to `peer_port` (both normally 4500).
    Udp {
        /// Our UDP port.
        local_port: u16,
        /// The peer's UDP port; updated when authentic packets arrive from another port
        /// (a NAT rebinding, RFC 3948 §3.1.1).
        peer_port: u16,
    },
    /// Plain ESP, IP protocol 50, on a raw socket.
    Raw,
}

/// Which traffic to the peer the SA protects (a transport-mode traffic selector seen from
/// this host). `None` fields match anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// IP protocol (6 TCP, 17 UDP …).
    pub protocol: Option<u8>,
    /// Our port.
    pub local_port: Option<u16>,
    /// The peer's port.
    pub remote_port: Option<u16>,
}

impl Selector {
    fn matches(&self, protocol: u8, ports: Option<(u16, u16)>, outbound: bool) -> bool {
        if self.protocol.is_some_and(|p| p != protocol) {
            return false;
        }
        if self.local_port.is_none() && self.remote_port.is_none() {
            return true;
        }
        let Some((src, dst)) = ports else {
            return false;
        };
        let (local, remote) = if outbound { (src, dst) } else { (dst, src) };
        self.local_port.map_or(true, |p| p == local)
            && self.remote_port.map_or(true, |p| p == remote)
    }
}

/// The datapath's parameters; every number names something the datapath owns and removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathConfig {
    /// TUN interface name (≤ 15 bytes).
    pub tun_name: String,
    /// Our address (inner source of outbound traffic, outer source of ESP).
    pub local: Ipv4Addr,
    /// The peer's address.
    pub peer: Ipv4Addr,
    /// UDP (NAT-T) or raw ESP.
    pub encapsulation: Encapsulation,
    /// What to protect; empty means all traffic to the peer.
    pub selectors: Vec<Selector>,
    /// Firewall mark of our sockets; IKE sockets of the daemon must carry it too.
    pub mark: u32,
    /// Routing table holding the route into the TUN.
    pub table: u32,
    /// Priority of the first of our rules; we use `rule_priority ..= rule_priority + 1 +
    /// selectors`.
    pub rule_priority: u32,
    /// TUN MTU: the path MTU minus outer IPv4 (20), UDP (8) and ESP (at most 37) overhead.
    pub mtu: u16,
    /// The nftables table (family `inet`) that holds our inbound policy: cleartext from the
    /// peer matching a selector is dropped unless it came in through the TUN. The table is
    /// ours alone: replaced at start, deleted at shutdown. Like `tun_name`, `table` and
    /// `rule_priority`, it must differ between datapaths running on one host at once.
    pub nft_table: String,
    /// **Unsafe.** Start even when the inbound policy cannot be installed (no `nft` binary or
    /// no nf_tables in the kernel). Cleartext from the peer on protected selectors is then
    /// delivered like protected traffic, so an on-path attacker can inject plaintext that
    /// the application takes as authenticated. Off by default.
    pub allow_unprotected_inbound: bool,
}

impl DatapathConfig {
    /// Defaults: TUN `ibmipsec0`, UDP 4500 ↔ 4500, mark 0x1e5, table 0x1e5, rules from
    /// priority 10500, MTU 1400, all traffic to the peer.
    pub fn new(local: Ipv4Addr, peer: Ipv4Addr) -> Self {
        DatapathConfig {
            tun_name: "ibmipsec0".into(),
            local,
            peer,
            encapsulation: Encapsulation::Udp {
                local_port: NAT_T_PORT,
                peer_port: NAT_T_PORT,
            },
            selectors: Vec::new(),
            mark: 0x1e5,
            table: 0x1e5,
            rule_priority: 10500,
            mtu: 1400,
            nft_table: "ibm_ipsec".into(),
            allow_unprotected_inbound: false,
        }
    }
}

/// Packet counts of the datapath itself (SA counters are separate: [`Datapath::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Packets sealed and sent.
    pub tx_packets: u64,
    /// Bytes of ESP sent.
    pub tx_bytes: u64,
    /// Captured packets dropped: not IPv4 to the peer, outside every selector, or
    /// unparseable.
    pub tx_dropped: u64,
    /// Packets that could not be sealed or sent (expired SA, socket errors).
    pub tx_errors: u64,
    /// Packets opened and delivered to the TUN.
    pub rx_packets: u64,
    /// Bytes of ESP received.
    pub rx_bytes: u64,
    /// Received packets dropped: unknown SPI, failed checks (see the SA counters), outside
    /// every selector, dummy packets, or not from the peer.
    pub rx_dropped: u64,
    /// Datagrams on the NAT-T port that were IKE or keepalives (not handled here).
    pub rx_non_esp: u64,
    /// TCP super-packets (TUN segmentation offload) split into segments here.
    pub tx_tso_packets: u64,
    /// Segments sent with UDP GSO (several datagrams per `sendmsg`).
    pub tx_gso_segments: u64,
    /// Socket reads that returned several coalesced datagrams (UDP GRO).
    pub rx_gro_reads: u64,
    /// `recvmmsg` calls on the raw ESP socket that returned more than one packet.
    pub rx_batched_reads: u64,
}

#[derive(Default)]
struct AtomicStats {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    tx_errors: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
    rx_non_esp: AtomicU64,
    tx_tso_packets: AtomicU64,
    tx_gso_segments: AtomicU64,
    rx_gro_reads: AtomicU64,
    rx_batched_reads: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// How many inbound SAs are kept at once: the current one and the previous during a rekey.
const MAX_INBOUND_SAS: usize = 4;
const POLL_MS: i32 = 100;
const BUF_LEN: usize = 65536;
/// Room in front of a received ESP packet for the virtio and IPv4 headers we rebuild (the
/// 16 bytes of ESP header and IV cover the rest).
const HEADROOM: usize = 32;

struct Shared {
    cfg: DatapathConfig,
    stop: AtomicBool,
    outbound: Mutex<OutboundSa>,
    inbound: Mutex<Vec<InboundSa>>,
    peer_port: AtomicU16,
    stats: AtomicStats,
    ike_sink: Mutex<Option<IkeSink>>,
    /// Whether our nftables inbound policy is installed.
    inbound_policy: bool,
}

/// Where IKE messages received on the NAT-T socket go: (sender, message without the non-ESP
/// marker).
pub type IkeSink = std::sync::mpsc::Sender<(SocketAddrV4, Vec<u8>)>;

enum Socket {
    Udp(UdpSocket),
    Raw(OwnedFd),
}

impl Socket {
    fn fd(&self) -> i32 {
        match self {
            Socket::Udp(s) => s.as_raw_fd(),
            Socket::Raw(s) => s.as_raw_fd(),
        }
    }
}

impl Shared {
    fn peer_udp(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.cfg.peer, self.peer_port.load(Ordering::Relaxed))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in the other thread must not take this direction down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running userspace datapath. Dropping it stops the threads and removes the TUN, rules
/// and routes.
pub struct Datapath {
    shared: Arc<Shared>,
    socket: Arc<Socket>,
    threads: Vec<JoinHandle<()>>,
    cleaned: bool,
}

impl Datapath {
    /// Removes what a previous run with this configuration may have left behind.
    pub fn cleanup_stale(cfg: &DatapathConfig) {
        routing::remove(cfg);
        inbound_policy::remove(cfg);
    }

    /// Creates the TUN, installs routing and the inbound policy, and starts moving packets
    /// with the given SA pair. Needs CAP_NET_ADMIN (and CAP_NET_RAW for
    /// [`Encapsulation::Raw`]).
    ///
    /// Fails with [`io::ErrorKind::Unsupported`] when the inbound policy cannot be installed
    /// (see [`DatapathConfig::allow_unprotected_inbound`]).
    pub fn start(
        cfg: DatapathConfig,
        outbound: OutboundSa,
        inbound: InboundSa,
    ) -> io::Result<Self> {
        Self::cleanup_stale(&cfg);
        // The policy goes in before any route sends traffic our way, so there is no window
        // in which the peer's cleartext is accepted on a protected selector.
        let inbound_policy = match inbound_policy::install(&cfg) {
            Ok(()) => true,
            Err(e) if cfg.allow_unprotected_inbound && e.kind() == io::ErrorKind::Unsupported => {
                false
            }
            Err(e) => return Err(e),
        };
        let names = cfg.clone();
        let started = Self::start_datapath(cfg, outbound, inbound, inbound_policy);
        if started.is_err() {
            Self::cleanup_stale(&names);
        }
        started
    }

    fn start_datapath(
        cfg: DatapathConfig,
        outbound: OutboundSa,
        inbound: InboundSa,
        inbound_policy: bool,
    ) -> io::Result<Self> {
        let (tun, _offloads) = sys::open_tun(&cfg.tun_name)?;
        sys::set_nonblocking(tun.as_raw_fd())?;
        let (socket, peer_port) = match cfg.encapsulation {
            Encapsulation::Udp {
                local_port,
                peer_port,
            } => {
                let s = UdpSocket::bind(SocketAddrV4::new(cfg.local, local_port))?;
                s.set_nonblocking(true)?;
                sys::enable_udp_gro(s.as_raw_fd());
                (Socket::Udp(s), peer_port)
            }
            Encapsulation::Raw => {
                let s = sys::raw_esp_socket()?;
                sys::set_nonblocking(s.as_raw_fd())?;
                (Socket::Raw(s), 0)
            }
        };
        sys::set_mark(socket.fd(), cfg.mark)?;
        sys::set_buffers(socket.fd(), 4 << 20);
        routing::install(&cfg)?;
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            outbound: Mutex::new(outbound),
            inbound: Mutex::new(vec![inbound]),
            peer_port: AtomicU16::new(peer_port),
            stats: AtomicStats::default(),
            ike_sink: Mutex::new(None),
            inbound_policy,
        });
        let tun = Arc::new(tun);
        let socket = Arc::new(socket);
        let mut threads = Vec::new();
        for outbound_dir in [true, false] {
            let (sh, t, so) = (shared.clone(), tun.clone(), socket.clone());
            let name = if outbound_dir { "esp-tx" } else { "esp-rx" };
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    if outbound_dir {
                        tx_loop(&sh, &t, &so)
                    } else {
                        rx_loop(&sh, &t, &so)
                    }
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    let mut dp = Datapath {
                        shared,
                        socket,
                        threads,
                        cleaned: false,
                    };
                    dp.stop();
                    return Err(e);
                }
            }
        }
        Ok(Datapath {
            shared,
            socket,
            threads,
            cleaned: false,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DatapathConfig {
        &self.shared.cfg
    }

    /// Whether cleartext from the peer on protected selectors is being dropped (false only
    /// when started with [`DatapathConfig::allow_unprotected_inbound`] on a host without
    /// nftables); the daemon should report it.
    pub fn inbound_policy_enforced(&self) -> bool {
        self.shared.inbound_policy
    }

    /// Rekey in one step: [`add_inbound`](Self::add_inbound) then
    /// [`set_outbound`](Self::set_outbound). A rekey between two hosts loses no packet when
    /// both add their new inbound SA before either switches outbound, as IKE orders it
    /// (RFC 7296 §2.8): use the two calls separately for that.
    pub fn install_sas(&self, outbound: OutboundSa, inbound: InboundSa) {
        self.add_inbound(inbound);
        self.set_outbound(outbound);
    }

    /// Adds an inbound SA (replacing one with the same SPI). Older SAs keep working, so
    /// packets still in flight under them are accepted until
    /// [`remove_inbound`](Self::remove_inbound); beyond four, the oldest is dropped.
    pub fn add_inbound(&self, inbound: InboundSa) {
        let mut v = lock(&self.shared.inbound);
        v.retain(|sa| sa.config().spi != inbound.config().spi);
        v.push(inbound);
        while v.len() > MAX_INBOUND_SAS {
            v.remove(0);
        }
    }

    /// Switches outbound traffic to a new SA at once.
    pub fn set_outbound(&self, outbound: OutboundSa) {
        *lock(&self.shared.outbound) = outbound;
    }

    /// Forwards IKE messages that arrive on the NAT-T socket (IKE and ESP share port 4500,
    /// RFC 3948 §2.2) to `sink`, with the non-ESP marker removed.
    pub fn set_ike_sink(&self, sink: IkeSink) {
        *lock(&self.shared.ike_sink) = Some(sink);
    }

    /// Sends an IKE message to the peer from the NAT-T socket, behind the non-ESP marker.
    /// Fails with `Unsupported` on a raw-ESP datapath, whose IKE runs on its own socket.
    pub fn send_ike(&self, msg: &[u8]) -> io::Result<()> {
        let Socket::Udp(s) = &*self.socket else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let mut framed = vec![0u8; msg.len() + crate::udp_encap::NON_ESP_MARKER.len()];
        crate::udp_encap::frame_ike(msg, &mut framed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        s.send_to(&framed, self.shared.peer_udp()).map(|_| ())
    }

    /// Sends a NAT keepalive (RFC 3948 §2.3); the daemon's timer decides when.
    pub fn send_keepalive(&self) -> io::Result<()> {
        let Socket::Udp(s) = &*self.socket else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        s.send_to(&crate::udp_encap::NAT_KEEPALIVE, self.shared.peer_udp())
            .map(|_| ())
    }

    /// Forgets the inbound SA with this SPI.
    pub fn remove_inbound(&self, spi: u32) {
        lock(&self.shared.inbound).retain(|sa| sa.config().spi != spi);
    }

    /// Counters of the datapath.
    pub fn stats(&self) -> DatapathStats {
        let s = &self.shared.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DatapathStats {
            tx_packets: g(&s.tx_packets),
            tx_bytes: g(&s.tx_bytes),
            tx_dropped: g(&s.tx_dropped),
            tx_errors: g(&s.tx_errors),
            rx_packets: g(&s.rx_packets),
            rx_bytes: g(&s.rx_bytes),
            rx_dropped: g(&s.rx_dropped),
            rx_non_esp: g(&s.rx_non_esp),
            tx_tso_packets: g(&s.tx_tso_packets),
            tx_gso_segments: g(&s.tx_gso_segments),
            rx_gro_reads: g(&s.rx_gro_reads),
            rx_batched_reads: g(&s.rx_batched_reads),
        }
    }

    /// Counters of the outbound SA and of each inbound SA (with its SPI).
    pub fn counters(&self) -> (crate::Counters, Vec<(u32, crate::Counters)>) {
        let o = lock(&self.shared.outbound).counters();
        let i = lock(&self.shared.inbound)
            .iter()
            .map(|sa| (sa.config().spi, sa.counters()))
            .collect();
        (o, i)
    }

    /// The next lifetime event of any SA, with its SPI, so the daemon can rekey.
    pub fn poll_event(&self) -> Option<(u32, Event)> {
        {
            let mut o = lock(&self.shared.outbound);
            if let Some(e) = o.poll_event() {
                return Some((o.config().spi, e));
            }
        }
        lock(&self.shared.inbound)
            .iter_mut()
            .find_map(|sa| sa.poll_event().map(|e| (sa.config().spi, e)))
    }

    /// Stops the threads, removes the TUN, rules and routes, and returns the final counts.
    pub fn shutdown(mut self) -> DatapathStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if !self.cleaned {
            self.cleaned = true;
            Self::cleanup_stale(&self.shared.cfg);
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("setup", &routing::describe(&self.shared.cfg))
            .field("inbound_policy", &self.shared.inbound_policy)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Source and destination ports of TCP, UDP, SCTP and UDP-Lite, whose first four bytes
/// are the ports.
fn ports(protocol: u8, transport: &[u8]) -> Option<(u16, u16)> {
    match (protocol, transport) {
        (6 | 17 | 132 | 136, [a, b, c, d, ..]) => {
            Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
        }
        _ => None,
    }
}

fn selected(cfg: &DatapathConfig, protocol: u8, transport: &[u8], outbound: bool) -> bool {
    cfg.selectors.is_empty()
        || cfg
            .selectors
            .iter()
            .any(|s| s.matches(protocol, ports(protocol, transport), outbound))
}

/// Sends one ESP packet, waiting for socket buffer space (back-pressure to the TUN queue)
/// rather than dropping.
fn send_one(sh: &Shared, socket: &Socket, esp: &[u8]) -> io::Result<usize> {
    loop {
        let r = match socket {
            Socket::Udp(s) => s.send_to(esp, sh.peer_udp()),
            Socket::Raw(fd) => sys::send_to_v4(fd.as_raw_fd(), esp, sh.cfg.peer),
        };
        match &r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !sh.stop.load(Ordering::Relaxed) => {
                let _ = sys::wait_writable(socket.fd(), POLL_MS);
            }
            _ => return r,
        }
    }
}

/// Sends `count` sealed segments laid out at `stride` in `arena` (the last one `last_len`
/// long): with UDP GSO in as few `sendmsg` calls as the 64 KiB datagram limit allows, else
/// one by one. A GSO failure other than a full buffer turns GSO off for good.
fn send_segments(
    sh: &Shared,
    socket: &Socket,
    gso: &mut bool,
    arena: &[u8],
    stride: usize,
    count: usize,
    last_len: usize,
) {
    let st = &sh.stats;
    let per_send = (GSO_MAX_BYTES / stride).clamp(1, GSO_MAX_SEGMENTS);
    let mut first = 0;
    while first < count {
        let n = per_send.min(count - first);
        let end_len = if first + n == count { last_len } else { stride };
        let bytes = &arena[first * stride..(first + n - 1) * stride + end_len];
        let mut done = false;
        if *gso && n > 1 {
            if let (Socket::Udp(s), Ok(seg)) = (socket, u16::try_from(stride)) {
                loop {
                    match sys::send_gso(s.as_raw_fd(), bytes, seg, sh.peer_udp()) {
                        Ok(_) => {
                            done = true;
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
            }
        }
        if !done {
            if let Socket::Raw(fd) = socket {
                // Raw ESP has no GSO: hand the kernel the whole run in one sendmmsg.
                let mut slices: [&[u8]; sys::MMSG_MAX] = [&[]; sys::MMSG_MAX];
                let k = n.min(sys::MMSG_MAX);
                for (j, slot) in slices.iter_mut().enumerate().take(k) {
                    let len = if first + j + 1 == count {
                        last_len
                    } else {
                        stride
                    };
                    let at = (first + j) * stride;
                    *slot = &arena[at..at + len];
                }
                let mut sent = 0;
                while sent < k {
                    match sys::sendmmsg_v4(fd.as_raw_fd(), &slices[sent..k], sh.cfg.peer) {
                        Ok(m) if m > 0 => sent += m,
                        Err(e)
                            if e.kind() == io::ErrorKind::WouldBlock
                                && !sh.stop.load(Ordering::Relaxed) =>
                        {
                            let _ = sys::wait_writable(fd.as_raw_fd(), POLL_MS);
                        }
                        _ => break,
                    }
                }
                let bytes: usize = slices[..sent].iter().map(|b| b.len()).sum();
                bump(&st.tx_packets, sent as u64);
                bump(&st.tx_bytes, bytes as u64);
                bump(&st.tx_errors, (k - sent) as u64);
                first += k;
                continue;
            }
        }
        if done {
            bump(&st.tx_gso_segments, n as u64);
            bump(&st.tx_packets, n as u64);
            bump(&st.tx_bytes, bytes.len() as u64);
        } else {
            for k in 0..n {
                let len = if first + k + 1 == count {
                    last_len
                } else {
                    stride
                };
                let at = (first + k) * stride;
                match send_one(sh, socket, &arena[at..at + len]) {
                    Ok(_) => {
                        bump(&st.tx_packets, 1);
                        bump(&st.tx_bytes, len as u64);
                    }
                    Err(_) => bump(&st.tx_errors, 1),
                }
            }
        }
        first += n;
    }
}

/// A UDP GSO send carries at most 64 segments and one IP datagram's worth of bytes.
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65000;
/// Room for the sealed segments of one TSO packet (64 KiB of payload at an MSS down to
/// about 500 bytes).
const ARENA_LEN: usize = 256 * 1024;

fn tx_loop(sh: &Shared, tun: &File, socket: &Socket) {
    let mut pkt = vec![0u8; VNET_HDR_LEN + BUF_LEN];
    let mut arena = vec![0u8; ARENA_LEN.max(BUF_LEN + MAX_OVERHEAD)];
    let mut gso = matches!(socket, Socket::Udp(_));
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
        let layout = match IpLayout::parse(packet) {
            Ok(l) if l.version == IpVersion::V4 && packet[16..20] == sh.cfg.peer.octets() => l,
            _ => {
                bump(&st.tx_dropped, 1);
                continue;
            }
        };
        if !selected(
            &sh.cfg,
            layout.protocol,
            &packet[layout.header_len..layout.total_len],
            true,
        ) {
            bump(&st.tx_dropped, 1);
            continue;
        }

        if hdr.is_tcp4_gso() {
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
                let mut sa = lock(&sh.outbound);
                let off = sa.payload_offset();
                stride = sa.sealed_len(sup.max_segment_len());
                if count * stride > arena.len() {
                    drop(sa);
                    bump(&st.tx_dropped, 1);
                    continue;
                }
                for i in 0..count {
                    let slot = &mut arena[i * stride..(i + 1) * stride];
                    let Some(seg_len) = sup.write_segment(packet, i, &mut slot[off..]) else {
                        break;
                    };
                    match sa.seal_in_place(layout.protocol, slot, seg_len) {
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
                send_segments(sh, socket, &mut gso, &arena, stride, sealed, last_len);
            }
            continue;
        }

        // A single packet whose checksum the stack left to us.
        if hdr.needs_csum() && !complete_checksum(packet, &hdr) {
            bump(&st.tx_dropped, 1);
            continue;
        }
        let transport = &packet[layout.header_len..layout.total_len];
        let sealed = lock(&sh.outbound).seal(layout.protocol, transport, &mut arena);
        let len = match sealed {
            Ok(len) => len,
            Err(_) => {
                bump(&st.tx_errors, 1);
                continue;
            }
        };
        match send_one(sh, socket, &arena[..len]) {
            Ok(_) => {
                bump(&st.tx_packets, 1);
                bump(&st.tx_bytes, len as u64);
            }
            Err(_) => bump(&st.tx_errors, 1),
        }
    }
}

/// Raw ESP has no GRO: one `recvmmsg` fills up to this many slots of `HEADROOM + BUF_LEN`.
const RAW_BATCH: usize = 16;
const SLOT_LEN: usize = HEADROOM + BUF_LEN;

fn rx_loop(sh: &Shared, tun: &File, socket: &Socket) {
    let slots = match socket {
        Socket::Udp(_) => 1,
        Socket::Raw(_) => RAW_BATCH,
    };
    let mut buf = vec![0u8; slots * SLOT_LEN];
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
        // (slots filled, GRO segment size, sender)
        let received = match socket {
            Socket::Udp(s) => {
                sys::recv_gro(s.as_raw_fd(), &mut buf[HEADROOM..]).map(|(n, seg, from)| {
                    lens[0] = n;
                    (1, seg, Some(from))
                })
            }
            Socket::Raw(fd) => {
                sys::recvmmsg_slots(fd.as_raw_fd(), &mut buf, SLOT_LEN, HEADROOM, &mut lens)
                    .map(|k| (k, None, None))
            }
        };
        let (k, seg, from) = match received {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing more queued: deliver what is held before sleeping. Holding segments
                // across reads lets coalescing work even when each read brings one packet
                // (raw ESP, or UDP without GRO); while packets keep coming, the coalescer
                // flushes itself when full or when the flow's run ends.
                coalescer.flush(&mut write_tun);
                let _ = sys::wait_readable(socket.fd(), POLL_MS);
                continue;
            }
            Err(_) => continue,
        };
        if k > 1 {
            bump(&st.rx_batched_reads, 1);
        }
        for (i, &n) in lens.iter().enumerate().take(k) {
            if n == 0 {
                // Empty or truncated (larger than a slot): not an ESP packet we can open.
                bump(&st.rx_dropped, 1);
                continue;
            }
            let slot = &mut buf[i * SLOT_LEN..(i + 1) * SLOT_LEN];
            deliver_read(sh, slot, n, seg, from, &mut coalescer, &mut write_tun);
        }
    }
    coalescer.flush(&mut write_tun);
}

/// Opens and delivers what one read left at `slot[HEADROOM..HEADROOM + n]`.
fn deliver_read(
    sh: &Shared,
    buf: &mut [u8],
    n: usize,
    seg: Option<usize>,
    from: Option<SocketAddrV4>,
    coalescer: &mut TcpCoalescer,
    write_tun: &mut impl FnMut(&[u8]),
) {
    let st = &sh.stats;
    let (peer, local) = (sh.cfg.peer.octets(), sh.cfg.local.octets());
    bump(&st.rx_bytes, n as u64);
    // With UDP GRO one read holds several datagrams of `seg` bytes (the last may be
    // shorter). Each is opened in turn; consecutive TCP segments are coalesced into one
    // TUN write, anything else is written on its own (after what is held, keeping order).
    // The headers built for one datagram may overwrite the tail of the one before, which
    // is already delivered or copied.
    let seg = seg.unwrap_or(n).max(1);
    if seg < n {
        bump(&st.rx_gro_reads, 1);
    }
    let mut off = 0;
    while off < n {
        let len = seg.min(n - off);
        let at = HEADROOM + off;
        off += len;
        let Some((next_header, payload)) = open_one(sh, buf, at, len, from) else {
            continue;
        };
        bump(&st.rx_packets, 1);
        if next_header == 6 && coalescer.add(&buf[payload.clone()], peer, local, write_tun) {
            continue;
        }
        coalescer.flush(write_tun);
        // ESP header and IV (16 bytes) plus headroom hold the virtio and IPv4 headers.
        let ip_start = payload.start - IPV4_HEADER_LEN;
        let vnet_start = ip_start - VNET_HDR_LEN;
        if write_ipv4_header(
            &mut buf[ip_start..payload.start],
            sh.cfg.peer,
            sh.cfg.local,
            next_header,
            payload.len(),
        )
        .is_err()
        {
            bump(&st.rx_dropped, 1);
            continue;
        }
        VnetHdr::emit_data_valid(&mut buf[vnet_start..ip_start]);
        write_tun(&buf[vnet_start..payload.end]);
    }
}

/// Opens the datagram at `buf[at..at + len]`; returns the next header and where the
/// decrypted payload lies, or counts why the packet was dropped.
fn open_one(
    sh: &Shared,
    buf: &mut [u8],
    at: usize,
    len: usize,
    from: Option<SocketAddrV4>,
) -> Option<(u8, std::ops::Range<usize>)> {
    let st = &sh.stats;
    let esp = match locate_esp(sh, &buf[at..at + len], from) {
        Some(r) => (at + r.start)..(at + r.end),
        None => return None,
    };
    let Ok(header) = EspHeader::parse(&buf[esp.clone()]) else {
        bump(&st.rx_dropped, 1);
        return None;
    };
    let opened = {
        let mut sas = lock(&sh.inbound);
        match sas.iter_mut().find(|sa| sa.config().spi == header.spi) {
            Some(sa) => sa.open(&mut buf[esp.clone()]),
            None => Err(crate::Error::SpiMismatch(header.spi)),
        }
    };
    let Ok(opened) = opened else {
        bump(&st.rx_dropped, 1);
        return None;
    };
    // Authentic: follow a NAT rebinding of the peer's port (RFC 3948 §3.1.1).
    if let Some(f) = from {
        sh.peer_port.store(f.port(), Ordering::Relaxed);
    }
    let payload = (esp.start + opened.payload.start)..(esp.start + opened.payload.end);
    if opened.next_header == NEXT_HEADER_NONE
        || !selected(&sh.cfg, opened.next_header, &buf[payload.clone()], false)
    {
        bump(&st.rx_dropped, 1);
        return None;
    }
    Some((opened.next_header, payload))
}

/// Finds the ESP packet in what the socket returned, or counts why there is none.
fn locate_esp(
    sh: &Shared,
    data: &[u8],
    from: Option<SocketAddrV4>,
) -> Option<std::ops::Range<usize>> {
    let st = &sh.stats;
    match from {
        Some(from) => {
            if *from.ip() != sh.cfg.peer {
                bump(&st.rx_dropped, 1);
                return None;
            }
            match classify(data) {
                Ok(Encapsulated::Esp(_)) => Some(0..data.len()),
                Ok(Encapsulated::Ike(msg)) => {
                    bump(&st.rx_non_esp, 1);
                    if let Some(sink) = lock(&sh.ike_sink).as_ref() {
                        // IKE is rare and the daemon owns the message: one copy is fine.
                        let _ = sink.send((from, msg.to_vec()));
                    }
                    None
                }
                Ok(Encapsulated::Keepalive) => {
                    bump(&st.rx_non_esp, 1);
                    None
                }
                Err(_) => {
                    bump(&st.rx_dropped, 1);
                    None
                }
            }
        }
        None => {
            // A raw socket returns the IPv4 header too.
            match IpLayout::parse(data) {
                Ok(l) if l.version == IpVersion::V4 && data[12..16] == sh.cfg.peer.octets() => {
                    Some(l.header_len..l.total_len)
                }
                _ => {
                    bump(&st.rx_dropped, 1);
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_from_each_side() {
        let nfs = Selector {
            protocol: Some(6),
            local_port: None,
            remote_port: Some(2049),
        };
        // Outbound: we → peer:2049.
        assert!(nfs.matches(6, Some((700, 2049)), true));
        assert!(!nfs.matches(6, Some((2049, 700)), true));
        // Inbound reply: peer:2049 → we.
        assert!(nfs.matches(6, Some((2049, 700)), false));
        assert!(!nfs.matches(17, Some((700, 2049)), true));
        assert!(!nfs.matches(6, None, true));
        let any_tcp = Selector {
            protocol: Some(6),
            ..Selector::default()
        };
        assert!(any_tcp.matches(6, None, true));
        assert!(Selector::default().matches(1, None, false));
    }

    /// The daemon keeps the datapath in async tasks and SAs cross threads.
    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Datapath>();
        send_sync::<OutboundSa>();
        send_sync::<InboundSa>();
    }

    #[test]
    fn ports_of_short_or_portless_payloads() {
        assert_eq!(ports(6, &[0, 80, 1, 0]), Some((80, 256)));
        assert_eq!(ports(6, &[0, 80, 1]), None);
        assert_eq!(ports(1, &[0, 80, 1, 0]), None);
    }

    #[test]
    fn config_defaults_name_what_we_own() {
        let c = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert!(c.tun_name.len() < 16);
        assert_eq!(
            c.encapsulation,
            Encapsulation::Udp {
                local_port: 4500,
                peer_port: 4500
            }
        );
        assert!(usize::from(c.mtu) + 20 + 8 + crate::MAX_OVERHEAD <= 1500);
    }
}

//! The userspace ESP datapath for hosts whose kernel has no ESP transform (Linux only).
//!
//! This is the I/O shell around the sans-IO [`OutboundSa`]/[`InboundSa`], in the spirit of
//! boringtun's `device/` around `noise/`. One [`Datapath`] per host serves any number of
//! peers, added and removed while it runs ([`Datapath::add_peer`],
//! [`Datapath::remove_peer`]), each with its own SAs, selectors, mode and encapsulation:
//!
//! - **Capture.** A TUN device receives the packets the local stack sends to a peer:
//!   policy-routing rules send traffic to `peer/32` (narrowed by the peer's traffic
//!   selectors) to a private table whose routes go through the TUN. Our own sockets carry a
//!   firewall mark that a higher-priority rule sends to the main table, so ESP never loops
//!   back into the TUN (see [`routing`](self) for the exact layout).
//! - **Outbound.** Each captured packet is looked up by destination and sealed with
//!   that peer's outbound SA: in transport mode its transport payload becomes the ESP
//!   payload and its protocol the next header; in tunnel mode (host to host: the inner
//!   addresses are the two hosts) the whole IP packet is the payload, next header 4 (41 for
//!   IPv6). The
//!   ESP packet leaves from a marked UDP socket to the peer's port 4500 (RFC 3948; what IBM
//!   Cloud requires), or from a raw protocol-50 socket.
//! - **Inbound.** ESP received on either socket is matched to its SA by SPI (one unconnected
//!   UDP socket serves every peer; IKE on it goes to the [`IkeSink`] with the sender's
//!   address), checked to come from that SA's peer, and opened in place. Transport mode
//!   rebuilds the IP header (source = peer, destination = us, protocol = next header);
//!   tunnel mode checks the inner packet's addresses. The packet is written to the TUN,
//!   from where the local stack delivers it. The TUN gets `rp_filter = 2` (loose), because
//!   the route back to the peer is not the TUN for unmarked lookups of every flow.
//! - **Inbound policy.** Cleartext from a peer on a protected selector is dropped unless it
//!   came in through the TUN (an nf_tables table of ours, programmed over netlink, see
//!   [`inbound_policy`](self)), as kernel XFRM's
//!   inbound policy would drop it.
//! - **Teardown.** [`Datapath::remove_peer`] removes exactly that peer's rules, route, SAs
//!   and drop rules. Everything is removed on shutdown or drop, and [`Datapath::start`]
//!   first removes anything a crashed predecessor left with the same names and numbers.
//!
//! One thread moves packets in each direction, draining every ready packet before it
//! sleeps in `poll(2)`. Offloads keep the per-packet system-call count low (the wireguard-go
//! recipe): the TUN runs with a virtio-net header and TCP segmentation offload, so one read
//! returns up to 64 KiB of a TCP flow that we segment ourselves right before sealing
//! ([`offload`](self)); the sealed segments leave in one `sendmsg` with UDP GSO; inbound,
//! UDP GRO hands us a run of datagrams per read (raw ESP: one `recvmmsg` takes up to 16
//! packets), whose TCP segments are coalesced back into one TSO packet per TUN write;
//! coalesced TCP and, for ESP in UDP (a NAT may rewrite the addresses a transport-mode
//! checksum covers, RFC 3948 §3.1.2), every TCP/UDP packet is delivered `NEEDS_CSUM` with the
//! pseudo-header sum of the header we wrote, so the stack does not verify a checksum ESP
//! already authenticated; the rest is marked `DATA_VALID`, which TUN ignores. Each offload falls
//! back to the plain path where the kernel lacks it.
//!
//! A daemon's use, from start to a peer's removal (needs CAP_NET_ADMIN, so not run here):
//!
//! ```no_run
//! use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
//! use esp::datapath::{Datapath, DatapathConfig, Encapsulation, PeerConfig};
//! use esp::{Algorithm, InboundSa, Mode, OutboundSa, SaConfig};
//!
//! let dp = Datapath::start(DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1)))?;
//! // IKE on 4500 from anyone goes to the daemon; it answers with send_ike.
//! dp.set_ike_handler(Box::new(|from: SocketAddr, msg: &[u8]| {
//!     let _ = (from, msg); // hand on without blocking
//! }));
//! # let reply = [0u8; 0];
//! dp.send_ike(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 4500), &reply)?;
//!
//! // A CHILD_SA came up: protect the peer, then install the SAs (inbound first).
//! let peer = Ipv4Addr::new(10, 0, 0, 2);
//! let mut cfg = PeerConfig::new();
//! cfg.encapsulation = Encapsulation::Udp { peer_port: 4500 };
//! cfg.mode = Mode::Tunnel;
//! dp.add_peer(peer, cfg)?;
//! let sa = |spi| SaConfig { mode: Mode::Tunnel, ..SaConfig::new(spi, Algorithm::AesGcm16_256) };
//! # let (key_in, key_out) = ([1u8; 36], [2u8; 36]);
//! dp.add_inbound(peer, InboundSa::new(sa(0x1000_0001), &key_in)?)?;
//! dp.set_outbound(peer, OutboundSa::new(sa(0x2000_0001), &key_out)?)?;
//! dp.send_keepalive(peer)?; // on the daemon's NAT keepalive timer
//!
//! while let Some((peer, spi, event)) = dp.poll_event() {
//!     // SoftLifetime: rekey; HardLifetime: the SA is dead
//!     # let _ = (peer, spi, event);
//! }
//! // Rekey: add_inbound(new), set_outbound(new), later remove_inbound(old SPI).
//! dp.remove_peer(peer)?; // its rules, route, SAs and drop rules; others untouched
//! let stats = dp.shutdown();
//! # let _ = stats;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! IPv4 and IPv6 peers (IPv6 needs [`DatapathConfig::local6`]); the offloads (TSO, GSO,
//! coalescing) are IPv4-only, so IPv6 moves one packet per system call. IPv4 fragments
//! captured from the TUN (datagrams larger than its MTU) travel whole in tunnel mode,
//! checked against port-less selectors only; transport mode drops them (it applies to whole
//! datagrams, RFC 4303 §3.3.4; TCP never makes them), and IPv6 fragments are dropped in both
//! modes. IPv6 extension headers before the transport header are not carried in transport
//! mode.

mod config;
mod early;
#[doc(hidden)]
pub mod fuzzing;
mod inbound;
mod inbound_policy;
mod ip_header;
mod nftables;
mod offload;
mod outbound;
mod routing;
mod rtnetlink;
mod sys;

pub use config::{DatapathConfig, Encapsulation, PeerConfig, Selector};
pub use early::SpiAnnouncer;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;

use crate::{Counters, Event, InboundSa, Mode, OutboundSa};
use ip_header::{ports, IpHeader};

/// Packet counts of the datapath itself, over all peers (SA counters are separate:
/// [`Datapath::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Packets sealed and sent.
    pub tx_packets: u64,
    /// Bytes of ESP sent.
    pub tx_bytes: u64,
    /// Captured packets dropped: not IPv4 to a peer, outside the peer's selectors, no
    /// outbound SA yet, or unparseable.
    pub tx_dropped: u64,
    /// Packets that could not be sealed or sent (expired SA, socket errors).
    pub tx_errors: u64,
    /// Packets opened and delivered to the TUN.
    pub rx_packets: u64,
    /// Bytes of ESP received.
    pub rx_bytes: u64,
    /// Received packets dropped: unknown SPI, failed checks (see the SA counters), outside
    /// the selectors, dummy packets, not from the SA's peer, or (tunnel mode) inner
    /// addresses other than the two hosts.
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
    /// ESP packets held for an announced SPI until its SA was installed
    /// ([`Datapath::spi_announcer`]; counted again in `rx_packets` or `rx_dropped` once
    /// opened).
    pub rx_held_early: u64,
}

/// The SAs of one peer, for status and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// The current outbound SA (SPI, counters), if one is installed.
    pub outbound: Option<(u32, Counters)>,
    /// Every inbound SA (SPI, counters), oldest first.
    pub inbound: Vec<(u32, Counters)>,
    /// The peer's UDP port as last seen (it follows NAT rebindings); `None` for raw ESP.
    pub peer_port: Option<u16>,
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
    rx_held_early: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// How many inbound SAs a peer keeps at once: the current one and older ones during rekeys.
const MAX_INBOUND_SAS: usize = 4;
const POLL_MS: i32 = 100;
const BUF_LEN: usize = 65536;

/// One peer's state on the packet path.
struct Peer {
    addr: IpAddr,
    cfg: PeerConfig,
    outbound: Mutex<Option<OutboundSa>>,
    /// Oldest first.
    inbound: Mutex<Vec<InboundSa>>,
    /// The peer's UDP port (ESP in UDP only).
    port: AtomicU16,
}

impl Peer {
    fn udp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port.load(Ordering::Relaxed))
    }

    fn selected(&self, protocol: u8, transport: &[u8], outbound: bool) -> bool {
        self.cfg.selectors.is_empty()
            || self
                .cfg
                .selectors
                .iter()
                .any(|s| s.matches(protocol, ports(protocol, transport), outbound))
    }
}

/// State the packet threads share with the control calls.
struct Shared {
    cfg: DatapathConfig,
    stop: AtomicBool,
    /// Peers by address (outbound lookup).
    peers: RwLock<HashMap<IpAddr, Arc<Peer>>>,
    /// Peers by the SPI of each of their inbound SAs (inbound lookup).
    spis: RwLock<HashMap<u32, Arc<Peer>>>,
    stats: AtomicStats,
    ike_handler: Mutex<Option<IkeHandler>>,
    udp: Option<UdpSocket>,
    /// The UDP socket on [`DatapathConfig::local6`].
    udp6: Option<UdpSocket>,
    /// Opened with the first raw-ESP peer of each family.
    raw: OnceLock<OwnedFd>,
    raw6: OnceLock<OwnedFd>,
    /// Whether nftables took our (empty) table at start.
    nft: bool,
    /// Why not, when it did not (the sentence `add_peer` repeats).
    nft_refusal: Option<String>,
    /// ESP for announced SPIs whose SA is not installed yet.
    early: early::Early,
}

impl Shared {
    fn peer_by_addr(&self, addr: IpAddr) -> Option<Arc<Peer>> {
        read(&self.peers).get(&addr).cloned()
    }

    fn peer_by_spi(&self, spi: u32) -> Option<Arc<Peer>> {
        read(&self.spis).get(&spi).cloned()
    }

    /// The UDP socket that talks to `peer`'s family.
    fn udp_for(&self, peer: IpAddr) -> Option<&UdpSocket> {
        match peer {
            IpAddr::V4(_) => self.udp.as_ref(),
            IpAddr::V6(_) => self.udp6.as_ref(),
        }
    }

    /// The raw ESP socket of `peer`'s family, once opened.
    fn raw_for(&self, peer: IpAddr) -> Option<RawFd> {
        match peer {
            IpAddr::V4(_) => self.raw.get(),
            IpAddr::V6(_) => self.raw6.get(),
        }
        .map(|s| s.as_raw_fd())
    }
}

/// Where IKE messages received on the NAT-T socket go: (sender, message without the non-ESP
/// marker). Messages from any address are forwarded, so a responder learns of new peers.
pub type IkeSink = std::sync::mpsc::Sender<(SocketAddr, Vec<u8>)>;

/// A function that takes IKE messages received on the NAT-T socket: (sender, message without
/// the non-ESP marker). See [`Datapath::set_ike_handler`].
pub type IkeHandler = Box<dyn Fn(SocketAddr, &[u8]) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread must not take this one down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn no_peer(peer: IpAddr) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no peer {peer}"))
}

/// A running userspace datapath. Dropping it stops the threads and removes the TUN, rules,
/// routes and nftables table.
pub struct Datapath {
    shared: Arc<Shared>,
    /// The control plane's view of the peers (serialises add/remove and gives the ruleset
    /// generators a stable, ordered list).
    control: Mutex<BTreeMap<IpAddr, PeerConfig>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The nf_tables socket for the inbound policy (taken under `control`).
    nft_session: Mutex<nftables::Session>,
    cleaned: bool,
}

impl Datapath {
    /// Removes what a previous run with this configuration may have left behind: our rules
    /// (by priority and protocol tag), the table's routes, the TUN and the nftables table.
    pub fn cleanup_stale(cfg: &DatapathConfig) {
        Self::cleanup(cfg, &mut nftables::Session::default());
    }

    fn cleanup(cfg: &DatapathConfig, nft_session: &mut nftables::Session) {
        routing::remove(cfg);
        inbound_policy::remove(nft_session, cfg);
    }

    /// Creates the TUN and the mark bypass rule, binds the UDP socket and starts moving
    /// packets; no peer yet. Needs CAP_NET_ADMIN.
    ///
    /// Also checks that nftables works (by installing our empty table): if not, the
    /// datapath runs but [`add_peer`](Self::add_peer) refuses peers that need the inbound
    /// policy (see [`inbound_policy_enforced`](Self::inbound_policy_enforced)).
    pub fn start(cfg: DatapathConfig) -> io::Result<Self> {
        let mut nft_session = nftables::Session::default();
        Self::cleanup(&cfg, &mut nft_session);
        let nft_refusal = match inbound_policy::install(&mut nft_session, &cfg, &[]) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Some(e.to_string()),
            Err(e) => return Err(e),
        };
        let names = cfg.clone();
        let started = Self::start_datapath(cfg, nft_refusal, nft_session);
        if started.is_err() {
            Self::cleanup_stale(&names);
        }
        started
    }

    fn start_datapath(
        cfg: DatapathConfig,
        nft_refusal: Option<String>,
        nft_session: nftables::Session,
    ) -> io::Result<Self> {
        let (tun, _offloads) = sys::open_tun(&cfg.tun_name)?;
        sys::set_nonblocking(tun.as_raw_fd())?;
        let bind = |addr: SocketAddr| -> io::Result<UdpSocket> {
            let s = UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            sys::enable_udp_gro(s.as_raw_fd());
            sys::set_mark(s.as_raw_fd(), cfg.mark)?;
            sys::set_buffers(s.as_raw_fd(), 4 << 20);
            Ok(s)
        };
        let udp = match cfg.udp_port {
            Some(port) => Some(bind(SocketAddr::new(IpAddr::V4(cfg.local), port))?),
            None => None,
        };
        let udp6 = match (cfg.udp_port, cfg.local6) {
            (Some(port), Some(local6)) => Some(bind(SocketAddr::new(IpAddr::V6(local6), port))?),
            _ => None,
        };
        routing::install(&cfg)?;
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            peers: RwLock::new(HashMap::new()),
            spis: RwLock::new(HashMap::new()),
            stats: AtomicStats::default(),
            ike_handler: Mutex::new(None),
            udp,
            udp6,
            raw: OnceLock::new(),
            raw6: OnceLock::new(),
            nft: nft_refusal.is_none(),
            nft_refusal,
            early: early::Early::default(),
        });
        let mut dp = Datapath {
            shared,
            control: Mutex::new(BTreeMap::new()),
            threads: Mutex::new(Vec::new()),
            nft_session: Mutex::new(nft_session),
            cleaned: false,
        };
        let tun = Arc::new(tun);
        for outbound_dir in [true, false] {
            let (sh, t) = (dp.shared.clone(), tun.clone());
            let name = if outbound_dir { "esp-tx" } else { "esp-rx" };
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    if outbound_dir {
                        outbound::tx_loop(&sh, &t)
                    } else {
                        inbound::rx_loop(&sh, &t)
                    }
                });
            match spawned {
                Ok(h) => lock(&dp.threads).push(h),
                Err(e) => {
                    dp.stop();
                    return Err(e);
                }
            }
        }
        Ok(dp)
    }

    /// The configuration in use.
    pub fn config(&self) -> &DatapathConfig {
        &self.shared.cfg
    }

    /// Whether nftables works here, so cleartext from peers on protected selectors is
    /// dropped. When false, only peers added with
    /// [`PeerConfig::allow_unprotected_inbound`] run, unprotected inbound; the daemon
    /// should report it.
    pub fn inbound_policy_enforced(&self) -> bool {
        self.shared.nft
    }

    /// Starts protecting traffic with `peer`: installs its inbound policy (drop rules), then
    /// the rules that capture its traffic into the TUN. Until
    /// [`set_outbound`](Self::set_outbound), captured packets are dropped (counted in
    /// `tx_dropped`), never sent in clear.
    ///
    /// Fails with `AlreadyExists` for a peer already added (remove it first), `InvalidInput`
    /// for our own, an unspecified or a multicast address, an IPv6 peer without
    /// [`DatapathConfig::local6`] or a UDP peer without a UDP socket, and `Unsupported` when
    /// the inbound policy cannot be installed and the peer does not allow that. Raw ESP opens
    /// the raw socket of the peer's family here (CAP_NET_RAW).
    pub fn add_peer(&self, peer: impl Into<IpAddr>, cfg: PeerConfig) -> io::Result<()> {
        let peer = peer.into();
        let sh = &self.shared;
        let local = match peer {
            IpAddr::V4(_) => Some(IpAddr::V4(sh.cfg.local)),
            IpAddr::V6(_) => sh.cfg.local6.map(IpAddr::V6),
        };
        let Some(local) = local else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IPv6 peer {peer} needs DatapathConfig::local6"),
            ));
        };
        if peer == local || peer.is_unspecified() || peer.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{peer} cannot be a peer"),
            ));
        }
        let mut control = lock(&self.control);
        if control.contains_key(&peer) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("peer {peer} already added"),
            ));
        }
        let port = self.prepare_transport(peer, &cfg)?;
        control.insert(peer, cfg.clone());
        // The policy goes in before any rule sends traffic our way, so there is no window
        // in which the peer's cleartext is accepted on a protected selector.
        if sh.nft {
            if let Err(e) = self.apply_policy(&control) {
                control.remove(&peer);
                return Err(e);
            }
        }
        write(&sh.peers).insert(
            peer,
            Arc::new(Peer {
                addr: peer,
                cfg: cfg.clone(),
                outbound: Mutex::new(None),
                inbound: Mutex::new(Vec::new()),
                port: AtomicU16::new(port),
            }),
        );
        if let Err(e) = routing::add_peer(&sh.cfg, peer, &cfg) {
            routing::remove_peer(&sh.cfg, peer, &cfg);
            write(&sh.peers).remove(&peer);
            control.remove(&peer);
            if sh.nft {
                let _ = self.apply_policy(&control);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Checks that `cfg` can run (its socket exists or opens now, the inbound policy is
    /// enforceable or waived); returns the peer's initial UDP port (0 for raw ESP). Called
    /// under the control lock.
    fn prepare_transport(&self, peer: IpAddr, cfg: &PeerConfig) -> io::Result<u16> {
        let sh = &self.shared;
        let port = match cfg.encapsulation {
            Encapsulation::Udp { peer_port } => {
                if sh.udp_for(peer).is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "ESP in UDP needs DatapathConfig::udp_port",
                    ));
                }
                peer_port
            }
            Encapsulation::Raw => {
                let slot = if peer.is_ipv6() { &sh.raw6 } else { &sh.raw };
                if slot.get().is_none() {
                    let s = sys::raw_esp_socket(peer.is_ipv6())?;
                    sys::set_nonblocking(s.as_raw_fd())?;
                    sys::set_mark(s.as_raw_fd(), sh.cfg.mark)?;
                    sys::set_buffers(s.as_raw_fd(), 4 << 20);
                    // Only set under the control lock.
                    let _ = slot.set(s);
                }
                0
            }
        };
        if !sh.nft && !cfg.allow_unprotected_inbound {
            let why = sh.nft_refusal.clone().unwrap_or_else(|| {
                inbound_policy::unenforceable(
                    "nftables did not take our table when the datapath started".into(),
                )
                .to_string()
            });
            return Err(io::Error::new(io::ErrorKind::Unsupported, why));
        }
        Ok(port)
    }

    /// Changes what the datapath does for `peer` (selectors, mode, encapsulation — say,
    /// once a CHILD_SA negotiated them) without a moment in which its traffic could pass in
    /// clear: the new capture rules are added before the old ones go, the nftables policy is
    /// replaced in one transaction. SAs stay installed if the mode is unchanged; SAs of
    /// the other mode are dropped (captured traffic is then dropped until new ones come).
    /// Fails like [`add_peer`](Self::add_peer), and with `NotFound` for an unknown peer;
    /// on failure the peer keeps its old configuration.
    pub fn update_peer(&self, peer: impl Into<IpAddr>, cfg: PeerConfig) -> io::Result<()> {
        let peer = peer.into();
        let sh = &self.shared;
        let mut control = lock(&self.control);
        let old = control.get(&peer).cloned().ok_or_else(|| no_peer(peer))?;
        if old == cfg {
            return Ok(());
        }
        let port = self.prepare_transport(peer, &cfg)?;
        let added = routing::add_rules_beside(&sh.cfg, peer, &old, &cfg)?;
        control.insert(peer, cfg.clone());
        if sh.nft {
            if let Err(e) = self.apply_policy(&control) {
                control.insert(peer, old);
                routing::delete_rules(peer, &added);
                return Err(e);
            }
        }
        // A new peer state with the SAs moved over; the packet threads pick it up at their
        // next lookup.
        if let Some(prev) = sh.peer_by_addr(peer) {
            let keep = prev.cfg.mode == cfg.mode;
            let inbound: Vec<InboundSa> = lock(&prev.inbound).drain(..).collect();
            let outbound = lock(&prev.outbound).take();
            let (inbound, outbound) = if keep {
                (inbound, outbound)
            } else {
                (Vec::new(), None)
            };
            let next = Arc::new(Peer {
                addr: peer,
                cfg: cfg.clone(),
                outbound: Mutex::new(outbound),
                inbound: Mutex::new(Vec::new()),
                port: AtomicU16::new(port),
            });
            let mut peers = write(&sh.peers);
            let mut spis = write(&sh.spis);
            spis.retain(|_, p| !Arc::ptr_eq(p, &prev));
            for sa in &inbound {
                spis.insert(sa.config().spi, next.clone());
            }
            *lock(&next.inbound) = inbound;
            peers.insert(peer, next);
        }
        routing::delete_rules_not_in(&sh.cfg, peer, &old, &cfg);
        Ok(())
    }

    /// Stops sealing with `peer`'s outbound SA (its keys were deleted, say): captured
    /// traffic to the peer is dropped, never sent in clear, until
    /// [`set_outbound`](Self::set_outbound). Returns the SPI of the SA removed, if any.
    /// Fails with `NotFound` for an unknown peer.
    pub fn clear_outbound(&self, peer: impl Into<IpAddr>) -> io::Result<Option<u32>> {
        let peer = peer.into();
        let p = self
            .shared
            .peer_by_addr(peer)
            .ok_or_else(|| no_peer(peer))?;
        let old = lock(&p.outbound).take();
        Ok(old.map(|sa| sa.config().spi))
    }

    fn apply_policy(&self, control: &BTreeMap<IpAddr, PeerConfig>) -> io::Result<()> {
        let peers: Vec<(IpAddr, &PeerConfig)> = control.iter().map(|(a, c)| (*a, c)).collect();
        inbound_policy::install(&mut lock(&self.nft_session), &self.shared.cfg, &peers)
    }

    /// Stops protecting traffic with `peer`: removes its capture rules and route, its SAs
    /// and its drop rules; other peers are untouched. Traffic to the peer then flows in
    /// clear, as without any policy. Fails with `NotFound` for an unknown peer.
    pub fn remove_peer(&self, peer: impl Into<IpAddr>) -> io::Result<()> {
        let peer = peer.into();
        let sh = &self.shared;
        let mut control = lock(&self.control);
        let cfg = control.remove(&peer).ok_or_else(|| no_peer(peer))?;
        routing::remove_peer(&sh.cfg, peer, &cfg);
        if let Some(p) = write(&sh.peers).remove(&peer) {
            let mut spis = write(&sh.spis);
            // Emptied too, so a packet thread still holding the peer serves it no more.
            for sa in lock(&p.inbound).drain(..) {
                spis.remove(&sa.config().spi);
            }
            *lock(&p.outbound) = None;
        }
        if sh.nft {
            self.apply_policy(&control)?;
        }
        Ok(())
    }

    /// The peers, in address order.
    pub fn peers(&self) -> Vec<IpAddr> {
        lock(&self.control).keys().copied().collect()
    }

    fn check_mode(peer: &Peer, mode: Mode) -> io::Result<()> {
        if peer.cfg.mode == mode {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "SA in {mode:?} mode for peer {} in {:?} mode",
                    peer.addr, peer.cfg.mode
                ),
            ))
        }
    }

    /// Rekey in one step: [`add_inbound`](Self::add_inbound) then
    /// [`set_outbound`](Self::set_outbound). A rekey between two hosts loses no packet when
    /// both add their new inbound SA before either switches outbound, as IKE orders it
    /// (RFC 7296 §2.8): use the two calls separately for that.
    pub fn install_sas(
        &self,
        peer: impl Into<IpAddr>,
        outbound: OutboundSa,
        inbound: InboundSa,
    ) -> io::Result<()> {
        let peer = peer.into();
        self.add_inbound(peer, inbound)?;
        self.set_outbound(peer, outbound)
    }

    /// Adds an inbound SA for `peer` (replacing one with the same SPI). Older SAs keep
    /// working, so packets still in flight under them are accepted until
    /// [`remove_inbound`](Self::remove_inbound); beyond four per peer, the oldest is
    /// dropped. Fails with `NotFound` for an unknown peer, `AlreadyExists` if another peer
    /// uses the SPI, and `InvalidInput` if the SA's mode is not the peer's.
    pub fn add_inbound(&self, peer: impl Into<IpAddr>, inbound: InboundSa) -> io::Result<()> {
        let peer = peer.into();
        let sh = &self.shared;
        let p = sh.peer_by_addr(peer).ok_or_else(|| no_peer(peer))?;
        Self::check_mode(&p, inbound.config().mode)?;
        let spi = inbound.config().spi;
        let mut spis = write(&sh.spis);
        if spis.get(&spi).is_some_and(|other| other.addr != peer) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("SPI {spi:#010x} belongs to another peer"),
            ));
        }
        let mut v = lock(&p.inbound);
        v.retain(|sa| sa.config().spi != spi);
        v.push(inbound);
        while v.len() > MAX_INBOUND_SAS {
            let old = v.remove(0);
            spis.remove(&old.config().spi);
        }
        spis.insert(spi, p.clone());
        drop((v, spis));
        sh.early.installed(spi);
        Ok(())
    }

    /// A handle through which the IKE layer announces inbound SPIs before the message that
    /// carries them leaves, so the peer's ESP on them is held, not dropped, until
    /// [`add_inbound`](Self::add_inbound) installs the SA (an IKE responder may send on a
    /// new CHILD_SA before its response reaches us).
    pub fn spi_announcer(&self) -> SpiAnnouncer {
        SpiAnnouncer(Arc::downgrade(&self.shared))
    }

    /// Switches `peer`'s outbound traffic to a new SA at once. Fails with `NotFound` for an
    /// unknown peer and `InvalidInput` if the SA's mode is not the peer's.
    pub fn set_outbound(&self, peer: impl Into<IpAddr>, outbound: OutboundSa) -> io::Result<()> {
        let peer = peer.into();
        let p = self
            .shared
            .peer_by_addr(peer)
            .ok_or_else(|| no_peer(peer))?;
        Self::check_mode(&p, outbound.config().mode)?;
        *lock(&p.outbound) = Some(outbound);
        Ok(())
    }

    /// Forgets the inbound SA with this SPI, whichever peer it belongs to; returns whether
    /// there was one.
    pub fn remove_inbound(&self, spi: u32) -> bool {
        let Some(p) = write(&self.shared.spis).remove(&spi) else {
            return false;
        };
        lock(&p.inbound).retain(|sa| sa.config().spi != spi);
        true
    }

    /// Forwards IKE messages that arrive on the NAT-T socket (IKE and ESP share port 4500,
    /// RFC 3948 §2.2) to `sink`, with the non-ESP marker removed and the sender's address.
    pub fn set_ike_sink(&self, sink: IkeSink) {
        let sink = Mutex::new(sink);
        self.set_ike_handler(Box::new(move |from, msg| {
            // The receiver may be gone; IKE then has no one to go to.
            let _ = lock(&sink).send((from, msg.to_vec()));
        }));
    }

    /// Like [`set_ike_sink`](Self::set_ike_sink) with a function of your own, called on the
    /// receive thread for each IKE message (sender, message without the marker): it must
    /// not block — hand the message on, e.g. with tokio's `UnboundedSender::send`.
    pub fn set_ike_handler(&self, handler: IkeHandler) {
        *lock(&self.shared.ike_handler) = Some(handler);
    }

    fn udp(&self, to: IpAddr) -> io::Result<&UdpSocket> {
        self.shared.udp_for(to).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the datapath has no UDP socket for {to}"),
            )
        })
    }

    /// Sends an IKE message from the NAT-T socket (of `to`'s family) to `to`, behind the
    /// non-ESP marker. Fails with `Unsupported` when the datapath has no such socket.
    pub fn send_ike(&self, to: impl Into<SocketAddr>, msg: &[u8]) -> io::Result<()> {
        let to = to.into();
        let s = self.udp(to.ip())?;
        let mut framed = vec![0u8; msg.len() + crate::udp_encap::NON_ESP_MARKER.len()];
        crate::udp_encap::frame_ike(msg, &mut framed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        s.send_to(&framed, to).map(|_| ())
    }

    /// Sends a NAT keepalive (RFC 3948 §2.3) to `peer`'s current UDP port; the daemon's
    /// timer decides when. Fails with `NotFound` for an unknown peer and `Unsupported` for
    /// a raw-ESP peer.
    pub fn send_keepalive(&self, peer: impl Into<IpAddr>) -> io::Result<()> {
        let peer = peer.into();
        let p = self
            .shared
            .peer_by_addr(peer)
            .ok_or_else(|| no_peer(peer))?;
        if p.cfg.encapsulation == Encapsulation::Raw {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.udp(peer)?
            .send_to(&crate::udp_encap::NAT_KEEPALIVE, p.udp_addr())
            .map(|_| ())
    }

    /// Counters of the datapath, over all peers.
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
            rx_held_early: g(&s.rx_held_early),
        }
    }

    /// Counters of `peer`'s SAs, or `None` for an unknown peer.
    pub fn counters(&self, peer: impl Into<IpAddr>) -> Option<PeerCounters> {
        let p = self.shared.peer_by_addr(peer.into())?;
        let outbound = lock(&p.outbound)
            .as_ref()
            .map(|sa| (sa.config().spi, sa.counters()));
        let inbound = lock(&p.inbound)
            .iter()
            .map(|sa| (sa.config().spi, sa.counters()))
            .collect();
        let peer_port = match p.cfg.encapsulation {
            Encapsulation::Udp { .. } => Some(p.port.load(Ordering::Relaxed)),
            Encapsulation::Raw => None,
        };
        Some(PeerCounters {
            outbound,
            inbound,
            peer_port,
        })
    }

    /// The next lifetime event of any SA, with its peer and SPI, so the daemon can rekey.
    pub fn poll_event(&self) -> Option<(IpAddr, u32, Event)> {
        let peers: Vec<Arc<Peer>> = read(&self.shared.peers).values().cloned().collect();
        for p in peers {
            if let Some(sa) = lock(&p.outbound).as_mut() {
                if let Some(e) = sa.poll_event() {
                    return Some((p.addr, sa.config().spi, e));
                }
            }
            let found = lock(&p.inbound)
                .iter_mut()
                .find_map(|sa| sa.poll_event().map(|e| (p.addr, sa.config().spi, e)));
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Stops the threads, removes the TUN, rules, routes and nftables table, and returns
    /// the final counts.
    pub fn shutdown(mut self) -> DatapathStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        if !self.cleaned {
            self.cleaned = true;
            Self::cleanup(&self.shared.cfg, &mut lock(&self.nft_session));
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
            .field("peers", &self.peers())
            .field("inbound_policy", &self.shared.nft)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Datapath>();
        send_sync::<OutboundSa>();
        send_sync::<InboundSa>();
    }
}

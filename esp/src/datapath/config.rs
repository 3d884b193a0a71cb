//! What the datapath is told: its own names and numbers, and per peer what to protect and
//! how.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::udp_encap::NAT_T_PORT;
use crate::Mode;

/// How ESP packets travel between this host and one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    /// ESP in UDP (RFC 3948) from the datapath's UDP socket
    /// ([`DatapathConfig::udp_port`]) to `peer_port` (normally 4500).
    Udp {
        /// The peer's UDP port; updated when authentic packets arrive from another port
        /// (a NAT rebinding, RFC 3948 §3.1.1).
        peer_port: u16,
    },
    /// Plain ESP, IP protocol 50, on a raw socket (opened with the first such peer; needs
    /// CAP_NET_RAW).
    Raw,
}

impl Encapsulation {
    /// ESP in UDP to the peer's port 4500.
    pub const UDP_4500: Encapsulation = Encapsulation::Udp {
        peer_port: NAT_T_PORT,
    };
}

/// Which traffic to the peer the SA protects (a traffic selector seen from this host).
/// `None` fields match anything.
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
    pub(super) fn matches(&self, protocol: u8, ports: Option<(u16, u16)>, outbound: bool) -> bool {
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

/// The host-wide parameters of the datapath; every number names something the datapath owns
/// and removes. Peers come later ([`Datapath::add_peer`](super::Datapath::add_peer)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathConfig {
    /// TUN interface name (≤ 15 bytes).
    pub tun_name: String,
    /// Our address (inner source of outbound traffic, outer source of ESP).
    pub local: Ipv4Addr,
    /// Our IPv6 address, for IPv6 peers (a second UDP socket is bound on it); `None` serves
    /// IPv4 peers only.
    pub local6: Option<Ipv6Addr>,
    /// The UDP port we bind on `local` for ESP in UDP and IKE behind the non-ESP marker
    /// (normally 4500); `None` opens no UDP socket (raw-ESP peers only).
    pub udp_port: Option<u16>,
    /// Firewall mark of our sockets; IKE sockets of the daemon (port 500) must carry it too.
    pub mark: u32,
    /// Routing table holding the routes into the TUN.
    pub table: u32,
    /// Priority of our first rule (the mark bypass); every peer's rules sit at
    /// `rule_priority + 1`.
    pub rule_priority: u32,
    /// TUN MTU: the path MTU minus outer IPv4 (20), UDP (8) and ESP (at most 37 with
    /// AES-GCM) overhead, and minus 20 more for tunnel-mode peers with AES-CBC.
    pub mtu: u16,
    /// The nftables table (family `inet`) that holds our inbound policy: cleartext from a
    /// peer matching one of its selectors is dropped unless it came in through the TUN. The
    /// table is ours alone: replaced at start and on every peer change, deleted at shutdown.
    /// Like `tun_name`, `table` and `rule_priority`, it must differ between datapaths running
    /// on one host at once.
    pub nft_table: String,
}

impl DatapathConfig {
    /// Defaults: TUN `ibmipsec0`, UDP port 4500, mark 0x1e5, table 0x1e5, rules from
    /// priority 10500, MTU 1400, nftables table `ibm_ipsec`.
    pub fn new(local: Ipv4Addr) -> Self {
        DatapathConfig {
            tun_name: "ibmipsec0".into(),
            local,
            local6: None,
            udp_port: Some(NAT_T_PORT),
            mark: 0x1e5,
            table: 0x1e5,
            rule_priority: 10500,
            mtu: 1400,
            nft_table: "ibm_ipsec".into(),
        }
    }
}

/// What the datapath does for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// UDP (NAT-T) or raw ESP.
    pub encapsulation: Encapsulation,
    /// What to protect; empty means all traffic to the peer.
    pub selectors: Vec<Selector>,
    /// Transport mode, or tunnel mode between the two hosts (inner addresses = outer
    /// addresses). Every SA installed for the peer must have this mode.
    pub mode: Mode,
    /// **Unsafe.** Add the peer even when the inbound policy cannot be installed (no
    /// nf_tables in the kernel, or the kernel refused our table). Cleartext from the peer
    /// on protected selectors is then delivered like protected traffic, so an on-path
    /// attacker can inject plaintext that the application takes as authenticated. Off by
    /// default.
    pub allow_unprotected_inbound: bool,
}

impl PeerConfig {
    /// Transport mode, ESP in UDP to port 4500, all traffic to the peer, inbound policy
    /// required.
    pub fn new() -> Self {
        PeerConfig {
            encapsulation: Encapsulation::UDP_4500,
            selectors: Vec::new(),
            mode: Mode::Transport,
            allow_unprotected_inbound: false,
        }
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self::new()
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
    fn config_defaults_name_what_we_own() {
        let c = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1));
        assert!(c.tun_name.len() < 16);
        assert_eq!(c.udp_port, Some(4500));
        // Tunnel mode with AES-GCM (at most 37 bytes of ESP) adds an inner header of 20.
        assert!(usize::from(c.mtu) + 20 + 20 + 8 + 37 <= 1500);
        assert!(usize::from(c.mtu) + 20 + 8 + crate::MAX_OVERHEAD <= 1500);
        let p = PeerConfig::default();
        assert_eq!(p.encapsulation, Encapsulation::Udp { peer_port: 4500 });
        assert_eq!(p.mode, Mode::Transport);
        assert!(!p.allow_unprotected_inbound);
    }
}

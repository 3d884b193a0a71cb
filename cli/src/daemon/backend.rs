//! Where negotiated CHILD_SAs go: the contract between the daemon's IKE driver and an ESP
//! datapath (kernel XFRM or ibm-ipsec's userspace datapath).
//!
//! The driver calls the backend in IKE's order (RFC 7296 §2.8, `DESIGN.md` Datapaths):
//!
//! 1. [`SaBackend::prepare_ike_socket`] on every UDP socket the driver opens for IKE, so IKE
//!    itself is never captured or protected by the datapath;
//! 2. [`SaBackend::prepare_local`] for each local address IKE runs on (the `--listen`
//!    addresses at start-up, the source address of each `up`), before its sockets exist;
//!    [`SaBackend::prepare_peer`] before a peer's first CHILD_SA is installed: by an
//!    initiator before IKE starts (so nothing leaks in clear while it negotiates), by a
//!    responder once the peer has authenticated (so a spoofed IKE_SA_INIT changes nothing);
//! 3. [`SaBackend::install_child`] when a CHILD_SA is negotiated, *before* the IKE message
//!    that announces its SPI leaves (the driver drains events before datagrams), so the
//!    inbound SA exists when the peer starts using it;
//! 4. [`SaBackend::rekey_child`] when a CHILD_SA is replaced: the new pair goes in and
//!    outbound switches to it, the old inbound SA keeps accepting packets still in flight
//!    until [`SaBackend::remove_child`] for it (the peer's DELETE): a rekey loses nothing;
//! 5. [`SaBackend::remove_peer`] once no IKE SA with the peer is left;
//! 6. [`SaBackend::shutdown`] when the daemon stops.
//!
//! IKE on UDP 4500 (NAT-T, forced by IBM Cloud) shares the port with ESP-in-UDP. A backend
//! that owns that socket (the userspace datapath) carries IKE for the driver:
//! [`SaBackend::nat_t_ike`] returns true, received IKE messages are sent to the sink given
//! to [`SaBackend::set_ike_sink`], and the driver sends with [`SaBackend::send_ike`]. A
//! backend that does not (kernel XFRM: the driver's own 4500 socket with
//! `UDP_ENCAP_ESPINUDP`, set up in `prepare_ike_socket`) returns false and the driver binds
//! port 4500 itself.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::control::DatapathKind;

/// An IKE datagram received by a backend on the NAT-T port, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeDatagram {
    /// The sender.
    pub from: SocketAddr,
    /// Our address and port it arrived on.
    pub local: SocketAddr,
    /// The UDP payload, starting with the non-ESP marker (RFC 3948 §2.2), as
    /// `ike::Endpoint::handle_datagram` expects on the NAT-T port.
    pub payload: Vec<u8>,
}

/// What the operator asked to protect with a peer; the datapath narrows its capture to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// IP protocol (6 TCP, 17 UDP, …); `None` = any.
    pub protocol: Option<u8>,
    /// The peer's port; `None` = any.
    pub remote_port: Option<u16>,
}

/// Counters of one CHILD_SA, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildCounters {
    /// Bytes received (ESP payload bytes as the datapath counts them).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
}

/// Why a backend could not do what the driver asked; the text reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// An ESP datapath as the IKE driver sees it. Implementations: [`super::userspace`]
/// (TUN + userspace ESP) and the kernel's XFRM.
pub trait SaBackend: Send {
    /// Which datapath this is, for `status` and `up`'s summary.
    fn kind(&self) -> DatapathKind;

    /// Called on each IKE socket the driver binds (ports 500 and, when
    /// [`nat_t_ike`](Self::nat_t_ike) is false, 4500) before it is used: mark it so the
    /// datapath does not capture it, exempt it from IPsec policy, or enable ESP-in-UDP
    /// decapsulation on the 4500 socket.
    fn prepare_ike_socket(&mut self, socket: &std::net::UdpSocket, port: u16) -> io::Result<()>;

    /// Whether this backend owns UDP 4500 and carries IKE on it for the driver.
    fn nat_t_ike(&self) -> bool;

    /// Where IKE datagrams received on the backend's NAT-T socket go (only called when
    /// [`nat_t_ike`](Self::nat_t_ike) is true, once, before any peer is prepared).
    fn set_ike_sink(&mut self, sink: mpsc::UnboundedSender<IkeDatagram>);

    /// Sends an IKE message from our NAT-T socket at `local` to `remote`; `message` is the IKE
    /// message *without* the non-ESP marker (the backend adds it).
    fn send_ike(&self, local: SocketAddr, remote: SocketAddr, message: &[u8]) -> io::Result<()>;

    /// Sends a NAT-T keepalive (one `0xFF` octet, RFC 3948 §2.3) from our NAT-T socket at
    /// `local` to `remote`. Only called when [`nat_t_ike`](Self::nat_t_ike) is true; otherwise
    /// the driver sends it from its own port 4500.
    fn send_nat_keepalive(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<()> {
        let _ = (local, remote);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Where the IKE layer gets the inbound SPIs of new CHILD_SAs, when the backend wants to
    /// know them before they are announced (the userspace datapath then holds ESP that a
    /// peer sends on a new SA before our side has installed it). `None`: random SPIs.
    fn spi_source(&self) -> Option<Arc<dyn ike::allocation::SpiSource>> {
        None
    }

    /// Gets ready to run IKE and ESP on our address `local` (the userspace datapath starts
    /// there and binds UDP 4500). Idempotent.
    fn prepare_local(&mut self, local: IpAddr) -> Result<(), BackendError>;

    /// Gets ready to exchange ESP with `peer` from our address `local`, capturing the traffic
    /// `selectors` describe (empty: all traffic with the peer; a responder passes empty
    /// selectors and the first CHILD_SA's traffic selectors decide). Until a CHILD_SA is
    /// installed, captured traffic must be dropped, never sent in clear. Idempotent for a
    /// peer already prepared.
    fn prepare_peer(
        &mut self,
        local: IpAddr,
        peer: IpAddr,
        selectors: &[TrafficSelector],
    ) -> Result<(), BackendError>;

    /// Installs a negotiated CHILD_SA (inbound and outbound).
    fn install_child(&mut self, child: &ike::ChildSa) -> Result<(), BackendError>;

    /// Installs the replacement of the CHILD_SA whose inbound SPI is `old_spi_in` and moves
    /// outbound traffic to it; the old inbound SA stays until
    /// [`remove_child`](Self::remove_child).
    fn rekey_child(&mut self, old_spi_in: u32, new: &ike::ChildSa) -> Result<(), BackendError>;

    /// Removes both ESP SAs of a CHILD_SA with `peer`.
    fn remove_child(&mut self, peer: IpAddr, spi_in: u32, spi_out: u32);

    /// Forgets a peer: its capture, routes and any SA left.
    fn remove_peer(&mut self, peer: IpAddr);

    /// Packets to `peer` held (dropped, never sent in clear) since its outbound SA went, so
    /// the driver can negotiate new SAs when traffic wants out (strongSwan's `start_action =
    /// trap`). A backend that cannot tell returns 0: the SAs then come back on the next `up`.
    fn held_packets(&self, peer: IpAddr) -> u64 {
        let _ = peer;
        0
    }

    /// Counters of a CHILD_SA, when the backend still holds it.
    fn counters(&self, peer: IpAddr, spi_in: u32, spi_out: u32) -> Option<ChildCounters>;

    /// Removes everything the backend installed (the daemon is stopping).
    fn shutdown(&mut self);
}

/// `tcp/2049`, `udp`, `icmp`, `any`, `6/2049` → a selector.
pub fn parse_selector(text: &str) -> Result<TrafficSelector, String> {
    let (proto, port) = match text.split_once('/') {
        Some((p, port)) => (p, Some(port)),
        None => (text, None),
    };
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "any" | "all" => None,
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "sctp" => Some(132),
        other => Some(other.parse::<u8>().map_err(|_| {
            format!(
                "selector {text:?}: unknown protocol {other:?} (use tcp, udp, icmp, sctp, any \
                 or a protocol number, e.g. tcp/2049)"
            )
        })?),
    };
    let remote_port = match port {
        None => None,
        Some(p) => {
            if !matches!(protocol, Some(6 | 17 | 132)) {
                return Err(format!(
                    "selector {text:?}: only tcp, udp and sctp have ports"
                ));
            }
            Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!("selector {text:?}: {p:?} is not a port number (1-65535)")
            })?)
        }
    };
    Ok(TrafficSelector {
        protocol,
        remote_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_bad_ones_are_explained() {
        assert_eq!(
            parse_selector("tcp/2049").unwrap(),
            TrafficSelector {
                protocol: Some(6),
                remote_port: Some(2049)
            }
        );
        assert_eq!(parse_selector("UDP").unwrap().protocol, Some(17));
        assert_eq!(parse_selector("any").unwrap().protocol, None);
        assert_eq!(parse_selector("50").unwrap().protocol, Some(50));
        assert!(parse_selector("tcp/0").unwrap_err().contains("port number"));
        assert!(parse_selector("tcp/x").unwrap_err().contains("port number"));
        assert!(parse_selector("icmp/3").unwrap_err().contains("have ports"));
        assert!(parse_selector("nfs")
            .unwrap_err()
            .contains("unknown protocol"));
    }
}

//! The [`SaBackend`] over ibm-ipsec's userspace datapath (`esp::datapath::Datapath`: TUN
//! capture, ESP sealed in userspace, ESP-in-UDP on port 4500), for hosts whose kernel has no
//! ESP transform.
//!
//! One datapath serves every peer. It starts with the daemon's first local address (a
//! `--listen` address, or the source address of the first `up`), binding UDP 4500 there, so
//! IKE on that port (forced encapsulation, as IBM Cloud requires) goes through it: received
//! IKE messages are handed to the daemon's loop from the datapath's receive thread, ours
//! leave with `send_ike`. A peer is added before IKE starts with it; until its first
//! CHILD_SA is installed, captured traffic to it is dropped, never sent in clear.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use esp::datapath::{Datapath, DatapathConfig, Encapsulation, PeerConfig, Selector, SpiAnnouncer};
use esp::{Algorithm, InboundSa, OutboundSa, SaConfig};
use ike::allocation::{RandomSpis, SpiError, SpiRequest, SpiSource};
use ike::crypto::{EncrAlgorithm, IntegAlgorithm};
use ike::wire::TsRange;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::backend::{BackendError, ChildCounters, IkeDatagram, SaBackend, TrafficSelector};
use crate::control::DatapathKind;

/// The userspace datapath as an [`SaBackend`].
pub struct UserspaceBackend {
    template: DatapathConfig,
    datapath: Option<Datapath>,
    sink: Option<mpsc::UnboundedSender<IkeDatagram>>,
    peers: HashMap<Ipv4Addr, PeerState>,
    /// The running datapath's announcer, shared with the IKE layer's SPI source.
    announcer: Arc<Mutex<Option<SpiAnnouncer>>>,
}

/// Random inbound SPIs (as [`RandomSpis`]) that the datapath hears about before the IKE
/// message carrying them leaves: an IKE responder (strongSwan) installs a new CHILD_SA and
/// sends on it before its response reaches us, and the datapath holds that ESP until we have
/// installed the SA instead of dropping it.
struct AnnouncingSpis(Arc<Mutex<Option<SpiAnnouncer>>>);

impl SpiSource for AnnouncingSpis {
    fn inbound_spi(
        &self,
        request: &SpiRequest,
        rng: &mut dyn ike::crypto::Random,
    ) -> Result<u32, SpiError> {
        let spi = RandomSpis.inbound_spi(request, rng)?;
        if let Some(announcer) = self.0.lock().ok().and_then(|a| a.clone()) {
            announcer.expect(request.remote, spi);
        }
        Ok(spi)
    }
}

/// What we asked the datapath to do for a peer.
struct PeerState {
    config: PeerConfig,
    /// The SPI outbound traffic is sealed with, once a CHILD_SA is installed.
    current_out: Option<u32>,
}

impl std::fmt::Debug for UserspaceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceBackend")
            .field("local", &self.datapath.as_ref().map(|d| d.config().local))
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl UserspaceBackend {
    /// A backend whose datapath uses the names and numbers of `template` (TUN name, UDP
    /// port, mark, routing table, rule priority, MTU, nftables table); its local address is
    /// the daemon's.
    pub fn new(template: DatapathConfig) -> Self {
        UserspaceBackend {
            template,
            datapath: None,
            sink: None,
            peers: HashMap::new(),
            announcer: Arc::new(Mutex::new(None)),
        }
    }

    /// The default names (TUN `ibmipsec0`, UDP 4500, mark and table 0x1e5, nftables
    /// `ibm_ipsec`).
    pub fn with_defaults() -> Self {
        Self::new(DatapathConfig::new(Ipv4Addr::UNSPECIFIED))
    }

    fn datapath(&self) -> Result<&Datapath, BackendError> {
        self.datapath
            .as_ref()
            .ok_or_else(|| BackendError("the userspace datapath is not running".into()))
    }

    /// Replaces the datapath's idea of a peer (mode, selectors, encapsulation changed with
    /// the negotiated CHILD_SA): its SAs and capture rules go, and come back with `config`.
    fn readd_peer(&mut self, peer: Ipv4Addr, config: PeerConfig) -> Result<(), BackendError> {
        let dp = self.datapath()?;
        let _ = dp.remove_peer(peer);
        dp.add_peer(peer, config.clone())
            .map_err(|e| BackendError(format!("userspace datapath, peer {peer}: {e}")))?;
        self.peers.insert(
            peer,
            PeerState {
                config,
                current_out: None,
            },
        );
        Ok(())
    }
}

fn v4(ip: IpAddr) -> Result<Ipv4Addr, BackendError> {
    match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(BackendError(
            "the userspace datapath handles IPv4 only; use an IPv4 peer address".into(),
        )),
    }
}

/// Key material of one ESP SA, wiped on drop.
type KeyMaterial = Zeroizing<Vec<u8>>;

/// The ESP transform and the (inbound, outbound) key material of a negotiated CHILD_SA.
fn esp_algorithm(
    child: &ike::ChildSa,
) -> Result<(Algorithm, KeyMaterial, KeyMaterial), BackendError> {
    let join = |k: &ike::crypto::DirectionKeys| {
        let mut v = Zeroizing::new(Vec::with_capacity(k.encr().len() + k.integ().len()));
        v.extend_from_slice(k.encr());
        v.extend_from_slice(k.integ());
        v
    };
    let algorithm = match (child.encr, child.integ) {
        (EncrAlgorithm::AesGcm16_128, None) => Algorithm::AesGcm16_128,
        (EncrAlgorithm::AesGcm16_256, None) => Algorithm::AesGcm16_256,
        (EncrAlgorithm::AesCbc128, Some(IntegAlgorithm::HmacSha2_256_128)) => {
            Algorithm::AesCbc128HmacSha256
        }
        (EncrAlgorithm::AesCbc256, Some(IntegAlgorithm::HmacSha2_256_128)) => {
            Algorithm::AesCbc256HmacSha256
        }
        (encr, integ) => {
            return Err(BackendError(format!(
                "the userspace datapath cannot run ESP with {encr:?}/{integ:?} (it has \
                 AES-GCM-16 and AES-CBC with HMAC-SHA2-256-128)"
            )))
        }
    };
    // ESP key material is the encryption key (with the GCM salt) followed by the
    // integrity key (RFC 7296 §2.17, RFC 4106 §8.1).
    Ok((algorithm, join(&child.keys_in), join(&child.keys_out)))
}

fn esp_mode(mode: ike::Mode) -> esp::Mode {
    match mode {
        ike::Mode::Transport => esp::Mode::Transport,
        ike::Mode::Tunnel => esp::Mode::Tunnel,
    }
}

fn sa_pair(child: &ike::ChildSa) -> Result<(OutboundSa, InboundSa), BackendError> {
    let (algorithm, key_in, key_out) = esp_algorithm(child)?;
    let config = |spi| SaConfig {
        esn: child.esn,
        mode: esp_mode(child.mode),
        ..SaConfig::new(spi, algorithm)
    };
    let err = |e: esp::Error| BackendError(format!("ESP SA: {e}"));
    let out = OutboundSa::new(config(child.spi_out), &key_out).map_err(err)?;
    let inb = InboundSa::new(config(child.spi_in), &key_in).map_err(err)?;
    Ok((out, inb))
}

/// An outbound SA under a random key and SPI that nobody holds: what traffic to a peer is
/// sealed with between its CHILD_SAs, so it is dropped at the peer, never sent in clear.
fn blackhole_sa(mode: esp::Mode) -> Result<OutboundSa, BackendError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut spi = [0u8; 4];
    let mut key = Zeroizing::new([0u8; 36]);
    let fail = |_| BackendError("the system random generator failed".into());
    rng.fill(&mut spi).map_err(fail)?;
    rng.fill(&mut key[..]).map_err(fail)?;
    // Above the reserved 0..=255 (RFC 4303 §2.1).
    let spi = u32::from_be_bytes(spi) | 0x8000_0000;
    let config = SaConfig {
        mode,
        ..SaConfig::new(spi, Algorithm::AesGcm16_256)
    };
    OutboundSa::new(config, &key[..]).map_err(|e| BackendError(format!("placeholder SA: {e}")))
}

/// A port range as one selector port: a single port, or any.
fn single_port(ts: &TsRange) -> Option<u16> {
    (ts.start_port == ts.end_port && ts.ip_protocol != 0).then_some(ts.start_port)
}

/// The datapath selectors covering a CHILD_SA's traffic selectors (empty: everything). A
/// port range that is neither one port nor all ports is widened to all ports: more traffic
/// is sealed than negotiated, and the peer drops what its policy does not cover.
fn selectors_of(local_ts: &[TsRange], remote_ts: &[TsRange]) -> Vec<Selector> {
    let mut out = Vec::new();
    for l in local_ts {
        for r in remote_ts {
            let protocol = match (l.ip_protocol, r.ip_protocol) {
                (0, 0) => None,
                (0, p) | (p, 0) => Some(p),
                (a, b) if a == b => Some(a),
                _ => continue,
            };
            let s = Selector {
                protocol,
                local_port: single_port(l),
                remote_port: single_port(r),
            };
            if s == Selector::default() {
                return Vec::new();
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

impl SaBackend for UserspaceBackend {
    fn kind(&self) -> DatapathKind {
        DatapathKind::Userspace
    }

    fn prepare_ike_socket(&mut self, socket: &std::net::UdpSocket, _port: u16) -> io::Result<()> {
        // Marked sockets are routed by the main table, not into the TUN, so IKE with a peer
        // is never captured by that peer's datapath.
        nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Mark, &self.template.mark)
            .map_err(io::Error::from)
    }

    fn spi_source(&self) -> Option<Arc<dyn SpiSource>> {
        Some(Arc::new(AnnouncingSpis(self.announcer.clone())))
    }

    fn nat_t_ike(&self) -> bool {
        true
    }

    fn set_ike_sink(&mut self, sink: mpsc::UnboundedSender<IkeDatagram>) {
        self.sink = Some(sink);
    }

    fn send_ike(&self, local: SocketAddr, remote: SocketAddr, message: &[u8]) -> io::Result<()> {
        let dp = self
            .datapath()
            .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e.0))?;
        if local.ip() != IpAddr::V4(dp.config().local) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the userspace datapath sends from {}", dp.config().local),
            ));
        }
        let SocketAddr::V4(to) = remote else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the userspace datapath handles IPv4 only",
            ));
        };
        dp.send_ike(to, message)
    }

    fn send_nat_keepalive(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<()> {
        let dp = self
            .datapath()
            .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e.0))?;
        if local.ip() != IpAddr::V4(dp.config().local) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the userspace datapath sends from {}", dp.config().local),
            ));
        }
        // To the peer's ESP-in-UDP address as its CHILD_SA set it (the port IKE floated to).
        dp.send_keepalive(remote.ip())
    }

    fn prepare_local(&mut self, local: IpAddr) -> Result<(), BackendError> {
        let local4 = v4(local)?;
        if let Some(dp) = &self.datapath {
            if dp.config().local == local4 {
                return Ok(());
            }
            return Err(BackendError(format!(
                "the userspace datapath runs on {} and cannot also serve {local}; use one local \
                 address (--listen) per daemon",
                dp.config().local
            )));
        }
        let mut cfg = self.template.clone();
        cfg.local = local4;
        let port = cfg.udp_port.unwrap_or(ike::config::NAT_T_PORT);
        let dp = Datapath::start(cfg).map_err(|e| {
            BackendError(format!(
                "starting the userspace datapath on {local} (TUN {}, UDP {port}): {e}",
                self.template.tun_name
            ))
        })?;
        if let Some(sink) = &self.sink {
            let sink = sink.clone();
            let local_addr = SocketAddr::new(local, port);
            // Called on the datapath's receive thread; an unbounded send never blocks it.
            dp.set_ike_handler(Box::new(move |from: SocketAddr, message: &[u8]| {
                let mut payload = Vec::with_capacity(message.len() + 4);
                payload.extend_from_slice(&ike::wire::NON_ESP_MARKER);
                payload.extend_from_slice(message);
                let _ = sink.send(IkeDatagram {
                    from,
                    local: local_addr,
                    payload,
                });
            }));
        }
        tracing::info!(%local, inbound_policy = dp.inbound_policy_enforced(),
            "userspace datapath started");
        if let Ok(mut a) = self.announcer.lock() {
            *a = Some(dp.spi_announcer());
        }
        self.datapath = Some(dp);
        Ok(())
    }

    fn prepare_peer(
        &mut self,
        local: IpAddr,
        peer: IpAddr,
        selectors: &[TrafficSelector],
    ) -> Result<(), BackendError> {
        self.prepare_local(local)?;
        let peer4 = v4(peer)?;
        if self.peers.contains_key(&peer4) {
            return Ok(());
        }
        let config = PeerConfig {
            selectors: selectors
                .iter()
                .map(|s| Selector {
                    protocol: s.protocol,
                    local_port: None,
                    remote_port: s.remote_port,
                })
                .collect(),
            ..PeerConfig::new()
        };
        self.readd_peer(peer4, config)
    }

    fn install_child(&mut self, child: &ike::ChildSa) -> Result<(), BackendError> {
        let peer = v4(child.remote.ip())?;
        let (out, inb) = sa_pair(child)?;
        let state = self.peers.get(&peer).ok_or_else(|| {
            BackendError(format!(
                "no userspace datapath peer was prepared for {peer}"
            ))
        })?;
        // What was negotiated decides: a responder prepared the peer before knowing the
        // mode, the selectors or whether a NAT made ESP go to another port.
        let wanted = PeerConfig {
            encapsulation: match child.encap {
                Some(e) => Encapsulation::Udp {
                    peer_port: e.remote_port,
                },
                None => Encapsulation::Raw,
            },
            selectors: selectors_of(&child.local_ts, &child.remote_ts),
            mode: esp_mode(child.mode),
            ..state.config.clone()
        };
        if wanted != state.config {
            if state.current_out.is_some() {
                return Err(BackendError(format!(
                    "a second CHILD_SA with {peer} with other selectors or mode than the first \
                     is not supported by the userspace datapath"
                )));
            }
            self.readd_peer(peer, wanted)?;
        }
        let dp = self.datapath()?;
        let err = |e: io::Error| BackendError(format!("userspace datapath, peer {peer}: {e}"));
        dp.add_inbound(peer, inb).map_err(err)?;
        dp.set_outbound(peer, out).map_err(err)?;
        if let Some(state) = self.peers.get_mut(&peer) {
            state.current_out = Some(child.spi_out);
        }
        Ok(())
    }

    fn rekey_child(&mut self, _old_spi_in: u32, new: &ike::ChildSa) -> Result<(), BackendError> {
        // The old inbound SA stays in the datapath (it keeps several per peer) until its
        // DELETE; outbound switches now.
        self.install_child(new)
    }

    fn remove_child(&mut self, peer: IpAddr, spi_in: u32, spi_out: u32) {
        let Ok(peer4) = v4(peer) else { return };
        let Some(dp) = self.datapath.as_ref() else {
            return;
        };
        dp.remove_inbound(spi_in);
        let sealing_with_it = self
            .peers
            .get(&peer4)
            .is_some_and(|s| s.current_out == Some(spi_out));
        if sealing_with_it {
            // No outbound SA may use deleted keys, and the traffic must not go out in clear
            // either: until a new CHILD_SA arrives it is sealed under a random key nobody
            // holds (the peer drops it as an unknown SPI).
            let mode = self.peers[&peer4].config.mode;
            match blackhole_sa(mode) {
                Ok(sa) => {
                    if let Err(e) = dp.set_outbound(peer4, sa) {
                        tracing::warn!(%peer, "holding traffic to the peer: {e}");
                    }
                }
                Err(e) => tracing::warn!(%peer, "holding traffic to the peer: {e}"),
            }
            if let Some(state) = self.peers.get_mut(&peer4) {
                state.current_out = None;
            }
        }
    }

    fn remove_peer(&mut self, peer: IpAddr) {
        let Ok(peer4) = v4(peer) else { return };
        if self.peers.remove(&peer4).is_some() {
            if let Some(dp) = &self.datapath {
                if let Err(e) = dp.remove_peer(peer4) {
                    tracing::warn!(%peer, "removing the peer from the userspace datapath: {e}");
                }
            }
        }
    }

    fn held_packets(&self, peer: IpAddr) -> u64 {
        let Ok(peer4) = v4(peer) else { return 0 };
        if self
            .peers
            .get(&peer4)
            .map_or(true, |s| s.current_out.is_some())
        {
            return 0;
        }
        // Without a CHILD_SA the outbound SA is the placeholder: what it sealed was held.
        self.datapath
            .as_ref()
            .and_then(|dp| dp.counters(peer4))
            .and_then(|c| c.outbound)
            .map_or(0, |(_, c)| c.packets)
    }

    fn counters(&self, peer: IpAddr, spi_in: u32, spi_out: u32) -> Option<ChildCounters> {
        let c = self.datapath.as_ref()?.counters(v4(peer).ok()?)?;
        let inb = c
            .inbound
            .iter()
            .find(|(spi, _)| *spi == spi_in)
            .map(|(_, c)| *c);
        let out = c
            .outbound
            .filter(|(spi, _)| *spi == spi_out)
            .map(|(_, c)| c);
        if inb.is_none() && out.is_none() {
            return None;
        }
        Some(ChildCounters {
            bytes_in: inb.map_or(0, |c| c.bytes),
            packets_in: inb.map_or(0, |c| c.packets),
            bytes_out: out.map_or(0, |c| c.bytes),
            packets_out: out.map_or(0, |c| c.packets),
        })
    }

    fn shutdown(&mut self) {
        self.peers.clear();
        if let Some(dp) = self.datapath.take() {
            let stats = dp.shutdown();
            tracing::info!(
                tx_packets = stats.tx_packets,
                rx_packets = stats.rx_packets,
                rx_dropped = stats.rx_dropped,
                rx_held_early = stats.rx_held_early,
                "userspace datapath stopped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(proto: u8, port: Option<u16>) -> TsRange {
        TsRange::host("10.0.0.1".parse().unwrap(), proto, port)
    }

    #[test]
    fn selectors_follow_the_negotiated_traffic_selectors() {
        assert!(selectors_of(&[ts(0, None)], &[ts(0, None)]).is_empty());
        let nfs = Selector {
            protocol: Some(6),
            local_port: None,
            remote_port: Some(2049),
        };
        assert_eq!(
            selectors_of(&[ts(6, None)], &[ts(6, Some(2049))]),
            vec![nfs]
        );
        assert_eq!(
            selectors_of(&[ts(0, None)], &[ts(6, Some(2049))]),
            vec![nfs]
        );
        // TCP here and UDP there cannot match the same packet.
        assert_eq!(
            selectors_of(&[ts(6, None)], &[ts(17, None), ts(6, Some(2049))]),
            vec![nfs]
        );
        // A range that is neither one port nor all is widened to all ports.
        let mut range = ts(17, None);
        range.start_port = 100;
        range.end_port = 200;
        assert_eq!(
            selectors_of(&[ts(17, None)], &[range]),
            vec![Selector {
                protocol: Some(17),
                local_port: None,
                remote_port: None
            }]
        );
    }
}

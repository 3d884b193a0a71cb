//! The [`SaBackend`] over ibm-ipsec's userspace datapath (`esp::datapath::Datapath`: TUN
//! capture, ESP sealed in userspace, ESP-in-UDP on port 4500), for hosts whose kernel has no
//! ESP transform.
//!
//! The datapath owns UDP 4500, so IKE on that port (forced encapsulation, as IBM Cloud
//! requires) goes through it: received IKE messages come back through its IKE sink, ours
//! leave with `send_ike`.
//!
//! This version of the datapath serves one peer, and it starts with an SA pair: the backend
//! starts it when the peer is prepared, before any IKE message is exchanged, with a
//! placeholder pair under random keys nobody holds. Until the negotiated CHILD_SA replaces
//! them, captured traffic to the peer is sealed under a key the peer cannot open, so it is
//! dropped rather than sent in the clear; the placeholder inbound SA never matches anything.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esp::datapath::{Datapath, DatapathConfig, Selector};
use esp::{Algorithm, InboundSa, OutboundSa, SaConfig};
use ike::crypto::{EncrAlgorithm, IntegAlgorithm};
use ring::rand::SecureRandom;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::backend::{BackendError, ChildCounters, IkeDatagram, SaBackend, TrafficSelector};
use crate::control::DatapathKind;

/// The NAT-T port the datapath binds.
const NAT_T_PORT: u16 = 4500;

/// The userspace datapath as an [`SaBackend`].
pub struct UserspaceBackend {
    template: DatapathConfig,
    running: Option<Running>,
    sink: Option<mpsc::UnboundedSender<IkeDatagram>>,
    rng: ring::rand::SystemRandom,
}

struct Running {
    datapath: Datapath,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    /// Inbound SPI of the placeholder SA, until the first CHILD_SA replaces it.
    placeholder_in: Option<u32>,
    /// The SPI outbound traffic is sealed with now (for per-SA counters).
    current_out: Option<u32>,
}

impl std::fmt::Debug for UserspaceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceBackend")
            .field("peer", &self.running.as_ref().map(|r| r.peer))
            .finish_non_exhaustive()
    }
}

impl UserspaceBackend {
    /// A backend whose datapath uses the names and numbers of `template` (TUN name, mark,
    /// routing table, nftables table); its addresses and selectors are filled in per peer.
    pub fn new(template: DatapathConfig) -> Self {
        UserspaceBackend {
            template,
            running: None,
            sink: None,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// The default names (TUN `ibmipsec0`, mark and table 0x1e5, nftables `ibm_ipsec`).
    pub fn with_defaults() -> Self {
        Self::new(DatapathConfig::new(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        ))
    }

    fn random_pair(&self) -> Result<(OutboundSa, InboundSa, u32), BackendError> {
        let mut spi = [0u8; 8];
        let mut key = Zeroizing::new([0u8; 36]);
        let fail = |_| BackendError("the system random generator failed".into());
        self.rng.fill(&mut spi).map_err(fail)?;
        self.rng.fill(&mut key[..]).map_err(fail)?;
        // 0..=255 are reserved (RFC 4303 §2.1): keep the SPIs above them.
        let spi_out = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]) | 0x8000_0000;
        let spi_in = u32::from_be_bytes([spi[4], spi[5], spi[6], spi[7]]) | 0x8000_0000;
        let algorithm = Algorithm::AesGcm16_256;
        let err = |e: esp::Error| BackendError(format!("placeholder SA: {e}"));
        let out = OutboundSa::new(SaConfig::new(spi_out, algorithm), &key[..]).map_err(err)?;
        let inb = InboundSa::new(SaConfig::new(spi_in, algorithm), &key[..]).map_err(err)?;
        Ok((out, inb, spi_in))
    }

    fn running_for(&self, peer: IpAddr) -> Option<&Running> {
        self.running.as_ref().filter(|r| IpAddr::V4(r.peer) == peer)
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

fn sa_pair(child: &ike::ChildSa) -> Result<(OutboundSa, InboundSa), BackendError> {
    if child.mode != ike::Mode::Transport {
        return Err(BackendError(
            "the userspace datapath supports transport mode only; use --datapath kernel for \
             tunnel mode"
                .into(),
        ));
    }
    let (algorithm, key_in, key_out) = esp_algorithm(child)?;
    let config = |spi| SaConfig {
        esn: child.esn,
        ..SaConfig::new(spi, algorithm)
    };
    let err = |e: esp::Error| BackendError(format!("ESP SA: {e}"));
    let out = OutboundSa::new(config(child.spi_out), &key_out).map_err(err)?;
    let inb = InboundSa::new(config(child.spi_in), &key_in).map_err(err)?;
    Ok((out, inb))
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

    fn nat_t_ike(&self) -> bool {
        true
    }

    fn set_ike_sink(&mut self, sink: mpsc::UnboundedSender<IkeDatagram>) {
        self.sink = Some(sink);
    }

    fn send_ike(&self, local: SocketAddr, remote: SocketAddr, message: &[u8]) -> io::Result<()> {
        let running = self.running_for(remote.ip()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("no datapath for {}", remote.ip()),
            )
        })?;
        if local.ip() != IpAddr::V4(running.local) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the datapath for {} sends from {}",
                    remote.ip(),
                    running.local
                ),
            ));
        }
        running.datapath.send_ike(message)
    }

    fn prepare_peer(
        &mut self,
        local: IpAddr,
        peer: IpAddr,
        selectors: &[TrafficSelector],
    ) -> Result<(), BackendError> {
        if let Some(r) = &self.running {
            if IpAddr::V4(r.peer) == peer {
                return Ok(());
            }
            return Err(BackendError(format!(
                "the userspace datapath protects one peer at a time in this version and {} is \
                 up; bring it down first (`ibm-ipsec down {}`)",
                r.peer, r.peer
            )));
        }
        let (IpAddr::V4(local4), IpAddr::V4(peer4)) = (local, peer) else {
            return Err(BackendError(
                "the userspace datapath handles IPv4 only; use an IPv4 peer address".into(),
            ));
        };
        let mut cfg = self.template.clone();
        cfg.local = local4;
        cfg.peer = peer4;
        cfg.selectors = selectors
            .iter()
            .map(|s| Selector {
                protocol: s.protocol,
                local_port: None,
                remote_port: s.remote_port,
            })
            .collect();
        let (out, inb, placeholder_in) = self.random_pair()?;
        let datapath = Datapath::start(cfg, out, inb).map_err(|e| {
            BackendError(format!(
                "starting the userspace datapath for {peer} (TUN {}): {e}",
                self.template.tun_name
            ))
        })?;
        if let Some(sink) = &self.sink {
            let (tx, rx) = std::sync::mpsc::channel::<(std::net::SocketAddrV4, Vec<u8>)>();
            datapath.set_ike_sink(tx);
            let sink = sink.clone();
            let local_addr = SocketAddr::new(local, NAT_T_PORT);
            // The datapath's receive thread hands IKE over a std channel; this thread moves it
            // to the daemon's loop and ends when the datapath (and so the sender) is gone.
            std::thread::Builder::new()
                .name("ike-nat-t".into())
                .spawn(move || {
                    while let Ok((from, message)) = rx.recv() {
                        let mut payload = Vec::with_capacity(message.len() + 4);
                        payload.extend_from_slice(&ike::wire::NON_ESP_MARKER);
                        payload.extend_from_slice(&message);
                        let d = IkeDatagram {
                            from: SocketAddr::V4(from),
                            local: local_addr,
                            payload,
                        };
                        if sink.send(d).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| BackendError(format!("starting the IKE relay thread: {e}")))?;
        }
        tracing::info!(%peer, %local, inbound_policy = datapath.inbound_policy_enforced(),
            "userspace datapath started");
        self.running = Some(Running {
            datapath,
            local: local4,
            peer: peer4,
            placeholder_in: Some(placeholder_in),
            current_out: None,
        });
        Ok(())
    }

    fn install_child(&mut self, child: &ike::ChildSa) -> Result<(), BackendError> {
        let (out, inb) = sa_pair(child)?;
        let running = self
            .running
            .as_mut()
            .filter(|r| IpAddr::V4(r.peer) == child.remote.ip())
            .ok_or_else(|| {
                BackendError(format!(
                    "no datapath was prepared for {}",
                    child.remote.ip()
                ))
            })?;
        running.datapath.add_inbound(inb);
        running.datapath.set_outbound(out);
        running.current_out = Some(child.spi_out);
        if let Some(spi) = running.placeholder_in.take() {
            running.datapath.remove_inbound(spi);
        }
        Ok(())
    }

    fn rekey_child(&mut self, _old_spi_in: u32, new: &ike::ChildSa) -> Result<(), BackendError> {
        // The old inbound SA stays in the datapath (it keeps several) until its DELETE.
        self.install_child(new)
    }

    fn remove_child(&mut self, peer: IpAddr, spi_in: u32, spi_out: u32) {
        let replacement = if self
            .running_for(peer)
            .is_some_and(|r| r.current_out == Some(spi_out))
        {
            // The SA traffic is sealed with is gone: seal under a key nobody has until a new
            // CHILD_SA arrives, rather than with deleted keys or in the clear.
            self.random_pair().ok()
        } else {
            None
        };
        if let Some(running) = self.running.as_mut().filter(|r| IpAddr::V4(r.peer) == peer) {
            running.datapath.remove_inbound(spi_in);
            if let Some((out, _, _)) = replacement {
                running.datapath.set_outbound(out);
                running.current_out = None;
            }
        }
    }

    fn remove_peer(&mut self, peer: IpAddr) {
        if self.running_for(peer).is_some() {
            if let Some(running) = self.running.take() {
                let stats = running.datapath.shutdown();
                tracing::info!(%peer, tx_packets = stats.tx_packets, rx_packets = stats.rx_packets,
                    "userspace datapath stopped");
            }
        }
    }

    fn counters(&self, peer: IpAddr, spi_in: u32, spi_out: u32) -> Option<ChildCounters> {
        let running = self.running_for(peer)?;
        let (out, inbound) = running.datapath.counters();
        let inb = inbound
            .iter()
            .find(|(spi, _)| *spi == spi_in)
            .map(|(_, c)| *c);
        let out = (running.current_out == Some(spi_out)).then_some(out);
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
        if let Some(running) = self.running.take() {
            running.datapath.shutdown();
        }
    }
}

//! The [`SaBackend`] over the kernel's XFRM (`xfrm::child`): each negotiated CHILD_SA becomes
//! an inbound and an outbound ESP SA plus in/out policies (fwd too in tunnel mode) tied to the
//! CHILD_SA's reqid, which rekeys keep, so the policies stay while SAs are replaced.
//!
//! - IKE sockets are exempt from IPsec policy (`IP_XFRM_POLICY` allow both ways) so that
//!   host-to-host policies never capture IKE itself; the 4500 socket also gets
//!   `UDP_ENCAP_ESPINUDP`, so the kernel takes ESP-in-UDP off it and leaves IKE (non-ESP
//!   marker) to us (RFC 3948 §2.2). The driver owns that socket: `nat_t_ike` is false.
//! - Rekey (RFC 7296 §2.8) loses nothing: the new inbound SA goes in at once (same reqid, so
//!   the policies keep matching), but the new *outbound* SA only when the old CHILD_SA is
//!   removed (the DELETE exchange). Installing it at once would, on the rekey responder, send
//!   on an SPI the initiator installs only when our response reaches it (seen in the VM: one
//!   `XfrmInNoStates` drop per rekey under a 50 ms ping); strongSwan delays the same way. The
//!   old inbound SA then gets a 5 s hard lifetime instead of going at once, for packets the
//!   peer sent on it just before it switched.
//! - The kernel gets only a hard time limit, a little after IKE's own hard lifetime: IKE
//!   rekeys and deletes on its own schedule, the kernel limit only cleans up after a daemon
//!   that died without `shutdown`. A restarted daemon also removes what a previous run left
//!   (`new` flushes every SA and policy carrying our reqids, and nothing else).
//! - Policies live as long as the peer (`remove_peer`, i.e. `down` or shutdown), not as long as
//!   its CHILD_SAs: when SAs are lost the policies hold the peer's traffic (dropped, never
//!   clear) and the kernel's ACQUIREs, counted per peer, tell the driver traffic is waiting
//!   (`held_packets`), as strongSwan's trap policies do.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use ike::crypto::{EncrAlgorithm, IntegAlgorithm};
use ike::wire::TsRange;
use tokio::sync::mpsc;
use xfrm::child::{self, ChildHandle, ChildPolicies, ChildSaSpec, NatT, TrafficSelector};
use xfrm::monitor::{Event, Monitor};
use xfrm::policy::DEFAULT_PRIORITY;
use xfrm::socket_policy::{bypass_policies, enable_udp_encap, SocketFamily};
use xfrm::{Crypto, Kernel, LifetimeConfig, Mode, Replay, XfrmKernel};

use super::backend::{self, BackendError, ChildCounters, IkeDatagram, SaBackend};
use crate::control::DatapathKind;

/// Seconds a replaced inbound SA keeps accepting packets still in flight after its CHILD_SA
/// was deleted (strongSwan's `delete_rekeyed_delay` is 5 s too).
const OLD_INBOUND_GRACE_SECONDS: u64 = 5;
/// Seconds the kernel keeps an SA past IKE's hard lifetime before deleting it itself.
const HARD_LIMIT_MARGIN_SECONDS: u64 = 60;
/// Anti-replay window of inbound SAs (packets), strongSwan's default is 32; a wider window
/// tolerates the reordering of multi-queue NICs at no cost.
const REPLAY_WINDOW: u32 = 128;
/// The NAT-T port, on which the driver binds its own socket.
const NAT_T_PORT: u16 = 4500;

/// One installed CHILD_SA.
#[derive(Debug, Clone)]
struct Installed {
    handle: ChildHandle,
    /// The inbound SA as installed, with its keys replaced by zeros (for the UPDSA that
    /// shortens its life after a rekey; the kernel keeps the real keys).
    inbound_shape: xfrm::SaSpec,
    /// A rekeyed child's outbound SA, held back until its predecessor is removed.
    pending_outbound: Option<ChildSaSpec>,
    /// The inbound SPI of the child this one replaced.
    predecessor: Option<u32>,
}

/// Kernel XFRM as an [`SaBackend`].
pub struct KernelBackend {
    kernel: XfrmKernel,
    /// By (peer, inbound SPI).
    children: HashMap<(IpAddr, u32), Installed>,
    /// ACQUIREs per destination: traffic our policies held for want of an SA.
    acquires: Mutex<Acquires>,
}

/// The kernel's ACQUIRE notifications, counted per peer.
struct Acquires {
    monitor: Option<Monitor>,
    per_peer: HashMap<IpAddr, u64>,
}

impl Acquires {
    fn open() -> Self {
        let monitor = Monitor::open_groups(&[xfrm::message::group::ACQUIRE])
            .and_then(|m| m.set_nonblocking(true).map(|()| m));
        let monitor = match monitor {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "no XFRM ACQUIRE monitor: held traffic will not re-initiate lost SAs");
                None
            }
        };
        Acquires {
            monitor,
            per_peer: HashMap::new(),
        }
    }

    /// Reads what arrived since the last call.
    fn drain(&mut self) {
        let Some(m) = self.monitor.as_mut() else {
            return;
        };
        loop {
            match m.recv() {
                Ok(events) => {
                    for e in events {
                        if let Event::Acquire { dst, policy, .. } = e {
                            if xfrm::kernel::policy_is_ours(&policy) {
                                *self.per_peer.entry(dst).or_default() += 1;
                            }
                        }
                    }
                }
                Err(e) if e.errno() == Some(nix::libc::EAGAIN) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading XFRM ACQUIREs failed");
                    return;
                }
            }
        }
    }
}

impl std::fmt::Debug for KernelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBackend")
            .field("children", &self.children.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError(format!("kernel XFRM: {what}: {e}"))
}

impl KernelBackend {
    /// Opens netlink XFRM in the daemon's network namespace and removes what an earlier run
    /// of ibm-ipsec left there (SAs and policies with our reqids only).
    pub fn new() -> Result<Self, BackendError> {
        let kernel = XfrmKernel::open().map_err(|e| err("opening netlink", e))?;
        match kernel.flush_ours() {
            Ok(f) if f.sas + f.policies > 0 => tracing::info!(
                sas = f.sas,
                policies = f.policies,
                "removed SAs and policies left by an earlier run"
            ),
            Ok(_) => {}
            Err(e) => return Err(err("removing what an earlier run left", e)),
        }
        Ok(KernelBackend {
            kernel,
            children: HashMap::new(),
            acquires: Mutex::new(Acquires::open()),
        })
    }

    /// Shortens a replaced inbound SA's life to the grace period: UPDSA changes only the
    /// lifetimes (and encapsulation) of a valid SA, so the zero keys of `inbound_shape` never
    /// replace the real ones.
    /// The kernel counts the limit from the SA's install time, so it is set to the SA's age
    /// plus the grace period.
    fn retire_inbound(&self, entry: &Installed) -> Result<(), xfrm::Error> {
        let added = self
            .kernel
            .get_sa(&entry.handle.inbound())?
            .current
            .add_time;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut sa = entry.inbound_shape.clone();
        sa.lifetime = LifetimeConfig::time_and_bytes(
            0,
            now.saturating_sub(added) + OLD_INBOUND_GRACE_SECONDS,
            u64::MAX,
            u64::MAX,
        );
        self.kernel.update_sa(&sa)
    }
}

/// The kernel transform for a negotiated ESP proposal and one direction's keys.
fn crypto(
    encr: EncrAlgorithm,
    integ: Option<IntegAlgorithm>,
    keys: &ike::crypto::DirectionKeys,
) -> Result<Crypto, BackendError> {
    let invalid = |e: String| BackendError(format!("kernel XFRM: {e}"));
    match (encr, integ) {
        (EncrAlgorithm::AesGcm16_128 | EncrAlgorithm::AesGcm16_256, None) => {
            Crypto::aes_gcm(keys.encr()).map_err(invalid)
        }
        (
            EncrAlgorithm::AesCbc128 | EncrAlgorithm::AesCbc192 | EncrAlgorithm::AesCbc256,
            Some(integ),
        ) => {
            // RFC 4868 §2.3: the ICV is half the hash (128/192/256 bits).
            let (auth, trunc_bits) = match integ {
                IntegAlgorithm::HmacSha2_256_128 => ("hmac(sha256)", 128),
                IntegAlgorithm::HmacSha2_384_192 => ("hmac(sha384)", 192),
                IntegAlgorithm::HmacSha2_512_256 => ("hmac(sha512)", 256),
            };
            Ok(Crypto::CipherAuth {
                cipher: xfrm::algorithm::AES_CBC.into(),
                cipher_key: xfrm::Key::new(keys.encr()),
                auth: auth.into(),
                auth_key: xfrm::Key::new(keys.integ()),
                trunc_bits,
            })
        }
        (e, i) => Err(BackendError(format!(
            "kernel XFRM: no kernel transform for {e:?} with {i:?}"
        ))),
    }
}

/// `sa` with every key byte zeroed (same algorithms and key lengths).
fn keyless(mut sa: xfrm::SaSpec) -> xfrm::SaSpec {
    let zero = |k: &xfrm::Key| xfrm::Key::new(&vec![0u8; k.len()]);
    sa.crypto = match &sa.crypto {
        Crypto::Aead {
            name,
            key,
            icv_bits,
        } => Crypto::Aead {
            name: name.clone(),
            key: zero(key),
            icv_bits: *icv_bits,
        },
        Crypto::CipherAuth {
            cipher,
            cipher_key,
            auth,
            auth_key,
            trunc_bits,
        } => Crypto::CipherAuth {
            cipher: cipher.clone(),
            cipher_key: zero(cipher_key),
            auth: auth.clone(),
            auth_key: zero(auth_key),
            trunc_bits: *trunc_bits,
        },
    };
    sa
}

/// The CIDR blocks covering an address range (RFC 7296 TS ranges need not be prefixes).
fn prefixes(start: IpAddr, end: IpAddr) -> Result<Vec<(IpAddr, u8)>, BackendError> {
    let (lo, hi, bits, v4) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (
            u128::from(u32::from(s)),
            u128::from(u32::from(e)),
            32u32,
            true,
        ),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128, false),
        _ => {
            return Err(BackendError(format!(
                "traffic selector {start}-{end} mixes address families"
            )))
        }
    };
    if lo > hi {
        return Err(BackendError(format!(
            "traffic selector {start}-{end} is empty"
        )));
    }
    // Last address of the block of 2^k addresses starting at `cur` (aligned, so no overflow).
    let block_end = |cur: u128, k: u32| {
        if k >= 128 {
            u128::MAX
        } else {
            cur + ((1u128 << k) - 1)
        }
    };
    let mut out = Vec::new();
    let mut cur = lo;
    loop {
        // The largest aligned block starting at `cur` that does not pass `hi`.
        let mut k = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        while k > 0 && block_end(cur, k) > hi {
            k -= 1;
        }
        let addr = if v4 {
            IpAddr::V4((cur as u32).into())
        } else {
            IpAddr::V6(cur.into())
        };
        out.push((addr, (bits - k) as u8));
        if out.len() > 64 {
            return Err(BackendError(format!(
                "traffic selector {start}-{end} needs more than 64 prefixes"
            )));
        }
        let last = block_end(cur, k);
        if last >= hi {
            return Ok(out);
        }
        cur = last + 1;
    }
}

/// One port or any; XFRM selectors carry a port and a mask, and a range of IKE ports that is
/// neither is refused rather than silently widened.
fn port_of(ts: &TsRange) -> Result<Option<u16>, BackendError> {
    match (ts.start_port, ts.end_port) {
        (0, u16::MAX) => Ok(None),
        (a, b) if a == b && matches!(ts.ip_protocol, 6 | 17 | 132) => Ok(Some(a)),
        (a, b) => Err(BackendError(format!(
            "kernel XFRM: traffic selector port range {a}-{b} (protocol {}) is not a single port",
            ts.ip_protocol
        ))),
    }
}

/// The kernel selectors for a CHILD_SA's negotiated traffic selectors.
fn selectors(
    local_ts: &[TsRange],
    remote_ts: &[TsRange],
) -> Result<Vec<TrafficSelector>, BackendError> {
    let mut out = Vec::new();
    for l in local_ts {
        for r in remote_ts {
            let proto = match (l.ip_protocol, r.ip_protocol) {
                (0, p) | (p, 0) => p,
                (a, b) if a == b => a,
                _ => continue,
            };
            if l.start_addr.is_ipv4() != r.start_addr.is_ipv4() {
                continue;
            }
            let (lp, rp) = (port_of(l)?, port_of(r)?);
            for (la, lpre) in prefixes(l.start_addr, l.end_addr)? {
                for (ra, rpre) in prefixes(r.start_addr, r.end_addr)? {
                    let mut ts = TrafficSelector::subnets(la, lpre, ra, rpre).with_proto(proto);
                    ts.local_port = lp;
                    ts.peer_port = rp;
                    if !out.contains(&ts) {
                        out.push(ts);
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(BackendError(
            "kernel XFRM: the negotiated traffic selectors have nothing in common".into(),
        ));
    }
    Ok(out)
}

/// The `xfrm::child` description of a negotiated CHILD_SA.
fn spec_of(c: &ike::ChildSa) -> Result<ChildSaSpec, BackendError> {
    let (local, peer) = (c.local.ip(), c.remote.ip());
    let mode = match c.mode {
        ike::Mode::Transport => Mode::Transport,
        ike::Mode::Tunnel => Mode::Tunnel,
    };
    let hard = c
        .lifetime
        .hard
        .as_secs()
        .saturating_add(HARD_LIMIT_MARGIN_SECONDS);
    Ok(ChildSaSpec {
        policies: ChildPolicies {
            local,
            peer,
            mode,
            reqid: c.reqid,
            selectors: selectors(&c.local_ts, &c.remote_ts)?,
            priority: DEFAULT_PRIORITY,
        },
        spi_in: c.spi_in,
        spi_out: c.spi_out,
        crypto_in: crypto(c.encr, c.integ, &c.keys_in)?,
        crypto_out: crypto(c.encr, c.integ, &c.keys_out)?,
        replay: Replay {
            window: REPLAY_WINDOW,
            esn: c.esn,
        },
        lifetime: LifetimeConfig::time_and_bytes(0, hard, u64::MAX, u64::MAX),
        nat_t: c.encap.map(|e| NatT {
            local_port: e.local_port,
            peer_port: e.remote_port,
        }),
    })
}

impl SaBackend for KernelBackend {
    fn kind(&self) -> DatapathKind {
        DatapathKind::Kernel
    }

    fn prepare_ike_socket(&mut self, socket: &std::net::UdpSocket, port: u16) -> io::Result<()> {
        let family = match socket.local_addr()? {
            SocketAddr::V4(_) => SocketFamily::V4,
            SocketAddr::V6(_) => SocketFamily::V6,
        };
        let to_io = |e: xfrm::Error| io::Error::other(e.to_string());
        bypass_policies(socket, family).map_err(to_io)?;
        if port == NAT_T_PORT {
            enable_udp_encap(socket).map_err(to_io)?;
        }
        Ok(())
    }

    fn nat_t_ike(&self) -> bool {
        false
    }

    fn set_ike_sink(&mut self, _sink: mpsc::UnboundedSender<IkeDatagram>) {}

    fn send_ike(&self, _local: SocketAddr, _remote: SocketAddr, _message: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel backend does not own the NAT-T socket; the driver sends IKE itself",
        ))
    }

    fn prepare_local(&mut self, _local: IpAddr) -> Result<(), BackendError> {
        Ok(())
    }

    fn prepare_peer(
        &mut self,
        _local: IpAddr,
        _peer: IpAddr,
        _selectors: &[backend::TrafficSelector],
    ) -> Result<(), BackendError> {
        // Policies follow the negotiated traffic selectors (which IKE derived from these) and
        // go in with the first CHILD_SA; before it, traffic to the peer is not touched.
        Ok(())
    }

    fn install_child(&mut self, c: &ike::ChildSa) -> Result<(), BackendError> {
        let spec = spec_of(c)?;
        let handle =
            child::install(&self.kernel, &spec).map_err(|e| err("installing a CHILD_SA", e))?;
        tracing::info!(
            peer = %handle.peer,
            spi_in = format_args!("{:#010x}", handle.spi_in),
            spi_out = format_args!("{:#010x}", handle.spi_out),
            reqid = format_args!("{:#x}", handle.reqid),
            encap = spec.nat_t.is_some(),
            "CHILD_SA installed in kernel XFRM"
        );
        self.children.insert(
            (handle.peer, handle.spi_in),
            Installed {
                handle,
                inbound_shape: keyless(spec.inbound_sa()),
                pending_outbound: None,
                predecessor: None,
            },
        );
        Ok(())
    }

    fn rekey_child(&mut self, old_spi_in: u32, new: &ike::ChildSa) -> Result<(), BackendError> {
        let spec = spec_of(new)?;
        let handle = spec.handle();
        if !self.children.contains_key(&(handle.peer, old_spi_in)) {
            // Nothing to hand over from: install the pair at once.
            return self.install_child(new);
        }
        child::install_inbound(&self.kernel, &spec)
            .map_err(|e| err("installing a rekeyed CHILD_SA", e))?;
        // Same reqid as the old pair, so this only refreshes them, unless the selectors were
        // narrowed differently this time.
        if let Err(e) = child::install_policies(&self.kernel, &spec.policies) {
            let _ = self.kernel.delete_sa(&handle.inbound());
            return Err(err("installing a rekeyed CHILD_SA's policies", e));
        }
        tracing::info!(
            peer = %handle.peer,
            old_spi_in = format_args!("{old_spi_in:#010x}"),
            spi_in = format_args!("{:#010x}", handle.spi_in),
            spi_out = format_args!("{:#010x}", handle.spi_out),
            "rekeyed CHILD_SA: inbound installed, outbound follows the old one's removal"
        );
        self.children.insert(
            (handle.peer, handle.spi_in),
            Installed {
                handle,
                inbound_shape: keyless(spec.inbound_sa()),
                pending_outbound: Some(spec),
                predecessor: Some(old_spi_in),
            },
        );
        Ok(())
    }

    fn remove_child(&mut self, peer: IpAddr, spi_in: u32, spi_out: u32) {
        let Some(entry) = self.children.remove(&(peer, spi_in)) else {
            tracing::debug!(%peer, spi_in, spi_out, "no such CHILD_SA installed");
            return;
        };
        // Successors switch outbound now, before the old outbound SA goes.
        let mut replaced = false;
        for successor in self.children.values_mut() {
            if successor.handle.peer != peer || successor.predecessor != Some(spi_in) {
                continue;
            }
            successor.predecessor = None;
            if let Some(spec) = successor.pending_outbound.take() {
                match child::install_outbound(&self.kernel, &spec) {
                    Ok(()) => replaced = true,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "installing the rekeyed outbound SA failed")
                    }
                }
            }
        }
        // A redundant SA of a simultaneous rekey may go before it ever sent: its outbound SA
        // was never installed.
        if entry.pending_outbound.is_none() {
            if let Err(e) = self.kernel.delete_sa(&entry.handle.outbound()) {
                if !matches!(e.errno(), Some(nix::libc::ESRCH) | Some(nix::libc::ENOENT)) {
                    tracing::warn!(%peer, error = %e, "removing an outbound SA failed");
                }
            }
        }
        let retired = replaced
            && match self.retire_inbound(&entry) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "shortening a replaced inbound SA's life failed; removing it now");
                    false
                }
            };
        if retired {
            // The kernel deletes it after the grace period.
        } else if let Err(e) = self.kernel.delete_sa(&entry.handle.inbound()) {
            if !matches!(e.errno(), Some(nix::libc::ESRCH) | Some(nix::libc::ENOENT)) {
                tracing::warn!(%peer, error = %e, "removing an inbound SA failed");
            }
        }
        // The policies stay (until `remove_peer`): without an SA they hold the peer's traffic
        // (dropped, with an ACQUIRE), never let it out in clear.
    }

    fn remove_peer(&mut self, peer: IpAddr) {
        self.children.retain(|(p, _), _| *p != peer);
        match child::remove_peer(&self.kernel, peer) {
            Ok(r) => {
                tracing::info!(%peer, sas = r.sas, policies = r.policies, "peer removed from kernel XFRM")
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "removing the peer's SAs and policies failed")
            }
        }
    }

    fn held_packets(&self, peer: IpAddr) -> u64 {
        // The kernel sends one ACQUIRE per held flow (then again every
        // `net.core.xfrm_acq_expires`), so this counts flows wanting out rather than packets;
        // it grows when traffic is held, which is what the driver looks for.
        let mut a = self.acquires.lock().unwrap_or_else(|p| p.into_inner());
        a.drain();
        a.per_peer.get(&peer).copied().unwrap_or(0)
    }

    fn counters(&self, peer: IpAddr, spi_in: u32, _spi_out: u32) -> Option<ChildCounters> {
        let installed = self.children.get(&(peer, spi_in))?;
        let c = child::counters(&self.kernel, &installed.handle).ok()?;
        let (i, o) = (
            c.inbound.unwrap_or_default(),
            c.outbound.unwrap_or_default(),
        );
        Some(ChildCounters {
            bytes_in: i.bytes,
            bytes_out: o.bytes,
            packets_in: i.packets,
            packets_out: o.packets,
        })
    }

    fn shutdown(&mut self) {
        self.children.clear();
        match self.kernel.flush_ours() {
            Ok(f) => tracing::info!(sas = f.sas, policies = f.policies, "kernel XFRM cleaned up"),
            Err(e) => tracing::warn!(error = %e, "cleaning up kernel XFRM failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_become_minimal_prefixes() {
        assert_eq!(
            prefixes(ip("10.0.0.5"), ip("10.0.0.5")).unwrap(),
            [(ip("10.0.0.5"), 32)]
        );
        assert_eq!(
            prefixes(ip("10.1.0.0"), ip("10.1.255.255")).unwrap(),
            [(ip("10.1.0.0"), 16)]
        );
        assert_eq!(
            prefixes(ip("0.0.0.0"), ip("255.255.255.255")).unwrap(),
            [(ip("0.0.0.0"), 0)]
        );
        assert_eq!(
            prefixes(ip("10.0.0.1"), ip("10.0.0.6")).unwrap(),
            [
                (ip("10.0.0.1"), 32),
                (ip("10.0.0.2"), 31),
                (ip("10.0.0.4"), 31),
                (ip("10.0.0.6"), 32)
            ]
        );
        assert_eq!(
            prefixes(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).unwrap(),
            [(ip("::"), 0)]
        );
        assert_eq!(
            prefixes(ip("2001:db8::"), ip("2001:db8::ffff")).unwrap(),
            [(ip("2001:db8::"), 112)]
        );
        assert!(prefixes(ip("10.0.0.2"), ip("10.0.0.1")).is_err());
        assert!(prefixes(ip("10.0.0.2"), ip("::1")).is_err());
    }

    fn ts(addr: &str, proto: u8, port: Option<u16>) -> TsRange {
        TsRange::host(ip(addr), proto, port)
    }

    #[test]
    fn selectors_follow_the_negotiated_ones() {
        let s = selectors(&[ts("10.0.0.1", 0, None)], &[ts("10.0.0.2", 0, None)]).unwrap();
        assert_eq!(s, [TrafficSelector::hosts(ip("10.0.0.1"), ip("10.0.0.2"))]);
        let s = selectors(&[ts("10.0.0.1", 6, None)], &[ts("10.0.0.2", 6, Some(2049))]).unwrap();
        assert_eq!(
            s,
            [TrafficSelector::hosts(ip("10.0.0.1"), ip("10.0.0.2"))
                .with_proto(6)
                .with_peer_port(2049)]
        );
        // TCP on one side and UDP on the other share nothing.
        assert!(selectors(&[ts("10.0.0.1", 6, None)], &[ts("10.0.0.2", 17, None)]).is_err());
        let mut range = ts("10.0.0.2", 6, None);
        range.start_port = 1000;
        range.end_port = 2000;
        assert!(selectors(&[ts("10.0.0.1", 6, None)], &[range]).is_err());
    }
}

//! CHILD_SAs on the kernel datapath: the unit IKE negotiates (RFC 7296 §1.3), installed as
//! one inbound SA, one outbound SA and the policies that steer traffic into them.
//!
//! The input is neutral data ([`ChildSaSpec`]: addresses, SPIs, transforms and keys,
//! lifetimes, NAT-T ports, traffic selectors) so the daemon can hand over what its IKE SA
//! negotiated without this crate knowing about IKE. The operations:
//!
//! - [`install`]: inbound SA first (a peer may send as soon as it sees our SPI), then
//!   outbound, then the policies. A failure removes what this call added, so no half-installed
//!   child is left behind.
//! - Rekey without loss (RFC 7296 §2.8): [`install`] the new child with the **same reqid**
//!   next to the old one. The policies' templates select SAs by reqid, so they keep matching;
//!   the kernel prefers the newest non-dying SA for outbound traffic and accepts inbound
//!   traffic on both SPIs. [`remove_child`] the old one once the peer has switched (after the
//!   DELETE exchange). [`install_inbound`] / [`install_outbound`] split the install for a
//!   responder that wants to start sending on the new SA only when the initiator can receive.
//! - [`remove_child`] deletes exactly one child's two SAs; [`remove_policies`] its policies;
//!   [`remove_peer`] every SA and policy of ours that names one peer.
//! - [`counters`] reads both SAs' kernel counters; [`expiry`] turns a monitor EXPIRE into a
//!   rekey request (soft) or a notice that the SA is gone (hard).
//!
//! Inbound SPIs normally come from [`Kernel::allocate_spi`] (a larval SA that UPDSA fills).
//! The kernel drops a larval SA after `net.core.xfrm_acq_expires` (30 s) — an IKE exchange
//! slowed by retransmissions can outlive it, and UPDSA then fails with ESRCH. [`install`]
//! falls back to NEWSA with the same SPI in that case (and when the SPI was never allocated),
//! which the kernel refuses with EEXIST should anyone else hold the SPI by then.

use std::net::IpAddr;

use crate::algorithm::Crypto;
use crate::error::{Error, Result};
use crate::kernel::{policy_is_ours, Kernel};
use crate::lifetime::LifetimeConfig;
use crate::monitor::Event;
use crate::ownership::is_ours;
use crate::policy::{Direction, PolicyId, PolicySpec, DEFAULT_PRIORITY};
use crate::sa::{Encap, Mode, Replay, SaId, SaSpec, SaState};
use crate::selector::Selector;

/// The IKE and ESP-in-UDP port of NAT traversal (RFC 3948 §2.1, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;

/// One traffic selector pair as IKE negotiates it (TSi/TSr seen from this host): traffic
/// between `local` and `peer` prefixes, optionally one protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// Our side's address (or subnet in tunnel mode).
    pub local: IpAddr,
    /// Prefix length of `local`.
    pub local_prefix: u8,
    /// The peer's side.
    pub peer: IpAddr,
    /// Prefix length of `peer`.
    pub peer_prefix: u8,
    /// Upper-layer protocol, 0 for any.
    pub proto: u8,
    /// Our port, `None` for any.
    pub local_port: Option<u16>,
    /// The peer's port, `None` for any.
    pub peer_port: Option<u16>,
}

impl TrafficSelector {
    /// All traffic between two hosts (what a transport-mode CHILD_SA without narrowing covers).
    pub fn hosts(local: IpAddr, peer: IpAddr) -> Self {
        let full = |a: IpAddr| if a.is_ipv4() { 32 } else { 128 };
        TrafficSelector {
            local,
            local_prefix: full(local),
            peer,
            peer_prefix: full(peer),
            proto: 0,
            local_port: None,
            peer_port: None,
        }
    }

    /// Traffic between two subnets (tunnel mode).
    pub fn subnets(local: IpAddr, local_prefix: u8, peer: IpAddr, peer_prefix: u8) -> Self {
        TrafficSelector {
            local_prefix,
            peer_prefix,
            ..Self::hosts(local, peer)
        }
    }

    /// Restricts to one protocol (6 TCP, 17 UDP).
    pub fn with_proto(mut self, proto: u8) -> Self {
        self.proto = proto;
        self
    }

    /// Restricts to one port on the peer's side (e.g. NFS: TCP to the server's 2049).
    pub fn with_peer_port(mut self, port: u16) -> Self {
        self.peer_port = Some(port);
        self
    }

    /// Restricts to one port on our side.
    pub fn with_local_port(mut self, port: u16) -> Self {
        self.local_port = Some(port);
        self
    }

    /// The kernel selector for packets we send.
    pub fn outbound(&self) -> Selector {
        Selector {
            src: self.local,
            src_prefix: self.local_prefix,
            dst: self.peer,
            dst_prefix: self.peer_prefix,
            proto: self.proto,
            src_port: self.local_port,
            dst_port: self.peer_port,
        }
    }

    /// The kernel selector for packets we receive.
    pub fn inbound(&self) -> Selector {
        self.outbound().reversed()
    }
}

/// NAT traversal: ESP inside UDP (RFC 3948) between these ports. IBM Cloud forces it, and both
/// sides then use 4500 ([`NatT::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatT {
    /// Our UDP port (the daemon's 4500 socket, with `UDP_ENCAP_ESPINUDP` set).
    pub local_port: u16,
    /// The peer's UDP port as we see it (a NAT may have changed it).
    pub peer_port: u16,
}

impl Default for NatT {
    fn default() -> Self {
        NatT {
            local_port: NAT_T_PORT,
            peer_port: NAT_T_PORT,
        }
    }
}

/// SA lifetimes as IKE configures them: soft (rekey due) and hard (SA gone) limits on
/// seconds since install and on bytes, with jitter so that peers and sibling SAs do not all
/// rekey at the same second (RFC 7296 §2.8.1 asks for randomised rekey times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLifetime {
    /// Soft limit in seconds after install (0: none).
    pub soft_seconds: u64,
    /// Hard limit in seconds after install (0: none).
    pub hard_seconds: u64,
    /// Soft byte limit (`lifetime::INFINITE`: none).
    pub soft_bytes: u64,
    /// Hard byte limit (`lifetime::INFINITE`: none).
    pub hard_bytes: u64,
    /// The soft time limit is pulled earlier by up to this many seconds.
    pub jitter_seconds: u64,
}

impl ChildLifetime {
    /// No limits.
    pub fn unlimited() -> Self {
        ChildLifetime {
            soft_seconds: 0,
            hard_seconds: 0,
            soft_bytes: crate::lifetime::INFINITE,
            hard_bytes: crate::lifetime::INFINITE,
            jitter_seconds: 0,
        }
    }

    /// Rekey after `soft_seconds` (minus up to `jitter_seconds`), gone after `hard_seconds`.
    pub fn seconds(soft_seconds: u64, hard_seconds: u64, jitter_seconds: u64) -> Self {
        ChildLifetime {
            soft_seconds,
            hard_seconds,
            jitter_seconds,
            ..Self::unlimited()
        }
    }

    /// The kernel limits, with the jitter drawn from `random` (the caller's RNG: this crate
    /// draws no randomness).
    pub fn to_config(&self, random: u64) -> LifetimeConfig {
        LifetimeConfig::time_and_bytes(
            self.soft_seconds,
            self.hard_seconds,
            self.soft_bytes,
            self.hard_bytes,
        )
        .with_jitter(random, self.jitter_seconds)
    }
}

/// The policy half of a child: which traffic goes through SAs with `reqid`. Shared by a child
/// and its rekeyed successors (same reqid, same selectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPolicies {
    /// Our address (SA endpoint; in tunnel mode the gateway).
    pub local: IpAddr,
    /// The peer's address (SA endpoint).
    pub peer: IpAddr,
    /// Transport or tunnel.
    pub mode: Mode,
    /// The reqid linking templates to SAs; must be in `ownership::REQIDS`.
    pub reqid: u32,
    /// Protected traffic; at least one.
    pub selectors: Vec<TrafficSelector>,
    /// Policy priority (lower wins). Selectors with ports are given a slightly lower number so
    /// that they win over a host-wide selector of the same child.
    pub priority: u32,
}

impl ChildPolicies {
    /// Host-to-host transport mode, all traffic.
    pub fn transport(local: IpAddr, peer: IpAddr, reqid: u32) -> Self {
        ChildPolicies {
            local,
            peer,
            mode: Mode::Transport,
            reqid,
            selectors: vec![TrafficSelector::hosts(local, peer)],
            priority: DEFAULT_PRIORITY,
        }
    }

    /// Tunnel mode between gateways `local` and `peer` for the given subnet selectors.
    pub fn tunnel(
        local: IpAddr,
        peer: IpAddr,
        reqid: u32,
        selectors: Vec<TrafficSelector>,
    ) -> Self {
        ChildPolicies {
            local,
            peer,
            mode: Mode::Tunnel,
            reqid,
            selectors,
            priority: DEFAULT_PRIORITY,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.local.is_ipv4() != self.peer.is_ipv4() {
            return Err(Error::Invalid("child mixes IPv4 and IPv6 endpoints".into()));
        }
        if !is_ours(self.reqid) {
            return Err(Error::Invalid(format!(
                "reqid {:#x} is outside ibm-ipsec's range {}",
                self.reqid,
                crate::ownership::RANGE_TEXT
            )));
        }
        if self.selectors.is_empty() {
            return Err(Error::Invalid("child has no traffic selectors".into()));
        }
        for ts in &self.selectors {
            if ts.local.is_ipv4() != self.local.is_ipv4() || ts.peer.is_ipv4() != ts.local.is_ipv4()
            {
                return Err(Error::Invalid(
                    "traffic selector family differs from the child's".into(),
                ));
            }
        }
        Ok(())
    }

    /// The kernel policies: out and in for every selector, plus fwd in tunnel mode (traffic
    /// from the peer's subnet forwarded to ours passes the fwd policy, not in).
    pub fn specs(&self) -> Vec<PolicySpec> {
        let mut out = Vec::new();
        for ts in &self.selectors {
            let specific = ts.proto != 0 || ts.local_port.is_some() || ts.peer_port.is_some();
            let priority = self
                .priority
                .saturating_sub(if specific { 1000 } else { 0 });
            let mut dirs = vec![
                (Direction::Out, ts.outbound(), self.local, self.peer),
                (Direction::In, ts.inbound(), self.peer, self.local),
            ];
            if self.mode == Mode::Tunnel {
                dirs.push((Direction::Fwd, ts.inbound(), self.peer, self.local));
            }
            for (dir, selector, src, dst) in dirs {
                let mut p = match self.mode {
                    Mode::Transport => PolicySpec::transport(selector, dir, self.reqid),
                    Mode::Tunnel => PolicySpec::tunnel(selector, dir, src, dst, self.reqid),
                };
                // In transport mode the template names the SA endpoints too (the selector
                // may carry a narrower or pre-NAT address).
                p.templates[0].src = src;
                p.templates[0].dst = dst;
                p.priority = priority;
                out.push(p);
            }
        }
        out
    }
}

/// Everything needed to install one CHILD_SA pair: its policies plus both SAs' SPIs, keys and
/// parameters. Keys are zeroized on drop and never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaSpec {
    /// Endpoints, mode, reqid and selectors.
    pub policies: ChildPolicies,
    /// SPI we chose (inbound SA, peer → us), normally from `Kernel::allocate_spi`.
    pub spi_in: u32,
    /// SPI the peer chose (outbound SA, us → peer).
    pub spi_out: u32,
    /// Transform and keys for inbound (the peer's sending keys: KEYMAT for our receiving
    /// direction, RFC 7296 §2.17).
    pub crypto_in: Crypto,
    /// Transform and keys for outbound.
    pub crypto_out: Crypto,
    /// Inbound anti-replay window (packets) and ESN (both SAs). Outbound SAs get no window
    /// unless ESN is on (the kernel wants one then).
    pub replay: Replay,
    /// Limits, the same for both SAs (jitter already applied: see `ChildLifetime`).
    pub lifetime: LifetimeConfig,
    /// ESP in UDP, when NAT traversal is in use.
    pub nat_t: Option<NatT>,
}

impl ChildSaSpec {
    /// Our address.
    pub fn local(&self) -> IpAddr {
        self.policies.local
    }

    /// The peer's address.
    pub fn peer(&self) -> IpAddr {
        self.policies.peer
    }

    /// The keyless name of this child.
    pub fn handle(&self) -> ChildHandle {
        ChildHandle {
            local: self.local(),
            peer: self.peer(),
            reqid: self.policies.reqid,
            spi_in: self.spi_in,
            spi_out: self.spi_out,
        }
    }

    fn sa(&self, inbound: bool) -> SaSpec {
        let (src, dst, spi, crypto) = if inbound {
            (self.peer(), self.local(), self.spi_in, &self.crypto_in)
        } else {
            (self.local(), self.peer(), self.spi_out, &self.crypto_out)
        };
        let mut sa = SaSpec::transport(src, dst, spi, self.policies.reqid, crypto.clone());
        sa.mode = self.policies.mode;
        sa.lifetime = self.lifetime;
        sa.replay = Replay {
            // RFC 4303 §3.4.3: the sender keeps no window, so outbound SAs get none — except
            // with ESN, where the kernel refuses a zero window on any SA ("ESN replay window
            // must be > 0").
            window: if inbound || self.replay.esn {
                self.replay.window.max(u32::from(self.replay.esn))
            } else {
                0
            },
            esn: self.replay.esn,
        };
        sa.encap = self.nat_t.map(|n| {
            let (src_port, dst_port) = if inbound {
                (n.peer_port, n.local_port)
            } else {
                (n.local_port, n.peer_port)
            };
            Encap {
                src_port,
                dst_port,
                original_address: None,
            }
        });
        sa
    }

    /// The inbound SA (peer → us).
    pub fn inbound_sa(&self) -> SaSpec {
        self.sa(true)
    }

    /// The outbound SA (us → peer).
    pub fn outbound_sa(&self) -> SaSpec {
        self.sa(false)
    }
}

/// Names an installed child without its keys: what the daemon keeps to rekey, remove and read
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildHandle {
    /// Our address.
    pub local: IpAddr,
    /// The peer's address.
    pub peer: IpAddr,
    /// Its reqid.
    pub reqid: u32,
    /// Inbound SPI (ours).
    pub spi_in: u32,
    /// Outbound SPI (the peer's).
    pub spi_out: u32,
}

impl ChildHandle {
    /// The inbound SA's id.
    pub fn inbound(&self) -> SaId {
        SaId::esp(self.local, self.spi_in)
    }

    /// The outbound SA's id.
    pub fn outbound(&self) -> SaId {
        SaId::esp(self.peer, self.spi_out)
    }
}

/// Installs or fills the inbound SA. A larval SA from ALLOCSPI (ours) is filled with UPDSA;
/// if it is absent — never allocated, or expired after `xfrm_acq_expires` — NEWSA installs
/// it. An existing SA that is not ours is never replaced.
pub fn install_inbound<K: Kernel + ?Sized>(kernel: &K, spec: &ChildSaSpec) -> Result<()> {
    spec.policies.validate()?;
    let sa = spec.inbound_sa();
    match kernel.get_sa(&sa.id()) {
        Ok(existing) if !is_ours(existing.reqid) => Err(Error::NotOurs("SA")),
        Ok(_) => match kernel.update_sa(&sa) {
            Err(e) if is_gone(&e) => kernel.add_sa(&sa),
            other => other,
        },
        Err(e) if is_gone(&e) => kernel.add_sa(&sa),
        Err(e) => Err(e),
    }
}

/// Installs the outbound SA (NEWSA; from then on the kernel prefers it over older SAs with
/// the same reqid).
pub fn install_outbound<K: Kernel + ?Sized>(kernel: &K, spec: &ChildSaSpec) -> Result<()> {
    spec.policies.validate()?;
    kernel.add_sa(&spec.outbound_sa())
}

/// Installs (or refreshes) the policies; returns the ids of those this call created, so a
/// caller can roll them back. Existing identical policies of ours are updated in place.
pub fn install_policies<K: Kernel + ?Sized>(
    kernel: &K,
    policies: &ChildPolicies,
) -> Result<Vec<PolicyId>> {
    policies.validate()?;
    let mut created = Vec::new();
    for p in policies.specs() {
        let result = match kernel.add_policy(&p) {
            Ok(()) => {
                created.push(p.id());
                Ok(())
            }
            // Already there (a rekey, or a second child of the peer with the same
            // selectors): replace it only if it is ours.
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                let ours = kernel
                    .policies()?
                    .iter()
                    .any(|s| s.id() == Some(p.id()) && policy_is_ours(s));
                if ours {
                    kernel.update_policy(&p)
                } else {
                    Err(Error::NotOurs("policy"))
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            for id in &created {
                let _ = kernel.delete_policy(id);
            }
            return Err(e);
        }
    }
    Ok(created)
}

/// Installs a child: inbound SA, outbound SA, policies. On failure everything this call
/// added is removed again and the first error returned. Also the way to rekey: install the
/// successor with the same reqid, then [`remove_child`] the predecessor.
pub fn install<K: Kernel + ?Sized>(kernel: &K, spec: &ChildSaSpec) -> Result<ChildHandle> {
    let handle = spec.handle();
    install_inbound(kernel, spec)?;
    if let Err(e) = install_outbound(kernel, spec) {
        let _ = kernel.delete_sa(&handle.inbound());
        return Err(e);
    }
    if let Err(e) = install_policies(kernel, &spec.policies) {
        let _ = kernel.delete_sa(&handle.outbound());
        let _ = kernel.delete_sa(&handle.inbound());
        return Err(e);
    }
    Ok(handle)
}

fn is_gone(e: &Error) -> bool {
    matches!(e.errno(), Some(libc::ESRCH) | Some(libc::ENOENT))
}

/// Deletes exactly this child's two SAs (the policies stay for its successor or siblings).
/// An SA that is already gone (hard expiry) is not an error. Outbound goes first, so we stop
/// sending on the old SA before we stop accepting on it.
pub fn remove_child<K: Kernel + ?Sized>(kernel: &K, child: &ChildHandle) -> Result<()> {
    for id in [child.outbound(), child.inbound()] {
        match kernel.delete_sa(&id) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes the child's policies (those that exist and are ours).
pub fn remove_policies<K: Kernel + ?Sized>(kernel: &K, policies: &ChildPolicies) -> Result<usize> {
    let mut removed = 0;
    for p in policies.specs() {
        match kernel.delete_policy(&p.id()) {
            Ok(()) => removed += 1,
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// What [`remove_peer`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// SAs deleted.
    pub sas: usize,
    /// Policies deleted.
    pub policies: usize,
}

/// Removes every SA and policy of ours whose endpoints include `peer`, and nothing else.
/// SAs go first so that traffic to the peer is dropped (no SA for the policy), never sent in
/// the clear, until the policies are gone too.
pub fn remove_peer<K: Kernel + ?Sized>(kernel: &K, peer: IpAddr) -> Result<Removed> {
    let mut removed = Removed::default();
    for sa in kernel.sas()? {
        if is_ours(sa.reqid) && (sa.src == peer || sa.id.dst == peer) {
            match kernel.delete_sa(&sa.id) {
                Ok(()) => removed.sas += 1,
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for p in kernel.policies()? {
        let names_peer = p.templates.iter().any(|t| t.src == peer || t.dst == peer);
        if policy_is_ours(&p) && names_peer {
            if let Some(id) = p.id() {
                match kernel.delete_policy(&id) {
                    Ok(()) => removed.policies += 1,
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// One SA's counters as `status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Bytes carried (payload bytes as the kernel counts them).
    pub bytes: u64,
    /// Packets carried.
    pub packets: u64,
    /// Packets dropped for a failed ICV.
    pub integrity_failed: u32,
    /// Packets dropped as replays or outside the window.
    pub replay_dropped: u32,
    /// Install time, seconds since the epoch.
    pub added_unix: u64,
    /// First use, seconds since the epoch (0: never used).
    pub first_used_unix: u64,
}

impl From<&SaState> for SaCounters {
    fn from(s: &SaState) -> Self {
        SaCounters {
            bytes: s.current.bytes,
            packets: s.current.packets,
            integrity_failed: s.stats.integrity_failed,
            replay_dropped: s.stats.replay.saturating_add(s.stats.replay_window),
            added_unix: s.current.add_time,
            first_used_unix: s.current.use_time,
        }
    }
}

/// Both directions of a child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildCounters {
    /// Inbound SA (`None` if it is gone).
    pub inbound: Option<SaCounters>,
    /// Outbound SA (`None` if it is gone).
    pub outbound: Option<SaCounters>,
}

/// Reads the counters of both SAs; an SA that is gone reads as `None`.
pub fn counters<K: Kernel + ?Sized>(kernel: &K, child: &ChildHandle) -> Result<ChildCounters> {
    let read = |id: SaId| match kernel.get_sa(&id) {
        Ok(s) => Ok(Some(SaCounters::from(&s))),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(e),
    };
    Ok(ChildCounters {
        inbound: read(child.inbound())?,
        outbound: read(child.outbound())?,
    })
}

/// An EXPIRE for one of our SAs, reduced to what the IKE side acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The child's reqid.
    pub reqid: u32,
    /// The SA.
    pub sa: SaId,
    /// Its source address.
    pub src: IpAddr,
    /// Soft: start a rekey (CREATE_CHILD_SA, RFC 7296 §2.8). Hard: the kernel deleted the SA.
    pub hard: bool,
}

impl Expiry {
    /// Whether this expiry concerns `child`, and which of its SAs.
    pub fn direction(&self, child: &ChildHandle) -> Option<Direction> {
        if self.reqid != child.reqid {
            return None;
        }
        if self.sa == child.inbound() {
            Some(Direction::In)
        } else if self.sa == child.outbound() {
            Some(Direction::Out)
        } else {
            None
        }
    }
}

/// The expiry in a monitor event, if it is an EXPIRE of one of our SAs. EXPIRE messages
/// carry no algorithms, so a larval SA from ALLOCSPI that timed out (hard) looks like any
/// other: it matches no installed child's [`Expiry::direction`] and can be ignored there.
pub fn expiry(event: &Event) -> Option<Expiry> {
    match event {
        Event::Expire { sa, hard } if is_ours(sa.reqid) => Some(Expiry {
            reqid: sa.reqid,
            sa: SaId::esp(sa.id.dst, sa.id.spi),
            src: sa.src,
            hard: *hard,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Flushed;
    use crate::policy::PolicyState;
    use crate::sa::SpiRequest;
    use std::sync::Mutex;

    fn a() -> IpAddr {
        "10.97.0.1".parse().unwrap()
    }
    fn b() -> IpAddr {
        "10.97.0.2".parse().unwrap()
    }
    const R: u32 = 0x4942_0042;

    /// An in-memory kernel: SAs and policies as the real one keys them, with the errnos the
    /// real one returns, and a log of calls.
    #[derive(Default)]
    struct FakeKernel {
        sas: Mutex<Vec<SaSpec>>,
        larval: Mutex<Vec<SaId>>,
        policies: Mutex<Vec<PolicySpec>>,
        log: Mutex<Vec<String>>,
        fail_outbound_add: bool,
        fail_policy: Option<Direction>,
    }

    fn errno(op: &'static str, e: i32) -> Error {
        Error::kernel(op, e, None)
    }

    impl FakeKernel {
        fn state(spec: &SaSpec) -> SaState {
            let mut msg = spec.request(false, 1);
            SaState::parse(&msg.split_off(crate::netlink::HEADER_LEN)).unwrap()
        }
        fn log(&self, s: String) {
            self.log.lock().unwrap().push(s);
        }
    }

    impl Kernel for FakeKernel {
        fn allocate_spi(&self, _req: &SpiRequest) -> Result<u32> {
            unreachable!()
        }
        fn add_sa(&self, sa: &SaSpec) -> Result<()> {
            self.log(format!("add {:#x}", sa.spi));
            if self.fail_outbound_add && sa.src == a() {
                return Err(errno("add SA", libc::ENOSYS));
            }
            let mut sas = self.sas.lock().unwrap();
            if sas.iter().any(|s| s.id() == sa.id())
                || self.larval.lock().unwrap().contains(&sa.id())
            {
                return Err(errno("add SA", libc::EEXIST));
            }
            sas.push(sa.clone());
            Ok(())
        }
        fn update_sa(&self, sa: &SaSpec) -> Result<()> {
            self.log(format!("update {:#x}", sa.spi));
            let mut larval = self.larval.lock().unwrap();
            let mut sas = self.sas.lock().unwrap();
            if let Some(i) = larval.iter().position(|id| *id == sa.id()) {
                larval.remove(i);
            } else if let Some(i) = sas.iter().position(|s| s.id() == sa.id()) {
                sas.remove(i);
            } else {
                return Err(errno("update SA", libc::ESRCH));
            }
            sas.push(sa.clone());
            Ok(())
        }
        fn delete_sa(&self, id: &SaId) -> Result<()> {
            self.log(format!("delete {:#x}", id.spi));
            let mut sas = self.sas.lock().unwrap();
            match sas.iter().position(|s| s.id() == *id) {
                Some(i) => {
                    sas.remove(i);
                    Ok(())
                }
                None => Err(errno("delete SA", libc::ESRCH)),
            }
        }
        fn get_sa(&self, id: &SaId) -> Result<SaState> {
            if self.larval.lock().unwrap().contains(id) {
                let mut st = Self::state(&SaSpec::transport(
                    b(),
                    a(),
                    id.spi,
                    R,
                    Crypto::aes_gcm(&[0; 20]).unwrap(),
                ));
                st.aead = None;
                return Ok(st);
            }
            let sas = self.sas.lock().unwrap();
            sas.iter()
                .find(|s| s.id() == *id)
                .map(Self::state)
                .ok_or_else(|| errno("get SA", libc::ESRCH))
        }
        fn sas(&self) -> Result<Vec<SaState>> {
            Ok(self.sas.lock().unwrap().iter().map(Self::state).collect())
        }
        fn add_policy(&self, p: &PolicySpec) -> Result<()> {
            self.log(format!("add policy {:?}", p.dir));
            if self.fail_policy == Some(p.dir) {
                return Err(errno("add policy", libc::EINVAL));
            }
            let mut ps = self.policies.lock().unwrap();
            if ps.iter().any(|q| q.id() == p.id()) {
                return Err(errno("add policy", libc::EEXIST));
            }
            ps.push(p.clone());
            Ok(())
        }
        fn update_policy(&self, p: &PolicySpec) -> Result<()> {
            self.log(format!("update policy {:?}", p.dir));
            let mut ps = self.policies.lock().unwrap();
            ps.retain(|q| q.id() != p.id());
            ps.push(p.clone());
            Ok(())
        }
        fn delete_policy(&self, id: &PolicyId) -> Result<()> {
            self.log(format!("delete policy {:?}", id.dir));
            let mut ps = self.policies.lock().unwrap();
            let before = ps.len();
            ps.retain(|q| q.id() != *id);
            if ps.len() == before {
                Err(errno("delete policy", libc::ENOENT))
            } else {
                Ok(())
            }
        }
        fn policies(&self) -> Result<Vec<PolicyState>> {
            Ok(self
                .policies
                .lock()
                .unwrap()
                .iter()
                .map(|p| PolicyState::parse(&p.request(false, 1)[crate::netlink::HEADER_LEN..]))
                .collect::<std::result::Result<_, _>>()?)
        }
        fn flush_ours(&self) -> Result<Flushed> {
            unreachable!()
        }
    }

    fn spec(spi_in: u32, spi_out: u32) -> ChildSaSpec {
        ChildSaSpec {
            policies: ChildPolicies::transport(a(), b(), R),
            spi_in,
            spi_out,
            crypto_in: Crypto::aes_gcm(&[1; 36]).unwrap(),
            crypto_out: Crypto::aes_gcm(&[2; 36]).unwrap(),
            replay: Replay {
                window: 64,
                esn: true,
            },
            lifetime: ChildLifetime::seconds(3000, 3600, 300).to_config(7),
            nat_t: Some(NatT::default()),
        }
    }

    #[test]
    fn sas_carry_direction_ports_window_and_lifetime() {
        let mut s = spec(0x1000, 0x2000);
        s.nat_t = Some(NatT {
            local_port: 4500,
            peer_port: 61000,
        });
        let (i, o) = (s.inbound_sa(), s.outbound_sa());
        assert_eq!((i.src, i.dst, i.spi), (b(), a(), 0x1000));
        assert_eq!((o.src, o.dst, o.spi), (a(), b(), 0x2000));
        let (ie, oe) = (i.encap.unwrap(), o.encap.unwrap());
        assert_eq!((ie.src_port, ie.dst_port), (61000, 4500));
        assert_eq!((oe.src_port, oe.dst_port), (4500, 61000));
        assert_eq!((i.replay.window, o.replay.window), (64, 64));
        assert!(i.replay.esn && o.replay.esn);
        s.replay = Replay {
            window: 32,
            esn: false,
        };
        assert_eq!(
            (s.inbound_sa().replay.window, s.outbound_sa().replay.window),
            (32, 0)
        );
        s.replay.esn = true;
        s.replay.window = 0;
        assert_eq!(s.outbound_sa().replay.window, 1);
        // 3000 s minus 7 % 301 of jitter.
        assert_eq!(i.lifetime.soft_add_seconds, 2993);
        assert_eq!(o.lifetime.hard_add_seconds, 3600);
        assert_eq!(i.crypto, s.crypto_in);
        assert_eq!(i.reqid, R);
    }

    #[test]
    fn jitter_never_reaches_zero_or_exceeds_its_bound() {
        let l = ChildLifetime::seconds(10, 20, 100);
        for r in 0..1000 {
            let c = l.to_config(r);
            assert!((1..=10).contains(&c.soft_add_seconds), "{c:?}");
        }
        assert_eq!(
            ChildLifetime::seconds(10, 20, 0)
                .to_config(5)
                .soft_add_seconds,
            10
        );
    }

    #[test]
    fn transport_policies_in_and_out_with_narrowed_ports_first() {
        let mut p = ChildPolicies::transport(a(), b(), R);
        p.selectors.push(
            TrafficSelector::hosts(a(), b())
                .with_proto(6)
                .with_peer_port(2049),
        );
        let specs = p.specs();
        assert_eq!(specs.len(), 4);
        let out_tcp = &specs[2];
        assert_eq!(out_tcp.dir, Direction::Out);
        assert_eq!(
            (out_tcp.selector.proto, out_tcp.selector.dst_port),
            (6, Some(2049))
        );
        assert!(out_tcp.priority < specs[0].priority);
        let in_tcp = &specs[3];
        assert_eq!(
            (in_tcp.selector.src, in_tcp.selector.src_port),
            (b(), Some(2049))
        );
        let t = in_tcp.templates[0];
        assert_eq!(
            (t.src, t.dst, t.reqid, t.mode),
            (b(), a(), R, Mode::Transport)
        );
    }

    #[test]
    fn tunnel_policies_add_fwd_and_use_gateway_templates() {
        let ts = TrafficSelector::subnets(
            "192.168.1.0".parse().unwrap(),
            24,
            "192.168.2.0".parse().unwrap(),
            24,
        );
        let specs = ChildPolicies::tunnel(a(), b(), R, vec![ts]).specs();
        let dirs: Vec<_> = specs.iter().map(|p| p.dir).collect();
        assert_eq!(dirs, [Direction::Out, Direction::In, Direction::Fwd]);
        assert_eq!(specs[0].selector.dst_prefix, 24);
        let t = specs[2].templates[0];
        assert_eq!((t.src, t.dst, t.mode), (b(), a(), Mode::Tunnel));
    }

    #[test]
    fn install_fills_larval_inbound_then_outbound_then_policies() {
        let k = FakeKernel::default();
        let s = spec(0x1000, 0x2000);
        k.larval.lock().unwrap().push(s.handle().inbound());
        let h = install(&k, &s).unwrap();
        assert_eq!(h, s.handle());
        assert_eq!(
            *k.log.lock().unwrap(),
            [
                "update 0x1000",
                "add 0x2000",
                "add policy Out",
                "add policy In"
            ]
        );
        assert_eq!(k.sas.lock().unwrap().len(), 2);
    }

    #[test]
    fn install_without_larval_sa_falls_back_to_newsa() {
        // What an expired ALLOCSPI (ESRCH on UPDSA) or a hand-chosen SPI looks like.
        let k = FakeKernel::default();
        install(&k, &spec(0x1000, 0x2000)).unwrap();
        assert_eq!(k.log.lock().unwrap()[0], "add 0x1000");
    }

    #[test]
    fn failed_install_leaves_nothing_behind() {
        let k = FakeKernel {
            fail_outbound_add: true,
            ..Default::default()
        };
        assert!(install(&k, &spec(0x1000, 0x2000)).is_err());
        assert!(k.sas.lock().unwrap().is_empty());

        let k = FakeKernel {
            fail_policy: Some(Direction::In),
            ..Default::default()
        };
        assert!(install(&k, &spec(0x1000, 0x2000)).is_err());
        assert!(k.sas.lock().unwrap().is_empty());
        assert!(k.policies.lock().unwrap().is_empty());
    }

    #[test]
    fn rekey_keeps_policies_and_removes_exactly_the_old_child() {
        let k = FakeKernel::default();
        let old = install(&k, &spec(0x1000, 0x2000)).unwrap();
        let new = install(&k, &spec(0x3000, 0x4000)).unwrap();
        assert_eq!(k.sas.lock().unwrap().len(), 4);
        assert_eq!(k.policies.lock().unwrap().len(), 2);
        remove_child(&k, &old).unwrap();
        let left: Vec<u32> = k.sas.lock().unwrap().iter().map(|s| s.spi).collect();
        assert_eq!(left, [0x3000, 0x4000]);
        assert_eq!(k.policies.lock().unwrap().len(), 2);
        // Removing twice (e.g. after a hard expiry) is fine.
        remove_child(&k, &old).unwrap();
        assert!(counters(&k, &new).unwrap().inbound.is_some());
        assert_eq!(counters(&k, &old).unwrap(), ChildCounters::default());
    }

    #[test]
    fn remove_peer_touches_only_that_peer() {
        let k = FakeKernel::default();
        install(&k, &spec(0x1000, 0x2000)).unwrap();
        let mut other = spec(0x5000, 0x6000);
        other.policies = ChildPolicies::transport(a(), "10.97.0.3".parse().unwrap(), R + 1);
        install(&k, &other).unwrap();
        let r = remove_peer(&k, b()).unwrap();
        assert_eq!(
            r,
            Removed {
                sas: 2,
                policies: 2
            }
        );
        assert_eq!(k.sas.lock().unwrap().len(), 2);
        assert_eq!(k.policies.lock().unwrap().len(), 2);
        assert_eq!(remove_policies(&k, &other.policies).unwrap(), 2);
    }

    #[test]
    fn foreign_reqids_and_mixed_families_are_refused() {
        let k = FakeKernel::default();
        let mut s = spec(0x1000, 0x2000);
        s.policies.reqid = 1;
        assert!(matches!(install(&k, &s), Err(Error::Invalid(_))));
        let mut s = spec(0x1000, 0x2000);
        s.policies.selectors = vec![TrafficSelector::hosts(
            "::1".parse().unwrap(),
            "::2".parse().unwrap(),
        )];
        assert!(install(&k, &s).is_err());
        let mut s = spec(0x1000, 0x2000);
        s.policies.selectors.clear();
        assert!(install(&k, &s).is_err());
        assert!(k.log.lock().unwrap().is_empty());
    }

    #[test]
    fn expiry_maps_to_the_child_and_direction() {
        let s = spec(0x1000, 0x2000);
        let h = s.handle();
        let mut st = FakeKernel::state(&s.outbound_sa());
        // As the kernel sends it: no algorithm attributes in an EXPIRE.
        st.aead = None;
        let ev = Event::Expire {
            sa: Box::new(st.clone()),
            hard: false,
        };
        let e = expiry(&ev).unwrap();
        assert!(!e.hard);
        assert_eq!(e.direction(&h), Some(Direction::Out));
        let mut other = h;
        other.spi_out = 0x9999;
        assert_eq!(e.direction(&other), None);
        let mut foreign = st;
        foreign.reqid = 7;
        assert!(expiry(&Event::Expire {
            sa: Box::new(foreign),
            hard: true
        })
        .is_none());
        assert!(expiry(&Event::Overrun).is_none());
    }

    #[test]
    fn debug_never_shows_keys() {
        let text = format!("{:?}", spec(0x1000, 0x2000));
        assert!(
            !text.contains("[1, 1") && text.contains("redacted"),
            "{text}"
        );
    }
}

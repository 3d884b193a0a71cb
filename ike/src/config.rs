//! Configuration of an IKE SA (one per peer and role).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{LocalAuthenticator, PeerAuthenticator};
use crate::event::{Lifetime, Mode};
use crate::proposal::{EspProposal, IkeProposal};
use crate::retransmit::RetransmitConfig;
use crate::wire::TsRange;

/// The IANA port for IKE over UDP encapsulation (RFC 3948, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;

/// How an IKE SA behaves. Shared (`Arc`) by every SA made from it.
#[derive(Clone)]
pub struct Config {
    /// Signs our AUTH payload.
    pub local_auth: Arc<dyn LocalAuthenticator>,
    /// Verifies the peer.
    pub peer_auth: Arc<dyn PeerAuthenticator>,
    /// IKE proposals, preferred first (default: IBM's `aes256-sha384-ecp384`, then AEAD).
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals, preferred first (default: `aes256gcm16` without PFS).
    pub esp_proposals: Vec<EspProposal>,
    /// Mode of our CHILD_SAs. With transport, a peer that answers without
    /// `USE_TRANSPORT_MODE` fails the CHILD_SA ("peer chose tunnel mode").
    pub mode: Mode,
    /// Our traffic selectors; empty means our IKE address (strongSwan's `%dynamic`).
    pub local_ts: Vec<TsRange>,
    /// The peer's traffic selectors; empty means its IKE address.
    pub remote_ts: Vec<TsRange>,
    /// Pretend to be behind a NAT so that both ends use UDP encapsulation on port 4500
    /// (strongSwan `encap = yes`; IBM Cloud supports IPsec only this way).
    pub force_encap: bool,
    /// The UDP port on which datagrams carry the non-ESP marker.
    pub nat_t_port: u16,
    /// Announce and use IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Largest IP datagram a fragment may need, IP and UDP headers included (strongSwan's
    /// `fragment_size`, 1280).
    pub fragment_size: usize,
    /// Most fragments accepted for one message.
    pub max_fragments: u16,
    /// Send `INITIAL_CONTACT` in IKE_AUTH (we hold no other SA with this peer).
    pub initial_contact: bool,
    /// Request retransmission schedule.
    pub retransmit: RetransmitConfig,
    /// How long a responder keeps an SA that finished IKE_SA_INIT but not IKE_AUTH. It must
    /// cover several of the initiator's IKE_AUTH retransmissions (4 s, 11.2 s, 24.2 s, 47.5 s
    /// after the first with strongSwan's schedule), or a lossy link loses SAs that would have
    /// completed.
    pub half_open_timeout: Duration,
    /// CHILD_SA lifetimes reported in events (IBM: rekey after 1 h). The IKE SA rekeys its
    /// CHILD_SAs itself on [`child_rekey`](Self::child_rekey)'s schedule; this is what a
    /// datapath may program as a safety net (kernel soft/hard expiry).
    pub child_lifetime: Lifetime,
    /// When the IKE SA is rekeyed (RFC 7296 §2.18) and when it is deleted if rekeying keeps
    /// failing (IBM: `rekey_time = 3600`).
    pub ike_rekey: SaLifetime,
    /// When each CHILD_SA is rekeyed (§2.8) and when it is deleted if rekeying keeps failing
    /// (IBM: `rekey_time = 3600`).
    pub child_rekey: SaLifetime,
    /// Send a liveness check (empty INFORMATIONAL, §1.4) when nothing was heard from the peer
    /// for this long; `None` disables it (IBM: `dpd_delay = 30s`). A peer that does not answer
    /// within the retransmission schedule fails the IKE SA.
    pub dpd_delay: Option<Duration>,
    /// When NAT detection finds a NAT in front of us, send a NAT-T keepalive (one `0xFF`
    /// octet to the peer's port 4500, RFC 3948 §2.3) whenever nothing else went to the peer
    /// for this long; `None` disables them (strongSwan's `keep_alive`, 20 s).
    pub nat_keepalive: Option<Duration>,
    /// A rekey the peer refused with TEMPORARY_FAILURE (§2.25) is retried after this long,
    /// shortened by a random part of up to [`rekey_retry_jitter`](Self::rekey_retry_jitter)
    /// so that two peers do not collide again (strongSwan: 15 s − rand(10 s)).
    pub rekey_retry: Duration,
    /// See [`rekey_retry`](Self::rekey_retry).
    pub rekey_retry_jitter: Duration,
    /// Most INVALID_KE_PAYLOAD retries in one IKE_SA_INIT.
    pub max_ke_retries: u8,
    /// CHILD_SAs (of any state, rekeyed ones awaiting their DELETE included) at or above
    /// which the peer's CREATE_CHILD_SA requests are refused: an authenticated peer must not
    /// make us hold kernel SAs and reqids (shared by every peer) without limit.
    pub max_child_sas: usize,
}

impl Config {
    /// Defaults matching the IBM mount helper's strongSwan setup, with the given
    /// authenticators.
    pub fn new(
        local_auth: Arc<dyn LocalAuthenticator>,
        peer_auth: Arc<dyn PeerAuthenticator>,
    ) -> Self {
        Config {
            local_auth,
            peer_auth,
            ike_proposals: IkeProposal::defaults(),
            esp_proposals: EspProposal::defaults(),
            mode: Mode::Transport,
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            force_encap: true,
            nat_t_port: NAT_T_PORT,
            fragmentation: true,
            fragment_size: 1280,
            max_fragments: 32,
            initial_contact: true,
            retransmit: RetransmitConfig::default(),
            half_open_timeout: Duration::from_secs(60),
            child_lifetime: SaLifetime::strongswan(Duration::from_secs(3600)).nominal(),
            ike_rekey: SaLifetime::strongswan(Duration::from_secs(3600)),
            child_rekey: SaLifetime::strongswan(Duration::from_secs(3600)),
            dpd_delay: Some(Duration::from_secs(30)),
            nat_keepalive: Some(Duration::from_secs(20)),
            rekey_retry: Duration::from_secs(15),
            rekey_retry_jitter: Duration::from_secs(10),
            max_ke_retries: 3,
            max_child_sas: 64,
        }
    }
}

/// The rekey schedule of an SA, with strongSwan's semantics (`rekey_time`, `rand_time`,
/// `over_time`): rekey at `rekey_time − rand(0..jitter)` after the SA came up, and delete the
/// SA at `rekey_time + over_time` if it is still there (the rekey kept failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaLifetime {
    /// Nominal time to rekey.
    pub rekey_time: Duration,
    /// Up to this much is cut from `rekey_time` at random, per SA, so that the two peers (and
    /// many SAs set up together) do not rekey at the same moment.
    pub jitter: Duration,
    /// How long past `rekey_time` the SA may live before it is deleted.
    pub over_time: Duration,
}

impl SaLifetime {
    /// strongSwan's defaults for a `rekey_time`: `over_time` is 10 % of it and `rand_time`
    /// equals `over_time`, so the hard limit is 1.1 × `rekey_time`.
    pub fn strongswan(rekey_time: Duration) -> Self {
        let over_time = rekey_time / 10;
        SaLifetime {
            rekey_time,
            jitter: over_time,
            over_time,
        }
    }

    /// When the SA must be gone, counted from its creation.
    pub fn hard(&self) -> Duration {
        self.rekey_time.saturating_add(self.over_time)
    }

    /// The soft (`rekey_time`) and hard limits, as reported to datapaths.
    pub fn nominal(&self) -> Lifetime {
        Lifetime {
            soft: self.rekey_time,
            hard: self.hard(),
        }
    }

    /// This SA's rekey time: `rekey_time` minus a random part of `jitter` drawn from `rng`.
    pub fn draw_rekey(&self, rng: &mut dyn crate::crypto::Random) -> Duration {
        self.rekey_time
            .saturating_sub(random_below(self.jitter.min(self.rekey_time), rng))
    }
}

/// A uniformly random duration in `[0, max)` (millisecond resolution) from `rng`.
pub(crate) fn random_below(max: Duration, rng: &mut dyn crate::crypto::Random) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut b = [0u8; 8];
    rng.fill(&mut b);
    Duration::from_millis(u64::from_le_bytes(b) % ms)
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("local_id", &self.local_auth.id())
            .field("ike_proposals", &self.ike_proposals)
            .field("esp_proposals", &self.esp_proposals)
            .field("mode", &self.mode)
            .field("force_encap", &self.force_encap)
            .field("fragmentation", &self.fragmentation)
            .field("ike_rekey", &self.ike_rekey)
            .field("child_rekey", &self.child_rekey)
            .field("dpd_delay", &self.dpd_delay)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededRandom;

    #[test]
    fn strongswan_lifetime_semantics() {
        let l = SaLifetime::strongswan(Duration::from_secs(3600));
        assert_eq!(l.hard(), Duration::from_secs(3960));
        assert_eq!(l.nominal().soft, Duration::from_secs(3600));
        let mut rng = SeededRandom::new(3);
        let draws: Vec<Duration> = (0..200).map(|_| l.draw_rekey(&mut rng)).collect();
        assert!(draws
            .iter()
            .all(|d| *d > Duration::from_secs(3240) && *d <= Duration::from_secs(3600)));
        // The jitter is actually used, not a constant.
        assert!(draws.iter().any(|d| *d < Duration::from_secs(3420)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(3420)));
        let fixed = SaLifetime {
            jitter: Duration::ZERO,
            ..l
        };
        assert_eq!(fixed.draw_rekey(&mut rng), Duration::from_secs(3600));
    }
}

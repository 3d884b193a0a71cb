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
    /// CHILD_SA lifetimes reported in events (IBM: rekey after 1 h).
    pub child_lifetime: Lifetime,
    /// Most INVALID_KE_PAYLOAD retries in one IKE_SA_INIT.
    pub max_ke_retries: u8,
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
            child_lifetime: Lifetime {
                soft: Duration::from_secs(3600),
                hard: Duration::from_secs(3960),
            },
            max_ke_retries: 3,
        }
    }
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
            .finish_non_exhaustive()
    }
}

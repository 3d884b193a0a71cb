//! What an IKE SA tells its driver.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::PeerIdentity;
use crate::crypto::{DirectionKeys, EncrAlgorithm, IkeSuite, IntegAlgorithm};
use crate::wire::{Identification, ProtocolId, TsRange};

/// IPsec mode of a CHILD_SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Transport mode, requested with `USE_TRANSPORT_MODE` (RFC 7296 §1.3.1).
    Transport,
    /// Tunnel mode (the default when the notify is absent).
    Tunnel,
}

/// UDP encapsulation of ESP (RFC 3948): the ports ESP-in-UDP uses on this host and the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    /// Our port (4500).
    pub local_port: u16,
    /// The peer's port (4500, or what a NAT mapped it to).
    pub remote_port: u16,
}

/// Everything a datapath needs to install one CHILD_SA (a pair of ESP SAs).
///
/// Keys are zeroized on drop and redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct ChildSa {
    /// Identifies the policy this SA belongs to (the XFRM reqid): one per CHILD_SA, from the
    /// endpoint's [`ReqidAllocator`](crate::allocation::ReqidAllocator), kept across rekeys
    /// and reauthentication.
    pub reqid: u32,
    /// SPI of the inbound ESP SA (chosen by us).
    pub spi_in: u32,
    /// SPI of the outbound ESP SA (chosen by the peer).
    pub spi_out: u32,
    /// Transport or tunnel.
    pub mode: Mode,
    /// Always ESP here.
    pub protocol: ProtocolId,
    /// Encryption (for AES-GCM the key material ends with the 4-byte salt).
    pub encr: EncrAlgorithm,
    /// Integrity, `None` for AEAD.
    pub integ: Option<IntegAlgorithm>,
    /// Keys of the inbound SA.
    pub keys_in: DirectionKeys,
    /// Keys of the outbound SA.
    pub keys_out: DirectionKeys,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Our traffic selectors.
    pub local_ts: Vec<TsRange>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<TsRange>,
    /// When to rekey (soft) and when the SA must be gone (hard).
    pub lifetime: Lifetime,
    /// Our IKE address.
    pub local: SocketAddr,
    /// The peer's IKE address.
    pub remote: SocketAddr,
    /// ESP-in-UDP ports when NAT traversal is in use.
    pub encap: Option<UdpEncap>,
}

/// A CHILD_SA whose peer moved ([`Event::PeerAddressChanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedChild {
    /// Its reqid.
    pub reqid: u32,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// The peer's selectors now: in transport mode the host selectors of the old address
    /// name the new one (RFC 7296 §2.23.1).
    pub remote_ts: Vec<TsRange>,
}

/// Soft and hard lifetimes of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Rekey after this long.
    pub soft: Duration,
    /// Delete after this long if the rekey did not happen.
    pub hard: Duration,
}

/// Outputs of an IKE SA, in the order they happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// IKE_AUTH completed: the peer is authenticated.
    IkeSaUp {
        /// Our IKE SPI.
        local_spi: u64,
        /// Who we authenticated as.
        local_id: Identification,
        /// Who the peer is.
        peer: PeerIdentity,
        /// The IKE SA's algorithms.
        suite: IkeSuite,
        /// Whether UDP encapsulation is in use (NAT detected or forced).
        encap: bool,
    },
    /// The IKE SA was rekeyed (RFC 7296 §2.18): from now on it is known by `new_spi` (the
    /// [`SaHandle`](crate::SaHandle) of an [`Endpoint`](crate::Endpoint), and what
    /// [`IkeSa::local_spi`](crate::IkeSa::local_spi) returns for the successor); every
    /// CHILD_SA lives on unchanged under it. The old SA says nothing more: it is deleted
    /// quietly, without `IkeSaDown`. A driver that keys its state by handle re-keys it here.
    /// Redundant SAs of a simultaneous rekey (§2.8.2) are never reported.
    IkeSaRekeyed {
        /// Our SPI of the old IKE SA.
        old_spi: u64,
        /// Our SPI of the new IKE SA.
        new_spi: u64,
        /// The new IKE SA's algorithms.
        suite: IkeSuite,
    },
    /// A CHILD_SA is ready: install inbound and outbound ESP SAs. Also sent for the second
    /// new SA of a simultaneous rekey (RFC 7296 §2.8.1): both are installed, and the
    /// redundant one follows as `ChildSaDown` once deleted.
    ChildSaUp(Box<ChildSa>),
    /// A CHILD_SA was rekeyed: install `new`; the old one (`old_spi_in`) follows as
    /// `ChildSaDown` once it is deleted.
    ChildSaRekeyed {
        /// Inbound SPI of the SA being replaced.
        old_spi_in: u32,
        /// The replacement.
        new: Box<ChildSa>,
    },
    /// A CHILD_SA is gone: remove both ESP SAs.
    ChildSaDown {
        /// Its reqid.
        reqid: u32,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
        /// Why.
        reason: String,
    },
    /// Reauthentication done (RFC 7296 §2.8.3): this new IKE SA and all its CHILD_SAs are
    /// up; the old IKE SA `old` is being deleted now (its `ChildSaDown`/`IkeSaDown` follow
    /// on its handle). See [`Endpoint::reauthenticate`](crate::Endpoint::reauthenticate).
    Reauthenticated {
        /// Handle (local SPI) of the IKE SA replaced.
        old: u64,
    },
    /// The peer, behind a NAT, now sends its authenticated messages from another address or
    /// port (its NAT's mapping changed) and the IKE SA follows it (RFC 7296 §2.23): IKE goes
    /// to `new` from now on, and so must the ESP of every CHILD_SA listed (outbound
    /// destination, ESP-in-UDP remote port `encap.remote_port`; with a new address also the
    /// inbound source and the policies' `remote_ts`). The IKE SA rekeys each of them right
    /// away, so `ChildSaRekeyed` events with the new endpoints follow; a datapath that can
    /// update its SAs in place may already do so here. Never sent when the peer is not
    /// behind a NAT or when we are: their addresses do not move.
    PeerAddressChanged {
        /// The peer's previous IKE address.
        old: SocketAddr,
        /// Its address now.
        new: SocketAddr,
        /// ESP-in-UDP ports now.
        encap: Option<UdpEncap>,
        /// The CHILD_SAs that move with it.
        children: Vec<MovedChild>,
    },
    /// The IKE SA is gone (its CHILD_SAs were reported down first).
    IkeSaDown {
        /// Why.
        reason: String,
    },
    /// Something failed, with a reason for humans (the SA may still be up, e.g. when only a
    /// CHILD_SA was refused).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

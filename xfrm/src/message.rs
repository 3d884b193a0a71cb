//! XFRM message and attribute numbers (`include/uapi/linux/xfrm.h`).

/// `XFRM_MSG_*` message types.
pub mod kind {
    /// Add an SA.
    pub const NEWSA: u16 = 0x10;
    /// Delete an SA.
    pub const DELSA: u16 = 0x11;
    /// Get one SA or dump all.
    pub const GETSA: u16 = 0x12;
    /// Add a policy.
    pub const NEWPOLICY: u16 = 0x13;
    /// Delete a policy.
    pub const DELPOLICY: u16 = 0x14;
    /// Get one policy or dump all.
    pub const GETPOLICY: u16 = 0x15;
    /// Allocate an SPI (creates a larval SA).
    pub const ALLOCSPI: u16 = 0x16;
    /// Kernel asks for an SA (multicast).
    pub const ACQUIRE: u16 = 0x17;
    /// An SA reached a soft or hard limit (multicast).
    pub const EXPIRE: u16 = 0x18;
    /// Add or replace a policy.
    pub const UPDPOLICY: u16 = 0x19;
    /// Replace an SA (fills a larval SA from ALLOCSPI).
    pub const UPDSA: u16 = 0x1a;
    /// A policy expired (multicast).
    pub const POLEXPIRE: u16 = 0x1b;
    /// Flush SAs.
    pub const FLUSHSA: u16 = 0x1c;
    /// Flush policies.
    pub const FLUSHPOLICY: u16 = 0x1d;
    /// NAT-T mapping changed (multicast).
    pub const MAPPING: u16 = 0x26;
}

/// `XFRMA_*` attribute types.
pub mod attr {
    /// `xfrm_algo` (untruncated auth).
    pub const ALG_AUTH: u16 = 1;
    /// `xfrm_algo` cipher.
    pub const ALG_CRYPT: u16 = 2;
    /// `xfrm_encap_tmpl`.
    pub const ENCAP: u16 = 4;
    /// Array of `xfrm_user_tmpl`.
    pub const TMPL: u16 = 5;
    /// `xfrm_usersa_info` (in ACQUIRE/EXPIRE contexts).
    pub const SA: u16 = 6;
    /// `xfrm_userpolicy_info`.
    pub const POLICY: u16 = 7;
    /// `xfrm_lifetime_cur`.
    pub const LTIME_VAL: u16 = 9;
    /// `xfrm_replay_state`.
    pub const REPLAY_VAL: u16 = 10;
    /// Source address (`xfrm_address_t`) for DELSA/GETSA.
    pub const SRCADDR: u16 = 13;
    /// `xfrm_algo_aead`.
    pub const ALG_AEAD: u16 = 18;
    /// `xfrm_algo_auth` (truncated auth).
    pub const ALG_AUTH_TRUNC: u16 = 20;
    /// `xfrm_mark`.
    pub const MARK: u16 = 21;
    /// `xfrm_replay_state_esn`.
    pub const REPLAY_ESN_VAL: u16 = 23;
}

/// Multicast groups (`XFRMNLGRP_*`), for NETLINK_ADD_MEMBERSHIP.
pub mod group {
    /// ACQUIRE: a policy matched and no SA exists.
    pub const ACQUIRE: u32 = 1;
    /// EXPIRE: an SA hit a soft or hard limit.
    pub const EXPIRE: u32 = 2;
    /// SA added/deleted/updated by anyone.
    pub const SA: u32 = 3;
    /// Policy added/deleted/updated by anyone.
    pub const POLICY: u32 = 4;
    /// NAT-T mapping changes.
    pub const MAPPING: u32 = 8;
}

/// IPPROTO_ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IPPROTO_AH.
pub const IPPROTO_AH: u8 = 51;
/// `UDP_ENCAP_ESPINUDP` (RFC 3948 framing with the non-ESP marker for IKE).
pub const UDP_ENCAP_ESPINUDP: u16 = 2;

//! What "ours" means. Every SA and policy ibm-ipsec installs carries a reqid in
//! `REQIDS` (SAs directly, policies in their templates); everything else on the host —
//! strongSwan's, libreswan's, an operator's `ip xfrm` entries — is left alone by every
//! operation here, including `flush_ours`.
//!
//! Why reqids and not marks: an XFRM mark changes which packets an SA or policy matches
//! (`skb->mark & mask == value`), and inbound ESP arrives with mark 0, so a mark cannot label
//! ownership without changing the datapath. The reqid only links policies to SAs.
//! The range 0x4942_0000..=0x4942_ffff ("IB" in the high half) stays clear of the small
//! reqids strongSwan (from 1 upwards) and iproute2 users pick.

use std::ops::RangeInclusive;

/// Reqids that belong to ibm-ipsec.
pub const REQIDS: RangeInclusive<u32> = 0x4942_0000..=0x4942_ffff;

/// `REQIDS` as text for messages.
pub const RANGE_TEXT: &str = "0x49420000..=0x4942ffff";

/// Whether `reqid` is ours.
pub fn is_ours(reqid: u32) -> bool {
    REQIDS.contains(&reqid)
}

/// The reqid for the `n`th pairing of policies and SAs (wraps inside the range; 0 is never
/// returned so that a zero reqid can't alias "any").
pub fn reqid(n: u16) -> u32 {
    *REQIDS.start() | u32::from(n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range() {
        assert!(is_ours(reqid(0)) && is_ours(reqid(u16::MAX)));
        assert_eq!(reqid(0), 0x4942_0001);
        assert!(!is_ours(1) && !is_ours(0) && !is_ours(0x4943_0000));
    }
}

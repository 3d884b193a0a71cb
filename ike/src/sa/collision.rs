//! Exchange collisions (RFC 7296 §2.8.1, §2.8.2, §2.25), decided in one place.
//!
//! Both peers may start the same rekey at once. Each answers the other's request as usual
//! and remembers that it did (a [`ChildCollision`] on the old CHILD_SA, an [`IkeCollision`]
//! on the old IKE SA). When its own exchange ends, the SA made by the exchange that carried
//! the lowest of the four nonces is redundant: the peer that initiated that exchange deletes
//! it, and the initiator of the other exchange deletes the old SA. Both peers hold the same
//! four nonces, so they reach the same verdict without talking.
//!
//! When the collision is seen by only one side (the other's request arrived after its own
//! exchange had finished), the late request is refused with TEMPORARY_FAILURE because the
//! old SA is already being replaced or closed; its sender then treats the SA it answered as
//! the only successor. The other refusals of §2.25 (a child rekey during an IKE rekey, an IKE
//! rekey during child work) are answered the same way and retried after a random delay
//! ([`IkeSa::schedule_retry`]).

/// The peer's rekey of a CHILD_SA that we answered while our own rekey of it was in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChildCollision {
    /// Our inbound SPI of the CHILD_SA the peer's exchange created.
    pub(super) spi_in: u32,
    /// The lower of that exchange's two nonces.
    pub(super) lowest_nonce: Vec<u8>,
}

/// The peer's rekey of the IKE SA that we answered while our own was in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IkeCollision {
    /// Our SPI of the IKE SA the peer's exchange created.
    pub(super) spi: u64,
    /// Its algorithms.
    pub(super) suite: crate::crypto::IkeSuite,
    /// The lower of that exchange's two nonces.
    pub(super) lowest_nonce: Vec<u8>,
}

/// The lower of an exchange's two nonces, compared as unsigned big-endian byte strings.
pub(super) fn lowest_nonce(ni: &[u8], nr: &[u8]) -> Vec<u8> {
    ni.min(nr).to_vec()
}

/// Whether the SA made by our exchange (nonces `ours_ni`, `ours_nr`) is the redundant one
/// when the peer's exchange carried `theirs_lowest` as its lower nonce (§2.8.1: "the SA
/// created with the lowest of the four nonces").
pub(super) fn ours_is_redundant(ours_ni: &[u8], ours_nr: &[u8], theirs_lowest: &[u8]) -> bool {
    lowest_nonce(ours_ni, ours_nr).as_slice() < theirs_lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_of_four_nonces_loses_and_both_sides_agree() {
        let (a_ni, a_nr) = (vec![0x50; 32], vec![0x10; 32]);
        let (b_ni, b_nr) = (vec![0x20; 32], vec![0x90; 32]);
        // A's exchange holds 0x10…, the lowest: A is redundant from A's initiator's view…
        assert!(ours_is_redundant(&a_ni, &a_nr, &lowest_nonce(&b_ni, &b_nr)));
        // …and B's initiator, looking from the other side, keeps B.
        assert!(!ours_is_redundant(
            &b_ni,
            &b_nr,
            &lowest_nonce(&a_ni, &a_nr)
        ));
        // Comparison is bytewise from the first byte.
        assert!(ours_is_redundant(&[0x00, 0xff], &[0xff; 2], &[0x01, 0x00]));
    }
}

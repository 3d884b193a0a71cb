//! IKE message fragmentation (RFC 7383): splitting an SK payload's plaintext into SKF
//! fragments that fit a datagram, and reassembling received fragments with limits.

use crate::error::{Error, Result};
use crate::wire::PayloadType;

/// Size of the IP and UDP headers a fragment has to leave room for, so that the whole IP
/// datagram stays within the configured fragment size (RFC 7383 §2.5.1).
pub fn ip_udp_overhead(ipv6: bool) -> usize {
    (if ipv6 { 40 } else { 20 }) + 8
}

/// Splits `plaintext` into chunks of at most `chunk` bytes (at least one chunk).
pub fn split(plaintext: &[u8], chunk: usize) -> Vec<&[u8]> {
    if plaintext.is_empty() || chunk == 0 {
        return vec![plaintext];
    }
    plaintext.chunks(chunk).collect()
}

/// Collects the verified, decrypted fragments of one message (RFC 7383 §2.6).
#[derive(Debug, Clone)]
pub struct Reassembly {
    message_id: u32,
    total: u16,
    next_payload: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
}

/// Limits that keep a peer from making us buffer without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most fragments per message.
    pub max_fragments: u16,
    /// Most reassembled plaintext bytes.
    pub max_bytes: usize,
}

impl Reassembly {
    /// Adds fragment `number` of `total` (its ICV already verified, `plaintext` decrypted).
    /// `next_payload` is fragment 1's Next Payload field. Returns the whole inner chain and its
    /// first payload type once every fragment is present.
    ///
    /// A fragment with a larger total than the collection so far restarts it (the sender
    /// re-fragmented with a smaller size, §2.6.2); one with a smaller total is dropped.
    pub fn add(
        slot: &mut Option<Reassembly>,
        message_id: u32,
        number: u16,
        total: u16,
        next_payload: PayloadType,
        plaintext: Vec<u8>,
        limits: Limits,
    ) -> Result<Option<(PayloadType, Vec<u8>)>> {
        if total == 0 || number == 0 || number > total {
            return Err(Error::Protocol(format!("fragment {number} of {total}")));
        }
        if total > limits.max_fragments {
            return Err(Error::Protocol(format!(
                "{total} fragments, at most {} accepted",
                limits.max_fragments
            )));
        }
        let restart = match slot {
            Some(r) if r.message_id == message_id => {
                if total < r.total {
                    return Err(Error::Protocol("fragment total shrank".into()));
                }
                total > r.total
            }
            _ => true,
        };
        if restart {
            *slot = Some(Reassembly {
                message_id,
                total,
                next_payload: PayloadType::NoNextPayload,
                parts: vec![None; usize::from(total)],
                bytes: 0,
            });
        }
        let Some(r) = slot.as_mut() else {
            return Ok(None);
        };
        let index = usize::from(number - 1);
        if r.parts.get(index).is_some_and(Option::is_some) {
            return Ok(None); // duplicate
        }
        if r.bytes + plaintext.len() > limits.max_bytes {
            *slot = None;
            return Err(Error::Protocol("reassembled message too large".into()));
        }
        if number == 1 {
            r.next_payload = next_payload;
        }
        r.bytes += plaintext.len();
        if let Some(p) = r.parts.get_mut(index) {
            *p = Some(plaintext);
        }
        if r.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let done = slot.take();
        Ok(done.map(|r| {
            let mut whole = Vec::with_capacity(r.bytes);
            for part in r.parts.into_iter().flatten() {
                whole.extend_from_slice(&part);
            }
            (r.next_payload, whole)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_fragments: 4,
        max_bytes: 100,
    };

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        let mut slot = None;
        let t = PayloadType::IdInitiator;
        assert_eq!(
            Reassembly::add(
                &mut slot,
                1,
                3,
                3,
                PayloadType::NoNextPayload,
                b"c".to_vec(),
                LIMITS
            )
            .unwrap(),
            None
        );
        assert_eq!(
            Reassembly::add(&mut slot, 1, 1, 3, t, b"a".to_vec(), LIMITS).unwrap(),
            None
        );
        assert_eq!(
            Reassembly::add(&mut slot, 1, 1, 3, t, b"a".to_vec(), LIMITS).unwrap(),
            None
        );
        let done = Reassembly::add(
            &mut slot,
            1,
            2,
            3,
            PayloadType::NoNextPayload,
            b"b".to_vec(),
            LIMITS,
        )
        .unwrap();
        assert_eq!(done, Some((t, b"abc".to_vec())));
        assert!(slot.is_none());
    }

    #[test]
    fn limits_and_restarts() {
        let mut slot = None;
        let t = PayloadType::IdInitiator;
        assert!(Reassembly::add(&mut slot, 1, 1, 5, t, vec![], LIMITS).is_err());
        assert!(Reassembly::add(&mut slot, 1, 3, 2, t, vec![], LIMITS).is_err());
        Reassembly::add(&mut slot, 1, 1, 2, t, vec![0; 60], LIMITS).unwrap();
        // A larger total restarts; a smaller one is refused.
        Reassembly::add(&mut slot, 1, 1, 3, t, vec![0; 60], LIMITS).unwrap();
        assert!(Reassembly::add(&mut slot, 1, 2, 2, t, vec![0; 1], LIMITS).is_err());
        // Too many bytes in total drops the collection.
        assert!(Reassembly::add(&mut slot, 1, 2, 3, t, vec![0; 60], LIMITS).is_err());
        assert!(slot.is_none());
        assert_eq!(split(b"abcde", 2), vec![&b"ab"[..], b"cd", b"e"]);
        assert_eq!(split(b"", 2), vec![&b""[..]]);
    }
}

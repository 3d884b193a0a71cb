//! The pure-crypto parts of IKE_AUTH (RFC 7296 §2.15).

use subtle::ConstantTimeEq;

use super::{CryptoError, PrfAlgorithm, Result};

/// The fixed key pad for shared-key AUTH: the 17 ASCII octets "Key Pad for IKEv2", without a
/// terminator (RFC 7296 §2.15).
pub const PSK_KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets an AUTH payload covers:
/// `RealMessage | NonceData (of the peer) | prf(SK_p, RestOfIDPayload)`.
///
/// * `real_message`: the signer's own first message (IKE_SA_INIT request for the initiator,
///   response for the responder), exactly as sent — including any unknown payloads.
/// * `peer_nonce`: the other party's Nonce payload data.
/// * `sk_p`: SK_pi for the initiator, SK_pr for the responder.
/// * `id_payload_body`: the signer's ID payload from the ID Type octet on, i.e. without the
///   4-byte generic payload header ("RestOfInitIDPayload").
pub fn signed_octets(
    prf: PrfAlgorithm,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_payload_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.prf(sk_p, id_payload_body);
    let mut out = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced_id.len());
    out.extend_from_slice(real_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(maced_id.as_bytes());
    out
}

/// Shared-key AUTH data: `prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`.
pub fn psk_auth(prf: PrfAlgorithm, shared_secret: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let padded = prf.prf(shared_secret, PSK_KEY_PAD);
    prf.prf(padded.as_bytes(), signed_octets)
        .as_bytes()
        .to_vec()
}

/// Checks a peer's shared-key AUTH data in constant time.
pub fn verify_psk_auth(
    prf: PrfAlgorithm,
    shared_secret: &[u8],
    signed_octets: &[u8],
    received: &[u8],
) -> Result<()> {
    let expected = psk_auth(prf, shared_secret, signed_octets);
    if expected.len() == received.len() && bool::from(expected.as_slice().ct_eq(received)) {
        Ok(())
    } else {
        Err(CryptoError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Checked against an independent Python computation of RFC 7296 §2.15, using the
    /// SK_pi of the IBM default suite cross-check in `keys.rs`.
    #[test]
    fn psk_auth_matches_independent_computation() {
        let prf = PrfAlgorithm::HmacSha384;
        let sk_pi = h("3adfc829283b32dffde2edbab6b2a8cae276cf2dc68b6b88cb8f69a859de0ae053de41c89ca822f85e61c90e63939c99");
        let mut real = vec![0u8; 28];
        real.extend_from_slice(b"IKE_SA_INIT request bytes");
        let nr: Vec<u8> = (0x80u8..0xa0).collect();
        let mut id_body = vec![2u8, 0, 0, 0];
        id_body.extend_from_slice(b"client.example");
        let octets = signed_octets(prf, &real, &nr, &sk_pi, &id_body);
        assert_eq!(&octets[..real.len()], real.as_slice());
        assert_eq!(&octets[real.len()..real.len() + nr.len()], nr.as_slice());
        assert_eq!(
            &octets[real.len() + nr.len()..],
            h("3939ee7e370f8421638e2e335538f1a7bc2be6d822cf2639102d8bcf759517347b51943faefeceb975bc38f832006522").as_slice()
        );
        let psk = b"correct horse battery staple";
        let auth = psk_auth(prf, psk, &octets);
        assert_eq!(auth, h("84212cc55e8192b3c4c232689cecdac5732424ad83d76d2d389ccea226f2f520f7cea9ed7e848d83c13fdd081745c3fb"));
        verify_psk_auth(prf, psk, &octets, &auth).unwrap();
        assert_eq!(
            verify_psk_auth(prf, b"wrong secret", &octets, &auth),
            Err(CryptoError::AuthenticationFailed)
        );
        assert_eq!(
            verify_psk_auth(prf, psk, &octets, &auth[..47]),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn key_pad_is_17_octets_without_terminator() {
        assert_eq!(PSK_KEY_PAD.len(), 17);
    }
}

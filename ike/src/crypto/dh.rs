use core::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

use super::modp::{MODP_2048, MODP_3072, MODP_4096};
use super::{CryptoError, Random, Result, SecretBytes};

/// How many times [`DhSecret::generate`] redraws an out-of-range private value before
/// concluding that the random source is broken. A healthy source needs a second draw with
/// probability below 2^-32 (P-256) and never for the other groups.
const MAX_DRAWS: usize = 16;

/// Key exchange methods (IANA "Transform Type 4", Diffie-Hellman group numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 14: 2048-bit MODP (RFC 3526 §3).
    Modp2048,
    /// 15: 3072-bit MODP (RFC 3526 §4).
    Modp3072,
    /// 16: 4096-bit MODP (RFC 3526 §5).
    Modp4096,
    /// 19: 256-bit random ECP group, NIST P-256 (RFC 5903).
    Ecp256,
    /// 20: 384-bit random ECP group, NIST P-384 (RFC 5903).
    Ecp384,
    /// 31: Curve25519 (RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// Maps an IANA group number; `None` for groups we do not implement.
    pub fn from_iana_id(id: u16) -> Option<Self> {
        match id {
            14 => Some(Self::Modp2048),
            15 => Some(Self::Modp3072),
            16 => Some(Self::Modp4096),
            19 => Some(Self::Ecp256),
            20 => Some(Self::Ecp384),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// The IANA group number (also the KE payload's "Diffie-Hellman Group Num").
    pub fn iana_id(self) -> u16 {
        match self {
            Self::Modp2048 => 14,
            Self::Modp3072 => 15,
            Self::Modp4096 => 16,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::Curve25519 => 31,
        }
    }

    /// Length of the KE payload's key exchange data: the zero-padded modulus length for MODP
    /// (RFC 7296 §3.4), x‖y for ECP (RFC 5903 §7), 32 for Curve25519 (RFC 8031 §3).
    pub fn public_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_2048.len(),
            Self::Modp3072 => MODP_3072.len(),
            Self::Modp4096 => MODP_4096.len(),
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::Curve25519 => 32,
        }
    }

    /// Length of g^ir: the modulus length for MODP, the x coordinate for ECP (RFC 5903 §7).
    pub fn shared_len(self) -> usize {
        match self {
            Self::Modp2048 | Self::Modp3072 | Self::Modp4096 => self.public_len(),
            Self::Ecp256 => 32,
            Self::Ecp384 => 48,
            Self::Curve25519 => 32,
        }
    }

    /// Random bytes consumed per private value. For MODP this is the exponent length:
    /// at least twice the group's security strength (NIST SP 800-56A rev3 §5.6.1.1.1:
    /// 112, 128 and 152 bits for 2048, 3072 and 4096), rounded up with margin.
    pub fn private_len(self) -> usize {
        match self {
            Self::Modp2048 => 32,
            Self::Modp3072 => 40,
            Self::Modp4096 => 48,
            Self::Ecp256 => 32,
            Self::Ecp384 => 48,
            Self::Curve25519 => 32,
        }
    }
}

/// Our ephemeral DH private value for one exchange, with its public value.
///
/// Private key material is zeroized on drop and never printed.
pub struct DhSecret {
    group: DhGroup,
    key: PrivateKey,
    public: Vec<u8>,
}

enum PrivateKey {
    X25519(x25519_dalek::StaticSecret),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Modp(Zeroizing<Vec<u8>>),
}

impl DhSecret {
    /// Draws a private value from `rng`, redrawing if it is out of range for the group.
    pub fn generate<R: Random + ?Sized>(group: DhGroup, rng: &mut R) -> Result<Self> {
        let mut bytes = Zeroizing::new(vec![0u8; group.private_len()]);
        for _ in 0..MAX_DRAWS {
            rng.fill(&mut bytes);
            match Self::from_private_bytes(group, &bytes) {
                Err(CryptoError::InvalidPrivateValue) => continue,
                other => return other,
            }
        }
        Err(CryptoError::RandomSourceFailed)
    }

    /// Uses exactly [`DhGroup::private_len`] caller-supplied random bytes as the private
    /// value. `InvalidPrivateValue` means the bytes are out of range (zero or ≥ the group
    /// order for ECP, below 2 for MODP): draw new bytes and retry.
    pub fn from_private_bytes(group: DhGroup, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != group.private_len() {
            return Err(CryptoError::KeyLength {
                expected: group.private_len(),
                actual: bytes.len(),
            });
        }
        let (key, public) = match group {
            DhGroup::Curve25519 => {
                let mut raw = Zeroizing::new([0u8; 32]);
                raw.copy_from_slice(bytes);
                // Clamping (RFC 7748 §5) happens inside; every 32-byte string is usable.
                let secret = x25519_dalek::StaticSecret::from(*raw);
                let public = x25519_dalek::PublicKey::from(&secret).to_bytes().to_vec();
                (PrivateKey::X25519(secret), public)
            }
            DhGroup::Ecp256 => {
                let secret = p256::SecretKey::from_slice(bytes)
                    .map_err(|_| CryptoError::InvalidPrivateValue)?;
                let public =
                    uncompressed_xy(secret.public_key().to_encoded_point(false).as_bytes(), 64)?;
                (PrivateKey::P256(secret), public)
            }
            DhGroup::Ecp384 => {
                let secret = p384::SecretKey::from_slice(bytes)
                    .map_err(|_| CryptoError::InvalidPrivateValue)?;
                let public =
                    uncompressed_xy(secret.public_key().to_encoded_point(false).as_bytes(), 96)?;
                (PrivateKey::P384(secret), public)
            }
            DhGroup::Modp2048 | DhGroup::Modp3072 | DhGroup::Modp4096 => {
                // x = 0 or 1 gives a public value the peer must reject.
                let (last, head) = bytes.split_last().ok_or(CryptoError::InvalidPrivateValue)?;
                if head.iter().all(|&b| b == 0) && *last < 2 {
                    return Err(CryptoError::InvalidPrivateValue);
                }
                let public = match group {
                    DhGroup::Modp2048 => MODP_2048.public_value(bytes)?,
                    DhGroup::Modp3072 => MODP_3072.public_value(bytes)?,
                    _ => MODP_4096.public_value(bytes)?,
                };
                (PrivateKey::Modp(Zeroizing::new(bytes.to_vec())), public)
            }
        };
        Ok(Self { group, key, public })
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value in KE payload encoding ([`DhGroup::public_len`] bytes).
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// Computes g^ir from the peer's KE payload data, validating it first: exact length,
    /// on-curve and not the identity for ECP (SEC1 decoding), 1 < y < p-1 for MODP; an
    /// all-zero x25519 result is refused (RFC 8031 §2.3).
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<SharedSecret> {
        if peer_public.len() != self.group.public_len() {
            return Err(CryptoError::InvalidPublicValue);
        }
        let secret = match &self.key {
            PrivateKey::X25519(secret) => {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(peer_public);
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(raw));
                if !shared.was_contributory() {
                    return Err(CryptoError::WeakSharedSecret);
                }
                SecretBytes::from_slice(shared.as_bytes())
            }
            PrivateKey::P256(secret) => {
                let peer = p256::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| CryptoError::InvalidPublicValue)?;
                let shared =
                    p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                SecretBytes::from_slice(shared.raw_secret_bytes())
            }
            PrivateKey::P384(secret) => {
                let peer = p384::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| CryptoError::InvalidPublicValue)?;
                let shared =
                    p384::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                SecretBytes::from_slice(shared.raw_secret_bytes())
            }
            PrivateKey::Modp(x) => match self.group {
                DhGroup::Modp2048 => MODP_2048.shared_secret(x, peer_public)?,
                DhGroup::Modp3072 => MODP_3072.shared_secret(x, peer_public)?,
                _ => MODP_4096.shared_secret(x, peer_public)?,
            },
        };
        Ok(SharedSecret(secret))
    }
}

/// RFC 5903 §7 carries x‖y without SEC1's 0x04 prefix; add it for decoding.
fn sec1_uncompressed(xy: &[u8]) -> Vec<u8> {
    let mut sec1 = Vec::with_capacity(xy.len() + 1);
    sec1.push(0x04);
    sec1.extend_from_slice(xy);
    sec1
}

/// Strips the 0x04 prefix from an uncompressed SEC1 point.
fn uncompressed_xy(sec1: &[u8], len: usize) -> Result<Vec<u8>> {
    match sec1.split_first() {
        Some((0x04, xy)) if xy.len() == len => Ok(xy.to_vec()),
        _ => Err(CryptoError::InvalidPrivateValue),
    }
}

impl fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhSecret")
            .field("group", &self.group)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// The Diffie-Hellman shared secret g^ir, fixed-length big-endian ([`DhGroup::shared_len`]).
#[derive(Clone)]
pub struct SharedSecret(SecretBytes);

impl SharedSecret {
    /// Wraps g^ir obtained elsewhere (e.g. from a test vector or a peer implementation's log).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(SecretBytes::from_slice(bytes))
    }

    /// The g^ir octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedSecret(<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    use crate::crypto::random::TestRng;

    const ALL: [DhGroup; 6] = [
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Curve25519,
    ];

    #[test]
    fn iana_ids_round_trip() {
        for g in ALL {
            assert_eq!(DhGroup::from_iana_id(g.iana_id()), Some(g));
        }
        assert_eq!(DhGroup::from_iana_id(2), None);
        assert_eq!(DhGroup::from_iana_id(21), None);
    }

    /// RFC 7748 §6.1 (Alice and Bob) and §5.2 (first scalar-multiplication vector).
    #[test]
    fn rfc7748_x25519_vectors() {
        let alice = DhSecret::from_private_bytes(
            DhGroup::Curve25519,
            &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        let bob = DhSecret::from_private_bytes(
            DhGroup::Curve25519,
            &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
        )
        .unwrap();
        assert_eq!(
            alice.public_value(),
            h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a").as_slice()
        );
        assert_eq!(
            bob.public_value(),
            h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f").as_slice()
        );
        let shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(
            alice.shared_secret(bob.public_value()).unwrap().as_bytes(),
            shared.as_slice()
        );
        assert_eq!(
            bob.shared_secret(alice.public_value()).unwrap().as_bytes(),
            shared.as_slice()
        );

        let k = DhSecret::from_private_bytes(
            DhGroup::Curve25519,
            &h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
        )
        .unwrap();
        let out = k
            .shared_secret(&h(
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            ))
            .unwrap();
        assert_eq!(
            out.as_bytes(),
            h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552").as_slice()
        );
    }

    #[test]
    fn x25519_low_order_points_are_rejected() {
        let k = DhSecret::from_private_bytes(DhGroup::Curve25519, &[0x42; 32]).unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        for point in [[0u8; 32], one] {
            assert_eq!(
                k.shared_secret(&point).unwrap_err(),
                CryptoError::WeakSharedSecret
            );
        }
        assert_eq!(
            k.shared_secret(&[1; 31]).unwrap_err(),
            CryptoError::InvalidPublicValue
        );
    }

    /// RFC 5903 §8.1 and §8.2: KE payload data is x‖y, g^ir is the x coordinate.
    #[test]
    fn rfc5903_ecp_vectors() {
        struct Vector {
            group: DhGroup,
            i: &'static str,
            gi: [&'static str; 2],
            r: &'static str,
            gr: [&'static str; 2],
            gir_x: &'static str,
        }
        let vectors = [
            Vector {
                group: DhGroup::Ecp256,
                i: "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
                gi: [
                    "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
                    "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
                ],
                r: "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
                gr: [
                    "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
                    "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
                ],
                gir_x: "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
            },
            Vector {
                group: DhGroup::Ecp384,
                i: "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194",
                gi: [
                    "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa",
                    "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c",
                ],
                r: "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc",
                gr: [
                    "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571",
                    "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c",
                ],
                gir_x: "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746",
            },
        ];
        for v in vectors {
            let i = DhSecret::from_private_bytes(v.group, &h(v.i)).unwrap();
            let r = DhSecret::from_private_bytes(v.group, &h(v.r)).unwrap();
            let gi = [h(v.gi[0]), h(v.gi[1])].concat();
            let gr = [h(v.gr[0]), h(v.gr[1])].concat();
            assert_eq!(i.public_value(), gi.as_slice(), "{:?}", v.group);
            assert_eq!(r.public_value(), gr.as_slice(), "{:?}", v.group);
            assert_eq!(
                i.shared_secret(&gr).unwrap().as_bytes(),
                h(v.gir_x).as_slice()
            );
            assert_eq!(
                r.shared_secret(&gi).unwrap().as_bytes(),
                h(v.gir_x).as_slice()
            );

            // Off-curve (y flipped in its last bit), all-zero (identity has no affine
            // encoding), wrong length and a 0x04-prefixed value are refused.
            let mut off_curve = gr.clone();
            *off_curve.last_mut().unwrap() ^= 1;
            let mut prefixed = vec![0x04];
            prefixed.extend_from_slice(&gr);
            for bad in [off_curve, vec![0; gr.len()], gr[1..].to_vec(), prefixed] {
                assert_eq!(
                    i.shared_secret(&bad).unwrap_err(),
                    CryptoError::InvalidPublicValue,
                    "{:?}",
                    v.group
                );
            }
        }
    }

    #[test]
    fn ecp_private_values_out_of_range_are_redrawn() {
        assert_eq!(
            DhSecret::from_private_bytes(DhGroup::Ecp256, &[0; 32]).unwrap_err(),
            CryptoError::InvalidPrivateValue
        );
        assert_eq!(
            DhSecret::from_private_bytes(DhGroup::Ecp384, &[0xff; 48]).unwrap_err(),
            CryptoError::InvalidPrivateValue
        );
        // A source that first yields an invalid (all-ones ≥ n) value, then a good one.
        struct OnesThenCounter(bool, TestRng);
        impl Random for OnesThenCounter {
            fn fill(&mut self, buf: &mut [u8]) {
                if self.0 {
                    self.1.fill(buf)
                } else {
                    buf.fill(0xff);
                    self.0 = true;
                }
            }
        }
        let mut rng = OnesThenCounter(false, TestRng(1));
        assert!(DhSecret::generate(DhGroup::Ecp256, &mut rng).is_ok());
        // A stuck source never succeeds and is reported, not looped on forever.
        struct Zeros;
        impl Random for Zeros {
            fn fill(&mut self, buf: &mut [u8]) {
                buf.fill(0)
            }
        }
        assert_eq!(
            DhSecret::generate(DhGroup::Ecp384, &mut Zeros).unwrap_err(),
            CryptoError::RandomSourceFailed
        );
        assert_eq!(
            DhSecret::generate(DhGroup::Modp2048, &mut Zeros).unwrap_err(),
            CryptoError::RandomSourceFailed
        );
    }

    #[test]
    fn every_group_agrees_between_two_parties() {
        let mut rng = TestRng(9);
        for g in ALL {
            let a = DhSecret::generate(g, &mut rng).unwrap();
            let b = DhSecret::generate(g, &mut rng).unwrap();
            assert_eq!(a.public_value().len(), g.public_len());
            assert_ne!(a.public_value(), b.public_value());
            let ab = a.shared_secret(b.public_value()).unwrap();
            let ba = b.shared_secret(a.public_value()).unwrap();
            assert_eq!(ab.as_bytes(), ba.as_bytes(), "{g:?}");
            assert_eq!(ab.as_bytes().len(), g.shared_len());
            assert!(a.shared_secret(&vec![0u8; g.public_len() + 1]).is_err());
        }
    }

    #[test]
    fn modp_invalid_public_values_are_rejected() {
        for g in [DhGroup::Modp2048, DhGroup::Modp3072, DhGroup::Modp4096] {
            let a = DhSecret::from_private_bytes(g, &vec![0x5a; g.private_len()]).unwrap();
            let n = g.public_len();
            let mut one = vec![0u8; n];
            one[n - 1] = 1;
            for bad in [vec![0u8; n], one, vec![0xff; n], vec![2; n - 1]] {
                assert_eq!(
                    a.shared_secret(&bad).unwrap_err(),
                    CryptoError::InvalidPublicValue
                );
            }
        }
    }

    #[test]
    fn debug_redacts_private_values() {
        let a = DhSecret::from_private_bytes(DhGroup::Curve25519, &[0x77; 32]).unwrap();
        let text = format!("{a:?}");
        assert!(text.contains("redacted") && !text.contains("77"));
        let s = a.shared_secret(&[9; 32]).unwrap();
        assert_eq!(format!("{s:?}"), "SharedSecret(<redacted 32 bytes>)");
    }
}

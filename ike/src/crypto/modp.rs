//! Finite-field Diffie-Hellman over the RFC 3526 MODP groups 14, 15 and 16.
//!
//! Exponentiation is constant-time in the private exponent (crypto-bigint Montgomery ladder
//! with a fixed window and a public exponent bit bound). The groups are safe primes
//! (p = 2q + 1), so the only small subgroups are {1} and {1, p-1}: the range check
//! 1 < y < p-1 on the peer's value is the full subgroup validation that matters
//! (NIST SP 800-56A rev3 §5.6.2.3.1 partial validation suffices for safe-prime groups with
//! ephemeral keys).

use std::sync::OnceLock;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Limb, Uint, Word, U2048, U3072, U4096, U512};
use zeroize::Zeroizing;

use super::{CryptoError, Result, SecretBytes};

/// RFC 3526 §3: 2^2048 - 2^1984 - 1 + 2^64 * ( [2^1918 pi] + 124476 ).
const P2048_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);

/// RFC 3526 §4: 2^3072 - 2^3008 - 1 + 2^64 * ( [2^2942 pi] + 1690314 ).
const P3072_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);

/// RFC 3526 §5: 2^4096 - 2^4032 - 1 + 2^64 * ( [2^3966 pi] + 240904 ).
const P4096_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
);

/// One MODP group: its prime and lazily computed Montgomery parameters.
pub(crate) struct ModpGroup<const LIMBS: usize> {
    prime_hex: &'static str,
    params: OnceLock<DynResidueParams<LIMBS>>,
}

pub(crate) static MODP_2048: ModpGroup<{ U2048::LIMBS }> = ModpGroup::new(P2048_HEX);
pub(crate) static MODP_3072: ModpGroup<{ U3072::LIMBS }> = ModpGroup::new(P3072_HEX);
pub(crate) static MODP_4096: ModpGroup<{ U4096::LIMBS }> = ModpGroup::new(P4096_HEX);

/// The private exponent type: up to 512 bits (we use at most 384, see `DhGroup`).
type Exponent = U512;

impl<const LIMBS: usize> ModpGroup<LIMBS> {
    const fn new(prime_hex: &'static str) -> Self {
        Self {
            prime_hex,
            params: OnceLock::new(),
        }
    }

    /// Length of p, public values and shared secrets in bytes.
    pub(crate) const fn len(&self) -> usize {
        LIMBS * Limb::BYTES
    }

    fn params(&self) -> &DynResidueParams<LIMBS> {
        self.params.get_or_init(|| {
            // The primes are odd constants, so `new` cannot hit its even-modulus panic.
            DynResidueParams::new(&Uint::from_be_hex(self.prime_hex))
        })
    }

    fn prime(&self) -> &Uint<LIMBS> {
        self.params().modulus()
    }

    /// g^x mod p with g = 2, as `len()` big-endian bytes.
    pub(crate) fn public_value(&self, exponent: &[u8]) -> Result<Vec<u8>> {
        let base = DynResidue::new(&Uint::<LIMBS>::from_u8(2), *self.params());
        Ok(to_be_bytes(&pow(&base, exponent)?))
    }

    /// y^x mod p after checking 1 < y < p-1 (RFC 7296 §3.4 requires y to be exactly
    /// `len()` bytes, zero-padded). Rejects a result of 1.
    pub(crate) fn shared_secret(&self, exponent: &[u8], peer: &[u8]) -> Result<SecretBytes> {
        if peer.len() != self.len() {
            return Err(CryptoError::InvalidPublicValue);
        }
        let y = Uint::<LIMBS>::from_be_slice(peer);
        let p_minus_1 = self.prime().wrapping_sub(&Uint::ONE);
        if y <= Uint::ONE || y >= p_minus_1 {
            return Err(CryptoError::InvalidPublicValue);
        }
        let z = pow(&DynResidue::new(&y, *self.params()), exponent)?;
        if z == Uint::ONE {
            return Err(CryptoError::WeakSharedSecret);
        }
        Ok(SecretBytes::new(to_be_bytes(&z)))
    }
}

/// `base^exponent`, with `exponent` big-endian and at most 64 bytes; its bit length (public)
/// bounds the ladder, the bits themselves do not change the instruction trace.
fn pow<const LIMBS: usize>(base: &DynResidue<LIMBS>, exponent: &[u8]) -> Result<Uint<LIMBS>> {
    let width = Exponent::BYTES;
    if exponent.is_empty() || exponent.len() > width {
        return Err(CryptoError::InvalidPrivateValue);
    }
    let mut padded = Zeroizing::new([0u8; Exponent::BYTES]);
    padded[width - exponent.len()..].copy_from_slice(exponent);
    let x = Zeroizing::new(Exponent::from_be_slice(&padded[..]));
    let result = base.pow_bounded_exp(&*x, exponent.len() * 8).retrieve();
    Ok(result)
}

fn to_be_bytes<const LIMBS: usize>(value: &Uint<LIMBS>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LIMBS * Limb::BYTES);
    for word in value.as_words().iter().rev() {
        out.extend_from_slice(&Word::to_be_bytes(*word));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The primes have the structure RFC 3526 gives them (top and bottom 64 bits set), are
    /// odd, and pass Fermat tests for 2 and 3; and 2 generates the order-q subgroup
    /// (2^((p-1)/2) = 1, as p ≡ 7 mod 8). The constants were also checked offline against
    /// OpenSSL's built-in `modp_*` groups and the π formula above.
    #[test]
    fn primes_are_the_rfc3526_safe_primes() {
        fn check<const L: usize>(group: &ModpGroup<L>, bits: usize) {
            let p = *group.prime();
            assert_eq!(group.len() * 8, bits);
            let bytes = to_be_bytes(&p);
            assert!(bytes[..8].iter().all(|&b| b == 0xff));
            assert!(bytes[bytes.len() - 8..].iter().all(|&b| b == 0xff));
            assert_eq!(&bytes[8..12], &[0xc9, 0x0f, 0xda, 0xa2]);
            let params = *group.params();
            let p_minus_1 = p.wrapping_sub(&Uint::ONE);
            let q = p_minus_1.shr_vartime(1);
            for base in [2u8, 3] {
                let b = DynResidue::new(&Uint::<L>::from_u8(base), params);
                assert_eq!(
                    b.pow(&p_minus_1).retrieve(),
                    Uint::ONE,
                    "Fermat base {base}"
                );
            }
            let two = DynResidue::new(&Uint::<L>::from_u8(2), params);
            assert_eq!(two.pow(&q).retrieve(), Uint::ONE);
        }
        check(&MODP_2048, 2048);
        check(&MODP_3072, 3072);
        check(&MODP_4096, 4096);
    }

    #[test]
    fn small_exponents_known_answers() {
        // 2^1 = 2, 2^10 = 1024: the encoding is fixed-length big-endian.
        let g1 = MODP_2048.public_value(&[1]).unwrap();
        assert_eq!(g1.len(), 256);
        assert!(g1[..255].iter().all(|&b| b == 0));
        assert_eq!(g1[255], 2);
        let g10 = MODP_2048.public_value(&[0, 10]).unwrap();
        assert_eq!(&g10[254..], &[4, 0]);
        // (2^10)^3 = 2^30 through the shared-secret path.
        let z = MODP_2048.shared_secret(&[3], &g10).unwrap();
        assert_eq!(&z.as_bytes()[252..], &[0x40, 0, 0, 0]);
        assert!(z.as_bytes()[..252].iter().all(|&b| b == 0));
    }

    #[test]
    fn out_of_range_public_values_are_rejected() {
        let n = MODP_2048.len();
        let p = to_be_bytes(MODP_2048.prime());
        let p_minus_1 = to_be_bytes(&MODP_2048.prime().wrapping_sub(&Uint::ONE));
        let mut one = vec![0u8; n];
        one[n - 1] = 1;
        let mut two = vec![0u8; n];
        two[n - 1] = 2;
        for bad in [
            vec![0u8; n],
            one,
            p_minus_1,
            p,
            vec![0xff; n],
            vec![2u8; n - 1],
            vec![2u8; n + 1],
        ] {
            assert_eq!(
                MODP_2048.shared_secret(&[7; 32], &bad).unwrap_err(),
                CryptoError::InvalidPublicValue
            );
        }
        assert!(MODP_2048.shared_secret(&[7; 32], &two).is_ok());
    }

    #[test]
    fn exponent_bounds() {
        assert_eq!(
            MODP_2048.public_value(&[]).unwrap_err(),
            CryptoError::InvalidPrivateValue
        );
        assert_eq!(
            MODP_2048.public_value(&[1; 65]).unwrap_err(),
            CryptoError::InvalidPrivateValue
        );
        assert!(MODP_2048.public_value(&[1; 64]).is_ok());
    }
}

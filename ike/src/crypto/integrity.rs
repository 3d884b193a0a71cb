use ring::hmac;
use subtle::ConstantTimeEq;

use super::{CryptoError, Result};

/// Integrity transforms (IANA "Transform Type 3"): HMAC-SHA2 truncated to half the hash
/// length (RFC 4868 §2.2), used with AES-CBC for the SK payload and with ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlgorithm {
    /// AUTH_HMAC_SHA2_256_128 (12): 32-byte key, 16-byte ICV.
    HmacSha2_256_128,
    /// AUTH_HMAC_SHA2_384_192 (13): 48-byte key, 24-byte ICV.
    HmacSha2_384_192,
    /// AUTH_HMAC_SHA2_512_256 (14): 64-byte key, 32-byte ICV.
    HmacSha2_512_256,
}

impl IntegAlgorithm {
    /// Maps an IANA transform id; `None` for algorithms we do not implement.
    pub fn from_iana_id(id: u16) -> Option<Self> {
        match id {
            12 => Some(Self::HmacSha2_256_128),
            13 => Some(Self::HmacSha2_384_192),
            14 => Some(Self::HmacSha2_512_256),
            _ => None,
        }
    }

    /// The IANA transform id.
    pub fn iana_id(self) -> u16 {
        match self {
            Self::HmacSha2_256_128 => 12,
            Self::HmacSha2_384_192 => 13,
            Self::HmacSha2_512_256 => 14,
        }
    }

    /// Key length in bytes (RFC 4868 §2.1.1: the hash output length).
    pub fn key_len(self) -> usize {
        match self {
            Self::HmacSha2_256_128 => 32,
            Self::HmacSha2_384_192 => 48,
            Self::HmacSha2_512_256 => 64,
        }
    }

    /// ICV length in bytes (RFC 4868 §2.1.2: half the hash output).
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    pub(crate) fn ring_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha2_256_128 => hmac::HMAC_SHA256,
            Self::HmacSha2_384_192 => hmac::HMAC_SHA384,
            Self::HmacSha2_512_256 => hmac::HMAC_SHA512,
        }
    }

    /// Builds the keyed MAC; the key must be exactly [`key_len`](Self::key_len) bytes.
    pub(crate) fn key(self, key: &[u8]) -> Result<hmac::Key> {
        if key.len() != self.key_len() {
            return Err(CryptoError::KeyLength {
                expected: self.key_len(),
                actual: key.len(),
            });
        }
        Ok(hmac::Key::new(self.ring_algorithm(), key))
    }

    /// The truncated ICV over the concatenation of `parts`.
    pub fn compute(self, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
        let key = self.key(key)?;
        Ok(self.compute_with(&key, parts))
    }

    /// Verifies a truncated ICV in constant time.
    pub fn verify(self, key: &[u8], parts: &[&[u8]], icv: &[u8]) -> Result<()> {
        let key = self.key(key)?;
        self.verify_with(&key, parts, icv)
    }

    pub(crate) fn compute_with(self, key: &hmac::Key, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign().as_ref()[..self.icv_len()].to_vec()
    }

    pub(crate) fn verify_with(self, key: &hmac::Key, parts: &[&[u8]], icv: &[u8]) -> Result<()> {
        let expected = self.compute_with(key, parts);
        if icv.len() == expected.len() && bool::from(expected.as_slice().ct_eq(icv)) {
            Ok(())
        } else {
            Err(CryptoError::IntegrityCheckFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn iana_ids_round_trip() {
        for alg in [
            IntegAlgorithm::HmacSha2_256_128,
            IntegAlgorithm::HmacSha2_384_192,
            IntegAlgorithm::HmacSha2_512_256,
        ] {
            assert_eq!(IntegAlgorithm::from_iana_id(alg.iana_id()), Some(alg));
            assert_eq!(alg.icv_len() * 2, alg.key_len());
        }
        assert_eq!(IntegAlgorithm::from_iana_id(2), None); // HMAC_SHA1_96: not offered
    }

    /// RFC 4868 §2.7.2 authentication test vectors (keys of the full hash length, output
    /// truncated to half). Test case names follow the RFC (AUTH256-1 … AUTH512-4).
    #[test]
    fn rfc4868_truncated_vectors() {
        struct Case {
            alg: IntegAlgorithm,
            key: Vec<u8>,
            data: Vec<u8>,
            icv: &'static str,
        }
        let jefe = |n: usize| b"Jefe".iter().copied().cycle().take(n).collect::<Vec<u8>>();
        let data = |i: usize| -> Vec<u8> {
            match i {
                0 => b"Hi There".to_vec(),
                1 => b"what do ya want for nothing?".to_vec(),
                2 => vec![0xdd; 50],
                _ => vec![0xcd; 50],
            }
        };
        let keys = |n: usize| -> [Vec<u8>; 4] {
            [
                vec![0x0b; n],
                jefe(n),
                vec![0xaa; n],
                (1..=n as u8).collect(),
            ]
        };
        let expected: [(IntegAlgorithm, [&str; 4]); 3] = [
            (
                IntegAlgorithm::HmacSha2_256_128,
                [
                    "198a607eb44bfbc69903a0f1cf2bbdc5",
                    "167f928588c5cc2eef8e3093caa0e87c",
                    "cdcb1220d1ecccea91e53aba3092f962",
                    "372efcf9b40b35c2115b1346903d2ef4",
                ],
            ),
            (
                IntegAlgorithm::HmacSha2_384_192,
                [
                    "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
                    "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
                    "809f439be00274321d4a538652164b53554a508184a0c316",
                    "e8909051b8fe1a37966eec37a868389185d9da142bc5f755",
                ],
            ),
            (
                IntegAlgorithm::HmacSha2_512_256,
                [
                    "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
                    "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
                    "2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8",
                    "5e6688e5a3daec826ca32eaea224eff5e700628947470e13ad01302561bab108",
                ],
            ),
        ];
        let mut cases = Vec::new();
        for (alg, icvs) in expected {
            for (i, (key, icv)) in keys(alg.key_len()).into_iter().zip(icvs).enumerate() {
                cases.push(Case {
                    alg,
                    key,
                    data: data(i),
                    icv,
                });
            }
        }
        assert_eq!(cases.len(), 12);
        for c in cases {
            let got = c.alg.compute(&c.key, &[&c.data]).unwrap();
            assert_eq!(got, h(c.icv), "{:?}", c.alg);
            c.alg.verify(&c.key, &[&c.data], &got).unwrap();
            let mut bad = got.clone();
            bad[0] ^= 1;
            assert_eq!(
                c.alg.verify(&c.key, &[&c.data], &bad),
                Err(CryptoError::IntegrityCheckFailed)
            );
            assert_eq!(
                c.alg.verify(&c.key, &[&c.data], &got[1..]),
                Err(CryptoError::IntegrityCheckFailed)
            );
        }
    }

    /// RFC 4231 §4.6: HMAC-SHA-256 truncated to 128 bits.
    #[test]
    fn rfc4231_truncation_case() {
        let key = [0x0c; 20];
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &key));
        ctx.update(b"Test With Truncation");
        assert_eq!(
            &ctx.sign().as_ref()[..16],
            h("a3b6167473100ee06e0c796c2955552b").as_slice()
        );
    }

    #[test]
    fn wrong_key_length_is_rejected() {
        assert_eq!(
            IntegAlgorithm::HmacSha2_384_192.compute(&[0; 32], &[b"x"]),
            Err(CryptoError::KeyLength {
                expected: 48,
                actual: 32
            })
        );
    }
}

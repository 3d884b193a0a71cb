use ring::hmac;

use super::{CryptoError, Result, SecretBytes};

/// prf+ stops after 255 iterations: the counter octet must not wrap (RFC 7296 §2.13).
pub const PRF_PLUS_MAX_ITERATIONS: usize = 255;

/// Pseudo-random function transforms (IANA "Transform Type 2").
///
/// All are HMAC-SHA2 (RFC 4868 §2.1). HMAC takes keys of any length, so the RFC 7296 §2.14
/// rule for PRFs with fixed-size keys (halving Ni and Nr to fit) never applies: the whole of
/// `Ni | Nr` is the key for SKEYSEED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfAlgorithm {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlgorithm {
    /// Maps an IANA transform id; `None` for PRFs we do not implement.
    pub fn from_iana_id(id: u16) -> Option<Self> {
        match id {
            5 => Some(Self::HmacSha256),
            6 => Some(Self::HmacSha384),
            7 => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// The IANA transform id.
    pub fn iana_id(self) -> u16 {
        match self {
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// Preferred key length in bytes: the length of SK_d, SK_pi and SK_pr
    /// (RFC 7296 §2.14; RFC 4868 §2.1.2 sets it to the output length).
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    pub(crate) fn ring_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// `prf(key, data)`.
    pub fn prf(self, key: &[u8], data: &[u8]) -> SecretBytes {
        self.prf_concat(key, &[data])
    }

    /// `prf(key, parts[0] | parts[1] | …)` without building the concatenation.
    pub fn prf_concat(self, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
        let key = hmac::Key::new(self.ring_algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        SecretBytes::from_slice(ctx.sign().as_ref())
    }

    /// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 §2.13):
    /// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`.
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Result<SecretBytes> {
        self.prf_plus_concat(key, &[seed], len)
    }

    /// prf+ whose seed is the concatenation of `seed_parts`.
    pub fn prf_plus_concat(
        self,
        key: &[u8],
        seed_parts: &[&[u8]],
        len: usize,
    ) -> Result<SecretBytes> {
        let max = PRF_PLUS_MAX_ITERATIONS * self.output_len();
        if len > max {
            return Err(CryptoError::PrfPlusTooLong {
                requested: len,
                max,
            });
        }
        let key = hmac::Key::new(self.ring_algorithm(), key);
        // Reserve up front so the buffer never reallocates and leaves key copies behind.
        let mut out = SecretBytes::new(Vec::with_capacity(len + self.output_len()));
        let mut previous: Option<hmac::Tag> = None;
        let mut counter: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&key);
            if let Some(tag) = &previous {
                ctx.update(tag.as_ref());
            }
            for part in seed_parts {
                ctx.update(part);
            }
            ctx.update(&[counter]);
            let tag = ctx.sign();
            out.extend_within_capacity(tag.as_ref());
            previous = Some(tag);
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        Ok(out)
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
            PrfAlgorithm::HmacSha256,
            PrfAlgorithm::HmacSha384,
            PrfAlgorithm::HmacSha512,
        ] {
            assert_eq!(PrfAlgorithm::from_iana_id(alg.iana_id()), Some(alg));
        }
        assert_eq!(PrfAlgorithm::from_iana_id(2), None); // PRF_HMAC_SHA1: not offered
        assert_eq!(PrfAlgorithm::from_iana_id(8), None);
    }

    /// RFC 4231 §4.2–§4.8 (test case 5, truncated output, is covered by the integrity tests).
    #[test]
    fn rfc4231_hmac_sha2_vectors() {
        let long_key = vec![0xaa; 131];
        let cases: [(Vec<u8>, Vec<u8>, [&str; 3]); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                [
                    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                    "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
                    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                ],
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                [
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                ],
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                [
                    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                    "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
                    "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
                ],
            ),
            (
                (1u8..=25).collect(),
                vec![0xcd; 50],
                [
                    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                    "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
                    "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
                ],
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                [
                    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                    "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
                    "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
                ],
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                [
                    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                    "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
                    "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
                ],
            ),
        ];
        let algs = [
            PrfAlgorithm::HmacSha256,
            PrfAlgorithm::HmacSha384,
            PrfAlgorithm::HmacSha512,
        ];
        for (key, data, expected) in &cases {
            for (alg, want) in algs.iter().zip(expected) {
                assert_eq!(alg.prf(key, data).as_bytes(), h(want).as_slice(), "{alg:?}");
                // Split input gives the same MAC.
                let (a, b) = data.split_at(data.len() / 2);
                assert_eq!(alg.prf_concat(key, &[a, b]).as_bytes(), h(want).as_slice());
            }
        }
    }

    /// prf+ against an independent implementation (Python `hmac`, computed once offline).
    #[test]
    fn prf_plus_matches_independent_computation() {
        let key: Vec<u8> = (0u8..32).collect();
        let mut seed = b"prf+ seed ".to_vec();
        seed.extend(0u8..40);
        let cases = [
            (PrfAlgorithm::HmacSha256, 100, "d28018590bc77a7f233b0f2f0f0eab73fb32ab61636d0657cbf6edb4c201b9a4e2f70916a28f3cdb412589a0095255b025e689b296effaf82f28034aa73810c51a44652787555d2cd78b3ce45f1add17994250b2d6d2de31dd1afd4050c339092ad5b50d"),
            (PrfAlgorithm::HmacSha384, 200, "04b5bcb57adbb199622af245b42ca7e204e1cd8391677fe4ac7f4408d7b5164d8f64a0de8ce767f39fd0e2f4ccd4e38e5fb581b05d772c77fa6385459277f1612b20b8e81e259a09f6076aeb5d7ec5ad75538c87075efc9575839f6fde4c7db49ad23ce7dbd9bf17b9ab85ab91201a6ebfb34f5faf4f62507c064dfa8b117e650a766db8d0598422b12f15ffe205879f681b20abb80bc64de5f3e4383e8de8aeb7e01610dfd8b91163d7b8c0eff580685a796f700137b002b9599dad65af900b9117d30d04879cf5"),
            (PrfAlgorithm::HmacSha512, 130, "7af9370402d72499fa951d6855bd298316f7d5e025971651dc8bdc2441d4d06fe0d3f378be2f81207c9b141c797ac18e7fd2cebd6dc81946e9f976f783d74aeea0864bfb0e7f4eb9146a766f2ceadd80b52ddcbe6fb92d0b77d15f5ed76b81d24434901ef0b9005af78d5a2e1eb724ec62b7d172b2ae3ae9fcbdd26ac9f39aeda16f"),
        ];
        for (alg, len, want) in cases {
            let got = alg.prf_plus(&key, &seed, len).unwrap();
            assert_eq!(got.as_bytes(), h(want).as_slice(), "{alg:?}");
            let (a, b) = seed.split_at(7);
            assert_eq!(
                alg.prf_plus_concat(&key, &[a, b], len).unwrap().as_bytes(),
                got.as_bytes()
            );
        }
        // The 255th and last block: the counter octet reaches 0xff without wrapping.
        let full = PrfAlgorithm::HmacSha256
            .prf_plus(&key, &seed, 255 * 32)
            .unwrap();
        assert_eq!(
            &full.as_bytes()[254 * 32..],
            h("e7303b7085841341d2df5ac4d937e6f50189b15a43e975d5452b4bf752b34d6b").as_slice()
        );
    }

    #[test]
    fn prf_plus_is_bounded_at_255_iterations() {
        for alg in [
            PrfAlgorithm::HmacSha256,
            PrfAlgorithm::HmacSha384,
            PrfAlgorithm::HmacSha512,
        ] {
            let max = 255 * alg.output_len();
            assert_eq!(alg.prf_plus(b"k", b"s", max).unwrap().len(), max);
            assert_eq!(
                alg.prf_plus(b"k", b"s", max + 1).unwrap_err(),
                CryptoError::PrfPlusTooLong {
                    requested: max + 1,
                    max
                }
            );
        }
        assert!(PrfAlgorithm::HmacSha256
            .prf_plus(b"k", b"s", 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn prf_plus_prefix_property() {
        // A shorter request is a prefix of a longer one: prf+ is a stream.
        let long = PrfAlgorithm::HmacSha384
            .prf_plus(b"key", b"seed", 300)
            .unwrap();
        let short = PrfAlgorithm::HmacSha384
            .prf_plus(b"key", b"seed", 61)
            .unwrap();
        assert_eq!(&long.as_bytes()[..61], short.as_bytes());
    }
}

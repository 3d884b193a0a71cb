//! Protection of the Encrypted (SK) and Encrypted Fragment (SKF) payload bodies.
//!
//! See the contract in the [module doc](super) for how AAD, lengths and IVs fit together.

use core::fmt;

use aes::cipher::{
    block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit,
};
use ring::{aead, hmac};
use zeroize::Zeroizing;

use super::encryption::GCM_SALT_LEN;
use super::{CryptoError, EncrAlgorithm, IntegAlgorithm, Result};

/// AES block size: the CBC alignment of the encrypted part.
const AES_BLOCK: usize = 16;
/// GCM tag length for ENCR_AES_GCM_16.
const GCM_TAG: usize = 16;

/// One direction's SK payload protection: the cipher keyed with SK_ei (+ SK_ai), or with SK_er
/// (+ SK_ar). Build one per direction from [`IkeKeys::sk_cipher`](super::IkeKeys::sk_cipher).
pub struct SkCipher {
    encr: EncrAlgorithm,
    engine: Engine,
}

// One cipher per SA direction, built once and never moved in a hot path: size is irrelevant.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Gcm {
        key: aead::LessSafeKey,
        salt: Zeroizing<[u8; GCM_SALT_LEN]>,
    },
    Cbc {
        key: CbcKey,
        integ: IntegAlgorithm,
        mac: hmac::Key,
    },
}

/// AES key schedules; the `aes` crate's `zeroize` feature clears them on drop.
enum CbcKey {
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
}

impl CbcKey {
    fn new(encr: EncrAlgorithm, key: &[u8]) -> Result<Self> {
        let wrong = || CryptoError::KeyLength {
            expected: encr.key_len(),
            actual: key.len(),
        };
        if key.len() != encr.key_len() {
            return Err(wrong());
        }
        Ok(match encr {
            EncrAlgorithm::AesCbc128 => {
                Self::Aes128(aes::Aes128::new_from_slice(key).map_err(|_| wrong())?)
            }
            EncrAlgorithm::AesCbc192 => {
                Self::Aes192(aes::Aes192::new_from_slice(key).map_err(|_| wrong())?)
            }
            EncrAlgorithm::AesCbc256 => {
                Self::Aes256(aes::Aes256::new_from_slice(key).map_err(|_| wrong())?)
            }
            EncrAlgorithm::AesGcm16_128 | EncrAlgorithm::AesGcm16_256 => {
                return Err(CryptoError::InvalidSuite("AES-GCM is not a CBC cipher"))
            }
        })
    }

    /// Encrypts whole blocks in place. `buf.len()` is a multiple of 16 by construction.
    fn encrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) {
        let len = buf.len();
        // NoPadding over block-aligned input cannot fail; the results are ignored on purpose
        // rather than unwrapped so that no panic path exists.
        let _ = match self {
            Self::Aes128(k) => cbc::Encryptor::inner_iv_init(k.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ()),
            Self::Aes192(k) => cbc::Encryptor::inner_iv_init(k.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ()),
            Self::Aes256(k) => cbc::Encryptor::inner_iv_init(k.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ()),
        };
    }

    /// Decrypts whole blocks in place; `false` if `buf` is not block-aligned.
    fn decrypt(&self, iv: &[u8; AES_BLOCK], buf: &mut [u8]) -> bool {
        match self {
            Self::Aes128(k) => cbc::Decryptor::inner_iv_init(k.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .is_ok(),
            Self::Aes192(k) => cbc::Decryptor::inner_iv_init(k.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .is_ok(),
            Self::Aes256(k) => cbc::Decryptor::inner_iv_init(k.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .is_ok(),
        }
    }
}

impl SkCipher {
    /// Keys the SK protection for one direction.
    ///
    /// * AES-GCM: `integ` must be `None` and `integ_key` empty (RFC 5282 §8); `encr_key` is
    ///   the key followed by the 4-byte salt ([`EncrAlgorithm::keymat_len`] bytes).
    /// * AES-CBC: `integ` is required; `encr_key` is the AES key, `integ_key` the HMAC key.
    pub fn new(
        encr: EncrAlgorithm,
        integ: Option<IntegAlgorithm>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self> {
        if encr_key.len() != encr.keymat_len() {
            return Err(CryptoError::KeyLength {
                expected: encr.keymat_len(),
                actual: encr_key.len(),
            });
        }
        let engine = if encr.is_aead() {
            if integ.is_some() || !integ_key.is_empty() {
                return Err(CryptoError::InvalidSuite(
                    "AES-GCM takes no integrity transform",
                ));
            }
            let (key, salt_bytes) = encr_key.split_at(encr.key_len());
            let alg = match encr {
                EncrAlgorithm::AesGcm16_128 => &aead::AES_128_GCM,
                _ => &aead::AES_256_GCM,
            };
            let unbound = aead::UnboundKey::new(alg, key).map_err(|_| CryptoError::KeyLength {
                expected: encr.keymat_len(),
                actual: encr_key.len(),
            })?;
            let mut salt = Zeroizing::new([0u8; GCM_SALT_LEN]);
            salt.copy_from_slice(salt_bytes);
            Engine::Gcm {
                key: aead::LessSafeKey::new(unbound),
                salt,
            }
        } else {
            let integ = integ.ok_or(CryptoError::InvalidSuite(
                "AES-CBC needs an integrity transform",
            ))?;
            Engine::Cbc {
                key: CbcKey::new(encr, encr_key)?,
                integ,
                mac: integ.key(integ_key)?,
            }
        };
        Ok(Self { encr, engine })
    }

    /// The encryption transform.
    pub fn encr(&self) -> EncrAlgorithm {
        self.encr
    }

    /// Length of the IV the caller supplies to [`seal`](Self::seal).
    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }

    /// Length of the ICV at the end of the body (GCM tag or truncated HMAC).
    pub fn icv_len(&self) -> usize {
        match &self.engine {
            Engine::Gcm { .. } => GCM_TAG,
            Engine::Cbc { integ, .. } => integ.icv_len(),
        }
    }

    /// Padding bytes (excluding the pad length octet) added to `plaintext_len` bytes: the
    /// minimum that block-aligns CBC; none for GCM, whose block size is one octet
    /// (RFC 5282 §3).
    fn pad_len(&self, plaintext_len: usize) -> usize {
        match self.engine {
            Engine::Gcm { .. } => 0,
            Engine::Cbc { .. } => (AES_BLOCK - (plaintext_len + 1) % AES_BLOCK) % AES_BLOCK,
        }
    }

    /// Length of the SK body (IV | ciphertext | ICV) that [`seal`](Self::seal) produces for
    /// `plaintext_len` bytes of inner payloads. The SK payload length is this plus 4 (plus 4
    /// more for SKF); write it, and the IKE header length, into the AAD before sealing.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.iv_len() + plaintext_len + self.pad_len(plaintext_len) + 1 + self.icv_len()
    }

    /// Bytes the SK body adds on top of the plaintext: `sealed_len(n) - n`.
    pub fn overhead(&self, plaintext_len: usize) -> usize {
        self.sealed_len(plaintext_len) - plaintext_len
    }

    /// Encrypts and authenticates `plaintext` (the inner payload chain) and appends the SK
    /// body `IV | ciphertext | ICV` to `out`.
    ///
    /// `aad` is the message from the IKE header through the SK/SKF header (see the module
    /// doc); `iv` must be [`iv_len`](Self::iv_len) bytes and never repeat under this key.
    pub fn seal(&self, aad: &[u8], iv: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.check_iv(iv)?;
        let start = out.len();
        self.write_padded(iv, plaintext, out);
        let (_, body) = out.split_at_mut(start);
        match self.protect(aad, body) {
            Ok(icv) => {
                out.extend_from_slice(&icv);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Like [`seal`](Self::seal), with the AAD being all of `message` so far: the builder
    /// writes the IKE header and SK/SKF header (with final lengths) into `message`, then calls
    /// this to append the body.
    pub fn seal_appending(&self, message: &mut Vec<u8>, iv: &[u8], plaintext: &[u8]) -> Result<()> {
        self.check_iv(iv)?;
        let start = message.len();
        self.write_padded(iv, plaintext, message);
        let (aad, body) = message.split_at_mut(start);
        match self.protect(aad, body) {
            Ok(icv) => {
                message.extend_from_slice(&icv);
                Ok(())
            }
            Err(e) => {
                message.truncate(start);
                Err(e)
            }
        }
    }

    /// Verifies and decrypts an SK body (`IV | ciphertext | ICV`) and returns the inner
    /// payload chain with padding removed. The ICV is checked, in constant time, before
    /// anything is decrypted.
    pub fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        // At least the pad length octet (GCM) or one block (CBC) of ciphertext.
        let min_ct = match self.engine {
            Engine::Gcm { .. } => 1,
            Engine::Cbc { .. } => AES_BLOCK,
        };
        if body.len() < iv_len + min_ct + icv_len {
            return Err(CryptoError::Truncated);
        }
        let (iv, rest) = body.split_at(iv_len);
        let (ciphertext, icv) = rest.split_at(rest.len() - icv_len);
        let mut plain = match &self.engine {
            Engine::Gcm { key, salt } => {
                let nonce = gcm_nonce(salt, iv);
                let mut buf = rest.to_vec();
                let len = key
                    .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?
                    .len();
                buf.truncate(len);
                buf
            }
            Engine::Cbc { key, integ, mac } => {
                if ciphertext.len() % AES_BLOCK != 0 {
                    return Err(CryptoError::Truncated);
                }
                integ.verify_with(mac, &[aad, iv, ciphertext], icv)?;
                let mut iv_block = [0u8; AES_BLOCK];
                iv_block.copy_from_slice(iv);
                let mut buf = ciphertext.to_vec();
                if !key.decrypt(&iv_block, &mut buf) {
                    return Err(CryptoError::Truncated);
                }
                buf
            }
        };
        let Some((&pad, _)) = plain.split_last() else {
            return Err(CryptoError::Truncated);
        };
        // RFC 7296 §3.14: the padding may hold any value and be longer than the minimum;
        // only its length must fit.
        let inner_len = plain
            .len()
            .checked_sub(usize::from(pad) + 1)
            .ok_or(CryptoError::BadPadding)?;
        plain.truncate(inner_len);
        Ok(plain)
    }

    fn check_iv(&self, iv: &[u8]) -> Result<()> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::IvLength {
                expected: self.iv_len(),
                actual: iv.len(),
            });
        }
        Ok(())
    }

    /// Appends `IV | plaintext | padding | pad length` (padding octets are zero).
    fn write_padded(&self, iv: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let pad = self.pad_len(plaintext.len());
        out.reserve(self.sealed_len(plaintext.len()));
        out.extend_from_slice(iv);
        out.extend_from_slice(plaintext);
        out.resize(out.len() + pad, 0);
        // pad < 16 always, so the cast is exact.
        out.push(pad as u8);
    }

    /// Encrypts `body[iv_len..]` in place and returns the ICV; `body` starts with the IV.
    fn protect(&self, aad: &[u8], body: &mut [u8]) -> Result<Vec<u8>> {
        let (iv, data) = body.split_at_mut(self.iv_len());
        match &self.engine {
            Engine::Gcm { key, salt } => {
                let nonce = gcm_nonce(salt, iv);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), data)
                    .map_err(|_| CryptoError::Truncated)?;
                Ok(tag.as_ref().to_vec())
            }
            Engine::Cbc { key, integ, mac } => {
                let mut iv_block = [0u8; AES_BLOCK];
                iv_block.copy_from_slice(iv);
                key.encrypt(&iv_block, data);
                Ok(integ.compute_with(mac, &[aad, iv, data]))
            }
        }
    }
}

/// GCM nonce = 4-byte salt from the key material | 8-byte explicit IV (RFC 5282 §4).
fn gcm_nonce(salt: &[u8; GCM_SALT_LEN], iv: &[u8]) -> aead::Nonce {
    let mut nonce = [0u8; aead::NONCE_LEN];
    nonce[..GCM_SALT_LEN].copy_from_slice(salt);
    nonce[GCM_SALT_LEN..].copy_from_slice(&iv[..aead::NONCE_LEN - GCM_SALT_LEN]);
    aead::Nonce::assume_unique_for_key(nonce)
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let integ = match &self.engine {
            Engine::Gcm { .. } => None,
            Engine::Cbc { integ, .. } => Some(*integ),
        };
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &integ)
            .field("keys", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::TestRng;
    use crate::crypto::Random;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Every supported SK suite with deterministic keys.
    fn suites() -> Vec<SkCipher> {
        let combos = [
            (EncrAlgorithm::AesGcm16_128, None),
            (EncrAlgorithm::AesGcm16_256, None),
            (
                EncrAlgorithm::AesCbc128,
                Some(IntegAlgorithm::HmacSha2_256_128),
            ),
            (
                EncrAlgorithm::AesCbc192,
                Some(IntegAlgorithm::HmacSha2_512_256),
            ),
            (
                EncrAlgorithm::AesCbc256,
                Some(IntegAlgorithm::HmacSha2_384_192),
            ),
            (
                EncrAlgorithm::AesCbc256,
                Some(IntegAlgorithm::HmacSha2_256_128),
            ),
        ];
        combos
            .into_iter()
            .map(|(encr, integ)| {
                let ek = vec![0x3c; encr.keymat_len()];
                let ik = vec![0xc3; integ.map_or(0, IntegAlgorithm::key_len)];
                SkCipher::new(encr, integ, &ek, &ik).unwrap()
            })
            .collect()
    }

    /// McGrew & Viega GCM test cases 4 (AES-128) and 16 (AES-256), as used by NIST: the
    /// 12-byte IV `cafebabe facedbaddecaf888` is split into the RFC 5282 salt (from KEYMAT)
    /// and the 8-byte explicit IV. `open` treats the last plaintext octet (0x39 = 57) as the
    /// pad length, so it returns the first 2 octets.
    #[test]
    fn gcm_known_answers() {
        let p = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let cases = [
            (
                EncrAlgorithm::AesGcm16_128,
                "feffe9928665731c6d6a8f9467308308",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                EncrAlgorithm::AesGcm16_256,
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        for (encr, key, c, t) in cases {
            let mut keymat = h(key);
            keymat.extend_from_slice(&h("cafebabe"));
            let sk = SkCipher::new(encr, None, &keymat, &[]).unwrap();
            let iv = h("facedbaddecaf888");
            let body = [iv.clone(), h(c), h(t)].concat();
            assert_eq!(sk.open(&aad, &body).unwrap(), p[..2].to_vec(), "{encr:?}");

            // seal writes pad length 0 after 59 plaintext octets: the keystream (and so the
            // first 59 ciphertext octets) must match the vector.
            let mut out = Vec::new();
            sk.seal(&aad, &iv, &p[..59], &mut out).unwrap();
            assert_eq!(&out[..8], iv.as_slice());
            assert_eq!(&out[8..8 + 59], &h(c)[..59]);
            assert_eq!(out.len(), 8 + 60 + 16);
        }
    }

    /// NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt) through the SK path; the ICV is the
    /// RFC 4868 HMAC-SHA-384-192 over AAD | IV | ciphertext.
    #[test]
    fn cbc_known_answers() {
        let key = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv = h("000102030405060708090a0b0c0d0e0f");
        let p = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710");
        let c = h("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b");
        let integ = IntegAlgorithm::HmacSha2_384_192;
        let mac_key = [0x0b; 48];
        let sk = SkCipher::new(EncrAlgorithm::AesCbc256, Some(integ), &key, &mac_key).unwrap();
        let aad = b"header".to_vec();
        let icv = integ.compute(&mac_key, &[&aad, &iv, &c]).unwrap();
        let body = [iv.clone(), c.clone(), icv].concat();
        // Last plaintext octet 0x10 = 16 octets of padding before it.
        assert_eq!(sk.open(&aad, &body).unwrap(), p[..64 - 17].to_vec());

        // 63 octets + pad length 0 fill four blocks; the first three match the vector.
        let mut out = Vec::new();
        sk.seal(&aad, &iv, &p[..63], &mut out).unwrap();
        assert_eq!(&out[16..16 + 48], &c[..48]);
        assert_eq!(out.len(), 16 + 64 + 24);
        let icv = integ.compute(&mac_key, &[&aad, &out[..80]]).unwrap();
        assert_eq!(&out[80..], icv.as_slice());
    }

    #[test]
    fn round_trip_every_suite_and_length() {
        let mut rng = TestRng(0x5eed);
        for sk in suites() {
            for len in (0..70).chain([1000, 1024, 2000, 2048]) {
                let mut plaintext = vec![0u8; len];
                rng.fill(&mut plaintext);
                let mut iv = vec![0u8; sk.iv_len()];
                rng.fill(&mut iv);
                let aad = vec![0xab; 32];
                let mut body = vec![0xee; 5]; // seal appends, keeping what is there
                sk.seal(&aad, &iv, &plaintext, &mut body).unwrap();
                assert_eq!(&body[..5], &[0xee; 5]);
                let body = &body[5..];
                assert_eq!(body.len(), sk.sealed_len(len), "{sk:?} {len}");
                assert_eq!(sk.overhead(len), body.len() - len);
                assert_eq!(&body[..sk.iv_len()], iv.as_slice());
                if sk.encr().is_aead() {
                    assert_eq!(body.len(), 8 + len + 1 + 16);
                } else {
                    assert_eq!((body.len() - 16 - sk.icv_len()) % 16, 0);
                }
                assert_eq!(sk.open(&aad, body).unwrap(), plaintext);

                // seal_appending authenticates the message prefix as AAD.
                let mut message = aad.clone();
                sk.seal_appending(&mut message, &iv, &plaintext).unwrap();
                assert_eq!(&message[aad.len()..], body);
            }
        }
    }

    #[test]
    fn any_flipped_bit_fails_the_integrity_check() {
        for sk in suites() {
            let aad = b"ike header and SK header".to_vec();
            let mut body = Vec::new();
            sk.seal(&aad, &vec![7; sk.iv_len()], b"inner payloads", &mut body)
                .unwrap();
            for i in 0..body.len() {
                let mut bad = body.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    sk.open(&aad, &bad),
                    Err(CryptoError::IntegrityCheckFailed),
                    "{sk:?} byte {i}"
                );
            }
            for i in 0..aad.len() {
                let mut bad = aad.clone();
                bad[i] ^= 0x80;
                assert_eq!(sk.open(&bad, &body), Err(CryptoError::IntegrityCheckFailed));
            }
            // A different key of the same suite fails too.
            let other = SkCipher::new(
                sk.encr(),
                match &sk.engine {
                    Engine::Gcm { .. } => None,
                    Engine::Cbc { integ, .. } => Some(*integ),
                },
                &vec![0x3d; sk.encr().keymat_len()],
                &vec![
                    0xc4;
                    if sk.encr().is_aead() {
                        0
                    } else {
                        sk.icv_len() * 2
                    }
                ],
            )
            .unwrap();
            assert_eq!(
                other.open(&aad, &body),
                Err(CryptoError::IntegrityCheckFailed)
            );
        }
    }

    #[test]
    fn truncated_and_garbage_bodies_never_panic() {
        let mut rng = TestRng(99);
        for sk in suites() {
            let mut body = Vec::new();
            sk.seal(b"a", &vec![1; sk.iv_len()], &[5; 40], &mut body)
                .unwrap();
            for cut in 0..body.len() {
                let err = sk.open(b"a", &body[..cut]).unwrap_err();
                assert!(
                    matches!(
                        err,
                        CryptoError::Truncated | CryptoError::IntegrityCheckFailed
                    ),
                    "{err:?}"
                );
            }
            let min = sk.iv_len() + sk.icv_len() + if sk.encr().is_aead() { 1 } else { 16 };
            assert_eq!(sk.open(b"a", &body[..min - 1]), Err(CryptoError::Truncated));
            for len in 0..200 {
                let mut junk = vec![0u8; len];
                rng.fill(&mut junk);
                assert!(sk.open(b"", &junk).is_err());
            }
        }
    }

    /// A correctly authenticated body whose pad length octet exceeds the data is refused.
    #[test]
    fn oversized_pad_length_is_bad_padding() {
        // GCM: encrypt the single octet 0x05 (pad length 5, nothing before it).
        let keymat = [0x11u8; 36];
        let sk = SkCipher::new(EncrAlgorithm::AesGcm16_256, None, &keymat, &[]).unwrap();
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &keymat[..32]).unwrap(),
        );
        let iv = [9u8; 8];
        let mut data = vec![0x05];
        let tag = key
            .seal_in_place_separate_tag(
                gcm_nonce(&[0x11; 4], &iv),
                aead::Aad::from(b"x"),
                &mut data,
            )
            .unwrap();
        let body = [&iv[..], &data, tag.as_ref()].concat();
        assert_eq!(sk.open(b"x", &body), Err(CryptoError::BadPadding));

        // CBC: one block whose last octet claims 16 octets of padding (only 15 precede it).
        let integ = IntegAlgorithm::HmacSha2_256_128;
        let sk = SkCipher::new(
            EncrAlgorithm::AesCbc128,
            Some(integ),
            &[0x22; 16],
            &[0x33; 32],
        )
        .unwrap();
        let Engine::Cbc { key, .. } = &sk.engine else {
            unreachable!()
        };
        let iv = [4u8; 16];
        let mut block = [0u8; 16];
        block[15] = 16;
        key.encrypt(&iv, &mut block);
        let icv = integ.compute(&[0x33; 32], &[b"x", &iv, &block]).unwrap();
        let body = [&iv[..], &block, &icv].concat();
        assert_eq!(sk.open(b"x", &body), Err(CryptoError::BadPadding));
        // Exactly 15 is fine: the inner payload is empty.
        let mut block = [0u8; 16];
        block[15] = 15;
        key.encrypt(&iv, &mut block);
        let icv = integ.compute(&[0x33; 32], &[b"x", &iv, &block]).unwrap();
        let body = [&iv[..], &block, &icv].concat();
        assert_eq!(sk.open(b"x", &body), Ok(Vec::new()));
    }

    #[test]
    fn misuse_is_reported() {
        let gcm = SkCipher::new(EncrAlgorithm::AesGcm16_128, None, &[0; 20], &[]).unwrap();
        let mut out = vec![1, 2, 3];
        assert_eq!(
            gcm.seal(b"", &[0; 16], b"x", &mut out),
            Err(CryptoError::IvLength {
                expected: 8,
                actual: 16
            })
        );
        assert_eq!(out, vec![1, 2, 3]);
        assert_eq!(
            SkCipher::new(EncrAlgorithm::AesGcm16_128, None, &[0; 16], &[]).unwrap_err(),
            CryptoError::KeyLength {
                expected: 20,
                actual: 16
            }
        );
        assert!(matches!(
            SkCipher::new(
                EncrAlgorithm::AesGcm16_128,
                Some(IntegAlgorithm::HmacSha2_256_128),
                &[0; 20],
                &[0; 32]
            ),
            Err(CryptoError::InvalidSuite(_))
        ));
        assert!(matches!(
            SkCipher::new(EncrAlgorithm::AesCbc128, None, &[0; 16], &[]),
            Err(CryptoError::InvalidSuite(_))
        ));
        assert_eq!(
            SkCipher::new(
                EncrAlgorithm::AesCbc128,
                Some(IntegAlgorithm::HmacSha2_256_128),
                &[0; 16],
                &[0; 31]
            )
            .unwrap_err(),
            CryptoError::KeyLength {
                expected: 32,
                actual: 31
            }
        );
        let text = format!("{gcm:?}");
        assert!(text.contains("redacted") && text.contains("AesGcm16_128"));
    }
}

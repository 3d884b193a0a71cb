//! ESP transforms: AES-GCM with a 16-byte ICV (RFC 4106) through ring.

use core::fmt;

use ring::aead;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Length of the explicit per-packet IV that AES-GCM ESP carries (RFC 4106 §3.1).
pub const GCM_IV_LEN: usize = 8;
/// Length of the salt at the end of the key material (RFC 4106 §8.1).
pub const GCM_SALT_LEN: usize = 4;
/// Length of the AES-GCM-16 integrity check value.
pub const GCM_ICV_LEN: usize = 16;

/// An ESP encryption transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `ENCR_AES_GCM_16` with a 128-bit key (IKEv2 transform 20, key length 128).
    AesGcm16_128,
    /// `ENCR_AES_GCM_16` with a 256-bit key (IKEv2 transform 20, key length 256); what IBM
    /// Cloud's mount targets offer (`aes256gcm16`).
    AesGcm16_256,
}

impl Algorithm {
    /// Bytes of KEYMAT this transform takes per direction: the AES key followed by a 4-byte
    /// salt (RFC 4106 §8.1).
    pub const fn key_material_len(self) -> usize {
        self.aes_key_len() + GCM_SALT_LEN
    }

    /// Length of the AES key alone.
    pub const fn aes_key_len(self) -> usize {
        match self {
            Algorithm::AesGcm16_128 => 16,
            Algorithm::AesGcm16_256 => 32,
        }
    }

    /// Length of the IV carried in each packet.
    pub const fn iv_len(self) -> usize {
        GCM_IV_LEN
    }

    /// Length of the ICV at the end of each packet.
    pub const fn icv_len(self) -> usize {
        GCM_ICV_LEN
    }

    /// The alignment the plaintext (payload ‖ padding ‖ pad length ‖ next header) must reach.
    /// GCM is a stream mode, so only ESP's own 4-byte rule applies (RFC 4303 §2.4).
    pub const fn block_align(self) -> usize {
        4
    }

    /// The Linux XFRM name of this transform, for diagnostics and the kernel datapath.
    pub const fn linux_name(self) -> &'static str {
        "rfc4106(gcm(aes))"
    }

    fn ring_algorithm(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::AesGcm16_128 => &aead::AES_128_GCM,
            Algorithm::AesGcm16_256 => &aead::AES_256_GCM,
        }
    }
}

/// A keyed transform for one direction of one SA.
///
/// ring keeps the expanded AES key schedule inside [`aead::LessSafeKey`] and does not expose
/// a way to wipe it; our own copy of the salt is zeroized on drop, and the caller's key
/// material is never stored.
pub(crate) struct Cipher {
    algorithm: Algorithm,
    key: aead::LessSafeKey,
    salt: Zeroizing<[u8; GCM_SALT_LEN]>,
}

impl Cipher {
    pub(crate) fn new(algorithm: Algorithm, key_material: &[u8]) -> Result<Self> {
        let expected = algorithm.key_material_len();
        if key_material.len() != expected {
            return Err(Error::InvalidKeyLength {
                expected,
                got: key_material.len(),
            });
        }
        let (aes_key, salt_bytes) = key_material.split_at(algorithm.aes_key_len());
        let unbound = aead::UnboundKey::new(algorithm.ring_algorithm(), aes_key).map_err(|_| {
            Error::InvalidKeyLength {
                expected,
                got: key_material.len(),
            }
        })?;
        let mut salt = Zeroizing::new([0u8; GCM_SALT_LEN]);
        salt.copy_from_slice(salt_bytes);
        Ok(Cipher {
            algorithm,
            key: aead::LessSafeKey::new(unbound),
            salt,
        })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The GCM nonce is salt ‖ explicit IV (RFC 4106 §4).
    fn nonce(&self, iv: &[u8; GCM_IV_LEN]) -> aead::Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..GCM_SALT_LEN].copy_from_slice(&self.salt[..]);
        n[GCM_SALT_LEN..].copy_from_slice(iv);
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `plaintext` in place and returns the ICV.
    pub(crate) fn seal(
        &self,
        iv: &[u8; GCM_IV_LEN],
        aad: &[u8],
        plaintext: &mut [u8],
    ) -> Result<[u8; GCM_ICV_LEN]> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), aead::Aad::from(aad), plaintext)
            // ring refuses only inputs beyond GCM's 2^36-byte limit, far above any packet.
            .map_err(|_| Error::PayloadTooLarge(plaintext.len()))?;
        let mut icv = [0u8; GCM_ICV_LEN];
        icv.copy_from_slice(tag.as_ref());
        Ok(icv)
    }

    /// Verifies and decrypts `ciphertext_and_icv` in place; returns the plaintext length.
    pub(crate) fn open(
        &self,
        iv: &[u8; GCM_IV_LEN],
        aad: &[u8],
        ciphertext_and_icv: &mut [u8],
    ) -> Result<usize> {
        self.key
            .open_in_place(self.nonce(iv), aead::Aad::from(aad), ciphertext_and_icv)
            .map(|pt| pt.len())
            .map_err(|_| Error::AuthenticationFailed)
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 3 (AES-128, 96-bit
    /// IV, no AAD) — here the 12-byte IV is split into our salt ‖ explicit IV.
    #[test]
    fn gcm_spec_test_case_3_aes128() {
        let mut km = h("feffe9928665731c6d6a8f9467308308");
        km.extend_from_slice(&h("cafebabe"));
        let c = Cipher::new(Algorithm::AesGcm16_128, &km).unwrap();
        let iv: [u8; 8] = h("facedbaddecaf888").try_into().unwrap();
        let mut data = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255");
        let icv = c.seal(&iv, &[], &mut data).unwrap();
        assert_eq!(data, h("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"));
        assert_eq!(icv.to_vec(), h("4d5c2af327cd64a62cf35abd2ba6fab4"));
    }

    /// Same paper, test case 16 (AES-256, 96-bit IV, with AAD).
    #[test]
    fn gcm_spec_test_case_16_aes256_with_aad() {
        let mut km = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        km.extend_from_slice(&h("cafebabe"));
        let c = Cipher::new(Algorithm::AesGcm16_256, &km).unwrap();
        let iv: [u8; 8] = h("facedbaddecaf888").try_into().unwrap();
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plain = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
        let mut data = plain.clone();
        let icv = c.seal(&iv, &aad, &mut data).unwrap();
        assert_eq!(data, h("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"));
        assert_eq!(icv.to_vec(), h("76fc6ece0f4e1768cddf8853bb2d551b"));
        data.extend_from_slice(&icv);
        let n = c.open(&iv, &aad, &mut data).unwrap();
        assert_eq!(&data[..n], &plain[..]);
    }

    #[test]
    fn wrong_key_length_is_rejected() {
        assert_eq!(
            Cipher::new(Algorithm::AesGcm16_256, &[0u8; 32]).unwrap_err(),
            Error::InvalidKeyLength {
                expected: 36,
                got: 32
            }
        );
        assert!(Cipher::new(Algorithm::AesGcm16_128, &[0u8; 20]).is_ok());
    }

    #[test]
    fn debug_redacts_key() {
        let c = Cipher::new(Algorithm::AesGcm16_128, &[0x41u8; 20]).unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains("41"));
    }
}

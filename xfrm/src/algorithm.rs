//! ESP transforms as the kernel names them (`xfrm_algo`, `xfrm_algo_auth`, `xfrm_algo_aead`)
//! and the keys they carry. Keys are zeroized on drop and never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::DecodeError;
use crate::netlink::u32_at;
use crate::selector::need;

/// Length of the NUL-padded algorithm name in every `xfrm_algo*` struct.
pub const NAME_LEN: usize = 64;

/// Kernel name of AES-GCM for ESP (RFC 4106): key = AES key ‖ 4-byte salt.
pub const AES_GCM: &str = "rfc4106(gcm(aes))";
/// Kernel name of AES-CBC.
pub const AES_CBC: &str = "cbc(aes)";
/// Kernel name of HMAC-SHA-256.
pub const HMAC_SHA256: &str = "hmac(sha256)";
/// GCM salt length (RFC 4106 §8.1).
pub const GCM_SALT_LEN: usize = 4;

/// Secret key bytes. Zeroized on drop; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Zeroizing<Vec<u8>>);

impl Key {
    /// Copies `bytes` into a new key.
    pub fn new(bytes: &[u8]) -> Self {
        Key(Zeroizing::new(bytes.to_vec()))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> u32 {
        (self.0.len() * 8) as u32
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<redacted {} bytes>)", self.0.len())
    }
}

/// The transform of an ESP SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crypto {
    /// An AEAD (combined mode) transform, e.g. `rfc4106(gcm(aes))`.
    Aead {
        /// Kernel algorithm name.
        name: String,
        /// Key (for GCM: AES key ‖ salt).
        key: Key,
        /// ICV length in bits.
        icv_bits: u32,
    },
    /// A cipher plus an integrity algorithm, e.g. `cbc(aes)` + `hmac(sha256)`.
    CipherAuth {
        /// Kernel cipher name.
        cipher: String,
        /// Cipher key.
        cipher_key: Key,
        /// Kernel integrity algorithm name.
        auth: String,
        /// Integrity key.
        auth_key: Key,
        /// Truncated ICV length in bits.
        trunc_bits: u32,
    },
}

impl Crypto {
    /// `rfc4106(gcm(aes))` with a 16-byte ICV; `key_and_salt` is 20, 28 or 36 bytes
    /// (AES-128/192/256 key followed by the 4-byte salt, RFC 4106 §8.1).
    pub fn aes_gcm(key_and_salt: &[u8]) -> Result<Self, String> {
        match key_and_salt.len() {
            20 | 28 | 36 => Ok(Crypto::Aead {
                name: AES_GCM.into(),
                key: Key::new(key_and_salt),
                icv_bits: 128,
            }),
            n => Err(format!(
                "AES-GCM needs a 16/24/32-byte key plus a 4-byte salt, got {n} bytes"
            )),
        }
    }

    /// `cbc(aes)` with `hmac(sha256)` truncated to 128 bits (RFC 4868 §2.3).
    pub fn aes_cbc_hmac_sha256(cipher_key: &[u8], auth_key: &[u8]) -> Result<Self, String> {
        if !matches!(cipher_key.len(), 16 | 24 | 32) {
            return Err(format!(
                "AES-CBC needs a 16/24/32-byte key, got {}",
                cipher_key.len()
            ));
        }
        if auth_key.len() != 32 {
            return Err(format!(
                "HMAC-SHA-256 needs a 32-byte key, got {}",
                auth_key.len()
            ));
        }
        Ok(Crypto::CipherAuth {
            cipher: AES_CBC.into(),
            cipher_key: Key::new(cipher_key),
            auth: HMAC_SHA256.into(),
            auth_key: Key::new(auth_key),
            trunc_bits: 128,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let names: &[&str] = match self {
            Crypto::Aead { name, .. } => &[name],
            Crypto::CipherAuth { cipher, auth, .. } => &[cipher, auth],
        };
        for n in names {
            if n.is_empty() || n.len() >= NAME_LEN || n.contains('\0') {
                return Err(format!(
                    "algorithm name {n:?} must be 1..63 bytes without NUL"
                ));
            }
        }
        let keys: Vec<&Key> = match self {
            Crypto::Aead { key, .. } => vec![key],
            Crypto::CipherAuth {
                cipher_key,
                auth_key,
                ..
            } => vec![cipher_key, auth_key],
        };
        if keys.iter().any(|k| k.len() > 512) {
            return Err("key longer than 512 bytes".into());
        }
        Ok(())
    }

    /// Bytes this transform adds to a request (attribute headers included).
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Crypto::Aead { key, .. } => 4 + NAME_LEN + 8 + key.len() + 3,
            Crypto::CipherAuth {
                cipher_key,
                auth_key,
                ..
            } => {
                (4 + NAME_LEN + 4 + cipher_key.len() + 3) + (4 + NAME_LEN + 8 + auth_key.len() + 3)
            }
        }
    }

    /// Appends the transform's attributes to a request.
    pub(crate) fn emit(&self, b: crate::netlink::Builder) -> crate::netlink::Builder {
        use crate::message::attr;
        match self {
            Crypto::Aead {
                name,
                key,
                icv_bits,
            } => b.attr_parts(
                attr::ALG_AEAD,
                &[
                    &name_field(name),
                    &key.bits().to_ne_bytes(),
                    &icv_bits.to_ne_bytes(),
                    key.as_bytes(),
                ],
            ),
            Crypto::CipherAuth {
                cipher,
                cipher_key,
                auth,
                auth_key,
                trunc_bits,
            } => b
                .attr_parts(
                    attr::ALG_CRYPT,
                    &[
                        &name_field(cipher),
                        &cipher_key.bits().to_ne_bytes(),
                        cipher_key.as_bytes(),
                    ],
                )
                .attr_parts(
                    attr::ALG_AUTH_TRUNC,
                    &[
                        &name_field(auth),
                        &auth_key.bits().to_ne_bytes(),
                        &trunc_bits.to_ne_bytes(),
                        auth_key.as_bytes(),
                    ],
                ),
        }
    }
}

fn name_field(name: &str) -> [u8; NAME_LEN] {
    let mut f = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN - 1);
    f[..n].copy_from_slice(&name.as_bytes()[..n]);
    f
}

/// An algorithm as reported back by the kernel: its name and sizes, never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmInfo {
    /// Kernel algorithm name.
    pub name: String,
    /// Key length in bits.
    pub key_bits: u32,
    /// ICV (AEAD) or truncation (auth) length in bits; `None` for a plain cipher.
    pub icv_bits: Option<u32>,
}

impl AlgorithmInfo {
    /// Decodes `xfrm_algo` (`with_icv` false) or `xfrm_algo_auth`/`xfrm_algo_aead` (true).
    /// The key bytes that follow are not copied.
    pub(crate) fn parse(b: &[u8], with_icv: bool) -> Result<Self, DecodeError> {
        let fixed = NAME_LEN + if with_icv { 8 } else { 4 };
        need("xfrm_algo", b, fixed)?;
        let name_bytes = b[..NAME_LEN].split(|c| *c == 0).next().unwrap_or(&[]);
        let key_bits = u32_at(b, NAME_LEN);
        let key_len = (key_bits as usize).div_ceil(8);
        if b.len() < fixed + key_len {
            return Err(DecodeError::BadLength {
                what: "alg_key_len",
                len: key_len,
                max: b.len() - fixed,
            });
        }
        Ok(AlgorithmInfo {
            name: String::from_utf8_lossy(name_bytes).into_owned(),
            key_bits,
            icv_bits: with_icv.then(|| u32_at(b, NAME_LEN + 4)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_key_lengths() {
        assert!(Crypto::aes_gcm(&[0; 20]).is_ok());
        assert!(Crypto::aes_gcm(&[0; 36]).is_ok());
        assert!(Crypto::aes_gcm(&[0; 32]).is_err());
        assert!(Crypto::aes_cbc_hmac_sha256(&[0; 16], &[0; 32]).is_ok());
        assert!(Crypto::aes_cbc_hmac_sha256(&[0; 15], &[0; 32]).is_err());
        assert!(Crypto::aes_cbc_hmac_sha256(&[0; 16], &[0; 20]).is_err());
    }

    #[test]
    fn debug_never_shows_key() {
        let c = Crypto::aes_gcm(&[0xab; 20]).unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("redacted 20 bytes"), "{s}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab, "),
            "{s}"
        );
    }

    #[test]
    fn algorithm_info_rejects_key_past_end() {
        let mut b = vec![0u8; NAME_LEN + 8 + 2];
        b[..3].copy_from_slice(b"abc");
        b[NAME_LEN..NAME_LEN + 4].copy_from_slice(&16u32.to_ne_bytes());
        let info = AlgorithmInfo::parse(&b, true).unwrap();
        assert_eq!((info.name.as_str(), info.key_bits), ("abc", 16));
        b[NAME_LEN..NAME_LEN + 4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(AlgorithmInfo::parse(&b, true).is_err());
        assert!(AlgorithmInfo::parse(&b[..NAME_LEN], false).is_err());
    }
}

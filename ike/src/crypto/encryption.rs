/// Encryption transforms (IANA "Transform Type 1") with their key length attribute.
///
/// The same ids are used for the SK payload and for ESP, so CHILD_SA KEYMAT sizes come from
/// here too. AES-GCM with a 12- or 8-byte ICV (ids 19 and 18) and 192-bit GCM keys are not
/// offered: the AEAD backend only produces full 16-byte tags for 128- and 256-bit keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlgorithm {
    /// ENCR_AES_CBC (12), 128-bit key (RFC 3602).
    AesCbc128,
    /// ENCR_AES_CBC (12), 192-bit key.
    AesCbc192,
    /// ENCR_AES_CBC (12), 256-bit key.
    AesCbc256,
    /// ENCR_AES_GCM_16 (20), 128-bit key, 16-byte ICV (RFC 5282, RFC 4106).
    AesGcm16_128,
    /// ENCR_AES_GCM_16 (20), 256-bit key, 16-byte ICV.
    AesGcm16_256,
}

/// IANA id of ENCR_AES_CBC.
const ENCR_AES_CBC: u16 = 12;
/// IANA id of ENCR_AES_GCM_16.
const ENCR_AES_GCM_16: u16 = 20;
/// Bytes of salt appended to an AES-GCM key in KEYMAT (RFC 5282 §7.1, RFC 4106 §8.1).
pub(crate) const GCM_SALT_LEN: usize = 4;

impl EncrAlgorithm {
    /// Maps an IANA transform id plus its Key Length attribute (in bits). AES transforms
    /// require the attribute (RFC 7296 §3.3.5); `None` for anything we do not implement.
    pub fn from_iana_id(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits?) {
            (ENCR_AES_CBC, 128) => Some(Self::AesCbc128),
            (ENCR_AES_CBC, 192) => Some(Self::AesCbc192),
            (ENCR_AES_CBC, 256) => Some(Self::AesCbc256),
            (ENCR_AES_GCM_16, 128) => Some(Self::AesGcm16_128),
            (ENCR_AES_GCM_16, 256) => Some(Self::AesGcm16_256),
            _ => None,
        }
    }

    /// The IANA transform id.
    pub fn iana_id(self) -> u16 {
        match self {
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => ENCR_AES_CBC,
            Self::AesGcm16_128 | Self::AesGcm16_256 => ENCR_AES_GCM_16,
        }
    }

    /// The Key Length attribute value in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            Self::AesCbc128 | Self::AesGcm16_128 => 128,
            Self::AesCbc192 => 192,
            Self::AesCbc256 | Self::AesGcm16_256 => 256,
        }
    }

    /// Cipher key length in bytes (without salt).
    pub fn key_len(self) -> usize {
        usize::from(self.key_bits()) / 8
    }

    /// Bytes taken from KEYMAT / prf+ output for this transform: the key, plus 4 bytes of salt
    /// for AES-GCM (RFC 5282 §7.1 for SK_e, RFC 4106 §8.1 for ESP). The salt is the *last*
    /// 4 bytes — the layout the kernel's `rfc4106(gcm(aes))` expects.
    pub fn keymat_len(self) -> usize {
        if self.is_aead() {
            self.key_len() + GCM_SALT_LEN
        } else {
            self.key_len()
        }
    }

    /// True for combined-mode (AEAD) ciphers, which take no integrity transform.
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AesGcm16_128 | Self::AesGcm16_256)
    }

    /// Length of the explicit IV carried in the SK payload (and ESP): 16 for CBC (one block),
    /// 8 for GCM (RFC 5282 §3.1).
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_ids_and_lengths() {
        let all = [
            (EncrAlgorithm::AesCbc128, 12, 128, 16, 16),
            (EncrAlgorithm::AesCbc192, 12, 192, 24, 24),
            (EncrAlgorithm::AesCbc256, 12, 256, 32, 32),
            (EncrAlgorithm::AesGcm16_128, 20, 128, 16, 20),
            (EncrAlgorithm::AesGcm16_256, 20, 256, 32, 36),
        ];
        for (alg, id, bits, key, keymat) in all {
            assert_eq!(alg.iana_id(), id);
            assert_eq!(alg.key_bits(), bits);
            assert_eq!(alg.key_len(), key);
            assert_eq!(alg.keymat_len(), keymat);
            assert_eq!(EncrAlgorithm::from_iana_id(id, Some(bits)), Some(alg));
        }
        assert_eq!(EncrAlgorithm::from_iana_id(12, None), None);
        assert_eq!(EncrAlgorithm::from_iana_id(20, Some(192)), None);
        assert_eq!(EncrAlgorithm::from_iana_id(3, Some(192)), None); // 3DES
    }
}

//! The host's RSA key: generated with the `rsa` crate (ring cannot generate RSA keys),
//! stored as PKCS#8 PEM with mode 0600, and used for signing only through ring (the `rsa`
//! crate's signing has an open timing advisory, RUSTSEC-2023-0071).

use std::path::Path;

use const_oid::db::rfc5912;
use der::asn1::{AnyRef, BitString};
use der::{Decode, Encode};
use rand_core::CryptoRngCore;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::RsaKeyPair;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use crate::atomic_file::{write_atomic, SECRET_MODE};
use crate::error::{Error, Result};
use crate::signature::{sign_rsa, SignatureScheme};

/// RSA modulus sizes we generate. 4096 is what the IBM mount helper uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeySize {
    /// 2048 bits: fast to generate; tests and the test CA use it.
    Rsa2048,
    /// 3072 bits.
    Rsa3072,
    /// 4096 bits: the default host key.
    #[default]
    Rsa4096,
}

impl KeySize {
    /// The modulus length in bits.
    pub fn bits(self) -> usize {
        match self {
            KeySize::Rsa2048 => 2048,
            KeySize::Rsa3072 => 3072,
            KeySize::Rsa4096 => 4096,
        }
    }
}

impl TryFrom<usize> for KeySize {
    type Error = Error;
    fn try_from(bits: usize) -> Result<Self> {
        match bits {
            2048 => Ok(KeySize::Rsa2048),
            3072 => Ok(KeySize::Rsa3072),
            4096 => Ok(KeySize::Rsa4096),
            other => Err(Error::UnsupportedKeySize(other)),
        }
    }
}

/// An RSA private key ready to sign with ring. The PKCS#8 bytes are zeroized on drop and
/// never printed; ring's own copy of the key is not zeroized by ring (a known ring limit).
pub struct HostKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: RsaKeyPair,
    spki: Vec<u8>,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("bits", &self.bits())
            .field("private", &"<redacted>")
            .finish()
    }
}

impl HostKey {
    /// Generates a key from the OS random source. Blocking and slow: RSA-4096 takes
    /// seconds, so call it off any async thread and show progress.
    pub fn generate(size: KeySize) -> Result<Self> {
        Self::generate_with_rng(size, &mut rand_core::OsRng)
    }

    /// Generates a key from the given random source.
    pub fn generate_with_rng(size: KeySize, rng: &mut impl CryptoRngCore) -> Result<Self> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::RsaPrivateKey::new(rng, size.bits())
            .map_err(|e| Error::KeyGeneration(e.to_string()))?;
        let doc = key
            .to_pkcs8_der()
            .map_err(|e| Error::KeyGeneration(e.to_string()))?;
        Self::from_pkcs8_der(doc.as_bytes())
    }

    /// Loads a PKCS#8 `PrivateKeyInfo` (DER) holding an RSA key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| Error::InvalidKey(format!("PKCS#8 RSA key rejected: {e}")))?;
        let spki = rsa_spki(pair.public().as_ref())?;
        Ok(HostKey {
            pkcs8: Zeroizing::new(der.to_vec()),
            pair,
            spki,
        })
    }

    /// Loads a PEM key: `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1, rewrapped as
    /// PKCS#8 so that [`HostKey::to_pem`] always writes PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let blocks = crate::pem::blocks(pem)?;
        let block = blocks
            .iter()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| Error::InvalidKey("no PRIVATE KEY block found".into()))?;
        match block.label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&block.der),
            "RSA PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfo {
                    algorithm: spki::AlgorithmIdentifierRef {
                        oid: rfc5912::RSA_ENCRYPTION,
                        parameters: Some(AnyRef::NULL),
                    },
                    private_key: &block.der,
                    public_key: None,
                };
                let der = Zeroizing::new(info.to_der()?);
                Self::from_pkcs8_der(&der)
            }
            "ENCRYPTED PRIVATE KEY" => Err(Error::InvalidKey(
                "encrypted private keys are not supported; store it unencrypted with mode 0600"
                    .into(),
            )),
            other => Err(Error::InvalidKey(format!(
                "`{other}` keys are not supported (RSA only)"
            ))),
        }
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::pem::encode("PRIVATE KEY", &self.pkcs8))
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        self.pkcs8.clone()
    }

    /// Reads a key file (PEM).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        Self::from_pem(&bytes).map_err(|e| match e {
            Error::InvalidKey(m) => Error::InvalidKey(format!("{}: {m}", path.display())),
            Error::Pem(m) => Error::Pem(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Writes the key as PKCS#8 PEM, atomically, created with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_pem().as_bytes(), SECRET_MODE)
    }

    /// Loads the key at `path`, or generates one of `size` and saves it there. Returns
    /// whether it generated. The IBM mount helper likewise reuses its key on every renewal.
    pub fn load_or_generate(path: &Path, size: KeySize) -> Result<(Self, bool)> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate(size)?;
                key.save(path)?;
                Ok((key, true))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.pair.public().modulus_len() * 8
    }

    /// The public key as a DER SubjectPublicKeyInfo (rsaEncryption, NULL parameters).
    pub fn public_key_info_der(&self) -> &[u8] {
        &self.spki
    }

    /// Signs `message` (for IKE AUTH: the octets of RFC 7296 §2.15) with ring.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>> {
        self.sign_with_rng(scheme, message, &SystemRandom::new())
    }

    /// Signs with an injected random source (PSS salt); PKCS#1 v1.5 does not use it.
    pub fn sign_with_rng(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Vec<u8>> {
        sign_rsa(&self.pair, scheme, message, rng)
    }
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo.
fn rsa_spki(rsa_public_key: &[u8]) -> Result<Vec<u8>> {
    let info = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(der::Any::null()),
        },
        subject_public_key: BitString::from_bytes(rsa_public_key)?,
    };
    Ok(info.to_der()?)
}

/// Checks that a DER SubjectPublicKeyInfo parses (used before embedding one we received).
pub(crate) fn parse_spki(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned> {
    SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| Error::InvalidPublicKey(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signature::{verify, HashAlgorithm};
    use std::sync::OnceLock;

    /// One RSA-2048 key shared by the crate's tests: keygen is the slow part.
    pub(crate) fn test_key() -> &'static HostKey {
        static KEY: OnceLock<HostKey> = OnceLock::new();
        KEY.get_or_init(|| HostKey::generate(KeySize::Rsa2048).unwrap())
    }

    #[test]
    fn sizes() {
        assert_eq!(KeySize::default().bits(), 4096);
        assert_eq!(KeySize::try_from(3072).unwrap(), KeySize::Rsa3072);
        assert!(matches!(
            KeySize::try_from(1024),
            Err(Error::UnsupportedKeySize(1024))
        ));
    }

    #[test]
    fn generate_save_load_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let key = test_key();
        assert_eq!(key.bits(), 2048);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        key.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let loaded = HostKey::load(&path).unwrap();
        assert_eq!(loaded.public_key_info_der(), key.public_key_info_der());
        let (again, generated) = HostKey::load_or_generate(&path, KeySize::Rsa2048).unwrap();
        assert!(!generated);
        assert_eq!(again.public_key_info_der(), key.public_key_info_der());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = test_key();
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted") && dbg.contains("2048"));
        let pem = key.to_pem();
        let body_line = pem.lines().nth(1).unwrap();
        assert!(!dbg.contains(body_line));
    }

    #[test]
    fn sign_verify_round_trip_every_scheme() {
        let key = test_key();
        let msg = b"IKE_AUTH octets: RealMessage1 | NonceRData | MACedIDForI";
        for scheme in SignatureScheme::RSA_SIGNING {
            let sig = key.sign(scheme, msg).unwrap();
            assert_eq!(sig.len(), 256);
            verify(key.public_key_info_der(), scheme, msg, &sig).unwrap();
            assert!(matches!(
                verify(key.public_key_info_der(), scheme, b"other", &sig),
                Err(Error::BadSignature)
            ));
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(verify(key.public_key_info_der(), scheme, msg, &bad).is_err());
        }
        // A PKCS#1 signature does not pass as PSS and vice versa.
        let pkcs1 = key
            .sign(SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), msg)
            .unwrap();
        assert!(verify(
            key.public_key_info_der(),
            SignatureScheme::RsaPss(HashAlgorithm::Sha256),
            msg,
            &pkcs1
        )
        .is_err());
        assert!(matches!(
            key.sign(SignatureScheme::Ecdsa(HashAlgorithm::Sha256), msg),
            Err(Error::KeyAlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn pkcs1_pem_is_accepted_and_rewrapped() {
        // Take the PKCS#1 RSAPrivateKey out of our PKCS#8 and present it as RSA PRIVATE KEY.
        let key = test_key();
        let der = key.to_pkcs8_der();
        let info = pkcs8::PrivateKeyInfo::from_der(&der).unwrap();
        let pem = crate::pem::encode("RSA PRIVATE KEY", info.private_key);
        let loaded = HostKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(loaded.public_key_info_der(), key.public_key_info_der());
        assert!(loaded.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn bad_key_files_are_typed_errors() {
        assert!(matches!(
            HostKey::from_pem(b"nothing"),
            Err(Error::InvalidKey(_))
        ));
        let junk = crate::pem::encode("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            HostKey::from_pem(junk.as_bytes()),
            Err(Error::InvalidKey(_))
        ));
        let enc = crate::pem::encode("ENCRYPTED PRIVATE KEY", &[0x30, 0x00]);
        assert!(
            matches!(HostKey::from_pem(enc.as_bytes()), Err(Error::InvalidKey(m)) if m.contains("encrypted"))
        );
        let err = HostKey::load(Path::new("/nonexistent/host.key")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
    }

    #[test]
    #[ignore = "slow in debug builds of our own code; run with --ignored to time RSA-4096"]
    fn rsa4096_keygen_and_sign_timing() {
        let t = std::time::Instant::now();
        let key = HostKey::generate(KeySize::Rsa4096).unwrap();
        let gen = t.elapsed();
        assert_eq!(key.bits(), 4096);
        let t = std::time::Instant::now();
        let n = 20;
        for _ in 0..n {
            key.sign(SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), b"x")
                .unwrap();
        }
        eprintln!(
            "RSA-4096 keygen {gen:?}, ring sign {:?} each",
            t.elapsed() / n
        );
    }
}

//! IKEv2 signature authentication (RFC 7427): the schemes we sign and verify with, the DER
//! `AlgorithmIdentifier` that the AUTH payload carries (method 14, "Digital Signature"),
//! the hash ids of the SIGNATURE_HASH_ALGORITHMS notify (§4), and ring-backed sign/verify.

use const_oid::db::rfc5912;
use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Sequence};
use ring::rand::SecureRandom;
use ring::signature::{self as sig, RsaKeyPair, UnparsedPublicKey};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::error::{Error, Result};

/// A hash function of the IKEv2 Hash Algorithms registry (RFC 7427 §4), the values the
/// SIGNATURE_HASH_ALGORITHMS notify lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA2-256, id 2.
    Sha256,
    /// SHA2-384, id 3.
    Sha384,
    /// SHA2-512, id 4.
    Sha512,
}

impl HashAlgorithm {
    /// The ids we support, in our order of preference for signing.
    pub const SUPPORTED_IDS: [u16; 3] = [2, 3, 4];

    /// The id in the IKEv2 Hash Algorithms registry.
    pub fn id(self) -> u16 {
        match self {
            HashAlgorithm::Sha256 => 2,
            HashAlgorithm::Sha384 => 3,
            HashAlgorithm::Sha512 => 4,
        }
    }

    /// The algorithm for a registry id; `None` for SHA-1 (1), Identity (5) and unknown ids.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            2 => Some(HashAlgorithm::Sha256),
            3 => Some(HashAlgorithm::Sha384),
            4 => Some(HashAlgorithm::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes (also the PSS salt length we use, RFC 4055 §3.1 advice).
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlgorithm::Sha256 => rfc5912::ID_SHA_256,
            HashAlgorithm::Sha384 => rfc5912::ID_SHA_384,
            HashAlgorithm::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|h| h.oid() == *oid)
    }
}

/// A signature scheme as named by an RFC 7427 AlgorithmIdentifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 (`sha*WithRSAEncryption`).
    RsaPkcs1(HashAlgorithm),
    /// RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash.
    RsaPss(HashAlgorithm),
    /// ECDSA (`ecdsa-with-SHA*`); verification only, for peers with EC certificates.
    Ecdsa(HashAlgorithm),
}

/// ASN.1 of RSASSA-PSS-params (RFC 4055 §3.1 / RFC 8017 Appendix A.2.3).
#[derive(Sequence)]
struct PssParams<'a> {
    #[asn1(context_specific = "0", optional = "true")]
    hash: Option<AlgorithmIdentifierRef<'a>>,
    #[asn1(context_specific = "1", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierRef<'a>>,
    #[asn1(context_specific = "2", optional = "true")]
    salt_len: Option<u32>,
    #[asn1(context_specific = "3", optional = "true")]
    trailer: Option<u32>,
}

impl SignatureScheme {
    /// Every scheme we can produce with an RSA key.
    pub const RSA_SIGNING: [SignatureScheme; 6] = [
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384),
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512),
        SignatureScheme::RsaPss(HashAlgorithm::Sha256),
        SignatureScheme::RsaPss(HashAlgorithm::Sha384),
        SignatureScheme::RsaPss(HashAlgorithm::Sha512),
    ];

    /// The hash this scheme signs with.
    pub fn hash(self) -> HashAlgorithm {
        match self {
            SignatureScheme::RsaPkcs1(h)
            | SignatureScheme::RsaPss(h)
            | SignatureScheme::Ecdsa(h) => h,
        }
    }

    /// Picks the RSA scheme to sign AUTH with, given the hash ids the peer announced in
    /// SIGNATURE_HASH_ALGORITHMS: the first of SHA2-256, -384, -512 the peer supports.
    /// PKCS#1 v1.5 unless `pss` (strongSwan, like most peers, verifies both).
    pub fn choose_rsa(peer_hash_ids: &[u16], pss: bool) -> Option<SignatureScheme> {
        HashAlgorithm::SUPPORTED_IDS
            .iter()
            .find(|id| peer_hash_ids.contains(id))
            .and_then(|&id| HashAlgorithm::from_id(id))
            .map(|h| {
                if pss {
                    SignatureScheme::RsaPss(h)
                } else {
                    SignatureScheme::RsaPkcs1(h)
                }
            })
    }

    /// The DER AlgorithmIdentifier for the AUTH payload (RFC 7427 §3). PKCS#1 carries NULL
    /// parameters; PSS carries explicit hash, MGF1 and salt length with NULL hash
    /// parameters and the default trailer omitted — the same bytes the CA/Browser Forum
    /// mandates and OpenSSL writes.
    pub fn algorithm_identifier(self) -> Vec<u8> {
        // Encoding fixed, well-formed structures cannot fail.
        self.try_algorithm_identifier().unwrap_or_default()
    }

    fn try_algorithm_identifier(self) -> der::Result<Vec<u8>> {
        match self {
            SignatureScheme::RsaPkcs1(h) => {
                let oid = match h {
                    HashAlgorithm::Sha256 => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                    HashAlgorithm::Sha384 => rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
                    HashAlgorithm::Sha512 => rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
                };
                AlgorithmIdentifierRef {
                    oid,
                    parameters: Some(AnyRef::NULL),
                }
                .to_der()
            }
            SignatureScheme::RsaPss(h) => {
                let hash = AlgorithmIdentifierRef {
                    oid: h.oid(),
                    parameters: Some(AnyRef::NULL),
                };
                let hash_der = hash.to_der()?;
                let mgf_params = AnyRef::from_der(&hash_der)?;
                let params = PssParams {
                    hash: Some(hash),
                    mask_gen: Some(AlgorithmIdentifierRef {
                        oid: rfc5912::ID_MGF_1,
                        parameters: Some(mgf_params),
                    }),
                    salt_len: Some(h.output_len() as u32),
                    trailer: None,
                };
                let params_der = params.to_der()?;
                AlgorithmIdentifierRef {
                    oid: rfc5912::ID_RSASSA_PSS,
                    parameters: Some(AnyRef::from_der(&params_der)?),
                }
                .to_der()
            }
            SignatureScheme::Ecdsa(h) => {
                let oid = match h {
                    HashAlgorithm::Sha256 => rfc5912::ECDSA_WITH_SHA_256,
                    HashAlgorithm::Sha384 => rfc5912::ECDSA_WITH_SHA_384,
                    HashAlgorithm::Sha512 => rfc5912::ECDSA_WITH_SHA_512,
                };
                // RFC 5758 §3.2: parameters absent.
                AlgorithmIdentifierRef {
                    oid,
                    parameters: None,
                }
                .to_der()
            }
        }
    }

    /// Parses the AlgorithmIdentifier of a received AUTH payload (or of a certificate's
    /// signatureAlgorithm). Liberal where RFC 4055 allows variation (absent or NULL hash
    /// parameters, explicit default trailer), strict about what ring can verify: PSS must
    /// use MGF1 with the same hash and a salt as long as the hash.
    pub fn from_algorithm_identifier(der: &[u8]) -> Result<SignatureScheme> {
        let ai = AlgorithmIdentifierRef::from_der(der).map_err(|e| {
            Error::UnsupportedAlgorithm(format!("malformed AlgorithmIdentifier: {e}"))
        })?;
        Self::from_algorithm(&ai)
    }

    pub(crate) fn from_algorithm(ai: &AlgorithmIdentifierRef<'_>) -> Result<SignatureScheme> {
        let null_or_absent = |p: &Option<AnyRef<'_>>| p.map_or(true, |a| a.is_null());
        let pkcs1 = [
            (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha256),
            (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha384),
            (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha512),
        ];
        if let Some((_, h)) = pkcs1.iter().find(|(o, _)| *o == ai.oid) {
            if !null_or_absent(&ai.parameters) {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "{} with non-NULL parameters",
                    ai.oid
                )));
            }
            return Ok(SignatureScheme::RsaPkcs1(*h));
        }
        let ecdsa = [
            (rfc5912::ECDSA_WITH_SHA_256, HashAlgorithm::Sha256),
            (rfc5912::ECDSA_WITH_SHA_384, HashAlgorithm::Sha384),
            (rfc5912::ECDSA_WITH_SHA_512, HashAlgorithm::Sha512),
        ];
        if let Some((_, h)) = ecdsa.iter().find(|(o, _)| *o == ai.oid) {
            return Ok(SignatureScheme::Ecdsa(*h));
        }
        if ai.oid == rfc5912::ID_RSASSA_PSS {
            return Self::from_pss_params(ai.parameters);
        }
        Err(Error::UnsupportedAlgorithm(match ai.oid {
            rfc5912::SHA_1_WITH_RSA_ENCRYPTION => {
                "sha1WithRSAEncryption (SHA-1 is not accepted)".into()
            }
            oid => format!("OID {oid}"),
        }))
    }

    fn from_pss_params(params: Option<AnyRef<'_>>) -> Result<SignatureScheme> {
        let unsupported = |why: &str| Error::UnsupportedAlgorithm(format!("RSASSA-PSS: {why}"));
        // Absent parameters mean SHA-1 for everything (RFC 4055 §3.1).
        let params = params.ok_or_else(|| unsupported("default parameters (SHA-1)"))?;
        let p: PssParams<'_> = params
            .decode_as()
            .map_err(|e| unsupported(&format!("malformed parameters: {e}")))?;
        let hash_ai = p.hash.ok_or_else(|| unsupported("default hash (SHA-1)"))?;
        if !hash_ai.parameters.map_or(true, |a| a.is_null()) {
            return Err(unsupported("hash with non-NULL parameters"));
        }
        let hash = HashAlgorithm::from_oid(&hash_ai.oid)
            .ok_or_else(|| unsupported(&format!("hash {}", hash_ai.oid)))?;
        let mgf = p
            .mask_gen
            .ok_or_else(|| unsupported("default MGF (MGF1 with SHA-1)"))?;
        if mgf.oid != rfc5912::ID_MGF_1 {
            return Err(unsupported(&format!("mask generation {}", mgf.oid)));
        }
        let mgf_hash: AlgorithmIdentifierRef<'_> = mgf
            .parameters
            .ok_or_else(|| unsupported("MGF1 without a hash"))?
            .decode_as()
            .map_err(|e| unsupported(&format!("malformed MGF1 hash: {e}")))?;
        if HashAlgorithm::from_oid(&mgf_hash.oid) != Some(hash) {
            return Err(unsupported("MGF1 hash differs from the message hash"));
        }
        if p.salt_len.unwrap_or(20) as usize != hash.output_len() {
            return Err(unsupported(&format!(
                "salt length {} (ring verifies only salt = hash length {})",
                p.salt_len.unwrap_or(20),
                hash.output_len()
            )));
        }
        if p.trailer.unwrap_or(1) != 1 {
            return Err(unsupported("trailer field other than 1"));
        }
        Ok(SignatureScheme::RsaPss(hash))
    }

    fn ring_signing(self) -> Result<&'static dyn sig::RsaEncoding> {
        Ok(match self {
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256) => &sig::RSA_PKCS1_SHA256,
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384) => &sig::RSA_PKCS1_SHA384,
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512) => &sig::RSA_PKCS1_SHA512,
            SignatureScheme::RsaPss(HashAlgorithm::Sha256) => &sig::RSA_PSS_SHA256,
            SignatureScheme::RsaPss(HashAlgorithm::Sha384) => &sig::RSA_PSS_SHA384,
            SignatureScheme::RsaPss(HashAlgorithm::Sha512) => &sig::RSA_PSS_SHA512,
            SignatureScheme::Ecdsa(_) => {
                return Err(Error::KeyAlgorithmMismatch {
                    algorithm: self.to_string(),
                    key: "RSA".into(),
                })
            }
        })
    }
}

impl std::fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.hash().output_len() * 8;
        match self {
            SignatureScheme::RsaPkcs1(_) => write!(f, "RSA PKCS#1 v1.5 with SHA-{bits}"),
            SignatureScheme::RsaPss(_) => write!(f, "RSASSA-PSS with SHA-{bits}"),
            SignatureScheme::Ecdsa(_) => write!(f, "ECDSA with SHA-{bits}"),
        }
    }
}

/// The AUTH payload's Authentication Data for method 14 (RFC 7427 §3): the length of the
/// AlgorithmIdentifier in one octet, the AlgorithmIdentifier, then the signature.
pub fn auth_data(scheme: SignatureScheme, signature: &[u8]) -> Vec<u8> {
    let ai = scheme.algorithm_identifier();
    let mut out = Vec::with_capacity(1 + ai.len() + signature.len());
    // Our identifiers are at most 67 bytes, well within the one-octet length.
    out.push(ai.len() as u8);
    out.extend_from_slice(&ai);
    out.extend_from_slice(signature);
    out
}

/// Splits method-14 Authentication Data into (AlgorithmIdentifier DER, signature).
pub fn split_auth_data(data: &[u8]) -> Result<(&[u8], &[u8])> {
    let (&len, rest) = data
        .split_first()
        .ok_or_else(|| Error::UnsupportedAlgorithm("empty AUTH data".into()))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(Error::UnsupportedAlgorithm(format!(
            "AUTH data announces a {len}-byte AlgorithmIdentifier but holds {} bytes",
            rest.len()
        )));
    }
    Ok(rest.split_at(len))
}

/// Signs with ring. PKCS#1 v1.5 is deterministic; PSS draws its salt from `rng`.
pub(crate) fn sign_rsa(
    pair: &RsaKeyPair,
    scheme: SignatureScheme,
    message: &[u8],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>> {
    let encoding = scheme.ring_signing()?;
    let mut out = vec![0u8; pair.public().modulus_len()];
    pair.sign(encoding, rng, message, &mut out)
        .map_err(|_| Error::Signing)?;
    Ok(out)
}

/// Verifies `signature` over `message` with the public key in a DER SubjectPublicKeyInfo
/// (a certificate's, or a CSR's). RSA keys must be 2048–8192 bits (ring's bounds); EC keys
/// P-256 or P-384.
pub fn verify(
    spki_der: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<()> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| Error::InvalidPublicKey(e.to_string()))?;
    verify_with(&spki, scheme, message, signature)
}

pub(crate) fn verify_with(
    spki: &SubjectPublicKeyInfoRef<'_>,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<()> {
    let key = bit_string_bytes(&spki.subject_public_key)?;
    let mismatch = |key: &str| Error::KeyAlgorithmMismatch {
        algorithm: scheme.to_string(),
        key: key.into(),
    };
    let alg: &dyn sig::VerificationAlgorithm = if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
        match scheme {
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            SignatureScheme::RsaPss(HashAlgorithm::Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
            SignatureScheme::RsaPss(HashAlgorithm::Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
            SignatureScheme::RsaPss(HashAlgorithm::Sha512) => &sig::RSA_PSS_2048_8192_SHA512,
            SignatureScheme::Ecdsa(_) => return Err(mismatch("RSA")),
        }
    } else if spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| Error::InvalidPublicKey("EC key without a named curve".into()))?;
        match (curve, scheme) {
            (rfc5912::SECP_256_R_1, SignatureScheme::Ecdsa(HashAlgorithm::Sha256)) => {
                &sig::ECDSA_P256_SHA256_ASN1
            }
            (rfc5912::SECP_256_R_1, SignatureScheme::Ecdsa(HashAlgorithm::Sha384)) => {
                &sig::ECDSA_P256_SHA384_ASN1
            }
            (rfc5912::SECP_384_R_1, SignatureScheme::Ecdsa(HashAlgorithm::Sha256)) => {
                &sig::ECDSA_P384_SHA256_ASN1
            }
            (rfc5912::SECP_384_R_1, SignatureScheme::Ecdsa(HashAlgorithm::Sha384)) => {
                &sig::ECDSA_P384_SHA384_ASN1
            }
            (rfc5912::SECP_256_R_1 | rfc5912::SECP_384_R_1, SignatureScheme::Ecdsa(_)) => {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "{scheme} (ring lacks it)"
                )))
            }
            (rfc5912::SECP_256_R_1 | rfc5912::SECP_384_R_1, _) => return Err(mismatch("EC")),
            (other, _) => {
                return Err(Error::InvalidPublicKey(format!(
                    "unsupported EC curve {other}"
                )))
            }
        }
    } else {
        return Err(Error::InvalidPublicKey(format!(
            "unsupported key algorithm {}",
            spki.algorithm.oid
        )));
    };
    UnparsedPublicKey::new(alg, key)
        .verify(message, signature)
        .map_err(|_| Error::BadSignature)
}

/// The three fields every signed X.509 object (certificate, CSR) shares, with the signed
/// part kept as the exact bytes received, so re-encoding can never change what is checked.
#[derive(Sequence)]
pub(crate) struct SignedRef<'a> {
    pub(crate) tbs: AnyRef<'a>,
    pub(crate) algorithm: AlgorithmIdentifierRef<'a>,
    pub(crate) signature: BitStringRef<'a>,
}

impl SignedRef<'_> {
    /// Verifies the signature over the to-be-signed bytes with `spki_der`'s key.
    pub(crate) fn verify(&self, spki_der: &[u8]) -> Result<()> {
        let scheme = SignatureScheme::from_algorithm(&self.algorithm)?;
        let tbs = self.tbs.to_der()?;
        let sig = self.signature.as_bytes().ok_or(Error::BadSignature)?;
        verify(spki_der, scheme, &tbs, sig)
    }
}

pub(crate) fn bit_string_bytes<'a>(bits: &BitStringRef<'a>) -> Result<&'a [u8]> {
    bits.as_bytes()
        .ok_or_else(|| Error::InvalidPublicKey("public key BIT STRING has unused bits".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hash_ids_follow_rfc7427_registry() {
        assert_eq!(HashAlgorithm::Sha256.id(), 2);
        assert_eq!(HashAlgorithm::Sha384.id(), 3);
        assert_eq!(HashAlgorithm::Sha512.id(), 4);
        for id in HashAlgorithm::SUPPORTED_IDS {
            assert_eq!(HashAlgorithm::from_id(id).unwrap().id(), id);
        }
        assert_eq!(HashAlgorithm::from_id(1), None, "SHA-1");
        assert_eq!(HashAlgorithm::from_id(5), None, "Identity");
    }

    #[test]
    fn choose_prefers_sha256_then_what_peer_has() {
        use HashAlgorithm::*;
        assert_eq!(
            SignatureScheme::choose_rsa(&[1, 2, 3, 4], false),
            Some(SignatureScheme::RsaPkcs1(Sha256))
        );
        assert_eq!(
            SignatureScheme::choose_rsa(&[4, 3], true),
            Some(SignatureScheme::RsaPss(Sha384))
        );
        assert_eq!(SignatureScheme::choose_rsa(&[1, 5], false), None);
    }

    // Known answers: the DER of sha256WithRSAEncryption (RFC 7427 Appendix A.2 lists the
    // PKCS#1 identifiers with NULL parameters) and of RSASSA-PSS/SHA-256 with explicit
    // parameters as RFC 4055 §3.1 defines them and the CA/B Forum BRs §7.1.3.2.1 fix them.
    #[test]
    fn algorithm_identifier_known_answers() {
        assert_eq!(
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256).algorithm_identifier(),
            hex("300d06092a864886f70d01010b0500")
        );
        assert_eq!(
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384).algorithm_identifier(),
            hex("300d06092a864886f70d01010c0500")
        );
        assert_eq!(
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha512).algorithm_identifier(),
            hex("300d06092a864886f70d01010d0500")
        );
        assert_eq!(
            SignatureScheme::RsaPss(HashAlgorithm::Sha256).algorithm_identifier(),
            hex(concat!(
                "304106092a864886f70d01010a3034a00f300d06096086480165030402010500",
                "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120"
            ))
        );
        assert_eq!(
            SignatureScheme::RsaPss(HashAlgorithm::Sha512).algorithm_identifier(),
            hex(concat!(
                "304106092a864886f70d01010a3034a00f300d06096086480165030402030500",
                "a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140"
            ))
        );
        assert_eq!(
            SignatureScheme::Ecdsa(HashAlgorithm::Sha256).algorithm_identifier(),
            hex("300a06082a8648ce3d040302")
        );
    }

    #[test]
    fn algorithm_identifiers_round_trip() {
        for s in SignatureScheme::RSA_SIGNING.into_iter().chain([
            SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
            SignatureScheme::Ecdsa(HashAlgorithm::Sha384),
        ]) {
            assert_eq!(
                SignatureScheme::from_algorithm_identifier(&s.algorithm_identifier()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn liberal_pss_variants_parse() {
        // Hash parameters absent instead of NULL, explicit trailerField 1.
        let der = hex(concat!(
            "304206092a864886f70d01010a3035a00d300b0609608648016503040201",
            "a11a301806092a864886f70d010108300b0609608648016503040201",
            "a203020120a303020101"
        ));
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&der).unwrap(),
            SignatureScheme::RsaPss(HashAlgorithm::Sha256)
        );
    }

    #[test]
    fn auth_data_framing() {
        let scheme = SignatureScheme::RsaPss(HashAlgorithm::Sha384);
        let data = auth_data(scheme, &[0xaa; 5]);
        assert_eq!(usize::from(data[0]), scheme.algorithm_identifier().len());
        let (ai, sig) = split_auth_data(&data).unwrap();
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(ai).unwrap(),
            scheme
        );
        assert_eq!(sig, &[0xaa; 5]);
        assert!(split_auth_data(&[]).is_err());
        assert!(split_auth_data(&[5, 1, 2]).is_err());
        assert_eq!(split_auth_data(&[0]).unwrap(), (&[][..], &[][..]));
    }

    #[test]
    fn identifier_parser_never_panics_on_damaged_input() {
        for scheme in SignatureScheme::RSA_SIGNING {
            let ai = scheme.algorithm_identifier();
            for len in 0..ai.len() {
                assert!(SignatureScheme::from_algorithm_identifier(&ai[..len]).is_err());
            }
            for i in 0..ai.len() {
                for bit in 0..8 {
                    let mut bad = ai.clone();
                    bad[i] ^= 1 << bit;
                    // Either refused or (for a flip that lands on another valid encoding)
                    // parsed into some scheme: never a panic.
                    let _ = SignatureScheme::from_algorithm_identifier(&bad);
                }
            }
        }
    }

    #[test]
    fn unsupported_identifiers_are_refused() {
        // sha1WithRSAEncryption
        let sha1 = hex("300d06092a864886f70d0101050500");
        assert!(matches!(
            SignatureScheme::from_algorithm_identifier(&sha1),
            Err(Error::UnsupportedAlgorithm(m)) if m.contains("SHA-1")
        ));
        // PSS with default (SHA-1) parameters: empty SEQUENCE.
        let pss_default = hex("300d06092a864886f70d01010a3000");
        assert!(SignatureScheme::from_algorithm_identifier(&pss_default).is_err());
        // PSS/SHA-256 with salt 20.
        let mut salt20 = SignatureScheme::RsaPss(HashAlgorithm::Sha256).algorithm_identifier();
        let last = salt20.len() - 1;
        salt20[last] = 20;
        assert!(matches!(
            SignatureScheme::from_algorithm_identifier(&salt20),
            Err(Error::UnsupportedAlgorithm(m)) if m.contains("salt")
        ));
        // Garbage and truncation.
        assert!(SignatureScheme::from_algorithm_identifier(&[0x30, 0x05, 0x06]).is_err());
        assert!(SignatureScheme::from_algorithm_identifier(&[]).is_err());
    }
}

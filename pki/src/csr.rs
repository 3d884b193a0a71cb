//! Certificate signing requests under the IBM metadata service's rules: the subject holds
//! only C, ST, L, O and OU (the service sets CN to the instance id), and the request carries
//! no attributes at all — no extension request, so no IsCA and no keyCertSign.

use std::fmt;
use std::str::FromStr;

use const_oid::db::{rfc4519, rfc5280, rfc5912};
use der::asn1::{BitString, SetOfVec};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};

use crate::error::{Error, Result};
use crate::key::{parse_spki, HostKey};
use crate::name::{attribute_name, display_name, has_attribute, parse_dn};
use crate::signature::{HashAlgorithm, SignatureScheme, SignedRef};

/// Largest CSR we parse (an RSA-8192 CSR is under 2 kB of DER).
pub const MAX_CSR_LEN: usize = 64 * 1024;

/// A rule of the metadata service that a CSR breaks. The message names the rule so a user
/// who passed `--subject CN=…` learns why it cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrRule {
    /// The subject holds a Common Name.
    #[error("the metadata service rejects CSRs with a Common Name: it sets CN to the instance id itself")]
    CommonName,
    /// The subject holds an attribute other than C, ST, L, O, OU.
    #[error("the metadata service accepts only C, ST, L, O and OU in a CSR subject, not {0}")]
    SubjectAttribute(String),
    /// The CSR asks for basicConstraints cA=TRUE.
    #[error("the metadata service rejects CSRs that ask for a CA certificate (basicConstraints cA=TRUE)")]
    IsCa,
    /// The CSR asks for the keyCertSign key usage.
    #[error("the metadata service rejects CSRs that ask for the keyCertSign key usage")]
    KeyCertSign,
    /// The CSR requests extensions.
    #[error("the metadata service rejects CSRs that request extensions (found: {0})")]
    Extensions(String),
    /// The CSR carries attributes (challengePassword, …).
    #[error("the metadata service rejects CSRs with attributes (found: {0}); send none")]
    Attributes(String),
}

/// A subject for the metadata service: only C, ST, L, O, OU, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrSubject(Name);

impl CsrSubject {
    /// The subject the IBM mount helper puts in its CSRs.
    pub const IBM_DEFAULT: &'static str =
        "C=US,ST=IL,L=Chicago,O=IBM Corporation,OU=IBM Software Group";

    /// Parses `C=US,ST=IL,…` (or `/C=US/ST=IL/…`) and enforces the service's subject rules.
    pub fn parse(text: &str) -> Result<Self> {
        let name = parse_dn(text)?;
        Self::from_name(name)
    }

    /// Checks an already-built name against the service's subject rules.
    pub fn from_name(name: Name) -> Result<Self> {
        check_subject(&name)?;
        Ok(CsrSubject(name))
    }

    /// The X.509 name.
    pub fn name(&self) -> &Name {
        &self.0
    }
}

fn check_subject(name: &Name) -> Result<()> {
    if has_attribute(name, rfc4519::CN) {
        return Err(CsrRule::CommonName.into());
    }
    let allowed = [rfc4519::C, rfc4519::ST, rfc4519::L, rfc4519::O, rfc4519::OU];
    for rdn in &name.0 {
        for atv in rdn.0.iter() {
            if !allowed.contains(&atv.oid) {
                return Err(CsrRule::SubjectAttribute(attribute_name(&atv.oid)).into());
            }
        }
    }
    Ok(())
}

impl Default for CsrSubject {
    fn default() -> Self {
        // The constant is valid; parse_dn of it cannot fail (tested below).
        CsrSubject(parse_dn(Self::IBM_DEFAULT).unwrap_or_default())
    }
}

impl FromStr for CsrSubject {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for CsrSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_name(&self.0))
    }
}

/// A DER-encoded PKCS#10 request.
#[derive(Clone, PartialEq, Eq)]
pub struct Csr {
    der: Vec<u8>,
}

impl fmt::Debug for Csr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr").field("len", &self.der.len()).finish()
    }
}

impl Csr {
    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM (`-----BEGIN CERTIFICATE REQUEST-----`), what the metadata API's `csr` field holds.
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE REQUEST", &self.der)
    }
}

/// Builds a CSR for `key` with `subject` and no attributes, signed SHA256withRSA with ring
/// (what `openssl req -new -sha256` produces for the IBM mount helper).
pub fn build_csr(key: &HostKey, subject: &CsrSubject) -> Result<Csr> {
    let der = sign_request(key, subject.name().clone(), SetOfVec::new())?;
    Ok(Csr { der })
}

/// Encodes and signs a request without any rule check (the test CA's forged CSRs use it).
pub(crate) fn sign_request(
    key: &HostKey,
    subject: Name,
    attributes: x509_cert::attr::Attributes,
) -> Result<Vec<u8>> {
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: parse_spki(key.public_key_info_der())?,
        attributes,
    };
    let scheme = SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256);
    let signature = key.sign(scheme, &info.to_der()?)?;
    let req = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned::from_der(&scheme.algorithm_identifier())?,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(req.to_der()?)
}

/// A received CSR that passed [`validate_csr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedCsr {
    subject: Name,
    public_key_info: Vec<u8>,
    der: Vec<u8>,
}

impl ValidatedCsr {
    /// The requested subject (no CN; the issuer adds it).
    pub fn subject(&self) -> &Name {
        &self.subject
    }

    /// The requester's public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_info_der(&self) -> &[u8] {
        &self.public_key_info
    }

    /// The request as received (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// Parses a CSR (PEM `CERTIFICATE REQUEST` or DER), checks its self-signature, and enforces
/// the metadata service's rules: no attributes, so no extension request (IsCA and
/// keyCertSign get their own errors), and no CN in the subject. Other subject attributes
/// are accepted here: the service's documentation names only these rules.
pub fn validate_csr(input: &[u8]) -> Result<ValidatedCsr> {
    if input.len() > MAX_CSR_LEN {
        return Err(Error::Pem(format!("CSR longer than {MAX_CSR_LEN} bytes")));
    }
    let der = if crate::pem::looks_like_pem(input) {
        let blocks = crate::pem::blocks(input)?;
        let block = blocks
            .iter()
            .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
            .ok_or_else(|| Error::Pem("no CERTIFICATE REQUEST block".into()))?;
        block.der.clone()
    } else {
        input.to_vec()
    };
    let signed = SignedRef::from_der(&der)?;
    let req = CertReq::from_der(&der)?;
    let spki = req.info.public_key.to_der()?;
    signed.verify(&spki).map_err(|e| match e {
        Error::BadSignature => Error::CsrSignature,
        other => other,
    })?;
    check_attributes(&req.info.attributes)?;
    if has_attribute(&req.info.subject, rfc4519::CN) {
        return Err(CsrRule::CommonName.into());
    }
    Ok(ValidatedCsr {
        subject: req.info.subject,
        public_key_info: spki,
        der,
    })
}

fn check_attributes(attributes: &x509_cert::attr::Attributes) -> Result<()> {
    let mut others = Vec::new();
    let mut extensions = Vec::new();
    let (mut is_ca, mut key_cert_sign) = (false, false);
    for attr in attributes.iter() {
        if attr.oid != rfc5912::ID_EXTENSION_REQ {
            others.push(attr.oid.to_string());
            continue;
        }
        for value in attr.values.iter() {
            let exts: Vec<Extension> = value.decode_as()?;
            if exts.is_empty() {
                extensions.push("empty extension request".to_string());
            }
            for ext in exts {
                let bytes = ext.extn_value.as_bytes();
                match ext.extn_id {
                    rfc5280::ID_CE_BASIC_CONSTRAINTS => {
                        is_ca |= BasicConstraints::from_der(bytes)
                            .map(|b| b.ca)
                            .unwrap_or(false);
                    }
                    rfc5280::ID_CE_KEY_USAGE => {
                        key_cert_sign |= KeyUsage::from_der(bytes)
                            .map(|k| k.key_cert_sign())
                            .unwrap_or(false);
                    }
                    _ => {}
                }
                extensions.push(extension_name(&ext.extn_id));
            }
        }
    }
    if is_ca {
        return Err(CsrRule::IsCa.into());
    }
    if key_cert_sign {
        return Err(CsrRule::KeyCertSign.into());
    }
    if !extensions.is_empty() {
        return Err(CsrRule::Extensions(extensions.join(", ")).into());
    }
    if !others.is_empty() {
        return Err(CsrRule::Attributes(others.join(", ")).into());
    }
    Ok(())
}

pub(crate) fn extension_name(oid: &const_oid::ObjectIdentifier) -> String {
    match *oid {
        rfc5280::ID_CE_BASIC_CONSTRAINTS => "basicConstraints".into(),
        rfc5280::ID_CE_KEY_USAGE => "keyUsage".into(),
        rfc5280::ID_CE_EXT_KEY_USAGE => "extendedKeyUsage".into(),
        rfc5280::ID_CE_SUBJECT_ALT_NAME => "subjectAltName".into(),
        rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER => "subjectKeyIdentifier".into(),
        rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER => "authorityKeyIdentifier".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{extension, forge_csr};
    use crate::key::tests::test_key;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsages};

    #[test]
    fn default_subject_is_the_ibm_helpers() {
        let s = CsrSubject::default();
        assert_eq!(
            s.to_string(),
            "C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group"
        );
        assert_eq!(s, CsrSubject::parse(CsrSubject::IBM_DEFAULT).unwrap());
    }

    #[test]
    fn subject_refuses_common_name_naming_the_rule() {
        let err = CsrSubject::parse("C=US,O=IBM,CN=host1").unwrap_err();
        assert!(matches!(err, Error::CsrRule(CsrRule::CommonName)));
        let msg = err.to_string();
        assert!(
            msg.contains("Common Name") && msg.contains("instance id"),
            "{msg}"
        );
    }

    #[test]
    fn subject_refuses_other_attributes() {
        for (text, attr) in [
            ("C=US,emailAddress=a@b.c", "emailAddress"),
            ("O=IBM,serialNumber=42", "serialNumber"),
            ("DC=example,O=IBM", "DC"),
        ] {
            match CsrSubject::parse(text) {
                Err(Error::CsrRule(CsrRule::SubjectAttribute(a))) => assert_eq!(a, attr),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            CsrSubject::parse("FOO=bar"),
            Err(Error::InvalidSubject(_))
        ));
    }

    #[test]
    fn built_csr_validates_and_has_no_attributes() {
        let key = test_key();
        let csr = build_csr(key, &CsrSubject::default()).unwrap();
        let req = CertReq::from_der(csr.der()).unwrap();
        assert!(req.info.attributes.is_empty());
        assert_eq!(req.info.version, Version::V1);
        assert_eq!(
            req.algorithm.to_der().unwrap(),
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256).algorithm_identifier()
        );
        let v = validate_csr(csr.to_pem().as_bytes()).unwrap();
        assert_eq!(v.public_key_info_der(), key.public_key_info_der());
        assert_eq!(v.subject(), CsrSubject::default().name());
        assert_eq!(validate_csr(csr.der()).unwrap(), v, "DER accepted as well");
    }

    #[test]
    fn validator_rejects_common_name() {
        let der = forge_csr(test_key(), "C=US,CN=i-123", &[], None).unwrap();
        assert!(matches!(
            validate_csr(&der),
            Err(Error::CsrRule(CsrRule::CommonName))
        ));
    }

    #[test]
    fn validator_rejects_is_ca() {
        let bc = extension(
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
            true,
        )
        .unwrap();
        let der = forge_csr(test_key(), "C=US", &[bc], None).unwrap();
        let err = validate_csr(&der).unwrap_err();
        assert!(matches!(err, Error::CsrRule(CsrRule::IsCa)), "{err}");
        assert!(err.to_string().contains("cA=TRUE"));
    }

    #[test]
    fn validator_rejects_key_cert_sign() {
        let ku = extension(&KeyUsage(KeyUsages::KeyCertSign.into()), true).unwrap();
        let der = forge_csr(test_key(), "C=US", &[ku], None).unwrap();
        assert!(matches!(
            validate_csr(&der),
            Err(Error::CsrRule(CsrRule::KeyCertSign))
        ));
    }

    #[test]
    fn validator_rejects_any_extension() {
        let eku = extension(&ExtendedKeyUsage(vec![rfc5280::ID_KP_CLIENT_AUTH]), false).unwrap();
        let bc = extension(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            false,
        )
        .unwrap();
        let der = forge_csr(test_key(), "C=US", &[eku, bc], None).unwrap();
        match validate_csr(&der) {
            Err(Error::CsrRule(CsrRule::Extensions(list))) => {
                assert_eq!(list, "extendedKeyUsage, basicConstraints")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validator_rejects_other_attributes() {
        let der = forge_csr(test_key(), "C=US", &[], Some("secret")).unwrap();
        match validate_csr(&der) {
            Err(Error::CsrRule(CsrRule::Attributes(list))) => {
                assert_eq!(list, "1.2.840.113549.1.9.7")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validator_checks_the_signature() {
        let csr = build_csr(test_key(), &CsrSubject::default()).unwrap();
        let mut der = csr.der().to_vec();
        // Flip a byte inside the subject's "Chicago".
        let pos = der.windows(7).position(|w| w == b"Chicago").unwrap();
        der[pos] = b'c';
        assert!(matches!(validate_csr(&der), Err(Error::CsrSignature)));
        let last = der.len() - 1;
        der[pos] = b'C';
        der[last] ^= 0x01;
        assert!(matches!(validate_csr(&der), Err(Error::CsrSignature)));
    }

    #[test]
    fn validator_survives_garbage() {
        let csr = build_csr(test_key(), &CsrSubject::default()).unwrap();
        let der = csr.der();
        for len in 0..der.len() {
            assert!(validate_csr(&der[..len]).is_err());
        }
        assert!(
            validate_csr(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(validate_csr(&vec![0x30; MAX_CSR_LEN + 1]).is_err());
    }
}

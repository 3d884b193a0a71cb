//! A test certificate authority: root → intermediate → leaf, like the metadata service's
//! chain. The metadata test server issues from it and integration tests build peers with
//! it. Never a production default: it exists so every verifier path can be exercised
//! without the cloud.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use const_oid::db::{rfc4519, rfc5912};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{BitString, GeneralizedTime, Ia5String, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode};
use ring::rand::{SecureRandom, SystemRandom};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::atomic_file::{write_atomic, PUBLIC_MODE};
use crate::csr::{sign_request, ValidatedCsr};
use crate::error::{Error, Result};
use crate::key::{parse_spki, HostKey, KeySize};
use crate::name::parse_dn;
use crate::signature::{HashAlgorithm, SignatureScheme};

/// A certificate's validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl Validity {
    /// From `not_before` for `lifetime`.
    pub fn starting_at(not_before: SystemTime, lifetime: Duration) -> Self {
        Validity {
            not_before,
            not_after: not_before + lifetime,
        }
    }
}

/// A subjectAltName entry for an issued leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SanEntry {
    /// dNSName.
    Dns(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name.
    Email(String),
}

/// What to put in a leaf besides subject, key and validity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafOptions {
    /// subjectAltName entries (none: no SAN extension, like the metadata service's leaves).
    pub sans: Vec<SanEntry>,
    /// extendedKeyUsage purposes (none: no EKU extension).
    pub extended_key_usage: Vec<ObjectIdentifier>,
}

/// How to build a [`TestCa`].
#[derive(Clone, Debug)]
pub struct TestCaConfig {
    /// Size of the root and intermediate keys (RSA-2048 by default, for speed).
    pub key_size: KeySize,
    /// Root subject, e.g. `C=US,O=ibm-ipsec test,CN=ibm-ipsec test root CA`.
    pub root_subject: String,
    /// Intermediate subject.
    pub intermediate_subject: String,
    /// Root validity.
    pub root_validity: Validity,
    /// Intermediate validity.
    pub intermediate_validity: Validity,
}

impl TestCaConfig {
    /// RSA-2048; root valid from a day before `now` for 20 years, intermediate for 10.
    pub fn new(now: SystemTime) -> Self {
        let day = Duration::from_secs(86_400);
        let start = now.checked_sub(day).unwrap_or(now);
        TestCaConfig {
            key_size: KeySize::Rsa2048,
            root_subject: "C=US,O=ibm-ipsec test,CN=ibm-ipsec test root CA".into(),
            intermediate_subject: "C=US,O=ibm-ipsec test,CN=ibm-ipsec test intermediate CA".into(),
            root_validity: Validity::starting_at(start, day * 365 * 20),
            intermediate_validity: Validity::starting_at(start, day * 365 * 10),
        }
    }
}

struct Issuer {
    key: HostKey,
    der: Vec<u8>,
    subject: Name,
    key_id: Vec<u8>,
}

impl Issuer {
    fn from_parts(key: HostKey, der: Vec<u8>) -> Result<Self> {
        let cert = Certificate::from_der(&der)?;
        if cert.tbs_certificate.subject_public_key_info.to_der()? != key.public_key_info_der() {
            return Err(Error::Ca("CA certificate and key do not match".into()));
        }
        Ok(Issuer {
            key_id: key_identifier(key.public_key_info_der())?,
            subject: cert.tbs_certificate.subject,
            key,
            der,
        })
    }
}

/// A root and an intermediate CA that issue leaves.
pub struct TestCa {
    root: Issuer,
    intermediate: Issuer,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("root", &crate::name::display_name(&self.root.subject))
            .field(
                "intermediate",
                &crate::name::display_name(&self.intermediate.subject),
            )
            .finish()
    }
}

impl TestCa {
    /// A fresh CA with [`TestCaConfig::new`]'s defaults.
    pub fn generate(now: SystemTime) -> Result<Self> {
        Self::generate_with(&TestCaConfig::new(now))
    }

    /// A fresh CA as configured (generates two keys: RSA-2048 takes a fraction of a second).
    pub fn generate_with(config: &TestCaConfig) -> Result<Self> {
        let root_key = HostKey::generate(config.key_size)?;
        let root_name = parse_dn(&config.root_subject)?;
        let root_id = key_identifier(root_key.public_key_info_der())?;
        let root_der = sign_certificate(
            &root_key,
            &root_name,
            root_name.clone(),
            root_key.public_key_info_der(),
            config.root_validity,
            ca_extensions(None, &root_id, None)?,
        )?;
        let root = Issuer::from_parts(root_key, root_der)?;

        let int_key = HostKey::generate(config.key_size)?;
        let int_name = parse_dn(&config.intermediate_subject)?;
        let int_id = key_identifier(int_key.public_key_info_der())?;
        let int_der = sign_certificate(
            &root.key,
            &root.subject,
            int_name,
            int_key.public_key_info_der(),
            config.intermediate_validity,
            ca_extensions(Some(0), &int_id, Some(&root.key_id))?,
        )?;
        let intermediate = Issuer::from_parts(int_key, int_der)?;
        Ok(TestCa { root, intermediate })
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The root certificate (PEM): what a root CA directory holds.
    pub fn root_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.root.der)
    }

    /// The intermediate certificate (DER).
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// The intermediate certificate (PEM): element 1 of the metadata API's `certificates`.
    pub fn intermediate_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.intermediate.der)
    }

    /// Issues the metadata service's identity certificate: subject = the CSR's subject plus
    /// `CN=<instance_id>`, the CSR's key, the given validity, digitalSignature key usage.
    /// Returns the leaf (DER); the chain to send is leaf + [`TestCa::intermediate_der`].
    pub fn issue_from_csr(
        &self,
        csr: &ValidatedCsr,
        instance_id: &str,
        validity: Validity,
        options: &LeafOptions,
    ) -> Result<Vec<u8>> {
        let mut subject = csr.subject().clone();
        let cn = AttributeTypeAndValue {
            oid: rfc4519::CN,
            value: Any::encode_from(&der::asn1::Utf8StringRef::new(instance_id)?)?,
        };
        subject
            .0
            .push(RelativeDistinguishedName(SetOfVec::try_from(vec![cn])?));
        self.issue_leaf(subject, csr.public_key_info_der(), validity, options)
    }

    /// Issues a leaf for a key directly (e.g. the responder in tests), subject as text.
    pub fn issue_for_key(
        &self,
        public_key_info_der: &[u8],
        subject: &str,
        validity: Validity,
        options: &LeafOptions,
    ) -> Result<Vec<u8>> {
        self.issue_leaf(parse_dn(subject)?, public_key_info_der, validity, options)
    }

    fn issue_leaf(
        &self,
        subject: Name,
        spki_der: &[u8],
        validity: Validity,
        options: &LeafOptions,
    ) -> Result<Vec<u8>> {
        let usage = extension(&KeyUsage(KeyUsages::DigitalSignature.into()), true)?;
        self.issue_leaf_with_usage(subject, spki_der, validity, options, usage)
    }

    /// Like `issue_leaf` with a chosen keyUsage extension (tests of the verifier's check).
    pub(crate) fn issue_leaf_with_usage(
        &self,
        subject: Name,
        spki_der: &[u8],
        validity: Validity,
        options: &LeafOptions,
        key_usage: Extension,
    ) -> Result<Vec<u8>> {
        parse_spki(spki_der)?;
        let mut exts = vec![
            extension(
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
                true,
            )?,
            key_usage,
            extension(
                &SubjectKeyIdentifier(OctetString::new(key_identifier(spki_der)?)?),
                false,
            )?,
            extension(&authority_key_id(&self.intermediate.key_id)?, false)?,
        ];
        if !options.sans.is_empty() {
            let names = options
                .sans
                .iter()
                .map(|s| {
                    Ok(match s {
                        SanEntry::Dns(d) => GeneralName::DnsName(Ia5String::new(d)?),
                        SanEntry::Email(e) => GeneralName::Rfc822Name(Ia5String::new(e)?),
                        SanEntry::Ip(ip) => GeneralName::from(*ip),
                    })
                })
                .collect::<der::Result<Vec<_>>>()?;
            exts.push(extension(&SubjectAltName(names), false)?);
        }
        if !options.extended_key_usage.is_empty() {
            exts.push(extension(
                &ExtendedKeyUsage(options.extended_key_usage.clone()),
                false,
            )?);
        }
        sign_certificate(
            &self.intermediate.key,
            &self.intermediate.subject,
            subject,
            spki_der,
            validity,
            exts,
        )
    }

    /// Writes `root.pem`, `intermediate.pem` (0644) and `root.key`, `intermediate.key`
    /// (0600) into `dir`, which must exist.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join("root.pem"),
            self.root_pem().as_bytes(),
            PUBLIC_MODE,
        )?;
        write_atomic(
            &dir.join("intermediate.pem"),
            self.intermediate_pem().as_bytes(),
            PUBLIC_MODE,
        )?;
        self.root.key.save(&dir.join("root.key"))?;
        self.intermediate.key.save(&dir.join("intermediate.key"))
    }

    /// Loads what [`TestCa::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self> {
        let cert = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            crate::pem::certificates(&bytes)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Ca(format!("{}: no certificate", path.display())))
        };
        Ok(TestCa {
            root: Issuer::from_parts(HostKey::load(&dir.join("root.key"))?, cert("root.pem")?)?,
            intermediate: Issuer::from_parts(
                HostKey::load(&dir.join("intermediate.key"))?,
                cert("intermediate.pem")?,
            )?,
        })
    }
}

/// Builds a CSR that ignores the metadata service's rules — for testing the side that
/// enforces them (our validator, the metadata test server). `subject` may hold a CN;
/// `extensions` become an extension request; `challenge_password` adds that attribute.
pub fn forge_csr(
    key: &HostKey,
    subject: &str,
    extensions: &[Extension],
    challenge_password: Option<&str>,
) -> Result<Vec<u8>> {
    let mut attributes = SetOfVec::new();
    if !extensions.is_empty() {
        let mut values = SetOfVec::new();
        values.insert(Any::encode_from(&extensions.to_vec())?)?;
        attributes.insert(Attribute {
            oid: rfc5912::ID_EXTENSION_REQ,
            values,
        })?;
    }
    if let Some(pw) = challenge_password {
        let mut values = SetOfVec::new();
        values.insert(Any::encode_from(&der::asn1::Utf8StringRef::new(pw)?)?)?;
        attributes.insert(Attribute {
            // PKCS#9 challengePassword (RFC 2985 §5.4.1).
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7"),
            values,
        })?;
    }
    sign_request(key, parse_dn(subject)?, attributes)
}

/// Wraps an extension value for a certificate or a forged CSR.
pub fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn ca_extensions(
    path_len: Option<u8>,
    own_id: &[u8],
    issuer_id: Option<&[u8]>,
) -> Result<Vec<Extension>> {
    let mut exts = vec![
        extension(
            &BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
            true,
        )?,
        extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
        extension(&SubjectKeyIdentifier(OctetString::new(own_id)?), false)?,
    ];
    if let Some(id) = issuer_id {
        exts.push(extension(&authority_key_id(id)?, false)?);
    }
    Ok(exts)
}

fn authority_key_id(id: &[u8]) -> Result<AuthorityKeyIdentifier> {
    Ok(AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(id)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    })
}

/// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits.
fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| Error::InvalidPublicKey(e.to_string()))?;
    let bits = crate::signature::bit_string_bytes(&spki.subject_public_key)?;
    Ok(
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
            .as_ref()
            .to_vec(),
    )
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn x509_time(t: SystemTime) -> Result<Time> {
    let dt = der::DateTime::from_system_time(t)
        .map_err(|e| Error::Ca(format!("time out of range: {e}")))?;
    Ok(if dt.year() < 2050 {
        Time::UtcTime(UtcTime::from_date_time(dt)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_date_time(dt))
    })
}

fn sign_certificate(
    issuer_key: &HostKey,
    issuer: &Name,
    subject: Name,
    spki_der: &[u8],
    validity: Validity,
    extensions: Vec<Extension>,
) -> Result<Vec<u8>> {
    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| Error::Ca("no randomness for a serial number".into()))?;
    // Positive and without a leading zero octet (RFC 5280 §4.1.2.2).
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let scheme = SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256);
    let algorithm = AlgorithmIdentifierOwned::from_der(&scheme.algorithm_identifier())?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial)?,
        signature: algorithm.clone(),
        issuer: issuer.clone(),
        validity: x509_cert::time::Validity {
            not_before: x509_time(validity.not_before)?,
            not_after: x509_time(validity.not_after)?,
        },
        subject,
        subject_public_key_info: parse_spki(spki_der)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = issuer_key.sign(scheme, &tbs.to_der()?)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(cert.to_der()?)
}

/// OIDs for extended key usages IKE peers put in certificates (RFC 4945 §5.1.3.12).
pub mod eku {
    use const_oid::ObjectIdentifier;

    /// id-kp-serverAuth.
    pub const SERVER_AUTH: ObjectIdentifier = const_oid::db::rfc5280::ID_KP_SERVER_AUTH;
    /// id-kp-clientAuth.
    pub const CLIENT_AUTH: ObjectIdentifier = const_oid::db::rfc5280::ID_KP_CLIENT_AUTH;
    /// id-kp-ipsecIKE (RFC 4945 §5.1.3.12).
    pub const IPSEC_IKE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.17");
    /// id-kp-codeSigning: not an IKE usage (tests use it to see a leaf refused).
    pub const CODE_SIGNING: ObjectIdentifier = const_oid::db::rfc5280::ID_KP_CODE_SIGNING;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::csr::{build_csr, validate_csr, CsrSubject};
    use crate::key::tests::test_key;
    use std::process::Command;
    use std::sync::OnceLock;

    /// One CA shared by the crate's tests, valid around the real clock.
    pub(crate) fn test_ca() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| TestCa::generate(SystemTime::now()).unwrap())
    }

    /// Runs openssl with `args`; `None` (after saying why) when the binary is absent.
    pub(crate) fn openssl(args: &[&str]) -> Option<std::process::Output> {
        match Command::new("openssl").args(args).output() {
            Ok(out) => Some(out),
            Err(e) => {
                eprintln!("skipping openssl cross-check: cannot run openssl: {e}");
                None
            }
        }
    }

    fn leaf_from_csr(validity: Validity) -> Vec<u8> {
        let csr = build_csr(test_key(), &CsrSubject::default()).unwrap();
        let csr = validate_csr(csr.der()).unwrap();
        test_ca()
            .issue_from_csr(&csr, "0717_a1b2c3d4", validity, &LeafOptions::default())
            .unwrap()
    }

    #[test]
    fn leaf_has_csr_subject_plus_instance_cn_and_signing_usage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let validity = Validity::starting_at(now, Duration::from_secs(3600));
        let der = leaf_from_csr(validity);
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = &cert.tbs_certificate;
        assert_eq!(
            crate::name::display_name(&tbs.subject),
            "C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group, CN=0717_a1b2c3d4"
        );
        assert_eq!(tbs.issuer, test_ca().intermediate.subject);
        assert_eq!(tbs.validity.not_before.to_system_time(), now);
        assert_eq!(
            tbs.validity.not_after.to_system_time(),
            now + Duration::from_secs(3600)
        );
        assert_eq!(
            tbs.subject_public_key_info.to_der().unwrap(),
            test_key().public_key_info_der()
        );
        let exts = tbs.extensions.as_ref().unwrap();
        let ku = exts
            .iter()
            .find(|e| e.extn_id == KeyUsage::OID)
            .map(|e| KeyUsage::from_der(e.extn_value.as_bytes()).unwrap())
            .unwrap();
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        let bc = exts
            .iter()
            .find(|e| e.extn_id == BasicConstraints::OID)
            .map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).unwrap())
            .unwrap();
        assert!(!bc.ca);
        assert!(!exts.iter().any(|e| e.extn_id == SubjectAltName::OID));
    }

    #[test]
    fn sans_and_eku_are_written_when_asked() {
        let validity = Validity::starting_at(SystemTime::now(), Duration::from_secs(600));
        let options = LeafOptions {
            sans: vec![
                SanEntry::Dns("nfs.example.test".into()),
                SanEntry::Ip("10.0.0.5".parse().unwrap()),
                SanEntry::Email("ops@example.test".into()),
            ],
            extended_key_usage: vec![eku::IPSEC_IKE],
        };
        let der = test_ca()
            .issue_for_key(
                test_key().public_key_info_der(),
                "CN=peer",
                validity,
                &options,
            )
            .unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let exts = cert.tbs_certificate.extensions.unwrap();
        let san = exts
            .iter()
            .find(|e| e.extn_id == SubjectAltName::OID)
            .unwrap();
        let san = SubjectAltName::from_der(san.extn_value.as_bytes()).unwrap();
        assert_eq!(san.0.len(), 3);
        let e = exts
            .iter()
            .find(|e| e.extn_id == ExtendedKeyUsage::OID)
            .unwrap();
        let e = ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).unwrap();
        assert_eq!(e.0, vec![eku::IPSEC_IKE]);
    }

    #[test]
    fn times_from_2050_use_generalized_time() {
        let t2049 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_607_999); // 2049-12-31
        let t2050 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_608_000); // 2050-01-01
        assert!(matches!(x509_time(t2049).unwrap(), Time::UtcTime(_)));
        assert!(matches!(x509_time(t2050).unwrap(), Time::GeneralTime(_)));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ca = test_ca();
        ca.save(dir.path()).unwrap();
        let loaded = TestCa::load(dir.path()).unwrap();
        assert_eq!(loaded.root_der(), ca.root_der());
        assert_eq!(loaded.intermediate_der(), ca.intermediate_der());
        // The loaded CA still issues chains openssl accepts (same keys).
        assert_eq!(
            loaded.intermediate.key.public_key_info_der(),
            ca.intermediate.key.public_key_info_der()
        );
        assert!(format!("{loaded:?}").contains("intermediate CA"));
    }

    #[test]
    fn openssl_accepts_our_csr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("req.pem");
        let csr = build_csr(test_key(), &CsrSubject::default()).unwrap();
        std::fs::write(&path, csr.to_pem()).unwrap();
        let path = path.to_str().unwrap();
        let Some(out) = openssl(&["req", "-in", path, "-verify", "-noout", "-text"]) else {
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl req -verify failed: {stderr}");
        assert!(
            stderr.contains("verify OK") || stdout.contains("verify OK"),
            "{stdout}{stderr}"
        );
        assert!(
            stdout.contains(
                "C = US, ST = IL, L = Chicago, O = IBM Corporation, OU = IBM Software Group"
            ),
            "{stdout}"
        );
        assert!(stdout.contains("sha256WithRSAEncryption"), "{stdout}");
        // OpenSSL 3 prints an empty "Requested Extensions:" heading even when there are none.
        assert!(
            stdout.contains("Attributes:\n            (none)"),
            "{stdout}"
        );
        assert!(!stdout.contains("X509v3"), "{stdout}");
    }

    #[test]
    fn openssl_verifies_our_chain() {
        let dir = tempfile::tempdir().unwrap();
        let ca = test_ca();
        let root = dir.path().join("root.pem");
        let int = dir.path().join("int.pem");
        let leaf = dir.path().join("leaf.pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        std::fs::write(&int, ca.intermediate_pem()).unwrap();
        let validity = Validity::starting_at(
            SystemTime::now() - Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        std::fs::write(
            &leaf,
            crate::pem::encode("CERTIFICATE", &leaf_from_csr(validity)),
        )
        .unwrap();
        let (root, int, leaf) = (
            root.to_str().unwrap(),
            int.to_str().unwrap(),
            leaf.to_str().unwrap(),
        );
        let Some(out) = openssl(&[
            "verify",
            "-x509_strict",
            "-CAfile",
            root,
            "-untrusted",
            int,
            leaf,
        ]) else {
            return;
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains(": OK"), "{text}");
        // And it must fail without the intermediate: the test is able to fail.
        let out = openssl(&["verify", "-CAfile", root, leaf]).unwrap();
        assert!(!out.status.success());
    }
}

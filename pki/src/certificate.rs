//! Facts about one certificate, for people (`ibm-ipsec cert show`) and for the verifier's
//! error messages: names, validity, subjectAltNames, key type and size, fingerprint.

use std::fmt::Write as _;
use std::time::SystemTime;

use const_oid::db::{rfc5280, rfc5912};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::UintRef;
use der::{Decode, Encode, Sequence};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::name::display_name;

/// A parsed certificate's essentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject DN, as `C=US, O=…, CN=…`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// subjectAltName entries as `DNS:…`, `IP:…`, `email:…`, `URI:…`, `DirName:…`.
    pub subject_alt_names: Vec<String>,
    /// `RSA 4096 bits`, `EC P-384`, …
    pub public_key: String,
    /// The signature algorithm the issuer used.
    pub signature_algorithm: String,
    /// Whether basicConstraints says cA=TRUE.
    pub is_ca: bool,
    /// Key usage bits present, by RFC 5280 name; empty when the extension is absent.
    pub key_usage: Vec<&'static str>,
    /// Extended key usages, by name or OID; empty when the extension is absent.
    pub extended_key_usage: Vec<String>,
    /// SHA-256 over the DER, colon-separated upper-case hex (OpenSSL's format).
    pub sha256_fingerprint: String,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let cert = Certificate::from_der(der).map_err(|e| Error::InvalidCertificate {
            index: None,
            reason: e.to_string(),
        })?;
        let tbs = &cert.tbs_certificate;
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
        Ok(CertificateInfo {
            subject: display_name(&tbs.subject),
            issuer: display_name(&tbs.issuer),
            serial: hex(tbs.serial_number.as_bytes(), ""),
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
            subject_alt_names: subject_alt_names(&cert)
                .iter()
                .map(describe_general_name)
                .collect(),
            public_key: describe_public_key(&tbs.subject_public_key_info.to_der()?),
            signature_algorithm: crate::signature::SignatureScheme::from_algorithm_identifier(
                &cert.signature_algorithm.to_der()?,
            )
            .map(|s| s.to_string())
            .unwrap_or_else(|_| cert.signature_algorithm.oid.to_string()),
            is_ca: extension::<BasicConstraints>(&cert).is_some_and(|b| b.ca),
            key_usage: extension::<KeyUsage>(&cert)
                .map(|k| key_usage_names(&k))
                .unwrap_or_default(),
            extended_key_usage: extension::<ExtendedKeyUsage>(&cert)
                .map(|e| e.0.iter().map(eku_name).collect())
                .unwrap_or_default(),
            sha256_fingerprint: hex(fingerprint.as_ref(), ":").to_uppercase(),
        })
    }
}

/// The decoded extension of type `T`, if present and well-formed.
pub(crate) fn extension<'a, T: AssociatedOid + Decode<'a>>(cert: &'a Certificate) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == T::OID)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}

/// The subjectAltName entries (empty when there is no such extension).
pub(crate) fn subject_alt_names(cert: &Certificate) -> Vec<GeneralName> {
    extension::<SubjectAltName>(cert)
        .map(|s| s.0)
        .unwrap_or_default()
}

/// `DNS:host`, `IP:10.0.0.1`, `email:a@b`, … as OpenSSL prints them.
pub(crate) fn describe_general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::DnsName(d) => format!("DNS:{}", d.as_str()),
        GeneralName::Rfc822Name(e) => format!("email:{}", e.as_str()),
        GeneralName::UniformResourceIdentifier(u) => format!("URI:{}", u.as_str()),
        GeneralName::DirectoryName(n) => format!("DirName:{}", display_name(n)),
        GeneralName::IpAddress(ip) => match ip_from_bytes(ip.as_bytes()) {
            Some(ip) => format!("IP:{ip}"),
            None => format!("IP:#{}", hex(ip.as_bytes(), "")),
        },
        GeneralName::RegisteredId(oid) => format!("RID:{oid}"),
        GeneralName::OtherName(o) => format!("othername:{}", o.type_id),
        GeneralName::EdiPartyName(_) => "EdiPartyName".to_string(),
    }
}

pub(crate) fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[derive(Sequence)]
struct RsaPublicKeyRef<'a> {
    modulus: UintRef<'a>,
    exponent: UintRef<'a>,
}

/// `RSA 4096 bits`, `EC P-256`, or the algorithm OID.
pub(crate) fn describe_public_key(spki_der: &[u8]) -> String {
    let Ok(spki) = spki::SubjectPublicKeyInfoRef::from_der(spki_der) else {
        return "malformed public key".into();
    };
    let oid = spki.algorithm.oid;
    if oid == rfc5912::RSA_ENCRYPTION {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .and_then(|b| RsaPublicKeyRef::from_der(b).ok())
            .map(|k| {
                let m = k.modulus.as_bytes();
                m.first().map_or(0, |&top| {
                    (m.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
                })
            });
        return match bits {
            Some(bits) => format!("RSA {bits} bits"),
            None => "RSA (malformed key)".into(),
        };
    }
    if oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return match curve {
            Some(rfc5912::SECP_256_R_1) => "EC P-256".into(),
            Some(rfc5912::SECP_384_R_1) => "EC P-384".into(),
            Some(rfc5912::SECP_521_R_1) => "EC P-521".into(),
            Some(other) => format!("EC curve {other}"),
            None => "EC (no named curve)".into(),
        };
    }
    if oid == ObjectIdentifier::new_unwrap("1.3.101.112") {
        return "Ed25519".into();
    }
    format!("key algorithm {oid}")
}

fn key_usage_names(k: &KeyUsage) -> Vec<&'static str> {
    let mut out = Vec::new();
    let bits: [(bool, &'static str); 9] = [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ];
    for (set, name) in bits {
        if set {
            out.push(name);
        }
    }
    out
}

fn eku_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        rfc5280::ID_KP_SERVER_AUTH => "serverAuth".into(),
        rfc5280::ID_KP_CLIENT_AUTH => "clientAuth".into(),
        rfc5280::ID_KP_CODE_SIGNING => "codeSigning".into(),
        rfc5280::ANY_EXTENDED_KEY_USAGE => "anyExtendedKeyUsage".into(),
        o if o == crate::ca::eku::IPSEC_IKE => "ipsecIKE".into(),
        o => o.to_string(),
    }
}

pub(crate) fn hex(bytes: &[u8], sep: &str) -> String {
    let mut out = String::with_capacity(bytes.len() * (2 + sep.len()));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A time as `2026-11-23T09:00:00Z` (or seconds since the epoch when out of range).
pub fn format_time(t: SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(dt) => dt.to_string(),
        Err(_) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => format!("{}s after the epoch", d.as_secs()),
            Err(e) => format!("{}s before the epoch", e.duration().as_secs()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::test_ca;
    use crate::ca::{LeafOptions, SanEntry, Validity};
    use crate::key::tests::test_key;
    use std::time::Duration;

    #[test]
    fn describes_a_leaf() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let der = test_ca()
            .issue_for_key(
                test_key().public_key_info_der(),
                "C=US,O=IBM,CN=peer",
                Validity::starting_at(nb, Duration::from_secs(3600)),
                &LeafOptions {
                    sans: vec![
                        SanEntry::Dns("nfs.example.test".into()),
                        SanEntry::Ip("fd00::5".parse().unwrap()),
                    ],
                    extended_key_usage: vec![crate::ca::eku::IPSEC_IKE],
                },
            )
            .unwrap();
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(info.subject, "C=US, O=IBM, CN=peer");
        assert_eq!(
            info.issuer,
            "C=US, O=ibm-ipsec test, CN=ibm-ipsec test intermediate CA"
        );
        assert_eq!(info.not_before, nb);
        assert_eq!(info.not_after, nb + Duration::from_secs(3600));
        assert_eq!(
            info.subject_alt_names,
            ["DNS:nfs.example.test", "IP:fd00::5"]
        );
        assert_eq!(info.public_key, "RSA 2048 bits");
        assert_eq!(info.signature_algorithm, "RSA PKCS#1 v1.5 with SHA-256");
        assert!(!info.is_ca);
        assert_eq!(info.key_usage, ["digitalSignature"]);
        assert_eq!(info.extended_key_usage, ["ipsecIKE"]);
        assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
        assert_eq!(format_time(nb), "2027-01-15T08:00:00Z");
        let root = CertificateInfo::from_der(test_ca().root_der()).unwrap();
        assert!(root.is_ca);
        assert_eq!(root.key_usage, ["keyCertSign", "cRLSign"]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(CertificateInfo::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        assert_eq!(describe_public_key(&[1, 2, 3]), "malformed public key");
    }
}

//! The host's own IKE credentials: key plus certificate chain, signing AUTH payloads.

use std::path::Path;
use std::time::SystemTime;

use der::{Decode, Encode};
use ring::rand::SecureRandom;
use x509_cert::Certificate;

use crate::chain::IkeIdentity;
use crate::error::{Error, Result};
use crate::key::HostKey;
use crate::signature::SignatureScheme;

/// Our key and the certificates that vouch for it (leaf first, then intermediates: what
/// the IKE_AUTH CERT payloads carry).
pub struct HostIdentity {
    key: HostKey,
    chain: Vec<Vec<u8>>,
    subject_der: Vec<u8>,
    not_after: SystemTime,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("subject", &crate::name::display_name_der(&self.subject_der))
            .field(
                "not_after",
                &crate::certificate::format_time(self.not_after),
            )
            .field("certificates", &self.chain.len())
            .field("key", &self.key)
            .finish()
    }
}

impl HostIdentity {
    /// Pairs a key with its chain (DER, leaf first). The leaf must hold the key's public key.
    pub fn new(key: HostKey, chain: Vec<Vec<u8>>) -> Result<Self> {
        let leaf_der = chain.first().ok_or_else(|| Error::InvalidCertificate {
            index: None,
            reason: "empty certificate chain".into(),
        })?;
        for (i, der) in chain.iter().enumerate() {
            Certificate::from_der(der).map_err(|e| Error::InvalidCertificate {
                index: Some(i),
                reason: e.to_string(),
            })?;
        }
        let leaf = Certificate::from_der(leaf_der)?;
        if leaf.tbs_certificate.subject_public_key_info.to_der()? != key.public_key_info_der() {
            return Err(Error::InvalidKey(
                "the certificate is for a different key than the private key given".into(),
            ));
        }
        Ok(HostIdentity {
            subject_der: leaf.tbs_certificate.subject.to_der()?,
            not_after: leaf.tbs_certificate.validity.not_after.to_system_time(),
            key,
            chain,
        })
    }

    /// Loads a key file and certificate files (PEM; the first certificate found is the
    /// leaf, the rest are intermediates, in file order).
    pub fn load(key_path: &Path, cert_paths: &[&Path]) -> Result<Self> {
        let key = HostKey::load(key_path)?;
        let mut chain = Vec::new();
        for path in cert_paths {
            let bytes = std::fs::read(path).map_err(|e| Error::io(*path, e))?;
            chain.extend(crate::pem::certificates(&bytes)?);
        }
        Self::new(key, chain)
    }

    /// The private key.
    pub fn key(&self) -> &HostKey {
        &self.key
    }

    /// The leaf certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.chain[0]
    }

    /// Leaf then intermediates (DER), as the CERT payloads send them.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// Our IKE identity: the leaf's subject DN (ID_DER_ASN1_DN), as strongSwan uses it.
    pub fn ike_identity(&self) -> IkeIdentity {
        IkeIdentity::Dn(self.subject_der.clone())
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Signs AUTH octets (RFC 7296 §2.15) with ring.
    pub fn sign(&self, scheme: SignatureScheme, octets: &[u8]) -> Result<Vec<u8>> {
        self.key.sign(scheme, octets)
    }

    /// Signs AUTH octets and frames them as method-14 Authentication Data (RFC 7427 §3).
    pub fn sign_auth_data(&self, scheme: SignatureScheme, octets: &[u8]) -> Result<Vec<u8>> {
        Ok(crate::signature::auth_data(
            scheme,
            &self.sign(scheme, octets)?,
        ))
    }

    /// Signs with an injected random source (used for the PSS salt only).
    pub fn sign_with_rng(
        &self,
        scheme: SignatureScheme,
        octets: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Vec<u8>> {
        self.key.sign_with_rng(scheme, octets, rng)
    }
}

//! Pluggable authentication (RFC 7296 §2.15, RFC 7427).
//!
//! The IKE SA never touches a private key or a certificate store: it asks a
//! [`LocalAuthenticator`] to produce its AUTH payload over the signed octets, and a
//! [`PeerAuthenticator`] to verify the peer's identity, certificates and AUTH payload. `pki`
//! provides the certificate implementations; [`Psk`] is the built-in shared-key one.

use core::fmt;
use std::time::SystemTime;

use crate::crypto::{psk_auth, verify_psk_auth, PrfAlgorithm, SecretBytes};
use crate::wire::{AuthMethod, CertificateRequest, HashAlgorithm, Identification};

/// Why signing or verification failed; the text ends up in `Failed { reason }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// What a signer knows besides the octets: the negotiated PRF (for shared keys) and the hash
/// algorithms the peer announced in `SIGNATURE_HASH_ALGORITHMS` (RFC 7427 §4; empty if it
/// sent none, in which case RFC 7427 signatures must not be used).
#[derive(Debug, Clone, Copy)]
pub struct SignContext<'a> {
    /// The IKE SA's PRF.
    pub prf: PrfAlgorithm,
    /// Hashes the peer can verify.
    pub peer_hash_algorithms: &'a [HashAlgorithm],
}

/// Produces our identity and AUTH payload.
pub trait LocalAuthenticator: Send + Sync {
    /// Our identity (IDi or IDr).
    fn id(&self) -> Identification;
    /// The identity to answer with when the initiator asks for `requested` in IDr
    /// (RFC 7296 §3.5), or `None` to answer with [`id`](Self::id). A responder signs its
    /// AUTH for `id()` ahead of IKE_AUTH; a different identity here costs a second signature
    /// on the IKE_AUTH path.
    fn select_id(&self, requested: &Identification) -> Option<Identification> {
        let _ = requested;
        None
    }
    /// DER certificates to send in CERT payloads, end entity first (empty for PSK).
    fn certificates(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The AUTH method and data over `signed_octets` (RFC 7296 §2.15).
    fn sign(
        &self,
        ctx: &SignContext<'_>,
        signed_octets: &[u8],
    ) -> Result<(AuthMethod, Vec<u8>), AuthError>;
}

/// The peer's claims that must be checked, all from one IKE_AUTH message.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The peer's IDi/IDr.
    pub id: &'a Identification,
    /// DER certificates from its CERT payloads (X.509 signature encoding), in order.
    pub certificates: &'a [Vec<u8>],
    /// AUTH method.
    pub method: AuthMethod,
    /// AUTH data.
    pub auth_data: &'a [u8],
    /// The octets the peer signed (RFC 7296 §2.15).
    pub signed_octets: &'a [u8],
    /// The IKE SA's PRF (for shared keys).
    pub prf: PrfAlgorithm,
}

/// Who the peer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The identity it claimed and proved.
    pub id: Identification,
    /// A human description (e.g. the certificate subject and issuer).
    pub description: String,
    /// The end-entity certificate that vouched for it, when it authenticated with one
    /// (`None` for shared keys): its validity is what `status` shows, and an IKE SA should
    /// not outlive it without reauthentication.
    pub certificate: Option<PeerCertificate>,
}

impl PeerIdentity {
    /// A peer proven without a certificate (shared key, raw public key).
    pub fn new(id: Identification, description: impl Into<String>) -> Self {
        PeerIdentity {
            id,
            description: description.into(),
            certificate: None,
        }
    }

    /// The same peer, with the certificate that authenticated it.
    pub fn with_certificate(mut self, certificate: PeerCertificate) -> Self {
        self.certificate = Some(certificate);
        self
    }
}

/// Facts about the peer's authenticated end-entity certificate, as the
/// [`PeerAuthenticator`] that verified it read them (this crate parses no X.509).
///
/// The times are wall-clock (`SystemTime`): they are data from the certificate, not a clock
/// this crate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Subject DN as text (`C=US, O=IBM, CN=…`).
    pub subject: String,
    /// Issuer DN as text.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// Verifies the peer.
pub trait PeerAuthenticator: Send + Sync {
    /// The CERTREQ to send (the CAs we trust), or `None` when certificates are not wanted.
    fn certificate_request(&self) -> Option<CertificateRequest> {
        None
    }
    /// The hash algorithms we verify RFC 7427 signatures with, announced in
    /// `SIGNATURE_HASH_ALGORITHMS`.
    fn hash_algorithms(&self) -> Vec<HashAlgorithm> {
        vec![
            HashAlgorithm::Sha2_256,
            HashAlgorithm::Sha2_384,
            HashAlgorithm::Sha2_512,
        ]
    }
    /// Checks identity, certificates and AUTH; the returned identity is reported in events.
    fn verify(&self, request: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError>;
}

/// Shared-key authentication (AUTH method 2, RFC 7296 §2.15), usable for both directions.
pub struct Psk {
    local_id: Identification,
    remote_id: Option<Identification>,
    secret: SecretBytes,
}

impl Psk {
    /// A shared key; `remote_id = None` accepts any peer identity that knows the key.
    pub fn new(
        local_id: Identification,
        remote_id: Option<Identification>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        Psk {
            local_id,
            remote_id,
            secret: SecretBytes::new(secret.into()),
        }
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psk")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl LocalAuthenticator for Psk {
    fn id(&self) -> Identification {
        self.local_id.clone()
    }

    fn sign(
        &self,
        ctx: &SignContext<'_>,
        signed_octets: &[u8],
    ) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        Ok((
            AuthMethod::SharedKeyMic,
            psk_auth(ctx.prf, self.secret.as_bytes(), signed_octets),
        ))
    }
}

impl PeerAuthenticator for Psk {
    fn hash_algorithms(&self) -> Vec<HashAlgorithm> {
        Vec::new()
    }

    fn verify(&self, r: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError> {
        if r.method != AuthMethod::SharedKeyMic {
            return Err(AuthError(format!(
                "peer used AUTH method {}, we expect a shared key",
                r.method
            )));
        }
        if let Some(want) = &self.remote_id {
            if want != r.id {
                return Err(AuthError(format!(
                    "peer identity {} is not the configured {want}",
                    r.id
                )));
            }
        }
        verify_psk_auth(r.prf, self.secret.as_bytes(), r.signed_octets, r.auth_data)
            .map_err(|_| AuthError("shared-key AUTH payload does not match".into()))?;
        Ok(PeerIdentity::new(
            r.id.clone(),
            format!("{} (pre-shared key)", r.id),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_signs_and_verifies_and_checks_identity() {
        let a = Psk::new(Identification::fqdn("a"), None, b"secret".to_vec());
        let b = Psk::new(
            Identification::fqdn("b"),
            Some(Identification::fqdn("a")),
            b"secret".to_vec(),
        );
        let ctx = SignContext {
            prf: PrfAlgorithm::HmacSha256,
            peer_hash_algorithms: &[],
        };
        let (method, data) = a.sign(&ctx, b"octets").unwrap();
        let id = a.id();
        let req = VerifyRequest {
            id: &id,
            certificates: &[],
            method,
            auth_data: &data,
            signed_octets: b"octets",
            prf: PrfAlgorithm::HmacSha256,
        };
        assert_eq!(b.verify(&req).unwrap().id, id);
        let wrong_octets = VerifyRequest {
            signed_octets: b"other",
            ..req
        };
        assert!(b.verify(&wrong_octets).is_err());
        let other = Identification::fqdn("c");
        assert!(b.verify(&VerifyRequest { id: &other, ..req }).is_err());
        assert!(!format!("{a:?}").contains("secret\""));
    }
}

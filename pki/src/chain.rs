//! Verifying a peer's certificate chain (IKE CERT payloads) with rustls-webpki: path to a
//! configured root CA, validity with clock-skew tolerance, key usage, and the peer's IKE
//! identity. Errors name the certificate and the reason.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::KeyUsage;
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::certificate::{describe_general_name, extension, format_time, subject_alt_names};
use crate::error::{Error, Result};
use crate::name::{display_name, names_match};
use crate::signature::{SignatureScheme, SignedRef};

/// Clock difference we tolerate between us and the issuer or the peer, by default.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Most certificates we accept from a peer (leaf + intermediates). IKE peers send 1–3.
pub const MAX_PEER_CERTIFICATES: usize = 8;

/// Why a peer's chain was rejected. Each names the certificate by subject.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The peer sent no certificate.
    #[error("the peer sent no certificate")]
    Empty,
    /// The peer sent more certificates than we examine.
    #[error("the peer sent {count} certificates; at most {max} are accepted")]
    TooMany {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A certificate does not parse.
    #[error("certificate #{index} from the peer is malformed: {reason}")]
    Malformed {
        /// Position (0 = leaf).
        index: usize,
        /// Parser's reason.
        reason: String,
    },
    /// A certificate's notAfter has passed (beyond the clock-skew allowance).
    #[error("certificate \"{subject}\" expired at {not_after} (now {now}, {skew_secs}s clock skew allowed)")]
    Expired {
        /// Subject DN.
        subject: String,
        /// notAfter.
        not_after: String,
        /// The verification time.
        now: String,
        /// Allowance.
        skew_secs: u64,
    },
    /// A certificate's notBefore is still ahead (beyond the clock-skew allowance).
    #[error("certificate \"{subject}\" is not valid before {not_before} (now {now}, {skew_secs}s clock skew allowed)")]
    NotYetValid {
        /// Subject DN.
        subject: String,
        /// notBefore.
        not_before: String,
        /// The verification time.
        now: String,
        /// Allowance.
        skew_secs: u64,
    },
    /// No configured root CA or received intermediate issued this certificate.
    #[error("certificate \"{subject}\" was issued by \"{issuer}\", which is neither a configured root CA nor among the certificates the peer sent")]
    UnknownIssuer {
        /// Subject DN.
        subject: String,
        /// Issuer DN.
        issuer: String,
    },
    /// The issuer's key does not verify the certificate's signature.
    #[error("certificate \"{subject}\": its signature does not verify with the key of \"{issuer}\" (tampered, or a different CA with the same name)")]
    BadSignature {
        /// Subject DN.
        subject: String,
        /// Issuer DN.
        issuer: String,
    },
    /// The leaf does not match the identity the peer claimed in its IKE ID payload.
    #[error("certificate \"{subject}\" does not match the peer's IKE identity {expected} (subjectAltNames: {sans})")]
    IdentityMismatch {
        /// The claimed identity.
        expected: String,
        /// Subject DN.
        subject: String,
        /// The SANs present, or `none`.
        sans: String,
    },
    /// The leaf's key usage forbids signatures.
    #[error("certificate \"{subject}\" has a key usage without digitalSignature or nonRepudiation; it cannot authenticate IKE")]
    KeyUsage {
        /// Subject DN.
        subject: String,
    },
    /// An extended key usage is present but names no purpose IKE uses.
    #[error("certificate \"{subject}\" has extended key usages ({present}) of which none is for IKE (ipsecIKE, serverAuth, clientAuth, anyExtendedKeyUsage, ipsec end system/tunnel/user)")]
    ExtendedKeyUsage {
        /// Subject DN.
        subject: String,
        /// The OIDs present.
        present: String,
    },
    /// Any other reason webpki gave.
    #[error("certificate \"{subject}\" rejected: {reason}")]
    Rejected {
        /// Subject DN of the leaf.
        subject: String,
        /// webpki's reason.
        reason: String,
    },
}

/// The identity an IKE peer claims (RFC 7296 §3.5), matched against its certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum IkeIdentity {
    /// Accept any identity the chain vouches for (strongSwan's `%any`).
    Any,
    /// ID_DER_ASN1_DN: the DER of a Name, compared with the leaf's subject.
    Dn(Vec<u8>),
    /// ID_FQDN: matched against dNSName SANs.
    Fqdn(String),
    /// ID_RFC822_ADDR: matched against rfc822Name SANs.
    Rfc822(String),
    /// ID_IPV4_ADDR / ID_IPV6_ADDR: matched against iPAddress SANs.
    Ip(IpAddr),
}

impl IkeIdentity {
    /// ID type numbers (RFC 7296 §3.5).
    pub const ID_IPV4_ADDR: u8 = 1;
    /// ID_FQDN.
    pub const ID_FQDN: u8 = 2;
    /// ID_RFC822_ADDR.
    pub const ID_RFC822_ADDR: u8 = 3;
    /// ID_IPV6_ADDR.
    pub const ID_IPV6_ADDR: u8 = 5;
    /// ID_DER_ASN1_DN.
    pub const ID_DER_ASN1_DN: u8 = 9;

    /// From an ID payload's type and data.
    pub fn from_id_payload(id_type: u8, data: &[u8]) -> Result<Self> {
        let text = || {
            std::str::from_utf8(data)
                .map(str::to_string)
                .map_err(|_| Error::UnsupportedIdentity("identity is not UTF-8 text".into()))
        };
        match id_type {
            Self::ID_IPV4_ADDR => <[u8; 4]>::try_from(data)
                .map(|a| IkeIdentity::Ip(IpAddr::from(a)))
                .map_err(|_| Error::UnsupportedIdentity("ID_IPV4_ADDR is not 4 bytes".into())),
            Self::ID_IPV6_ADDR => <[u8; 16]>::try_from(data)
                .map(|a| IkeIdentity::Ip(IpAddr::from(a)))
                .map_err(|_| Error::UnsupportedIdentity("ID_IPV6_ADDR is not 16 bytes".into())),
            Self::ID_FQDN => Ok(IkeIdentity::Fqdn(text()?)),
            Self::ID_RFC822_ADDR => Ok(IkeIdentity::Rfc822(text()?)),
            Self::ID_DER_ASN1_DN => {
                Name::from_der(data).map_err(|e| {
                    Error::UnsupportedIdentity(format!("malformed ID_DER_ASN1_DN: {e}"))
                })?;
                Ok(IkeIdentity::Dn(data.to_vec()))
            }
            other => Err(Error::UnsupportedIdentity(format!(
                "ID type {other} (only IPv4/IPv6 address, FQDN, RFC 822 and DER DN)"
            ))),
        }
    }

    /// ID_DER_ASN1_DN from text like `C=US,O=IBM,CN=host`.
    pub fn dn(text: &str) -> Result<Self> {
        Ok(IkeIdentity::Dn(crate::name::parse_dn(text)?.to_der()?))
    }

    /// The ID payload's type and data (`None` for [`IkeIdentity::Any`]).
    pub fn to_id_payload(&self) -> Option<(u8, Vec<u8>)> {
        Some(match self {
            IkeIdentity::Any => return None,
            IkeIdentity::Dn(der) => (Self::ID_DER_ASN1_DN, der.clone()),
            IkeIdentity::Fqdn(s) => (Self::ID_FQDN, s.as_bytes().to_vec()),
            IkeIdentity::Rfc822(s) => (Self::ID_RFC822_ADDR, s.as_bytes().to_vec()),
            IkeIdentity::Ip(IpAddr::V4(a)) => (Self::ID_IPV4_ADDR, a.octets().to_vec()),
            IkeIdentity::Ip(IpAddr::V6(a)) => (Self::ID_IPV6_ADDR, a.octets().to_vec()),
        })
    }
}

impl fmt::Display for IkeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IkeIdentity::Any => f.write_str("%any"),
            IkeIdentity::Dn(der) => write!(f, "DN \"{}\"", crate::name::display_name_der(der)),
            IkeIdentity::Fqdn(s) => write!(f, "FQDN {s}"),
            IkeIdentity::Rfc822(s) => write!(f, "RFC 822 {s}"),
            IkeIdentity::Ip(ip) => write!(f, "IP {ip}"),
        }
    }
}

impl fmt::Debug for IkeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct RootCa {
    der: Vec<u8>,
    subject: Name,
    spki: Vec<u8>,
}

/// Root CAs we trust (for IBM: one PEM file per region; a file may hold several).
#[derive(Default)]
pub struct RootStore {
    roots: Vec<RootCa>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for RootStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.roots.iter().map(|r| display_name(&r.subject)))
            .finish()
    }
}

impl RootStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `*.pem`, `*.crt`, `*.cer` and `*.der` file in `dir` (sorted by name; other
    /// files are ignored). A file that does not parse is an error naming it; so is a
    /// directory without any certificate.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "pem" | "crt" | "cer" | "der"))
                    && p.is_file()
            })
            .collect();
        paths.sort();
        let mut store = RootStore::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            store
                .add_file_contents(&bytes)
                .map_err(|e| Error::RootStore(format!("{}: {e}", path.display())))?;
        }
        if store.is_empty() {
            return Err(Error::RootStore(format!(
                "{}: no certificate files (*.pem, *.crt, *.cer, *.der)",
                dir.display()
            )));
        }
        Ok(store)
    }

    /// Adds every certificate in a PEM (or single DER) file's contents; returns how many.
    pub fn add_file_contents(&mut self, bytes: &[u8]) -> Result<usize> {
        let certs = crate::pem::certificates(bytes)?;
        if certs.is_empty() {
            return Err(Error::RootStore("no CERTIFICATE block".into()));
        }
        for der in &certs {
            self.add_der(der)?;
        }
        Ok(certs.len())
    }

    /// Adds one DER certificate as a trust anchor.
    pub fn add_der(&mut self, der: &[u8]) -> Result<()> {
        let cert = Certificate::from_der(der).map_err(|e| Error::InvalidCertificate {
            index: None,
            reason: e.to_string(),
        })?;
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der))
            .map_err(|e| Error::RootStore(format!("not usable as a trust anchor: {e}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.roots.push(RootCa {
            der: der.to_vec(),
            subject: cert.tbs_certificate.subject,
            spki: cert.tbs_certificate.subject_public_key_info.to_der()?,
        });
        Ok(())
    }

    /// Number of root certificates.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots' subjects, for status output.
    pub fn subjects(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|r| display_name(&r.subject))
            .collect()
    }

    /// The Certification Authority field of an IKE CERTREQ payload for these roots
    /// (RFC 7296 §3.7): the SHA-1 hashes of each root's SubjectPublicKeyInfo, concatenated.
    pub fn certreq_authorities(&self) -> Vec<u8> {
        self.roots
            .iter()
            .flat_map(|r| certreq_key_hash(&r.spki))
            .collect()
    }

    /// Whether a peer's CERTREQ Certification Authority field names one of these roots.
    pub fn is_requested(&self, certreq_authorities: &[u8]) -> bool {
        certreq_authorities
            .chunks_exact(20)
            .any(|h| self.roots.iter().any(|r| certreq_key_hash(&r.spki) == h))
    }

    /// The roots' DER, e.g. to compute CERTREQ hashes.
    pub fn certificates_der(&self) -> impl Iterator<Item = &[u8]> {
        self.roots.iter().map(|r| r.der.as_slice())
    }
}

/// A peer whose chain verified: what AUTH verification and status output need.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    subject: Name,
    subject_der: Vec<u8>,
    public_key_info: Vec<u8>,
    not_after: SystemTime,
    chain: Vec<Vec<u8>>,
}

impl fmt::Debug for VerifiedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedPeer")
            .field("subject", &display_name(&self.subject))
            .field("not_after", &format_time(self.not_after))
            .finish()
    }
}

impl VerifiedPeer {
    /// The leaf's subject, for people.
    pub fn subject(&self) -> String {
        display_name(&self.subject)
    }

    /// The leaf's subject DN (DER): the peer's ID_DER_ASN1_DN.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The leaf's public key (DER SubjectPublicKeyInfo), which AUTH must verify with.
    pub fn public_key_info_der(&self) -> &[u8] {
        &self.public_key_info
    }

    /// When the leaf expires: an IKE SA authenticated by it should reauthenticate before.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificates as received, leaf first.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

/// Verifies peers' chains and AUTH signatures against a [`RootStore`].
#[derive(Debug)]
pub struct PeerVerifier {
    roots: RootStore,
    clock_skew: Duration,
}

impl PeerVerifier {
    /// A verifier with [`DEFAULT_CLOCK_SKEW`].
    pub fn new(roots: RootStore) -> Self {
        PeerVerifier {
            roots,
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// Sets the clock-skew tolerance applied to every notBefore/notAfter.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The trusted roots.
    pub fn roots(&self) -> &RootStore {
        &self.roots
    }

    /// Verifies `certs` (leaf first, then intermediates in any order, as IKE CERT payloads
    /// carry them) at time `now`, and matches the leaf to `expected`.
    ///
    /// The chain passes if some instant within `now ± clock_skew` has every certificate on
    /// the path valid. Key usage: a keyUsage extension, when present, must allow
    /// digitalSignature or nonRepudiation (RFC 4945 §5.1.3.2); an extendedKeyUsage, when
    /// present, must include a purpose IKE peers use.
    pub fn verify_chain<C: AsRef<[u8]>>(
        &self,
        certs: &[C],
        now: SystemTime,
        expected: &IkeIdentity,
    ) -> std::result::Result<VerifiedPeer, ChainError> {
        if certs.is_empty() {
            return Err(ChainError::Empty);
        }
        if certs.len() > MAX_PEER_CERTIFICATES {
            return Err(ChainError::TooMany {
                count: certs.len(),
                max: MAX_PEER_CERTIFICATES,
            });
        }
        let parsed = certs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                Certificate::from_der(c.as_ref()).map_err(|e| ChainError::Malformed {
                    index,
                    reason: e.to_string(),
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let leaf_der = CertificateDer::from(certs[0].as_ref());
        let leaf = EndEntityCert::try_from(&leaf_der).map_err(|e| ChainError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
        let intermediates: Vec<CertificateDer<'_>> = certs[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let leaf_subject = display_name(&parsed[0].tbs_certificate.subject);

        let mut first_error = None;
        let mut verified = false;
        for t in self.candidate_times(&parsed, now) {
            let result = leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.roots.anchors,
                &intermediates,
                UnixTime::since_unix_epoch(t),
                IkeKeyPurposes,
                None,
                None,
            );
            match result {
                Ok(_) => {
                    verified = true;
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !verified {
            let raw: Vec<&[u8]> = certs.iter().map(AsRef::as_ref).collect();
            let fallback = match first_error {
                Some(webpki::Error::RequiredEkuNotFoundContext(ctx)) => {
                    ChainError::ExtendedKeyUsage {
                        subject: leaf_subject,
                        present: ctx
                            .present
                            .iter()
                            .map(|oid| {
                                oid.iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(".")
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                }
                Some(e) => ChainError::Rejected {
                    subject: leaf_subject,
                    reason: webpki_reason(&e),
                },
                None => ChainError::Rejected {
                    subject: leaf_subject,
                    reason: "no path to a configured root CA".into(),
                },
            };
            return Err(self.diagnose(&raw, &parsed, now).unwrap_or(fallback));
        }

        let cert = &parsed[0];
        if let Some(ku) = extension::<KeyUsage>(cert) {
            if !ku.digital_signature() && !ku.non_repudiation() {
                return Err(ChainError::KeyUsage {
                    subject: leaf_subject,
                });
            }
        }
        check_identity(&leaf, cert, expected)?;
        let der_err = |e: der::Error| ChainError::Malformed {
            index: 0,
            reason: e.to_string(),
        };
        Ok(VerifiedPeer {
            subject_der: cert.tbs_certificate.subject.to_der().map_err(der_err)?,
            subject: cert.tbs_certificate.subject.clone(),
            public_key_info: cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(der_err)?,
            not_after: cert.tbs_certificate.validity.not_after.to_system_time(),
            chain: certs.iter().map(|c| c.as_ref().to_vec()).collect(),
        })
    }

    /// Verifies an AUTH payload's signature (RFC 7427 §3: `algorithm_identifier_der` is
    /// the AlgorithmIdentifier from the payload) over `octets` with the peer's key.
    pub fn verify_signature(
        &self,
        peer: &VerifiedPeer,
        algorithm_identifier_der: &[u8],
        octets: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let scheme = SignatureScheme::from_algorithm_identifier(algorithm_identifier_der)?;
        crate::signature::verify(&peer.public_key_info, scheme, octets, signature)
    }

    /// Verifies method-14 AUTH data (RFC 7427 §3: length ‖ AlgorithmIdentifier ‖
    /// signature) over `octets`; returns the scheme the peer used.
    pub fn verify_auth_data(
        &self,
        peer: &VerifiedPeer,
        auth_data: &[u8],
        octets: &[u8],
    ) -> Result<SignatureScheme> {
        let (ai, signature) = crate::signature::split_auth_data(auth_data)?;
        let scheme = SignatureScheme::from_algorithm_identifier(ai)?;
        crate::signature::verify(&peer.public_key_info, scheme, octets, signature)?;
        Ok(scheme)
    }

    /// `now`, then every notBefore/notAfter within the skew window, nearest first. If the
    /// intersection of the path's validity intervals meets `now ± skew`, it contains `now`
    /// or one of these endpoints, so trying them is exact.
    fn candidate_times(&self, parsed: &[Certificate], now: SystemTime) -> Vec<Duration> {
        let now_d = unix(now);
        let skew = self.clock_skew;
        let mut times = vec![now_d];
        for c in parsed {
            let v = &c.tbs_certificate.validity;
            for t in [
                v.not_before.to_unix_duration(),
                v.not_after.to_unix_duration(),
            ] {
                let distance = if t > now_d { t - now_d } else { now_d - t };
                if distance <= skew && !times.contains(&t) {
                    times.push(t);
                }
            }
        }
        times[1..].sort_by_key(|t| if *t > now_d { *t - now_d } else { now_d - *t });
        times
    }

    /// Walks leaf → issuer → … by name and signature to say which certificate failed and
    /// why. `None` when the walk finds nothing wrong (webpki's own reason is used then).
    fn diagnose(
        &self,
        raw: &[&[u8]],
        parsed: &[Certificate],
        now: SystemTime,
    ) -> Option<ChainError> {
        let now_d = unix(now);
        let skew = self.clock_skew;
        let mut current = 0usize;
        let mut visited = vec![0usize];
        for _ in 0..=parsed.len() {
            let cert = &parsed[current];
            let tbs = &cert.tbs_certificate;
            let subject = display_name(&tbs.subject);
            let not_after = tbs.validity.not_after.to_unix_duration();
            let not_before = tbs.validity.not_before.to_unix_duration();
            if now_d > not_after + skew {
                return Some(ChainError::Expired {
                    subject,
                    not_after: format_time(tbs.validity.not_after.to_system_time()),
                    now: format_time(now),
                    skew_secs: skew.as_secs(),
                });
            }
            if now_d + skew < not_before {
                return Some(ChainError::NotYetValid {
                    subject,
                    not_before: format_time(tbs.validity.not_before.to_system_time()),
                    now: format_time(now),
                    skew_secs: skew.as_secs(),
                });
            }
            let issuer = display_name(&tbs.issuer);
            let signed = SignedRef::from_der(raw[current]).ok()?;
            let roots: Vec<&RootCa> = self
                .roots
                .roots
                .iter()
                .filter(|r| names_match(&r.subject, &tbs.issuer))
                .collect();
            // A signature that cannot even be checked (SHA-1, RSA-1024, …) is reported as
            // such, not as a forgery.
            let signature_failure =
                |errors: Vec<Error>, subject: String, issuer: String| match errors
                    .into_iter()
                    .find(|e| !matches!(e, Error::BadSignature))
                {
                    Some(e) => ChainError::Rejected {
                        subject,
                        reason: e.to_string(),
                    },
                    None => ChainError::BadSignature { subject, issuer },
                };
            if !roots.is_empty() {
                let mut errors = Vec::new();
                for r in &roots {
                    match signed.verify(&r.spki) {
                        Ok(()) => return None,
                        Err(e) => errors.push(e),
                    }
                }
                return Some(signature_failure(errors, subject, issuer));
            }
            let candidates: Vec<usize> = (1..parsed.len())
                .filter(|i| !visited.contains(i))
                .filter(|&i| names_match(&parsed[i].tbs_certificate.subject, &tbs.issuer))
                .collect();
            if candidates.is_empty() {
                return Some(ChainError::UnknownIssuer { subject, issuer });
            }
            let mut errors = Vec::new();
            let mut next = None;
            for i in candidates {
                let result = parsed[i]
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(Error::from)
                    .and_then(|spki| signed.verify(&spki));
                match result {
                    Ok(()) => {
                        next = Some(i);
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            match next {
                Some(i) => {
                    visited.push(i);
                    current = i;
                }
                None => return Some(signature_failure(errors, subject, issuer)),
            }
        }
        None
    }
}

/// webpki's reasons in words, for the ones a misconfigured peer or CA directory produces.
fn webpki_reason(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CaUsedAsEndEntity => {
            "it is a CA certificate (cA=TRUE), not a peer's end-entity certificate".into()
        }
        webpki::Error::EndEntityUsedAsCa => {
            "a certificate on the path that should be a CA is not one (cA=FALSE)".into()
        }
        webpki::Error::PathLenConstraintViolated => {
            "a CA's pathLenConstraint forbids this many intermediates".into()
        }
        webpki::Error::UnsupportedCriticalExtension => {
            "a certificate on the path has a critical extension we do not understand".into()
        }
        webpki::Error::NameConstraintViolation => "a CA's name constraints forbid it".into(),
        webpki::Error::UnsupportedSignatureAlgorithmContext(_)
        | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "signed with an algorithm we do not accept (SHA-1, or RSA under 2048 bits)".into()
        }
        other => format!("{other:?}"),
    }
}

/// SHA-1 of a DER SubjectPublicKeyInfo: how IKE CERTREQ names a CA (RFC 7296 §3.7).
pub fn certreq_key_hash(spki_der: &[u8]) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spki_der);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

fn check_identity(
    leaf: &EndEntityCert<'_>,
    cert: &Certificate,
    expected: &IkeIdentity,
) -> std::result::Result<(), ChainError> {
    let ok = match expected {
        IkeIdentity::Any => true,
        IkeIdentity::Dn(der) => {
            Name::from_der(der).is_ok_and(|n| names_match(&n, &cert.tbs_certificate.subject))
        }
        IkeIdentity::Fqdn(name) => ServerName::try_from(name.as_str())
            .ok()
            .filter(|n| matches!(n, ServerName::DnsName(_)))
            .is_some_and(|n| leaf.verify_is_valid_for_subject_name(&n).is_ok()),
        IkeIdentity::Ip(ip) => leaf
            .verify_is_valid_for_subject_name(&ServerName::from(*ip))
            .is_ok(),
        IkeIdentity::Rfc822(addr) => subject_alt_names(cert).iter().any(
            |n| matches!(n, GeneralName::Rfc822Name(e) if e.as_str().eq_ignore_ascii_case(addr)),
        ),
    };
    if ok {
        return Ok(());
    }
    let sans: Vec<String> = subject_alt_names(cert)
        .iter()
        .map(describe_general_name)
        .collect();
    Err(ChainError::IdentityMismatch {
        expected: expected.to_string(),
        subject: display_name(&cert.tbs_certificate.subject),
        sans: if sans.is_empty() {
            "none".into()
        } else {
            sans.join(", ")
        },
    })
}

/// RFC 4945 §5.1.3.12: IKE must not reject a certificate for lacking an EKU, and peers in
/// the wild mark IKE certificates with any of these purposes.
struct IkeKeyPurposes;

const IKE_PURPOSES: &[&[u8]] = &[
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11], // id-kp-ipsecIKE
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01], // id-kp-serverAuth
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02], // id-kp-clientAuth
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x05], // id-kp-ipsecEndSystem
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x06], // id-kp-ipsecTunnel
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x07], // id-kp-ipsecUser
    &[0x55, 0x1d, 0x25, 0x00],                         // anyExtendedKeyUsage
];

impl ExtendedKeyUsageValidator for IkeKeyPurposes {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> std::result::Result<(), webpki::Error> {
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if IKE_PURPOSES.iter().any(|p| KeyPurposeId::new(p) == id) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(IKE_PURPOSES[0]),
                present,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::test_ca;
    use crate::ca::{eku, extension, LeafOptions, SanEntry, TestCa, TestCaConfig, Validity};
    use crate::csr::{build_csr, validate_csr, CsrSubject};
    use crate::key::tests::test_key;
    use crate::signature::HashAlgorithm;
    use std::sync::OnceLock;
    use x509_cert::ext::pkix::KeyUsages;

    const HOUR: Duration = Duration::from_secs(3600);

    fn verifier_for(ca: &TestCa) -> PeerVerifier {
        let mut roots = RootStore::new();
        roots.add_der(ca.root_der()).unwrap();
        PeerVerifier::new(roots)
    }

    /// A second CA with other names (a different region, or a stranger).
    fn other_ca() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| {
            let mut config = TestCaConfig::new(SystemTime::now());
            config.root_subject = "C=US,O=other,CN=other root".into();
            config.intermediate_subject = "C=US,O=other,CN=other intermediate".into();
            TestCa::generate_with(&config).unwrap()
        })
    }

    /// A CA with the same names as `test_ca()` but other keys (an impostor).
    fn twin_ca() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| TestCa::generate(SystemTime::now()).unwrap())
    }

    fn leaf(ca: &TestCa, validity: Validity, options: &LeafOptions) -> Vec<u8> {
        let csr = build_csr(test_key(), &CsrSubject::default()).unwrap();
        ca.issue_from_csr(
            &validate_csr(csr.der()).unwrap(),
            "0717_instance",
            validity,
            options,
        )
        .unwrap()
    }

    fn current(now: SystemTime) -> Validity {
        Validity::starting_at(now - HOUR / 2, HOUR)
    }

    #[test]
    fn valid_chain_verifies_and_exposes_the_leaf() {
        let now = SystemTime::now();
        let ca = test_ca();
        let leaf = leaf(ca, current(now), &LeafOptions::default());
        let chain = [leaf.clone(), ca.intermediate_der().to_vec()];
        let peer = verifier_for(ca)
            .verify_chain(&chain, now, &IkeIdentity::Any)
            .unwrap();
        assert!(peer
            .subject()
            .ends_with("OU=IBM Software Group, CN=0717_instance"));
        assert_eq!(peer.public_key_info_der(), test_key().public_key_info_der());
        assert_eq!(peer.chain_der(), &chain);
        // The peer's own subject DN is the IKE identity strongSwan sends.
        let id = IkeIdentity::Dn(peer.subject_der().to_vec());
        verifier_for(ca).verify_chain(&chain, now, &id).unwrap();
        let text = IkeIdentity::dn(
            "C=US,ST=IL,L=Chicago,O=IBM Corporation,OU=IBM Software Group,CN=0717_instance",
        )
        .unwrap();
        verifier_for(ca).verify_chain(&chain, now, &text).unwrap();
    }

    #[test]
    fn expired_leaf_names_subject_and_not_after() {
        let now = SystemTime::now();
        let ca = test_ca();
        let nb = now - 2 * HOUR;
        let leaf = leaf(ca, Validity::starting_at(nb, HOUR), &LeafOptions::default());
        let err = verifier_for(ca)
            .verify_chain(
                &[leaf, ca.intermediate_der().to_vec()],
                now,
                &IkeIdentity::Any,
            )
            .unwrap_err();
        match &err {
            ChainError::Expired {
                subject, not_after, ..
            } => {
                assert!(subject.ends_with("CN=0717_instance"), "{subject}");
                assert_eq!(not_after, &format_time(nb + HOUR));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("expired at"), "{err}");
    }

    #[test]
    fn clock_skew_is_tolerated_up_to_the_allowance() {
        let now = SystemTime::now();
        let ca = test_ca();
        // Expired 60 s ago.
        let leaf = leaf(
            ca,
            Validity::starting_at(now - HOUR - Duration::from_secs(60), HOUR),
            &LeafOptions::default(),
        );
        let chain = [leaf, ca.intermediate_der().to_vec()];
        verifier_for(ca)
            .verify_chain(&chain, now, &IkeIdentity::Any)
            .unwrap();
        let strict = verifier_for(ca).with_clock_skew(Duration::from_secs(30));
        assert!(matches!(
            strict.verify_chain(&chain, now, &IkeIdentity::Any),
            Err(ChainError::Expired { .. })
        ));
        // Valid 60 s from now: fine with 300 s skew, not with none.
        let early = crate::chain::tests::leaf(
            ca,
            Validity::starting_at(now + Duration::from_secs(60), HOUR),
            &LeafOptions::default(),
        );
        let chain = [early, ca.intermediate_der().to_vec()];
        verifier_for(ca)
            .verify_chain(&chain, now, &IkeIdentity::Any)
            .unwrap();
        assert!(matches!(
            verifier_for(ca)
                .with_clock_skew(Duration::ZERO)
                .verify_chain(&chain, now, &IkeIdentity::Any),
            Err(ChainError::NotYetValid { .. })
        ));
    }

    #[test]
    fn not_yet_valid_leaf() {
        let now = SystemTime::now();
        let ca = test_ca();
        let leaf = leaf(
            ca,
            Validity::starting_at(now + HOUR, HOUR),
            &LeafOptions::default(),
        );
        let err = verifier_for(ca)
            .verify_chain(
                &[leaf, ca.intermediate_der().to_vec()],
                now,
                &IkeIdentity::Any,
            )
            .unwrap_err();
        match err {
            ChainError::NotYetValid {
                subject,
                not_before,
                ..
            } => {
                assert!(subject.ends_with("CN=0717_instance"));
                assert_eq!(not_before, format_time(now + HOUR));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_intermediate_is_named() {
        let now = SystemTime::now();
        let mut config = TestCaConfig::new(now);
        config.intermediate_subject = "C=US,CN=old intermediate".into();
        config.intermediate_validity = Validity::starting_at(now - 48 * HOUR, 24 * HOUR);
        let ca = TestCa::generate_with(&config).unwrap();
        let leaf = leaf(&ca, current(now), &LeafOptions::default());
        match verifier_for(&ca).verify_chain(
            &[leaf, ca.intermediate_der().to_vec()],
            now,
            &IkeIdentity::Any,
        ) {
            Err(ChainError::Expired { subject, .. }) => {
                assert_eq!(subject, "C=US, CN=old intermediate")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_ca_names_the_missing_issuer() {
        let now = SystemTime::now();
        let leaf = leaf(test_ca(), current(now), &LeafOptions::default());
        let chain = [leaf, test_ca().intermediate_der().to_vec()];
        match verifier_for(other_ca()).verify_chain(&chain, now, &IkeIdentity::Any) {
            Err(ChainError::UnknownIssuer { subject, issuer }) => {
                assert_eq!(
                    subject,
                    "C=US, O=ibm-ipsec test, CN=ibm-ipsec test intermediate CA"
                );
                assert_eq!(issuer, "C=US, O=ibm-ipsec test, CN=ibm-ipsec test root CA");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_or_wrong_intermediate() {
        let now = SystemTime::now();
        let leaf = leaf(test_ca(), current(now), &LeafOptions::default());
        let mut roots = RootStore::new();
        roots.add_der(test_ca().root_der()).unwrap();
        roots.add_der(other_ca().root_der()).unwrap();
        let verifier = PeerVerifier::new(roots);
        for chain in [
            vec![leaf.clone()],
            vec![leaf.clone(), other_ca().intermediate_der().to_vec()],
        ] {
            match verifier.verify_chain(&chain, now, &IkeIdentity::Any) {
                Err(ChainError::UnknownIssuer { subject, issuer }) => {
                    assert!(subject.ends_with("CN=0717_instance"));
                    assert_eq!(
                        issuer,
                        "C=US, O=ibm-ipsec test, CN=ibm-ipsec test intermediate CA"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // An intermediate with the right name but another key: a signature failure.
        let chain = [leaf, twin_ca().intermediate_der().to_vec()];
        match verifier.verify_chain(&chain, now, &IkeIdentity::Any) {
            Err(ChainError::BadSignature { subject, issuer }) => {
                assert!(subject.ends_with("CN=0717_instance"));
                assert!(issuer.ends_with("intermediate CA"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn impostor_root_with_the_same_name() {
        let now = SystemTime::now();
        let leaf = leaf(test_ca(), current(now), &LeafOptions::default());
        let chain = [leaf, test_ca().intermediate_der().to_vec()];
        match verifier_for(twin_ca()).verify_chain(&chain, now, &IkeIdentity::Any) {
            Err(ChainError::BadSignature { subject, .. }) => {
                assert!(subject.ends_with("intermediate CA"), "{subject}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tampered_leaf_signature() {
        let now = SystemTime::now();
        let ca = test_ca();
        let mut leaf = leaf(ca, current(now), &LeafOptions::default());
        let last = leaf.len() - 1;
        leaf[last] ^= 0x01;
        match verifier_for(ca).verify_chain(
            &[leaf, ca.intermediate_der().to_vec()],
            now,
            &IkeIdentity::Any,
        ) {
            Err(ChainError::BadSignature { subject, issuer }) => {
                assert!(subject.ends_with("CN=0717_instance"));
                assert!(issuer.ends_with("intermediate CA"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identity_matching_dn_fqdn_ip_email() {
        let now = SystemTime::now();
        let ca = test_ca();
        let options = LeafOptions {
            sans: vec![
                SanEntry::Dns("nfs.example.test".into()),
                SanEntry::Ip("10.240.0.5".parse().unwrap()),
                SanEntry::Email("ops@example.test".into()),
            ],
            ..Default::default()
        };
        let chain = [
            leaf(ca, current(now), &options),
            ca.intermediate_der().to_vec(),
        ];
        let v = verifier_for(ca);
        for good in [
            IkeIdentity::Fqdn("nfs.example.test".into()),
            IkeIdentity::Fqdn("NFS.Example.Test".into()),
            IkeIdentity::Ip("10.240.0.5".parse().unwrap()),
            IkeIdentity::Rfc822("OPS@example.test".into()),
        ] {
            v.verify_chain(&chain, now, &good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            IkeIdentity::Fqdn("other.example.test".into()),
            IkeIdentity::Fqdn("not a name".into()),
            IkeIdentity::Ip("10.240.0.6".parse().unwrap()),
            IkeIdentity::Rfc822("root@example.test".into()),
            IkeIdentity::dn("C=US,O=IBM Corporation,CN=0717_instance").unwrap(),
        ] {
            match v.verify_chain(&chain, now, &bad) {
                Err(e @ ChainError::IdentityMismatch { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("DNS:nfs.example.test, IP:10.240.0.5"), "{msg}");
                    assert!(msg.contains(&bad.to_string()), "{msg}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn extended_key_usage_must_allow_ike_when_present() {
        let now = SystemTime::now();
        let ca = test_ca();
        let v = verifier_for(ca);
        for ok in [eku::IPSEC_IKE, eku::SERVER_AUTH, eku::CLIENT_AUTH] {
            let options = LeafOptions {
                extended_key_usage: vec![eku::CODE_SIGNING, ok],
                ..Default::default()
            };
            let chain = [
                leaf(ca, current(now), &options),
                ca.intermediate_der().to_vec(),
            ];
            v.verify_chain(&chain, now, &IkeIdentity::Any).unwrap();
        }
        let options = LeafOptions {
            extended_key_usage: vec![eku::CODE_SIGNING],
            ..Default::default()
        };
        let chain = [
            leaf(ca, current(now), &options),
            ca.intermediate_der().to_vec(),
        ];
        match v.verify_chain(&chain, now, &IkeIdentity::Any) {
            Err(ChainError::ExtendedKeyUsage { subject, present }) => {
                assert!(subject.ends_with("CN=0717_instance"));
                assert_eq!(present, "1.3.6.1.5.5.7.3.3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_usage_must_allow_signatures() {
        let now = SystemTime::now();
        let ca = test_ca();
        let usage = extension(&KeyUsage(KeyUsages::KeyEncipherment.into()), true).unwrap();
        let leaf = ca
            .issue_leaf_with_usage(
                crate::name::parse_dn("CN=encrypt only").unwrap(),
                test_key().public_key_info_der(),
                current(now),
                &LeafOptions::default(),
                usage,
            )
            .unwrap();
        match verifier_for(ca).verify_chain(
            &[leaf, ca.intermediate_der().to_vec()],
            now,
            &IkeIdentity::Any,
        ) {
            Err(ChainError::KeyUsage { subject }) => assert_eq!(subject, "CN=encrypt only"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ca_certificate_is_not_a_peer() {
        let now = SystemTime::now();
        let ca = test_ca();
        let err = verifier_for(ca)
            .verify_chain(&[ca.intermediate_der().to_vec()], now, &IkeIdentity::Any)
            .unwrap_err();
        assert!(matches!(err, ChainError::Rejected { .. }), "{err:?}");
        assert!(err.to_string().contains("is a CA certificate"), "{err}");
    }

    #[test]
    fn empty_too_many_and_malformed() {
        let v = verifier_for(test_ca());
        let now = SystemTime::now();
        let none: [Vec<u8>; 0] = [];
        assert_eq!(
            v.verify_chain(&none, now, &IkeIdentity::Any),
            Err(ChainError::Empty)
        );
        let many = vec![test_ca().intermediate_der().to_vec(); MAX_PEER_CERTIFICATES + 1];
        assert!(matches!(
            v.verify_chain(&many, now, &IkeIdentity::Any),
            Err(ChainError::TooMany { .. })
        ));
        let leaf = leaf(test_ca(), current(now), &LeafOptions::default());
        for len in [0, 1, 10, leaf.len() / 2, leaf.len() - 1] {
            assert!(matches!(
                v.verify_chain(&[leaf[..len].to_vec()], now, &IkeIdentity::Any),
                Err(ChainError::Malformed { index: 0, .. })
            ));
        }
        assert!(matches!(
            v.verify_chain(&[leaf, vec![0x30, 0x00]], now, &IkeIdentity::Any),
            Err(ChainError::Malformed { index: 1, .. })
        ));
    }

    #[test]
    fn every_damaged_leaf_is_refused_without_panic() {
        let now = SystemTime::now();
        let ca = test_ca();
        let v = verifier_for(ca);
        let good = leaf(ca, current(now), &LeafOptions::default());
        let int = ca.intermediate_der().to_vec();
        v.verify_chain(&[good.clone(), int.clone()], now, &IkeIdentity::Any)
            .unwrap();
        for i in (0..good.len()).step_by(5) {
            let mut bad = good.clone();
            bad[i] ^= 1 << (i % 8);
            assert!(
                v.verify_chain(&[bad, int.clone()], now, &IkeIdentity::Any)
                    .is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn auth_signature_round_trip_through_rfc7427_identifiers() {
        let now = SystemTime::now();
        let ca = test_ca();
        let v = verifier_for(ca);
        let chain = [
            leaf(ca, current(now), &LeafOptions::default()),
            ca.intermediate_der().to_vec(),
        ];
        let peer = v.verify_chain(&chain, now, &IkeIdentity::Any).unwrap();
        let identity = crate::HostIdentity::new(
            crate::key::HostKey::from_pkcs8_der(&test_key().to_pkcs8_der()).unwrap(),
            chain.to_vec(),
        )
        .unwrap();
        let octets = b"RealMessage1 | Nr | prf(SK_pi, IDi')";
        for scheme in SignatureScheme::RSA_SIGNING {
            let sig = identity.sign(scheme, octets).unwrap();
            v.verify_signature(&peer, &scheme.algorithm_identifier(), octets, &sig)
                .unwrap();
            assert!(matches!(
                v.verify_signature(&peer, &scheme.algorithm_identifier(), b"other", &sig),
                Err(Error::BadSignature)
            ));
        }
        for scheme in SignatureScheme::RSA_SIGNING {
            let data = identity.sign_auth_data(scheme, octets).unwrap();
            assert_eq!(v.verify_auth_data(&peer, &data, octets).unwrap(), scheme);
            assert!(v.verify_auth_data(&peer, &data, b"other").is_err());
        }
        assert!(v.verify_auth_data(&peer, &[200, 1, 2], octets).is_err());
        let sig = identity
            .sign(SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), octets)
            .unwrap();
        let wrong = SignatureScheme::RsaPss(HashAlgorithm::Sha256).algorithm_identifier();
        assert!(v.verify_signature(&peer, &wrong, octets, &sig).is_err());
        assert!(matches!(
            v.verify_signature(&peer, &[0x30, 0x00], octets, &sig),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        assert_eq!(
            identity.ike_identity(),
            IkeIdentity::Dn(peer.subject_der().to_vec())
        );
    }

    #[test]
    fn host_identity_refuses_a_certificate_for_another_key() {
        let other = crate::key::HostKey::from_pkcs8_der(&test_key().to_pkcs8_der()).unwrap();
        let err = crate::HostIdentity::new(other, vec![test_ca().intermediate_der().to_vec()])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey(m) if m.contains("different key")));
    }

    #[test]
    fn root_store_from_a_directory_of_region_files() {
        let dir = tempfile::tempdir().unwrap();
        // One file holds a root and an intermediate, as some IBM region files do.
        std::fs::write(
            dir.path().join("type_ibmshare_root_us-south.crt"),
            test_ca().root_pem() + &test_ca().intermediate_pem(),
        )
        .unwrap();
        std::fs::write(dir.path().join("eu-de.pem"), other_ca().root_pem()).unwrap();
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        let store = RootStore::from_dir(dir.path()).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.subjects()[0], "C=US, O=other, CN=other root");
        // An intermediate held as a trust anchor lets a leaf-only chain verify.
        let now = SystemTime::now();
        let leaf = leaf(test_ca(), current(now), &LeafOptions::default());
        PeerVerifier::new(store)
            .verify_chain(&[leaf], now, &IkeIdentity::Any)
            .unwrap();

        std::fs::write(
            dir.path().join("broken.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = RootStore::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.pem"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            RootStore::from_dir(empty.path()),
            Err(Error::RootStore(_))
        ));
        assert!(matches!(
            RootStore::from_dir(&empty.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn certreq_names_each_root_by_its_key_hash() {
        let mut roots = RootStore::new();
        roots.add_der(test_ca().root_der()).unwrap();
        roots.add_der(other_ca().root_der()).unwrap();
        let field = roots.certreq_authorities();
        assert_eq!(field.len(), 40);
        let ours = certreq_key_hash(&roots.roots[0].spki);
        assert_eq!(&field[..20], &ours);
        assert!(roots.is_requested(&field[20..]));
        assert!(!roots.is_requested(&[0u8; 20]));
        assert!(
            !roots.is_requested(&field[..19]),
            "partial hashes are ignored"
        );
    }

    #[test]
    fn ike_identity_payload_round_trip() {
        for id in [
            IkeIdentity::Ip("10.0.0.1".parse().unwrap()),
            IkeIdentity::Ip("fd00::1".parse().unwrap()),
            IkeIdentity::Fqdn("nfs.example.test".into()),
            IkeIdentity::Rfc822("a@b.test".into()),
            IkeIdentity::dn("C=US,CN=x").unwrap(),
        ] {
            let (t, data) = id.to_id_payload().unwrap();
            assert_eq!(IkeIdentity::from_id_payload(t, &data).unwrap(), id);
        }
        assert_eq!(IkeIdentity::Any.to_id_payload(), None);
        assert!(IkeIdentity::from_id_payload(1, &[1, 2, 3]).is_err());
        assert!(IkeIdentity::from_id_payload(9, &[0x30, 0x05]).is_err());
        assert!(IkeIdentity::from_id_payload(11, b"keyid").is_err());
        assert!(IkeIdentity::from_id_payload(2, &[0xff]).is_err());
        assert_eq!(
            IkeIdentity::dn("C=US,CN=x").unwrap().to_string(),
            "DN \"C=US, CN=x\""
        );
    }
}

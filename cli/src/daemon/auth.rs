//! The credentials an IKE SA authenticates with: a pre-shared key from a file, or the host
//! certificate (RFC 7427 signatures with `pki::HostIdentity`) with the peer's chain checked
//! against root CAs (`pki::PeerVerifier`) and matched to the identity it claims.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ike::auth::{AuthError, SignContext, VerifyRequest};
use ike::wire::{AuthMethod, CertificateRequest, IdType, Identification};
use ike::{LocalAuthenticator, PeerAuthenticator, PeerCertificate, PeerIdentity, Psk};
use pki::{HostIdentity, IkeIdentity, PeerVerifier, RootStore, SignatureScheme};
use zeroize::Zeroizing;

/// Longest PSK file accepted (a key, not a document).
const MAX_PSK_LEN: u64 = 4096;

/// The host certificate in use; replaced on each renewal, so IKE SAs created afterwards (and
/// reauthentications) sign with the new one. Empty until the first certificate is issued.
pub(crate) type IdentitySlot = Arc<RwLock<Option<Arc<HostIdentity>>>>;

/// What an IKE SA's `Config` needs: who we are and how we check the peer.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) local: Arc<dyn LocalAuthenticator>,
    pub(crate) peer: Arc<dyn PeerAuthenticator>,
    /// Signs with the daemon's renewable host certificate: IKE SAs made with these
    /// credentials are reauthenticated after each renewal so the peer sees the new one.
    pub(crate) renewable: bool,
    /// Whether they can sign now (false while the metadata service has not issued the first
    /// certificate).
    pub(crate) ready: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("local_id", &self.local.id())
            .finish_non_exhaustive()
    }
}

/// Reads a pre-shared key: the file must belong to root (or us) and be unreadable by group
/// and others, like strongSwan's `ipsec.secrets`. One trailing newline is not part of the key.
pub(crate) fn read_psk(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("PSK file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("PSK file {} is not a regular file", path.display()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "PSK file {} is accessible to group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    let own = nix::unistd::geteuid().as_raw();
    if meta.uid() != own && meta.uid() != 0 {
        return Err(format!(
            "PSK file {} belongs to uid {}, not to root; run `chown root {}`",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    if meta.len() > MAX_PSK_LEN {
        return Err(format!(
            "PSK file {} is {} bytes; a key is at most {MAX_PSK_LEN}",
            path.display(),
            meta.len()
        ));
    }
    let mut key = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("PSK file {}: {e}", path.display()))?,
    );
    if key.last() == Some(&b'\n') {
        key.pop();
        if key.last() == Some(&b'\r') {
            key.pop();
        }
    }
    if key.is_empty() {
        return Err(format!("PSK file {} is empty", path.display()));
    }
    Ok(key)
}

/// An identity as strongSwan writes it: an IP address, `@fqdn` or a bare host name (FQDN),
/// `user@domain` (RFC 822), or a DN such as `C=US, O=IBM, CN=host`.
pub(crate) fn parse_identity(text: &str) -> Result<Identification, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty identity".into());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Identification::ip(ip));
    }
    if let Some(fqdn) = text.strip_prefix('@') {
        return Ok(Identification::fqdn(fqdn));
    }
    if text.contains('=') {
        let id = IkeIdentity::dn(text).map_err(|e| format!("identity {text:?}: {e}"))?;
        return identification_of(&id).ok_or_else(|| format!("identity {text:?} is empty"));
    }
    if text.contains('@') {
        return Ok(Identification::rfc822(text));
    }
    Ok(Identification::fqdn(text))
}

/// An identity for people: `IP 10.0.0.1`, `FQDN host`, `DN "C=US, O=IBM, CN=host"`.
pub(crate) fn describe_identity(id: &Identification) -> String {
    ike_identity_of(id).map_or_else(|_| id.to_string(), |i| i.to_string())
}

fn identification_of(id: &IkeIdentity) -> Option<Identification> {
    id.to_id_payload()
        .map(|(t, data)| Identification::new(IdType::from(t), data))
}

fn ike_identity_of(id: &Identification) -> Result<IkeIdentity, String> {
    IkeIdentity::from_id_payload(u8::from(id.id_type), &id.data).map_err(|e| e.to_string())
}

/// Shared-key credentials; our identity defaults to our IKE address.
pub(crate) fn psk_credentials(
    psk_file: &Path,
    local_id: Option<&str>,
    remote_id: Option<&str>,
    local_addr: IpAddr,
) -> Result<Credentials, String> {
    let key = read_psk(psk_file)?;
    let local = match local_id {
        Some(text) => parse_identity(text)?,
        None => Identification::ip(local_addr),
    };
    let remote = remote_id.map(parse_identity).transpose()?;
    let psk = Arc::new(Psk::new(local, remote, key.to_vec()));
    Ok(Credentials {
        local: psk.clone(),
        peer: psk,
        renewable: false,
        ready: true,
    })
}

/// Certificate credentials: our chain and key, and the roots the peer's chain must lead to.
/// Our identity defaults to the certificate's subject DN; the peer's to any identity its
/// certificate vouches for.
pub(crate) fn certificate_credentials(
    identity: IdentitySlot,
    ca_files: &[PathBuf],
    local_id: Option<&str>,
    remote_id: Option<&str>,
) -> Result<Credentials, String> {
    if ca_files.is_empty() {
        return Err(
            "certificate authentication needs the root CA the peer's certificate is issued \
             under: add --ca FILE"
                .into(),
        );
    }
    let mut roots = RootStore::new();
    for file in ca_files {
        let bytes = std::fs::read(file).map_err(|e| format!("CA file {}: {e}", file.display()))?;
        let n = roots
            .add_file_contents(&bytes)
            .map_err(|e| format!("CA file {}: {e}", file.display()))?;
        if n == 0 {
            return Err(format!("CA file {} holds no certificate", file.display()));
        }
    }
    let local_id = local_id.map(parse_identity).transpose()?;
    let ready = identity.read().is_ok_and(|slot| slot.is_some());
    let expected = match remote_id {
        Some(text) => ike_identity_of(&parse_identity(text)?)?,
        None => IkeIdentity::Any,
    };
    Ok(Credentials {
        local: Arc::new(CertificateSigner {
            identity,
            id: local_id,
        }),
        peer: Arc::new(CertificateVerifier {
            verifier: PeerVerifier::new(roots),
            expected,
        }),
        renewable: false,
        ready,
    })
}

/// Signs AUTH with the host key (RFC 7427 digital signature, method 14).
struct CertificateSigner {
    identity: IdentitySlot,
    /// `--local-id`; otherwise the certificate's subject DN.
    id: Option<Identification>,
}

impl CertificateSigner {
    fn current(&self) -> Option<Arc<HostIdentity>> {
        self.identity.read().map_or(None, |slot| slot.clone())
    }
}

impl LocalAuthenticator for CertificateSigner {
    fn id(&self) -> Identification {
        if let Some(id) = &self.id {
            return id.clone();
        }
        // Without a certificate yet, signing fails below with the reason; the ID is moot.
        self.current()
            .and_then(|i| identification_of(&i.ike_identity()))
            .unwrap_or_else(|| Identification::new(IdType::DerAsn1Dn, Vec::new()))
    }

    fn certificates(&self) -> Vec<Vec<u8>> {
        self.current()
            .map_or_else(Vec::new, |i| i.chain_der().to_vec())
    }

    fn sign(
        &self,
        ctx: &SignContext<'_>,
        signed_octets: &[u8],
    ) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        let ids: Vec<u16> = ctx
            .peer_hash_algorithms
            .iter()
            .map(|h| u16::from(*h))
            .collect();
        let scheme = SignatureScheme::choose_rsa(&ids, false).ok_or_else(|| {
            AuthError(
                "the peer announced no SHA-2 hash in SIGNATURE_HASH_ALGORITHMS, so no RFC 7427 \
                 signature it can verify exists"
                    .into(),
            )
        })?;
        let identity = self.current().ok_or_else(|| {
            AuthError(
                "no host certificate yet (the metadata service has not issued one; see \
                 `ibm-ipsec status`)"
                    .into(),
            )
        })?;
        let data = identity
            .sign_auth_data(scheme, signed_octets)
            .map_err(|e| AuthError(format!("signing AUTH: {e}")))?;
        Ok((AuthMethod::DigitalSignature, data))
    }
}

/// Checks the peer's chain, its claimed identity and its AUTH signature.
struct CertificateVerifier {
    verifier: PeerVerifier,
    expected: IkeIdentity,
}

impl PeerAuthenticator for CertificateVerifier {
    fn certificate_request(&self) -> Option<CertificateRequest> {
        let mut request = CertificateRequest::x509(&[]);
        request.authorities = self.verifier.roots().certreq_authorities();
        Some(request)
    }

    fn verify(&self, r: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError> {
        if r.method != AuthMethod::DigitalSignature {
            return Err(AuthError(format!(
                "peer used AUTH method {}, we expect a certificate signature (RFC 7427)",
                r.method
            )));
        }
        let claimed = ike_identity_of(r.id).map_err(AuthError)?;
        if self.expected != IkeIdentity::Any && claimed != self.expected {
            return Err(AuthError(format!(
                "peer identity {claimed} is not the configured {}",
                self.expected
            )));
        }
        let peer = self
            .verifier
            .verify_chain(r.certificates, SystemTime::now(), &claimed)
            .map_err(|e| AuthError(format!("peer certificate: {e}")))?;
        self.verifier
            .verify_auth_data(&peer, r.auth_data, r.signed_octets)
            .map_err(|e| AuthError(format!("peer AUTH signature: {e}")))?;
        Ok(PeerIdentity::new(r.id.clone(), peer.subject())
            .with_certificate(certificate_facts(&peer)))
    }
}

/// What `status` shows of the peer's leaf: read from the DER the chain check accepted; the
/// subject and notAfter the check itself found stand in should that parse ever fail.
fn certificate_facts(peer: &pki::VerifiedPeer) -> PeerCertificate {
    match peer
        .chain_der()
        .first()
        .map(|der| pki::CertificateInfo::from_der(der))
    {
        Some(Ok(info)) => PeerCertificate {
            subject: info.subject,
            issuer: info.issuer,
            serial: info.serial,
            not_before: info.not_before,
            not_after: info.not_after,
        },
        _ => PeerCertificate {
            subject: peer.subject(),
            issuer: String::new(),
            serial: String::new(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: peer.not_after(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn psk_file_must_be_private_and_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psk");
        std::fs::write(&path, b"s3cret-key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_psk(&path).unwrap_err();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_psk(&path).unwrap()[..], b"s3cret-key");
        std::fs::write(&path, b"\n").unwrap();
        assert!(read_psk(&path).unwrap_err().contains("empty"));
        let err = read_psk(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn identities_parse_like_strongswan() {
        assert_eq!(
            parse_identity("10.0.0.1").unwrap(),
            Identification::ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_identity("@share.example").unwrap(),
            Identification::fqdn("share.example")
        );
        assert_eq!(
            parse_identity("nfs@example.com").unwrap(),
            Identification::rfc822("nfs@example.com")
        );
        let dn = parse_identity("C=US, O=IBM, CN=host").unwrap();
        assert_eq!(dn.id_type, IdType::DerAsn1Dn);
        assert!(parse_identity(" ").is_err());
        assert_eq!(describe_identity(&dn), "DN \"C=US, O=IBM, CN=host\"");
        assert_eq!(
            describe_identity(&Identification::ip("10.0.0.1".parse().unwrap())),
            "IP 10.0.0.1"
        );
    }

    #[test]
    fn psk_credentials_default_to_the_ike_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psk");
        std::fs::write(&path, b"k").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = psk_credentials(&path, None, None, "10.1.1.1".parse().unwrap()).unwrap();
        assert_eq!(
            c.local.id(),
            Identification::ip("10.1.1.1".parse().unwrap())
        );
        assert!(!format!("{c:?}").contains("\"k\""));
    }
}

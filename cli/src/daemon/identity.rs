//! The host identity the daemon authenticates with, from `--cert`/`--key` files.

use std::path::Path;

use crate::control::IdentityInfo;
use crate::daemon::unix_secs;
use crate::error::Error;

/// Loads and checks a key and its certificate chain (leaf first), so a mismatched pair or an
/// unreadable file stops the daemon at start-up instead of failing the first IKE_AUTH.
pub fn load_identity(cert: &Path, key: &Path) -> Result<IdentityInfo, Error> {
    let identity = pki::HostIdentity::load(key, &[cert])
        .map_err(|e| Error::Identity(format!("{} + {}: {e}", cert.display(), key.display())))?;
    let info = pki::CertificateInfo::from_der(identity.certificate_der())
        .map_err(|e| Error::Identity(format!("{}: {e}", cert.display())))?;
    Ok(IdentityInfo {
        subject: info.subject,
        issuer: info.issuer,
        not_after_unix: unix_secs(info.not_after),
        source: format!("{} (key {})", cert.display(), key.display()),
        renewal: None,
        renewal_unix: None,
    })
}

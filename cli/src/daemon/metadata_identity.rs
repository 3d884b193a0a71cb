//! The host identity from the metadata service: the host key (generated once, reused on every
//! renewal, as the IBM mount helper does), a CSR, token + certificate, then renewal on the
//! `metadata::renewal` schedule. A failed renewal keeps the current certificate until it
//! truly expires; the attempts continue with the schedule's backoff.

use std::path::PathBuf;
use std::time::Duration;

use metadata::renewal::{Health, Now, RenewalSchedule, Validity};
use metadata::share_conf::ShareConf;
use metadata::Client;
use tokio::sync::mpsc;

use crate::control::IdentityInfo;
use crate::daemon::unix_secs;

/// The host key's file name in the state directory (the same as `cert fetch` uses).
const KEY_FILE: &str = crate::commands::cert_fetch::KEY_FILE;

/// What the renewal task tells the daemon's loop.
#[derive(Debug)]
pub(crate) enum IdentityUpdate {
    /// A certificate was issued; it replaces the previous one.
    Issued {
        /// What `status` shows.
        info: IdentityInfo,
        /// Leaf then intermediates, PEM (IKE sends them in CERT payloads).
        certificate_pem: String,
    },
    /// An attempt failed; the current certificate (if any) stays in use.
    Failed(String),
}

/// Settings of the metadata identity.
#[derive(Debug, Clone)]
pub struct MetadataIdentity {
    /// The share.conf settings (URL, API, CA, key size, state dir, lifetime, renewal point).
    pub conf: ShareConf,
    /// Where the settings came from, for `status`.
    pub config_source: String,
}

impl MetadataIdentity {
    pub(crate) fn key_path(&self) -> PathBuf {
        self.conf.state_dir.join(KEY_FILE)
    }
}

/// Checks the client settings before the daemon starts serving (a bad URL or CA file is a
/// start-up error, not a retry loop).
pub(crate) fn client(identity: &MetadataIdentity) -> Result<Client, crate::Error> {
    Client::new(identity.conf.client_config())
        .map_err(|e| crate::Error::Identity(format!("metadata client: {e}")))
}

/// Runs until the daemon stops: first certificate, then renewals.
pub(crate) async fn run(
    identity: MetadataIdentity,
    client: Client,
    updates: mpsc::Sender<IdentityUpdate>,
) {
    let key_path = identity.key_path();
    let bits = identity.conf.key_bits as usize;
    let key = tokio::task::spawn_blocking(move || -> Result<pki::HostKey, String> {
        if let Some(dir) = key_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let size = pki::KeySize::try_from(bits).map_err(|e| e.to_string())?;
        pki::HostKey::load_or_generate(&key_path, size)
            .map(|(key, _)| key)
            .map_err(|e| format!("host key {}: {e}", key_path.display()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let csr = key.and_then(|key| {
        pki::build_csr(&key, &pki::CsrSubject::default())
            .map(|csr| csr.to_pem())
            .map_err(|e| format!("building the CSR: {e}"))
    });
    let csr_pem = match csr {
        Ok(pem) => pem,
        Err(e) => {
            let _ = updates.send(IdentityUpdate::Failed(e)).await;
            return;
        }
    };
    let source = format!(
        "metadata service {} (config {})",
        identity.conf.metadata_url, identity.config_source
    );
    let lifetime = identity.conf.certificate_lifetime_secs();
    let policy = identity.conf.renewal_policy();
    let retry = identity.conf.client_config().retry;
    let mut schedule: Option<RenewalSchedule> = None;
    let mut first_failures = 0u32;
    loop {
        let outcome = match client.fetch_certificate(&csr_pem, lifetime).await {
            Ok(issued) => Validity::of_certificate_pem(&issued.leaf_pem)
                .map_err(|e| e.to_string())
                .and_then(|validity| {
                    describe(&issued.leaf_pem, &source).map(|info| {
                        let mut pem = issued.leaf_pem.clone();
                        for i in &issued.intermediates_pem {
                            pem.push('\n');
                            pem.push_str(i);
                        }
                        (validity, info, pem)
                    })
                }),
            Err(e) => Err(e.to_string()),
        };
        let now = Now::read();
        let retry_in = match outcome {
            Ok((validity, mut info, certificate_pem)) => {
                let s = schedule.get_or_insert_with(|| RenewalSchedule::new(policy, validity, now));
                s.on_renewed(now, validity);
                info.renewal = Some(format!(
                    "renews at {} ({} % of its life)",
                    pki::format_time(s.renew_at()),
                    policy.renew_at_percent()
                ));
                info.renewal_unix = Some(super::unix_secs(s.renew_at()));
                tracing::info!(subject = %info.subject, "identity certificate issued");
                let _ = updates
                    .send(IdentityUpdate::Issued {
                        info,
                        certificate_pem,
                    })
                    .await;
                None
            }
            Err(e) => {
                let delay = match schedule.as_mut() {
                    Some(s) => s.on_failed(now),
                    None => {
                        first_failures = first_failures.saturating_add(1);
                        retry.backoff(first_failures).max(Duration::from_secs(1))
                    }
                };
                let health = schedule.as_ref().map(|s| s.health(now));
                let keeps = match health {
                    Some(Health::Expired { .. }) => "the current certificate has expired",
                    Some(_) => "keeping the current certificate until it expires",
                    None => "no certificate yet",
                };
                let message = format!("{e}; {keeps}; next attempt in {}s", delay.as_secs());
                tracing::warn!("identity certificate: {message}");
                let _ = updates.send(IdentityUpdate::Failed(message)).await;
                Some(delay)
            }
        };
        match (retry_in, schedule.as_mut()) {
            (Some(delay), None) => tokio::time::sleep(delay).await,
            (_, Some(s)) => loop {
                let now = Now::read();
                if s.poll_renew(now) {
                    break;
                }
                tokio::time::sleep_until(s.next_wakeup(now).into()).await;
            },
            (None, None) => return,
        }
    }
}

fn describe(leaf_pem: &str, source: &str) -> Result<IdentityInfo, String> {
    let der = pki::pem::certificates(leaf_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no certificate in the answer")?;
    let info = pki::CertificateInfo::from_der(&der).map_err(|e| e.to_string())?;
    Ok(IdentityInfo {
        subject: info.subject,
        issuer: info.issuer,
        not_after_unix: unix_secs(info.not_after),
        source: source.to_owned(),
        renewal: None,
        renewal_unix: None,
    })
}

//! A throw-away PKI made with the openssl CLI, shaped like IBM's: root CA → intermediate CA →
//! RSA-4096 leaves, the client's like a metadata-service identity certificate (subject
//! C/ST/L/O/OU without CN, identity in the SAN only, 1 h validity).
//!
//! RSA-4096 key generation takes seconds per key on a busy 2-core machine, so keys (never
//! certificates) are cached in `$TMPDIR/ibm-ipsec-lab-keys-<uid>/` and reused across runs;
//! certificates are issued fresh for every [`TestPki`], so validity windows are always current.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{LabError, Result};
use crate::process::run;

/// A certificate with its private key.
#[derive(Debug, Clone)]
pub struct Identity {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM (PKCS#8) private key.
    pub key: PathBuf,
    /// Subject DN in strongSwan's notation (`C=US, O=…, CN=…`), the default IKE identity.
    pub subject: String,
    /// The DNS subjectAltName, if any.
    pub san: Option<String>,
}

/// Root, intermediate and two leaves: `share` (the responder, CN + SAN, 1 day) and `client`
/// (metadata-style, SAN only, 1 h).
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    /// Self-signed root CA (RSA-4096).
    pub root: Identity,
    /// Intermediate CA (RSA-4096, pathlen 0), signed by the root.
    pub intermediate: Identity,
    /// The mount target's certificate: `CN=share.ibm-ipsec.test`, SAN `DNS:share.ibm-ipsec.test`.
    pub share: Identity,
    /// The instance's certificate: no CN, SAN `DNS:client.ibm-ipsec.test`, valid 1 h.
    pub client: Identity,
    ca_lock: Mutex<()>,
}

const EXTENSIONS: &str = "\
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::LAB_SAN}
[req]
distinguished_name = dn
[dn]
";

const CA_CONF: &str = "\
[ca]
default_ca = lab
[lab]
database = index.txt
new_certs_dir = .
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
rand_serial = yes
[any]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
";

impl TestPki {
    /// Issues the whole PKI into `dir` (created if missing).
    pub fn generate(dir: &Path) -> Result<TestPki> {
        TestPki::generate_with(dir, "")
    }

    /// Another PKI of the same shape under a different root ("ibm-ipsec Foreign Root CA",
    /// its own cached keys): its leaves carry the same names as [`TestPki::generate`]'s but
    /// must not chain to that root (the wrong-CA scenario).
    pub fn generate_foreign(dir: &Path) -> Result<TestPki> {
        TestPki::generate_with(dir, "foreign-")
    }

    fn generate_with(dir: &Path, key_prefix: &str) -> Result<TestPki> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
        for (file, text) in [
            ("ext.cnf", EXTENSIONS),
            ("ca.cnf", CA_CONF),
            ("index.txt", ""),
        ] {
            write(&dir.join(file), text)?;
        }
        let names = ["root", "int", "share", "client"];
        let cache_names: Vec<String> = names.iter().map(|n| format!("{key_prefix}{n}")).collect();
        let keys = cached_keys(&cache_names.iter().map(String::as_str).collect::<Vec<_>>())?;
        for (name, cached) in names.iter().zip(&keys) {
            let key = dir.join(format!("{name}.key"));
            std::fs::copy(cached, &key).map_err(|e| LabError::io(&key, e))?;
        }
        let now = SystemTime::now();
        let root_subject = if key_prefix.is_empty() {
            "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Test Root CA"
        } else {
            "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Foreign Root CA"
        };
        run(Command::new("openssl")
            .current_dir(dir)
            .env("LAB_SAN", "DNS:unused")
            .args([
                "req",
                "-new",
                "-x509",
                "-key",
                "root.key",
                "-subj",
                root_subject,
                "-days",
                "2",
            ])
            .args([
                "-sha256",
                "-config",
                "ext.cnf",
                "-extensions",
                "ca",
                "-out",
                "root.crt",
            ]))?;
        let root = Identity {
            cert: dir.join("root.crt"),
            key: dir.join("root.key"),
            subject: dn(root_subject),
            san: None,
        };
        let mut pki = TestPki {
            dir: dir.to_owned(),
            intermediate: root.clone(),
            share: root.clone(),
            client: root.clone(),
            root,
            ca_lock: Mutex::new(()),
        };
        let day = Duration::from_secs(86_400);
        let start = now - Duration::from_secs(60);
        let int_subject = if key_prefix.is_empty() {
            "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Test Intermediate CA"
        } else {
            "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Foreign Intermediate CA"
        };
        pki.intermediate =
            pki.sign("int", int_subject, None, (start, start + day), Signer::Root)?;
        pki.share = pki.sign(
            "share",
            "/C=US/O=ibm-ipsec test/CN=share.ibm-ipsec.test",
            Some("share.ibm-ipsec.test"),
            (start, start + day),
            Signer::Intermediate,
        )?;
        pki.client = pki.sign(
            "client",
            "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group",
            Some("client.ibm-ipsec.test"),
            (start, start + Duration::from_secs(3600)),
            Signer::Intermediate,
        )?;
        Ok(pki)
    }

    /// Issues another leaf from the intermediate, valid from `not_before` to `not_after`
    /// (either may lie in the past: expired certificates for negative tests). `subject` is in
    /// openssl's `/C=…/O=…` form; the key is a cached RSA-4096 key named `name`.
    pub fn issue(
        &self,
        name: &str,
        subject: &str,
        san_dns: Option<&str>,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Identity> {
        let cached = cached_keys(&[name])?;
        let key = self.dir.join(format!("{name}.key"));
        std::fs::copy(&cached[0], &key).map_err(|e| LabError::io(&key, e))?;
        self.sign(
            name,
            subject,
            san_dns,
            (not_before, not_after),
            Signer::Intermediate,
        )
    }

    fn sign(
        &self,
        name: &str,
        subject: &str,
        san_dns: Option<&str>,
        (not_before, not_after): (SystemTime, SystemTime),
        signer: Signer,
    ) -> Result<Identity> {
        let _serialised = self.ca_lock.lock().unwrap_or_else(|p| p.into_inner());
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let key = format!("{name}.key");
        run(Command::new("openssl")
            .current_dir(&self.dir)
            .env("LAB_SAN", "DNS:unused")
            .args([
                "req", "-new", "-key", &key, "-subj", subject, "-config", "ext.cnf", "-out", &csr,
            ]))?;
        let (ca, ext) = match signer {
            Signer::Root => ("root", "int"),
            Signer::Intermediate => ("int", "leaf"),
        };
        let san = san_dns.map_or_else(|| "DNS:unused".to_owned(), |d| format!("DNS:{d}"));
        // `openssl x509 -req` (OpenSSL 3.0) knows only whole days; `openssl ca` takes exact
        // start and end dates.
        run(Command::new("openssl")
            .current_dir(&self.dir)
            .env("LAB_SAN", &san)
            .args(["ca", "-batch", "-notext", "-config", "ca.cnf", "-in", &csr])
            .args([
                "-cert",
                &format!("{ca}.crt"),
                "-keyfile",
                &format!("{ca}.key"),
            ])
            .args(["-extfile", "ext.cnf", "-extensions", ext])
            .args([
                "-startdate",
                &asn1_time(not_before),
                "-enddate",
                &asn1_time(not_after),
            ])
            .args(["-out", &crt]))?;
        Ok(Identity {
            cert: self.dir.join(crt),
            key: self.dir.join(key),
            subject: dn(subject),
            san: san_dns.map(str::to_owned),
        })
    }

    /// The directory holding every file of this PKI.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `identity`'s certificate followed by the intermediate's (PEM, leaf first: what
    /// a peer sends in IKE_AUTH) and returns the file.
    pub fn chain_file(&self, identity: &Identity) -> Result<PathBuf> {
        let mut pem = read(&identity.cert)?;
        pem.push_str(&read(&self.intermediate.cert)?);
        let stem = identity
            .cert
            .file_stem()
            .map_or_else(|| "leaf".into(), |s| s.to_string_lossy().into_owned());
        let path = self.dir.join(format!("{stem}-chain.pem"));
        write(&path, &pem)?;
        Ok(path)
    }

    /// Our daemon's arguments to authenticate with `identity` and trust this PKI's root:
    /// `--cert <chain> --key <key> --ca <root>` (for `daemon` or `up`).
    pub fn daemon_args(&self, identity: &Identity) -> Result<Vec<String>> {
        let text = |p: &Path| p.to_string_lossy().into_owned();
        Ok(vec![
            "--cert".into(),
            text(&self.chain_file(identity)?),
            "--key".into(),
            text(&identity.key),
            "--ca".into(),
            text(&self.root.cert),
        ])
    }

    /// Writes root and intermediate certificates into one PEM file (a trust bundle).
    pub fn ca_bundle(&self) -> Result<PathBuf> {
        let mut pem = read(&self.root.cert)?;
        pem.push_str(&read(&self.intermediate.cert)?);
        let path = self.dir.join("ca-bundle.pem");
        write(&path, &pem)?;
        Ok(path)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| LabError::io(path, e))
}

#[derive(Clone, Copy)]
enum Signer {
    Root,
    Intermediate,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(path, e))
}

/// `/C=US/O=x/CN=y` → `C=US, O=x, CN=y` (strongSwan's and `openssl x509 -subject`'s notation).
fn dn(slashed: &str) -> String {
    slashed
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .join(", ")
}

/// `YYYYMMDDHHMMSSZ` in UTC, as `openssl ca -startdate/-enddate` take it.
fn asn1_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm), days since 1970-01-01 → y/m/d
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = String::new();
    let _ = write!(
        s,
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    s
}

static KEY_CACHE_LOCK: Mutex<()> = Mutex::new(());

/// Paths of cached RSA-4096 keys with these names, generating the missing ones in parallel.
fn cached_keys(names: &[&str]) -> Result<Vec<PathBuf>> {
    let _one_generator = KEY_CACHE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = std::env::temp_dir().join(format!("ibm-ipsec-lab-keys-{}", nix::unistd::geteuid()));
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| LabError::io(&dir, e))?;
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(format!("{n}.pem"))).collect();
    let missing: Vec<&PathBuf> = paths.iter().filter(|p| !p.exists()).collect();
    std::thread::scope(|s| {
        let jobs: Vec<_> = missing
            .iter()
            .map(|path| {
                s.spawn(move || -> Result<()> {
                    // write aside and rename: another test process may be doing the same
                    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                    run(Command::new("openssl")
                        .args([
                            "genpkey",
                            "-algorithm",
                            "RSA",
                            "-pkeyopt",
                            "rsa_keygen_bits:4096",
                            "-out",
                        ])
                        .arg(&tmp))?;
                    std::fs::rename(&tmp, path).map_err(|e| LabError::io(*path, e))
                })
            })
            .collect();
        jobs.into_iter().try_for_each(|j| {
            j.join()
                .unwrap_or_else(|_| Err(LabError::Usage("key generation thread panicked".into())))
        })
    })?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_time_is_utc_calendar_time() {
        assert_eq!(asn1_time(UNIX_EPOCH), "19700101000000Z");
        assert_eq!(
            asn1_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229000000Z"
        );
        assert_eq!(
            asn1_time(UNIX_EPOCH + Duration::from_secs(1_795_430_096)),
            "20261123103456Z"
        );
    }

    #[test]
    fn dn_uses_strongswan_notation() {
        assert_eq!(
            dn("/C=US/O=IBM Corporation/OU=x"),
            "C=US, O=IBM Corporation, OU=x"
        );
    }

    #[test]
    fn client_certificate_looks_like_a_metadata_certificate() {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!(
                "SKIPPED client_certificate_looks_like_a_metadata_certificate: no openssl CLI"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        let text = run(Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-dates",
                "-in",
            ])
            .arg(&pki.client.cert))
        .unwrap();
        assert!(text.contains("OU = IBM Software Group"), "{text}");
        assert!(
            !text.contains("CN ="),
            "client certificate must have no CN: {text}"
        );
        assert!(text.contains("DNS:client.ibm-ipsec.test"), "{text}");
        let verify = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&pki.root.cert)
            .arg("-untrusted")
            .arg(&pki.intermediate.cert)
            .arg(&pki.client.cert)
            .arg(&pki.share.cert))
        .unwrap();
        assert_eq!(verify.matches(": OK").count(), 2, "{verify}");
        let bits = run(Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(&pki.client.key))
        .unwrap();
        assert!(bits.contains("4096 bit"), "RSA-4096 expected");
    }
}

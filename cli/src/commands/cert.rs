//! `ibm-ipsec cert …`: the host key, CSRs under the metadata service's rules, and a look at
//! certificate files; `cert fetch` (in `cert_fetch.rs`) gets a certificate from the metadata
//! service.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use pki::{CertificateInfo, CsrSubject, HostKey, IkeIdentity, KeySize, PeerVerifier, RootStore};

/// The `cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Generate an RSA host key, written as PKCS#8 PEM with mode 0600.
    #[command(after_help = "Examples:
  ibm-ipsec cert key --out /var/lib/ibm-ipsec/host.key
  ibm-ipsec cert key --bits 2048 --out /tmp/test.key --force")]
    Key(KeyArgs),
    /// Print a PEM CSR for a key (subject: C, ST, L, O, OU only — the service adds CN).
    #[command(after_help = "Examples:
  ibm-ipsec cert csr --key /var/lib/ibm-ipsec/host.key > host.csr
  ibm-ipsec cert csr --key host.key --subject 'C=US,ST=IL,L=Chicago,O=IBM Corporation,OU=IBM Software Group'")]
    Csr(CsrArgs),
    /// Show the certificates in a PEM (or DER) file: names, validity, SANs, key, fingerprint.
    #[command(after_help = "Examples:
  ibm-ipsec cert show /var/lib/ibm-ipsec/host.pem
  ibm-ipsec cert show chain.pem --ca-dir /etc/ibm-ipsec/ca    # also verify the chain")]
    Show(ShowArgs),
    /// Get a certificate from the metadata service: host key (generated once), CSR, token,
    /// certificate; writes host.key (0600), host.pem and intermediate.pem.
    #[command(after_help = "Examples:
  sudo ibm-ipsec cert fetch                                   # share.conf, 169.254.169.254
  ibm-ipsec cert fetch --metadata-url http://127.0.0.1:8080 --out-dir /tmp/id --expires-in 300")]
    Fetch(super::cert_fetch::FetchArgs),
}

/// `cert key` arguments.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 4096)]
    pub bits: usize,
    /// Where to write the key.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing key file (certificates issued for the old key stop matching).
    #[arg(long)]
    pub force: bool,
}

/// `cert csr` arguments.
#[derive(Debug, Args)]
pub struct CsrArgs {
    /// The private key (PKCS#8 or PKCS#1 PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Subject, e.g. "C=US,ST=IL,L=Chicago,O=IBM Corporation,OU=IBM Software Group"
    /// (the IBM mount helper's subject is the default).
    #[arg(long, default_value = CsrSubject::IBM_DEFAULT)]
    pub subject: String,
}

/// `cert show` arguments.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A PEM file with one or more certificates, or one DER certificate.
    pub file: PathBuf,
    /// Also verify the file as a chain (leaf first) against the root CAs in this directory
    /// (PEM files, one per region); exits non-zero when the chain is rejected.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
}

/// Runs a `cert` subcommand against the real clock, stdout and stderr.
pub fn run(command: CertCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        command,
        SystemTime::now(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// Runs a `cert` subcommand with an injected clock and output streams (for tests).
pub fn run_with(
    command: CertCommand,
    now: SystemTime,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        CertCommand::Key(args) => key(&args, err),
        CertCommand::Csr(args) => csr(&args, out),
        CertCommand::Show(args) => show(&args, now, out),
        // Prints to the real stdout/stderr: it talks to the network, not a fixture.
        CertCommand::Fetch(args) => super::cert_fetch::fetch(args),
    }
}

fn key(args: &KeyArgs, err: &mut dyn Write) -> anyhow::Result<()> {
    let size = KeySize::try_from(args.bits)?;
    if !args.force && args.out.exists() {
        bail!(
            "{} exists; pass --force to replace it (certificates issued for the old key will no longer match)",
            args.out.display()
        );
    }
    write!(err, "generating RSA-{} key…", size.bits())?;
    err.flush()?;
    let started = Instant::now();
    // Keygen is CPU-bound for seconds: run it on a thread and show that we are alive.
    let worker = std::thread::spawn(move || HostKey::generate(size));
    let mut ticks = 0u32;
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        ticks += 1;
        if ticks % 4 == 0 {
            write!(err, ".")?;
            err.flush()?;
        }
    }
    let key = worker
        .join()
        .map_err(|_| anyhow::anyhow!("key generation thread panicked"))??;
    writeln!(err, " done in {:.1} s", started.elapsed().as_secs_f64())?;
    key.save(&args.out)?;
    writeln!(err, "wrote {} (PKCS#8 PEM, mode 0600)", args.out.display())?;
    Ok(())
}

fn csr(args: &CsrArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let subject = CsrSubject::parse(&args.subject).context("--subject")?;
    let key = HostKey::load(&args.key)?;
    let csr = pki::build_csr(&key, &subject)?;
    out.write_all(csr.to_pem().as_bytes())?;
    Ok(())
}

fn show(args: &ShowArgs, now: SystemTime, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = args.file.as_path();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let certs = pki::pem::certificates(&bytes).with_context(|| file.display().to_string())?;
    if certs.is_empty() {
        bail!("{}: no CERTIFICATE found", file.display());
    }
    let total = certs.len();
    for (i, der) in certs.iter().enumerate() {
        let info = CertificateInfo::from_der(der)
            .with_context(|| format!("{}: certificate {} of {total}", file.display(), i + 1))?;
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "certificate {} of {total}", i + 1)?;
        write_info(&info, now, out)?;
    }
    if let Some(dir) = &args.ca_dir {
        verify(&certs, dir, now, out)?;
    }
    Ok(())
}

fn verify(
    certs: &[Vec<u8>],
    dir: &Path,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let roots = RootStore::from_dir(dir)?;
    let count = roots.len();
    writeln!(out)?;
    match PeerVerifier::new(roots).verify_chain(certs, now, &IkeIdentity::Any) {
        Ok(peer) => {
            writeln!(
                out,
                "chain: OK — \"{}\" verified against {count} root CA certificate(s) in {}",
                peer.subject(),
                dir.display()
            )?;
            Ok(())
        }
        Err(e) => {
            writeln!(out, "chain: REJECTED — {e}")?;
            bail!(
                "the chain in the file does not verify against {}",
                dir.display()
            )
        }
    }
}

fn write_info(info: &CertificateInfo, now: SystemTime, out: &mut dyn Write) -> std::io::Result<()> {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    writeln!(out, "  subject:     {}", info.subject)?;
    writeln!(out, "  issuer:      {}", info.issuer)?;
    writeln!(out, "  serial:      {}", info.serial)?;
    writeln!(
        out,
        "  valid:       {} → {} ({})",
        pki::format_time(info.not_before),
        pki::format_time(info.not_after),
        validity_status(info.not_before, info.not_after, now)
    )?;
    writeln!(out, "  SANs:        {}", list(&info.subject_alt_names))?;
    writeln!(out, "  key:         {}", info.public_key)?;
    writeln!(out, "  signed with: {}", info.signature_algorithm)?;
    writeln!(
        out,
        "  CA:          {}",
        if info.is_ca { "yes" } else { "no" }
    )?;
    let usage: Vec<String> = info.key_usage.iter().map(|s| s.to_string()).collect();
    writeln!(out, "  key usage:   {}", list(&usage))?;
    writeln!(out, "  ext. usage:  {}", list(&info.extended_key_usage))?;
    writeln!(out, "  SHA-256:     {}", info.sha256_fingerprint)
}

/// "expires in 42m 10s", "expired 3h 5m ago", "not yet valid: starts in 10m".
fn validity_status(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> String {
    if let Ok(ahead) = not_before.duration_since(now) {
        if !ahead.is_zero() {
            return format!("not yet valid: starts in {}", human(ahead));
        }
    }
    match not_after.duration_since(now) {
        Ok(left) => format!("expires in {}", human(left)),
        Err(e) => format!("EXPIRED {} ago", human(e.duration())),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pki::ca::{LeafOptions, SanEntry, TestCa, Validity};
    use std::os::unix::fs::PermissionsExt as _;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn key_then_csr_then_show() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("host.key");
        let mut err = Vec::new();
        let cmd = CertCommand::Key(KeyArgs {
            bits: 2048,
            out: key_path.clone(),
            force: false,
        });
        run_with(cmd, SystemTime::now(), &mut Vec::new(), &mut err).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("generating RSA-2048 key…"), "{err}");
        assert!(err.contains("wrote") && err.contains("0600"), "{err}");
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");

        // A second run refuses to clobber the key.
        let again = CertCommand::Key(KeyArgs {
            bits: 2048,
            out: key_path.clone(),
            force: false,
        });
        let e = run_with(again, SystemTime::now(), &mut Vec::new(), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--force"), "{e}");

        // CSR: PEM on stdout that the metadata service's rules accept.
        let mut out = Vec::new();
        let cmd = CertCommand::Csr(CsrArgs {
            key: key_path.clone(),
            subject: "C=DE,O=Example GmbH".into(),
        });
        run_with(cmd, SystemTime::now(), &mut out, &mut Vec::new()).unwrap();
        assert!(out.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\n"));
        let csr = pki::validate_csr(&out).unwrap();
        assert_eq!(
            pki::name::display_name(csr.subject()),
            "C=DE, O=Example GmbH"
        );

        // Issue from it and show the chain. Certificates hold whole seconds.
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let ca = TestCa::generate(now).unwrap();
        let leaf = ca
            .issue_from_csr(
                &csr,
                "0717_abc",
                Validity::starting_at(now - HOUR / 4, HOUR),
                &LeafOptions {
                    sans: vec![SanEntry::Ip("10.240.0.5".parse().unwrap())],
                    ..Default::default()
                },
            )
            .unwrap();
        let chain = dir.path().join("chain.pem");
        std::fs::write(
            &chain,
            pki::pem::encode("CERTIFICATE", &leaf) + &ca.intermediate_pem(),
        )
        .unwrap();
        let mut out = Vec::new();
        run_with(
            CertCommand::Show(ShowArgs {
                file: chain.clone(),
                ca_dir: None,
            }),
            now,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("certificate 1 of 2"), "{text}");
        assert!(text.contains("certificate 2 of 2"), "{text}");
        assert!(
            text.contains("subject:     C=DE, O=Example GmbH, CN=0717_abc"),
            "{text}"
        );
        assert!(text.contains("(expires in 45m 0s)"), "{text}");
        assert!(text.contains("SANs:        IP:10.240.0.5"), "{text}");
        assert!(text.contains("key:         RSA 2048 bits"), "{text}");
        assert!(text.contains("CA:          yes"), "{text}");
        assert!(text.contains("SHA-256:     "), "{text}");
        assert!(!text.contains("chain:"), "{text}");

        // With the root directory, the chain is verified too.
        let roots = dir.path().join("roots");
        std::fs::create_dir(&roots).unwrap();
        std::fs::write(roots.join("test.pem"), ca.root_pem()).unwrap();
        let mut out = Vec::new();
        let show = |ca_dir: &Path, out: &mut Vec<u8>| {
            run_with(
                CertCommand::Show(ShowArgs {
                    file: chain.clone(),
                    ca_dir: Some(ca_dir.to_path_buf()),
                }),
                now,
                out,
                &mut Vec::new(),
            )
        };
        show(&roots, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "chain: OK — \"C=DE, O=Example GmbH, CN=0717_abc\" verified against 1 root"
            ),
            "{text}"
        );
        // Against another CA's root it is rejected, naming the unknown issuer.
        let other = TestCa::generate(now).unwrap();
        std::fs::write(roots.join("test.pem"), other.intermediate_pem()).unwrap();
        let mut out = Vec::new();
        assert!(show(&roots, &mut out).is_err());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("chain: REJECTED"), "{text}");
    }

    #[test]
    fn csr_refuses_common_name_with_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.pem");
        // Any key will do: the subject is checked first.
        std::fs::write(&key_path, "unused").unwrap();
        let cmd = CertCommand::Csr(CsrArgs {
            key: key_path,
            subject: "C=US,CN=myhost".into(),
        });
        let e = format!(
            "{:#}",
            run_with(cmd, SystemTime::now(), &mut Vec::new(), &mut Vec::new()).unwrap_err()
        );
        assert!(e.contains("sets CN to the instance id"), "{e}");
    }

    #[test]
    fn key_refuses_odd_sizes_and_show_needs_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = CertCommand::Key(KeyArgs {
            bits: 1024,
            out: dir.path().join("k"),
            force: false,
        });
        let e = run_with(cmd, SystemTime::now(), &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("2048, 3072 or 4096"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(
            &empty,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = run_with(
            CertCommand::Show(ShowArgs {
                file: empty,
                ca_dir: None,
            }),
            SystemTime::now(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn validity_wording() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            validity_status(t0, t0 + HOUR, t0 + HOUR / 4),
            "expires in 45m 0s"
        );
        assert_eq!(
            validity_status(t0, t0 + HOUR, t0 + 4 * HOUR + Duration::from_secs(120)),
            "EXPIRED 3h 2m ago"
        );
        assert_eq!(
            validity_status(t0 + HOUR, t0 + 2 * HOUR, t0),
            "not yet valid: starts in 1h 0m"
        );
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 7200)), "3d 2h");
        assert_eq!(human(Duration::from_secs(59)), "59s");
    }
}

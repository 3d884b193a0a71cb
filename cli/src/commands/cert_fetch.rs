//! `ibm-ipsec cert fetch`: host key (loaded, or generated once), CSR under the metadata
//! service's rules, token, certificate; writes the files and prints subject and expiry.
//! Exits with the IBM mount helper's codes: 1 metadata service unreachable, 2 token failed,
//! 3 certificate failed, 6 anything else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use metadata::api::{Api, CERTIFICATE_LIFETIME_RANGE};
use metadata::share_conf::{self, LoadedConf};
use metadata::Client;
use pki::atomic_file::{write_atomic, PUBLIC_MODE};
use pki::{build_csr, CsrSubject, HostKey, KeySize};

/// Host key file name in the output directory.
pub const KEY_FILE: &str = "host.key";
/// Leaf certificate file name in the output directory.
pub const CERT_FILE: &str = "host.pem";
/// Intermediate certificate(s) file name in the output directory.
pub const INTERMEDIATE_FILE: &str = "intermediate.pem";

/// Exit code for failures outside the metadata calls (the IBM helper's "generic").
const GENERIC_FAILURE: u8 = 6;

/// Arguments of `ibm-ipsec cert fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Metadata service base URL [default: metadata_url from share.conf, else
    /// http://169.254.169.254].
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// Use the legacy /instance_identity/v1 paths (services older than version 2025-08-26).
    #[arg(long)]
    pub legacy_api: bool,
    /// CA certificate (PEM) that signs an https metadata service's certificate.
    #[arg(long)]
    pub metadata_ca_file: Option<PathBuf>,
    /// Host key, PKCS#8 PEM; generated (mode 0600) when missing [default: OUT_DIR/host.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Directory for the key, host.pem and intermediate.pem [default: state_dir from
    /// share.conf, else /var/lib/ibm-ipsec].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Certificate lifetime in seconds, 300–3600 [default: certificate_duration_seconds].
    #[arg(long)]
    pub expires_in: Option<u32>,
    /// CSR subject: only C, ST, L, O and OU (the service adds CN itself).
    #[arg(long, default_value = CsrSubject::IBM_DEFAULT)]
    pub subject: String,
    /// share.conf to read [default: /etc/ibmcloud/share.conf, then /etc/ibmshare/share.conf].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `cert fetch` and turns a failure into the IBM mount helper's exit code: a metadata
/// error keeps its class ([`metadata::Error::exit_code`]), anything else is 6.
pub fn run(args: FetchArgs) -> ExitCode {
    match fetch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for a `cert fetch` failure.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<metadata::Error>()
        .map_or(GENERIC_FAILURE, metadata::Error::exit_code)
}

/// Fetches and writes the certificate; a metadata failure stays a [`metadata::Error`] inside
/// the returned error (see [`exit_code`]).
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let loaded = match &args.config {
        Some(path) => LoadedConf {
            conf: share_conf::load_file(path)?,
            source: Some(path.clone()),
            shadowed: Vec::new(),
        },
        None => share_conf::load_default()?,
    };
    match &loaded.source {
        Some(path) => eprintln!("config: {}", path.display()),
        None => eprintln!(
            "config: none found ({}, {}); using defaults",
            share_conf::DOCS_PATH,
            share_conf::HELPER_PATH
        ),
    }
    for path in &loaded.shadowed {
        eprintln!(
            "config: ignoring {} (the file above takes precedence)",
            path.display()
        );
    }
    let mut conf = loaded.conf;
    if let Some(url) = args.metadata_url {
        conf.metadata_url = url;
    }
    if args.legacy_api {
        conf.metadata_api = Api::Legacy;
    }
    if let Some(ca) = args.metadata_ca_file {
        conf.metadata_ca_file = Some(ca);
    }
    let expires_in = args
        .expires_in
        .unwrap_or_else(|| conf.certificate_lifetime_secs());
    if !CERTIFICATE_LIFETIME_RANGE.contains(&expires_in) {
        anyhow::bail!("--expires-in {expires_in} is outside 300–3600 seconds");
    }
    let out_dir = args.out_dir.unwrap_or_else(|| conf.state_dir.clone());
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let key_path = args.key.unwrap_or_else(|| out_dir.join(KEY_FILE));
    let subject = CsrSubject::parse(&args.subject).context("--subject")?;
    // Check the client settings (URL, https CA) before spending seconds on a key.
    let client = Client::new(conf.client_config())?;
    if let Some(trust) = client.trust() {
        eprintln!("metadata service TLS verified against {trust}");
    }

    let key = load_or_generate_key(&key_path, conf.key_bits)?;
    let csr = build_csr(&key, &subject).context("building the CSR")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let issued = runtime.block_on(client.fetch_certificate(&csr.to_pem(), expires_in))?;

    let cert_path = out_dir.join(CERT_FILE);
    let intermediate_path = out_dir.join(INTERMEDIATE_FILE);
    write_atomic(&cert_path, issued.leaf_pem.as_bytes(), PUBLIC_MODE)
        .context("writing the certificate")?;
    write_atomic(
        &intermediate_path,
        issued.intermediates_pem.concat().as_bytes(),
        PUBLIC_MODE,
    )
    .context("writing the intermediate certificate")?;

    let leaf = describe(&issued.leaf_pem).context("reading the issued certificate")?;
    println!("subject:      {}", leaf.subject);
    println!("issuer:       {}", leaf.issuer);
    let left = leaf
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    println!(
        "expires:      {} (in {})",
        metadata::rfc3339(leaf.not_after),
        human(left)
    );
    println!("key:          {}", key_path.display());
    println!("certificate:  {}", cert_path.display());
    println!("intermediate: {}", intermediate_path.display());
    Ok(())
}

fn load_or_generate_key(path: &Path, bits: u32) -> anyhow::Result<HostKey> {
    if path.exists() {
        return HostKey::load(path)
            .with_context(|| format!("loading the host key {}", path.display()));
    }
    let size = KeySize::try_from(bits as usize)?;
    eprintln!(
        "generating an RSA-{} host key in {} (this takes a few seconds)…",
        size.bits(),
        path.display()
    );
    let (key, _) = HostKey::load_or_generate(path, size)
        .with_context(|| format!("creating the host key {}", path.display()))?;
    Ok(key)
}

fn describe(pem: &str) -> anyhow::Result<pki::CertificateInfo> {
    let der = pki::pem::certificates(pem.as_bytes())?
        .into_iter()
        .next()
        .context("no certificate in the answer")?;
    Ok(pki::CertificateInfo::from_der(&der)?)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

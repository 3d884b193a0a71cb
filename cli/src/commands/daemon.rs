//! `ibm-ipsec daemon`: run the per-host daemon in the foreground (systemd runs it as
//! `ibm-ipsec.service`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use crate::control::{DatapathRequest, CONTROL_ENV, DEFAULT_CONTROL_PATH};
use crate::daemon::{self, DaemonOptions, MetadataIdentity};
use metadata::share_conf;

/// Arguments of `ibm-ipsec daemon`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ibm-ipsec daemon
  ibm-ipsec daemon --control /run/ibm-ipsec/ns1.sock --datapath userspace
  ibm-ipsec daemon --cert host.pem --key host.key
  ibm-ipsec daemon --config /etc/ibmcloud/share.conf
  ibm-ipsec daemon --metadata-url http://169.254.169.254
  ibm-ipsec daemon --listen 10.240.0.5 --psk-file /etc/ibm-ipsec/psk
  ibm-ipsec daemon --listen 10.240.0.5 --cert host.pem --key host.key --ca root.pem

With --listen the daemon answers IKE on UDP 500 (and 4500) of that address, authenticating
with --psk-file or the host certificate (peers' certificates must chain to --ca).

With --config or --metadata-url the host certificate comes from the metadata service (key in
share.conf's state_dir, generated once) and is renewed at 70-75 % of its life; a failed
renewal keeps the current certificate until it expires. `status` shows both.

Stops cleanly on SIGTERM or SIGINT (the control socket is removed). A socket left by a daemon
that was killed is detected and replaced; a daemon still answering is never displaced.")]
pub struct DaemonArgs {
    /// Control socket path.
    #[arg(long, env = CONTROL_ENV, default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
    /// ESP datapath: the kernel's XFRM when the probe succeeds (auto), or forced.
    #[arg(long, value_enum, default_value = "auto")]
    pub datapath: DatapathRequest,
    /// Host certificate chain (PEM, leaf first) instead of the metadata service.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PKCS#8 PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Get the certificate from the metadata service with these settings (share.conf).
    #[arg(long, conflicts_with = "cert")]
    pub config: Option<PathBuf>,
    /// Get the certificate from the metadata service at this URL (overrides share.conf's
    /// metadata_url; reads /etc/ibmcloud/share.conf or /etc/ibmshare/share.conf unless --config).
    #[arg(long, conflicts_with = "cert")]
    pub metadata_url: Option<String>,
    /// Answer IKE on this address (repeatable): the responder side, e.g. the file server.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<IpAddr>,
    /// Pre-shared key file (mode 0600) for peers, instead of certificates.
    #[arg(long)]
    pub psk_file: Option<PathBuf>,
    /// Root CA the peers' certificates must chain to (repeatable).
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Our IKE identity: an IP, @fqdn, user@domain or a DN (default: the certificate
    /// subject, or our address with a PSK).
    #[arg(long)]
    pub local_id: Option<String>,
    /// The identity peers must prove (default: any their credentials allow).
    #[arg(long)]
    pub remote_id: Option<String>,
    /// Rekey IKE SAs and CHILD_SAs this often, in seconds (default 3600, as IBM).
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    pub rekey_seconds: Option<u64>,
    /// Behind a NAT, send a NAT-T keepalive to each peer after this many seconds without
    /// other traffic to it (default 20, strongSwan's; 0 turns them off).
    #[arg(long, value_name = "SECONDS")]
    pub nat_keepalive: Option<u64>,
    /// Mode of the CHILD_SAs the responder accepts: transport (default) or tunnel.
    #[arg(long, value_parser = ["transport", "tunnel"], default_value = "transport")]
    pub mode: String,
}

/// Runs the daemon until it is told to stop.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let mut options = DaemonOptions::new(args.control);
    options.datapath = args.datapath;
    options.identity_files = args.cert.zip(args.key);
    options.listen = args.listen;
    options.psk_file = args.psk_file;
    options.ca_files = args.ca;
    options.local_id = args.local_id;
    options.remote_id = args.remote_id;
    options.rekey_seconds = args.rekey_seconds;
    options.nat_keepalive_seconds = args.nat_keepalive;
    options.tunnel_mode = args.mode == "tunnel";
    if args.config.is_some() || args.metadata_url.is_some() {
        let (mut conf, source) = match &args.config {
            Some(path) => (share_conf::load_file(path)?, path.display().to_string()),
            None => {
                let loaded = share_conf::load_default()?;
                let source = loaded.source.map_or_else(
                    || "defaults: no share.conf found".to_owned(),
                    |p| p.display().to_string(),
                );
                (loaded.conf, source)
            }
        };
        if let Some(url) = args.metadata_url {
            conf.metadata_url = url;
        }
        options.metadata = Some(MetadataIdentity {
            conf,
            config_source: source,
        });
    }
    daemon::run(options)?;
    Ok(())
}

//! `ibm-ipsec daemon`: run the per-host daemon in the foreground (systemd runs it as
//! `ibm-ipsec.service`).

use std::path::PathBuf;

use clap::Args;

use crate::control::{DatapathRequest, CONTROL_ENV, DEFAULT_CONTROL_PATH};
use crate::daemon::{self, DaemonOptions};

/// Arguments of `ibm-ipsec daemon`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ibm-ipsec daemon
  ibm-ipsec daemon --control /run/ibm-ipsec/ns1.sock --datapath userspace
  ibm-ipsec daemon --cert host.pem --key host.key

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
}

/// Runs the daemon until it is told to stop.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let mut options = DaemonOptions::new(args.control);
    options.datapath = args.datapath;
    options.identity_files = args.cert.zip(args.key);
    daemon::run(options)?;
    Ok(())
}

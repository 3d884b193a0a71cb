//! `ibm-ipsec up`: protect traffic with a peer (starting the daemon if none runs), wait
//! until the CHILD_SA is installed, print one summary line.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::control::{DatapathRequest, UpSummary, CONTROL_ENV, DEFAULT_CONTROL_PATH};
use crate::secure::{secure, DaemonLaunch, SecureConfig};

/// Arguments of `ibm-ipsec up`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ibm-ipsec up 10.240.0.5 --psk-file /etc/ibm-ipsec/psk
  ibm-ipsec up 10.240.0.5 --cert host.pem --key host.key --ca root.pem --selector tcp/2049
  ibm-ipsec up 10.240.0.5 --config /etc/ibmcloud/share.conf --ca /etc/ibmcloud/ca.pem

Starts `ibm-ipsec daemon` (log next to the control socket, daemon.log) when none answers on
the control socket; --config, --metadata-url and --datapath apply to that daemon. Exits 0 once
ESP protects the traffic, with one line saying how; otherwise exits 1 with the reason. A peer
that is already up prints its existing SAs.")]
pub struct UpArgs {
    /// The peer's IP address (the file server).
    pub peer: IpAddr,
    /// Pre-shared key file (mode 0600), instead of certificates.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    pub psk_file: Option<PathBuf>,
    /// Our certificate chain (PEM, leaf first).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PKCS#8 PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Root CA the peer's certificate must chain to (repeatable).
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Our IKE identity: an IP, @fqdn, user@domain or a DN (default: the certificate
    /// subject, or our address with a PSK).
    #[arg(long)]
    pub local_id: Option<String>,
    /// The identity the peer must prove (default: any its credentials allow).
    #[arg(long)]
    pub remote_id: Option<String>,
    /// Protect only this traffic: PROTO[/PEER-PORT], e.g. tcp/2049 (repeatable; default all
    /// traffic with the peer).
    #[arg(long = "selector")]
    pub selectors: Vec<String>,
    /// transport (default) or tunnel.
    #[arg(long, value_parser = ["transport", "tunnel"])]
    pub mode: Option<String>,
    /// Datapath of a daemon started by this command.
    #[arg(long, value_enum)]
    pub datapath: Option<DatapathRequest>,
    /// share.conf for the metadata identity of a daemon started by this command.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Metadata service URL for a daemon started by this command.
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// Rekey the IKE SA and the CHILD_SA this often, in seconds (default 3600, as IBM).
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    pub rekey_seconds: Option<u64>,
    /// Rekey the IKE SA this often instead (default: --rekey-seconds, else 3600); a
    /// CHILD_SA rekey then never falls due together with an IKE SA rekey.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    pub ike_rekey_seconds: Option<u64>,
    /// Longest wait for the CHILD_SA, in seconds.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
    /// Control socket path.
    #[arg(long, env = CONTROL_ENV, default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
}

/// The daemon reads the files, from its own working directory: send absolute paths.
fn absolute(path: &Path) -> anyhow::Result<String> {
    Ok(std::path::absolute(path)?.to_string_lossy().into_owned())
}

/// Runs `up`.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut config = SecureConfig::new(args.control.clone());
    config.timeout = Duration::from_secs(args.timeout.max(1));
    let o = &mut config.options;
    o.psk_file = args.psk_file.as_deref().map(absolute).transpose()?;
    o.cert = args.cert.as_deref().map(absolute).transpose()?;
    o.key = args.key.as_deref().map(absolute).transpose()?;
    o.ca = args
        .ca
        .iter()
        .map(|p| absolute(p))
        .collect::<anyhow::Result<_>>()?;
    o.local_id = args.local_id;
    o.remote_id = args.remote_id;
    o.selectors = args.selectors;
    o.mode = args.mode;
    o.rekey_seconds = args.rekey_seconds;
    o.ike_rekey_seconds = args.ike_rekey_seconds;
    let mut launch = DaemonLaunch::ibm_ipsec(&args.control);
    if let Ok(exe) = std::env::current_exe() {
        // `up` is ibm-ipsec itself: start the very same binary.
        launch.binary = exe;
    }
    let mut extra: Vec<OsString> = Vec::new();
    if let Some(d) = args.datapath {
        extra.push("--datapath".into());
        extra.push(
            match d {
                DatapathRequest::Auto => "auto",
                DatapathRequest::Kernel => "kernel",
                DatapathRequest::Userspace => "userspace",
            }
            .into(),
        );
    }
    if let Some(c) = &args.config {
        extra.push("--config".into());
        extra.push(absolute(c)?.into());
    }
    if let Some(u) = &args.metadata_url {
        extra.push("--metadata-url".into());
        extra.push(u.into());
    }
    launch.args = extra;
    config.launch = Some(launch);
    let session = secure(args.peer, &config)?;
    if session.started_daemon {
        eprintln!(
            "started ibm-ipsec daemon on {} (log {})",
            args.control.display(),
            args.control.with_file_name("daemon.log").display()
        );
    }
    println!("{}", summary_line(&session.summary));
    Ok(())
}

/// One line: what protects the traffic, how fast it came up.
pub fn summary_line(s: &UpSummary) -> String {
    let when = if s.existing {
        "already up".to_owned()
    } else {
        format!("up in {} ms", s.elapsed_ms)
    };
    format!(
        "{peer}: {when}: ESP {esp} {mode}, SPIs in {spi_in} out {spi_out}, encap {encap}, \
         {dp:?} datapath; IKE {ike} SPIs {spi_i}/{spi_r}, peer {remote}; {selectors}",
        peer = s.peer,
        esp = s.esp_algorithm,
        mode = s.mode,
        spi_in = s.spi_in,
        spi_out = s.spi_out,
        encap = s.encap,
        dp = s.datapath,
        ike = s.ike_algorithms,
        spi_i = s.ike_spi_i,
        spi_r = s.ike_spi_r,
        remote = s.remote_id,
        selectors = s.selectors,
    )
    .replace("Userspace datapath", "userspace datapath")
    .replace("Kernel datapath", "kernel datapath")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::DatapathKind;

    #[test]
    fn summary_is_one_line_with_spis_and_algorithms() {
        let s = UpSummary {
            peer: "10.0.0.2".parse().unwrap(),
            local: "10.0.0.1".parse().unwrap(),
            ike_spi_i: "0102030405060708".into(),
            ike_spi_r: "1112131415161718".into(),
            spi_in: "c0ffee01".into(),
            spi_out: "c0ffee02".into(),
            ike_algorithms: "aes256-sha384-ecp384".into(),
            esp_algorithm: "aes256gcm16".into(),
            mode: "transport".into(),
            encap: "udp 4500 -> 4500".into(),
            datapath: DatapathKind::Userspace,
            remote_id: "IP 10.0.0.2".into(),
            selectors: "10.0.0.1/32 === 10.0.0.2/32".into(),
            elapsed_ms: 42,
            existing: false,
        };
        let line = summary_line(&s);
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("10.0.0.2: up in 42 ms: ESP aes256gcm16 transport"),
            "{line}"
        );
        assert!(line.contains("userspace datapath"), "{line}");
        assert!(
            line.contains("c0ffee01") && line.contains("aes256-sha384-ecp384"),
            "{line}"
        );
        let again = summary_line(&UpSummary {
            existing: true,
            ..s
        });
        assert!(again.contains("already up"), "{again}");
    }
}

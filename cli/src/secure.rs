//! The library call behind `ibm-ipsec up` and mount helpers: protect traffic with a peer.
//!
//! [`secure`] asks the host's daemon (starting it when none answers on the control socket) to
//! bring up an IKE SA and a transport-mode CHILD_SA with the peer, and returns once the
//! CHILD_SA is installed in the datapath — from then on traffic to the peer is encrypted. A
//! peer that is already up returns its existing SAs.
//!
//! ```no_run
//! use std::time::Duration;
//! use ibm_ipsec::{secure, SecureConfig};
//!
//! let mut config = SecureConfig::new(ibm_ipsec::control::control_path(None));
//! config.options.selectors = vec!["tcp/2049".into()]; // NFS only
//! config.options.psk_file = Some("/etc/ibm-ipsec/psk".into());
//! config.timeout = Duration::from_secs(60);
//! let session = secure("10.240.0.5".parse()?, &config)?;
//! println!(
//!     "ESP {} in {} ms (SPIs {}/{})",
//!     session.summary.esp_algorithm,
//!     session.summary.elapsed_ms,
//!     session.summary.spi_in,
//!     session.summary.spi_out
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::control::{ControlClient, Request, Response, UpOptions, UpSummary};
use crate::error::Error;

/// How to start the daemon when none is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonLaunch {
    /// The `ibm-ipsec` binary.
    pub binary: PathBuf,
    /// Arguments after `daemon --control PATH` (e.g. `--datapath userspace`,
    /// `--config /etc/ibmcloud/share.conf`).
    pub args: Vec<OsString>,
    /// Where the daemon's log goes (created 0600); `None` discards it.
    pub log: Option<PathBuf>,
    /// How long to wait for its control socket.
    pub wait: Duration,
}

impl DaemonLaunch {
    /// The `ibm-ipsec` next to the running executable (where `install.sh` puts both it and
    /// `mount.ibmshare`), else the one on `PATH`; the log next to the control socket.
    pub fn ibm_ipsec(control: &Path) -> Self {
        let sibling = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("ibm-ipsec")))
            .filter(|p| p.is_file());
        DaemonLaunch {
            binary: sibling.unwrap_or_else(|| PathBuf::from("ibm-ipsec")),
            args: Vec::new(),
            log: Some(control.with_file_name("daemon.log")),
            wait: Duration::from_secs(20),
        }
    }
}

/// What [`secure`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureConfig {
    /// The daemon's control socket.
    pub control: PathBuf,
    /// Credentials, identities, selectors and mode (paths must be absolute: the daemon
    /// reads them from its own working directory).
    pub options: UpOptions,
    /// Start a daemon when none answers; `None` fails with [`Error::NoDaemon`] instead.
    pub launch: Option<DaemonLaunch>,
    /// Longest wait for the CHILD_SA (the daemon gives up on a silent peer after about 30 s).
    pub timeout: Duration,
}

impl SecureConfig {
    /// Defaults: no explicit credentials (the daemon's), all traffic with the peer,
    /// transport mode, start `ibm-ipsec daemon` when needed, wait up to 90 s.
    pub fn new(control: PathBuf) -> Self {
        SecureConfig {
            launch: Some(DaemonLaunch::ibm_ipsec(&control)),
            control,
            options: UpOptions::default(),
            timeout: Duration::from_secs(90),
        }
    }
}

/// Protected traffic with one peer, as the daemon reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SAs.
    pub summary: UpSummary,
    /// The daemon's control socket.
    pub control: PathBuf,
    /// Whether this call started the daemon.
    pub started_daemon: bool,
}

impl Session {
    /// Deletes the SAs with the peer (`ibm-ipsec down PEER`).
    pub fn down(&self) -> Result<(), Error> {
        let client = ControlClient::new(&self.control, Duration::from_secs(30));
        match client.request(&Request::Down {
            target: crate::control::DownTarget::Peer(self.summary.peer),
        })? {
            Response::Down { .. } => Ok(()),
            other => Err(crate::control::unexpected(&other)),
        }
    }
}

/// Brings up (or finds) the SAs with `peer` and returns once traffic to it is protected.
///
/// Errors are one sentence each: no daemon and none could be started, the daemon's refusal
/// (bad options, unreadable credentials), or IKE's failure (`peer 10.0.0.5 did not answer
/// IKE_SA_INIT …`, `AUTHENTICATION_FAILED from peer`, no proposal chosen …).
pub fn secure(peer: IpAddr, config: &SecureConfig) -> Result<Session, Error> {
    let client = ControlClient::new(&config.control, config.timeout);
    let mut started_daemon = false;
    if !client.is_listening() {
        let Some(launch) = &config.launch else {
            return Err(Error::NoDaemon(config.control.clone()));
        };
        start_daemon(&config.control, launch)?;
        started_daemon = true;
    }
    let summary = client.up(peer, config.options.clone())?;
    Ok(Session {
        summary,
        control: config.control.clone(),
        started_daemon,
    })
}

/// Spawns `ibm-ipsec daemon` in its own process group (it outlives us) and waits for its
/// control socket.
fn start_daemon(control: &Path, launch: &DaemonLaunch) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;

    let stderr = match &launch.log {
        Some(log) => {
            if let Some(dir) = log.parent().filter(|d| !d.exists()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::io(dir, e))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(log)
                .map_err(|e| Error::io(log, e))?;
            Stdio::from(file)
        }
        None => Stdio::null(),
    };
    let mut child = Command::new(&launch.binary)
        .arg("daemon")
        .arg("--control")
        .arg(control)
        .args(&launch.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Error::Up(format!(
                "no daemon answers on {} and starting {} failed: {e}",
                control.display(),
                launch.binary.display()
            ))
        })?;
    let client = ControlClient::new(control, Duration::from_secs(2));
    let deadline = Instant::now() + launch.wait;
    loop {
        if client.is_listening() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = launch
                .log
                .as_deref()
                .map(last_error_line)
                .unwrap_or_default();
            return Err(Error::Up(format!(
                "the daemon started for {} exited ({status}){log}",
                control.display()
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::Up(format!(
                "the daemon started for {} did not open its control socket within {:?}",
                control.display(),
                launch.wait
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `: <last error line of the log>`, or nothing.
fn last_error_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .map(|l| format!(": {l}"))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_daemon_and_without_launch_the_error_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SecureConfig::new(dir.path().join("c.sock"));
        config.launch = None;
        let err = secure("10.0.0.1".parse().unwrap(), &config).unwrap_err();
        assert!(matches!(err, Error::NoDaemon(_)), "{err}");
    }

    #[test]
    fn a_daemon_that_exits_at_once_is_reported_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-daemon");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'error: --listen: no credentials' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let control = dir.path().join("run/c.sock");
        let mut config = SecureConfig::new(control.clone());
        config.launch = Some(DaemonLaunch {
            binary: script,
            args: vec![],
            log: Some(control.with_file_name("daemon.log")),
            wait: Duration::from_secs(5),
        });
        let err = secure("10.0.0.1".parse().unwrap(), &config)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited") && err.contains("no credentials"),
            "{err}"
        );
    }
}

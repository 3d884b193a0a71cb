//! `mount.ibmshare` and `umount.ibmshare`: the `ibm-ipsec` binary run under those names
//! (installed as symlinks in /sbin). The flows are [`crate::mount::mount`] and
//! [`crate::mount::unmount::unmount`]; this module connects them to the daemon.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use metadata::share_conf::LoadedConf;

use crate::control::{control_path, ControlClient, DownTarget, Request, Response};
use crate::mount::unmount::{unmount, UnmountEnv};
use crate::mount::{mount, MountEnv, ProtectError, Protector};
use crate::mount_helper::ExitStatus;
use crate::secure::{secure, SecureConfig};

/// Root CA directory whose `*.pem` / `*.crt` files the file server's certificate must chain
/// to (the region roots; the IBM helper installs them into swanctl's x509ca).
pub const CA_DIR: &str = "/etc/ibm-ipsec/ca";
/// Overrides [`CA_DIR`] (tests, the demo).
pub const CA_DIR_ENV: &str = "IBM_IPSEC_CA_DIR";

/// Which helper the binary was run as, from argv\[0\]'s file name.
pub fn helper_name(argv0: &str) -> Option<&'static str> {
    match Path::new(argv0).file_name()?.to_str()? {
        "mount.ibmshare" => Some("mount.ibmshare"),
        "umount.ibmshare" => Some("umount.ibmshare"),
        _ => None,
    }
}

/// `mount.ibmshare SPEC DIR [-sfnv] [-o OPTIONS]`, exiting with the IBM helper's codes.
pub fn mount_main(args: &[String]) -> ExitCode {
    let mut daemon = DaemonProtector {
        control: control_path(None),
    };
    match mount(args, &MountEnv::system(), &mut daemon) {
        Ok(done) => {
            if args.iter().any(|a| is_verbose_flag(a)) {
                eprintln!("mount.ibmshare: {done}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("mount.ibmshare: {}", failure.message);
            ExitCode::from(failure.status.code())
        }
    }
}

/// `umount.ibmshare DIR [-nlfvr]`: unmounts, then brings the SAs with the file server down
/// when none of its shares is left mounted.
pub fn umount_main(args: &[String]) -> ExitCode {
    let verbose = args.iter().any(|a| a == "-v");
    let control = control_path(None);
    let mut release = |peer: IpAddr| -> Result<String, String> {
        let client = ControlClient::new(&control, Duration::from_secs(30));
        if !client.is_listening() {
            return Err(format!(
                "no daemon on {}: no SAs to delete",
                control.display()
            ));
        }
        match client.request(&Request::Down {
            target: DownTarget::Peer(peer),
        }) {
            Ok(Response::Down { .. }) => Ok(format!("SAs with {peer} deleted")),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    };
    match unmount(args, &UnmountEnv::system(), &mut release) {
        Ok(done) => {
            if verbose {
                match (&done.peer, done.remaining, &done.released) {
                    (Some(peer), n, _) if n > 0 => {
                        eprintln!("umount.ibmshare: {n} share(s) of {peer} still mounted: SAs kept")
                    }
                    (_, _, Some(Ok(msg))) => eprintln!("umount.ibmshare: {msg}"),
                    (_, _, Some(Err(why))) => eprintln!("umount.ibmshare: {why}"),
                    _ => {}
                }
            } else if let Some(Err(why)) = &done.released {
                // The unmount worked; the SAs may outlive it, which the user should know.
                if !why.starts_with("no daemon") {
                    eprintln!("umount.ibmshare: warning: {why}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("umount.ibmshare: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn is_verbose_flag(arg: &str) -> bool {
    arg.strip_prefix('-')
        .is_some_and(|c| !c.starts_with('-') && !c.contains('o') && c.contains('v'))
}

/// Brings IPsec up through the host's daemon ([`secure`]), starting it with the metadata
/// identity from share.conf when none runs.
struct DaemonProtector {
    control: PathBuf,
}

impl Protector for DaemonProtector {
    fn protect(&mut self, peer: IpAddr, conf: &LoadedConf) -> Result<String, ProtectError> {
        let mut config = SecureConfig::new(self.control.clone());
        config.options.ca = ca_sources().map_err(|message| ProtectError {
            status: ExitStatus::IpsecSetup,
            message,
        })?;
        if let Some(launch) = &mut config.launch {
            launch.args = daemon_args(conf);
        }
        let mut result = secure(peer, &config);
        if result.is_err() && identity_arrived(&self.control) {
            // A daemon that was still getting its first certificate (one `secure` has just
            // started, typically) cannot authenticate yet; now it can.
            result = secure(peer, &config);
        }
        match result {
            Ok(session) => {
                let s = &session.summary;
                Ok(format!(
                    "{} {} with {} ({}, SPIs {}/{}{})",
                    s.esp_algorithm,
                    s.mode,
                    s.peer,
                    if s.existing {
                        "existing SAs".to_owned()
                    } else {
                        format!("up in {} ms", s.elapsed_ms)
                    },
                    s.spi_in,
                    s.spi_out,
                    if session.started_daemon {
                        ", daemon started"
                    } else {
                        ""
                    }
                ))
            }
            Err(e) => Err(ProtectError {
                status: classify(&self.control, conf),
                message: e.to_string(),
            }),
        }
    }
}

/// How long a first mount waits for a starting daemon's certificate.
const IDENTITY_WAIT: Duration = Duration::from_secs(90);

/// Whether the daemon had no certificate and now has one (waiting up to [`IDENTITY_WAIT`]);
/// false when it had one already (the failure was something else) or none came.
fn identity_arrived(control: &Path) -> bool {
    let client = ControlClient::new(control, Duration::from_secs(5));
    let deadline = std::time::Instant::now() + IDENTITY_WAIT;
    match client.status() {
        Ok(report) if report.identity.is_none() => {}
        _ => return false,
    }
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        match client.status() {
            Ok(report) if report.identity.is_some() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// How a daemon started for the mount gets its identity: the share.conf that was read, or
/// the metadata URL of the defaults.
fn daemon_args(conf: &LoadedConf) -> Vec<std::ffi::OsString> {
    match &conf.source {
        Some(path) => vec!["--config".into(), path.into()],
        None => vec![
            "--metadata-url".into(),
            conf.conf.metadata_url.clone().into(),
        ],
    }
}

/// Where IBM's own mount helper installs the region roots and the intermediate for
/// strongSwan (`x509ca/type_ibmshare_root_<region>.crt`, `type_ibmshare_int*.crt`); Debian-like
/// systems first, then RHEL-like. A host migrating from that helper keeps working without
/// copying them.
pub const IBM_HELPER_CA_DIRS: [&str; 2] = ["/etc/swanctl/x509ca", "/etc/strongswan/swanctl/x509ca"];

/// The root CA files the file server's chain must verify against.
///
/// `$IBM_IPSEC_CA_DIR` alone when set; otherwise [`CA_DIR`], and when that holds no CA, the
/// IBM helper's `type_ibmshare_*.crt` in [`IBM_HELPER_CA_DIRS`].
fn ca_sources() -> Result<Vec<String>, String> {
    if let Some(dir) = crate::mount::env_path(CA_DIR_ENV) {
        return ca_files(&dir);
    }
    let helper_dirs: Vec<PathBuf> = IBM_HELPER_CA_DIRS.iter().map(PathBuf::from).collect();
    ca_files_with_fallback(Path::new(CA_DIR), &helper_dirs)
}

/// The CA files of `dir`, or else the IBM helper's in `helper_dirs`; the error names every
/// place looked at.
fn ca_files_with_fallback(dir: &Path, helper_dirs: &[PathBuf]) -> Result<Vec<String>, String> {
    let own = match ca_files(dir) {
        Ok(files) => return Ok(files),
        Err(e) => e,
    };
    let from_helper: Vec<String> = helper_dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.filter_map(Result::ok).map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("type_ibmshare_") && n.ends_with(".crt"))
        })
        .map(|p| p.display().to_string())
        .collect();
    if from_helper.is_empty() {
        let looked: Vec<String> = helper_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(format!(
            "{own}; no IBM mount helper roots (type_ibmshare_*.crt) in {} either",
            looked.join(" or ")
        ));
    }
    let mut files = from_helper;
    files.sort();
    Ok(files)
}

/// The root CA files: every `*.pem` and `*.crt` directly in `dir`.
fn ca_files(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "no root CA to verify the file server with: {}: {e} (put the region root CA \
             PEM files there)",
            dir.display()
        )
    })?;
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "pem" || x == "crt"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "no root CA to verify the file server with: no *.pem or *.crt in {} (put the \
             region root CA PEM files there)",
            dir.display()
        ));
    }
    Ok(files)
}

/// The IBM helper's code for a failed `secure`: when the daemon has no certificate, ask the
/// metadata service for a token to tell "unreachable" (1) and "token refused" (2) from
/// "certificate refused" (3); with a certificate, IPsec itself failed (4).
fn classify(control: &Path, conf: &LoadedConf) -> ExitStatus {
    let client = ControlClient::new(control, Duration::from_secs(5));
    let has_identity = match client.status() {
        Ok(report) => report.identity.is_some(),
        // No daemon at all: it could not be started, which is not the metadata's fault.
        Err(_) => return ExitStatus::IpsecSetup,
    };
    if has_identity {
        return ExitStatus::IpsecSetup;
    }
    let probe = || -> Result<(), metadata::Error> {
        let client = metadata::Client::new(conf.conf.client_config())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| metadata::Error::Io {
                action: "starting",
                path: "a tokio runtime".into(),
                source: e,
            })?;
        runtime.block_on(client.token(60)).map(drop)
    };
    match probe() {
        Ok(()) => ExitStatus::Certificate,
        Err(e) => ExitStatus::from_metadata(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_selects_the_helper() {
        assert_eq!(helper_name("/sbin/mount.ibmshare"), Some("mount.ibmshare"));
        assert_eq!(helper_name("umount.ibmshare"), Some("umount.ibmshare"));
        assert_eq!(helper_name("/usr/sbin/ibm-ipsec"), None);
        assert_eq!(helper_name("/sbin/mount.nfs4"), None);
        assert_eq!(helper_name(""), None);
    }

    #[test]
    fn verbose_is_found_in_flag_clusters_but_not_in_option_values() {
        assert!(is_verbose_flag("-v"));
        assert!(is_verbose_flag("-nv"));
        assert!(!is_verbose_flag("-o"));
        assert!(!is_verbose_flag("-overs=4.1"));
        assert!(!is_verbose_flag("vers=4.1"));
        assert!(!is_verbose_flag("--verbose-ish"));
    }

    #[test]
    fn ca_files_are_the_pem_and_crt_files_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.pem", "a.crt", "notes.txt"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.pem")).unwrap();
        let files = ca_files(dir.path()).unwrap();
        let missing = ca_files(&dir.path().join("missing"));
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("a.crt") && files[1].ends_with("b.pem"));
        assert!(missing.unwrap_err().contains("region root CA"));
    }

    #[test]
    fn without_own_roots_the_ibm_helpers_swanctl_roots_are_used() {
        let own = tempfile::tempdir().unwrap();
        let swanctl = tempfile::tempdir().unwrap();
        let rhel = own.path().join("no-such-dir");
        for f in [
            "type_ibmshare_root_us-south.crt",
            "type_ibmshare_int.crt",
            "someone_else.crt",
            "type_ibmshare_root_notes.txt",
        ] {
            std::fs::write(swanctl.path().join(f), "x").unwrap();
        }
        let dirs = [rhel.clone(), swanctl.path().to_path_buf()];
        let files = ca_files_with_fallback(own.path(), &dirs).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].ends_with("type_ibmshare_int.crt"));
        assert!(files[1].ends_with("type_ibmshare_root_us-south.crt"));

        // Our own directory wins as soon as it holds a CA.
        std::fs::write(own.path().join("region.pem"), "x").unwrap();
        let files = ca_files_with_fallback(own.path(), &dirs).unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with("region.pem"));

        // Neither: the error names both places.
        let empty = tempfile::tempdir().unwrap();
        let err = ca_files_with_fallback(empty.path(), std::slice::from_ref(&rhel)).unwrap_err();
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
        assert!(err.contains(&rhel.display().to_string()), "{err}");
        assert!(err.contains("type_ibmshare_"), "{err}");
    }

    #[test]
    fn a_started_daemon_gets_the_share_conf_that_was_read() {
        let mut loaded = LoadedConf {
            conf: metadata::share_conf::ShareConf::default(),
            source: Some("/etc/ibmcloud/share.conf".into()),
            shadowed: vec![],
        };
        assert_eq!(
            daemon_args(&loaded),
            ["--config", "/etc/ibmcloud/share.conf"]
        );
        loaded.source = None;
        assert_eq!(
            daemon_args(&loaded),
            ["--metadata-url", "http://169.254.169.254"]
        );
    }
}

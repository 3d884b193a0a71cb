//! `mount.ibmshare`: what mount(8) runs for `mount -t ibmshare -o secure=true IP:/path DIR`.
//!
//! The flow, as the IBM mount helper's (`ibm-mount-helper.md`), with its exit codes:
//!
//! 1. parse mount(8)'s helper arguments ([`crate::mount_helper::parse_args`]; bad ones → 6);
//! 2. refuse to run unless root (7);
//! 3. take the mount lock ([`lock::MountLock`]) so concurrent mounts do not race;
//! 4. an `IP:/path` already in the mount table is a success with nothing to do;
//! 5. with `secure=true`, read `share.conf` and have IPsec protect traffic to IP through a
//!    [`Protector`] (1 metadata unreachable, 2 token, 3 certificate, 4 IPsec);
//! 6. run `mount.nfs4` (`mount.nfs` for NFSv2/3) with the remaining options, `sec=sys` first
//!    (missing → 5; its exit code n → 100 + n).
//!
//! ```no_run
//! use ibm_ipsec::mount::{mount, MountEnv, Protector, ProtectError};
//! struct Daemon;
//! impl Protector for Daemon {
//!     fn protect(
//!         &mut self,
//!         peer: std::net::IpAddr,
//!         _conf: &metadata::share_conf::LoadedConf,
//!     ) -> Result<String, ProtectError> {
//!         Ok(format!("IPsec up with {peer}"))
//!     }
//! }
//! let args = ["10.240.0.5:/share", "/mnt", "-o", "secure=true"];
//! match mount(&args, &MountEnv::system(), &mut Daemon) {
//!     Ok(done) => println!("{done}"),
//!     Err(failure) => std::process::exit(failure.status.code().into()),
//! }
//! ```

pub mod lock;
mod nfs;
pub mod unmount;
pub mod utab;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use metadata::share_conf::{self, LoadedConf};

use crate::mount_helper::{self, ExitStatus, MountPlan};
use lock::MountLock;
pub use nfs::{nfs_program, NFS_PROGRAM_ENV};

/// Brings IPsec up to the file server before NFS is mounted (the daemon, through the library
/// API; tests give their own).
pub trait Protector {
    /// Protects traffic to `peer` with the settings of `conf`; returns a one-line summary
    /// for `-v`. Returns once the CHILD_SA is installed.
    fn protect(&mut self, peer: IpAddr, conf: &LoadedConf) -> Result<String, ProtectError>;
}

/// Why IPsec could not be brought up, and the exit status that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtectError {
    /// One of [`ExitStatus::MetadataUnreachable`], `Token`, `Certificate`, `IpsecSetup`,
    /// `Generic`.
    pub status: ExitStatus,
    /// What went wrong, for the user.
    pub message: String,
}

/// Where `mount.ibmshare` finds what it works with; [`MountEnv::system`] for the real host.
#[derive(Debug, Clone)]
pub struct MountEnv {
    /// The NFS mount program to run instead of searching `nfs_dirs` (tests, the demo).
    pub nfs_program: Option<PathBuf>,
    /// Directories searched for `mount.nfs4` / `mount.nfs`.
    pub nfs_dirs: Vec<PathBuf>,
    /// The mount table (`/proc/self/mounts`).
    pub mount_table: PathBuf,
    /// `/proc/self/mountinfo` (the new mount's ID for utab).
    pub mountinfo: PathBuf,
    /// libmount's utab, where a secure mount records `helper=ibmshare` so that umount runs
    /// `umount.ibmshare`; `None` leaves it alone.
    pub utab: Option<PathBuf>,
    /// The lock file.
    pub lock_path: PathBuf,
    /// How long to wait for another run holding the lock.
    pub lock_timeout: Duration,
    /// `share.conf` candidates, first existing wins.
    pub config_candidates: Vec<PathBuf>,
    /// Whether this process runs as root.
    pub is_root: bool,
}

impl MountEnv {
    /// The real host: `/sbin`, `/usr/sbin`; `/proc/self/mounts`;
    /// `/run/ibm-ipsec/mount.lock` (waits up to 5 minutes: a first mount may generate a key
    /// and wait out the metadata service's retries); `/etc/ibmcloud/share.conf` then
    /// `/etc/ibmshare/share.conf`; the NFS program from `$IBM_IPSEC_MOUNT_NFS` if set.
    pub fn system() -> MountEnv {
        MountEnv {
            nfs_program: env_path(NFS_PROGRAM_ENV),
            nfs_dirs: vec![PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")],
            mount_table: PathBuf::from("/proc/self/mounts"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            utab: Some(utab::utab_path()),
            lock_path: PathBuf::from(lock::DEFAULT_LOCK_PATH),
            lock_timeout: Duration::from_secs(300),
            config_candidates: vec![
                PathBuf::from(share_conf::DOCS_PATH),
                PathBuf::from(share_conf::HELPER_PATH),
            ],
            is_root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// A path from the environment variable `name` (unset or empty: `None`), ignored in a
/// set-user-ID or set-group-ID process, as glibc's `secure_getenv`: the helpers run as root,
/// and a caller who is not must not choose the program they execute, the utab they rewrite
/// or the CAs they trust.
pub(crate) fn env_path(name: &str) -> Option<PathBuf> {
    let setid = nix::unistd::getuid() != nix::unistd::geteuid()
        || nix::unistd::getgid() != nix::unistd::getegid();
    path_unless_setid(std::env::var_os(name), setid)
}

fn path_unless_setid(value: Option<std::ffi::OsString>, setid: bool) -> Option<PathBuf> {
    value.filter(|v| !setid && !v.is_empty()).map(PathBuf::from)
}

/// A mount that failed: the IBM helper's exit status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit status.
    pub status: ExitStatus,
    /// What went wrong, for the user.
    pub message: String,
}

impl Failure {
    fn new(status: ExitStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (exit {})", self.message, self.status.code())
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounted {
    /// The share was mounted (with IPsec when `protected` holds the summary).
    Mounted {
        /// `SERVER:/path`.
        share: String,
        /// The mount point.
        dir: String,
        /// The protector's summary when `secure=true`.
        protected: Option<String>,
    },
    /// `SERVER:/path` was already mounted: nothing was done (as the IBM helper).
    AlreadyMounted {
        /// `SERVER:/path`.
        share: String,
    },
    /// `-f` (fake): everything was checked and the commands are shown, nothing was run.
    Fake {
        /// The NFS command that would have run.
        command: String,
    },
}

impl fmt::Display for Mounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mounted::Mounted {
                share,
                dir,
                protected: Some(summary),
            } => write!(f, "mounted {share} on {dir} ({summary})"),
            Mounted::Mounted { share, dir, .. } => write!(f, "mounted {share} on {dir}"),
            Mounted::AlreadyMounted { share } => {
                write!(f, "{share} is already mounted; nothing to do")
            }
            Mounted::Fake { command } => write!(f, "fake mount (-f): would run {command}"),
        }
    }
}

/// Runs `mount.ibmshare` with mount(8)'s arguments (without argv\[0\]). Progress for `-v`
/// goes to stderr.
pub fn mount<S: AsRef<str>>(
    args: &[S],
    env: &MountEnv,
    protector: &mut dyn Protector,
) -> Result<Mounted, Failure> {
    let plan = mount_helper::parse_args(args.iter().map(AsRef::as_ref))
        .map_err(|e| Failure::new(ExitStatus::Generic, e.0))?;
    let verbose = plan.flags.verbose;
    let say = |line: &str| {
        if verbose {
            eprintln!("mount.ibmshare: {line}");
        }
    };
    if !env.is_root {
        return Err(Failure::new(
            ExitStatus::NotRoot,
            "must be run as root (mount -t ibmshare needs root)",
        ));
    }
    let share = format!("{}:{}", plan.server, plan.path);
    let program = nfs::nfs_program(env, &plan)
        .map_err(|message| Failure::new(ExitStatus::Install, message))?;
    let _lock = MountLock::acquire(&env.lock_path, env.lock_timeout, || {
        eprintln!(
            "mount.ibmshare: waiting for another mount.ibmshare to finish ({})",
            env.lock_path.display()
        )
    })
    .map_err(|e| Failure::new(ExitStatus::Generic, e.to_string()))?;

    let table = read_mount_table(&env.mount_table)?;
    if mount_helper::is_mounted(&mount_helper::nfs_mounts(&table), &plan.server, &plan.path) {
        return Ok(Mounted::AlreadyMounted { share });
    }

    let nfs_args = mount_helper::nfs_command(&plan);
    if plan.flags.fake {
        // A dry run brings nothing up; mount.nfs -f checks the rest without mounting.
        say("fake mount (-f): IPsec is not brought up");
        return Ok(Mounted::Fake {
            command: describe(&program, &nfs_args),
        });
    }

    let protected = match plan.secure_peer {
        Some(peer) => Some(protect(&plan, peer, env, protector, &say)?),
        None => None,
    };

    say(&format!("running {}", describe(&program, &nfs_args)));
    nfs::run(&program, &nfs_args)?;
    if protected.is_some() && !plan.flags.no_mtab {
        if let Some(utab) = &env.utab {
            match record_unmount_helper(env, utab, &plan.dir) {
                Ok(()) => say(&format!(
                    "recorded {} in {}",
                    utab::HELPER_OPTION,
                    utab.display()
                )),
                Err(e) => eprintln!(
                    "mount.ibmshare: warning: {e}; `umount {}` will not run umount.ibmshare, so \
                     the SAs stay up until `ibm-ipsec down {}`",
                    plan.dir, plan.server
                ),
            }
        }
    }
    Ok(Mounted::Mounted {
        share,
        dir: plan.dir,
        protected,
    })
}

fn protect(
    plan: &MountPlan,
    peer: IpAddr,
    env: &MountEnv,
    protector: &mut dyn Protector,
    say: &dyn Fn(&str),
) -> Result<String, Failure> {
    let conf = share_conf::load(&env.config_candidates)
        .map_err(|e| Failure::new(ExitStatus::Generic, format!("share.conf: {e}")))?;
    match &conf.source {
        Some(path) => say(&format!("config: {}", path.display())),
        None => say(&format!(
            "config: none of {} exists; using defaults",
            join_paths(&env.config_candidates)
        )),
    }
    say(&format!("securing traffic to {peer} with IPsec"));
    let summary = protector.protect(peer, &conf).map_err(|e| Failure {
        status: e.status,
        message: format!(
            "IPsec to {peer} for {}:{} failed: {}",
            plan.server, plan.path, e.message
        ),
    })?;
    say(&summary);
    Ok(summary)
}

/// Finds the mount just made on `dir` and records `helper=ibmshare` for it in utab.
fn record_unmount_helper(env: &MountEnv, utab_path: &Path, dir: &str) -> Result<(), String> {
    let target = std::fs::canonicalize(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| dir.to_owned());
    let text = std::fs::read_to_string(&env.mountinfo)
        .map_err(|e| format!("reading {}: {e}", env.mountinfo.display()))?;
    let mounts = utab::parse_mountinfo(&text);
    let mount = utab::nfs_mount_on(&mounts, &target)
        .ok_or_else(|| format!("no NFS mount on {target} in {}", env.mountinfo.display()))?;
    utab::record_helper(utab_path, mount)
        .map_err(|e| format!("updating {}: {e}", utab_path.display()))
}

fn read_mount_table(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            ExitStatus::Generic,
            format!("reading the mount table {}: {e}", path.display()),
        )
    })
}

fn describe(program: &Path, args: &[String]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;

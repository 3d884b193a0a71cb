//! Finding and running nfs-utils' mount helper.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Failure, MountEnv};
use crate::mount_helper::{ExitStatus, MountPlan};

/// Environment variable naming the NFS mount program to run instead of `mount.nfs4` (tests
/// and the demo point it at a program of their own).
pub const NFS_PROGRAM_ENV: &str = "IBM_IPSEC_MOUNT_NFS";

/// The program that mounts the share: `mount.nfs` when the options ask for NFSv2 or v3,
/// else `mount.nfs4` (as the IBM helper's `mount -t nfs4`), or the configured override.
/// The message names the package to install when it is missing.
pub fn nfs_program(env: &MountEnv, plan: &MountPlan) -> Result<PathBuf, String> {
    if let Some(program) = &env.nfs_program {
        return if is_executable(program) {
            Ok(program.clone())
        } else {
            Err(format!(
                "{} (from ${NFS_PROGRAM_ENV}) is not an executable file",
                program.display()
            ))
        };
    }
    let name = if wants_v2_or_v3(&plan.nfs_options) {
        "mount.nfs"
    } else {
        "mount.nfs4"
    };
    env.nfs_dirs
        .iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            let dirs: Vec<String> = env
                .nfs_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!(
                "{name} not found in {}: install the NFS client (Debian/Ubuntu: nfs-common, \
                 RHEL: nfs-utils)",
                dirs.join(", ")
            )
        })
}

fn wants_v2_or_v3(options: &[String]) -> bool {
    options.iter().any(|o| {
        matches!(
            o.as_str(),
            "vers=2" | "vers=3" | "nfsvers=2" | "nfsvers=3" | "v2" | "v3"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the program with the terminal's stdio (its own messages reach the user unchanged);
/// a non-zero exit n becomes 100 + n, as the IBM helper's.
pub(super) fn run(program: &Path, args: &[String]) -> Result<(), Failure> {
    let status = Command::new(program).args(args).status().map_err(|e| {
        Failure::new(
            ExitStatus::Install,
            format!("cannot run {}: {e}", program.display()),
        )
    })?;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(Failure::new(
            ExitStatus::NfsMount(code),
            format!("{} failed with exit code {code}", program.display()),
        )),
        (None, signal) => Err(Failure::new(
            ExitStatus::Generic,
            format!(
                "{} was killed by signal {}",
                program.display(),
                signal.unwrap_or(0)
            ),
        )),
    }
}

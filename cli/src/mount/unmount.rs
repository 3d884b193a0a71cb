//! `umount.ibmshare`: what umount(8) runs for a share that `mount.ibmshare` mounted with
//! `secure=true` (it finds `helper=ibmshare` in utab, see [`super::utab`]), as
//! `umount.ibmshare DIR [-nlfvr] [-t TYPE] [-N NS]`.
//!
//! It unmounts with `umount -i` (util-linux's "internal only": the umount(2) call and utab
//! clean-up, no helper; for NFSv4 that is all `umount.nfs4` does too), then, when no NFS
//! mount of that file server is left in this mount namespace, asks the daemon to bring the
//! SAs with it down. While any share of the server is mounted, the SAs stay.

use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::utab::{self, parse_mountinfo};
use crate::mount_helper::{mounts_of, nfs_mounts};

/// Environment variable naming the unmount program to run instead of `umount` (tests).
pub const UMOUNT_PROGRAM_ENV: &str = "IBM_IPSEC_UMOUNT";

/// Where `umount.ibmshare` finds what it works with.
#[derive(Debug, Clone)]
pub struct UnmountEnv {
    /// util-linux's umount (`-i` is passed).
    pub umount_program: PathBuf,
    /// `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// `/proc/self/mounts`.
    pub mount_table: PathBuf,
    /// libmount's utab, or `None` to leave it alone.
    pub utab: Option<PathBuf>,
}

impl UnmountEnv {
    /// The real host (`$IBM_IPSEC_UMOUNT` overrides the program, `$LIBMOUNT_UTAB` the utab).
    pub fn system() -> UnmountEnv {
        let umount_program = super::env_path(UMOUNT_PROGRAM_ENV)
            .or_else(|| {
                ["/usr/bin/umount", "/bin/umount"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("umount"));
        UnmountEnv {
            umount_program,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            mount_table: PathBuf::from("/proc/self/mounts"),
            utab: Some(utab::utab_path()),
        }
    }
}

/// What `umount.ibmshare` did, for `-v` and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmounted {
    /// The file server whose share was unmounted, when it is an IP address.
    pub peer: Option<IpAddr>,
    /// Shares of that server still mounted.
    pub remaining: usize,
    /// What the daemon said when asked to bring the SAs down (`None` when not asked).
    pub released: Option<Result<String, String>>,
}

/// A failed unmount: umount's own exit code (or 1 for our usage errors, 32 otherwise), and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmountFailure {
    /// The exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

/// Runs `umount.ibmshare` with umount(8)'s arguments (without argv\[0\]); `release` asks the
/// daemon to delete the SAs with a peer (returns its answer or why it could not).
pub fn unmount<S: AsRef<str>>(
    args: &[S],
    env: &UnmountEnv,
    release: &mut dyn FnMut(IpAddr) -> Result<String, String>,
) -> Result<Unmounted, UnmountFailure> {
    let (target, flags) = parse_args(args)?;
    // libmount passes the target as written in mountinfo (canonical); accept relative paths
    // from people running the helper by hand.
    let target = std::fs::canonicalize(&target)
        .map(|p| p.display().to_string())
        .unwrap_or(target);
    let before = read(&env.mountinfo)?;
    let mounts = parse_mountinfo(&before);
    let peer = utab::nfs_mount_on(&mounts, &target).and_then(|m| utab::server_ip(&m.source));

    let mut cmd = Command::new(&env.umount_program);
    cmd.arg("-i").args(&flags).arg(&target);
    let status = cmd.status().map_err(|e| UnmountFailure {
        code: 32,
        message: format!("cannot run {}: {e}", env.umount_program.display()),
    })?;
    if !status.success() {
        return Err(UnmountFailure {
            code: status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(32),
            message: match status.signal() {
                Some(s) => format!("umount was killed by signal {s}"),
                None => format!("umount {target} failed"),
            },
        });
    }
    if let Some(utab) = &env.utab {
        // umount -i normally removes it; a leftover would send the next mount on this
        // directory through us even when it is not ours.
        if let Err(e) = utab::forget(utab, &target) {
            eprintln!(
                "umount.ibmshare: warning: could not update {}: {e}",
                utab.display()
            );
        }
    }
    let Some(peer) = peer else {
        return Ok(Unmounted {
            peer: None,
            remaining: 0,
            released: None,
        });
    };
    let remaining = mounts_of(&nfs_mounts(&read(&env.mount_table)?), peer);
    let released = (remaining == 0).then(|| release(peer));
    Ok(Unmounted {
        peer: Some(peer),
        remaining,
        released,
    })
}

fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<(String, Vec<String>), UnmountFailure> {
    let usage = |message: String| UnmountFailure { code: 1, message };
    let mut target = None;
    let mut flags = Vec::new();
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(arg) = it.next() {
        match arg {
            "-n" | "-l" | "-f" | "-v" | "-r" => flags.push(arg.to_owned()),
            // The type and namespace are libmount's business: `umount -i` looks them up again.
            "-t" | "-N" => {
                it.next()
                    .ok_or_else(|| usage(format!("{arg} needs a value")))?;
            }
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(usage(format!("unknown flag {a}")))
            }
            a if target.is_none() => target = Some(a.to_owned()),
            a => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    let target = target
        .ok_or_else(|| usage("usage: umount.ibmshare DIR [-nlfvr] (run by umount)".into()))?;
    Ok((target, flags))
}

fn read(path: &Path) -> Result<String, UnmountFailure> {
    std::fs::read_to_string(path).map_err(|e| UnmountFailure {
        code: 32,
        message: format!("reading {}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A host whose mount table holds two shares of 10.240.0.5 and one of 10.240.0.6, and a
    /// fake `umount` that removes its target from both tables (as the kernel would).
    struct Host {
        dir: tempfile::TempDir,
        env: UnmountEnv,
    }

    fn host(umount_exit: i32) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::create_dir(p("a")).unwrap();
        std::fs::create_dir(p("b")).unwrap();
        std::fs::create_dir(p("c")).unwrap();
        let (a, b, c) = (
            p("a").display().to_string(),
            p("b").display().to_string(),
            p("c").display().to_string(),
        );
        std::fs::write(
            p("mountinfo"),
            format!(
                "22 1 0:21 / / rw - ext4 /dev/vda1 rw\n\
                 85 22 0:52 / {a} rw - nfs4 10.240.0.5:/share rw\n\
                 86 22 0:53 / {b} rw - nfs4 10.240.0.5:/other rw\n\
                 87 22 0:54 / {c} rw - nfs4 10.240.0.6:/x rw\n"
            ),
        )
        .unwrap();
        std::fs::write(
            p("mounts"),
            format!(
                "/dev/vda1 / ext4 rw 0 0\n10.240.0.5:/share {a} nfs4 rw 0 0\n\
                 10.240.0.5:/other {b} nfs4 rw 0 0\n10.240.0.6:/x {c} nfs4 rw 0 0\n"
            ),
        )
        .unwrap();
        let script = format!(
            "#!/bin/sh\n\
             echo \"$@\" >> '{log}'\n\
             for t in \"$@\"; do target=\"$t\"; done\n\
             [ {umount_exit} -eq 0 ] || exit {umount_exit}\n\
             grep -v \" $target \" '{mi}' > '{mi}.new'; mv '{mi}.new' '{mi}'\n\
             grep -v \" $target \" '{mt}' > '{mt}.new'; mv '{mt}.new' '{mt}'\n",
            log = p("umount.log").display(),
            mi = p("mountinfo").display(),
            mt = p("mounts").display(),
        );
        std::fs::write(p("umount"), script).unwrap();
        std::fs::set_permissions(p("umount"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = UnmountEnv {
            umount_program: p("umount"),
            mountinfo: p("mountinfo"),
            mount_table: p("mounts"),
            utab: Some(p("utab")),
        };
        Host { dir, env }
    }

    #[test]
    fn the_sas_stay_until_the_last_share_of_the_server_is_unmounted() {
        let h = host(0);
        let a = h.dir.path().join("a").display().to_string();
        let b = h.dir.path().join("b").display().to_string();
        std::fs::write(
            h.dir.path().join("utab"),
            format!("ID=85 SRC=10.240.0.5:/share TARGET={a} ROOT=/ OPTS=helper=ibmshare\n"),
        )
        .unwrap();
        let mut asked = Vec::new();
        let mut release = |peer: IpAddr| {
            asked.push(peer);
            Ok(format!("{peer}: SAs deleted"))
        };
        let first = unmount(&[a.as_str(), "-v"], &h.env, &mut release).unwrap();
        assert_eq!(first.peer, Some("10.240.0.5".parse().unwrap()));
        assert_eq!(first.remaining, 1);
        assert_eq!(first.released, None, "the other share still needs the SAs");
        assert_eq!(
            std::fs::read_to_string(h.dir.path().join("utab")).unwrap(),
            "",
            "our utab entry is gone"
        );
        let second = unmount(&[b.as_str()], &h.env, &mut release).unwrap();
        assert_eq!(second.remaining, 0);
        assert_eq!(second.released, Some(Ok("10.240.0.5: SAs deleted".into())));
        assert_eq!(asked, ["10.240.0.5".parse::<IpAddr>().unwrap()]);
        let log = std::fs::read_to_string(h.dir.path().join("umount.log")).unwrap();
        assert_eq!(log, format!("-i -v {a}\n-i {b}\n"));
    }

    #[test]
    fn a_failed_umount_keeps_its_code_and_the_sas() {
        let h = host(16);
        let c = h.dir.path().join("c").display().to_string();
        let mut release = |_: IpAddr| -> Result<String, String> { panic!("must not be asked") };
        let err = unmount(
            &[c.as_str(), "-t", "nfs4", "-N", "/proc/1/ns/mnt"],
            &h.env,
            &mut release,
        )
        .unwrap_err();
        assert_eq!(err.code, 16);
        let log = std::fs::read_to_string(h.dir.path().join("umount.log")).unwrap();
        assert_eq!(log, format!("-i {c}\n"), "-t and -N are not passed on");
    }

    #[test]
    fn a_daemon_that_cannot_be_reached_is_reported_not_fatal() {
        let h = host(0);
        let c = h.dir.path().join("c").display().to_string();
        let mut release = |_: IpAddr| Err("no daemon is listening".to_owned());
        let done = unmount(&[c.as_str()], &h.env, &mut release).unwrap();
        assert_eq!(done.peer, Some("10.240.0.6".parse().unwrap()));
        assert_eq!(done.released, Some(Err("no daemon is listening".into())));
    }

    #[test]
    fn usage_errors() {
        let h = host(0);
        let mut release = |_: IpAddr| Ok(String::new());
        for args in [&[][..], &["/a", "/b"], &["-x", "/a"], &["/a", "-t"]] {
            assert_eq!(
                unmount(args, &h.env, &mut release).unwrap_err().code,
                1,
                "{args:?}"
            );
        }
    }
}

//! The lock that serialises concurrent `mount.ibmshare` runs (as the IBM helper's lock file
//! does): two mounts of shares on the same file server must not both decide that IPsec is
//! missing and race to bring it up, and an "already mounted?" check must not interleave with
//! another run's mount.nfs.
//!
//! An exclusive `flock(2)` on a file that is never deleted: the kernel drops the lock when the
//! holder exits, even when it is killed, so there is never a stale lock to clean up.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Where the lock lives by default (next to the daemon's control socket).
pub const DEFAULT_LOCK_PATH: &str = "/run/ibm-ipsec/mount.lock";

/// How often a waiting run retries.
const POLL: Duration = Duration::from_millis(50);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run held it for the whole wait.
    #[error(
        "another mount.ibmshare still holds {} after {} s; try again when it has finished",
        path.display(),
        waited.as_secs()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long this run waited.
        waited: Duration,
    },
    /// The lock file could not be created or locked.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the lock (the file stays).
#[derive(Debug)]
pub struct MountLock {
    _lock: Flock<File>,
    waited: Duration,
}

impl MountLock {
    /// Takes the lock at `path`, creating the file (0600) and its directory (0700) if needed,
    /// waiting up to `timeout` for another holder; `on_wait` is called once if this run has
    /// to wait, so the user knows why nothing happens.
    pub fn acquire(
        path: &Path,
        timeout: Duration,
        mut on_wait: impl FnMut(),
    ) -> Result<MountLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let start = Instant::now();
        let mut told = false;
        loop {
            // A fresh open per attempt: Flock::lock consumes the file on failure.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                // Root opens it: a symlink planted at the path must not make us create or
                // lock another file.
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(path)
                .map_err(io)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(MountLock {
                        _lock: lock,
                        waited: start.elapsed(),
                    })
                }
                Err((_, Errno::EWOULDBLOCK)) => {}
                Err((_, Errno::EINTR)) => continue,
                Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(LockError::Busy {
                    path: path.to_owned(),
                    waited,
                });
            }
            if !told {
                told = true;
                on_wait();
            }
            std::thread::sleep(POLL.min(timeout.saturating_sub(waited)));
        }
    }

    /// How long this run waited for another one.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_files_and_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/ibm-ipsec/mount.lock");
        let held = MountLock::acquire(&path, Duration::ZERO, || {}).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        let mut waited = false;
        let err = MountLock::acquire(&path, Duration::from_millis(120), || waited = true)
            .unwrap_err()
            .to_string();
        assert!(waited, "the waiting run is told");
        assert!(err.contains("another mount.ibmshare"), "{err}");

        drop(held);
        let again = MountLock::acquire(&path, Duration::ZERO, || {}).unwrap();
        assert!(again.waited() < Duration::from_millis(50));
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        let path = tmp.path().join("mount.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = MountLock::acquire(&path, Duration::ZERO, || {}).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
        assert!(!victim.exists(), "the symlink's target was created");
    }

    #[test]
    fn a_waiting_run_proceeds_when_the_holder_finishes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mount.lock");
        let held = MountLock::acquire(&path, Duration::ZERO, || {}).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let lock = MountLock::acquire(&path, Duration::from_secs(10), || {}).unwrap();
        assert!(
            lock.waited() >= Duration::from_millis(250),
            "{:?}",
            lock.waited()
        );
        releaser.join().unwrap();
    }

    #[test]
    fn the_kernel_releases_the_lock_of_a_killed_holder() {
        // flock belongs to the open file description: a child process holding it and then
        // killed leaves nothing behind.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mount.lock");
        // The shell opens the file as fd 9, flock(1) locks that descriptor and exits, and
        // `sleep` inherits it: the lock then belongs to the process we kill.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec 9>\"$0\" && flock 9 && exec sleep 30"])
            .arg(&path)
            .spawn();
        let Ok(ref mut holder) = child else {
            eprintln!("SKIPPED killed-holder lock test: flock(1) (util-linux) not runnable");
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while MountLock::acquire(&path, Duration::ZERO, || {}).is_ok() {
            assert!(Instant::now() < deadline, "flock(1) never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
        MountLock::acquire(&path, Duration::from_secs(2), || {}).unwrap();
    }
}

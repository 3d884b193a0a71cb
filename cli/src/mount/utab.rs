//! Recording `helper=ibmshare` for a mount in libmount's utab, so that `umount DIR` runs
//! `/sbin/umount.ibmshare`.
//!
//! Why: a share mounted through `mount -t ibmshare` appears in the kernel's mount table as
//! `nfs4`, so util-linux's umount would otherwise run `umount.nfs4` and we would never learn
//! that a share of the file server went away. libmount keeps userspace-only mount options in
//! `/run/mount/utab` (one line per mount: `ID=… SRC=… TARGET=… ROOT=… OPTS=…`, keyed by the
//! kernel's mount ID), and on unmount it honours a `helper=TYPE` option there by running
//! `umount.TYPE` (util-linux `libmount/src/context_umount.c`, `prepare_helper_from_option`;
//! checked with util-linux 2.38: `umount DIR` then runs `/sbin/umount.ibmshare DIR [-nlfvr]`).
//! Helpers are expected to maintain utab for what they mount, as mount.nfs does.
//!
//! Updates follow libmount's protocol: an exclusive `flock` on `utab.lock` next to the file,
//! then a complete new file renamed over the old one, so readers never see half a line.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// libmount's default utab.
pub const DEFAULT_UTAB: &str = "/run/mount/utab";
/// libmount's override of the utab path (it reads it too, when not setuid).
pub const UTAB_ENV: &str = "LIBMOUNT_UTAB";
/// The option that makes umount(8) run `umount.ibmshare`.
pub const HELPER_OPTION: &str = "helper=ibmshare";

/// The utab path in use: `$LIBMOUNT_UTAB` or [`DEFAULT_UTAB`].
pub fn utab_path() -> PathBuf {
    super::env_path(UTAB_ENV).unwrap_or_else(|| PathBuf::from(DEFAULT_UTAB))
}

/// One mount as `/proc/self/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The kernel's mount ID (field 1), what utab entries are keyed by.
    pub id: u64,
    /// The root of the mount within its file system (field 4).
    pub root: String,
    /// The mount point (field 5), unescaped.
    pub target: String,
    /// The file system type (after the ` - ` separator).
    pub fstype: String,
    /// The mount source, unescaped.
    pub source: String,
}

/// The mounts in the text of `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let id = l.next()?.parse().ok()?;
            let (_parent, _dev) = (l.next()?, l.next()?);
            let root = unmangle(l.next()?);
            let target = unmangle(l.next()?);
            let mut r = right.split(' ');
            let fstype = r.next()?.to_owned();
            let source = unmangle(r.next()?);
            Some(MountInfo {
                id,
                root,
                target,
                fstype,
                source,
            })
        })
        .collect()
}

/// The NFS mount on `target` (the last one, as stacked mounts hide earlier ones).
pub fn nfs_mount_on<'a>(mounts: &'a [MountInfo], target: &str) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .rev()
        .find(|m| m.target == target && matches!(m.fstype.as_str(), "nfs" | "nfs4"))
}

/// Adds (or replaces) the utab entry for `mount` with [`HELPER_OPTION`], dropping entries
/// whose mount ID or target it supersedes.
pub fn record_helper(utab: &Path, mount: &MountInfo) -> std::io::Result<()> {
    update(utab, |lines| {
        lines.retain(|l| !same_mount(l, mount.id, &mount.target));
        lines.push(format!(
            "ID={} SRC={} TARGET={} ROOT={} OPTS={HELPER_OPTION}",
            mount.id,
            mangle(&mount.source),
            mangle(&mount.target),
            mangle(&mount.root),
        ));
    })
}

/// Removes the utab entries for `target` (after an unmount).
pub fn forget(utab: &Path, target: &str) -> std::io::Result<()> {
    if !utab.exists() {
        return Ok(());
    }
    update(utab, |lines| {
        lines.retain(|l| field(l, "TARGET").map(unmangle) != Some(target.to_owned()))
    })
}

fn same_mount(line: &str, id: u64, target: &str) -> bool {
    field(line, "ID").and_then(|v| v.parse::<u64>().ok()) == Some(id)
        || field(line, "TARGET").map(unmangle).as_deref() == Some(target)
}

/// The value of `KEY=value` in a utab line (public for the fuzz targets only).
#[doc(hidden)]
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// A share that `mount.ibmshare` mounted with IPsec and that is still mounted: utab
/// records [`HELPER_OPTION`] for it and the mount table still holds its mount ID on the same
/// target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureMount {
    /// The file server (the IPsec peer).
    pub server: IpAddr,
    /// `SERVER:/path`, as mounted.
    pub source: String,
    /// The mount point.
    pub target: String,
}

/// The secure mounts in the texts of utab and `/proc/self/mountinfo`. A utab line counts only
/// while mountinfo has its mount ID on the same target: libmount itself pairs utab entries
/// with mounts by ID, and a stale line (a mount gone with `umount -i` or `-l`) protects
/// nothing.
pub fn secure_mounts(utab_text: &str, mountinfo_text: &str) -> Vec<SecureMount> {
    let mounted = parse_mountinfo(mountinfo_text);
    utab_text
        .lines()
        .filter_map(|line| {
            let ours = field(line, "OPTS")?.split(',').any(|o| o == HELPER_OPTION);
            if !ours {
                return None;
            }
            let id: u64 = field(line, "ID")?.parse().ok()?;
            let target = unmangle(field(line, "TARGET")?);
            let source = unmangle(field(line, "SRC")?);
            let server = server_ip(&source)?;
            mounted
                .iter()
                .any(|m| m.id == id && m.target == target)
                .then_some(SecureMount {
                    server,
                    source,
                    target,
                })
        })
        .collect()
}

/// [`secure_mounts`] of this host's files; a missing utab means none.
pub fn secure_mounts_on_host(utab: &Path, mountinfo: &Path) -> std::io::Result<Vec<SecureMount>> {
    let utab_text = match std::fs::read_to_string(utab) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(secure_mounts(
        &utab_text,
        &std::fs::read_to_string(mountinfo)?,
    ))
}

/// The file server of an NFS mount source (`10.0.0.5:/x`, `[fd00::5]:/x`) when it is an IP
/// address.
pub(crate) fn server_ip(source: &str) -> Option<IpAddr> {
    let server = if source.starts_with('[') {
        source.split_once("]:")?.0.trim_start_matches('[')
    } else {
        source.split_once(':')?.0
    };
    server.parse().ok()
}

/// Runs `edit` on utab's lines under libmount's lock and replaces the file atomically.
fn update(utab: &Path, edit: impl FnOnce(&mut Vec<String>)) -> std::io::Result<()> {
    let dir = utab
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let mut lock_name = utab.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dir.join(lock_name))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;

    let mut lines: Vec<String> = match std::fs::read_to_string(utab) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    edit(&mut lines);
    let mut tmp_name = utab.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".ibm-ipsec.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A fresh file, never one that is already there (a symlink planted at the predictable
    // name would otherwise make root truncate and rewrite its target).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    for line in &lines {
        writeln!(file, "{line}")?;
    }
    file.sync_all()?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(&tmp, utab)
}

/// libmount's escaping of spaces, tabs, newlines and backslashes as `\ooo` (public for the
/// fuzz targets only).
#[doc(hidden)]
pub fn mangle(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The reverse of [`mangle`] (also what the kernel does in mountinfo; public for the fuzz
/// targets only).
#[doc(hidden)]
pub fn unmangle(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                u8::try_from(v).ok()
            });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
85 22 0:52 / /mnt/a rw,relatime shared:40 - nfs4 10.240.0.5:/share rw,vers=4.1
86 22 0:53 / /mnt/with\\040space rw - nfs4 10.240.0.5:/other rw
87 85 0:54 / /mnt/a rw - nfs 10.240.0.6:/over rw
";

    #[test]
    fn mountinfo_is_read_with_escapes_and_the_top_mount_wins() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[2].target, "/mnt/with space");
        assert_eq!(nfs_mount_on(&mounts, "/mnt/a").unwrap().id, 87);
        assert_eq!(nfs_mount_on(&mounts, "/mnt/with space").unwrap().id, 86);
        assert!(nfs_mount_on(&mounts, "/").is_none(), "not NFS");
        assert!(parse_mountinfo("junk\n1 2\nx y z - q\n").is_empty());
    }

    #[test]
    fn helper_entries_are_added_replaced_and_forgotten_keeping_others() {
        let tmp = tempfile::tempdir().unwrap();
        let utab = tmp.path().join("run/mount/utab");
        std::fs::create_dir_all(utab.parent().unwrap()).unwrap();
        let foreign = "ID=40 SRC=/dev/sdb1 TARGET=/media/usb ROOT=/ OPTS=uhelper=udisks2";
        std::fs::write(
            &utab,
            format!("{foreign}\nID=86 SRC=x TARGET=/old ROOT=/ OPTS=x-y\n"),
        )
        .unwrap();
        let mounts = parse_mountinfo(MOUNTINFO);
        record_helper(&utab, &mounts[2]).unwrap();
        let text = std::fs::read_to_string(&utab).unwrap();
        assert_eq!(
            text,
            format!(
                "{foreign}\nID=86 SRC=10.240.0.5:/other TARGET=/mnt/with\\040space ROOT=/ \
                 OPTS=helper=ibmshare\n"
            ),
            "the stale entry with the same ID is replaced"
        );
        record_helper(&utab, &mounts[1]).unwrap();
        forget(&utab, "/mnt/with space").unwrap();
        let text = std::fs::read_to_string(&utab).unwrap();
        assert!(text.starts_with(foreign), "{text}");
        assert!(
            text.contains("TARGET=/mnt/a ") && !text.contains("space"),
            "{text}"
        );
        assert!(tmp.path().join("run/mount/utab.lock").exists());
        forget(&tmp.path().join("absent"), "/x").unwrap();
    }

    #[test]
    fn symlinks_at_the_temporary_name_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let utab = tmp.path().join("utab");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let planted = tmp
            .path()
            .join(format!("utab.ibm-ipsec.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let mounts = parse_mountinfo(MOUNTINFO);
        record_helper(&utab, &mounts[1]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::read_to_string(&utab)
            .unwrap()
            .contains("OPTS=helper=ibmshare"));
        assert!(std::fs::symlink_metadata(&utab).unwrap().is_file());
    }

    #[test]
    fn secure_mounts_need_the_helper_option_and_a_live_mount() {
        let utab = "\
ID=85 SRC=10.240.0.5:/share TARGET=/mnt/a ROOT=/ OPTS=helper=ibmshare
ID=86 SRC=10.240.0.5:/other TARGET=/mnt/with\\040space ROOT=/ OPTS=x-foo,helper=ibmshare
ID=40 SRC=/dev/sdb1 TARGET=/media/usb ROOT=/ OPTS=uhelper=udisks2
ID=99 SRC=10.240.0.7:/gone TARGET=/mnt/gone ROOT=/ OPTS=helper=ibmshare
ID=87 SRC=10.240.0.6:/over TARGET=/elsewhere ROOT=/ OPTS=helper=ibmshare
ID=garbage SRC=10.240.0.5:/x TARGET=/mnt/a OPTS=helper=ibmshare
";
        let found = secure_mounts(utab, MOUNTINFO);
        let targets: Vec<&str> = found.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/mnt/a", "/mnt/with space"], "{found:?}");
        assert_eq!(found[0].server, "10.240.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(found[1].source, "10.240.0.5:/other");
        assert!(secure_mounts("", MOUNTINFO).is_empty());
        assert_eq!(server_ip("[fd00::5]:/v6"), Some("fd00::5".parse().unwrap()));
        assert_eq!(server_ip("files.example:/x"), None);

        let tmp = tempfile::tempdir().unwrap();
        let (u, mi) = (tmp.path().join("utab"), tmp.path().join("mountinfo"));
        std::fs::write(&mi, MOUNTINFO).unwrap();
        assert!(
            secure_mounts_on_host(&u, &mi).unwrap().is_empty(),
            "no utab"
        );
        std::fs::write(&u, utab).unwrap();
        assert_eq!(secure_mounts_on_host(&u, &mi).unwrap(), found);
        assert!(secure_mounts_on_host(&u, &tmp.path().join("none")).is_err());
    }

    #[test]
    fn mangling_round_trips() {
        for s in ["/plain", "/a b\tc\nd\\e", "ünï"] {
            assert_eq!(unmangle(&mangle(s)), s);
        }
        assert_eq!(mangle("a b"), "a\\040b");
        assert_eq!(unmangle("\\777x\\1"), "\\777x\\1", "not a byte: kept");
    }
}

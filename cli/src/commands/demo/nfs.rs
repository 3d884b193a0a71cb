//! The demo's NFS step, when the kernel has an NFS client and nfsd and nfs-utils is at
//! hand: the kernel NFS server (NFSv4.2 only, like the file service) in the file server's
//! namespace, and `mount.ibmshare … -o secure=true` on the client.
//!
//! The server's daemons run in a mount namespace of their own (one `ip netns exec` shell):
//! nfsd's control file system, the exported tmpfs and nfs-utils' state directory
//! (`/var/lib/nfs`, bind-mounted from the work directory) exist only there, so the host's
//! NFS configuration is neither read nor changed. The client mount is made from a thread in
//! the client namespace, so it lands in the host's mount table (as on a real client) and is
//! lazily unmounted if the demo stops early.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::lab::{self, Namespace};

/// The nfs-utils programs the step needs, and the library path they need.
#[derive(Debug, Clone)]
pub(super) struct NfsUtils {
    mount_nfs4: PathBuf,
    exportfs: PathBuf,
    rpc_nfsd: PathBuf,
    rpc_mountd: PathBuf,
    /// For nfs-utils unpacked from Debian packages rather than installed.
    library_path: Option<PathBuf>,
}

/// Why the NFS step cannot run here, or the tools it runs with. `root` is a directory where
/// nfs-utils' Debian packages were unpacked (`scripts/demo` does that); otherwise the
/// installed programs are used.
pub(super) fn probe(root: Option<&Path>) -> Result<NfsUtils, String> {
    let filesystems = |name: &str| {
        std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)))
    };
    let load = |module: &str| {
        let _ = Command::new("modprobe").args(["-q", module]).status();
    };
    if !filesystems("nfs4") {
        load("nfsv4");
    }
    if !filesystems("nfsd") {
        load("nfsd");
    }
    let mut missing = Vec::new();
    if !filesystems("nfs4") {
        missing.push("no NFS client (no nfs4 in /proc/filesystems; modprobe nfsv4 failed)");
    }
    if !filesystems("nfsd") {
        missing.push("no NFS server (no nfsd in /proc/filesystems; modprobe nfsd failed)");
    }
    if !missing.is_empty() {
        return Err(format!("this kernel has {}", missing.join(" and ")));
    }
    let dirs: Vec<PathBuf> = match root {
        Some(r) => vec![r.join("sbin"), r.join("usr/sbin")],
        None => vec![PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")],
    };
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    let (Some(mount_nfs4), Some(exportfs), Some(rpc_nfsd), Some(rpc_mountd)) = (
        find("mount.nfs4").or_else(|| find("mount.nfs")),
        find("exportfs"),
        find("rpc.nfsd"),
        find("rpc.mountd"),
    ) else {
        return Err(match root {
            Some(r) => format!("nfs-utils is not unpacked in {}", r.display()),
            None => "nfs-utils is not installed (mount.nfs4 from nfs-common, exportfs, rpc.nfsd \
                     and rpc.mountd from nfs-kernel-server; scripts/demo fetches them)"
                .to_owned(),
        });
    };
    Ok(NfsUtils {
        mount_nfs4,
        exportfs,
        rpc_nfsd,
        rpc_mountd,
        library_path: root.and_then(multiarch_lib_dir),
    })
}

/// `ROOT/usr/lib/<triplet>-linux-gnu`, where unpacked Debian packages keep their libraries.
fn multiarch_lib_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root.join("usr/lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.to_string_lossy().ends_with("-linux-gnu"))
}

impl NfsUtils {
    fn env(&self, cmd: &mut Command) {
        if let Some(lib) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
    }
}

/// Starts the kernel NFS server in `share`, exporting a fresh tmpfs to `clients` (a CIDR).
/// Returns the exported directory (as the server sees it).
pub(super) fn start_server(
    share: &Namespace,
    tools: &NfsUtils,
    work: &Path,
    clients: &str,
) -> anyhow::Result<PathBuf> {
    let state = work.join("nfs-server-state");
    let export = work.join("nfs-export");
    for d in [
        state.join("v4recovery"),
        state.join("rpc_pipefs"),
        export.clone(),
    ] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    // Shell variables carry the paths, so no path is ever parsed as shell syntax.
    let script = r#"
set -e
mkdir -p /proc/fs/nfsd /var/lib/nfs
mount -t nfsd nfsd /proc/fs/nfsd
# NFSv4's grace period delays the first OPEN; 10 s is the kernel's minimum.
echo 10 > /proc/fs/nfsd/nfsv4gracetime 2>/dev/null || true
echo 10 > /proc/fs/nfsd/nfsv4leasetime 2>/dev/null || true
mount --bind "$STATE" /var/lib/nfs
: > /var/lib/nfs/etab
: > /var/lib/nfs/rmtab
mount -t tmpfs -o size=256m ibm-ipsec-demo "$EXPORT"
echo "hello from the file server" > "$EXPORT/hello.txt"
"$EXPORTFS" -i -o rw,fsid=0,no_subtree_check,no_root_squash,insecure "$CLIENTS:$EXPORT"
"$MOUNTD" -N 3 --no-udp
"$NFSD" -N 3 --no-udp 4
"#;
    let mut cmd = share.command("sh");
    cmd.args(["-c", script])
        .env("STATE", &state)
        .env("EXPORT", &export)
        .env("CLIENTS", clients)
        .env("EXPORTFS", &tools.exportfs)
        .env("MOUNTD", &tools.rpc_mountd)
        .env("NFSD", &tools.rpc_nfsd);
    tools.env(&mut cmd);
    let (ok, out) = lab::run_interruptible(
        &mut cmd,
        &work.join("nfs-server.log"),
        Duration::from_secs(30),
    )?;
    if !ok {
        bail!("starting the kernel NFS server failed:\n{}", out.trim());
    }
    Ok(export)
}

/// A share mounted on the client through `mount.ibmshare`; lazily unmounted on drop if the
/// demo did not unmount it.
pub(super) struct Mounted {
    dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// The mount point.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .args(["-i", "-l", "-f"])
                .arg(&self.dir)
                .status();
        }
    }
}

/// Everything `mount.ibmshare` and `umount.ibmshare` need from the demo's environment.
pub(super) struct Helpers {
    /// `mount.ibmshare` (a symlink to this binary).
    pub(super) mount: PathBuf,
    /// `umount.ibmshare`.
    pub(super) umount: PathBuf,
    /// Environment: control socket, CA directory, NFS mount program.
    pub(super) env: Vec<(String, String)>,
}

/// Runs `mount.ibmshare SERVER:/ DIR -o secure=true,vers=4.2 -v` from the client namespace,
/// as mount(8) would for `mount -t ibmshare`. Returns the guard and what the helper said.
pub(super) fn mount(
    client: &Namespace,
    helpers: &Helpers,
    tools: &NfsUtils,
    server: &str,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<(Mounted, String)> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new(&helpers.mount);
    cmd.arg(format!("{server}:/"))
        .arg(dir)
        .args(["-o", "secure=true,vers=4.2", "-v"])
        .env("IBM_IPSEC_MOUNT_NFS", &tools.mount_nfs4)
        .envs(helpers.env.iter().map(|(k, v)| (k, v)));
    tools.env(&mut cmd);
    let started = Instant::now();
    let (ok, out) = client_run(client, cmd, log, Duration::from_secs(120))?;
    let guard = Mounted {
        dir: dir.to_owned(),
        mounted: ok,
    };
    if !ok {
        bail!("mount.ibmshare failed:\n{}", out.trim());
    }
    Ok((
        guard,
        format!("{}(took {:.1} s)", out, started.elapsed().as_secs_f64()),
    ))
}

/// `umount.ibmshare DIR -v` from the client namespace, as umount(8) runs it for a share
/// mounted with `secure=true`.
pub(super) fn unmount(
    client: &Namespace,
    helpers: &Helpers,
    mounted: &mut Mounted,
    log: &Path,
) -> anyhow::Result<String> {
    let mut cmd = Command::new(&helpers.umount);
    cmd.arg(&mounted.dir)
        .arg("-v")
        .envs(helpers.env.iter().map(|(k, v)| (k, v)));
    let (ok, out) = client_run(client, cmd, log, Duration::from_secs(60))?;
    if !ok {
        bail!("umount.ibmshare failed:\n{}", out.trim());
    }
    mounted.mounted = false;
    Ok(out)
}

/// Runs `cmd` from a thread inside the client's network namespace but in the host's mount
/// namespace (`ip netns exec` would give it a private one that dies with it).
fn client_run(
    client: &Namespace,
    mut cmd: Command,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<(bool, String)> {
    let log = log.to_owned();
    client.within(move || {
        lab::run_interruptible(&mut cmd, &log, limit).map_err(std::io::Error::other)
    })
}

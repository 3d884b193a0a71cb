//! Scenario: the `ibm-ipsec` binary run as `mount.ibmshare` and `umount.ibmshare` (symlinks,
//! as dist/install.sh installs them), with real fake `mount.nfs4` / `umount` programs (shell
//! scripts) standing in for nfs-utils and util-linux: the argv\[0\] dispatch, the arguments
//! mount(8) passes, the options handed to mount.nfs4, and the IBM helper's exit codes.
//!
//! Needs the `ibm-ipsec` binary (`cargo build --bin ibm-ipsec` or `cargo test --workspace`).
//! Secure mounts (IPsec up before mount.nfs4) are covered by the unit tests of
//! `ibm_ipsec::mount` and end to end by `ibm-ipsec demo` (tests/tests/demo.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ibm_ipsec_tests::workspace_binary;

struct Helpers {
    dir: tempfile::TempDir,
}

impl Helpers {
    fn new() -> Helpers {
        let dir = tempfile::tempdir().unwrap();
        let bin = workspace_binary("ibm-ipsec").unwrap();
        for name in ["mount.ibmshare", "umount.ibmshare"] {
            std::os::unix::fs::symlink(&bin, dir.path().join(name)).unwrap();
        }
        Helpers { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A script that logs its arguments to NAME.log and exits with `code`.
    fn fake(&self, name: &str, code: i32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{}'\nexit {code}\n",
                self.path(&format!("{name}.log")).display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn log(&self, name: &str) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.path(&format!("{name}.log"))).ok()?;
        Some(text.lines().map(str::to_owned).collect())
    }

    fn run(&self, helper: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(self.path(helper));
        cmd.args(args)
            .env_remove("IBM_IPSEC_MOUNT_NFS")
            .env_remove("IBM_IPSEC_UMOUNT")
            // Never touch the host's utab or lock from a test.
            .env("LIBMOUNT_UTAB", self.path("utab"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn as_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED mount helper scenario: mount.ibmshare refuses to run without root");
        return false;
    }
    true
}

#[test]
fn mount_ibmshare_passes_the_nfs_options_and_maps_exit_codes() {
    if !as_root() {
        return;
    }
    let h = Helpers::new();
    let ok = h.fake("mount-nfs-ok", 0);
    let out = h.run(
        "mount.ibmshare",
        &["files.example:/export", "/mnt/x", "-o", "vers=4.1,hard"],
        &[("IBM_IPSEC_MOUNT_NFS", &ok)],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        h.log("mount-nfs-ok").unwrap(),
        [
            "files.example:/export",
            "/mnt/x",
            "-o",
            "sec=sys,vers=4.1,hard"
        ]
    );

    let failing = h.fake("mount-nfs-32", 32);
    let out = h.run(
        "mount.ibmshare",
        &["files.example:/export", "/mnt/x", "-v"],
        &[("IBM_IPSEC_MOUNT_NFS", &failing)],
    );
    assert_eq!(out.status.code(), Some(132), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mount.ibmshare: ") && stderr.contains("32"),
        "{stderr}"
    );
}

#[test]
fn mount_ibmshare_usage_errors_exit_6_and_a_missing_nfs_client_5() {
    if !as_root() {
        return;
    }
    let h = Helpers::new();
    let out = h.run("mount.ibmshare", &["10.0.0.1:/a"], &[]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("mount point"));
    let out = h.run(
        "mount.ibmshare",
        &["10.0.0.1:/a", "/m", "-o", "secure=true"],
        &[("IBM_IPSEC_MOUNT_NFS", &h.path("no-such-program"))],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
}

#[test]
fn umount_ibmshare_unmounts_with_umount_i() {
    if !as_root() {
        return;
    }
    let h = Helpers::new();
    let umount = h.fake("umount", 0);
    let target = h.dir.path().display().to_string();
    let out = h.run(
        "umount.ibmshare",
        &[&target, "-v"],
        &[
            ("IBM_IPSEC_UMOUNT", &umount),
            ("IBM_IPSEC_CONTROL", &h.path("no-daemon.sock")),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.log("umount").unwrap(), ["-i", "-v", &target]);

    let failing = h.fake("umount-fails", 16);
    let out = h.run(
        "umount.ibmshare",
        &[&target],
        &[("IBM_IPSEC_UMOUNT", &failing)],
    );
    assert_eq!(out.status.code(), Some(16), "{out:?}");
}

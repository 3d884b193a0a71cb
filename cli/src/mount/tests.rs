//! The mount flow against a real fake `mount.nfs4`: an executable shell script in a temp dir
//! that records its arguments (and whether IPsec was already up when it ran) and exits with
//! a chosen code.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    env: MountEnv,
}

impl Fixture {
    /// A host with a fake `sbin/mount.nfs4` and `sbin/mount.nfs` that exit with `code`, an
    /// empty mount table and no share.conf.
    fn new(code: i32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sbin = dir.path().join("sbin");
        std::fs::create_dir(&sbin).unwrap();
        for name in ["mount.nfs4", "mount.nfs"] {
            let script = format!(
                "#!/bin/sh\n\
                 # what mount.ibmshare ran, and whether IPsec was up at that moment\n\
                 echo \"$0\" > '{log}'\n\
                 for a in \"$@\"; do echo \"$a\" >> '{log}'; done\n\
                 if [ -e '{up}' ]; then echo ipsec-was-up >> '{log}'; fi\n\
                 [ {code} -eq 0 ] && echo \"99 22 0:60 / $2 rw - nfs4 $1 rw\" >> '{mountinfo}'\n\
                 exit {code}\n",
                log = dir.path().join("nfs.log").display(),
                up = dir.path().join("ipsec-up").display(),
                mountinfo = dir.path().join("mountinfo").display(),
            );
            let path = sbin.join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let table = dir.path().join("mounts");
        std::fs::write(&table, "proc /proc proc rw 0 0\n").unwrap();
        std::fs::write(
            dir.path().join("mountinfo"),
            "22 1 0:21 / / rw - ext4 /dev/vda1 rw\n",
        )
        .unwrap();
        let env = MountEnv {
            nfs_program: None,
            nfs_dirs: vec![dir.path().join("no-such-dir"), sbin],
            mount_table: table,
            mountinfo: dir.path().join("mountinfo"),
            utab: Some(dir.path().join("run/mount/utab")),
            lock_path: dir.path().join("run/mount.lock"),
            lock_timeout: Duration::from_secs(10),
            config_candidates: vec![
                dir.path().join("ibmcloud/share.conf"),
                dir.path().join("ibmshare/share.conf"),
            ],
            is_root: true,
        };
        Fixture { dir, env }
    }

    /// The fake's argv (program first), or None if it never ran.
    fn nfs_run(&self) -> Option<Vec<String>> {
        let log = std::fs::read_to_string(self.dir.path().join("nfs.log")).ok()?;
        Some(log.lines().map(str::to_owned).collect())
    }
}

/// The peer and the share.conf each protect call got.
type Calls = Rc<RefCell<Vec<(IpAddr, Option<PathBuf>)>>>;

/// Records each protect call and marks IPsec as up (a file the fake mount.nfs looks for), or
/// fails with a chosen error.
struct FakeDaemon {
    up_marker: PathBuf,
    calls: Calls,
    fail: Option<ProtectError>,
}

impl FakeDaemon {
    fn new(f: &Fixture) -> FakeDaemon {
        FakeDaemon {
            up_marker: f.dir.path().join("ipsec-up"),
            calls: Rc::default(),
            fail: None,
        }
    }
}

impl Protector for FakeDaemon {
    fn protect(&mut self, peer: IpAddr, conf: &LoadedConf) -> Result<String, ProtectError> {
        self.calls.borrow_mut().push((peer, conf.source.clone()));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        std::fs::write(&self.up_marker, "").unwrap();
        Ok(format!("IPsec up with {peer}"))
    }
}

#[test]
fn secure_mount_brings_ipsec_up_first_then_runs_mount_nfs4_without_our_options() {
    let f = Fixture::new(0);
    let mut daemon = FakeDaemon::new(&f);
    let done = mount(
        &[
            "10.240.0.5:/share",
            "/mnt/a",
            "-v",
            "-o",
            "secure=true,vers=4.1",
        ],
        &f.env,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(
        done,
        Mounted::Mounted {
            share: "10.240.0.5:/share".into(),
            dir: "/mnt/a".into(),
            protected: Some("IPsec up with 10.240.0.5".into()),
        }
    );
    assert_eq!(daemon.calls.borrow().len(), 1);
    assert_eq!(
        daemon.calls.borrow()[0].0,
        "10.240.0.5".parse::<IpAddr>().unwrap()
    );
    let run = f.nfs_run().expect("mount.nfs4 ran");
    assert!(run[0].ends_with("sbin/mount.nfs4"), "{run:?}");
    assert_eq!(
        run[1..],
        [
            "10.240.0.5:/share",
            "/mnt/a",
            "-o",
            "sec=sys,vers=4.1",
            "-v",
            "ipsec-was-up"
        ]
    );
    // umount will run umount.ibmshare for it.
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("run/mount/utab")).unwrap(),
        "ID=99 SRC=10.240.0.5:/share TARGET=/mnt/a ROOT=/ OPTS=helper=ibmshare\n"
    );
}

#[test]
fn plain_mounts_leave_ipsec_alone_and_nfsv3_uses_mount_nfs() {
    let f = Fixture::new(0);
    let mut daemon = FakeDaemon::new(&f);
    mount(&["files:/x", "/m", "-o", "vers=3"], &f.env, &mut daemon).unwrap();
    assert!(daemon.calls.borrow().is_empty());
    assert!(
        !f.dir.path().join("run/mount/utab").exists(),
        "a plain mount is umount.nfs's business"
    );
    let run = f.nfs_run().unwrap();
    assert!(run[0].ends_with("sbin/mount.nfs"), "{run:?}");
    assert_eq!(run[1..], ["files:/x", "/m", "-o", "sec=sys,vers=3"]);
}

#[test]
fn mount_nfs_exit_codes_become_100_plus_n() {
    let f = Fixture::new(32);
    let mut daemon = FakeDaemon::new(&f);
    let err = mount(&["10.0.0.1:/a", "/m", "-o", "secure"], &f.env, &mut daemon).unwrap_err();
    assert_eq!(err.status, ExitStatus::NfsMount(32));
    assert_eq!(err.status.code(), 132);
    assert!(err.message.contains("exit code 32"), "{}", err.message);
}

#[test]
fn an_ipsec_failure_keeps_its_code_and_nothing_is_mounted() {
    for status in [
        ExitStatus::MetadataUnreachable,
        ExitStatus::Token,
        ExitStatus::Certificate,
        ExitStatus::IpsecSetup,
    ] {
        let f = Fixture::new(0);
        let mut daemon = FakeDaemon::new(&f);
        daemon.fail = Some(ProtectError {
            status,
            message: "no answer from http://169.254.169.254".into(),
        });
        let err = mount(
            &["10.0.0.1:/a", "/m", "-o", "secure=true"],
            &f.env,
            &mut daemon,
        )
        .unwrap_err();
        assert_eq!(err.status, status);
        assert!(
            err.message.contains("10.0.0.1:/a") && err.message.contains("no answer"),
            "{}",
            err.message
        );
        assert_eq!(f.nfs_run(), None, "mount.nfs4 must not run without IPsec");
    }
}

#[test]
fn an_already_mounted_share_is_a_success_with_nothing_done() {
    let f = Fixture::new(0);
    std::fs::write(
        &f.env.mount_table,
        "10.240.0.5:/share/ /mnt/other nfs4 rw,vers=4.1 0 0\n",
    )
    .unwrap();
    let mut daemon = FakeDaemon::new(&f);
    let done = mount(
        &["10.240.0.5:/share", "/mnt/a", "-o", "secure=true"],
        &f.env,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(
        done,
        Mounted::AlreadyMounted {
            share: "10.240.0.5:/share".into()
        }
    );
    assert!(daemon.calls.borrow().is_empty());
    assert_eq!(f.nfs_run(), None);
    // Another export of the same server is not "already mounted".
    mount(
        &["10.240.0.5:/other", "/mnt/b", "-o", "secure=true"],
        &f.env,
        &mut daemon,
    )
    .unwrap();
    assert_eq!(daemon.calls.borrow().len(), 1);
}

#[test]
fn share_conf_is_read_from_the_docs_path_first() {
    let f = Fixture::new(0);
    for (dir, duration) in [("ibmcloud", 600), ("ibmshare", 900)] {
        let d = f.dir.path().join(dir);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("share.conf"),
            format!("certificate_duration_seconds = {duration}\n"),
        )
        .unwrap();
    }
    let mut daemon = FakeDaemon::new(&f);
    mount(&["10.0.0.1:/a", "/m", "-o", "secure"], &f.env, &mut daemon).unwrap();
    assert_eq!(
        daemon.calls.borrow()[0].1.as_deref(),
        Some(f.dir.path().join("ibmcloud/share.conf").as_path())
    );
    // A broken file is an error naming it, not silently the defaults.
    std::fs::write(
        f.dir.path().join("ibmcloud/share.conf"),
        "certificate_duration_seconds = 5\n",
    )
    .unwrap();
    let err = mount(&["10.0.0.2:/a", "/m", "-o", "secure"], &f.env, &mut daemon).unwrap_err();
    assert_eq!(err.status, ExitStatus::Generic);
    assert!(err.message.contains("share.conf"), "{}", err.message);
}

#[test]
fn usage_root_and_installation_errors_have_their_codes() {
    let f = Fixture::new(0);
    let mut daemon = FakeDaemon::new(&f);
    let err = mount(&["10.0.0.1:/a"], &f.env, &mut daemon).unwrap_err();
    assert_eq!(err.status.code(), 6);

    let mut env = f.env.clone();
    env.is_root = false;
    let err = mount(&["10.0.0.1:/a", "/m"], &env, &mut daemon).unwrap_err();
    assert_eq!(err.status.code(), 7);

    let mut env = f.env.clone();
    env.nfs_dirs = vec![f.dir.path().join("nowhere")];
    let err = mount(&["10.0.0.1:/a", "/m", "-o", "secure"], &env, &mut daemon).unwrap_err();
    assert_eq!(err.status.code(), 5);
    assert!(err.message.contains("nfs-common"), "{}", err.message);
    assert!(daemon.calls.borrow().is_empty(), "checked before IPsec");

    let mut env = f.env.clone();
    env.nfs_program = Some(f.dir.path().join("mounts")); // not executable
    let err = mount(&["10.0.0.1:/a", "/m"], &env, &mut daemon).unwrap_err();
    assert_eq!(err.status.code(), 5);
    assert!(err.message.contains(NFS_PROGRAM_ENV), "{}", err.message);
}

#[test]
fn fake_mode_brings_nothing_up_and_runs_nothing() {
    let f = Fixture::new(0);
    let mut daemon = FakeDaemon::new(&f);
    let done = mount(
        &["10.0.0.1:/a", "/m", "-f", "-o", "secure=true"],
        &f.env,
        &mut daemon,
    )
    .unwrap();
    assert!(matches!(done, Mounted::Fake { ref command } if command.contains("-o sec=sys")));
    assert!(daemon.calls.borrow().is_empty());
    assert_eq!(f.nfs_run(), None);
}

#[test]
fn concurrent_mounts_wait_for_the_lock() {
    let f = Fixture::new(0);
    let held = MountLock::acquire(&f.env.lock_path, Duration::ZERO, || {}).unwrap();
    let mut env = f.env.clone();
    env.lock_timeout = Duration::from_millis(200);
    let mut daemon = FakeDaemon::new(&f);
    let err = mount(&["10.0.0.1:/a", "/m", "-o", "secure"], &env, &mut daemon).unwrap_err();
    assert_eq!(err.status, ExitStatus::Generic);
    assert!(
        err.message.contains("another mount.ibmshare"),
        "{}",
        err.message
    );
    assert!(daemon.calls.borrow().is_empty() && f.nfs_run().is_none());

    // The holder finishes while we wait: the mount proceeds.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let started = std::time::Instant::now();
    mount(&["10.0.0.1:/a", "/m", "-o", "secure"], &f.env, &mut daemon).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(daemon.calls.borrow().len(), 1);
    releaser.join().unwrap();
}

#[test]
fn the_nfs_program_override_is_used_as_is() {
    let f = Fixture::new(0);
    let mut env = f.env.clone();
    env.nfs_program = Some(f.dir.path().join("sbin/mount.nfs"));
    env.nfs_dirs.clear();
    let mut daemon = FakeDaemon::new(&f);
    mount(&["10.0.0.1:/a", "/m"], &env, &mut daemon).unwrap();
    assert!(f.nfs_run().unwrap()[0].ends_with("sbin/mount.nfs"));
}

#[test]
fn environment_overrides_are_ignored_in_a_setuid_process() {
    let set = Some(std::ffi::OsString::from("/tmp/evil"));
    assert_eq!(
        path_unless_setid(set.clone(), false),
        Some(PathBuf::from("/tmp/evil"))
    );
    assert_eq!(path_unless_setid(set, true), None);
    assert_eq!(path_unless_setid(Some("".into()), false), None);
    assert_eq!(path_unless_setid(None, false), None);
}

//! Network namespaces as lab hosts, joined by veth pairs.
//!
//! Names: every namespace is `ibmlab-<pid>-<lab>-<role>`, where `<pid>` is the test process
//! that created it. A lab removes its namespaces when dropped (also during a panic); a lab
//! created after a crash removes those whose creating process is gone. Addresses come from
//! 10.213.0.0/16 and exist only on veth ends inside our own namespaces, which no traffic
//! leaves: two labs may even use the same subnet without seeing each other.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{LabError, Result};
use crate::process::{self, LabProcess};

const PREFIX: &str = "ibmlab-";
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// One lab: a set of namespaces and a scratch directory, all removed on drop.
#[derive(Debug)]
pub struct Lab {
    inner: Arc<LabInner>,
}

#[derive(Debug)]
struct LabInner {
    id: String,
    subnet: u8,
    dir: tempfile::TempDir,
    namespaces: Mutex<Vec<String>>,
    next_host: AtomicU32,
    next_link: AtomicU32,
    next_log: AtomicU32,
}

/// A host of the lab: one network namespace. Cheap to clone; the [`Lab`] owns the namespace.
#[derive(Debug, Clone)]
pub struct Host {
    ns: String,
    role: String,
    addr: Ipv4Addr,
    lab: Arc<LabInner>,
}

impl Lab {
    /// A fresh lab if this machine can host one, else `None` after printing why to stderr
    /// (tests then return early: skipped loudly, never silently). Needs root and a working
    /// `ip netns`. Also removes namespaces left behind by crashed test processes.
    pub fn require_root() -> Option<Lab> {
        let test = std::thread::current()
            .name()
            .unwrap_or("lab test")
            .to_owned();
        if let Some(reason) = unavailable() {
            // Straight to the process's stderr: libtest captures eprintln! of passing tests,
            // and a skip must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
            return None;
        }
        SWEEP.call_once(sweep_stale);
        match Lab::new() {
            Ok(lab) => Some(lab),
            Err(e) => panic!("{test}: cannot create the lab: {e}"),
        }
    }

    fn new() -> Result<Lab> {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .map_err(|e| LabError::io(std::env::temp_dir(), e))?;
        Ok(Lab {
            inner: Arc::new(LabInner {
                id,
                subnet: u8::try_from(n % 250).unwrap_or(0) + 1,
                dir,
                namespaces: Mutex::new(Vec::new()),
                next_host: AtomicU32::new(1),
                next_link: AtomicU32::new(0),
                next_log: AtomicU32::new(0),
            }),
        })
    }

    /// The lab's scratch directory (configs, logs, captures); removed with the lab.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// A new namespace named after `role` ("client", "share", …) with loopback up. Its address
    /// ([`Host::addr`]) is assigned now and configured by [`Lab::link`].
    pub fn host(&self, role: &str) -> Result<Host> {
        let k = self.inner.next_host.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}-{role}", self.inner.id);
        ip(&["netns", "add", &ns])?;
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let host_byte =
            u8::try_from(k).map_err(|_| LabError::Usage("more than 255 hosts".into()))?;
        Ok(Host {
            ns,
            role: role.to_owned(),
            addr: Ipv4Addr::new(10, 213, self.inner.subnet, host_byte),
            lab: Arc::clone(&self.inner),
        })
    }

    /// Joins two hosts with a veth pair, each end carrying its host's address (/24), and
    /// returns the interface name, which is the same on both sides. One link per host: a host
    /// has one address.
    pub fn link(&self, a: &Host, b: &Host) -> Result<String> {
        let k = self.inner.next_link.fetch_add(1, Ordering::Relaxed);
        let iface = format!("lab{k}");
        // Created inside the namespaces, so the names never meet the host's own interfaces.
        ip(&[
            "-n", &a.ns, "link", "add", &iface, "type", "veth", "peer", "name", &iface, "netns",
            &b.ns,
        ])?;
        for h in [a, b] {
            ip(&[
                "-n",
                &h.ns,
                "addr",
                "add",
                &format!("{}/24", h.addr),
                "dev",
                &iface,
            ])?;
            ip(&["-n", &h.ns, "link", "set", &iface, "up"])?;
        }
        Ok(iface)
    }

    /// The usual topology: `client` (10.213.S.1) and `share` (10.213.S.2) on one veth link
    /// named `lab0`.
    pub fn two_hosts(&self) -> Result<(Host, Host)> {
        let client = self.host("client")?;
        let share = self.host("share")?;
        self.link(&client, &share)?;
        Ok((client, share))
    }
}

impl Drop for LabInner {
    fn drop(&mut self) {
        let namespaces =
            std::mem::take(self.namespaces.get_mut().unwrap_or_else(|p| p.into_inner()));
        for ns in namespaces {
            remove_namespace(&ns);
        }
    }
}

impl Host {
    /// The namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The role given at creation ("client", "share", …).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The host's address on its link.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The lab's scratch directory.
    pub fn lab_dir(&self) -> &Path {
        self.lab.dir.path()
    }

    /// Adds an extra address inside the namespace, e.g. `169.254.169.254/32` on `lo` for the
    /// metadata test server (`DESIGN.md`, test lab).
    pub fn add_address(&self, cidr: &str, iface: &str) -> Result<()> {
        ip(&["-n", &self.ns, "addr", "add", cidr, "dev", iface]).map(drop)
    }

    /// A command that runs `program` inside this host's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Runs `args` in the namespace to completion; its stdout, or an error with its output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Usage("empty command".into()))?;
        process::run(self.command(program).args(rest))
    }

    /// Starts `args` in the namespace; stopped when the returned guard drops. Output goes to a
    /// log file in the lab directory ([`LabProcess::output`]).
    pub fn spawn(&self, args: &[&str]) -> Result<LabProcess> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Usage("empty command".into()))?;
        let mut cmd = self.command(program);
        cmd.args(rest);
        let name = Path::new(program)
            .file_name()
            .map_or("proc".into(), |n| n.to_string_lossy().into_owned());
        LabProcess::spawn(cmd, &self.log_file(&name))
    }

    /// A fresh file name in the lab directory for a log of `what` on this host.
    pub(crate) fn log_file(&self, what: &str) -> PathBuf {
        let n = self.lab.next_log.fetch_add(1, Ordering::Relaxed);
        self.lab
            .dir
            .path()
            .join(format!("{}-{what}-{n}.log", self.role))
    }
}

fn ip(args: &[&str]) -> Result<String> {
    process::run(Command::new("ip").args(args))
}

/// Why a lab cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Some(format!(
            "needs root for network namespaces (euid {euid}); CI runs these as root"
        ));
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` (iproute2) not runnable: {e}")),
    }
}

/// Kills what runs in a namespace of ours, then deletes it.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // Processes in our own namespace: started by this lab.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(e) = ip(&["netns", "del", ns]) {
        eprintln!("lab: could not delete namespace {ns}: {e}");
    }
}

/// Removes `ibmlab-<pid>-…` namespaces whose creating process no longer exists.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = kill(Pid::from_raw(pid), None).is_ok();
        if !alive {
            eprintln!("lab: removing stale namespace {name} (process {pid} is gone)");
            remove_namespace(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_created_linked_and_removed() {
        let Some(lab) = Lab::require_root() else {
            return;
        };
        let (client, share) = lab.two_hosts().unwrap();
        assert_ne!(client.addr(), share.addr());
        let out = client
            .run(&["ping", "-c", "1", "-W", "2", &share.addr().to_string()])
            .unwrap();
        assert!(out.contains("1 received"), "{out}");
        share.add_address("169.254.169.254/32", "lo").unwrap();
        let out = share
            .run(&["ip", "-4", "addr", "show", "dev", "lo"])
            .unwrap();
        assert!(out.contains("169.254.169.254/32"), "{out}");
        let names = [client.namespace().to_owned(), share.namespace().to_owned()];
        drop((client, share));
        drop(lab);
        let list = ip(&["netns", "list"]).unwrap();
        for n in names {
            assert!(
                !list
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&n)),
                "{n} left behind"
            );
        }
    }

    #[test]
    fn cleanup_runs_when_a_test_panics() {
        let Some(lab) = Lab::require_root() else {
            return;
        };
        let host = lab.host("lonely").unwrap();
        let ns = host.namespace().to_owned();
        let sleeper = host.spawn(&["sleep", "30"]).unwrap();
        let pid = sleeper.pid().unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _keep = (lab, host, sleeper);
            panic!("scenario failed");
        }));
        assert!(result.is_err());
        let list = ip(&["netns", "list"]).unwrap();
        assert!(!list.contains(&ns), "{ns} survived the panic");
        let alive = kill(Pid::from_raw(i32::try_from(pid).unwrap()), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "process {pid} survived the panic");
    }

    #[test]
    fn stale_namespaces_of_dead_processes_are_swept() {
        if unavailable().is_some() {
            let _ = Lab::require_root(); // prints the reason
            return;
        }
        // pid 0x7fff_fff0 cannot exist (above pid_max)
        let stale = format!("{PREFIX}{}-0-stale", 0x7fff_fff0);
        ip(&["netns", "add", &stale]).unwrap();
        sweep_stale();
        let list = ip(&["netns", "list"]).unwrap();
        assert!(!list.contains(&stale), "stale namespace not swept");
    }
}

//! The demo's two hosts: network namespaces joined by a veth pair, processes inside them,
//! and sockets opened inside them from this process. Everything is removed when the guards
//! drop — on success, on error, and after Ctrl-C (see [`interrupted`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (SIGINT), SIGTERM or SIGHUP arrived; the demo then stops at its next
/// step and cleans up.
pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Turns SIGINT, SIGTERM and SIGHUP into [`interrupted`] instead of killing the process, so
/// the guards' clean-up runs. A thread owns the handlers; child processes start with the
/// default dispositions (exec resets handlers), so they still stop on Ctrl-C themselves.
pub(super) fn catch_interrupts() -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut signals = Vec::new();
                for kind in [
                    SignalKind::interrupt(),
                    SignalKind::terminate(),
                    SignalKind::hangup(),
                ] {
                    match signal(kind) {
                        Ok(s) => signals.push(s),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let [a, b, c] = &mut signals[..] else { return };
                tokio::select! {
                    _ = a.recv() => {}
                    _ = b.recv() => {}
                    _ = c.recv() => {}
                }
                INTERRUPTED.store(true, Ordering::SeqCst);
            });
        })
        .context("starting the signal thread")?;
    ready_rx
        .recv()
        .context("the signal thread ended")?
        .map_err(|e| anyhow::anyhow!("installing signal handlers: {e}"))
}

/// The error of a step stopped by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(super) struct Interrupted;

/// Fails with [`Interrupted`] once a signal arrived.
pub(super) fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Runs a command to completion; its stdout, or an error with its output.
pub(super) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

/// One network namespace, deleted (after killing what runs in it) on drop.
#[derive(Debug)]
pub(super) struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates `name` with loopback up. A namespace of that name left by an earlier run that
    /// was killed is removed first.
    pub(super) fn create(name: &str) -> anyhow::Result<Namespace> {
        if Path::new("/run/netns").join(name).exists() {
            remove(name);
        }
        ip(&["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// A command running `program` inside the namespace.
    pub(super) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `ip ARGS` against the namespace.
    pub(super) fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace.
    pub(super) fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        run(self
            .command("sysctl")
            .args(["-q", "-w", &format!("{key}={value}")]))
        .map(drop)
    }

    /// Runs `f` on a thread that has joined this namespace: sockets it opens live there.
    pub(super) fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let name = self.name.clone();
        std::thread::spawn(move || -> anyhow::Result<T> {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("joining namespace {name}"))?;
            Ok(f()?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace {} panicked", self.name))?
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// Kills what runs in a namespace of ours (SIGTERM, then SIGKILL), then deletes it.
fn remove(name: &str) {
    let pids = || -> Vec<Pid> {
        ip(&["netns", "pids", name])
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw)
                    .collect()
            })
            .unwrap_or_default()
    };
    let running = pids();
    if !running.is_empty() {
        for pid in &running {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in pids() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        eprintln!("demo: could not delete namespace {name}: {e:#}");
    }
}

/// Joins two namespaces with a veth pair named `iface` on both sides, addresses /24, IPv6
/// off (so the only traffic on the link is ours: no router solicitations).
pub(super) fn link(
    a: (&Namespace, Ipv4Addr),
    b: (&Namespace, Ipv4Addr),
    iface: &str,
) -> anyhow::Result<()> {
    ip(&[
        "-n", &a.0.name, "link", "add", iface, "type", "veth", "peer", "name", iface, "netns",
        &b.0.name,
    ])?;
    for (ns, addr) in [a, b] {
        ns.sysctl(&format!("net.ipv6.conf.{iface}.disable_ipv6"), "1")?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", iface])?;
        ns.ip(&["link", "set", iface, "up"])?;
    }
    Ok(())
}

/// A background process, stopped on drop (SIGTERM, SIGKILL after 3 s). Output goes to a
/// log file.
#[derive(Debug)]
pub(super) struct Proc {
    child: Option<Child>,
    what: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr in `log`.
    pub(super) fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let what = describe(&cmd);
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Proc {
            child: Some(child),
            what,
            log: log.to_owned(),
        })
    }

    /// What it logged so far.
    pub(super) fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until `ready(output)` holds; fails if the process exits or `limit` passes.
    pub(super) fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            check_interrupt()?;
            let out = self.output();
            if ready(&out) {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{} exited ({status}) before {what}:\n{out}", self.what);
                }
            }
            if Instant::now() >= deadline {
                bail!("{what} did not happen within {limit:?}:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails with the process's output if it has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{} exited ({status}):\n{}", self.what, self.output());
            }
        }
        Ok(())
    }

    /// Stops the process now (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub(super) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion, checking for Ctrl-C; its output (stdout then stderr, also kept
/// in `log`) and whether it succeeded.
pub(super) fn run_interruptible(
    cmd: &mut Command,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<(bool, String)> {
    let what = describe(cmd);
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if interrupted() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            if interrupted() {
                return Err(Interrupted.into());
            }
            bail!("{what} did not finish within {limit:?}");
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Ok((status.success(), text))
}

/// Removes `PREFIX<pid>-…` namespaces left by demo runs whose process is gone (killed with
/// SIGKILL, so their clean-up never ran).
pub(super) fn sweep_stale(prefix: &str) {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if kill(Pid::from_raw(pid), None).is_err() {
            remove(name);
        }
    }
}

/// Moves `total` bytes of `pattern` (repeated) over TCP from `client` to a listener on
/// `server_addr` inside `server`, and checks every byte that arrives. Returns the time the
/// transfer took.
pub(super) fn tcp_transfer(
    server: &Namespace,
    client: &Namespace,
    server_addr: SocketAddr,
    pattern: &'static [u8],
    total: usize,
) -> anyhow::Result<Duration> {
    let listener = server.within(move || TcpListener::bind(server_addr))?;
    let receiver = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0usize;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(received);
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                if b != pattern[(received + i) % pattern.len()] {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("byte {} differs from what was sent", received + i),
                    ));
                }
            }
            received += n;
        }
    });
    let start = Instant::now();
    let sent = client.within(move || -> std::io::Result<usize> {
        use std::io::Write as _;
        let mut stream = TcpStream::connect_timeout(&server_addr, Duration::from_secs(10))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let chunk: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take(pattern.len() * 1024)
            .collect();
        let mut sent = 0;
        while sent < total {
            if interrupted() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "interrupted",
                ));
            }
            let offset = sent % pattern.len();
            let n = (total - sent).min(chunk.len() - offset);
            stream.write_all(&chunk[offset..offset + n])?;
            sent += n;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(sent)
    });
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiving thread panicked"))?;
    check_interrupt()?;
    let sent = sent.context("sending")?;
    let received = received.context("receiving")?;
    if received != sent {
        bail!("sent {sent} bytes but {received} arrived");
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        if !nix::unistd::geteuid().is_root() || Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIPPED demo lab test: needs root and iproute2 (CI runs as root)");
            return false;
        }
        true
    }

    #[test]
    fn namespaces_link_carry_verified_tcp_and_are_removed() {
        if !root() {
            return;
        }
        let pid = std::process::id();
        let (a_name, b_name) = (format!("ibmdemo-t{pid}-a"), format!("ibmdemo-t{pid}-b"));
        let a = Namespace::create(&a_name).unwrap();
        let b = Namespace::create(&b_name).unwrap();
        let (a_ip, b_ip) = (Ipv4Addr::new(10, 215, 0, 1), Ipv4Addr::new(10, 215, 0, 2));
        link((&a, a_ip), (&b, b_ip), "demo0").unwrap();
        let took = tcp_transfer(
            &b,
            &a,
            SocketAddr::from((b_ip, 2049)),
            b"0123456789abcdef",
            3 * 1024 * 1024 + 7,
        )
        .unwrap();
        assert!(took < Duration::from_secs(20));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut sleeper = Proc::spawn(
            {
                let mut c = a.command("sh");
                c.args(["-c", "echo started; exec sleep 30"]);
                c
            },
            log.path(),
        )
        .unwrap();
        sleeper
            .wait_for("the start", Duration::from_secs(5), |out| {
                out.contains("started")
            })
            .unwrap();
        drop(b);
        drop(a);
        drop(sleeper);
        let list = ip(&["netns", "list"]).unwrap();
        assert!(!list.contains(&a_name) && !list.contains(&b_name), "{list}");
    }
}

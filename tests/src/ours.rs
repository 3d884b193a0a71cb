//! Our own daemon in a lab host: `ibm-ipsec daemon` with a private control socket, driven by
//! the `ibm-ipsec` CLI exactly as an operator would (`up`, `down`, `status --json`).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::error::{LabError, Result};
use crate::netns::Host;
use crate::process::{wait_until, workspace_binary, LabProcess};

/// A running `ibm-ipsec daemon` in a lab host; stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub struct Ours {
    host: Host,
    bin: PathBuf,
    control: PathBuf,
    daemon: LabProcess,
}

impl Ours {
    /// Starts `ibm-ipsec daemon --control <lab socket> ARGS…` in `host` and waits (up to 20 s)
    /// until `status` answers. `args` are the daemon's own (`--listen`, `--datapath`,
    /// credentials …).
    pub fn start(host: &Host, args: &[&str]) -> Result<Ours> {
        let control = host.log_file("ibm-ipsec-control").with_extension("sock");
        Ours::start_at(host, &control, args)
    }

    /// [`Ours::start`] with the control socket at `control` (its directory is created by the
    /// daemon, root-only).
    pub fn start_at(host: &Host, control: &Path, args: &[&str]) -> Result<Ours> {
        let bin = workspace_binary("ibm-ipsec")?;
        let bin_s = bin.to_string_lossy().into_owned();
        let control_s = control.to_string_lossy().into_owned();
        let mut all = vec![bin_s.as_str(), "daemon", "--control", &control_s];
        all.extend_from_slice(args);
        let mut daemon = host.spawn(&all)?;
        wait_until_ready(host, &bin_s, &control_s, &mut daemon)?;
        Ok(Ours {
            host: host.clone(),
            bin,
            control: control.to_owned(),
            daemon,
        })
    }

    /// A responder in `host`: `--listen <its address> --psk-file PSK` plus `extra`.
    pub fn psk_responder(host: &Host, psk: &Path, extra: &[&str]) -> Result<Ours> {
        let listen = host.addr().to_string();
        let psk = psk.to_string_lossy();
        let mut args = vec!["--listen", &listen, "--psk-file", psk.as_ref()];
        args.extend_from_slice(extra);
        Ours::start(host, &args)
    }

    /// Runs `ibm-ipsec ARGS… --control <socket>` in the daemon's host; stdout, or an error
    /// with everything the command printed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        run_cli(&self.host, &self.bin, &self.control, args)
    }

    /// `ibm-ipsec up PEER ARGS…`; returns its wall time (it returns once the CHILD_SA is
    /// installed, or fails saying why).
    pub fn up(&self, peer: Ipv4Addr, args: &[&str]) -> Result<Duration> {
        let peer = peer.to_string();
        let mut all = vec!["up", peer.as_str()];
        all.extend_from_slice(args);
        let start = Instant::now();
        self.cli(&all)?;
        Ok(start.elapsed())
    }

    /// `ibm-ipsec down PEER`, then waits (up to 10 s) until the daemon holds no SA with the
    /// peer: `down` returns once the DELETEs are sent, and an `up` while they are still being
    /// answered is refused ("being deleted; try again").
    pub fn down(&self, peer: Ipv4Addr) -> Result<()> {
        self.cli(&["down", &peer.to_string()])?;
        self.wait_for_status(
            &format!("the SAs with {peer} to be gone after down"),
            Duration::from_secs(10),
            |s| s.established_with(peer) == 0 && s.has_no_sa_with(peer),
        )
        .map(drop)
    }

    /// `ibm-ipsec status --json`, parsed.
    pub fn status(&self) -> Result<Status> {
        parse_status(&self.cli(&["status", "--json"])?)
    }

    /// Polls the text `status` until it contains `needle` (or `limit` passes: an error with the
    /// last status and the daemon's log).
    pub fn wait_for_text(&self, needle: &str, limit: Duration) -> Result<String> {
        let mut last = String::new();
        wait_until(needle, limit, || {
            last = self.cli(&["status"]).unwrap_or_else(|e| e.to_string());
            last.contains(needle)
        })
        .map(|()| last.clone())
        .map_err(|_| LabError::Timeout {
            what: format!(
                "status to show {needle:?}; last status:\n{last}\ndaemon log:\n{}",
                self.log()
            ),
            waited_ms: limit.as_millis(),
        })
    }

    /// Polls [`Ours::status`] until `done` accepts it (or `limit` passes: an error showing the
    /// last status and the daemon's log).
    pub fn wait_for_status(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status> {
        let start = Instant::now();
        loop {
            let status = self.status()?;
            if done(&status) {
                return Ok(status);
            }
            if start.elapsed() >= limit {
                return Err(LabError::Timeout {
                    what: format!(
                        "{what}; last status: {:#}\ndaemon log:\n{}",
                        status.0,
                        self.log()
                    ),
                    waited_ms: limit.as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the daemon printed (its tracing log) so far.
    pub fn log(&self) -> String {
        self.daemon.output()
    }

    /// The daemon's process id (CPU and memory figures from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the daemon still runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// The control socket.
    pub fn control(&self) -> &Path {
        &self.control
    }

    /// The host it runs in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Stops the daemon (SIGTERM: it deletes its SAs and removes its socket; SIGKILL after
    /// 2 s) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.daemon.stop()
    }
}

/// `ibm-ipsec ARGS… --control CONTROL` in `host`, without a daemon handle: `up` starts a
/// daemon itself when none listens ([`Detached`] stops it). Stdout, or an error with
/// everything the command printed.
pub fn cli(host: &Host, control: &Path, args: &[&str]) -> Result<String> {
    run_cli(host, &workspace_binary("ibm-ipsec")?, control, args)
}

fn run_cli(host: &Host, bin: &Path, control: &Path, args: &[&str]) -> Result<String> {
    let bin = bin.to_string_lossy();
    let control = control.to_string_lossy();
    let mut all = vec![bin.as_ref()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", control.as_ref()]);
    host.run(&all)
}

/// Borrows owned arguments for the `&[&str]` the lab's commands take.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A 0600 file `dir/name` holding `key` and a newline, as the daemon demands of
/// `--psk-file` (it trims the newline).
pub fn psk_file(dir: &Path, name: &str, key: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).map_err(|e| LabError::io(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LabError::io(&path, e))?;
    Ok(path)
}

/// A daemon that `up` started by itself (detached, so no [`LabProcess`] owns it): found by
/// the pid its `status` reports, stopped on drop (SIGTERM, SIGKILL after 5 s).
#[derive(Debug)]
pub struct Detached {
    host: Host,
    control: PathBuf,
    pid: Option<Pid>,
}

impl Detached {
    /// The daemon answering on `control` in `host`.
    pub fn of(host: &Host, control: &Path) -> Result<Detached> {
        let mut daemon = Detached {
            host: host.clone(),
            control: control.to_owned(),
            pid: None,
        };
        let status = daemon.status()?;
        let pid = status.0["daemon"]["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| LabError::Ours(format!("no pid in status --json: {}", status.0)))?;
        daemon.pid = Some(Pid::from_raw(pid));
        Ok(daemon)
    }

    /// `ibm-ipsec ARGS… --control <socket>`, as [`Ours::cli`].
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        cli(&self.host, &self.control, args)
    }

    /// `ibm-ipsec status --json`, parsed.
    pub fn status(&self) -> Result<Status> {
        parse_status(&self.cli(&["status", "--json"])?)
    }

    /// SIGTERM, then waits up to 5 s for the process to go; whether it went.
    pub fn terminate(&mut self) -> bool {
        let Some(pid) = self.pid else {
            return true;
        };
        // Only ever the pid of the daemon this test's `up` started.
        let _ = kill(pid, Signal::SIGTERM);
        let gone = wait_until("the daemon to exit", Duration::from_secs(5), || {
            kill(pid, None).is_err()
        });
        if gone.is_ok() {
            self.pid = None;
        }
        gone.is_ok()
    }
}

fn parse_status(text: &str) -> Result<Status> {
    serde_json::from_str(text)
        .map(Status)
        .map_err(|e| LabError::Ours(format!("status --json is not JSON ({e}):\n{text}")))
}

impl Drop for Detached {
    fn drop(&mut self) {
        if !self.terminate() {
            if let Some(pid) = self.pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

fn wait_until_ready(host: &Host, bin: &str, control: &str, daemon: &mut LabProcess) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if host.run(&[bin, "status", "--control", control]).is_ok() {
            return Ok(());
        }
        if !daemon.is_running() {
            return Err(daemon.died());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!(
                    "ibm-ipsec daemon to answer on {control}:\n{}",
                    daemon.output()
                ),
                waited_ms: 20_000,
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `ibm-ipsec status --json` (the daemon's `StatusReport`), read loosely so that fields the
/// daemon adds later do not break the tests.
#[derive(Debug, Clone)]
pub struct Status(pub Value);

impl Status {
    /// The `ike_sas` rows.
    pub fn ike_sas(&self) -> Vec<&Value> {
        rows(&self.0, "ike_sas")
    }

    /// The `child_sas` rows.
    pub fn child_sas(&self) -> Vec<&Value> {
        rows(&self.0, "child_sas")
    }

    /// IKE SAs with `peer` in state `established`.
    pub fn established_with(&self, peer: Ipv4Addr) -> usize {
        let peer = peer.to_string();
        self.ike_sas()
            .iter()
            .filter(|sa| str_field(sa, "peer") == Some(&peer))
            .filter(|sa| str_field(sa, "state") == Some("established"))
            .count()
    }

    /// CHILD_SAs with `peer`.
    pub fn children_with(&self, peer: Ipv4Addr) -> Vec<&Value> {
        let peer = peer.to_string();
        self.child_sas()
            .into_iter()
            .filter(|c| str_field(c, "peer") == Some(&peer))
            .collect()
    }

    /// A counter (`bytes_in`, `packets_out`, …) summed over the CHILD_SAs with `peer`.
    pub fn child_counter(&self, peer: Ipv4Addr, key: &str) -> u64 {
        self.children_with(peer)
            .iter()
            .filter_map(|c| c.get(key)?.as_u64())
            .sum()
    }

    /// Whether the daemon holds no IKE SA (in any state) and no CHILD_SA with `peer`.
    pub fn has_no_sa_with(&self, peer: Ipv4Addr) -> bool {
        let peer = peer.to_string();
        !self
            .ike_sas()
            .iter()
            .chain(self.child_sas().iter())
            .any(|row| str_field(row, "peer") == Some(&peer))
    }

    /// Whether the daemon holds no SA at all.
    pub fn is_empty(&self) -> bool {
        self.ike_sas().is_empty() && self.child_sas().is_empty()
    }
}

/// A string field of a status row.
pub fn str_field<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key)?.as_str()
}

fn rows<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rows_are_read_by_peer() {
        let status = Status(serde_json::json!({
            "ike_sas": [
                {"peer": "10.213.1.2", "state": "established"},
                {"peer": "10.213.1.3", "state": "connecting"}
            ],
            "child_sas": [
                {"peer": "10.213.1.2", "bytes_in": 100, "packets_in": 2},
                {"peer": "10.213.1.2", "bytes_in": 50, "packets_in": 1},
                {"peer": "10.213.1.3", "bytes_in": 7}
            ]
        }));
        let peer = Ipv4Addr::new(10, 213, 1, 2);
        assert_eq!(status.established_with(peer), 1);
        assert_eq!(status.established_with(Ipv4Addr::new(10, 213, 1, 3)), 0);
        assert_eq!(status.children_with(peer).len(), 2);
        assert_eq!(status.child_counter(peer, "bytes_in"), 150);
        assert!(!status.is_empty());
        assert!(!status.has_no_sa_with(peer));
        assert!(status.has_no_sa_with(Ipv4Addr::new(10, 213, 1, 9)));
        assert!(Status(serde_json::json!({"ike_sas": [], "child_sas": []})).is_empty());
    }
}

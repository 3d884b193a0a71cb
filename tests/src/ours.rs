//! Our own daemon in a lab host: `ibm-ipsec daemon` with a private control socket, driven by
//! the `ibm-ipsec` CLI exactly as an operator would (`up`, `down`, `status --json`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{LabError, Result};
use crate::netns::Host;
use crate::process::{workspace_binary, LabProcess};

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
        let bin = workspace_binary("ibm-ipsec")?;
        let control = host.log_file("ibm-ipsec-control").with_extension("sock");
        let bin_s = bin.to_string_lossy().into_owned();
        let control_s = control.to_string_lossy().into_owned();
        let mut all = vec![bin_s.as_str(), "daemon", "--control", &control_s];
        all.extend_from_slice(args);
        let mut daemon = host.spawn(&all)?;
        wait_until_ready(host, &bin_s, &control_s, &mut daemon)?;
        Ok(Ours {
            host: host.clone(),
            bin,
            control,
            daemon,
        })
    }

    /// Runs `ibm-ipsec ARGS… --control <socket>` in the daemon's host; stdout, or an error
    /// with everything the command printed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let bin = self.bin.to_string_lossy();
        let control = self.control.to_string_lossy();
        let mut all = vec![bin.as_ref()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--control", control.as_ref()]);
        self.host.run(&all)
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
        let text = self.cli(&["status", "--json"])?;
        serde_json::from_str(&text)
            .map(Status)
            .map_err(|e| LabError::Ours(format!("status --json is not JSON ({e}):\n{text}")))
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

    /// Stops the daemon (SIGTERM: it deletes its SAs and removes its socket).
    pub fn stop(&mut self) {
        self.daemon.stop();
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

//! Running programs: one-shot commands that must succeed, and long-lived processes that are
//! always stopped when their guard drops (also while a failing test unwinds).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{LabError, Result};

/// `program arg arg …` for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; returns its stdout, or an error holding stdout and stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let program = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(LabError::Command {
            program,
            status: out.status.to_string(),
            output: format!("{stdout}{stderr}"),
        });
    }
    Ok(stdout)
}

/// Polls `ready` every 20 ms until it returns true or `limit` passes (a timeout error naming
/// `what`).
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                waited_ms: limit.as_millis(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of a binary built from this workspace (`ibm-ipsec`, …), for running it inside a
/// lab host: it sits next to the test executable's `deps/` directory. `cargo test --workspace`
/// builds every workspace binary first; `cargo test -p ibm-ipsec-tests` alone does not, and
/// then this says which `cargo build` is missing.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| LabError::io("current executable", e))?;
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        LabError::Usage(format!("unexpected test executable path {}", exe.display()))
    })?;
    let path = profile_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::Usage(format!(
            "{} not built: run `cargo build --bin {name}` (or `cargo test --workspace`) first",
            path.display()
        )))
    }
}

/// A long-lived process started by the lab. Dropping it stops it: SIGTERM, then SIGKILL after
/// two seconds. Its stdout and stderr go to one log file.
#[derive(Debug)]
pub struct LabProcess {
    child: Option<Child>,
    program: String,
    log: PathBuf,
}

impl LabProcess {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<LabProcess> {
        let program = describe(&cmd);
        let out = File::create(log).map_err(|e| LabError::io(log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(log, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.clone(),
                source,
            })?;
        Ok(LabProcess {
            child: Some(child),
            program,
            log: log.to_owned(),
        })
    }

    /// The process id (of the program itself: `ip netns exec` replaces itself with it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether it is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// An error carrying the process's output, for "it died while we waited" cases.
    pub(crate) fn died(&mut self) -> LabError {
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map_or_else(|| "still running".to_owned(), |s| s.to_string());
        LabError::Command {
            program: self.program.clone(),
            status,
            output: self.output(),
        }
    }

    /// Stops the process (SIGTERM, SIGKILL after two seconds) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // Only ever the pid of a process this guard started.
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_workspace_binary_is_a_clear_error() {
        let err = workspace_binary("no-such-binary-here")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cargo build --bin no-such-binary-here"),
            "{err}"
        );
    }

    #[test]
    fn failing_command_reports_its_output() {
        let err =
            run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("out") && text.contains("err") && text.contains('3'),
            "{text}"
        );
    }

    #[test]
    fn dropping_a_process_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = LabProcess::spawn(cmd, &dir.path().join("sleep.log")).unwrap();
        assert!(p.is_running());
        let status = p.stop().unwrap();
        assert!(!status.success(), "terminated by a signal");
        assert!(!p.is_running());
    }
}

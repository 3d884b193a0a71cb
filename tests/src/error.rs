//! The lab's one error type.

use std::path::PathBuf;

/// What can go wrong while building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program and its arguments, as run.
        program: String,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// A program ran and failed; its output says why.
    #[error("{program} failed ({status}):\n{output}")]
    Command {
        /// The program and its arguments, as run.
        program: String,
        /// Exit status as printed by std.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// Reading or writing a lab file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A process did not become ready in time (socket, "listening" line, ...).
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        waited_ms: u128,
    },
    /// A capture file is not a pcap we understand.
    #[error("pcap: {0}")]
    Pcap(String),
    /// The lab was asked for something it cannot do (empty command, too many hosts, …).
    #[error("lab: {0}")]
    Usage(String),
    /// `swanctl` printed something we could not parse.
    #[error("swanctl output: {0}")]
    Swanctl(String),
    /// Traffic through the lab did not arrive intact (lost, stalled or changed bytes).
    #[error("traffic: {0}")]
    Traffic(String),
    /// Our daemon or CLI answered something we could not use (`status --json`, …).
    #[error("ibm-ipsec: {0}")]
    Ours(String),
}

/// Result with [`LabError`].
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}

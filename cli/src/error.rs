//! The library's error type.

use std::path::{Path, PathBuf};

use crate::control::ErrorReply;

/// Everything the library API, the daemon and the control client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nobody listens on the control socket.
    #[error(
        "no daemon is listening on {}; start one with `ibm-ipsec daemon`",
        .0.display()
    )]
    NoDaemon(PathBuf),
    /// The control socket exists but this user may not connect.
    #[error(
        "permission denied on {}: the control socket is root-only (run as root)",
        .0.display()
    )]
    ControlPermission(PathBuf),
    /// Another daemon owns the control socket path, or the path is unusable.
    #[error("{0}")]
    ControlInUse(String),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    /// The daemon's answer broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The requested datapath cannot run here.
    #[error("{0}")]
    Datapath(String),
    /// The host identity (key, certificate) could not be loaded.
    #[error("host identity: {0}")]
    Identity(String),
    /// The IKE endpoint could not start (sockets, credentials).
    #[error("IKE: {0}")]
    Ike(String),
    /// Bringing up SAs with a peer failed (the daemon's reason, or the daemon did not start).
    #[error("{0}")]
    Up(String),
    /// A file or socket operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

//! Where the control socket lives, how the daemon claims it, and how a client talks to it.
//!
//! The socket is root-only: its directory is created 0700, the socket itself 0600, and the
//! daemon also checks each client's credentials (`SO_PEERCRED`). Several daemons can run on
//! one host (one per network namespace) with different `--control` paths.

use std::io::{BufRead, BufReader, ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::protocol::{
    decode_response, encode_request, Request, Response, StatusReport, MAX_LINE,
};
use crate::error::Error;

/// The default control socket path.
pub const DEFAULT_CONTROL_PATH: &str = "/run/ibm-ipsec/control.sock";

/// The environment variable that overrides [`DEFAULT_CONTROL_PATH`].
pub const CONTROL_ENV: &str = "IBM_IPSEC_CONTROL";

/// `--control PATH`, else `$IBM_IPSEC_CONTROL`, else [`DEFAULT_CONTROL_PATH`].
pub fn control_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_owned(),
        None => std::env::var_os(CONTROL_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CONTROL_PATH), PathBuf::from),
    }
}

/// A bound control socket. Dropping it removes the socket file, but only while the file is
/// still the one this daemon created (a successor may have replaced it).
#[derive(Debug)]
pub struct ControlListener {
    listener: Option<UnixListener>,
    path: PathBuf,
    inode: (u64, u64),
}

impl ControlListener {
    /// Claims `path`: creates its directory (0700) when missing, replaces a stale socket left
    /// by a daemon that died, refuses when another daemon answers there or when the path is
    /// not a socket, and binds with mode 0600.
    pub fn bind(path: &Path) -> Result<ControlListener, Error> {
        let io = |e| Error::io(path, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::io(dir, e))?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(Error::ControlInUse(format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                )))
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(Error::ControlInUse(format!(
                        "a daemon is already listening on {}; stop it first or choose another \
                         --control path",
                        path.display()
                    )))
                }
                // Nobody accepts: the file outlived its daemon.
                Err(e) if e.kind() == IoKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale control socket");
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            },
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // The umask makes the socket 0600 from its first instant; chmod after bind would leave
        // a window. This runs before the daemon starts any thread.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(io)?;
        let meta = std::fs::metadata(path).map_err(io)?;
        Ok(ControlListener {
            listener: Some(listener),
            path: path.to_owned(),
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, for the daemon's accept loop (non-blocking for tokio).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

const CLOSED: &str = "the daemon closed the connection without answering";

/// A client of one daemon's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client for the socket at `path`; each request waits at most `timeout` for its answer.
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        ControlClient {
            path: path.into(),
            timeout,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a daemon accepts connections on the socket.
    pub fn is_listening(&self) -> bool {
        UnixStream::connect(&self.path).is_ok()
    }

    /// Sends one request and waits for its response. A daemon's error reply becomes
    /// [`Error::Daemon`].
    pub fn request(&self, request: &Request) -> Result<Response, Error> {
        let mut stream = UnixStream::connect(&self.path).map_err(|e| match e.kind() {
            IoKind::NotFound | IoKind::ConnectionRefused => Error::NoDaemon(self.path.clone()),
            IoKind::PermissionDenied => Error::ControlPermission(self.path.clone()),
            _ => Error::io(&self.path, e),
        })?;
        let io = |e| Error::io(&self.path, e);
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        stream
            .write_all(&encode_request(request))
            .map_err(|e| match e.kind() {
                IoKind::BrokenPipe | IoKind::ConnectionReset => Error::Protocol(CLOSED.to_owned()),
                _ => io(e),
            })?;
        let mut line = Vec::new();
        let mut reader = BufReader::new(stream).take(MAX_LINE as u64 + 1);
        reader
            .read_until(b'\n', &mut line)
            .map_err(|e| match e.kind() {
                IoKind::WouldBlock | IoKind::TimedOut => Error::Protocol(format!(
                    "the daemon on {} did not answer within {:?}",
                    self.path.display(),
                    self.timeout
                )),
                // A daemon that closes without reading our line resets the connection.
                IoKind::ConnectionReset => Error::Protocol(CLOSED.to_owned()),
                _ => io(e),
            })?;
        if line.last() != Some(&b'\n') {
            return Err(Error::Protocol(if line.len() > MAX_LINE {
                format!("the daemon's answer exceeds {MAX_LINE} bytes")
            } else {
                CLOSED.to_owned()
            }));
        }
        match decode_response(&line)? {
            Response::Error(reply) => Err(Error::Daemon(reply)),
            other => Ok(other),
        }
    }

    /// `Up`, typed: waits (up to this client's timeout) until the CHILD_SA is installed.
    pub fn up(
        &self,
        peer: std::net::IpAddr,
        options: crate::control::UpOptions,
    ) -> Result<crate::control::UpSummary, Error> {
        match self.request(&Request::Up {
            peer,
            options: Box::new(options),
        })? {
            Response::Up(summary) => Ok(*summary),
            other => Err(unexpected(&other)),
        }
    }

    /// `Status`, typed.
    pub fn status(&self) -> Result<StatusReport, Error> {
        match self.request(&Request::Status)? {
            Response::Status(report) => Ok(*report),
            other => Err(unexpected(&other)),
        }
    }
}

/// A response of the wrong type for its request.
pub(crate) fn unexpected(response: &Response) -> Error {
    Error::Protocol(format!("unexpected answer from the daemon: {response:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bind_creates_private_directory_and_socket_and_removes_it_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/ibm-ipsec/control.sock");
        let listener = ControlListener::bind(&path).unwrap();
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_listening_daemon_is_not_displaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        let _first = ControlListener::bind(&path).unwrap();
        let err = ControlListener::bind(&path).unwrap_err().to_string();
        assert!(err.contains("already listening"), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        // A socket file nobody listens on, as a killed daemon leaves behind.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = ControlListener::bind(&path).unwrap();
        assert!(ControlClient::new(&path, Duration::from_secs(1)).is_listening());
        drop(listener);
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        std::fs::write(&path, b"important").unwrap();
        let err = ControlListener::bind(&path).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"important");
    }

    #[test]
    fn drop_leaves_a_successors_socket_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        let first = ControlListener::bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _second = UnixListener::bind(&path).unwrap();
        drop(first);
        assert!(path.exists());
    }

    #[test]
    fn no_daemon_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        let err = ControlClient::new(&path, Duration::from_secs(1))
            .status()
            .unwrap_err();
        assert!(matches!(err, Error::NoDaemon(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("ibm-ipsec daemon"), "{text}");
    }

    #[test]
    fn silent_daemon_times_out_and_closed_connection_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = ControlClient::new(&path, Duration::from_millis(200));
        let server = std::thread::spawn(move || {
            let (first, _) = listener.accept().unwrap();
            let (second, _) = listener.accept().unwrap();
            drop(second);
            std::thread::sleep(Duration::from_millis(400));
            drop(first);
        });
        let err = client.status().unwrap_err().to_string();
        assert!(err.contains("did not answer"), "{err}");
        let err = client.status().unwrap_err().to_string();
        assert!(err.contains("without answering"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn control_path_precedence() {
        assert_eq!(
            control_path(Some(Path::new("/x/y.sock"))),
            PathBuf::from("/x/y.sock")
        );
    }
}

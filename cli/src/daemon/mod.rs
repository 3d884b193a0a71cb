//! The daemon: one process per host (or per network namespace) that owns the control socket,
//! the ESP datapath choice and the host identity, and answers `status` and `down`.
//!
//! It is a thin tokio driver: connection tasks parse control requests and hand them to one
//! loop that owns all state, so requests never race each other (the IKE endpoint's datagrams
//! and timers join the same loop).
//!
//! ```no_run
//! use ibm_ipsec::daemon::{run, DaemonOptions};
//! run(DaemonOptions::new("/run/ibm-ipsec/control.sock".into()))?;
//! # Ok::<(), ibm_ipsec::Error>(())
//! ```

pub mod datapath;
mod identity;
mod metadata_identity;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::control::protocol::{decode_request, encode_response, MAX_LINE};
use crate::control::{
    ChildSaStatus, ControlListener, DaemonInfo, DatapathInfo, DatapathRequest, DownTarget,
    ErrorKind, ErrorReply, IdentityInfo, IkeSaStatus, Request, Response, StatusReport,
};
use crate::error::Error;

pub use identity::load_identity;
use metadata_identity::IdentityUpdate;
pub use metadata_identity::MetadataIdentity;

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `ibm-ipsec daemon`'s settings.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The control socket path.
    pub control: PathBuf,
    /// `--datapath`.
    pub datapath: DatapathRequest,
    /// `--cert` and `--key`: the host identity from files instead of the metadata service.
    pub identity_files: Option<(PathBuf, PathBuf)>,
    /// The host identity from the metadata service, renewed on schedule.
    pub metadata: Option<MetadataIdentity>,
}

impl DaemonOptions {
    /// Defaults: automatic datapath, no identity.
    pub fn new(control: PathBuf) -> Self {
        DaemonOptions {
            control,
            datapath: DatapathRequest::Auto,
            identity_files: None,
            metadata: None,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Everything that can fail at start-up (socket,
/// identity, datapath) fails before the first request is accepted, with the cause.
pub fn run(options: DaemonOptions) -> Result<(), Error> {
    // Bound before any thread exists: binding sets the process umask for a moment.
    let mut control = ControlListener::bind(&options.control)?;
    let identity = match &options.identity_files {
        Some((cert, key)) => Some(load_identity(cert, key)?),
        None => None,
    };
    let metadata = match options.metadata.clone() {
        Some(m) => {
            let client = metadata_identity::client(&m)?;
            Some((m, client))
        }
        None => None,
    };
    let datapath = datapath::choose(options.datapath, xfrm::probe, || {
        datapath::tun_available(std::path::Path::new(datapath::TUN_DEVICE))
    })?;
    tracing::info!(
        control = %options.control.display(),
        datapath = ?datapath.kind,
        reason = %datapath.reason,
        "daemon starting"
    );
    let std_listener = control
        .take_listener()
        .ok_or_else(|| Error::Protocol("control socket already taken".into()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::io(&options.control, e))?;
    let state = State {
        info: DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_unix: unix_secs(SystemTime::now()),
            control: options.control.display().to_string(),
            listen: Vec::new(),
        },
        datapath,
        identity,
        identity_error: None,
        identity_service: options
            .metadata
            .as_ref()
            .map(|m| m.conf.metadata_url.clone()),
        ike_sas: Vec::new(),
        child_sas: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io(&options.control, e))?;
    let result = runtime.block_on(async move {
        let listener =
            UnixListener::from_std(std_listener).map_err(|e| Error::io(&options.control, e))?;
        let (updates_tx, updates) = mpsc::channel(8);
        if let Some((m, client)) = metadata {
            tokio::spawn(metadata_identity::run(m, client, updates_tx));
        }
        serve(listener, state, updates).await
    });
    // A key generation in a blocking task must not hold up SIGTERM for long.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // `control` drops here and removes the socket file.
    drop(control);
    tracing::info!("daemon stopped");
    result
}

/// What the daemon knows; owned by the main loop only.
struct State {
    info: DaemonInfo,
    datapath: DatapathInfo,
    identity: Option<IdentityInfo>,
    identity_error: Option<String>,
    identity_service: Option<String>,
    ike_sas: Vec<IkeSaStatus>,
    child_sas: Vec<ChildSaStatus>,
}

impl State {
    fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(Box::new(StatusReport {
                daemon: self.info.clone(),
                datapath: self.datapath.clone(),
                identity: self.identity.clone(),
                identity_error: self.identity_error.clone(),
                identity_service: self.identity_service.clone(),
                ike_sas: self.ike_sas.clone(),
                child_sas: self.child_sas.clone(),
            })),
            Request::Down { target } => self.down(target),
        }
    }

    fn down(&mut self, target: DownTarget) -> Response {
        let peers: Vec<IpAddr> = match target {
            DownTarget::All => {
                let mut all: Vec<IpAddr> = self.ike_sas.iter().map(|sa| sa.peer).collect();
                all.dedup();
                all
            }
            DownTarget::Peer(peer) => {
                if !self.ike_sas.iter().any(|sa| sa.peer == peer) {
                    return Response::Error(ErrorReply {
                        kind: ErrorKind::UnknownPeer,
                        message: format!(
                            "no IKE SA with {peer} (`ibm-ipsec status` lists the peers)"
                        ),
                    });
                }
                vec![peer]
            }
        };
        self.ike_sas.retain(|sa| !peers.contains(&sa.peer));
        self.child_sas.retain(|sa| !peers.contains(&sa.peer));
        Response::Down { deleted: peers }
    }
}

type Job = (Request, oneshot::Sender<Response>);

async fn serve(
    listener: UnixListener,
    mut state: State,
    mut identity_updates: mpsc::Receiver<IdentityUpdate>,
) -> Result<(), Error> {
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Error::io(std::path::Path::new("SIGTERM handler"), e))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Error::io(std::path::Path::new("SIGINT handler"), e))?;
    let (jobs_tx, mut jobs) = mpsc::channel::<Job>(64);
    let accept = tokio::spawn(accept_loop(listener, jobs_tx));
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            Some((request, reply)) = jobs.recv() => {
                let _ = reply.send(state.handle(request));
            }
            Some(update) = identity_updates.recv() => match update {
                IdentityUpdate::Issued(info) => {
                    state.identity = Some(info);
                    state.identity_error = None;
                }
                IdentityUpdate::Failed(error) => state.identity_error = Some(error),
            },
        }
    }
    accept.abort();
    // Requests already queued get a clear answer instead of a closed connection.
    jobs.close();
    while let Some((_, reply)) = jobs.recv().await {
        let _ = reply.send(Response::Error(ErrorReply {
            kind: ErrorKind::ShuttingDown,
            message: "the daemon is shutting down".into(),
        }));
    }
    Ok(())
}

async fn accept_loop(listener: UnixListener, jobs: mpsc::Sender<Job>) {
    let own_uid = nix::unistd::geteuid().as_raw();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let jobs = jobs.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, own_uid, jobs).await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    stream: UnixStream,
    own_uid: u32,
    jobs: mpsc::Sender<Job>,
) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let response = if uid != 0 && uid != own_uid {
        Response::Error(ErrorReply {
            kind: ErrorKind::PermissionDenied,
            message: format!("uid {uid} may not control this daemon (root only)"),
        })
    } else {
        let mut line = Vec::new();
        let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
        match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Err(_) => return Ok(()),
            Ok(result) => {
                result?;
            }
        }
        if line.len() > MAX_LINE {
            Response::Error(ErrorReply {
                kind: ErrorKind::BadRequest,
                message: format!("request longer than {MAX_LINE} bytes"),
            })
        } else {
            match decode_request(&line) {
                Err(reply) => Response::Error(reply),
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if jobs.send((request, tx)).await.is_err() {
                        Response::Error(ErrorReply {
                            kind: ErrorKind::ShuttingDown,
                            message: "the daemon is shutting down".into(),
                        })
                    } else {
                        rx.await.unwrap_or_else(|_| {
                            Response::Error(ErrorReply {
                                kind: ErrorKind::ShuttingDown,
                                message: "the daemon is shutting down".into(),
                            })
                        })
                    }
                }
            }
        }
    };
    write.write_all(&encode_response(&response)).await?;
    write.shutdown().await
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{DatapathKind, DatapathRequest};

    fn state() -> State {
        State {
            info: DaemonInfo {
                pid: 1,
                version: "0".into(),
                started_unix: 0,
                control: "/x".into(),
                listen: vec![],
            },
            datapath: DatapathInfo {
                kind: DatapathKind::Userspace,
                requested: DatapathRequest::Userspace,
                reason: "test".into(),
            },
            identity: None,
            identity_error: None,
            identity_service: None,
            ike_sas: vec![],
            child_sas: vec![],
        }
    }

    #[test]
    fn down_of_an_unknown_peer_is_an_error_naming_it() {
        let mut s = state();
        match s.handle(Request::Down {
            target: DownTarget::Peer("10.9.9.9".parse().unwrap()),
        }) {
            Response::Error(e) => {
                assert_eq!(e.kind, ErrorKind::UnknownPeer);
                assert!(e.message.contains("10.9.9.9"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.handle(Request::Down {
                target: DownTarget::All
            }),
            Response::Down { deleted: vec![] }
        );
    }

    #[tokio::test]
    async fn serves_status_and_errors_over_a_real_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel::<Job>(4);
        tokio::spawn(accept_loop(listener, tx));
        let mut s = state();
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(s.handle(request));
            }
        });
        let client = crate::control::ControlClient::new(&path, Duration::from_secs(5));
        let report = tokio::task::spawn_blocking(move || {
            let report = client.status().unwrap();
            let err = client
                .request(&Request::Down {
                    target: DownTarget::Peer("10.1.1.1".parse().unwrap()),
                })
                .unwrap_err();
            assert!(matches!(err, Error::Daemon(ref e) if e.kind == ErrorKind::UnknownPeer));
            report
        })
        .await
        .unwrap();
        assert_eq!(report.datapath.reason, "test");

        // A garbage line gets a BadRequest answer, not a dropped connection.
        let mut raw = UnixStream::connect(&path).await.unwrap();
        raw.write_all(b"GET / HTTP/1.0\n").await.unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.unwrap();
        assert!(answer.contains("bad_request"), "{answer}");
    }
}

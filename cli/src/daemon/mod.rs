//! The daemon: one process per host (or per network namespace) that owns the control socket,
//! the host identity, the IKE endpoint and the ESP datapath, and answers `up`, `down` and
//! `status`.
//!
//! It is a thin tokio driver: connection tasks parse control requests and hand them to one
//! loop that owns all state, so requests never race each other; the IKE endpoint's datagrams
//! and timers join the same loop ([`ike_driver`](self)), and negotiated CHILD_SAs go to an
//! [`SaBackend`](backend::SaBackend).
//!
//! ```no_run
//! use ibm_ipsec::daemon::{run, DaemonOptions};
//! run(DaemonOptions::new("/run/ibm-ipsec/control.sock".into()))?;
//! # Ok::<(), ibm_ipsec::Error>(())
//! ```

mod auth;
pub mod backend;
pub mod datapath;
mod identity;
mod ike_driver;
pub mod kernel_backend;
mod metadata_identity;
mod random;
pub mod userspace;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::control::protocol::{decode_request, encode_response, MAX_LINE};
use crate::control::{
    ControlListener, DaemonInfo, DatapathInfo, DatapathKind, DatapathRequest, DownTarget,
    ErrorKind, ErrorReply, IdentityInfo, Request, Response, StatusReport, UpOptions,
};
use crate::error::Error;
use auth::IdentitySlot;
use backend::{IkeDatagram, SaBackend};
use ike_driver::Driver;

pub use identity::load_identity;
use metadata_identity::IdentityUpdate;
pub use metadata_identity::MetadataIdentity;

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SIGTERM waits for peers to confirm our DELETEs before the datapath goes.
const DELETE_GRACE: Duration = Duration::from_secs(2);

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
    /// `--listen`: answer IKE_SA_INIT on UDP 500 of these addresses (responder).
    pub listen: Vec<IpAddr>,
    /// `--psk-file`: the default pre-shared key (responder, and `up` without credentials).
    pub psk_file: Option<PathBuf>,
    /// `--ca`: roots the peers' certificates must chain to.
    pub ca_files: Vec<PathBuf>,
    /// `--local-id`: our IKE identity (default: certificate subject, or our address with PSK).
    pub local_id: Option<String>,
    /// `--remote-id`: the identity peers must prove (default: any the credentials allow).
    pub remote_id: Option<String>,
    /// `--rekey-seconds`: rekey IKE SAs and CHILD_SAs this often (default 3600, as IBM).
    pub rekey_seconds: Option<u64>,
    /// `--mode tunnel`: the responder's CHILD_SAs are tunnel mode (default transport).
    pub tunnel_mode: bool,
    /// `--nat-keepalive`: NAT-T keepalive interval behind a NAT, in seconds (default 20;
    /// 0 sends none).
    pub nat_keepalive_seconds: Option<u64>,
}

impl DaemonOptions {
    /// Defaults: automatic datapath, no identity.
    pub fn new(control: PathBuf) -> Self {
        DaemonOptions {
            control,
            datapath: DatapathRequest::Auto,
            identity_files: None,
            metadata: None,
            listen: Vec::new(),
            psk_file: None,
            ca_files: Vec::new(),
            local_id: None,
            remote_id: None,
            rekey_seconds: None,
            tunnel_mode: false,
            nat_keepalive_seconds: None,
        }
    }
}

/// The daemon-wide credential defaults that `up` falls back to.
#[derive(Clone)]
struct CredentialDefaults {
    psk_file: Option<PathBuf>,
    identity: Option<IdentitySlot>,
    ca_files: Vec<PathBuf>,
    local_id: Option<String>,
    remote_id: Option<String>,
    rekey_seconds: Option<u64>,
}

impl CredentialDefaults {
    /// Credentials for one IKE SA: the request's own (`up --psk-file`, `--cert/--key/--ca`)
    /// first, then the daemon's.
    fn resolve(&self, o: &UpOptions, local: IpAddr) -> Result<auth::Credentials, String> {
        let local_id = o.local_id.as_deref().or(self.local_id.as_deref());
        let remote_id = o.remote_id.as_deref().or(self.remote_id.as_deref());
        let ca: Vec<PathBuf> = if o.ca.is_empty() {
            self.ca_files.clone()
        } else {
            o.ca.iter().map(PathBuf::from).collect()
        };
        if let Some(psk) = &o.psk_file {
            return auth::psk_credentials(Path::new(psk), local_id, remote_id, local);
        }
        match (&o.cert, &o.key) {
            (Some(cert), Some(key)) => {
                let identity = pki::HostIdentity::load(Path::new(key), &[Path::new(cert)])
                    .map_err(|e| format!("{cert} + {key}: {e}"))?;
                let slot = Arc::new(RwLock::new(Some(Arc::new(identity))));
                return auth::certificate_credentials(slot, &ca, local_id, remote_id);
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err("--cert and --key go together".into());
            }
            (None, None) => {}
        }
        if let Some(psk) = &self.psk_file {
            return auth::psk_credentials(psk, local_id, remote_id, local);
        }
        if let Some(slot) = &self.identity {
            let mut c = auth::certificate_credentials(slot.clone(), &ca, local_id, remote_id)?;
            c.renewable = true;
            return Ok(c);
        }
        Err(
            "no credentials for IKE: give --psk-file FILE, or --cert FILE --key FILE --ca FILE \
             (to `up`, or to the daemon)"
                .into(),
        )
    }
}

/// The backend for the chosen datapath.
fn make_backend(datapath: &mut DatapathInfo) -> Result<Box<dyn SaBackend>, Error> {
    match datapath.kind {
        DatapathKind::Userspace => Ok(Box::new(userspace::UserspaceBackend::with_defaults())),
        DatapathKind::Kernel => Ok(Box::new(
            kernel_backend::KernelBackend::new().map_err(|e| Error::Datapath(e.0))?,
        )),
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
    let identity_slot: Option<IdentitySlot> = match &options.identity_files {
        Some((cert, key)) => {
            let host = pki::HostIdentity::load(key, &[cert.as_path()]).map_err(|e| {
                Error::Identity(format!("{} + {}: {e}", cert.display(), key.display()))
            })?;
            Some(Arc::new(RwLock::new(Some(Arc::new(host)))))
        }
        None if options.metadata.is_some() => Some(Arc::new(RwLock::new(None))),
        None => None,
    };
    if let Some(psk) = &options.psk_file {
        // Checked now so a bad file stops the daemon at start-up, not the first IKE_AUTH.
        auth::read_psk(psk).map_err(Error::Identity)?;
    }
    let defaults = CredentialDefaults {
        psk_file: options.psk_file.clone(),
        identity: identity_slot.clone(),
        ca_files: options.ca_files.clone(),
        local_id: options.local_id.clone(),
        remote_id: options.remote_id.clone(),
        rekey_seconds: options.rekey_seconds,
    };
    let responder = match options.listen.first() {
        None => None,
        Some(&first) => {
            let c = defaults
                .resolve(&UpOptions::default(), first)
                .map_err(|e| Error::Identity(format!("--listen: {e}")))?;
            let mut config = ike::Config::new(c.local, c.peer);
            if options.tunnel_mode {
                config.mode = ike::Mode::Tunnel;
            }
            if let Some(secs) = options.rekey_seconds {
                ike_driver::set_rekey(&mut config, secs);
            }
            ike_driver::set_nat_keepalive(&mut config, options.nat_keepalive_seconds);
            Some((Arc::new(config), c.renewable))
        }
    };
    let metadata = match options.metadata.clone() {
        Some(m) => {
            let client = metadata_identity::client(&m)?;
            Some((m, client))
        }
        None => None,
    };
    let mut datapath = datapath::choose(options.datapath, xfrm::probe, || {
        datapath::tun_available(std::path::Path::new(datapath::TUN_DEVICE))
    })?;
    let backend = make_backend(&mut datapath)?;
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
            listen: options.listen.iter().map(ToString::to_string).collect(),
        },
        datapath,
        identity,
        identity_error: None,
        identity_service: options
            .metadata
            .as_ref()
            .map(|m| m.conf.metadata_url.clone()),
        identity_slot,
        metadata_key: options.metadata.as_ref().map(|m| m.key_path()),
        driver: None,
    };
    let listen = options.listen.clone();
    let nat_keepalive = options.nat_keepalive_seconds;
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
        let (ike_tx, ike_rx) = mpsc::unbounded_channel();
        let mut state = state;
        let default_rekey = defaults.rekey_seconds;
        let credentials = move |o: &UpOptions, local: IpAddr| {
            let mut o = o.clone();
            o.rekey_seconds = o.rekey_seconds.or(default_rekey);
            defaults.resolve(&o, local).map(|c| (c, o.rekey_seconds))
        };
        let mut driver = Driver::new(backend, responder, &listen, Box::new(credentials), ike_tx)
            .map_err(Error::Ike)?;
        driver.set_nat_keepalive(nat_keepalive);
        state.driver = Some(driver);
        serve(listener, state, updates, ike_rx).await
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
    /// The certificate IKE signs with (shared with the authenticators).
    identity_slot: Option<IdentitySlot>,
    /// The metadata identity's host key, loaded with each issued certificate.
    metadata_key: Option<PathBuf>,
    /// The IKE side; `None` only in unit tests of the control plumbing.
    driver: Option<Driver>,
}

impl State {
    /// Answers a request now, or (for `up`) keeps `reply` until the CHILD_SA is installed.
    fn handle(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let now = Instant::now();
        let response = match (request, self.driver.as_mut()) {
            (Request::Status, _) => self.status(),
            (Request::Up { peer, options }, Some(driver)) => {
                driver.up(now, peer, &options, reply);
                return;
            }
            (Request::Down { target }, Some(driver)) => driver.down(now, target),
            (Request::Down { target }, None) => match target {
                DownTarget::All => Response::Down { deleted: vec![] },
                DownTarget::Peer(peer) => Response::Error(ErrorReply {
                    kind: ErrorKind::UnknownPeer,
                    message: format!("no IKE SA with {peer} (`ibm-ipsec status` lists the peers)"),
                }),
            },
            (Request::Up { .. }, None) => Response::Error(ErrorReply {
                kind: ErrorKind::IkeFailed,
                message: "this daemon runs no IKE endpoint".into(),
            }),
        };
        let _ = reply.send(response);
    }

    fn status(&self) -> Response {
        let (ike_sas, child_sas) = self.driver.as_ref().map(Driver::status).unwrap_or_default();
        let held_peers = self
            .driver
            .as_ref()
            .map(Driver::held_peers)
            .unwrap_or_default();
        Response::Status(Box::new(StatusReport {
            daemon: self.info.clone(),
            datapath: self.datapath.clone(),
            identity: self.identity.clone(),
            identity_error: self.identity_error.clone(),
            identity_service: self.identity_service.clone(),
            ike_sas,
            child_sas,
            held_peers,
        }))
    }

    /// A new certificate from the metadata service: IKE signs with it from now on.
    fn certificate_issued(&mut self, certificate_pem: &str) {
        let (Some(slot), Some(key_path)) = (&self.identity_slot, &self.metadata_key) else {
            return;
        };
        let loaded = pki::HostKey::load(key_path)
            .map_err(|e| e.to_string())
            .and_then(|key| {
                let chain = pki::pem::certificates(certificate_pem.as_bytes())
                    .map_err(|e| e.to_string())?;
                pki::HostIdentity::new(key, chain).map_err(|e| e.to_string())
            });
        match loaded {
            Ok(identity) => {
                let renewal = slot.read().is_ok_and(|s| s.is_some());
                if let Ok(mut s) = slot.write() {
                    *s = Some(Arc::new(identity));
                }
                if let Some(driver) = self.driver.as_mut() {
                    if renewal {
                        driver.reauthenticate_renewable(Instant::now());
                    } else {
                        driver.identity_ready(Instant::now());
                    }
                }
            }
            Err(e) => {
                self.identity_error = Some(format!("the issued certificate is unusable: {e}"));
            }
        }
    }
}

type Job = (Request, oneshot::Sender<Response>);

async fn serve(
    listener: UnixListener,
    mut state: State,
    mut identity_updates: mpsc::Receiver<IdentityUpdate>,
    mut ike_rx: mpsc::UnboundedReceiver<IkeDatagram>,
) -> Result<(), Error> {
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Error::io(std::path::Path::new("SIGTERM handler"), e))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Error::io(std::path::Path::new("SIGINT handler"), e))?;
    let (jobs_tx, mut jobs) = mpsc::channel::<Job>(64);
    let accept = tokio::spawn(accept_loop(listener, jobs_tx));
    loop {
        let timer = ike_timer(state.driver.as_ref().and_then(Driver::poll_timeout));
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            Some((request, reply)) = jobs.recv() => state.handle(request, reply),
            Some(datagram) = ike_rx.recv() => {
                if let Some(driver) = state.driver.as_mut() {
                    driver.handle_datagram(Instant::now(), datagram);
                }
            }
            () = timer => {
                if let Some(driver) = state.driver.as_mut() {
                    driver.handle_timeout(Instant::now());
                }
            }
            Some(update) = identity_updates.recv() => match update {
                IdentityUpdate::Issued { info, certificate_pem } => {
                    state.identity = Some(info);
                    state.identity_error = None;
                    state.certificate_issued(&certificate_pem);
                }
                IdentityUpdate::Failed(error) => {
                    if let Some(driver) = state.driver.as_mut() {
                        driver.identity_failed(&error);
                    }
                    state.identity_error = Some(error);
                }
            },
        }
    }
    accept.abort();
    if let Some(driver) = state.driver.as_mut() {
        // DELETE for every IKE SA, then a bounded wait for the peers' confirmations, so they
        // drop their SAs now instead of after DPD notices we are gone.
        driver.delete_all(Instant::now());
        let deadline = tokio::time::Instant::now() + DELETE_GRACE;
        while !driver.is_idle() {
            let timer = ike_timer(driver.poll_timeout());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Some(datagram) = ike_rx.recv() => driver.handle_datagram(Instant::now(), datagram),
                () = timer => driver.handle_timeout(Instant::now()),
            }
        }
        driver.shutdown();
    }
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

/// Sleeps until the IKE endpoint's next timer (forever when it has none).
async fn ike_timer(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
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
            identity_slot: None,
            metadata_key: None,
            driver: None,
        }
    }

    fn ask(s: &mut State, request: Request) -> Response {
        let (tx, mut rx) = oneshot::channel();
        s.handle(request, tx);
        rx.try_recv().unwrap()
    }

    #[test]
    fn down_of_an_unknown_peer_is_an_error_naming_it() {
        let mut s = state();
        match ask(
            &mut s,
            Request::Down {
                target: DownTarget::Peer("10.9.9.9".parse().unwrap()),
            },
        ) {
            Response::Error(e) => {
                assert_eq!(e.kind, ErrorKind::UnknownPeer);
                assert!(e.message.contains("10.9.9.9"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ask(
                &mut s,
                Request::Down {
                    target: DownTarget::All
                }
            ),
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
                s.handle(request, reply);
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

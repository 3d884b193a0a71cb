//! The daemon's IKE driver: owns the sans-IO `ike::Endpoint`, its UDP sockets and the
//! [`SaBackend`], and answers `up`, `down` and the SA rows of `status`.
//!
//! It runs inside the daemon's single main loop (no locks): datagrams from the IKE sockets and
//! from the backend's NAT-T socket arrive as [`IkeDatagram`]s, the loop calls
//! [`Driver::handle_datagram`] / [`Driver::handle_timeout`], and after every input the
//! endpoint's output is drained — events first, so a CHILD_SA is installed before the message
//! that gives the peer its SPI is sent.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike::config::NAT_T_PORT;
use ike::crypto::{DhGroup, EncrAlgorithm, IntegAlgorithm, PrfAlgorithm};
use ike::retransmit::RetransmitConfig;
use ike::wire::{ExchangeType, HeaderPacket, TsRange};
use ike::{Config, Datagram, Endpoint, Event, SaHandle};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::backend::{parse_selector, IkeDatagram, SaBackend};
use super::random::SystemRng;
use crate::control::{
    ChildSaStatus, DownTarget, ErrorKind, ErrorReply, IkeSaStatus, Response, UpOptions, UpSummary,
};

/// The IKE port.
const IKE_PORT: u16 = 500;

/// First wait before re-initiating lost SAs after a failed attempt; doubled per failure up
/// to [`RESTART_MAX`].
const RESTART_FIRST: Duration = Duration::from_secs(2);
/// How often held traffic is looked for (strongSwan's `start_action = trap` reacts to the
/// kernel's ACQUIRE; the userspace datapath counts the packets it held instead).
const TRAP_POLL: Duration = Duration::from_millis(250);
/// Longest wait between re-initiations.
const RESTART_MAX: Duration = Duration::from_secs(60);
/// How often the datapath's CHILD_SA counters are passed to the IKE SAs: ESP from the peer
/// postpones DPD (30 s) and ESP to it the NAT-T keepalive (20 s), so a few seconds is fine.
const TRAFFIC_POLL: Duration = Duration::from_secs(5);

/// How an `up` request turns into credentials: built by the daemon, which knows its
/// configured defaults (PSK file, host identity, CAs).
/// Also returns the rekey interval in seconds, when not the default.
pub(crate) type CredentialSource = Box<
    dyn Fn(&UpOptions, IpAddr) -> Result<(super::auth::Credentials, Option<u64>), String> + Send,
>;

/// Rekey IKE SA and CHILD_SAs every `secs` seconds (strongSwan's jitter and over-time).
pub(crate) fn set_rekey(config: &mut Config, secs: u64) {
    let schedule = ike::config::SaLifetime::strongswan(Duration::from_secs(secs.max(1)));
    config.ike_rekey = schedule;
    config.child_rekey = schedule;
    config.child_lifetime = schedule.nominal();
}

/// `up`'s rekey options: `--rekey-seconds` for both SAs (from the daemon's default when the
/// request has none), then `--ike-rekey-seconds` for the IKE SA alone.
fn apply_rekey(config: &mut Config, both: Option<u64>, ike_only: Option<u64>) {
    if let Some(secs) = both {
        set_rekey(config, secs);
    }
    if let Some(secs) = ike_only {
        config.ike_rekey = ike::config::SaLifetime::strongswan(Duration::from_secs(secs.max(1)));
    }
}

/// NAT-T keepalives every `secs` seconds behind a NAT (`None`: the ike default, 20 s; `0`:
/// none).
pub(crate) fn set_nat_keepalive(config: &mut Config, secs: Option<u64>) {
    match secs {
        None => {}
        Some(0) => config.nat_keepalive = None,
        Some(s) => config.nat_keepalive = Some(Duration::from_secs(s)),
    }
}

/// A CHILD_SA as installed.
#[derive(Debug, Clone)]
struct Child {
    spi_in: u32,
    spi_out: u32,
    mode: &'static str,
    algorithm: String,
    selectors: String,
    encap: String,
    rekey_at: SystemTime,
}

#[derive(Debug, Clone)]
struct IkeUp {
    algorithms: String,
    remote_id: String,
    /// The nominal rekey time (the SA draws a jittered one up to 10 % earlier).
    rekey_at: Option<SystemTime>,
    /// The certificate the peer authenticated with (none with a shared key).
    peer_cert: Option<ike::PeerCertificate>,
}

/// When the IKE SA `handle` is due for rekeying, from its configuration.
fn ike_rekey_at(endpoint: &Endpoint, handle: SaHandle) -> Option<SystemTime> {
    endpoint
        .sa(handle)
        .map(|sa| SystemTime::now() + sa.config().ike_rekey.rekey_time)
}

/// Everything known about one peer.
struct Peer {
    local: IpAddr,
    handle: Option<SaHandle>,
    started: Instant,
    waiters: Vec<oneshot::Sender<Response>>,
    children: Vec<Child>,
    last_error: Option<String>,
    deleting: bool,
    /// Signs with the daemon's renewable certificate (reauthenticated on renewal).
    renewable: bool,
    /// The backend knows the peer ([`SaBackend::prepare_peer`]).
    prepared: bool,
    /// What `up` asked for (initiated peers only): the SAs are re-initiated with it when
    /// they are lost.
    options: Option<Box<UpOptions>>,
    /// A CHILD_SA was installed at least once.
    was_up: bool,
    /// The IKE SA was lost (not by our `down`): the peer's traffic is held, and the next
    /// packet to it (or `up`) negotiates new SAs, as strongSwan's `start_action = trap`.
    held: bool,
    /// When to look for held traffic next (or retry after a failure).
    restart_at: Option<Instant>,
    /// Held packets already seen when the trap was (re)armed.
    trap_baseline: u64,
    /// The next wait before re-initiating.
    backoff: Duration,
}

impl Peer {
    fn new(local: IpAddr, now: Instant) -> Self {
        Peer {
            local,
            handle: None,
            started: now,
            waiters: Vec::new(),
            children: Vec::new(),
            last_error: None,
            deleting: false,
            renewable: false,
            prepared: false,
            options: None,
            was_up: false,
            held: false,
            restart_at: None,
            trap_baseline: 0,
            backoff: RESTART_FIRST,
        }
    }

    fn answer(&mut self, response: &Response) {
        for w in self.waiters.drain(..) {
            let _ = w.send(response.clone());
        }
    }
}

/// The IKE side of the daemon.
pub(crate) struct Driver {
    endpoint: Endpoint,
    backend: Box<dyn SaBackend>,
    credentials: CredentialSource,
    /// Our IKE sockets, to send from (a duplicate of each socket the receive task reads):
    /// plain `sendto(2)` on the non-blocking descriptor, because tokio's `try_send_to`
    /// answers WouldBlock until its reactor has seen the new socket writable, which would
    /// cost the first IKE_SA_INIT of an `up` a 2 s retransmission.
    sockets: HashMap<SocketAddr, std::net::UdpSocket>,
    inbound: mpsc::UnboundedSender<IkeDatagram>,
    peers: HashMap<IpAddr, Peer>,
    handles: HashMap<SaHandle, IpAddr>,
    /// The responder signs with the renewable host certificate.
    responder_renewable: bool,
    /// What each established IKE SA negotiated, by handle.
    ike_info: HashMap<SaHandle, IkeUp>,
    /// `up` requests waiting for the first host certificate.
    awaiting_identity: Vec<(IpAddr, Box<UpOptions>, oneshot::Sender<Response>)>,
    /// `up` requests for peers whose SAs are being deleted (`up` right after `down`): they
    /// start once the deletion is over.
    awaiting_delete: Vec<(IpAddr, Box<UpOptions>, oneshot::Sender<Response>)>,
    /// Peers whose last IKE SA closed; their datapath goes once the SA's last datagrams
    /// (a DELETE response, an AUTHENTICATION_FAILED notify) have left through it.
    retired: Vec<IpAddr>,
    /// When the CHILD_SAs' counters are next passed to the endpoint (while any is up).
    traffic_poll_at: Option<Instant>,
    /// `--nat-keepalive` for the IKE SAs we initiate.
    nat_keepalive: Option<u64>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("endpoint", &self.endpoint)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        kind,
        message: message.into(),
    })
}

impl Driver {
    /// A driver answering IKE_SA_INIT with `responder` (when set) on each `listen` address.
    /// Must run inside the tokio runtime (it binds sockets and spawns their receive tasks).
    /// `responder` comes with whether it signs with the renewable host certificate.
    pub(crate) fn new(
        mut backend: Box<dyn SaBackend>,
        responder: Option<(Arc<Config>, bool)>,
        listen: &[IpAddr],
        credentials: CredentialSource,
        inbound: mpsc::UnboundedSender<IkeDatagram>,
    ) -> Result<Self, String> {
        if backend.nat_t_ike() {
            backend.set_ike_sink(inbound.clone());
        }
        let responder_renewable = responder.as_ref().is_some_and(|(_, r)| *r);
        let responder = responder.map(|(c, _)| c);
        let mut endpoint = Endpoint::new(responder, NAT_T_PORT, Box::new(SystemRng::new()));
        if let Some(spis) = backend.spi_source() {
            endpoint = endpoint.with_spi_source(spis);
        }
        let mut driver = Driver {
            responder_renewable,
            awaiting_identity: Vec::new(),
            awaiting_delete: Vec::new(),
            ike_info: HashMap::new(),
            endpoint,
            backend,
            credentials,
            sockets: HashMap::new(),
            inbound,
            peers: HashMap::new(),
            handles: HashMap::new(),
            retired: Vec::new(),
            traffic_poll_at: None,
            nat_keepalive: None,
        };
        for &ip in listen {
            driver.ensure_sockets(ip)?;
        }
        Ok(driver)
    }

    /// NAT-T keepalive interval of the IKE SAs this driver initiates (see
    /// [`set_nat_keepalive`]).
    pub(crate) fn set_nat_keepalive(&mut self, secs: Option<u64>) {
        self.nat_keepalive = secs;
    }

    /// Binds our IKE sockets on `ip` (500, and 4500 unless the backend carries NAT-T).
    fn ensure_sockets(&mut self, ip: IpAddr) -> Result<(), String> {
        self.backend.prepare_local(ip).map_err(|e| e.0)?;
        let mut ports = vec![IKE_PORT];
        if !self.backend.nat_t_ike() {
            ports.push(NAT_T_PORT);
        }
        for port in ports {
            let addr = SocketAddr::new(ip, port);
            if self.sockets.contains_key(&addr) {
                continue;
            }
            let std_socket = std::net::UdpSocket::bind(addr).map_err(|e| {
                format!("cannot bind the IKE socket {addr}: {e} (is another IKE daemon running?)")
            })?;
            self.backend
                .prepare_ike_socket(&std_socket, port)
                .map_err(|e| format!("preparing the IKE socket {addr}: {e}"))?;
            std_socket
                .set_nonblocking(true)
                .map_err(|e| format!("IKE socket {addr}: {e}"))?;
            let sender = std_socket
                .try_clone()
                .map_err(|e| format!("IKE socket {addr}: {e}"))?;
            let socket = Arc::new(
                UdpSocket::from_std(std_socket).map_err(|e| format!("IKE socket {addr}: {e}"))?,
            );
            tokio::spawn(receive(socket, addr, self.inbound.clone()));
            tracing::info!(%addr, "IKE socket bound");
            self.sockets.insert(addr, sender);
        }
        Ok(())
    }

    /// `up`: starts an IKE SA with `peer` (or joins the one under way, or reports the one
    /// that is up). `reply` is answered once the CHILD_SA is installed or IKE failed.
    pub(crate) fn up(
        &mut self,
        now: Instant,
        peer: IpAddr,
        options: &UpOptions,
        reply: oneshot::Sender<Response>,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.held && p.handle.is_none() && !p.deleting {
                // Lost SAs waiting for traffic: the operator asks now.
                p.waiters.push(reply);
                self.restart(now, peer);
                self.pump(now);
                return;
            }
            if !p.deleting {
                if let Some(summary) = self.summary(peer, true) {
                    let _ = reply.send(Response::Up(Box::new(summary)));
                } else if let Some(p) = self.peers.get_mut(&peer) {
                    p.waiters.push(reply);
                }
                return;
            }
            tracing::info!(%peer, "up waits for the deletion of the current SAs");
            self.awaiting_delete
                .push((peer, Box::new(options.clone()), reply));
            return;
        }
        match self.initiate(now, peer, options) {
            Ok(true) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.waiters.push(reply);
                }
            }
            Ok(false) => {
                tracing::info!(%peer, "waiting for the host certificate before IKE");
                self.awaiting_identity
                    .push((peer, Box::new(options.clone()), reply));
            }
            Err((kind, message)) => {
                let _ = reply.send(error(kind, message));
            }
        }
        self.pump(now);
    }

    /// Starts IKE with `peer`; `Ok(false)` when the credentials cannot sign yet (no host
    /// certificate issued so far), so the request must wait for it.
    fn initiate(
        &mut self,
        now: Instant,
        peer: IpAddr,
        options: &UpOptions,
    ) -> Result<bool, (ErrorKind, String)> {
        let invalid = |m: String| (ErrorKind::InvalidOptions, m);
        let selectors = options
            .selectors
            .iter()
            .map(|s| parse_selector(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let mode = match options.mode.as_deref() {
            None | Some("transport") => ike::Mode::Transport,
            Some("tunnel") => ike::Mode::Tunnel,
            Some(other) => return Err(invalid(format!("mode {other:?}: use transport or tunnel"))),
        };
        let local = local_address_towards(peer)
            .map_err(|e| (ErrorKind::IkeFailed, format!("no route to {peer}: {e}")))?;
        let (credentials, rekey) = (self.credentials)(options, local).map_err(invalid)?;
        let renewable = credentials.renewable;
        if !credentials.ready {
            return Ok(false);
        }
        let mut config = Config::new(credentials.local, credentials.peer);
        apply_rekey(&mut config, rekey, options.ike_rekey_seconds);
        set_nat_keepalive(&mut config, self.nat_keepalive);
        config.mode = mode;
        config.local_ts = selectors
            .iter()
            .map(|s| TsRange::host(local, s.protocol.unwrap_or(0), None))
            .collect();
        config.remote_ts = selectors
            .iter()
            .map(|s| TsRange::host(peer, s.protocol.unwrap_or(0), s.remote_port))
            .collect();
        // `up` waits for the answer: give up on a silent peer within about half a minute
        // (2 s, then ×1.5 per retransmission, 4 retransmissions) instead of strongSwan's
        // three minutes.
        config.retransmit = RetransmitConfig {
            timeout: Duration::from_secs(2),
            base: 1.5,
            tries: 4,
            ..RetransmitConfig::default()
        };
        self.ensure_sockets(local)
            .map_err(|e| (ErrorKind::IkeFailed, e))?;
        self.backend
            .prepare_peer(local, peer, &selectors)
            .map_err(|e| (ErrorKind::DatapathFailed, e.0))?;
        let handle = match self.endpoint.initiate(
            now,
            Arc::new(config),
            SocketAddr::new(local, IKE_PORT),
            SocketAddr::new(peer, IKE_PORT),
        ) {
            Ok(h) => h,
            Err(e) => {
                self.backend.remove_peer(peer);
                return Err((
                    ErrorKind::IkeFailed,
                    format!("starting IKE with {peer}: {e}"),
                ));
            }
        };
        tracing::info!(%peer, %local, spi = %format_args!("{handle:016x}"), "initiating IKE SA");
        let p = self
            .peers
            .entry(peer)
            .or_insert_with(|| Peer::new(local, now));
        p.local = local;
        p.handle = Some(handle);
        p.renewable = renewable;
        p.prepared = true;
        p.started = now;
        p.options = Some(Box::new(options.clone()));
        p.restart_at = None;
        p.held = false;
        self.handles.insert(handle, peer);
        Ok(true)
    }

    /// Re-initiates the lost SAs whose peers have traffic waiting (and whose retry wait,
    /// after a failed attempt, is over); re-arms the others.
    fn restart_due(&mut self, now: Instant) {
        let due: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.held && !p.deleting && p.restart_at.is_some_and(|t| t <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for peer in due {
            let held = self.backend.held_packets(peer);
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if held > p.trap_baseline {
                tracing::info!(%peer, held = held - p.trap_baseline,
                    "traffic to the peer is waiting: re-initiating the lost IKE SA");
                self.restart(now, peer);
            } else {
                p.restart_at = Some(now + TRAP_POLL);
            }
        }
    }

    /// Initiates again with the options of the original `up`.
    fn restart(&mut self, now: Instant, peer: IpAddr) {
        let Some(options) = self.peers.get(&peer).and_then(|p| p.options.clone()) else {
            return;
        };
        let failure = match self.initiate(now, peer, &options) {
            Ok(true) => None,
            Ok(false) => Some("no host certificate yet".to_owned()),
            Err((_, message)) => Some(message),
        };
        if let Some(why) = failure {
            let held = self.backend.held_packets(peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                tracing::warn!(%peer, "re-initiation failed: {why}");
                p.answer(&error(ErrorKind::IkeFailed, why.clone()));
                p.last_error = Some(why);
                p.trap_baseline = held;
                p.restart_at = Some(now + p.backoff);
                p.backoff = (p.backoff * 2).min(RESTART_MAX);
            }
        }
    }

    /// The first host certificate arrived: `up` requests that waited for it go ahead.
    pub(crate) fn identity_ready(&mut self, now: Instant) {
        for (peer, options, reply) in std::mem::take(&mut self.awaiting_identity) {
            self.up(now, peer, &options, reply);
        }
    }

    /// Getting the first host certificate failed: `up` requests waiting for it are told why
    /// (the daemon keeps trying; a later `up` may succeed).
    pub(crate) fn identity_failed(&mut self, why: &str) {
        for (peer, _, reply) in std::mem::take(&mut self.awaiting_identity) {
            let _ = reply.send(error(
                ErrorKind::IkeFailed,
                format!(
                    "no host certificate to authenticate to {peer} with: {why} (`ibm-ipsec \
                     status` shows the daemon's attempts)"
                ),
            ));
        }
    }

    /// After the host certificate was renewed: reauthenticates (RFC 7296 §2.8.3,
    /// make-before-break) every established IKE SA that signs with it, so each peer sees the
    /// new certificate before the old one expires.
    pub(crate) fn reauthenticate_renewable(&mut self, now: Instant) {
        let targets: Vec<(IpAddr, SaHandle)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.renewable && !p.deleting)
            .filter_map(|(ip, p)| p.handle.map(|h| (*ip, h)))
            .filter(|(_, h)| self.endpoint.sa(*h).is_some_and(|sa| sa.is_established()))
            .collect();
        for (peer, handle) in targets {
            match self.endpoint.reauthenticate(now, handle) {
                Ok(new) => {
                    tracing::info!(%peer, new = %format_args!("{new:016x}"),
                        "reauthenticating with the renewed certificate");
                    self.handles.insert(new, peer);
                }
                Err(e) => tracing::warn!(%peer, "reauthentication not started: {e}"),
            }
        }
        self.pump(now);
    }

    /// One datagram from an IKE socket or the backend's NAT-T socket.
    pub(crate) fn handle_datagram(&mut self, now: Instant, d: IkeDatagram) {
        if let Err(e) = self
            .endpoint
            .handle_datagram(now, d.from, d.local, &d.payload)
        {
            tracing::debug!(from = %d.from, "IKE datagram dropped: {e}");
        }
        self.pump(now);
    }

    /// Runs the endpoint's timers.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.traffic_poll_at.is_some_and(|t| t <= now) {
            self.report_traffic(now);
        }
        self.endpoint.handle_timeout(now);
        self.restart_due(now);
        self.pump(now);
    }

    /// Passes the datapath's CHILD_SA packet counters to the IKE SAs (RFC 7296 §2.4: ESP
    /// from the peer proves it alive, so DPD waits; RFC 3948 §2.3: ESP to it keeps a NAT's
    /// mapping open, so no keepalive is needed).
    fn report_traffic(&mut self, now: Instant) {
        self.traffic_poll_at = None;
        let traffic: Vec<ike::ChildTraffic> = self
            .peers
            .iter()
            .flat_map(|(peer, p)| p.children.iter().map(move |c| (*peer, c)))
            .filter_map(|(peer, c)| {
                let counters = self.backend.counters(peer, c.spi_in, c.spi_out)?;
                Some(ike::ChildTraffic {
                    spi_in: c.spi_in,
                    packets_in: counters.packets_in,
                    packets_out: counters.packets_out,
                })
            })
            .collect();
        if !traffic.is_empty() {
            self.endpoint.handle_child_traffic(now, &traffic);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let restart = self.peers.values().filter_map(|p| p.restart_at).min();
        [self.endpoint.poll_timeout(), restart, self.traffic_poll_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether any IKE SA is left.
    pub(crate) fn is_idle(&self) -> bool {
        self.endpoint.is_empty()
    }

    /// `down`: sends DELETE for the IKE SA with each target peer; their SAs are removed when
    /// the peer confirms (or the DELETE times out).
    pub(crate) fn down(&mut self, now: Instant, target: DownTarget) -> Response {
        let peers: Vec<IpAddr> = match target {
            DownTarget::All => {
                let mut all: Vec<IpAddr> = self.peers.keys().copied().collect();
                all.sort();
                all
            }
            DownTarget::Peer(peer) => {
                if !self.peers.contains_key(&peer) {
                    return error(
                        ErrorKind::UnknownPeer,
                        format!("no IKE SA with {peer} (`ibm-ipsec status` lists the peers)"),
                    );
                }
                vec![peer]
            }
        };
        for peer in &peers {
            self.delete_peer(now, *peer, "deleted by `ibm-ipsec down`");
        }
        self.pump(now);
        Response::Down { deleted: peers }
    }

    fn delete_peer(&mut self, now: Instant, peer: IpAddr, why: &str) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.deleting = true;
        p.answer(&error(ErrorKind::IkeFailed, format!("{peer}: {why}")));
        let children: Vec<(u32, u32)> = p
            .children
            .drain(..)
            .map(|c| (c.spi_in, c.spi_out))
            .collect();
        let mut handles: Vec<SaHandle> = self
            .handles
            .iter()
            .filter(|(_, ip)| **ip == peer)
            .map(|(h, _)| *h)
            .collect();
        handles.sort_unstable();
        let mut sent = false;
        for h in handles {
            sent |= self.endpoint.delete(now, h).is_ok();
        }
        if !sent {
            // No live IKE SA to send DELETE on (never got past IKE_SA_INIT, or already gone).
            self.forget_peer(peer);
            return;
        }
        // Once our DELETE is out we use the SAs no more (RFC 7296 §1.4.1): they leave the
        // datapath now; the IKE SA stays listed as `deleting` until the peer confirms.
        for (spi_in, spi_out) in children {
            self.backend.remove_child(peer, spi_in, spi_out);
        }
        self.backend.remove_peer(peer);
    }

    /// Sends DELETE for every IKE SA (SIGTERM).
    pub(crate) fn delete_all(&mut self, now: Instant) {
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for peer in peers {
            self.delete_peer(now, peer, "the daemon is stopping");
        }
        self.pump(now);
    }

    /// Removes everything from the datapath (after [`delete_all`](Self::delete_all)).
    pub(crate) fn shutdown(&mut self) {
        self.retired.clear();
        for (_, _, reply) in self
            .awaiting_identity
            .drain(..)
            .chain(self.awaiting_delete.drain(..))
        {
            let _ = reply.send(error(
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            ));
        }
        for (_, mut p) in self.peers.drain() {
            p.answer(&error(
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            ));
        }
        self.backend.shutdown();
    }

    fn forget_peer(&mut self, peer: IpAddr) {
        if let Some(mut p) = self.peers.remove(&peer) {
            let reason = p
                .last_error
                .clone()
                .unwrap_or_else(|| format!("the IKE SA with {peer} closed"));
            p.answer(&error(ErrorKind::IkeFailed, reason));
            for c in &p.children {
                self.backend.remove_child(peer, c.spi_in, c.spi_out);
            }
        }
        let gone: Vec<SaHandle> = self
            .handles
            .iter()
            .filter(|(_, ip)| **ip == peer)
            .map(|(h, _)| *h)
            .collect();
        for h in gone {
            self.handles.remove(&h);
            self.ike_info.remove(&h);
        }
        self.retired.push(peer);
    }

    /// Drains the endpoint: events (SA installation) before datagrams, until both are empty.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some((handle, event)) = self.endpoint.poll_event() {
                progressed = true;
                self.on_event(now, handle, event);
            }
            while let Some(d) = self.endpoint.poll_transmit() {
                progressed = true;
                self.transmit(now, d);
            }
            if !progressed {
                break;
            }
        }
        for peer in std::mem::take(&mut self.retired) {
            if !self.peers.contains_key(&peer) {
                self.backend.remove_peer(peer);
            }
        }
        // Only requests whose peer is gone go ahead (each may pump again; the rest stay).
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting_delete)
            .into_iter()
            .partition(|(peer, _, _)| !self.peers.contains_key(peer));
        self.awaiting_delete = waiting;
        for (peer, options, reply) in ready {
            self.up(now, peer, &options, reply);
        }
        if self.traffic_poll_at.is_none() && self.peers.values().any(|p| !p.children.is_empty()) {
            self.traffic_poll_at = Some(now + TRAFFIC_POLL);
        }
    }

    fn peer_of(&mut self, handle: SaHandle, event: &Event) -> Option<IpAddr> {
        if let Some(ip) = self.handles.get(&handle) {
            return Some(*ip);
        }
        let ip = match event {
            Event::ChildSaUp(c) => Some(c.remote.ip()),
            Event::ChildSaRekeyed { new, .. } => Some(new.remote.ip()),
            _ => self.endpoint.sa(handle).map(|sa| sa.remote().ip()),
        }?;
        self.handles.insert(handle, ip);
        Some(ip)
    }

    fn on_event(&mut self, now: Instant, handle: SaHandle, event: Event) {
        let Some(peer) = self.peer_of(handle, &event) else {
            tracing::debug!(spi = %format_args!("{handle:016x}"), ?event, "event of an unknown SA");
            return;
        };
        match event {
            Event::IkeSaUp {
                peer: identity,
                suite,
                encap,
                ..
            } => {
                let cert_expiry = identity
                    .certificate
                    .as_ref()
                    .map(|c| pki::format_time(c.not_after));
                tracing::info!(%peer, remote_id = %super::auth::describe_identity(&identity.id),
                    peer_cert_expires = cert_expiry.as_deref().unwrap_or("-"),
                    encap, "IKE SA established");
                let local = self
                    .endpoint
                    .sa(handle)
                    .map_or_else(|| route_source(peer), |sa| sa.local().ip());
                let rekey_at = ike_rekey_at(&self.endpoint, handle);
                let p = self
                    .peers
                    .entry(peer)
                    .or_insert_with(|| Peer::new(local, now));
                // A reauthentication's new IKE SA takes over at `Reauthenticated`; any other
                // new one when the current one is not established (or gone).
                let current_up = p
                    .handle
                    .and_then(|h| self.endpoint.sa(h))
                    .is_some_and(|sa| sa.is_established());
                if !current_up {
                    p.handle = Some(handle);
                }
                self.ike_info.insert(
                    handle,
                    IkeUp {
                        algorithms: ike_suite_name(&suite),
                        remote_id: super::auth::describe_identity(&identity.id),
                        rekey_at,
                        peer_cert: identity.certificate,
                    },
                );
            }
            Event::ChildSaUp(child) => {
                let unprepared = self.peers.get(&peer).map_or(true, |p| !p.prepared);
                let prepared = if unprepared {
                    self.backend
                        .prepare_peer(child.local.ip(), peer, &[])
                        .map(|()| {
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.prepared = true;
                            }
                        })
                } else {
                    Ok(())
                };
                if let Err(e) = prepared.and_then(|()| self.backend.install_child(&child)) {
                    let message = format!("installing the CHILD_SA with {peer}: {e}");
                    tracing::error!("{message}");
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.last_error = Some(message.clone());
                        p.answer(&error(ErrorKind::DatapathFailed, message));
                    }
                    let _ = self.endpoint.delete(now, handle);
                    return;
                }
                let c = child_row(&child);
                tracing::info!(%peer, spi_in = %format_args!("{:08x}", c.spi_in),
                    spi_out = %format_args!("{:08x}", c.spi_out), algorithm = %c.algorithm,
                    selectors = %c.selectors, "CHILD_SA installed");
                let local = child.local.ip();
                let p = self
                    .peers
                    .entry(peer)
                    .or_insert_with(|| Peer::new(local, now));
                p.handle.get_or_insert(handle);
                p.children.push(c);
                p.was_up = true;
                p.backoff = RESTART_FIRST;
                p.last_error = None;
                if !p.waiters.is_empty() {
                    if let Some(summary) = self.summary(peer, false) {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.answer(&Response::Up(Box::new(summary)));
                        }
                    }
                }
            }
            Event::ChildSaRekeyed { old_spi_in, new } => {
                if let Err(e) = self.backend.rekey_child(old_spi_in, &new) {
                    tracing::error!(%peer, "installing the rekeyed CHILD_SA: {e}");
                    return;
                }
                tracing::info!(%peer, old = %format_args!("{old_spi_in:08x}"),
                    new = %format_args!("{:08x}", new.spi_in), "CHILD_SA rekeyed");
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.children.push(child_row(&new));
                }
            }
            Event::ChildSaDown {
                spi_in,
                spi_out,
                reason,
                ..
            } => {
                tracing::info!(%peer, spi_in = %format_args!("{spi_in:08x}"), %reason,
                    "CHILD_SA removed");
                self.backend.remove_child(peer, spi_in, spi_out);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.children.retain(|c| c.spi_in != spi_in);
                }
            }
            Event::IkeSaRekeyed {
                old_spi,
                new_spi,
                suite,
            } => {
                // The CHILD_SAs live on under the new IKE SA; the old one goes quietly.
                tracing::info!(%peer, old = %format_args!("{old_spi:016x}"),
                    new = %format_args!("{new_spi:016x}"), "IKE SA rekeyed");
                self.handles.remove(&old_spi);
                self.handles.insert(new_spi, peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.handle.map_or(true, |h| h == old_spi) {
                        p.handle = Some(new_spi);
                    }
                }
                if let Some(mut ike) = self.ike_info.remove(&old_spi) {
                    ike.algorithms = ike_suite_name(&suite);
                    ike.rekey_at = ike_rekey_at(&self.endpoint, new_spi);
                    self.ike_info.insert(new_spi, ike);
                }
            }
            Event::Reauthenticated { old } => {
                tracing::info!(%peer, old = %format_args!("{old:016x}"),
                    new = %format_args!("{handle:016x}"), "IKE SA reauthenticated");
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.handle = Some(handle);
                }
            }
            Event::PeerAddressChanged { old, new, .. } => {
                // The IKE SA rekeys the CHILD_SAs; their replacements (`ChildSaRekeyed`)
                // carry the new ESP-in-UDP endpoints into the datapath.
                tracing::info!(%peer, %old, %new,
                    "peer's NAT mapping changed; its CHILD_SAs are rekeyed to follow it");
            }
            Event::IkeSaDown { reason } => {
                tracing::info!(%peer, spi = %format_args!("{handle:016x}"), %reason,
                    "IKE SA closed");
                self.handles.remove(&handle);
                self.ike_info.remove(&handle);
                // Another IKE SA with the peer may live on (a newer one after the peer
                // restarted and sent INITIAL_CONTACT, a reauthentication): it takes over.
                let mut others: Vec<SaHandle> = self
                    .handles
                    .iter()
                    .filter(|(_, ip)| **ip == peer)
                    .map(|(h, _)| *h)
                    .collect();
                others.sort_by_key(|h| !self.endpoint.sa(*h).is_some_and(|sa| sa.is_established()));
                match (self.peers.get_mut(&peer), others.first()) {
                    (Some(p), Some(&next)) => {
                        if p.handle.map_or(true, |h| h == handle) {
                            p.handle = Some(next);
                        }
                    }
                    (Some(p), None) if p.was_up && !p.deleting && p.options.is_some() => {
                        // Lost without our `down` (DPD, the peer's DELETE, a failed rekey):
                        // the peer stays in the datapath, so its traffic is held rather than
                        // sent in clear, and the next packet to it negotiates new SAs.
                        tracing::warn!(%peer, %reason,
                            "IKE SA lost; traffic to the peer is held until new SAs are up");
                        p.answer(&error(
                            ErrorKind::IkeFailed,
                            format!("the IKE SA with {peer} was lost: {reason}"),
                        ));
                        p.last_error = Some(reason);
                        p.handle = None;
                        p.children.clear();
                        p.held = true;
                        p.restart_at = Some(now + TRAP_POLL);
                        p.trap_baseline = self.backend.held_packets(peer);
                    }
                    (Some(p), None) => {
                        p.last_error.get_or_insert(reason);
                        self.forget_peer(peer);
                    }
                    (None, _) => {}
                }
            }
            Event::Failed { reason } => {
                let message = describe_failure(peer, &reason);
                tracing::warn!("{message}");
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.answer(&error(ErrorKind::IkeFailed, message.clone()));
                    p.last_error = Some(message);
                }
            }
        }
    }

    fn transmit(&mut self, now: Instant, d: Datagram) {
        if d.is_nat_keepalive() {
            self.send_nat_keepalive(&d);
            return;
        }
        let peer = d.remote.ip();
        if !self.peers.contains_key(&peer) {
            // Our first datagram to a peer that initiated: an IKE_SA_INIT response that
            // created an SA (non-zero responder SPI; stateless refusals create nothing). The
            // peer is tracked from here; the datapath learns of it only once it has
            // authenticated (at its first CHILD_SA), so a spoofed IKE_SA_INIT cannot make us
            // capture traffic to an address.
            let ike = if d.non_esp_marker {
                d.payload.get(4..).unwrap_or_default()
            } else {
                &d.payload[..]
            };
            let Ok(header) = HeaderPacket::new_checked(ike) else {
                return;
            };
            let handle = header.responder_spi();
            let sa_init_response = header.exchange_type() == ExchangeType::IkeSaInit
                && header.flags().response()
                && !header.flags().initiator();
            if sa_init_response && handle != 0 {
                self.handles.insert(handle, peer);
                let mut p = Peer::new(d.local.ip(), now);
                p.handle = Some(handle);
                p.renewable = self.responder_renewable;
                self.peers.insert(peer, p);
            }
        }
        let result = if d.local.port() == NAT_T_PORT && self.backend.nat_t_ike() {
            let message = if d.non_esp_marker {
                d.payload.get(4..).unwrap_or_default()
            } else {
                &d.payload[..]
            };
            self.backend.send_ike(d.local, d.remote, message)
        } else {
            match self.sockets.get(&d.local) {
                Some(socket) => socket.send_to(&d.payload, d.remote).map(drop),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no IKE socket on {}", d.local),
                )),
            }
        };
        if let Err(e) = result {
            // IKE retransmits; a lost datagram costs a retransmission, not the SA.
            tracing::debug!(to = %d.remote, from = %d.local, "IKE send failed: {e}");
        }
    }

    /// A NAT-T keepalive leaves from our port 4500 as is: through the backend that owns that
    /// port, or from our own 4500 socket (kernel datapath).
    fn send_nat_keepalive(&self, d: &Datagram) {
        let result = if self.backend.nat_t_ike() {
            self.backend.send_nat_keepalive(d.local, d.remote)
        } else {
            match self.sockets.get(&d.local) {
                Some(socket) => socket.send_to(&d.payload, d.remote).map(drop),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no NAT-T socket on {}", d.local),
                )),
            }
        };
        match result {
            Ok(()) => tracing::debug!(to = %d.remote, "NAT-T keepalive sent"),
            // The next one comes in 20 s; a NAT that forgot us meanwhile costs a DPD.
            Err(e) => tracing::debug!(to = %d.remote, "NAT-T keepalive not sent: {e}"),
        }
    }

    fn summary(&self, peer: IpAddr, existing: bool) -> Option<UpSummary> {
        let p = self.peers.get(&peer)?;
        let child = p.children.last()?;
        let ike = self.ike_info.get(&p.handle?)?;
        let (spi_i, spi_r) = p
            .handle
            .and_then(|h| self.endpoint.sa(h))
            .map_or((0, 0), |sa| sa.spis());
        Some(UpSummary {
            peer,
            local: p.local,
            ike_spi_i: format!("{spi_i:016x}"),
            ike_spi_r: format!("{spi_r:016x}"),
            spi_in: format!("{:08x}", child.spi_in),
            spi_out: format!("{:08x}", child.spi_out),
            ike_algorithms: ike.algorithms.clone(),
            esp_algorithm: child.algorithm.clone(),
            mode: child.mode.into(),
            encap: child.encap.clone(),
            datapath: self.backend.kind(),
            remote_id: ike.remote_id.clone(),
            selectors: child.selectors.clone(),
            elapsed_ms: if existing {
                0
            } else {
                u64::try_from(p.started.elapsed().as_millis()).unwrap_or(u64::MAX)
            },
            existing,
        })
    }

    /// Peers whose SAs were lost and whose traffic is held until new ones are negotiated.
    pub(crate) fn held_peers(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.held && p.handle.is_none())
            .map(|(ip, _)| *ip)
            .collect();
        v.sort();
        v
    }

    /// The `status` rows of every IKE SA and CHILD_SA.
    pub(crate) fn status(&self) -> (Vec<IkeSaStatus>, Vec<ChildSaStatus>) {
        let mut peers: Vec<&IpAddr> = self.peers.keys().collect();
        peers.sort();
        let mut ike_rows = Vec::new();
        let mut child_rows = Vec::new();
        for peer in peers {
            let p = &self.peers[peer];
            if p.held && p.handle.is_none() {
                // No SA: `held_peers` lists it.
                continue;
            }
            let sa = p.handle.and_then(|h| self.endpoint.sa(h));
            let (spi_i, spi_r) = sa.map_or((0, 0), |sa| sa.spis());
            let state = if p.deleting {
                "deleting"
            } else if p.held {
                "restarting"
            } else if sa.is_some_and(|sa| sa.is_established()) {
                "established"
            } else {
                "connecting"
            };
            let ike = p.handle.and_then(|h| self.ike_info.get(&h));
            let cert = ike.and_then(|i| i.peer_cert.as_ref());
            ike_rows.push(IkeSaStatus {
                peer: *peer,
                local: p.local,
                state: state.into(),
                spi_i: format!("{spi_i:016x}"),
                spi_r: format!("{spi_r:016x}"),
                algorithms: ike.map_or("-".into(), |i| i.algorithms.clone()),
                remote_id: ike.map_or("-".into(), |i| i.remote_id.clone()),
                rekey_unix: ike.and_then(|i| i.rekey_at).map(super::unix_secs),
                peer_cert_expiry_unix: cert.map(|c| super::unix_secs(c.not_after)),
                peer_cert_subject: cert.map(|c| c.subject.clone()),
                peer_cert_issuer: cert.map(|c| c.issuer.clone()),
                peer_cert_serial: cert.map(|c| c.serial.clone()),
                behind_nat: sa.is_some_and(ike::IkeSa::behind_nat),
                nat_keepalive_secs: sa
                    .filter(|sa| sa.behind_nat())
                    .and_then(|sa| sa.config().nat_keepalive)
                    .map(|d| d.as_secs()),
            });
            for c in &p.children {
                let counters = self
                    .backend
                    .counters(*peer, c.spi_in, c.spi_out)
                    .unwrap_or_default();
                child_rows.push(ChildSaStatus {
                    peer: *peer,
                    spi_in: format!("{:08x}", c.spi_in),
                    spi_out: format!("{:08x}", c.spi_out),
                    mode: c.mode.into(),
                    algorithm: c.algorithm.clone(),
                    selectors: c.selectors.clone(),
                    bytes_in: counters.bytes_in,
                    bytes_out: counters.bytes_out,
                    packets_in: counters.packets_in,
                    packets_out: counters.packets_out,
                    rekey_unix: Some(super::unix_secs(c.rekey_at)),
                });
            }
        }
        (ike_rows, child_rows)
    }
}

/// Receives datagrams on one IKE socket for the main loop, until the loop is gone.
async fn receive(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    inbound: mpsc::UnboundedSender<IkeDatagram>,
) {
    // IKE messages with a certificate chain can exceed 1500 bytes when unfragmented.
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let d = IkeDatagram {
                    from,
                    local,
                    payload: buf[..n].to_vec(),
                };
                if inbound.send(d).is_err() {
                    return;
                }
            }
            Err(e) => {
                // ICMP errors surface as ECONNREFUSED on the next receive; keep going.
                tracing::debug!(%local, "IKE socket receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The source address the kernel would use towards `peer` (a connected UDP socket sends
/// nothing; it only resolves the route).
fn local_address_towards(peer: IpAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match peer {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(SocketAddr::new(peer, IKE_PORT))?;
    Ok(probe.local_addr()?.ip())
}

/// Our address towards `peer`, for rows of SAs whose local address the endpoint does not
/// expose (the unspecified address when there is no route any more).
fn route_source(peer: IpAddr) -> IpAddr {
    local_address_towards(peer).unwrap_or(match peer {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    })
}

/// `aes256-sha384-ecp384` (strongSwan's proposal syntax; the PRF is named only when it does
/// not follow from the integrity algorithm, as with AEADs).
pub(crate) fn ike_suite_name(suite: &ike::crypto::IkeSuite) -> String {
    let mut parts = vec![encr_name(suite.encr).to_owned()];
    match suite.integ {
        Some(integ) => parts.push(integ_name(integ).into()),
        None => parts.push(prf_name(suite.prf).into()),
    }
    parts.push(dh_name(suite.dh).into());
    parts.join("-")
}

fn encr_name(e: EncrAlgorithm) -> &'static str {
    match e {
        EncrAlgorithm::AesCbc128 => "aes128",
        EncrAlgorithm::AesCbc192 => "aes192",
        EncrAlgorithm::AesCbc256 => "aes256",
        EncrAlgorithm::AesGcm16_128 => "aes128gcm16",
        EncrAlgorithm::AesGcm16_256 => "aes256gcm16",
    }
}

fn integ_name(i: IntegAlgorithm) -> &'static str {
    match i {
        IntegAlgorithm::HmacSha2_256_128 => "sha256",
        IntegAlgorithm::HmacSha2_384_192 => "sha384",
        IntegAlgorithm::HmacSha2_512_256 => "sha512",
    }
}

fn prf_name(p: PrfAlgorithm) -> &'static str {
    match p {
        PrfAlgorithm::HmacSha256 => "prfsha256",
        PrfAlgorithm::HmacSha384 => "prfsha384",
        PrfAlgorithm::HmacSha512 => "prfsha512",
    }
}

fn dh_name(d: DhGroup) -> &'static str {
    match d {
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Modp3072 => "modp3072",
        DhGroup::Modp4096 => "modp4096",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Curve25519 => "curve25519",
    }
}

fn child_row(child: &ike::ChildSa) -> Child {
    let algorithm = match child.integ {
        None => encr_name(child.encr).to_owned(),
        Some(integ) => format!("{}-{}", encr_name(child.encr), integ_name(integ)),
    };
    let ts = |list: &[TsRange]| list.iter().map(ts_name).collect::<Vec<_>>().join(",");
    Child {
        spi_in: child.spi_in,
        spi_out: child.spi_out,
        mode: match child.mode {
            ike::Mode::Transport => "transport",
            ike::Mode::Tunnel => "tunnel",
        },
        algorithm,
        selectors: format!("{} === {}", ts(&child.local_ts), ts(&child.remote_ts)),
        encap: child.encap.map_or("none".into(), |e| {
            format!("udp {} -> {}", e.local_port, e.remote_port)
        }),
        rekey_at: SystemTime::now() + child.lifetime.soft,
    }
}

/// `10.0.0.1/32[tcp/2049]` style.
fn ts_name(ts: &TsRange) -> String {
    let addr = if ts.start_addr == ts.end_addr {
        let bits = if ts.start_addr.is_ipv4() { 32 } else { 128 };
        format!("{}/{bits}", ts.start_addr)
    } else {
        format!("{}-{}", ts.start_addr, ts.end_addr)
    };
    let proto = match ts.ip_protocol {
        0 => return addr,
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        n => n.to_string(),
    };
    if ts.start_port == 0 && ts.end_port == u16::MAX {
        format!("{addr}[{proto}]")
    } else if ts.start_port == ts.end_port {
        format!("{addr}[{proto}/{}]", ts.start_port)
    } else {
        format!("{addr}[{proto}/{}-{}]", ts.start_port, ts.end_port)
    }
}

/// A one-line reason for the user from the IKE SA's failure text.
fn describe_failure(peer: IpAddr, reason: &str) -> String {
    if let Some(rest) = reason.strip_prefix("peer did not answer ") {
        // "IKE_SA_INIT after 4 retransmissions"
        let port = if rest.starts_with("IKE_SA_INIT") {
            500
        } else {
            4500
        };
        return format!(
            "peer {peer} did not answer {rest} (UDP {port}); check that it runs IKE and that \
             UDP 500 and 4500 are open"
        );
    }
    format!("IKE with {peer} failed: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::backend::{BackendError, ChildCounters, TrafficSelector};
    use std::sync::Mutex;

    /// A datapath that records the keepalives it is asked to send; with `owns_nat_t` it
    /// carries port 4500 (userspace), without it the driver binds 4500 itself (kernel).
    #[derive(Default)]
    struct Recorder {
        keepalives: Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>,
        owns_nat_t: bool,
    }

    impl SaBackend for Recorder {
        fn kind(&self) -> crate::control::DatapathKind {
            crate::control::DatapathKind::Userspace
        }
        fn prepare_ike_socket(&mut self, _: &std::net::UdpSocket, _: u16) -> std::io::Result<()> {
            Ok(())
        }
        fn nat_t_ike(&self) -> bool {
            self.owns_nat_t
        }
        fn set_ike_sink(&mut self, _: mpsc::UnboundedSender<IkeDatagram>) {}
        fn send_ike(&self, _: SocketAddr, _: SocketAddr, _: &[u8]) -> std::io::Result<()> {
            panic!("a keepalive is not an IKE message")
        }
        fn send_nat_keepalive(&self, local: SocketAddr, remote: SocketAddr) -> std::io::Result<()> {
            self.keepalives.lock().unwrap().push((local, remote));
            Ok(())
        }
        fn prepare_local(&mut self, _: IpAddr) -> Result<(), BackendError> {
            Ok(())
        }
        fn prepare_peer(
            &mut self,
            _: IpAddr,
            _: IpAddr,
            _: &[TrafficSelector],
        ) -> Result<(), BackendError> {
            Ok(())
        }
        fn install_child(&mut self, _: &ike::ChildSa) -> Result<(), BackendError> {
            Ok(())
        }
        fn rekey_child(&mut self, _: u32, _: &ike::ChildSa) -> Result<(), BackendError> {
            Ok(())
        }
        fn remove_child(&mut self, _: IpAddr, _: u32, _: u32) {}
        fn remove_peer(&mut self, _: IpAddr) {}
        fn counters(&self, _: IpAddr, _: u32, _: u32) -> Option<ChildCounters> {
            None
        }
        fn shutdown(&mut self) {}
    }

    #[test]
    fn nat_keepalives_leave_through_the_backend_that_owns_port_4500() {
        let backend = Recorder {
            owns_nat_t: true,
            ..Recorder::default()
        };
        let sent = backend.keepalives.clone();
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(
            Box::new(backend),
            None,
            &[],
            Box::new(|_, _| Err("no credentials in this test".into())),
            tx,
        )
        .unwrap();
        let (local, remote): (SocketAddr, SocketAddr) = (
            "10.0.0.1:4500".parse().unwrap(),
            "10.0.0.2:4500".parse().unwrap(),
        );
        driver.transmit(
            Instant::now(),
            Datagram {
                local,
                remote,
                non_esp_marker: false,
                payload: vec![ike::NAT_KEEPALIVE],
            },
        );
        assert_eq!(*sent.lock().unwrap(), [(local, remote)]);
        assert!(driver.peers.is_empty(), "a keepalive creates no peer");
    }

    #[tokio::test]
    async fn without_a_datapath_socket_keepalives_leave_from_our_own_port_4500() {
        // The kernel datapath's case: the driver's UDP 4500 socket sends the 0xFF octet.
        let local_ip: IpAddr = "127.0.0.77".parse().unwrap();
        if let Err(e) = std::net::UdpSocket::bind((local_ip, IKE_PORT)) {
            eprintln!("skipped: cannot bind UDP {local_ip}:500 here ({e}); CI runs as root");
            return;
        }
        let backend = Recorder::default();
        let asked = backend.keepalives.clone();
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(
            Box::new(backend),
            None,
            &[local_ip],
            Box::new(|_, _| Err("no credentials in this test".into())),
            tx,
        )
        .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Sent at once, as the first IKE_SA_INIT after `up` binds the sockets: no reactor
        // turn in between (a current-thread runtime never gives it one here).
        driver.transmit(
            Instant::now(),
            Datagram {
                local: SocketAddr::new(local_ip, NAT_T_PORT),
                remote: peer.local_addr().unwrap(),
                non_esp_marker: false,
                payload: vec![ike::NAT_KEEPALIVE],
            },
        );
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], [0xff]);
        assert_eq!(from, SocketAddr::new(local_ip, NAT_T_PORT));
        assert!(asked.lock().unwrap().is_empty(), "not through the backend");
    }

    #[test]
    fn nat_keepalive_interval_zero_turns_them_off() {
        let psk = Arc::new(ike::Psk::new(
            ike::wire::Identification::fqdn("a"),
            None,
            b"k".to_vec(),
        ));
        let mut config = Config::new(psk.clone(), psk);
        assert_eq!(config.nat_keepalive, Some(Duration::from_secs(20)));
        set_nat_keepalive(&mut config, None);
        assert_eq!(config.nat_keepalive, Some(Duration::from_secs(20)));
        set_nat_keepalive(&mut config, Some(7));
        assert_eq!(config.nat_keepalive, Some(Duration::from_secs(7)));
        set_nat_keepalive(&mut config, Some(0));
        assert_eq!(config.nat_keepalive, None);
    }

    #[test]
    fn ike_rekey_seconds_separates_the_ike_sa_schedule_from_the_child_sas() {
        let psk = Arc::new(ike::auth::Psk::new(
            ike::wire::Identification::ip(IpAddr::from([10, 0, 0, 1])),
            None,
            b"key".to_vec(),
        ));
        let mut config = Config::new(psk.clone(), psk);
        apply_rekey(&mut config, Some(20), None);
        assert_eq!(config.ike_rekey.rekey_time, Duration::from_secs(20));
        assert_eq!(config.child_rekey.rekey_time, Duration::from_secs(20));
        apply_rekey(&mut config, Some(20), Some(600));
        assert_eq!(config.child_rekey.rekey_time, Duration::from_secs(20));
        assert_eq!(config.child_lifetime.hard, Duration::from_secs(22));
        assert_eq!(config.ike_rekey.rekey_time, Duration::from_secs(600));
        assert_eq!(config.ike_rekey.hard(), Duration::from_secs(660));
    }

    #[test]
    fn suite_and_selector_names() {
        assert_eq!(
            ike_suite_name(&ike::crypto::IkeSuite::IBM_DEFAULT),
            "aes256-sha384-ecp384"
        );
        let aead = ike::crypto::IkeSuite {
            encr: EncrAlgorithm::AesGcm16_256,
            integ: None,
            prf: PrfAlgorithm::HmacSha256,
            dh: DhGroup::Curve25519,
        };
        assert_eq!(ike_suite_name(&aead), "aes256gcm16-prfsha256-curve25519");
        let ip = "10.0.0.2".parse().unwrap();
        assert_eq!(ts_name(&TsRange::host(ip, 0, None)), "10.0.0.2/32");
        assert_eq!(
            ts_name(&TsRange::host(ip, 6, Some(2049))),
            "10.0.0.2/32[tcp/2049]"
        );
        assert_eq!(ts_name(&TsRange::host(ip, 17, None)), "10.0.0.2/32[udp]");
    }

    #[test]
    fn silence_is_explained_with_the_port() {
        let m = describe_failure(
            "10.9.9.9".parse().unwrap(),
            "peer did not answer IKE_SA_INIT after 4 retransmissions",
        );
        assert!(
            m.starts_with(
                "peer 10.9.9.9 did not answer IKE_SA_INIT after 4 retransmissions (UDP 500)"
            ),
            "{m}"
        );
        let m = describe_failure(
            "10.9.9.9".parse().unwrap(),
            "AUTHENTICATION_FAILED from peer",
        );
        assert_eq!(
            m,
            "IKE with 10.9.9.9 failed: AUTHENTICATION_FAILED from peer"
        );
    }
}

//! The sans-IO IKE SA: one IKEv2 security association with one peer, in either role.
//!
//! Exchanges are small tasks in the submodules (strongSwan style): [`ike_init`] (IKE_SA_INIT
//! with NAT detection), [`ike_auth`] (IKE_AUTH and the first CHILD_SA), [`child`]
//! (CREATE_CHILD_SA: new and rekeyed CHILD_SAs), [`ike_rekey`] (CREATE_CHILD_SA rekeying the
//! IKE SA itself), [`collision`] (simultaneous rekeys and rekey-vs-delete, §2.8.1, §2.8.2,
//! §2.25), [`lifetime`] (rekey/expiry schedule and dead-peer detection) and [`informational`]
//! (DELETE, liveness).
//! Before any handler runs, [`rules`] checks which payloads the message must and may carry
//! (libreswan style).
//!
//! The SA keeps a message-ID window of one in each direction (RFC 7296 §2.3): one outstanding
//! request of ours, retransmitted on a timer until its response arrives, and the last response
//! we sent, replayed when the peer retransmits its request (§2.1). Commands issued while a
//! request is outstanding wait in a queue.
//!
//! Keys live only where they are needed: the IKE_SA_INIT task holds the DH secret and nonce;
//! SK_* keys exist from the end of IKE_SA_INIT; the IKE_SA_INIT messages and nonces that
//! IKE_AUTH signs are dropped once IKE_AUTH is done.

mod child;
mod collision;
mod ike_auth;
mod ike_init;
mod ike_rekey;
mod informational;
mod lifetime;
mod liveness;
mod natd;
mod protect;
mod reauth;
mod rules;
mod transport_nat;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::allocation::{Allocators, SpiRequest};
use crate::auth::PeerIdentity;
use crate::config::Config;
use crate::crypto::{DhSecret, IkeKeys, Random, Role, SkCipher};
use crate::error::{Error, Result};
use crate::event::{ChildSa, Event, Mode, UdpEncap};
use crate::fragment::{self, Reassembly};
use crate::proposal::ChildSuite;
use crate::retransmit::{Retransmitter, Timeout};
use crate::wire::{
    prepend_non_esp_marker, strip_non_esp_marker, ExchangeType, Flags, HashAlgorithm, Header,
    HeaderPacket, Message, Payload, TsRange,
};

pub use ike_init::Accept;
pub use ike_rekey::Handover;
pub use liveness::{ChildTraffic, NAT_KEEPALIVE};
pub use reauth::ChildTemplate;

/// One UDP datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Send from this address (our IKE port, 500 or 4500).
    pub local: SocketAddr,
    /// To this address.
    pub remote: SocketAddr,
    /// Whether `payload` starts with the 4-byte non-ESP marker (port 4500, RFC 3948 §2.2).
    pub non_esp_marker: bool,
    /// The UDP payload, marker included when `non_esp_marker` is set.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// IKE_SA_INIT or IKE_AUTH in progress.
    Connecting,
    /// IKE_AUTH done.
    Established,
    /// We sent a DELETE for the IKE SA.
    Deleting,
    /// Superseded by a rekey (its CHILD_SAs moved on); waiting for the peer's DELETE.
    Rekeyed,
    /// Gone; only queued output remains.
    Closed,
}

/// The SK_* keys and the two directions' SK protection.
struct SaKeys {
    ike: IkeKeys,
    seal: SkCipher,
    open: SkCipher,
    /// GCM IVs only have to be unique per key (RFC 5282 §3.1): a counter.
    iv_counter: u64,
}

impl SaKeys {
    fn new(ike: IkeKeys, local: Role) -> Result<Self> {
        Ok(SaKeys {
            seal: ike.sk_cipher(local)?,
            open: ike.sk_cipher(local.peer())?,
            ike,
            iv_counter: 0,
        })
    }
}

/// What IKE_AUTH signs, kept from IKE_SA_INIT until IKE_AUTH is done.
struct InitMaterial {
    ni: Vec<u8>,
    nr: Vec<u8>,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// Our outstanding request.
struct Pending {
    message_id: u32,
    exchange: ExchangeType,
    task: Task,
    packets: Vec<Vec<u8>>,
    timer: Retransmitter,
}

/// The state of the exchange we initiated, waiting for its response.
enum Task {
    Init(ike_init::InitTask),
    Auth(child::ChildRequest),
    CreateChild(child::ChildRequest),
    Dpd,
    DeleteChild { spi_in: u32 },
    DeleteIke,
    RekeyIke(ike_rekey::IkeRekeyRequest),
}

/// A command waiting for the request window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Dpd,
    RekeyChild {
        spi_in: u32,
    },
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
    /// A planned CHILD_SA of a reauthenticated SA ([`reauth`]).
    CreateChild,
    RekeyIke,
}

/// An installed CHILD_SA.
#[derive(Debug, Clone)]
struct Child {
    reqid: u32,
    spi_in: u32,
    spi_out: u32,
    suite: ChildSuite,
    mode: Mode,
    local_ts: Vec<TsRange>,
    remote_ts: Vec<TsRange>,
    /// Where it is in its life: rekeys and deletes start only from `Installed`.
    state: child::ChildState,
    /// When to rekey and delete it; drawn when it is first seen by the timers.
    timers: Option<lifetime::ChildTimers>,
}

/// One IKE SA. See the [module documentation](self).
pub struct IkeSa {
    config: Arc<Config>,
    role: Role,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    /// UDP encapsulation (NAT-T) for IKE after IKE_SA_INIT and for ESP.
    encap: bool,
    /// NAT detection found a NAT in front of us: we send NAT-T keepalives ([`liveness`]).
    behind_nat: bool,
    /// NAT detection found a NAT in front of the peer (or the peer faked its hash to force
    /// encapsulation): we follow its address (§2.23) and substitute its transport-mode
    /// selectors ([`transport_nat`], §2.23.1).
    peer_behind_nat: bool,
    /// Where the response to the request being handled goes: back to where the request came
    /// from, from where it arrived (§2.11), whether or not we adopt that address.
    reply_to: Option<(SocketAddr, SocketAddr)>,
    state: State,
    keys: Option<SaKeys>,
    init: Option<InitMaterial>,
    next_message_id: u32,
    pending: Option<Pending>,
    commands: VecDeque<Command>,
    peer_message_id: u32,
    last_response: Option<(u32, Vec<Vec<u8>>)>,
    reassembly: Option<Reassembly>,
    children: Vec<Child>,
    /// Where reqids and inbound SPIs of new CHILD_SAs come from.
    allocators: Allocators,
    /// Reqids this SA drew for CHILD_SAs still being negotiated; released by
    /// [`IkeSa::settle_reqids`] when the negotiation fails.
    leased_reqids: Vec<u32>,
    /// CHILD_SAs still to create (reauthentication, [`reauth`]).
    planned_children: VecDeque<ChildTemplate>,
    /// Send `INITIAL_CONTACT` in IKE_AUTH: the config's choice, never when reauthenticating.
    initial_contact: bool,
    peer: Option<PeerIdentity>,
    peer_hash_algorithms: Vec<HashAlgorithm>,
    peer_fragmentation: bool,
    half_open_deadline: Option<Instant>,
    /// Responder: when to sign our AUTH ahead of IKE_AUTH ([`ike_auth`]), and the result.
    early_auth_at: Option<Instant>,
    early_auth: Option<ike_auth::OwnAuth>,
    /// The peer's IKE_AUTH carried `INITIAL_CONTACT` (RFC 7296 §2.4).
    peer_initial_contact: bool,
    /// A reauthentication's new SA: the identity the replaced SA authenticated, which the
    /// peer must prove again (RFC 7296 §2.8.3).
    expected_peer: Option<crate::wire::Identification>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<Event>,
    /// Lifetimes, liveness, rekey retries and the hand-over to a successor SA.
    life: lifetime::Lifecycle,
}

impl core::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IkeSa")
            .field("role", &self.role)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("state", &self.state)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl IkeSa {
    fn new(
        config: Arc<Config>,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        allocators: Allocators,
    ) -> Self {
        IkeSa {
            config,
            role,
            spi_i,
            spi_r,
            local,
            remote,
            encap: false,
            behind_nat: false,
            peer_behind_nat: false,
            reply_to: None,
            state: State::Connecting,
            keys: None,
            init: None,
            next_message_id: 0,
            pending: None,
            commands: VecDeque::new(),
            peer_message_id: 0,
            last_response: None,
            reassembly: None,
            children: Vec::new(),
            allocators,
            leased_reqids: Vec::new(),
            planned_children: VecDeque::new(),
            initial_contact: false,
            peer: None,
            peer_hash_algorithms: Vec::new(),
            peer_fragmentation: false,
            half_open_deadline: None,
            early_auth_at: None,
            early_auth: None,
            peer_initial_contact: false,
            expected_peer: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            life: lifetime::Lifecycle::default(),
        }
    }

    /// Our role (the party that sent IKE_SA_INIT is the initiator).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our SPI: the key under which an [`Endpoint`](crate::Endpoint) routes to this SA.
    pub fn local_spi(&self) -> u64 {
        match self.role {
            Role::Initiator => self.spi_i,
            Role::Responder => self.spi_r,
        }
    }

    /// The (initiator, responder) SPI pair; the responder's is 0 until IKE_SA_INIT completes.
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// The peer's current address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Whether IKE_AUTH has completed and the SA is not being deleted.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the SA is gone (after its `IkeSaDown` event).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether UDP encapsulation is in use.
    pub fn uses_encap(&self) -> bool {
        self.encap
    }

    /// The authenticated peer, once established.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// (inbound, outbound) SPIs of the installed CHILD_SAs.
    pub fn child_spis(&self) -> Vec<(u32, u32)> {
        self.children
            .iter()
            .map(|c| (c.spi_in, c.spi_out))
            .collect()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.pending.as_ref().map(|p| p.timer.deadline());
        [
            retransmit,
            self.half_open_deadline,
            self.lifecycle_deadline(),
            self.keepalive_deadline(),
            self.early_auth_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs timers due at `now`: retransmission, giving up on a silent peer, the responder's
    /// half-open limit, the [`lifetime`] timers (rekeys, expiry, DPD, retries) and the NAT-T
    /// keepalive ([`liveness`]).
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.state == State::Closed {
            return;
        }
        self.run_timers(now, rng);
        self.note_sent(now);
        self.handle_keepalive_timeout(now);
    }

    fn run_timers(&mut self, now: Instant, rng: &mut dyn Random) {
        self.run_early_auth(now);
        if self.half_open_deadline.is_some_and(|d| now >= d) {
            self.half_open_deadline = None;
            if self.state == State::Connecting {
                self.fail("peer did not complete IKE_AUTH in time".into());
                return;
            }
        }
        self.handle_lifecycle_timeout(now, rng);
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        match p.timer.on_timeout(now, &self.config.retransmit, rng) {
            Timeout::Wait => {}
            Timeout::Retransmit => {
                let packets = p.packets.clone();
                for packet in packets {
                    self.push_transmit(packet);
                }
            }
            Timeout::GiveUp => {
                let exchange = p.exchange;
                let tries = p.timer.retransmissions();
                if matches!(p.task, Task::DeleteIke) {
                    self.close("deleted (peer did not confirm)".into());
                } else if matches!(p.task, Task::Dpd) {
                    self.fail(format!(
                        "peer did not answer DPD after {tries} retransmissions"
                    ));
                } else {
                    self.fail(format!(
                        "peer did not answer {exchange} after {tries} retransmissions"
                    ));
                }
            }
        }
    }

    /// Processes one UDP datagram received from `from` on our address `local`. On the NAT-T
    /// port it must start with the non-ESP marker (other datagrams there are ESP or
    /// keepalives and are ignored). Errors mean the datagram was dropped; the SA is unchanged
    /// unless an event says otherwise.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        udp_payload: &[u8],
        rng: &mut dyn Random,
    ) -> Result<()> {
        if self.state == State::Closed {
            return Ok(());
        }
        let data = if local.port() == self.config.nat_t_port {
            match strip_non_esp_marker(udp_payload) {
                Some(m) => m,
                None => return Ok(()),
            }
        } else {
            udp_payload
        };
        let packet = HeaderPacket::new_checked(data)?;
        let header = Header::parse(&packet)?;
        if header.initiator_spi != self.spi_i {
            return Err(Error::Protocol("initiator SPI does not match".into()));
        }
        // The I flag names the original initiator (RFC 7296 §3.1).
        if header.flags.initiator() != (self.role == Role::Responder) {
            return Err(Error::Protocol("I flag does not match our role".into()));
        }
        let result = if header.flags.response() {
            self.handle_response(now, from, local, data, header, rng)
        } else {
            self.handle_request(now, from, local, data, header, rng)
        };
        self.schedule_lifetimes(now, rng);
        self.note_sent(now);
        result
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        header: Header,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let Some(p) = self.pending.as_ref() else {
            return Err(Error::Protocol("unexpected response".into()));
        };
        if header.message_id != p.message_id || header.exchange_type != p.exchange {
            return Err(Error::Protocol("response to no outstanding request".into()));
        }
        if header.exchange_type == ExchangeType::IkeSaInit {
            return self.handle_init_response(now, data, header, rng);
        }
        if header.responder_spi != self.spi_r {
            return Err(Error::Protocol("responder SPI does not match".into()));
        }
        let Some(payloads) = self.unprotect(data, header.message_id)? else {
            return Ok(());
        };
        self.note_peer_address(now, from, local);
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        match p.task {
            Task::Init(_) => {}
            Task::Auth(req) => self.handle_auth_response(now, payloads, req, rng),
            Task::CreateChild(req) => self.handle_create_child_response(now, payloads, req, rng),
            Task::Dpd => {}
            Task::DeleteChild { spi_in } => self.handle_delete_child_response(spi_in, &payloads),
            Task::DeleteIke => self.close("deleted".into()),
            Task::RekeyIke(req) => self.handle_ike_rekey_response(now, payloads, req, rng),
        }
        self.kick(now, rng);
        Ok(())
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        header: Header,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let id = header.message_id;
        // A retransmitted request: replay our response (RFC 7296 §2.1). For a fragmented
        // request only fragment 1 triggers the replay (RFC 7383 §2.6.3).
        if let Some((last_id, packets)) = &self.last_response {
            if id == *last_id && id.wrapping_add(1) == self.peer_message_id {
                if self.is_genuine_retransmission(data, &header)? {
                    // To where this copy came from (§2.11), but the SA does not move: an
                    // old message replayed from a forged source proves nothing (§2.23).
                    let packets = packets.clone();
                    for packet in packets {
                        self.push_transmit_to(packet, local, from);
                    }
                }
                return Ok(());
            }
        }
        if header.exchange_type == ExchangeType::IkeSaInit {
            return Err(Error::Protocol(
                "IKE_SA_INIT request on an existing SA".into(),
            ));
        }
        if header.responder_spi != self.spi_r || id != self.peer_message_id {
            return Err(Error::Protocol("request outside the window".into()));
        }
        if self.keys.is_none() {
            return Err(Error::NotEstablished);
        }
        let Some(payloads) = self.unprotect(data, id)? else {
            return Ok(());
        };
        if self.awaiting_adoption(header.exchange_type, &payloads) {
            // Dropped unanswered: the peer retransmits once we hold the CHILD_SAs (§2.8.2).
            return Ok(());
        }
        self.note_peer_address(now, from, local);
        self.peer_message_id = id.wrapping_add(1);
        self.reply_to = Some((local, from));
        self.dispatch_request(now, id, header.exchange_type, payloads, rng);
        self.reply_to = None;
        self.kick(now, rng);
        Ok(())
    }

    fn dispatch_request(
        &mut self,
        now: Instant,
        id: u32,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        match (exchange, self.state) {
            (ExchangeType::IkeAuth, State::Connecting) if self.role == Role::Responder => {
                self.handle_auth_request(now, id, payloads, rng)
            }
            (ExchangeType::CreateChildSa, State::Established) => {
                self.handle_create_child_request(now, id, payloads, rng)
            }
            (
                ExchangeType::Informational,
                State::Established | State::Deleting | State::Rekeyed,
            ) => self.handle_informational_request(now, id, payloads, rng),
            (ExchangeType::CreateChildSa, State::Deleting | State::Rekeyed) => {
                // Closing or superseded: refuse new and rekeyed SAs for now (§2.25.1, §2.25.2).
                let n = crate::wire::Notify::new(crate::wire::NotifyType::TemporaryFailure);
                self.send_response(ExchangeType::CreateChildSa, id, vec![n.into()], rng);
            }
            (exchange, _) => {
                // Not acceptable now: answer so the peer's window moves on.
                let n = crate::wire::Notify::new(crate::wire::NotifyType::InvalidSyntax);
                self.send_response(exchange, id, vec![n.into()], rng);
            }
        }
    }

    /// Decrypts an SK message or collects an SKF fragment; `None` while fragments are missing.
    /// Whether `data`, which carries the message ID of the request we last answered, is that
    /// request sent again. The message ID alone is not proof: replaying the cached response to
    /// anything with the right ID would let whoever sees the exchange make us transmit at
    /// will. IKE_SA_INIT must be byte-identical to the request we answered (§2.1); a protected
    /// request must pass its integrity check. Of a fragmented request only fragment 1 triggers
    /// the replay (RFC 7383 §2.6.3), so the other fragments are dropped unchecked.
    fn is_genuine_retransmission(&self, data: &[u8], header: &Header) -> Result<bool> {
        if header.exchange_type == ExchangeType::IkeSaInit {
            return Ok(self.init.as_ref().is_some_and(|init| init.request == data));
        }
        let message = Message::parse(data)?;
        let keys = self.keys.as_ref().ok_or(Error::NotEstablished)?;
        match message.fragment() {
            Some(f) if f.fragment_number != 1 => Ok(false),
            Some(f) => protect::open_skf(data, f, &keys.open).map(|_| true),
            None => protect::open_sk(data, &message, &keys.open).map(|_| true),
        }
    }

    fn unprotect(&mut self, data: &[u8], message_id: u32) -> Result<Option<Vec<Payload>>> {
        let message = Message::parse(data)?;
        message.check_critical()?;
        let keys = self.keys.as_ref().ok_or(Error::NotEstablished)?;
        if let Some(f) = message.fragment() {
            let plaintext = protect::open_skf(data, f, &keys.open)?;
            let limits = fragment::Limits {
                max_fragments: self.config.max_fragments,
                max_bytes: crate::wire::MAX_MESSAGE_LEN,
            };
            let done = Reassembly::add(
                &mut self.reassembly,
                message_id,
                f.fragment_number,
                f.total_fragments,
                f.next_payload,
                plaintext,
                limits,
            )?;
            return match done {
                None => Ok(None),
                Some((first, chain)) => {
                    let payloads = crate::wire::parse_chain(&chain, first)?;
                    crate::wire::check_critical(&payloads)?;
                    Ok(Some(payloads))
                }
            };
        }
        let payloads = protect::open_sk(data, &message, &keys.open)?;
        crate::wire::check_critical(&payloads)?;
        Ok(Some(payloads))
    }

    /// After an authenticated new message (never a retransmission): note that the peer is
    /// alive (no DPD needed) and decide whether to follow its address (RFC 7296 §2.23).
    ///
    /// - The float to the NAT-T port once encapsulation starts is always followed: the
    ///   peer's port may change then, its address only if it is behind a NAT.
    /// - Afterwards a changed address or port is followed only when the peer is behind a NAT
    ///   and we are not: its NAT may have dropped and re-created the mapping. A host behind
    ///   a NAT does not follow (§2.23: that would let anyone on the path redirect it), nor
    ///   does a host with no NAT in the path at all.
    ///
    /// Whatever is decided, the response to a request goes back to where it came from
    /// (§2.11, `reply_to`).
    fn note_peer_address(&mut self, now: Instant, from: SocketAddr, local: SocketAddr) {
        self.life.last_heard = Some(now);
        let follow = self.peer_behind_nat && !self.behind_nat;
        let nat_t = self.config.nat_t_port;
        if local.port() == nat_t && self.local.port() != nat_t {
            self.local = local;
            self.encap = true;
            if follow || from.ip() == self.remote.ip() {
                self.move_peer(from);
            }
            return;
        }
        if follow && from != self.remote && local.port() == self.local.port() {
            self.move_peer(from);
        }
    }

    /// Adopts `to` as the peer's address. Transport-mode CHILD_SAs move with it (their peer
    /// selectors name the old address, §2.23.1). Once the SA is up the driver is told, and
    /// every installed CHILD_SA is rekeyed: the replacements carry the new ESP-in-UDP
    /// endpoints to datapaths that replace SAs rather than update them in place (queued
    /// commands, so a rekey of the IKE SA in the same message hands them to its successor).
    fn move_peer(&mut self, to: SocketAddr) {
        let old = self.remote;
        if old == to {
            return;
        }
        self.remote = to;
        if old.ip() != to.ip() {
            for c in &mut self.children {
                if c.mode == Mode::Transport {
                    transport_nat::move_host(&mut c.remote_ts, old.ip(), to.ip());
                }
            }
        }
        if self.state != State::Connecting {
            let children = self
                .children
                .iter()
                .map(|c| crate::event::MovedChild {
                    reqid: c.reqid,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    remote_ts: c.remote_ts.clone(),
                })
                .collect();
            self.events.push_back(Event::PeerAddressChanged {
                old,
                new: to,
                encap: self.encap_ports(),
                children,
            });
            let installed: Vec<u32> = self
                .children
                .iter()
                .filter(|c| c.state == child::ChildState::Installed)
                .map(|c| c.spi_in)
                .collect();
            for spi_in in installed {
                let cmd = Command::RekeyChild { spi_in };
                if !self.commands.contains(&cmd) {
                    self.commands.push_back(cmd);
                }
            }
        }
    }

    fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        let mut flags = Flags::empty();
        if self.role == Role::Initiator {
            flags = flags | Flags::INITIATOR;
        }
        if response {
            flags = flags | Flags::RESPONSE;
        }
        Header::new(exchange, self.spi_i, self.spi_r, message_id, flags)
    }

    /// Largest IKE message (without the marker) before fragmentation kicks in.
    fn max_message_len(&self) -> Option<usize> {
        if !(self.peer_fragmentation && self.config.fragmentation) {
            return None;
        }
        let marker = if self.local.port() == self.config.nat_t_port {
            4
        } else {
            0
        };
        Some(
            self.config
                .fragment_size
                .saturating_sub(fragment::ip_udp_overhead(self.remote.is_ipv6()) + marker),
        )
    }

    fn protect(
        &mut self,
        header: &Header,
        inner: &[Payload],
        rng: &mut dyn Random,
    ) -> Result<Vec<Vec<u8>>> {
        let max_len = self.max_message_len();
        let keys = self.keys.as_mut().ok_or(Error::NotEstablished)?;
        let SaKeys {
            seal, iv_counter, ..
        } = keys;
        let aead = seal.encr().is_aead();
        let iv_len = seal.iv_len();
        let mut next_iv = || {
            let mut iv = vec![0u8; iv_len];
            if aead {
                *iv_counter += 1;
                iv.copy_from_slice(&iv_counter.to_be_bytes());
            } else {
                rng.fill(&mut iv);
            }
            iv
        };
        protect::seal(header, inner, seal, max_len, &mut next_iv)
    }

    /// Sends a protected request and makes it the outstanding one.
    fn send_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        inner: Vec<Payload>,
        task: Task,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let id = self.next_message_id;
        let header = self.header(exchange, id, false);
        let packets = self.protect(&header, &inner, rng)?;
        for p in &packets {
            self.push_transmit(p.clone());
        }
        self.pending = Some(Pending {
            message_id: id,
            exchange,
            task,
            packets,
            timer: Retransmitter::new(now, &self.config.retransmit, rng),
        });
        self.next_message_id = id.wrapping_add(1);
        Ok(())
    }

    /// Sends a protected response and caches it for retransmitted requests.
    fn send_response(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        inner: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        let header = self.header(exchange, message_id, true);
        match self.protect(&header, &inner, rng) {
            Ok(packets) => {
                let (local, remote) = self.reply_to.unwrap_or((self.local, self.remote));
                for p in &packets {
                    self.push_transmit_to(p.clone(), local, remote);
                }
                self.last_response = Some((message_id, packets));
            }
            Err(e) => self.fail(format!("cannot build {exchange} response: {e}")),
        }
    }

    fn push_transmit(&mut self, ike: Vec<u8>) {
        self.push_transmit_to(ike, self.local, self.remote);
    }

    fn push_transmit_to(&mut self, ike: Vec<u8>, local: SocketAddr, remote: SocketAddr) {
        let marker = local.port() == self.config.nat_t_port;
        let payload = if marker {
            prepend_non_esp_marker(&ike)
        } else {
            ike
        };
        self.transmits.push_back(Datagram {
            local,
            remote,
            non_esp_marker: marker,
            payload,
        });
    }

    /// Starts queued commands while the request window is free.
    fn kick(&mut self, now: Instant, rng: &mut dyn Random) {
        while self.pending.is_none() && matches!(self.state, State::Established) {
            let Some(cmd) = self.commands.pop_front() else {
                return;
            };
            let result = match cmd {
                Command::Dpd => {
                    self.send_request(now, ExchangeType::Informational, Vec::new(), Task::Dpd, rng)
                }
                Command::DeleteIke => {
                    self.state = State::Deleting;
                    self.send_request(
                        now,
                        ExchangeType::Informational,
                        vec![crate::wire::Delete::ike().into()],
                        Task::DeleteIke,
                        rng,
                    )
                }
                Command::DeleteChild { spi_in } => self.start_delete_child(now, spi_in, rng),
                Command::RekeyChild { spi_in } => self.start_rekey_child(now, spi_in, rng),
                Command::CreateChild => self.start_create_child(now, rng),
                Command::RekeyIke => self.start_rekey_ike(now, rng),
            };
            if let Err(e) = result {
                self.events.push_back(Event::Failed {
                    reason: format!("could not start request: {e}"),
                });
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: Command, rng: &mut dyn Random) -> Result<()> {
        if self.state != State::Established {
            return Err(Error::NotEstablished);
        }
        if !self.commands.contains(&cmd) {
            self.commands.push_back(cmd);
        }
        self.kick(now, rng);
        self.note_sent(now);
        Ok(())
    }

    /// Sends a liveness check (an empty INFORMATIONAL request, RFC 7296 §1.4); a peer that
    /// never answers fails the SA after the retransmission schedule.
    pub fn dpd(&mut self, now: Instant, rng: &mut dyn Random) -> Result<()> {
        self.command(now, Command::Dpd, rng)
    }

    /// Rekeys the CHILD_SA with inbound SPI `spi_in` (RFC 7296 §2.8): CREATE_CHILD_SA with
    /// REKEY_SA, then DELETE of the old SA.
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32, rng: &mut dyn Random) -> Result<()> {
        if !self.children.iter().any(|c| c.spi_in == spi_in) {
            return Err(Error::NoSuchChild(spi_in));
        }
        self.command(now, Command::RekeyChild { spi_in }, rng)
    }

    /// Deletes one CHILD_SA (INFORMATIONAL with DELETE, RFC 7296 §1.4.1).
    pub fn delete_child(&mut self, now: Instant, spi_in: u32, rng: &mut dyn Random) -> Result<()> {
        if !self.children.iter().any(|c| c.spi_in == spi_in) {
            return Err(Error::NoSuchChild(spi_in));
        }
        self.command(now, Command::DeleteChild { spi_in }, rng)
    }

    /// Deletes the IKE SA and with it every CHILD_SA.
    pub fn delete(&mut self, now: Instant, rng: &mut dyn Random) -> Result<()> {
        self.command(now, Command::DeleteIke, rng)
    }

    /// A reqid for a new CHILD_SA from the allocator, leased until the CHILD_SA is up.
    pub(super) fn allocate_reqid(&mut self) -> Option<u32> {
        let r = self.allocators.reqids.allocate()?;
        self.leased_reqids.push(r);
        Some(r)
    }

    /// The inbound SPI of a new CHILD_SA from the SPI source.
    pub(super) fn inbound_spi(&self, reqid: u32, rng: &mut dyn Random) -> Result<u32> {
        let request = SpiRequest {
            local: self.local.ip(),
            remote: self.remote.ip(),
            reqid,
        };
        match self.allocators.spis.inbound_spi(&request, rng) {
            Ok(spi) if spi > 255 => Ok(spi),
            Ok(spi) => Err(Error::Protocol(format!(
                "SPI source returned reserved SPI {spi} (RFC 4303 §2.1)"
            ))),
            Err(e) => Err(Error::Protocol(format!("no inbound SPI: {e}"))),
        }
    }

    /// Releases the reqids this SA drew for negotiations that ended without a CHILD_SA.
    /// Reqids of CHILD_SAs that came up are then tracked by the endpoint through the
    /// events. Called by the [`Endpoint`](crate::Endpoint) after every input.
    pub fn settle_reqids(&mut self) {
        let in_flight = match self.pending.as_ref().map(|p| &p.task) {
            Some(Task::Auth(req) | Task::CreateChild(req)) => Some(req.reqid),
            _ => None,
        };
        let children = &self.children;
        let reqids = &self.allocators.reqids;
        let closed = self.state == State::Closed;
        let planned = &self.planned_children;
        self.leased_reqids.retain(|&r| {
            if children.iter().any(|c| c.reqid == r) {
                return false; // up: the endpoint tracks it from its events
            }
            if in_flight == Some(r) || (!closed && planned.iter().any(|t| t.reqid == r)) {
                return true;
            }
            reqids.release(r);
            false
        });
    }

    /// Reports a failure and ends the SA.
    fn fail(&mut self, reason: String) {
        if !self.life.quiet {
            self.events.push_back(Event::Failed {
                reason: reason.clone(),
            });
        }
        self.close(reason);
    }

    /// Ends the SA: every CHILD_SA down, then the IKE SA (always the last event).
    fn close(&mut self, reason: String) {
        if self.state == State::Closed {
            return;
        }
        for c in std::mem::take(&mut self.children) {
            self.events.push_back(Event::ChildSaDown {
                reqid: c.reqid,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: reason.clone(),
            });
        }
        // A superseded or redundant SA (§2.18, §2.8.2) has nothing left to report.
        if !self.life.quiet {
            self.events.push_back(Event::IkeSaDown { reason });
        }
        self.state = State::Closed;
        self.pending = None;
        self.keys = None;
        self.init = None;
        self.commands.clear();
        self.reassembly = None;
        self.half_open_deadline = None;
        self.life.clear();
        self.early_auth_at = None;
        self.early_auth = None;
    }

    fn encap_ports(&self) -> Option<UdpEncap> {
        self.encap.then_some(UdpEncap {
            local_port: self.local.port(),
            remote_port: self.remote.port(),
        })
    }

    /// Builds the event data for a new CHILD_SA.
    #[allow(clippy::too_many_arguments)]
    fn child_event(
        &self,
        child: &Child,
        keys: &crate::crypto::ChildKeys,
        exchange_role: Role,
    ) -> ChildSa {
        ChildSa {
            reqid: child.reqid,
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            mode: child.mode,
            protocol: crate::wire::ProtocolId::Esp,
            encr: child.suite.encr,
            integ: child.suite.integ,
            keys_in: keys.inbound(exchange_role).clone(),
            keys_out: keys.outbound(exchange_role).clone(),
            esn: child.suite.esn,
            local_ts: child.local_ts.clone(),
            remote_ts: child.remote_ts.clone(),
            lifetime: self.config.child_lifetime,
            local: self.local,
            remote: self.remote,
            encap: self.encap_ports(),
        }
    }
}

/// Draws a non-zero 64-bit IKE SPI.
fn random_ike_spi(rng: &mut dyn Random) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 {
            return spi;
        }
    }
}

/// A fresh nonce; 32 bytes, as strongSwan sends (RFC 7296 §2.10: at least half the PRF key
/// size and at least 16).
fn random_nonce(rng: &mut dyn Random) -> Vec<u8> {
    let mut n = vec![0u8; 32];
    rng.fill(&mut n);
    n
}

/// A DH secret for `group`.
fn dh_secret(group: crate::crypto::DhGroup, rng: &mut dyn Random) -> Result<DhSecret> {
    Ok(DhSecret::generate(group, rng)?)
}

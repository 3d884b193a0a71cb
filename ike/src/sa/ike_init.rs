//! IKE_SA_INIT (RFC 7296 §1.2): proposal, key exchange and nonces; NAT detection (§2.23);
//! INVALID_KE_PAYLOAD retry (§1.3); COOKIE echo (§2.6); fragmentation and signature-hash
//! announcements (RFC 7383 §2.3, RFC 7427 §4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{
    dh_secret, natd, random_ike_spi, random_nonce, rules, ChildTemplate, Datagram, IkeSa,
    InitMaterial, Pending, SaKeys, State, Task,
};
use crate::allocation::Allocators;
use crate::config::Config;
use crate::crypto::{DhGroup, DhSecret, IkeKeys, Random, Role};
use crate::error::{Error, Result};
use crate::proposal::{check_chosen_ike, choose_ike, ike_suite_to_wire, Describe};
use crate::retransmit::Retransmitter;
use crate::wire::{
    strip_non_esp_marker, ExchangeType, Flags, Header, KeyExchange, Message, Nonce, Notify,
    NotifyType, Payload, Sa,
};

/// The initiator's IKE_SA_INIT in flight.
pub(super) struct InitTask {
    dh: DhSecret,
    ni: Vec<u8>,
    request: Vec<u8>,
    /// The responder's cookie, echoed in every retry (RFC 7296 §2.6).
    cookie: Option<Vec<u8>>,
    retries: u8,
}

/// What a responder does with an IKE_SA_INIT request.
#[derive(Debug)]
pub enum Accept {
    /// A new half-open IKE SA; its response is queued.
    Created(Box<IkeSa>),
    /// A stateless answer (INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN, …); no SA was made.
    Reply(Datagram),
}

fn wire_group(g: DhGroup) -> crate::wire::DhGroup {
    crate::wire::DhGroup::from(g.iana_id())
}

impl IkeSa {
    /// Starts an IKE SA as initiator: the IKE_SA_INIT request is queued for sending.
    /// `allocators` supply the reqids and inbound SPIs of its CHILD_SAs.
    pub fn initiate(
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
        allocators: Allocators,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Result<IkeSa> {
        let initial_contact = config.initial_contact;
        Self::initiate_with(
            config,
            local,
            remote,
            allocators,
            Vec::new(),
            initial_contact,
            now,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn initiate_with(
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
        allocators: Allocators,
        children: Vec<ChildTemplate>,
        initial_contact: bool,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Result<IkeSa> {
        let group = config
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .ok_or(Error::Config("no IKE proposal with a DH group"))?;
        if config.esp_proposals.is_empty() {
            return Err(Error::Config("no ESP proposal"));
        }
        let spi_i = random_ike_spi(rng);
        let mut sa = IkeSa::new(config, Role::Initiator, spi_i, 0, local, remote, allocators);
        sa.initial_contact = initial_contact;
        sa.plan_children(children);
        sa.send_init(now, group, None, None, 0, rng)?;
        Ok(sa)
    }

    /// Our NAT_DETECTION notifies. With `force_encap` the source hash is random, so the peer
    /// believes we are behind a NAT and both ends float to port 4500 (strongSwan `encap=yes`).
    fn natd_notifies(&self, spi_r: u64, rng: &mut dyn Random) -> [Payload; 2] {
        let mut source = natd::hash(self.spi_i, spi_r, self.local);
        if self.config.force_encap {
            rng.fill(&mut source);
        }
        let dest = natd::hash(self.spi_i, spi_r, self.remote);
        [
            Notify::nat_detection_source_ip(source).into(),
            Notify::nat_detection_destination_ip(dest).into(),
        ]
    }

    fn capability_notifies(&self) -> Vec<Payload> {
        let mut v = Vec::new();
        if self.config.fragmentation {
            v.push(Notify::new(NotifyType::Ikev2FragmentationSupported).into());
        }
        let hashes = self.config.peer_auth.hash_algorithms();
        if !hashes.is_empty() {
            v.push(Notify::signature_hash_algorithms(&hashes).into());
        }
        v
    }

    /// Sends IKE_SA_INIT with a fresh KE for `group`. `ni` is kept across retries so that a
    /// cookie, which the responder binds to Ni, stays valid after an INVALID_KE_PAYLOAD
    /// retry (RFC 7296 §2.6, last paragraphs).
    fn send_init(
        &mut self,
        now: Instant,
        group: DhGroup,
        cookie: Option<Vec<u8>>,
        ni: Option<Vec<u8>>,
        retries: u8,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let dh = dh_secret(group, rng)?;
        let ni = ni.unwrap_or_else(|| random_nonce(rng));
        let header = Header::new(ExchangeType::IkeSaInit, self.spi_i, 0, 0, Flags::INITIATOR);
        let mut m = Message::new(header);
        if let Some(c) = &cookie {
            // The cookie must be the first payload (RFC 7296 §2.6).
            m.push(Notify::cookie(c.clone()));
        }
        let proposals = self
            .config
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, None))
            .collect();
        m.push(Sa::new(proposals));
        m.push(KeyExchange::new(
            wire_group(group),
            dh.public_value().to_vec(),
        ));
        m.push(Nonce(ni.clone()));
        for n in self.natd_notifies(0, rng) {
            m.push(n);
        }
        for n in self.capability_notifies() {
            m.push(n);
        }
        let request = m.to_bytes()?;
        self.push_transmit(request.clone());
        self.pending = Some(Pending {
            message_id: 0,
            exchange: ExchangeType::IkeSaInit,
            task: Task::Init(InitTask {
                dh,
                ni,
                request: request.clone(),
                cookie,
                retries,
            }),
            packets: vec![request],
            timer: Retransmitter::new(now, &self.config.retransmit, rng),
        });
        self.next_message_id = 1;
        Ok(())
    }

    pub(super) fn handle_init_response(
        &mut self,
        now: Instant,
        data: &[u8],
        header: Header,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let message = Message::parse(data)?;
        message.check_critical()?;
        let (retries, cookie, ni, group) = match self.pending.as_ref().map(|p| &p.task) {
            Some(Task::Init(t)) => (t.retries, t.cookie.clone(), t.ni.clone(), t.dh.group()),
            _ => return Err(Error::Protocol("no IKE_SA_INIT in flight".into())),
        };
        if let Some(n) = message.notify(NotifyType::InvalidKePayload) {
            let wanted = n
                .requested_group()
                .and_then(|g| DhGroup::from_iana_id(g.value()));
            let offered = self
                .config
                .ike_proposals
                .iter()
                .any(|p| wanted.is_some_and(|g| p.dh.contains(&g)));
            if wanted == Some(group) {
                return Ok(()); // a duplicate of the answer we already followed
            }
            return match wanted {
                Some(g) if offered && retries < self.config.max_ke_retries => {
                    self.send_init(now, g, cookie, Some(ni), retries + 1, rng)
                }
                _ => {
                    self.fail(format!(
                        "peer wants DH group {} which we did not offer",
                        n.requested_group().map_or("?".into(), |g| g.to_string())
                    ));
                    Ok(())
                }
            };
        }
        if let Some(n) = message.notify(NotifyType::Cookie) {
            if retries >= self.config.max_ke_retries {
                self.fail("peer keeps asking for cookies".into());
                return Ok(());
            }
            if cookie.as_deref() == Some(n.data.as_slice()) {
                return Ok(()); // a duplicate of the answer we already followed
            }
            if n.data.is_empty() || n.data.len() > 64 {
                return Err(Error::Protocol("COOKIE of invalid length (1..=64)".into()));
            }
            return self.resend_init_with_cookie(now, n.data.clone(), rng);
        }
        if let Some(n) = message.notifies().find(|n| n.notify_type.is_error()) {
            let reason = if n.notify_type == NotifyType::NoProposalChosen {
                let ours: Vec<_> = self
                    .config
                    .ike_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.to_wire(i as u8 + 1, None))
                    .collect();
                format!(
                    "no proposal chosen: we offered {}, peer accepted none",
                    Describe(&ours)
                )
            } else {
                format!("{} from peer in IKE_SA_INIT", n.notify_type)
            };
            self.fail(reason);
            return Ok(());
        }
        rules::check(&message.payloads, &rules::IKE_SA_INIT)?;
        if header.responder_spi == 0 {
            return Err(Error::Protocol(
                "IKE_SA_INIT response without responder SPI".into(),
            ));
        }
        let (sa, ke, nonce) = init_payloads(&message)?;
        let Some(suite) = check_chosen_ike(&self.config.ike_proposals, sa) else {
            self.fail(format!(
                "peer chose a proposal we did not offer: {}",
                Describe(&sa.proposals)
            ));
            return Ok(());
        };
        let Some(Pending {
            task: Task::Init(task),
            ..
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let group = task.dh.group();
        if suite.dh != group || ke.dh_group.value() != group.iana_id() {
            self.fail(format!(
                "peer answered with KE for {} while we sent {}",
                ke.dh_group,
                wire_group(group)
            ));
            return Ok(());
        }
        if !nonce.has_valid_len() {
            self.fail("peer's nonce is not 16..=256 bytes".into());
            return Ok(());
        }
        let spi_i = self.spi_i;
        let derive = || -> Result<SaKeys> {
            let g_ir = task.dh.shared_secret(&ke.data)?;
            let keys = IkeKeys::derive(
                suite,
                &g_ir,
                &task.ni,
                &nonce.0,
                spi_i,
                header.responder_spi,
            )?;
            SaKeys::new(keys, Role::Initiator)
        };
        let keys = match derive() {
            Ok(k) => k,
            Err(e) => {
                self.fail(format!("IKE_SA_INIT key exchange failed: {e}"));
                return Ok(());
            }
        };
        self.spi_r = header.responder_spi;
        self.keys = Some(keys);
        self.detect_nat(&message);
        self.read_capabilities(&message);
        self.init = Some(InitMaterial {
            ni: task.ni,
            nr: nonce.0.clone(),
            request: task.request,
            response: data.to_vec(),
        });
        if self.encap && self.local.port() != self.config.nat_t_port {
            // Float to the NAT-T port for everything after IKE_SA_INIT (RFC 7296 §2.23).
            self.local.set_port(self.config.nat_t_port);
            self.remote.set_port(self.config.nat_t_port);
        }
        self.send_auth_request(now, rng);
        Ok(())
    }

    /// Repeats our IKE_SA_INIT request with the responder's cookie as the first payload and
    /// every other payload unchanged (RFC 7296 §2.6): same KE, same nonce.
    fn resend_init_with_cookie(
        &mut self,
        now: Instant,
        cookie: Vec<u8>,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let Some(Pending {
            task: Task::Init(task),
            ..
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let mut m = Message::parse(&task.request)?;
        m.payloads.retain(|p| {
            p.as_notify()
                .map_or(true, |n| n.notify_type != NotifyType::Cookie)
        });
        m.payloads.insert(0, Notify::cookie(cookie.clone()).into());
        let request = m.to_bytes()?;
        self.push_transmit(request.clone());
        self.pending = Some(Pending {
            message_id: 0,
            exchange: ExchangeType::IkeSaInit,
            task: Task::Init(InitTask {
                request: request.clone(),
                cookie: Some(cookie),
                retries: task.retries + 1,
                ..task
            }),
            packets: vec![request],
            timer: Retransmitter::new(now, &self.config.retransmit, rng),
        });
        Ok(())
    }

    /// Compares the peer's NAT_DETECTION hashes with our view of the addresses.
    fn detect_nat(&mut self, message: &Message) {
        let source = message.notify(NotifyType::NatDetectionSourceIp);
        let dest = message.notify(NotifyType::NatDetectionDestinationIp);
        let (Some(source), Some(dest)) = (source, dest) else {
            // The peer does not do NAT-T: we cannot use UDP encapsulation.
            self.encap = false;
            self.behind_nat = false;
            self.peer_behind_nat = false;
            return;
        };
        let peer_hash = natd::hash(self.spi_i, self.spi_r_for_natd(), self.remote);
        let our_hash = natd::hash(self.spi_i, self.spi_r_for_natd(), self.local);
        let peer_behind_nat = source.data.as_slice() != peer_hash.as_slice();
        let we_behind_nat = dest.data.as_slice() != our_hash.as_slice();
        self.encap = peer_behind_nat || we_behind_nat || self.config.force_encap;
        // Our own forced encapsulation fakes only the hash we send; the peer's hash of our
        // address tells whether a NAT really rewrote it.
        self.behind_nat = we_behind_nat;
        self.peer_behind_nat = peer_behind_nat;
    }

    /// The responder SPI as it was in the IKE_SA_INIT request, which the initiator's hashes
    /// used: zero. The responder's hashes in the response use its own SPI.
    fn spi_r_for_natd(&self) -> u64 {
        match self.role {
            Role::Initiator => self.spi_r,
            Role::Responder => 0,
        }
    }

    fn read_capabilities(&mut self, message: &Message) {
        self.peer_fragmentation = self.config.fragmentation
            && message
                .notify(NotifyType::Ikev2FragmentationSupported)
                .is_some();
        self.peer_hash_algorithms = message
            .notify(NotifyType::SignatureHashAlgorithms)
            .and_then(Notify::hash_algorithms)
            .unwrap_or_default();
    }

    /// Answers an IKE_SA_INIT request as responder. `udp_payload` is the datagram as received
    /// (with the non-ESP marker when `local` is the NAT-T port).
    pub fn respond(
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
        allocators: Allocators,
        now: Instant,
        udp_payload: &[u8],
        rng: &mut dyn Random,
    ) -> Result<Accept> {
        let data = if local.port() == config.nat_t_port {
            strip_non_esp_marker(udp_payload)
                .ok_or_else(|| Error::Protocol("no non-ESP marker".into()))?
        } else {
            udp_payload
        };
        let message = Message::parse(data)?;
        let h = &message.header;
        if h.exchange_type != ExchangeType::IkeSaInit
            || h.flags.response()
            || !h.flags.initiator()
            || h.message_id != 0
            || h.responder_spi != 0
            || h.initiator_spi == 0
        {
            return Err(Error::Protocol("not an IKE_SA_INIT request".into()));
        }
        let reply = |notify: Notify| -> Result<Accept> {
            let header = Header::new(
                ExchangeType::IkeSaInit,
                message.header.initiator_spi,
                0,
                0,
                Flags::RESPONSE,
            );
            let bytes = Message::new(header).with(notify).to_bytes()?;
            let marker = local.port() == config.nat_t_port;
            Ok(Accept::Reply(Datagram {
                local,
                remote,
                non_esp_marker: marker,
                payload: if marker {
                    crate::wire::prepend_non_esp_marker(&bytes)
                } else {
                    bytes
                },
            }))
        };
        if let Err(crate::wire::Error::UnsupportedCriticalPayload(t)) = message.check_critical() {
            return reply(Notify::unsupported_critical_payload(t));
        }
        if rules::check(&message.payloads, &rules::IKE_SA_INIT).is_err() {
            return reply(Notify::new(NotifyType::InvalidSyntax));
        }
        let (sa, ke, nonce) = init_payloads(&message)?;
        let ke_group = DhGroup::from_iana_id(ke.dh_group.value());
        let Some((number, suite)) =
            choose_ike(&config.ike_proposals, sa, ke_group).filter(|_| ke_group.is_some())
        else {
            return match choose_ike(&config.ike_proposals, sa, None) {
                Some((_, s)) => reply(Notify::invalid_ke_payload(wire_group(s.dh))),
                None => reply(Notify::new(NotifyType::NoProposalChosen)),
            };
        };
        if !nonce.has_valid_len() {
            return reply(Notify::new(NotifyType::InvalidSyntax));
        }
        let spi_i = message.header.initiator_spi;
        let spi_r = random_ike_spi(rng);
        let mut sa_state = IkeSa::new(
            config.clone(),
            Role::Responder,
            spi_i,
            spi_r,
            local,
            remote,
            allocators,
        );
        let dh = dh_secret(suite.dh, rng)?;
        let g_ir = match dh.shared_secret(&ke.data) {
            Ok(s) => s,
            Err(_) => return reply(Notify::new(NotifyType::InvalidSyntax)),
        };
        let nr = random_nonce(rng);
        let keys = IkeKeys::derive(suite, &g_ir, &nonce.0, &nr, spi_i, spi_r)?;
        sa_state.keys = Some(SaKeys::new(keys, Role::Responder)?);
        sa_state.detect_nat(&message);
        if sa_state.config.force_encap {
            sa_state.encap = true;
        }
        sa_state.read_capabilities(&message);

        let header = Header::new(ExchangeType::IkeSaInit, spi_i, spi_r, 0, Flags::RESPONSE);
        let mut m = Message::new(header)
            .with(Sa::new(vec![ike_suite_to_wire(&suite, number, None)]))
            .with(KeyExchange::new(
                wire_group(suite.dh),
                dh.public_value().to_vec(),
            ))
            .with(Nonce(nr.clone()));
        for n in sa_state.natd_notifies(spi_r, rng) {
            m.push(n);
        }
        if let Some(req) = config.peer_auth.certificate_request() {
            m.push(req);
        }
        let mut caps = sa_state.capability_notifies();
        if !sa_state.peer_fragmentation {
            caps.retain(|p| {
                p.as_notify().map_or(true, |n| {
                    n.notify_type != NotifyType::Ikev2FragmentationSupported
                })
            });
        }
        for n in caps {
            m.push(n);
        }
        let response = m.to_bytes()?;
        sa_state.init = Some(InitMaterial {
            ni: nonce.0.clone(),
            nr,
            request: data.to_vec(),
            response: response.clone(),
        });
        sa_state.push_transmit(response.clone());
        sa_state.last_response = Some((0, vec![response]));
        sa_state.peer_message_id = 1;
        sa_state.state = State::Connecting;
        sa_state.half_open_deadline = Some(now + config.half_open_timeout);
        // Everything our AUTH signs is known now: sign as soon as the driver has sent this
        // response (its next `handle_timeout`), not when IKE_AUTH arrives (issue 3).
        sa_state.early_auth_at = Some(now);
        Ok(Accept::Created(Box::new(sa_state)))
    }
}

fn init_payloads(message: &Message) -> Result<(&Sa, &KeyExchange, &Nonce)> {
    let mut sa = None;
    let mut ke = None;
    let mut nonce = None;
    for p in &message.payloads {
        match p {
            Payload::Sa(s) => sa = Some(s),
            Payload::Ke(k) => ke = Some(k),
            Payload::Nonce(n) => nonce = Some(n),
            _ => {}
        }
    }
    match (sa, ke, nonce) {
        (Some(s), Some(k), Some(n)) => Ok((s, k, n)),
        _ => Err(Error::Protocol(
            "IKE_SA_INIT without SA, KE or Nonce".into(),
        )),
    }
}

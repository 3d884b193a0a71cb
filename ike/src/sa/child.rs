//! CHILD_SA negotiation shared by IKE_AUTH and CREATE_CHILD_SA (RFC 7296 §1.3, §2.17): ESP
//! proposal, mode (`USE_TRANSPORT_MODE`, §1.3.1), traffic selector narrowing (§2.9), optional
//! PFS, KEYMAT; and the CREATE_CHILD_SA exchange for new and rekeyed CHILD_SAs (§1.3.3).

use std::time::Instant;

use super::collision::{lowest_nonce, ours_is_redundant, ChildCollision};
use super::{dh_secret, random_nonce, rules, transport_nat, Child, Command, IkeSa, Task};
use crate::crypto::{DhGroup, DhSecret, Random, Role, SharedSecret};
use crate::error::Result;
use crate::event::{ChildSa, Event, Mode};
use crate::proposal::{check_chosen_esp, choose_esp, Describe};
use crate::traffic_selector::{is_narrowing_of, narrow};
use crate::wire::{
    ExchangeType, KeyExchange, Nonce, Notify, NotifyType, Payload, ProtocolId, Sa,
    TrafficSelectors, TsRange,
};

/// Where a CHILD_SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChildState {
    /// In use; may be rekeyed or deleted.
    Installed,
    /// Our CREATE_CHILD_SA rekeying it is in flight.
    Rekeying,
    /// Replaced by a rekey; waiting for its DELETE (ours queued, or the peer's). A rekey of
    /// it is refused with TEMPORARY_FAILURE (§2.25.1).
    Rekeyed,
    /// Our DELETE of it is in flight.
    Deleting,
}

/// Our proposal of a CHILD_SA, kept until the response arrives.
pub(super) struct ChildRequest {
    spi_in: u32,
    dh: Option<DhSecret>,
    /// Our nonce in CREATE_CHILD_SA (IKE_AUTH uses the IKE_SA_INIT nonces).
    nonce: Vec<u8>,
    local_ts: Vec<TsRange>,
    remote_ts: Vec<TsRange>,
    pub(super) rekey_of: Option<u32>,
    pub(super) reqid: u32,
    /// The peer's rekey of the same SA that we answered while this one was in flight
    /// (§2.8.1); kept here so that it survives the old SA's deletion.
    collision: Option<ChildCollision>,
}

/// A CHILD_SA we accepted as responder of the exchange.
pub(super) struct Accepted {
    pub(super) payloads: Vec<Payload>,
    pub(super) child: Child,
    pub(super) event: ChildSa,
}

/// Why we refused a CHILD_SA: the notify to send and a reason for humans.
pub(super) type Refusal = (NotifyType, String);

fn wire_group(g: DhGroup) -> crate::wire::DhGroup {
    crate::wire::DhGroup::from(g.iana_id())
}

fn find<'a, T>(payloads: &'a [Payload], f: impl Fn(&'a Payload) -> Option<&'a T>) -> Option<&'a T> {
    payloads.iter().find_map(f)
}

fn ts_of(payloads: &[Payload]) -> (Option<&TrafficSelectors>, Option<&TrafficSelectors>) {
    (
        find(payloads, |p| match p {
            Payload::TsI(t) => Some(t),
            _ => None,
        }),
        find(payloads, |p| match p {
            Payload::TsR(t) => Some(t),
            _ => None,
        }),
    )
}

fn sa_of(payloads: &[Payload]) -> Option<&Sa> {
    find(payloads, |p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

fn ke_of(payloads: &[Payload]) -> Option<&KeyExchange> {
    find(payloads, |p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

pub(super) fn nonce_of(payloads: &[Payload]) -> Option<&Nonce> {
    find(payloads, |p| match p {
        Payload::Nonce(n) => Some(n),
        _ => None,
    })
}

fn has_notify(payloads: &[Payload], t: NotifyType) -> bool {
    payloads
        .iter()
        .any(|p| p.as_notify().is_some_and(|n| n.notify_type == t))
}

impl IkeSa {
    /// Our selectors: configured, or our and the peer's IKE addresses (`%dynamic`).
    pub(super) fn default_ts(&self) -> (Vec<TsRange>, Vec<TsRange>) {
        let local = if self.config.local_ts.is_empty() {
            vec![TsRange::host(self.local.ip(), 0, None)]
        } else {
            self.config.local_ts.clone()
        };
        let remote = if self.config.remote_ts.is_empty() {
            vec![TsRange::host(self.remote.ip(), 0, None)]
        } else {
            self.config.remote_ts.clone()
        };
        (local, remote)
    }

    /// Selectors of a CHILD_SA exchange as this host sees them (RFC 7296 §2.23.1), before
    /// they are narrowed, checked or installed: in transport mode our own selectors name our
    /// IKE address when we are behind a NAT, the peer's name its observed IKE address when it
    /// is. `ours`/`theirs` are the peer's TSr/TSi when we answer, TSi/TSr when we asked.
    fn transport_nat_ts(
        &self,
        mode: Mode,
        ours: Vec<TsRange>,
        theirs: Vec<TsRange>,
    ) -> (Vec<TsRange>, Vec<TsRange>) {
        if mode != Mode::Transport {
            return (ours, theirs);
        }
        let ours = if self.behind_nat {
            transport_nat::pin(&ours, self.local.ip())
        } else {
            ours
        };
        let theirs = if self.peer_behind_nat {
            transport_nat::pin(&theirs, self.remote.ip())
        } else {
            theirs
        };
        (ours, theirs)
    }

    /// A new CHILD_SA proposal; `create_child_sa` adds a nonce and, if our first ESP proposal
    /// wants PFS, a DH secret.
    pub(super) fn child_request(
        &mut self,
        create_child_sa: bool,
        rekey_of: Option<&Child>,
        rng: &mut dyn Random,
    ) -> Result<ChildRequest> {
        let (local_ts, remote_ts, reqid) = match rekey_of {
            Some(c) => (c.local_ts.clone(), c.remote_ts.clone(), c.reqid),
            None => self.new_child_template()?,
        };
        let pfs = self
            .config
            .esp_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .filter(|_| create_child_sa);
        Ok(ChildRequest {
            spi_in: self.inbound_spi(reqid, rng)?,
            dh: pfs.map(|g| dh_secret(g, rng)).transpose()?,
            nonce: if create_child_sa {
                random_nonce(rng)
            } else {
                Vec::new()
            },
            local_ts,
            remote_ts,
            rekey_of: rekey_of.map(|c| c.spi_in),
            reqid,
            collision: None,
        })
    }

    /// The payloads proposing `req`.
    pub(super) fn child_request_payloads(
        &self,
        req: &ChildRequest,
        in_ike_auth: bool,
    ) -> Vec<Payload> {
        let mut v: Vec<Payload> = Vec::new();
        if let Some(old) = req.rekey_of {
            v.push(Notify::rekey_sa(ProtocolId::Esp, old).into());
        }
        if self.config.mode == Mode::Transport {
            v.push(Notify::new(NotifyType::UseTransportMode).into());
        }
        v.push(Notify::new(NotifyType::EspTfcPaddingNotSupported).into());
        let proposals = self
            .config
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, req.spi_in, !in_ike_auth && req.dh.is_some()))
            .collect();
        v.push(Sa::new(proposals).into());
        if !in_ike_auth {
            v.push(Nonce(req.nonce.clone()).into());
            if let Some(dh) = &req.dh {
                v.push(KeyExchange::new(wire_group(dh.group()), dh.public_value().to_vec()).into());
            }
        }
        v.push(Payload::TsI(TrafficSelectors::new(
            req.local_ts.iter().cloned(),
        )));
        v.push(Payload::TsR(TrafficSelectors::new(
            req.remote_ts.iter().cloned(),
        )));
        v
    }

    /// Accepts (or refuses) the peer's CHILD_SA proposal as responder of the exchange.
    /// `ni` is the peer's nonce, `nr` ours; in CREATE_CHILD_SA (`in_ike_auth == false`) our
    /// nonce and, with PFS, our KE go into the response.
    pub(super) fn accept_child(
        &self,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
        in_ike_auth: bool,
        reqid: u32,
        rng: &mut dyn Random,
    ) -> core::result::Result<Accepted, Refusal> {
        let (Some(sa), (Some(tsi), Some(tsr))) = (sa_of(payloads), ts_of(payloads)) else {
            return Err((
                NotifyType::InvalidSyntax,
                "CHILD_SA request without SA/TS".into(),
            ));
        };
        let peer_ke = if in_ike_auth { None } else { ke_of(payloads) };
        let pfs_group = match peer_ke {
            Some(ke) => match DhGroup::from_iana_id(ke.dh_group.value()) {
                Some(g) => Some(g),
                None => {
                    return Err((
                        NotifyType::NoProposalChosen,
                        format!("peer wants PFS with unsupported {}", ke.dh_group),
                    ))
                }
            },
            None => None,
        };
        let Some((number, spi_out, suite)) =
            choose_esp(&self.config.esp_proposals, sa, pfs_group, in_ike_auth)
        else {
            let ours: Vec<_> = self
                .config
                .esp_proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(i as u8 + 1, 0, !in_ike_auth))
                .collect();
            return Err((
                NotifyType::NoProposalChosen,
                format!(
                    "no proposal chosen: peer offered {}, we accept {}",
                    Describe(&sa.proposals),
                    Describe(&ours)
                ),
            ));
        };
        let transport = has_notify(payloads, NotifyType::UseTransportMode);
        let mode = match (self.config.mode, transport) {
            (Mode::Transport, true) => Mode::Transport,
            (Mode::Transport, false) => {
                return Err((
                    NotifyType::NoProposalChosen,
                    "peer asked for tunnel mode, we only do transport".into(),
                ))
            }
            (Mode::Tunnel, _) => Mode::Tunnel,
        };
        let (our_local, our_remote) = self.default_ts();
        let (tsr_ranges, tsi_ranges) = self.transport_nat_ts(
            mode,
            tsr.ranges().cloned().collect(),
            tsi.ranges().cloned().collect(),
        );
        let remote_ts = narrow(&tsi_ranges, &our_remote);
        let local_ts = narrow(&tsr_ranges, &our_local);
        if remote_ts.is_empty() || local_ts.is_empty() {
            return Err((
                NotifyType::TsUnacceptable,
                "peer's traffic selectors do not match our policy".into(),
            ));
        }
        let mut our_ke = None;
        let g_ir: Option<SharedSecret> = match (peer_ke, suite.dh) {
            (Some(ke), Some(g)) => {
                let dh =
                    dh_secret(g, rng).map_err(|e| (NotifyType::NoProposalChosen, e.to_string()))?;
                let s = dh
                    .shared_secret(&ke.data)
                    .map_err(|e| (NotifyType::InvalidSyntax, format!("peer's KE: {e}")))?;
                our_ke = Some(KeyExchange::new(wire_group(g), dh.public_value().to_vec()));
                Some(s)
            }
            _ => None,
        };
        let Some(keys) = self.keys.as_ref() else {
            return Err((NotifyType::TemporaryFailure, "no IKE keys".into()));
        };
        let child_keys = keys
            .ike
            .child_keys(suite.encr, suite.integ, g_ir.as_ref(), ni, nr)
            .map_err(|e| (NotifyType::NoProposalChosen, e.to_string()))?;
        let spi_in = self
            .inbound_spi(reqid, rng)
            .map_err(|e| (NotifyType::TemporaryFailure, e.to_string()))?;
        let child = Child {
            reqid,
            spi_in,
            spi_out,
            suite,
            mode,
            local_ts,
            remote_ts,
            state: ChildState::Installed,
            timers: None,
        };
        let event = self.child_event(&child, &child_keys, Role::Responder);
        let mut out: Vec<Payload> = Vec::new();
        if mode == Mode::Transport {
            out.push(Notify::new(NotifyType::UseTransportMode).into());
        }
        out.push(Notify::new(NotifyType::EspTfcPaddingNotSupported).into());
        out.push(Sa::new(vec![suite.to_wire(number, child.spi_in)]).into());
        if !in_ike_auth {
            out.push(Nonce(nr.to_vec()).into());
            if let Some(ke) = our_ke {
                out.push(ke.into());
            }
        }
        out.push(Payload::TsI(TrafficSelectors::new(
            child.remote_ts.iter().cloned(),
        )));
        out.push(Payload::TsR(TrafficSelectors::new(
            child.local_ts.iter().cloned(),
        )));
        Ok(Accepted {
            payloads: out,
            child,
            event,
        })
    }

    /// Checks the responder's answer to our CHILD_SA proposal and derives its keys. On
    /// refusal the reason is for humans. `ni`/`nr` are the exchange's nonces (ours first).
    pub(super) fn complete_child(
        &mut self,
        req: &ChildRequest,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
        in_ike_auth: bool,
    ) -> core::result::Result<(Child, ChildSa), String> {
        if let Some(n) = payloads
            .iter()
            .filter_map(Payload::as_notify)
            .find(|n| n.notify_type.is_error())
        {
            if n.notify_type == NotifyType::NoProposalChosen {
                let ours: Vec<_> = self
                    .config
                    .esp_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.to_wire(i as u8 + 1, req.spi_in, !in_ike_auth && req.dh.is_some())
                    })
                    .collect();
                return Err(format!(
                    "no proposal chosen: we offered {}, peer accepted none",
                    Describe(&ours)
                ));
            }
            return Err(format!("peer refused the CHILD_SA: {}", n.notify_type));
        }
        let (Some(sa), (Some(tsi), Some(tsr))) = (sa_of(payloads), ts_of(payloads)) else {
            return Err("peer's response carries no CHILD_SA".into());
        };
        let pfs_group = req.dh.as_ref().map(DhSecret::group);
        let Some((spi_out, suite)) = check_chosen_esp(&self.config.esp_proposals, sa, pfs_group)
        else {
            return Err(format!(
                "peer chose an ESP proposal we did not offer: {}",
                Describe(&sa.proposals)
            ));
        };
        let transport = has_notify(payloads, NotifyType::UseTransportMode);
        let mode = match (self.config.mode, transport) {
            (Mode::Transport, true) => Mode::Transport,
            (Mode::Transport, false) => {
                // The peer installed a tunnel-mode SA with our SPI: delete it (§1.3.1).
                self.commands
                    .push_back(Command::DeleteChild { spi_in: req.spi_in });
                return Err("peer chose tunnel mode".into());
            }
            (Mode::Tunnel, true) => {
                self.commands
                    .push_back(Command::DeleteChild { spi_in: req.spi_in });
                return Err("peer chose transport mode".into());
            }
            (Mode::Tunnel, false) => Mode::Tunnel,
        };
        let (local_ts, remote_ts) = self.transport_nat_ts(
            mode,
            tsi.ranges().cloned().collect(),
            tsr.ranges().cloned().collect(),
        );
        if !is_narrowing_of(&local_ts, &req.local_ts)
            || !is_narrowing_of(&remote_ts, &req.remote_ts)
        {
            self.commands
                .push_back(Command::DeleteChild { spi_in: req.spi_in });
            return Err("peer's traffic selectors are outside our proposal".into());
        }
        let g_ir = match (&req.dh, in_ike_auth) {
            (Some(dh), false) => {
                let Some(ke) =
                    ke_of(payloads).filter(|k| k.dh_group.value() == dh.group().iana_id())
                else {
                    return Err("peer's PFS answer has no KE for our group".into());
                };
                Some(
                    dh.shared_secret(&ke.data)
                        .map_err(|e| format!("peer's KE: {e}"))?,
                )
            }
            _ => None,
        };
        let Some(keys) = self.keys.as_ref() else {
            return Err("no IKE keys".into());
        };
        let child_keys = keys
            .ike
            .child_keys(suite.encr, suite.integ, g_ir.as_ref(), ni, nr)
            .map_err(|e| e.to_string())?;
        let child = Child {
            reqid: req.reqid,
            spi_in: req.spi_in,
            spi_out,
            suite,
            mode,
            local_ts,
            remote_ts,
            state: ChildState::Installed,
            timers: None,
        };
        let event = self.child_event(&child, &child_keys, Role::Initiator);
        Ok((child, event))
    }

    pub(super) fn start_rekey_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let Some(old) = self
            .children
            .iter()
            .find(|c| c.spi_in == spi_in && c.state == ChildState::Installed)
        else {
            return Ok(()); // deleted or already rekeyed meanwhile
        };
        let req = self.child_request(true, Some(&old.clone()), rng)?;
        let payloads = self.child_request_payloads(&req, false);
        self.set_child_state(spi_in, ChildState::Rekeying);
        self.send_request(
            now,
            ExchangeType::CreateChildSa,
            payloads,
            Task::CreateChild(req),
            rng,
        )
    }

    fn set_child_state(&mut self, spi_in: u32, state: ChildState) {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            c.state = state;
        }
    }

    pub(super) fn handle_create_child_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
        req: ChildRequest,
        rng: &mut dyn Random,
    ) {
        let error = payloads
            .iter()
            .filter_map(Payload::as_notify)
            .find(|n| n.notify_type.is_error())
            .map(|n| n.notify_type);
        let mut nr = Vec::new();
        let result = if error.is_some() {
            self.complete_child(&req, &payloads, &req.nonce, &[], false)
        } else if let Err(e) = rules::check(&payloads, &rules::CREATE_CHILD_SA) {
            Err(e.to_string())
        } else {
            match nonce_of(&payloads)
                .filter(|n| n.has_valid_len())
                .map(|n| n.0.clone())
            {
                Some(n) => {
                    nr = n;
                    self.complete_child(&req, &payloads, &req.nonce, &nr, false)
                }
                None => Err("CREATE_CHILD_SA response without a valid nonce".into()),
            }
        };
        let old = req
            .rekey_of
            .filter(|o| self.children.iter().any(|c| c.spi_in == *o));
        match (result, old, req.collision.clone()) {
            (Ok((mut child, event)), None, Some(theirs)) => {
                // Both of us rekeyed it and the old SA is gone already (§2.8.1).
                self.events.push_back(Event::ChildSaUp(Box::new(event)));
                if ours_is_redundant(&req.nonce, &nr, &theirs.lowest_nonce) {
                    child.state = ChildState::Rekeyed;
                    self.commands.push_back(Command::DeleteChild {
                        spi_in: child.spi_in,
                    });
                }
                self.children.push(child);
            }
            (Ok((mut child, event)), Some(old), Some(theirs)) => {
                // Both of us rekeyed it (§2.8.1); the peer's new SA was announced as the
                // replacement when we answered, ours is installed too until one goes.
                self.events.push_back(Event::ChildSaUp(Box::new(event)));
                self.set_child_state(old, ChildState::Rekeyed);
                if ours_is_redundant(&req.nonce, &nr, &theirs.lowest_nonce) {
                    // Ours holds the lowest nonce: we delete it; the peer deletes the old one.
                    child.state = ChildState::Rekeyed;
                    self.commands.push_back(Command::DeleteChild {
                        spi_in: child.spi_in,
                    });
                } else {
                    // Ours survives: we delete the old one; the peer deletes its redundant SA.
                    self.commands
                        .push_back(Command::DeleteChild { spi_in: old });
                }
                self.children.push(child);
            }
            (Ok((child, event)), Some(old_spi_in), None) => {
                self.events.push_back(Event::ChildSaRekeyed {
                    old_spi_in,
                    new: Box::new(event),
                });
                self.set_child_state(old_spi_in, ChildState::Rekeyed);
                self.commands
                    .push_back(Command::DeleteChild { spi_in: old_spi_in });
                self.children.push(child);
            }
            (Ok((child, event)), None, _) => {
                // A new CHILD_SA, or the rekey of one the peer deleted meanwhile.
                self.events.push_back(Event::ChildSaUp(Box::new(event)));
                self.children.push(child);
            }
            (Err(_), Some(old), Some(_)) => {
                // The peer's rekey replaced it; the peer deletes the old SA (§2.8.1).
                self.set_child_state(old, ChildState::Rekeyed);
            }
            (Err(reason), Some(old), None) => match error {
                Some(NotifyType::TemporaryFailure) => {
                    // The peer is busy with a colliding exchange (§2.25): try again later.
                    self.set_child_state(old, ChildState::Installed);
                    self.schedule_retry(now, Command::RekeyChild { spi_in: old }, rng);
                }
                Some(NotifyType::ChildSaNotFound) => {
                    // The peer has no such SA any more (§2.25.1): neither may we.
                    if let Some(i) = self.children.iter().position(|c| c.spi_in == old) {
                        let c = self.children.remove(i);
                        self.events.push_back(Event::ChildSaDown {
                            reqid: c.reqid,
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                            reason: "peer does not know it (CHILD_SA_NOT_FOUND)".into(),
                        });
                    }
                }
                _ => {
                    self.set_child_state(old, ChildState::Installed);
                    self.events.push_back(Event::Failed { reason });
                }
            },
            (Err(reason), None, _) => {
                if req.rekey_of.is_none() {
                    self.events.push_back(Event::Failed { reason });
                }
            }
        }
    }

    pub(super) fn handle_create_child_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        let refuse = |t: NotifyType| vec![Payload::from(Notify::new(t))];
        if rules::check(&payloads, &rules::CREATE_CHILD_SA).is_err() {
            self.send_response(
                ExchangeType::CreateChildSa,
                id,
                refuse(NotifyType::InvalidSyntax),
                rng,
            );
            return;
        }
        if sa_of(&payloads)
            .is_some_and(|sa| sa.proposals.iter().any(|p| p.protocol == ProtocolId::Ike))
        {
            self.handle_ike_rekey_request(now, id, payloads, rng);
            return;
        }
        if matches!(
            self.pending.as_ref().map(|p| &p.task),
            Some(Task::RekeyIke(_))
        ) {
            // No new or rekeyed CHILD_SA while we rekey the IKE SA (§2.25.2).
            self.send_response(
                ExchangeType::CreateChildSa,
                id,
                refuse(NotifyType::TemporaryFailure),
                rng,
            );
            return;
        }
        let Some(ni) = nonce_of(&payloads)
            .filter(|n| n.has_valid_len())
            .map(|n| n.0.clone())
        else {
            self.send_response(
                ExchangeType::CreateChildSa,
                id,
                refuse(NotifyType::InvalidSyntax),
                rng,
            );
            return;
        };
        let rekey = payloads
            .iter()
            .filter_map(Payload::as_notify)
            .find(|n| n.notify_type == NotifyType::RekeySa)
            .map(|n| n.spi_u32());
        let old = match rekey {
            None => None,
            Some(spi) => {
                let found =
                    spi.and_then(|s| self.children.iter().find(|c| c.spi_out == s).cloned());
                match found {
                    Some(c) if matches!(c.state, ChildState::Rekeyed | ChildState::Deleting) => {
                        // Already replaced or being closed (§2.25.1).
                        self.send_response(
                            ExchangeType::CreateChildSa,
                            id,
                            refuse(NotifyType::TemporaryFailure),
                            rng,
                        );
                        return;
                    }
                    Some(c) => Some(c),
                    None => {
                        let n = Notify::new(NotifyType::ChildSaNotFound)
                            .with_spi(ProtocolId::Esp, spi.unwrap_or(0).to_be_bytes());
                        self.send_response(ExchangeType::CreateChildSa, id, vec![n.into()], rng);
                        return;
                    }
                }
            }
        };
        if self.children.len() >= self.config.max_child_sas {
            // A new one: NO_ADDITIONAL_SAS (§3.10.1); a rekey may succeed once the peer has
            // deleted what it replaced.
            let t = if old.is_some() {
                NotifyType::TemporaryFailure
            } else {
                NotifyType::NoAdditionalSas
            };
            self.send_response(ExchangeType::CreateChildSa, id, refuse(t), rng);
            return;
        }
        let nr = random_nonce(rng);
        let Some(reqid) = old
            .as_ref()
            .map(|c| c.reqid)
            .or_else(|| self.allocate_reqid())
        else {
            let n = Notify::new(NotifyType::NoAdditionalSas);
            self.send_response(ExchangeType::CreateChildSa, id, vec![n.into()], rng);
            self.events.push_back(Event::Failed {
                reason: "no reqid left for a new CHILD_SA".into(),
            });
            return;
        };
        match self.accept_child(&payloads, &ni, &nr, false, reqid, rng) {
            Ok(accepted) => {
                self.send_response(ExchangeType::CreateChildSa, id, accepted.payloads, rng);
                let new = Box::new(accepted.event);
                match old {
                    Some(o) => {
                        let collision = ChildCollision {
                            spi_in: accepted.child.spi_in,
                            lowest_nonce: lowest_nonce(&ni, &nr),
                        };
                        let ours = self.pending.as_mut().and_then(|p| match &mut p.task {
                            Task::CreateChild(req) if req.rekey_of == Some(o.spi_in) => Some(req),
                            _ => None,
                        });
                        match ours {
                            // Our own rekey of it is in flight (§2.8.1): decided when its
                            // answer comes.
                            Some(req) => req.collision = Some(collision),
                            // The peer deletes the old SA once it has the answer.
                            None => self.set_child_state(o.spi_in, ChildState::Rekeyed),
                        }
                        self.events.push_back(Event::ChildSaRekeyed {
                            old_spi_in: o.spi_in,
                            new,
                        });
                    }
                    None => self.events.push_back(Event::ChildSaUp(new)),
                }
                self.children.push(accepted.child);
            }
            Err((notify, reason)) => {
                self.send_response(ExchangeType::CreateChildSa, id, refuse(notify), rng);
                self.events.push_back(Event::Failed { reason });
            }
        }
    }
}

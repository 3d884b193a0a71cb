//! Rekeying the IKE SA itself (RFC 7296 §1.3.2, §2.18): a CREATE_CHILD_SA exchange with an
//! IKE proposal carrying the new SPI, nonces and a fresh key exchange. The new SA's keys come
//! from the old SK_d ([`IkeKeys::rekey`]); whoever initiated the rekey is the new SA's
//! initiator; message IDs start again at 0; the CHILD_SAs move to the new SA; the rekey's
//! initiator deletes the old SA.
//!
//! The new SA is a separate [`IkeSa`] (with its own SPI, window and keys) that the old one
//! hands to its owner ([`IkeSa::poll_successor`]); the CHILD_SAs follow in a [`Handover`]
//! ([`IkeSa::poll_handover`], [`IkeSa::adopt`]) once it is certain which successor survives a
//! simultaneous rekey (§2.8.2, see [`collision`](super::collision)). The
//! [`Endpoint`](crate::Endpoint) does both by itself.

use std::time::Instant;

use super::collision::{lowest_nonce, ours_is_redundant, IkeCollision};
use super::{
    child::nonce_of, dh_secret, random_ike_spi, random_nonce, rules, Child, Command, IkeSa, SaKeys,
    State, Task,
};
use crate::crypto::{DhGroup, DhSecret, IkeKeys, IkeSuite, Random, Role};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::proposal::{check_chosen_ike, choose_ike, ike_suite_to_wire, Describe};
use crate::wire::{
    Delete, ExchangeType, KeyExchange, Nonce, Notify, NotifyType, Payload, ProtocolId, Sa,
};

/// Our IKE SA rekey in flight.
pub(super) struct IkeRekeyRequest {
    dh: DhSecret,
    nonce: Vec<u8>,
    /// Our SPI of the new SA (its initiator SPI).
    spi: u64,
    /// INVALID_KE_PAYLOAD retries so far.
    retries: u8,
}

/// CHILD_SAs and waiting commands moving from a rekeyed IKE SA to its successor.
///
/// Made by the old SA ([`IkeSa::poll_handover`]) and given to the SA whose
/// [`local_spi`](IkeSa::local_spi) is [`to`](Self::to) with [`IkeSa::adopt`].
pub struct Handover {
    from: u64,
    to: u64,
    now: Instant,
    children: Vec<Child>,
    commands: Vec<Command>,
    retries: Vec<(Instant, Command)>,
}

impl core::fmt::Debug for Handover {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handover")
            .field("from", &format_args!("{:016x}", self.from))
            .field("to", &format_args!("{:016x}", self.to))
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl Handover {
    /// Our SPI of the old IKE SA.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// Our SPI of the successor that must adopt the CHILD_SAs.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The successor is gone (deleted before it could adopt them): the CHILD_SAs are lost.
    /// Returns the events that say so, for the old SA's handle.
    pub fn abandon(self) -> Vec<Event> {
        let reason = "the IKE SA that should have inherited it is gone".to_string();
        let mut v: Vec<Event> = self
            .children
            .into_iter()
            .map(|c| Event::ChildSaDown {
                reqid: c.reqid,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: reason.clone(),
            })
            .collect();
        v.push(Event::IkeSaDown { reason });
        v
    }
}

fn wire_group(g: DhGroup) -> crate::wire::DhGroup {
    crate::wire::DhGroup::from(g.iana_id())
}

fn ke_of(payloads: &[Payload]) -> Option<&KeyExchange> {
    payloads.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

fn sa_of(payloads: &[Payload]) -> Option<&Sa> {
    payloads.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

impl IkeSa {
    /// Rekeys the IKE SA (RFC 7296 §1.3.2): CREATE_CHILD_SA with our IKE proposals, a new
    /// SPI, a nonce and a key exchange. On success the event
    /// [`IkeSaRekeyed`](Event::IkeSaRekeyed) names the new SA, which inherits every CHILD_SA,
    /// and this SA is deleted. The IKE SA also rekeys itself on
    /// [`Config::ike_rekey`](crate::Config::ike_rekey)'s schedule.
    pub fn rekey_ike(&mut self, now: Instant, rng: &mut dyn Random) -> Result<()> {
        self.command(now, Command::RekeyIke, rng)
    }

    /// A new IKE SA made by a rekey, to be routed by its [`local_spi`](IkeSa::local_spi). It
    /// says nothing until it [adopts](IkeSa::adopt) the CHILD_SAs; a redundant one of a
    /// simultaneous rekey never does and is deleted quietly.
    pub fn poll_successor(&mut self) -> Option<IkeSa> {
        self.life.successors.pop_front()
    }

    /// CHILD_SAs to move to a successor; collect [`poll_successor`](Self::poll_successor)
    /// first so that the successor exists.
    pub fn poll_handover(&mut self) -> Option<Handover> {
        self.life.handover.take()
    }

    /// Takes over the CHILD_SAs of the SA this one replaced, and its commands that were still
    /// waiting (rekeys, deletes), which start now.
    pub fn adopt(&mut self, handover: Handover, rng: &mut dyn Random) {
        self.children.extend(handover.children);
        for cmd in handover.commands {
            if !self.commands.contains(&cmd) {
                self.commands.push_back(cmd);
            }
        }
        self.life.retries.extend(handover.retries);
        self.life.quiet = false;
        self.life.retire_at = None;
        self.kick(handover.now, rng);
    }

    fn ike_proposal_payloads(&self, req: &IkeRekeyRequest) -> Vec<Payload> {
        let proposals = self
            .config
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, Some(req.spi)))
            .collect();
        vec![
            Sa::new(proposals).into(),
            Nonce(req.nonce.clone()).into(),
            KeyExchange::new(wire_group(req.dh.group()), req.dh.public_value().to_vec()).into(),
        ]
    }

    /// Sends our rekey request, with a KE for the current SA's group (the peer accepted it
    /// once) unless the peer asked for another.
    pub(super) fn start_rekey_ike(&mut self, now: Instant, rng: &mut dyn Random) -> Result<()> {
        let group = self
            .keys
            .as_ref()
            .map(|k| k.ike.suite().dh)
            .ok_or(Error::NotEstablished)?;
        self.send_rekey_ike(now, group, 0, rng)
    }

    fn send_rekey_ike(
        &mut self,
        now: Instant,
        group: DhGroup,
        retries: u8,
        rng: &mut dyn Random,
    ) -> Result<()> {
        let req = IkeRekeyRequest {
            dh: dh_secret(group, rng)?,
            nonce: random_nonce(rng),
            spi: random_ike_spi(rng),
            retries,
        };
        let payloads = self.ike_proposal_payloads(&req);
        self.send_request(
            now,
            ExchangeType::CreateChildSa,
            payloads,
            Task::RekeyIke(req),
            rng,
        )
    }

    /// A successor SA with `keys`, established, quiet until it adopts the CHILD_SAs, and
    /// closing by itself if it never does.
    fn successor(
        &self,
        now: Instant,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        keys: IkeKeys,
        rng: &mut dyn Random,
    ) -> Result<IkeSa> {
        let mut sa = IkeSa::new(
            self.config.clone(),
            role,
            spi_i,
            spi_r,
            self.local,
            self.remote,
            self.allocators.clone(),
        );
        sa.keys = Some(SaKeys::new(keys, role)?);
        sa.encap = self.encap;
        sa.behind_nat = self.behind_nat;
        sa.peer_behind_nat = self.peer_behind_nat;
        sa.state = State::Established;
        sa.peer = self.peer.clone();
        sa.peer_hash_algorithms = self.peer_hash_algorithms.clone();
        sa.peer_fragmentation = self.peer_fragmentation;
        sa.life.quiet = true;
        sa.life.retire_at = Some(now + self.retire_after());
        sa.schedule_lifetimes(now, rng);
        Ok(sa)
    }

    /// Moves our CHILD_SAs and waiting work to the successor `to` and tells the driver.
    fn hand_over(&mut self, now: Instant, to: u64, suite: IkeSuite) {
        let from = self.local_spi();
        self.events.push_back(Event::IkeSaRekeyed {
            old_spi: from,
            new_spi: to,
            suite,
        });
        // A DELETE of the IKE SA queued behind the rekey (`ibm-ipsec down` during a rekey)
        // is meant for whatever SA now carries the peer's CHILD_SAs: the successor.
        let keep = |c: &Command| {
            matches!(
                c,
                Command::RekeyChild { .. } | Command::DeleteChild { .. } | Command::DeleteIke
            )
        };
        let commands = std::mem::take(&mut self.commands)
            .into_iter()
            .filter(keep)
            .collect();
        let retries = std::mem::take(&mut self.life.retries)
            .into_iter()
            .filter(|(_, c)| keep(c))
            .collect();
        self.life.handover = Some(Handover {
            from,
            to,
            now,
            children: std::mem::take(&mut self.children),
            commands,
            retries,
        });
        self.life.quiet = true;
        self.life.ike_collision = None;
    }

    /// After the hand-over: wait for the peer to delete this SA (it initiated the surviving
    /// rekey), closing by ourselves if it never does.
    fn await_peer_delete(&mut self, now: Instant) {
        self.state = State::Rekeyed;
        self.life.retire_at = Some(now + self.retire_after());
    }

    /// After the hand-over: we initiated the surviving rekey, so we delete this SA (§2.18).
    fn delete_superseded(&mut self, now: Instant, rng: &mut dyn Random) {
        self.state = State::Deleting;
        let sent = self.send_request(
            now,
            ExchangeType::Informational,
            vec![Delete::ike().into()],
            Task::DeleteIke,
            rng,
        );
        if sent.is_err() {
            self.close("superseded".into());
        }
    }

    /// The peer deletes this IKE SA. If we answered its rekey while ours was in flight, its
    /// DELETE says that its new SA won (§2.8.2): that one inherits the CHILD_SAs.
    pub(super) fn on_peer_deletes_rekeyed_sa(&mut self, now: Instant) {
        if let Some(theirs) = self.life.ike_collision.take() {
            self.hand_over(now, theirs.spi, theirs.suite);
        }
    }

    /// A successor that has not inherited its CHILD_SAs yet (we wait for the outcome of a
    /// simultaneous rekey, §2.8.2) must not act on requests about them: it drops them
    /// unanswered, and the peer's retransmission finds them adopted. Deleting the SA itself
    /// and liveness checks are answered at once.
    pub(super) fn awaiting_adoption(&self, exchange: ExchangeType, payloads: &[Payload]) -> bool {
        if !(self.life.quiet && self.state == State::Established) {
            return false;
        }
        let about_ike_sa_only = exchange == ExchangeType::Informational
            && payloads.iter().all(|p| match p {
                Payload::Delete(d) => d.protocol == ProtocolId::Ike,
                Payload::Notify(_) => true,
                _ => false,
            });
        !about_ike_sa_only
    }

    /// The peer rekeys the IKE SA. Called for a CREATE_CHILD_SA request with an IKE proposal,
    /// in state `Established`.
    pub(super) fn handle_ike_rekey_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        let refuse = |n: Notify| vec![Payload::from(n)];
        // Busy creating, rekeying or deleting a CHILD_SA (§2.25.1).
        if matches!(
            self.pending.as_ref().map(|p| &p.task),
            Some(Task::CreateChild(_) | Task::DeleteChild { .. })
        ) {
            let n = Notify::new(NotifyType::TemporaryFailure);
            self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
            return;
        }
        let (Some(sa), Some(ke), Some(ni)) = (
            sa_of(&payloads),
            ke_of(&payloads),
            nonce_of(&payloads).filter(|n| n.has_valid_len()),
        ) else {
            let n = Notify::new(NotifyType::InvalidSyntax);
            self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
            return;
        };
        let ni = ni.0.clone();
        let ke_group = DhGroup::from_iana_id(ke.dh_group.value());
        let Some((number, suite)) =
            choose_ike(&self.config.ike_proposals, sa, ke_group).filter(|_| ke_group.is_some())
        else {
            let n = match choose_ike(&self.config.ike_proposals, sa, None) {
                Some((_, s)) => Notify::invalid_ke_payload(wire_group(s.dh)),
                None => {
                    self.events.push_back(Event::Failed {
                        reason: format!(
                            "peer's IKE SA rekey: no proposal chosen from {}",
                            Describe(&sa.proposals)
                        ),
                    });
                    Notify::new(NotifyType::NoProposalChosen)
                }
            };
            self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
            return;
        };
        let peer_spi = sa
            .proposals
            .iter()
            .find(|p| p.number == number && p.protocol == ProtocolId::Ike)
            .and_then(|p| p.spi_u64())
            .filter(|s| *s != 0);
        let Some(peer_spi) = peer_spi else {
            let n = Notify::new(NotifyType::InvalidSyntax);
            self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
            return;
        };
        let our_spi = random_ike_spi(rng);
        let nr = random_nonce(rng);
        let derived = dh_secret(suite.dh, rng).and_then(|dh| {
            let g_ir = dh.shared_secret(&ke.data)?;
            let old = self.keys.as_ref().ok_or(Error::NotEstablished)?;
            let keys = old.ike.rekey(suite, &g_ir, &ni, &nr, peer_spi, our_spi)?;
            Ok((dh, keys))
        });
        let (dh, keys) = match derived {
            Ok(x) => x,
            Err(e) => {
                let n = Notify::new(NotifyType::InvalidSyntax);
                self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
                self.events.push_back(Event::Failed {
                    reason: format!("peer's IKE SA rekey: {e}"),
                });
                return;
            }
        };
        let successor = match self.successor(now, Role::Responder, peer_spi, our_spi, keys, rng) {
            Ok(s) => s,
            Err(e) => {
                let n = Notify::new(NotifyType::NoProposalChosen);
                self.send_response(ExchangeType::CreateChildSa, id, refuse(n), rng);
                self.events.push_back(Event::Failed {
                    reason: format!("peer's IKE SA rekey: {e}"),
                });
                return;
            }
        };
        let response: Vec<Payload> = vec![
            Sa::new(vec![ike_suite_to_wire(&suite, number, Some(our_spi))]).into(),
            Nonce(nr.clone()).into(),
            KeyExchange::new(wire_group(suite.dh), dh.public_value().to_vec()).into(),
        ];
        self.send_response(ExchangeType::CreateChildSa, id, response, rng);
        self.life.successors.push_back(successor);
        if matches!(
            self.pending.as_ref().map(|p| &p.task),
            Some(Task::RekeyIke(_))
        ) {
            // Simultaneous rekey (§2.8.2): decided when our own exchange ends.
            self.life.ike_collision = Some(IkeCollision {
                spi: our_spi,
                suite,
                lowest_nonce: lowest_nonce(&ni, &nr),
            });
            return;
        }
        self.hand_over(now, our_spi, suite);
        self.await_peer_delete(now);
    }

    /// The answer to our IKE SA rekey.
    pub(super) fn handle_ike_rekey_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
        req: IkeRekeyRequest,
        rng: &mut dyn Random,
    ) {
        match self.complete_ike_rekey(now, &payloads, &req, rng) {
            Ok(Some((successor, suite, nr))) => {
                let ours = successor.local_spi();
                self.life.successors.push_back(successor);
                match self.life.ike_collision.take() {
                    Some(theirs) if ours_is_redundant(&req.nonce, &nr, &theirs.lowest_nonce) => {
                        // Ours holds the lowest nonce: we delete it, the peer deletes the old
                        // SA, and the CHILD_SAs go to the peer's (§2.8.2).
                        if let Some(redundant) = self.life.successors.back_mut() {
                            redundant.delete_superseded(now, rng);
                        }
                        self.hand_over(now, theirs.spi, theirs.suite);
                        self.await_peer_delete(now);
                    }
                    _ => {
                        self.hand_over(now, ours, suite);
                        self.delete_superseded(now, rng);
                    }
                }
            }
            Ok(None) => {} // retried with the peer's group
            Err((notify, reason)) => {
                if let Some(theirs) = self.life.ike_collision.take() {
                    // The peer's rekey is the only one: its SA inherits, it deletes this one.
                    self.hand_over(now, theirs.spi, theirs.suite);
                    self.await_peer_delete(now);
                    return;
                }
                if notify == Some(NotifyType::TemporaryFailure) {
                    // The peer is busy with another exchange (§2.25): try again later.
                    self.schedule_retry(now, Command::RekeyIke, rng);
                } else {
                    self.events.push_back(Event::Failed { reason });
                }
            }
        }
    }

    /// Checks the answer and derives the successor; `Ok(None)` when the request was sent
    /// again with the group the peer asked for.
    #[allow(clippy::type_complexity)]
    fn complete_ike_rekey(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        req: &IkeRekeyRequest,
        rng: &mut dyn Random,
    ) -> core::result::Result<Option<(IkeSa, IkeSuite, Vec<u8>)>, (Option<NotifyType>, String)>
    {
        if let Some(n) = payloads
            .iter()
            .filter_map(Payload::as_notify)
            .find(|n| n.notify_type.is_error())
        {
            if n.notify_type == NotifyType::InvalidKePayload {
                let wanted = n
                    .requested_group()
                    .and_then(|g| DhGroup::from_iana_id(g.value()))
                    .filter(|g| self.config.ike_proposals.iter().any(|p| p.dh.contains(g)));
                if let Some(g) = wanted.filter(|_| req.retries < self.config.max_ke_retries) {
                    if self.life.ike_collision.is_none() {
                        return match self.send_rekey_ike(now, g, req.retries + 1, rng) {
                            Ok(()) => Ok(None),
                            Err(e) => Err((None, format!("cannot rekey the IKE SA: {e}"))),
                        };
                    }
                }
            }
            return Err((
                Some(n.notify_type),
                format!("peer refused to rekey the IKE SA: {}", n.notify_type),
            ));
        }
        rules::check(payloads, &rules::CREATE_CHILD_SA).map_err(|e| (None, e.to_string()))?;
        let bad = |s: &str| (None, format!("IKE SA rekey: {s}"));
        let sa = sa_of(payloads).ok_or_else(|| bad("no SA payload"))?;
        let suite = check_chosen_ike(&self.config.ike_proposals, sa).ok_or_else(|| {
            bad(&format!(
                "peer chose a proposal we did not offer: {}",
                Describe(&sa.proposals)
            ))
        })?;
        let peer_spi = sa
            .proposals
            .first()
            .and_then(|p| p.spi_u64())
            .filter(|s| *s != 0)
            .ok_or_else(|| bad("peer's proposal has no 8-byte SPI"))?;
        let nr = nonce_of(payloads)
            .filter(|n| n.has_valid_len())
            .map(|n| n.0.clone())
            .ok_or_else(|| bad("no valid nonce"))?;
        let ke = ke_of(payloads)
            .filter(|k| suite.dh == req.dh.group() && k.dh_group.value() == suite.dh.iana_id())
            .ok_or_else(|| bad("no KE for the group we sent"))?;
        let mut derive = || -> Result<IkeSa> {
            let g_ir = req.dh.shared_secret(&ke.data)?;
            let old = self.keys.as_ref().ok_or(Error::NotEstablished)?;
            let keys = old
                .ike
                .rekey(suite, &g_ir, &req.nonce, &nr, req.spi, peer_spi)?;
            self.successor(now, Role::Initiator, req.spi, peer_spi, keys, rng)
        };
        let successor = derive().map_err(|e| bad(&e.to_string()))?;
        Ok(Some((successor, suite, nr)))
    }
}

//! The IKE SA's part of reauthentication (RFC 7296 §2.8.3): a new IKE SA that recreates the
//! CHILD_SAs of the one it replaces with the same selectors and reqids. The
//! [`Endpoint`](crate::Endpoint) drives the make-before-break order (see
//! [`Endpoint::reauthenticate`](crate::Endpoint::reauthenticate)).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Command, IkeSa, State, Task};
use crate::allocation::Allocators;
use crate::config::Config;
use crate::crypto::{Random, Role};
use crate::error::{Error, Result};
use crate::wire::{ExchangeType, TsRange};

/// What a CHILD_SA to recreate looks like: selectors as negotiated (our view) and its reqid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildTemplate {
    /// Our traffic selectors.
    pub local_ts: Vec<TsRange>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<TsRange>,
    /// The reqid the recreated CHILD_SA keeps, so the driver's policy stays valid.
    pub reqid: u32,
}

impl IkeSa {
    /// Starts a new IKE SA as initiator that recreates `children` (the first in IKE_AUTH, the
    /// others with CREATE_CHILD_SA once it is up), without `INITIAL_CONTACT`: the peer must
    /// keep the SAs being replaced until we delete them (RFC 7296 §2.8.3, §2.4).
    pub fn initiate_reauth(
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
        allocators: Allocators,
        children: Vec<ChildTemplate>,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Result<IkeSa> {
        Self::initiate_with(config, local, remote, allocators, children, false, now, rng)
    }

    /// The config this SA was made from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Our current address for this SA.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Templates of the installed CHILD_SAs, to recreate them elsewhere (a CHILD_SA being
    /// rekeyed appears once: its reqid and selectors are shared by old and new).
    pub fn child_templates(&self) -> Vec<ChildTemplate> {
        let mut v: Vec<ChildTemplate> = Vec::new();
        for c in &self.children {
            if v.iter().any(|t| t.reqid == c.reqid) {
                continue;
            }
            v.push(ChildTemplate {
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                reqid: c.reqid,
            });
        }
        v
    }

    /// A reauthentication's new SA: IKE_AUTH fails unless the peer proves `id` again.
    pub(crate) fn expect_peer(&mut self, id: Option<crate::wire::Identification>) {
        self.expected_peer = id;
    }

    /// Gives the CHILD_SA with inbound SPI `spi_in` another reqid (the endpoint's reqid
    /// adoption on the peer side of a reauthentication).
    pub(crate) fn adopt_reqid(&mut self, spi_in: u32, reqid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            c.reqid = reqid;
        }
    }

    /// Whether the peer's IKE_AUTH carried `INITIAL_CONTACT`: it holds no other SA with us
    /// (RFC 7296 §2.4).
    pub fn peer_sent_initial_contact(&self) -> bool {
        self.peer_initial_contact
    }

    /// Ends the SA without telling the peer, which has forgotten it (INITIAL_CONTACT from a
    /// restarted peer): every CHILD_SA and the IKE SA are reported down.
    pub(crate) fn forget(&mut self, reason: String) {
        self.close(reason);
    }

    /// Whether this SA is a responder that finished IKE_SA_INIT but not IKE_AUTH (counted
    /// for the cookie threshold, RFC 7296 §2.6).
    pub fn is_half_open(&self) -> bool {
        self.role == Role::Responder && self.state == State::Connecting
    }

    /// Whether every CHILD_SA it was asked to create has been negotiated (up or refused)
    /// and the SA is established.
    pub fn planned_children_done(&self) -> bool {
        let creating = match self.pending.as_ref().map(|p| &p.task) {
            Some(Task::Auth(_)) => true,
            Some(Task::CreateChild(req)) => req.rekey_of.is_none(),
            _ => false,
        };
        self.state == State::Established
            && self.planned_children.is_empty()
            && !creating
            && !self.commands.contains(&Command::CreateChild)
    }

    /// Selectors and reqid of the next new (not rekeyed) CHILD_SA: the next planned one, or
    /// the configured selectors with a fresh reqid.
    pub(super) fn new_child_template(&mut self) -> Result<(Vec<TsRange>, Vec<TsRange>, u32)> {
        if let Some(t) = self.planned_children.pop_front() {
            return Ok((t.local_ts, t.remote_ts, t.reqid));
        }
        let (local, remote) = self.default_ts();
        let reqid = self
            .allocate_reqid()
            .ok_or(Error::Config("no reqid left for a new CHILD_SA"))?;
        Ok((local, remote, reqid))
    }

    /// Negotiates one more CHILD_SA with these selectors (CREATE_CHILD_SA, RFC 7296
    /// §1.3.1), with a reqid of its own; it comes up as `ChildSaUp` (or `Failed`).
    pub fn create_child(
        &mut self,
        now: Instant,
        local_ts: Vec<TsRange>,
        remote_ts: Vec<TsRange>,
        rng: &mut dyn Random,
    ) -> Result<()> {
        if self.state != State::Established {
            return Err(Error::NotEstablished);
        }
        let reqid = self
            .allocate_reqid()
            .ok_or(Error::Config("no reqid left for a new CHILD_SA"))?;
        self.planned_children.push_back(ChildTemplate {
            local_ts,
            remote_ts,
            reqid,
        });
        self.commands.push_back(Command::CreateChild);
        self.kick(now, rng);
        Ok(())
    }

    /// After IKE_AUTH: one CREATE_CHILD_SA per remaining planned CHILD_SA.
    pub(super) fn queue_planned_children(&mut self) {
        for _ in 0..self.planned_children.len() {
            self.commands.push_back(Command::CreateChild);
        }
    }

    pub(super) fn start_create_child(&mut self, now: Instant, rng: &mut dyn Random) -> Result<()> {
        let req = self.child_request(true, None, rng)?;
        let payloads = self.child_request_payloads(&req, false);
        self.send_request(
            now,
            ExchangeType::CreateChildSa,
            payloads,
            Task::CreateChild(req),
            rng,
        )
    }

    pub(super) fn plan_children(&mut self, children: Vec<ChildTemplate>) {
        self.planned_children = VecDeque::from(children);
    }
}

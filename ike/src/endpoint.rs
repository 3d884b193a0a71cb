//! The endpoint: routes datagrams to IKE SAs by SPI and answers IKE_SA_INIT as responder
//! (quinn-proto's `Endpoint`). It owns the injected random source, the reqid and SPI hooks
//! ([`allocation`](crate::allocation)), the cookie secrets ([`cookie`](crate::cookie)) and
//! the make-before-break order of reauthentication.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::allocation::{Allocators, ReqidAllocator, SpiSource};
use crate::config::Config;
use crate::cookie::{CookieJar, CookiePolicy};
use crate::crypto::Random;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::sa::{Accept, Datagram, IkeSa};
use crate::wire::{
    prepend_non_esp_marker, strip_non_esp_marker, ExchangeType, Flags, Header, HeaderPacket,
    Message, Notify, NotifyType, Payload,
};

mod reauth;

use reauth::Reauth;

/// Identifies an IKE SA within an endpoint: our SPI.
pub type SaHandle = u64;

/// Many IKE SAs behind the IKE ports of one host.
pub struct Endpoint {
    responder: Option<Arc<Config>>,
    nat_t_port: u16,
    rng: Box<dyn Random + Send>,
    sas: HashMap<SaHandle, IkeSa>,
    /// Responder SAs by (peer SPI, peer address), to route IKE_SA_INIT retransmissions (their
    /// responder SPI is still zero) for the SA's whole life: a late duplicate must never
    /// create a second SA.
    half_open: HashMap<(u64, SocketAddr), SaHandle>,
    half_open_keys: HashMap<SaHandle, (u64, SocketAddr)>,
    allocators: Allocators,
    /// CHILD_SAs up per reqid, from the events: the reqid is released at zero.
    live_reqids: HashMap<u32, usize>,
    cookies: Option<CookieJar>,
    /// Reauthentications in progress, by the new SA's handle.
    reauths: HashMap<SaHandle, Reauth>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<(SaHandle, Event)>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sas", &self.sas.len())
            .field("responder", &self.responder.is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint; with `responder` set it accepts IKE_SA_INIT requests with that config.
    /// `nat_t_port` is the port whose datagrams carry the non-ESP marker (4500).
    pub fn new(
        responder: Option<Arc<Config>>,
        nat_t_port: u16,
        rng: Box<dyn Random + Send>,
    ) -> Self {
        Endpoint {
            responder,
            nat_t_port,
            rng,
            sas: HashMap::new(),
            half_open: HashMap::new(),
            half_open_keys: HashMap::new(),
            allocators: Allocators::default(),
            live_reqids: HashMap::new(),
            cookies: Some(CookieJar::new(CookiePolicy::default())),
            reauths: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Replaces the reqid allocator (default:
    /// [`SequentialReqids`](crate::allocation::SequentialReqids) in
    /// `0x49420001..=0x4942ffff`). Set it before the first SA.
    pub fn with_reqid_allocator(mut self, reqids: Arc<dyn ReqidAllocator>) -> Self {
        self.allocators.reqids = reqids;
        self
    }

    /// Replaces the inbound SPI source (default:
    /// [`RandomSpis`](crate::allocation::RandomSpis), from the injected random source), e.g.
    /// with XFRM `ALLOCSPI`.
    pub fn with_spi_source(mut self, spis: Arc<dyn SpiSource>) -> Self {
        self.allocators.spis = spis;
        self
    }

    /// When to demand cookies from IKE_SA_INIT initiators (RFC 7296 §2.6); `None` never
    /// does. Default: [`CookiePolicy::default`] (10 half-open SAs, secret rotated every 2 min).
    /// At the same threshold (the default one when `None`) the responder stops signing its
    /// AUTH ahead of IKE_AUTH and signs only for initiators that authenticated themselves.
    pub fn with_cookie_policy(mut self, policy: Option<CookiePolicy>) -> Self {
        self.cookies = policy.map(CookieJar::new);
        self
    }

    /// Responder SAs that answered IKE_SA_INIT and wait for IKE_AUTH.
    pub fn half_open(&self) -> usize {
        self.sas.values().filter(|sa| sa.is_half_open()).count()
    }

    /// Starts an IKE SA as initiator.
    pub fn initiate(
        &mut self,
        now: Instant,
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<SaHandle> {
        let sa = IkeSa::initiate(
            config,
            local,
            remote,
            self.allocators.clone(),
            now,
            &mut *self.rng,
        )?;
        let handle = sa.local_spi();
        self.sas.insert(handle, sa);
        self.drain(now, handle);
        Ok(handle)
    }

    /// Processes one received UDP datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        udp_payload: &[u8],
    ) -> Result<()> {
        let ike = if local.port() == self.nat_t_port {
            match strip_non_esp_marker(udp_payload) {
                Some(m) => m,
                None => return Ok(()), // ESP or keepalive: not ours
            }
        } else {
            udp_payload
        };
        let packet = HeaderPacket::new_checked(ike)?;
        let flags = packet.flags();
        let (spi_i, spi_r) = (packet.initiator_spi(), packet.responder_spi());
        if flags.initiator() && !flags.response() && spi_r == 0 {
            if let Some(&handle) = self.half_open.get(&(spi_i, from)) {
                return self.with_sa(now, handle, |sa, rng| {
                    sa.handle_datagram(now, from, local, udp_payload, rng)
                });
            }
            let Some(config) = self.responder.clone() else {
                return Err(Error::Protocol("not accepting IKE SAs".into()));
            };
            if let Some(reply) = self.demand_cookie(now, from, local, ike)? {
                self.transmits.push_back(reply);
                return Ok(());
            }
            let allocators = self.allocators.clone();
            // Sign ahead only while few SAs are half-open: a flood must not buy one RSA
            // signature per IKE_SA_INIT, with or without cookies.
            let threshold = self
                .cookies
                .as_ref()
                .map_or(CookiePolicy::default().threshold, |j| j.policy().threshold);
            let under_load = self.half_open() >= threshold;
            match IkeSa::respond(
                config,
                local,
                from,
                allocators,
                now,
                udp_payload,
                &mut *self.rng,
            )? {
                Accept::Reply(d) => self.transmits.push_back(d),
                Accept::Created(mut sa) => {
                    if under_load {
                        sa.skip_early_auth();
                    }
                    let handle = sa.local_spi();
                    self.half_open.insert((spi_i, from), handle);
                    self.half_open_keys.insert(handle, (spi_i, from));
                    self.sas.insert(handle, *sa);
                    self.drain(now, handle);
                }
            }
            return Ok(());
        }
        let ours = if flags.initiator() { spi_r } else { spi_i };
        self.with_sa(now, ours, |sa, rng| {
            sa.handle_datagram(now, from, local, udp_payload, rng)
        })
    }

    /// Under load (RFC 7296 §2.6): the stateless `N(COOKIE)` answer to an IKE_SA_INIT
    /// request (`ike`, marker stripped) that carries no valid cookie, or `None` to go on.
    fn demand_cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        ike: &[u8],
    ) -> Result<Option<Datagram>> {
        let Some(threshold) = self.cookies.as_ref().map(|j| j.policy().threshold) else {
            return Ok(None);
        };
        if self.half_open() < threshold {
            return Ok(None);
        }
        let message = Message::parse(ike)?;
        let Some(ni) = message.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.0.as_slice()),
            _ => None,
        }) else {
            return Ok(None); // malformed: `respond` answers INVALID_SYNTAX statelessly
        };
        let spi_i = message.header.initiator_spi;
        // The cookie must be the first payload (§2.6).
        let offered = message.payloads.first().and_then(|p| match p.as_notify() {
            Some(n) if n.notify_type == NotifyType::Cookie => Some(n.data.as_slice()),
            _ => None,
        });
        let Some(jar) = self.cookies.as_mut() else {
            return Ok(None);
        };
        if let Some(cookie) = offered {
            if jar.verify(now, &mut *self.rng, cookie, ni, from.ip(), spi_i) {
                return Ok(None);
            }
        }
        // A missing, forged or expired cookie: a new one, and no state (§2.6).
        let cookie = jar.make(now, &mut *self.rng, ni, from.ip(), spi_i);
        let header = Header::new(ExchangeType::IkeSaInit, spi_i, 0, 0, Flags::RESPONSE);
        let bytes = Message::new(header)
            .with(Notify::cookie(cookie))
            .to_bytes()?;
        let marker = local.port() == self.nat_t_port;
        Ok(Some(Datagram {
            local,
            remote: from,
            non_esp_marker: marker,
            payload: if marker {
                prepend_non_esp_marker(&bytes)
            } else {
                bytes
            },
        }))
    }

    fn with_sa<T>(
        &mut self,
        now: Instant,
        handle: SaHandle,
        f: impl FnOnce(&mut IkeSa, &mut dyn Random) -> Result<T>,
    ) -> Result<T> {
        let sa = self.sas.get_mut(&handle).ok_or(Error::NoSuchSa(handle))?;
        let r = f(sa, &mut *self.rng);
        self.drain(now, handle);
        r
    }

    /// Moves an SA's output to the endpoint's queues, keeps the reqid and reauthentication
    /// books, and forgets closed SAs.
    fn drain(&mut self, now: Instant, handle: SaHandle) {
        let Some(sa) = self.sas.get_mut(&handle) else {
            return;
        };
        sa.settle_reqids();
        while let Some(d) = sa.poll_transmit() {
            self.transmits.push_back(d);
        }
        let first_new = self.events.len();
        while let Some(e) = sa.poll_event() {
            self.events.push_back((handle, e));
        }
        let closed = sa.is_closed();
        for i in first_new..self.events.len() {
            self.adopt_reqid(i);
            self.count_reqids(i);
        }
        let contact = self
            .events
            .range(first_new..)
            .any(|(h, e)| *h == handle && matches!(e, Event::IkeSaUp { .. }));
        if contact {
            self.initial_contact(now, handle);
        }
        if self.reauths.contains_key(&handle) {
            self.follow_reauth(now, handle, first_new);
        }
        self.follow_rekeys(now, handle);
        if closed {
            if let Some(key) = self.half_open_keys.remove(&handle) {
                self.half_open.remove(&key);
            }
        }
        if closed {
            self.sas.remove(&handle);
        }
    }

    /// The peer side of a reauthentication (RFC 7296 §2.8.3): a new CHILD_SA with the same
    /// selectors as one of another IKE SA with the same authenticated peer takes over that
    /// CHILD_SA's reqid, so the driver's policy keeps pointing at live SAs on both ends
    /// while the old IKE SA is deleted.
    fn adopt_reqid(&mut self, i: usize) {
        let (handle, Event::ChildSaUp(c)) = &self.events[i] else {
            return;
        };
        let handle = *handle;
        let Some(peer) = self
            .sas
            .get(&handle)
            .and_then(|sa| sa.peer())
            .map(|p| &p.id)
        else {
            return;
        };
        let existing = self
            .sas
            .iter()
            .filter(|(h, sa)| **h != handle && sa.peer().is_some_and(|p| p.id == *peer))
            .flat_map(|(_, sa)| sa.child_templates())
            .find(|t| t.local_ts == c.local_ts && t.remote_ts == c.remote_ts)
            .map(|t| t.reqid);
        let Some(reqid) = existing.filter(|r| *r != c.reqid) else {
            return;
        };
        let (spi_in, fresh) = (c.spi_in, c.reqid);
        if let Some(sa) = self.sas.get_mut(&handle) {
            sa.adopt_reqid(spi_in, reqid);
        }
        if let (_, Event::ChildSaUp(c)) = &mut self.events[i] {
            c.reqid = reqid;
        }
        if !self.live_reqids.contains_key(&fresh) {
            self.allocators.reqids.release(fresh);
        }
    }

    /// A peer that restarted tells us with `INITIAL_CONTACT` that it holds no other SA with
    /// us (RFC 7296 §2.4): the SAs we still have with the same authenticated identity at
    /// the same address are stale and go, without a DELETE nobody would answer. (A
    /// reauthentication does not send it, so its old SA stays until deleted.)
    fn initial_contact(&mut self, now: Instant, handle: SaHandle) {
        let Some(sa) = self.sas.get(&handle) else {
            return;
        };
        if !sa.peer_sent_initial_contact() {
            return;
        }
        let Some(peer) = sa.peer().map(|p| p.id.clone()) else {
            return;
        };
        let ip = sa.remote().ip();
        let stale: Vec<SaHandle> = self
            .sas
            .iter()
            .filter(|(h, other)| {
                **h != handle
                    && other.remote().ip() == ip
                    && other.peer().is_some_and(|p| p.id == peer)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            if let Some(sa) = self.sas.get_mut(&h) {
                sa.forget(format!("replaced: peer {peer} restarted (INITIAL_CONTACT)"));
            }
            self.drain(now, h);
        }
    }

    /// Tracks how many CHILD_SAs carry each reqid; releases it when none is left.
    fn count_reqids(&mut self, i: usize) {
        match &self.events[i].1 {
            Event::ChildSaUp(c) => *self.live_reqids.entry(c.reqid).or_default() += 1,
            Event::ChildSaRekeyed { new, .. } => {
                *self.live_reqids.entry(new.reqid).or_default() += 1
            }
            Event::ChildSaDown { reqid, .. } => {
                let reqid = *reqid;
                self.unref_reqid(reqid);
            }
            _ => {}
        }
    }

    /// Routes the successors of an IKE SA rekey by their SPI and moves the CHILD_SAs to the
    /// one that inherits them (RFC 7296 §2.18); the old SA's `IkeSaRekeyed` event came first.
    fn follow_rekeys(&mut self, now: Instant, handle: SaHandle) {
        loop {
            let Some(sa) = self.sas.get_mut(&handle) else {
                return;
            };
            if let Some(new) = sa.poll_successor() {
                let h = new.local_spi();
                // A 64-bit random SPI that is already ours would be a broken Random.
                if let std::collections::hash_map::Entry::Vacant(v) = self.sas.entry(h) {
                    v.insert(new);
                    self.drain(now, h);
                }
                continue;
            }
            let Some(handover) = sa.poll_handover() else {
                return;
            };
            let to = handover.to();
            // A reauthentication in progress follows the IKE SA it replaces or builds.
            for r in self.reauths.values_mut() {
                r.follow_rekey(handle, to);
            }
            if let Some(r) = self.reauths.remove(&handle) {
                self.reauths.insert(to, r);
            }
            match self.sas.get_mut(&to) {
                Some(successor) => {
                    successor.adopt(handover, &mut *self.rng);
                    self.drain(now, to);
                }
                None => {
                    for e in handover.abandon() {
                        self.events.push_back((handle, e));
                        self.count_reqids(self.events.len() - 1);
                    }
                }
            }
        }
    }

    /// One user of `reqid` fewer; releases it when none is left.
    fn unref_reqid(&mut self, reqid: u32) {
        if let Some(n) = self.live_reqids.get_mut(&reqid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.live_reqids.remove(&reqid);
                self.allocators.reqids.release(reqid);
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<SaHandle> = self
            .sas
            .iter()
            .filter(|(_, sa)| sa.poll_timeout().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            let _ = self.with_sa(now, h, |sa, rng| {
                sa.handle_timeout(now, rng);
                Ok(())
            });
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    /// The earliest timer of any SA (a linear scan: fine for the few SAs of a host).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sas.values().filter_map(IkeSa::poll_timeout).min()
    }

    /// The next event and the SA it belongs to.
    pub fn poll_event(&mut self) -> Option<(SaHandle, Event)> {
        self.events.pop_front()
    }

    /// An SA, to inspect it.
    pub fn sa(&self, handle: SaHandle) -> Option<&IkeSa> {
        self.sas.get(&handle)
    }

    /// Number of live SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// Whether there are no SAs.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// The datapath's per-CHILD_SA packet counters at `now` (any CHILD_SAs, of any SA: each
    /// SA takes its own, see [`IkeSa::handle_child_traffic`]): inbound traffic postpones
    /// DPD, outbound traffic the NAT-T keepalive.
    pub fn handle_child_traffic(&mut self, now: Instant, traffic: &[crate::sa::ChildTraffic]) {
        let handles: Vec<SaHandle> = self.sas.keys().copied().collect();
        for h in handles {
            let _ = self.with_sa(now, h, |sa, _| {
                sa.handle_child_traffic(now, traffic);
                Ok(())
            });
        }
    }

    /// Sends a liveness check on an SA.
    pub fn dpd(&mut self, now: Instant, handle: SaHandle) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| sa.dpd(now, rng))
    }

    /// Rekeys a CHILD_SA of an SA.
    pub fn rekey_child(&mut self, now: Instant, handle: SaHandle, spi_in: u32) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| sa.rekey_child(now, spi_in, rng))
    }

    /// Rekeys an IKE SA (see [`IkeSa::rekey_ike`]); on success the SA continues under the
    /// handle named by [`Event::IkeSaRekeyed`].
    pub fn rekey_ike(&mut self, now: Instant, handle: SaHandle) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| sa.rekey_ike(now, rng))
    }

    /// Negotiates an additional CHILD_SA on an established IKE SA with these selectors
    /// (our view: `local_ts` are ours); it gets a reqid of its own and is reported as
    /// `ChildSaUp` or `Failed`. Reauthentication recreates it like the first one.
    pub fn create_child(
        &mut self,
        now: Instant,
        handle: SaHandle,
        local_ts: Vec<crate::wire::TsRange>,
        remote_ts: Vec<crate::wire::TsRange>,
    ) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| {
            sa.create_child(now, local_ts, remote_ts, rng)
        })
    }

    /// Deletes a CHILD_SA of an SA.
    pub fn delete_child(&mut self, now: Instant, handle: SaHandle, spi_in: u32) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| sa.delete_child(now, spi_in, rng))
    }

    /// Deletes an IKE SA.
    pub fn delete(&mut self, now: Instant, handle: SaHandle) -> Result<()> {
        self.with_sa(now, handle, |sa, rng| sa.delete(now, rng))
    }
}

//! The endpoint: routes datagrams to IKE SAs by SPI and answers IKE_SA_INIT as responder
//! (quinn-proto's `Endpoint`). It owns the injected random source.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::crypto::Random;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::sa::{Accept, Datagram, IkeSa};
use crate::wire::{strip_non_esp_marker, HeaderPacket};

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
    next_reqid: u32,
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
            next_reqid: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn reqid(&mut self) -> u32 {
        let r = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1).max(1);
        r
    }

    /// Starts an IKE SA as initiator.
    pub fn initiate(
        &mut self,
        now: Instant,
        config: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<SaHandle> {
        let reqid = self.reqid();
        let sa = IkeSa::initiate(config, local, remote, reqid, now, &mut *self.rng)?;
        let handle = sa.local_spi();
        self.sas.insert(handle, sa);
        self.drain(handle);
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
                return self.with_sa(handle, |sa, rng| {
                    sa.handle_datagram(now, from, local, udp_payload, rng)
                });
            }
            let Some(config) = self.responder.clone() else {
                return Err(Error::Protocol("not accepting IKE SAs".into()));
            };
            let reqid = self.reqid();
            match IkeSa::respond(config, local, from, reqid, now, udp_payload, &mut *self.rng)? {
                Accept::Reply(d) => self.transmits.push_back(d),
                Accept::Created(sa) => {
                    let handle = sa.local_spi();
                    self.half_open.insert((spi_i, from), handle);
                    self.half_open_keys.insert(handle, (spi_i, from));
                    self.sas.insert(handle, *sa);
                    self.drain(handle);
                }
            }
            return Ok(());
        }
        let ours = if flags.initiator() { spi_r } else { spi_i };
        self.with_sa(ours, |sa, rng| {
            sa.handle_datagram(now, from, local, udp_payload, rng)
        })
    }

    fn with_sa<T>(
        &mut self,
        handle: SaHandle,
        f: impl FnOnce(&mut IkeSa, &mut dyn Random) -> Result<T>,
    ) -> Result<T> {
        let sa = self.sas.get_mut(&handle).ok_or(Error::NoSuchSa(handle))?;
        let r = f(sa, &mut *self.rng);
        self.drain(handle);
        r
    }

    /// Moves an SA's output to the endpoint's queues and forgets closed SAs.
    fn drain(&mut self, handle: SaHandle) {
        let Some(sa) = self.sas.get_mut(&handle) else {
            return;
        };
        while let Some(d) = sa.poll_transmit() {
            self.transmits.push_back(d);
        }
        while let Some(e) = sa.poll_event() {
            self.events.push_back((handle, e));
        }
        if sa.is_closed() {
            if let Some(key) = self.half_open_keys.remove(&handle) {
                self.half_open.remove(&key);
            }
        }
        if sa.is_closed() {
            self.sas.remove(&handle);
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
            let _ = self.with_sa(h, |sa, rng| {
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

    /// Sends a liveness check on an SA.
    pub fn dpd(&mut self, now: Instant, handle: SaHandle) -> Result<()> {
        self.with_sa(handle, |sa, rng| sa.dpd(now, rng))
    }

    /// Rekeys a CHILD_SA of an SA.
    pub fn rekey_child(&mut self, now: Instant, handle: SaHandle, spi_in: u32) -> Result<()> {
        self.with_sa(handle, |sa, rng| sa.rekey_child(now, spi_in, rng))
    }

    /// Deletes a CHILD_SA of an SA.
    pub fn delete_child(&mut self, now: Instant, handle: SaHandle, spi_in: u32) -> Result<()> {
        self.with_sa(handle, |sa, rng| sa.delete_child(now, spi_in, rng))
    }

    /// Deletes an IKE SA.
    pub fn delete(&mut self, now: Instant, handle: SaHandle) -> Result<()> {
        self.with_sa(handle, |sa, rng| sa.delete(now, rng))
    }
}

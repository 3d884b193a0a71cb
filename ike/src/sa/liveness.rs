//! What the datapath tells an IKE SA about its ESP traffic, and the NAT-T keepalive.
//!
//! **Liveness** (RFC 7296 §2.4): a liveness check is only needed when nothing
//! cryptographically protected arrived from the peer for a while. IKE messages are not the
//! only such thing: ESP packets that passed their integrity check on one of this SA's
//! CHILD_SAs prove the peer alive just as well. The ike crate never sees ESP, so the driver
//! feeds the datapath's per-CHILD_SA packet counters in with
//! [`IkeSa::handle_child_traffic`]; when an inbound counter moved, the peer was heard at that
//! `now` and DPD is postponed (strongSwan does the same with the kernel SA's use time).
//!
//! **NAT-T keepalives** (RFC 3948 §2.3, RFC 7296 §2.23): a host behind a NAT (the peer's
//! NAT_DETECTION_DESTINATION_IP hash did not match our address — forcing encapsulation alone
//! does not make us be behind one) sends a one-octet `0xFF` UDP datagram to the peer's
//! port 4500 whenever it sent nothing else there for [`Config::nat_keepalive`], so the
//! NAT's mapping stays open while the SAs are idle. "Anything else" is our IKE messages and
//! the ESP packets of our CHILD_SAs (an outbound counter that moved). The keepalive leaves
//! as an ordinary [`Datagram`] (no marker, payload `[0xFF]`, see
//! [`Datagram::is_nat_keepalive`]); the driver sends it from its port 4500.
//!
//! [`Config::nat_keepalive`]: crate::config::Config::nat_keepalive

use std::time::Instant;

use super::{Datagram, IkeSa, State};

/// The payload of a NAT-keepalive packet (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: u8 = 0xff;

/// Packet counters of one CHILD_SA as the datapath reports them: totals since the SA was
/// installed (the kernel's XFRM statistics, the userspace datapath's counters). Only packets
/// that passed ESP's integrity check may count as inbound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildTraffic {
    /// The CHILD_SA's inbound SPI (what [`ChildSa::spi_in`](crate::ChildSa::spi_in) named).
    pub spi_in: u32,
    /// ESP packets received and authenticated on it.
    pub packets_in: u64,
    /// ESP packets sent on it.
    pub packets_out: u64,
}

/// The counters last seen for one CHILD_SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    spi_in: u32,
    packets_in: u64,
    packets_out: u64,
}

impl Datagram {
    /// Whether this is a NAT-keepalive (RFC 3948 §2.3) rather than an IKE message: it goes
    /// from our UDP port 4500 as is, never through an IKE message path that would add the
    /// non-ESP marker.
    pub fn is_nat_keepalive(&self) -> bool {
        !self.non_esp_marker && self.payload == [NAT_KEEPALIVE]
    }
}

impl IkeSa {
    /// The datapath's counters for this SA's CHILD_SAs at `now` (counters of other SAs are
    /// ignored, so a driver may pass every CHILD_SA of the peer, or of the host). Inbound
    /// packets since the last report count as hearing from the peer (no DPD needed until
    /// `dpd_delay` after `now`); outbound ones as sending to it (no NAT-T keepalive needed).
    /// The first report of a CHILD_SA counts from zero. Call it at any pace: every few
    /// seconds is plenty for a 30 s DPD delay and a 20 s keepalive interval.
    pub fn handle_child_traffic(&mut self, now: Instant, traffic: &[ChildTraffic]) {
        if self.state == State::Closed {
            return;
        }
        let (mut inbound, mut outbound) = (false, false);
        for t in traffic {
            if !self.children.iter().any(|c| c.spi_in == t.spi_in) {
                continue;
            }
            let seen = match self.life.traffic.iter_mut().find(|s| s.spi_in == t.spi_in) {
                Some(s) => s,
                None => {
                    self.life.traffic.push(Seen {
                        spi_in: t.spi_in,
                        packets_in: 0,
                        packets_out: 0,
                    });
                    let last = self.life.traffic.len() - 1;
                    &mut self.life.traffic[last]
                }
            };
            inbound |= t.packets_in > seen.packets_in;
            outbound |= t.packets_out > seen.packets_out;
            // A counter that went down belongs to an SA the datapath re-created: start over.
            seen.packets_in = t.packets_in;
            seen.packets_out = t.packets_out;
        }
        let children = &self.children;
        self.life
            .traffic
            .retain(|s| children.iter().any(|c| c.spi_in == s.spi_in));
        if inbound && self.life.last_heard.is_some_and(|t| t < now) {
            self.life.last_heard = Some(now);
        }
        if outbound {
            self.life.last_sent = Some(now);
        }
    }

    /// Whether NAT detection in IKE_SA_INIT found a NAT in front of us (RFC 7296 §2.23: the
    /// peer's NAT_DETECTION_DESTINATION_IP does not hash our address). Only such a host sends
    /// NAT-T keepalives.
    pub fn behind_nat(&self) -> bool {
        self.behind_nat
    }

    /// Whether NAT detection found a NAT in front of the peer (its NAT_DETECTION_SOURCE_IP
    /// does not hash the address we see). A peer that forces encapsulation fakes that hash
    /// and looks the same. Such a peer's address is followed when it changes (§2.23) and its
    /// transport-mode selectors are substituted (§2.23.1).
    pub fn peer_behind_nat(&self) -> bool {
        self.peer_behind_nat
    }

    /// When the next keepalive is due, if this SA sends them.
    pub(super) fn keepalive_deadline(&self) -> Option<Instant> {
        if !self.sends_keepalives() {
            return None;
        }
        let interval = self.config.nat_keepalive?;
        self.life.last_sent.map(|t| t + interval)
    }

    fn sends_keepalives(&self) -> bool {
        self.behind_nat
            && self.encap
            && self.state == State::Established
            && !self.life.quiet
            && self.local.port() == self.config.nat_t_port
    }

    /// Sends the keepalive if nothing went to the peer for the configured interval.
    pub(super) fn handle_keepalive_timeout(&mut self, now: Instant) {
        if self.keepalive_deadline().is_some_and(|t| now >= t) {
            self.transmits.push_back(Datagram {
                local: self.local,
                remote: self.remote,
                non_esp_marker: false,
                payload: vec![NAT_KEEPALIVE],
            });
            self.life.last_sent = Some(now);
        }
    }

    /// After an input at `now`: whatever it queued for the peer leaves now, which resets the
    /// keepalive interval.
    pub(super) fn note_sent(&mut self, now: Instant) {
        if !self.transmits.is_empty() && self.state == State::Established {
            self.life.last_sent = Some(now);
        }
    }
}

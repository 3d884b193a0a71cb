//! Per-SA counters and byte/packet lifetimes (RFC 4301 §4.4.2.1 "SA lifetime").
//!
//! Time-based lifetimes belong to the IKE driver's rekey timers; an SA only knows the traffic
//! it carried.

/// Traffic limits of one SA. `None` means unlimited.
///
/// The soft limit asks for a rekey ([`Event::SoftLifetime`], reported once); the hard limit
/// makes the SA refuse all further traffic ([`Error::LifetimeExpired`](crate::Error)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Soft limit on payload bytes.
    pub soft_bytes: Option<u64>,
    /// Hard limit on payload bytes.
    pub hard_bytes: Option<u64>,
    /// Soft limit on packets.
    pub soft_packets: Option<u64>,
    /// Hard limit on packets.
    pub hard_packets: Option<u64>,
}

impl Lifetime {
    /// No limits.
    pub const UNLIMITED: Lifetime = Lifetime {
        soft_bytes: None,
        hard_bytes: None,
        soft_packets: None,
        hard_packets: None,
    };

    pub(crate) fn soft_reached(&self, c: &Counters) -> bool {
        reached(self.soft_bytes, c.bytes) || reached(self.soft_packets, c.packets)
    }

    pub(crate) fn hard_reached(&self, c: &Counters) -> bool {
        reached(self.hard_bytes, c.bytes) || reached(self.hard_packets, c.packets)
    }
}

fn reached(limit: Option<u64>, value: u64) -> bool {
    limit.is_some_and(|l| value >= l)
}

/// Something the SA reports to its driver, polled with `poll_event()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A soft limit (bytes, packets, or the sequence space nearing its end) was reached:
    /// start a rekey. Reported once per SA.
    SoftLifetime,
    /// A hard limit was reached, or the sequence space is used up: the SA carries no more
    /// traffic. Reported once per SA.
    HardLifetime,
}

/// Traffic and error counters of one SA direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets sealed (outbound) or authenticated and accepted (inbound).
    pub packets: u64,
    /// Payload bytes (the protected transport payload or inner packet) of those packets.
    pub bytes: u64,
    /// Inbound packets dropped as replays or as older than the window.
    pub replay_drops: u64,
    /// Inbound packets whose ICV did not verify.
    pub auth_failures: u64,
    /// Authenticated inbound packets with bad padding or an unacceptable next header.
    pub bad_padding: u64,
    /// Inbound packets too short, misaligned, with the wrong SPI or an invalid sequence
    /// number.
    pub malformed: u64,
    /// Packets refused because the SA expired (hard lifetime or sequence space).
    pub expired_drops: u64,
}

/// Tracks counters and reports each lifetime event once.
#[derive(Debug, Clone)]
pub(crate) struct Accounting {
    pub(crate) counters: Counters,
    pub(crate) lifetime: Lifetime,
    soft_reported: bool,
    hard_reported: bool,
    pending: [Option<Event>; 2],
}

impl Accounting {
    pub(crate) fn new(lifetime: Lifetime) -> Self {
        Accounting {
            counters: Counters::default(),
            lifetime,
            soft_reported: false,
            hard_reported: false,
            pending: [None, None],
        }
    }

    /// True when the SA must refuse traffic.
    pub(crate) fn hard_expired(&self) -> bool {
        self.hard_reported
    }

    /// Counts one packet of `bytes` payload and raises events whose limits it crossed.
    pub(crate) fn record(&mut self, bytes: usize) {
        self.counters.packets = self.counters.packets.saturating_add(1);
        self.counters.bytes = self.counters.bytes.saturating_add(bytes as u64);
        if self.lifetime.soft_reached(&self.counters) {
            self.soft();
        }
        if self.lifetime.hard_reached(&self.counters) {
            self.hard();
        }
    }

    pub(crate) fn soft(&mut self) {
        if !self.soft_reported {
            self.soft_reported = true;
            self.push(Event::SoftLifetime);
        }
    }

    pub(crate) fn hard(&mut self) {
        // A hard expiry implies the soft one: a driver that only watches soft events still
        // learns that it must rekey.
        self.soft();
        if !self.hard_reported {
            self.hard_reported = true;
            self.push(Event::HardLifetime);
        }
    }

    fn push(&mut self, e: Event) {
        if let Some(slot) = self.pending.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        let e = self.pending[0].take();
        self.pending[0] = self.pending[1].take();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_then_hard_each_once() {
        let mut a = Accounting::new(Lifetime {
            soft_bytes: Some(250),
            hard_bytes: Some(400),
            ..Lifetime::UNLIMITED
        });
        a.record(100);
        a.record(100);
        assert_eq!(a.poll_event(), None);
        a.record(100);
        assert_eq!(a.poll_event(), Some(Event::SoftLifetime));
        assert_eq!(a.poll_event(), None);
        assert!(!a.hard_expired());
        a.record(100);
        assert!(a.hard_expired());
        assert_eq!(a.poll_event(), Some(Event::HardLifetime));
        a.record(100);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.counters.packets, 5);
        assert_eq!(a.counters.bytes, 500);
    }

    #[test]
    fn hard_alone_reports_both_in_order() {
        let mut a = Accounting::new(Lifetime {
            hard_packets: Some(1),
            ..Lifetime::UNLIMITED
        });
        a.record(1);
        assert_eq!(a.poll_event(), Some(Event::SoftLifetime));
        assert_eq!(a.poll_event(), Some(Event::HardLifetime));
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn unlimited_never_fires() {
        let mut a = Accounting::new(Lifetime::UNLIMITED);
        for _ in 0..1000 {
            a.record(65535);
        }
        assert_eq!(a.poll_event(), None);
        assert!(!a.hard_expired());
    }
}

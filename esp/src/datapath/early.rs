//! ESP that arrives for one of our inbound SPIs before its SA is installed: held briefly,
//! then opened once the SA is there.
//!
//! An IKE responder may install a new CHILD_SA and send on it before its IKE_AUTH (or
//! CREATE_CHILD_SA) response has reached us; until we have processed that response the SPI
//! is unknown here. strongSwan 5.9.8 does exactly that, and during a make-before-break
//! reauthentication with traffic flowing it cost 0–2 pings per reauthentication in the
//! interop suite (scenario 6). The SPI is one we announced ourselves (the IKE layer picks it
//! through the datapath's [`SpiAnnouncer`]), so packets for it from that peer are kept —
//! bounded in SPIs, packets and time — and go through the normal open path when the SA is
//! added. Nothing is trusted before that: held packets authenticate (or are dropped) only
//! once their SA exists, so holding costs an attacker's packets a bounded buffer and no
//! more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::inbound::Arrival;
use super::{lock, Shared, BUF_LEN};

/// How long an announced SPI waits for its SA (an IKE round trip plus our processing, with
/// room for a retransmission).
pub(super) const HOLD: Duration = Duration::from_secs(3);
/// Announced SPIs waiting at once (one per CHILD_SA in negotiation; more are dropped oldest
/// first).
pub(super) const MAX_SPIS: usize = 32;
/// Packets held per SPI: a burst of the peer's first packets, not a queue to live in.
pub(super) const MAX_PACKETS: usize = 32;

/// One held ESP packet (from the SPI on) and how it arrived.
pub(super) struct Held {
    pub(super) esp: Vec<u8>,
    pub(super) arrival: Arrival,
}

struct Expected {
    peer: IpAddr,
    until: Instant,
    packets: Vec<Held>,
}

/// The SPIs announced and not yet installed, with what arrived for them.
#[derive(Default)]
pub(super) struct Early {
    /// Entries in `table`: lets the unknown-SPI path skip the lock when nothing waits.
    waiting: AtomicUsize,
    table: Mutex<HashMap<u32, Expected>>,
    /// Held packets whose SA is now installed, for the receive thread.
    ready: Mutex<Vec<Held>>,
    has_ready: AtomicBool,
}

impl Early {
    /// Expects ESP for `spi` from `peer` until [`HOLD`] from `now`.
    pub(super) fn expect(&self, peer: IpAddr, spi: u32, now: Instant) {
        let mut table = lock(&self.table);
        table.retain(|_, e| e.until > now);
        while table.len() >= MAX_SPIS {
            let Some(oldest) = table.iter().min_by_key(|(_, e)| e.until).map(|(s, _)| *s) else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(
            spi,
            Expected {
                peer,
                until: now + HOLD,
                packets: Vec::new(),
            },
        );
        self.waiting.store(table.len(), Ordering::Relaxed);
    }

    /// Keeps a packet for an announced SPI from its peer; false when it is not one (the
    /// caller counts it dropped).
    pub(super) fn hold(&self, spi: u32, esp: &[u8], arrival: Arrival, now: Instant) -> bool {
        if self.waiting.load(Ordering::Relaxed) == 0 || esp.len() > BUF_LEN {
            return false;
        }
        let mut table = lock(&self.table);
        let Some(e) = table.get_mut(&spi) else {
            return false;
        };
        if e.peer != arrival.from || e.until <= now || e.packets.len() >= MAX_PACKETS {
            return false;
        }
        e.packets.push(Held {
            esp: esp.to_vec(),
            arrival,
        });
        true
    }

    /// The SA for `spi` is installed: what was held for it goes to the receive thread.
    pub(super) fn installed(&self, spi: u32) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut table = lock(&self.table);
        let Some(e) = table.remove(&spi) else {
            return;
        };
        self.waiting.store(table.len(), Ordering::Relaxed);
        drop(table);
        if !e.packets.is_empty() {
            lock(&self.ready).extend(e.packets);
            self.has_ready.store(true, Ordering::Release);
        }
    }

    /// Held packets whose SA has been installed since the last call.
    pub(super) fn take_ready(&self) -> Vec<Held> {
        if !self.has_ready.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.ready))
    }
}

/// Tells a running [`Datapath`](super::Datapath) which inbound SPIs are about to be
/// announced to a peer, so ESP the peer sends on them before the SA is installed is held
/// rather than dropped (see the module docs). Cheap to clone; does nothing once the
/// datapath is gone.
#[derive(Clone)]
pub struct SpiAnnouncer(pub(super) Weak<Shared>);

impl SpiAnnouncer {
    /// `spi` will be announced to `peer` (in an IKE_AUTH or CREATE_CHILD_SA message).
    pub fn expect(&self, peer: IpAddr, spi: u32) {
        if let Some(sh) = self.0.upgrade() {
            sh.early.expect(peer, spi, Instant::now());
        }
    }
}

impl std::fmt::Debug for SpiAnnouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiAnnouncer")
            .field("running", &(self.0.strong_count() > 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn arrival(from: [u8; 4]) -> Arrival {
        Arrival {
            from: IpAddr::V4(Ipv4Addr::from(from)),
            port: Some(4500),
        }
    }

    #[test]
    fn only_announced_spis_from_their_peer_are_held_and_only_until_installed() {
        let early = Early::default();
        let now = Instant::now();
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(
            !early.hold(0x1000, b"x", arrival([10, 0, 0, 2]), now),
            "nothing announced"
        );
        early.expect(peer, 0x1000, now);
        assert!(
            !early.hold(0x2000, b"x", arrival([10, 0, 0, 2]), now),
            "another SPI"
        );
        assert!(
            !early.hold(0x1000, b"x", arrival([10, 0, 0, 9]), now),
            "another sender"
        );
        assert!(early.hold(0x1000, b"one", arrival([10, 0, 0, 2]), now));
        assert!(early.hold(0x1000, b"two", arrival([10, 0, 0, 2]), now));
        assert!(early.take_ready().is_empty(), "not installed yet");
        early.installed(0x1000);
        let ready = early.take_ready();
        let got: Vec<&[u8]> = ready.iter().map(|h| h.esp.as_slice()).collect();
        assert_eq!(
            got,
            [b"one".as_slice(), b"two".as_slice()],
            "in arrival order"
        );
        assert!(early.take_ready().is_empty());
        // Installed: no longer expected.
        assert!(!early.hold(0x1000, b"x", arrival([10, 0, 0, 2]), now));
    }

    #[test]
    fn holding_is_bounded_in_packets_spis_and_time() {
        let early = Early::default();
        let now = Instant::now();
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        early.expect(peer, 7, now);
        for i in 0..MAX_PACKETS {
            assert!(early.hold(7, &[i as u8], arrival([10, 0, 0, 2]), now));
        }
        assert!(!early.hold(7, b"over", arrival([10, 0, 0, 2]), now));
        assert!(!early.hold(7, b"late", arrival([10, 0, 0, 2]), now + HOLD));
        assert!(!early.hold(7, &vec![0; BUF_LEN + 1], arrival([10, 0, 0, 2]), now));
        for spi in 100..100 + MAX_SPIS as u32 + 5 {
            early.expect(peer, spi, now + Duration::from_millis(u64::from(spi)));
        }
        assert_eq!(lock(&early.table).len(), MAX_SPIS);
        assert!(
            !lock(&early.table).contains_key(&7),
            "the oldest went first"
        );
        // Expired entries go with the next announcement.
        early.expect(peer, 1, now + HOLD * 10);
        assert_eq!(lock(&early.table).len(), 1);
        assert_eq!(early.waiting.load(Ordering::Relaxed), 1);
    }
}

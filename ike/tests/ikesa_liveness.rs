//! Liveness from ESP traffic (RFC 7296 §2.4) and NAT-T keepalives (RFC 3948 §2.3), on a
//! two-endpoint harness that can put the initiator behind a NAT (its private address and
//! port rewritten to a public one on the way out, and back on the way in).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::testing::SeededRandom;
use ike::wire::{strip_non_esp_marker, ExchangeType, HeaderPacket, Identification};
use ike::{ChildTraffic, Config, Datagram, Endpoint, Event, Psk, SaHandle};

const I: usize = 0;
const R: usize = 1;
/// The initiator's own address (behind the NAT when there is one).
const I_PRIVATE: &str = "192.168.7.2";
/// What the responder sees of it behind the NAT.
const I_PUBLIC: &str = "10.0.0.1";
const R_IP: &str = "10.0.0.2";

/// One datagram as it crossed the link.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    by: usize,
    datagram: Datagram,
}

impl Sent {
    fn ike(&self) -> Option<HeaderPacket<&[u8]>> {
        let bytes = if self.datagram.non_esp_marker {
            strip_non_esp_marker(&self.datagram.payload)?
        } else {
            &self.datagram.payload[..]
        };
        HeaderPacket::new_checked(bytes).ok()
    }

    /// An empty INFORMATIONAL request is a liveness check (nothing else sends INFORMATIONAL
    /// requests in these scenarios).
    fn is_dpd_request(&self) -> bool {
        self.ike().is_some_and(|h| {
            h.exchange_type() == ExchangeType::Informational && !h.flags().response()
        })
    }
}

struct Lab {
    now: Instant,
    endpoints: [Endpoint; 2],
    events: [Vec<(SaHandle, Event)>; 2],
    log: Vec<Sent>,
    nat: bool,
    /// Datagrams from the responder are lost (the peer died).
    responder_dead: bool,
}

fn config(local: &str, remote: &str, f: &dyn Fn(&mut Config)) -> Config {
    let a = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"liveness secret".to_vec(),
    ));
    let mut c = Config::new(a.clone(), a);
    f(&mut c);
    c
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

impl Lab {
    /// An established pair; with `nat` the initiator sits behind a NAT.
    fn new(nat: bool, seed: u64, f: &dyn Fn(&mut Config)) -> Lab {
        let now = Instant::now();
        let mut lab = Lab {
            now,
            endpoints: [
                Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed))),
                // Behind the NAT the initiator proposes its private address; the responder
                // substitutes the NAT's (RFC 7296 §2.23.1) and accepts it with its default
                // policy, the peer's IKE address.
                Endpoint::new(
                    Some(Arc::new(config("share", "client", f))),
                    4500,
                    Box::new(SeededRandom::new(seed + 1)),
                ),
            ],
            events: [Vec::new(), Vec::new()],
            log: Vec::new(),
            nat,
            responder_dead: false,
        };
        let own = if nat { I_PRIVATE } else { I_PUBLIC };
        lab.endpoints[I]
            .initiate(
                now,
                Arc::new(config("client", "share", f)),
                addr(own, 500),
                addr(R_IP, 500),
            )
            .unwrap();
        lab.run_for(Duration::from_secs(5));
        for side in [I, R] {
            assert!(
                lab.child(side).is_some(),
                "side {side} not up: {:?}",
                lab.events
            );
        }
        lab
    }

    /// The NAT's mapping: private port p is public port p + 10000.
    fn outbound(&self, from: SocketAddr) -> SocketAddr {
        if self.nat && from.ip() == I_PRIVATE.parse::<IpAddr>().unwrap() {
            addr(I_PUBLIC, from.port() + 10000)
        } else {
            from
        }
    }

    fn inbound(&self, to: SocketAddr) -> SocketAddr {
        if self.nat && to.ip() == I_PUBLIC.parse::<IpAddr>().unwrap() {
            addr(I_PRIVATE, to.port() - 10000)
        } else {
            to
        }
    }

    /// Delivers everything queued (zero latency), repeatedly, and records it.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for side in [I, R] {
                while let Some(e) = self.endpoints[side].poll_event() {
                    self.events[side].push(e);
                }
                while let Some(d) = self.endpoints[side].poll_transmit() {
                    moved = true;
                    self.log.push(Sent {
                        at: self.now,
                        by: side,
                        datagram: d.clone(),
                    });
                    if side == R && self.responder_dead {
                        continue;
                    }
                    let (from, to) = if side == I {
                        (self.outbound(d.local), d.remote)
                    } else {
                        (d.local, self.inbound(d.remote))
                    };
                    let _ =
                        self.endpoints[1 - side].handle_datagram(self.now, from, to, &d.payload);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs timers (and deliveries) until `now + span`, calling `each` every `tick` (the last
    /// time at `now + span` when `tick` divides it), as a driver polling counters would.
    fn run_with(&mut self, span: Duration, tick: Duration, mut each: impl FnMut(&mut Lab)) {
        let end = self.now + span;
        let mut next_tick = self.now + tick;
        loop {
            self.pump();
            let timer = self
                .endpoints
                .iter()
                .filter_map(Endpoint::poll_timeout)
                .min();
            let t = [timer, Some(next_tick)]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            if t > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(t);
            if self.now >= next_tick {
                next_tick += tick;
                each(self);
            }
            for e in &mut self.endpoints {
                e.handle_timeout(self.now);
            }
        }
    }

    fn run_for(&mut self, span: Duration) {
        self.run_with(span, Duration::from_secs(3600), |_| {});
    }

    /// The live IKE SA of `side` (followed through rekeys).
    fn sa(&self, side: usize) -> Option<SaHandle> {
        let mut h = None;
        for (handle, e) in &self.events[side] {
            match e {
                Event::IkeSaUp { .. } if h.is_none() => h = Some(*handle),
                Event::IkeSaRekeyed {
                    old_spi, new_spi, ..
                } if h == Some(*old_spi) => h = Some(*new_spi),
                Event::IkeSaDown { .. } if h == Some(*handle) => return None,
                _ => {}
            }
        }
        h
    }

    /// The inbound SPI of `side`'s CHILD_SA.
    fn child(&self, side: usize) -> Option<u32> {
        self.events[side].iter().find_map(|(_, e)| match e {
            Event::ChildSaUp(c) => Some(c.spi_in),
            _ => None,
        })
    }

    /// Feeds `side` its CHILD_SA's counters.
    fn traffic(&mut self, side: usize, packets_in: u64, packets_out: u64) {
        let spi_in = self.child(side).unwrap();
        let now = self.now;
        self.endpoints[side].handle_child_traffic(
            now,
            &[
                ChildTraffic {
                    spi_in,
                    packets_in,
                    packets_out,
                },
                // Another SA's counters are not ours: ignored.
                ChildTraffic {
                    spi_in: spi_in ^ 0x5a5a,
                    packets_in: packets_in + 1,
                    packets_out: packets_out + 1,
                },
            ],
        );
    }

    fn dpd_requests(&self, by: usize, after: Instant) -> Vec<Instant> {
        self.log
            .iter()
            .filter(|s| s.by == by && s.at > after && s.is_dpd_request())
            .map(|s| s.at)
            .collect()
    }

    fn keepalives(&self, by: usize, after: Instant) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.by == by && s.at > after && s.datagram.is_nat_keepalive())
            .collect()
    }

    fn down_reason(&self, side: usize) -> Option<String> {
        self.events[side].iter().find_map(|(_, e)| match e {
            Event::IkeSaDown { reason } => Some(reason.clone()),
            _ => None,
        })
    }
}

#[test]
fn esp_traffic_postpones_dpd_and_a_dead_peer_still_fails_when_it_stops() {
    let mut lab = Lab::new(false, 1, &|_| {});
    let start = lab.now;
    for side in [I, R] {
        let sa = lab.endpoints[side].sa(lab.sa(side).unwrap()).unwrap();
        assert!(
            sa.uses_encap() && !sa.behind_nat(),
            "forced encapsulation is not a NAT"
        );
    }

    // Two minutes of ESP both ways, the counters polled every 5 s: no liveness check at
    // all, although the IKE SA is quiet and DPD is due every 30 s.
    let mut n = 0;
    lab.run_with(Duration::from_secs(120), Duration::from_secs(5), |lab| {
        n += 10;
        lab.traffic(I, n, n);
        lab.traffic(R, n, n);
    });
    assert!(
        lab.dpd_requests(I, start).is_empty(),
        "{:?}",
        lab.dpd_requests(I, start)
    );
    assert!(lab.dpd_requests(R, start).is_empty());
    assert!(lab.sa(I).is_some() && lab.sa(R).is_some());

    // Only our own packets leaving prove nothing about the peer: DPD is back within 30 s
    // of the last inbound packet.
    let outbound_only = lab.now;
    lab.run_with(Duration::from_secs(40), Duration::from_secs(5), |lab| {
        n += 10;
        lab.traffic(I, 120, n);
    });
    let dpd = lab.dpd_requests(I, outbound_only);
    assert_eq!(dpd.len(), 1, "{dpd:?}");
    assert!(dpd[0] - outbound_only <= Duration::from_secs(31), "{dpd:?}");

    // Traffic resumes, then the peer dies and the traffic stops with it: DPD starts 30 s
    // after the last ESP packet and fails the IKE SA after its retransmissions.
    lab.run_with(Duration::from_secs(30), Duration::from_secs(5), |lab| {
        n += 10;
        lab.traffic(I, n, n);
    });
    let last_traffic = lab.now;
    lab.responder_dead = true;
    lab.run_for(Duration::from_secs(400));
    let dpd = lab.dpd_requests(I, last_traffic);
    assert!(!dpd.is_empty());
    let first = dpd[0] - last_traffic;
    assert!(
        first >= Duration::from_secs(30) && first <= Duration::from_secs(31),
        "first DPD {first:?} after the last ESP packet"
    );
    assert_eq!(
        lab.down_reason(I).as_deref(),
        Some("peer did not answer DPD after 5 retransmissions")
    );
    // Forced encapsulation without a NAT in the path: nobody sent a keepalive.
    assert!(lab.keepalives(I, start).is_empty() && lab.keepalives(R, start).is_empty());
}

#[test]
fn a_host_behind_a_nat_sends_keepalives_only_when_nothing_else_went_out() {
    // DPD off, so that only keepalives and the traffic decide what is sent.
    let mut lab = Lab::new(true, 7, &|c| c.dpd_delay = None);
    let (hi, hr) = (lab.sa(I).unwrap(), lab.sa(R).unwrap());
    assert!(lab.endpoints[I].sa(hi).unwrap().behind_nat());
    assert!(
        !lab.endpoints[R].sa(hr).unwrap().behind_nat(),
        "the responder is not"
    );

    // Idle: one keepalive every 20 s, from our NAT-T port to the peer's, one 0xFF octet.
    let idle = lab.now;
    lab.run_for(Duration::from_secs(100));
    let k = lab.keepalives(I, idle);
    assert!(k.len() == 5 || k.len() == 4, "{} keepalives", k.len());
    for pair in k.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, Duration::from_secs(20));
    }
    let d = &k[0].datagram;
    assert_eq!(d.local.port(), 4500);
    assert_eq!(d.remote, addr(R_IP, 4500));
    assert_eq!(d.payload, [0xff]);
    assert!(!d.non_esp_marker);
    assert!(lab.keepalives(R, idle).is_empty());

    // ESP leaving every 5 s keeps the mapping open by itself: no keepalive.
    let busy = lab.now;
    let mut n = 0;
    lab.run_with(Duration::from_secs(60), Duration::from_secs(5), |lab| {
        n += 3;
        lab.traffic(I, 0, n);
    });
    assert!(lab.keepalives(I, busy).is_empty());

    // Quiet again: the first keepalive 20 s after the last packet out.
    let last_out = lab.now;
    lab.run_for(Duration::from_secs(30));
    let k = lab.keepalives(I, last_out);
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].at - last_out, Duration::from_secs(20));

    // An IKE message (a rekey) counts as traffic too, and the successor SA still knows it is
    // behind the NAT.
    let now = lab.now;
    let before = lab.keepalives(I, now).len();
    lab.endpoints[I].rekey_ike(now, hi).unwrap();
    lab.run_for(Duration::from_secs(19));
    assert_eq!(lab.keepalives(I, now).len(), before);
    let new = lab.sa(I).unwrap();
    assert_ne!(new, hi, "rekeyed");
    assert!(lab.endpoints[I].sa(new).unwrap().behind_nat());
    lab.run_for(Duration::from_secs(25));
    let after: Vec<Duration> = lab.keepalives(I, now).iter().map(|k| k.at - now).collect();
    assert_eq!(
        after,
        [Duration::from_secs(20), Duration::from_secs(40)],
        "keepalives go on after the rekey, from the new SA only"
    );
}

#[test]
fn keepalives_can_be_turned_off() {
    let mut lab = Lab::new(true, 9, &|c| {
        c.dpd_delay = None;
        c.nat_keepalive = None;
    });
    let start = lab.now;
    lab.run_for(Duration::from_secs(120));
    assert!(lab.keepalives(I, start).is_empty());
    assert!(
        lab.log.iter().all(|s| s.at <= start),
        "nothing at all was sent"
    );
}

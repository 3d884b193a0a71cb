//! NAT traversal scenarios (RFC 7296 §2.23, §2.23.1, §2.11) between our initiator and our
//! responder on a simulated link. The initiator may sit behind a NAT that rewrites its
//! private address and port to a public one on the way out, and back on the way in, only
//! for mappings it still holds; the mapping can change mid-life (a NAT that rebooted or
//! timed the mapping out), and so can the source address of a host with no NAT in front.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::testing::SeededRandom;
use ike::wire::{strip_non_esp_marker, HeaderPacket, Identification, TsRange};
use ike::{ChildSa, Config, Datagram, Endpoint, Event, Mode, Psk, SaHandle};

const I: usize = 0;
const R: usize = 1;
const I_PRIVATE: &str = "192.168.7.2";
const I_PUBLIC: &str = "10.0.0.1";
const I_PUBLIC_2: &str = "10.0.0.9";
const R_IP: &str = "10.0.0.2";
const FORGED: &str = "10.66.66.66";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

/// What the initiator's packets look like on the responder's side of the path: its own
/// address rewritten to `public`, its port shifted by `offset`.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    public: IpAddr,
    offset: u16,
}

/// One datagram as it arrived (or was lost).
#[derive(Debug, Clone)]
struct Sent {
    by: usize,
    /// Source and destination as the receiver saw them; `None` when dropped.
    delivered: Option<(SocketAddr, SocketAddr)>,
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

    fn is_request(&self) -> bool {
        self.ike().is_some_and(|h| !h.flags().response())
    }
}

struct Lab {
    now: Instant,
    endpoints: [Endpoint; 2],
    events: [Vec<(SaHandle, Event)>; 2],
    log: Vec<Sent>,
    /// The initiator's own address.
    i_addr: IpAddr,
    /// How its packets are rewritten on the path, if at all.
    mapping: Option<Mapping>,
}

fn config(local: &str, remote: &str, f: &dyn Fn(&mut Config)) -> Config {
    let a = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"nat secret".to_vec(),
    ));
    let mut c = Config::new(a.clone(), a);
    c.dpd_delay = None;
    c.nat_keepalive = None;
    f(&mut c);
    c
}

impl Lab {
    /// Starts IKE_SA_INIT and runs 5 s; `nat` puts the initiator behind a NAT. `fi`/`fr`
    /// adjust the initiator's and the responder's configs.
    fn start(nat: bool, seed: u64, fi: &dyn Fn(&mut Config), fr: &dyn Fn(&mut Config)) -> Lab {
        let now = Instant::now();
        let (i_addr, mapping) = if nat {
            (
                ip(I_PRIVATE),
                Some(Mapping {
                    public: ip(I_PUBLIC),
                    offset: 10000,
                }),
            )
        } else {
            (ip(I_PUBLIC), None)
        };
        let mut lab = Lab {
            now,
            endpoints: [
                Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed))),
                Endpoint::new(
                    Some(Arc::new(config("share", "client", fr))),
                    4500,
                    Box::new(SeededRandom::new(seed + 1)),
                ),
            ],
            events: [Vec::new(), Vec::new()],
            log: Vec::new(),
            i_addr,
            mapping,
        };
        lab.endpoints[I]
            .initiate(
                now,
                Arc::new(config("client", "share", fi)),
                SocketAddr::new(i_addr, 500),
                addr(R_IP, 500),
            )
            .unwrap();
        lab.run_for(Duration::from_secs(5));
        lab
    }

    /// An established pair with one CHILD_SA each.
    fn up(nat: bool, seed: u64, fi: &dyn Fn(&mut Config), fr: &dyn Fn(&mut Config)) -> Lab {
        let lab = Lab::start(nat, seed, fi, fr);
        for side in [I, R] {
            assert!(lab.child(side).is_some(), "side {side}: {:?}", lab.events);
        }
        lab
    }

    /// The initiator's datagram from `from` as the responder sees its source.
    fn outbound(&self, from: SocketAddr) -> SocketAddr {
        match self.mapping {
            Some(m) if from.ip() == self.i_addr => {
                SocketAddr::new(m.public, from.port() + m.offset)
            }
            _ => from,
        }
    }

    /// Where the responder's datagram to `to` ends up on the initiator, if anywhere: only
    /// the current mapping leads back.
    fn inbound(&self, to: SocketAddr) -> Option<SocketAddr> {
        match self.mapping {
            None if to.ip() == self.i_addr => Some(to),
            Some(m) if to.ip() == m.public && to.port() >= m.offset => {
                Some(SocketAddr::new(self.i_addr, to.port() - m.offset))
            }
            _ => None,
        }
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for side in [I, R] {
                while let Some(e) = self.endpoints[side].poll_event() {
                    self.events[side].push(e);
                }
                while let Some(d) = self.endpoints[side].poll_transmit() {
                    moved = true;
                    let delivered = if side == I {
                        Some((self.outbound(d.local), d.remote))
                    } else {
                        self.inbound(d.remote).map(|to| (d.local, to))
                    };
                    self.log.push(Sent {
                        by: side,
                        delivered,
                        datagram: d.clone(),
                    });
                    if let Some((from, to)) = delivered {
                        let _ = self.endpoints[1 - side]
                            .handle_datagram(self.now, from, to, &d.payload);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.pump();
            let Some(t) = self
                .endpoints
                .iter()
                .filter_map(Endpoint::poll_timeout)
                .min()
            else {
                self.now = end;
                return;
            };
            if t > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(t);
            for e in &mut self.endpoints {
                e.handle_timeout(self.now);
            }
        }
    }

    fn sa(&self, side: usize) -> SaHandle {
        self.events[side]
            .iter()
            .find_map(|(h, e)| matches!(e, Event::IkeSaUp { .. }).then_some(*h))
            .unwrap()
    }

    fn remote(&self, side: usize) -> SocketAddr {
        self.endpoints[side].sa(self.sa(side)).unwrap().remote()
    }

    /// The first CHILD_SA of `side`.
    fn child(&self, side: usize) -> Option<&ChildSa> {
        self.events[side].iter().find_map(|(_, e)| match e {
            Event::ChildSaUp(c) => Some(&**c),
            _ => None,
        })
    }

    /// The replacements `side` installed by rekeying.
    fn rekeyed(&self, side: usize) -> Vec<&ChildSa> {
        self.events[side]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ChildSaRekeyed { new, .. } => Some(&**new),
                _ => None,
            })
            .collect()
    }

    fn moves(&self, side: usize) -> Vec<&Event> {
        self.events[side]
            .iter()
            .filter(|(_, e)| matches!(e, Event::PeerAddressChanged { .. }))
            .map(|(_, e)| e)
            .collect()
    }

    fn failures(&self, side: usize) -> Vec<String> {
        self.events[side]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Failed { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// A liveness check from `side`, answered (or not) before this returns.
    fn dpd(&mut self, side: usize) {
        let (now, h) = (self.now, self.sa(side));
        self.endpoints[side].dpd(now, h).unwrap();
        self.run_for(Duration::from_secs(1));
    }

    fn rekey_child(&mut self, side: usize) {
        let (now, h) = (self.now, self.sa(side));
        let spi = self.endpoints[side].sa(h).unwrap().child_spis()[0].0;
        self.endpoints[side].rekey_child(now, h, spi).unwrap();
        self.run_for(Duration::from_secs(2));
    }
}

fn host(s: &str) -> TsRange {
    TsRange::host(ip(s), 0, None)
}

#[test]
fn transport_mode_through_a_nat_uses_the_addresses_each_side_sees() {
    // NFS-like selectors: the initiator proposes its private address (all it knows) and
    // the server's TCP port 2049; the responder's policy names the peer dynamically.
    // No forced encapsulation: the NAT alone decides (a responder forcing it fakes its
    // NAT_DETECTION_SOURCE_IP and would look to the client as if behind a NAT too).
    let lab = Lab::up(
        true,
        11,
        &|c| {
            c.force_encap = false;
            c.local_ts = vec![TsRange::host(ip(I_PRIVATE), 6, None)];
            c.remote_ts = vec![TsRange::host(ip(R_IP), 6, Some(2049))];
        },
        &|c| {
            c.force_encap = false;
            c.local_ts = vec![TsRange::host(ip(R_IP), 6, Some(2049))];
        },
    );
    let (hi, hr) = (lab.sa(I), lab.sa(R));
    assert!(lab.endpoints[I].sa(hi).unwrap().behind_nat());
    assert!(!lab.endpoints[I].sa(hi).unwrap().peer_behind_nat());
    assert!(lab.endpoints[R].sa(hr).unwrap().peer_behind_nat());
    assert!(!lab.endpoints[R].sa(hr).unwrap().behind_nat());

    // The responder's CHILD_SA speaks of the NAT's public address and port: that is where
    // the ESP-in-UDP packets come from and must go (§2.23.1).
    let r = lab.child(R).unwrap();
    assert_eq!(r.mode, Mode::Transport);
    assert_eq!(r.remote, addr(I_PUBLIC, 14500));
    assert_eq!(r.local, addr(R_IP, 4500));
    let encap = r.encap.unwrap();
    assert_eq!((encap.local_port, encap.remote_port), (4500, 14500));
    assert_eq!(r.remote_ts, [TsRange::host(ip(I_PUBLIC), 6, None)]);
    assert_eq!(r.local_ts, [TsRange::host(ip(R_IP), 6, Some(2049))]);

    // The initiator's speaks of its own private address, which its packets carry before
    // the NAT rewrites them.
    let i = lab.child(I).unwrap();
    assert_eq!(i.mode, Mode::Transport);
    assert_eq!(i.local, addr(I_PRIVATE, 4500));
    assert_eq!(i.remote, addr(R_IP, 4500));
    let encap = i.encap.unwrap();
    assert_eq!((encap.local_port, encap.remote_port), (4500, 4500));
    assert_eq!(i.local_ts, [TsRange::host(ip(I_PRIVATE), 6, None)]);
    assert_eq!(i.remote_ts, [TsRange::host(ip(R_IP), 6, Some(2049))]);
    assert_eq!((i.spi_in, i.spi_out), (r.spi_out, r.spi_in));
    assert!(lab.failures(I).is_empty() && lab.failures(R).is_empty());
}

#[test]
fn child_sas_rekey_through_the_nat_from_either_side() {
    let mut lab = Lab::up(true, 21, &|_| {}, &|_| {});
    assert_eq!(lab.child(R).unwrap().remote_ts, [host(I_PUBLIC)]);
    assert_eq!(lab.child(I).unwrap().local_ts, [host(I_PRIVATE)]);

    // The server proposes the client's public address, which the client maps to its own.
    lab.rekey_child(R);
    // The client proposes its private address, which the server maps to the public one.
    lab.rekey_child(I);
    assert!(
        lab.failures(I).is_empty() && lab.failures(R).is_empty(),
        "{:?} {:?}",
        lab.failures(I),
        lab.failures(R)
    );
    for side in [I, R] {
        assert_eq!(
            lab.rekeyed(side).len(),
            2,
            "side {side}: {:?}",
            lab.events[side]
        );
    }
    for new in lab.rekeyed(R) {
        assert_eq!(new.remote_ts, [host(I_PUBLIC)]);
        assert_eq!(new.local_ts, [host(R_IP)]);
        assert_eq!(new.encap.unwrap().remote_port, 14500);
    }
    for new in lab.rekeyed(I) {
        assert_eq!(new.local_ts, [host(I_PRIVATE)]);
        assert_eq!(new.remote_ts, [host(R_IP)]);
    }
}

#[test]
fn without_a_nat_a_foreign_address_in_transport_selectors_is_still_refused() {
    // The substitution is for a peer behind a NAT only: an initiator with no NAT in the
    // path (and no forced encapsulation faking one) that proposes somebody else's address
    // gets TS_UNACCEPTABLE as before.
    let lab = Lab::start(
        false,
        31,
        &|c| {
            c.force_encap = false;
            c.local_ts = vec![host(I_PRIVATE)];
        },
        &|c| c.force_encap = false,
    );
    assert!(lab.child(R).is_none() && lab.child(I).is_none());
    assert!(
        lab.failures(R)
            .iter()
            .any(|f| f.contains("traffic selectors do not match")),
        "{:?}",
        lab.failures(R)
    );
}

#[test]
fn a_changed_nat_mapping_is_followed_by_the_host_not_behind_it() {
    let mut lab = Lab::up(true, 41, &|_| {}, &|_| {});
    let r_child = lab.child(R).unwrap().spi_in;
    assert_eq!(lab.remote(R), addr(I_PUBLIC, 14500));

    // The NAT forgets the mapping and makes a new one on another port: until the client
    // speaks, the server's requests go to the old mapping and are lost.
    lab.mapping = Some(Mapping {
        public: ip(I_PUBLIC),
        offset: 20000,
    });
    lab.dpd(R);
    let lost = lab
        .log
        .iter()
        .filter(|s| s.by == R && s.delivered.is_none())
        .count();
    assert!(lost >= 1, "the server's DPD went to the dead mapping");
    assert_eq!(lab.remote(R), addr(I_PUBLIC, 14500));

    // An authenticated request from the client over the new mapping: the server follows
    // it, and tells its driver where ESP-in-UDP must go now.
    lab.dpd(I);
    assert_eq!(lab.remote(R), addr(I_PUBLIC, 24500));
    let moves = lab.moves(R);
    assert_eq!(moves.len(), 1, "{moves:?}");
    let Event::PeerAddressChanged {
        old,
        new,
        encap,
        children,
    } = moves[0]
    else {
        unreachable!()
    };
    assert_eq!((*old, *new), (addr(I_PUBLIC, 14500), addr(I_PUBLIC, 24500)));
    assert_eq!(encap.unwrap().remote_port, 24500);
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].spi_in, r_child);
    assert_eq!(children[0].remote_ts, [host(I_PUBLIC)]);
    // The client is behind the NAT: nothing moved on its side.
    assert!(lab.moves(I).is_empty());
    assert_eq!(lab.remote(I), addr(R_IP, 4500));

    // The server's own requests reach the client again: its lost DPD, retransmitted,
    // goes to the new mapping and is answered; then the server rekeys the CHILD_SA, whose
    // replacement carries the new ESP-in-UDP port into the datapath.
    let before = lab.log.len();
    lab.run_for(Duration::from_secs(10));
    let answered = lab.log[before..]
        .iter()
        .any(|s| s.by == I && !s.is_request() && s.delivered.is_some());
    assert!(answered, "{:?}", &lab.log[before..]);
    let new = lab.rekeyed(R);
    assert_eq!(new.len(), 1, "{:?}", lab.events[R]);
    assert_eq!(new[0].remote, addr(I_PUBLIC, 24500));
    assert_eq!(new[0].encap.unwrap().remote_port, 24500);
    assert_eq!(new[0].remote_ts, [host(I_PUBLIC)]);
    assert_eq!(lab.rekeyed(I).len(), 1);

    // Now a new public address as well (the NAT rebooted with another lease): the CHILD_SA's
    // selectors move with the peer, so that a rekey still agrees with what the client sends.
    lab.mapping = Some(Mapping {
        public: ip(I_PUBLIC_2),
        offset: 30000,
    });
    lab.dpd(I);
    assert_eq!(lab.remote(R), addr(I_PUBLIC_2, 34500));
    let Event::PeerAddressChanged { children, .. } = lab.moves(R)[1] else {
        unreachable!()
    };
    assert_eq!(children[0].remote_ts, [host(I_PUBLIC_2)]);
    lab.run_for(Duration::from_secs(2));
    // The automatic rekey, then one more from the moved CHILD_SA's selectors.
    lab.rekey_child(R);
    let new = lab.rekeyed(R);
    assert_eq!(new.len(), 3, "{:?} {:?}", lab.failures(R), lab.failures(I));
    for n in &new[1..] {
        assert_eq!(n.remote, addr(I_PUBLIC_2, 34500));
        assert_eq!(n.remote_ts, [host(I_PUBLIC_2)]);
        assert_eq!(n.encap.unwrap().remote_port, 34500);
    }
    assert_eq!(
        lab.endpoints[R].sa(lab.sa(R)).unwrap().child_spis().len(),
        1
    );
    assert!(lab.failures(I).is_empty() && lab.failures(R).is_empty());
}

#[test]
fn without_a_nat_a_changed_source_is_answered_but_not_followed() {
    // No NAT and no forced encapsulation: IKE stays on port 500, nobody floats.
    let mut lab = Lab::up(false, 51, &|c| c.force_encap = false, &|c| {
        c.force_encap = false
    });
    let hr = lab.sa(R);
    assert!(!lab.endpoints[R].sa(hr).unwrap().uses_encap());
    assert!(!lab.endpoints[R].sa(hr).unwrap().peer_behind_nat());
    assert_eq!(lab.remote(R), addr(I_PUBLIC, 500));

    // The client's packets suddenly come from elsewhere (a NAT appeared mid-life, or
    // somebody replays them from another host): the server answers where each request came
    // from (§2.11) but stays with the address it authenticated at setup (§2.23).
    lab.mapping = Some(Mapping {
        public: ip(I_PUBLIC_2),
        offset: 0,
    });
    lab.i_addr = ip(I_PUBLIC);
    let before = lab.log.len();
    lab.dpd(I);
    let answer = lab.log[before..]
        .iter()
        .find(|s| s.by == R && !s.is_request())
        .expect("the server answered");
    assert_eq!(answer.datagram.remote, addr(I_PUBLIC_2, 500));
    assert!(
        answer.delivered.is_some(),
        "and the answer reached the client"
    );
    assert_eq!(lab.remote(R), addr(I_PUBLIC, 500));
    assert!(lab.moves(R).is_empty() && lab.moves(I).is_empty());

    // The server's own requests still go to the old address.
    let before = lab.log.len();
    lab.dpd(R);
    let request = lab.log[before..]
        .iter()
        .find(|s| s.by == R && s.is_request())
        .unwrap();
    assert_eq!(request.datagram.remote, addr(I_PUBLIC, 500));
}

#[test]
fn the_host_behind_the_nat_does_not_follow_the_server() {
    let mut lab = Lab::up(true, 61, &|_| {}, &|_| {});
    // The server's requests arrive from another address (say, a second interface): the
    // client, behind its NAT, answers there but keeps sending its own requests to R_IP.
    let before = lab.log.len();
    let (now, hr) = (lab.now, lab.sa(R));
    lab.endpoints[R].dpd(now, hr).unwrap();
    let d = lab.endpoints[R].poll_transmit().unwrap();
    let to = lab.inbound(d.remote).unwrap();
    lab.endpoints[I]
        .handle_datagram(now, addr(FORGED, 4500), to, &d.payload)
        .unwrap();
    let answer = lab.endpoints[I].poll_transmit().unwrap();
    assert_eq!(answer.remote, addr(FORGED, 4500));
    assert_eq!(lab.remote(I), addr(R_IP, 4500));
    assert_eq!(lab.log.len(), before);
    lab.run_for(Duration::from_secs(1));
    assert!(lab.moves(I).is_empty());
}

#[test]
fn a_replayed_request_from_a_forged_source_moves_nothing() {
    // The server would follow the client (it is behind a NAT): a replay must not make it.
    let mut lab = Lab::up(true, 71, &|_| {}, &|_| {});
    lab.dpd(I);
    lab.dpd(I);
    let requests: Vec<Sent> = lab
        .log
        .iter()
        .filter(|s| s.by == I && s.is_request())
        .cloned()
        .collect();
    let last = requests.last().unwrap().clone();
    let older = requests[requests.len() - 2].clone();
    let (_, to) = last.delivered.unwrap();
    let forged = addr(FORGED, 4500);
    let remote = lab.remote(R);
    let now = lab.now;

    // The last request again, from the forged source: the cached answer goes back there
    // (§2.11), which is all a replay can buy; the SA stays where it was.
    lab.endpoints[R]
        .handle_datagram(now, forged, to, &last.datagram.payload)
        .unwrap();
    let mut out = Vec::new();
    while let Some(d) = lab.endpoints[R].poll_transmit() {
        out.push(d);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].remote, forged);
    // An older request: outside the window, dropped without an answer.
    let _ = lab.endpoints[R].handle_datagram(now, forged, to, &older.datagram.payload);
    assert!(lab.endpoints[R].poll_transmit().is_none());
    // A tampered copy fails its integrity check.
    let mut bad = last.datagram.payload.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let _ = lab.endpoints[R].handle_datagram(now, forged, to, &bad);
    assert!(lab.endpoints[R].poll_transmit().is_none());

    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.remote(R), remote);
    assert!(lab.moves(R).is_empty());
    // And the server's next request goes to the real client, which answers.
    let before = lab.log.len();
    lab.dpd(R);
    assert!(lab.log[before..]
        .iter()
        .any(|s| s.by == I && !s.is_request() && s.delivered.is_some()));
}

#[test]
fn a_mapping_change_seen_in_an_ike_rekey_moves_the_child_sas_with_the_successor() {
    let mut lab = Lab::up(true, 81, &|_| {}, &|_| {});
    lab.mapping = Some(Mapping {
        public: ip(I_PUBLIC),
        offset: 20000,
    });
    // The first authenticated message over the new mapping rekeys the IKE SA itself: the
    // server follows, and the CHILD_SA rekey it owes goes to the successor with the SA.
    let (now, hi) = (lab.now, lab.sa(I));
    lab.endpoints[I].rekey_ike(now, hi).unwrap();
    lab.run_for(Duration::from_secs(5));
    assert_eq!(lab.moves(R).len(), 1, "{:?}", lab.events[R]);
    let rekeyed_ike = lab.events[R]
        .iter()
        .find_map(|(_, e)| match e {
            Event::IkeSaRekeyed { new_spi, .. } => Some(*new_spi),
            _ => None,
        })
        .expect("IKE SA rekeyed");
    let successor = lab.endpoints[R].sa(rekeyed_ike).unwrap();
    assert_eq!(successor.remote(), addr(I_PUBLIC, 24500));
    let new = lab.rekeyed(R);
    assert_eq!(new.len(), 1, "{:?}", lab.events[R]);
    assert_eq!(new[0].encap.unwrap().remote_port, 24500);
    assert_eq!(successor.child_spis(), [(new[0].spi_in, new[0].spi_out)]);
    assert!(lab.failures(I).is_empty() && lab.failures(R).is_empty());
}

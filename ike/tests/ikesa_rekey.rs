//! Scenarios of an established IKE SA's life: IKE SA rekeying (RFC 7296 §1.3.2, §2.18),
//! simultaneous rekeys (§2.8.1, §2.8.2), rekey-vs-delete and TEMPORARY_FAILURE retries
//! (§2.25), lifetimes with jitter and hard expiry, and dead-peer detection; all on the
//! deterministic two-peer harness.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::{strip_non_esp_marker, Header, HeaderPacket, Identification};
use ike::{Config, Endpoint, Event, Psk, SaHandle, SaLifetime};

const I_IP: &str = "10.0.0.1";
const R_IP: &str = "10.0.0.2";
const I: usize = 0;
const R: usize = 1;

fn config(local: &str, remote: &str) -> Config {
    let a = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"rekey secret".to_vec(),
    ));
    Config::new(a.clone(), a)
}

/// A pair with both peers' configs adjusted by `f` (applied to each), established.
fn established_pair(seed: u64, link: LinkConfig, f: impl Fn(&mut Config)) -> Network {
    let mut ic = config("client", "share");
    let mut rc = config("share", "client");
    f(&mut ic);
    f(&mut rc);
    let now = Instant::now();
    let mut net = Network::new(now, link, seed);
    net.add(
        I_IP.parse().unwrap(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed ^ 1))),
    );
    net.add(
        R_IP.parse().unwrap(),
        Endpoint::new(
            Some(Arc::new(rc)),
            4500,
            Box::new(SeededRandom::new(seed ^ 2)),
        ),
    );
    let local = SocketAddr::new(I_IP.parse::<IpAddr>().unwrap(), 500);
    let remote = SocketAddr::new(R_IP.parse::<IpAddr>().unwrap(), 500);
    net.endpoints[I]
        .1
        .initiate(now, Arc::new(ic), local, remote)
        .unwrap();
    let limit = net.now + Duration::from_secs(600);
    assert!(
        net.run_until(limit, |n| (0..2)
            .all(|s| current(n, s).is_some()
                && count(n, s, |e| matches!(e, Event::ChildSaUp(_))) >= 1)),
        "seed {seed}: not established: {:?}",
        net.errors
    );
    net
}

fn perfect(seed: u64) -> Network {
    established_pair(seed, LinkConfig::perfect(), |_| {})
}

/// The handle under which `side`'s IKE SA lives now: the one that came up, followed through
/// every `IkeSaRekeyed`; `None` before it is up or after it went down.
fn current(net: &Network, side: usize) -> Option<SaHandle> {
    let mut h = None;
    for (handle, e) in &net.events[side] {
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

/// The events in one line each, for failure messages.
fn summary(net: &Network) -> String {
    let mut out = String::new();
    for (side, evs) in net.events.iter().enumerate() {
        for (h, e) in evs {
            let what = match e {
                Event::IkeSaUp { .. } => "IkeSaUp".to_string(),
                Event::IkeSaRekeyed {
                    old_spi, new_spi, ..
                } => {
                    format!("IkeSaRekeyed {old_spi:x} -> {new_spi:x}")
                }
                Event::ChildSaUp(c) => format!("ChildSaUp {:x}/{:x}", c.spi_in, c.spi_out),
                Event::ChildSaRekeyed { old_spi_in, new } => format!(
                    "ChildSaRekeyed {old_spi_in:x} -> {:x}/{:x}",
                    new.spi_in, new.spi_out
                ),
                Event::ChildSaDown { spi_in, reason, .. } => {
                    format!("ChildSaDown {spi_in:x} ({reason})")
                }
                Event::IkeSaDown { reason } => format!("IkeSaDown ({reason})"),
                Event::Failed { reason } => format!("Failed ({reason})"),
                other => format!("{other:?}"),
            };
            out += &format!("{side} {h:x}: {what}\n");
        }
    }
    for (side, (_, e)) in net.endpoints.iter().enumerate() {
        out += &format!("{side} holds {} SAs\n", e.len());
    }
    out
}

fn count(net: &Network, side: usize, f: impl Fn(&Event) -> bool) -> usize {
    net.events[side].iter().filter(|(_, e)| f(e)).count()
}

fn failures(net: &Network, side: usize) -> Vec<String> {
    net.events[side]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Failed { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The CHILD_SAs of `side`'s current IKE SA.
fn children(net: &Network, side: usize) -> Vec<(u32, u32)> {
    let ep = &net.endpoints[side].1;
    current(net, side)
        .and_then(|h| ep.sa(h))
        .map(|sa| sa.child_spis())
        .unwrap_or_default()
}

/// Both sides agree on one IKE SA and on their CHILD_SAs (same pairs, seen from both ends).
fn consistent(net: &Network) -> bool {
    let (Some(i), Some(r)) = (current(net, I), current(net, R)) else {
        return false;
    };
    let (Some(isa), Some(rsa)) = (net.endpoints[I].1.sa(i), net.endpoints[R].1.sa(r)) else {
        return false;
    };
    let mut ic = isa.child_spis();
    let mut rc: Vec<(u32, u32)> = rsa.child_spis().into_iter().map(|(a, b)| (b, a)).collect();
    ic.sort();
    rc.sort();
    isa.spis() == rsa.spis() && ic == rc && isa.is_established() && rsa.is_established()
}

/// Runs until both endpoints hold exactly one IKE SA with `n_children` consistent CHILD_SAs
/// and `done` holds (or `secs` of simulated time pass).
fn settle_when(
    net: &mut Network,
    secs: u64,
    n_children: usize,
    done: impl Fn(&Network) -> bool,
) -> bool {
    let limit = net.now + Duration::from_secs(secs);
    net.run_until(limit, |n| {
        done(n)
            && consistent(n)
            && n.endpoints.iter().all(|(_, e)| e.len() == 1)
            && children(n, I).len() == n_children
    })
}

fn settle(net: &mut Network, secs: u64, n_children: usize) -> bool {
    settle_when(net, secs, n_children, |_| true)
}

/// Until both sides have seen `n` IKE SA rekeys.
fn ike_rekeys(n: usize) -> impl Fn(&Network) -> bool {
    move |net| (0..2).all(|s| count(net, s, |e| matches!(e, Event::IkeSaRekeyed { .. })) == n)
}

fn first_child_in(net: &Network, side: usize) -> u32 {
    children(net, side)[0].0
}

#[test]
fn ike_rekey_moves_children_to_a_new_sa_with_fresh_message_ids() {
    for seed in 1..4 {
        let mut net = perfect(seed);
        let old = current(&net, I).unwrap();
        let old_r = current(&net, R).unwrap();
        let before_i = children(&net, I);
        let now = net.now;
        net.endpoints[I].1.rekey_ike(now, old).unwrap();
        assert!(
            settle_when(&mut net, 30, 1, ike_rekeys(1)),
            "seed {seed}: {:?}",
            net.events
        );
        let new = current(&net, I).unwrap();
        let new_r = current(&net, R).unwrap();
        assert_ne!(new, old);
        assert_ne!(new_r, old_r);
        // The old SAs are gone from both endpoints' SPI demux; the CHILD_SAs are unchanged.
        assert!(net.endpoints[I].1.sa(old).is_none());
        assert!(net.endpoints[R].1.sa(old_r).is_none());
        assert_eq!(children(&net, I), before_i);
        let new_sa = net.endpoints[I].1.sa(new).unwrap();
        assert_eq!(new_sa.role(), ike::crypto::Role::Initiator);
        assert_eq!(
            new_sa.peer().map(|p| p.id.to_string()),
            Some("ID_FQDN:share".into())
        );
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaRekeyed { .. })),
                1
            );
            // Nothing went down: the old SA leaves quietly.
            assert_eq!(
                count(&net, side, |e| matches!(
                    e,
                    Event::IkeSaDown { .. } | Event::ChildSaDown { .. } | Event::Failed { .. }
                )),
                0,
                "{:?}",
                net.events[side]
            );
        }
        // Message IDs start again at 0 on the new SA (§2.18), under the new SPIs.
        let now = net.now;
        net.endpoints[I].1.dpd(now, new).unwrap();
        let d = net.endpoints[I].1.poll_transmit().unwrap();
        let ike = strip_non_esp_marker(&d.payload).unwrap();
        let h = Header::parse(&HeaderPacket::new_checked(ike).unwrap()).unwrap();
        assert_eq!(h.message_id, 0);
        assert_eq!((h.initiator_spi, h.responder_spi), new_sa_spis(&net, new));
        net.endpoints[R]
            .1
            .handle_datagram(now, d.local, d.remote, &d.payload)
            .unwrap();
        // The new SA carries on: child rekey and delete work on it.
        let spi_in = first_child_in(&net, I);
        net.endpoints[I].1.rekey_child(now, new, spi_in).unwrap();
        assert!(settle_when(&mut net, 30, 1, |n| count(n, R, |e| matches!(
            e,
            Event::ChildSaDown { .. }
        )) == 1));
        assert_ne!(first_child_in(&net, I), spi_in);
        let now = net.now;
        net.endpoints[I].1.delete(now, new).unwrap();
        let limit = net.now + Duration::from_secs(30);
        assert!(net.run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.is_empty())));
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                1
            );
        }
    }
}

fn new_sa_spis(net: &Network, h: SaHandle) -> (u64, u64) {
    net.endpoints[I].1.sa(h).unwrap().spis()
}

#[test]
fn original_responder_rekeys_the_ike_sa_and_becomes_its_initiator() {
    let mut net = perfect(7);
    let r = current(&net, R).unwrap();
    let now = net.now;
    net.endpoints[R].1.rekey_ike(now, r).unwrap();
    assert!(settle_when(&mut net, 30, 1, ike_rekeys(1)));
    let new_r = current(&net, R).unwrap();
    let sa = net.endpoints[R].1.sa(new_r).unwrap();
    // The rekey's initiator is the new SA's initiator (§2.18): its SPI comes first.
    assert_eq!(sa.role(), ike::crypto::Role::Initiator);
    assert_eq!(sa.spis().0, new_r);
    assert_eq!(
        net.endpoints[I]
            .1
            .sa(current(&net, I).unwrap())
            .unwrap()
            .role(),
        ike::crypto::Role::Responder
    );
    assert!(failures(&net, I).is_empty() && failures(&net, R).is_empty());
}

#[test]
fn simultaneous_ike_rekeys_leave_one_sa_that_inherits_the_children() {
    // §2.8.2: both rekey at once; the SA of the exchange with the lowest nonce is deleted by
    // its initiator, the other inherits the CHILD_SAs, the old SA is deleted. Over several
    // seeds both peers' rekeys must win at least once.
    let mut winners = [0, 0];
    for seed in 1..13 {
        let mut net = perfect(seed);
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let before = children(&net, I);
        let now = net.now;
        net.endpoints[I].1.rekey_ike(now, i).unwrap();
        net.endpoints[R].1.rekey_ike(now, r).unwrap();
        assert!(
            settle_when(&mut net, 60, 1, ike_rekeys(1)),
            "seed {seed}: {:#?} {:?}",
            net.events,
            net.errors
        );
        assert_eq!(children(&net, I), before, "seed {seed}");
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaRekeyed { .. })),
                1,
                "seed {seed}"
            );
            assert!(failures(&net, side).is_empty(), "seed {seed}");
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                0
            );
        }
        let sa = net.endpoints[I].1.sa(current(&net, I).unwrap()).unwrap();
        match sa.role() {
            ike::crypto::Role::Initiator => winners[0] += 1,
            ike::crypto::Role::Responder => winners[1] += 1,
        }
        // The survivor works.
        let now = net.now;
        let h = current(&net, R).unwrap();
        net.endpoints[R].1.dpd(now, h).unwrap();
        assert!(settle(&mut net, 10, 1));
    }
    assert!(winners[0] > 0 && winners[1] > 0, "{winners:?}");
}

#[test]
fn simultaneous_child_rekeys_delete_the_redundant_sa() {
    // §2.8.1: both rekey the same CHILD_SA at once; two new SAs are made, the one of the
    // exchange with the lowest nonce is deleted by its initiator, the old one by the other.
    let mut survivors_by_initiator = [0, 0];
    for seed in 1..13 {
        let mut net = perfect(seed);
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let (old_i, old_r) = children(&net, I)[0];
        let now = net.now;
        net.endpoints[I].1.rekey_child(now, i, old_i).unwrap();
        net.endpoints[R].1.rekey_child(now, r, old_r).unwrap();
        let limit = net.now + Duration::from_secs(60);
        assert!(
            net.run_until(limit, |n| consistent(n)
                && children(n, I).len() == 1
                && (0..2)
                    .all(
                        |s| count(n, s, |e| matches!(e, Event::ChildSaDown { .. })) == 2
                    )),
            "seed {seed}: {:#?}",
            net.events
        );
        let (new_i, _) = children(&net, I)[0];
        assert_ne!(new_i, old_i);
        for side in [I, R] {
            // Installed: the first SA, the replacement and the redundant one; down: the old
            // and the redundant one.
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::ChildSaRekeyed { .. })),
                1
            );
            assert_eq!(count(&net, side, |e| matches!(e, Event::ChildSaUp(_))), 2);
            assert!(failures(&net, side).is_empty(), "seed {seed}");
        }
        // Who created the survivor: I announces the SA of its own exchange with ChildSaUp
        // (R's, answered first, was the ChildSaRekeyed).
        let i_created = net.events[I].iter().any(|(_, e)| match e {
            Event::ChildSaUp(c) => c.spi_in == new_i,
            _ => false,
        });
        survivors_by_initiator[usize::from(i_created)] += 1;
    }
    assert!(
        survivors_by_initiator[0] > 0 && survivors_by_initiator[1] > 0,
        "{survivors_by_initiator:?}"
    );
}

#[test]
fn rekey_of_a_child_the_peer_is_deleting_is_refused_then_dropped() {
    // §2.25.1: I rekeys a CHILD_SA while R deletes it. R answers TEMPORARY_FAILURE (it is
    // closing it), I answers R's DELETE as usual; in the end the SA is gone on both sides
    // and the retry finds nothing to rekey.
    for seed in 1..6 {
        let mut net = perfect(seed);
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let (ci, cr) = children(&net, I)[0];
        let now = net.now;
        net.endpoints[R].1.delete_child(now, r, cr).unwrap();
        net.endpoints[I].1.rekey_child(now, i, ci).unwrap();
        // Past the retry delay (at most 15 s).
        let limit = net.now + Duration::from_secs(25);
        net.run_until(limit, |_| false);
        assert!(consistent(&net), "seed {seed}");
        assert!(
            children(&net, I).is_empty(),
            "seed {seed}: {:#?}",
            net.events
        );
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::ChildSaDown { .. })),
                1
            );
            assert_eq!(
                count(&net, side, |e| matches!(
                    e,
                    Event::ChildSaRekeyed { .. } | Event::IkeSaDown { .. }
                )),
                0
            );
            assert!(
                failures(&net, side).is_empty(),
                "{:?}",
                failures(&net, side)
            );
        }
    }
}

#[test]
fn ike_rekey_and_child_rekey_at_once_are_refused_and_retried_after_a_random_delay() {
    // §2.25: a CHILD_SA rekey during an IKE SA rekey and an IKE SA rekey during a CHILD_SA
    // rekey are both answered with TEMPORARY_FAILURE; each side retries 5..15 s later and
    // both rekeys complete on the new SA.
    for seed in 1..6 {
        let mut net = perfect(seed);
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let (_, cr) = children(&net, I)[0];
        let start = net.now;
        net.endpoints[I].1.rekey_ike(start, i).unwrap();
        net.endpoints[R].1.rekey_child(start, r, cr).unwrap();
        let limit = net.now + Duration::from_secs(120);
        assert!(
            net.run_until(limit, |n| (0..2).all(|s| count(n, s, |e| matches!(
                e,
                Event::IkeSaRekeyed { .. }
            )) == 1
                && count(n, s, |e| matches!(e, Event::ChildSaDown { .. })) == 1)
                && consistent(n)
                && n.endpoints.iter().all(|(_, e)| e.len() == 1)),
            "seed {seed}: {:#?}",
            net.events
        );
        // Both were refused first: nothing completed before the shortest retry delay.
        assert!(net.now >= start + Duration::from_secs(5), "seed {seed}");
        assert_eq!(children(&net, I).len(), 1);
        assert_ne!(children(&net, R)[0].0, cr);
        for side in [I, R] {
            assert!(
                failures(&net, side).is_empty(),
                "{:?}",
                failures(&net, side)
            );
        }
    }
}

fn short_lifetimes(c: &mut Config) {
    c.ike_rekey = SaLifetime::strongswan(Duration::from_secs(300));
    c.child_rekey = SaLifetime::strongswan(Duration::from_secs(100));
}

#[test]
fn lifetimes_rekey_children_and_the_ike_sa_by_themselves() {
    // Both peers run the same schedule with jitter: whichever timer fires first rekeys, and
    // when both fire together the collision path settles it.
    for seed in 1..4 {
        let mut net = established_pair(seed, LinkConfig::perfect(), short_lifetimes);
        let up = net.now;
        let limit = net.now + Duration::from_secs(1000);
        net.run_until(limit, |_| false);
        assert!(consistent(&net), "seed {seed}");
        assert_eq!(children(&net, I).len(), 1);
        for side in [I, R] {
            let ike = count(&net, side, |e| matches!(e, Event::IkeSaRekeyed { .. }));
            let child = count(&net, side, |e| matches!(e, Event::ChildSaRekeyed { .. }));
            // IKE every 270..300 s, children every 90..100 s (by one side or the other).
            assert!((3..=4).contains(&ike), "seed {seed}: {ike} IKE rekeys");
            assert!(
                (10..=12).contains(&child),
                "seed {seed}: {child} child rekeys"
            );
            assert!(
                failures(&net, side).is_empty(),
                "{:?}",
                failures(&net, side)
            );
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                0
            );
        }
        let _ = up;
    }
}

#[test]
fn first_child_rekey_happens_between_rekey_time_minus_jitter_and_rekey_time() {
    let mut net = established_pair(5, LinkConfig::perfect(), |c| {
        c.child_rekey = SaLifetime {
            rekey_time: Duration::from_secs(100),
            jitter: Duration::from_secs(20),
            over_time: Duration::from_secs(10),
        };
    });
    let up = net.now;
    let limit = net.now + Duration::from_secs(200);
    assert!(net.run_until(limit, |n| count(n, I, |e| matches!(
        e,
        Event::ChildSaRekeyed { .. }
    )) == 1));
    let t = net.now - up;
    assert!(
        t >= Duration::from_secs(80) && t <= Duration::from_secs(101),
        "{t:?}"
    );
}

#[test]
fn child_is_deleted_at_its_hard_lifetime_when_rekeys_keep_failing() {
    // The responder demands PFS on rekeys, which the initiator does not offer: every rekey
    // fails, and at rekey_time + over_time the CHILD_SA is deleted.
    let mut ic = config("client", "share");
    let mut rc = config("share", "client");
    ic.child_rekey = SaLifetime {
        rekey_time: Duration::from_secs(100),
        jitter: Duration::ZERO,
        over_time: Duration::from_secs(10),
    };
    rc.child_rekey = SaLifetime::strongswan(Duration::from_secs(100_000));
    for p in &mut rc.esp_proposals {
        p.dh = vec![ike::crypto::DhGroup::Curve25519];
    }
    let now = Instant::now();
    let mut net = Network::new(now, LinkConfig::perfect(), 3);
    net.add(
        I_IP.parse().unwrap(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(4))),
    );
    net.add(
        R_IP.parse().unwrap(),
        Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(5))),
    );
    let local = SocketAddr::new(I_IP.parse::<IpAddr>().unwrap(), 500);
    let remote = SocketAddr::new(R_IP.parse::<IpAddr>().unwrap(), 500);
    net.endpoints[I]
        .1
        .initiate(now, Arc::new(ic), local, remote)
        .unwrap();
    let limit = now + Duration::from_secs(5);
    assert!(net.run_until(limit, |n| children(n, I).len() == 1));
    let up = net.now;
    let limit = net.now + Duration::from_secs(200);
    assert!(net.run_until(limit, |n| count(n, I, |e| matches!(
        e,
        Event::ChildSaDown { .. }
    )) == 1));
    let t = net.now - up;
    assert!(
        t >= Duration::from_secs(110) && t < Duration::from_secs(111),
        "{t:?}"
    );
    assert!(failures(&net, I)
        .iter()
        .any(|f| f.contains("no proposal chosen")));
    assert!(children(&net, R).is_empty());
    assert!(current(&net, I).is_some(), "the IKE SA stays");
}

#[test]
fn ike_sa_is_ended_at_its_hard_lifetime_when_the_rekey_never_completes() {
    let mut net = established_pair(9, LinkConfig::perfect(), |c| {
        c.ike_rekey = SaLifetime {
            rekey_time: Duration::from_secs(100),
            jitter: Duration::ZERO,
            over_time: Duration::from_secs(10),
        };
        c.dpd_delay = None;
    });
    let up = net.now;
    // The link dies just before the rekey.
    let limit = up + Duration::from_secs(99);
    net.run_until(limit, |_| false);
    net.set_link(LinkConfig {
        loss: 1.0,
        ..LinkConfig::perfect()
    });
    let limit = up + Duration::from_secs(300);
    assert!(net.run_until(limit, |n| current(n, I).is_none()));
    let t = net.now - up;
    assert!(
        t >= Duration::from_secs(110) && t < Duration::from_secs(111),
        "{t:?}"
    );
    assert!(net.events[I].iter().any(|(_, e)| matches!(
        e,
        Event::IkeSaDown { reason } if reason.contains("lifetime expired")
    )));
}

#[test]
fn dpd_runs_when_idle_and_fails_a_silent_peer() {
    let mut net = perfect(11);
    // Idle on a good link: DPD every 30 s keeps the SA up.
    let before = net.delivered;
    let limit = net.now + Duration::from_secs(95);
    net.run_until(limit, |_| false);
    assert!(
        net.delivered >= before + 6,
        "{} DPD datagrams",
        net.delivered - before
    );
    assert!(consistent(&net));
    // The peer goes silent.
    net.set_link(LinkConfig {
        loss: 1.0,
        ..LinkConfig::perfect()
    });
    let gone = net.now;
    let limit = net.now + Duration::from_secs(400);
    assert!(net.run_until(limit, |n| current(n, I).is_none()
        && current(n, R).is_none()));
    // 30 s idle plus the retransmission schedule (at most ~165 s).
    assert!(
        net.now - gone <= Duration::from_secs(200),
        "{:?}",
        net.now - gone
    );
    for side in [I, R] {
        let down = net.events[side].iter().find_map(|(_, e)| match e {
            Event::IkeSaDown { reason } => Some(reason.clone()),
            _ => None,
        });
        assert_eq!(
            down.as_deref(),
            Some("peer did not answer DPD after 5 retransmissions")
        );
        assert_eq!(
            count(&net, side, |e| matches!(e, Event::ChildSaDown { .. })),
            1
        );
    }
}

#[test]
fn storm_of_colliding_rekeys_over_a_lossy_link() {
    // Small storm (debug build): each pair establishes, then both peers rekey the CHILD_SA
    // and the IKE SA at the same moment, over loss, duplication and reordering; every pair
    // must end with one IKE SA and one CHILD_SA agreed by both, then delete cleanly.
    for seed in 1..16 {
        let mut net = established_pair(seed, LinkConfig::lossy(0.3), |c| {
            c.retransmit.tries = 15;
            c.retransmit.limit = Duration::from_secs(30);
            c.half_open_timeout = Duration::from_secs(600);
        });
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let (ci, cr) = children(&net, I)[0];
        let now = net.now;
        net.endpoints[I].1.rekey_child(now, i, ci).unwrap();
        net.endpoints[R].1.rekey_child(now, r, cr).unwrap();
        net.endpoints[I].1.rekey_ike(now, i).unwrap();
        net.endpoints[R].1.rekey_ike(now, r).unwrap();
        let limit = net.now + Duration::from_secs(1200);
        assert!(
            net.run_until(limit, |n| consistent(n)
                && children(n, I).len() == 1
                && children(n, I)[0].0 != ci
                && (0..2)
                    .all(
                        |s| count(n, s, |e| matches!(e, Event::IkeSaRekeyed { .. })) >= 1
                    )
                && n.endpoints.iter().all(|(_, e)| e.len() == 1)),
            "seed {seed}:\n{}",
            summary(&net)
        );
        for side in [I, R] {
            assert!(
                failures(&net, side).is_empty(),
                "seed {seed}: {:?}",
                failures(&net, side)
            );
        }
        let h = current(&net, I).unwrap();
        let now = net.now;
        net.endpoints[I].1.delete(now, h).unwrap();
        let limit = net.now + Duration::from_secs(1200);
        assert!(
            net.run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.is_empty())),
            "seed {seed}"
        );
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                1
            );
        }
    }
}

#[test]
fn reauthentication_follows_an_ike_rekey_of_the_sa_it_replaces() {
    // R rekeys the IKE SA while I reauthenticates it: the reauthentication must delete the
    // old SA's successor (which now holds the old CHILD_SAs), not a handle that is gone.
    let mut net = perfect(21);
    let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
    let old_child = children(&net, I)[0].0;
    let now = net.now;
    net.endpoints[R].1.rekey_ike(now, r).unwrap();
    let new = net.endpoints[I].1.reauthenticate(now, i).unwrap();
    let limit = net.now + Duration::from_secs(60);
    assert!(
        net.run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.len() == 1)
            && count(n, I, |e| matches!(e, Event::Reauthenticated { .. })) == 1
            && count(n, I, |e| matches!(e, Event::ChildSaDown { .. })) == 1),
        "{}",
        summary(&net)
    );
    let sa = net.endpoints[I].1.sa(new).expect("the reauthenticated SA");
    assert_eq!(sa.child_spis().len(), 1);
    assert_ne!(sa.child_spis()[0].0, old_child);
    assert!(count(&net, I, |e| matches!(e, Event::IkeSaRekeyed { .. })) == 1);
    assert!(failures(&net, I).is_empty(), "{}", summary(&net));
}

#[test]
fn lifetimes_keep_the_sas_going_over_a_lossy_link() {
    // Automatic rekeys of both kinds from both sides (so collisions), DPD and retransmission,
    // for 4 IKE and 13 child lifetimes over loss, duplication and reordering.
    for seed in 1..7 {
        let mut net = established_pair(seed, LinkConfig::lossy(0.2), |c| {
            // Long enough that the over_time (10 %) covers a few lost round trips.
            c.ike_rekey = SaLifetime::strongswan(Duration::from_secs(1000));
            c.child_rekey = SaLifetime::strongswan(Duration::from_secs(300));
            c.retransmit.tries = 15;
            c.retransmit.limit = Duration::from_secs(30);
        });
        let limit = net.now + Duration::from_secs(4000);
        net.run_until(limit, |_| false);
        let limit = net.now + Duration::from_secs(300);
        assert!(
            net.run_until(limit, |n| consistent(n)
                && children(n, I).len() == 1
                && n.endpoints.iter().all(|(_, e)| e.len() == 1)),
            "seed {seed}:\n{}",
            summary(&net)
        );
        for side in [I, R] {
            assert!(count(&net, side, |e| matches!(e, Event::IkeSaRekeyed { .. })) >= 3);
            assert!(count(&net, side, |e| matches!(e, Event::ChildSaRekeyed { .. })) >= 10);
            assert!(
                failures(&net, side).is_empty(),
                "seed {seed}: {:?}",
                failures(&net, side)
            );
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                0
            );
        }
    }
}

/// Hands every datagram `from` has queued to `to` at the current time (no link), returning
/// how many; used where a test must order deliveries by hand.
fn deliver(net: &mut Network, from: usize, to: usize) -> usize {
    let now = net.now;
    let mut n = 0;
    while let Some(d) = net.endpoints[from].1.poll_transmit() {
        let _ = net.endpoints[to]
            .1
            .handle_datagram(now, d.local, d.remote, &d.payload);
        n += 1;
    }
    n
}

#[test]
fn rekey_of_a_child_the_peer_already_deleted_gets_child_sa_not_found() {
    // §2.25.1: I's rekey request is delayed until R has deleted the CHILD_SA (I answered that
    // DELETE meanwhile). R answers CHILD_SA_NOT_FOUND; I, which has no such SA any more
    // either, takes it quietly and its window is free again.
    let mut net = perfect(31);
    let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
    let (ci, cr) = children(&net, I)[0];
    let now = net.now;
    net.endpoints[I].1.rekey_child(now, i, ci).unwrap();
    let held: Vec<_> = std::iter::from_fn(|| net.endpoints[I].1.poll_transmit()).collect();
    assert_eq!(held.len(), 1);
    net.endpoints[R].1.delete_child(now, r, cr).unwrap();
    assert_eq!(deliver(&mut net, R, I), 1); // R's DELETE
    assert_eq!(deliver(&mut net, I, R), 1); // I's answer: the pair is gone on both sides
    for d in held {
        net.endpoints[R]
            .1
            .handle_datagram(now, d.local, d.remote, &d.payload)
            .unwrap();
    }
    assert_eq!(deliver(&mut net, R, I), 1); // CHILD_SA_NOT_FOUND
    net.collect();
    assert!(children(&net, I).is_empty() && children(&net, R).is_empty());
    for side in [I, R] {
        assert_eq!(
            count(&net, side, |e| matches!(e, Event::ChildSaDown { .. })),
            1
        );
        assert_eq!(
            count(&net, side, |e| matches!(e, Event::ChildSaRekeyed { .. })),
            0
        );
        assert!(failures(&net, side).is_empty(), "{}", summary(&net));
    }
    // I's request window is free: a liveness check goes through at once.
    net.endpoints[I].1.dpd(now, i).unwrap();
    let before = net.delivered;
    let limit = net.now + Duration::from_secs(1);
    assert!(net.run_until(limit, |n| n.delivered >= before + 2));
    assert!(consistent(&net));
    assert!(failures(&net, I).is_empty());
}

#[test]
fn ike_rekey_colliding_with_ike_delete_ends_both_sides_cleanly() {
    // §2.25.2: R deletes the IKE SA while I rekeys it. R, closing, refuses the rekey with
    // TEMPORARY_FAILURE; I answers the DELETE and forgets its rekey. Nothing is left behind,
    // not even a successor.
    for seed in 1..6 {
        let mut net = perfect(seed);
        let (i, r) = (current(&net, I).unwrap(), current(&net, R).unwrap());
        let now = net.now;
        net.endpoints[I].1.rekey_ike(now, i).unwrap();
        net.endpoints[R].1.delete(now, r).unwrap();
        let limit = net.now + Duration::from_secs(60);
        assert!(
            net.run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.is_empty())),
            "seed {seed}:\n{}",
            summary(&net)
        );
        for side in [I, R] {
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaDown { .. })),
                1
            );
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::ChildSaDown { .. })),
                1
            );
            assert_eq!(
                count(&net, side, |e| matches!(e, Event::IkeSaRekeyed { .. })),
                0
            );
        }
    }
}

/// `ibm-ipsec down` while an IKE SA rekey is in flight: the DELETE must end the successor
/// too, on both sides, whichever side asked (seen in the VM: the successor lived on and kept
/// re-installing CHILD_SAs after the peer was removed).
#[test]
fn delete_during_an_ike_rekey_ends_the_successor_too() {
    for (rekeyer, deleter) in [(I, I), (I, R), (R, I), (R, R)] {
        let mut net = perfect(40 + rekeyer as u64 * 2 + deleter as u64);
        let now = net.now;
        let h = current(&net, rekeyer).unwrap();
        net.endpoints[rekeyer].1.rekey_ike(now, h).unwrap();
        let d = current(&net, deleter).unwrap();
        net.endpoints[deleter].1.delete(now, d).unwrap();
        let limit = net.now + Duration::from_secs(600);
        net.run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.is_empty()));
        assert!(
            net.endpoints.iter().all(|(_, e)| e.is_empty()),
            "rekeyer {rekeyer}, deleter {deleter}: SAs left: {}",
            summary(&net)
        );
    }
}

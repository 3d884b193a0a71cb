//! Reauthentication make-before-break (RFC 7296 §2.8.3) in the two-peer harness, over
//! perfect and lossy links: the new IKE SA presents the authenticator's current
//! certificate, its CHILD_SAs come up with the old reqids before the old ones go, and a
//! failed reauthentication leaves the old IKE SA untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ike::allocation::SequentialReqids;
use ike::auth::{AuthError, LocalAuthenticator, PeerAuthenticator, SignContext, VerifyRequest};
use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::{AuthMethod, Identification, TsRange};
use ike::{Config, Endpoint, Event, PeerIdentity, Psk, SaHandle};

/// A PSK authenticator that also sends a one-byte "certificate" naming its generation, as
/// a renewed host certificate would change; the verifier records what it saw and refuses
/// generations it was told are revoked.
struct Renewing {
    psk: Psk,
    /// The same key without a required peer identity, used while `accept_any` is set.
    any: Psk,
    accept_any: std::sync::atomic::AtomicBool,
    /// Presents this identity instead of its own.
    id_override: Mutex<Option<Identification>>,
    generation: AtomicU8,
    seen: Mutex<Vec<u8>>,
    revoked: AtomicU8,
}

impl Renewing {
    fn new(local: &str, remote: &str) -> Arc<Self> {
        Arc::new(Renewing {
            psk: Psk::new(
                Identification::fqdn(local),
                Some(Identification::fqdn(remote)),
                b"reauth".to_vec(),
            ),
            any: Psk::new(Identification::fqdn(local), None, b"reauth".to_vec()),
            accept_any: std::sync::atomic::AtomicBool::new(false),
            id_override: Mutex::new(None),
            generation: AtomicU8::new(1),
            seen: Mutex::new(Vec::new()),
            revoked: AtomicU8::new(0),
        })
    }
}

impl LocalAuthenticator for Renewing {
    fn id(&self) -> Identification {
        self.id_override
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.psk.id())
    }
    fn certificates(&self) -> Vec<Vec<u8>> {
        vec![vec![self.generation.load(Ordering::SeqCst)]]
    }
    fn sign(&self, ctx: &SignContext<'_>, o: &[u8]) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        self.psk.sign(ctx, o)
    }
}

impl PeerAuthenticator for Renewing {
    fn verify(&self, r: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError> {
        let generation = r.certificates.first().and_then(|c| c.first().copied());
        let generation = generation.ok_or(AuthError("no certificate".into()))?;
        self.seen.lock().unwrap().push(generation);
        if generation == self.revoked.load(Ordering::SeqCst) {
            return Err(AuthError(format!(
                "certificate generation {generation} revoked"
            )));
        }
        if self.accept_any.load(Ordering::SeqCst) {
            return self.any.verify(r);
        }
        self.psk.verify(r)
    }
}

struct Lab {
    net: Network,
    client: Arc<Renewing>,
    share: Arc<Renewing>,
    handle: SaHandle,
    /// The reqid allocators of the initiator and the responder.
    reqids: [Arc<SequentialReqids>; 2],
}

fn lab(link: LinkConfig, seed: u64) -> Lab {
    let client = Renewing::new("client", "share");
    let share = Renewing::new("share", "client");
    let mut ic = Config::new(client.clone(), share_verifier(&client));
    let mut rc = Config::new(share.clone(), share_verifier(&share));
    for c in [&mut ic, &mut rc] {
        c.retransmit.tries = 12;
        c.retransmit.limit = Duration::from_secs(30);
        c.half_open_timeout = Duration::from_secs(600);
    }
    let now = Instant::now();
    let mut net = Network::new(now, link, seed);
    let reqids = [
        Arc::new(SequentialReqids::new()),
        Arc::new(SequentialReqids::new()),
    ];
    net.add(
        "10.0.0.1".parse().unwrap(),
        // The client accepts IKE SAs too, so that the share can reauthenticate towards it.
        Endpoint::new(
            Some(Arc::new(ic.clone())),
            4500,
            Box::new(SeededRandom::new(seed)),
        )
        .with_reqid_allocator(reqids[0].clone()),
    );
    net.add(
        "10.0.0.2".parse().unwrap(),
        Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(!seed)))
            .with_reqid_allocator(reqids[1].clone()),
    );
    let ip = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 500);
    let handle = net.endpoints[0]
        .1
        .initiate(now, Arc::new(ic), ip("10.0.0.1"), ip("10.0.0.2"))
        .unwrap();
    assert!(net.run_until(now + Duration::from_secs(300), |n| {
        n.events
            .iter()
            .all(|e| e.iter().any(|(_, e)| matches!(e, Event::ChildSaUp(_))))
    }));
    Lab {
        net,
        client,
        share,
        handle,
        reqids,
    }
}

/// Each side verifies its peer with its own `Renewing` (the verifier part of the pair).
fn share_verifier(r: &Arc<Renewing>) -> Arc<Renewing> {
    r.clone()
}

fn position(events: &[(SaHandle, Event)], f: impl Fn(&(SaHandle, Event)) -> bool) -> usize {
    events
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("event not found in {events:#?}"))
}

/// Events as `handle-suffix:variant(reason)` for failure messages.
fn summary(net: &Network) -> Vec<Vec<String>> {
    net.events
        .iter()
        .map(|ev| {
            ev.iter()
                .map(|(h, e)| {
                    let what = match e {
                        Event::Failed { reason } => format!("Failed({reason})"),
                        Event::IkeSaDown { reason } => format!("IkeSaDown({reason})"),
                        Event::ChildSaDown { reason, .. } => format!("ChildSaDown({reason})"),
                        other => format!("{other:?}").chars().take(14).collect(),
                    };
                    format!("{:04x}:{what}", h & 0xffff)
                })
                .collect()
        })
        .collect()
}

fn reauth_completes(link: LinkConfig, seed: u64) {
    let mut lab = lab(link, seed);
    let old = lab.handle;
    let old_child = lab.net.endpoints[0].1.sa(old).unwrap().child_spis()[0];
    let old_reqid = lab.net.events[0]
        .iter()
        .find_map(|(_, e)| match e {
            Event::ChildSaUp(c) => Some(c.reqid),
            _ => None,
        })
        .unwrap();
    let r_old = lab.net.events[1][0].0;
    // The certificate was renewed: the authenticator now presents generation 2.
    lab.client.generation.store(2, Ordering::SeqCst);
    let now = lab.net.now;
    let new = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    assert_ne!(new, old);
    let done = lab.net.run_until(now + Duration::from_secs(1200), |n| {
        n.endpoints
            .iter()
            .all(|(_, e)| e.len() == 1 && e.sa(old).is_none() && e.sa(r_old).is_none())
    });
    assert!(
        done,
        "seed {seed}: {:?} {:?}",
        summary(&lab.net),
        lab.net.errors
    );
    assert_eq!(*lab.share.seen.lock().unwrap(), vec![1, 2], "seed {seed}");
    // Initiator: new CHILD_SA up (same reqid) before the old one goes, then the old IKE SA.
    let ev = &lab.net.events[0];
    let new_up = position(ev, |(h, e)| *h == new && matches!(e, Event::ChildSaUp(_)));
    let reauthenticated = position(ev, |(h, e)| {
        *h == new && matches!(e, Event::Reauthenticated { old: o } if *o == old)
    });
    let old_down = position(ev, |(h, e)| {
        *h == old && matches!(e, Event::ChildSaDown { spi_in, .. } if *spi_in == old_child.0)
    });
    let old_ike_down = position(ev, |(h, e)| {
        *h == old && matches!(e, Event::IkeSaDown { .. })
    });
    assert!(new_up < reauthenticated && reauthenticated < old_down && old_down < old_ike_down);
    match &ev[new_up].1 {
        Event::ChildSaUp(c) => {
            assert_eq!(c.reqid, old_reqid, "reqid kept");
            assert_ne!(c.spi_in, old_child.0);
        }
        _ => unreachable!(),
    }
    // Responder: also make-before-break (it learns of the old SA's end from our DELETE).
    let ev = &lab.net.events[1];
    let r_new_up = position(ev, |(h, e)| *h != r_old && matches!(e, Event::ChildSaUp(_)));
    let r_old_down = position(ev, |(h, e)| {
        *h == r_old && matches!(e, Event::ChildSaDown { .. })
    });
    assert!(r_new_up < r_old_down);
    // No INITIAL_CONTACT in the reauthentication: the peer kept the old SA until our DELETE.
    let r_old_reason = ev.iter().find_map(|(h, e)| match e {
        Event::IkeSaDown { reason } if *h == r_old => Some(reason.as_str()),
        _ => None,
    });
    assert_eq!(r_old_reason, Some("deleted by peer"));
    // The peer side adopts the reqid of the CHILD_SA being replaced, too.
    let reqid_of = |i: usize| match &ev[i].1 {
        Event::ChildSaUp(c) => c.reqid,
        Event::ChildSaDown { reqid, .. } => *reqid,
        _ => unreachable!(),
    };
    assert_eq!(reqid_of(r_new_up), reqid_of(r_old_down));
    assert_eq!(lab.reqids[0].in_use(), 1);
    assert_eq!(lab.reqids[1].in_use(), 1);
    let fails: Vec<_> = lab
        .net
        .events
        .iter()
        .flatten()
        .filter(|(_, e)| matches!(e, Event::Failed { .. }))
        .collect();
    assert!(fails.is_empty(), "seed {seed}: {fails:?}");
    // The new SA is fully usable.
    assert!(lab.net.endpoints[0].1.sa(new).unwrap().is_established());
    assert_eq!(
        lab.net.endpoints[0].1.sa(new).unwrap().child_spis().len(),
        1
    );
}

#[test]
fn reauthentication_is_make_before_break() {
    reauth_completes(LinkConfig::perfect(), 1);
}

#[test]
fn reauthentication_survives_a_lossy_link() {
    for seed in 10..22 {
        reauth_completes(LinkConfig::lossy(0.3), seed);
    }
}

#[test]
fn failed_reauthentication_keeps_the_old_ike_sa() {
    let mut lab = lab(LinkConfig::perfect(), 5);
    let old = lab.handle;
    let children = lab.net.endpoints[0].1.sa(old).unwrap().child_spis();
    // The peer refuses the renewed certificate.
    lab.client.generation.store(2, Ordering::SeqCst);
    lab.share.revoked.store(2, Ordering::SeqCst);
    let now = lab.net.now;
    let new = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    lab.net.run_until(now + Duration::from_secs(60), |n| {
        n.events[0]
            .iter()
            .any(|(h, e)| *h == old && matches!(e, Event::Failed { .. }))
    });
    lab.net
        .run_until(lab.net.now + Duration::from_secs(60), |_| false);
    let ev = &lab.net.events[0];
    let reason = ev
        .iter()
        .find_map(|(h, e)| match e {
            Event::Failed { reason } if *h == old => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reason,
        "reauthentication failed, keeping the current IKE SA: AUTHENTICATION_FAILED from peer"
    );
    assert!(ev.iter().all(
        |(h, e)| *h != old || !matches!(e, Event::ChildSaDown { .. } | Event::IkeSaDown { .. })
    ));
    assert!(ev
        .iter()
        .all(|(_, e)| !matches!(e, Event::Reauthenticated { .. })));
    let ep = &lab.net.endpoints[0].1;
    assert!(ep.sa(new).is_none(), "the failed SA is gone");
    let sa = ep.sa(old).unwrap();
    assert!(sa.is_established());
    assert_eq!(sa.child_spis(), children);
    // The old SA still works: a DPD round trip succeeds, and a later reauthentication with
    // an accepted certificate completes.
    let now = lab.net.now;
    lab.net.endpoints[0].1.dpd(now, old).unwrap();
    lab.share.revoked.store(0, Ordering::SeqCst);
    let now = lab.net.now;
    let again = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    assert!(lab.net.run_until(now + Duration::from_secs(60), |n| {
        n.events[0]
            .iter()
            .any(|(h, e)| *h == again && matches!(e, Event::Reauthenticated { .. }))
    }));
}

#[test]
fn the_original_responder_reauthenticates_towards_the_initiator() {
    let mut lab = lab(LinkConfig::lossy(0.1), 7);
    let i_old = lab.handle;
    let r_old = lab.net.events[1][0].0;
    lab.share.generation.store(2, Ordering::SeqCst);
    let now = lab.net.now;
    // The share's side floated to port 4500: the new IKE_SA_INIT goes there, with the
    // non-ESP marker.
    let new = lab.net.endpoints[1].1.reauthenticate(now, r_old).unwrap();
    let done = lab.net.run_until(now + Duration::from_secs(1200), |n| {
        n.endpoints[0].1.sa(i_old).is_none() && n.endpoints[1].1.sa(r_old).is_none()
    });
    assert!(done, "{:?} {:?}", summary(&lab.net), lab.net.errors);
    assert_eq!(*lab.client.seen.lock().unwrap(), vec![1, 2]);
    let sa = lab.net.endpoints[1].1.sa(new).unwrap();
    assert!(sa.is_established());
    assert_eq!(sa.child_spis().len(), 1);
    assert_eq!(lab.net.endpoints[0].1.len(), 1);
    assert_eq!((lab.reqids[0].in_use(), lab.reqids[1].in_use()), (1, 1));
}

#[test]
fn ike_rekey_during_reauthentication_hands_the_deletion_to_the_successor() {
    let mut lab = lab(LinkConfig::perfect(), 9);
    let old = lab.handle;
    let now = lab.net.now;
    let new = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    // The old IKE SA is rekeyed (RFC 7296 §2.18) before the reauthentication completes.
    lab.net.endpoints[0].1.rekey_ike(now, old).unwrap();
    let done = lab.net.run_until(now + Duration::from_secs(600), |n| {
        n.events[0]
            .iter()
            .any(|(h, e)| *h == new && matches!(e, Event::Reauthenticated { .. }))
            && n.endpoints.iter().all(|(_, e)| e.len() == 1)
    });
    assert!(done, "{:?} {:?}", summary(&lab.net), lab.net.errors);
    let rekeyed = lab.net.events[0]
        .iter()
        .any(|(h, e)| *h == old && matches!(e, Event::IkeSaRekeyed { .. }));
    assert!(rekeyed, "{:?}", summary(&lab.net));
    assert!(lab.net.endpoints[0].1.sa(new).unwrap().is_established());
}

#[test]
fn initial_contact_from_a_restarted_peer_removes_its_stale_sas() {
    let mut lab = lab(LinkConfig::perfect(), 11);
    let r_old = lab.net.events[1][0].0;
    let old_spis = lab.net.endpoints[1].1.sa(r_old).unwrap().child_spis();
    // The client restarts: a fresh endpoint at the same address, no memory of the SA.
    let now = lab.net.now;
    let fresh = Endpoint::new(None, 4500, Box::new(SeededRandom::new(1234)));
    lab.net.endpoints[0].1 = fresh;
    let config = Config::new(lab.client.clone(), lab.client.clone());
    let ip = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 500);
    lab.net.endpoints[0]
        .1
        .initiate(now, Arc::new(config), ip("10.0.0.1"), ip("10.0.0.2"))
        .unwrap();
    let done = lab.net.run_until(now + Duration::from_secs(60), |n| {
        n.endpoints[1].1.sa(r_old).is_none()
    });
    assert!(done, "{:?}", summary(&lab.net));
    let ev = &lab.net.events[1];
    let down = ev
        .iter()
        .filter(|(h, _)| *h == r_old)
        .filter_map(|(_, e)| match e {
            Event::ChildSaDown { spi_in, reason, .. } => Some((*spi_in, reason.clone())),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].0, old_spis[0].0);
    assert!(down[0].1.contains("INITIAL_CONTACT"), "{down:?}");
    assert_eq!(lab.net.endpoints[1].1.len(), 1, "only the new SA is left");
    // The new CHILD_SA took over the reqid, which stays allocated.
    assert_eq!(lab.reqids[1].in_use(), 1);
}

#[test]
fn reauthentication_recreates_every_child_sa() {
    let mut lab = lab(LinkConfig::lossy(0.1), 13);
    let old = lab.handle;
    let r_old = lab.net.events[1][0].0;
    // A second CHILD_SA, for NFS only.
    let host = |s: &str, port| TsRange::host(s.parse().unwrap(), 6, port);
    let now = lab.net.now;
    lab.net.endpoints[0]
        .1
        .create_child(
            now,
            old,
            vec![host("10.0.0.1", None)],
            vec![host("10.0.0.2", Some(2049))],
        )
        .unwrap();
    let ups = |ev: &[(SaHandle, Event)], h: SaHandle| -> Vec<ike::ChildSa> {
        ev.iter()
            .filter_map(|(x, e)| match e {
                Event::ChildSaUp(c) if *x == h => Some((**c).clone()),
                _ => None,
            })
            .collect()
    };
    assert!(lab.net.run_until(now + Duration::from_secs(300), |n| {
        ups(&n.events[0], old).len() == 2 && ups(&n.events[1], r_old).len() == 2
    }));
    let before = ups(&lab.net.events[0], old);
    assert_ne!(before[0].reqid, before[1].reqid, "a reqid per CHILD_SA");
    assert_eq!(before[1].remote_ts, vec![host("10.0.0.2", Some(2049))]);
    assert_eq!((lab.reqids[0].in_use(), lab.reqids[1].in_use()), (2, 2));
    let now = lab.net.now;
    let new = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    let done = lab.net.run_until(now + Duration::from_secs(1200), |n| {
        n.endpoints
            .iter()
            .all(|(_, e)| e.len() == 1 && e.sa(old).is_none() && e.sa(r_old).is_none())
    });
    assert!(done, "{:?} {:?}", summary(&lab.net), lab.net.errors);
    let after = ups(&lab.net.events[0], new);
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (a.reqid, &a.local_ts, &a.remote_ts),
            (b.reqid, &b.local_ts, &b.remote_ts)
        );
        assert_ne!(a.spi_in, b.spi_in);
    }
    // Both recreated before Reauthenticated, which precedes the old ones' removal.
    let ev = &lab.net.events[0];
    let last_up = ev
        .iter()
        .rposition(|(h, e)| *h == new && matches!(e, Event::ChildSaUp(_)))
        .unwrap();
    let reauthenticated = position(ev, |(_, e)| matches!(e, Event::Reauthenticated { .. }));
    let first_old_down = position(ev, |(h, e)| {
        *h == old && matches!(e, Event::ChildSaDown { .. })
    });
    assert!(last_up < reauthenticated && reauthenticated < first_old_down);
    assert_eq!((lab.reqids[0].in_use(), lab.reqids[1].in_use()), (2, 2));
}

/// The new IKE SA of a reauthentication must authenticate the peer of the SA it replaces:
/// another identity, even one the config accepts, does not take over its CHILD_SAs.
#[test]
fn reauthentication_refuses_a_peer_with_another_identity() {
    let mut lab = lab(LinkConfig::perfect(), 11);
    let old = lab.handle;
    let children = lab.net.endpoints[0].1.sa(old).unwrap().child_spis();
    lab.client.accept_any.store(true, Ordering::SeqCst);
    *lab.share.id_override.lock().unwrap() = Some(Identification::fqdn("impostor"));
    let now = lab.net.now;
    let new = lab.net.endpoints[0].1.reauthenticate(now, old).unwrap();
    lab.net.run_until(now + Duration::from_secs(60), |n| {
        n.events[0]
            .iter()
            .any(|(h, e)| *h == old && matches!(e, Event::Failed { .. }))
    });
    lab.net
        .run_until(lab.net.now + Duration::from_secs(60), |_| false);
    let ev = &lab.net.events[0];
    let reason = ev
        .iter()
        .find_map(|(h, e)| match e {
            Event::Failed { reason } if *h == old => Some(reason.clone()),
            _ => None,
        })
        .expect("the reauthentication fails");
    assert!(reason.contains("impostor"), "{reason}");
    assert!(ev
        .iter()
        .all(|(_, e)| !matches!(e, Event::Reauthenticated { .. })));
    assert!(
        ev.iter()
            .all(|(h, e)| *h != new || !matches!(e, Event::ChildSaUp(_))),
        "no CHILD_SA of the impostor's SA reaches the driver"
    );
    let ep = &lab.net.endpoints[0].1;
    assert!(ep.sa(new).is_none(), "the refused SA is gone");
    let sa = ep.sa(old).unwrap();
    assert!(sa.is_established());
    assert_eq!(sa.child_spis(), children);
}

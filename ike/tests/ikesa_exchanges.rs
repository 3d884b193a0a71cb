//! Two IKE endpoints in memory: IKE_SA_INIT + IKE_AUTH (PSK) + transport CHILD_SA, failures,
//! and the established-SA exchanges, over perfect and lossy links.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::crypto::{DhGroup, EncrAlgorithm, IkeSuite};
use ike::proposal::{EspProposal, IkeProposal};
use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::Identification;
use ike::{Config, Endpoint, Event, Mode, Psk, SaHandle};

const I_IP: &str = "10.0.0.1";
const R_IP: &str = "10.0.0.2";

fn psk(local: &str, remote: &str, secret: &[u8]) -> Arc<Psk> {
    Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        secret.to_vec(),
    ))
}

fn config(local: &str, remote: &str, secret: &[u8]) -> Config {
    let a = psk(local, remote, secret);
    Config::new(a.clone(), a)
}

struct Pair {
    net: Network,
    handle: SaHandle,
}

fn pair(ic: Config, rc: Config, link: LinkConfig, seed: u64) -> Pair {
    let now = Instant::now();
    let mut net = Network::new(now, link, seed);
    let i = Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed ^ 1)));
    let r = Endpoint::new(
        Some(Arc::new(rc)),
        4500,
        Box::new(SeededRandom::new(seed ^ 2)),
    );
    net.add(I_IP.parse().unwrap(), i);
    net.add(R_IP.parse().unwrap(), r);
    let local = SocketAddr::new(I_IP.parse::<IpAddr>().unwrap(), 500);
    let remote = SocketAddr::new(R_IP.parse::<IpAddr>().unwrap(), 500);
    let handle = net.endpoints[0]
        .1
        .initiate(now, Arc::new(ic), local, remote)
        .unwrap();
    Pair { net, handle }
}

fn default_pair(seed: u64) -> Pair {
    pair(
        config("client", "share", b"shared secret"),
        config("share", "client", b"shared secret"),
        LinkConfig::perfect(),
        seed,
    )
}

fn child_ups(events: &[(SaHandle, Event)]) -> Vec<ike::ChildSa> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ChildSaUp(c) => Some((**c).clone()),
            Event::ChildSaRekeyed { new, .. } => Some((**new).clone()),
            _ => None,
        })
        .collect()
}

fn count(events: &[(SaHandle, Event)], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|(_, e)| f(e)).count()
}

fn failures(events: &[(SaHandle, Event)]) -> Vec<String> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Failed { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn established(net: &Network) -> bool {
    net.events
        .iter()
        .all(|ev| count(ev, |e| matches!(e, Event::ChildSaUp(_))) == 1)
}

#[test]
fn psk_handshake_installs_matching_transport_child_sas() {
    let mut p = default_pair(1);
    let limit = p.net.now + Duration::from_secs(5);
    assert!(
        p.net.run_until(limit, established),
        "errors: {:?}",
        p.net.errors
    );
    let i = child_ups(&p.net.events[0]).remove(0);
    let r = child_ups(&p.net.events[1]).remove(0);
    assert_eq!(i.mode, Mode::Transport);
    assert_eq!(r.mode, Mode::Transport);
    assert_eq!((i.spi_in, i.spi_out), (r.spi_out, r.spi_in));
    assert_eq!(i.keys_out.encr(), r.keys_in.encr());
    assert_eq!(i.keys_in.encr(), r.keys_out.encr());
    assert_ne!(i.keys_in.encr(), i.keys_out.encr());
    assert_eq!(i.encr, EncrAlgorithm::AesGcm16_256);
    assert_eq!(i.keys_in.encr().len(), 36, "AES-256 key + 4-byte salt");
    assert!(!i.esn);
    // Forced encapsulation: both float to 4500 after IKE_SA_INIT.
    assert_eq!(
        i.encap.map(|e| (e.local_port, e.remote_port)),
        Some((4500, 4500))
    );
    assert_eq!(
        r.encap.map(|e| (e.local_port, e.remote_port)),
        Some((4500, 4500))
    );
    // %dynamic selectors: each side's address.
    assert_eq!(i.local_ts.len(), 1);
    assert_eq!(i.local_ts[0].start_addr, I_IP.parse::<IpAddr>().unwrap());
    assert_eq!(i.remote_ts, r.local_ts);
    assert_eq!(
        (i.reqid, r.reqid),
        (0x4942_0001, 0x4942_0001),
        "first CHILD_SA of each endpoint, in xfrm::ownership's range"
    );
    // IKE SA up on both sides with IBM's suite, authenticated peer ids.
    for (ev, peer) in p.net.events.iter().zip(["share", "client"]) {
        let up = ev.iter().find_map(|(_, e)| match e {
            Event::IkeSaUp {
                peer, suite, encap, ..
            } => Some((peer.clone(), *suite, *encap)),
            _ => None,
        });
        let (id, suite, encap) = up.expect("IkeSaUp");
        assert_eq!(id.id, Identification::fqdn(peer));
        assert_eq!(suite, IkeSuite::IBM_DEFAULT);
        assert!(encap);
    }
    assert!(p.net.errors.is_empty(), "{:?}", p.net.errors);
    // Keys are redacted in Debug.
    let text = format!("{i:?}");
    assert!(text.contains("redacted"));
}

#[test]
fn same_seed_replays_byte_for_byte() {
    let run = |seed| {
        let mut p = default_pair(seed);
        let mut bytes = Vec::new();
        p.net.collect();
        let limit = p.net.now + Duration::from_secs(5);
        // Record every delivered datagram through the endpoints' queues.
        while p.net.now < limit && p.net.step() {
            bytes.push((p.net.delivered, p.net.dropped));
        }
        let keys: Vec<Vec<u8>> = child_ups(&p.net.events[0])
            .iter()
            .map(|c| c.keys_out.encr().to_vec())
            .collect();
        (bytes, keys)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).1, run(8).1);
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let mut p = pair(
        config("client", "share", b"one secret"),
        config("share", "client", b"another secret"),
        LinkConfig::perfect(),
        3,
    );
    let limit = p.net.now + Duration::from_secs(5);
    p.net.run_until(limit, |n| {
        n.events
            .iter()
            .all(|e| count(e, |e| matches!(e, Event::IkeSaDown { .. })) == 1)
    });
    let r = failures(&p.net.events[1]);
    assert!(
        r[0].contains("authentication of peer") && r[0].contains("does not match"),
        "{r:?}"
    );
    assert_eq!(
        failures(&p.net.events[0]),
        vec!["AUTHENTICATION_FAILED from peer".to_string()]
    );
    assert!(p.net.endpoints.iter().all(|(_, e)| e.is_empty()));
}

/// The responder accepts the initiator and establishes; the initiator then refuses the
/// responder's identity. RFC 7296 §2.21.2: the initiator tells it with an INFORMATIONAL
/// AUTHENTICATION_FAILED so the responder does not keep an SA the initiator has dropped.
#[test]
fn initiator_refusing_the_responder_tells_it() {
    let ic = Config::new(
        psk("client", "share", b"shared secret"),
        psk("client", "another-share", b"shared secret"),
    );
    let mut p = pair(
        ic,
        config("share", "client", b"shared secret"),
        LinkConfig::perfect(),
        4,
    );
    let limit = p.net.now + Duration::from_secs(5);
    p.net.run_until(limit, |n| {
        n.events
            .iter()
            .all(|e| count(e, |e| matches!(e, Event::IkeSaDown { .. })) == 1)
    });
    let i = failures(&p.net.events[0]);
    assert_eq!(i.len(), 1, "{i:?}");
    let r = failures(&p.net.events[1]);
    assert_eq!(
        r,
        vec!["AUTHENTICATION_FAILED from peer: it refused our authentication".to_string()]
    );
    // The responder had reported the SA up and must now report it and its child down.
    assert_eq!(
        count(&p.net.events[1], |e| matches!(e, Event::ChildSaDown { .. })),
        count(&p.net.events[1], |e| matches!(e, Event::ChildSaUp(_)))
    );
    assert!(p.net.endpoints.iter().all(|(_, e)| e.is_empty()));
}

#[test]
fn no_proposal_chosen_is_explained() {
    let mut ic = config("client", "share", b"s");
    ic.ike_proposals = vec![IkeProposal::modern()];
    let mut rc = config("share", "client", b"s");
    rc.ike_proposals = vec![IkeProposal::ibm()];
    let mut p = pair(ic, rc, LinkConfig::perfect(), 4);
    let limit = p.net.now + Duration::from_secs(5);
    p.net
        .run_until(limit, |n| !failures(&n.events[0]).is_empty());
    let f = failures(&p.net.events[0]);
    assert_eq!(
        f,
        vec![
            "no proposal chosen: we offered ENCR_AES_GCM_16_256/PRF_HMAC_SHA2_384/\
PRF_HMAC_SHA2_256/CURVE_25519/ECP_256/MODP_2048, peer accepted none"
                .to_string()
        ]
    );
    assert!(p.net.endpoints[1].1.is_empty(), "responder keeps no state");
}

#[test]
fn invalid_ke_payload_retries_with_the_peers_group() {
    let mut ic = config("client", "share", b"s");
    ic.ike_proposals = vec![IkeProposal::modern()]; // KE for x25519 first
    let mut rc = config("share", "client", b"s");
    rc.ike_proposals = vec![IkeProposal {
        dh: vec![DhGroup::Ecp256],
        ..IkeProposal::modern()
    }];
    let mut p = pair(ic, rc, LinkConfig::perfect(), 5);
    let limit = p.net.now + Duration::from_secs(5);
    assert!(
        p.net.run_until(limit, established),
        "{:?}",
        failures(&p.net.events[0])
    );
    let suite = p.net.events[0].iter().find_map(|(_, e)| match e {
        Event::IkeSaUp { suite, .. } => Some(*suite),
        _ => None,
    });
    assert_eq!(suite.unwrap().dh, DhGroup::Ecp256);
}

#[test]
fn peer_choosing_tunnel_mode_fails_the_child() {
    let ic = config("client", "share", b"s");
    let mut rc = config("share", "client", b"s");
    rc.mode = Mode::Tunnel;
    let mut p = pair(ic, rc, LinkConfig::perfect(), 6);
    let limit = p.net.now + Duration::from_secs(5);
    p.net
        .run_until(limit, |n| !failures(&n.events[0]).is_empty());
    assert_eq!(
        failures(&p.net.events[0]),
        vec!["peer chose tunnel mode".to_string()]
    );
    // The initiator deletes the tunnel-mode SA the responder installed.
    p.net.run_until(p.net.now + Duration::from_secs(5), |n| {
        count(&n.events[1], |e| matches!(e, Event::ChildSaDown { .. })) == 1
    });
    assert_eq!(
        count(&p.net.events[1], |e| matches!(e, Event::ChildSaDown { .. })),
        1
    );
}

#[test]
fn responder_refuses_tunnel_request_but_keeps_ike_sa() {
    let mut ic = config("client", "share", b"s");
    ic.mode = Mode::Tunnel;
    let rc = config("share", "client", b"s");
    let mut p = pair(ic, rc, LinkConfig::perfect(), 9);
    let limit = p.net.now + Duration::from_secs(5);
    p.net
        .run_until(limit, |n| !failures(&n.events[0]).is_empty());
    assert!(
        failures(&p.net.events[0])[0].contains("NO_PROPOSAL_CHOSEN")
            || failures(&p.net.events[0])[0].contains("no proposal chosen")
    );
    assert!(failures(&p.net.events[1])[0].contains("tunnel mode"));
    assert!(p.net.endpoints[0].1.sa(p.handle).unwrap().is_established());
}

#[test]
fn dpd_rekey_and_delete() {
    let mut p = default_pair(10);
    let limit = p.net.now + Duration::from_secs(5);
    assert!(p.net.run_until(limit, established));
    let now = p.net.now;
    let h = p.handle;
    p.net.endpoints[0].1.dpd(now, h).unwrap();
    let spi_in = child_ups(&p.net.events[0])[0].spi_in;
    p.net.endpoints[0].1.rekey_child(now, h, spi_in).unwrap();
    let limit = p.net.now + Duration::from_secs(10);
    p.net.run_until(limit, |n| {
        n.events
            .iter()
            .all(|e| count(e, |e| matches!(e, Event::ChildSaDown { .. })) == 1)
    });
    for ev in &p.net.events {
        assert_eq!(count(ev, |e| matches!(e, Event::ChildSaRekeyed { .. })), 1);
        assert_eq!(count(ev, |e| matches!(e, Event::ChildSaDown { .. })), 1);
    }
    let new_i = child_ups(&p.net.events[0]).pop().unwrap();
    let new_r = child_ups(&p.net.events[1]).pop().unwrap();
    assert_eq!(new_i.keys_out.encr(), new_r.keys_in.encr());
    assert_ne!(new_i.spi_in, spi_in);
    assert_eq!(new_i.mode, Mode::Transport);
    assert_eq!(
        p.net.endpoints[0].1.sa(h).unwrap().child_spis(),
        vec![(new_i.spi_in, new_i.spi_out)]
    );
    // Delete the IKE SA: both sides report every CHILD_SA and the IKE SA down.
    let now = p.net.now;
    p.net.endpoints[0].1.delete(now, h).unwrap();
    let limit = p.net.now + Duration::from_secs(10);
    assert!(p
        .net
        .run_until(limit, |n| n.endpoints.iter().all(|(_, e)| e.is_empty())));
    for ev in &p.net.events {
        assert_eq!(count(ev, |e| matches!(e, Event::ChildSaDown { .. })), 2);
        assert!(matches!(ev.last(), Some((_, Event::IkeSaDown { .. }))));
    }
    assert!(failures(&p.net.events[0]).is_empty() && failures(&p.net.events[1]).is_empty());
}

#[test]
fn child_rekey_with_pfs() {
    let mut ic = config("client", "share", b"s");
    let pfs = EspProposal {
        dh: vec![DhGroup::Curve25519],
        ..EspProposal::ibm()
    };
    ic.esp_proposals = vec![pfs.clone()];
    let mut rc = config("share", "client", b"s");
    rc.esp_proposals = vec![pfs];
    let mut p = pair(ic, rc, LinkConfig::perfect(), 11);
    assert!(p
        .net
        .run_until(p.net.now + Duration::from_secs(5), established));
    let spi_in = child_ups(&p.net.events[0])[0].spi_in;
    let now = p.net.now;
    p.net.endpoints[0]
        .1
        .rekey_child(now, p.handle, spi_in)
        .unwrap();
    p.net.run_until(p.net.now + Duration::from_secs(5), |n| {
        count(&n.events[0], |e| matches!(e, Event::ChildSaRekeyed { .. })) == 1
    });
    let new_i = child_ups(&p.net.events[0]).pop().unwrap();
    let new_r = child_ups(&p.net.events[1]).pop().unwrap();
    assert_eq!(new_i.keys_in.encr(), new_r.keys_out.encr());
    assert!(
        failures(&p.net.events[0]).is_empty(),
        "{:?}",
        failures(&p.net.events[0])
    );
}

#[test]
fn silent_peer_fails_after_retransmissions() {
    let mut p = default_pair(12);
    p.net.set_link(LinkConfig {
        loss: 1.0,
        ..LinkConfig::perfect()
    });
    let start = p.net.now;
    p.net.run_until(start + Duration::from_secs(600), |n| {
        count(&n.events[0], |e| matches!(e, Event::IkeSaDown { .. })) == 1
    });
    assert_eq!(
        failures(&p.net.events[0]),
        vec!["peer did not answer IKE_SA_INIT after 5 retransmissions".to_string()]
    );
    let took = p.net.now - start;
    // 4 + 7.2 + 13 + 23.3 + 42 + 75.6 s without jitter; jitter only shortens.
    assert!(
        took <= Duration::from_secs(166) && took >= Duration::from_secs(130),
        "{took:?}"
    );
}

#[test]
fn lossy_links_still_establish_rekey_and_delete() {
    // With 30 % loss each way a round trip fails half the time, so strongSwan's 5 tries would
    // give up on ~2 % of exchanges: use more tries, as a deployment on a bad link would.
    let patient = |mut c: Config| {
        c.retransmit.tries = 15;
        c.retransmit.limit = Duration::from_secs(30);
        c.half_open_timeout = Duration::from_secs(600);
        c
    };
    for seed in 0..40 {
        let mut p = pair(
            patient(config("client", "share", b"s")),
            patient(config("share", "client", b"s")),
            LinkConfig::lossy(0.3),
            seed,
        );
        let limit = p.net.now + Duration::from_secs(600);
        assert!(
            p.net.run_until(limit, established),
            "seed {seed}: {:?}",
            p.net.events
        );
        let spi_in = child_ups(&p.net.events[0])[0].spi_in;
        let now = p.net.now;
        p.net.endpoints[0]
            .1
            .rekey_child(now, p.handle, spi_in)
            .unwrap();
        let limit = p.net.now + Duration::from_secs(600);
        assert!(
            p.net.run_until(limit, |n| n
                .events
                .iter()
                .all(|e| count(e, |e| matches!(e, Event::ChildSaDown { .. })) == 1)),
            "seed {seed}: rekey {:?}",
            p.net.events
        );
        let now = p.net.now;
        p.net.endpoints[0].1.delete(now, p.handle).unwrap();
        let limit = p.net.now + Duration::from_secs(600);
        assert!(
            p.net.run_until(limit, |n| n.endpoints[0].1.is_empty()),
            "seed {seed}: delete"
        );
        let i = child_ups(&p.net.events[0]).pop().unwrap();
        let r = child_ups(&p.net.events[1]).pop().unwrap();
        assert_eq!(i.keys_out.encr(), r.keys_in.encr(), "seed {seed}");
    }
}

#[test]
fn original_responder_can_rekey_dpd_and_delete() {
    let mut p = default_pair(20);
    assert!(p
        .net
        .run_until(p.net.now + Duration::from_secs(5), established));
    let r_handle = p.net.events[1][0].0;
    let spi_in = child_ups(&p.net.events[1])[0].spi_in;
    let now = p.net.now;
    p.net.endpoints[1].1.dpd(now, r_handle).unwrap();
    p.net.endpoints[1]
        .1
        .rekey_child(now, r_handle, spi_in)
        .unwrap();
    p.net.run_until(p.net.now + Duration::from_secs(5), |n| {
        n.events
            .iter()
            .all(|e| count(e, |e| matches!(e, Event::ChildSaDown { .. })) == 1)
    });
    // KEYMAT directions follow the exchange's roles (RFC 7296 §2.17): still symmetric.
    let new_i = child_ups(&p.net.events[0]).pop().unwrap();
    let new_r = child_ups(&p.net.events[1]).pop().unwrap();
    assert_eq!((new_i.spi_in, new_i.spi_out), (new_r.spi_out, new_r.spi_in));
    assert_eq!(new_i.keys_out.encr(), new_r.keys_in.encr());
    assert_eq!(new_i.keys_in.encr(), new_r.keys_out.encr());
    assert_eq!(new_i.local_ts, new_r.remote_ts);
    assert_eq!(
        new_i.local_ts[0].start_addr,
        I_IP.parse::<IpAddr>().unwrap()
    );
    let now = p.net.now;
    p.net.endpoints[1].1.delete(now, r_handle).unwrap();
    assert!(p.net.run_until(p.net.now + Duration::from_secs(5), |n| {
        n.endpoints.iter().all(|(_, e)| e.is_empty())
    }));
    assert!(failures(&p.net.events[0]).is_empty() && failures(&p.net.events[1]).is_empty());
}

#[test]
fn tampered_and_out_of_window_messages_are_dropped() {
    let mut p = default_pair(21);
    assert!(p
        .net
        .run_until(p.net.now + Duration::from_secs(5), established));
    let now = p.net.now;
    p.net.endpoints[0].1.dpd(now, p.handle).unwrap();
    let d = p.net.endpoints[0].1.poll_transmit().unwrap();
    // Flip a bit in the ICV: the responder must drop it without answering.
    let mut bad = d.payload.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let r = &mut p.net.endpoints[1].1;
    assert!(r.handle_datagram(now, d.local, d.remote, &bad).is_err());
    assert!(r.poll_transmit().is_none());
    // The genuine one is answered; a replay of it gets the cached answer, byte for byte.
    r.handle_datagram(now, d.local, d.remote, &d.payload)
        .unwrap();
    let first = r.poll_transmit().unwrap();
    r.handle_datagram(now, d.local, d.remote, &d.payload)
        .unwrap();
    assert_eq!(r.poll_transmit().unwrap(), first);
    // A tampered copy of that request carries the same message ID, but it is not a
    // retransmission: the cached answer must not be sent for it (found by the ike_responder
    // fuzz target).
    assert!(r.handle_datagram(now, d.local, d.remote, &bad).is_err());
    assert!(r.poll_transmit().is_none());
    // A request from the past (message ID 1, IKE_AUTH) is neither answered nor harmful.
    let mut old = d.payload.clone();
    old[4 + 20..4 + 24].copy_from_slice(&0u32.to_be_bytes());
    assert!(r.handle_datagram(now, d.local, d.remote, &old).is_err());
    assert!(r.poll_transmit().is_none());
    // Garbage never panics.
    for len in [0, 3, 4, 20, 40] {
        let _ = r.handle_datagram(now, d.local, d.remote, &vec![0xff; len]);
    }
    assert!(p.net.endpoints[1]
        .1
        .sa(p.net.events[1][0].0)
        .unwrap()
        .is_established());
}

#[test]
fn traffic_selectors_are_narrowed_by_the_responder() {
    let ic = config("client", "share", b"s");
    let mut rc = config("share", "client", b"s");
    let nfs = ike::wire::TsRange::host(R_IP.parse().unwrap(), 6, Some(2049));
    rc.local_ts = vec![nfs.clone()];
    let mut p = pair(ic, rc, LinkConfig::perfect(), 22);
    assert!(p
        .net
        .run_until(p.net.now + Duration::from_secs(5), established));
    let i = child_ups(&p.net.events[0]).remove(0);
    assert_eq!(i.remote_ts, vec![nfs]);

    let ic = config("client", "share", b"s");
    let mut rc = config("share", "client", b"s");
    rc.local_ts = vec![ike::wire::TsRange::host(
        "10.9.9.9".parse().unwrap(),
        0,
        None,
    )];
    let mut p = pair(ic, rc, LinkConfig::perfect(), 23);
    p.net.run_until(p.net.now + Duration::from_secs(5), |n| {
        !failures(&n.events[0]).is_empty()
    });
    assert_eq!(
        failures(&p.net.events[0]),
        vec!["peer refused the CHILD_SA: TS_UNACCEPTABLE".to_string()]
    );
}

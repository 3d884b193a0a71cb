//! CHILD_SA edges: tunnel mode (no USE_TRANSPORT_MODE, RFC 7296 §1.3.1), a peer that picks
//! the other mode, and the driver's reqid and inbound-SPI hooks.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ike::allocation::{SequentialReqids, SpiError, SpiRequest, SpiSource, REQIDS};
use ike::crypto::Random;
use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::Identification;
use ike::{ChildSa, Config, Endpoint, Event, Mode, Psk, SaHandle};

fn config(local: &str, remote: &str) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"children".to_vec(),
    ));
    Config::new(psk.clone(), psk)
}

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 500)
}

fn network(i: Endpoint, r: Endpoint, ic: Config, seed: u64) -> (Network, SaHandle) {
    let now = Instant::now();
    let mut net = Network::new(now, LinkConfig::perfect(), seed);
    net.add("10.0.0.1".parse().unwrap(), i);
    net.add("10.0.0.2".parse().unwrap(), r);
    let h = net.endpoints[0]
        .1
        .initiate(now, Arc::new(ic), addr("10.0.0.1"), addr("10.0.0.2"))
        .unwrap();
    (net, h)
}

fn endpoints(rc: Config, seed: u64) -> (Endpoint, Endpoint) {
    (
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed))),
        Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(!seed))),
    )
}

fn ups(events: &[(SaHandle, Event)]) -> Vec<ChildSa> {
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

#[test]
fn tunnel_mode_on_both_sides_installs_and_rekeys_tunnel_children() {
    let mut ic = config("client", "share");
    ic.mode = Mode::Tunnel;
    let mut rc = config("share", "client");
    rc.mode = Mode::Tunnel;
    let (i, r) = endpoints(rc, 1);
    let (mut net, h) = network(i, r, ic, 1);
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events.iter().all(|e| ups(e).len() == 1)
    }));
    for ev in &net.events {
        let c = &ups(ev)[0];
        assert_eq!(c.mode, Mode::Tunnel);
        // Outer addresses for the tunnel: the IKE addresses.
        assert_ne!(c.local, c.remote);
    }
    let spi_in = ups(&net.events[0])[0].spi_in;
    let now = net.now;
    net.endpoints[0].1.rekey_child(now, h, spi_in).unwrap();
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events.iter().all(|e| ups(e).len() == 2)
    }));
    for ev in &net.events {
        assert!(ups(ev).iter().all(|c| c.mode == Mode::Tunnel));
        assert!(failures(ev).is_empty(), "{:?}", failures(ev));
    }
}

#[test]
fn tunnel_initiator_accepts_a_tunnel_answer_from_a_flexible_responder() {
    // A responder configured for tunnel mode answers a tunnel request without the notify.
    let mut ic = config("client", "share");
    ic.mode = Mode::Tunnel;
    let mut rc = config("share", "client");
    rc.mode = Mode::Tunnel;
    rc.local_ts = vec![ike::wire::TsRange::host(
        "10.0.0.2".parse().unwrap(),
        0,
        None,
    )];
    let (i, r) = endpoints(rc, 2);
    let (mut net, _) = network(i, r, ic, 2);
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events.iter().all(|e| ups(e).len() == 1)
    }));
    assert_eq!(ups(&net.events[0])[0].mode, Mode::Tunnel);
}

#[test]
fn peer_choosing_tunnel_mode_leaves_no_half_state() {
    let reqids = Arc::new(SequentialReqids::new());
    let ic = config("client", "share");
    let mut rc = config("share", "client");
    rc.mode = Mode::Tunnel;
    let (i, r) = endpoints(rc, 3);
    let i = i.with_reqid_allocator(reqids.clone());
    let (mut net, h) = network(i, r, ic, 3);
    net.run_until(net.now + Duration::from_secs(5), |n| {
        count(&n.events[1], |e| matches!(e, Event::ChildSaDown { .. })) == 1
    });
    assert_eq!(failures(&net.events[0]), vec!["peer chose tunnel mode"]);
    // We never reported the child up; the responder's tunnel SA was deleted by us.
    assert!(ups(&net.events[0]).is_empty());
    assert_eq!(ups(&net.events[1]).len(), 1);
    assert_eq!(
        count(&net.events[1], |e| matches!(e, Event::ChildSaDown { .. })),
        1
    );
    let ep_i = &net.endpoints[0].1;
    let sa_i = ep_i.sa(h).unwrap();
    assert!(sa_i.is_established(), "the IKE SA stays");
    assert!(sa_i.child_spis().is_empty());
    let r_handle = net.events[1][0].0;
    assert!(net.endpoints[1]
        .1
        .sa(r_handle)
        .unwrap()
        .child_spis()
        .is_empty());
    assert_eq!(reqids.in_use(), 0, "the failed child's reqid went back");
}

/// An SPI source that hands out predictable SPIs and records what it was asked.
struct CountingSpis {
    next: Mutex<u32>,
    seen: Mutex<Vec<SpiRequest>>,
    fail: bool,
}

impl SpiSource for CountingSpis {
    fn inbound_spi(&self, request: &SpiRequest, _rng: &mut dyn Random) -> Result<u32, SpiError> {
        self.seen.lock().unwrap().push(*request);
        if self.fail {
            return Err(SpiError("ALLOCSPI: no space left".into()));
        }
        let mut n = self.next.lock().unwrap();
        *n += 1;
        Ok(*n)
    }
}

#[test]
fn reqid_allocator_and_spi_source_hooks_are_used_and_reqids_released() {
    let reqids_i = Arc::new(SequentialReqids::new());
    let reqids_r = Arc::new(SequentialReqids::new());
    let spis = Arc::new(CountingSpis {
        next: Mutex::new(0x7000_0000),
        seen: Mutex::new(Vec::new()),
        fail: false,
    });
    let (i, r) = endpoints(config("share", "client"), 4);
    let i = i
        .with_reqid_allocator(reqids_i.clone())
        .with_spi_source(spis.clone());
    let r = r.with_reqid_allocator(reqids_r.clone());
    let (mut net, h) = network(i, r, config("client", "share"), 4);
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events.iter().all(|e| ups(e).len() == 1)
    }));
    let first = ups(&net.events[0]).remove(0);
    assert_eq!(first.spi_in, 0x7000_0001);
    assert_eq!(first.reqid, 0x4942_0001);
    assert!(REQIDS.contains(&ups(&net.events[1])[0].reqid));
    assert_eq!((reqids_i.in_use(), reqids_r.in_use()), (1, 1));
    let seen = spis.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![SpiRequest {
            local: "10.0.0.1".parse().unwrap(),
            remote: "10.0.0.2".parse().unwrap(),
            reqid: 0x4942_0001,
        }]
    );
    // A rekey draws a new SPI from the hook and keeps the reqid.
    let now = net.now;
    net.endpoints[0]
        .1
        .rekey_child(now, h, first.spi_in)
        .unwrap();
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events
            .iter()
            .all(|e| count(e, |e| matches!(e, Event::ChildSaDown { .. })) == 1)
    }));
    let rekeyed = ups(&net.events[0]).pop().unwrap();
    assert_eq!(rekeyed.spi_in, 0x7000_0002);
    assert_eq!(rekeyed.reqid, first.reqid);
    assert_eq!((reqids_i.in_use(), reqids_r.in_use()), (1, 1));
    // Deleting the IKE SA releases the reqids on both sides.
    let now = net.now;
    net.endpoints[0].1.delete(now, h).unwrap();
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.endpoints.iter().all(|(_, e)| e.is_empty())
    }));
    assert_eq!((reqids_i.in_use(), reqids_r.in_use()), (0, 0));
}

#[test]
fn failing_spi_source_refuses_the_child_and_releases_its_reqid() {
    let reqids_r = Arc::new(SequentialReqids::new());
    let spis = Arc::new(CountingSpis {
        next: Mutex::new(0),
        seen: Mutex::new(Vec::new()),
        fail: true,
    });
    let (i, r) = endpoints(config("share", "client"), 5);
    let r = r
        .with_reqid_allocator(reqids_r.clone())
        .with_spi_source(spis);
    let (mut net, h) = network(i, r, config("client", "share"), 5);
    net.run_until(net.now + Duration::from_secs(5), |n| {
        !failures(&n.events[0]).is_empty()
    });
    assert!(
        failures(&net.events[1])[0].contains("ALLOCSPI: no space left"),
        "{:?}",
        failures(&net.events[1])
    );
    assert!(failures(&net.events[0])[0].contains("TEMPORARY_FAILURE"));
    assert!(net.endpoints[0].1.sa(h).unwrap().is_established());
    assert_eq!(reqids_r.in_use(), 0);
}

/// An authenticated peer cannot make the responder hold CHILD_SAs (kernel SAs, reqids shared
/// by every peer) without limit: past `max_child_sas` it answers NO_ADDITIONAL_SAS.
#[test]
fn a_peer_cannot_create_child_sas_without_limit() {
    let ic = config("client", "share");
    let mut rc = config("share", "client");
    rc.max_child_sas = 3;
    let (i, r) = endpoints(rc, 21);
    let (mut net, h) = network(i, r, ic, 21);
    assert!(net.run_until(net.now + Duration::from_secs(5), |n| {
        n.events.iter().all(|e| ups(e).len() == 1)
    }));
    for port in 1..=5u16 {
        let now = net.now;
        let ts = |ip: &str| vec![ike::wire::TsRange::host(ip.parse().unwrap(), 6, Some(port))];
        net.endpoints[0]
            .1
            .create_child(now, h, ts("10.0.0.1"), ts("10.0.0.2"))
            .unwrap();
        net.run_until(net.now + Duration::from_secs(5), |_| false);
    }
    assert_eq!(
        ups(&net.events[1]).len(),
        3,
        "the responder holds at most 3"
    );
    assert_eq!(ups(&net.events[0]).len(), 3);
    // The first CHILD_SA and two more fill the 3; the other three are refused.
    let refused = failures(&net.events[0]);
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.contains("NO_ADDITIONAL_SAS")),
        "{refused:?}"
    );
    // The IKE SA itself is fine.
    assert!(net.endpoints[0].1.sa(h).unwrap().is_established());
}

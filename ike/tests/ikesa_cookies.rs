//! COOKIE under load (RFC 7296 §2.6): a flood of half-open IKE_SA_INITs makes the responder
//! answer statelessly; a genuine initiator echoes the cookie and completes (also combined
//! with INVALID_KE_PAYLOAD); forged and expired cookies get no SA; state stays bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::cookie::CookiePolicy;
use ike::crypto::DhGroup;
use ike::proposal::IkeProposal;
use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::{Identification, Message, Notify, NotifyType};
use ike::{Config, Datagram, Endpoint, Event, Psk};

const THRESHOLD: usize = 4;

fn config(local: &str, remote: &str) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"cookie secret".to_vec(),
    ));
    Config::new(psk.clone(), psk)
}

fn policy() -> CookiePolicy {
    CookiePolicy {
        threshold: THRESHOLD,
        rotation: Duration::from_secs(60),
    }
}

fn responder(rc: Config, seed: u64) -> Endpoint {
    Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(seed)))
        .with_cookie_policy(Some(policy()))
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// IKE_SA_INIT requests from `n` spoofed initiators that never answer.
fn flood(r: &mut Endpoint, now: Instant, n: usize) -> Vec<Datagram> {
    flood_with(r, now, n, config("client", "share"))
}

fn flood_with(r: &mut Endpoint, now: Instant, n: usize, ic: Config) -> Vec<Datagram> {
    let mut attacker = Endpoint::new(None, 4500, Box::new(SeededRandom::new(99)));
    let ic = Arc::new(ic);
    let mut replies = Vec::new();
    for i in 0..n {
        let from = addr(&format!("10.9.{}.{}", i / 250, i % 250 + 1), 500);
        attacker
            .initiate(now, ic.clone(), from, addr("10.0.0.2", 500))
            .unwrap();
        let d = attacker.poll_transmit().unwrap();
        r.handle_datagram(now, from, d.remote, &d.payload).unwrap();
        replies.extend(std::iter::from_fn(|| r.poll_transmit()));
    }
    replies
}

fn ike_bytes(d: &Datagram) -> &[u8] {
    if d.non_esp_marker {
        &d.payload[4..]
    } else {
        &d.payload
    }
}

fn notify_types(d: &Datagram) -> Vec<NotifyType> {
    Message::parse(ike_bytes(d))
        .unwrap()
        .notifies()
        .map(|n| n.notify_type)
        .collect()
}

fn cookie_of(d: &Datagram) -> Option<Vec<u8>> {
    Message::parse(&d.payload)
        .unwrap()
        .notify(NotifyType::Cookie)
        .map(|n| n.data.clone())
}

#[test]
fn flood_of_half_open_inits_triggers_stateless_cookies_with_bounded_state() {
    let now = Instant::now();
    let mut r = responder(config("share", "client"), 2);
    let replies = flood(&mut r, now, 120);
    assert_eq!(replies.len(), 120, "every request answered");
    // The first THRESHOLD requests made SAs; every later one got only N(COOKIE).
    for d in &replies[..THRESHOLD] {
        assert!(cookie_of(d).is_none());
    }
    for d in &replies[THRESHOLD..] {
        assert_eq!(notify_types(d), vec![NotifyType::Cookie]);
        let m = Message::parse(&d.payload).unwrap();
        assert_eq!(m.payloads.len(), 1, "a cookie reply carries nothing else");
        assert_eq!(m.header.responder_spi, 0, "no responder SPI: no SA");
    }
    assert_eq!(r.len(), THRESHOLD, "state bounded by the threshold");
    assert_eq!(r.half_open(), THRESHOLD);
    // Cookies differ per initiator (bound to Ni, IPi, SPIi).
    let c1 = cookie_of(&replies[THRESHOLD]).unwrap();
    let c2 = cookie_of(&replies[THRESHOLD + 1]).unwrap();
    assert_ne!(c1, c2);
    // The half-open SAs expire; then requests are served without cookies again.
    let later = now + Duration::from_secs(61);
    r.handle_timeout(later);
    assert_eq!(r.len(), 0);
    let replies = flood(&mut r, later, 1);
    assert!(cookie_of(&replies[0]).is_none());
    assert_eq!(r.len(), 1);
}

fn run_legit_initiator(link: LinkConfig, seed: u64, ic: Config, rc: Config) -> Network {
    let now = Instant::now();
    let mut r = responder(rc, seed ^ 2);
    flood(&mut r, now, 20);
    assert_eq!(r.half_open(), THRESHOLD);
    let mut net = Network::new(now, link, seed);
    net.add(
        "10.0.0.1".parse().unwrap(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed ^ 1))),
    );
    net.add("10.0.0.2".parse().unwrap(), r);
    net.endpoints[0]
        .1
        .initiate(
            now,
            Arc::new(ic),
            addr("10.0.0.1", 500),
            addr("10.0.0.2", 500),
        )
        .unwrap();
    let done = net.run_until(now + Duration::from_secs(50), |n| {
        n.events[0]
            .iter()
            .any(|(_, e)| matches!(e, Event::ChildSaUp(_)))
    });
    assert!(done, "seed {seed}: {:?} {:?}", net.events, net.errors);
    net
}

#[test]
fn legit_initiator_completes_under_load() {
    let net = run_legit_initiator(
        LinkConfig::perfect(),
        1,
        config("client", "share"),
        config("share", "client"),
    );
    // Only the echoing initiator got an SA beyond the flood's.
    assert_eq!(net.endpoints[1].1.len(), THRESHOLD + 1);
    for seed in 2..12 {
        run_legit_initiator(
            LinkConfig::lossy(0.3),
            seed,
            config("client", "share"),
            config("share", "client"),
        );
    }
}

/// Delivers everything each side sends to the other until both are quiet; returns what the
/// initiator sent and what the responder sent, in order.
fn shuttle(i: &mut Endpoint, r: &mut Endpoint, now: Instant) -> (Vec<Datagram>, Vec<Datagram>) {
    let (mut sent_i, mut sent_r) = (Vec::new(), Vec::new());
    loop {
        let mut quiet = true;
        while let Some(d) = i.poll_transmit() {
            quiet = false;
            let _ = r.handle_datagram(now, d.local, d.remote, &d.payload);
            sent_i.push(d);
        }
        while let Some(d) = r.poll_transmit() {
            quiet = false;
            let _ = i.handle_datagram(now, d.local, d.remote, &d.payload);
            sent_r.push(d);
        }
        if quiet {
            return (sent_i, sent_r);
        }
    }
}

#[test]
fn cookie_then_invalid_ke_keeps_the_cookie_and_nonce() {
    // RFC 7296 §2.6: COOKIE, then INVALID_KE_PAYLOAD; the retry with the other group still
    // carries the cookie, which stays valid because the nonce is unchanged.
    let mut ic = config("client", "share");
    ic.ike_proposals = vec![IkeProposal::modern()]; // KE for x25519 first
    let mut rc = config("share", "client");
    rc.ike_proposals = vec![IkeProposal {
        dh: vec![DhGroup::Ecp256],
        ..IkeProposal::modern()
    }];
    let now = Instant::now();
    let mut r = responder(rc, 5);
    let mut flood_config = config("client", "share");
    flood_config.ike_proposals = vec![IkeProposal {
        dh: vec![DhGroup::Ecp256],
        ..IkeProposal::modern()
    }];
    flood_with(&mut r, now, THRESHOLD, flood_config);
    assert_eq!(r.half_open(), THRESHOLD);
    let mut i = Endpoint::new(None, 4500, Box::new(SeededRandom::new(6)));
    i.initiate(
        now,
        Arc::new(ic),
        addr("10.0.0.1", 500),
        addr("10.0.0.2", 500),
    )
    .unwrap();
    let (sent_i, sent_r) = shuttle(&mut i, &mut r, now);
    let answers: Vec<Vec<NotifyType>> = sent_r.iter().take(3).map(notify_types).collect();
    assert_eq!(answers[0], vec![NotifyType::Cookie]);
    assert_eq!(answers[1], vec![NotifyType::InvalidKePayload]);
    assert!(!answers[2].contains(&NotifyType::Cookie), "{answers:?}");
    let requests: Vec<Message> = sent_i
        .iter()
        .take(3)
        .map(|d| Message::parse(&d.payload).unwrap())
        .collect();
    let cookie = cookie_of(&sent_r[0]).unwrap();
    let nonce = |m: &Message| {
        m.payloads.iter().find_map(|p| match p {
            ike::wire::Payload::Nonce(n) => Some(n.0.clone()),
            _ => None,
        })
    };
    for m in &requests[1..] {
        let first = m.payloads[0].as_notify().expect("cookie first");
        assert_eq!(first.notify_type, NotifyType::Cookie);
        assert_eq!(first.data, cookie);
        assert_eq!(nonce(m), nonce(&requests[0]));
    }
    // The cookie retry repeats every other payload of the first request unchanged.
    assert_eq!(requests[1].payloads[1..], requests[0].payloads[..]);
    assert!(
        std::iter::from_fn(|| i.poll_event()).any(|(_, e)| matches!(e, Event::ChildSaUp(_))),
        "initiator not established"
    );
}

#[test]
fn forged_and_expired_cookies_are_refused_without_state() {
    let now = Instant::now();
    let mut rc = config("share", "client");
    rc.half_open_timeout = Duration::from_secs(600); // keep the load up for the whole test
    let mut r = responder(rc, 7);
    flood(&mut r, now, THRESHOLD);
    let to = addr("10.0.0.2", 500);
    // Two genuine initiators get cookies made with the first secret.
    let mut requests = Vec::new();
    let mut cookies = Vec::new();
    for (n, ip) in ["10.0.0.1", "10.0.0.3"].into_iter().enumerate() {
        let mut i = Endpoint::new(None, 4500, Box::new(SeededRandom::new(8 + n as u64)));
        let from = addr(ip, 500);
        i.initiate(now, Arc::new(config("client", "share")), from, to)
            .unwrap();
        let request = i.poll_transmit().unwrap().payload;
        r.handle_datagram(now, from, to, &request).unwrap();
        cookies.push(cookie_of(&r.poll_transmit().unwrap()).unwrap());
        requests.push((from, request));
    }
    let with_cookie = |request: &[u8], c: &[u8]| {
        let mut m = Message::parse(request).unwrap();
        m.payloads.insert(0, Notify::cookie(c.to_vec()).into());
        m.to_bytes().unwrap()
    };
    let try_cookie = |r: &mut Endpoint, at: Instant, who: usize, c: &[u8], from: SocketAddr| {
        r.handle_datagram(at, from, to, &with_cookie(&requests[who].1, c))
            .unwrap();
        r.poll_transmit().unwrap()
    };
    let (from, cookie) = (requests[0].0, cookies[0].clone());
    // Forged: one bit flipped, another version, truncated; another initiator's cookie.
    let mut forged = cookie.clone();
    forged[12] ^= 0x40;
    let mut other_version = cookie.clone();
    other_version[0] ^= 1;
    for bad in [
        &forged[..],
        &other_version[..],
        &cookie[..8],
        &cookies[1][..],
    ] {
        let reply = try_cookie(&mut r, now, 0, bad, from);
        assert_eq!(notify_types(&reply), vec![NotifyType::Cookie]);
        assert_eq!(r.len(), THRESHOLD);
    }
    // A genuine cookie sent from another address (spoofing) does not count either.
    let reply = try_cookie(&mut r, now, 0, &cookie, addr("10.0.0.9", 500));
    assert_eq!(notify_types(&reply), vec![NotifyType::Cookie]);
    assert_eq!(r.len(), THRESHOLD);
    // One rotation later the previous secret still verifies: an SA is made.
    let one_rotation = try_cookie(&mut r, now + Duration::from_secs(61), 0, &cookie, from);
    assert!(cookie_of(&one_rotation).is_none());
    assert_eq!(r.len(), THRESHOLD + 1);
    // Two rotations later the second initiator's cookie is refused.
    let two_rotations = now + Duration::from_secs(125);
    let reply = try_cookie(&mut r, two_rotations, 1, &cookies[1], requests[1].0);
    assert_eq!(notify_types(&reply), vec![NotifyType::Cookie]);
    assert_eq!(r.len(), THRESHOLD + 1);
}

//! The IKE responder (`ike::Endpoint`) with cookies on (`with_cookie_policy`, threshold 1–4),
//! flooded with IKE_SA_INIT-ish datagrams from eight addresses on ports 500 and 4500: genuine
//! requests of four in-memory initiators (seeded, computed once), the same requests with a
//! cookie the responder issued (to that address or another), with a forged cookie or with
//! one byte flipped, arbitrary datagrams, and clock jumps (structure-aware). Invariants
//! (RFC 7296 §2.6, issue 9):
//!
//! * no panic; one datagram creates at most one SA;
//! * once `threshold` SAs are half-open, an SA is created only for a request whose first
//!   payload is a COOKIE notify carrying a cookie the responder sent to that address for
//!   that request's SPIi and Ni — so half-open SAs never exceed `threshold` plus the
//!   requests with such cookies;
//! * a cookie is demanded only at or above the threshold, only from the requester, and the
//!   answer is small (no amplification);
//! * half-open SAs are gone once the half-open timeout (60 s) has passed since the last one
//!   was created.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use ike::cookie::CookiePolicy;
use ike::testing::SeededRandom;
use ike::wire::{
    prepend_non_esp_marker, strip_non_esp_marker, ExchangeType, Identification, Message, Notify,
    NotifyType, Payload,
};
use ike::{Config, Endpoint, Psk};
use libfuzzer_sys::fuzz_target;

const RESPONDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most operations one input runs (each created SA costs a key exchange).
const MAX_OPS: usize = 48;

fn config(local: &str, remote: &str) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"fuzzing shared secret".to_vec(),
    ));
    Config::new(psk.clone(), psk)
}

/// A genuine IKE_SA_INIT request (port-500 bytes) with its SPIi and Ni.
struct Request {
    bytes: Vec<u8>,
    message: Message,
}

static POOL: LazyLock<Vec<Request>> = LazyLock::new(|| {
    (0..4u64)
        .map(|i| {
            let mut initiator = Endpoint::new(None, 4500, Box::new(SeededRandom::new(100 + i)));
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 500);
            let remote = SocketAddr::new(IpAddr::V4(RESPONDER), 500);
            initiator
                .initiate(
                    Instant::now(),
                    Arc::new(config("client", "share")),
                    local,
                    remote,
                )
                .expect("initiate");
            let d = initiator.poll_transmit().expect("IKE_SA_INIT request");
            assert!(!d.non_esp_marker);
            let message = Message::parse(&d.payload).expect("own request parses");
            Request {
                bytes: d.payload,
                message,
            }
        })
        .collect()
});

#[derive(Arbitrary, Debug)]
enum Op {
    /// A genuine request.
    Init { req: u8, from: u8, nat_t: bool },
    /// A genuine request with the `cookie`-th cookie issued so far prepended.
    Echo {
        req: u8,
        from: u8,
        cookie: u8,
        nat_t: bool,
    },
    /// As `Echo`, then one byte flipped.
    Tampered {
        req: u8,
        from: u8,
        cookie: u8,
        at: u16,
        xor: u8,
        nat_t: bool,
    },
    /// A genuine request with a cookie the fuzzer made up.
    Forged {
        req: u8,
        from: u8,
        cookie: Vec<u8>,
        nat_t: bool,
    },
    /// Anything.
    Raw {
        from: u8,
        nat_t: bool,
        bytes: Vec<u8>,
    },
    /// The clock moves on.
    Wait { secs: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    threshold: u8,
    ops: Vec<Op>,
}

/// (to address, SPIi, Ni, cookie) for every N(COOKIE) the responder sent.
type Issued = Vec<(IpAddr, u64, Vec<u8>, Vec<u8>)>;

struct World {
    responder: Endpoint,
    threshold: usize,
    now: Instant,
    issued: Issued,
    /// SAs created while at or above the threshold (each for a valid cookie).
    over_threshold: usize,
    last_created: Option<Instant>,
}

fn nonce(m: &Message) -> Option<&[u8]> {
    m.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.0.as_slice()),
        _ => None,
    })
}

fn first_cookie(m: &Message) -> Option<&[u8]> {
    m.payloads
        .first()
        .and_then(Payload::as_notify)
        .filter(|n| n.notify_type == NotifyType::Cookie)
        .map(|n| n.data.as_slice())
}

fn with_cookie(req: &Request, cookie: Vec<u8>) -> Vec<u8> {
    let mut m = req.message.clone();
    m.payloads.insert(0, Notify::cookie(cookie).into());
    m.to_bytes().expect("a request with a cookie encodes")
}

fn address(from: u8, nat_t: bool) -> (SocketAddr, SocketAddr) {
    let port = if nat_t { 4500 } else { 500 };
    (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1 + from % 8)), port),
        SocketAddr::new(IpAddr::V4(RESPONDER), port),
    )
}

impl World {
    /// Sends `ike` (port-500 form; the marker is added on 4500) and checks the invariants.
    fn deliver(&mut self, from: u8, nat_t: bool, ike: &[u8]) {
        let (peer, local) = address(from, nat_t);
        let udp = if nat_t {
            prepend_non_esp_marker(ike)
        } else {
            ike.to_vec()
        };
        let (h0, n0) = (self.responder.half_open(), self.responder.len());
        let _ = self.responder.handle_datagram(self.now, peer, local, &udp);
        let (h1, n1) = (self.responder.half_open(), self.responder.len());
        assert!(n1 <= n0 + 1, "one datagram created {} SAs", n1 - n0);
        let sent = Message::parse(ike).ok();
        if n1 > n0 {
            self.last_created = Some(self.now);
            if h0 >= self.threshold {
                let m = sent.as_ref().expect("an SA from an unparseable datagram");
                let key = (
                    peer.ip(),
                    m.header.initiator_spi,
                    nonce(m).map(<[u8]>::to_vec),
                    first_cookie(m).map(<[u8]>::to_vec),
                );
                let valid = self
                    .issued
                    .iter()
                    .any(|(ip, spi, ni, c)| (*ip, *spi, Some(ni.clone()), Some(c.clone())) == key);
                assert!(
                    valid,
                    "SA created above the threshold ({h0} ≥ {}) without a cookie issued \
                     to {} for this SPIi and Ni",
                    self.threshold,
                    peer.ip()
                );
                self.over_threshold += 1;
            }
        }
        assert!(
            h1 <= self.threshold + self.over_threshold,
            "{h1} half-open SAs, threshold {} + {} with cookies",
            self.threshold,
            self.over_threshold
        );
        while let Some(d) = self.responder.poll_transmit() {
            let bytes = if d.non_esp_marker {
                strip_non_esp_marker(&d.payload).expect("marker").to_vec()
            } else {
                d.payload.clone()
            };
            let Ok(answer) = Message::parse(&bytes) else {
                panic!("the responder sent an unparseable message");
            };
            let Some(cookie) = first_cookie(&answer) else {
                continue;
            };
            if answer.header.exchange_type != ExchangeType::IkeSaInit
                || !answer.header.flags.response()
            {
                continue;
            }
            assert!(h0 >= self.threshold, "cookie demanded below the threshold");
            assert_eq!(d.remote, peer, "cookie sent to someone else");
            assert!(
                d.payload.len() <= 100,
                "cookie answer of {} bytes",
                d.payload.len()
            );
            let m = sent.as_ref().expect("a cookie for an unparseable request");
            let ni = nonce(m)
                .expect("a cookie for a request without Ni")
                .to_vec();
            self.issued
                .push((peer.ip(), m.header.initiator_spi, ni, cookie.to_vec()));
        }
    }

    fn wait(&mut self, secs: u16) {
        self.now += Duration::from_secs(u64::from(secs % 400));
        self.responder.handle_timeout(self.now);
        while self.responder.poll_transmit().is_some() {}
        if self
            .last_created
            .is_some_and(|t| self.now >= t + HALF_OPEN_TIMEOUT)
        {
            // Timers fire when due; one more pass picks up any that a retransmission timer
            // ahead of them left waiting.
            self.responder.handle_timeout(self.now);
            while self.responder.poll_transmit().is_some() {}
            assert_eq!(
                self.responder.half_open(),
                0,
                "half-open SAs outlive the half-open timeout"
            );
        }
    }

    fn issued_cookie(&self, i: u8) -> Vec<u8> {
        match self.issued.len() {
            0 => vec![0; 20],
            n => self.issued[usize::from(i) % n].3.clone(),
        }
    }
}

fuzz_target!(|input: Input| {
    let pool = &*POOL;
    let threshold = usize::from(input.threshold % 4) + 1;
    let mut world = World {
        responder: Endpoint::new(
            Some(Arc::new(config("share", "client"))),
            4500,
            Box::new(SeededRandom::new(2)),
        )
        .with_cookie_policy(Some(CookiePolicy {
            threshold,
            rotation: Duration::from_secs(120),
        })),
        threshold,
        now: Instant::now(),
        issued: Vec::new(),
        over_threshold: 0,
        last_created: None,
    };
    let req = |i: u8| &pool[usize::from(i) % pool.len()];
    for op in input.ops.into_iter().take(MAX_OPS) {
        match op {
            Op::Init {
                req: r,
                from,
                nat_t,
            } => world.deliver(from, nat_t, &req(r).bytes),
            Op::Echo {
                req: r,
                from,
                cookie,
                nat_t,
            } => {
                let bytes = with_cookie(req(r), world.issued_cookie(cookie));
                world.deliver(from, nat_t, &bytes);
            }
            Op::Tampered {
                req: r,
                from,
                cookie,
                at,
                xor,
                nat_t,
            } => {
                let mut bytes = with_cookie(req(r), world.issued_cookie(cookie));
                let at = usize::from(at) % bytes.len();
                bytes[at] ^= xor.max(1);
                world.deliver(from, nat_t, &bytes);
            }
            Op::Forged {
                req: r,
                from,
                mut cookie,
                nat_t,
            } => {
                cookie.truncate(64);
                let bytes = with_cookie(req(r), cookie);
                world.deliver(from, nat_t, &bytes);
            }
            Op::Raw { from, nat_t, bytes } => world.deliver(from, nat_t, &bytes),
            Op::Wait { secs } => world.wait(secs),
        }
    }
});

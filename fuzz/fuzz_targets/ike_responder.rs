//! The IKE responder (`ike::Endpoint`) attacked by a peer that has just completed a real
//! IKE_SA_INIT with it: the target runs an in-memory initiator (PSK, the default IBM
//! proposals, forced UDP encapsulation, 256-byte fragments) up to its IKE_AUTH request, then
//! the fuzzer drives the responder with a sequence of datagrams and timeouts: the genuine
//! IKE_AUTH datagrams (fragments) with or without byte flips, arbitrary datagrams on port 500
//! or 4500, the genuine IKE_SA_INIT again, and clock jumps. The randomness of both sides is
//! seeded, so the responder derives the same keys on every run. Invariants (issue 9):
//!
//! * no panic, and the responder holds at most one SA per IKE_SA_INIT request it was sent;
//! * the responder never reports `IkeSaUp` or `ChildSaUp` unless every genuine IKE_AUTH
//!   datagram was delivered unmodified;
//! * it never answers unauthenticated input beyond IKE_SA_INIT: after a tampered or arbitrary
//!   datagram that is not an IKE_SA_INIT request, it transmits nothing (a tampered copy of
//!   the last answered request must not get the cached response replayed);
//! * the message IDs of its responses never decrease within one IKE SA (a new SA, e.g. after
//!   the first one died of DPD and the genuine IKE_SA_INIT came again, starts at 0).
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use ike::testing::SeededRandom;
use ike::wire::{strip_non_esp_marker, Identification};
use ike::{Config, Datagram, Endpoint, Event, Psk};
use libfuzzer_sys::fuzz_target;

const INITIATOR: &str = "10.0.0.1";
const RESPONDER: &str = "10.0.0.2";
/// Exchange type IKE_SA_INIT (RFC 7296 §3.1).
const IKE_SA_INIT: u8 = 34;

fn config(local: &str, remote: &str) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"fuzzing shared secret".to_vec(),
    ));
    Config::new(psk.clone(), psk)
}

fn responder() -> Endpoint {
    Endpoint::new(
        Some(Arc::new(config("share", "client"))),
        4500,
        Box::new(SeededRandom::new(2)),
    )
}

/// The genuine exchange, computed once: the initiator's IKE_SA_INIT request and the
/// IKE_AUTH datagrams it sends after the responder's (deterministic) answer.
struct Script {
    init: Datagram,
    auth: Vec<Datagram>,
}

static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    let now = Instant::now();
    let local = SocketAddr::new(INITIATOR.parse().expect("address"), 500);
    let remote = SocketAddr::new(RESPONDER.parse().expect("address"), 500);
    let mut initiator = Endpoint::new(None, 4500, Box::new(SeededRandom::new(1)));
    // Small fragments, so that even the PSK IKE_AUTH request arrives as SKF fragments and
    // the responder's reassembly (RFC 7383 §2.6) is in play.
    let mut ic = config("client", "share");
    ic.fragment_size = 256;
    initiator
        .initiate(now, Arc::new(ic), local, remote)
        .expect("initiate");
    let init = initiator.poll_transmit().expect("IKE_SA_INIT request");
    let mut r = responder();
    r.handle_datagram(now, init.local, init.remote, &init.payload)
        .expect("responder accepts IKE_SA_INIT");
    let answer = r.poll_transmit().expect("IKE_SA_INIT response");
    initiator
        .handle_datagram(now, answer.local, answer.remote, &answer.payload)
        .expect("initiator accepts the response");
    let auth: Vec<Datagram> = std::iter::from_fn(|| initiator.poll_transmit()).collect();
    assert!(auth.len() >= 2, "IKE_AUTH request not fragmented");
    Script { init, auth }
});

#[derive(Debug, Arbitrary)]
enum Op {
    /// A genuine IKE_AUTH datagram, with byte flips (`(offset, xor)`).
    Auth { index: u8, flips: Vec<(u16, u8)> },
    /// The genuine IKE_SA_INIT request again.
    Init,
    /// Arbitrary bytes from the initiator's address.
    Raw { nat_t: bool, bytes: Vec<u8> },
    /// Advance the clock by this many 100 ms steps and run timers.
    Wait(u16),
}

/// Exchange type and message ID of an IKE message in a UDP payload, and whether it is a
/// request.
fn describe(port: u16, payload: &[u8]) -> Option<(u8, bool, u32)> {
    let h = header(port, payload)?;
    let response = h[19] & 0x20 != 0;
    Some((
        h[18],
        !response,
        u32::from_be_bytes([h[20], h[21], h[22], h[23]]),
    ))
}

/// The IKE header of a UDP payload.
fn header(port: u16, payload: &[u8]) -> Option<&[u8]> {
    let ike = if port == 4500 {
        strip_non_esp_marker(payload)?
    } else {
        payload
    };
    ike.get(..28)
}

/// The IKE SA a message belongs to: its two SPIs.
fn sa_of(port: u16, payload: &[u8]) -> Option<[u8; 16]> {
    header(port, payload)?.get(..16)?.try_into().ok()
}

fuzz_target!(|ops: Vec<Op>| {
    let script = &*SCRIPT;
    let start = Instant::now();
    let mut now = start;
    let mut r = responder();
    let mut init_requests = 1usize;
    r.handle_datagram(
        now,
        script.init.local,
        script.init.remote,
        &script.init.payload,
    )
    .expect("responder accepts IKE_SA_INIT");
    let mut delivered = vec![false; script.auth.len()];
    let mut last_response_id: HashMap<[u8; 16], u32> = HashMap::new();

    let drain = |r: &mut Endpoint, last: &mut HashMap<[u8; 16], u32>| -> Vec<String> {
        let mut sent = Vec::new();
        while let Some(d) = r.poll_transmit() {
            sent.push(format!(
                "{} bytes, (exchange, request, message ID) {:?}",
                d.payload.len(),
                describe(d.local.port(), &d.payload)
            ));
            if let (Some((_, false, id)), Some(sa)) = (
                describe(d.local.port(), &d.payload),
                sa_of(d.local.port(), &d.payload),
            ) {
                if let Some(&prev) = last.get(&sa) {
                    assert!(
                        id >= prev,
                        "response message ID went back from {prev} to {id}"
                    );
                }
                last.insert(sa, id);
            }
        }
        sent
    };
    drain(&mut r, &mut last_response_id);

    for op in ops.iter().take(64) {
        let (authentic, datagram) = match op {
            Op::Auth { index, flips } => {
                let i = usize::from(*index) % script.auth.len();
                let mut d = script.auth[i].clone();
                for &(at, xor) in flips.iter().take(8) {
                    let at = usize::from(at) % d.payload.len();
                    d.payload[at] ^= xor;
                }
                // A flip may be undone by another; compare the bytes.
                let authentic = d.payload == script.auth[i].payload;
                if authentic {
                    delivered[i] = true;
                }
                (authentic, d)
            }
            Op::Init => {
                init_requests += 1;
                (true, script.init.clone())
            }
            Op::Raw { nat_t, bytes } => {
                let port = if *nat_t { 4500 } else { 500 };
                let mut d = script.auth[0].clone();
                d.local.set_port(port);
                d.remote.set_port(port);
                d.payload = bytes.clone();
                if let Some((IKE_SA_INIT, true, _)) = describe(port, bytes) {
                    init_requests += 1;
                }
                (false, d)
            }
            Op::Wait(steps) => {
                now += Duration::from_millis(100) * u32::from(*steps);
                r.handle_timeout(now);
                drain(&mut r, &mut last_response_id);
                continue;
            }
        };
        let _ = r.handle_datagram(now, datagram.local, datagram.remote, &datagram.payload);
        let sent = drain(&mut r, &mut last_response_id);
        if !authentic {
            let seen = describe(datagram.remote.port(), &datagram.payload);
            let is_init_request = matches!(seen, Some((IKE_SA_INIT, true, _)));
            assert!(
                sent.is_empty() || is_init_request,
                "answered unauthenticated input ({} bytes, {:?}) with {sent:?}",
                datagram.payload.len(),
                describe(datagram.remote.port(), &datagram.payload)
            );
        }
        assert!(
            r.len() <= init_requests,
            "{} SAs from {init_requests} IKE_SA_INIT requests",
            r.len()
        );

        while let Some((_, event)) = r.poll_event() {
            if matches!(event, Event::IkeSaUp { .. } | Event::ChildSaUp(_)) {
                assert!(
                    delivered.iter().all(|d| *d),
                    "SA up without the genuine IKE_AUTH: {event:?}"
                );
            }
        }
    }
});

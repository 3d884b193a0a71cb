//! Runs N independent initiator/responder pairs through IKE_SA_INIT + IKE_AUTH (PSK,
//! transport CHILD_SA), a CHILD_SA rekey, an IKE SA rekey and a DELETE over a lossy in-memory
//! link with simulated time, and reports how many finished each step (`rekeyed` counts pairs
//! that completed both rekeys).
//!
//! ```text
//! cargo run --release -p ike --example handshake_storm -- --count 400 --loss 0.3 --seed 1
//! ```
//!
//! `--loss P` drops, duplicates and reorders datagrams with probability P each. The CPU figure
//! is the wall time of the (single-threaded, I/O-free) establishment phase divided by the
//! number of pairs: IKE_SA_INIT + IKE_AUTH for both peers, retransmissions included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::Identification;
use ike::{Config, Endpoint, Event, Psk, SaHandle};

struct Args {
    count: u64,
    loss: f64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        count: 100,
        loss: 0.0,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--count" => args.count = value.parse().map_err(|e| format!("--count: {e}"))?,
            "--loss" => args.loss = value.parse().map_err(|e| format!("--loss: {e}"))?,
            "--seed" => args.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !(0.0..1.0).contains(&args.loss) {
        return Err("--loss must be in [0, 1)".into());
    }
    Ok(args)
}

fn config(local: &str, remote: &str) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn(local),
        Some(Identification::fqdn(remote)),
        b"storm shared secret".to_vec(),
    ));
    let mut c = Config::new(psk.clone(), psk);
    // A lossy link in both directions fails a round trip with probability 1-(1-P)^2; give
    // the exchange enough tries that no pair gives up at P = 0.3.
    c.retransmit.tries = 15;
    c.retransmit.limit = Duration::from_secs(30);
    c.half_open_timeout = Duration::from_secs(600);
    c
}

#[derive(Default)]
struct Outcome {
    established: bool,
    rekeyed: bool,
    deleted: bool,
    cpu: Duration,
}

/// The handles of the SA that came up on `side`, oldest first, through every IKE SA rekey
/// (a late duplicate IKE_SA_INIT may create a second, half-open responder SA, which times
/// out on its own and is not counted).
fn lineage(net: &Network, side: usize) -> Vec<SaHandle> {
    let mut v: Vec<SaHandle> = Vec::new();
    for (h, e) in &net.events[side] {
        match e {
            Event::IkeSaUp { .. } if v.is_empty() => v.push(*h),
            Event::IkeSaRekeyed {
                old_spi, new_spi, ..
            } if v.last() == Some(old_spi) => v.push(*new_spi),
            _ => {}
        }
    }
    v
}

/// Events of the SA that came up on `side`, whatever its handle.
fn count(net: &Network, side: usize, f: impl Fn(&Event) -> bool) -> usize {
    let handles = lineage(net, side);
    net.events[side]
        .iter()
        .filter(|(h, e)| handles.contains(h) && f(e))
        .count()
}

fn run_pair(i: u64, args: &Args, ic: &Arc<Config>, rc: &Arc<Config>) -> Outcome {
    let mut out = Outcome::default();
    let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i);
    let start = Instant::now();
    let mut net = Network::new(start, LinkConfig::lossy(args.loss), seed);
    let a: SocketAddr = "10.0.0.1:500".parse().expect("address");
    let b: SocketAddr = "10.0.0.2:500".parse().expect("address");
    net.add(
        a.ip(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed ^ 0xa))),
    );
    net.add(
        b.ip(),
        Endpoint::new(
            Some(rc.clone()),
            4500,
            Box::new(SeededRandom::new(seed ^ 0xb)),
        ),
    );
    let cpu = Instant::now();
    let Ok(handle) = net.endpoints[0].1.initiate(start, ic.clone(), a, b) else {
        return out;
    };
    let hour = Duration::from_secs(3600);
    out.established = net.run_until(net.now + hour, |n| {
        (0..2).all(|s| count(n, s, |e| matches!(e, Event::ChildSaUp(_))) == 1)
    });
    out.cpu = cpu.elapsed();
    if !out.established {
        if std::env::var_os("STORM_DEBUG").is_some() {
            eprintln!(
                "pair {i} not established: {:?}\n{:?}",
                net.events, net.errors
            );
        }
        return out;
    }
    let spi_in = net.events[0].iter().find_map(|(_, e)| match e {
        Event::ChildSaUp(c) => Some(c.spi_in),
        _ => None,
    });
    let now = net.now;
    let mut child_rekeyed = false;
    if let Some(spi) = spi_in {
        if net.endpoints[0].1.rekey_child(now, handle, spi).is_ok() {
            child_rekeyed = net.run_until(net.now + hour, |n| {
                (0..2).all(|s| {
                    count(n, s, |e| matches!(e, Event::ChildSaRekeyed { .. })) == 1
                        && count(n, s, |e| matches!(e, Event::ChildSaDown { .. })) == 1
                })
            });
        }
    }
    let now = net.now;
    let mut ike_rekeyed = false;
    if net.endpoints[0].1.rekey_ike(now, handle).is_ok() {
        // Done when both sides moved to the new SA and the old one is gone from both.
        ike_rekeyed = net.run_until(net.now + hour, |n| {
            (0..2).all(|s| {
                let l = lineage(n, s);
                l.len() == 2 && n.endpoints[s].1.sa(l[0]).is_none()
            })
        });
    }
    out.rekeyed = child_rekeyed && ike_rekeyed;
    if !out.rekeyed && std::env::var_os("STORM_DEBUG").is_some() {
        eprintln!("pair {i} not rekeyed: {:#?}\n{:?}", net.events, net.errors);
    }
    let now = net.now;
    let handle = lineage(&net, 0).last().copied().unwrap_or(handle);
    if net.endpoints[0].1.delete(now, handle).is_ok() {
        out.deleted = net.run_until(net.now + hour, |n| {
            (0..2).all(|s| count(n, s, |e| matches!(e, Event::IkeSaDown { .. })) == 1)
        });
        if !out.deleted && std::env::var_os("STORM_DEBUG").is_some() {
            eprintln!("pair {i}: {:#?}\n{:?}", net.events, net.errors);
        }
    }
    out
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("handshake_storm: {e}");
            eprintln!("usage: handshake_storm [--count N] [--loss P] [--seed S]");
            std::process::exit(2);
        }
    };
    let ic = Arc::new(config("client", "share"));
    let rc = Arc::new(config("share", "client"));
    let (mut established, mut rekeyed, mut deleted) = (0u64, 0u64, 0u64);
    let mut cpu = Duration::ZERO;
    for i in 0..args.count {
        let o = run_pair(i, &args, &ic, &rc);
        established += u64::from(o.established);
        rekeyed += u64::from(o.rekeyed);
        deleted += u64::from(o.deleted);
        cpu += o.cpu;
    }
    let n = args.count.max(1);
    let mean = cpu.as_secs_f64() * 1e6 / n as f64;
    println!(
        "established {established}/{n}, rekeyed {rekeyed}/{n}, deleted {deleted}/{n}, \
         mean {mean:.0} µs CPU per handshake"
    );
    if established != n || rekeyed != n || deleted != n {
        std::process::exit(1);
    }
}

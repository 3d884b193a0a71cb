//! Runs the userspace datapath with one peer and a hand-keyed AES-256-GCM SA pair until
//! stdin closes or a line is entered; prints the counters at the end. For labs and
//! benchmarks, e.g. in two network namespaces:
//!
//! ```text
//! ip netns exec A cargo run --release -p esp --example userspace_peer -- 10.77.0.1 10.77.0.2 a
//! ip netns exec B cargo run --release -p esp --example userspace_peer -- 10.77.0.2 10.77.0.1 b
//! ```
//!
//! The third argument picks the side (`a` or `b`), which fixes the SPIs and keys so the two
//! processes agree. Optional further arguments: `raw` uses raw ESP instead of UDP 4500 (`udp`),
//! `tunnel` uses tunnel mode instead of transport mode.

use std::io::BufRead;
use std::net::Ipv4Addr;

use esp::datapath::{Datapath, DatapathConfig, Encapsulation, PeerConfig};
use esp::{Algorithm, InboundSa, Mode, OutboundSa, SaConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: userspace_peer LOCAL PEER a|b [udp|raw] [tunnel]".into());
    }
    let local: Ipv4Addr = args[0].parse()?;
    let peer: Ipv4Addr = args[1].parse()?;
    let (ab, ba) = (
        (0xa0b0_0001u32, [0x11u8; 36]),
        (0xb0a0_0001u32, [0x22u8; 36]),
    );
    let ((out_spi, out_key), (in_spi, in_key)) = match args[2].as_str() {
        "a" => (ab, ba),
        "b" => (ba, ab),
        _ => return Err("side must be a or b".into()),
    };
    let mut pc = PeerConfig::new();
    for opt in &args[3..] {
        match opt.as_str() {
            "udp" => pc.encapsulation = Encapsulation::UDP_4500,
            "raw" => pc.encapsulation = Encapsulation::Raw,
            "tunnel" => pc.mode = Mode::Tunnel,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let sa = |spi| {
        let mut c = SaConfig::new(spi, Algorithm::AesGcm16_256);
        c.mode = pc.mode;
        c
    };
    let outbound = OutboundSa::new(sa(out_spi), &out_key)?;
    let inbound = InboundSa::new(sa(in_spi), &in_key)?;
    let dp = Datapath::start(DatapathConfig::new(local))?;
    dp.add_peer(peer, pc)?;
    dp.install_sas(peer, outbound, inbound)?;
    eprintln!("running: {dp:?}");
    let _ = std::io::stdin().lock().lines().next();
    eprintln!("sa counters: {:?}", dp.counters(peer));
    eprintln!("stats: {:?}", dp.shutdown());
    Ok(())
}

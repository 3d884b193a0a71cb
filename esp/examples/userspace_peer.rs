//! Runs the userspace datapath with a hand-keyed AES-256-GCM SA pair until stdin closes or a
//! line is entered; prints the counters at the end. For labs and benchmarks, e.g. in two
//! network namespaces:
//!
//! ```text
//! ip netns exec A cargo run --release -p esp --example userspace_peer -- 10.77.0.1 10.77.0.2 a
//! ip netns exec B cargo run --release -p esp --example userspace_peer -- 10.77.0.2 10.77.0.1 b
//! ```
//!
//! The last argument picks the side (`a` or `b`), which fixes the SPIs and keys so the two
//! processes agree. An optional fifth argument `raw` uses raw ESP instead of UDP 4500.

use std::io::BufRead;
use std::net::Ipv4Addr;

use esp::datapath::{Datapath, DatapathConfig, Encapsulation};
use esp::{Algorithm, InboundSa, OutboundSa, SaConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: userspace_peer LOCAL PEER a|b [raw]".into());
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
    let mut cfg = DatapathConfig::new(local, peer);
    if args.get(3).map(String::as_str) == Some("raw") {
        cfg.encapsulation = Encapsulation::Raw;
    }
    let outbound = OutboundSa::new(SaConfig::new(out_spi, Algorithm::AesGcm16_256), &out_key)?;
    let inbound = InboundSa::new(SaConfig::new(in_spi, Algorithm::AesGcm16_256), &in_key)?;
    let dp = Datapath::start(cfg, outbound, inbound)?;
    eprintln!("running: {dp:?}");
    let _ = std::io::stdin().lock().lines().next();
    eprintln!("sa counters: {:?}", dp.counters());
    eprintln!("stats: {:?}", dp.shutdown());
    Ok(())
}

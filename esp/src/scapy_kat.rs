//! Cross-implementation known answers: ESP packets sealed by scapy's independent ESP code
//! (`tests/fixtures/gen_scapy_kat.py`), compared byte for byte with ours, and opened by us.

use crate::transport::{open_transport, seal_transport, seal_tunnel};
use crate::{Algorithm, InboundSa, Mode, OutboundSa, SaConfig, MAX_OVERHEAD};

const FIXTURE: &str = include_str!("../tests/fixtures/scapy_kat.txt");

struct Case {
    name: String,
    mode: Mode,
    config: SaConfig,
    seq: u64,
    key: Vec<u8>,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

fn cases() -> Vec<Case> {
    FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 8, "{l}");
            let key = hex::decode(f[5]).unwrap();
            let algorithm = match key.len() {
                20 => Algorithm::AesGcm16_128,
                36 => Algorithm::AesGcm16_256,
                48 => Algorithm::AesCbc128HmacSha256,
                64 => Algorithm::AesCbc256HmacSha256,
                n => panic!("key length {n}"),
            };
            let mode = match f[1] {
                "transport" => Mode::Transport,
                "tunnel" => Mode::Tunnel,
                m => panic!("mode {m}"),
            };
            Case {
                name: f[0].to_string(),
                mode,
                config: SaConfig {
                    mode,
                    esn: f[2] == "1",
                    ..SaConfig::new(u32::from_str_radix(f[3], 16).unwrap(), algorithm)
                },
                seq: f[4].parse().unwrap(),
                key,
                plain: hex::decode(f[6]).unwrap(),
                sealed: hex::decode(f[7]).unwrap(),
            }
        })
        .collect()
}

#[test]
fn fixture_is_complete() {
    let c = cases();
    assert_eq!(c.len(), 7);
    assert!(c
        .iter()
        .any(|c| c.config.algorithm == Algorithm::AesCbc128HmacSha256 && c.config.esn));
    assert!(c.iter().any(|c| c.config.esn));
    assert!(c.iter().any(|c| c.mode == Mode::Tunnel));
    assert!(c.iter().any(|c| c.plain[0] >> 4 == 6));
}

#[test]
fn we_seal_exactly_what_scapy_sealed() {
    for c in cases() {
        let mut o = OutboundSa::new(c.config, &c.key).unwrap();
        o.next_seq = c.seq;
        let mut out = vec![0u8; c.plain.len() + MAX_OVERHEAD + 40];
        let n = match c.mode {
            Mode::Transport => seal_transport(&mut o, &c.plain, &mut out).unwrap(),
            Mode::Tunnel => seal_tunnel(&mut o, &c.plain, &mut out).unwrap(),
        };
        assert_eq!(hex::encode(&out[..n]), hex::encode(&c.sealed), "{}", c.name);
    }
}

#[test]
fn we_open_what_scapy_sealed() {
    for c in cases() {
        let mut i = InboundSa::new(c.config, &c.key).unwrap();
        // Place the window just below the packet, as after earlier traffic.
        i.replay.update(c.seq - 1);
        let mut buf = c.sealed.clone();
        match c.mode {
            Mode::Transport => {
                let r = open_transport(&mut i, &mut buf).unwrap();
                assert_eq!(&buf[r], &c.plain[..], "{}", c.name);
            }
            Mode::Tunnel => {
                let op = i.open(&mut buf).unwrap();
                assert_eq!(op.next_header, 4);
                assert_eq!(&buf[op.payload], &c.plain[..], "{}", c.name);
            }
        }
        assert_eq!(i.highest_sequence(), c.seq);
        // And scapy's packet is a replay now.
        let mut again = c.sealed.clone();
        let r = match c.mode {
            Mode::Transport => open_transport(&mut i, &mut again).map(|_| ()),
            Mode::Tunnel => i.open(&mut again).map(|_| ()),
        };
        assert_eq!(r, Err(crate::Error::Replayed(c.seq)), "{}", c.name);
    }
}

//! ESP receive path on arbitrary bytes with a fixed SA (RFC 4303 §3.4): length/SPI checks,
//! the replay window, ICV verification and decryption, trailer checks — reached bare, through
//! transport-mode IP handling (`open_transport`), or through the NAT-T port classifier
//! (RFC 3948). The first byte picks transform, ESN, mode and entry point; the seeds are
//! packets sealed with the same keys (see `fuzz/seeds.py`), so the fuzzer starts past the ICV
//! and mutates framing, sequence numbers and lengths. Nothing may panic, and an opened packet
//! must point inside the buffer and be the window's new top or below it.
#![no_main]

use esp::udp_encap::{classify, Encapsulated};
use esp::{transport, Algorithm, InboundSa, Lifetime, Mode, SaConfig, DEFAULT_WINDOW};
use libfuzzer_sys::fuzz_target;

/// SPI and key byte the seeds are sealed with.
const SPI: u32 = 0x1000_0001;
const KEY_BYTE: u8 = 0x42;

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::AesGcm16_128,
    Algorithm::AesGcm16_256,
    Algorithm::AesCbc128HmacSha256,
    Algorithm::AesCbc256HmacSha256,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let algorithm = ALGORITHMS[usize::from(sel & 3)];
    let config = SaConfig {
        spi: SPI,
        algorithm,
        mode: if sel & 8 == 0 {
            Mode::Transport
        } else {
            Mode::Tunnel
        },
        esn: sel & 4 != 0,
        replay_window: DEFAULT_WINDOW,
        lifetime: Lifetime::UNLIMITED,
    };
    let key = vec![KEY_BYTE; algorithm.key_material_len()];
    let mut sa = InboundSa::new(config, &key).expect("valid fixed SA");
    let mut buf = rest.to_vec();
    match (sel >> 4) & 3 {
        0 => {
            if let Ok(opened) = sa.open(&mut buf) {
                assert!(opened.payload.end <= buf.len());
                assert!(opened.sequence <= sa.highest_sequence());
            }
        }
        1 => {
            if let Ok(range) = transport::open_transport(&mut sa, &mut buf) {
                assert!(range.end <= buf.len());
            }
        }
        _ => {
            if let Ok(Encapsulated::Esp(esp)) = classify(rest) {
                let mut esp = esp.to_vec();
                if let Ok(opened) = sa.open(&mut esp) {
                    assert!(opened.payload.end <= esp.len());
                }
            }
        }
    }
});

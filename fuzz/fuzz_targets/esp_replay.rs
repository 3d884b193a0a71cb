//! The ESP anti-replay window through the whole receive path (RFC 4303 §3.4.3, ESN per
//! Appendix A), checked against a model. The fuzzer chooses the window size, ESN, and a
//! sequence of operations: authentic packets with chosen 64-bit sequence numbers (sealed here
//! with AES-GCM-256 through ring, independently of the `esp` crate), re-deliveries, tampered
//! copies, authentic packets with arbitrary trailers, and garbage. Invariants:
//!
//! * an authentic packet is accepted exactly when the model says so: its sequence number is
//!   inferable from the low 32 bits (it lies in `[top − W + 1, top − W + 2^32]`), above the
//!   window's top, or inside the window and never accepted before;
//! * no sequence number is ever accepted twice; an accepted packet reports its full sequence
//!   number and payload; `highest_sequence` is the model's top;
//! * a packet that fails authentication (tampered, forged) never moves the window;
//! * an authentic packet with a bad trailer is rejected but still moves the window (the ICV
//!   verified, §3.4.3), and a good trailer yields exactly the payload and next header sealed.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use esp::{Algorithm, Error, InboundSa, Lifetime, Mode, SaConfig, MAX_WINDOW, MIN_WINDOW};
use libfuzzer_sys::fuzz_target;
use ring::aead;

const SPI: u32 = 0x1000_0001;
const KEYMAT: [u8; 36] = [0x42; 36];

#[derive(Debug, Arbitrary)]
enum Seq {
    /// One past the top.
    Next,
    /// `top + d`.
    Ahead(u16),
    /// `top − d`.
    Behind(u16),
    /// `top ± 2^32 + d`: the next or previous ESN subspace.
    Subspace { up: bool, d: i16 },
    /// Anything.
    Absolute(u64),
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// An authentic packet with a valid trailer.
    Send {
        seq: Seq,
        next_header: u8,
        payload: Vec<u8>,
    },
    /// An authentic packet whose plaintext (trailer included) is the fuzzer's.
    SendRaw { seq: Seq, plaintext: Vec<u8> },
    /// Deliver an earlier packet again.
    Replay(u16),
    /// Deliver an earlier packet with one byte changed.
    Tamper { index: u16, at: u16, xor: u8 },
    /// Arbitrary bytes.
    Garbage(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    window: u16,
    esn: bool,
    ops: Vec<Op>,
}

/// What a packet is, for the model.
#[derive(Clone)]
struct Sent {
    seq: u64,
    bytes: Vec<u8>,
    /// `Some((next_header, payload))` when the trailer is valid.
    expect: Option<(u8, Vec<u8>)>,
    /// False for tampered copies.
    authentic: bool,
}

struct Model {
    window: u64,
    esn: bool,
    top: u64,
    accepted: HashSet<u64>,
}

impl Model {
    /// Whether the receiver reconstructs `seq` from its low half (RFC 4303 A2.2).
    fn inferable(&self, seq: u64) -> bool {
        if !self.esn {
            return seq <= u64::from(u32::MAX);
        }
        let lo = i128::from(self.top) - i128::from(self.window) + 1;
        let s = i128::from(seq);
        s >= lo && s < lo + (1i128 << 32)
    }

    /// Whether an authentic packet with `seq` passes the window.
    fn passes(&self, seq: u64) -> bool {
        seq != 0
            && self.inferable(seq)
            && (seq > self.top || (self.top - seq < self.window && !self.accepted.contains(&seq)))
    }

    fn record(&mut self, seq: u64) {
        assert!(self.accepted.insert(seq), "sequence {seq} accepted twice");
        self.top = self.top.max(seq);
    }
}

fn choose(seq: &Seq, model: &Model) -> Option<u64> {
    let top = model.top;
    let s = match *seq {
        Seq::Next => top.checked_add(1)?,
        Seq::Ahead(d) => top.checked_add(u64::from(d))?,
        Seq::Behind(d) => top.checked_sub(u64::from(d))?,
        Seq::Subspace { up, d } => {
            let base = if up {
                top.checked_add(1 << 32)?
            } else {
                top.checked_sub(1 << 32)?
            };
            base.checked_add_signed(i64::from(d))?
        }
        Seq::Absolute(s) => s,
    };
    let max = if model.esn {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    (s != 0 && s <= max).then_some(s)
}

/// Seals `plaintext` (trailer included) as an ESP packet with sequence number `seq`
/// (RFC 4106: nonce = salt ‖ IV, AAD = SPI ‖ [seq high ‖] seq low).
fn seal(esn: bool, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &KEYMAT[..32]).expect("256-bit key"),
    );
    // Any IV unique per key works; using the sequence number keeps packets distinct.
    let iv = seq.to_be_bytes();
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&KEYMAT[32..]);
    nonce[4..].copy_from_slice(&iv);
    let mut aad = SPI.to_be_bytes().to_vec();
    if esn {
        aad.extend_from_slice(&((seq >> 32) as u32).to_be_bytes());
    }
    aad.extend_from_slice(&(seq as u32).to_be_bytes());

    let mut packet = SPI.to_be_bytes().to_vec();
    packet.extend_from_slice(&(seq as u32).to_be_bytes());
    packet.extend_from_slice(&iv);
    let mut ct = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&aad),
            &mut ct,
        )
        .expect("GCM seals short inputs");
    packet.extend_from_slice(&ct);
    packet.extend_from_slice(tag.as_ref());
    packet
}

/// Payload ‖ padding 1, 2, 3 … to a 4-byte boundary ‖ pad length ‖ next header.
fn with_trailer(payload: &[u8], next_header: u8) -> Vec<u8> {
    let pad = (4 - (payload.len() + 2) % 4) % 4;
    let mut pt = payload.to_vec();
    pt.extend((1..=pad as u8).collect::<Vec<_>>());
    pt.push(pad as u8);
    pt.push(next_header);
    pt
}

/// What a trailer decodes to when it is valid (RFC 4303 §2.4-2.6).
fn parse_trailer(pt: &[u8]) -> Option<(u8, Vec<u8>)> {
    let [.., pad, nh] = pt else { return None };
    let payload_len = pt.len().checked_sub(2 + usize::from(*pad))?;
    let padding = &pt[payload_len..pt.len() - 2];
    padding
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i + 1)
        .then(|| (*nh, pt[..payload_len].to_vec()))
}

fuzz_target!(|input: Input| {
    let window = u32::from(input.window).clamp(MIN_WINDOW, MAX_WINDOW);
    let config = SaConfig {
        spi: SPI,
        algorithm: Algorithm::AesGcm16_256,
        mode: Mode::Transport,
        esn: input.esn,
        replay_window: window,
        lifetime: Lifetime::UNLIMITED,
    };
    let mut sa = InboundSa::new(config, &KEYMAT).expect("valid SA");
    let mut model = Model {
        window: u64::from(window),
        esn: input.esn,
        top: 0,
        accepted: HashSet::new(),
    };
    let mut sent: Vec<Sent> = Vec::new();

    for op in input.ops.iter().take(256) {
        let packet = match op {
            Op::Send {
                seq,
                next_header,
                payload,
            } => {
                let Some(s) = choose(seq, &model) else {
                    continue;
                };
                let payload = &payload[..payload.len().min(256)];
                let pt = with_trailer(payload, *next_header);
                sent.push(Sent {
                    seq: s,
                    bytes: seal(input.esn, s, &pt),
                    expect: Some((*next_header, payload.to_vec())),
                    authentic: true,
                });
                sent.len() - 1
            }
            Op::SendRaw { seq, plaintext } => {
                let Some(s) = choose(seq, &model) else {
                    continue;
                };
                // GCM aligns the plaintext to 4 bytes and needs at least the trailer.
                let len = plaintext.len().min(256) / 4 * 4;
                if len == 0 {
                    continue;
                }
                let pt = &plaintext[..len];
                sent.push(Sent {
                    seq: s,
                    bytes: seal(input.esn, s, pt),
                    expect: parse_trailer(pt),
                    authentic: true,
                });
                sent.len() - 1
            }
            Op::Replay(i) => {
                if sent.is_empty() {
                    continue;
                }
                usize::from(*i) % sent.len()
            }
            Op::Tamper { index, at, xor } => {
                // Only authentic packets are tampered with: a second flip of a tampered copy
                // could restore the original.
                let originals: Vec<usize> =
                    (0..sent.len()).filter(|&i| sent[i].authentic).collect();
                if originals.is_empty() || *xor == 0 {
                    continue;
                }
                let mut copy = sent[originals[usize::from(*index) % originals.len()]].clone();
                let at = usize::from(*at) % copy.bytes.len();
                copy.bytes[at] ^= xor;
                copy.authentic = false;
                sent.push(copy);
                sent.len() - 1
            }
            Op::Garbage(bytes) => {
                let mut bytes = bytes.clone();
                let top = sa.highest_sequence();
                let _ = sa.open(&mut bytes);
                assert_eq!(sa.highest_sequence(), top, "garbage moved the window");
                continue;
            }
        };

        let p = &sent[packet];
        let mut bytes = p.bytes.clone();
        let result = sa.open(&mut bytes);
        if !p.authentic {
            assert!(result.is_err(), "a tampered packet opened: {result:?}");
            assert_eq!(
                sa.highest_sequence(),
                model.top,
                "a forgery moved the window"
            );
            continue;
        }
        let passes = model.passes(p.seq);
        if passes {
            model.record(p.seq);
        }
        match (&result, &p.expect, passes) {
            (Ok(opened), Some((nh, payload)), true) => {
                assert_eq!(opened.sequence, p.seq);
                assert_eq!(opened.next_header, *nh);
                assert_eq!(&bytes[opened.payload.clone()], &payload[..]);
            }
            (Err(Error::BadPadding), None, true) => {}
            (Err(_), _, false) => {}
            _ => panic!(
                "seq {} (top {}, window {}, esn {}): expected pass={} trailer-valid={}, got {:?}",
                p.seq,
                model.top,
                model.window,
                model.esn,
                passes,
                p.expect.is_some(),
                result
            ),
        }
        assert_eq!(sa.highest_sequence(), model.top);
    }
});

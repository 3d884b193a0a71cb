//! The ESP security association, one type per direction (RFC 4303 §3).
//!
//! Both directions work on caller-owned buffers and never allocate per packet. Sealed
//! packets start at the SPI: the caller puts them after an IP header (transport/tunnel, see
//! [`crate::transport`]) or in a UDP datagram (NAT-T, see [`crate::udp_encap`]).

use core::fmt;
use core::ops::Range;

use crate::algorithm::{Algorithm, Cipher};
use crate::header::{
    EspHeader, ESP_HEADER_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE,
};
use crate::lifetime::{Accounting, Counters, Event, Lifetime};
use crate::replay::{ReplayWindow, DEFAULT_WINDOW};
use crate::{Error, Result};

/// ESP padding can be at most 255 bytes (RFC 4303 §2.4); we only ever pad to alignment.
const TRAILER_LEN: usize = 2;

/// Largest payload we seal: a sealed packet must still fit the 16-bit IP total length with
/// any transform (the worst is AES-CBC: 16-byte IV, up to 15 bytes of padding).
pub const MAX_PAYLOAD: usize = 65535 - 40 - MAX_OVERHEAD;

/// How close to the end of the sequence space the SA asks for a rekey: 2^24 packets leave
/// seconds of margin even at millions of packets per second.
pub const SEQUENCE_SOFT_MARGIN: u64 = 1 << 24;

/// Encapsulation mode (RFC 4301 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The payload is the transport payload of the original IP packet; the next header is
    /// the original protocol.
    Transport,
    /// The payload is a whole inner IP packet; the next header is 4 (IPv4) or 41 (IPv6).
    Tunnel,
}

/// The parameters of one SA direction, as negotiated by IKE (or keyed by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaConfig {
    /// The SPI the receiver chose.
    pub spi: u32,
    /// The encryption transform.
    pub algorithm: Algorithm,
    /// Transport or tunnel mode.
    pub mode: Mode,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets (inbound only); 32..=32768.
    pub replay_window: u32,
    /// Byte and packet limits.
    pub lifetime: Lifetime,
}

impl SaConfig {
    /// Transport mode, 32-bit sequence numbers, the default replay window, no lifetime.
    pub fn new(spi: u32, algorithm: Algorithm) -> Self {
        SaConfig {
            spi,
            algorithm,
            mode: Mode::Transport,
            esn: false,
            replay_window: DEFAULT_WINDOW,
            lifetime: Lifetime::UNLIMITED,
        }
    }

    fn validate(&self) -> Result<()> {
        // SPIs 1..=255 are reserved by IANA and 0 means "no SA" (RFC 4303 §2.1).
        if self.spi < 256 {
            return Err(Error::InvalidConfig("SPI values 0..=255 are reserved"));
        }
        Ok(())
    }

    fn check_next_header(&self, next_header: u8) -> Result<()> {
        match self.mode {
            Mode::Tunnel
                if !matches!(
                    next_header,
                    NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 | NEXT_HEADER_NONE
                ) =>
            {
                Err(Error::BadNextHeader(next_header))
            }
            _ => Ok(()),
        }
    }
}

/// Bytes a sealed AES-GCM packet of `payload_len` bytes occupies, from the SPI to the ICV
/// ([`Algorithm::sealed_len`] for any transform).
pub const fn sealed_len(payload_len: usize) -> usize {
    Algorithm::AesGcm16_256.sealed_len(payload_len)
}

/// Bytes ESP adds at most to a payload with any transform (header, a 16-byte IV, up to 15
/// padding bytes, trailer, ICV); size buffers with it.
pub const MAX_OVERHEAD: usize = ESP_HEADER_LEN + 16 + 15 + TRAILER_LEN + 16;

/// The sending half of an SA.
pub struct OutboundSa {
    config: SaConfig,
    cipher: Cipher,
    /// The next sequence number to send; starts at 1 (RFC 4303 §3.3.3).
    pub(crate) next_seq: u64,
    /// Set once the last number of the space was used: the counter never wraps.
    exhausted: bool,
    acct: Accounting,
}

impl OutboundSa {
    /// Keys an outbound SA. `key_material` is the AES key followed by the 4-byte salt.
    pub fn new(config: SaConfig, key_material: &[u8]) -> Result<Self> {
        config.validate()?;
        Ok(OutboundSa {
            cipher: Cipher::new(config.algorithm, key_material)?,
            config,
            next_seq: 1,
            exhausted: false,
            acct: Accounting::new(config.lifetime),
        })
    }

    /// The SA's parameters.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The sequence number the next sealed packet will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.acct.counters
    }

    /// The next lifetime event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.acct.poll_event()
    }

    /// True once the SA refuses to seal (hard lifetime or sequence space used up).
    pub fn is_expired(&self) -> bool {
        self.acct.hard_expired()
    }

    fn seq_max(&self) -> u64 {
        if self.config.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Where the payload goes in a buffer for [`seal_in_place`](Self::seal_in_place):
    /// after SPI, sequence number and IV ([`PAYLOAD_OFFSET`](crate::PAYLOAD_OFFSET) for AES-GCM).
    pub fn payload_offset(&self) -> usize {
        self.config.algorithm.payload_offset()
    }

    /// Length of the sealed packet for a payload of `payload_len` bytes.
    pub fn sealed_len(&self, payload_len: usize) -> usize {
        self.config.algorithm.sealed_len(payload_len)
    }

    /// Seals `payload` into `out` (at least [`Self::sealed_len`]`(payload.len())` bytes) and
    /// returns the length of the ESP packet written, from the SPI to the ICV.
    pub fn seal(&mut self, next_header: u8, payload: &[u8], out: &mut [u8]) -> Result<usize> {
        let needed = self.sealed_len(payload.len());
        if out.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let off = self.payload_offset();
        out[off..off + payload.len()].copy_from_slice(payload);
        self.seal_in_place(next_header, out, payload.len())
    }

    /// Seals the `payload_len` bytes the caller already placed at
    /// `buf[self.payload_offset()..]`; header, IV, trailer and ICV are written around them.
    /// `buf` must hold [`Self::sealed_len`]`(payload_len)` bytes. Returns the packet length.
    pub fn seal_in_place(
        &mut self,
        next_header: u8,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize> {
        if payload_len > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge(payload_len));
        }
        let alg = self.config.algorithm;
        let needed = alg.sealed_len(payload_len);
        if buf.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        self.config.check_next_header(next_header)?;
        if self.acct.hard_expired() {
            self.acct.counters.expired_drops += 1;
            return Err(if self.exhausted {
                Error::SequenceExhausted
            } else {
                Error::LifetimeExpired
            });
        }
        let seq = self.next_seq;

        let off = alg.payload_offset();
        let pt_len = alg.padded_len(payload_len);
        let pad_len = pt_len - payload_len - TRAILER_LEN;
        let trailer = &mut buf[off + payload_len..off + pt_len];
        // Monotonic padding bytes 1, 2, 3 … (RFC 4303 §2.4).
        for (i, b) in trailer[..pad_len].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        trailer[pad_len] = pad_len as u8;
        trailer[pad_len + 1] = next_header;

        EspHeader {
            spi: self.config.spi,
            sequence: seq as u32,
        }
        .emit(buf)?;
        self.cipher.seal(seq, self.config.esn, buf, pt_len)?;

        if seq == self.seq_max() {
            self.exhausted = true;
            self.acct.hard();
        } else {
            self.next_seq = seq + 1;
            if self.seq_max() - seq <= SEQUENCE_SOFT_MARGIN {
                self.acct.soft();
            }
        }
        self.acct.record(payload_len);
        Ok(needed)
    }
}

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.config.spi))
            .field("algorithm", &self.cipher.algorithm())
            .field("mode", &self.config.mode)
            .field("esn", &self.config.esn)
            .field("next_seq", &self.next_seq)
            .field("counters", &self.acct.counters)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What [`InboundSa::open`] found in an authentic packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The protocol of the payload (transport mode) or 4/41 (tunnel mode). 59 marks a dummy
    /// packet that the caller must discard (RFC 4303 §2.6).
    pub next_header: u8,
    /// The full (ESN-inferred) sequence number.
    pub sequence: u64,
    /// Where the decrypted payload lies in the buffer passed to `open`.
    pub payload: Range<usize>,
}

/// The receiving half of an SA.
pub struct InboundSa {
    config: SaConfig,
    cipher: Cipher,
    pub(crate) replay: ReplayWindow,
    acct: Accounting,
}

impl InboundSa {
    /// Keys an inbound SA. `key_material` is the AES key followed by the 4-byte salt.
    pub fn new(config: SaConfig, key_material: &[u8]) -> Result<Self> {
        config.validate()?;
        Ok(InboundSa {
            cipher: Cipher::new(config.algorithm, key_material)?,
            replay: ReplayWindow::new(config.replay_window, config.esn)?,
            config,
            acct: Accounting::new(config.lifetime),
        })
    }

    /// The SA's parameters.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.acct.counters
    }

    /// The next lifetime event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.acct.poll_event()
    }

    /// True once the SA refuses traffic (hard lifetime reached).
    pub fn is_expired(&self) -> bool {
        self.acct.hard_expired()
    }

    /// The highest authenticated sequence number (0: none yet).
    pub fn highest_sequence(&self) -> u64 {
        self.replay.top()
    }

    /// Verifies and decrypts the ESP packet in `packet` (from the SPI to the ICV) in place.
    ///
    /// Order of checks (RFC 4303 §3.4): length and SPI, then the replay window before any
    /// cryptography, then the ICV, and only after it verified the window update, padding and
    /// next-header checks. Every rejection is counted.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened> {
        let r = self.open_inner(packet);
        if let Err(e) = &r {
            let c = &mut self.acct.counters;
            match e {
                Error::Replayed(_) | Error::TooOld(_) => c.replay_drops += 1,
                Error::AuthenticationFailed => c.auth_failures += 1,
                Error::BadPadding | Error::BadNextHeader(_) => c.bad_padding += 1,
                Error::LifetimeExpired => c.expired_drops += 1,
                _ => c.malformed += 1,
            }
        }
        r
    }

    fn open_inner(&mut self, packet: &mut [u8]) -> Result<Opened> {
        let alg = self.config.algorithm;
        let (off, icv_len, align) = (alg.payload_offset(), alg.icv_len(), alg.block_align());
        // Smallest packet: header, IV, one aligned unit of trailer, ICV.
        if packet.len() < off + align + icv_len {
            return Err(Error::Truncated(packet.len()));
        }
        if (packet.len() - off - icv_len) % align != 0 {
            return Err(Error::Misaligned);
        }
        let header = EspHeader::parse(packet)?;
        if header.spi != self.config.spi {
            return Err(Error::SpiMismatch(header.spi));
        }
        if self.acct.hard_expired() {
            return Err(Error::LifetimeExpired);
        }
        let seq = self.replay.check(header.sequence)?;
        let pt_len = self.cipher.open(seq, self.config.esn, packet)?;
        // Authentic: the window may move now (RFC 4303 §3.4.3), whatever the trailer holds.
        self.replay.update(seq);

        let pt = &packet[off..off + pt_len];
        let (next_header, pad_len) = match pt {
            [.., p, n] => (*n, usize::from(*p)),
            _ => return Err(Error::BadPadding),
        };
        let payload_len = pt_len
            .checked_sub(TRAILER_LEN + pad_len)
            .ok_or(Error::BadPadding)?;
        let padding = &pt[payload_len..payload_len + pad_len];
        if padding
            .iter()
            .enumerate()
            .any(|(i, b)| usize::from(*b) != i + 1)
        {
            return Err(Error::BadPadding);
        }
        self.config.check_next_header(next_header)?;

        self.acct.record(payload_len);
        Ok(Opened {
            next_header,
            sequence: seq,
            payload: off..off + payload_len,
        })
    }
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.config.spi))
            .field("algorithm", &self.cipher.algorithm())
            .field("mode", &self.config.mode)
            .field("esn", &self.config.esn)
            .field("replay", &self.replay)
            .field("counters", &self.acct.counters)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GCM_ICV_LEN, PAYLOAD_OFFSET};

    const KEY: [u8; 36] = [
        0x4c, 0x80, 0xcd, 0xef, 0xbb, 0x5d, 0x10, 0xda, 0x90, 0x6a, 0xc7, 0x3c, 0x36, 0x13, 0xa6,
        0x34, 0x22, 0x43, 0x3c, 0x64, 0x48, 0x55, 0xec, 0x7d, 0x3a, 0x23, 0x4b, 0xfd, 0x0d, 0xd3,
        0x0a, 0xd1, 0xde, 0xad, 0xbe, 0xef,
    ];
    const SPI: u32 = 0x0000_1234;

    fn pair(cfg: SaConfig) -> (OutboundSa, InboundSa) {
        (
            OutboundSa::new(cfg, &KEY).unwrap(),
            InboundSa::new(cfg, &KEY).unwrap(),
        )
    }

    fn cfg() -> SaConfig {
        SaConfig::new(SPI, Algorithm::AesGcm16_256)
    }

    fn seal(out: &mut OutboundSa, nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; sealed_len(payload.len())];
        let n = out.seal(nh, payload, &mut buf).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn round_trip_every_length_and_padding_layout() {
        for esn in [false, true] {
            for alg in [Algorithm::AesGcm16_128, Algorithm::AesGcm16_256] {
                let c = SaConfig {
                    esn,
                    ..SaConfig::new(SPI, alg)
                };
                let key = &KEY[..alg.key_material_len()];
                let mut o = OutboundSa::new(c, key).unwrap();
                let mut i = InboundSa::new(c, key).unwrap();
                for len in 0..70usize {
                    let payload: Vec<u8> = (0..len).map(|b| (b * 7) as u8).collect();
                    let mut p = seal(&mut o, 6, &payload);
                    assert_eq!((p.len() - PAYLOAD_OFFSET - GCM_ICV_LEN) % 4, 0);
                    // Padding is visible only after decryption; the ciphertext hides it.
                    if len > 0 {
                        assert_ne!(&p[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len], &payload[..]);
                    }
                    let opened = i.open(&mut p).unwrap();
                    assert_eq!(opened.next_header, 6);
                    assert_eq!(opened.sequence, len as u64 + 1);
                    assert_eq!(&p[opened.payload], &payload[..]);
                }
                assert_eq!(i.counters().packets, 70);
                assert_eq!(o.counters().bytes, (0..70u64).sum::<u64>());
            }
        }
    }

    #[test]
    fn cbc_hmac_round_trip_and_layout() {
        let km = [0x61u8; 64];
        for esn in [false, true] {
            let c = SaConfig {
                esn,
                ..SaConfig::new(SPI, Algorithm::AesCbc256HmacSha256)
            };
            let mut o = OutboundSa::new(c, &km).unwrap();
            let mut i = InboundSa::new(c, &km).unwrap();
            for len in 0..40usize {
                let payload = vec![len as u8; len];
                let mut p = vec![0u8; o.sealed_len(len)];
                assert_eq!(o.seal(17, &payload, &mut p), Ok(p.len()));
                assert_eq!((p.len() - 24 - 16) % 16, 0);
                let op = i.open(&mut p).unwrap();
                assert_eq!(op.payload.start, 24);
                assert_eq!(&p[op.payload], &payload[..]);
            }
            // Different sequence numbers give unrelated IVs.
            let (mut a, mut b) = (vec![0u8; 56], vec![0u8; 56]);
            o.seal(6, &[0; 8], &mut a).unwrap();
            o.seal(6, &[0; 8], &mut b).unwrap();
            assert_ne!(a[8..24], b[8..24]);
            assert_ne!(a[24..40], b[24..40]);
        }
    }

    #[test]
    fn wire_layout() {
        let (mut o, _) = pair(cfg());
        let p = seal(&mut o, 17, b"hello");
        assert_eq!(&p[..4], &SPI.to_be_bytes());
        assert_eq!(&p[4..8], &1u32.to_be_bytes());
        assert_eq!(&p[8..16], &1u64.to_be_bytes());
        // 5 payload + 1 pad + pad length + next header = 8.
        assert_eq!(p.len(), 16 + 8 + 16);
        let p2 = seal(&mut o, 17, b"hello");
        assert_eq!(&p2[4..8], &2u32.to_be_bytes());
        assert_eq!(&p2[8..16], &2u64.to_be_bytes());
    }

    #[test]
    fn seal_in_place_matches_seal() {
        let (mut a, _) = pair(cfg());
        let (mut b, _) = pair(cfg());
        let payload = [9u8; 100];
        let p1 = seal(&mut a, 6, &payload);
        let mut p2 = vec![0u8; 200];
        p2[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 100].copy_from_slice(&payload);
        let n = b.seal_in_place(6, &mut p2, 100).unwrap();
        assert_eq!(&p2[..n], &p1[..]);
    }

    #[test]
    fn small_buffers_and_huge_payloads_are_errors() {
        let (mut o, _) = pair(cfg());
        let mut small = [0u8; 40];
        assert_eq!(
            o.seal(6, &[0u8; 10], &mut small),
            Err(Error::BufferTooSmall {
                needed: 44,
                available: 40
            })
        );
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let mut out = vec![0u8; sealed_len(big.len())];
        assert_eq!(
            o.seal(6, &big, &mut out),
            Err(Error::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        assert_eq!(
            o.next_sequence(),
            1,
            "failed seals consume no sequence number"
        );
    }

    #[test]
    fn tampering_anywhere_is_rejected_and_counted() {
        let (mut o, mut i) = pair(cfg());
        let good = seal(&mut o, 6, &[0x55u8; 64]);
        for pos in 0..good.len() {
            let mut p = good.clone();
            p[pos] ^= 0x01;
            let e = i.open(&mut p).unwrap_err();
            match pos {
                0..=3 => assert!(matches!(e, Error::SpiMismatch(_))),
                // Sequence 1 becomes 0, which is never valid.
                7 => assert_eq!(e, Error::InvalidSequence),
                _ => assert_eq!(e, Error::AuthenticationFailed, "byte {pos}"),
            }
        }
        let c = i.counters();
        assert_eq!(c.malformed, 5);
        assert_eq!(c.auth_failures, good.len() as u64 - 5);
        assert_eq!(c.packets, 0);
        // The forged packets did not move the window: the genuine one still opens.
        let mut p = good.clone();
        assert!(i.open(&mut p).is_ok());
        assert_eq!(i.open(&mut good.clone()), Err(Error::Replayed(1)));
        assert_eq!(i.counters().replay_drops, 1);
    }

    #[test]
    fn forged_high_sequence_does_not_move_window() {
        let (mut o, mut i) = pair(cfg());
        let mut p = seal(&mut o, 6, b"x");
        p[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert_eq!(i.open(&mut p), Err(Error::AuthenticationFailed));
        assert_eq!(i.highest_sequence(), 0);
    }

    #[test]
    fn truncated_and_misaligned() {
        let (mut o, mut i) = pair(cfg());
        let good = seal(&mut o, 6, b"abcd");
        for len in 0..good.len() {
            let mut p = good[..len].to_vec();
            assert!(i.open(&mut p).is_err());
        }
        assert_eq!(i.open(&mut [0u8; 35]), Err(Error::Truncated(35)));
        assert_eq!(i.open(&mut [0u8; 37]), Err(Error::Misaligned));
        // Only the one aligned prefix (36 bytes: a whole trailer, a cut ICV) reached the
        // cipher; shorter and misaligned packets are rejected before it.
        assert_eq!(i.counters().auth_failures, 1);
        assert_eq!(i.counters().malformed, good.len() as u64 - 1 + 2);
    }

    /// Builds a packet with an arbitrary (authentic) plaintext, to test trailer checks that a
    /// correct sender never triggers.
    fn forge(o: &mut OutboundSa, plaintext: &[u8]) -> Vec<u8> {
        assert_eq!(plaintext.len() % 4, 0);
        let seq = o.next_seq;
        o.next_seq += 1;
        let mut p = vec![0u8; PAYLOAD_OFFSET + plaintext.len() + GCM_ICV_LEN];
        EspHeader {
            spi: SPI,
            sequence: seq as u32,
        }
        .emit(&mut p)
        .unwrap();
        p[16..16 + plaintext.len()].copy_from_slice(plaintext);
        o.cipher.seal(seq, false, &mut p, plaintext.len()).unwrap();
        p
    }

    #[test]
    fn padding_abuse_is_rejected() {
        let (mut o, mut i) = pair(cfg());
        // Pad length beyond the plaintext.
        let mut p = forge(&mut o, &[0, 0, 3, 6]);
        assert_eq!(i.open(&mut p), Err(Error::BadPadding));
        // Padding bytes not 1, 2, 3.
        let mut p = forge(&mut o, &[0xaa, 1, 3, 2, 6, 0, 2, 6]);
        assert_eq!(i.open(&mut p), Err(Error::BadPadding));
        // Maximal but valid padding: 255 bytes is allowed by the RFC.
        let mut pt = vec![0u8; 260];
        for k in 0..255 {
            pt[3 + k] = (k + 1) as u8;
        }
        pt[258] = 255;
        pt[259] = 17;
        let mut p = forge(&mut o, &pt);
        let opened = i.open(&mut p).unwrap();
        assert_eq!(opened.payload.len(), 3);
        assert_eq!(opened.next_header, 17);
        let c = i.counters();
        assert_eq!((c.bad_padding, c.packets), (2, 1));
        // Authentic packets with bad padding still occupy their place in the window.
        assert_eq!(i.highest_sequence(), 3);
    }

    #[test]
    fn tunnel_mode_next_header_rules() {
        let c = SaConfig {
            mode: Mode::Tunnel,
            ..cfg()
        };
        let (mut o, mut i) = pair(c);
        let mut buf = [0u8; 128];
        assert_eq!(o.seal(6, b"x", &mut buf), Err(Error::BadNextHeader(6)));
        let mut p = seal(&mut o, 4, &[0x45; 20]);
        assert_eq!(i.open(&mut p).unwrap().next_header, 4);
        let mut p = forge(&mut o, &[0, 0, 0, 17]);
        assert_eq!(i.open(&mut p), Err(Error::BadNextHeader(17)));
    }

    #[test]
    fn wrong_key_or_spi_or_esn_mismatch_fail() {
        let (mut o, _) = pair(cfg());
        let p = seal(&mut o, 6, b"data");
        let mut other_key = KEY;
        other_key[35] ^= 1; // salt only
        let mut i = InboundSa::new(cfg(), &other_key).unwrap();
        assert_eq!(i.open(&mut p.clone()), Err(Error::AuthenticationFailed));
        let mut i = InboundSa::new(SaConfig { esn: true, ..cfg() }, &KEY).unwrap();
        assert_eq!(i.open(&mut p.clone()), Err(Error::AuthenticationFailed));
        let mut i = InboundSa::new(SaConfig::new(SPI + 1, Algorithm::AesGcm16_256), &KEY).unwrap();
        assert_eq!(i.open(&mut p.clone()), Err(Error::SpiMismatch(SPI)));
    }

    #[test]
    fn reserved_spi_rejected() {
        assert!(OutboundSa::new(SaConfig::new(255, Algorithm::AesGcm16_256), &KEY).is_err());
        assert!(InboundSa::new(SaConfig::new(0, Algorithm::AesGcm16_256), &KEY).is_err());
    }

    #[test]
    fn sequence_never_wraps_32_bit() {
        let (mut o, mut i) = pair(cfg());
        o.next_seq = u64::from(u32::MAX) - 1;
        i.replay.update(u64::from(u32::MAX) - 2);
        let mut p = seal(&mut o, 6, b"a");
        assert_eq!(i.open(&mut p).unwrap().sequence, u64::from(u32::MAX) - 1);
        // Within the soft margin already.
        assert_eq!(o.poll_event(), Some(Event::SoftLifetime));
        let mut p = seal(&mut o, 6, b"b");
        assert_eq!(i.open(&mut p).unwrap().sequence, u64::from(u32::MAX));
        assert_eq!(o.poll_event(), Some(Event::HardLifetime));
        let mut buf = [0u8; 64];
        assert_eq!(o.seal(6, b"c", &mut buf), Err(Error::SequenceExhausted));
        assert_eq!(o.seal(6, b"c", &mut buf), Err(Error::SequenceExhausted));
        assert!(o.is_expired());
        assert_eq!(o.counters().expired_drops, 2);
        assert_eq!(o.poll_event(), None);
    }

    #[test]
    fn esn_sequence_crosses_2_pow_32_and_stays_authentic() {
        let c = SaConfig { esn: true, ..cfg() };
        let (mut o, mut i) = pair(c);
        let start = (1u64 << 32) - 3;
        o.next_seq = start;
        i.replay.update(start - 1);
        let mut packets: Vec<Vec<u8>> = (0..6).map(|_| seal(&mut o, 6, b"esn")).collect();
        // Deliver out of order across the boundary.
        for k in [1usize, 0, 4, 2, 5, 3] {
            let op = i.open(&mut packets[k]).unwrap();
            assert_eq!(op.sequence, start + k as u64);
        }
        assert_eq!(i.highest_sequence(), start + 5);
        // The wire carries only the low half.
        assert_eq!(o.next_sequence(), start + 6);
    }

    #[test]
    fn esn_exhaustion() {
        let c = SaConfig { esn: true, ..cfg() };
        let (mut o, _) = pair(c);
        o.next_seq = u64::MAX;
        let mut buf = [0u8; 64];
        assert!(o.seal(6, b"", &mut buf).is_ok());
        assert_eq!(o.seal(6, b"", &mut buf), Err(Error::SequenceExhausted));
    }

    #[test]
    fn packet_and_byte_lifetimes_both_directions() {
        let c = SaConfig {
            lifetime: Lifetime {
                soft_packets: Some(2),
                hard_packets: Some(3),
                ..Lifetime::UNLIMITED
            },
            ..cfg()
        };
        let (mut o, mut i) = pair(c);
        let mut ps: Vec<Vec<u8>> = (0..3).map(|_| seal(&mut o, 6, b"life")).collect();
        assert_eq!(o.poll_event(), Some(Event::SoftLifetime));
        assert_eq!(o.poll_event(), Some(Event::HardLifetime));
        let mut buf = [0u8; 64];
        assert_eq!(o.seal(6, b"x", &mut buf), Err(Error::LifetimeExpired));
        for p in ps.iter_mut() {
            i.open(p).unwrap();
        }
        assert_eq!(i.poll_event(), Some(Event::SoftLifetime));
        assert_eq!(i.poll_event(), Some(Event::HardLifetime));
        assert!(i.is_expired());
        let mut p = ps[0].clone();
        assert_eq!(i.open(&mut p), Err(Error::LifetimeExpired));
        assert_eq!(i.counters().expired_drops, 1);

        let c = SaConfig {
            lifetime: Lifetime {
                hard_bytes: Some(10),
                ..Lifetime::UNLIMITED
            },
            ..cfg()
        };
        let (mut o, _) = pair(c);
        seal(&mut o, 6, &[0u8; 9]);
        assert!(!o.is_expired());
        seal(&mut o, 6, &[0u8; 1]);
        assert!(o.is_expired());
    }

    #[test]
    fn debug_output_is_redacted() {
        let (o, i) = pair(cfg());
        for s in [format!("{o:?}"), format!("{i:?}")] {
            assert!(s.contains("redacted"));
            assert!(s.contains("0x00001234"));
            assert!(!s.to_lowercase().contains("4c80"));
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let (_, mut i) = pair(cfg());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            let len = n % 120;
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if p.len() >= 4 {
                p[..4].copy_from_slice(&SPI.to_be_bytes());
            }
            assert!(i.open(&mut p).is_err());
        }
    }
}

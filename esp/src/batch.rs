//! Many packets per call: the datapath reads a burst from TUN or `recvmmsg` and seals or
//! opens it in one go, into buffers it owns (no allocation per packet).

use crate::sa::{InboundSa, Opened, OutboundSa};
use crate::Result;

/// One packet to seal: its payload, where to write the ESP packet, and the outcome.
#[derive(Debug)]
pub struct SealSlot<'a> {
    /// Protocol of the payload (transport mode) or 4/41 (tunnel mode).
    pub next_header: u8,
    /// The bytes to protect.
    pub payload: &'a [u8],
    /// Where the ESP packet goes; [`sealed_len`](crate::sealed_len)`(payload.len())` bytes.
    pub out: &'a mut [u8],
    /// Set by [`OutboundSa::seal_batch`]: the ESP packet length, or why it failed.
    pub result: Option<Result<usize>>,
}

impl<'a> SealSlot<'a> {
    /// A slot not yet sealed.
    pub fn new(next_header: u8, payload: &'a [u8], out: &'a mut [u8]) -> Self {
        SealSlot {
            next_header,
            payload,
            out,
            result: None,
        }
    }
}

/// One ESP packet to open in place, and the outcome.
#[derive(Debug)]
pub struct OpenSlot<'a> {
    /// The ESP packet (SPI to ICV); decrypted in place.
    pub packet: &'a mut [u8],
    /// Set by [`InboundSa::open_batch`].
    pub result: Option<Result<Opened>>,
}

impl<'a> OpenSlot<'a> {
    /// A slot not yet opened.
    pub fn new(packet: &'a mut [u8]) -> Self {
        OpenSlot {
            packet,
            result: None,
        }
    }
}

impl OutboundSa {
    /// Seals every slot in order (sequence numbers follow slot order) and returns how many
    /// succeeded. A failed slot does not stop the batch; once the SA expires, the remaining
    /// slots fail with the same error.
    pub fn seal_batch(&mut self, slots: &mut [SealSlot<'_>]) -> usize {
        let mut ok = 0;
        for s in slots.iter_mut() {
            let r = self.seal(s.next_header, s.payload, s.out);
            ok += usize::from(r.is_ok());
            s.result = Some(r);
        }
        ok
    }
}

impl InboundSa {
    /// Opens every slot in order and returns how many were authentic and accepted.
    pub fn open_batch(&mut self, slots: &mut [OpenSlot<'_>]) -> usize {
        let mut ok = 0;
        for s in slots.iter_mut() {
            let r = self.open(s.packet);
            ok += usize::from(r.is_ok());
            s.result = Some(r);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sealed_len, Algorithm, Error, SaConfig};

    #[test]
    fn batch_round_trip_with_a_bad_packet_in_the_middle() {
        let cfg = SaConfig::new(0xabcd, Algorithm::AesGcm16_256);
        let key = [3u8; 36];
        let mut o = OutboundSa::new(cfg, &key).unwrap();
        let mut i = InboundSa::new(cfg, &key).unwrap();
        let payloads: Vec<Vec<u8>> = (0..8).map(|n| vec![n as u8; 100 + n]).collect();
        let stride = sealed_len(200);
        let mut arena = vec![0u8; stride * payloads.len()];
        let mut slots: Vec<SealSlot<'_>> = payloads
            .iter()
            .zip(arena.chunks_mut(stride))
            .map(|(p, out)| SealSlot::new(17, p, out))
            .collect();
        assert_eq!(o.seal_batch(&mut slots), 8);
        let lens: Vec<usize> = slots
            .iter()
            .map(|s| *s.result.as_ref().unwrap().as_ref().unwrap())
            .collect();
        drop(slots);
        arena[3 * stride + 20] ^= 0x80;
        let mut opens: Vec<OpenSlot<'_>> = arena
            .chunks_mut(stride)
            .zip(&lens)
            .map(|(c, &n)| OpenSlot::new(&mut c[..n]))
            .collect();
        assert_eq!(i.open_batch(&mut opens), 7);
        for (k, s) in opens.iter().enumerate() {
            match s.result.as_ref().unwrap() {
                Ok(op) => {
                    assert_eq!(&s.packet[op.payload.clone()], &payloads[k][..]);
                    assert_eq!(op.sequence, k as u64 + 1);
                }
                Err(e) => {
                    assert_eq!(k, 3);
                    assert_eq!(*e, Error::AuthenticationFailed);
                }
            }
        }
        assert_eq!(i.counters().auth_failures, 1);
    }
}

//! The inbound anti-replay window (RFC 4303 §3.4.3) with extended sequence numbers
//! (RFC 4303 Appendix A).
//!
//! The bitmap is a ring of 64-bit blocks as in RFC 6479: sliding the window clears whole
//! blocks instead of shifting bits, so a jump forward costs at most one pass over the ring
//! and an in-window packet costs one bit test. Checking happens before decryption (cheap
//! rejection of replays and stale packets) and the update only after the ICV verified, so a
//! forged packet can never move the window.

use core::fmt;

use crate::{Error, Result};

/// Smallest window the RFC allows (RFC 4303 §3.4.3: "a minimum window size of 32").
pub const MIN_WINDOW: u32 = 32;
/// Largest window we accept: 32 Ki packets, a 4 KiB bitmap.
pub const MAX_WINDOW: u32 = 32 * 1024;
/// The default window: large enough for multi-queue senders and reordering links.
pub const DEFAULT_WINDOW: u32 = 1024;

const BLOCK_BITS: u64 = 64;

/// An anti-replay window over 32-bit or 64-bit (ESN) sequence numbers.
#[derive(Clone)]
pub struct ReplayWindow {
    size: u64,
    esn: bool,
    /// Highest authenticated sequence number; 0 while nothing has been received (0 is never
    /// a valid sequence number).
    top: u64,
    /// Ring of bitmap blocks; its length is a power of two holding at least `size + 64` bits,
    /// so every number in `(top - size, top]` has a bit even when `top` sits at the start of
    /// its block.
    blocks: Box<[u64]>,
}

impl ReplayWindow {
    /// A window of `size` packets; `esn` selects 64-bit sequence numbers whose high half is
    /// inferred from the window (RFC 4303 Appendix A2).
    pub fn new(size: u32, esn: bool) -> Result<Self> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err(Error::InvalidConfig(
                "replay window must be 32..=32768 packets",
            ));
        }
        let n_blocks = (u64::from(size).div_ceil(BLOCK_BITS) + 1).next_power_of_two();
        Ok(ReplayWindow {
            size: u64::from(size),
            esn,
            top: 0,
            blocks: vec![0u64; n_blocks as usize].into_boxed_slice(),
        })
    }

    /// The window size in packets.
    pub fn size(&self) -> u32 {
        // Bounded by MAX_WINDOW at construction.
        self.size as u32
    }

    /// The highest authenticated sequence number so far (0: none yet).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Reconstructs the full sequence number of a packet that carries `seq_low` on the wire
    /// and checks it against the window, without changing anything.
    ///
    /// With ESN the high half is guessed from where the window sits (RFC 4303 Appendix
    /// A2.2): a low half that falls behind the window's left edge belongs to the next 2^32
    /// subspace when the window lies inside one subspace, and one that falls at or after
    /// the left edge belongs to the previous subspace when the window straddles a boundary.
    pub fn check(&self, seq_low: u32) -> Result<u64> {
        let seq = self.infer(seq_low)?;
        if seq == 0 {
            return Err(Error::InvalidSequence);
        }
        if seq > self.top {
            return Ok(seq);
        }
        if self.top - seq >= self.size {
            return Err(Error::TooOld(seq));
        }
        if self.bit(seq) {
            return Err(Error::Replayed(seq));
        }
        Ok(seq)
    }

    /// Records an authenticated sequence number (the value [`check`](Self::check) returned).
    /// Numbers behind the window are ignored, so a stale update cannot corrupt the bitmap.
    pub fn update(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.top {
            let n = self.blocks.len() as u64;
            let old_block = self.top / BLOCK_BITS;
            let new_block = seq / BLOCK_BITS;
            let clear = (new_block - old_block).min(n);
            for i in 1..=clear {
                let idx = ((old_block + i) & (n - 1)) as usize;
                self.blocks[idx] = 0;
            }
            self.top = seq;
        } else if self.top - seq >= self.size {
            return;
        }
        let (idx, mask) = self.position(seq);
        self.blocks[idx] |= mask;
    }

    fn infer(&self, seq_low: u32) -> Result<u64> {
        if !self.esn {
            return Ok(u64::from(seq_low));
        }
        let top_low = self.top as u32;
        let top_high = (self.top >> 32) as u32;
        // size ≤ MAX_WINDOW < 2^32.
        let w_minus_1 = (self.size - 1) as u32;
        let high = if top_low >= w_minus_1 {
            // Case A: the window lies inside one subspace.
            if seq_low >= top_low - w_minus_1 {
                Some(top_high)
            } else {
                top_high.checked_add(1)
            }
        } else {
            // Case B: the window's left edge is in the previous subspace.
            if seq_low >= top_low.wrapping_sub(w_minus_1) {
                // Before the first subspace there is nothing: such a packet is too old.
                match top_high.checked_sub(1) {
                    Some(h) => Some(h),
                    None => return Err(Error::TooOld(u64::from(seq_low))),
                }
            } else {
                Some(top_high)
            }
        };
        match high {
            Some(h) => Ok((u64::from(h) << 32) | u64::from(seq_low)),
            None => Err(Error::InvalidSequence),
        }
    }

    fn position(&self, seq: u64) -> (usize, u64) {
        let n = self.blocks.len() as u64;
        let idx = ((seq / BLOCK_BITS) & (n - 1)) as usize;
        (idx, 1u64 << (seq % BLOCK_BITS))
    }

    fn bit(&self, seq: u64) -> bool {
        let (idx, mask) = self.position(seq);
        self.blocks[idx] & mask != 0
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("esn", &self.esn)
            .field("top", &self.top)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, low: u32) -> u64 {
        let s = w.check(low).unwrap();
        w.update(s);
        s
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(ReplayWindow::new(31, false).is_err());
        assert!(ReplayWindow::new(MAX_WINDOW + 1, false).is_err());
        assert!(ReplayWindow::new(32, false).is_ok());
        assert!(ReplayWindow::new(MAX_WINDOW, true).is_ok());
        assert_eq!(ReplayWindow::new(1000, false).unwrap().size(), 1000);
    }

    #[test]
    fn zero_is_never_valid() {
        let w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(Error::InvalidSequence));
    }

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        for s in 1..=200u32 {
            assert_eq!(accept(&mut w, s), u64::from(s));
        }
        assert_eq!(w.check(200), Err(Error::Replayed(200)));
        assert_eq!(w.check(137), Err(Error::Replayed(137)));
        assert_eq!(w.check(136), Err(Error::TooOld(136)));
        assert_eq!(w.check(1), Err(Error::TooOld(1)));
        assert_eq!(w.check(201), Ok(201));
    }

    #[test]
    fn out_of_order_inside_window() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        accept(&mut w, 100);
        // Left edge is 100 - 64 + 1 = 37.
        assert_eq!(w.check(36), Err(Error::TooOld(36)));
        assert_eq!(accept(&mut w, 37), 37);
        assert_eq!(accept(&mut w, 99), 99);
        assert_eq!(w.check(99), Err(Error::Replayed(99)));
        assert_eq!(w.check(37), Err(Error::Replayed(37)));
        for s in 38..99 {
            assert_eq!(accept(&mut w, s), u64::from(s));
        }
        for s in 37..=100 {
            assert!(w.check(s).is_err());
        }
    }

    #[test]
    fn check_without_update_changes_nothing() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        accept(&mut w, 10);
        assert_eq!(w.check(5000), Ok(5000));
        // A forged 5000 failed authentication: the window must not have moved.
        assert_eq!(w.top(), 10);
        assert_eq!(accept(&mut w, 9), 9);
    }

    #[test]
    fn slide_by_less_than_a_block_more_than_a_block_and_more_than_the_ring() {
        for size in [32u32, 64, 100, 1024, 4096] {
            let mut w = ReplayWindow::new(size, false).unwrap();
            let mut top = 1u32;
            accept(&mut w, top);
            for jump in [
                1u32,
                7,
                63,
                64,
                65,
                130,
                size - 1,
                size,
                size + 1,
                3 * size + 17,
            ] {
                // Leave holes behind, then fill every hole still inside the window.
                let prev = top;
                top += jump;
                accept(&mut w, top);
                let left = u64::from(top).saturating_sub(u64::from(size)) + 1;
                for s in (prev + 1)..top {
                    if u64::from(s) >= left {
                        assert_eq!(
                            w.check(s),
                            Ok(u64::from(s)),
                            "size {size} jump {jump} s {s}"
                        );
                    } else {
                        assert_eq!(w.check(s), Err(Error::TooOld(u64::from(s))));
                    }
                }
                if u64::from(prev) >= left {
                    assert_eq!(w.check(prev), Err(Error::Replayed(u64::from(prev))));
                }
            }
        }
    }

    /// A model check against a naive set-based window over a pseudo-random reordering.
    #[test]
    fn matches_a_naive_model() {
        use std::collections::BTreeSet;
        for size in [32u32, 64, 96, 1024] {
            let mut w = ReplayWindow::new(size, false).unwrap();
            let mut seen = BTreeSet::new();
            let mut top = 0u64;
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for i in 0..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let base = i + 1;
                let delta = x % (2 * u64::from(size) + 10);
                let s = (base + 64).saturating_sub(delta).max(1);
                let expected = if s > top {
                    Ok(s)
                } else if top - s >= u64::from(size) {
                    Err(Error::TooOld(s))
                } else if seen.contains(&s) {
                    Err(Error::Replayed(s))
                } else {
                    Ok(s)
                };
                assert_eq!(w.check(s as u32), expected, "size {size} step {i} seq {s}");
                if expected.is_ok() {
                    w.update(s);
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }

    #[test]
    fn thirty_two_bit_space_ends_without_wrapping() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        accept(&mut w, u32::MAX - 1);
        assert_eq!(accept(&mut w, u32::MAX), u64::from(u32::MAX));
        assert_eq!(w.check(u32::MAX), Err(Error::Replayed(u64::from(u32::MAX))));
        // Without ESN a wrapped counter is just old.
        assert_eq!(w.check(1), Err(Error::TooOld(1)));
    }

    #[test]
    fn esn_case_a_next_subspace() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        accept(&mut w, 1000);
        // Behind the left edge (1000 - 63 = 937): taken as the next subspace.
        assert_eq!(w.check(936), Ok((1u64 << 32) | 936));
        assert_eq!(w.check(937), Ok(937));
        assert_eq!(w.check(1001), Ok(1001));
    }

    #[test]
    fn esn_across_the_boundary() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        let hi = 1u64 << 32;
        w.update(u64::from(u32::MAX - 10));
        accept(&mut w, u32::MAX);
        // The sender wrapped its low half: seq 2^32 + 2 arrives as 2.
        assert_eq!(accept(&mut w, 2), hi + 2);
        assert_eq!(w.top(), hi + 2);
        // Now the window straddles the boundary (case B): late packets from the old subspace
        // are still recognised as such.
        assert_eq!(w.check(u32::MAX - 5), Ok(u64::from(u32::MAX - 5)));
        assert_eq!(w.check(u32::MAX), Err(Error::Replayed(u64::from(u32::MAX))));
        assert_eq!(
            w.check(u32::MAX - 10),
            Err(Error::Replayed(u64::from(u32::MAX - 10)))
        );
        assert_eq!(w.check(1), Ok(hi + 1));
        assert_eq!(w.check(2), Err(Error::Replayed(hi + 2)));
        // Left edge is hi + 2 - 63 = hi - 61. Just outside it, the RFC's inference takes the
        // low half as belonging to the current subspace (a far-future packet, which would
        // then fail authentication) rather than as a stale one.
        assert_eq!(w.check(u32::MAX - 61), Ok(hi + u64::from(u32::MAX - 61)));
        assert_eq!(w.check(u32::MAX - 60), Ok(hi - 61));
        // Low values beyond the top stay in the current subspace.
        assert_eq!(w.check(5000), Ok(hi + 5000));
    }

    #[test]
    fn esn_fresh_window_rejects_previous_subspace() {
        let w = ReplayWindow::new(64, true).unwrap();
        // Window top 0, case B: a low half in the last 63 values would be subspace -1.
        assert!(matches!(w.check(u32::MAX), Err(Error::TooOld(_))));
        assert_eq!(w.check(1), Ok(1));
        assert_eq!(w.check(0), Err(Error::InvalidSequence));
    }

    #[test]
    fn esn_top_of_the_64_bit_space() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        w.update(u64::MAX - 1);
        assert_eq!(w.check(u32::MAX), Ok(u64::MAX));
        // A low half behind the window would need high = 2^32: out of range.
        assert_eq!(w.check(5), Err(Error::InvalidSequence));
    }

    #[test]
    fn esn_long_run_through_many_boundaries() {
        let mut w = ReplayWindow::new(128, true).unwrap();
        let mut s: u64 = (3u64 << 32) - 1000;
        w.update(s);
        for _ in 0..5000 {
            s += 37;
            assert_eq!(accept(&mut w, s as u32), s);
            // A late packet still inside the window maps to the right subspace.
            let late = s - 100;
            if late > s - 37 * 2 {
                continue;
            }
            match w.check(late as u32) {
                Ok(v) => assert_eq!(v, late),
                Err(Error::Replayed(v)) => assert_eq!(v, late),
                Err(e) => panic!("unexpected {e:?} for {late}"),
            }
        }
    }
}

//! Who hands out reqids and inbound ESP SPIs: hooks a driver can replace.
//!
//! **Reqids.** Every CHILD_SA gets its own reqid when it is first negotiated; rekeys of it
//! (RFC 7296 §2.8) and its copy in a reauthenticated IKE SA (§2.8.3) keep it, so the XFRM
//! policy that names the reqid stays valid while its SAs are replaced. The default
//! [`SequentialReqids`] counts through [`REQIDS`], the range `xfrm::ownership` treats as
//! ibm-ipsec's, skipping reqids still in use. The [`Endpoint`](crate::Endpoint) releases a
//! reqid when the last CHILD_SA carrying it is reported down, or when a negotiation that drew
//! it failed.
//!
//! **Inbound SPIs.** We choose the SPI the peer uses towards us (RFC 4303 §2.1). The default
//! [`RandomSpis`] draws it from the injected random source; the kernel driver can plug in
//! XFRM `ALLOCSPI` instead, which reserves the SPI in the kernel (a larval SA the kernel
//! expires by itself if the CHILD_SA never completes).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use crate::crypto::Random;

/// Reqids that belong to ibm-ipsec; the same range as `xfrm::ownership::REQIDS` (`ike` does
/// not depend on `xfrm`). Its first value is never handed out.
pub const REQIDS: RangeInclusive<u32> = 0x4942_0000..=0x4942_ffff;

/// Hands out reqids for new CHILD_SAs.
///
/// Called synchronously from inside the protocol handlers; implementations must not block.
pub trait ReqidAllocator: Send + Sync {
    /// A reqid no live CHILD_SA uses, or `None` when none is left (the CHILD_SA is then
    /// refused).
    fn allocate(&self) -> Option<u32>;
    /// `reqid` is free again: no CHILD_SA carries it any more.
    fn release(&self, reqid: u32);
}

/// The default: counts upwards through [`REQIDS`] (wrapping, skipping the first value and
/// every reqid not yet released).
#[derive(Debug)]
pub struct SequentialReqids {
    state: Mutex<ReqidState>,
}

#[derive(Debug)]
struct ReqidState {
    next: u32,
    in_use: BTreeSet<u32>,
}

impl SequentialReqids {
    /// Starts at the beginning of [`REQIDS`].
    pub fn new() -> Self {
        SequentialReqids {
            state: Mutex::new(ReqidState {
                next: *REQIDS.start() + 1,
                in_use: BTreeSet::new(),
            }),
        }
    }

    /// Reqids handed out and not released.
    pub fn in_use(&self) -> usize {
        self.state.lock().map_or(0, |s| s.in_use.len())
    }
}

impl Default for SequentialReqids {
    fn default() -> Self {
        Self::new()
    }
}

impl ReqidAllocator for SequentialReqids {
    fn allocate(&self) -> Option<u32> {
        let mut s = self.state.lock().ok()?;
        let size = REQIDS.end() - REQIDS.start();
        for _ in 0..size {
            let candidate = s.next;
            s.next = if candidate >= *REQIDS.end() {
                *REQIDS.start() + 1
            } else {
                candidate + 1
            };
            if s.in_use.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn release(&self, reqid: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.in_use.remove(&reqid);
        }
    }
}

/// What an SPI source knows about the CHILD_SA whose inbound SPI it picks: XFRM `ALLOCSPI`
/// reserves an SPI for a (source, destination, protocol) triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiRequest {
    /// Our address: the destination of the inbound ESP SA.
    pub local: IpAddr,
    /// The peer's address: its source.
    pub remote: IpAddr,
    /// The CHILD_SA's reqid.
    pub reqid: u32,
}

/// Why no SPI could be had; the text ends up in a `Failed { reason }` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiError(pub String);

impl core::fmt::Display for SpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpiError {}

/// Picks the inbound SPI of each new CHILD_SA (initial, additional, rekeyed).
///
/// Called synchronously from inside the protocol handlers. The result must lie outside the
/// reserved range 0..=255 (RFC 4303 §2.1); values there are refused as an error.
pub trait SpiSource: Send + Sync {
    /// An inbound SPI for `request`; `rng` is the endpoint's injected random source.
    fn inbound_spi(&self, request: &SpiRequest, rng: &mut dyn Random) -> Result<u32, SpiError>;
}

/// The default: a random SPI above 255 from the injected random source.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSpis;

impl SpiSource for RandomSpis {
    fn inbound_spi(&self, _request: &SpiRequest, rng: &mut dyn Random) -> Result<u32, SpiError> {
        loop {
            let mut b = [0u8; 4];
            rng.fill(&mut b);
            let spi = u32::from_be_bytes(b);
            if spi > 255 {
                return Ok(spi);
            }
        }
    }
}

/// The hooks an [`Endpoint`](crate::Endpoint) hands to each of its IKE SAs.
#[derive(Clone)]
pub struct Allocators {
    /// Reqids of new CHILD_SAs.
    pub reqids: Arc<dyn ReqidAllocator>,
    /// Inbound SPIs of CHILD_SAs.
    pub spis: Arc<dyn SpiSource>,
}

impl Default for Allocators {
    fn default() -> Self {
        Allocators {
            reqids: Arc::new(SequentialReqids::new()),
            spis: Arc::new(RandomSpis),
        }
    }
}

impl core::fmt::Debug for Allocators {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Allocators").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_reqids_stay_in_range_and_skip_those_in_use() {
        let a = SequentialReqids::new();
        let first = a.allocate().unwrap();
        assert_eq!(first, 0x4942_0001);
        let second = a.allocate().unwrap();
        assert_eq!(second, 0x4942_0002);
        a.release(first);
        assert_eq!(a.in_use(), 1);
        // Exhaust the range: every value but the reserved first comes out exactly once.
        let mut seen = BTreeSet::from([second]);
        while let Some(r) = a.allocate() {
            assert!(REQIDS.contains(&r) && r != *REQIDS.start());
            assert!(seen.insert(r), "{r:#x} handed out twice");
        }
        assert_eq!(seen.len(), 0xffff);
        a.release(0x4942_1234);
        assert_eq!(a.allocate(), Some(0x4942_1234));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn random_spis_avoid_the_reserved_range() {
        struct Low(u8);
        impl Random for Low {
            fn fill(&mut self, buf: &mut [u8]) {
                // Two draws in the reserved range, then a usable one.
                self.0 += 1;
                buf.fill(0);
                if self.0 > 2 {
                    buf[0] = 1;
                }
            }
        }
        let req = SpiRequest {
            local: "10.0.0.1".parse().unwrap(),
            remote: "10.0.0.2".parse().unwrap(),
            reqid: 0x4942_0001,
        };
        assert_eq!(
            RandomSpis.inbound_spi(&req, &mut Low(0)).unwrap(),
            0x0100_0000
        );
    }
}

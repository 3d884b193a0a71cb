//! `xfrm_lifetime_cfg` (limits we set) and `xfrm_lifetime_cur` (what the kernel counted).
//! A soft limit makes the kernel send a soft EXPIRE (our cue to rekey, RFC 7296 §2.8); the
//! hard limit deletes the SA.

use crate::error::DecodeError;
use crate::netlink::u64_at;
use crate::selector::need;

/// `sizeof(struct xfrm_lifetime_cfg)`.
pub const CFG_LEN: usize = 64;
/// `sizeof(struct xfrm_lifetime_cur)`.
pub const CUR_LEN: usize = 32;

/// The kernel's "no limit".
pub const INFINITE: u64 = u64::MAX;

/// Limits for an SA or policy. `INFINITE` disables a limit; the time limits count seconds
/// since the SA was added (`add`) or first used (`use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// Soft byte limit.
    pub soft_bytes: u64,
    /// Hard byte limit.
    pub hard_bytes: u64,
    /// Soft packet limit.
    pub soft_packets: u64,
    /// Hard packet limit.
    pub hard_packets: u64,
    /// Soft limit, seconds after add.
    pub soft_add_seconds: u64,
    /// Hard limit, seconds after add.
    pub hard_add_seconds: u64,
    /// Soft limit, seconds after first use.
    pub soft_use_seconds: u64,
    /// Hard limit, seconds after first use.
    pub hard_use_seconds: u64,
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        LifetimeConfig {
            soft_bytes: INFINITE,
            hard_bytes: INFINITE,
            soft_packets: INFINITE,
            hard_packets: INFINITE,
            soft_add_seconds: 0,
            hard_add_seconds: 0,
            soft_use_seconds: 0,
            hard_use_seconds: 0,
        }
    }
}

impl LifetimeConfig {
    /// No limits (time limits of 0 mean "none" to the kernel, byte/packet limits use
    /// `INFINITE`).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Soft and hard limits on time since add and on bytes. Pass `INFINITE` bytes for none.
    pub fn time_and_bytes(
        soft_seconds: u64,
        hard_seconds: u64,
        soft_bytes: u64,
        hard_bytes: u64,
    ) -> Self {
        LifetimeConfig {
            soft_bytes,
            hard_bytes,
            soft_add_seconds: soft_seconds,
            hard_add_seconds: hard_seconds,
            ..Self::default()
        }
    }

    /// Pulls the soft time limit earlier by up to `max_jitter_seconds`, so that both peers
    /// (and many SAs installed together) do not rekey at the same instant (RFC 7296 §2.8.1).
    /// `random` comes from the caller's RNG; this crate draws no randomness itself.
    pub fn with_jitter(mut self, random: u64, max_jitter_seconds: u64) -> Self {
        if self.soft_add_seconds > 1 && max_jitter_seconds > 0 {
            let cap = max_jitter_seconds.min(self.soft_add_seconds - 1);
            self.soft_add_seconds -= random % (cap + 1);
        }
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let pairs = [
            ("bytes", self.soft_bytes, self.hard_bytes, INFINITE),
            ("packets", self.soft_packets, self.hard_packets, INFINITE),
            (
                "seconds after add",
                self.soft_add_seconds,
                self.hard_add_seconds,
                0,
            ),
            (
                "seconds after use",
                self.soft_use_seconds,
                self.hard_use_seconds,
                0,
            ),
        ];
        for (what, soft, hard, none) in pairs {
            if hard != none && soft != none && soft > hard {
                return Err(format!("soft lifetime ({what}) {soft} exceeds hard {hard}"));
            }
        }
        Ok(())
    }

    pub(crate) fn emit(&self, out: &mut [u8]) {
        let fields = [
            self.soft_bytes,
            self.hard_bytes,
            self.soft_packets,
            self.hard_packets,
            self.soft_add_seconds,
            self.hard_add_seconds,
            self.soft_use_seconds,
            self.hard_use_seconds,
        ];
        for (i, f) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&f.to_ne_bytes());
        }
    }

    pub(crate) fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_lifetime_cfg", b, CFG_LEN)?;
        Ok(LifetimeConfig {
            soft_bytes: u64_at(b, 0),
            hard_bytes: u64_at(b, 8),
            soft_packets: u64_at(b, 16),
            hard_packets: u64_at(b, 24),
            soft_add_seconds: u64_at(b, 32),
            hard_add_seconds: u64_at(b, 40),
            soft_use_seconds: u64_at(b, 48),
            hard_use_seconds: u64_at(b, 56),
        })
    }
}

/// What the kernel counted for an SA: the per-SA counters `status` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifetimeCurrent {
    /// Bytes processed.
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// When the SA was added (seconds since the epoch).
    pub add_time: u64,
    /// When it was first used (seconds since the epoch, 0 if never).
    pub use_time: u64,
}

impl LifetimeCurrent {
    pub(crate) fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_lifetime_cur", b, CUR_LEN)?;
        Ok(LifetimeCurrent {
            bytes: u64_at(b, 0),
            packets: u64_at(b, 8),
            add_time: u64_at(b, 16),
            use_time: u64_at(b, 24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_round_trip() {
        let l = LifetimeConfig::time_and_bytes(3000, 3600, 1 << 30, 1 << 31);
        let mut b = [0u8; CFG_LEN];
        l.emit(&mut b);
        assert_eq!(LifetimeConfig::parse(&b).unwrap(), l);
        assert!(LifetimeConfig::parse(&b[..63]).is_err());
    }

    #[test]
    fn jitter_stays_below_soft_and_positive() {
        let l = LifetimeConfig::time_and_bytes(3000, 3600, INFINITE, INFINITE);
        for r in [0u64, 1, 299, 300, 301, u64::MAX] {
            let j = l.with_jitter(r, 300);
            assert!(
                j.soft_add_seconds <= 3000 && j.soft_add_seconds >= 2700,
                "{r}"
            );
            assert_eq!(j.hard_add_seconds, 3600);
        }
        assert_eq!(l.with_jitter(5, 300).soft_add_seconds, 2995);
        let tiny = LifetimeConfig::time_and_bytes(2, 10, INFINITE, INFINITE);
        assert!(tiny.with_jitter(u64::MAX, 300).soft_add_seconds >= 1);
    }

    #[test]
    fn validate_soft_not_above_hard() {
        assert!(LifetimeConfig::time_and_bytes(10, 5, INFINITE, INFINITE)
            .validate()
            .is_err());
        assert!(LifetimeConfig::time_and_bytes(5, 10, 100, 50)
            .validate()
            .is_err());
        assert!(LifetimeConfig::time_and_bytes(5, 10, 50, 100)
            .validate()
            .is_ok());
        assert!(LifetimeConfig::time_and_bytes(5, 0, INFINITE, INFINITE)
            .validate()
            .is_ok());
    }
}

//! When to renew the identity certificate (sans-IO).
//!
//! The schedule is told the certificate's validity and the clocks; it answers whether to start
//! a renewal now, when to wake up next, and how healthy the current certificate is. It never
//! reads a clock or sleeps.
//!
//! Two clocks are used on purpose. Validity is wall-clock time (notBefore/notAfter), but the
//! wall clock jumps (NTP at boot, an admin's `date`), so each deadline is also projected onto the
//! monotonic clock when the certificate is recorded, and the earlier of the two wins: a forward
//! jump renews early (harmless), a backward jump cannot postpone a renewal past the real
//! deadline.
//!
//! Policy, after the IBM mount helper: renew at 75 % of the lifetime by default (70–75 %
//! allowed; 45 of 60 minutes), retry failures with backoff starting at 60 s (shorter for short
//! certificates), keep using the current certificate until it truly expires, and report a
//! critical state once less than 10 % of its life is left.

use std::time::{Duration, Instant, SystemTime};

use crate::Error;

/// The two clocks, read together by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall-clock time, compared with certificate validity.
    pub wall: SystemTime,
    /// Monotonic time, for timers and to survive wall-clock jumps.
    pub mono: Instant,
}

impl Now {
    /// Reads both clocks; for drivers, never called by the schedule itself.
    pub fn read() -> Now {
        Now {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl Validity {
    /// The validity of the first certificate in `pem` (the leaf of an issued chain).
    pub fn of_certificate_pem(pem: &str) -> Result<Validity, Error> {
        let invalid = |reason: String| Error::InvalidSetting {
            what: "certificate",
            message: reason,
        };
        let der = pki::pem::certificates(pem.as_bytes())
            .map_err(|e| invalid(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| invalid("no certificate in the PEM text".into()))?;
        let info = pki::CertificateInfo::from_der(&der).map_err(|e| invalid(e.to_string()))?;
        Ok(Validity {
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// notAfter − notBefore, zero if inverted.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }
}

/// The range `renew_at_percent` may take: IBM documents 70 %, its helper's docs say 45 of
/// 60 minutes (75 %).
pub const RENEW_AT_PERCENT_RANGE: std::ops::RangeInclusive<u8> = 70..=75;

/// Tunables of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    renew_at_percent: u8,
    /// First retry delay after a failed renewal (shortened to 1/60 of the lifetime for short
    /// certificates); doubles per further failure.
    pub retry_initial: Duration,
    /// Longest retry delay (also never more than 1/10 of the lifetime).
    pub retry_max: Duration,
    /// Below this share of the lifetime left, the state is [`Health::Critical`] and retries
    /// run at the initial delay.
    pub critical_below_percent: u8,
    /// Longest the driver should sleep before asking again, so a wall-clock jump is noticed.
    pub max_sleep: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            renew_at_percent: 75,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(300),
            critical_below_percent: 10,
            max_sleep: Duration::from_secs(60),
        }
    }
}

impl RenewalPolicy {
    /// The default policy renewing at `percent` of the lifetime (70–75).
    pub fn new(renew_at_percent: u8) -> Result<Self, Error> {
        if !RENEW_AT_PERCENT_RANGE.contains(&renew_at_percent) {
            return Err(Error::InvalidSetting {
                what: "renew_at_percent",
                message: format!(
                    "{renew_at_percent} is outside {}–{} %",
                    RENEW_AT_PERCENT_RANGE.start(),
                    RENEW_AT_PERCENT_RANGE.end()
                ),
            });
        }
        Ok(RenewalPolicy {
            renew_at_percent,
            ..RenewalPolicy::default()
        })
    }

    /// Share of the lifetime after which a renewal starts.
    pub fn renew_at_percent(&self) -> u8 {
        self.renew_at_percent
    }
}

/// How the current certificate is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Before the renewal point.
    Valid {
        /// Time until the renewal starts.
        renew_in: Duration,
    },
    /// Past the renewal point; renewing (or retrying after `failures` failures). The current
    /// certificate is still in use.
    Renewing {
        /// Failed attempts so far.
        failures: u32,
        /// Time the current certificate has left.
        expires_in: Duration,
    },
    /// Less than the critical share of the lifetime left and no new certificate yet: warn
    /// loudly, the connection will fail when the certificate expires.
    Critical {
        /// Failed attempts so far.
        failures: u32,
        /// Time the current certificate has left.
        expires_in: Duration,
    },
    /// The certificate has expired; new IKE authentications will fail until renewal succeeds.
    Expired {
        /// Failed attempts so far.
        failures: u32,
        /// How long ago it expired (by the clock that says it expired earliest).
        ago: Duration,
    },
}

impl Health {
    /// Whether this state deserves a loud warning.
    pub fn is_alarming(&self) -> bool {
        matches!(self, Health::Critical { .. } | Health::Expired { .. })
    }
}

/// The renewal state of one certificate.
#[derive(Debug, Clone)]
pub struct RenewalSchedule {
    policy: RenewalPolicy,
    validity: Validity,
    anchor: Now,
    failures: u32,
    retry_at: Option<Instant>,
    in_flight: bool,
}

impl RenewalSchedule {
    /// Starts tracking a certificate with `validity`, recorded at `now`.
    pub fn new(policy: RenewalPolicy, validity: Validity, now: Now) -> Self {
        RenewalSchedule {
            policy,
            validity,
            anchor: now,
            failures: 0,
            retry_at: None,
            in_flight: false,
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> &RenewalPolicy {
        &self.policy
    }

    /// The validity of the certificate in use.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wall-clock renewal point: notBefore + percent × lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self.validity.lifetime();
        self.validity.not_before + percent_of(lifetime, self.policy.renew_at_percent)
    }

    /// Whether a renewal should start now. Returns `true` once; the driver then reports the
    /// outcome with [`Self::on_renewed`] or [`Self::on_failed`].
    pub fn poll_renew(&mut self, now: Now) -> bool {
        if self.in_flight {
            return false;
        }
        let due = match self.retry_at {
            Some(at) => now.mono >= at,
            None => self.remaining(self.renew_at(), now).is_zero(),
        };
        if due {
            self.in_flight = true;
        }
        due
    }

    /// A renewal succeeded: track the new certificate from `now`.
    pub fn on_renewed(&mut self, now: Now, validity: Validity) {
        *self = RenewalSchedule::new(self.policy, validity, now);
    }

    /// A renewal failed at `now`; returns the delay until the next attempt.
    pub fn on_failed(&mut self, now: Now) -> Duration {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        let lifetime = self.validity.lifetime();
        let base = self
            .policy
            .retry_initial
            .min(lifetime / 60)
            .max(Duration::from_secs(1));
        let delay = if self.health(now).is_alarming() {
            base
        } else {
            let cap = self.policy.retry_max.min(lifetime / 10).max(base);
            let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
            base.saturating_mul(factor).min(cap)
        };
        self.retry_at = Some(now.mono + delay);
        delay
    }

    /// When the driver should call [`Self::poll_renew`] / [`Self::health`] again.
    pub fn next_wakeup(&self, now: Now) -> Instant {
        let cap = now.mono + self.policy.max_sleep;
        if self.in_flight {
            return cap;
        }
        let due = match self.retry_at {
            Some(at) => at,
            None => now.mono + self.remaining(self.renew_at(), now),
        };
        due.min(cap)
    }

    /// The state of the current certificate at `now`.
    pub fn health(&self, now: Now) -> Health {
        let failures = self.failures;
        let not_after = self.validity.not_after;
        let expires_in = self.remaining(not_after, now);
        if expires_in.is_zero() {
            let by_wall = now.wall.duration_since(not_after).unwrap_or(Duration::ZERO);
            let by_mono = now
                .mono
                .saturating_duration_since(self.mono_deadline(not_after));
            return Health::Expired {
                failures,
                ago: by_wall.max(by_mono),
            };
        }
        let critical = percent_of(self.validity.lifetime(), self.policy.critical_below_percent);
        if expires_in < critical {
            return Health::Critical {
                failures,
                expires_in,
            };
        }
        let renew_in = self.remaining(self.renew_at(), now);
        if renew_in.is_zero() || self.retry_at.is_some() {
            Health::Renewing {
                failures,
                expires_in,
            }
        } else {
            Health::Valid { renew_in }
        }
    }

    /// `target` projected onto the monotonic clock at the time the certificate was recorded.
    fn mono_deadline(&self, target: SystemTime) -> Instant {
        let ahead = target
            .duration_since(self.anchor.wall)
            .unwrap_or(Duration::ZERO);
        self.anchor.mono + ahead
    }

    /// Time until `target` by whichever clock reaches it first.
    fn remaining(&self, target: SystemTime, now: Now) -> Duration {
        let by_wall = target.duration_since(now.wall).unwrap_or(Duration::ZERO);
        let by_mono = self
            .mono_deadline(target)
            .saturating_duration_since(now.mono);
        by_wall.min(by_mono)
    }
}

/// `percent` % of `d`, in exact integer arithmetic (0.7 has no exact binary float).
fn percent_of(d: Duration, percent: u8) -> Duration {
    let nanos = d.as_nanos() * u128::from(percent) / 100;
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// A pair of clocks the test moves by hand.
    struct Clock {
        wall: SystemTime,
        mono: Instant,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                mono: Instant::now(),
            }
        }
        fn now(&self) -> Now {
            Now {
                wall: self.wall,
                mono: self.mono,
            }
        }
        fn advance(&mut self, d: Duration) {
            self.wall += d;
            self.mono += d;
        }
        fn cert(&self, lifetime: Duration) -> Validity {
            Validity {
                not_before: self.wall,
                not_after: self.wall + lifetime,
            }
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn one_hour_certificate_renews_at_45_minutes() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        assert_eq!(s.renew_at(), clock.wall + 45 * MIN);
        assert_eq!(s.health(clock.now()), Health::Valid { renew_in: 45 * MIN });
        // The driver never sleeps more than a minute, so it would notice a wall-clock jump.
        assert_eq!(s.next_wakeup(clock.now()), clock.mono + MIN);
        clock.advance(45 * MIN - secs(1));
        assert!(!s.poll_renew(clock.now()));
        assert_eq!(s.next_wakeup(clock.now()), clock.mono + secs(1));
        clock.advance(secs(1));
        assert!(s.poll_renew(clock.now()));
        assert!(!s.poll_renew(clock.now()), "one renewal at a time");
        assert_eq!(
            s.health(clock.now()),
            Health::Renewing {
                failures: 0,
                expires_in: 15 * MIN
            }
        );
    }

    #[test]
    fn seventy_percent_policy_renews_at_42_minutes() {
        let clock = Clock::new();
        let s = RenewalSchedule::new(
            RenewalPolicy::new(70).unwrap(),
            clock.cert(60 * MIN),
            clock.now(),
        );
        assert_eq!(s.renew_at(), clock.wall + 42 * MIN);
    }

    #[test]
    fn validity_is_read_from_an_issued_leaf() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = pki::ca::TestCa::generate(now).unwrap();
        let key = pki::HostKey::generate(pki::KeySize::Rsa2048).unwrap();
        let der = ca
            .issue_for_key(
                key.public_key_info_der(),
                "C=US,CN=leaf",
                pki::ca::Validity::starting_at(now, 60 * MIN),
                &pki::ca::LeafOptions::default(),
            )
            .unwrap();
        let pem = pki::pem::encode("CERTIFICATE", &der) + &ca.intermediate_pem();
        let v = Validity::of_certificate_pem(&pem).unwrap();
        assert_eq!(
            v,
            Validity {
                not_before: now,
                not_after: now + 60 * MIN
            }
        );
        assert!(Validity::of_certificate_pem("no pem here").is_err());
    }

    #[test]
    fn policy_percent_is_bounded() {
        assert!(RenewalPolicy::new(69).is_err());
        assert!(RenewalPolicy::new(76).is_err());
        assert_eq!(RenewalPolicy::new(72).unwrap().renew_at_percent(), 72);
    }

    #[test]
    fn five_minute_certificate_renews_at_3m45_and_retries_quickly() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(5 * MIN), clock.now());
        assert_eq!(s.renew_at(), clock.wall + secs(225));
        clock.advance(secs(225));
        assert!(s.poll_renew(clock.now()));
        // Base delay is 1/60 of the lifetime (5 s), capped at 1/10 (30 s).
        let mut delays = Vec::new();
        for _ in 0..4 {
            let d = s.on_failed(clock.now());
            delays.push(d.as_secs());
            clock.advance(d);
            assert!(s.poll_renew(clock.now()));
        }
        assert_eq!(delays, [5, 10, 20, 30]);
        // 225 + 65 = 290 s: 10 s left of 300, under 10 % (30 s) → critical, base delay.
        assert_eq!(
            s.health(clock.now()),
            Health::Critical {
                failures: 4,
                expires_in: secs(10)
            }
        );
        assert_eq!(s.on_failed(clock.now()), secs(5));
    }

    #[test]
    fn failures_back_off_keep_the_certificate_and_turn_critical_then_expired() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        clock.advance(45 * MIN);
        let mut at = Vec::new();
        for _ in 0..4 {
            assert!(s.poll_renew(clock.now()));
            let d = s.on_failed(clock.now());
            assert!(!s.poll_renew(clock.now()), "not before the retry delay");
            assert_eq!(s.next_wakeup(clock.now()), clock.mono + d.min(MIN));
            clock.advance(d);
            at.push((clock.wall.duration_since(s.validity().not_before).unwrap()).as_secs() / 60);
        }
        // 60 s, 120 s, 240 s, then the 5-minute cap.
        assert_eq!(at, [46, 48, 52, 57]);
        // Still using the current certificate: 3 minutes left is under 10 % → critical.
        assert_eq!(
            s.health(clock.now()),
            Health::Critical {
                failures: 4,
                expires_in: 3 * MIN
            }
        );
        assert!(s.health(clock.now()).is_alarming());
        assert!(s.poll_renew(clock.now()));
        assert_eq!(
            s.on_failed(clock.now()),
            MIN,
            "critical: retry at the base delay"
        );
        clock.advance(3 * MIN + secs(5));
        assert_eq!(
            s.health(clock.now()),
            Health::Expired {
                failures: 5,
                ago: secs(5)
            }
        );
        assert!(s.poll_renew(clock.now()), "keeps trying after expiry");
        assert_eq!(s.on_failed(clock.now()), MIN);
    }

    #[test]
    fn renewing_while_retrying_is_not_yet_alarming() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        clock.advance(45 * MIN);
        assert!(s.poll_renew(clock.now()));
        s.on_failed(clock.now());
        let h = s.health(clock.now());
        assert_eq!(
            h,
            Health::Renewing {
                failures: 1,
                expires_in: 15 * MIN
            }
        );
        assert!(!h.is_alarming());
    }

    #[test]
    fn success_resets_failures_and_tracks_the_new_certificate() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        clock.advance(45 * MIN);
        assert!(s.poll_renew(clock.now()));
        s.on_failed(clock.now());
        clock.advance(MIN);
        assert!(s.poll_renew(clock.now()));
        s.on_renewed(clock.now(), clock.cert(10 * MIN));
        assert_eq!(s.failures(), 0);
        assert_eq!(
            s.health(clock.now()),
            Health::Valid {
                renew_in: secs(450)
            }
        );
        assert!(!s.poll_renew(clock.now()));
    }

    #[test]
    fn wall_clock_jumping_forward_renews_early() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        clock.mono += MIN;
        clock.wall += 50 * MIN;
        assert!(s.poll_renew(clock.now()));
        assert_eq!(
            s.health(clock.now()),
            Health::Renewing {
                failures: 0,
                expires_in: 10 * MIN
            }
        );
    }

    #[test]
    fn wall_clock_jumping_back_cannot_postpone_renewal_or_expiry() {
        let mut clock = Clock::new();
        let mut s =
            RenewalSchedule::new(RenewalPolicy::default(), clock.cert(60 * MIN), clock.now());
        clock.mono += 44 * MIN;
        clock.wall -= 2 * 60 * MIN;
        assert!(!s.poll_renew(clock.now()));
        assert_eq!(s.next_wakeup(clock.now()), clock.mono + MIN);
        clock.advance(MIN);
        assert!(
            s.poll_renew(clock.now()),
            "monotonic clock says 45 minutes have passed"
        );
        s.on_failed(clock.now());
        clock.advance(16 * MIN);
        assert!(matches!(s.health(clock.now()), Health::Expired { ago, .. } if ago == MIN));
    }

    #[test]
    fn already_expired_certificate_renews_at_once() {
        let clock = Clock::new();
        let validity = Validity {
            not_before: clock.wall - 2 * 60 * MIN,
            not_after: clock.wall - 60 * MIN,
        };
        let mut s = RenewalSchedule::new(RenewalPolicy::default(), validity, clock.now());
        assert_eq!(
            s.health(clock.now()),
            Health::Expired {
                failures: 0,
                ago: 60 * MIN
            }
        );
        assert_eq!(s.next_wakeup(clock.now()), clock.mono);
        assert!(s.poll_renew(clock.now()));
    }

    #[test]
    fn inverted_or_empty_validity_does_not_panic() {
        let clock = Clock::new();
        let validity = Validity {
            not_before: clock.wall + MIN,
            not_after: clock.wall,
        };
        let mut s = RenewalSchedule::new(RenewalPolicy::default(), validity, clock.now());
        assert_eq!(validity.lifetime(), Duration::ZERO);
        assert!(matches!(s.health(clock.now()), Health::Expired { .. }));
        // renew_at = notBefore, one minute ahead on both clocks: due then.
        assert!(!s.poll_renew(clock.now()));
        assert_eq!(
            s.on_failed(clock.now()),
            secs(1),
            "zero lifetime still waits a second"
        );
    }

    #[test]
    fn certificate_not_yet_valid_counts_from_not_before() {
        let mut clock = Clock::new();
        // The service's clock runs 30 s ahead of ours.
        let validity = Validity {
            not_before: clock.wall + secs(30),
            not_after: clock.wall + secs(30) + 60 * MIN,
        };
        let mut s = RenewalSchedule::new(RenewalPolicy::default(), validity, clock.now());
        assert_eq!(
            s.health(clock.now()),
            Health::Valid {
                renew_in: 45 * MIN + secs(30)
            }
        );
        clock.advance(45 * MIN + secs(29));
        assert!(!s.poll_renew(clock.now()));
        clock.advance(secs(1));
        assert!(s.poll_renew(clock.now()));
    }
}

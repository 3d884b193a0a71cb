//! Request retransmission (RFC 7296 §2.1, §2.4) with strongSwan's schedule: the n-th
//! retransmission waits `timeout × base^n`, reduced by a random jitter, and after `tries`
//! retransmissions one more such wait ends the exchange (and the IKE SA).

use std::time::{Duration, Instant};

use crate::crypto::Random;

/// How hard we try before declaring a peer dead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitConfig {
    /// First wait (strongSwan `retransmit_timeout`, 4 s).
    pub timeout: Duration,
    /// Growth per retransmission (strongSwan `retransmit_base`, 1.8).
    pub base: f64,
    /// Retransmissions before giving up (strongSwan `retransmit_tries`, 5).
    pub tries: u32,
    /// Up to this fraction of each wait is cut at random, so that many SAs started together
    /// do not retransmit in lockstep (strongSwan `retransmit_jitter`, in percent there).
    pub jitter: f64,
    /// Upper bound on one wait (strongSwan `retransmit_limit`).
    pub limit: Duration,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        RetransmitConfig {
            timeout: Duration::from_secs(4),
            base: 1.8,
            tries: 5,
            jitter: 0.2,
            limit: Duration::from_secs(3600),
        }
    }
}

impl RetransmitConfig {
    /// The wait after the `attempt`-th transmission (0 = the original), jittered.
    pub fn delay(&self, attempt: u32, rng: &mut dyn Random) -> Duration {
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let full = self.timeout.as_secs_f64() * self.base.max(1.0).powi(exp);
        let full = full.min(self.limit.as_secs_f64());
        let mut r = [0u8; 2];
        rng.fill(&mut r);
        let fraction = f64::from(u16::from_be_bytes(r)) / f64::from(u16::MAX);
        let cut = full * self.jitter.clamp(0.0, 1.0) * fraction;
        Duration::from_secs_f64((full - cut).max(0.001))
    }
}

/// What to do when a retransmission timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Not yet due.
    Wait,
    /// Send the request (all its fragments) again.
    Retransmit,
    /// Out of tries: the peer is gone.
    GiveUp,
}

/// The retransmission state of one outstanding request.
#[derive(Debug, Clone)]
pub struct Retransmitter {
    attempt: u32,
    deadline: Instant,
}

impl Retransmitter {
    /// Starts the timer for a request sent at `now`.
    pub fn new(now: Instant, config: &RetransmitConfig, rng: &mut dyn Random) -> Self {
        Retransmitter {
            attempt: 0,
            deadline: now + config.delay(0, rng),
        }
    }

    /// When the timer fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Retransmissions so far.
    pub fn retransmissions(&self) -> u32 {
        self.attempt
    }

    /// Advances the timer at `now`.
    pub fn on_timeout(
        &mut self,
        now: Instant,
        config: &RetransmitConfig,
        rng: &mut dyn Random,
    ) -> Timeout {
        if now < self.deadline {
            return Timeout::Wait;
        }
        if self.attempt >= config.tries {
            return Timeout::GiveUp;
        }
        self.attempt += 1;
        self.deadline = now + config.delay(self.attempt, rng);
        Timeout::Retransmit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededRandom;

    #[test]
    fn strongswan_schedule_without_jitter() {
        let cfg = RetransmitConfig {
            jitter: 0.0,
            ..Default::default()
        };
        let mut rng = SeededRandom::new(1);
        let t0 = Instant::now();
        let mut r = Retransmitter::new(t0, &cfg, &mut rng);
        let mut now = t0;
        let mut waits = Vec::new();
        loop {
            let wait = r.deadline() - now;
            waits.push((wait.as_secs_f64() * 100.0).round() / 100.0);
            now = r.deadline();
            assert_eq!(
                r.on_timeout(now - Duration::from_millis(1), &cfg, &mut rng),
                Timeout::Wait
            );
            match r.on_timeout(now, &cfg, &mut rng) {
                Timeout::Retransmit => {}
                Timeout::GiveUp => break,
                Timeout::Wait => unreachable!(),
            }
        }
        assert_eq!(waits, vec![4.0, 7.2, 12.96, 23.33, 41.99, 75.58]);
        assert_eq!(r.retransmissions(), 5);
    }

    #[test]
    fn jitter_only_shortens() {
        let cfg = RetransmitConfig::default();
        let mut rng = SeededRandom::new(7);
        for attempt in 0..5 {
            let d = cfg.delay(attempt, &mut rng).as_secs_f64();
            let full = 4.0 * 1.8f64.powi(attempt as i32);
            assert!(d <= full + 1e-9 && d >= full * 0.8 - 1e-9, "{d} vs {full}");
        }
    }
}

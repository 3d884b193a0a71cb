//! The life of an IKE SA after IKE_AUTH: rekey and hard-expiry timers of the IKE SA and of
//! each CHILD_SA (RFC 7296 §2.8, §2.18, with strongSwan's `rekey_time`/`rand_time`/
//! `over_time` semantics, see [`SaLifetime`](crate::config::SaLifetime)), dead-peer detection
//! when the peer has been silent (§2.4), retries of rekeys the peer refused with
//! TEMPORARY_FAILURE (§2.25), and the quiet retirement of an SA that a rekey superseded.
//!
//! Every deadline is an absolute `Instant` computed from the `now` the driver passes in, and
//! every random draw comes from the injected [`Random`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::collision::IkeCollision;
use super::ike_rekey::Handover;
use super::{child::ChildState, Command, IkeSa, State};
use crate::config::random_below;
use crate::crypto::Random;
use crate::event::Event;
use crate::retransmit::RetransmitConfig;

/// When one CHILD_SA is rekeyed and when it must be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChildTimers {
    /// `None` once the rekey was started (a refused rekey is retried through
    /// [`Lifecycle::retries`]; if it never succeeds, `expire_at` ends the SA).
    pub(super) rekey_at: Option<Instant>,
    pub(super) expire_at: Instant,
}

/// The lifetime state of one IKE SA.
#[derive(Default)]
pub(super) struct Lifecycle {
    /// When to rekey the IKE SA; drawn when it is established, `None` once started.
    pub(super) ike_rekey_at: Option<Instant>,
    /// When to delete the IKE SA if rekeying never succeeded.
    pub(super) ike_expire_at: Option<Instant>,
    /// The last authenticated message from the peer, or ESP traffic on one of our CHILD_SAs
    /// ([`liveness`](super::liveness)); DPD runs `dpd_delay` after it.
    pub(super) last_heard: Option<Instant>,
    /// The last time anything went to the peer (IKE, ESP, a keepalive); a host behind a NAT
    /// sends a keepalive `nat_keepalive` after it.
    pub(super) last_sent: Option<Instant>,
    /// The datapath's counters last seen per CHILD_SA.
    pub(super) traffic: Vec<super::liveness::Seen>,
    /// Rekeys refused with TEMPORARY_FAILURE, retried at the given time (§2.25).
    pub(super) retries: Vec<(Instant, Command)>,
    /// Report nothing to the driver: the SA was superseded by a rekey, or is a successor that
    /// has not (yet) inherited the CHILD_SAs (a redundant SA of §2.8.2 never does).
    pub(super) quiet: bool,
    /// A quiet SA that the peer is expected to delete closes by itself at this time.
    pub(super) retire_at: Option<Instant>,
    /// Successor IKE SAs made by rekeys, for the owner to route to (§2.18).
    pub(super) successors: VecDeque<IkeSa>,
    /// CHILD_SAs (and waiting commands) to move to a successor.
    pub(super) handover: Option<Handover>,
    /// The peer's IKE SA rekey that we answered while ours was in flight (§2.8.2).
    pub(super) ike_collision: Option<IkeCollision>,
}

impl Lifecycle {
    /// Forgets every timer (the SA is closed). Successors and a hand-over already made stay
    /// for the owner to collect.
    pub(super) fn clear(&mut self) {
        self.ike_rekey_at = None;
        self.ike_expire_at = None;
        self.last_heard = None;
        self.last_sent = None;
        self.traffic.clear();
        self.retries.clear();
        self.retire_at = None;
        self.ike_collision = None;
    }
}

/// How long a request may stay unanswered before the retransmission schedule gives up (the
/// sum of every wait, without jitter, which only shortens them).
pub(super) fn retransmit_span(cfg: &RetransmitConfig) -> Duration {
    let mut total = Duration::ZERO;
    let mut wait = cfg.timeout.as_secs_f64();
    for _ in 0..=cfg.tries {
        total += Duration::from_secs_f64(wait.min(cfg.limit.as_secs_f64()));
        wait *= cfg.base.max(1.0);
    }
    total
}

impl IkeSa {
    /// How long a superseded or redundant SA waits for the peer's DELETE before closing by
    /// itself: the peer's DELETE may need its whole retransmission schedule, and a collision
    /// is decided within one more.
    pub(super) fn retire_after(&self) -> Duration {
        retransmit_span(&self.config.retransmit) * 2 + Duration::from_secs(60)
    }

    /// A delay for retrying a rekey the peer refused with TEMPORARY_FAILURE: the configured
    /// interval shortened at random so that the two peers do not collide again.
    pub(super) fn schedule_retry(&mut self, now: Instant, cmd: Command, rng: &mut dyn Random) {
        let cut = random_below(
            self.config.rekey_retry_jitter.min(self.config.rekey_retry),
            rng,
        );
        let at = now + self.config.rekey_retry.saturating_sub(cut);
        if !self.life.retries.iter().any(|(_, c)| *c == cmd) {
            self.life.retries.push((at, cmd));
        }
    }

    /// Draws the timers of an IKE SA that just became established and of CHILD_SAs that have
    /// none yet. Runs after every input, so new SAs get their schedule at once.
    pub(super) fn schedule_lifetimes(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.state != State::Established {
            return;
        }
        if self.life.last_heard.is_none() {
            self.life.last_heard = Some(now);
        }
        if self.life.last_sent.is_none() {
            self.life.last_sent = Some(now);
        }
        if self.life.ike_expire_at.is_none() {
            let ike = self.config.ike_rekey;
            self.life.ike_rekey_at = Some(now + ike.draw_rekey(rng));
            self.life.ike_expire_at = Some(now + ike.hard());
        }
        let child = self.config.child_rekey;
        for c in self.children.iter_mut().filter(|c| c.timers.is_none()) {
            c.timers = Some(ChildTimers {
                rekey_at: Some(now + child.draw_rekey(rng)),
                expire_at: now + child.hard(),
            });
        }
    }

    /// The earliest lifetime timer.
    pub(super) fn lifecycle_deadline(&self) -> Option<Instant> {
        let mut t: Vec<Option<Instant>> = vec![self.life.retire_at];
        if self.state == State::Established && !self.life.quiet {
            t.push(self.life.ike_rekey_at);
            t.push(self.life.ike_expire_at);
            t.push(
                self.config
                    .dpd_delay
                    .zip(self.life.last_heard)
                    .map(|(d, l)| l + d),
            );
            t.extend(self.life.retries.iter().map(|(at, _)| Some(*at)));
            for c in &self.children {
                let Some(timers) = c.timers else { continue };
                if c.state == ChildState::Installed {
                    t.push(timers.rekey_at);
                }
                if c.state != ChildState::Deleting {
                    t.push(Some(timers.expire_at));
                }
            }
        }
        t.into_iter().flatten().min()
    }

    fn queue(&mut self, cmd: Command) {
        if !self.commands.contains(&cmd) {
            self.commands.push_back(cmd);
        }
    }

    /// Runs the lifetime timers due at `now` and starts what they call for.
    pub(super) fn handle_lifecycle_timeout(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.life.retire_at.is_some_and(|t| now >= t) {
            self.close("superseded".into());
            return;
        }
        if self.state != State::Established || self.life.quiet {
            return;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        if due(self.life.ike_expire_at) {
            // Rekeying never succeeded: the IKE SA must not outlive its hard limit.
            self.life.ike_expire_at = None;
            self.life.ike_rekey_at = None;
            self.events.push_back(Event::Failed {
                reason: "IKE SA reached its hard lifetime without being rekeyed".into(),
            });
            self.commands.clear();
            self.commands.push_front(Command::DeleteIke);
            if self.pending.is_some() {
                // The window is busy; nothing more may be said on this SA.
                self.close("IKE SA lifetime expired".into());
                return;
            }
        } else if due(self.life.ike_rekey_at) {
            self.life.ike_rekey_at = None;
            self.queue(Command::RekeyIke);
        }
        let mut expired = Vec::new();
        let mut rekey = Vec::new();
        for c in &mut self.children {
            let Some(timers) = c.timers.as_mut() else {
                continue;
            };
            if c.state != ChildState::Deleting && now >= timers.expire_at {
                expired.push(c.spi_in);
            } else if c.state == ChildState::Installed && due(timers.rekey_at) {
                timers.rekey_at = None;
                rekey.push(c.spi_in);
            }
        }
        let later = now + self.retire_after();
        for spi_in in expired {
            if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
                // Deleted by the command below; push the timer out so it fires once.
                if let Some(t) = c.timers.as_mut() {
                    t.expire_at = later;
                }
            }
            self.queue(Command::DeleteChild { spi_in });
        }
        for spi_in in rekey {
            self.queue(Command::RekeyChild { spi_in });
        }
        let (due_retries, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.life.retries)
            .into_iter()
            .partition(|(at, _)| now >= *at);
        self.life.retries = later;
        for (_, cmd) in due_retries {
            self.queue(cmd);
        }
        if let (Some(delay), Some(last)) = (self.config.dpd_delay, self.life.last_heard) {
            if now >= last + delay {
                // Any request in flight proves liveness just as well (§2.4).
                if self.pending.is_none() && self.commands.is_empty() {
                    self.queue(Command::Dpd);
                }
                self.life.last_heard = Some(now);
            }
        }
        self.kick(now, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_span_sums_the_schedule() {
        let cfg = RetransmitConfig::default();
        // 4 + 7.2 + 12.96 + 23.33 + 41.99 + 75.58
        let s = retransmit_span(&cfg).as_secs_f64();
        assert!((s - 165.06).abs() < 0.1, "{s}");
        let capped = RetransmitConfig {
            limit: Duration::from_secs(10),
            ..cfg
        };
        assert!((retransmit_span(&capped).as_secs_f64() - 51.2).abs() < 0.1);
    }
}

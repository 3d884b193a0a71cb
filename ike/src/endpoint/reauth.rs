//! Reauthentication, make-before-break (RFC 7296 §2.8.3): see
//! [`Endpoint::reauthenticate`].

use std::time::Instant;

use super::{Endpoint, SaHandle};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::sa::IkeSa;

/// A reauthentication in progress, keyed by the new SA's handle.
#[derive(Debug)]
pub(super) struct Reauth {
    old: SaHandle,
    /// CHILD_SAs to recreate.
    expected: usize,
    up: usize,
    failure: Option<String>,
    /// The reqids being carried over: held while the reauthentication runs, so that they
    /// are not released (and handed out again) if the old SA goes away meanwhile.
    reqids: Vec<u32>,
}

impl Reauth {
    /// The SA being replaced was rekeyed (RFC 7296 §2.18): delete its successor instead.
    pub(super) fn follow_rekey(&mut self, from: SaHandle, to: SaHandle) {
        if self.old == from {
            self.old = to;
        }
    }
}

impl Endpoint {
    /// Reauthenticates the IKE SA `handle`: a new IKE SA to the same peer address with the
    /// same config (so the authenticator is asked for its identity, certificates and
    /// signature now, i.e. after a certificate renewal it presents the new certificate),
    /// recreating every CHILD_SA with its selectors and reqid; only when all are up is the
    /// old IKE SA deleted (with its CHILD_SAs). Returns the new SA's handle. Either side
    /// may call it, whichever role it had in the old SA: we are the initiator of the new
    /// one. Used after every certificate renewal, so the peer sees the new certificate and
    /// no SA lapses.
    ///
    /// Order of events for the driver:
    /// 1. on the new handle: `IkeSaUp`, then `ChildSaUp` for each recreated CHILD_SA (same
    ///    selectors, **same reqid** as the one it replaces, new SPIs and keys): install them
    ///    next to the old ones;
    /// 2. on the new handle: [`Event::Reauthenticated`] once every CHILD_SA is up;
    /// 3. on the old handle: `ChildSaDown` for each old CHILD_SA and `IkeSaDown` once the
    ///    peer confirmed the DELETE (or gave up on it): remove those ESP SAs by SPI; the
    ///    reqid, and the policy that names it, is still used by the new ones.
    ///
    /// The peer, if it is an `Endpoint` too, gives the new CHILD_SAs the reqids of the ones
    /// they replace (same authenticated peer, same selectors), so the same holds there.
    ///
    /// If the new IKE SA or any of its CHILD_SAs fails (the peer must prove the identity the
    /// old SA authenticated: another one fails IKE_AUTH), the old IKE SA is left untouched, a
    /// `Failed` event on the **old** handle says why, and the new SA is deleted (its
    /// `ChildSaDown`s, if any came up, name SPIs of the new SA only). Errors: no such SA,
    /// not established, or a reauthentication of it already running.
    pub fn reauthenticate(&mut self, now: Instant, handle: SaHandle) -> Result<SaHandle> {
        let old = self.sas.get(&handle).ok_or(Error::NoSuchSa(handle))?;
        if !old.is_established() {
            return Err(Error::NotEstablished);
        }
        if self.reauths.values().any(|r| r.old == handle) {
            return Err(Error::Protocol(
                "a reauthentication of this IKE SA is already running".into(),
            ));
        }
        let templates = old.child_templates();
        let expected = templates.len().max(1);
        let reqids: Vec<u32> = templates.iter().map(|t| t.reqid).collect();
        let peer = old.peer().map(|p| p.id.clone());
        let mut sa = IkeSa::initiate_reauth(
            old.config().clone(),
            old.local(),
            old.remote(),
            self.allocators.clone(),
            templates,
            now,
            &mut *self.rng,
        )?;
        sa.expect_peer(peer);
        let new = sa.local_spi();
        self.sas.insert(new, sa);
        for r in &reqids {
            *self.live_reqids.entry(*r).or_default() += 1;
        }
        self.reauths.insert(
            new,
            Reauth {
                old: handle,
                expected,
                up: 0,
                failure: None,
                reqids,
            },
        );
        self.drain(now, new);
        Ok(new)
    }

    /// Follows the new SA of a reauthentication through the events it just emitted
    /// (`self.events[first..]`).
    pub(super) fn follow_reauth(&mut self, now: Instant, new: SaHandle, first: usize) {
        let Some(r) = self.reauths.get_mut(&new) else {
            return;
        };
        for (h, e) in self.events.range(first..) {
            if *h != new {
                continue;
            }
            match e {
                Event::ChildSaUp(_) => r.up += 1,
                Event::Failed { reason } => {
                    r.failure.get_or_insert_with(|| reason.clone());
                }
                Event::IkeSaDown { reason } => {
                    r.failure.get_or_insert_with(|| reason.clone());
                }
                _ => {}
            }
        }
        let old = r.old;
        if let Some(reason) = r.failure.clone() {
            self.finish_reauth(new);
            self.events.push_back((
                old,
                Event::Failed {
                    reason: format!(
                        "reauthentication failed, keeping the current IKE SA: {reason}"
                    ),
                },
            ));
            // Take down what the new SA built; the old SA is not touched.
            if let Some(sa) = self.sas.get_mut(&new) {
                if sa.is_established() {
                    let _ = sa.delete(now, &mut *self.rng);
                }
            }
            return;
        }
        let done = self
            .sas
            .get(&new)
            .is_some_and(|sa| sa.planned_children_done());
        if !done || r.up < r.expected {
            return;
        }
        self.finish_reauth(new);
        self.events.push_back((new, Event::Reauthenticated { old }));
        if self.sas.contains_key(&old) {
            let _ = self.with_sa(now, old, |sa, rng| sa.delete(now, rng));
        }
    }

    /// Forgets a reauthentication and drops its hold on the reqids it carried over.
    fn finish_reauth(&mut self, new: SaHandle) {
        let Some(r) = self.reauths.remove(&new) else {
            return;
        };
        for reqid in r.reqids {
            self.unref_reqid(reqid);
        }
    }
}

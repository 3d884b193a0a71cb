//! IKE_AUTH (RFC 7296 §1.2, §2.15): identities, certificates, AUTH over the signed octets,
//! and the first CHILD_SA.

use std::time::Instant;

use super::{child::ChildRequest, rules, IkeSa, State, Task};
use crate::auth::{PeerIdentity, SignContext, VerifyRequest};
use crate::crypto::{Random, Role};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::wire::{
    Authentication, CertEncoding, Certificate, ExchangeType, Identification, Notify, NotifyType,
    Payload,
};

/// Our ID, CERT payloads and AUTH payload for IKE_AUTH.
pub(super) type OwnAuth = (Identification, Vec<Payload>, Payload);

impl IkeSa {
    /// Our ID, certificates and AUTH payload, signing our IKE_SA_INIT message, the peer's
    /// nonce and prf(SK_p, our ID) (RFC 7296 §2.15).
    fn own_auth(&self, signer: Role, id: Identification) -> Result<OwnAuth> {
        let init = self.init.as_ref().ok_or(Error::NotEstablished)?;
        let keys = self.keys.as_ref().ok_or(Error::NotEstablished)?;
        let (message, peer_nonce) = match signer {
            Role::Initiator => (&init.request, &init.nr),
            Role::Responder => (&init.response, &init.ni),
        };
        let octets = keys
            .ike
            .signed_octets(signer, message, peer_nonce, &id.body());
        let ctx = SignContext {
            prf: keys.ike.suite().prf,
            peer_hash_algorithms: &self.peer_hash_algorithms,
        };
        let (method, data) = self
            .config
            .local_auth
            .sign(&ctx, &octets)
            .map_err(|e| Error::Auth(e.0))?;
        let certs = self
            .config
            .local_auth
            .certificates()
            .into_iter()
            .map(|c| Certificate::x509(c).into())
            .collect();
        Ok((id, certs, Authentication::new(method, data).into()))
    }

    /// Responder: signs our AUTH ahead of IKE_AUTH. The responder's signed octets (its
    /// IKE_SA_INIT response, Ni and prf(SK_pr, IDr'), RFC 7296 §2.15) and the peer's hash
    /// algorithms are all known once the IKE_SA_INIT response is out, so an RSA-4096
    /// signature need not delay the IKE_AUTH response. The result is used if IKE_AUTH asks
    /// for the same identity, and recomputed otherwise.
    pub(super) fn run_early_auth(&mut self, now: Instant) {
        if !self.early_auth_at.is_some_and(|t| now >= t) {
            return;
        }
        self.early_auth_at = None;
        if self.role != Role::Responder || self.state != State::Connecting {
            return;
        }
        // A failure is not reported here: IKE_AUTH signs again and reports it there.
        self.early_auth = self
            .own_auth(Role::Responder, self.config.local_auth.id())
            .ok();
    }

    /// Responder: do not sign ahead of IKE_AUTH; sign only for an initiator that has
    /// authenticated itself. The [`Endpoint`](crate::Endpoint) calls this under load so that
    /// a flood of IKE_SA_INIT requests cannot make us sign for each (RFC 7296 §2.6).
    pub fn skip_early_auth(&mut self) {
        self.early_auth_at = None;
    }

    /// Whether a responder's AUTH has been signed ahead and waits for IKE_AUTH.
    pub fn has_early_auth(&self) -> bool {
        self.early_auth.is_some()
    }

    /// Verifies the peer's ID, certificates and AUTH.
    fn verify_peer(
        &self,
        payloads: &[Payload],
        signer: Role,
    ) -> core::result::Result<PeerIdentity, String> {
        let init = self.init.as_ref().ok_or("no IKE_SA_INIT material")?;
        let keys = self.keys.as_ref().ok_or("no keys")?;
        let id = payloads.iter().find_map(|p| match (p, signer) {
            (Payload::IdI(id), Role::Initiator) | (Payload::IdR(id), Role::Responder) => Some(id),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let (Some(id), Some(auth)) = (id, auth) else {
            return Err("peer sent no identity or AUTH payload".into());
        };
        let certificates: Vec<Vec<u8>> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Cert(c) if c.encoding == CertEncoding::X509Signature => {
                    Some(c.data.clone())
                }
                _ => None,
            })
            .collect();
        let (message, peer_nonce) = match signer {
            Role::Initiator => (&init.request, &init.nr),
            Role::Responder => (&init.response, &init.ni),
        };
        let octets = keys
            .ike
            .signed_octets(signer, message, peer_nonce, &id.body());
        self.config
            .peer_auth
            .verify(&VerifyRequest {
                id,
                certificates: &certificates,
                method: auth.method,
                auth_data: &auth.data,
                signed_octets: &octets,
                prf: keys.ike.suite().prf,
            })
            .map_err(|e| format!("authentication of peer {id} failed: {e}"))
    }

    pub(super) fn send_auth_request(&mut self, now: Instant, rng: &mut dyn Random) {
        let built = self.build_auth_request(rng);
        let result = built.and_then(|(payloads, req)| {
            self.send_request(now, ExchangeType::IkeAuth, payloads, Task::Auth(req), rng)
        });
        if let Err(e) = result {
            self.fail(format!("cannot build IKE_AUTH request: {e}"));
        }
    }

    fn build_auth_request(&mut self, rng: &mut dyn Random) -> Result<(Vec<Payload>, ChildRequest)> {
        let (id, certs, auth) = self.own_auth(Role::Initiator, self.config.local_auth.id())?;
        let req = self.child_request(false, None, rng)?;
        let mut v: Vec<Payload> = vec![Payload::IdI(id)];
        v.extend(certs);
        if self.initial_contact {
            v.push(Notify::new(NotifyType::InitialContact).into());
        }
        if let Some(cr) = self.config.peer_auth.certificate_request() {
            v.push(cr.into());
        }
        v.push(auth);
        v.extend(self.child_request_payloads(&req, true));
        Ok((v, req))
    }

    pub(super) fn handle_auth_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
        req: ChildRequest,
        rng: &mut dyn Random,
    ) {
        if payloads
            .iter()
            .filter_map(Payload::as_notify)
            .any(|n| n.notify_type == NotifyType::AuthenticationFailed)
        {
            self.fail("AUTHENTICATION_FAILED from peer".into());
            return;
        }
        if let Err(e) = rules::check(&payloads, &rules::IKE_AUTH_RESPONSE) {
            let reason = match payloads
                .iter()
                .filter_map(Payload::as_notify)
                .find(|n| n.notify_type.is_error())
            {
                Some(n) => format!("{} from peer in IKE_AUTH", n.notify_type),
                None => e.to_string(),
            };
            self.fail(reason);
            return;
        }
        let verified = self.verify_peer(&payloads, Role::Responder).and_then(|p| {
            match &self.expected_peer {
                // A reauthentication replaces the SA of one peer: another identity, even one
                // the config accepts, must not inherit its CHILD_SAs and reqids (§2.8.3).
                Some(want) if *want != p.id => Err(format!(
                    "reauthentication: peer authenticated as {}, not {want}",
                    p.id
                )),
                _ => Ok(p),
            }
        });
        let peer = match verified {
            Ok(p) => p,
            Err(reason) => {
                self.notify_authentication_failed(now, rng);
                self.fail(reason);
                return;
            }
        };
        self.establish(peer, &payloads);
        let Some(init) = self.init.take() else {
            return;
        };
        match self.complete_child(&req, &payloads, &init.ni, &init.nr, true) {
            Ok((child, event)) => {
                self.events.push_back(Event::ChildSaUp(Box::new(event)));
                self.children.push(child);
            }
            Err(reason) => self.events.push_back(Event::Failed { reason }),
        }
        self.queue_planned_children();
    }

    /// The responder considers the IKE SA established once it sent its IKE_AUTH response;
    /// when we refuse its authentication we tell it in a separate INFORMATIONAL request
    /// (RFC 7296 §2.21.2), sent once and not retransmitted: the SA closes right after, and a
    /// lost notification costs the peer only its own DPD timeout.
    fn notify_authentication_failed(&mut self, now: Instant, rng: &mut dyn Random) {
        let n = Notify::new(NotifyType::AuthenticationFailed);
        // Failing to build it (no keys) only means the peer is not told.
        let _ = self.send_request(
            now,
            ExchangeType::Informational,
            vec![n.into()],
            Task::Dpd,
            rng,
        );
    }

    fn establish(&mut self, peer: PeerIdentity, payloads: &[Payload]) {
        self.peer_initial_contact = payloads
            .iter()
            .filter_map(Payload::as_notify)
            .any(|n| n.notify_type == NotifyType::InitialContact);
        self.state = State::Established;
        self.half_open_deadline = None;
        let suite = match self.keys.as_ref() {
            Some(k) => k.ike.suite(),
            None => return,
        };
        self.events.push_back(Event::IkeSaUp {
            local_spi: self.local_spi(),
            local_id: self.config.local_auth.id(),
            peer: peer.clone(),
            suite,
            encap: self.encap,
        });
        self.peer = Some(peer);
    }

    pub(super) fn handle_auth_request(
        &mut self,
        _now: Instant,
        id: u32,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        if let Err(e) = rules::check(&payloads, &rules::IKE_AUTH_REQUEST) {
            let n = Notify::new(NotifyType::InvalidSyntax);
            self.send_response(ExchangeType::IkeAuth, id, vec![n.into()], rng);
            self.fail(e.to_string());
            return;
        }
        let peer = match self.verify_peer(&payloads, Role::Initiator) {
            Ok(p) => p,
            Err(reason) => {
                let n = Notify::new(NotifyType::AuthenticationFailed);
                self.send_response(ExchangeType::IkeAuth, id, vec![n.into()], rng);
                self.fail(reason);
                return;
            }
        };
        // The initiator may ask for one of our identities with IDr (RFC 7296 §3.5).
        let requested = payloads.iter().find_map(|p| match p {
            Payload::IdR(id) => Some(id),
            _ => None,
        });
        let want_id = requested
            .and_then(|r| self.config.local_auth.select_id(r))
            .unwrap_or_else(|| self.config.local_auth.id());
        let signed = match self.early_auth.take() {
            Some(early) if early.0 == want_id => Ok(early),
            _ => self.own_auth(Role::Responder, want_id),
        };
        let (our_id, certs, auth) = match signed {
            Ok(x) => x,
            Err(e) => {
                let n = Notify::new(NotifyType::AuthenticationFailed);
                self.send_response(ExchangeType::IkeAuth, id, vec![n.into()], rng);
                self.fail(format!("cannot sign our AUTH: {e}"));
                return;
            }
        };
        let mut response: Vec<Payload> = vec![Payload::IdR(our_id)];
        response.extend(certs);
        response.push(auth);
        let Some(init) = self.init.take() else {
            return;
        };
        let wants_child = payloads.iter().any(|p| matches!(p, Payload::Sa(_)));
        let child = if !wants_child {
            None
        } else if let Some(reqid) = self.allocate_reqid() {
            Some(self.accept_child(&payloads, &init.ni, &init.nr, true, reqid, rng))
        } else {
            Some(Err((
                NotifyType::NoAdditionalSas,
                "no reqid left for a new CHILD_SA".into(),
            )))
        };
        let mut child_event = None;
        match child {
            Some(Ok(accepted)) => {
                response.extend(accepted.payloads);
                child_event = Some(Event::ChildSaUp(Box::new(accepted.event)));
                self.children.push(accepted.child);
            }
            Some(Err((notify, reason))) => {
                response.push(Notify::new(notify).into());
                child_event = Some(Event::Failed { reason });
            }
            None => {}
        }
        self.send_response(ExchangeType::IkeAuth, id, response, rng);
        if self.state == State::Closed {
            return;
        }
        self.establish(peer, &payloads);
        self.events.extend(child_event);
    }
}

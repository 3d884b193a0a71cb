//! Which payloads each message must and may carry, checked before any handler runs
//! (libreswan's per-transition payload sets; RFC 7296 §1.2–§1.5).

use crate::error::{Error, Result};
use crate::wire::{Payload, PayloadType as T};

/// The payload set of one message kind.
pub(super) struct Rule {
    pub(super) what: &'static str,
    pub(super) required: &'static [T],
    pub(super) allowed: &'static [T],
}

/// Payloads that may occur more than once in a message.
const REPEATABLE: &[T] = &[
    T::Notify,
    T::Certificate,
    T::CertificateRequest,
    T::VendorId,
    T::Delete,
];

pub(super) const IKE_SA_INIT: Rule = Rule {
    what: "IKE_SA_INIT",
    required: &[T::SecurityAssociation, T::KeyExchange, T::Nonce],
    allowed: &[T::Notify, T::VendorId, T::CertificateRequest],
};

pub(super) const IKE_AUTH_REQUEST: Rule = Rule {
    what: "IKE_AUTH request",
    required: &[T::IdInitiator, T::Authentication],
    allowed: &[
        T::Certificate,
        T::CertificateRequest,
        T::IdResponder,
        T::SecurityAssociation,
        T::TsInitiator,
        T::TsResponder,
        T::Notify,
        T::Configuration,
        T::VendorId,
    ],
};

pub(super) const IKE_AUTH_RESPONSE: Rule = Rule {
    what: "IKE_AUTH response",
    required: &[T::IdResponder, T::Authentication],
    allowed: &[
        T::Certificate,
        T::SecurityAssociation,
        T::TsInitiator,
        T::TsResponder,
        T::Notify,
        T::Configuration,
        T::VendorId,
    ],
};

pub(super) const CREATE_CHILD_SA: Rule = Rule {
    what: "CREATE_CHILD_SA",
    required: &[T::SecurityAssociation, T::Nonce],
    allowed: &[
        T::KeyExchange,
        T::TsInitiator,
        T::TsResponder,
        T::Notify,
        T::VendorId,
    ],
};

pub(super) const INFORMATIONAL: Rule = Rule {
    what: "INFORMATIONAL",
    required: &[],
    allowed: &[T::Notify, T::Delete, T::Configuration, T::VendorId],
};

/// Checks `payloads` against `rule`. Unknown non-critical payloads are ignored (RFC 7296
/// §2.5); critical ones were refused by the codec's `check_critical` already.
pub(super) fn check(payloads: &[Payload], rule: &Rule) -> Result<()> {
    for t in rule.required {
        if !payloads.iter().any(|p| p.payload_type() == *t) {
            return Err(Error::Protocol(format!(
                "{} without {t} payload",
                rule.what
            )));
        }
    }
    for (i, p) in payloads.iter().enumerate() {
        let t = p.payload_type();
        if matches!(p, Payload::Unknown(_)) {
            continue;
        }
        if !rule.required.contains(&t) && !rule.allowed.contains(&t) {
            return Err(Error::Protocol(format!(
                "{} with unexpected {t} payload",
                rule.what
            )));
        }
        if !REPEATABLE.contains(&t) && payloads[..i].iter().any(|q| q.payload_type() == t) {
            return Err(Error::Protocol(format!(
                "{} with two {t} payloads",
                rule.what
            )));
        }
    }
    // A CHILD_SA needs SA, TSi and TSr together (RFC 7296 §1.2, §1.3).
    if rule.what.starts_with("IKE_AUTH") || rule.what == "CREATE_CHILD_SA" {
        let has = |t: T| payloads.iter().any(|p| p.payload_type() == t);
        let n = [T::SecurityAssociation, T::TsInitiator, T::TsResponder]
            .into_iter()
            .filter(|t| has(*t))
            .count();
        let child_sa_for_ike = rule.what == "CREATE_CHILD_SA" && n == 1;
        if n != 0 && n != 3 && !child_sa_for_ike {
            return Err(Error::Protocol(format!(
                "{}: SA, TSi and TSr must come together",
                rule.what
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AuthMethod, Authentication, Identification, Nonce, Notify, NotifyType, Sa};

    #[test]
    fn required_allowed_and_duplicates() {
        let id = Payload::IdI(Identification::fqdn("a"));
        let auth = Payload::Auth(Authentication::new(AuthMethod::SharedKeyMic, vec![1]));
        let n = Payload::Notify(Notify::new(NotifyType::InitialContact));
        check(
            &[id.clone(), n.clone(), n.clone(), auth.clone()],
            &IKE_AUTH_REQUEST,
        )
        .unwrap();
        assert!(check(std::slice::from_ref(&id), &IKE_AUTH_REQUEST).is_err());
        assert!(check(&[id.clone(), id.clone(), auth.clone()], &IKE_AUTH_REQUEST).is_err());
        let nonce = Payload::Nonce(Nonce(vec![0; 16]));
        assert!(check(&[id.clone(), auth.clone(), nonce], &IKE_AUTH_REQUEST).is_err());
        // SA without selectors.
        let sa = Payload::Sa(Sa::default());
        assert!(check(&[id, auth, sa], &IKE_AUTH_REQUEST).is_err());
        assert!(check(&[n], &INFORMATIONAL).is_ok());
    }
}

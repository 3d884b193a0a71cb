//! Looking payloads up in a chain, the same way for a message's outer payloads and for the
//! decrypted inner chain of SK/SKF.

use super::auth::Authentication;
use super::cert::{Certificate, CertificateRequest};
use super::config::Configuration;
use super::delete::Delete;
use super::ident::Identification;
use super::key_exchange::KeyExchange;
use super::nonce::Nonce;
use super::notify::Notify;
use super::notify_type::NotifyType;
use super::payload::Payload;
use super::sa::Sa;
use super::traffic_selector::TrafficSelectors;

macro_rules! finder {
    ($(#[$doc:meta] $name:ident -> $ty:ty: $($pat:ident)|+;)*) => {
        $(
            #[$doc]
            fn $name(&self) -> Option<&$ty> {
                self.as_payloads().iter().find_map(|p| match p {
                    $(Payload::$pat(x))|+ => Some(x),
                    _ => None,
                })
            }
        )*
    };
}

/// First-payload-of-a-kind lookups on a chain (`message.payloads.sa()`, `inner.id_i()`).
pub trait FindPayload {
    /// The chain.
    fn as_payloads(&self) -> &[Payload];

    finder! {
        /// The first SA payload.
        sa -> Sa: Sa;
        /// The first KE payload.
        ke -> KeyExchange: Ke;
        /// The first Nonce payload.
        nonce -> Nonce: Nonce;
        /// The first IDi payload.
        id_i -> Identification: IdI;
        /// The first IDr payload.
        id_r -> Identification: IdR;
        /// The first AUTH payload.
        auth -> Authentication: Auth;
        /// The first TSi payload.
        ts_i -> TrafficSelectors: TsI;
        /// The first TSr payload.
        ts_r -> TrafficSelectors: TsR;
        /// The first CP payload.
        cp -> Configuration: Cp;
    }

    /// The CERT payloads, in order (end-entity first, RFC 7296 §3.6).
    fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        self.as_payloads().iter().filter_map(|p| match p {
            Payload::Cert(c) => Some(c),
            _ => None,
        })
    }

    /// The CERTREQ payloads.
    fn certificate_requests(&self) -> impl Iterator<Item = &CertificateRequest> {
        self.as_payloads().iter().filter_map(|p| match p {
            Payload::CertReq(c) => Some(c),
            _ => None,
        })
    }

    /// The D payloads.
    fn deletes(&self) -> impl Iterator<Item = &Delete> {
        self.as_payloads().iter().filter_map(|p| match p {
            Payload::Delete(d) => Some(d),
            _ => None,
        })
    }

    /// The N payloads.
    fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.as_payloads().iter().filter_map(Payload::as_notify)
    }

    /// The first N payload of a type.
    fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }

    /// The first error notify (type below 16384), which makes a response a failure.
    fn error_notify(&self) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type.is_error())
    }
}

impl FindPayload for [Payload] {
    fn as_payloads(&self) -> &[Payload] {
        self
    }
}

impl FindPayload for Vec<Payload> {
    fn as_payloads(&self) -> &[Payload] {
        self
    }
}

impl FindPayload for super::message::Message {
    fn as_payloads(&self) -> &[Payload] {
        &self.payloads
    }
}

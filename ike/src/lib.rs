//! IKEv2 (RFC 7296) for ibm-ipsec: the wire codec, the crypto suite and the sans-IO IKE SA.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness on its own: time and
//! random bytes are passed in by the caller, so every exchange can be replayed byte for byte.
//!
//! The protocol surface follows quinn-proto: an [`Endpoint`] routes datagrams to [`IkeSa`]s;
//! input is `handle_datagram(now, from, local, bytes)`, `handle_timeout(now)` and commands
//! (`initiate`, `reauthenticate`, `rekey_child`, `rekey_ike`, `delete_child`, `delete`,
//! `dpd`); output is polled with `poll_transmit`, `poll_timeout` and `poll_event`
//! ([`Event`]). Rekeying on the configured lifetimes and dead-peer detection run by
//! themselves from `handle_timeout`.
//!
//! A driver can replace where reqids and inbound SPIs come from ([`allocation`]), sets the
//! cookie policy for IKE_SA_INIT under load ([`cookie`]), and replaces IKE SAs make-before-
//! break with [`Endpoint::reauthenticate`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod allocation;
pub mod auth;
pub mod config;
pub mod cookie;
pub mod crypto;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod fragment;
pub mod proposal;
pub mod retransmit;
pub mod sa;
pub mod testing;
pub mod traffic_selector;
pub mod wire;

pub use auth::{LocalAuthenticator, PeerAuthenticator, PeerCertificate, PeerIdentity, Psk};
pub use config::{Config, SaLifetime};
pub use endpoint::{Endpoint, SaHandle};
pub use error::{Error, Result};
pub use event::{ChildSa, Event, Lifetime, Mode, MovedChild, UdpEncap};
pub use sa::{Accept, ChildTemplate, ChildTraffic, Datagram, Handover, IkeSa, NAT_KEEPALIVE};

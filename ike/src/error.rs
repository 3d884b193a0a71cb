//! The error type of the IKE SA layer (the codec and crypto suite have their own).

use thiserror::Error;

use crate::crypto::CryptoError;

/// Why an IKE operation failed.
///
/// Errors caused by a peer's message never panic and never leave the SA half-updated: the
/// message is dropped (or answered with an error notify) and the SA stays in its last state.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The message could not be decoded.
    #[error("malformed IKE message: {0}")]
    Wire(#[from] crate::wire::Error),
    /// A cryptographic operation failed (bad ICV, invalid public value, …).
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The message is well-formed but breaks RFC 7296 (missing payload, bad proposal, …).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Authentication of the peer, or signing our AUTH, failed.
    #[error("authentication: {0}")]
    Auth(String),
    /// The configuration cannot be used (e.g. no proposals).
    #[error("configuration: {0}")]
    Config(&'static str),
    /// The command needs an established IKE SA.
    #[error("IKE SA is not established")]
    NotEstablished,
    /// No CHILD_SA with that SPI.
    #[error("no CHILD_SA with inbound SPI {0:#010x}")]
    NoSuchChild(u32),
    /// No IKE SA with that SPI.
    #[error("no IKE SA with local SPI {0:#018x}")]
    NoSuchSa(u64),
}

/// Result type of the IKE SA layer.
pub type Result<T> = core::result::Result<T, Error>;

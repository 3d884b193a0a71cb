//! IKEv2 (RFC 7296) for ibm-ipsec: the wire codec, the crypto suite and the sans-IO IKE SA.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness on its own: time and
//! random bytes are passed in by the caller, so every exchange can be replayed byte for byte.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod crypto;
pub mod wire;

//! ESP (RFC 4303) for ibm-ipsec: the sans-IO security association and the userspace datapath.
//!
//! The core is deterministic and does no I/O: an [`OutboundSa`] seals payloads into buffers
//! the caller owns, an [`InboundSa`] opens packets in place, checks the anti-replay window
//! ([`ReplayWindow`]) before decrypting and moves it only after the ICV verified. Transforms
//! are AES-GCM-16 with 128- or 256-bit keys (RFC 4106) through ring, and AES-CBC with
//! HMAC-SHA-256-128 (RFC 3602, RFC 4868) for peers without GCM; both are checked byte for byte
//! against scapy's independent ESP code. Helpers place ESP in IP packets ([`transport`]) and
//! in UDP datagrams for NAT traversal ([`udp_encap`]); [`datapath`] is the userspace I/O
//! shell (Linux, feature `datapath`).
//!
//! ```
//! use esp::{Algorithm, InboundSa, OutboundSa, SaConfig, sealed_len};
//!
//! let cfg = SaConfig::new(0x1000_0001, Algorithm::AesGcm16_256);
//! let keymat = [0x42u8; 36]; // AES-256 key ‖ 4-byte salt, from IKE's KEYMAT
//! let mut tx = OutboundSa::new(cfg, &keymat)?;
//! let mut rx = InboundSa::new(cfg, &keymat)?;
//!
//! let mut packet = [0u8; sealed_len(5)];
//! let n = tx.seal(17, b"hello", &mut packet)?;
//! let opened = rx.open(&mut packet[..n])?;
//! assert_eq!(&packet[opened.payload], b"hello");
//! # Ok::<(), esp::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]

mod algorithm;
mod batch;
#[cfg(all(feature = "datapath", target_os = "linux"))]
pub mod datapath;
mod error;
mod header;
pub mod ip;
mod lifetime;
mod replay;
mod sa;
pub mod transport;
pub mod udp_encap;

pub use algorithm::{Algorithm, GCM_ICV_LEN, GCM_IV_LEN, GCM_SALT_LEN};
pub use batch::{OpenSlot, SealSlot};
pub use error::{Error, Result};
pub use header::{
    EspHeader, ESP_HEADER_LEN, IPPROTO_ESP, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE,
    PAYLOAD_OFFSET,
};
pub use lifetime::{Counters, Event, Lifetime};
pub use replay::{ReplayWindow, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW};
pub use sa::{
    sealed_len, InboundSa, Mode, Opened, OutboundSa, SaConfig, MAX_OVERHEAD, MAX_PAYLOAD,
    SEQUENCE_SOFT_MARGIN,
};

#[cfg(test)]
mod scapy_kat;

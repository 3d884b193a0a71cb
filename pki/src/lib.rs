//! Host identity for ibm-ipsec: RSA keys, CSRs with the metadata service's subject rules,
//! certificate chain verification and IKE AUTH signatures.
//!
//! - [`HostKey`]: RSA-4096 by default, generated with the `rsa` crate, stored as PKCS#8 PEM
//!   (mode 0600), signing only through ring.
//! - [`build_csr`] / [`validate_csr`]: the metadata service's CSR rules, both sides.
//! - [`signature`]: RFC 7427 AlgorithmIdentifiers, hash ids, sign/verify.
//! - [`ca`]: a test CA (root → intermediate → leaf) for tests and the metadata test server.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod atomic_file;
pub mod ca;
mod certificate;
mod chain;
mod csr;
mod error;
mod identity;
mod key;
pub mod name;
pub mod pem;
pub mod signature;

pub use certificate::{format_time, CertificateInfo};
pub use chain::{
    certreq_key_hash, ChainError, IkeIdentity, PeerVerifier, RootStore, VerifiedPeer,
    DEFAULT_CLOCK_SKEW, MAX_PEER_CERTIFICATES,
};
pub use csr::{build_csr, validate_csr, Csr, CsrRule, CsrSubject, ValidatedCsr, MAX_CSR_LEN};
pub use error::{Error, Result};
pub use identity::HostIdentity;
pub use key::{HostKey, KeySize};
pub use signature::{HashAlgorithm, SignatureScheme};

//! Host identity for ibm-ipsec: RSA keys, CSRs with the metadata service's subject rules,
//! certificate chain verification and IKE AUTH signatures.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

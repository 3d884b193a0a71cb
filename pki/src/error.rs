//! The crate's one error type.

use std::path::PathBuf;

use crate::chain::ChainError;
use crate::csr::CsrRule;

/// Everything that can go wrong in `pki`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The requested RSA modulus size is not one we generate.
    #[error("unsupported RSA key size {0} bits: use 2048, 3072 or 4096")]
    UnsupportedKeySize(usize),
    /// RSA key generation failed.
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    /// A private key could not be parsed or is not usable for signing.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// A PEM document could not be parsed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// DER encoding or decoding failed.
    #[error("invalid DER: {0}")]
    Der(#[from] der::Error),
    /// A subject string (`C=US,O=…`) is malformed.
    #[error("invalid subject: {0}")]
    InvalidSubject(String),
    /// A CSR (ours or one received) breaks a rule of the metadata service.
    #[error(transparent)]
    CsrRule(#[from] CsrRule),
    /// A CSR's self-signature does not verify.
    #[error("CSR signature does not verify with the CSR's own public key")]
    CsrSignature,
    /// A certificate could not be parsed.
    #[error("invalid certificate{}: {reason}", index.map(|i| format!(" #{i}")).unwrap_or_default())]
    InvalidCertificate {
        /// Position in the input, when there were several.
        index: Option<usize>,
        /// Why.
        reason: String,
    },
    /// Loading the root CA directory failed.
    #[error("root CAs: {0}")]
    RootStore(String),
    /// The peer's certificate chain was rejected.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// An IKE identity could not be used for certificate matching.
    #[error("unsupported IKE identity: {0}")]
    UnsupportedIdentity(String),
    /// The signature algorithm (RFC 7427 AlgorithmIdentifier or hash id) is not supported.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The key type does not fit the signature algorithm (e.g. PSS with an EC key).
    #[error("signature algorithm {algorithm} does not fit a {key} public key")]
    KeyAlgorithmMismatch {
        /// The signature algorithm.
        algorithm: String,
        /// The key type found in the SPKI.
        key: String,
    },
    /// A public key (SubjectPublicKeyInfo) is malformed or of an unsupported type.
    #[error("unsupported or malformed public key: {0}")]
    InvalidPublicKey(String),
    /// Signing failed (ring refused; should not happen with a valid key).
    #[error("signing failed")]
    Signing,
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Issuing a certificate in the test CA failed.
    #[error("test CA: {0}")]
    Ca(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

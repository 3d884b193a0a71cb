use thiserror::Error;

/// Everything that can go wrong in the crypto suite.
///
/// Errors on received data (`Truncated`, `IntegrityCheckFailed`, `BadPadding`,
/// `InvalidPublicValue`, `WeakSharedSecret`) are what a peer can cause; the others are local
/// misuse (wrong key or IV length, inconsistent suite) and indicate a bug in the caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The transforms cannot be combined (e.g. AES-GCM with an integrity algorithm, or AES-CBC
    /// without one; RFC 5282 §8).
    #[error("invalid transform combination: {0}")]
    InvalidSuite(&'static str),
    /// A key of the wrong length was supplied.
    #[error("key length {actual}, expected {expected}")]
    KeyLength {
        /// Required length in bytes.
        expected: usize,
        /// Supplied length in bytes.
        actual: usize,
    },
    /// An IV of the wrong length was supplied to seal.
    #[error("IV length {actual}, expected {expected}")]
    IvLength {
        /// Required length in bytes.
        expected: usize,
        /// Supplied length in bytes.
        actual: usize,
    },
    /// A nonce outside 16..=256 bytes (RFC 7296 §3.9).
    #[error("nonce length {0} outside 16..=256")]
    NonceLength(usize),
    /// prf+ was asked for more than 255 iterations of output (RFC 7296 §2.13).
    #[error("prf+ asked for {requested} bytes, at most {max} possible")]
    PrfPlusTooLong {
        /// Requested bytes.
        requested: usize,
        /// Maximum for this PRF (255 × output length).
        max: usize,
    },
    /// The private value is out of range for the group; draw new random bytes and retry.
    #[error("DH private value out of range for the group")]
    InvalidPrivateValue,
    /// The random source kept producing unusable private values.
    #[error("random source produced no valid DH private value")]
    RandomSourceFailed,
    /// The peer's public value has the wrong length, is not on the curve, or is outside
    /// 1 < y < p-1 (RFC 7296 §3.4, NIST SP 800-56A §5.6.2.3).
    #[error("invalid DH public value")]
    InvalidPublicValue,
    /// The DH result is degenerate (all-zero x25519 output, RFC 8031 §2; or 1 for MODP).
    #[error("degenerate DH shared secret")]
    WeakSharedSecret,
    /// The SK payload body is shorter than IV + minimum ciphertext + ICV, or the ciphertext
    /// is not a whole number of cipher blocks.
    #[error("SK payload body truncated or misaligned")]
    Truncated,
    /// The ICV (CBC + HMAC) or the GCM tag did not verify.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// A peer's shared-key AUTH payload did not match.
    #[error("AUTH payload verification failed")]
    AuthenticationFailed,
    /// The decrypted pad length exceeds the decrypted data.
    #[error("bad padding in SK payload")]
    BadPadding,
}

//! The codec's one error type: every malformed input maps to one of these, never to a panic.

use super::registry::PayloadType;

/// Why bytes could not be parsed as IKEv2, or a representation could not be emitted.
///
/// A receiver answers most of these with `INVALID_SYNTAX` (RFC 7296 §3.10.1) or drops the
/// message; [`Error::UnsupportedCriticalPayload`] and [`Error::UnsupportedMajorVersion`] have
/// their own answers (`UNSUPPORTED_CRITICAL_PAYLOAD`, `INVALID_MAJOR_VERSION`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends before the structure it announces.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes the structure needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A length field is impossible for its structure (too small, or over a maximum).
    #[error("bad length {len} in {what}")]
    BadLength {
        /// The structure whose length field is wrong.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// Bytes are left over after a structure whose length says it has ended.
    #[error("{len} trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that should have filled the input.
        what: &'static str,
        /// How many bytes were left.
        len: usize,
    },
    /// A field holds a value the protocol forbids in that position.
    #[error("invalid {what}: {value}")]
    BadValue {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// More elements than this codec accepts (a bound against resource exhaustion).
    #[error("too many {what} (more than {max})")]
    TooMany {
        /// The element kind.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// The header's major version is not 2 (answer with `INVALID_MAJOR_VERSION`).
    #[error("unsupported IKE major version {0}")]
    UnsupportedMajorVersion(u8),
    /// A payload this codec does not understand has the critical bit set: RFC 7296 §2.5
    /// requires rejecting the message with `UNSUPPORTED_CRITICAL_PAYLOAD`, whose notification
    /// data is this payload type (see `Notify::unsupported_critical_payload`).
    #[error("unsupported critical payload type {0}")]
    UnsupportedCriticalPayload(PayloadType),
    /// An encrypted payload (SK or SKF) is not the last payload of a chain (RFC 7296 §3.14).
    #[error("an encrypted payload (SK/SKF) must be the last payload")]
    EncryptedNotLast,
    /// A representation is too large for its wire length field.
    #[error("{what} too long to encode: {len} bytes")]
    TooLong {
        /// The structure being emitted.
        what: &'static str,
        /// Its encoded length.
        len: usize,
    },
    /// The caller's output buffer is smaller than `buffer_len()`.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes required.
        need: usize,
        /// Bytes provided.
        have: usize,
    },
}

/// Result alias for the codec.
pub type Result<T, E = Error> = core::result::Result<T, E>;

//! The crate's one error type.

/// Everything that can go wrong while sealing, opening or framing ESP packets.
///
/// The variants carry no packet bytes and no key material, so they are safe to log. Each
/// rejection of an inbound packet is also counted in the SA's [`Counters`](crate::Counters).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The key material does not have the length the algorithm needs (AES key ‖ 4-byte salt).
    #[error("key material is {got} bytes, the algorithm needs {expected}")]
    InvalidKeyLength {
        /// What the algorithm needs.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The SA configuration is inconsistent (the message says which field).
    #[error("invalid SA configuration: {0}")]
    InvalidConfig(&'static str),
    /// The caller's output buffer cannot hold the result.
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes the operation needs.
        needed: usize,
        /// Bytes the caller offered.
        available: usize,
    },
    /// The payload is larger than an ESP packet can carry.
    #[error("payload of {0} bytes is too large for one ESP packet")]
    PayloadTooLarge(usize),
    /// The outbound sequence number space is used up; the SA must be rekeyed (RFC 4303 §3.3.3).
    #[error("sequence numbers exhausted, the SA must be rekeyed")]
    SequenceExhausted,
    /// The SA has passed its hard byte or packet lifetime and refuses traffic.
    #[error("hard lifetime reached, the SA must be rekeyed")]
    LifetimeExpired,
    /// The packet is shorter than the smallest valid ESP packet for this SA.
    #[error("ESP packet truncated ({0} bytes)")]
    Truncated(usize),
    /// The ciphertext is not a multiple of 4 bytes (RFC 4303 §2.4).
    #[error("ESP ciphertext is not 4-byte aligned")]
    Misaligned,
    /// The packet's SPI is not this SA's.
    #[error("SPI {0:#010x} does not belong to this SA")]
    SpiMismatch(u32),
    /// Sequence number 0 is never sent (RFC 4303 §3.3.3), or the inferred 64-bit number is out
    /// of range.
    #[error("invalid sequence number")]
    InvalidSequence,
    /// The sequence number was already received (RFC 4303 §3.4.3).
    #[error("replayed sequence number {0}")]
    Replayed(u64),
    /// The sequence number is behind the left edge of the anti-replay window.
    #[error("sequence number {0} is older than the replay window")]
    TooOld(u64),
    /// The integrity check value did not verify.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The pad length points outside the plaintext, or the padding bytes are not 1, 2, 3, …
    /// (RFC 4303 §2.4).
    #[error("bad ESP padding")]
    BadPadding,
    /// The next-header value is not allowed for this SA's mode.
    #[error("next header {0} not allowed for this SA")]
    BadNextHeader(u8),
    /// An IP packet handed to a transport/tunnel helper is malformed or not IPv4/IPv6.
    #[error("malformed IP packet: {0}")]
    MalformedIp(&'static str),
    /// A UDP-encapsulated datagram is neither ESP, IKE (non-ESP marker) nor a NAT keepalive.
    #[error("datagram on the NAT-T port is not ESP, IKE or a keepalive")]
    NotEncapsulatedEsp,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

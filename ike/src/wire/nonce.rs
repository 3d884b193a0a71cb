//! The Nonce payload (RFC 7296 §3.9).

use super::cursor::Writer;
use super::error::Result;
use super::payload::PayloadBody;
use super::registry::PayloadType;

/// Ni / Nr: the sender's nonce. RFC 7296 §2.10 requires 16..=256 bytes; the codec keeps any
/// size and leaves that check to the exchange, which answers `INVALID_SYNTAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(pub Vec<u8>);

impl Nonce {
    /// Smallest nonce RFC 7296 §2.10 allows.
    pub const MIN_LEN: usize = 16;
    /// Largest nonce RFC 7296 §2.10 allows.
    pub const MAX_LEN: usize = 256;

    /// Whether the length is within RFC 7296 §2.10's bounds.
    pub fn has_valid_len(&self) -> bool {
        (Self::MIN_LEN..=Self::MAX_LEN).contains(&self.0.len())
    }
}

impl PayloadBody for Nonce {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Nonce;

    fn parse(body: &[u8]) -> Result<Self> {
        Ok(Nonce(body.to_vec()))
    }

    fn buffer_len(&self) -> usize {
        self.0.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        Writer::new(buf, self.0.len())?.bytes(&self.0)
    }
}

//! The Key Exchange payload (RFC 7296 §3.4).

use super::cursor::{Reader, Writer};
use super::error::Result;
use super::payload::PayloadBody;
use super::registry::{DhGroup, PayloadType};

/// KE: the sender's Diffie-Hellman public value for one group.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyExchange {
    /// The group the value belongs to; a responder that wants another group answers
    /// `INVALID_KE_PAYLOAD` naming it.
    pub dh_group: DhGroup,
    /// The public value (for ECP groups x ‖ y, RFC 5903 §7; for Curve25519 32 bytes, RFC 8031).
    pub data: Vec<u8>,
}

impl KeyExchange {
    /// A KE payload.
    pub fn new(dh_group: DhGroup, data: impl Into<Vec<u8>>) -> Self {
        KeyExchange {
            dh_group,
            data: data.into(),
        }
    }
}

impl core::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public values only, but long: print the size, not the bytes.
        f.debug_struct("KeyExchange")
            .field("dh_group", &self.dh_group)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl PayloadBody for KeyExchange {
    const PAYLOAD_TYPE: PayloadType = PayloadType::KeyExchange;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "KE payload");
        let dh_group = DhGroup::from(r.u16()?);
        r.take(2)?; // RESERVED
        Ok(KeyExchange {
            dh_group,
            data: r.rest().to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u16(self.dh_group.value())?;
        w.u16(0)?;
        w.bytes(&self.data)
    }
}

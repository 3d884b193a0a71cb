//! The Authentication payload (RFC 7296 §3.8).

use super::cursor::{Reader, Writer};
use super::error::Result;
use super::payload::PayloadBody;
use super::registry::{AuthMethod, PayloadType};

/// AUTH: the signature or MAC over the sender's signed octets (RFC 7296 §2.15). With method
/// 14 (`DIGITAL_SIGNATURE`, RFC 7427 §3) the data starts with an AlgorithmIdentifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// How `data` was made.
    pub method: AuthMethod,
    /// Signature or MAC (RFC 7427: length octet ‖ AlgorithmIdentifier ‖ signature).
    pub data: Vec<u8>,
}

impl Authentication {
    /// An AUTH payload.
    pub fn new(method: AuthMethod, data: impl Into<Vec<u8>>) -> Self {
        Authentication {
            method,
            data: data.into(),
        }
    }

    /// For `DIGITAL_SIGNATURE` (RFC 7427 §3): the DER AlgorithmIdentifier and the signature.
    pub fn digital_signature_parts(&self) -> Option<(&[u8], &[u8])> {
        if self.method != AuthMethod::DigitalSignature {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let len = len as usize;
        Some((rest.get(..len)?, rest.get(len..)?))
    }
}

impl PayloadBody for Authentication {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Authentication;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "AUTH payload");
        let method = AuthMethod::from(r.u8()?);
        r.take(3)?;
        Ok(Authentication {
            method,
            data: r.rest().to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.method.value())?;
        w.bytes(&[0; 3])?;
        w.bytes(&self.data)
    }
}

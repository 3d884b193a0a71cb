//! The Encrypted (SK, RFC 7296 §3.14) and Encrypted Fragment (SKF, RFC 7383 §2.5) payloads.
//!
//! The codec treats the protected part as opaque: IV ‖ ciphertext ‖ ICV is split, checked and
//! decrypted by the crypto layer, which then parses the plaintext with
//! [`parse_chain`](super::parse_chain) starting at `next_payload`.

use super::cursor::{Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::PayloadType;

/// SK: the encrypted and integrity-protected inner payloads. Always the last payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first inner payload (the SK generic header's next-payload field).
    pub next_payload: PayloadType,
    /// IV ‖ ciphertext (inner payloads, padding, pad length) ‖ ICV.
    pub body: Vec<u8>,
}

impl PayloadBody for Encrypted {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Encrypted;

    /// Parses the body alone; `next_payload` is then unknown (`NONE`). Parsing through
    /// [`Payload::parse`](super::Payload::parse) fills it from the generic header.
    fn parse(body: &[u8]) -> Result<Self> {
        Ok(Encrypted {
            next_payload: PayloadType::NoNextPayload,
            body: body.to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        self.body.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        Writer::new(buf, self.body.len())?.bytes(&self.body)
    }
}

/// SKF: one fragment of an SK payload (RFC 7383 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragment {
    /// First inner payload's type in fragment 1, `NONE` in the others.
    pub next_payload: PayloadType,
    /// This fragment's number, from 1.
    pub fragment_number: u16,
    /// How many fragments the message was split into.
    pub total_fragments: u16,
    /// IV ‖ ciphertext ‖ ICV of this fragment.
    pub body: Vec<u8>,
}

impl EncryptedFragment {
    /// Parses the body with the next-payload value from the generic header. Fragment numbers
    /// must satisfy 1 ≤ number ≤ total (RFC 7383 §2.6: otherwise the fragment is discarded).
    pub fn parse_with_next(next_payload: PayloadType, body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "SKF payload");
        let fragment_number = r.u16()?;
        let total_fragments = r.u16()?;
        if fragment_number == 0 || fragment_number > total_fragments {
            return Err(Error::BadValue {
                what: "fragment number",
                value: fragment_number.into(),
            });
        }
        Ok(EncryptedFragment {
            next_payload,
            fragment_number,
            total_fragments,
            body: r.rest().to_vec(),
        })
    }

    /// Offset of the protected part (IV onwards) within the SKF body: the two 16-bit fields,
    /// which are authenticated with the message header (RFC 7383 §2.5).
    pub const PROTECTED_OFFSET: usize = 4;
}

impl PayloadBody for EncryptedFragment {
    const PAYLOAD_TYPE: PayloadType = PayloadType::EncryptedFragment;

    fn parse(body: &[u8]) -> Result<Self> {
        Self::parse_with_next(PayloadType::NoNextPayload, body)
    }

    fn buffer_len(&self) -> usize {
        4 + self.body.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.fragment_number == 0 || self.fragment_number > self.total_fragments {
            return Err(Error::BadValue {
                what: "fragment number",
                value: self.fragment_number.into(),
            });
        }
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u16(self.fragment_number)?;
        w.u16(self.total_fragments)?;
        w.bytes(&self.body)
    }
}

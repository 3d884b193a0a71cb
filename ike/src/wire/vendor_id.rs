//! The Vendor ID payload (RFC 7296 §3.12).

use super::cursor::Writer;
use super::error::Result;
use super::payload::PayloadBody;
use super::registry::PayloadType;

/// V: an opaque vendor identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorId(pub Vec<u8>);

/// Vendor IDs seen from common peers, by their bytes.
const KNOWN: &[(&[u8], &str)] = &[
    // MD5("strongSwan"), sent by charon with `send_vendor_id = yes`.
    (
        &[
            0x88, 0x2f, 0xe5, 0x6d, 0x6f, 0xd2, 0x0d, 0xbc, 0x22, 0x51, 0x61, 0x3b, 0x2e, 0xbe,
            0x5b, 0xeb,
        ],
        "strongSwan",
    ),
];

impl VendorId {
    /// The vendor's name, for the few IDs this crate recognises.
    pub fn known_name(&self) -> Option<&'static str> {
        KNOWN
            .iter()
            .find(|(b, _)| *b == self.0.as_slice())
            .map(|(_, n)| *n)
    }
}

impl PayloadBody for VendorId {
    const PAYLOAD_TYPE: PayloadType = PayloadType::VendorId;

    fn parse(body: &[u8]) -> Result<Self> {
        Ok(VendorId(body.to_vec()))
    }

    fn buffer_len(&self) -> usize {
        self.0.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        Writer::new(buf, self.0.len())?.bytes(&self.0)
    }
}

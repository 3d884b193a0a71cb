//! The Delete payload (RFC 7296 §3.11).

use super::cursor::{Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::{PayloadType, ProtocolId};

/// D: SAs the sender has deleted. For the IKE SA itself: protocol IKE, no SPIs. For
/// CHILD_SAs: the sender's *inbound* 4-byte SPIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Protocol of the SAs.
    pub protocol: ProtocolId,
    /// Size of each SPI.
    pub spi_size: u8,
    /// The SPIs, each `spi_size` bytes.
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Deletes the IKE SA the message is sent under (and with it every CHILD_SA).
    pub fn ike() -> Self {
        Delete {
            protocol: ProtocolId::Ike,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletes ESP CHILD_SAs by the sender's inbound SPIs.
    pub fn esp(spis: &[u32]) -> Self {
        Delete {
            protocol: ProtocolId::Esp,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs as 32-bit values, when they are 4 bytes long.
    pub fn spis_u32(&self) -> Option<Vec<u32>> {
        self.spis
            .iter()
            .map(|s| {
                <[u8; 4]>::try_from(s.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .collect()
    }
}

impl PayloadBody for Delete {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Delete;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "D payload");
        let protocol = ProtocolId::from(r.u8()?);
        let spi_size = r.u8()?;
        let count = r.u16()? as usize;
        if spi_size == 0 && count != 0 {
            return Err(Error::BadValue {
                what: "delete SPI count without SPI size",
                value: count as u32,
            });
        }
        let need = count * spi_size as usize;
        if need != r.remaining() {
            return Err(Error::BadLength {
                what: "D payload SPIs",
                len: r.remaining(),
            });
        }
        let mut spis = Vec::with_capacity(count);
        for _ in 0..count {
            spis.push(r.take(spi_size as usize)?.to_vec());
        }
        Ok(Delete {
            protocol,
            spi_size,
            spis,
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self.spis.len() * self.spi_size as usize
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.spi_size == 0 && !self.spis.is_empty() {
            return Err(Error::BadValue {
                what: "delete SPI count without SPI size",
                value: self.spis.len() as u32,
            });
        }
        let count = u16::try_from(self.spis.len()).map_err(|_| Error::TooMany {
            what: "deleted SPIs",
            max: u16::MAX as usize,
        })?;
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.protocol.value())?;
        w.u8(self.spi_size)?;
        w.u16(count)?;
        for s in &self.spis {
            if s.len() != self.spi_size as usize {
                return Err(Error::BadLength {
                    what: "deleted SPI",
                    len: s.len(),
                });
            }
            w.bytes(s)?;
        }
        Ok(())
    }
}

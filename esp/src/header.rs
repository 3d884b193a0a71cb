//! The ESP header on the wire (RFC 4303 §2): SPI, sequence number, then (for AES-GCM) the
//! explicit IV, all in network byte order.

use crate::{Error, Result};

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// Next-header value of an IPv4 inner packet (tunnel mode).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next-header value of an IPv6 inner packet (tunnel mode).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next-header value of a dummy packet, which receivers discard (RFC 4303 §2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// SPI + sequence number.
pub const ESP_HEADER_LEN: usize = 8;
/// SPI + sequence number + the 8-byte AES-GCM IV: where the payload starts in a sealed
/// AES-GCM packet, and how much headroom [`OutboundSa::seal_in_place`](crate::OutboundSa)
/// needs ([`Algorithm::payload_offset`](crate::Algorithm::payload_offset) for any transform).
pub const PAYLOAD_OFFSET: usize = ESP_HEADER_LEN + crate::algorithm::GCM_IV_LEN;

/// The two fixed header fields of an ESP packet, read without decrypting anything. A driver
/// uses the SPI to find the inbound SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspHeader {
    /// Security parameters index.
    pub spi: u32,
    /// The low 32 bits of the sequence number as carried on the wire.
    pub sequence: u32,
}

impl EspHeader {
    /// Reads the header of `packet` (which starts at the SPI).
    pub fn parse(packet: &[u8]) -> Result<Self> {
        match packet {
            [a, b, c, d, e, f, g, h, ..] => Ok(EspHeader {
                spi: u32::from_be_bytes([*a, *b, *c, *d]),
                sequence: u32::from_be_bytes([*e, *f, *g, *h]),
            }),
            _ => Err(Error::Truncated(packet.len())),
        }
    }

    /// Writes the header into the first 8 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let available = buf.len();
        let out = buf.get_mut(..ESP_HEADER_LEN).ok_or(Error::BufferTooSmall {
            needed: ESP_HEADER_LEN,
            available,
        })?;
        out[..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..].copy_from_slice(&self.sequence.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let h = EspHeader {
            spi: 0xc0ffee01,
            sequence: 7,
        };
        let mut b = [0u8; 8];
        h.emit(&mut b).unwrap();
        assert_eq!(b, [0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 7]);
        assert_eq!(EspHeader::parse(&b).unwrap(), h);
        assert_eq!(EspHeader::parse(&b[..7]), Err(Error::Truncated(7)));
        assert!(h.emit(&mut [0u8; 7]).is_err());
    }
}

//! The fixed 28-byte IKE header (RFC 7296 §3.1).

use core::fmt;

use super::cursor::{field, get_u32, Reader, Writer};
use super::error::{Error, Result};
use super::registry::{ExchangeType, PayloadType};

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;

/// Largest IKE message this codec accepts: what one UDP datagram can carry. A bound on every
/// allocation made while parsing (RFC 7296 §2 lets implementations limit message size).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// The only major version this codec speaks (RFC 7296 §3.1).
pub const MAJOR_VERSION: u8 = 2;

/// The header's flag bits (RFC 7296 §3.1). Reserved bits are dropped on parse and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// I: set by the original initiator of the IKE SA.
    pub const INITIATOR: Flags = Flags(0x08);
    /// V: the sender can speak a higher major version.
    pub const VERSION: Flags = Flags(0x10);
    /// R: this message is a response.
    pub const RESPONSE: Flags = Flags(0x20);
    const ALL: u8 = 0x38;

    /// No flags set.
    pub const fn empty() -> Self {
        Flags(0)
    }

    /// From the wire octet; reserved bits are ignored (RFC 7296 §3.1).
    pub const fn from_bits(bits: u8) -> Self {
        Flags(bits & Self::ALL)
    }

    /// The wire octet.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The I flag.
    pub const fn initiator(self) -> bool {
        self.contains(Self::INITIATOR)
    }

    /// The R flag.
    pub const fn response(self) -> bool {
        self.contains(Self::RESPONSE)
    }

    /// The V flag.
    pub const fn version(self) -> bool {
        self.contains(Self::VERSION)
    }

    /// Names of the set flags, in wire order: `"I"`, `"V"`, `"R"`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (Self::INITIATOR, "I"),
            (Self::VERSION, "V"),
            (Self::RESPONSE, "R"),
        ]
        .into_iter()
        .filter(move |(f, _)| self.contains(*f))
        .map(|(_, n)| n)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.names().collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// A zero-copy view of an IKE header at the front of a buffer.
///
/// `new_checked` proves the buffer holds the whole header and the message length it announces,
/// so no accessor can fail afterwards. It does not check the version, so a responder can still
/// read SPIs and message ID to answer `INVALID_MAJOR_VERSION`.
#[derive(Debug, Clone)]
pub struct HeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    /// Wraps `buffer` after checking its length against the header's length field.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                what: "IKE header",
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = get_u32(buf, 24) as usize;
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(Error::BadLength {
                what: "IKE message",
                len,
            });
        }
        if len > buf.len() {
            return Err(Error::Truncated {
                what: "IKE message",
                need: len,
                have: buf.len(),
            });
        }
        Ok(HeaderPacket { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IKE SA Initiator's SPI.
    pub fn initiator_spi(&self) -> u64 {
        u64::from_be_bytes(field(self.buffer.as_ref(), 0))
    }

    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub fn responder_spi(&self) -> u64 {
        u64::from_be_bytes(field(self.buffer.as_ref(), 8))
    }

    /// Type of the first payload.
    pub fn next_payload(&self) -> PayloadType {
        PayloadType::from(field::<1>(self.buffer.as_ref(), 16)[0])
    }

    /// Major version (high nibble of octet 17).
    pub fn major_version(&self) -> u8 {
        field::<1>(self.buffer.as_ref(), 17)[0] >> 4
    }

    /// Minor version (low nibble of octet 17).
    pub fn minor_version(&self) -> u8 {
        field::<1>(self.buffer.as_ref(), 17)[0] & 0x0f
    }

    /// Exchange type.
    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType::from(field::<1>(self.buffer.as_ref(), 18)[0])
    }

    /// Flags.
    pub fn flags(&self) -> Flags {
        Flags::from_bits(field::<1>(self.buffer.as_ref(), 19)[0])
    }

    /// Message ID.
    pub fn message_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 20)
    }

    /// Total message length, header included.
    pub fn length(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 24)
    }

    /// The bytes after the header, up to the announced length: the payload chain.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        buf.get(HEADER_LEN..self.length() as usize).unwrap_or(&[])
    }
}

/// An owned IKE header.
///
/// When a [`Message`](super::Message) is emitted, `next_payload` and `length` are computed from
/// its payloads; they are set here by parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub initiator_spi: u64,
    /// IKE SA Responder's SPI.
    pub responder_spi: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Total message length, header included.
    pub length: u32,
}

impl Header {
    /// A header for a new message; `next_payload` and `length` are filled in on emit.
    pub fn new(
        exchange_type: ExchangeType,
        initiator_spi: u64,
        responder_spi: u64,
        message_id: u32,
        flags: Flags,
    ) -> Self {
        Header {
            initiator_spi,
            responder_spi,
            next_payload: PayloadType::NoNextPayload,
            exchange_type,
            flags,
            message_id,
            length: HEADER_LEN as u32,
        }
    }

    /// The header of the response to this request: same SPIs, exchange and message ID, the R
    /// flag, and the I flag when we are the IKE SA's original initiator (RFC 7296 §3.1).
    pub fn response(&self, original_initiator: bool) -> Header {
        let flags = if original_initiator {
            Flags::RESPONSE | Flags::INITIATOR
        } else {
            Flags::RESPONSE
        };
        Header::new(
            self.exchange_type,
            self.initiator_spi,
            self.responder_spi,
            self.message_id,
            flags,
        )
    }

    /// Parses a checked header view; refuses major versions other than 2.
    pub fn parse<T: AsRef<[u8]>>(packet: &HeaderPacket<T>) -> Result<Self> {
        if packet.major_version() != MAJOR_VERSION {
            return Err(Error::UnsupportedMajorVersion(packet.major_version()));
        }
        Ok(Header {
            initiator_spi: packet.initiator_spi(),
            responder_spi: packet.responder_spi(),
            next_payload: packet.next_payload(),
            exchange_type: packet.exchange_type(),
            flags: packet.flags(),
            message_id: packet.message_id(),
            length: packet.length(),
        })
    }

    /// Encoded length: always [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (version 2.0) into the first 28 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, HEADER_LEN)?;
        w.u64(self.initiator_spi)?;
        w.u64(self.responder_spi)?;
        w.u8(self.next_payload.value())?;
        w.u8(MAJOR_VERSION << 4)?;
        w.u8(self.exchange_type.value())?;
        w.u8(self.flags.bits())?;
        w.u32(self.message_id)?;
        w.u32(self.length)
    }
}

/// Reads just the SPIs of a datagram that may be too short or malformed for a full parse,
/// e.g. to route it to an IKE SA before deciding how to answer.
pub fn peek_spis(datagram: &[u8]) -> Result<(u64, u64)> {
    let mut r = Reader::new(datagram, "IKE header");
    Ok((r.u64()?, r.u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8, // SPIi
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0, // SPIr
            33,
            0x20,
            34,
            0x08 | 0x40, // next SA, v2.0, IKE_SA_INIT, I + a reserved bit
            0,
            0,
            0,
            0, // message id
            0,
            0,
            0,
            32, // length
        ];
        b.extend_from_slice(&[0; 4]);
        b
    }

    #[test]
    fn parse_and_emit() {
        let buf = sample();
        let p = HeaderPacket::new_checked(&buf[..]).unwrap();
        let h = Header::parse(&p).unwrap();
        assert_eq!(h.initiator_spi, 0x0102030405060708);
        assert_eq!(h.responder_spi, 0);
        assert_eq!(h.exchange_type, ExchangeType::IkeSaInit);
        assert_eq!(h.next_payload, PayloadType::SecurityAssociation);
        assert_eq!(h.flags, Flags::INITIATOR);
        assert_eq!(h.flags.to_string(), "I");
        assert_eq!(h.length, 32);
        assert_eq!(p.payload().len(), 4);
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut out).unwrap();
        let mut expect = buf[..HEADER_LEN].to_vec();
        expect[19] = 0x08; // reserved flag bit cleared
        assert_eq!(&out[..], &expect[..]);
    }

    #[test]
    fn response_header_mirrors_the_request() {
        let req = Header::new(ExchangeType::Informational, 1, 2, 9, Flags::INITIATOR);
        let resp = req.response(false);
        assert_eq!(
            (resp.initiator_spi, resp.responder_spi, resp.message_id),
            (1, 2, 9)
        );
        assert_eq!(resp.flags, Flags::RESPONSE);
        assert_eq!(req.response(true).flags, Flags::RESPONSE | Flags::INITIATOR);
    }

    #[test]
    fn rejects_bad_lengths() {
        let buf = sample();
        assert!(matches!(
            HeaderPacket::new_checked(&buf[..27]),
            Err(Error::Truncated {
                need: 28,
                have: 27,
                ..
            })
        ));
        let mut b = buf.clone();
        b[27] = 40;
        assert!(matches!(
            HeaderPacket::new_checked(&b[..]),
            Err(Error::Truncated {
                need: 40,
                have: 32,
                ..
            })
        ));
        b[27] = 20;
        assert!(matches!(
            HeaderPacket::new_checked(&b[..]),
            Err(Error::BadLength { len: 20, .. })
        ));
        b[24] = 1;
        assert!(matches!(
            HeaderPacket::new_checked(&b[..]),
            Err(Error::BadLength { .. })
        ));
    }

    #[test]
    fn rejects_other_major_versions_but_view_still_reads_spis() {
        let mut buf = sample();
        buf[17] = 0x30;
        let p = HeaderPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(Header::parse(&p), Err(Error::UnsupportedMajorVersion(3)));
        assert_eq!(p.initiator_spi(), 0x0102030405060708);
        assert_eq!(peek_spis(&buf).unwrap().0, 0x0102030405060708);
    }
}

//! The Notify payload (RFC 7296 §3.10) and builders for the notifies an IKE SA sends.

use super::cursor::{Reader, Writer};
use super::error::{Error, Result};
use super::notify_type::NotifyType;
use super::payload::PayloadBody;
use super::registry::{DhGroup, HashAlgorithm, PayloadType, ProtocolId};

/// N: an error or status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The protocol of the SA the notify is about, `NONE` (0) when it is about none
    /// (RFC 7296 §3.10: IKE SA notifies carry 0 or 1 with an empty SPI).
    pub protocol: ProtocolId,
    /// SPI of that SA (empty, or 4 bytes for ESP/AH).
    pub spi: Vec<u8>,
    /// The notify type.
    pub notify_type: NotifyType,
    /// Type-specific data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about no particular SA, without data: e.g.
    /// `Notify::new(NotifyType::UseTransportMode)`.
    pub fn new(notify_type: NotifyType) -> Self {
        Notify {
            protocol: ProtocolId::None,
            spi: Vec::new(),
            notify_type,
            data: Vec::new(),
        }
    }

    /// Sets the notification data.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// Names the SA the notify is about.
    pub fn with_spi(mut self, protocol: ProtocolId, spi: impl Into<Vec<u8>>) -> Self {
        self.protocol = protocol;
        self.spi = spi.into();
        self
    }

    /// `NAT_DETECTION_SOURCE_IP` with its SHA-1 hash (RFC 7296 §2.23).
    pub fn nat_detection_source_ip(hash: [u8; 20]) -> Self {
        Self::new(NotifyType::NatDetectionSourceIp).with_data(hash)
    }

    /// `NAT_DETECTION_DESTINATION_IP` with its SHA-1 hash (RFC 7296 §2.23).
    pub fn nat_detection_destination_ip(hash: [u8; 20]) -> Self {
        Self::new(NotifyType::NatDetectionDestinationIp).with_data(hash)
    }

    /// `COOKIE` (RFC 7296 §2.6).
    pub fn cookie(cookie: impl Into<Vec<u8>>) -> Self {
        Self::new(NotifyType::Cookie).with_data(cookie)
    }

    /// `SIGNATURE_HASH_ALGORITHMS` listing the hashes we verify with (RFC 7427 §4).
    pub fn signature_hash_algorithms(hashes: &[HashAlgorithm]) -> Self {
        let data: Vec<u8> = hashes
            .iter()
            .flat_map(|h| h.value().to_be_bytes())
            .collect();
        Self::new(NotifyType::SignatureHashAlgorithms).with_data(data)
    }

    /// `REKEY_SA` naming the CHILD_SA being rekeyed by its inbound SPI (RFC 7296 §1.3.3).
    pub fn rekey_sa(protocol: ProtocolId, spi: u32) -> Self {
        Self::new(NotifyType::RekeySa).with_spi(protocol, spi.to_be_bytes())
    }

    /// `INVALID_KE_PAYLOAD` naming the group the responder wants (RFC 7296 §1.3).
    pub fn invalid_ke_payload(group: DhGroup) -> Self {
        Self::new(NotifyType::InvalidKePayload).with_data(group.value().to_be_bytes())
    }

    /// `UNSUPPORTED_CRITICAL_PAYLOAD` naming the payload type (RFC 7296 §3.10.1).
    pub fn unsupported_critical_payload(payload_type: PayloadType) -> Self {
        Self::new(NotifyType::UnsupportedCriticalPayload).with_data([payload_type.value()])
    }

    /// The hash algorithms of a `SIGNATURE_HASH_ALGORITHMS` notify.
    pub fn hash_algorithms(&self) -> Option<Vec<HashAlgorithm>> {
        if self.notify_type != NotifyType::SignatureHashAlgorithms || self.data.len() % 2 != 0 {
            return None;
        }
        Some(
            self.data
                .chunks_exact(2)
                .map(|c| HashAlgorithm::from(u16::from_be_bytes([c[0], c[1]])))
                .collect(),
        )
    }

    /// The group of an `INVALID_KE_PAYLOAD` notify.
    pub fn requested_group(&self) -> Option<DhGroup> {
        if self.notify_type != NotifyType::InvalidKePayload {
            return None;
        }
        <[u8; 2]>::try_from(self.data.as_slice())
            .ok()
            .map(|b| DhGroup::from(u16::from_be_bytes(b)))
    }

    /// The SPI as a 32-bit ESP/AH SPI, if it is 4 bytes long.
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }
}

impl PayloadBody for Notify {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Notify;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "N payload");
        let protocol = ProtocolId::from(r.u8()?);
        let spi_size = r.u8()? as usize;
        let notify_type = NotifyType::from(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        Ok(Notify {
            protocol,
            spi,
            notify_type,
            data: r.rest().to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self.spi.len() + self.data.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let spi_size = u8::try_from(self.spi.len()).map_err(|_| Error::TooLong {
            what: "notify SPI",
            len: self.spi.len(),
        })?;
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.protocol.value())?;
        w.u8(spi_size)?;
        w.u16(self.notify_type.value())?;
        w.bytes(&self.spi)?;
        w.bytes(&self.data)
    }
}

//! The Identification payloads IDi and IDr (RFC 7296 §3.5).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::{Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::{IdType, PayloadType};

/// IDi / IDr: who the sender claims to be.
///
/// The body (type, the three reserved octets, data) is what RFC 7296 §2.15 signs as
/// `RestOfIDPayload`, so the reserved octets are kept as received; [`Identification::body`]
/// rebuilds those exact bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Identification {
    /// Identification type.
    pub id_type: IdType,
    /// The reserved octets (zero when we send; kept as received so the signed octets match).
    pub reserved: [u8; 3],
    /// The identity in the type's encoding.
    pub data: Vec<u8>,
}

impl Identification {
    /// An identity of the given type.
    pub fn new(id_type: IdType, data: impl Into<Vec<u8>>) -> Self {
        Identification {
            id_type,
            reserved: [0; 3],
            data: data.into(),
        }
    }

    /// `ID_IPV4_ADDR` or `ID_IPV6_ADDR`.
    pub fn ip(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Self::new(IdType::Ipv4Addr, a.octets()),
            IpAddr::V6(a) => Self::new(IdType::Ipv6Addr, a.octets()),
        }
    }

    /// `ID_FQDN`.
    pub fn fqdn(name: &str) -> Self {
        Self::new(IdType::Fqdn, name.as_bytes())
    }

    /// `ID_RFC822_ADDR`.
    pub fn rfc822(addr: &str) -> Self {
        Self::new(IdType::Rfc822Addr, addr.as_bytes())
    }

    /// `ID_DER_ASN1_DN`: a DER-encoded distinguished name (the subject of a certificate).
    pub fn der_asn1_dn(der: impl Into<Vec<u8>>) -> Self {
        Self::new(IdType::DerAsn1Dn, der)
    }

    /// `ID_KEY_ID`: opaque bytes.
    pub fn key_id(id: impl Into<Vec<u8>>) -> Self {
        Self::new(IdType::KeyId, id)
    }

    /// The address, for the IP address types.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.id_type {
            IdType::Ipv4Addr => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            IdType::Ipv6Addr => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    }

    /// The text, for `ID_FQDN` and `ID_RFC822_ADDR` holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self.id_type {
            IdType::Fqdn | IdType::Rfc822Addr => core::str::from_utf8(&self.data).ok(),
            _ => None,
        }
    }

    /// The payload body as sent: what the AUTH payload signs (RFC 7296 §2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.buffer_len());
        v.push(self.id_type.value());
        v.extend_from_slice(&self.reserved);
        v.extend_from_slice(&self.data);
        v
    }
}

/// As text (a DN as `C=US, …`, not as a byte list), so debug logs of events read like the
/// rest; reserved octets only when they are not zero.
impl fmt::Debug for Identification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reserved == [0; 3] {
            write!(f, "Identification({self})")
        } else {
            write!(f, "Identification({self}, reserved {:02x?})", self.reserved)
        }
    }
}

impl fmt::Display for Identification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.as_ip() {
            return write!(f, "{}:{ip}", self.id_type);
        }
        if let Some(s) = self.as_str() {
            return write!(f, "{}:{s}", self.id_type);
        }
        if self.id_type == IdType::DerAsn1Dn {
            // People read DNs as text; a malformed one is still shown, as hex.
            if let Ok(text) = super::dn::dn_to_string(&self.data) {
                return write!(f, "{}:{text}", self.id_type);
            }
        }
        write!(f, "{}:", self.id_type)?;
        self.data.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl PayloadBody for Identification {
    const PAYLOAD_TYPE: PayloadType = PayloadType::IdInitiator;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "ID payload");
        let id_type = IdType::from(r.u8()?);
        let reserved = r.array()?;
        let data = r.rest();
        let want = match id_type {
            IdType::Ipv4Addr => Some(4),
            IdType::Ipv6Addr => Some(16),
            _ => None,
        };
        if want.is_some_and(|w| w != data.len()) {
            return Err(Error::BadLength {
                what: "IP address identity",
                len: data.len(),
            });
        }
        Ok(Identification {
            id_type,
            reserved,
            data: data.to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.id_type.value())?;
        w.bytes(&self.reserved)?;
        w.bytes(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_display_for_people() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.6, PrintableString "US" } },
        //            SET { SEQUENCE { OID 2.5.4.3, UTF8String "share" } } }
        let dn = [
            0x30, 0x1d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'U',
            b'S', 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05, b's', b'h',
            b'a', b'r', b'e',
        ];
        assert_eq!(
            Identification::der_asn1_dn(dn.to_vec()).to_string(),
            "ID_DER_ASN1_DN:C=US, CN=share"
        );
        // Malformed DER falls back to hex, never panics.
        assert_eq!(
            Identification::der_asn1_dn(vec![0x30, 0x05]).to_string(),
            "ID_DER_ASN1_DN:3005"
        );
        assert_eq!(
            Identification::ip("10.0.0.1".parse().unwrap()).to_string(),
            "ID_IPV4_ADDR:10.0.0.1"
        );
        assert_eq!(
            Identification::key_id(vec![1, 2]).to_string(),
            "ID_KEY_ID:0102"
        );
        let mut odd = Identification::der_asn1_dn(dn.to_vec());
        assert_eq!(
            format!("{odd:?}"),
            "Identification(ID_DER_ASN1_DN:C=US, CN=share)"
        );
        odd.reserved = [0, 0, 1];
        assert_eq!(
            format!("{odd:?}"),
            "Identification(ID_DER_ASN1_DN:C=US, CN=share, reserved [00, 00, 01])"
        );
    }
}

//! The Security Association payload: proposals, transforms and transform attributes
//! (RFC 7296 §3.3).

use core::fmt;

use super::cursor::{field, get_u16, len16, Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::{
    AttributeType, DhGroup, EncrId, EsnId, IntegId, PayloadType, PrfId, ProtocolId, TransformType,
};

/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most attributes accepted in one transform (RFC 7296 defines one, Key Length).
pub const MAX_ATTRIBUTES: usize = 16;

const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const ATTRIBUTE_TV: u16 = 0x8000;

/// A zero-copy view of one proposal substructure.
#[derive(Debug, Clone)]
pub struct ProposalPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ProposalPacket<T> {
    /// Checks the fixed fields, the proposal length and that the SPI fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < PROPOSAL_HEADER_LEN {
            return Err(Error::Truncated {
                what: "proposal",
                need: PROPOSAL_HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = get_u16(buf, 2) as usize;
        let spi_size = field::<1>(buf, 6)[0] as usize;
        if len < PROPOSAL_HEADER_LEN + spi_size {
            return Err(Error::BadLength {
                what: "proposal",
                len,
            });
        }
        if len > buf.len() {
            return Err(Error::Truncated {
                what: "proposal",
                need: len,
                have: buf.len(),
            });
        }
        let last = field::<1>(buf, 0)[0];
        if last != 0 && last != MORE_PROPOSALS {
            return Err(Error::BadValue {
                what: "proposal last-substructure",
                value: last.into(),
            });
        }
        Ok(ProposalPacket { buffer })
    }

    fn octet(&self, off: usize) -> u8 {
        field::<1>(self.buffer.as_ref(), off)[0]
    }

    /// Whether the "last substructure" field says another proposal follows.
    pub fn more_follow(&self) -> bool {
        self.octet(0) == MORE_PROPOSALS
    }

    /// Proposal length.
    pub fn proposal_length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// Proposal number (RFC 7296 §3.3.1: starts at 1, same number means AND).
    pub fn proposal_number(&self) -> u8 {
        self.octet(4)
    }

    /// Protocol ID.
    pub fn protocol_id(&self) -> ProtocolId {
        ProtocolId::from(self.octet(5))
    }

    /// SPI size.
    pub fn spi_size(&self) -> u8 {
        self.octet(6)
    }

    /// Number of transforms announced.
    pub fn num_transforms(&self) -> u8 {
        self.octet(7)
    }

    /// The SPI.
    pub fn spi(&self) -> &[u8] {
        let end = PROPOSAL_HEADER_LEN + self.spi_size() as usize;
        self.buffer
            .as_ref()
            .get(PROPOSAL_HEADER_LEN..end)
            .unwrap_or(&[])
    }

    /// The transform substructures.
    pub fn transforms(&self) -> &[u8] {
        let start = PROPOSAL_HEADER_LEN + self.spi_size() as usize;
        self.buffer
            .as_ref()
            .get(start..self.proposal_length() as usize)
            .unwrap_or(&[])
    }
}

/// A zero-copy view of one transform substructure.
#[derive(Debug, Clone)]
pub struct TransformPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TransformPacket<T> {
    /// Checks the fixed fields and the transform length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < TRANSFORM_HEADER_LEN {
            return Err(Error::Truncated {
                what: "transform",
                need: TRANSFORM_HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = get_u16(buf, 2) as usize;
        if len < TRANSFORM_HEADER_LEN {
            return Err(Error::BadLength {
                what: "transform",
                len,
            });
        }
        if len > buf.len() {
            return Err(Error::Truncated {
                what: "transform",
                need: len,
                have: buf.len(),
            });
        }
        let last = field::<1>(buf, 0)[0];
        if last != 0 && last != MORE_TRANSFORMS {
            return Err(Error::BadValue {
                what: "transform last-substructure",
                value: last.into(),
            });
        }
        Ok(TransformPacket { buffer })
    }

    /// Whether another transform follows.
    pub fn more_follow(&self) -> bool {
        field::<1>(self.buffer.as_ref(), 0)[0] == MORE_TRANSFORMS
    }

    /// Transform length.
    pub fn transform_length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// Transform type.
    pub fn transform_type(&self) -> TransformType {
        TransformType::from(field::<1>(self.buffer.as_ref(), 4)[0])
    }

    /// Transform ID (its meaning depends on the type).
    pub fn transform_id(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }

    /// The attribute bytes.
    pub fn attributes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(TRANSFORM_HEADER_LEN..self.transform_length() as usize)
            .unwrap_or(&[])
    }
}

/// The value of a transform attribute: short (TV, AF bit set) or long (TLV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A 16-bit value carried in the length field (AF = 1).
    Tv(u16),
    /// A variable-length value (AF = 0).
    Tlv(Vec<u8>),
}

/// A transform attribute (RFC 7296 §3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute type (15 bits).
    pub attribute_type: AttributeType,
    /// Its value, in the format it was (or is to be) sent in.
    pub value: AttributeValue,
}

impl Attribute {
    /// The Key Length attribute, in bits (always TV).
    pub fn key_length(bits: u16) -> Self {
        Attribute {
            attribute_type: AttributeType::KeyLength,
            value: AttributeValue::Tv(bits),
        }
    }

    fn buffer_len(&self) -> usize {
        match &self.value {
            AttributeValue::Tv(_) => 4,
            AttributeValue::Tlv(v) => 4 + v.len(),
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let t = r.u16()?;
        let attribute_type = AttributeType::from(t & !ATTRIBUTE_TV);
        let value = if t & ATTRIBUTE_TV != 0 {
            AttributeValue::Tv(r.u16()?)
        } else {
            let len = r.u16()? as usize;
            AttributeValue::Tlv(r.take(len)?.to_vec())
        };
        Ok(Attribute {
            attribute_type,
            value,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<()> {
        let t = self.attribute_type.value();
        if t & ATTRIBUTE_TV != 0 {
            return Err(Error::BadValue {
                what: "attribute type",
                value: t.into(),
            });
        }
        match &self.value {
            AttributeValue::Tv(v) => {
                w.u16(t | ATTRIBUTE_TV)?;
                w.u16(*v)
            }
            AttributeValue::Tlv(v) => {
                w.u16(t)?;
                w.u16(len16("attribute", v.len())?)?;
                w.bytes(v)
            }
        }
    }
}

/// A transform: one algorithm offered or chosen (RFC 7296 §3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// Transform type.
    pub transform_type: TransformType,
    /// Transform ID, interpreted per type (see the typed getters).
    pub transform_id: u16,
    /// Attributes (in practice only Key Length).
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(transform_type: TransformType, transform_id: u16) -> Self {
        Transform {
            transform_type,
            transform_id,
            attributes: Vec::new(),
        }
    }

    /// An encryption transform; `key_bits` adds the Key Length attribute, which AES requires
    /// (RFC 7296 §3.3.5).
    pub fn encr(id: EncrId, key_bits: Option<u16>) -> Self {
        let mut t = Transform::new(TransformType::Encr, id.value());
        if let Some(bits) = key_bits {
            t.attributes.push(Attribute::key_length(bits));
        }
        t
    }

    /// A PRF transform.
    pub fn prf(id: PrfId) -> Self {
        Transform::new(TransformType::Prf, id.value())
    }

    /// An integrity transform.
    pub fn integ(id: IntegId) -> Self {
        Transform::new(TransformType::Integ, id.value())
    }

    /// A key exchange (Diffie-Hellman group) transform.
    pub fn ke(group: DhGroup) -> Self {
        Transform::new(TransformType::Ke, group.value())
    }

    /// An extended-sequence-numbers transform.
    pub fn esn(id: EsnId) -> Self {
        Transform::new(TransformType::Esn, id.value())
    }

    /// The encryption algorithm, if this is an ENCR transform.
    pub fn encr_id(&self) -> Option<EncrId> {
        (self.transform_type == TransformType::Encr).then(|| EncrId::from(self.transform_id))
    }

    /// The PRF, if this is a PRF transform.
    pub fn prf_id(&self) -> Option<PrfId> {
        (self.transform_type == TransformType::Prf).then(|| PrfId::from(self.transform_id))
    }

    /// The integrity algorithm, if this is an INTEG transform.
    pub fn integ_id(&self) -> Option<IntegId> {
        (self.transform_type == TransformType::Integ).then(|| IntegId::from(self.transform_id))
    }

    /// The group, if this is a KE transform.
    pub fn dh_group(&self) -> Option<DhGroup> {
        (self.transform_type == TransformType::Ke).then(|| DhGroup::from(self.transform_id))
    }

    /// The ESN choice, if this is an ESN transform.
    pub fn esn_id(&self) -> Option<EsnId> {
        (self.transform_type == TransformType::Esn).then(|| EsnId::from(self.transform_id))
    }

    /// The Key Length attribute in bits, if present in TV form.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Tv(v) if a.attribute_type == AttributeType::KeyLength => Some(v),
            _ => None,
        })
    }

    /// The transform ID's IANA name within its type's registry.
    pub fn id_name(&self) -> String {
        let id = self.transform_id;
        match self.transform_type {
            TransformType::Encr => EncrId::from(id).to_string(),
            TransformType::Prf => PrfId::from(id).to_string(),
            TransformType::Integ => IntegId::from(id).to_string(),
            TransformType::Esn => EsnId::from(id).to_string(),
            TransformType::Ke
            | TransformType::AddKe1
            | TransformType::AddKe2
            | TransformType::AddKe3
            | TransformType::AddKe4
            | TransformType::AddKe5
            | TransformType::AddKe6
            | TransformType::AddKe7 => DhGroup::from(id).to_string(),
            TransformType::Unknown(_) => format!("UNKNOWN({id})"),
        }
    }

    fn buffer_len(&self) -> usize {
        TRANSFORM_HEADER_LEN
            + self
                .attributes
                .iter()
                .map(Attribute::buffer_len)
                .sum::<usize>()
    }

    fn parse<T: AsRef<[u8]>>(p: &TransformPacket<T>) -> Result<Self> {
        let mut r = Reader::new(p.attributes(), "transform attribute");
        let mut attributes = Vec::new();
        while !r.is_empty() {
            if attributes.len() == MAX_ATTRIBUTES {
                return Err(Error::TooMany {
                    what: "transform attributes",
                    max: MAX_ATTRIBUTES,
                });
            }
            attributes.push(Attribute::parse(&mut r)?);
        }
        Ok(Transform {
            transform_type: p.transform_type(),
            transform_id: p.transform_id(),
            attributes,
        })
    }

    fn emit(&self, last: bool, w: &mut Writer<'_>) -> Result<()> {
        w.u8(if last { 0 } else { MORE_TRANSFORMS })?;
        w.u8(0)?;
        w.u16(len16("transform", self.buffer_len())?)?;
        w.u8(self.transform_type.value())?;
        w.u8(0)?;
        w.u16(self.transform_id)?;
        self.attributes.iter().try_for_each(|a| a.emit(w))
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id_name())?;
        match self.key_length() {
            Some(bits) => write!(f, "_{bits}"),
            None => Ok(()),
        }
    }
}

/// A proposal: one acceptable combination of transforms for one protocol (RFC 7296 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number; the first is 1 and a chosen proposal keeps the offered number.
    pub number: u8,
    /// The protocol this proposal is for.
    pub protocol: ProtocolId,
    /// The sender's SPI (empty in IKE_SA_INIT, 8 bytes when rekeying an IKE SA, 4 for ESP).
    pub spi: Vec<u8>,
    /// The transforms.
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// An empty proposal.
    pub fn new(number: u8, protocol: ProtocolId) -> Self {
        Proposal {
            number,
            protocol,
            spi: Vec::new(),
            transforms: Vec::new(),
        }
    }

    /// Sets the SPI.
    pub fn with_spi(mut self, spi: impl Into<Vec<u8>>) -> Self {
        self.spi = spi.into();
        self
    }

    /// Appends a transform.
    pub fn with(mut self, transform: Transform) -> Self {
        self.transforms.push(transform);
        self
    }

    /// Transforms of one type, in offered order.
    pub fn transforms_of(&self, ty: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms
            .iter()
            .filter(move |t| t.transform_type == ty)
    }

    /// The SPI as a 32-bit ESP/AH SPI, if it is 4 bytes long.
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The SPI as a 64-bit IKE SPI, if it is 8 bytes long.
    pub fn spi_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.spi.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    }

    fn buffer_len(&self) -> usize {
        PROPOSAL_HEADER_LEN
            + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    fn parse<T: AsRef<[u8]>>(p: &ProposalPacket<T>) -> Result<Self> {
        let announced = p.num_transforms() as usize;
        let mut transforms = Vec::new();
        let mut rest = p.transforms();
        while !rest.is_empty() {
            let t = TransformPacket::new_checked(rest)?;
            let len = t.transform_length() as usize;
            transforms.push(Transform::parse(&t)?);
            rest = rest.get(len..).unwrap_or(&[]);
            if t.more_follow() == rest.is_empty() {
                return Err(Error::BadValue {
                    what: "transform last-substructure",
                    value: u32::from(t.more_follow()),
                });
            }
        }
        if transforms.len() != announced {
            return Err(Error::BadValue {
                what: "proposal transform count",
                value: announced as u32,
            });
        }
        Ok(Proposal {
            number: p.proposal_number(),
            protocol: p.protocol_id(),
            spi: p.spi().to_vec(),
            transforms,
        })
    }

    fn emit(&self, last: bool, w: &mut Writer<'_>) -> Result<()> {
        let spi_size = u8::try_from(self.spi.len()).map_err(|_| Error::TooLong {
            what: "proposal SPI",
            len: self.spi.len(),
        })?;
        let count = u8::try_from(self.transforms.len()).map_err(|_| Error::TooMany {
            what: "transforms",
            max: 255,
        })?;
        w.u8(if last { 0 } else { MORE_PROPOSALS })?;
        w.u8(0)?;
        w.u16(len16("proposal", self.buffer_len())?)?;
        w.u8(self.number)?;
        w.u8(self.protocol.value())?;
        w.u8(spi_size)?;
        w.u8(count)?;
        w.bytes(&self.spi)?;
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(i + 1 == n, w)?;
        }
        Ok(())
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}:", self.number, self.protocol)?;
        for t in &self.transforms {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

/// The SA payload: proposals in order of preference (RFC 7296 §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sa {
    /// The proposals.
    pub proposals: Vec<Proposal>,
}

impl Sa {
    /// An SA payload with these proposals.
    pub fn new(proposals: Vec<Proposal>) -> Self {
        Sa { proposals }
    }
}

impl PayloadBody for Sa {
    const PAYLOAD_TYPE: PayloadType = PayloadType::SecurityAssociation;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut proposals = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            if proposals.len() == MAX_PROPOSALS {
                return Err(Error::TooMany {
                    what: "proposals",
                    max: MAX_PROPOSALS,
                });
            }
            let p = ProposalPacket::new_checked(rest)?;
            let len = p.proposal_length() as usize;
            proposals.push(Proposal::parse(&p)?);
            rest = rest.get(len..).unwrap_or(&[]);
            if p.more_follow() == rest.is_empty() {
                return Err(Error::BadValue {
                    what: "proposal last-substructure",
                    value: u32::from(p.more_follow()),
                });
            }
        }
        Ok(Sa { proposals })
    }

    fn buffer_len(&self) -> usize {
        self.proposals.iter().map(Proposal::buffer_len).sum()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            p.emit(i + 1 == n, &mut w)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike_proposal() -> Proposal {
        Proposal::new(1, ProtocolId::Ike)
            .with(Transform::encr(EncrId::AesCbc, Some(256)))
            .with(Transform::prf(PrfId::HmacSha2_384))
            .with(Transform::integ(IntegId::HmacSha2_384_192))
            .with(Transform::ke(DhGroup::Ecp384))
    }

    #[test]
    fn encodes_like_rfc_layout() {
        let sa = Sa::new(vec![ike_proposal()]);
        let mut buf = vec![0; sa.buffer_len()];
        sa.emit(&mut buf).unwrap();
        assert_eq!(buf.len(), 8 + 12 + 8 + 8 + 8);
        // proposal header: last, reserved, length 44, #1, IKE, SPI size 0, 4 transforms
        assert_eq!(&buf[..8], &[0, 0, 0, 44, 1, 1, 0, 4]);
        // first transform: more, len 12, ENCR, AES_CBC, Key Length TV 256
        assert_eq!(&buf[8..20], &[3, 0, 0, 12, 1, 0, 0, 12, 0x80, 14, 1, 0]);
        // the last transform says no more follow
        assert_eq!(buf[36], 0);
        assert_eq!(Sa::parse(&buf).unwrap(), sa);
    }

    #[test]
    fn round_trip_esp_proposals_with_tlv_attribute() {
        let mut odd = Transform::new(TransformType::Unknown(99), 7);
        odd.attributes.push(Attribute {
            attribute_type: AttributeType::Unknown(20),
            value: AttributeValue::Tlv(vec![1, 2, 3]),
        });
        let sa = Sa::new(vec![
            Proposal::new(1, ProtocolId::Esp)
                .with_spi(0xc0ffee01u32.to_be_bytes())
                .with(Transform::encr(EncrId::AesGcm16, Some(256)))
                .with(Transform::esn(EsnId::NoEsn)),
            Proposal::new(2, ProtocolId::Esp)
                .with_spi([1, 2, 3, 4])
                .with(odd),
        ]);
        let mut buf = vec![0; sa.buffer_len()];
        sa.emit(&mut buf).unwrap();
        let back = Sa::parse(&buf).unwrap();
        assert_eq!(back, sa);
        assert_eq!(back.proposals[0].spi_u32(), Some(0xc0ffee01));
        assert_eq!(back.proposals[0].transforms[0].key_length(), Some(256));
        assert_eq!(
            back.proposals[0].to_string(),
            "#1 ESP: ENCR_AES_GCM_16_256 NO_ESN"
        );
    }

    #[test]
    fn rejects_inconsistent_structure() {
        let sa = Sa::new(vec![ike_proposal()]);
        let mut good = vec![0; sa.buffer_len()];
        sa.emit(&mut good).unwrap();

        let mut b = good.clone();
        b[7] = 5; // transform count too high
        assert!(matches!(Sa::parse(&b), Err(Error::BadValue { .. })));
        let mut b = good.clone();
        b[7] = 3; // transform count too low
        assert!(matches!(Sa::parse(&b), Err(Error::BadValue { .. })));
        let mut b = good.clone();
        b[0] = 2; // says another proposal follows, but none does
        assert!(matches!(Sa::parse(&b), Err(Error::BadValue { .. })));
        let mut b = good.clone();
        b[3] = 200; // proposal longer than the payload
        assert!(matches!(Sa::parse(&b), Err(Error::Truncated { .. })));
        let mut b = good.clone();
        b[11] = 4; // transform length below its header
        assert!(matches!(Sa::parse(&b), Err(Error::BadLength { .. })));
        let mut b = good.clone();
        b[6] = 250; // SPI larger than the proposal
        assert!(matches!(Sa::parse(&b), Err(Error::BadLength { .. })));
        let mut b = good.clone();
        b[16] = 0; // TV attribute turned TLV with a length running past the transform
        b[18] = 0;
        b[19] = 9;
        assert!(matches!(Sa::parse(&b), Err(Error::Truncated { .. })));
        for cut in 0..good.len() {
            assert!(Sa::parse(&good[..cut]).is_err() || cut == 0, "cut at {cut}");
        }
    }
}

//! The Configuration payload (RFC 7296 §3.15).

use super::cursor::{len16, Reader, Writer};
use super::error::{Error, Result};
use super::payload::PayloadBody;
use super::registry::{CfgAttributeType, CfgType, PayloadType};

/// Most attributes accepted in one CP payload.
pub const MAX_CFG_ATTRIBUTES: usize = 128;

/// One configuration attribute (RFC 7296 §3.15.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAttribute {
    /// Attribute type (15 bits; the top bit is reserved).
    pub attribute_type: CfgAttributeType,
    /// Value (empty in a request for "any").
    pub value: Vec<u8>,
}

/// CP: a configuration request, reply, set or acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// What kind of exchange this is.
    pub cfg_type: CfgType,
    /// The attributes.
    pub attributes: Vec<ConfigAttribute>,
}

impl PayloadBody for Configuration {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Configuration;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "CP payload");
        let cfg_type = CfgType::from(r.u8()?);
        r.take(3)?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            if attributes.len() == MAX_CFG_ATTRIBUTES {
                return Err(Error::TooMany {
                    what: "configuration attributes",
                    max: MAX_CFG_ATTRIBUTES,
                });
            }
            let attribute_type = CfgAttributeType::from(r.u16()? & 0x7fff);
            let len = r.u16()? as usize;
            attributes.push(ConfigAttribute {
                attribute_type,
                value: r.take(len)?.to_vec(),
            });
        }
        Ok(Configuration {
            cfg_type,
            attributes,
        })
    }

    fn buffer_len(&self) -> usize {
        4 + self
            .attributes
            .iter()
            .map(|a| 4 + a.value.len())
            .sum::<usize>()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.cfg_type.value())?;
        w.bytes(&[0; 3])?;
        for a in &self.attributes {
            let t = a.attribute_type.value();
            if t & 0x8000 != 0 {
                return Err(Error::BadValue {
                    what: "configuration attribute type",
                    value: t.into(),
                });
            }
            w.u16(t)?;
            w.u16(len16("configuration attribute", a.value.len())?)?;
            w.bytes(&a.value)?;
        }
        Ok(())
    }
}

//! The generic payload header (RFC 7296 §3.2), payload chains, and the [`Payload`] enum that
//! holds every payload this codec understands.

use super::auth::Authentication;
use super::cert::{Certificate, CertificateRequest};
use super::config::Configuration;
use super::cursor::{field, get_u16, len16, Writer};
use super::delete::Delete;
use super::encrypted::{Encrypted, EncryptedFragment};
use super::error::{Error, Result};
use super::ident::Identification;
use super::key_exchange::KeyExchange;
use super::nonce::Nonce;
use super::notify::Notify;
use super::registry::PayloadType;
use super::sa::Sa;
use super::traffic_selector::TrafficSelectors;
use super::vendor_id::VendorId;

/// Length of the generic payload header.
pub const PAYLOAD_HEADER_LEN: usize = 4;

/// Most payloads accepted in one chain; a bound against messages made of thousands of empty
/// payloads. strongSwan's largest messages (IKE_AUTH with a chain and many notifies) stay
/// well under 64.
pub const MAX_PAYLOADS: usize = 256;

const CRITICAL: u8 = 0x80;

/// A payload body's codec: the bytes after the 4-byte generic header.
pub trait PayloadBody: Sized {
    /// The payload type this body is carried as (for IDi/IDr, TSi/TSr: the initiator's).
    const PAYLOAD_TYPE: PayloadType;
    /// Parses a whole body; every byte must belong to it.
    fn parse(body: &[u8]) -> Result<Self>;
    /// Length of the encoded body.
    fn buffer_len(&self) -> usize;
    /// Writes the body into the first `buffer_len()` bytes of `buf`.
    fn emit(&self, buf: &mut [u8]) -> Result<()>;
}

/// A zero-copy view of one payload: generic header and body.
#[derive(Debug, Clone)]
pub struct PayloadPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PayloadPacket<T> {
    /// Checks that `buffer` holds the generic header and the whole payload it announces.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < PAYLOAD_HEADER_LEN {
            return Err(Error::Truncated {
                what: "payload header",
                need: PAYLOAD_HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = get_u16(buf, 2) as usize;
        if len < PAYLOAD_HEADER_LEN {
            return Err(Error::BadLength {
                what: "payload",
                len,
            });
        }
        if len > buf.len() {
            return Err(Error::Truncated {
                what: "payload",
                need: len,
                have: buf.len(),
            });
        }
        Ok(PayloadPacket { buffer })
    }

    /// Type of the payload that follows (for SK/SKF: of the first inner payload).
    pub fn next_payload(&self) -> PayloadType {
        PayloadType::from(field::<1>(self.buffer.as_ref(), 0)[0])
    }

    /// The critical bit (RFC 7296 §2.5).
    pub fn critical(&self) -> bool {
        field::<1>(self.buffer.as_ref(), 1)[0] & CRITICAL != 0
    }

    /// Payload length, generic header included.
    pub fn payload_length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(PAYLOAD_HEADER_LEN..self.payload_length() as usize)
            .unwrap_or(&[])
    }
}

/// One payload of a chain as found on the wire, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPayload<'a> {
    /// This payload's type (from the previous payload's or the header's next-payload field).
    pub payload_type: PayloadType,
    /// Its own next-payload field.
    pub next_payload: PayloadType,
    /// The critical bit.
    pub critical: bool,
    /// Offset of its generic header from the start of the chain's base (see [`PayloadIter`]).
    pub offset: usize,
    /// The body.
    pub body: &'a [u8],
}

/// Walks a payload chain without copying. Each item is checked against the buffer; the walk
/// ends at next-payload `NONE` or after an SK/SKF payload (whose next-payload field names the
/// first *inner* payload, RFC 7296 §3.14), and fails if bytes are left over or missing.
#[derive(Debug, Clone)]
pub struct PayloadIter<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    next: PayloadType,
    count: usize,
    done: bool,
}

impl<'a> PayloadIter<'a> {
    /// A walk over `chain` whose first payload has type `first`. `base` is added to reported
    /// offsets (use [`HEADER_LEN`](super::HEADER_LEN) to get offsets within the message).
    pub fn new(chain: &'a [u8], first: PayloadType, base: usize) -> Self {
        PayloadIter {
            buf: chain,
            pos: 0,
            base,
            next: first,
            count: 0,
            done: false,
        }
    }

    fn step(&mut self) -> Result<Option<RawPayload<'a>>> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        if self.next == PayloadType::NoNextPayload {
            self.done = true;
            return match rest.len() {
                0 => Ok(None),
                len => Err(Error::TrailingBytes {
                    what: "payload chain",
                    len,
                }),
            };
        }
        if self.count == MAX_PAYLOADS {
            return Err(Error::TooMany {
                what: "payloads",
                max: MAX_PAYLOADS,
            });
        }
        let packet = PayloadPacket::new_checked(rest)?;
        let len = packet.payload_length() as usize;
        let raw = RawPayload {
            payload_type: self.next,
            next_payload: packet.next_payload(),
            critical: packet.critical(),
            offset: self.base + self.pos,
            body: rest.get(PAYLOAD_HEADER_LEN..len).unwrap_or(&[]),
        };
        self.pos += len;
        self.count += 1;
        if is_encrypted(raw.payload_type) {
            // Nothing may follow SK/SKF; its next-payload field belongs to the inner chain.
            self.next = PayloadType::NoNextPayload;
            let left = self.buf.len() - self.pos;
            if left != 0 {
                return Err(Error::TrailingBytes {
                    what: "encrypted payload",
                    len: left,
                });
            }
        } else {
            self.next = raw.next_payload;
        }
        Ok(Some(raw))
    }
}

impl<'a> Iterator for PayloadIter<'a> {
    type Item = Result<RawPayload<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}

fn is_encrypted(t: PayloadType) -> bool {
    matches!(t, PayloadType::Encrypted | PayloadType::EncryptedFragment)
}

/// A payload whose type this codec does not parse, kept byte for byte. If `critical` is set
/// the message must be rejected with `UNSUPPORTED_CRITICAL_PAYLOAD` (RFC 7296 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPayload {
    /// The payload type.
    pub payload_type: PayloadType,
    /// The critical bit as received.
    pub critical: bool,
    /// The body.
    pub body: Vec<u8>,
}

/// Every payload of RFC 7296 and RFC 7383 that an IKE SA for transport-mode ESP needs. EAP and
/// the group/puzzle payloads are kept as [`Payload::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// SA (33).
    Sa(Sa),
    /// KE (34).
    Ke(KeyExchange),
    /// IDi (35).
    IdI(Identification),
    /// IDr (36).
    IdR(Identification),
    /// CERT (37).
    Cert(Certificate),
    /// CERTREQ (38).
    CertReq(CertificateRequest),
    /// AUTH (39).
    Auth(Authentication),
    /// Ni / Nr (40).
    Nonce(Nonce),
    /// N (41).
    Notify(Notify),
    /// D (42).
    Delete(Delete),
    /// V (43).
    VendorId(VendorId),
    /// TSi (44).
    TsI(TrafficSelectors),
    /// TSr (45).
    TsR(TrafficSelectors),
    /// SK (46).
    Sk(Encrypted),
    /// CP (47).
    Cp(Configuration),
    /// SKF (53).
    Skf(EncryptedFragment),
    /// Any other type, preserved.
    Unknown(UnknownPayload),
}

/// Applies `$f` to the body of every known variant.
macro_rules! each_body {
    ($self:expr, $b:ident => $f:expr, $u:ident => $uf:expr) => {
        match $self {
            Payload::Sa($b) => $f,
            Payload::Ke($b) => $f,
            Payload::IdI($b) | Payload::IdR($b) => $f,
            Payload::Cert($b) => $f,
            Payload::CertReq($b) => $f,
            Payload::Auth($b) => $f,
            Payload::Nonce($b) => $f,
            Payload::Notify($b) => $f,
            Payload::Delete($b) => $f,
            Payload::VendorId($b) => $f,
            Payload::TsI($b) | Payload::TsR($b) => $f,
            Payload::Sk($b) => $f,
            Payload::Cp($b) => $f,
            Payload::Skf($b) => $f,
            Payload::Unknown($u) => $uf,
        }
    };
}

impl Payload {
    /// The payload type this is sent as.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SecurityAssociation,
            Payload::Ke(_) => PayloadType::KeyExchange,
            Payload::IdI(_) => PayloadType::IdInitiator,
            Payload::IdR(_) => PayloadType::IdResponder,
            Payload::Cert(_) => PayloadType::Certificate,
            Payload::CertReq(_) => PayloadType::CertificateRequest,
            Payload::Auth(_) => PayloadType::Authentication,
            Payload::Nonce(_) => PayloadType::Nonce,
            Payload::Notify(_) => PayloadType::Notify,
            Payload::Delete(_) => PayloadType::Delete,
            Payload::VendorId(_) => PayloadType::VendorId,
            Payload::TsI(_) => PayloadType::TsInitiator,
            Payload::TsR(_) => PayloadType::TsResponder,
            Payload::Sk(_) => PayloadType::Encrypted,
            Payload::Cp(_) => PayloadType::Configuration,
            Payload::Skf(_) => PayloadType::EncryptedFragment,
            Payload::Unknown(u) => u.payload_type,
        }
    }

    /// Parses one payload found by a [`PayloadIter`].
    pub fn parse(raw: &RawPayload<'_>) -> Result<Self> {
        let b = raw.body;
        Ok(match raw.payload_type {
            PayloadType::SecurityAssociation => Payload::Sa(Sa::parse(b)?),
            PayloadType::KeyExchange => Payload::Ke(KeyExchange::parse(b)?),
            PayloadType::IdInitiator => Payload::IdI(Identification::parse(b)?),
            PayloadType::IdResponder => Payload::IdR(Identification::parse(b)?),
            PayloadType::Certificate => Payload::Cert(Certificate::parse(b)?),
            PayloadType::CertificateRequest => Payload::CertReq(CertificateRequest::parse(b)?),
            PayloadType::Authentication => Payload::Auth(Authentication::parse(b)?),
            PayloadType::Nonce => Payload::Nonce(Nonce::parse(b)?),
            PayloadType::Notify => Payload::Notify(Notify::parse(b)?),
            PayloadType::Delete => Payload::Delete(Delete::parse(b)?),
            PayloadType::VendorId => Payload::VendorId(VendorId::parse(b)?),
            PayloadType::TsInitiator => Payload::TsI(TrafficSelectors::parse(b)?),
            PayloadType::TsResponder => Payload::TsR(TrafficSelectors::parse(b)?),
            PayloadType::Encrypted => Payload::Sk(Encrypted {
                next_payload: raw.next_payload,
                body: b.to_vec(),
            }),
            PayloadType::Configuration => Payload::Cp(Configuration::parse(b)?),
            PayloadType::EncryptedFragment => {
                Payload::Skf(EncryptedFragment::parse_with_next(raw.next_payload, b)?)
            }
            other => Payload::Unknown(UnknownPayload {
                payload_type: other,
                critical: raw.critical,
                body: b.to_vec(),
            }),
        })
    }

    fn body_len(&self) -> usize {
        each_body!(self, b => b.buffer_len(), u => u.body.len())
    }

    /// Encoded length, generic header included.
    pub fn buffer_len(&self) -> usize {
        PAYLOAD_HEADER_LEN + self.body_len()
    }

    /// Writes the payload with the given next-payload value into `buf`. SK/SKF ignore
    /// `next_payload` and write their inner chain's first type.
    pub fn emit(&self, next_payload: PayloadType, buf: &mut [u8]) -> Result<()> {
        let len = self.buffer_len();
        let wire_len = len16("payload", len)?;
        let mut w = Writer::new(buf, len)?;
        let (next, critical) = match self {
            Payload::Sk(sk) => (sk.next_payload, false),
            Payload::Skf(skf) => (skf.next_payload, false),
            Payload::Unknown(u) => (next_payload, u.critical),
            _ => (next_payload, false),
        };
        w.u8(next.value())?;
        w.u8(if critical { CRITICAL } else { 0 })?;
        w.u16(wire_len)?;
        let body = w.sub(len - PAYLOAD_HEADER_LEN)?;
        each_body!(self, b => b.emit(body), u => {
            body.copy_from_slice(&u.body);
            Ok(())
        })
    }

    /// The notify, if this is one.
    pub fn as_notify(&self) -> Option<&Notify> {
        match self {
            Payload::Notify(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this is an unknown payload marked critical (RFC 7296 §2.5).
    pub fn is_unsupported_critical(&self) -> bool {
        matches!(self, Payload::Unknown(u) if u.critical)
    }
}

/// Parses a whole chain whose first payload has type `first`: the payloads after an IKE
/// header, or the decrypted plaintext of SK/SKF (padding already removed) with the SK
/// payload's next-payload value.
pub fn parse_chain(chain: &[u8], first: PayloadType) -> Result<Vec<Payload>> {
    let mut out = Vec::new();
    for raw in PayloadIter::new(chain, first, 0) {
        out.push(Payload::parse(&raw?)?);
    }
    Ok(out)
}

/// Type of the first payload of a chain, `NONE` if it is empty.
pub fn first_payload_type(payloads: &[Payload]) -> PayloadType {
    payloads
        .first()
        .map_or(PayloadType::NoNextPayload, Payload::payload_type)
}

/// Encoded length of a chain.
pub fn chain_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// Writes a chain into `buf`, linking next-payload fields; returns the bytes written. An SK or
/// SKF payload must be the last.
pub fn emit_chain(payloads: &[Payload], buf: &mut [u8]) -> Result<usize> {
    let total = chain_len(payloads);
    if payloads.len() > MAX_PAYLOADS {
        return Err(Error::TooMany {
            what: "payloads",
            max: MAX_PAYLOADS,
        });
    }
    let mut w = Writer::new(buf, total)?;
    for (i, p) in payloads.iter().enumerate() {
        if p.payload_type() == PayloadType::NoNextPayload {
            // Type 0 would end the chain on the receiving side.
            return Err(Error::BadValue {
                what: "payload type",
                value: 0,
            });
        }
        let next = payloads.get(i + 1);
        if next.is_some() && matches!(p, Payload::Sk(_) | Payload::Skf(_)) {
            return Err(Error::EncryptedNotLast);
        }
        let next = next.map_or(PayloadType::NoNextPayload, Payload::payload_type);
        p.emit(next, w.sub(p.buffer_len())?)?;
    }
    Ok(w.position())
}

/// The first unknown payload marked critical, which obliges the receiver to reject the whole
/// message with `UNSUPPORTED_CRITICAL_PAYLOAD` (RFC 7296 §2.5).
pub fn check_critical(payloads: &[Payload]) -> Result<()> {
    match payloads.iter().find(|p| p.is_unsupported_critical()) {
        Some(p) => Err(Error::UnsupportedCriticalPayload(p.payload_type())),
        None => Ok(()),
    }
}

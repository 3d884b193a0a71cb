//! The Certificate and Certificate Request payloads (RFC 7296 §3.6, §3.7).

use super::cursor::{Reader, Writer};
use super::error::Result;
use super::payload::PayloadBody;
use super::registry::{CertEncoding, PayloadType};

/// CERT: one certificate (or CRL, or hash-and-URL) in the stated encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Encoding of `data`.
    pub encoding: CertEncoding,
    /// For `X509_CERT_SIGNATURE`: one DER certificate.
    pub data: Vec<u8>,
}

impl Certificate {
    /// A DER X.509 certificate (encoding 4), the form strongSwan and libreswan send.
    pub fn x509(der: impl Into<Vec<u8>>) -> Self {
        Certificate {
            encoding: CertEncoding::X509Signature,
            data: der.into(),
        }
    }
}

impl PayloadBody for Certificate {
    const PAYLOAD_TYPE: PayloadType = PayloadType::Certificate;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "CERT payload");
        let encoding = CertEncoding::from(r.u8()?);
        Ok(Certificate {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        1 + self.data.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.encoding.value())?;
        w.bytes(&self.data)
    }
}

/// CERTREQ: the certificate authorities the sender trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// Requested encoding.
    pub encoding: CertEncoding,
    /// For X.509: concatenated SHA-1 hashes of trusted CAs' SubjectPublicKeyInfo (RFC 7296
    /// §3.7); may be empty.
    pub authorities: Vec<u8>,
}

/// Length of one CA hash in a CERTREQ (SHA-1).
pub const CA_HASH_LEN: usize = 20;

impl CertificateRequest {
    /// A request for X.509 certificates issued by the CAs with these SPKI SHA-1 hashes.
    pub fn x509(hashes: &[[u8; CA_HASH_LEN]]) -> Self {
        CertificateRequest {
            encoding: CertEncoding::X509Signature,
            authorities: hashes.concat(),
        }
    }

    /// The CA hashes; `None` if the data is not a whole number of SHA-1 hashes.
    pub fn authority_hashes(&self) -> Option<impl Iterator<Item = &[u8]>> {
        (self.authorities.len() % CA_HASH_LEN == 0)
            .then(|| self.authorities.chunks_exact(CA_HASH_LEN))
    }
}

impl PayloadBody for CertificateRequest {
    const PAYLOAD_TYPE: PayloadType = PayloadType::CertificateRequest;

    fn parse(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "CERTREQ payload");
        let encoding = CertEncoding::from(r.u8()?);
        Ok(CertificateRequest {
            encoding,
            authorities: r.rest().to_vec(),
        })
    }

    fn buffer_len(&self) -> usize {
        1 + self.authorities.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(self.encoding.value())?;
        w.bytes(&self.authorities)
    }
}

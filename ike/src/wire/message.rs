//! A whole IKE message: header and payload chain (RFC 7296 §3).

use super::encrypted::{Encrypted, EncryptedFragment};
use super::error::{Error, Result};
use super::header::{Header, HeaderPacket, HEADER_LEN, MAX_MESSAGE_LEN};
use super::notify::Notify;
use super::notify_type::NotifyType;
use super::payload::{
    chain_len, check_critical, emit_chain, first_payload_type, Payload, PayloadIter,
};

/// An owned IKE message.
///
/// Parsing keeps unknown payloads (critical or not); call [`Message::check_critical`] before
/// acting on a message, as RFC 7296 §2.5 requires. For SK/SKF messages the chain ends with the
/// encrypted payload; its plaintext is parsed separately after decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; on emit, `next_payload` and `length` are recomputed.
    pub header: Header,
    /// The (outer, unencrypted) payload chain.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// A message with no payloads yet.
    pub fn new(header: Header) -> Self {
        Message {
            header,
            payloads: Vec::new(),
        }
    }

    /// Appends a payload (builder style).
    pub fn with(mut self, payload: impl Into<Payload>) -> Self {
        self.payloads.push(payload.into());
        self
    }

    /// Appends a payload.
    pub fn push(&mut self, payload: impl Into<Payload>) {
        self.payloads.push(payload.into());
    }

    /// Parses one IKE message: the UDP payload on port 500, or on port 4500 after
    /// [`strip_non_esp_marker`](super::strip_non_esp_marker). The header's length must equal
    /// the datagram's.
    pub fn parse(datagram: &[u8]) -> Result<Self> {
        let packet = HeaderPacket::new_checked(datagram)?;
        let header = Header::parse(&packet)?;
        let extra = datagram.len() - header.length as usize;
        if extra != 0 {
            return Err(Error::TrailingBytes {
                what: "IKE message",
                len: extra,
            });
        }
        let mut payloads = Vec::new();
        for raw in PayloadIter::new(packet.payload(), header.next_payload, HEADER_LEN) {
            payloads.push(Payload::parse(&raw?)?);
        }
        Ok(Message { header, payloads })
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + chain_len(&self.payloads)
    }

    /// Writes the message into `buf`, filling in the header's next-payload and length;
    /// returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if len > MAX_MESSAGE_LEN {
            return Err(Error::TooLong {
                what: "IKE message",
                len,
            });
        }
        let need = len;
        let (head, chain) = match buf.get_mut(..len) {
            Some(b) => b.split_at_mut(HEADER_LEN),
            None => {
                return Err(Error::BufferTooSmall {
                    need,
                    have: buf.len(),
                })
            }
        };
        let header = Header {
            next_payload: first_payload_type(&self.payloads),
            length: len as u32,
            ..self.header.clone()
        };
        header.emit(head)?;
        emit_chain(&self.payloads, chain)?;
        Ok(len)
    }

    /// The encoded message in a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }

    /// Fails with [`Error::UnsupportedCriticalPayload`] if an unknown payload is marked
    /// critical: the message must then be answered with `UNSUPPORTED_CRITICAL_PAYLOAD`
    /// (RFC 7296 §2.5).
    pub fn check_critical(&self) -> Result<()> {
        check_critical(&self.payloads)
    }

    /// The notifies, in order.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(Payload::as_notify)
    }

    /// The first notify of a type.
    pub fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }

    /// The SK payload, if the message has one.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Sk(sk) => Some(sk),
            _ => None,
        })
    }

    /// The SKF payload, if the message is a fragment.
    pub fn fragment(&self) -> Option<&EncryptedFragment> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Skf(f) => Some(f),
            _ => None,
        })
    }
}

macro_rules! into_payload {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for Payload {
            fn from(v: $ty) -> Payload {
                Payload::$variant(v)
            }
        })*
    };
}

into_payload! {
    super::sa::Sa => Sa,
    super::key_exchange::KeyExchange => Ke,
    super::cert::Certificate => Cert,
    super::cert::CertificateRequest => CertReq,
    super::auth::Authentication => Auth,
    super::nonce::Nonce => Nonce,
    Notify => Notify,
    super::delete::Delete => Delete,
    super::vendor_id::VendorId => VendorId,
    Encrypted => Sk,
    super::config::Configuration => Cp,
    EncryptedFragment => Skf,
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::wire::*;

    fn header(exchange: ExchangeType) -> Header {
        Header::new(
            exchange,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            7,
            Flags::INITIATOR,
        )
    }

    /// One of every payload the codec knows, plus an unknown one.
    pub(crate) fn every_payload() -> Vec<Payload> {
        vec![
            Payload::Sa(Sa::new(vec![
                Proposal::new(1, ProtocolId::Ike)
                    .with(Transform::encr(EncrId::AesCbc, Some(256)))
                    .with(Transform::prf(PrfId::HmacSha2_384))
                    .with(Transform::integ(IntegId::HmacSha2_384_192))
                    .with(Transform::ke(DhGroup::Ecp384)),
                Proposal::new(2, ProtocolId::Esp)
                    .with_spi(0xc1c2c3c4u32.to_be_bytes())
                    .with(Transform::encr(EncrId::AesGcm16, Some(256)))
                    .with(Transform::esn(EsnId::NoEsn)),
            ])),
            Payload::Ke(KeyExchange::new(DhGroup::Curve25519, vec![9; 32])),
            Payload::IdI(Identification::ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))),
            Payload::IdR(Identification::ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            Payload::IdI(Identification::fqdn("client.example")),
            Payload::IdI(Identification::rfc822("nfs@example.com")),
            Payload::IdR(Identification::der_asn1_dn(vec![
                0x30, 0x03, 0x31, 0x01, 0x00,
            ])),
            Payload::IdR(Identification::key_id(vec![1, 2, 3])),
            Payload::Cert(Certificate::x509(vec![0x30, 0x82, 0, 1, 5])),
            Payload::CertReq(CertificateRequest::x509(&[[0xaa; 20], [0xbb; 20]])),
            Payload::Auth(Authentication::new(
                AuthMethod::DigitalSignature,
                vec![2, 0x30, 0, 1, 2],
            )),
            Payload::Nonce(Nonce(vec![5; 32])),
            Payload::Notify(Notify::new(NotifyType::UseTransportMode)),
            Payload::Notify(Notify::rekey_sa(ProtocolId::Esp, 0xdeadbeef)),
            Payload::Notify(Notify::signature_hash_algorithms(&[
                HashAlgorithm::Sha2_256,
                HashAlgorithm::Sha2_384,
                HashAlgorithm::Sha2_512,
                HashAlgorithm::Identity,
            ])),
            Payload::Notify(Notify::new(NotifyType::Unknown(40001)).with_data(vec![1])),
            Payload::Delete(Delete::esp(&[1, 2, 3])),
            Payload::Delete(Delete::ike()),
            Payload::VendorId(VendorId(b"ibm-ipsec".to_vec())),
            Payload::TsI(TrafficSelectors::new([
                TsRange::host(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6, Some(2049)),
                TsRange::any_v6(),
            ])),
            Payload::TsR(TrafficSelectors {
                selectors: vec![
                    TrafficSelector::Range(TsRange::any_v4()),
                    TrafficSelector::Other {
                        ts_type: TsType::SecLabel,
                        second_octet: 0,
                        data: b"system_u:object_r:nfs_t\0".to_vec(),
                    },
                ],
            }),
            Payload::Cp(Configuration {
                cfg_type: CfgType::Request,
                attributes: vec![
                    ConfigAttribute {
                        attribute_type: CfgAttributeType::InternalIp4Address,
                        value: vec![],
                    },
                    ConfigAttribute {
                        attribute_type: CfgAttributeType::InternalIp4Dns,
                        value: vec![10, 0, 0, 53],
                    },
                ],
            }),
            Payload::Unknown(UnknownPayload {
                payload_type: PayloadType::Eap,
                critical: false,
                body: vec![1, 2, 3, 4],
            }),
        ]
    }

    #[test]
    fn every_payload_round_trips_in_a_message() {
        let m = Message {
            header: header(ExchangeType::IkeAuth),
            payloads: every_payload(),
        };
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes.len(), m.buffer_len());
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.payloads, m.payloads);
        assert_eq!(back.header.length as usize, bytes.len());
        assert_eq!(back.header.next_payload, PayloadType::SecurityAssociation);
        assert_eq!(back.to_bytes().unwrap(), bytes);
        back.check_critical().unwrap();
    }

    #[test]
    fn every_payload_round_trips_alone() {
        for p in every_payload() {
            let m = Message::new(header(ExchangeType::Informational)).with(p.clone());
            let bytes = m.to_bytes().unwrap();
            assert_eq!(Message::parse(&bytes).unwrap().payloads, vec![p]);
        }
    }

    #[test]
    fn encrypted_payloads_end_the_chain() {
        let sk = Encrypted {
            next_payload: PayloadType::IdInitiator,
            body: vec![0xee; 64],
        };
        let m = Message::new(header(ExchangeType::IkeAuth))
            .with(Notify::new(NotifyType::InitialContact))
            .with(sk.clone());
        let bytes = m.to_bytes().unwrap();
        // The SK generic header names the first inner payload, not "none".
        let sk_offset = HEADER_LEN + 8;
        assert_eq!(bytes[sk_offset], PayloadType::IdInitiator.value());
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.encrypted(), Some(&sk));
        let raws: Vec<_> = PayloadIter::new(&bytes[HEADER_LEN..], PayloadType::Notify, HEADER_LEN)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(raws[1].offset, sk_offset);

        let frag = EncryptedFragment {
            next_payload: PayloadType::NoNextPayload,
            fragment_number: 2,
            total_fragments: 3,
            body: vec![1; 40],
        };
        let m = Message::new(header(ExchangeType::IkeAuth)).with(frag.clone());
        let back = Message::parse(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.fragment(), Some(&frag));

        let bad = Message::new(header(ExchangeType::IkeAuth))
            .with(sk)
            .with(Notify::new(NotifyType::InitialContact));
        assert_eq!(bad.to_bytes(), Err(Error::EncryptedNotLast));

        let none = Message::new(header(ExchangeType::Informational)).with(Payload::Unknown(
            UnknownPayload {
                payload_type: PayloadType::NoNextPayload,
                critical: false,
                body: vec![],
            },
        ));
        assert!(matches!(none.to_bytes(), Err(Error::BadValue { .. })));
    }

    #[test]
    fn find_payload_lookups() {
        let ps = every_payload();
        assert_eq!(ps.sa().unwrap().proposals.len(), 2);
        assert_eq!(ps.ke().unwrap().dh_group, DhGroup::Curve25519);
        assert_eq!(
            ps.id_i().unwrap().as_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(ps.id_r().unwrap().id_type, IdType::Ipv6Addr);
        assert_eq!(ps.ts_i().unwrap().ranges().count(), 2);
        assert_eq!(ps.ts_r().unwrap().selectors.len(), 2);
        assert_eq!(ps.certificates().count(), 1);
        assert_eq!(ps.deletes().count(), 2);
        assert!(ps.notify(NotifyType::UseTransportMode).is_some());
        assert_eq!(
            ps.notify(NotifyType::RekeySa).unwrap().spi_u32(),
            Some(0xdeadbeef)
        );
        assert!(ps.error_notify().is_none());
        assert_eq!(ps.nonce().unwrap().0.len(), 32);
        assert!(ps.auth().is_some() && ps.cp().is_some());
        let failed = [Payload::Notify(Notify::new(NotifyType::TsUnacceptable))];
        assert_eq!(
            failed.error_notify().unwrap().notify_type,
            NotifyType::TsUnacceptable
        );
    }

    #[test]
    fn inner_chain_parses_from_plaintext() {
        let inner = every_payload();
        let mut plain = vec![0; chain_len(&inner)];
        emit_chain(&inner, &mut plain).unwrap();
        assert_eq!(
            parse_chain(&plain, first_payload_type(&inner)).unwrap(),
            inner
        );
        assert!(parse_chain(&plain[..plain.len() - 1], first_payload_type(&inner)).is_err());
    }

    #[test]
    fn unknown_critical_payload_is_reported_with_its_type() {
        let m = Message::new(header(ExchangeType::IkeSaInit))
            .with(Nonce(vec![1; 16]))
            .with(Payload::Unknown(UnknownPayload {
                payload_type: PayloadType::Unknown(200),
                critical: true,
                body: vec![],
            }));
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes[HEADER_LEN + 4 + 16 + 1], 0x80);
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(
            back,
            Message {
                header: back.header.clone(),
                ..m
            }
        );
        assert_eq!(
            back.check_critical(),
            Err(Error::UnsupportedCriticalPayload(PayloadType::Unknown(200)))
        );
        let answer = Notify::unsupported_critical_payload(PayloadType::Unknown(200));
        assert_eq!(answer.data, vec![200]);
    }

    #[test]
    fn critical_bit_on_known_payload_is_ignored() {
        let m = Message::new(header(ExchangeType::IkeSaInit)).with(Nonce(vec![1; 16]));
        let mut bytes = m.to_bytes().unwrap();
        bytes[HEADER_LEN + 1] = 0x80;
        Message::parse(&bytes).unwrap().check_critical().unwrap();
    }

    #[test]
    fn every_truncation_is_rejected() {
        let m = Message {
            header: header(ExchangeType::IkeAuth),
            payloads: every_payload(),
        };
        let bytes = m.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                Message::parse(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        // A header that claims fewer bytes than the chain needs.
        let mut short = bytes.clone();
        short.truncate(bytes.len() - 3);
        let short_len = short.len() as u32;
        short[24..28].copy_from_slice(&short_len.to_be_bytes());
        assert!(Message::parse(&short).is_err());
        // Trailing bytes after the announced length.
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Message::parse(&long),
            Err(Error::TrailingBytes {
                what: "IKE message",
                len: 1
            })
        );
    }

    #[test]
    fn chain_errors_are_typed() {
        let m = Message::new(header(ExchangeType::IkeSaInit)).with(Nonce(vec![1; 16]));
        let good = m.to_bytes().unwrap();
        let mut b = good.clone();
        b[HEADER_LEN] = PayloadType::Notify.value(); // promises a payload that is not there
        assert!(matches!(Message::parse(&b), Err(Error::Truncated { .. })));
        let mut b = good.clone();
        b[HEADER_LEN + 3] = 3; // payload length below the generic header
        assert!(matches!(Message::parse(&b), Err(Error::BadLength { .. })));
        let mut b = good.clone();
        b[HEADER_LEN + 3] = 10; // payload shorter than its body: the rest is trailing
        assert!(matches!(
            Message::parse(&b),
            Err(Error::TrailingBytes { .. })
        ));
    }

    #[test]
    fn too_many_payloads_are_refused() {
        let mut m = Message::new(header(ExchangeType::Informational));
        for _ in 0..=MAX_PAYLOADS {
            m.push(VendorId(vec![]));
        }
        assert!(matches!(m.to_bytes(), Err(Error::TooMany { .. })));
        // Build the same thing by hand and check the parser bounds it too.
        let n = MAX_PAYLOADS + 1;
        let mut bytes = vec![0; HEADER_LEN + 4 * n];
        Header::new(ExchangeType::Informational, 1, 2, 0, Flags::empty())
            .emit(&mut bytes)
            .unwrap();
        bytes[16] = PayloadType::VendorId.value();
        bytes[24..28].copy_from_slice(&((HEADER_LEN + 4 * n) as u32).to_be_bytes());
        for i in 0..n {
            let o = HEADER_LEN + 4 * i;
            bytes[o] = if i + 1 < n {
                PayloadType::VendorId.value()
            } else {
                0
            };
            bytes[o + 3] = 4;
        }
        assert!(matches!(Message::parse(&bytes), Err(Error::TooMany { .. })));
    }

    #[test]
    fn emit_refuses_small_buffers_and_oversized_messages() {
        let m = Message::new(header(ExchangeType::IkeSaInit)).with(Nonce(vec![1; 16]));
        let mut small = vec![0; m.buffer_len() - 1];
        assert!(matches!(
            m.emit(&mut small),
            Err(Error::BufferTooSmall { .. })
        ));
        let huge =
            Message::new(header(ExchangeType::IkeAuth)).with(Certificate::x509(vec![0; 70_000]));
        assert!(matches!(huge.to_bytes(), Err(Error::TooLong { .. })));
    }

    /// Deterministic mutation fuzzing: no input may panic, and whatever parses must re-encode
    /// to something that parses to the same message.
    #[test]
    fn mutated_messages_never_panic_and_round_trip() {
        let m = Message {
            header: header(ExchangeType::IkeAuth),
            payloads: every_payload(),
        };
        let seed_bytes = m.to_bytes().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut b = seed_bytes.clone();
            for _ in 0..(1 + rand() % 4) {
                let i = (rand() as usize) % b.len();
                b[i] = rand() as u8;
            }
            if let Ok(first) = Message::parse(&b) {
                parsed += 1;
                let again = Message::parse(&first.to_bytes().unwrap()).unwrap();
                assert_eq!(again, first);
            }
        }
        assert!(parsed > 1000, "only {parsed} mutants parsed");
    }
}

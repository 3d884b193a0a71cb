//! The IKEv2 wire codec (RFC 7296 §3, RFC 7383).
//!
//! Two levels, as in smoltcp: zero-copy views (`HeaderPacket`, `PayloadPacket`,
//! `ProposalPacket`, `TransformPacket`, and `PayloadIter` over a chain) whose `new_checked`
//! proves every later accessor in bounds, and owned representations (`Header`, the payload
//! structs, [`Payload`], [`Message`]) with `parse`, `buffer_len` and `emit` into a caller's
//! buffer. Every length and count is checked against the input and bounded
//! ([`MAX_MESSAGE_LEN`], [`MAX_PAYLOADS`], [`MAX_PROPOSALS`]); malformed input is an
//! [`Error`], never a panic.
//!
//! ```
//! use ike::wire::*;
//!
//! let request = Message::new(Header::new(ExchangeType::IkeSaInit, 0x1122, 0, 0, Flags::INITIATOR))
//!     .with(Sa::new(vec![Proposal::new(1, ProtocolId::Ike)
//!         .with(Transform::encr(EncrId::AesCbc, Some(256)))
//!         .with(Transform::prf(PrfId::HmacSha2_384))
//!         .with(Transform::integ(IntegId::HmacSha2_384_192))
//!         .with(Transform::ke(DhGroup::Ecp384))]))
//!     .with(KeyExchange::new(DhGroup::Ecp384, vec![7; 96]))
//!     .with(Nonce(vec![1; 32]))
//!     .with(Notify::new(NotifyType::Ikev2FragmentationSupported));
//! let bytes = request.to_bytes().unwrap();
//! let parsed = Message::parse(&bytes).unwrap();
//! assert_eq!(parsed, Message { header: Header { length: bytes.len() as u32,
//!     next_payload: PayloadType::SecurityAssociation, ..request.header.clone() }, ..request });
//! ```

mod auth;
mod cert;
mod config;
mod cursor;
mod delete;
mod dn;
mod encrypted;
mod error;
mod find;
mod header;
mod ident;
mod key_exchange;
mod message;
mod nat_t;
mod nonce;
mod notify;
mod notify_type;
mod payload;
mod registry;
mod sa;
mod traffic_selector;
mod vendor_id;

pub use auth::Authentication;
pub use cert::{Certificate, CertificateRequest, CA_HASH_LEN};
pub use config::{ConfigAttribute, Configuration, MAX_CFG_ATTRIBUTES};
pub use delete::Delete;
pub use dn::{dn_to_string, MAX_ATTRIBUTES_PER_RDN, MAX_RDNS};
pub use encrypted::{Encrypted, EncryptedFragment};
pub use error::{Error, Result};
pub use find::FindPayload;
pub use header::{
    peek_spis, Flags, Header, HeaderPacket, HEADER_LEN, MAJOR_VERSION, MAX_MESSAGE_LEN,
};
pub use ident::Identification;
pub use key_exchange::KeyExchange;
pub use message::Message;
pub use nat_t::{
    classify_udp4500, prepend_non_esp_marker, strip_non_esp_marker, Udp4500, NON_ESP_MARKER,
};
pub use nonce::Nonce;
pub use notify::Notify;
pub use notify_type::NotifyType;
pub use payload::{
    chain_len, check_critical, emit_chain, first_payload_type, parse_chain, Payload, PayloadBody,
    PayloadIter, PayloadPacket, RawPayload, UnknownPayload, MAX_PAYLOADS, PAYLOAD_HEADER_LEN,
};
pub use registry::{
    AttributeType, AuthMethod, CertEncoding, CfgAttributeType, CfgType, DhGroup, EncrId, EsnId,
    ExchangeType, HashAlgorithm, IdType, IntegId, PayloadType, PrfId, ProtocolId, TransformType,
    TsType,
};
pub use sa::{
    Attribute, AttributeValue, Proposal, ProposalPacket, Sa, Transform, TransformPacket,
    MAX_ATTRIBUTES, MAX_PROPOSALS,
};
pub use traffic_selector::{TrafficSelector, TrafficSelectors, TsRange, ANY_PROTOCOL};
pub use vendor_id::VendorId;

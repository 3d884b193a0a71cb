//! The IKEv2 crypto suite: algorithms, key exchange, key derivation and SK payload protection.
//!
//! Everything here is pure computation over bytes. Randomness (DH private values, IVs, nonces)
//! is supplied by the caller, either as bytes or through the [`Random`] trait, so an exchange
//! can be replayed byte for byte in tests.
//!
//! # Pieces
//!
//! | concept | RFC | type |
//! |---|---|---|
//! | PRF, prf+ | RFC 7296 §2.13, RFC 4868 | [`PrfAlgorithm`] |
//! | integrity (truncated HMAC) | RFC 4868 | [`IntegAlgorithm`] |
//! | encryption transform | RFC 3602, RFC 5282 | [`EncrAlgorithm`] |
//! | Diffie-Hellman | RFC 3526, RFC 5903, RFC 8031 | [`DhGroup`], [`DhSecret`], [`SharedSecret`] |
//! | SKEYSEED, SK_*, rekey, KEYMAT | RFC 7296 §2.14, §2.17, §2.18 | [`IkeKeys`], [`ChildKeys`] |
//! | SK / SKF payload | RFC 7296 §3.14, RFC 5282, RFC 7383 §2.5 | [`SkCipher`] |
//! | NAT detection hashes | RFC 7296 §2.23 | [`nat_detection_hash`] |
//! | AUTH octets, PSK AUTH | RFC 7296 §2.15 | [`signed_octets`], [`psk_auth`], [`verify_psk_auth`] |
//!
//! # The SK payload contract (for the message builder and parser)
//!
//! An encrypted message on the wire is
//!
//! ```text
//! IKE header | (unencrypted payloads) | SK generic header [| SKF frag no | SKF total] | body
//! body = IV | encrypted(inner payloads | padding | pad length) | ICV
//! ```
//!
//! The *associated data* (AAD) is every byte of the message from the first octet of the IKE
//! header through the end of the SK generic payload header — for SKF including its 2-byte
//! Fragment Number and 2-byte Total Fragments fields (RFC 7383 §2.5). It does **not** include
//! the 4-byte non-ESP marker that precedes IKE messages on UDP port 4500. For AES-GCM the AAD is
//! authenticated by GCM itself (RFC 5282 §5.1); for AES-CBC the ICV is an HMAC over
//! `AAD | IV | ciphertext` (RFC 7296 §3.14, encrypt-then-MAC).
//!
//! The AAD contains the IKE header's Length and the SK payload's Payload Length, so both must be
//! final *before* sealing. The builder therefore:
//!
//! 1. serialises the inner payloads (`plaintext`);
//! 2. asks [`SkCipher::sealed_len`]`(plaintext.len())` for the body length, and writes the SK
//!    payload length (`4 + sealed_len`, or `8 + sealed_len` for SKF) and the IKE header length
//!    (AAD length + `sealed_len`);
//! 3. calls [`SkCipher::seal`] with that AAD (or [`SkCipher::seal_appending`] when the AAD is
//!    the message buffer built so far), a fresh IV of [`SkCipher::iv_len`] bytes, and the
//!    plaintext; the body is appended.
//!
//! The parser calls [`SkCipher::open`]`(aad, body)` with the same split and receives the inner
//! payload chain (padding and pad length removed). The ICV is checked (in constant time) before
//! anything is decrypted. `open` never panics, whatever the input.
//!
//! With the [`wire`](crate::wire) codec, an INFORMATIONAL request carrying a Delete:
//!
//! ```
//! use ike::crypto::{IkeKeys, IkeSuite, Role, SharedSecret};
//! use ike::wire::*;
//!
//! # let keys = IkeKeys::derive(IkeSuite::IBM_DEFAULT, &SharedSecret::from_bytes(&[7; 48]),
//! #     &[1; 32], &[2; 32], 0x11, 0x22).unwrap();
//! # let iv = [0x5a; 16]; // from the injected random source
//! let sk = keys.sk_cipher(Role::Initiator).unwrap();
//! // 1. The inner payload chain.
//! let inner = vec![Payload::from(Delete::ike())];
//! let mut plaintext = vec![0; chain_len(&inner)];
//! emit_chain(&inner, &mut plaintext).unwrap();
//! // 2. The message with a body of the final length, so both length fields are final.
//! let body_len = sk.sealed_len(plaintext.len());
//! let header = Header::new(ExchangeType::Informational, 0x11, 0x22, 2, Flags::INITIATOR);
//! let message = Message::new(header)
//!     .with(Encrypted { next_payload: first_payload_type(&inner), body: vec![0; body_len] });
//! let mut bytes = message.to_bytes().unwrap();
//! // 3. Everything before the body is the AAD; seal appends the real body.
//! bytes.truncate(bytes.len() - body_len);
//! sk.seal_appending(&mut bytes, &iv, &plaintext).unwrap();
//!
//! // The receiver (the responder, opening what the initiator sent):
//! let received = Message::parse(&bytes).unwrap();
//! let encrypted = received.encrypted().unwrap();
//! let (aad, body) = bytes.split_at(bytes.len() - encrypted.body.len());
//! let opened = keys.sk_cipher(Role::Initiator).unwrap().open(aad, body).unwrap();
//! assert_eq!(parse_chain(&opened, encrypted.next_payload).unwrap(), inner);
//! ```
//!
//! Fragments (RFC 7383 §2.5): the inner payload chain is split into pieces *before*
//! encryption and each SKF payload is sealed on its own, with its own IV and its own AAD (its
//! header and Fragment Number / Total Fragments fields); the receiver opens each fragment and
//! concatenates the plaintexts in fragment order. Use [`SkCipher::sealed_len`] to size a
//! piece so that the whole message fits the fragment size.
//!
//! IV rules: for AES-CBC the IV must be unpredictable (RFC 7296 §3.14), so draw it from the
//! random source; for AES-GCM it only has to be unique per key (RFC 5282 §3.1), so a
//! per-SA counter is fine. Never reuse an IV with the same key.
//!
//! # Evidence
//!
//! Besides published known-answer vectors (RFC 4231, RFC 4868, RFC 7748, RFC 5903, the GCM
//! spec's test cases, SP 800-38A), the `strongswan_tests` module replays real strongSwan 5.9.8
//! exchanges from `ike/tests/data/strongswan/`: the same SK_* keys (also after an IKE SA
//! rekey) and CHILD_SA KEYMAT as charon logged, every SK/SKF payload opened (and, with
//! strongSwan's IV, re-sealed to the same bytes for GCM), PSK AUTH and NAT detection data
//! reproduced.
//!
//! # Secrets
//!
//! Key material lives in [`SecretBytes`], which is zeroized on drop and whose `Debug` prints
//! only the length. The DH private values use the zeroizing types of their crates. Key
//! schedules held inside `ring` (HMAC pads, AES-GCM round keys) are not zeroized by `ring`.

mod auth;
mod dh;
mod encryption;
mod error;
mod integrity;
mod keys;
mod modp;
mod nat_detection;
mod prf;
mod random;
mod secret;
mod sk;

pub use auth::{psk_auth, signed_octets, verify_psk_auth, PSK_KEY_PAD};
pub use dh::{DhGroup, DhSecret, SharedSecret};
pub use encryption::EncrAlgorithm;
pub use error::CryptoError;
pub use integrity::IntegAlgorithm;
pub use keys::{ChildKeys, DirectionKeys, IkeKeys, IkeSuite, Role};
pub use nat_detection::{nat_detection_hash, NAT_DETECTION_HASH_LEN};
pub use prf::{PrfAlgorithm, PRF_PLUS_MAX_ITERATIONS};
pub use random::Random;
pub use secret::SecretBytes;
pub use sk::SkCipher;

/// Result type of the crypto suite.
pub type Result<T> = core::result::Result<T, CryptoError>;

#[cfg(test)]
mod strongswan_tests;

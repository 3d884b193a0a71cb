//! Building and opening SK / SKF protected messages (RFC 7296 §3.14, RFC 7383 §2.5), following
//! the AAD contract of [`crate::crypto`]: the AAD is the message from the IKE header through
//! the SK (or SKF, with its two 16-bit fields) header, and the encrypted payload is last, so
//! the AAD is everything before the SK body.

use crate::crypto::SkCipher;
use crate::error::{Error, Result};
use crate::fragment;
use crate::wire::{
    chain_len, emit_chain, first_payload_type, parse_chain, EncryptedFragment, Header, Message,
    Payload, PayloadType, HEADER_LEN, MAX_MESSAGE_LEN,
};

/// Seals one SK message (or one SKF fragment when `fragment` is `(number, total)`).
pub(crate) fn seal_one(
    header: &Header,
    inner_first: PayloadType,
    fragment: Option<(u16, u16)>,
    plaintext: &[u8],
    cipher: &SkCipher,
    iv: &[u8],
) -> Result<Vec<u8>> {
    let sealed = cipher.sealed_len(plaintext.len());
    let sk_header = if fragment.is_some() { 8 } else { 4 };
    let total = HEADER_LEN + sk_header + sealed;
    if total > MAX_MESSAGE_LEN {
        return Err(Error::Wire(crate::wire::Error::TooLong {
            what: "IKE message",
            len: total,
        }));
    }
    let mut h = header.clone();
    h.next_payload = if fragment.is_some() {
        PayloadType::EncryptedFragment
    } else {
        PayloadType::Encrypted
    };
    h.length = total as u32;
    let mut out = vec![0u8; HEADER_LEN];
    out.reserve(total - HEADER_LEN);
    h.emit(&mut out)?;
    out.push(inner_first.value());
    out.push(0);
    out.extend_from_slice(&((sk_header + sealed) as u16).to_be_bytes());
    if let Some((number, count)) = fragment {
        out.extend_from_slice(&number.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
    }
    cipher.seal_appending(&mut out, iv, plaintext)?;
    Ok(out)
}

/// Seals `inner` as one SK message, or — when that would exceed `max_len` bytes and
/// `fragment` is allowed — as SKF fragments each within `max_len` (RFC 7383 §2.5).
/// `next_iv` supplies a fresh IV per sealed message.
pub(crate) fn seal(
    header: &Header,
    inner: &[Payload],
    cipher: &SkCipher,
    max_len: Option<usize>,
    next_iv: &mut dyn FnMut() -> Vec<u8>,
) -> Result<Vec<Vec<u8>>> {
    let mut plaintext = vec![0u8; chain_len(inner)];
    emit_chain(inner, &mut plaintext)?;
    let first = first_payload_type(inner);
    let whole = HEADER_LEN + 4 + cipher.sealed_len(plaintext.len());
    let Some(max_len) = max_len.filter(|m| whole > *m) else {
        return Ok(vec![seal_one(
            header,
            first,
            None,
            &plaintext,
            cipher,
            &next_iv(),
        )?]);
    };
    // Room for plaintext in one fragment: what is left after header, SKF header, IV, ICV and
    // the pad length octet, rounded down so CBC padding never pushes it over.
    let fixed = HEADER_LEN + 8 + cipher.overhead(0);
    let room = max_len.saturating_sub(fixed);
    let chunk = if cipher.encr().is_aead() {
        room
    } else {
        (room / 16) * 16
    };
    if chunk < 64 {
        return Err(Error::Config("fragment size too small"));
    }
    let parts = fragment::split(&plaintext, chunk);
    let total = u16::try_from(parts.len()).map_err(|_| Error::Config("too many fragments"))?;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let number = i as u16 + 1;
            let next = if number == 1 {
                first
            } else {
                PayloadType::NoNextPayload
            };
            seal_one(
                header,
                next,
                Some((number, total)),
                part,
                cipher,
                &next_iv(),
            )
        })
        .collect()
}

/// Verifies and decrypts an SK message; returns the inner payloads.
pub(crate) fn open_sk(
    datagram: &[u8],
    message: &Message,
    cipher: &SkCipher,
) -> Result<Vec<Payload>> {
    let sk = message
        .encrypted()
        .ok_or_else(|| Error::Protocol("message is not encrypted".into()))?;
    let aad_len = datagram
        .len()
        .checked_sub(sk.body.len())
        .ok_or_else(|| Error::Protocol("SK payload longer than message".into()))?;
    let plaintext = cipher.open(&datagram[..aad_len], &sk.body)?;
    Ok(parse_chain(&plaintext, sk.next_payload)?)
}

/// Verifies and decrypts one SKF fragment; returns its slice of the inner chain.
pub(crate) fn open_skf(
    datagram: &[u8],
    fragment: &EncryptedFragment,
    cipher: &SkCipher,
) -> Result<Vec<u8>> {
    let aad_len = datagram
        .len()
        .checked_sub(fragment.body.len())
        .ok_or_else(|| Error::Protocol("SKF payload longer than message".into()))?;
    Ok(cipher.open(&datagram[..aad_len], &fragment.body)?)
}

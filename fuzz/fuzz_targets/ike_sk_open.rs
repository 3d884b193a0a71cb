//! SK/SKF decryption (RFC 7296 §3.14, RFC 5282, RFC 7383 §2.5) with fixed keys: the SK_e/SK_a
//! keys charon logged for two strongSwan captures in `ike/tests/data/strongswan/`
//! (`cert-ecp384`: AES-CBC-256 + HMAC-SHA2-384-192; `cert-x25519-gcm`: AES-GCM-16-256),
//! both directions. The first input byte picks what the rest is:
//!
//! * `0`: a whole IKE message. If it carries SK or SKF, the body is opened with every key;
//!   what opens is parsed as the inner payload chain. The seeds are the real captures, so
//!   the fuzzer starts from messages that open and mutates their framing.
//! * `1`: an *authentic* body around arbitrary plaintext (the fuzzer cannot forge an ICV, so
//!   the target computes it): everything after the ICV check — pad length, truncation, the
//!   inner chain — sees hostile bytes. What `open` returns must be a prefix of the plaintext
//!   (GCM) or at most the ciphertext length (CBC).
//! * `2`: seal then open must give the plaintext back.
#![no_main]

use std::sync::LazyLock;

use ike::crypto::{EncrAlgorithm, IntegAlgorithm, SkCipher};
use ike::wire::{parse_chain, Message, PayloadType};
use libfuzzer_sys::fuzz_target;
use ring::{aead, hmac};

struct Key {
    encr: &'static str,
    integ: Option<&'static str>,
}

/// `cert-ecp384/keys.txt` [ike_sa 1] sk_ei/sk_ai, sk_er/sk_ar, then `cert-x25519-gcm/keys.txt`
/// sk_ei, sk_er (AES key ‖ 4-byte salt). Test captures' keys, not secrets.
const KEYS: [Key; 4] = [
    Key {
        encr: "a892de0a003f95c2a72fc09968ade4dfe961a395f546cb874a48e438b2a6785e",
        integ: Some("b6b97f6745d603cd521454e94666aae89562659145629d7db1098516c87710eff6fd283a36fa7098ca111adff940098a"),
    },
    Key {
        encr: "61b675d46e8c070c6d7d93964cbce80b94ef227cdced1845eecb4c71f07d5c65",
        integ: Some("4641f39d731450631e044e344492b20ae51b5987d1d4f2dc0eef6b1aed9e623c5be186600993214fa883ef54c7e1534d"),
    },
    Key {
        encr: "7e55a1e32e82a48dc7a13abff5d1d110bb1cdc048f9ccd4b9305a88ebce29a4d1682f108",
        integ: None,
    },
    Key {
        encr: "ec13311d3d80d86f5823466aa6cb4ae2bf1a7461627deba69994cc86a06825cd8e74b136",
        integ: None,
    },
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex constant"))
        .collect()
}

struct Keyed {
    cipher: SkCipher,
    encr: Vec<u8>,
    integ: Option<Vec<u8>>,
}

static CIPHERS: LazyLock<Vec<Keyed>> = LazyLock::new(|| {
    KEYS.iter()
        .map(|k| {
            let encr = unhex(k.encr);
            let integ = k.integ.map(unhex);
            let cipher = match &integ {
                Some(a) => SkCipher::new(
                    EncrAlgorithm::AesCbc256,
                    Some(IntegAlgorithm::HmacSha2_384_192),
                    &encr,
                    a,
                ),
                None => SkCipher::new(EncrAlgorithm::AesGcm16_256, None, &encr, &[]),
            }
            .expect("fixture keys fit their transforms");
            Keyed {
                cipher,
                encr,
                integ,
            }
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => open_message(rest),
        1 => open_authentic(rest),
        2 => seal_open(rest),
        _ => {}
    }
});

fn open_message(bytes: &[u8]) {
    let Ok(message) = Message::parse(bytes) else {
        return;
    };
    let (next, body_len) = match (message.encrypted(), message.fragment()) {
        (Some(sk), _) => (sk.next_payload, sk.body.len()),
        (_, Some(skf)) => (skf.next_payload, skf.body.len()),
        _ => return,
    };
    // The protected payload is the last one (RFC 7296 §3.14), so its body is the message's
    // tail and everything before it is the AAD.
    let Some(m) = bytes.get(..message.header.length as usize) else {
        return;
    };
    let Some(split) = m.len().checked_sub(body_len) else {
        return;
    };
    let (aad, body) = m.split_at(split);
    for k in CIPHERS.iter() {
        if let Ok(inner) = k.cipher.open(aad, body) {
            // Only the first SKF fragment's chain starts with `next`; later fragments are
            // continuations and are parsed anyway for robustness.
            let _ = parse_chain(&inner, next);
        }
    }
}

/// `[key index, aad length, chain type, iv…, aad…, plaintext…]`.
fn open_authentic(rest: &[u8]) {
    let [idx, aad_len, chain_type, rest @ ..] = rest else {
        return;
    };
    let k = &CIPHERS[usize::from(*idx) % CIPHERS.len()];
    let iv_len = k.cipher.iv_len();
    let aad_len = usize::from(*aad_len);
    if rest.len() < iv_len + aad_len {
        return;
    }
    let (iv, rest) = rest.split_at(iv_len);
    let (aad, plaintext) = rest.split_at(aad_len);

    let mut body = iv.to_vec();
    match &k.integ {
        None => {
            let (key, salt) = k.encr.split_at(32);
            let key = aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_256_GCM, key).expect("256-bit key"),
            );
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(salt);
            nonce[4..].copy_from_slice(iv);
            let mut ct = plaintext.to_vec();
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    &mut ct,
                )
                .expect("GCM seals short inputs");
            body.extend_from_slice(&ct);
            body.extend_from_slice(tag.as_ref());
        }
        Some(integ) => {
            // The fuzzer's bytes are the CBC ciphertext (block-aligned); the ICV is
            // HMAC-SHA-384 over AAD | IV | ciphertext truncated to 192 bits.
            let ct = &plaintext[..plaintext.len() / 16 * 16];
            let mac = hmac::Key::new(hmac::HMAC_SHA384, integ);
            let mut ctx = hmac::Context::with_key(&mac);
            ctx.update(aad);
            ctx.update(iv);
            ctx.update(ct);
            body.extend_from_slice(ct);
            body.extend_from_slice(&ctx.sign().as_ref()[..24]);
        }
    }

    let Ok(inner) = k.cipher.open(aad, &body) else {
        return;
    };
    if k.integ.is_none() {
        assert!(
            plaintext.starts_with(&inner),
            "opened bytes are not the plaintext"
        );
        let pad = usize::from(*plaintext.last().expect("opened, so not empty"));
        assert_eq!(inner.len() + pad + 1, plaintext.len(), "pad length ignored");
    } else {
        assert!(
            inner.len() < body.len() - iv_len,
            "opened more than the ciphertext"
        );
    }
    let _ = parse_chain(&inner, PayloadType::from(*chain_type));
}

/// `[key index, aad length, aad…, plaintext…]`; the IV is fixed (each run is independent).
fn seal_open(rest: &[u8]) {
    let [idx, aad_len, rest @ ..] = rest else {
        return;
    };
    let k = &CIPHERS[usize::from(*idx) % CIPHERS.len()];
    let aad_len = usize::from(*aad_len).min(rest.len());
    let (aad, plaintext) = rest.split_at(aad_len);
    let iv = vec![0x5a; k.cipher.iv_len()];
    let mut body = Vec::new();
    k.cipher
        .seal(aad, &iv, plaintext, &mut body)
        .expect("seal accepts any plaintext");
    assert_eq!(body.len(), k.cipher.sealed_len(plaintext.len()));
    let opened = k.cipher.open(aad, &body).expect("what we sealed opens");
    assert_eq!(opened, plaintext);
}

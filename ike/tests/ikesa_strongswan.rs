//! Our IKE SA against real strongSwan 5.9.8 messages (`data/strongswan/`): the responder
//! answers a captured IKE_SA_INIT request, and the PSK verifier accepts the AUTH payloads
//! charon computed (decrypted with the keys it logged).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ike::auth::{PeerAuthenticator, VerifyRequest};
use ike::crypto::{IkeKeys, IkeSuite, Role, SharedSecret};
use ike::testing::SeededRandom;
use ike::wire::*;
use ike::{Accept, Config, IkeSa, Psk};

fn dir(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/strongswan")
        .join(scenario)
}

fn keys(scenario: &str) -> HashMap<String, Vec<u8>> {
    // First occurrence wins: `[ike_sa 1]` comes before later SAs.
    let text = fs::read_to_string(dir(scenario).join("keys.txt")).unwrap();
    let mut map = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        } else if let Some((k, v)) = line.split_once(" = ") {
            if let Ok(bytes) = hex::decode(v.trim()) {
                map.entry(format!("{section}.{}", k.trim()))
                    .or_insert(bytes);
            }
        }
    }
    map
}

fn psk_config(secret: &[u8]) -> Config {
    let psk = Arc::new(Psk::new(
        Identification::fqdn("share.ibm-ipsec.test"),
        Some(Identification::fqdn("client.ibm-ipsec.test")),
        secret.to_vec(),
    ));
    Config::new(psk.clone(), psk)
}

#[test]
fn responder_answers_a_real_strongswan_ike_sa_init() {
    let request = fs::read(dir("psk").join("01-ike_sa_init-i.bin")).unwrap();
    let k = keys("psk");
    let config = Arc::new(psk_config(&k["auth.psk"]));
    let local = "10.213.7.2:500".parse().unwrap();
    let remote = "10.213.7.1:500".parse().unwrap();
    let mut rng = SeededRandom::new(1);
    let accepted = IkeSa::respond(
        config,
        local,
        remote,
        Default::default(),
        Instant::now(),
        &request,
        &mut rng,
    )
    .unwrap();
    let Accept::Created(mut sa) = accepted else {
        panic!("expected an SA, got {accepted:?}");
    };
    let d = sa.poll_transmit().unwrap();
    assert!(!d.non_esp_marker);
    assert_eq!((d.local, d.remote), (local, remote));
    let response = Message::parse(&d.payload).unwrap();
    let req = Message::parse(&request).unwrap();
    assert_eq!(response.header.initiator_spi, req.header.initiator_spi);
    assert_ne!(response.header.responder_spi, 0);
    assert!(response.header.flags.response() && !response.header.flags.initiator());
    let sa_payload = response
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let chosen = &sa_payload.proposals[0];
    assert_eq!(sa_payload.proposals.len(), 1);
    let names: Vec<String> = chosen.transforms.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        [
            "ENCR_AES_CBC_256",
            "PRF_HMAC_SHA2_384",
            "AUTH_HMAC_SHA2_384_192",
            "ECP_384"
        ]
    );
    let ke = response
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!((ke.dh_group, ke.data.len()), (DhGroup::Ecp384, 96));
    for t in [
        NotifyType::NatDetectionSourceIp,
        NotifyType::NatDetectionDestinationIp,
        NotifyType::Ikev2FragmentationSupported,
    ] {
        assert!(response.notify(t).is_some(), "{t} missing");
    }
    // Re-encoding gives the same bytes (we emitted canonical encodings).
    assert_eq!(response.to_bytes().unwrap(), d.payload);
    // A retransmitted request is answered with the cached response, byte for byte.
    sa.handle_datagram(Instant::now(), remote, local, &request, &mut rng)
        .unwrap();
    assert_eq!(sa.poll_transmit().unwrap().payload, d.payload);
}

/// Opens a captured SK message with the logged keys and verifies its AUTH with our `Psk`.
fn verify_captured_auth(file: &str, signer: Role) {
    let k = keys("psk");
    let g = |n: &str| k[&format!("ike_sa 1.{n}")].clone();
    let spi = |n: &str| u64::from_be_bytes(g(n).try_into().unwrap());
    let suite = IkeSuite::IBM_DEFAULT;
    let ike_keys = IkeKeys::derive(
        suite,
        &SharedSecret::from_bytes(&g("g_ir")),
        &g("ni"),
        &g("nr"),
        spi("spi_i"),
        spi("spi_r"),
    )
    .unwrap();
    assert_eq!(
        ike_keys.sk_pi(),
        g("sk_pi").as_slice(),
        "our SK_pi matches charon's"
    );
    let bytes = fs::read(dir("psk").join(file)).unwrap();
    let message = Message::parse(&bytes).unwrap();
    let sk = message.encrypted().unwrap();
    let aad = &bytes[..bytes.len() - sk.body.len()];
    let plain = ike_keys
        .sk_cipher(signer)
        .unwrap()
        .open(aad, &sk.body)
        .unwrap();
    let inner = parse_chain(&plain, sk.next_payload).unwrap();
    let id = inner
        .iter()
        .find_map(|p| match (p, signer) {
            (Payload::IdI(i), Role::Initiator) | (Payload::IdR(i), Role::Responder) => Some(i),
            _ => None,
        })
        .unwrap();
    let auth = inner
        .iter()
        .find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        })
        .unwrap();
    let (init, peer_nonce) = match signer {
        Role::Initiator => ("01-ike_sa_init-i.bin", g("nr")),
        Role::Responder => ("02-ike_sa_init-r.bin", g("ni")),
    };
    let init = fs::read(dir("psk").join(init)).unwrap();
    let octets = ike_keys.signed_octets(signer, &init, &peer_nonce, &id.body());
    let (me, peer) = match signer {
        Role::Initiator => ("share.ibm-ipsec.test", "client.ibm-ipsec.test"),
        Role::Responder => ("client.ibm-ipsec.test", "share.ibm-ipsec.test"),
    };
    let verifier = Psk::new(
        Identification::fqdn(me),
        Some(Identification::fqdn(peer)),
        k["auth.psk"].clone(),
    );
    let request = VerifyRequest {
        id,
        certificates: &[],
        method: auth.method,
        auth_data: &auth.data,
        signed_octets: &octets,
        prf: suite.prf,
    };
    let who = verifier.verify(&request).unwrap();
    assert_eq!(who.id, Identification::fqdn(peer));
    // One flipped bit in the signed octets must fail.
    let mut bad = octets.clone();
    bad[0] ^= 1;
    assert!(verifier
        .verify(&VerifyRequest {
            signed_octets: &bad,
            ..request
        })
        .is_err());
}

#[test]
fn psk_auth_of_strongswan_initiator_verifies() {
    verify_captured_auth("03-ike_auth-i.bin", Role::Initiator);
}

#[test]
fn psk_auth_of_strongswan_responder_verifies() {
    verify_captured_auth("04-ike_auth-r.bin", Role::Responder);
}

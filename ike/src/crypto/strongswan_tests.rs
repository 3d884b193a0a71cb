//! Interop with strongSwan 5.9.8: the captures in `ike/tests/data/strongswan/` (see its
//! README) hold real IKE messages, their decrypted contents and the keys charon logged. These
//! tests derive the same keys from the logged DH secret, nonces and SPIs, open every SK/SKF
//! payload with our code, and verify strongSwan's PSK AUTH payloads.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::wire::{self, Flags, Message, Payload, PayloadIter, PayloadType, TransformType};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/strongswan")
}

const SCENARIOS: [&str; 5] = [
    "cert-ecp384",
    "cert-x25519-gcm",
    "informational",
    "psk",
    "rekey",
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// One `[section]` of `keys.txt`.
struct Section {
    name: String,
    values: Vec<(String, String)>,
}

impl Section {
    fn get(&self, key: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("[{}] has no {key}", self.name))
    }
    fn bytes(&self, key: &str) -> Vec<u8> {
        h(self.get(key))
    }
    /// A value that charon logs only when non-empty (SK_ai/SK_ar with AEAD).
    fn bytes_or_empty(&self, key: &str) -> Vec<u8> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(Vec::new, |(_, v)| h(v))
    }
    fn spi(&self, key: &str) -> u64 {
        u64::from_str_radix(self.get(key), 16).unwrap()
    }
}

struct Scenario {
    name: &'static str,
    sections: Vec<Section>,
    /// (file stem, message bytes, decrypted inner bytes if it was protected)
    messages: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
}

impl Scenario {
    fn load(name: &'static str) -> Self {
        let dir = data_dir().join(name);
        let keys = fs::read_to_string(dir.join("keys.txt"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut sections: Vec<Section> = Vec::new();
        for line in keys.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push(Section {
                    name: name.to_string(),
                    values: Vec::new(),
                });
            } else if let Some((k, v)) = line.split_once('=') {
                let section = sections.last_mut().expect("value before first section");
                section
                    .values
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut stems: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".bin").map(str::to_string)
            })
            .collect();
        stems.sort();
        let messages = stems
            .into_iter()
            .map(|stem| {
                let bin = fs::read(dir.join(format!("{stem}.bin"))).unwrap();
                let plain = fs::read(dir.join(format!("{stem}.plain"))).ok();
                (stem, bin, plain)
            })
            .collect();
        Scenario {
            name,
            sections,
            messages,
        }
    }

    fn section(&self, name: &str) -> &Section {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{}: no [{name}]", self.name))
    }

    fn message(&self, prefix: &str) -> &(String, Vec<u8>, Option<Vec<u8>>) {
        self.messages
            .iter()
            .find(|(stem, _, _)| stem.starts_with(prefix))
            .unwrap_or_else(|| panic!("{}: no message {prefix}", self.name))
    }

    /// The inner payloads of a protected message, parsed by the codec.
    fn inner(&self, prefix: &str) -> Vec<Payload> {
        let (_, bin, plain) = self.message(prefix);
        let first = first_inner_type(&Message::parse(bin).unwrap());
        wire::parse_chain(plain.as_ref().unwrap(), first).unwrap()
    }

    /// The body (after the generic header) of the inner payload of type `ty`.
    fn inner_raw(&self, prefix: &str, ty: PayloadType) -> Vec<u8> {
        let (_, bin, plain) = self.message(prefix);
        let first = first_inner_type(&Message::parse(bin).unwrap());
        PayloadIter::new(plain.as_ref().unwrap(), first, 0)
            .map(|p| p.unwrap())
            .find(|p| p.payload_type == ty)
            .unwrap_or_else(|| panic!("{prefix}: no {ty}"))
            .body
            .to_vec()
    }
}

fn first_inner_type(m: &Message) -> PayloadType {
    match (m.encrypted(), m.fragment()) {
        (Some(sk), _) => sk.next_payload,
        (_, Some(skf)) => skf.next_payload,
        _ => panic!("not protected"),
    }
}

/// The protected body of an SK/SKF message and the AAD before it (the SK/SKF payload is the
/// last one, so the body is the message's tail).
fn split_protected(bin: &[u8]) -> (&[u8], &[u8]) {
    let m = Message::parse(bin).unwrap();
    let body_len = match (m.encrypted(), m.fragment()) {
        (Some(sk), _) => sk.body.len(),
        (_, Some(skf)) => skf.body.len(),
        _ => panic!("not protected"),
    };
    bin.split_at(bin.len() - body_len)
}

/// Maps the codec's chosen proposal to crypto algorithms through the IANA numbers.
fn ike_suite(proposal: &wire::Proposal) -> IkeSuite {
    let (mut encr, mut integ, mut prf, mut dh) = (None, None, None, None);
    for t in &proposal.transforms {
        if t.transform_type == TransformType::Encr {
            encr = EncrAlgorithm::from_iana_id(t.transform_id, t.key_length());
        } else if t.transform_type == TransformType::Integ {
            integ = IntegAlgorithm::from_iana_id(t.transform_id);
        } else if t.transform_type == TransformType::Prf {
            prf = PrfAlgorithm::from_iana_id(t.transform_id);
        } else if t.transform_type == TransformType::Ke {
            dh = DhGroup::from_iana_id(t.transform_id);
        }
    }
    IkeSuite {
        encr: encr.expect("encryption transform"),
        integ,
        prf: prf.expect("PRF transform"),
        dh: dh.expect("KE transform"),
    }
}

fn sa_of(payloads: &[Payload]) -> &wire::Sa {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(sa) => Some(sa),
            _ => None,
        })
        .expect("SA payload")
}

fn nonce_of(payloads: &[Payload]) -> Vec<u8> {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.0.clone()),
            _ => None,
        })
        .expect("Nonce payload")
}

fn assert_keys(keys: &IkeKeys, s: &Section) {
    let ctx = &s.name;
    assert_eq!(keys.sk_d(), s.bytes("sk_d"), "{ctx} sk_d");
    assert_eq!(keys.sk_ai(), s.bytes_or_empty("sk_ai"), "{ctx} sk_ai");
    assert_eq!(keys.sk_ar(), s.bytes_or_empty("sk_ar"), "{ctx} sk_ar");
    assert_eq!(keys.sk_ei(), s.bytes("sk_ei"), "{ctx} sk_ei");
    assert_eq!(keys.sk_er(), s.bytes("sk_er"), "{ctx} sk_er");
    assert_eq!(keys.sk_pi(), s.bytes("sk_pi"), "{ctx} sk_pi");
    assert_eq!(keys.sk_pr(), s.bytes("sk_pr"), "{ctx} sk_pr");
}

/// The IKE SA from IKE_SA_INIT, with its inputs checked against the messages on the wire.
fn initial_keys(sc: &Scenario) -> IkeKeys {
    let s = sc.section("ike_sa 1");
    let request = Message::parse(&sc.message("01-").1).unwrap();
    let response = Message::parse(&sc.message("02-").1).unwrap();
    let suite = ike_suite(&sa_of(&response.payloads).proposals[0]);
    assert_eq!(suite.dh.iana_id().to_string(), s.get("dh_group"));
    assert_eq!(request.header.initiator_spi, s.spi("spi_i"));
    assert_eq!(response.header.responder_spi, s.spi("spi_r"));
    assert_eq!(nonce_of(&request.payloads), s.bytes("ni"));
    assert_eq!(nonce_of(&response.payloads), s.bytes("nr"));
    for (msg, ke) in [(&request, "ke_i"), (&response, "ke_r")] {
        let data = msg
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Ke(k) => Some(k.data.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(data, s.bytes(ke));
        // Our validation accepts strongSwan's public values.
        let ours =
            DhSecret::from_private_bytes(suite.dh, &vec![0x3a; suite.dh.private_len()]).unwrap();
        ours.shared_secret(&data).unwrap();
    }
    IkeKeys::derive(
        suite,
        &SharedSecret::from_bytes(&s.bytes("g_ir")),
        &s.bytes("ni"),
        &s.bytes("nr"),
        s.spi("spi_i"),
        s.spi("spi_r"),
    )
    .unwrap()
}

/// All IKE SAs of a scenario with their SPIs: the initial one, plus the §2.18 rekeyed one.
fn all_keys(sc: &Scenario) -> Vec<(u64, u64, IkeKeys)> {
    let first = initial_keys(sc);
    let s1 = sc.section("ike_sa 1");
    let mut out = vec![(s1.spi("spi_i"), s1.spi("spi_r"), first.clone())];
    if let Some(s2) = sc.sections.iter().find(|s| s.name == "ike_sa 2") {
        let request = sc.inner("09-");
        let response = sc.inner("10-");
        let new_suite = ike_suite(&sa_of(&response).proposals[0]);
        // The new SPIs travel in the SA proposals, the nonces in the Nonce payloads.
        assert_eq!(sa_of(&request).proposals[0].spi, s2.bytes("spi_i"));
        assert_eq!(sa_of(&response).proposals[0].spi, s2.bytes("spi_r"));
        assert_eq!(nonce_of(&request), s2.bytes("ni"));
        assert_eq!(nonce_of(&response), s2.bytes("nr"));
        let rekeyed = first
            .rekey(
                new_suite,
                &SharedSecret::from_bytes(&s2.bytes("g_ir")),
                &s2.bytes("ni"),
                &s2.bytes("nr"),
                s2.spi("spi_i"),
                s2.spi("spi_r"),
            )
            .unwrap();
        out.push((s2.spi("spi_i"), s2.spi("spi_r"), rekeyed));
    }
    out
}

#[test]
fn strongswan_ike_sa_keys_are_derived_identically() {
    for name in SCENARIOS {
        let sc = Scenario::load(name);
        let keys = all_keys(&sc);
        assert_keys(&keys[0].2, sc.section("ike_sa 1"));
        if name == "rekey" {
            assert_eq!(keys.len(), 2);
            assert_keys(&keys[1].2, sc.section("ike_sa 2"));
        }
    }
}

#[test]
fn strongswan_sk_and_skf_payloads_open() {
    let (mut opened, mut protected) = (0, 0);
    for name in SCENARIOS {
        let sc = Scenario::load(name);
        let keys = all_keys(&sc);
        protected += sc.messages.iter().filter(|(_, _, p)| p.is_some()).count();
        for (stem, bin, plain) in &sc.messages {
            let Some(plain) = plain else { continue };
            let m = Message::parse(bin).unwrap();
            let (_, _, ike) = keys
                .iter()
                .find(|(i, r, _)| (*i, *r) == (m.header.initiator_spi, m.header.responder_spi))
                .unwrap_or_else(|| panic!("{name}/{stem}: no IKE SA for these SPIs"));
            // The Initiator flag names the original initiator of the SA, whichever way the
            // exchange goes (RFC 7296 §3.1).
            let sender = if m.header.flags.contains(Flags::INITIATOR) {
                Role::Initiator
            } else {
                Role::Responder
            };
            let cipher = ike.sk_cipher(sender).unwrap();
            let (aad, body) = split_protected(bin);
            assert_eq!(&cipher.open(aad, body).unwrap(), plain, "{name}/{stem}");
            opened += 1;

            // Our seal with strongSwan's IV reproduces its ciphertext: entirely for GCM
            // (no padding), up to the last block for CBC (strongSwan's padding octets are
            // random).
            let mut ours = Vec::new();
            cipher
                .seal(aad, &body[..cipher.iv_len()], plain, &mut ours)
                .unwrap();
            if cipher.encr().is_aead() {
                assert_eq!(ours, body, "{name}/{stem}");
            } else {
                let whole_blocks = cipher.iv_len() + plain.len() / 16 * 16;
                assert_eq!(ours[..whole_blocks], body[..whole_blocks], "{name}/{stem}");
            }

            // Any change to header, AAD or body is detected.
            for at in [0, aad.len() - 1, aad.len() + 2, bin.len() - 1] {
                let mut bad = bin.clone();
                bad[at] ^= 0x40;
                let (aad, body) = bad.split_at(aad.len());
                assert_eq!(
                    cipher.open(aad, body),
                    Err(CryptoError::IntegrityCheckFailed),
                    "{name}/{stem} byte {at}"
                );
            }
            // The other direction's keys do not open it.
            assert!(ike
                .sk_cipher(sender.peer())
                .unwrap()
                .open(aad, body)
                .is_err());
        }
    }
    // 36 in the captures as committed: every SK and SKF message of every scenario.
    assert_eq!(opened, protected);
    assert!(opened >= 30, "only {opened} protected messages found");
}

#[test]
fn strongswan_child_sa_keymat_matches() {
    for name in SCENARIOS {
        let sc = Scenario::load(name);
        let ike = initial_keys(&sc);
        let s1 = sc.section("ike_sa 1");
        // First CHILD_SA: from IKE_AUTH, keyed with the IKE_SA_INIT nonces, no PFS. Its
        // proposal is in the responder's IKE_AUTH (possibly fragmented) response; every
        // scenario negotiates ESP aes256gcm16.
        let child = ike
            .child_keys(
                EncrAlgorithm::AesGcm16_256,
                None,
                None,
                &s1.bytes("ni"),
                &s1.bytes("nr"),
            )
            .unwrap();
        let c1 = sc.section("child_sa 1");
        assert_eq!(
            child.initiator_to_responder().encr(),
            c1.bytes("encr_key_i"),
            "{name}"
        );
        assert_eq!(
            child.responder_to_initiator().encr(),
            c1.bytes("encr_key_r"),
            "{name}"
        );

        if name == "rekey" {
            // CHILD_SA rekey (messages 05/06): fresh nonces, no KE, ESP suite from the SA.
            let request = sc.inner("05-");
            let response = sc.inner("06-");
            let proposal = &sa_of(&response).proposals[0];
            let t = proposal
                .transforms
                .iter()
                .find(|t| t.transform_type == TransformType::Encr)
                .unwrap();
            let encr = EncrAlgorithm::from_iana_id(t.transform_id, t.key_length()).unwrap();
            assert_eq!(encr, EncrAlgorithm::AesGcm16_256);
            let c2 = sc.section("child_sa 2");
            assert_eq!(proposal.spi, c2.bytes("spi_r"));
            assert_eq!(sa_of(&request).proposals[0].spi, c2.bytes("spi_i"));
            let rekeyed = ike
                .child_keys(encr, None, None, &nonce_of(&request), &nonce_of(&response))
                .unwrap();
            assert_eq!(
                rekeyed.initiator_to_responder().encr(),
                c2.bytes("encr_key_i")
            );
            assert_eq!(
                rekeyed.responder_to_initiator().encr(),
                c2.bytes("encr_key_r")
            );
        }
    }
}

/// RFC 7296 §2.15 shared-key AUTH, both directions, against strongSwan's AUTH payloads.
#[test]
fn strongswan_psk_auth_payloads_verify() {
    for name in ["informational", "psk", "rekey"] {
        let sc = Scenario::load(name);
        let ike = initial_keys(&sc);
        let s1 = sc.section("ike_sa 1");
        let psk = sc.section("auth").bytes("psk");
        let prf = ike.suite().prf;
        let cases = [
            (
                Role::Initiator,
                "01-",
                "03-",
                PayloadType::IdInitiator,
                s1.bytes("nr"),
            ),
            (
                Role::Responder,
                "02-",
                "04-",
                PayloadType::IdResponder,
                s1.bytes("ni"),
            ),
        ];
        for (signer, init_msg, auth_msg, id_type, peer_nonce) in cases {
            let real_message = &sc.message(init_msg).1;
            let id_body = sc.inner_raw(auth_msg, id_type);
            let auth = sc
                .inner(auth_msg)
                .into_iter()
                .find_map(|p| match p {
                    Payload::Auth(a) => Some(a),
                    _ => None,
                })
                .unwrap();
            assert_eq!(u8::from(auth.method), 2, "shared key MIC");
            let octets = ike.signed_octets(signer, real_message, &peer_nonce, &id_body);
            assert_eq!(psk_auth(prf, &psk, &octets), auth.data, "{name} {signer:?}");
            verify_psk_auth(prf, &psk, &octets, &auth.data).unwrap();
            assert_eq!(
                verify_psk_auth(prf, b"not the psk", &octets, &auth.data),
                Err(CryptoError::AuthenticationFailed)
            );
        }
    }
}

/// RFC 7296 §2.23 hashes in strongSwan's IKE_SA_INIT messages. With `encap = yes` charon fakes
/// its own NAT_DETECTION_SOURCE_IP (to force UDP encapsulation), so only the destination
/// hashes, which describe the peer's real address and port 500, can match.
#[test]
fn strongswan_nat_detection_destination_hashes_match() {
    use crate::wire::NotifyType;
    use std::net::IpAddr;
    let initiator: IpAddr = "10.213.7.1".parse().unwrap();
    let responder: IpAddr = "10.213.7.2".parse().unwrap();
    for name in SCENARIOS {
        let sc = Scenario::load(name);
        let request = Message::parse(&sc.message("01-").1).unwrap();
        let response = Message::parse(&sc.message("02-").1).unwrap();
        let spi_i = request.header.initiator_spi;
        let spi_r = response.header.responder_spi;
        let data = |m: &Message, t: NotifyType| m.notify(t).unwrap().data.clone();
        // The request is hashed with SPIr = 0, the response with both SPIs.
        assert_eq!(
            data(&request, NotifyType::NatDetectionDestinationIp),
            nat_detection_hash(spi_i, 0, responder, 500),
            "{name} request"
        );
        assert_eq!(
            data(&response, NotifyType::NatDetectionDestinationIp),
            nat_detection_hash(spi_i, spi_r, initiator, 500),
            "{name} response"
        );
        assert_ne!(
            data(&request, NotifyType::NatDetectionSourceIp),
            nat_detection_hash(spi_i, 0, initiator, 500),
            "{name}: charon's faked source hash"
        );
    }
}

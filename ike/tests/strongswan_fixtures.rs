//! Decodes every message captured from a strongSwan 5.9.8 pair (see
//! `data/strongswan/README.md`) and checks it against the capture's own record: exchange,
//! direction, message ID, size, the outer payload list, the decrypted inner chain of SK/SKF
//! (reassembled across fragments), and the SPIs, nonces and KE values charon logged.
//! Re-encoding every parsed message must give back the captured bytes exactly.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ike::wire::*;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/strongswan")
}

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(data_dir())
        .expect("fixture directory ike/tests/data/strongswan")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("messages.md").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 4, "expected the captured scenarios, found {v:?}");
    v
}

/// One row of a scenario's `messages.md`.
struct Row {
    file: String,
    has_plain: bool,
    exchange: String,
    response: bool,
    message_id: u32,
    bytes: usize,
    outer: Vec<String>,
    inner: Option<Vec<String>>,
}

fn rows(scenario: &Path) -> Vec<Row> {
    let md = fs::read_to_string(scenario.join("messages.md")).unwrap();
    md.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            let (exchange, kind) = cols[3].rsplit_once(' ').unwrap();
            let payloads = cols[7];
            let (outer, inner) = match payloads.split_once('[') {
                Some((o, i)) => (o, Some(i.trim_end_matches(']'))),
                None => (payloads, None),
            };
            let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
            Row {
                file: cols[1].trim_matches('`').to_string(),
                has_plain: !cols[2].is_empty(),
                exchange: exchange.to_string(),
                response: kind == "response",
                message_id: cols[4].parse().unwrap(),
                bytes: cols[6].parse().unwrap(),
                outer: words(outer),
                inner: inner.map(words),
            }
        })
        .collect()
}

/// `name = hex` values per `[section]` of `keys.txt`.
fn keys(scenario: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = fs::read_to_string(scenario.join("keys.txt")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_string();
        } else if let Some((k, v)) = line.split_once(" = ") {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(p: &Payload) -> String {
    match p {
        Payload::Notify(n) => format!("N({})", n.notify_type),
        Payload::Skf(f) => format!("SKF({}/{})", f.fragment_number, f.total_fragments),
        other => other.payload_type().to_string(),
    }
}

fn describe_all(ps: &[Payload]) -> Vec<String> {
    ps.iter().map(describe).collect()
}

#[test]
fn every_captured_message_decodes_as_recorded_and_reencodes_exactly() {
    let mut messages = 0;
    let mut inner_chains = 0;
    for scenario in scenarios() {
        let mut fragments: Vec<(PayloadType, Vec<u8>)> = Vec::new();
        for row in rows(&scenario) {
            let path = scenario.join(&row.file);
            let ctx = path.display().to_string();
            let bytes = fs::read(&path).unwrap();
            assert_eq!(bytes.len(), row.bytes, "{ctx}");
            let m = Message::parse(&bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            m.check_critical().unwrap();
            assert_eq!(m.header.exchange_type.to_string(), row.exchange, "{ctx}");
            assert_eq!(m.header.flags.response(), row.response, "{ctx}");
            assert_eq!(m.header.message_id, row.message_id, "{ctx}");
            assert_eq!(describe_all(&m.payloads), row.outer, "{ctx}");
            assert_eq!(m.to_bytes().unwrap(), bytes, "{ctx}: re-encoding differs");
            messages += 1;

            if !row.has_plain {
                continue;
            }
            let plain = fs::read(path.with_extension("plain")).unwrap();
            let chain = if let Some(sk) = m.encrypted() {
                Some((sk.next_payload, plain))
            } else {
                let f = m
                    .fragment()
                    .unwrap_or_else(|| panic!("{ctx}: plaintext but no SK/SKF"));
                assert_eq!(f.fragment_number as usize, fragments.len() + 1, "{ctx}");
                fragments.push((f.next_payload, plain));
                (f.fragment_number == f.total_fragments).then(|| {
                    let first = fragments[0].0;
                    let joined = fragments.iter().flat_map(|(_, p)| p.clone()).collect();
                    fragments.clear();
                    (first, joined)
                })
            };
            match (chain, &row.inner) {
                (Some((first, plain)), Some(expected)) => {
                    let inner = parse_chain(&plain, first).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    check_critical(&inner).unwrap();
                    assert_eq!(&describe_all(&inner), expected, "{ctx}");
                    let mut again = vec![0; chain_len(&inner)];
                    emit_chain(&inner, &mut again).unwrap();
                    assert_eq!(again, plain, "{ctx}: inner chain re-encoding differs");
                    check_inner(&scenario, &inner, &ctx);
                    inner_chains += 1;
                }
                (None, None) => {}
                (got, want) => panic!("{ctx}: chain {:?} vs table {want:?}", got.map(|c| c.0)),
            }
        }
        assert!(
            fragments.is_empty(),
            "{}: incomplete fragment set",
            scenario.display()
        );
    }
    assert!(messages >= 40, "decoded only {messages} messages");
    assert!(
        inner_chains >= 20,
        "decoded only {inner_chains} inner chains"
    );
}

/// Inner payloads hold what charon logged: deleted and rekeyed CHILD_SA SPIs are ones it
/// created, traffic selectors are the lab's /32 hosts.
fn check_inner(scenario: &Path, inner: &[Payload], ctx: &str) {
    let keys = keys(scenario);
    let child_spis: Vec<String> = keys
        .iter()
        .filter(|(s, _)| s.starts_with("child_sa"))
        .flat_map(|(_, kv)| [kv["spi_i"].clone(), kv["spi_r"].clone()])
        .collect();
    for p in inner {
        match p {
            Payload::Delete(d) if d.protocol == ProtocolId::Esp => {
                for spi in &d.spis {
                    assert!(
                        child_spis.contains(&hex(spi)),
                        "{ctx}: unknown SPI {}",
                        hex(spi)
                    );
                }
            }
            Payload::Delete(d) => {
                assert_eq!(d.protocol, ProtocolId::Ike, "{ctx}");
                assert!(d.spis.is_empty(), "{ctx}");
            }
            Payload::Notify(n) if n.notify_type == NotifyType::RekeySa => {
                assert_eq!(n.protocol, ProtocolId::Esp, "{ctx}");
                assert!(child_spis.contains(&hex(&n.spi)), "{ctx}");
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                let r: Vec<_> = ts.ranges().collect();
                assert_eq!(r.len(), 1, "{ctx}");
                assert_eq!(r[0].start_addr, r[0].end_addr, "{ctx}: not a /32");
                assert!(
                    r[0].start_addr.to_string().starts_with("10.213.7."),
                    "{ctx}"
                );
            }
            Payload::Sa(sa) => {
                for p in &sa.proposals {
                    match p.protocol {
                        ProtocolId::Esp => assert_eq!(p.spi.len(), 4, "{ctx}"),
                        ProtocolId::Ike => assert_eq!(p.spi.len(), 8, "{ctx}: IKE rekey SPI"),
                        other => panic!("{ctx}: proposal for {other}"),
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn ike_sa_init_carries_the_logged_spis_nonces_and_key_exchange() {
    for scenario in scenarios() {
        let keys = keys(&scenario);
        let sa1 = &keys["ike_sa 1"];
        let group = DhGroup::from(sa1["dh_group"].parse::<u16>().unwrap());
        for (file, side) in [("01-ike_sa_init-i.bin", "i"), ("02-ike_sa_init-r.bin", "r")] {
            let m = Message::parse(&fs::read(scenario.join(file)).unwrap()).unwrap();
            let ctx = format!("{}/{file}", scenario.display());
            assert_eq!(
                format!("{:016x}", m.header.initiator_spi),
                sa1["spi_i"],
                "{ctx}"
            );
            if side == "r" {
                assert_eq!(
                    format!("{:016x}", m.header.responder_spi),
                    sa1["spi_r"],
                    "{ctx}"
                );
            } else {
                assert_eq!(m.header.responder_spi, 0, "{ctx}");
                assert!(m.header.flags.initiator(), "{ctx}");
            }
            let ke = m.payloads.iter().find_map(|p| match p {
                Payload::Ke(k) => Some(k),
                _ => None,
            });
            let ke = ke.unwrap();
            assert_eq!(ke.dh_group, group, "{ctx}");
            assert_eq!(hex(&ke.data), sa1[&format!("ke_{side}")], "{ctx}");
            let nonce = m.payloads.iter().find_map(|p| match p {
                Payload::Nonce(n) => Some(n),
                _ => None,
            });
            assert_eq!(hex(&nonce.unwrap().0), sa1[&format!("n{side}")], "{ctx}");
            let sa = m.payloads.iter().find_map(|p| match p {
                Payload::Sa(sa) => Some(sa),
                _ => None,
            });
            let sa = sa.unwrap();
            assert!(sa
                .proposals
                .iter()
                .all(|p| p.protocol == ProtocolId::Ike && p.spi.is_empty()));
            if side == "r" {
                // The responder picks exactly one proposal with one transform per type.
                let chosen = &sa.proposals;
                assert_eq!(chosen.len(), 1, "{ctx}");
                assert!(
                    chosen[0]
                        .transforms
                        .iter()
                        .any(|t| t.dh_group() == Some(group)),
                    "{ctx}"
                );
            }
            let nat = m.notify(NotifyType::NatDetectionSourceIp).unwrap();
            assert_eq!(nat.data.len(), 20, "{ctx}");
            let hashes = m.notify(NotifyType::SignatureHashAlgorithms).unwrap();
            assert!(
                hashes
                    .hash_algorithms()
                    .unwrap()
                    .contains(&HashAlgorithm::Sha2_384),
                "{ctx}"
            );
        }
    }
}

#[test]
fn ibm_default_proposal_is_understood() {
    let m = Message::parse(&fs::read(data_dir().join("cert-ecp384/02-ike_sa_init-r.bin")).unwrap())
        .unwrap();
    let Some(Payload::Sa(sa)) = m.payloads.first() else {
        panic!("first payload is not SA")
    };
    let p = &sa.proposals[0];
    let encr = p.transforms_of(TransformType::Encr).next().unwrap();
    assert_eq!(encr.encr_id(), Some(EncrId::AesCbc));
    assert_eq!(encr.key_length(), Some(256));
    assert_eq!(
        p.transforms_of(TransformType::Prf).next().unwrap().prf_id(),
        Some(PrfId::HmacSha2_384)
    );
    assert_eq!(
        p.transforms_of(TransformType::Integ)
            .next()
            .unwrap()
            .integ_id(),
        Some(IntegId::HmacSha2_384_192)
    );
    assert_eq!(
        p.transforms_of(TransformType::Ke)
            .next()
            .unwrap()
            .dh_group(),
        Some(DhGroup::Ecp384)
    );
    assert_eq!(
        p.to_string(),
        "#1 IKE: ENCR_AES_CBC_256 AUTH_HMAC_SHA2_384_192 PRF_HMAC_SHA2_384 ECP_384"
    );
}

#[test]
fn certificate_identities_are_der_subjects() {
    let plain = fs::read(data_dir().join("cert-ecp384/06-ike_auth-r.plain")).unwrap();
    let first = fs::read(data_dir().join("cert-ecp384/05-ike_auth-r.plain")).unwrap();
    let m = Message::parse(&fs::read(data_dir().join("cert-ecp384/05-ike_auth-r.bin")).unwrap())
        .unwrap();
    let joined = [first, plain].concat();
    let inner = parse_chain(&joined, m.fragment().unwrap().next_payload).unwrap();
    let Payload::IdR(id) = &inner[0] else {
        panic!("IDr first")
    };
    assert_eq!(id.id_type, IdType::DerAsn1Dn);
    assert_eq!(id.data[0], 0x30, "DER SEQUENCE");
    let Payload::Cert(cert) = &inner[1] else {
        panic!("CERT second")
    };
    assert_eq!(cert.encoding, CertEncoding::X509Signature);
    assert!(cert.data.len() > 1000, "RSA-4096 certificate");
    let Payload::Auth(auth) = &inner[2] else {
        panic!("AUTH third")
    };
    assert_eq!(auth.method, AuthMethod::DigitalSignature);
    let (alg, sig) = auth.digital_signature_parts().unwrap();
    assert_eq!(alg[0], 0x30);
    assert_eq!(sig.len(), 512, "RSA-4096 signature");
}

#[test]
fn every_truncated_capture_is_rejected() {
    for scenario in scenarios() {
        for row in rows(&scenario) {
            let bytes = fs::read(scenario.join(&row.file)).unwrap();
            for cut in 0..bytes.len() {
                assert!(
                    Message::parse(&bytes[..cut]).is_err(),
                    "{}: {cut}",
                    row.file
                );
            }
        }
    }
}

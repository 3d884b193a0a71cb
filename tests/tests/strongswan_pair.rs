//! The lab proves itself with two real strongSwan charons: the IBM mount target's settings
//! (RSA-4096 certificate chain, metadata-style client certificate, `aes256-sha384-ecp384`,
//! forced UDP encapsulation), checked through `swanctl --list-sas` on both sides and on the
//! wire with tcpdump.

use std::time::Duration;

use ibm_ipsec_tests::pcap::{IKE_PORT, NAT_T_PORT};
use ibm_ipsec_tests::{Auth, Capture, Config, Connection, Lab, StrongSwan, TestPki};

/// Payload type of an IKE fragment (RFC 7383 §2.5).
const SKF: u8 = 53;

#[test]
fn strongswan_pair_with_rsa4096_certificates_and_ibm_proposal() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let pki = TestPki::generate(&lab.dir().join("pki")).unwrap();
    let capture = Capture::start(&share, "lab0", "udp port 500 or udp port 4500").unwrap();

    let trust = |c: Config| c.ca(&pki.root.cert).ca(&pki.intermediate.cert);
    let _responder = StrongSwan::start(
        &share,
        trust(Config::default().identity(&pki.share)).connection(Connection::ibm(
            "nfs",
            share.addr(),
            client.addr(),
            Auth::cert(&pki.share),
            Auth::any_cert(),
        )),
    )
    .unwrap();
    let initiator = StrongSwan::start(
        &client,
        trust(Config::default().identity(&pki.client)).connection(Connection::ibm(
            "nfs",
            client.addr(),
            share.addr(),
            Auth::cert(&pki.client),
            Auth::any_cert(),
        )),
    )
    .unwrap();

    let wall = initiator.initiate("nfs").unwrap();

    let sas = initiator.list_sas().unwrap();
    assert_eq!(sas.len(), 1, "{sas:#?}");
    let sa = &sas[0];
    assert_eq!(sa.state(), "ESTABLISHED");
    assert_eq!(
        sa.suite(),
        "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384"
    );
    assert_eq!(
        sa.get("remote-port"),
        Some("4500"),
        "encap = yes floats to 4500"
    );
    assert_eq!(
        sa.get("local-id"),
        Some(pki.client.subject.as_str()),
        "identity = subject DN without CN"
    );
    assert_eq!(sa.get("remote-id"), Some(pki.share.subject.as_str()));
    assert_eq!(sa.children.len(), 1);
    let child = &sa.children[0];
    assert_eq!(
        (child.state(), child.get("encap"), child.get("encr-alg")),
        ("INSTALLED", Some("yes"), Some("AES_GCM_16"))
    );

    let theirs = _responder.list_sas().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].state(), "ESTABLISHED");
    assert_eq!(theirs[0].get("initiator-spi"), sa.get("initiator-spi"));
    assert_eq!(
        theirs[0].get("remote-id"),
        Some(pki.client.subject.as_str())
    );

    let packets = capture.finish().unwrap();
    let ike: Vec<_> = packets
        .iter()
        .filter_map(|p| p.ike().map(|(h, _)| (p, h)))
        .collect();
    let names: Vec<_> = ike
        .iter()
        .map(|(p, h)| format!("{}:{}", h.exchange_name(), p.ports.unwrap().0))
        .collect();
    assert!(
        ike.len() >= 6,
        "expected IKE_SA_INIT pair and fragmented IKE_AUTH: {names:?}"
    );
    for (p, h) in &ike[..2] {
        assert_eq!(
            (h.exchange_name(), p.ports),
            ("IKE_SA_INIT", Some((IKE_PORT, IKE_PORT)))
        );
    }
    let auth: Vec<_> = ike
        .iter()
        .filter(|(_, h)| h.exchange_name() == "IKE_AUTH")
        .collect();
    assert!(
        auth.iter()
            .all(|(p, _)| p.ports == Some((NAT_T_PORT, NAT_T_PORT))),
        "{names:?}"
    );
    for response in [false, true] {
        let fragments = auth
            .iter()
            .filter(|(_, h)| h.is_response() == response && h.next_payload == SKF)
            .count();
        assert!(
            fragments >= 2,
            "RSA-4096 IKE_AUTH must be fragmented (response={response}): {names:?}"
        );
    }
    let handshake = auth.last().unwrap().0.time - ike[0].0.time;
    assert!(handshake < Duration::from_secs(5));
    eprintln!(
        "strongSwan↔strongSwan reference: IKE_SA_INIT → last IKE_AUTH on the wire {:.1} ms ({} IKE packets), \
         swanctl --initiate {:.1} ms",
        handshake.as_secs_f64() * 1e3,
        ike.len(),
        wall.as_secs_f64() * 1e3
    );
}

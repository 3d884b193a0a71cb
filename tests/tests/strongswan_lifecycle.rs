//! strongSwan ↔ strongSwan through the whole life of an SA in the lab: data over ESP in UDP,
//! rekeying, deletion and a refused certificate. The same scenarios run against our daemon
//! once it exists (issue 8); here they pin down what the reference implementation does.

use std::time::{Duration, SystemTime};

use ibm_ipsec_tests::pcap::{UdpKind, NAT_T_PORT};
use ibm_ipsec_tests::{Auth, Capture, Config, Connection, Host, Lab, StrongSwan, TestPki};

const PSK: &str = "ibm-ipsec lab pre-shared key";

/// A responder on `share` and an initiator on `client` with the IBM connection `nfs`.
fn cert_pair(
    client: &Host,
    share: &Host,
    pki: &TestPki,
    client_id: &ibm_ipsec_tests::Identity,
) -> (StrongSwan, StrongSwan) {
    let trust = |c: Config| c.ca(&pki.root.cert).ca(&pki.intermediate.cert);
    let responder = StrongSwan::start(
        share,
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
        client,
        trust(Config::default().identity(client_id)).connection(Connection::ibm(
            "nfs",
            client.addr(),
            share.addr(),
            Auth::cert(client_id),
            Auth::any_cert(),
        )),
    )
    .unwrap();
    (initiator, responder)
}

fn psk_pair(client: &Host, share: &Host) -> (StrongSwan, StrongSwan) {
    let ids = ["client.ibm-ipsec.test", "share.ibm-ipsec.test"];
    let conn = |local: &Host, remote: &Host, l: &str, r: &str| {
        Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::Psk { id: l.into() },
            Auth::Psk { id: r.into() },
        )
    };
    let responder = StrongSwan::start(
        share,
        Config::default()
            .psk(&ids, PSK)
            .connection(conn(share, client, ids[1], ids[0])),
    )
    .unwrap();
    let initiator = StrongSwan::start(
        client,
        Config::default()
            .psk(&ids, PSK)
            .connection(conn(client, share, ids[0], ids[1])),
    )
    .unwrap();
    (initiator, responder)
}

#[test]
fn esp_in_udp_carries_data_through_kernel_libipsec() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let (initiator, responder) = psk_pair(&client, &share);
    initiator.initiate("nfs").unwrap();
    let capture = Capture::start(&share, "lab0", "").unwrap();

    let out = client
        .run(&[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &share.addr().to_string(),
        ])
        .unwrap();
    assert!(out.contains("3 received"), "{out}");

    let packets = capture.finish().unwrap();
    let esp = packets
        .iter()
        .filter(|p| matches!(p.udp_kind(), Some(UdpKind::Esp(_))))
        .count();
    assert!(
        esp >= 6,
        "3 echo requests and 3 replies as ESP in UDP 4500, saw {esp}"
    );
    assert!(
        packets.iter().all(|p| p.protocol != 1),
        "plaintext ICMP on the wire: the tunnel was bypassed"
    );
    assert!(
        packets.iter().all(|p| p.protocol != 50),
        "raw ESP although encap = yes"
    );
    assert!(packets
        .iter()
        .filter(|p| p.ports.is_some())
        .all(|p| p.ports == Some((NAT_T_PORT, NAT_T_PORT))));

    for (side, charon) in [("initiator", &initiator), ("responder", &responder)] {
        let sas = charon.list_sas().unwrap();
        let child = &sas[0].children[0];
        assert!(
            child.counter("packets-in").unwrap() >= 3,
            "{side}: {child:#?}"
        );
        assert!(
            child.counter("packets-out").unwrap() >= 3,
            "{side}: {child:#?}"
        );
        assert!(
            child.counter("bytes-in").unwrap() >= 3 * 84,
            "{side}: {child:#?}"
        );
    }
}

#[test]
fn child_rekey_ike_rekey_and_delete() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let (initiator, responder) = psk_pair(&client, &share);
    let capture = Capture::start(&share, "lab0", "udp port 500 or udp port 4500").unwrap();
    initiator.initiate("nfs").unwrap();
    let before = initiator.list_sas().unwrap();
    let old_child_spi = before[0].children[0].get("spi-in").unwrap().to_owned();
    let old_ike_spi = before[0].get("initiator-spi").unwrap().to_owned();

    initiator.rekey_child("nfs").unwrap();
    let limit = Duration::from_secs(5);
    let after_child = initiator
        .wait_for_sas("CHILD_SA rekeyed", limit, |sas| {
            // the old inbound SA lingers (charon's delete_rekeyed_delay) but its DELETE is sent
            sas.len() == 1
                && sas[0].children.iter().any(|c| {
                    c.state() == "INSTALLED" && c.get("spi-in") != Some(old_child_spi.as_str())
                })
        })
        .unwrap();
    assert_eq!(
        after_child[0].get("initiator-spi"),
        Some(old_ike_spi.as_str()),
        "child rekey keeps the IKE SA"
    );

    initiator.rekey_ike("nfs").unwrap();
    let after_ike = initiator
        .wait_for_sas("IKE SA rekeyed", limit, |sas| {
            sas.len() == 1
                && sas[0].state() == "ESTABLISHED"
                && sas[0].get("initiator-spi") != Some(old_ike_spi.as_str())
        })
        .unwrap();
    assert!(
        after_ike[0]
            .children
            .iter()
            .any(|c| c.state() == "INSTALLED"),
        "the CHILD_SA moves to the new IKE SA: {after_ike:#?}"
    );
    let theirs = responder
        .wait_for_sas("responder follows", limit, |sas| sas.len() == 1)
        .unwrap();
    assert_eq!(
        theirs[0].get("initiator-spi"),
        after_ike[0].get("initiator-spi")
    );

    initiator.terminate_ike("nfs").unwrap();
    responder
        .wait_for_sas("responder deleted its IKE SA", limit, <[_]>::is_empty)
        .unwrap();

    let exchanges: Vec<(&str, bool)> = capture
        .finish()
        .unwrap()
        .iter()
        .filter_map(|p| p.ike().map(|(h, _)| (h.exchange_name(), h.is_response())))
        .collect();
    let count = |name: &str| exchanges.iter().filter(|(n, r)| *n == name && !r).count();
    assert_eq!(
        count("CREATE_CHILD_SA"),
        2,
        "one child rekey, one IKE rekey: {exchanges:?}"
    );
    // DELETE of the old CHILD_SA, of the old IKE SA, and of the new one (strongSwan's MOBIKE
    // may add address updates when kernel-libipsec's TUN device appears)
    assert!(count("INFORMATIONAL") >= 3, "{exchanges:?}");
}

#[test]
fn expired_client_certificate_is_refused() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let pki = TestPki::generate(&lab.dir().join("pki")).unwrap();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let expired = pki
        .issue(
            "expired",
            "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group",
            Some("client.ibm-ipsec.test"),
            now - 2 * hour,
            now - hour,
        )
        .unwrap();
    let (initiator, responder) = cert_pair(&client, &share, &pki, &expired);

    let err = initiator
        .initiate("nfs")
        .expect_err("an expired certificate must not authenticate");
    let text = err.to_string();
    assert!(
        text.contains("AUTHENTICATION_FAILED"),
        "initiator must see the refusal: {text}"
    );
    // the responder drops the half-open SA when it refuses (RFC 7296 §2.21.2)
    responder
        .wait_for_sas(
            "responder keeps no half-open SA",
            Duration::from_secs(2),
            <[_]>::is_empty,
        )
        .unwrap();
    assert!(
        responder
            .log()
            .contains("subject certificate invalid (valid from"),
        "responder says why:\n{}",
        responder.log()
    );
}

#[test]
fn transport_mode_is_refused_by_kernel_libipsec_but_the_ike_sa_stays() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let ids = ["client.ibm-ipsec.test", "share.ibm-ipsec.test"];
    let conn = |local: &Host, remote: &Host, l: &str, r: &str| {
        let mut c = Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::Psk { id: l.into() },
            Auth::Psk { id: r.into() },
        );
        c.children[0].mode = "transport".into();
        c
    };
    let responder = StrongSwan::start(
        &share,
        Config::default()
            .psk(&ids, PSK)
            .connection(conn(&share, &client, ids[1], ids[0])),
    )
    .unwrap();
    let initiator = StrongSwan::start(
        &client,
        Config::default()
            .psk(&ids, PSK)
            .connection(conn(&client, &share, ids[0], ids[1])),
    )
    .unwrap();

    let err = initiator
        .initiate("nfs")
        .expect_err("kernel-libipsec cannot do transport mode");
    assert!(err.to_string().contains("NO_PROPOSAL_CHOSEN"), "{err}");
    for charon in [&initiator, &responder] {
        let sas = charon.list_sas().unwrap();
        assert_eq!(sas.len(), 1, "{sas:#?}");
        assert_eq!(sas[0].state(), "ESTABLISHED");
        assert!(
            sas[0].children.is_empty(),
            "no half-installed CHILD_SA: {sas:#?}"
        );
    }
    assert!(
        responder.log().contains("unsupported mode"),
        "{}",
        responder.log()
    );
}

#[test]
fn wrong_pre_shared_key_is_refused() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let ids = ["client.ibm-ipsec.test", "share.ibm-ipsec.test"];
    let conn = |local: &Host, remote: &Host, l: &str, r: &str| {
        Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::Psk { id: l.into() },
            Auth::Psk { id: r.into() },
        )
    };
    let responder = StrongSwan::start(
        &share,
        Config::default()
            .psk(&ids, PSK)
            .connection(conn(&share, &client, ids[1], ids[0])),
    )
    .unwrap();
    let initiator = StrongSwan::start(
        &client,
        Config::default()
            .psk(&ids, "not the responder's key")
            .connection(conn(&client, &share, ids[0], ids[1])),
    )
    .unwrap();

    let err = initiator
        .initiate("nfs")
        .expect_err("a wrong PSK must not authenticate");
    assert!(err.to_string().contains("AUTHENTICATION_FAILED"), "{err}");
    for charon in [&initiator, &responder] {
        charon
            .wait_for_sas(
                "no SA left after the refusal",
                Duration::from_secs(2),
                <[_]>::is_empty,
            )
            .unwrap();
    }
}

//! The interop harness proves itself against strongSwan ↔ strongSwan before it judges our
//! daemon: the proposal variants, seconds-long lifetimes and the byte-for-byte TCP transfer
//! of `tests/tests/interop_strongswan.rs` behave as expected with the reference
//! implementation on both ends (so a failure there is ours, not the harness's).

use std::time::Duration;

use ibm_ipsec_tests::pcap::{cleartext_packets, esp_packets, exchange_summary};
use ibm_ipsec_tests::{
    ping, Capture, Config, Connection, Lab, Lifetimes, StrongSwan, Transfer, TransferSpec,
};

const PSK: &str = "ibm-ipsec interop pre-shared key";
const IDS: [&str; 2] = ["client.ibm-ipsec.test", "share.ibm-ipsec.test"];

#[test]
fn strongswan_pair_rekeys_both_sas_under_a_verified_transfer() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let lifetimes = Lifetimes {
        ike_rekey: Some(Duration::from_secs(4)),
        child_rekey: Some(Duration::from_secs(3)),
        dpd_delay: Some(Duration::from_secs(1)),
    };
    let conn = |local: &ibm_ipsec_tests::Host, remote: &ibm_ipsec_tests::Host, l, r| {
        Connection::psk("nfs", local.addr(), remote.addr(), l, r)
            .with_proposals("aes256gcm16-prfsha256-x25519-ecp256-modp2048")
    };
    let responder = StrongSwan::start(
        &share,
        Config::default()
            .psk(&IDS, PSK)
            .connection(conn(&share, &client, IDS[1], IDS[0])),
    )
    .unwrap();
    let initiator = StrongSwan::start(
        &client,
        Config::default()
            .psk(&IDS, PSK)
            .connection(conn(&client, &share, IDS[0], IDS[1]).with_lifetimes(lifetimes)),
    )
    .unwrap();
    initiator.initiate("nfs").unwrap();
    let sas = initiator.list_sas().unwrap();
    assert_eq!(sas[0].get("dh-group"), Some("CURVE_25519"), "{sas:#?}");
    let ike_spi = sas[0].get("initiator-spi").unwrap().to_owned();
    let child_spi = sas[0].children[0].get("spi-in").unwrap().to_owned();
    let capture = Capture::start(&share, "lab0", "").unwrap();

    let transfer = Transfer::start(
        &client,
        &share,
        TransferSpec::new(5301, 6 * 1024 * 1024).lasting(Duration::from_secs(7)),
    )
    .unwrap();
    let report = transfer.finish().unwrap();
    assert_eq!(report.bytes, 6 * 1024 * 1024);
    let p = ping(&client, share.addr(), 3, Duration::from_millis(100)).unwrap();
    assert_eq!(p.received, 3, "{}", p.output);

    let packets = capture.finish().unwrap();
    let summary = exchange_summary(&packets);
    let rekeys = summary
        .iter()
        .filter(|s| s.starts_with("CREATE_CHILD_SA request"))
        .count();
    assert!(
        rekeys >= 2,
        "a child rekey and an IKE rekey in 7 s: {summary:#?}"
    );
    let after = initiator.list_sas().unwrap();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_ne!(
        after[0].get("initiator-spi"),
        Some(ike_spi.as_str()),
        "IKE SA rekeyed"
    );
    assert!(
        after[0]
            .children
            .iter()
            .all(|c| c.get("spi-in") != Some(child_spi.as_str())),
        "CHILD_SA rekeyed: {after:#?}"
    );
    assert!(esp_packets(&packets, client.addr(), share.addr()) > 100);
    assert!(
        cleartext_packets(&packets).is_empty(),
        "traffic around the tunnel: {:?}",
        cleartext_packets(&packets).first()
    );
    let theirs = responder.list_sas().unwrap();
    assert_eq!(
        theirs.len(),
        1,
        "old IKE SA deleted after the rekey: {theirs:#?}"
    );
    let bytes_in: u64 = theirs[0]
        .children
        .iter()
        .filter_map(|c| c.counter("bytes-in"))
        .sum();
    assert!(bytes_in > 0, "{theirs:#?}");
}

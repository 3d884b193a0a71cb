//! What the operator sees of the peer's certificate identity, end to end: two of our daemons
//! authenticating with RSA-4096 certificates from the lab PKI.
//!
//! * A wrong `--remote-id` fails with one line that names the peer's DN as text
//!   (`C=US, O=…, CN=…`), not as hex DER.
//! * Once up, `status --json` on both sides carries the peer certificate's subject, issuer,
//!   serial and notAfter (`peer_cert_*`), equal to what the certificate file says, and the
//!   text `status` prints them in one line per peer.
//!
//! Runs as root (CI does); elsewhere it skips with the reason.

use std::time::UNIX_EPOCH;

use ibm_ipsec_tests::{strs, Lab, Ours, TestPki};

/// subject, issuer, serial (hex) and notAfter (Unix seconds) of the first certificate in a
/// PEM file, read with the pki crate.
fn facts(pem_file: &std::path::Path) -> (String, String, String, u64) {
    let pem = std::fs::read(pem_file).unwrap();
    let der = pki::pem::certificates(&pem).unwrap().remove(0);
    let info = pki::CertificateInfo::from_der(&der).unwrap();
    let not_after = info.not_after.duration_since(UNIX_EPOCH).unwrap().as_secs();
    (info.subject, info.issuer, info.serial, not_after)
}

#[test]
fn peer_certificates_and_dns_are_shown_as_text() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let pki = TestPki::generate(&lab.dir().join("pki")).unwrap();
    let mut responder_args = pki.daemon_args(&pki.share).unwrap();
    responder_args.extend(["--listen".to_owned(), share.addr().to_string()]);
    let responder = Ours::start(&share, &strs(&responder_args)).unwrap();
    let initiator = Ours::start(&client, &strs(&pki.daemon_args(&pki.client).unwrap())).unwrap();

    // The share proves its own DN, not the one required: the failure names it as text.
    let err = initiator
        .up(
            share.addr(),
            &["--remote-id", "C=US, O=Elsewhere, CN=not-the-share"],
        )
        .unwrap_err()
        .to_string();
    let named = format!(
        "authentication of peer ID_DER_ASN1_DN:{} failed",
        pki.share.subject
    );
    assert!(err.contains(&named), "{named:?} not in:\n{err}");
    assert!(
        !err.contains("ID_DER_ASN1_DN:30"),
        "a DN shown as hex DER:\n{err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("authentication of peer"))
        .unwrap();
    assert!(line.contains("O=Elsewhere"), "{line}");

    initiator
        .up(share.addr(), &["--remote-id", &pki.share.subject])
        .unwrap();
    for (ours, peer, cert) in [
        (&initiator, share.addr(), &pki.share.cert),
        (&responder, client.addr(), &pki.client.cert),
    ] {
        let (subject, issuer, serial, not_after) = facts(cert);
        let status = ours.status().unwrap();
        let row = status
            .ike_sas()
            .into_iter()
            .find(|r| r["peer"] == peer.to_string() && r["state"] == "established")
            .unwrap_or_else(|| panic!("no IKE SA with {peer}: {:#}", status.0))
            .clone();
        assert_eq!(row["peer_cert_subject"], subject.as_str(), "{row:#}");
        assert_eq!(row["peer_cert_issuer"], issuer.as_str(), "{row:#}");
        assert_eq!(row["peer_cert_serial"], serial.as_str(), "{row:#}");
        assert_eq!(row["peer_cert_expiry_unix"], not_after, "{row:#}");
        let text = ours.cli(&["status"]).unwrap();
        assert!(
            text.contains(&format!(
                "{peer} authenticated with \"{subject}\" (serial {serial}), issued by \
                 \"{issuer}\", expires "
            )),
            "{text}"
        );
    }
}

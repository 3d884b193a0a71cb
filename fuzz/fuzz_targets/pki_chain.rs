//! X.509 chain verification as IKE_AUTH drives it (RFC 7296 §3.6, RFC 4945): the peer's
//! CERT payloads verified against a fixed root (the strongSwan captures' test root,
//! `ike/tests/data/strongswan/pki/root.pem`) at a fixed time inside the test leaf's lifetime,
//! then the AUTH data checked with the verified key. Also the certificate summary decoder and
//! the PEM reader on the same bytes. The first byte picks the entry point:
//!
//! * `0`: `[u16 length ‖ DER]…` up to five certificates (leaf first), then RFC 7427 AUTH data;
//! * `1`: a DER certificate for `CertificateInfo::from_der`;
//! * `2`: PEM (or DER) text for `pem::certificates` and a root store.
//!
//! Nothing may panic; a verified chain must report the leaf and chain it was given.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use pki::{CertificateInfo, IkeIdentity, PeerVerifier, RootStore};

/// 2026-11-23T10:00:00Z, inside the capture leaf's one-hour lifetime.
const NOW_UNIX: u64 = 1_795_428_000;

static VERIFIER: LazyLock<PeerVerifier> = LazyLock::new(|| {
    let mut roots = RootStore::new();
    roots
        .add_file_contents(include_bytes!(
            "../../ike/tests/data/strongswan/pki/root.pem"
        ))
        .expect("test root loads");
    PeerVerifier::new(roots)
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => chain(rest),
        1 => {
            let _ = CertificateInfo::from_der(rest);
        }
        2 => {
            if let Ok(certs) = pki::pem::certificates(rest) {
                let mut store = RootStore::new();
                for der in &certs {
                    let _ = store.add_der(der);
                }
                let _ = store.certreq_authorities();
            }
            let mut store = RootStore::new();
            let _ = store.add_file_contents(rest);
        }
        _ => {}
    }
});

fn chain(mut rest: &[u8]) {
    let mut certs: Vec<&[u8]> = Vec::new();
    while certs.len() < 5 {
        let [hi, lo, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if len == 0 || tail.len() < len {
            break;
        }
        certs.push(&tail[..len]);
        rest = &tail[len..];
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    let Ok(peer) = VERIFIER.verify_chain(&certs, now, &IkeIdentity::Any) else {
        return;
    };
    assert_eq!(peer.chain_der().len(), certs.len());
    assert_eq!(peer.chain_der()[0], certs[0]);
    let _ = peer.subject();
    // `rest` is the AUTH payload's Authentication Data (method 14).
    let _ = VERIFIER.verify_auth_data(&peer, rest, b"signed octets");
}

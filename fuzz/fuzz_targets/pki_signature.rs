//! RFC 7427 signature algorithms: the AlgorithmIdentifier parser (from AUTH payloads and
//! certificates), the method-14 Authentication Data splitter, and the SIGNATURE_HASH_ALGORITHMS
//! choice. Nothing may panic; an accepted AlgorithmIdentifier must map to a scheme whose own
//! encoding parses back to the same scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pki::signature::split_auth_data;
use pki::SignatureScheme;

fn round_trip(der: &[u8]) {
    if let Ok(scheme) = SignatureScheme::from_algorithm_identifier(der) {
        let ours = scheme.algorithm_identifier();
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&ours).expect("our encoding parses"),
            scheme
        );
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    if let Ok((ai, _signature)) = split_auth_data(data) {
        round_trip(ai);
    }
    // The Notify SIGNATURE_HASH_ALGORITHMS data: a list of 16-bit hash ids (RFC 7427 §4).
    let ids: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    for pss in [false, true] {
        if let Some(scheme) = SignatureScheme::choose_rsa(&ids, pss) {
            assert!(ids.contains(&scheme.hash().id()), "chose an unoffered hash");
        }
    }
});

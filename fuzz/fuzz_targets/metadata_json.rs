//! The identity API's JSON responses as the client decodes them (`PUT /identity/v1/token`,
//! `POST /identity/v1/certificates`, error bodies; `metadata-api.md`): a response from the
//! network, or from something pretending to be the metadata service, must never panic the
//! client. Whatever decodes must serialize and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metadata::api::{CertificateResponse, ErrorBody, TokenResponse};
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&value).expect("a decoded value serializes");
        let again: T = serde_json::from_slice(&text).expect("our JSON decodes");
        assert!(again == value, "JSON round trip changed the value");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<TokenResponse>(data);
    round_trip::<CertificateResponse>(data);
    round_trip::<ErrorBody>(data);
    // The client then reads the certificates as PEM.
    if let Ok(r) = serde_json::from_slice::<CertificateResponse>(data) {
        for pem in r.certificates.iter().take(4) {
            let _ = pki::pem::certificates(pem.as_bytes());
        }
    }
});

//! CSR validation as the metadata test server runs it on what a client posts (PEM or DER
//! PKCS#10): self-signature, no attributes or extensions, no CN. Nothing may panic, and an
//! accepted CSR's DER must validate again to the same subject and key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pki::validate_csr;

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = validate_csr(data) else {
        return;
    };
    let again = validate_csr(csr.der()).expect("an accepted CSR's DER validates");
    assert_eq!(again.subject(), csr.subject());
    assert_eq!(again.public_key_info_der(), csr.public_key_info_der());
});

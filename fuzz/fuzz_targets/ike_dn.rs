//! A peer's ID_DER_ASN1_DN rendered as RFC 4514 text (`ike::wire::dn_to_string`), which
//! lands in logs, `status` and failure lines: it must never panic on arbitrary bytes, and
//! whatever it renders must be one line without control characters, so a crafted
//! identity cannot forge or split log lines.
#![no_main]

use ike::wire::dn_to_string;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = dn_to_string(data) {
        assert!(
            !text.chars().any(char::is_control),
            "control character in a rendered DN: {text:?}"
        );
        // Bounded output: every input byte yields at most a few characters
        // (`\XX` escapes, `#` hex), plus separators.
        assert!(
            text.len() <= 8 * data.len() + 16,
            "{} bytes from {}",
            text.len(),
            data.len()
        );
    }
});

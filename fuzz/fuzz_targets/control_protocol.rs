//! The daemon's control protocol (issue 9): `decode_request` (what the daemon reads from any
//! local client of its socket) and `decode_response` (what the CLI reads back). The first
//! byte picks the decoder; the rest is one line. Invariants beyond "never panics": a
//! decoded message re-encodes (`encode_request` / `encode_response`) to one newline-ended
//! line that decodes to the same message, and re-encoding that is a fixed point.
#![no_main]

use ibm_ipsec::control::protocol::{
    decode_request, decode_response, encode_request, encode_response,
};
use libfuzzer_sys::fuzz_target;

fn one_line(line: &[u8]) {
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(!line[..line.len() - 1].contains(&b'\n'), "{line:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, line)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(request) = decode_request(line) {
            let bytes = encode_request(&request);
            one_line(&bytes);
            let again = decode_request(&bytes).expect("our own request line decodes");
            assert_eq!(again, request);
            assert_eq!(encode_request(&again), bytes);
        }
    } else if let Ok(response) = decode_response(line) {
        let bytes = encode_response(&response);
        one_line(&bytes);
        let again = decode_response(&bytes).expect("our own response line decodes");
        assert_eq!(again, response);
        assert_eq!(encode_response(&again), bytes);
    }
});

//! A bare IKE payload chain — what an SK/SKF payload decrypts to — on arbitrary bytes. The
//! first input byte is the first payload's type (taken from the SK header in a real
//! message). The parser must never panic; whatever it accepts must serialize and reparse to
//! the same payloads, and the critical-bit check must not panic on it.
#![no_main]

use ike::wire::{
    chain_len, check_critical, emit_chain, first_payload_type, parse_chain, PayloadType,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&t, chain)) = data.split_first() else {
        return;
    };
    let first = PayloadType::from(t);
    let Ok(payloads) = parse_chain(chain, first) else {
        return;
    };
    let _ = check_critical(&payloads);

    let mut buf = vec![0; chain_len(&payloads)];
    emit_chain(&payloads, &mut buf).expect("a parsed chain serializes");
    let again = parse_chain(&buf, first_payload_type(&payloads)).expect("a built chain parses");
    assert_eq!(again, payloads);
    // The canonical form is a fixed point.
    let mut buf2 = vec![0; chain_len(&again)];
    emit_chain(&again, &mut buf2).expect("serializes");
    assert_eq!(buf2, buf);
});

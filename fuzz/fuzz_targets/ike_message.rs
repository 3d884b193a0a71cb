//! The IKE message parser on arbitrary bytes: it must never panic, and whatever it accepts
//! must serialize to bytes that parse to the same message (parse → build → parse agree).
//! The same holds for a bare payload chain (the decrypted content of SK/SKF), whose first
//! payload type is taken from the first input byte.
#![no_main]

use ike::wire::{chain_len, emit_chain, parse_chain, Message, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(first) = Message::parse(data) {
        let bytes = first.to_bytes().expect("a parsed message serializes");
        let again = Message::parse(&bytes).expect("a serialized message parses");
        assert_eq!(first, again);
        // Serialization is a fixed point: the canonical form re-encodes to itself.
        assert_eq!(again.to_bytes().expect("serializes"), bytes);
    }

    if let Some((&t, chain)) = data.split_first() {
        if let Ok(payloads) = parse_chain(chain, PayloadType::from(t)) {
            let mut buf = vec![0; chain_len(&payloads)];
            emit_chain(&payloads, &mut buf).expect("a parsed chain serializes");
            let first = payloads
                .first()
                .map_or(PayloadType::NoNextPayload, |p| p.payload_type());
            assert_eq!(parse_chain(&buf, first).expect("reparses"), payloads);
        }
    }
});

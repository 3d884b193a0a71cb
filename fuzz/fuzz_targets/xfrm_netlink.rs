//! Netlink XFRM messages as the kernel sends them (replies, dumps, ACKs, EXPIRE/ACQUIRE
//! notifications): the `nlmsghdr` walk, attribute walks, NLMSG_ERROR/extended-ACK decoding
//! and the monitor's event decoder, which parses `xfrm_usersa_info` / `xfrm_userpolicy_info`
//! with their attributes. Nothing may panic. The framing round-trips: each message rebuilt
//! with the request `Builder` (header, payload as the fixed part) walks back to the same
//! header fields and payload, and an attribute list rebuilt from its parsed attributes parses
//! back to the same list. (The SA/policy request encoders are crate-private and the kernel's
//! replies are not their inverse, so there is no struct-level round trip here.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use xfrm::monitor;
use xfrm::netlink::{align, parse_ack, Attr, Attrs, Builder, Messages, HEADER_LEN, NLMSG_ERROR};

/// Offsets at which XFRM payloads start their attributes: none, `xfrm_usersa_id` (24),
/// `xfrm_usersa_info` (224), `xfrm_user_expire` (232), `xfrm_userpolicy_info` (168),
/// `xfrm_user_acquire` (280).
const ATTR_OFFSETS: [usize; 6] = [0, 24, 224, 232, 168, 280];

fuzz_target!(|data: &[u8]| {
    for message in Messages::new(data).take(64) {
        let Ok(message) = message else { break };
        let h = message.header;
        if h.kind == NLMSG_ERROR {
            let _ = parse_ack(h.flags, message.payload);
        }
        let _ = monitor::decode(h.kind, message.payload);

        let rebuilt = Builder::new(h.kind, h.flags, h.seq)
            .fixed(message.payload)
            .finish();
        let again = Messages::new(&rebuilt)
            .next()
            .expect("one message")
            .expect("a built message parses");
        assert_eq!(
            (again.header.kind, again.header.flags, again.header.seq),
            (h.kind, h.flags, h.seq)
        );
        assert_eq!(
            again.header.len as usize,
            HEADER_LEN + align(message.payload.len())
        );
        assert!(again.payload.starts_with(message.payload));

        for at in ATTR_OFFSETS {
            if let Some(area) = message.payload.get(at..) {
                attrs_round_trip(area);
            }
        }
    }
});

fn attrs_round_trip(area: &[u8]) {
    let attrs: Vec<Attr<'_>> = match Attrs::new(area).take(64).collect() {
        Ok(a) => a,
        Err(_) => return,
    };
    if attrs.len() == 64 {
        return;
    }
    let mut builder = Builder::new(0, 0, 0);
    for a in &attrs {
        builder = builder.attr(a.kind, a.value);
    }
    let bytes = builder.finish();
    let again: Vec<Attr<'_>> = Attrs::new(&bytes[HEADER_LEN..])
        .collect::<Result<_, _>>()
        .expect("built attributes parse");
    assert_eq!(again, attrs);
}

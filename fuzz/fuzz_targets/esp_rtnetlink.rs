//! rtnetlink dump replies as the userspace datapath's crash clean-up reads them:
//! `esp::datapath::fuzzing::{Rule, Route}::parse` on FIB rule (`RTM_NEWRULE`) and route
//! (`RTM_NEWROUTE`) entries, found by walking the input as a netlink datagram, and on the
//! whole input as one payload. Nothing may panic. A parsed entry is internally consistent
//! (prefix lengths within the family, addresses of the family) and round-trips: the add
//! request built from it parses back to the same entry, the delete request to the same
//! selectors (a rule's action and a route's scope and type are what `ip … del` sends).
#![no_main]

use esp::datapath::fuzzing::{Family, Op, Route, Rule, RTM_NEWROUTE, RTM_NEWRULE};
use libfuzzer_sys::fuzz_target;
use xfrm::netlink::Messages;

fuzz_target!(|data: &[u8]| {
    for message in Messages::new(data).take(64) {
        let Ok(message) = message else { break };
        match message.header.kind {
            RTM_NEWRULE => rule(message.payload),
            RTM_NEWROUTE => route(message.payload),
            _ => {}
        }
    }
    rule(data);
    route(data);
});

fn payload(msg: &[u8]) -> Vec<u8> {
    let m = Messages::new(msg)
        .next()
        .expect("one message")
        .expect("a built request walks");
    m.payload.to_vec()
}

fn rule(p: &[u8]) {
    let Ok(rule) = Rule::parse(p) else { return };
    for prefix in [rule.dst, rule.src].into_iter().flatten() {
        assert_eq!(Family::of(prefix.addr), rule.family);
        assert!(prefix.len <= rule.family.host_len());
    }
    let added = Rule::parse(&payload(&rule.request(Op::Add, 1))).expect("add request parses");
    assert_eq!(added, rule);
    let deleted =
        Rule::parse(&payload(&rule.request(Op::Delete, 1))).expect("delete request parses");
    assert_eq!(deleted, Rule { action: 0, ..rule });
}

fn route(p: &[u8]) {
    let Ok(route) = Route::parse(p) else { return };
    if let Some(dst) = route.dst {
        assert_eq!(Family::of(dst.addr), route.family);
        assert!(dst.len <= route.family.host_len());
    }
    if let Some(src) = route.prefsrc {
        assert_eq!(Family::of(src), route.family);
    }
    let added = Route::parse(&payload(&route.request(Op::Add, 1))).expect("add request parses");
    assert_eq!(added, route);
    let deleted =
        Route::parse(&payload(&route.request(Op::Delete, 1))).expect("delete request parses");
    assert_eq!(
        (deleted.dst, deleted.oif, deleted.prefsrc, deleted.table, deleted.protocol),
        (route.dst, route.oif, route.prefsrc, route.table, route.protocol)
    );
    assert_eq!(deleted.kind, 0);
}

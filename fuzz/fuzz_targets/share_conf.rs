//! The `share.conf` parser (`/etc/ibmcloud/share.conf`, `/etc/ibmshare/share.conf`) on
//! arbitrary text: it must never panic, and what it accepts must lie inside the documented bounds
//! (lifetime 300–3600 s, renewal at 70–75 %, key size 2048/3072/4096).
#![no_main]

use libfuzzer_sys::fuzz_target;
use metadata::share_conf::{parse, KEY_BITS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(conf) = parse(text, "fuzz") else {
        return;
    };
    let secs = conf.certificate_duration.as_secs();
    assert!(
        (300..=3600).contains(&secs),
        "lifetime {secs} s out of bounds"
    );
    assert!((70..=75).contains(&conf.renew_at_percent));
    assert_eq!(
        conf.renewal_policy().renew_at_percent(),
        conf.renew_at_percent
    );
    assert!(KEY_BITS.contains(&conf.key_bits));
    let _ = conf.client_config();
});

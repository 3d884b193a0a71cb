//! mount.ibmshare's parsers of what the system and the caller hand it (issue 9):
//! `mount_helper::parse_args` (argv, with `-o` option strings), `mount_helper::nfs_mounts`
//! (`/proc/self/mounts`), `mount::utab::parse_mountinfo` (`/proc/self/mountinfo`) and the
//! utab line helpers (`field`, `mangle`, `unmangle`). The first byte picks the parser; the
//! rest is its input (argv as NUL-separated arguments). Invariants beyond "never panics":
//!
//! * argv: an accepted command line yields options without `secure…` and with one `sec=`
//!   first unless given; re-parsing the mount.nfs command line built from it gives the same
//!   plan (without IPsec), and a secure plan's peer is the server's address;
//! * /proc/self/mounts: every NFS mount found has an absolute path without a trailing slash,
//!   and `is_mounted` finds it again;
//! * mountinfo: each mount, written back as a mountinfo line with `mangle`, parses to itself;
//! * utab: `unmangle(mangle(s)) == s`, and a line `KEY=mangle(v)` yields `v` back through
//!   `field` + `unmangle`.
#![no_main]

use ibm_ipsec::mount::utab::{field, mangle, parse_mountinfo, unmangle, MountInfo};
use ibm_ipsec::mount_helper::{is_mounted, nfs_command, nfs_mounts, parse_args};
use libfuzzer_sys::fuzz_target;

fn argv(text: &str) {
    let args: Vec<&str> = text.split('\0').collect();
    let Ok(plan) = parse_args(&args) else {
        return;
    };
    assert!(
        plan.nfs_options
            .iter()
            .all(|o| !o.is_empty() && !o.contains("secure") && !o.contains(',')),
        "{plan:?}"
    );
    assert!(plan.nfs_options.iter().any(|o| o.starts_with("sec=")));
    assert!(plan.path.starts_with('/') && !plan.server.is_empty());
    if let Some(peer) = plan.secure_peer {
        let host = plan.server.trim_start_matches('[').trim_end_matches(']');
        assert_eq!(host.parse::<std::net::IpAddr>().ok(), Some(peer));
    }
    // mount.nfs's command line is again a valid mount.ibmshare command line for the same
    // mount (a mount point that looks like a flag is only positional after `--`).
    let cmd = nfs_command(&plan);
    let flag_like = |a: &str| a.len() > 1 && a.starts_with('-');
    if flag_like(&plan.dir) || flag_like(&plan.server) {
        return;
    }
    let again = parse_args(&cmd).unwrap_or_else(|e| panic!("{cmd:?} of {plan:?}: {e:?}"));
    let mut expected = plan.clone();
    expected.secure_peer = None;
    assert_eq!(again, expected, "{cmd:?}");
}

fn proc_mounts(text: &str) {
    let mounts = nfs_mounts(text);
    for m in &mounts {
        assert!(m.path.starts_with('/'), "{m:?}");
        assert!(m.path == "/" || !m.path.ends_with('/'), "{m:?}");
        assert!(is_mounted(&mounts, &m.server, &m.path), "{m:?}");
        // A trailing slash in the query does not matter.
        assert!(
            is_mounted(&mounts, &m.server, &format!("{}/", m.path)),
            "{m:?}"
        );
    }
}

fn mountinfo(text: &str) {
    for m in parse_mountinfo(text) {
        let line = format!(
            "{} 1 0:42 {} {} rw,relatime shared:1 - {} {} rw",
            m.id,
            mangle(&m.root),
            mangle(&m.target),
            m.fstype,
            mangle(&m.source)
        );
        let back: Vec<MountInfo> = parse_mountinfo(&line);
        assert_eq!(back, vec![m.clone()], "{line:?}");
    }
}

fn utab(text: &str) {
    let mangled = mangle(text);
    assert!(
        !mangled.contains([' ', '\t', '\n']),
        "{mangled:?} keeps a separator"
    );
    assert_eq!(unmangle(&mangled), text);
    let line = format!("ID=7 SRC=x TARGET={mangled} ROOT=/ OPTS=helper=ibmshare");
    assert_eq!(field(&line, "TARGET").map(unmangle).as_deref(), Some(text));
    assert_eq!(field(&line, "ID"), Some("7"));
    // Arbitrary lines: whatever `field` returns lies in the line.
    for key in ["ID", "TARGET", "OPTS"] {
        if let Some(v) = field(text, key) {
            assert!(text.contains(&format!("{key}={v}")));
        }
    }
    let _ = unmangle(text);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => argv(&text),
        1 => proc_mounts(&text),
        2 => mountinfo(&text),
        _ => utab(&text),
    }
});

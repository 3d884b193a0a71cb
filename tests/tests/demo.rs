//! Scenario: `ibm-ipsec demo`, the README's first command, end to end — two namespaces,
//! metadata test server, responder daemon, `ibm-ipsec up` through the metadata identity,
//! data to the file server, status, and the capture proof — and nothing left behind.
//!
//! Needs root (CI runs as root) and the `ibm-ipsec` binary; without root it prints why it
//! skipped.

use std::process::Command;
use std::time::{Duration, Instant};

use ibm_ipsec_tests::{workspace_binary, Lab};

#[test]
fn the_demo_proves_the_wire_is_encrypted_and_cleans_up() {
    // Lab::require_root prints the skip reason; the demo makes its own namespaces.
    let Some(_lab) = Lab::require_root() else {
        return;
    };
    let bin = workspace_binary("ibm-ipsec").unwrap();
    let started = Instant::now();
    let out = Command::new(&bin)
        .args(["demo", "--megabytes", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "[1/7] Network",
        "[4/7] Client",
        "[7/7] Wire",
        "cleartext IP      0",
        "never seen on the wire",
        "Only IKE and ESP crossed the wire",
        "Clean-up",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    eprintln!("demo took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));

    let stale = stale_demo_namespaces();
    assert!(stale.is_empty(), "namespaces left behind: {stale:?}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ibm-ipsec-demo-"))
        .filter(|n| {
            // Only directories of demo processes that are gone (a concurrent run keeps its own).
            n.rsplit('-')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err()
                })
        })
        .collect();
    assert!(leftovers.is_empty(), "work directories left: {leftovers:?}");
}

/// `ibmdemo-*` namespaces whose demo process is gone.
fn stale_demo_namespaces() -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| {
            let pid = n
                .strip_prefix("ibmdemo-")?
                .split('-')
                .next()?
                .parse::<i32>()
                .ok()?;
            let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
            gone.then(|| n.to_owned())
        })
        .collect()
}

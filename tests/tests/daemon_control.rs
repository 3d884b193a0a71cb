//! Scenario: our daemon runs in a lab host (its own network namespace) and is driven through
//! its control socket by the `ibm-ipsec` CLI, as an operator would: `status` answers (text and
//! JSON) with the datapath the daemon chose, `down` of a peer it has no SA with fails with a
//! clear message, a second daemon never displaces a live one, SIGTERM stops it cleanly and
//! removes its socket, and a socket left by a killed daemon is replaced on restart. With
//! `--config`, the daemon gets its certificate from the metadata test server, and keeps trying
//! (saying why in `status`) while the service is unreachable.
//!
//! Needs root (CI runs as root) and the `ibm-ipsec` binary (`cargo build --bin ibm-ipsec`,
//! or `cargo test --workspace`); without root each test prints why it skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use ibm_ipsec_tests::{workspace_binary, Lab, MetadataServer, Ours};

#[test]
fn status_answers_and_down_of_an_unknown_peer_is_refused() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let control = lab.dir().join("run/ibm-ipsec/control.sock");
    let daemon = Ours::start_at(&client, &control, &[]).unwrap();

    let text = daemon.cli(&["status"]).unwrap();
    assert!(text.contains("Daemon:    pid "), "{text}");
    assert!(
        text.contains("Datapath:  kernel (XFRM)") || text.contains("Datapath:  userspace (TUN)"),
        "{text}"
    );
    assert!(text.contains("IKE SAs\n  (none)"), "{text}");
    let json = daemon.cli(&["status", "--json"]).unwrap();
    let pid = daemon.pid().unwrap();
    assert!(json.contains(&format!("\"pid\": {pid}")), "{json}");
    assert!(json.contains("\"requested\": \"auto\""), "{json}");

    let err = daemon
        .cli(&["down", &share.addr().to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("no IKE SA with {}", share.addr())),
        "{err}"
    );
    let out = daemon.cli(&["down", "--all"]).unwrap();
    assert!(out.contains("no SAs to delete"), "{out}");

    // The socket is root-only: directory 0700, socket 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(control.parent().unwrap()), 0o700);
    assert_eq!(mode(&control), 0o600);
}

#[test]
fn sigterm_removes_the_socket_and_a_stale_socket_is_replaced() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let host = lab.host("client").unwrap();
    let control = lab.dir().join("control.sock");

    let mut daemon = Ours::start_at(&host, &control, &[]).unwrap();
    let status = daemon.stop().unwrap();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", daemon.log());
    assert!(!control.exists(), "socket left behind after SIGTERM");
    assert!(daemon.log().contains("daemon stopped"));
    let err = ibm_ipsec_tests::cli(&host, &control, &["status"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no daemon is listening on"), "{err}");

    // SIGKILL leaves the socket file; the next daemon detects it is stale and takes over.
    let mut killed = Ours::start_at(&host, &control, &[]).unwrap();
    let pid = killed.pid().unwrap();
    host.run(&["kill", "-KILL", &pid.to_string()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while killed.is_running() {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(control.exists(), "SIGKILL cannot remove the socket");
    let successor = Ours::start_at(&host, &control, &[]).unwrap();
    assert!(successor.log().contains("removing stale control socket"));
    drop(successor);
}

#[test]
fn a_live_daemon_is_never_displaced() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let host = lab.host("client").unwrap();
    let control = lab.dir().join("control.sock");
    let first = Ours::start_at(&host, &control, &[]).unwrap();
    let bin = workspace_binary("ibm-ipsec").unwrap();
    let err = host
        .run(&[
            bin.to_str().unwrap(),
            "daemon",
            "--control",
            control.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
    assert!(err.contains("already listening"), "{err}");
    let json = first.cli(&["status", "--json"]).unwrap();
    assert!(
        json.contains(&format!("\"pid\": {}", first.pid().unwrap())),
        "{json}"
    );
}

#[test]
fn identity_comes_from_the_metadata_service_once_it_answers() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let host = lab.host("client").unwrap();
    let control = lab.dir().join("control.sock");
    let conf = lab.dir().join("share.conf");
    let state = lab.dir().join("state");
    // No retries inside one attempt and 1 s between attempts, so the test is quick; a
    // 2048-bit key because RSA-4096 generation takes seconds in a debug build.
    std::fs::write(
        &conf,
        format!(
            "metadata_url = http://127.0.0.1:18169\nmetadata_retry_count = 0\n\
             metadata_retry_interval = 1\nkey_bits = 2048\nstate_dir = {}\n\
             certificate_duration_seconds = 300\n",
            state.display()
        ),
    )
    .unwrap();
    let daemon = Ours::start_at(&host, &control, &["--config", conf.to_str().unwrap()]).unwrap();
    let wait = Duration::from_secs(30);

    // The service is not running yet: status says so and the daemon keeps going.
    let waited = daemon.wait_for_text("last attempt failed", wait).unwrap();
    assert!(waited.contains("Identity:  no certificate yet"), "{waited}");

    let _server =
        MetadataServer::start_at(&host, "127.0.0.1:18169", &lab.dir().join("srv"), &[]).unwrap();
    let text = daemon.wait_for_text("renews at", wait).unwrap();
    assert!(text.contains("OU=IBM Software Group, CN=0717_"), "{text}");
    assert!(text.contains("(75 % of its life)"), "{text}");
    assert!(!text.contains("last attempt failed"), "{text}");
    assert!(
        state.join("host.key").exists(),
        "host key kept for renewals"
    );
    drop(daemon);
}

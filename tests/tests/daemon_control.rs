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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ibm_ipsec_tests::{workspace_binary, Host, Lab, LabProcess};

struct Daemon {
    process: LabProcess,
    control: PathBuf,
}

fn binary() -> String {
    workspace_binary("ibm-ipsec")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Starts `ibm-ipsec daemon` in `host` and waits until `status` answers.
fn start_daemon(host: &Host, control: &Path) -> Daemon {
    start_daemon_with(host, control, &[])
}

fn start_daemon_with(host: &Host, control: &Path, extra: &[&str]) -> Daemon {
    let bin = binary();
    let control_arg = control.to_str().unwrap();
    let mut args = vec![bin.as_str(), "daemon", "--control", control_arg];
    args.extend_from_slice(extra);
    let mut process = host.spawn(&args).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if host
            .run(&[&bin, "status", "--control", control_arg])
            .is_ok()
        {
            break;
        }
        assert!(
            process.is_running(),
            "daemon exited at start-up:\n{}",
            process.output()
        );
        assert!(
            Instant::now() < deadline,
            "daemon did not answer on {} within 20 s:\n{}",
            control.display(),
            process.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        process,
        control: control.to_owned(),
    }
}

fn cli(host: &Host, args: &[&str], control: &Path) -> Result<String, String> {
    let bin = binary();
    let mut all = vec![bin.as_str()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", control.to_str().unwrap()]);
    host.run(&all).map_err(|e| e.to_string())
}

#[test]
fn status_answers_and_down_of_an_unknown_peer_is_refused() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let control = lab.dir().join("run/ibm-ipsec/control.sock");
    let daemon = start_daemon(&client, &control);

    let text = cli(&client, &["status"], &control).unwrap();
    assert!(text.contains("Daemon:    pid "), "{text}");
    assert!(
        text.contains("Datapath:  kernel (XFRM)") || text.contains("Datapath:  userspace (TUN)"),
        "{text}"
    );
    assert!(text.contains("IKE SAs\n  (none)"), "{text}");
    let json = cli(&client, &["status", "--json"], &control).unwrap();
    let pid = daemon.process.pid().unwrap();
    assert!(json.contains(&format!("\"pid\": {pid}")), "{json}");
    assert!(json.contains("\"requested\": \"auto\""), "{json}");

    let err = cli(&client, &["down", &share.addr().to_string()], &control).unwrap_err();
    assert!(
        err.contains(&format!("no IKE SA with {}", share.addr())),
        "{err}"
    );
    let out = cli(&client, &["down", "--all"], &control).unwrap();
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

    let mut daemon = start_daemon(&host, &control);
    let status = daemon.process.stop().unwrap();
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        daemon.process.output()
    );
    assert!(!control.exists(), "socket left behind after SIGTERM");
    assert!(daemon.process.output().contains("daemon stopped"));
    let err = cli(&host, &["status"], &control).unwrap_err();
    assert!(err.contains("no daemon is listening on"), "{err}");

    // SIGKILL leaves the socket file; the next daemon detects it is stale and takes over.
    let mut killed = start_daemon(&host, &control);
    let pid = killed.process.pid().unwrap();
    host.run(&["kill", "-KILL", &pid.to_string()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while killed.process.is_running() {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(control.exists(), "SIGKILL cannot remove the socket");
    let successor = start_daemon(&host, &control);
    assert!(successor
        .process
        .output()
        .contains("removing stale control socket"));
    drop(successor);
}

#[test]
fn a_live_daemon_is_never_displaced() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let host = lab.host("client").unwrap();
    let control = lab.dir().join("control.sock");
    let first = start_daemon(&host, &control);
    let bin = binary();
    let err = host
        .run(&[&bin, "daemon", "--control", control.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("already listening"), "{err}");
    let json = cli(&host, &["status", "--json"], &first.control).unwrap();
    assert!(
        json.contains(&format!("\"pid\": {}", first.process.pid().unwrap())),
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
    let daemon = start_daemon_with(&host, &control, &["--config", conf.to_str().unwrap()]);

    // The service is not running yet: status says so and the daemon keeps going.
    let waited = wait_for_status(&host, &control, "last attempt failed");
    assert!(waited.contains("Identity:  no certificate yet"), "{waited}");

    let bin = binary();
    let srv_state = lab.dir().join("srv");
    let _server = host
        .spawn(&[
            &bin,
            "metadata-test-server",
            "--listen",
            "127.0.0.1:18169",
            "--state-dir",
            srv_state.to_str().unwrap(),
        ])
        .unwrap();
    let text = wait_for_status(&host, &control, "renews at");
    assert!(text.contains("OU=IBM Software Group, CN=0717_"), "{text}");
    assert!(text.contains("(75 % of its life)"), "{text}");
    assert!(!text.contains("last attempt failed"), "{text}");
    assert!(
        state.join("host.key").exists(),
        "host key kept for renewals"
    );
    drop(daemon);
}

fn wait_for_status(host: &Host, control: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = cli(host, &["status"], control).unwrap();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

//! Scenario: two of our daemons protect traffic between two lab hosts. On `share` a responder
//! daemon listens (`ibm-ipsec daemon --listen ADDR --psk-file F`); on `client` the operator
//! runs `ibm-ipsec up SHARE --psk-file F`, which starts the client's daemon, negotiates IKE
//! and a transport-mode CHILD_SA, and returns once it is installed. Then ping and a TCP
//! transfer (checked byte for byte) cross the link, a capture on the wire shows nothing but
//! IKE and ESP-in-UDP between the hosts, `status --json` shows the SAs with counters that
//! move, and SIGTERM of the client daemon deletes the SAs on both sides. Also: RSA-4096
//! certificates (`TestPki`) on both daemons with fragmented IKE_AUTH and `--remote-id`
//! enforced; `--rekey-seconds 10` rekeying the CHILD_SA and the IKE SA under 300 pings
//! without losing one, then `down`; and the failures `up` reports in one line.
//!
//! Needs root and the `ibm-ipsec` binary (`cargo build --bin ibm-ipsec`); without root each
//! test prints why it skipped.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ibm_ipsec_tests::pcap::UdpKind;
use ibm_ipsec_tests::{cli, psk_file, strs, transfer, Capture, Detached, Lab, Ours, TestPki};

#[test]
fn up_with_psk_protects_ping_and_tcp_and_only_esp_crosses_the_wire() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let psk = psk_file(lab.dir(), "psk", "correct horse battery staple").unwrap();
    let client_control = lab.dir().join("run/client.sock");
    let share_ip = share.addr().to_string();
    let responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let capture = Capture::start(&client, "lab0", "").unwrap();

    // `up` starts the client's daemon itself and returns once the CHILD_SA is installed.
    let started = Instant::now();
    let line = cli(
        &client,
        &client_control,
        &["up", &share_ip, "--psk-file", psk.to_str().unwrap()],
    )
    .unwrap();
    let elapsed = started.elapsed();
    let mut client_daemon = Detached::of(&client, &client_control).unwrap();
    eprintln!("up took {elapsed:?}: {line}");
    assert!(line.starts_with(&format!("{share_ip}: up in ")), "{line}");
    for needle in [
        "ESP aes256gcm16 transport",
        "encap udp 4500 -> 4500",
        "userspace datapath",
        "IKE aes256-sha384-ecp384",
        &format!("peer IP {share_ip}"),
    ] {
        assert!(line.contains(needle), "{needle:?} missing: {line}");
    }
    // A second `up` reports the same SAs without negotiating.
    let again = client_daemon.cli(&["up", &share_ip]).unwrap();
    assert!(again.contains("already up"), "{again}");
    let spi_in = line
        .split("SPIs in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_owned();
    assert!(again.contains(&spi_in), "{again}");

    let ping = client
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("3 received"), "{ping}");
    let bytes = 2 << 20;
    transfer(&client, &share, 5001, bytes).unwrap();

    // status: both SAs with counters that moved, and move again with more traffic.
    let json = client_daemon.cli(&["status", "--json"]).unwrap();
    assert!(json.contains("\"state\": \"established\""), "{json}");
    let counter = |key: &str| {
        client_daemon
            .status()
            .unwrap()
            .child_counter(share.addr(), key)
    };
    assert!(
        json.contains(&format!("\"spi_in\": \"{spi_in}\"")),
        "{json}"
    );
    let out_before = counter("bytes_out");
    let in_before = counter("packets_in");
    assert!(out_before > bytes, "{json}");
    assert!(in_before >= 3, "{json}");
    client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    let json = client_daemon.cli(&["status", "--json"]).unwrap();
    assert!(counter("bytes_out") > out_before, "{json}");
    assert!(counter("packets_in") >= in_before + 2, "{json}");
    let share_json = responder.cli(&["status", "--json"]).unwrap();
    assert!(
        share_json.contains("\"state\": \"established\""),
        "{share_json}"
    );
    assert!(
        responder
            .status()
            .unwrap()
            .child_counter(client.addr(), "bytes_in")
            > bytes,
        "{share_json}"
    );

    // On the wire: only IKE (500, then 4500) and ESP-in-UDP between the hosts.
    let packets = capture.finish().unwrap();
    let hosts = [client.addr(), share.addr()];
    let between: Vec<_> = packets
        .iter()
        .filter(|p| hosts.contains(&p.src) && hosts.contains(&p.dst))
        .collect();
    let mut esp_bytes = 0;
    let mut ike = 0;
    for p in &between {
        match p.udp_kind() {
            // With UDP GSO one captured datagram may be many ESP packets: count bytes.
            Some(UdpKind::Esp(bytes)) => esp_bytes += bytes.len(),
            Some(UdpKind::Ike(_)) => ike += 1,
            Some(UdpKind::Keepalive) => {}
            None => panic!(
                "cleartext on the wire: protocol {} {:?} {} -> {}",
                p.protocol, p.ports, p.src, p.dst
            ),
        }
    }
    assert!(ike >= 4, "IKE_SA_INIT and IKE_AUTH expected, saw {ike}");
    assert!(
        esp_bytes as u64 > bytes,
        "the transfer should be ESP, saw {esp_bytes} bytes of ESP"
    );

    // SIGTERM deletes the SAs on both sides and removes the datapath.
    assert!(client_daemon.terminate(), "client daemon ignored SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = responder.cli(&["status"]).unwrap();
        if text.contains("IKE SAs\n  (none)") {
            break;
        }
        assert!(Instant::now() < deadline, "share kept the SAs:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let links = client.run(&["ip", "link"]).unwrap();
    assert!(!links.contains("ibmipsec0"), "TUN left behind:\n{links}");
}

#[test]
fn wrong_psk_and_silent_peer_fail_with_one_clear_line() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let psk = psk_file(lab.dir(), "psk", "the right key").unwrap();
    let wrong = psk_file(lab.dir(), "wrong", "not the right key").unwrap();
    let share_ip = share.addr().to_string();
    let _responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let client_daemon = Ours::start(&client, &[]).unwrap();

    let err = client_daemon
        .cli(&["up", &share_ip, "--psk-file", wrong.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "IKE with {share_ip} failed: AUTHENTICATION_FAILED from peer"
        )),
        "{err}"
    );
    let text = client_daemon.cli(&["status"]).unwrap();
    assert!(text.contains("IKE SAs\n  (none)"), "{text}");

    // A PSK file others can read is refused before anything is sent.
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = client_daemon
        .cli(&["up", &share_ip, "--psk-file", wrong.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");

    // Nobody answers on an address of the link that no host has.
    let silent = Ipv4Addr::from(u32::from(share.addr()) + 50).to_string();
    let started = Instant::now();
    let err = client_daemon
        .cli(&["up", &silent, "--psk-file", psk.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("peer {silent} did not answer IKE_SA_INIT"))
            && err.contains("UDP 500"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rsa4096_certificates_authenticate_both_daemons_and_identities_are_checked() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let pki = TestPki::generate(&lab.dir().join("pki")).unwrap();
    let share_ip = share.addr().to_string();
    let mut responder_args = pki.daemon_args(&pki.share).unwrap();
    responder_args.extend(["--listen".to_owned(), share_ip.clone()]);
    let responder = Ours::start(&share, &strs(&responder_args)).unwrap();
    let client_daemon = Ours::start(&client, &[]).unwrap();
    let capture = Capture::start(&client, "lab0", "udp port 500 or udp port 4500").unwrap();
    let up = |remote_id: &str| {
        let mut args = vec!["up".to_owned(), share_ip.clone()];
        args.extend(pki.daemon_args(&pki.client).unwrap());
        args.extend(["--remote-id".to_owned(), remote_id.to_owned()]);
        client_daemon.cli(&strs(&args))
    };

    // The peer claims a DN other than the one required: refused before any SA exists.
    let err = up("C=US, O=Elsewhere, CN=not-the-share")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not the configured"), "{err}");

    let line = up(&pki.share.subject).unwrap();
    eprintln!("{line}");
    assert!(line.contains(" up in "), "{line}");
    assert!(
        line.contains(&format!("peer DN \"{}\"", pki.share.subject)),
        "{line}"
    );
    let ping = client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("2 received"), "{ping}");
    transfer(&client, &share, 5002, 256 << 10).unwrap();
    let share_status = responder.cli(&["status"]).unwrap();
    assert!(share_status.contains("established"), "{share_status}");

    // RSA-4096 chains do not fit 1280 bytes: IKE_AUTH travelled in RFC 7383 fragments
    // (payload type 53, SKF) on port 4500.
    let packets = capture.finish().unwrap();
    let fragments = packets
        .iter()
        .filter_map(|p| p.ike())
        .filter(|(h, _)| h.exchange == 35 && h.next_payload == 53)
        .count();
    assert!(
        fragments >= 4,
        "expected fragmented IKE_AUTH, saw {fragments} SKF messages"
    );
}

#[test]
fn lifetimes_rekey_child_and_ike_sa_without_losing_a_ping() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let psk = psk_file(lab.dir(), "psk", "rekey me").unwrap();
    let share_ip = share.addr().to_string();
    let responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let client_daemon = Ours::start(&client, &[]).unwrap();
    let line = client_daemon
        .cli(&[
            "up",
            &share_ip,
            "--psk-file",
            psk.to_str().unwrap(),
            "--rekey-seconds",
            "10",
        ])
        .unwrap();
    let first_spi = line
        .split("SPIs in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_owned();
    let first_ike = line
        .split("IKE aes256-sha384-ecp384 SPIs ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();

    // 15 s of pings every 50 ms span the rekeys (at 9-10 s): none may be lost.
    let ping = client
        .run(&["ping", "-c", "300", "-i", "0.05", "-W", "1", &share_ip])
        .unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    let log = client_daemon.log();
    assert!(log.contains("CHILD_SA rekeyed"), "{log}");
    assert!(log.contains("IKE SA rekeyed"), "{log}");

    let json = client_daemon.cli(&["status", "--json"]).unwrap();
    assert!(
        !json.contains(&first_spi),
        "old CHILD_SA still listed: {json}"
    );
    assert!(json.contains("\"state\": \"established\""), "{json}");
    let spi_i = first_ike.split('/').next().unwrap();
    assert!(!json.contains(spi_i), "IKE SA not replaced: {json}");
    assert_eq!(json.matches("\"spi_in\"").count(), 1, "{json}");
    transfer(&client, &share, 5003, 512 << 10).unwrap();
    let again = client_daemon.cli(&["up", &share_ip]).unwrap();
    assert!(
        again.contains("already up") && !again.contains(&first_spi),
        "{again}"
    );

    // The file server deletes the SAs: the client holds its traffic (nothing in clear) and
    // the held pings bring new SAs up (strongSwan's `start_action = trap`).
    let before = client_daemon.cli(&["status", "--json"]).unwrap();
    let capture = Capture::start(&client, "lab0", "").unwrap();
    let client_ip = client.addr().to_string();
    let out = responder.cli(&["down", &client_ip]).unwrap();
    assert!(out.contains("SAs deleted"), "{out}");
    // Pings during the gap may be lost, never sent in clear.
    let _ = client.run(&["ping", "-c", "30", "-i", "0.1", "-W", "1", &share_ip]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let renewed = loop {
        let json = client_daemon.cli(&["status", "--json"]).unwrap();
        let spi = json
            .split("\"spi_in\": \"")
            .nth(1)
            .map(|s| s[..8].to_owned());
        if json.contains("\"state\": \"established\"")
            && spi
                .as_ref()
                .is_some_and(|spi| !before.contains(spi.as_str()))
        {
            break json;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not re-establish:\n{json}\n{}",
            client_daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ping = client
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("3 received"), "{ping}\n{renewed}");
    let hosts = [client.addr(), share.addr()];
    for p in capture.finish().unwrap() {
        if hosts.contains(&p.src) && hosts.contains(&p.dst) {
            assert!(
                p.udp_kind().is_some(),
                "cleartext while the SAs were re-negotiated: protocol {} {} -> {} at {:?}, \
                 starting {:02x?}\n{}",
                p.protocol,
                p.src,
                p.dst,
                p.time,
                &p.payload[..p.payload.len().min(8)],
                client_daemon.log()
            );
        }
    }
    assert!(
        client_daemon
            .log()
            .contains("re-initiating the lost IKE SA"),
        "{}",
        client_daemon.log()
    );

    // `down` deletes the SAs on both sides; traffic then flows without ESP.
    let out = client_daemon.cli(&["down", &share_ip]).unwrap();
    assert!(out.contains(&format!("{share_ip}: SAs deleted")), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = client_daemon.cli(&["status"]).unwrap();
        let s = responder.cli(&["status"]).unwrap();
        if c.contains("IKE SAs\n  (none)") && s.contains("IKE SAs\n  (none)") {
            break;
        }
        assert!(Instant::now() < deadline, "SAs left after down:\n{c}\n{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ping = client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("2 received"), "{ping}");
    let err = client_daemon
        .cli(&["down", &share_ip])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("no IKE SA with {share_ip}")), "{err}");

    // `up` while the SAs of a `down` are still being deleted (the file server is stopped, so
    // the DELETE waits for its first retransmission) waits for the deletion, then comes up.
    let up = ["up", &share_ip, "--psk-file", psk.to_str().unwrap()];
    let first = client_daemon.cli(&up).unwrap();
    let responder_pid = responder.pid().unwrap().to_string();
    let signal = move |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &responder_pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig}");
    };
    signal("-STOP");
    let out = client_daemon.cli(&["down", &share_ip]).unwrap();
    assert!(out.contains("SAs deleted"), "{out}");
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        signal("-CONT");
    });
    let again = client_daemon.cli(&up);
    resume.join().unwrap();
    let again =
        again.unwrap_or_else(|e| panic!("up right after down: {e}\n{}", client_daemon.log()));
    assert!(
        again.contains(": up in ") && !again.contains("already up") && again != first,
        "{first}\n{again}"
    );
    let ping = client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("2 received"), "{ping}");
}

//! Liveness from ESP traffic, end to end (RFC 7296 §2.4): two of our daemons in network
//! namespaces (PSK, UDP encapsulation forced as IBM configures it), the client pinging the
//! file server. While ESP flows both ways, neither daemon sends a liveness check (an empty
//! INFORMATIONAL request) although DPD is due every 30 s on the quiet IKE SA; once the pings
//! stop, DPD comes back within 30 s plus the daemons' 5 s counter poll. No NAT is in the
//! path, so forced encapsulation must not produce NAT-T keepalives either.
//!
//! Runs as root (CI does); elsewhere it skips with the reason.

use std::time::Duration;

use ibm_ipsec_tests::pcap::{ike_messages, Packet, UdpKind};
use ibm_ipsec_tests::{psk_file, Capture, Lab, Ours};

/// Liveness checks (INFORMATIONAL requests, which nothing else sends here) by source.
fn dpd_requests(packets: &[Packet]) -> Vec<&Packet> {
    ike_messages(packets)
        .into_iter()
        .filter(|(_, h)| h.exchange_name() == "INFORMATIONAL" && !h.is_response())
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn esp_traffic_keeps_dpd_quiet_and_dpd_returns_when_it_stops() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let psk = psk_file(lab.dir(), "psk", "alive and well").unwrap();
    let share_ip = share.addr().to_string();

    let responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let initiator = Ours::start(&client, &["--psk-file", psk.to_str().unwrap()]).unwrap();
    let capture = Capture::start(&client, "lab0", "udp port 4500").unwrap();
    initiator.up(share.addr(), &[]).unwrap();

    // 40 s of pings, 5 per second: longer than the 30 s DPD delay.
    let ping = client
        .run(&["ping", "-c", "200", "-i", "0.2", "-W", "1", &share_ip])
        .unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    let pings_done = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Idle: DPD is due 30 s after the last ESP packet the daemons saw (counters are polled
    // every 5 s).
    std::thread::sleep(Duration::from_secs(38));
    let packets = capture.finish().unwrap();
    let logs = format!(
        "initiator:\n{}\nresponder:\n{}",
        initiator.log(),
        responder.log()
    );

    let esp = packets
        .iter()
        .filter(|p| matches!(p.udp_kind(), Some(UdpKind::Esp(_))))
        .count();
    assert!(esp >= 400, "{esp} ESP packets for 200 pings");
    let dpd = dpd_requests(&packets);
    let during: Vec<_> = dpd.iter().filter(|p| p.time < pings_done).collect();
    assert!(
        during.is_empty(),
        "liveness checks while ESP flowed: {during:?}\n{logs}"
    );
    let after: Vec<Duration> = dpd
        .iter()
        .filter(|p| p.time >= pings_done)
        .map(|p| p.time - pings_done)
        .collect();
    assert!(
        !after.is_empty(),
        "no liveness check in the 38 s after the traffic stopped\n{logs}"
    );
    assert!(
        after[0] >= Duration::from_secs(25) && after[0] <= Duration::from_secs(37),
        "first liveness check {:?} after the last ping\n{logs}",
        after[0]
    );
    // Both daemons still hold their SAs, and nobody pretended to be behind a NAT.
    assert_eq!(
        initiator.status().unwrap().established_with(share.addr()),
        1
    );
    for ours in [&initiator, &responder] {
        let status = ours.status().unwrap();
        for row in status.ike_sas() {
            assert_eq!(row["behind_nat"], false, "{row:#}");
        }
    }
    let keepalives = packets
        .iter()
        .filter(|p| p.udp_kind() == Some(UdpKind::Keepalive))
        .count();
    assert_eq!(keepalives, 0, "NAT-T keepalives without a NAT");
}

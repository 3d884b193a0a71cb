//! Scenario: the client sits behind a NAT (a third namespace that masquerades the client's
//! private subnet with nft) and brings up a transport-mode CHILD_SA with our responder on
//! `share` (RFC 7296 §2.23.1). The client knows only its private address and proposes it;
//! the responder sees the NAT's address and substitutes it, so both daemons install SAs that
//! match the packets they really see, and pings cross the NAT in ESP-in-UDP. The client's
//! daemon reports itself behind the NAT; the responder does not. Then the NAT changes the
//! client's mapping (UDP mappings that expire after 1 s, a new port range): the client's next
//! authenticated message (its IKE rekey) makes the responder follow the new port (§2.23) and
//! rekey the CHILD_SA, and pings cross again.
//!
//! TCP and UDP cross too, in both directions: their checksums cover the sender's addresses
//! before the NAT (RFC 3948 §3.1.2), so each datapath must deliver what ESP authenticated
//! without the stack re-verifying a checksum over the addresses it rebuilt.
//!
//! Needs root, `nft` and the `ibm-ipsec` binary; without root it prints why it skipped.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ibm_ipsec_tests::traffic::{spawn_in, transfer};
use ibm_ipsec_tests::{cli, psk_file, wait_until, Detached, Host, Lab, LabError, Ours};

const LAN_NAT: &str = "192.168.77.1";
const LAN_CLIENT: &str = "192.168.77.2";

/// `client` behind `nat` (masquerading onto the link to `share`): the three hosts and the
/// NAT's outside interface.
fn nat_lab(lab: &Lab) -> (Host, Host, Host, String) {
    let nat = lab.host("nat").unwrap();
    let share = lab.host("share").unwrap();
    let client = lab.host("client").unwrap();
    let wan = lab.link(&nat, &share).unwrap();
    // The client's private side, joined to the NAT by hand (a lab link gives one address
    // per host, and the NAT needs two).
    nat.run(&[
        "ip",
        "link",
        "add",
        "lan",
        "type",
        "veth",
        "peer",
        "name",
        "lan",
        "netns",
        client.namespace(),
    ])
    .unwrap();
    nat.run(&["ip", "addr", "add", &format!("{LAN_NAT}/24"), "dev", "lan"])
        .unwrap();
    nat.run(&["ip", "link", "set", "lan", "up"]).unwrap();
    client
        .run(&[
            "ip",
            "addr",
            "add",
            &format!("{LAN_CLIENT}/24"),
            "dev",
            "lan",
        ])
        .unwrap();
    client.run(&["ip", "link", "set", "lan", "up"]).unwrap();
    client
        .run(&["ip", "route", "add", "default", "via", LAN_NAT])
        .unwrap();
    nat.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    nat.run(&["nft", "add", "table", "ip", "lab"]).unwrap();
    nat.run(&[
        "nft",
        "add",
        "chain",
        "ip",
        "lab",
        "post",
        "{ type nat hook postrouting priority 100 ; }",
    ])
    .unwrap();
    nat.run(&[
        "nft",
        "add",
        "rule",
        "ip",
        "lab",
        "post",
        "oifname",
        &wan,
        "masquerade",
    ])
    .unwrap();

    (nat, share, client, wan)
}

#[test]
fn a_client_behind_a_nat_gets_a_transport_mode_sa_from_our_responder() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (nat, share, client, _) = nat_lab(&lab);
    let psk = psk_file(lab.dir(), "psk", "behind the masquerade").unwrap();
    let responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let share_ip = share.addr().to_string();
    let client_control = lab.dir().join("run/client.sock");
    let line = cli(
        &client,
        &client_control,
        &["up", &share_ip, "--psk-file", psk.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}\nresponder:\n{}", responder.log()));
    let client_daemon = Detached::of(&client, &client_control).unwrap();
    assert!(line.contains("ESP aes256gcm16 transport"), "{line}");

    let ping = client
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("3 received"), "{ping}");

    // The responder's SAs are with the NAT's address, which its datapath sees; the client's
    // with the share, from its private address.
    let share_status = responder.status().unwrap();
    assert_eq!(
        share_status.established_with(nat.addr()),
        1,
        "{:?}",
        share_status.0
    );
    assert!(share_status.child_counter(nat.addr(), "packets_in") >= 3);
    let children = share_status.children_with(nat.addr());
    assert_eq!(
        children[0]["selectors"],
        format!("{share_ip}/32 === {}/32", nat.addr()),
        "the client's private address was replaced by the NAT's"
    );
    let client_status = client_daemon.status().unwrap();
    assert_eq!(client_status.established_with(share.addr()), 1);
    let ike = |s: &ibm_ipsec_tests::Status| s.ike_sas().first().map(|v| (*v).clone());
    let client_ike = ike(&client_status).unwrap();
    let share_ike = ike(&share_status).unwrap();
    assert_eq!(client_ike["behind_nat"], true, "{client_ike}");
    assert_eq!(share_ike["behind_nat"], false, "{share_ike}");

    // TCP, checked byte for byte both ways (large writes coalesce on the share, small
    // segments and ACKs travel alone), then UDP both ways.
    let report = transfer(&client, &share, 5201, 4 << 20).unwrap_or_else(|e| {
        panic!(
            "{e}\nshare: {}\nclient: {}\nresponder:\n{}",
            share
                .run(&["nstat", "-az", "TcpInCsumErrors"])
                .unwrap_or_default(),
            client
                .run(&["nstat", "-az", "TcpInCsumErrors"])
                .unwrap_or_default(),
            responder.log()
        )
    });
    assert_eq!(report.bytes, 4 << 20);
    udp_echo(&client, &share, 5202);

    // The NAT really translated: conntrack holds the client's ESP-in-UDP flow.
    std::thread::sleep(Duration::from_millis(100));
    let flows = nat
        .run(&["cat", "/proc/net/nf_conntrack"])
        .unwrap_or_default();
    if !flows.is_empty() {
        assert!(flows.contains(&format!("src={LAN_CLIENT}")), "{flows}");
    }
}

/// Sends datagrams of several sizes from `from` to a UDP echo server on `to` and checks
/// every echo.
fn udp_echo(from: &Host, to: &Host, port: u16) {
    let addr = SocketAddr::from((to.addr(), port));
    let io = move |e: std::io::Error| LabError::Traffic(format!("udp {addr}: {e}"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sizes = [1usize, 100, 1200];
    let server = spawn_in(to, move || {
        let s = UdpSocket::bind(addr).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io)?;
        let _ = ready_tx.send(());
        let mut buf = [0u8; 4096];
        for _ in sizes {
            let (n, peer) = s.recv_from(&mut buf).map_err(io)?;
            s.send_to(&buf[..n], peer).map_err(io)?;
        }
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("udp server ready");
    let client = spawn_in(from, move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(io)?;
        let mut buf = [0u8; 4096];
        for (i, size) in sizes.into_iter().enumerate() {
            let sent: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            s.send_to(&sent, addr).map_err(io)?;
            let (n, _) = s.recv_from(&mut buf).map_err(io)?;
            if buf[..n] != sent[..] {
                return Err(LabError::Traffic(format!("echo of {size} bytes differs")));
            }
        }
        Ok(())
    });
    let client = client.join().expect("udp client thread");
    let server = server.join().expect("udp server thread");
    client.unwrap_or_else(|e| {
        panic!(
            "{e}\nserver: {server:?}\nUdpInCsumErrors: {}",
            to.run(&["nstat", "-az", "UdpInCsumErrors"])
                .unwrap_or_default()
        )
    });
    server.unwrap();
}

#[test]
fn a_changed_nat_mapping_is_followed_by_our_responder() {
    let Some(lab) = Lab::require_root() else {
        return;
    };
    let (nat, share, client, wan) = nat_lab(&lab);
    // UDP mappings die after 1 s of silence; plain masquerade keeps the client's port 4500,
    // so until the rule changes a new mapping is the same as the old one.
    for key in [
        "nf_conntrack_udp_timeout",
        "nf_conntrack_udp_timeout_stream",
    ] {
        nat.run(&["sysctl", "-qw", &format!("net.netfilter.{key}=1")])
            .unwrap();
    }
    let psk = psk_file(lab.dir(), "psk", "behind the masquerade").unwrap();
    let responder = Ours::psk_responder(&share, &psk, &[]).unwrap();
    let share_ip = share.addr().to_string();
    let client_control = lab.dir().join("run/client.sock");
    // The client rekeys its IKE SA after 10 s: an authenticated request that crosses the
    // NAT after its mapping changed.
    cli(
        &client,
        &client_control,
        &[
            "up",
            &share_ip,
            "--psk-file",
            psk.to_str().unwrap(),
            "--ike-rekey-seconds",
            "10",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\nresponder:\n{}", responder.log()));
    let _client_daemon = Detached::of(&client, &client_control).unwrap();
    let ping = client
        .run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(ping.contains("2 received"), "{ping}");

    // The NAT now maps the client's UDP to ports 40000-40100.
    nat.run(&["nft", "flush", "chain", "ip", "lab", "post"])
        .unwrap();
    nat.run(&[
        "nft",
        "add",
        "rule",
        "ip",
        "lab",
        "post",
        "oifname",
        &wan,
        "meta",
        "l4proto",
        "udp",
        "masquerade",
        "to",
        ":40000-40100",
    ])
    .unwrap();
    // The responder follows the client's new port once the IKE rekey arrives from it, and
    // rekeys the CHILD_SA so that its ESP goes to the new port.
    wait_until(
        "the responder to follow the NAT",
        Duration::from_secs(30),
        || responder.log().contains("peer's NAT mapping changed"),
    )
    .unwrap_or_else(|e| panic!("{e}\nresponder:\n{}", responder.log()));
    wait_until("the CHILD_SA rekey", Duration::from_secs(10), || {
        responder.log().contains("CHILD_SA rekeyed")
    })
    .unwrap_or_else(|e| panic!("{e}\nresponder:\n{}", responder.log()));
    let flows = nat
        .run(&["cat", "/proc/net/nf_conntrack"])
        .unwrap_or_default();
    let ping = client
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &share_ip])
        .unwrap();
    assert!(
        ping.contains("3 received"),
        "{ping}\nconntrack:\n{flows}\nresponder:\n{}",
        responder.log()
    );
    if !flows.is_empty() {
        assert!(flows.contains("sport=4500 dport=4500"), "{flows}");
        assert!(
            flows.contains("dport=400") || flows.contains("dport=401"),
            "{flows}"
        );
    }
}

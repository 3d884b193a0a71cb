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
//! Only ICMP is checked: TCP and UDP through the NAT need the transport-mode checksum fixup
//! of RFC 3948 §3.1.2 in the userspace datapath (the NAT rewrote the address the checksum
//! covers), which it does not do yet.
//!
//! Needs root, `nft` and the `ibm-ipsec` binary; without root it prints why it skipped.

use std::time::Duration;

use ibm_ipsec_tests::{cli, psk_file, wait_until, Detached, Host, Lab, Ours};

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

    // The NAT really translated: conntrack holds the client's ESP-in-UDP flow.
    std::thread::sleep(Duration::from_millis(100));
    let flows = nat
        .run(&["cat", "/proc/net/nf_conntrack"])
        .unwrap_or_default();
    if !flows.is_empty() {
        assert!(flows.contains(&format!("src={LAN_CLIENT}")), "{flows}");
    }
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

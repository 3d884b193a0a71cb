//! Interop with real strongSwan (issue 8): our daemon against charon 5.9.8, each in its own
//! network namespace, both ways round. strongSwan's userspace ESP (kernel-libipsec: this
//! kernel has no ESP transform) only does tunnel mode, so data runs host-to-host in tunnel mode,
//! ESP in UDP 4500 (`encap = yes`), our userspace datapath on our side. Every scenario checks
//! both ends: `swanctl --list-sas` and charon's log on one, `ibm-ipsec status --json` and the
//! CLI's exit on the other, plus the wire (tcpdump).
//!
//! 1. `ibm-ipsec up` → strongSwan responder: RSA-4096 chain, metadata-style client
//!    certificate (no CN, SAN only, 1 h), IKE fragmentation, IBM proposal then x25519, ECP-256
//!    and MODP-2048; ping and a TCP transfer checked byte for byte, counted by charon.
//! 2. strongSwan initiator → `ibm-ipsec daemon --listen`: the same checks.
//! 3. transport mode requested from a tunnel-only strongSwan: a clear refusal, no half state.
//! 4. PSK authentication both ways.
//! 5. rekeys (CHILD_SA and IKE SA) by either side, DPD and DELETE with seconds-long lifetimes
//!    while a paced transfer runs.
//! 6. certificate renewal: our identity from the metadata test server (20 s certificates),
//!    reauthenticated make-before-break after each renewal under a paced transfer and pings,
//!    against charon with each uniqueness policy (`unique = no | replace | keep`).
//! 7. bad peers (wrong CA, expired certificate, wrong identity): refused, reported on both
//!    sides, no SA left behind.
//!
//! Our responder runs `--mode tunnel` here: it answers with its configured mode, like
//! strongSwan's responder.
//!
//! Needs root, strongSwan (scripts/install-deps) and the `ibm-ipsec` binary (`cargo build
//! --bin ibm-ipsec`, or `cargo test --workspace`); without root each test says why it skipped.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ibm_ipsec_tests::pcap::{
    cleartext_packets, esp_bytes, exchange_summary, ike_messages, Packet, UdpKind, NAT_T_PORT,
};
use ibm_ipsec_tests::{
    ping, psk_file, str_field, strs, transfer, Auth, Capture, Config, Connection, Host, Identity,
    IkeSa, Lab, Lifetimes, MetadataServer, Ours, StrongSwan, TestPki, Transfer, TransferSpec,
};

const PSK: &str = "ibm-ipsec interop pre-shared key";
const CLIENT_ID: &str = "client.ibm-ipsec.test";
const SHARE_ID: &str = "share.ibm-ipsec.test";
/// Payload type of an IKE fragment (RFC 7383 §2.5).
const SKF: u8 = 53;
const WAIT: Duration = Duration::from_secs(10);

/// A lab of two hosts and, for certificate scenarios, the test PKI.
struct Interop {
    lab: Lab,
    client: Host,
    share: Host,
}

impl Interop {
    fn new() -> Option<Interop> {
        let lab = Lab::require_root()?;
        let (client, share) = lab.two_hosts().unwrap();
        Some(Interop { lab, client, share })
    }

    fn pki(&self) -> TestPki {
        TestPki::generate(&self.lab.dir().join("pki")).unwrap()
    }

    /// A 0600 file holding `key`, as the daemon demands of PSK files.
    fn psk_file(&self, name: &str, key: &str) -> PathBuf {
        psk_file(self.lab.dir(), name, key).unwrap()
    }

    /// charon's side of a certificate connection (IBM proposals) authenticating with
    /// `identity` and accepting any peer certificate that chains to a loaded CA: on `share`
    /// (the responder) if `on_share`, else on `client` (the initiator).
    fn cert_conn(&self, identity: &Identity, on_share: bool) -> Connection {
        let (local, remote) = if on_share {
            (&self.share, &self.client)
        } else {
            (&self.client, &self.share)
        };
        Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::cert(identity),
            Auth::any_cert(),
        )
    }

    /// charon's side of a PSK connection as the responder on `share` (SHARE_ID, requiring
    /// CLIENT_ID).
    fn psk_responder_conn(&self) -> Connection {
        Connection::psk(
            "nfs",
            self.share.addr(),
            self.client.addr(),
            SHARE_ID,
            CLIENT_ID,
        )
    }

    /// charon's side of a PSK connection as the initiator on `client`.
    fn psk_initiator_conn(&self) -> Connection {
        Connection::psk(
            "nfs",
            self.client.addr(),
            self.share.addr(),
            CLIENT_ID,
            SHARE_ID,
        )
    }

    /// Our responder on `share` (tunnel mode, userspace datapath), authenticating with the
    /// PSK in `psk` as SHARE_ID and requiring CLIENT_ID, with `extra` daemon arguments.
    fn our_psk_responder(&self, psk: &Path, extra: &[&str]) -> Ours {
        let mut args = vec![
            "--mode",
            "tunnel",
            "--datapath",
            "userspace",
            "--local-id",
            SHARE_ID,
            "--remote-id",
            CLIENT_ID,
        ];
        args.extend_from_slice(extra);
        Ours::psk_responder(&self.share, psk, &args).unwrap()
    }
}

/// `up` arguments of our PSK client (CLIENT_ID, requiring SHARE_ID) in `mode`, plus `extra`.
fn psk_up(psk: &Path, mode: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--psk-file",
        &s(psk),
        "--local-id",
        CLIENT_ID,
        "--remote-id",
        SHARE_ID,
        "--mode",
        mode,
    ]
    .map(str::to_owned)
    .into();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `--cert CHAIN --key KEY --ca ROOT` for one of the PKI's identities.
fn cert_args(pki: &TestPki, identity: &Identity) -> Vec<String> {
    pki.daemon_args(identity).unwrap()
}

/// charon configured with `identity` and trusting the PKI.
fn cert_config(pki: &TestPki, identity: &Identity, connection: Connection) -> Config {
    Config::default()
        .identity(identity)
        .ca(&pki.root.cert)
        .ca(&pki.intermediate.cert)
        .connection(connection)
}

fn psk_config(connection: Connection) -> Config {
    Config::default()
        .psk(&[CLIENT_ID, SHARE_ID], PSK)
        .connection(connection)
}

/// The one established IKE SA charon has, with an installed CHILD_SA.
fn established(charon: &StrongSwan) -> IkeSa {
    let sas = charon
        .wait_for_sas("an IKE SA with an installed CHILD_SA", WAIT, |sas| {
            sas.len() == 1
                && sas[0].state() == "ESTABLISHED"
                && sas[0].children.iter().any(|c| c.state() == "INSTALLED")
        })
        .unwrap();
    sas.into_iter().next().unwrap()
}

/// What both ends and the wire must show once a CHILD_SA is up between `ours` (on `our_host`)
/// and `charon`: ping and a byte-for-byte TCP transfer from the client to the share, counted
/// by charon and by our daemon, nothing but IKE and ESP in UDP 4500 on the wire.
fn check_traffic(
    interop: &Interop,
    ours: &Ours,
    our_host: &Host,
    charon: &StrongSwan,
    port: u16,
) -> Vec<Packet> {
    let Interop { client, share, .. } = interop;
    let peer = if our_host.addr() == client.addr() {
        share.addr()
    } else {
        client.addr()
    };
    let before = established(charon);
    let capture = Capture::start(share, "lab0", "").unwrap();
    let p = ping(client, share.addr(), 3, Duration::from_millis(100)).unwrap();
    assert_eq!(p.received, 3, "ping through the tunnel:\n{}", p.output);
    let bytes = 1024 * 1024 + 17;
    let report = transfer(client, share, port, bytes).unwrap();
    assert_eq!(report.bytes, bytes);
    let packets = capture.finish().unwrap();

    assert!(
        cleartext_packets(&packets).is_empty(),
        "traffic went around the tunnel: {:?}",
        cleartext_packets(&packets).first()
    );
    assert!(
        packets.iter().all(|p| p.protocol != 50),
        "raw ESP although encapsulation is forced"
    );
    assert!(
        packets
            .iter()
            .filter(|p| p.ports.is_some())
            .all(|p| p.ports == Some((NAT_T_PORT, NAT_T_PORT))),
        "ESP and IKE on 4500 only"
    );
    // ESP bytes, not packets: our sender's UDP GSO shows up as 64 KiB super-packets
    for (from, to) in [(client, share), (share, client)] {
        let esp = esp_bytes(&packets, from.addr(), to.addr());
        assert!(
            esp >= bytes,
            "{} → {}: {esp} bytes of ESP for a {bytes}-byte transfer",
            from.addr(),
            to.addr()
        );
    }

    let after = established(charon);
    let (charon_in, charon_out) = if charon.host().addr() == share.addr() {
        ("bytes-in", "bytes-out")
    } else {
        ("bytes-out", "bytes-in")
    };
    // the echo makes both directions carry the transfer
    let delta = |key: &str| child_bytes(&after, key).saturating_sub(child_bytes(&before, key));
    assert!(
        delta(charon_in) >= bytes,
        "charon counted the client's data: {after:#?}"
    );
    assert!(
        delta(charon_out) >= bytes,
        "charon counted the echo: {after:#?}"
    );
    let status = ours.status().unwrap();
    assert_eq!(status.established_with(peer), 1, "{:#}", status.0);
    assert!(
        status.child_counter(peer, "bytes_in") >= bytes
            && status.child_counter(peer, "bytes_out") >= bytes,
        "our counters: {:#}",
        status.0
    );
    packets
}

fn child_bytes(sa: &IkeSa, key: &str) -> u64 {
    sa.children.iter().filter_map(|c| c.counter(key)).sum()
}

/// IKE_AUTH went in at least two fragments each way (RSA-4096 chains are > 1280 bytes).
fn assert_fragmented_auth(packets: &[Packet]) {
    let summary = exchange_summary(packets);
    for response in [false, true] {
        let fragments = ike_messages(packets)
            .iter()
            .filter(|(_, h)| h.exchange == 35 && h.is_response() == response)
            .filter(|(_, h)| h.next_payload == SKF)
            .count();
        assert!(
            fragments >= 2,
            "IKE_AUTH {} not fragmented: {summary:#?}",
            if response { "response" } else { "request" }
        );
    }
}

/// Our CHILD_SA with `peer` is in tunnel mode.
fn assert_our_tunnel(ours: &Ours, peer: Ipv4Addr) {
    let status = ours.status().unwrap();
    let children = status.children_with(peer);
    assert!(!children.is_empty(), "{:#}", status.0);
    for c in children {
        assert_eq!(str_field(c, "mode"), Some("tunnel"), "{c:#}");
    }
}

/// Scenario 1: `ibm-ipsec up` against a strongSwan responder with RSA-4096 certificates, the
/// IBM proposal, then x25519, ECP-256 and MODP-2048 (each after an INVALID_KE_PAYLOAD retry:
/// we lead with ECP-384's key share).
#[test]
fn ours_up_to_strongswan_responder_with_rsa4096_certificates() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let pki = interop.pki();
    let responder_conn = |proposals: &str| {
        interop
            .cert_conn(&pki.share, true)
            .with_proposals(proposals)
    };
    let charon = StrongSwan::start(
        share,
        cert_config(&pki, &pki.share, responder_conn("aes256-sha384-ecp384")),
    )
    .unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    let mut up_args = strs(&cert_args(&pki, &pki.client))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    up_args.extend(["--mode".into(), "tunnel".into()]);

    let capture = Capture::start(share, "lab0", "udp port 500 or udp port 4500").unwrap();
    ours.up(share.addr(), &strs(&up_args))
        .unwrap_or_else(|e| panic!("up: {e}\ncharon:\n{}", charon.log()));
    let handshake = capture.finish().unwrap();
    assert_fragmented_auth(&handshake);

    let sa = established(&charon);
    assert_eq!(
        sa.suite(),
        "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384"
    );
    assert_eq!(
        sa.get("remote-id"),
        Some(pki.client.subject.as_str()),
        "we authenticate as the certificate's subject DN (no CN)"
    );
    assert_eq!(sa.get("remote-port"), Some("4500"));
    let child = &sa.children[0];
    assert_eq!(
        (child.get("mode"), child.get("encap"), child.get("encr-alg")),
        (Some("TUNNEL"), Some("yes"), Some("AES_GCM_16"))
    );
    assert_our_tunnel(&ours, share.addr());
    check_traffic(&interop, &ours, client, &charon, 5401);

    for (proposals, group) in [
        ("aes256gcm16-prfsha256-x25519", "CURVE_25519"),
        ("aes256gcm16-prfsha384-ecp256", "ECP_256"),
        ("aes256gcm16-prfsha256-modp2048", "MODP_2048"),
    ] {
        ours.down(share.addr()).unwrap();
        charon
            .wait_for_sas("SA deleted by our DELETE", WAIT, <[_]>::is_empty)
            .unwrap();
        charon
            .load(&cert_config(&pki, &pki.share, responder_conn(proposals)))
            .unwrap();
        ours.up(share.addr(), &strs(&up_args))
            .unwrap_or_else(|e| panic!("up with {proposals}: {e}\ncharon:\n{}", charon.log()));
        let sa = established(&charon);
        assert_eq!(sa.get("dh-group"), Some(group), "{sa:#?}");
        let p = ping(client, share.addr(), 2, Duration::from_millis(100)).unwrap();
        assert_eq!(p.received, 2, "{proposals}: {}", p.output);
        // we lead with ECP-384's key share; charon asked for its group and we retried
        assert!(
            charon.log().contains(&format!(
                "DH group ECP_384 unacceptable, requesting {group}"
            )),
            "{proposals}: INVALID_KE_PAYLOAD round trip expected:\n{}",
            charon.log()
        );
    }
}

/// Scenario 2: a strongSwan initiator with the metadata-style certificate against our
/// responder, the IBM proposal, then x25519, ECP-256 and MODP-2048.
#[test]
fn strongswan_initiator_to_our_responder_with_rsa4096_certificates() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let pki = interop.pki();
    let listen = share.addr().to_string();
    let mut daemon_args = vec![
        "--listen".to_owned(),
        listen,
        "--mode".into(),
        "tunnel".into(),
        "--datapath".into(),
        "userspace".into(),
    ];
    daemon_args.extend(cert_args(&pki, &pki.share));
    let ours = Ours::start(share, &strs(&daemon_args)).unwrap();
    let initiator_conn = |proposals: &str| {
        interop
            .cert_conn(&pki.client, false)
            .with_proposals(proposals)
    };
    let charon = StrongSwan::start(
        client,
        cert_config(&pki, &pki.client, initiator_conn("aes256-sha384-ecp384")),
    )
    .unwrap();

    let capture = Capture::start(share, "lab0", "udp port 500 or udp port 4500").unwrap();
    charon
        .initiate("nfs")
        .unwrap_or_else(|e| panic!("initiate: {e}\nours:\n{}", ours.log()));
    let handshake = capture.finish().unwrap();
    assert_fragmented_auth(&handshake);

    let sa = established(&charon);
    assert_eq!(
        sa.suite(),
        "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384"
    );
    assert_eq!(sa.get("remote-id"), Some(pki.share.subject.as_str()));
    assert_eq!(sa.children[0].get("mode"), Some("TUNNEL"));
    assert_our_tunnel(&ours, client.addr());
    check_traffic(&interop, &ours, share, &charon, 5402);

    for (proposals, group) in [
        ("aes256gcm16-prfsha256-x25519", "CURVE_25519"),
        ("aes256gcm16-prfsha384-ecp256", "ECP_256"),
        ("aes256gcm16-prfsha256-modp2048", "MODP_2048"),
    ] {
        charon.terminate_ike("nfs").unwrap();
        ours.wait_for_status("our SA deleted by charon's DELETE", WAIT, |s| s.is_empty())
            .unwrap();
        charon
            .load(&cert_config(&pki, &pki.client, initiator_conn(proposals)))
            .unwrap();
        charon
            .initiate("nfs")
            .unwrap_or_else(|e| panic!("{proposals}: {e}\nours:\n{}", ours.log()));
        let sa = established(&charon);
        assert_eq!(sa.get("dh-group"), Some(group), "{sa:#?}");
        let p = ping(client, share.addr(), 2, Duration::from_millis(100)).unwrap();
        assert_eq!(p.received, 2, "{proposals}: {}", p.output);
    }
}

/// Scenario 3: we ask for transport mode; strongSwan either answers in tunnel mode (its
/// child says tunnel) or refuses (its child says transport, which kernel-libipsec cannot
/// install). Either way `up` fails saying why, and neither side keeps a CHILD_SA.
#[test]
fn transport_mode_against_tunnel_only_strongswan_is_refused_without_half_state() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let conn = |mode: &str| interop.psk_responder_conn().with_mode(mode);
    let charon = StrongSwan::start(share, psk_config(conn("tunnel"))).unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    let up = |ours: &Ours| {
        ours.up(
            share.addr(),
            &strs(&psk_up(&psk, "transport", &["--timeout", "10"])),
        )
    };
    for (charon_mode, expected) in [
        ("tunnel", "tunnel mode"),
        ("transport", "no proposal chosen"),
    ] {
        charon.load(&psk_config(conn(charon_mode))).unwrap();
        let err = up(&ours)
            .expect_err("a tunnel-only peer cannot give us transport mode")
            .to_string();
        assert!(
            err.to_lowercase().contains(expected),
            "charon child mode {charon_mode}: `up` must say why ({expected}):\n{err}"
        );
        // no CHILD_SA anywhere: charon's (if it installed one) was deleted by us
        let sas = charon
            .wait_for_sas("no CHILD_SA left at charon", WAIT, |sas| {
                sas.iter().all(|sa| sa.children.is_empty())
            })
            .unwrap_or_else(|e| panic!("{charon_mode}: {e}"));
        let status = ours
            .wait_for_status("no CHILD_SA left with us", WAIT, |s| {
                s.children_with(share.addr()).is_empty()
            })
            .unwrap();
        eprintln!(
            "transport vs {charon_mode}: up said {err:?}; charon keeps {} IKE SA(s), we keep {}",
            sas.len(),
            status.ike_sas().len()
        );
        ours.down(share.addr()).ok();
        charon
            .wait_for_sas("clean slate", WAIT, <[_]>::is_empty)
            .unwrap();
    }
    assert!(
        charon.log().contains("unsupported mode"),
        "kernel-libipsec refused transport:\n{}",
        charon.log()
    );
}

/// Scenario 4a: PSK, `ibm-ipsec up` → strongSwan responder.
#[test]
fn psk_ours_up_to_strongswan_responder() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let charon = StrongSwan::start(share, psk_config(interop.psk_responder_conn())).unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    ours.up(share.addr(), &strs(&psk_up(&psk, "tunnel", &[])))
        .unwrap_or_else(|e| panic!("up: {e}\ncharon:\n{}", charon.log()));
    let sa = established(&charon);
    assert_eq!(sa.get("remote-id"), Some(CLIENT_ID));
    check_traffic(&interop, &ours, client, &charon, 5403);
    // a wrong key is refused by charon and reported by `up`
    ours.down(share.addr()).unwrap();
    let wrong = interop.psk_file("wrong-psk", "not the shared key");
    let err = ours
        .up(
            share.addr(),
            &strs(&psk_up(&wrong, "tunnel", &["--timeout", "10"])),
        )
        .expect_err("wrong PSK")
        .to_string();
    assert!(err.contains("AUTHENTICATION_FAILED"), "{err}");
    charon
        .wait_for_sas("charon keeps nothing", WAIT, <[_]>::is_empty)
        .unwrap();
    assert!(
        ours.status().unwrap().is_empty(),
        "{:#}",
        ours.status().unwrap().0
    );
}

/// Scenario 4b: PSK, strongSwan initiator → our responder.
#[test]
fn psk_strongswan_initiator_to_our_responder() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let ours = interop.our_psk_responder(&psk, &[]);
    let conn = interop.psk_initiator_conn();
    let charon = StrongSwan::start(client, psk_config(conn.clone())).unwrap();
    charon
        .initiate("nfs")
        .unwrap_or_else(|e| panic!("initiate: {e}\nours:\n{}", ours.log()));
    let sa = established(&charon);
    assert_eq!(sa.get("remote-id"), Some(SHARE_ID));
    check_traffic(&interop, &ours, share, &charon, 5404);

    // a wrong key: we refuse with AUTHENTICATION_FAILED, charon reports it
    charon.terminate_ike("nfs").unwrap();
    ours.wait_for_status("SA gone", WAIT, |s| s.is_empty())
        .unwrap();
    charon
        .load(
            &Config::default()
                .psk(&[CLIENT_ID, SHARE_ID], "not the shared key")
                .connection(conn),
        )
        .unwrap();
    let err = charon.initiate("nfs").expect_err("wrong PSK").to_string();
    assert!(err.contains("AUTHENTICATION_FAILED"), "{err}");
    ours.wait_for_status("we keep nothing", WAIT, |s| s.is_empty())
        .unwrap();
}

/// Scenario 5a: charon as responder with lifetimes of seconds rekeys the CHILD_SA and the IKE
/// SA and sends DPD while a paced transfer runs through our initiator's tunnel; then DELETE
/// from charon, and DELETE from us.
#[test]
fn strongswan_responder_rekeys_and_dpd_under_transfer_then_deletes_each_side() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let lifetimes = Lifetimes {
        ike_rekey: Some(Duration::from_secs(5)),
        child_rekey: Some(Duration::from_secs(3)),
        dpd_delay: Some(Duration::from_secs(1)),
    };
    let charon = StrongSwan::start(
        share,
        psk_config(interop.psk_responder_conn().with_lifetimes(lifetimes)),
    )
    .unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    let up_args = psk_up(&psk, "tunnel", &[]);
    ours.up(share.addr(), &strs(&up_args))
        .unwrap_or_else(|e| panic!("up: {e}\ncharon:\n{}", charon.log()));
    let first = established(&charon);
    rekeys_under_transfer(&interop, &charon, &ours, &first, client, 5405);

    // DELETE from charon: we drop the SAs and say so
    charon.terminate_ike("nfs").unwrap();
    ours.wait_for_status("our SAs deleted by charon's DELETE", WAIT, |s| s.is_empty())
        .unwrap();
    // DELETE from us
    ours.up(share.addr(), &strs(&up_args)).unwrap();
    established(&charon);
    ours.down(share.addr()).unwrap();
    charon
        .wait_for_sas("charon's SAs deleted by our DELETE", WAIT, <[_]>::is_empty)
        .unwrap();
    assert!(ours.status().unwrap().is_empty());
}

/// Scenario 5b: the same with charon as the initiator and us as the responder.
#[test]
fn strongswan_initiator_rekeys_and_dpd_under_transfer_then_deletes_each_side() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let ours = interop.our_psk_responder(&psk, &[]);
    let lifetimes = Lifetimes {
        ike_rekey: Some(Duration::from_secs(5)),
        child_rekey: Some(Duration::from_secs(3)),
        dpd_delay: Some(Duration::from_secs(1)),
    };
    let charon = StrongSwan::start(
        client,
        psk_config(interop.psk_initiator_conn().with_lifetimes(lifetimes)),
    )
    .unwrap();
    charon
        .initiate("nfs")
        .unwrap_or_else(|e| panic!("initiate: {e}\nours:\n{}", ours.log()));
    let first = established(&charon);
    rekeys_under_transfer(&interop, &charon, &ours, &first, share, 5406);

    // DELETE from us (the responder)
    ours.down(client.addr()).unwrap();
    charon
        .wait_for_sas("charon's SAs deleted by our DELETE", WAIT, <[_]>::is_empty)
        .unwrap();
    // DELETE from charon
    charon.initiate("nfs").unwrap();
    established(&charon);
    charon.terminate_ike("nfs").unwrap();
    ours.wait_for_status("our SAs deleted by charon's DELETE", WAIT, |s| s.is_empty())
        .unwrap();
}

/// Scenario 5c: our side rekeys. `up --rekey-seconds 10` against a charon responder with its
/// default (hour-long) lifetimes: within a 13-second paced transfer our daemon rekeys the
/// CHILD_SA and the IKE SA (strongSwan-style jitter: between 9 and 10 s), charon follows, and
/// every byte arrives.
#[test]
fn ours_up_rekeys_child_and_ike_sa_under_transfer() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let charon = StrongSwan::start(share, psk_config(interop.psk_responder_conn())).unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    let capture = Capture::start(share, "lab0", "").unwrap();
    ours.up(
        share.addr(),
        &strs(&psk_up(&psk, "tunnel", &["--rekey-seconds", "10"])),
    )
    .unwrap_or_else(|e| panic!("up: {e}\ncharon:\n{}", charon.log()));
    our_rekeys_under_transfer(&interop, &charon, &ours, client, capture, 5407);
}

/// Scenario 5d: our responder rekeys. `daemon --listen --rekey-seconds 10` answering a charon
/// initiator with default lifetimes: within a 13-second paced transfer our daemon rekeys the
/// CHILD_SA and the IKE SA it did not create, charon follows, every byte arrives.
#[test]
fn our_responder_rekeys_child_and_ike_sa_under_transfer() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let psk = interop.psk_file("psk", PSK);
    let ours = interop.our_psk_responder(&psk, &["--rekey-seconds", "10"]);
    let charon = StrongSwan::start(client, psk_config(interop.psk_initiator_conn())).unwrap();
    let capture = Capture::start(share, "lab0", "").unwrap();
    charon
        .initiate("nfs")
        .unwrap_or_else(|e| panic!("initiate: {e}\nours:\n{}", ours.log()));
    our_rekeys_under_transfer(&interop, &charon, &ours, share, capture, 5408);
}

/// A 13-second paced transfer from client to share across the rekeys our daemon (on
/// `our_host`, `--rekey-seconds 10`) makes of the CHILD_SA and the IKE SA; charon follows.
fn our_rekeys_under_transfer(
    interop: &Interop,
    charon: &StrongSwan,
    ours: &Ours,
    our_host: &Host,
    capture: Capture,
    port: u16,
) {
    let Interop { client, share, .. } = interop;
    let peer = if our_host.addr() == client.addr() {
        share.addr()
    } else {
        client.addr()
    };
    let first = established(charon);
    let ike_spi = first.get("initiator-spi").unwrap().to_owned();
    let child_spi = first.children[0].get("spi-in").unwrap().to_owned();
    let bytes = 6 * 1024 * 1024;
    let report = Transfer::start(
        client,
        share,
        TransferSpec::new(port, bytes).lasting(Duration::from_secs(13)),
    )
    .unwrap()
    .finish()
    .unwrap_or_else(|e| {
        panic!(
            "transfer across our rekeys: {e}\nours:\n{}\ncharon:\n{}",
            ours.log(),
            charon.log()
        )
    });
    assert_eq!(report.bytes, bytes);
    let packets = capture.finish().unwrap();
    assert!(
        cleartext_packets(&packets).is_empty(),
        "traffic around the tunnel during the rekeys: {:?}",
        cleartext_packets(&packets).first()
    );
    let rekeys_by_us = ike_messages(&packets)
        .iter()
        .filter(|(p, h)| h.exchange == 36 && !h.is_response() && p.src == our_host.addr())
        .count();
    assert!(
        rekeys_by_us >= 2,
        "we rekeyed the CHILD_SA and the IKE SA: {:#?}",
        exchange_summary(&packets)
    );
    let after = established(charon);
    assert_ne!(
        after.get("initiator-spi"),
        Some(ike_spi.as_str()),
        "IKE SA rekeyed: {after:#?}\ncharon:\n{}",
        charon.log()
    );
    assert!(
        after
            .children
            .iter()
            .filter(|c| c.state() == "INSTALLED")
            .all(|c| c.get("spi-in") != Some(child_spi.as_str())),
        "CHILD_SA rekeyed: {after:#?}"
    );
    assert_eq!(charon.list_sas().unwrap().len(), 1, "old IKE SA deleted");
    let status = ours.status().unwrap();
    assert_eq!(status.established_with(peer), 1, "{:#}", status.0);
    let p = ping(client, share.addr(), 2, Duration::from_millis(100)).unwrap();
    assert_eq!(p.received, 2, "after our rekeys: {}", p.output);
}

/// An 8-second paced transfer from client to share while charon (3 s CHILD_SA, 5 s IKE SA,
/// 1 s DPD) rekeys; every byte must arrive and come back, and both SAs must have new SPIs.
fn rekeys_under_transfer(
    interop: &Interop,
    charon: &StrongSwan,
    ours: &Ours,
    first: &IkeSa,
    our_host: &Host,
    port: u16,
) {
    let Interop { client, share, .. } = interop;
    let peer = if our_host.addr() == client.addr() {
        share.addr()
    } else {
        client.addr()
    };
    let child_spi = first.children[0].get("spi-in").unwrap().to_owned();
    let ike_spi = first.get("initiator-spi").unwrap().to_owned();
    let capture = Capture::start(share, "lab0", "").unwrap();
    let bytes = 8 * 1024 * 1024;
    let report = Transfer::start(
        client,
        share,
        TransferSpec::new(port, bytes).lasting(Duration::from_secs(8)),
    )
    .unwrap()
    .finish()
    .unwrap_or_else(|e| panic!("transfer across rekeys: {e}\nours:\n{}", ours.log()));
    assert_eq!(report.bytes, bytes);
    let packets = capture.finish().unwrap();
    assert!(
        cleartext_packets(&packets).is_empty(),
        "traffic around the tunnel during the rekeys: {} packets, first {:?}",
        cleartext_packets(&packets).len(),
        cleartext_packets(&packets).first()
    );
    let summary = exchange_summary(&packets);
    let charon_addr = charon.host().addr();
    let rekeys_by_charon = ike_messages(&packets)
        .iter()
        .filter(|(p, h)| h.exchange == 36 && !h.is_response() && p.src == charon_addr)
        .count();
    assert!(
        rekeys_by_charon >= 3,
        "charon rekeyed the CHILD_SA twice and the IKE SA once in 8 s: {summary:#?}"
    );
    let after = established(charon);
    assert_ne!(
        after.get("initiator-spi"),
        Some(ike_spi.as_str()),
        "IKE SA rekeyed: {after:#?}\ncharon:\n{}\nours:\n{}",
        charon.log(),
        ours.log()
    );
    assert!(
        after
            .children
            .iter()
            .all(|c| c.get("spi-in") != Some(child_spi.as_str())),
        "CHILD_SA rekeyed: {after:#?}"
    );
    let sas = charon.list_sas().unwrap();
    assert_eq!(sas.len(), 1, "old IKE SA deleted after the rekey: {sas:#?}");
    let status = ours.status().unwrap();
    assert_eq!(status.established_with(peer), 1, "{:#}", status.0);
    let installed = status.children_with(peer).len();
    assert!(
        installed >= 1,
        "we follow the rekeys with an installed CHILD_SA: {:#}",
        status.0
    );
    // DPD: with 1 s of silence (no IKE, no ESP) charon asks whether we are alive, and we
    // answer, or it would tear the SA down
    let idle = Capture::start(share, "lab0", "udp port 500 or udp port 4500").unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let packets = idle.finish().unwrap();
    let informational = |from: Ipv4Addr, response: bool| {
        ike_messages(&packets)
            .iter()
            .filter(|(p, h)| h.exchange == 37 && h.is_response() == response && p.src == from)
            .count()
    };
    let our_addr = our_host.addr();
    assert!(
        informational(charon_addr, false) >= 1 && informational(our_addr, true) >= 1,
        "charon's DPD answered while idle: {:#?}\ncharon:\n{}",
        exchange_summary(&packets),
        charon.log()
    );
    assert!(
        charon.log().contains("sending DPD request"),
        "{}",
        charon.log()
    );
    established(charon);
    let p = ping(client, share.addr(), 2, Duration::from_millis(100)).unwrap();
    assert_eq!(p.received, 2, "after the rekeys: {}", p.output);
}

/// A leaf under the good CA but for another name: the wrong-identity peer.
fn intruder(pki: &TestPki) -> Identity {
    let now = SystemTime::now();
    pki.issue(
        "intruder",
        "/C=US/O=ibm-ipsec test/CN=intruder.ibm-ipsec.test",
        Some("intruder.ibm-ipsec.test"),
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    )
    .unwrap()
}

fn expired(pki: &TestPki) -> Identity {
    let now = SystemTime::now();
    pki.issue(
        "expired",
        "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group",
        Some("client.ibm-ipsec.test"),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    )
    .unwrap()
}

/// One refusal case of scenario 7 with our initiator: what `up` is given, what charon
/// presents, and what charon's log must say about it.
struct Refusal<'a> {
    name: &'a str,
    ours: Vec<String>,
    charon: Identity,
    charon_says: &'a str,
}

/// The credentials scenario 7 plays with: the good PKI, a foreign one, and two bad leaves.
struct BadPeers {
    pki: TestPki,
    foreign: TestPki,
    intruder: Identity,
    expired: Identity,
}

impl BadPeers {
    fn new(interop: &Interop) -> BadPeers {
        let pki = interop.pki();
        let foreign = TestPki::generate_foreign(&interop.lab.dir().join("foreign")).unwrap();
        BadPeers {
            intruder: intruder(&pki),
            expired: expired(&pki),
            pki,
            foreign,
        }
    }

    /// `up` arguments with our good certificate, requiring charon to be the share.
    fn good_client(&self) -> Vec<String> {
        let mut args = cert_args(&self.pki, &self.pki.client);
        args.extend([
            "--mode".into(),
            "tunnel".into(),
            "--remote-id".into(),
            self.pki.share.subject.clone(),
        ]);
        args
    }
}

/// Runs refusal cases of our initiator against one charon responder (reloaded per case):
/// `up` fails naming the authentication failure, charon logs its side, nobody keeps an SA.
fn refusals_of_ours_up(interop: &Interop, bad: &BadPeers, cases: Vec<Refusal<'_>>) {
    let Interop { client, share, .. } = interop;
    // one identity per load: the foreign PKI's files carry the same names as the good one's
    let responder =
        |identity: &Identity| cert_config(&bad.pki, identity, interop.cert_conn(identity, true));
    let charon = StrongSwan::start(share, responder(&bad.pki.share)).unwrap();
    let ours = Ours::start(client, &["--datapath", "userspace"]).unwrap();
    for case in cases {
        charon.load(&responder(&case.charon)).unwrap();
        let mut args = strs(&case.ours);
        args.extend(["--timeout", "10"]);
        let err = ours
            .up(share.addr(), &args)
            .expect_err(case.name)
            .to_string();
        eprintln!(
            "{}: `up` said: {}",
            case.name,
            err.lines().last().unwrap_or("")
        );
        assert!(
            err.contains("AUTHENTICATION_FAILED") || err.to_lowercase().contains("authenticat"),
            "{}: `up` must report the authentication failure:\n{err}",
            case.name
        );
        ours.wait_for_status("we keep no SA", WAIT, |s| s.is_empty())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        charon
            .wait_for_sas("charon keeps no SA", WAIT, <[_]>::is_empty)
            .unwrap_or_else(|e| panic!("{}: {e}\ncharon:\n{}", case.name, charon.log()));
        charon
            .wait_for_log(case.charon_says, WAIT)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

/// Scenario 7a: our certificate from a foreign CA and our expired certificate are refused by
/// a charon responder with AUTHENTICATION_FAILED; `up` reports it, charon logs why, and
/// nobody keeps an SA.
#[test]
fn bad_credentials_of_ours_up_are_refused_by_strongswan() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let bad = BadPeers::new(&interop);
    let mut foreign_client = vec![
        "--cert".to_owned(),
        s(&bad.foreign.chain_file(&bad.foreign.client).unwrap()),
        "--key".into(),
        s(&bad.foreign.client.key),
        "--ca".into(),
        s(&bad.pki.root.cert),
    ];
    foreign_client.extend(["--mode".into(), "tunnel".into()]);
    let mut expired_client = cert_args(&bad.pki, &bad.expired);
    expired_client.extend(["--mode".into(), "tunnel".into()]);
    let cases = vec![
        Refusal {
            name: "our certificate from a foreign CA",
            ours: foreign_client,
            charon: bad.pki.share.clone(),
            charon_says: "no trusted RSA public key found",
        },
        Refusal {
            name: "our expired certificate",
            ours: expired_client,
            charon: bad.pki.share.clone(),
            charon_says: "subject certificate invalid (valid from",
        },
    ];
    refusals_of_ours_up(&interop, &bad, cases);
}

/// Scenario 7a, the other way: charon presents a certificate from a foreign CA, or one for
/// another identity than `--remote-id`; `up` refuses it, and tells charon so (RFC 7296
/// §2.21.2: an INFORMATIONAL request carrying AUTHENTICATION_FAILED, which is what charon's
/// own initiator sends and what makes a charon responder delete its IKE SA), so charon keeps
/// no established SA.
#[test]
fn bad_strongswan_responders_are_refused_by_ours_up() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let bad = BadPeers::new(&interop);
    let cases = vec![
        Refusal {
            name: "charon's certificate from a foreign CA",
            ours: bad.good_client(),
            charon: bad.foreign.share.clone(),
            charon_says: "N(AUTH_FAILED) ]",
        },
        Refusal {
            name: "charon's certificate for another identity",
            ours: bad.good_client(),
            charon: bad.intruder.clone(),
            charon_says: "N(AUTH_FAILED) ]",
        },
    ];
    refusals_of_ours_up(&interop, &bad, cases);
}

/// Scenario 7b: bad strongSwan initiators against our responder: a foreign-CA, an expired and
/// a wrong-identity client certificate are refused with AUTHENTICATION_FAILED, which charon
/// reports; we keep no SA.
#[test]
fn bad_strongswan_initiators_are_refused_by_our_responder() {
    let Some(interop) = Interop::new() else {
        return;
    };
    let Interop { client, share, .. } = &interop;
    let BadPeers {
        pki,
        foreign,
        intruder,
        expired,
    } = BadPeers::new(&interop);
    let listen = share.addr().to_string();
    let mut daemon_args = vec![
        "--listen".to_owned(),
        listen,
        "--mode".into(),
        "tunnel".into(),
        "--datapath".into(),
        "userspace".into(),
        "--remote-id".into(),
        pki.client.subject.clone(),
    ];
    daemon_args.extend(cert_args(&pki, &pki.share));
    let ours = Ours::start(share, &strs(&daemon_args)).unwrap();
    let initiator =
        |identity: &Identity| cert_config(&pki, identity, interop.cert_conn(identity, false));
    let charon = StrongSwan::start(client, initiator(&pki.client)).unwrap();
    // the good certificate works, so the refusals below are about the certificates
    charon
        .initiate("nfs")
        .unwrap_or_else(|e| panic!("good initiator: {e}\nours:\n{}", ours.log()));
    charon.terminate_ike("nfs").unwrap();
    for (name, identity) in [
        ("foreign CA", foreign.client.clone()),
        ("expired", expired),
        ("wrong identity", intruder),
    ] {
        charon.load(&initiator(&identity)).unwrap();
        let err = charon.initiate("nfs").expect_err(name).to_string();
        assert!(err.contains("AUTHENTICATION_FAILED"), "{name}: {err}");
        charon
            .wait_for_sas("charon keeps no SA", WAIT, <[_]>::is_empty)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ours.wait_for_status("we keep no SA", WAIT, |s| s.is_empty())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let log = ours.log();
    assert!(
        log.to_lowercase().contains("authenticat") || log.contains("certificate"),
        "our daemon says why it refused:\n{log}"
    );
}

/// How long the metadata test server's certificates live in scenario 6. The daemon renews at
/// 70-75 % of that and reauthenticates right after, so two renewals fall within ~1.5 lifetimes
/// of the first certificate (production lifetimes are 5 min to 1 h; this is a test switch).
const RENEWAL_LIFETIME: Duration = Duration::from_secs(20);

/// Scenario 6: our daemon takes its identity from the metadata test server (20 s
/// certificates), comes up with a charon responder, and a paced TCP transfer (byte for byte)
/// plus a ping every 20 ms run across two renewals, each followed by a make-before-break
/// reauthentication (RFC 7296 §2.8.3). Run against three charons at once, one per
/// uniqueness policy (`connections.<conn>.unique`):
///
/// - `no` (swanctl's default) keeps duplicates unless the new IKE SA carries INITIAL_CONTACT;
/// - `replace` (ipsec.conf's default `uniqueids = yes`, what a file server configured the
///   legacy way runs) deletes the older duplicate, but for a new IKE SA from the *same
///   address* charon 5.9.8 suspects a reauthentication and only schedules that delete 10 s
///   later ("schedule delete of duplicate IKE_SA … suspected reauthentication");
/// - `keep` refuses a duplicate from another address, and lets one from the same address
///   through as a potential reauthentication.
///
/// So none of them breaks make-before-break from our side, because our reauthentication
/// sends no INITIAL_CONTACT and comes from the same address: with INITIAL_CONTACT, charon
/// would destroy the old IKE SA and its CHILD_SAs (without a DELETE) under every policy but
/// `never`, before the new CHILD_SA exists. Each run asserts: zero lost pings, every byte
/// back, charon established a new IKE SA per renewal before our DELETE of the old one came,
/// verified each renewed certificate (its notAfter is in charon's certificate cache), and at
/// the end exactly one IKE SA and one CHILD_SA remain on both sides, the same one.
#[test]
fn renewed_certificates_reauthenticate_to_strongswan_without_loss() {
    let labs: Vec<(&str, Interop)> = ["no", "replace", "keep"]
        .into_iter()
        .map_while(|unique| Interop::new().map(|lab| (unique, lab)))
        .collect();
    if labs.len() < 3 {
        return;
    }
    let started = std::time::Instant::now();
    let runs: Vec<_> = labs
        .into_iter()
        .map(|(unique, interop)| {
            std::thread::Builder::new()
                .name(format!("unique={unique}"))
                .spawn(move || renewals_against_charon(&interop, unique))
                .unwrap()
        })
        .collect();
    for run in runs {
        let summary = run
            .join()
            .expect("a renewal run failed (its panic is above)");
        eprintln!("{summary}");
    }
    eprintln!("scenario 6 took {:?}", started.elapsed());
}

/// What one side showed while sampled during scenario 6.
#[derive(Default)]
struct RenewalSeen {
    /// notAfter of our identity certificate, each one the daemon held.
    own_not_after: BTreeSet<u64>,
    /// Initiator SPIs of the IKE SAs charon listed.
    charon_spis: BTreeSet<String>,
    /// The most IKE SAs charon listed at once.
    charon_most: usize,
}

/// One scenario 6 run against a charon with `unique = <unique>`; returns a summary line.
fn renewals_against_charon(interop: &Interop, unique: &str) -> String {
    let Interop { lab, client, share } = interop;
    let metadata =
        MetadataServer::start(client, &lab.dir().join("metadata"), Some(RENEWAL_LIFETIME)).unwrap();
    let root = metadata.root_ca();
    let share_id = metadata
        .issue_peer(lab.dir(), "share", share.addr())
        .unwrap();
    let charon = StrongSwan::start(
        share,
        Config::default()
            .identity(&share_id.identity)
            .ca(&root)
            .ca(&metadata.intermediate_ca(lab.dir()).unwrap())
            .connection(
                interop
                    .cert_conn(&share_id.identity, true)
                    .with_option(&format!("unique = {unique}")),
            ),
    )
    .unwrap();
    let conf = metadata.client_conf(&lab.dir().join("client"), "").unwrap();
    let ours = Ours::start(client, &["--config", &s(&conf), "--datapath", "userspace"]).unwrap();
    let identity = ours
        .wait_for_status("the first identity certificate", 30 * WAIT / 10, |s| {
            s.0["identity"]["not_after_unix"].as_u64().is_some()
        })
        .unwrap();
    let first_not_after = identity.0["identity"]["not_after_unix"].as_u64().unwrap();
    let subject = identity.0["identity"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    ours.up(share.addr(), &["--ca", &s(&root), "--mode", "tunnel"])
        .unwrap_or_else(|e| panic!("up: {e}\ncharon:\n{}", charon.log()));
    established(&charon);

    // Traffic until 4 s after the second renewal (at most 1.5 lifetimes after the first
    // certificate was issued, which was at notAfter - lifetime).
    let issued = first_not_after - RENEWAL_LIFETIME.as_secs();
    let until = issued + RENEWAL_LIFETIME.as_secs() * 3 / 2 + 4;
    let lasting = Duration::from_secs(until.saturating_sub(unix_now())).max(WAIT);
    let pings = u32::try_from(lasting.as_millis() / 20).unwrap();
    let bytes = 3 * 1024 * 1024;
    let capture = Capture::start(client, "lab0", "udp port 4500").unwrap();
    let transfer = Transfer::start(
        client,
        share,
        TransferSpec::new(5409, bytes).lasting(lasting),
    )
    .unwrap();
    let pinger = {
        let client = client.clone();
        let to = share.addr();
        std::thread::spawn(move || ping(&client, to, pings, Duration::from_millis(20)))
    };
    let mut seen = RenewalSeen::default();
    while !(pinger.is_finished() && transfer.is_finished()) {
        if let Ok(status) = ours.status() {
            if let Some(n) = status.0["identity"]["not_after_unix"].as_u64() {
                seen.own_not_after.insert(n);
            }
        }
        if let Ok(sas) = charon.list_sas() {
            seen.charon_most = seen.charon_most.max(sas.len());
            seen.charon_spis.extend(
                sas.iter()
                    .filter_map(|sa| sa.get("initiator-spi").map(str::to_owned)),
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let ping = pinger.join().unwrap().unwrap();
    let report = transfer.finish().unwrap_or_else(|e| {
        panic!(
            "transfer across the renewals: {e}\nours:\n{}\ncharon:\n{}",
            ours.log(),
            charon.log()
        )
    });
    let packets = capture.finish().unwrap();
    let log = charon.log();
    let ours_log = ours.log();

    // No loss at all. Charon, as the responder, installs the new CHILD_SA in and out before
    // it sends its IKE_AUTH response and sends on it from then on, before our daemon has
    // the response; our datapath holds ESP on the SPI we announced until the SA is in
    // (`esp::datapath::SpiAnnouncer`), so those early packets — counted from the capture
    // for the report — are delivered too. Every ping must be answered, the slowest within
    // 1 s, and the transfer must deliver every byte there and back.
    let early = early_esp_on_new_sas(&packets, share.addr(), client.addr());
    let early_replies: usize = early.iter().map(|e| e.echo_replies).sum();
    let lost = usize::try_from(ping.transmitted - ping.received).unwrap();
    assert_eq!(
        lost, 0,
        "{lost} pings lost (charon sent {early_replies} echo replies on a new SA before we \
         installed it: {early:?}):\n{}\nours:\n{ours_log}\ncharon:\n{log}",
        ping.output
    );
    let slowest = max_rtt_ms(&ping.output);
    assert!(slowest < 1000.0, "a ping stalled {slowest} ms");
    assert_eq!(report.bytes, bytes);

    // Two renewals, each reauthenticated: charon established a new IKE SA per renewal ...
    let renewals = seen.own_not_after.len().saturating_sub(1);
    assert!(
        renewals >= 2,
        "two renewals expected, saw certificates {:?}\n{ours_log}",
        seen.own_not_after
    );
    assert!(
        ours_log.matches("IKE SA reauthenticated").count() >= 2,
        "{ours_log}"
    );
    let established_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("IKE_SA nfs[") && l.contains("] established between"))
        .collect();
    assert!(
        established_lines.len() > renewals && seen.charon_spis.len() > renewals,
        "charon established {} IKE SAs (SPIs {:?}) for {renewals} renewals:\n{log}",
        established_lines.len(),
        seen.charon_spis
    );
    // ... before our DELETE of the one it replaces arrived (make-before-break) ...
    for n in 1..=renewals {
        let next_up = log
            .find(&format!("IKE_SA nfs[{}] established", n + 1))
            .unwrap_or_else(|| panic!("IKE SA {} not established:\n{log}", n + 1));
        let old_deleted = log
            .find(&format!("received DELETE for IKE_SA nfs[{n}]"))
            .unwrap_or_else(|| panic!("IKE SA {n} not deleted by us:\n{log}"));
        assert!(
            next_up < old_deleted,
            "IKE SA {} came up after IKE SA {n} was deleted:\n{log}",
            n + 1
        );
    }
    // ... and verified every renewed certificate: each notAfter our daemon held is on a
    // certificate for our subject in charon's cache of verified certificates.
    let charon_not_after: BTreeSet<u64> = charon
        .list_certs()
        .unwrap()
        .iter()
        .filter_map(|der| pki::CertificateInfo::from_der(der).ok())
        .filter(|c| c.subject == subject)
        .map(|c| unix(c.not_after))
        .collect();
    assert!(
        seen.own_not_after.is_subset(&charon_not_after),
        "charon verified certificates ending {charon_not_after:?}, we held {:?}",
        seen.own_not_after
    );
    // The uniqueness policy did what its documentation says, and never refused or tore down
    // a reauthentication.
    assert!(
        !log.contains("canceling IKE_SA setup due to uniqueness policy")
            && !log.contains("destroying duplicate IKE_SA"),
        "{log}"
    );
    let scheduled = log.matches("suspected reauthentication").count();
    if unique == "replace" {
        assert!(scheduled >= renewals, "{log}");
    } else {
        assert_eq!(scheduled, 0, "{log}");
    }

    // No leak: one IKE SA with one CHILD_SA on each side, the same IKE SA.
    let sas = charon
        .wait_for_sas("the old IKE SAs gone", WAIT, |sas| {
            sas.len() == 1 && sas[0].children.len() == 1
        })
        .unwrap_or_else(|e| panic!("{e}\ncharon:\n{log}"));
    let status = ours
        .wait_for_status("one IKE SA and one CHILD_SA", WAIT, |s| {
            s.ike_sas().len() == 1 && s.child_sas().len() == 1
        })
        .unwrap();
    assert_eq!(
        str_field(status.ike_sas()[0], "spi_i"),
        sas[0].get("initiator-spi"),
        "ours {:#}\ncharon {sas:#?}",
        status.0
    );
    format!(
        "unique = {unique}: {renewals} renewals, charon saw {} IKE SAs (at most {} at once), \
         scheduled deletes {scheduled}, {}/{} pings answered (slowest {slowest} ms), {bytes} \
         bytes in {:?}; ESP charon sent on each new SA before we installed it: {:?} packets, \
         {:?} of them echo replies",
        seen.charon_spis.len(),
        seen.charon_most,
        ping.received,
        ping.transmitted,
        report.elapsed,
        early.iter().map(|e| e.packets).collect::<Vec<_>>(),
        early.iter().map(|e| e.echo_replies).collect::<Vec<_>>(),
    )
}

/// Length of an ESP-in-UDP payload carrying one echo reply of `ping`'s default 56 data
/// bytes in tunnel mode with AES-GCM-16: 8 (SPI, sequence) + 8 (IV) + 84 (inner IPv4 +
/// ICMP + data) + 2 (padding to 4 bytes) + 2 (pad length, next header) + 16 (ICV).
const ESP_ECHO_REPLY_LEN: usize = 120;

/// ESP that charon sent on a new SA before our daemon had installed it, as seen arriving at
/// our host.
#[derive(Debug)]
struct EarlyEsp {
    /// Packets on an SA charon had not used before, between our IKE_SA_INIT request that
    /// started a reauthentication and our next INFORMATIONAL request (the DELETE of the old
    /// IKE SA, which the daemon sends right after installing the new CHILD_SA).
    packets: usize,
    /// Of those, the ones the size of an echo reply.
    echo_replies: usize,
}

/// What charon sent on new SAs during each reauthentication in `packets` (captured at our
/// host).
fn early_esp_on_new_sas(packets: &[Packet], charon: Ipv4Addr, ours: Ipv4Addr) -> Vec<EarlyEsp> {
    let esp_spi = |p: &Packet| match p.udp_kind() {
        Some(UdpKind::Esp(esp)) if p.src == charon && p.dst == ours => {
            Some(u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]))
        }
        _ => None,
    };
    let our_request = |p: &Packet, exchange: u8| {
        p.src == ours
            && p.ike()
                .is_some_and(|(h, _)| h.exchange == exchange && !h.is_response())
    };
    let mut found = Vec::new();
    let mut from = 0;
    // 34: IKE_SA_INIT, 37: INFORMATIONAL
    while let Some(init) = packets[from..].iter().position(|p| our_request(p, 34)) {
        let init = from + init;
        let Some(delete) = packets[init..].iter().position(|p| our_request(p, 37)) else {
            break;
        };
        let delete = init + delete;
        let old: BTreeSet<u32> = packets[..init].iter().filter_map(esp_spi).collect();
        let early: Vec<&Packet> = packets[init..delete]
            .iter()
            .filter(|p| esp_spi(p).is_some_and(|spi| !old.contains(&spi)))
            .collect();
        found.push(EarlyEsp {
            packets: early.len(),
            echo_replies: early
                .iter()
                .filter(|p| p.payload.len() == ESP_ECHO_REPLY_LEN)
                .count(),
        });
        from = delete;
    }
    found
}

fn max_rtt_ms(ping_output: &str) -> f64 {
    ping_output
        .split("rtt min/avg/max/mdev = ")
        .nth(1)
        .and_then(|s| s.split('/').nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::INFINITY)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now() -> u64 {
    unix(SystemTime::now())
}

//! The netlink XFRM operations against the running kernel, each test in its own network
//! namespace (root only; skipped with a printed reason otherwise). On a kernel without ESP
//! (this project's CI hosts) SA installs must fail with the translated error and the probe
//! must say so; on a kernel with ESP they must succeed. iproute2 is the oracle for which case
//! applies, and for cross-checking what we installed.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Netns;
use xfrm::monitor::{Event, Monitor};
use xfrm::ownership::reqid;
use xfrm::{
    Crypto, Direction, Error, Kernel, PolicySpec, SaId, SaSpec, Selector, SpiRequest, Unavailable,
    XfrmKernel,
};

fn a() -> IpAddr {
    "10.99.0.1".parse().unwrap()
}
fn b() -> IpAddr {
    "10.99.0.2".parse().unwrap()
}

/// Whether the kernel in `ns` has ESP, according to iproute2.
fn kernel_has_esp(ns: &Netns) -> bool {
    let o = ns.ip(&[
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.10",
        "dst",
        "192.0.2.11",
        "proto",
        "esp",
        "spi",
        "0x7777",
        "mode",
        "transport",
        "enc",
        "cbc(aes)",
        "0x00112233445566778899aabbccddeeff",
        "auth-trunc",
        "hmac(sha256)",
        "0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "128",
    ]);
    if o.status.success() {
        ns.ip_ok(&["xfrm", "state", "flush"]);
        return true;
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("type not found") || err.contains("not supported"),
        "unexpected: {err}"
    );
    false
}

#[test]
fn policies_install_dump_and_delete_only_ours() {
    let Some(ns) = Netns::new("policies") else {
        return;
    };
    // Someone else's policy (an operator's, strongSwan's): reqid 1.
    ns.ip_ok(&[
        "xfrm",
        "policy",
        "add",
        "src",
        "10.7.0.1",
        "dst",
        "10.7.0.2",
        "dir",
        "out",
        "tmpl",
        "src",
        "10.7.0.1",
        "dst",
        "10.7.0.2",
        "proto",
        "esp",
        "reqid",
        "1",
        "mode",
        "transport",
    ]);
    let r = reqid(1);
    let out = PolicySpec::transport(Selector::host_to_host(a(), b()), Direction::Out, r);
    let inb = PolicySpec::transport(Selector::host_to_host(b(), a()), Direction::In, r);
    let tunnel = PolicySpec::tunnel(
        Selector::subnets(
            "10.1.0.0".parse().unwrap(),
            16,
            "10.2.0.0".parse().unwrap(),
            16,
        ),
        Direction::Out,
        a(),
        b(),
        reqid(2),
    );
    ns.run(|| {
        let k = XfrmKernel::open().unwrap();
        k.add_policy(&out).unwrap();
        k.add_policy(&inb).unwrap();
        k.add_policy(&tunnel).unwrap();
        let dup = k.add_policy(&out).unwrap_err();
        assert_eq!(dup.errno(), Some(libc::EEXIST));
        assert!(
            dup.to_string()
                .contains("a policy with this selector and direction exists"),
            "{dup}"
        );
        k.update_policy(&out).unwrap();

        let all = k.policies().unwrap();
        assert_eq!(all.len(), 4, "{all:#?}");
        let ours: Vec<_> = all
            .iter()
            .filter(|p| xfrm::kernel::policy_is_ours(p))
            .collect();
        assert_eq!(ours.len(), 3);
        let got_out = ours
            .iter()
            .find(|p| p.dir == Direction::Out && p.selector == Some(out.selector))
            .unwrap();
        assert_eq!(got_out.templates, out.templates);
        assert_eq!(got_out.priority, out.priority);

        // Our own reqids are refused for foreign policies, and foreign ones are left alone.
        let foreign = all
            .iter()
            .find(|p| !xfrm::kernel::policy_is_ours(p))
            .unwrap();
        let err = k.delete_policy(&foreign.id().unwrap()).unwrap_err();
        assert!(matches!(err, Error::NotOurs("policy")), "{err}");
        let mut bad = out.clone();
        bad.templates[0].reqid = 1;
        assert!(matches!(k.add_policy(&bad), Err(Error::Invalid(_))));

        k.delete_policy(&inb.id()).unwrap();
        let err = k.delete_policy(&inb.id()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
        assert_eq!(k.policies().unwrap().len(), 3);
    });
    // iproute2 sees what we installed.
    let text = ns.ip_ok(&["xfrm", "policy", "list"]);
    assert!(text.contains("src 10.99.0.1/32 dst 10.99.0.2/32"), "{text}");
    assert!(
        text.contains(&format!("reqid {} mode transport", r)),
        "{text}"
    );
    assert!(text.contains("mode tunnel"), "{text}");
    ns.run(|| {
        // A socket with bypass policies (as the daemon's IKE sockets have): kernels that dump
        // socket policies report them with direction + 3; they are decoded and never ours.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        xfrm::socket_policy::bypass_policies(&udp, xfrm::socket_policy::SocketFamily::V4).unwrap();
        let k = XfrmKernel::open().unwrap();
        let listed = k.policies().unwrap();
        assert!(listed
            .iter()
            .filter(|p| p.socket)
            .all(|p| p.templates.is_empty() && p.id().is_none()));
        let f = k.flush_ours().unwrap();
        assert_eq!((f.sas, f.policies), (0, 2));
        let left: Vec<_> = k
            .policies()
            .unwrap()
            .into_iter()
            .filter(|p| !p.socket)
            .collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].templates[0].reqid, 1);
        drop(udp);
    });
}

#[test]
fn probe_matches_what_iproute2_sees() {
    let Some(ns) = Netns::new("probe") else {
        return;
    };
    let has_esp = kernel_has_esp(&ns);
    let report = ns.run(xfrm::probe);
    eprintln!("probe: {report} ({report:?})");
    if has_esp {
        assert!(report.aes_cbc_hmac_sha256.is_ok(), "{report:?}");
    } else {
        assert!(!report.kernel_usable());
        assert_eq!(report.reason(), Some(Unavailable::NoEsp), "{report:?}");
        assert_eq!(
            report.to_string(),
            "kernel ESP unavailable: kernel has no ESP support (esp4 module not loaded and not loadable)"
        );
    }
    // The probe leaves nothing behind.
    assert_eq!(ns.ip_ok(&["xfrm", "state", "list"]).trim(), "");
}

#[test]
fn probe_without_cap_net_admin_says_permission_denied() {
    let Some(ns) = Netns::new("noperm") else {
        return;
    };
    let report = ns.run(|| {
        drop_cap_net_admin();
        xfrm::probe()
    });
    assert_eq!(
        report.reason(),
        Some(Unavailable::PermissionDenied),
        "{report:?}"
    );
    assert_eq!(
        report.to_string(),
        "kernel ESP unavailable: permission denied: CAP_NET_ADMIN needed"
    );
}

/// Clears CAP_NET_ADMIN from this thread's effective set (capabilities are per thread).
fn drop_cap_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as capget(2) documents.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()),
            0
        );
        d[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()),
            0
        );
    }
}

#[test]
fn sa_install_reports_translated_error_or_works() {
    let Some(ns) = Netns::new("sa") else { return };
    let has_esp = kernel_has_esp(&ns);
    let gcm = SaSpec::transport(
        a(),
        b(),
        0x1001,
        reqid(3),
        Crypto::aes_gcm(&[7; 20]).unwrap(),
    );
    let cbc = SaSpec::transport(
        a(),
        b(),
        0x1002,
        reqid(3),
        Crypto::aes_cbc_hmac_sha256(&[1; 16], &[2; 32]).unwrap(),
    );
    ns.run(|| {
        let k = XfrmKernel::open().unwrap();
        if has_esp {
            k.add_sa(&gcm).unwrap();
            k.add_sa(&cbc).unwrap();
            let st = k.get_sa(&gcm.id()).unwrap();
            assert_eq!(st.reqid, reqid(3));
            assert_eq!(st.aead.unwrap().name, "rfc4106(gcm(aes))");
            k.delete_sa(&gcm.id()).unwrap();
            assert_eq!(k.flush_ours().unwrap().sas, 1);
        } else {
            let e = k.add_sa(&cbc).unwrap_err();
            assert_eq!(e.errno(), Some(libc::EPROTONOSUPPORT));
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "add SA: kernel has no ESP support (esp4 module not loaded and not loadable)"
                ),
                "{text}"
            );
            // The kernel's own words come along when it sends an extended ack.
            assert!(text.contains("(kernel: "), "{text}");
            let e = k.add_sa(&gcm).unwrap_err();
            assert!(
                matches!(e.errno(), Some(libc::ENOSYS) | Some(libc::EPROTONOSUPPORT)),
                "{e}"
            );
        }
        // Refused before reaching the kernel.
        let mut foreign = gcm.clone();
        foreign.reqid = 1;
        assert!(matches!(k.add_sa(&foreign), Err(Error::Invalid(_))));
        let e = k.get_sa(&SaId::esp(b(), 0x4444)).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ESRCH), "{e}");
    });
}

#[test]
fn allocate_spi_get_dump_and_flush_only_ours() {
    let Some(ns) = Netns::new("allocspi") else {
        return;
    };
    // A foreign larval SA (reqid 5).
    ns.ip_ok(&[
        "xfrm",
        "state",
        "allocspi",
        "src",
        "10.99.0.2",
        "dst",
        "10.99.0.1",
        "proto",
        "esp",
        "reqid",
        "5",
        "mode",
        "transport",
        "min",
        "0x300",
        "max",
        "0x300",
    ]);
    ns.run(|| {
        let k = XfrmKernel::open().unwrap();
        let mut req = SpiRequest::esp_transport(b(), a(), reqid(4));
        req.min = 0x1000;
        req.max = 0x1fff;
        let spi = k.allocate_spi(&req).unwrap();
        assert!((0x1000..=0x1fff).contains(&spi), "{spi:#x}");
        let spi2 = k.allocate_spi(&req).unwrap();
        assert_ne!(spi, spi2);

        let st = k.get_sa(&SaId::esp(a(), spi)).unwrap();
        assert!(st.is_larval());
        assert_eq!((st.src, st.reqid), (b(), reqid(4)));
        let all = k.sas().unwrap();
        assert_eq!(all.len(), 3, "{all:#?}");

        let err = k.delete_sa(&SaId::esp(a(), 0x300)).unwrap_err();
        assert!(matches!(err, Error::NotOurs("SA")), "{err}");
        k.delete_sa(&SaId::esp(a(), spi2)).unwrap();
        assert_eq!(k.flush_ours().unwrap().sas, 1);
        let left = k.sas().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].id.spi, left[0].reqid), (0x300, 5));
    });
}

#[test]
fn monitor_reports_hard_expire_of_a_larval_sa() {
    let Some(ns) = Netns::new("monitor") else {
        return;
    };
    // Larval SAs from ALLOCSPI live for net.core.xfrm_acq_expires seconds, then the kernel
    // deletes them and multicasts a hard EXPIRE: a real expire without kernel ESP.
    let o = ns.exec(&["sysctl", "-qw", "net.core.xfrm_acq_expires=1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ns.run(|| {
        let mut mon = Monitor::open().unwrap();
        mon.set_timeout(Some(Duration::from_millis(500))).unwrap();
        let k = XfrmKernel::open().unwrap();
        let mut req = SpiRequest::esp_transport(b(), a(), reqid(6));
        req.min = 0x2000;
        req.max = 0x2fff;
        let spi = k.allocate_spi(&req).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no EXPIRE within 10 s");
            let events = match mon.recv() {
                Ok(ev) => ev,
                Err(e) if e.errno() == Some(libc::EAGAIN) => continue,
                Err(e) => panic!("{e}"),
            };
            if let Some(Event::Expire { sa, hard }) = events.into_iter().next() {
                assert!(hard);
                assert_eq!((sa.id.spi, sa.reqid, sa.src), (spi, reqid(6), b()));
                break;
            }
        }
        assert!(k.sas().unwrap().is_empty());
    });
}

/// The child API against the running kernel. Here (no ESP) a whole-child install must fail
/// with the translated error and leave nothing behind; with ESP it must install both SAs and
/// the policies. Either way the policies alone install, refresh (a rekey re-installs them)
/// and `remove_peer` removes exactly ours.
#[test]
fn child_install_is_all_or_nothing_and_remove_peer_is_exact() {
    use xfrm::child::{self, ChildLifetime, ChildPolicies, ChildSaSpec, NatT};
    let Some(ns) = Netns::new("child") else {
        return;
    };
    let esp = kernel_has_esp(&ns);
    // A foreign policy towards the same peer (reqid 1) must survive remove_peer.
    ns.ip_ok(&[
        "xfrm",
        "policy",
        "add",
        "src",
        "10.99.0.1",
        "dst",
        "10.99.0.2",
        "proto",
        "udp",
        "dir",
        "out",
        "tmpl",
        "src",
        "10.99.0.1",
        "dst",
        "10.99.0.2",
        "proto",
        "esp",
        "reqid",
        "1",
        "mode",
        "transport",
    ]);
    let spec = ChildSaSpec {
        policies: ChildPolicies::transport(a(), b(), reqid(77)),
        spi_in: 0x4242_0001,
        spi_out: 0x4242_0002,
        crypto_in: Crypto::aes_gcm(&[1; 36]).unwrap(),
        crypto_out: Crypto::aes_gcm(&[2; 36]).unwrap(),
        replay: xfrm::Replay {
            window: 64,
            esn: true,
        },
        lifetime: ChildLifetime::seconds(3000, 3600, 60).to_config(12345),
        nat_t: Some(NatT::default()),
    };
    ns.run(|| {
        let k = XfrmKernel::open().unwrap();
        match child::install(&k, &spec) {
            Ok(h) => {
                assert!(esp, "install succeeded on a kernel without ESP");
                let c = child::counters(&k, &h).unwrap();
                assert!(c.inbound.is_some() && c.outbound.is_some());
            }
            Err(e) => {
                assert!(!esp, "install failed on a kernel with ESP: {e}");
                assert!(
                    e.to_string().contains("algorithm not available")
                        || e.to_string().contains("no ESP support"),
                    "{e}"
                );
                assert!(k.sas().unwrap().is_empty());
                assert_eq!(k.policies().unwrap().len(), 1, "rollback left policies");
            }
        }
        let created = child::install_policies(&k, &spec.policies).unwrap();
        assert_eq!(created.len(), if esp { 0 } else { 2 });
        // A rekey installs the same policies again: refreshed, not duplicated.
        assert!(child::install_policies(&k, &spec.policies)
            .unwrap()
            .is_empty());
        assert_eq!(k.policies().unwrap().len(), 3);
        let removed = child::remove_peer(&k, b()).unwrap();
        assert_eq!(
            (removed.sas, removed.policies),
            (if esp { 2 } else { 0 }, 2)
        );
        let left = k.policies().unwrap();
        assert_eq!(left.len(), 1);
        assert!(!xfrm::kernel::policy_is_ours(&left[0]));
    });
}

//! Kernel ESP for real: these tests run inside the test VM (Debian's kernel, which has ESP),
//! booted once by `scripts/vm/xfrm-test`, which sets IBM_IPSEC_VM_GUEST=1. Elsewhere they print
//! why they were skipped. Two namespaces joined by a veth pair get transport-mode SAs and
//! policies installed through this crate only (iproute2 just builds the links), then traffic
//! must flow, the SA counters move, a soft EXPIRE arrive, and traffic stop without the SA.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Netns;
use xfrm::lifetime::INFINITE;
use xfrm::monitor::{Event, Monitor};
use xfrm::ownership::reqid;
use xfrm::socket_policy::{bypass_policies, enable_udp_encap, SocketFamily};
use xfrm::{
    Crypto, Direction, Encap, Kernel, LifetimeConfig, PolicySpec, Replay, SaSpec, Selector,
    SpiRequest, XfrmKernel,
};

fn in_guest(test: &str) -> bool {
    if std::env::var_os("IBM_IPSEC_VM_GUEST").is_some() {
        return true;
    }
    eprintln!(
        "skipping {test}: needs a kernel with ESP; runs inside the test VM (scripts/vm/xfrm-test)"
    );
    false
}

fn load_modules() {
    // Built-in on some kernels, modules on Debian's; the kernel would also autoload most.
    let _ = Command::new("modprobe")
        .args([
            "-a",
            "xfrm_user",
            "esp4",
            "veth",
            "seqiv",
            "gcm",
            "ghash_generic",
            "cbc",
            "sha256",
            "hmac",
        ])
        .status();
}

/// Namespaces `a` and `b` joined by veth, with `pa` and `pb` on a /24.
fn pair(tag: &str, pa: &str, pb: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}a")).expect("netns");
    let b = Netns::new(&format!("{tag}b")).expect("netns");
    let (va, vb) = (format!("v{tag}a"), format!("v{tag}b"));
    let o = Command::new("ip")
        .args([
            "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
            &b.name,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    a.ip_ok(&["addr", "add", &format!("{pa}/24"), "dev", &va]);
    b.ip_ok(&["addr", "add", &format!("{pb}/24"), "dev", &vb]);
    a.ip_ok(&["link", "set", &va, "up"]);
    b.ip_ok(&["link", "set", &vb, "up"]);
    (a, b)
}

fn ping(from: &Netns, to: IpAddr, count: &str, wait: &str) -> bool {
    from.exec(&[
        "ping",
        "-c",
        count,
        "-i",
        "0.2",
        "-W",
        wait,
        &to.to_string(),
    ])
    .status
    .success()
}

fn xfrm_stat(ns: &Netns, counter: &str) -> u64 {
    let o = ns.exec(&["cat", "/proc/net/xfrm_stat"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(counter)).then(|| it.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or(0)
}

/// Installs the four SAs and four policies of a host-to-host transport pair, the way the
/// daemon will: inbound SPIs allocated first and filled with UPDSA, outbound SAs added.
fn install_pair(a: &Netns, b: &Netns, ab: &SaSpec, ba: &SaSpec) {
    for (ns, inbound, outbound) in [(a, ba, ab), (b, ab, ba)] {
        let (inbound, outbound) = (inbound.clone(), outbound.clone());
        ns.run(move || {
            let k = XfrmKernel::open().unwrap();
            match k.update_sa(&inbound) {
                Ok(()) => {}
                // An intermittent ESRCH was seen on first cold runs on a heavily loaded host:
                // the larval SA from ALLOCSPI was gone when UPDSA came. The kernel drops a
                // larval SA after net.core.xfrm_acq_expires; xfrm::child::install_inbound
                // answers that with NEWSA of the same SPI, and so does this test, loudly, with
                // what the kernel held, so that a recurrence can be diagnosed from the log:
                // the SPI's age against xfrm_acq_expires says whether expiry explains it
                // (child-scenario step 9 shows the mechanism with a 1 s limit).
                Err(e) if e.errno() == Some(libc::ESRCH) => {
                    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
                    let acq = std::fs::read_to_string("/proc/sys/net/core/xfrm_acq_expires")
                        .unwrap_or_default();
                    let age = allocated_ago(inbound.spi);
                    let verdict = match (age, acq.trim().parse::<u64>()) {
                        (Some(age), Ok(limit)) if age.as_secs() + 1 >= limit => {
                            "consistent with larval SA expiry"
                        }
                        (Some(_), Ok(_)) => "NOT larval SA expiry: allocated too recently",
                        _ => "age or limit unknown",
                    };
                    eprintln!(
                        "WARNING: {e} for a just-allocated SPI: {inbound:?}\nkernel has: {:#?}\n\
                         uptime {uptime} xfrm_acq_expires {acq}; SPI allocated {age:?} ago \
                         ({verdict}); installing with NEWSA",
                        k.sas()
                    );
                    k.add_sa(&inbound).unwrap();
                }
                Err(e) => panic!("{e}: {inbound:?}"),
            }
            k.add_sa(&outbound).unwrap();
            let out_sel = Selector::host_to_host(outbound.src, outbound.dst);
            k.add_policy(&PolicySpec::transport(
                out_sel,
                Direction::Out,
                outbound.reqid,
            ))
            .unwrap();
            let in_sel = Selector::host_to_host(inbound.src, inbound.dst);
            k.add_policy(&PolicySpec::transport(in_sel, Direction::In, inbound.reqid))
                .unwrap();
        });
    }
}

/// When each SPI was allocated, for the ESRCH diagnosis in [`install_pair`].
static ALLOCATED: std::sync::Mutex<Vec<(u32, Instant)>> = std::sync::Mutex::new(Vec::new());

fn allocate(ns: &Netns, src: IpAddr, dst: IpAddr, r: u32) -> u32 {
    let spi = ns.run(move || {
        XfrmKernel::open()
            .unwrap()
            .allocate_spi(&SpiRequest::esp_transport(src, dst, r))
            .unwrap()
    });
    ALLOCATED.lock().unwrap().push((spi, Instant::now()));
    spi
}

/// How long ago `spi` was allocated, if this test allocated it.
fn allocated_ago(spi: u32) -> Option<Duration> {
    let list = ALLOCATED.lock().unwrap();
    list.iter()
        .rev()
        .find(|(s, _)| *s == spi)
        .map(|(_, at)| at.elapsed())
}

fn tcp_transfer(a: &Netns, b: &Netns, to: SocketAddr, len: usize) {
    let listener = b.run(move || TcpListener::bind(to).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let sent: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let payload = sent.clone();
    a.run(move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        c.write_all(&payload).unwrap();
    });
    let got = server.join().unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "TCP payload corrupted");
}

#[test]
fn guest_transport_mode_esp_between_namespaces() {
    if !in_guest("guest_transport_mode_esp_between_namespaces") {
        return;
    }
    let t0 = Instant::now();
    load_modules();
    let (a, b) = pair("t", "10.99.0.1", "10.99.0.2");
    let (pa, pb): (IpAddr, IpAddr) = ("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());

    let report = a.run(xfrm::probe);
    eprintln!("probe in the guest: {report} ({report:?})");
    assert!(
        report.kernel_usable() && report.aes_cbc_hmac_sha256.is_ok(),
        "{report:?}"
    );

    let (r_ab, r_ba) = (reqid(10), reqid(11));
    let spi_ab = allocate(&b, pa, pb, r_ab);
    let spi_ba = allocate(&a, pb, pa, r_ba);
    // a→b: AES-256-GCM with ESN and a 128-packet window, soft limit after 4 KB so the kernel
    // sends a soft EXPIRE during the test. b→a: AES-CBC + HMAC-SHA-256.
    let mut ab = SaSpec::transport(pa, pb, spi_ab, r_ab, Crypto::aes_gcm(&[0x11; 36]).unwrap());
    ab.replay = Replay {
        window: 128,
        esn: true,
    };
    ab.lifetime = LifetimeConfig::time_and_bytes(0, 0, 4000, INFINITE);
    let ba = SaSpec::transport(
        pb,
        pa,
        spi_ba,
        r_ba,
        Crypto::aes_cbc_hmac_sha256(&[0x22; 32], &[0x33; 32]).unwrap(),
    );
    let mut monitor = a.run(|| Monitor::open().unwrap());
    monitor
        .set_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    install_pair(&a, &b, &ab, &ba);
    eprintln!("{}", a.ip_ok(&["xfrm", "state", "list"]));

    assert!(ping(&a, pb, "3", "2"), "ping a→b over ESP failed");
    tcp_transfer(&a, &b, SocketAddr::new(pb, 5001), 200_000);

    let (ab_id, ba_id) = (ab.id(), ba.id());
    let (out_a, in_a) = a.run(move || {
        let k = XfrmKernel::open().unwrap();
        (k.get_sa(&ab_id).unwrap(), k.get_sa(&ba_id).unwrap())
    });
    let in_b = b.run(move || XfrmKernel::open().unwrap().get_sa(&ab_id).unwrap());
    eprintln!(
        "a→b in a: {:?}\na→b in b: {:?}\nb→a in a: {:?}",
        out_a.current, in_b.current, in_a.current
    );
    assert!(
        out_a.current.bytes > 200_000 && out_a.current.packets >= 10,
        "{out_a:?}"
    );
    assert!(
        in_b.current.bytes > 200_000 && in_b.current.packets >= 10,
        "{in_b:?}"
    );
    assert!(in_a.current.packets >= 3, "{in_a:?}");
    assert_eq!(in_b.stats.integrity_failed, 0);
    assert!(out_a.esn && out_a.replay_window == 128, "{out_a:?}");
    assert!(
        out_a.sequence.unwrap().outbound >= out_a.current.packets,
        "{out_a:?}"
    );
    assert_eq!(out_a.aead.as_ref().unwrap().name, "rfc4106(gcm(aes))");
    assert_eq!(in_a.cipher.as_ref().unwrap().name, "cbc(aes)");

    // Soft EXPIRE for a→b after 4000 bytes: the daemon's cue to rekey.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut soft = false;
    while !soft && Instant::now() < deadline {
        if let Ok(events) = monitor.recv() {
            soft = events
                .iter()
                .any(|e| matches!(e, Event::Expire { sa, hard: false } if sa.id.spi == spi_ab));
        }
    }
    assert!(soft, "no soft EXPIRE for the a→b SA");

    // Rekey, the kernel side (RFC 7296 §2.8): new SAs with the same reqids installed next to
    // the old ones, then the old ones deleted; traffic keeps flowing on the new SPIs.
    let spi_ab2 = allocate(&b, pa, pb, r_ab);
    let spi_ba2 = allocate(&a, pb, pa, r_ba);
    let mut ab2 = SaSpec::transport(pa, pb, spi_ab2, r_ab, Crypto::aes_gcm(&[0x66; 36]).unwrap());
    ab2.replay = Replay {
        window: 128,
        esn: true,
    };
    let ba2 = SaSpec::transport(pb, pa, spi_ba2, r_ba, Crypto::aes_gcm(&[0x77; 20]).unwrap());
    for (ns, inbound, outbound) in [(&a, &ba2, &ab2), (&b, &ab2, &ba2)] {
        let (inbound, outbound) = (inbound.clone(), outbound.clone());
        ns.run(move || {
            let k = XfrmKernel::open().unwrap();
            k.update_sa(&inbound).unwrap();
            k.add_sa(&outbound).unwrap();
            k.delete_sa(&ab_id).unwrap();
            k.delete_sa(&ba_id).unwrap();
        });
    }
    assert!(ping(&a, pb, "3", "2"), "ping a→b after the rekey failed");
    let ab_id = ab2.id();
    let in_b = b.run(move || XfrmKernel::open().unwrap().get_sa(&ab_id).unwrap());
    assert!(in_b.current.packets >= 3, "new a→b SA unused: {in_b:?}");

    // Without b's inbound SA the traffic must stop (and b counts XfrmInNoStates).
    let before = xfrm_stat(&b, "XfrmInNoStates");
    b.run(move || XfrmKernel::open().unwrap().delete_sa(&ab_id).unwrap());
    assert!(
        !ping(&a, pb, "2", "1"),
        "ping still works without b's inbound SA"
    );
    assert!(xfrm_stat(&b, "XfrmInNoStates") > before);

    for ns in [&a, &b] {
        let left = ns.run(|| {
            let k = XfrmKernel::open().unwrap();
            k.flush_ours().unwrap();
            (k.sas().unwrap().len(), k.policies().unwrap().len())
        });
        assert_eq!(left, (0, 0));
    }
    eprintln!(
        "transport-mode ESP test took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn guest_nat_t_udp_encapsulated_esp() {
    if !in_guest("guest_nat_t_udp_encapsulated_esp") {
        return;
    }
    let t0 = Instant::now();
    load_modules();
    let (a, b) = pair("u", "10.98.0.1", "10.98.0.2");
    let (pa, pb): (IpAddr, IpAddr) = ("10.98.0.1".parse().unwrap(), "10.98.0.2".parse().unwrap());

    // The IKE sockets on port 4500: policy bypass (IKE must not need the SA it negotiates)
    // and ESP-in-UDP decapsulation.
    let ike = |ns: &Netns, addr: IpAddr| {
        ns.run(move || {
            let s = UdpSocket::bind(SocketAddr::new(addr, 4500)).unwrap();
            bypass_policies(&s, SocketFamily::V4).unwrap();
            enable_udp_encap(&s).unwrap();
            s
        })
    };
    let (ike_a, ike_b) = (ike(&a, pa), ike(&b, pb));

    let (r_ab, r_ba) = (reqid(20), reqid(21));
    let spi_ab = allocate(&b, pa, pb, r_ab);
    let spi_ba = allocate(&a, pb, pa, r_ba);
    let encap = Some(Encap {
        src_port: 4500,
        dst_port: 4500,
        original_address: None,
    });
    let mut ab = SaSpec::transport(pa, pb, spi_ab, r_ab, Crypto::aes_gcm(&[0x44; 20]).unwrap());
    ab.encap = encap;
    let mut ba = SaSpec::transport(pb, pa, spi_ba, r_ba, Crypto::aes_gcm(&[0x55; 20]).unwrap());
    ba.encap = encap;
    install_pair(&a, &b, &ab, &ba);

    assert!(ping(&a, pb, "3", "2"), "ping over ESP-in-UDP failed");
    let ab_id = ab.id();
    let in_b = b.run(move || XfrmKernel::open().unwrap().get_sa(&ab_id).unwrap());
    assert_eq!(in_b.encap, encap, "{in_b:?}");
    assert!(in_b.current.packets >= 3, "{in_b:?}");

    // An IKE datagram (non-ESP marker + payload) from the bypassed socket reaches the peer's
    // socket, and does not go through the a→b SA.
    let before = a.run(move || {
        XfrmKernel::open()
            .unwrap()
            .get_sa(&ab_id)
            .unwrap()
            .current
            .packets
    });
    let datagram = [&[0u8; 4][..], b"IKE_SA_INIT stand-in"].concat();
    ike_a.send_to(&datagram, SocketAddr::new(pb, 4500)).unwrap();
    ike_b
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 128];
    let (n, from) = ike_b.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&datagram[..], SocketAddr::new(pa, 4500))
    );
    let after = a.run(move || {
        XfrmKernel::open()
            .unwrap()
            .get_sa(&ab_id)
            .unwrap()
            .current
            .packets
    });
    assert_eq!(
        before, after,
        "the IKE datagram went through the SA instead of bypassing it"
    );

    for ns in [&a, &b] {
        ns.run(|| XfrmKernel::open().unwrap().flush_ours().unwrap());
    }
    eprintln!("NAT-T ESP test took {:.1} s", t0.elapsed().as_secs_f64());
}

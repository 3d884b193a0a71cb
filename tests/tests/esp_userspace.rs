//! Scenario: two hosts (network namespaces over a veth pair) protect their traffic with a
//! hand-keyed ESP SA pair in transport or tunnel mode through the userspace datapath (TUN +
//! sockets, no kernel ESP). TCP and UDP flow end to end while a capture on the wire sees only
//! ESP-in-UDP on port 4500 (or raw ESP), never the protected ports or bytes; traffic outside
//! the selectors passes in clear; teardown — also after a crash — leaves nothing behind. One
//! host serves two peers at once and loses only the one removed; tunnel mode interoperates
//! with strongSwan's kernel-libipsec using the keys charon negotiated.
//!
//! Needs root (CI runs as root); without it, or without /dev/net/tun, ip(8) or tcpdump, each
//! test prints why it skipped.
//!
//! Sysctls: the datapath itself sets `net.ipv4.conf.<tun>.rp_filter = 2` (loose) on its TUN,
//! because decapsulated packets arrive there with the peer as source; nothing else is
//! changed in the namespaces (`accept_local` is not needed: the peer's address is not local).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use esp::datapath::{
    Datapath, DatapathConfig, DatapathStats, Encapsulation, PeerConfig, PeerCounters, Selector,
};
use esp::{Algorithm, InboundSa, Mode, OutboundSa, SaConfig};

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
const SPI_AB: u32 = 0xa0b0_0001;
const SPI_BA: u32 = 0xb0a0_0001;
const KEY_AB: [u8; 36] = [0x11; 36];
const KEY_BA: [u8; 36] = [0x22; 36];
/// Bytes that must never be seen on the wire.
const SECRET: &[u8] = b"NFS-PLAINTEXT-MUST-NOT-LEAK";

/// `nft list tables` in the calling thread's namespace, one table a line.
fn nft_tables() -> Vec<String> {
    sh_out(&["nft", "list", "tables"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing".into());
    }
    for tool in ["ip", "tcpdump", "nft"] {
        let ok = Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("{tool} not available"));
        }
    }
    None
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Two namespaces joined by veth; removed on drop.
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = std::process::id();
        let lab = Lab {
            a: format!("espA-{tag}-{id}"),
            b: format!("espB-{tag}-{id}"),
        };
        for ns in [&lab.a, &lab.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "-n", &lab.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &lab.b,
        ]);
        for (ns, dev, addr, addr6) in [
            (&lab.a, "va", "10.77.0.1/24", "fd77::1/64"),
            (&lab.b, "vb", "10.77.0.2/24", "fd77::2/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", addr6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Moves the calling thread into network namespace `ns` (sockets and TUNs it creates, and
/// commands it spawns, live there).
fn enter(ns: &str) {
    let f = File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace fd, affecting only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter(&ns);
        f()
    })
}

fn sa_pair(out_spi: u32, out_key: &[u8], in_spi: u32, in_key: &[u8]) -> (OutboundSa, InboundSa) {
    sa_pair_mode(Mode::Transport, out_spi, out_key, in_spi, in_key)
}

fn sa_pair_mode(
    mode: Mode,
    out_spi: u32,
    out_key: &[u8],
    in_spi: u32,
    in_key: &[u8],
) -> (OutboundSa, InboundSa) {
    let cfg = |spi| {
        let mut c = SaConfig::new(spi, Algorithm::AesGcm16_256);
        c.mode = mode;
        c
    };
    (
        OutboundSa::new(cfg(out_spi), out_key).unwrap(),
        InboundSa::new(cfg(in_spi), in_key).unwrap(),
    )
}

/// What the TUN, rules and nftables table of a stopped datapath left behind in the calling
/// thread's namespace (empty: nothing).
fn leftovers(tun: &str, nft_table: &str) -> String {
    let nft_table = format!("table inet {nft_table}");
    sh_out(&["ip", "rule"])
        .lines()
        // Our rules carry routing protocol 73.
        .filter(|l| l.contains("proto 73"))
        .map(str::to_string)
        .chain(
            sh_out(&["ip", "-o", "link"])
                .lines()
                .filter(|l| l.contains(tun))
                .map(str::to_string),
        )
        .chain(nft_tables().into_iter().filter(|t| t.contains(&nft_table)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a datapath in `ns` with one peer until told to stop; returns its stats and what it
/// left behind.
fn run_datapath(
    ns: &str,
    (cfg, peer, pc): (DatapathConfig, IpAddr, PeerConfig),
    sas: (OutboundSa, InboundSa),
) -> (
    mpsc::Sender<()>,
    thread::JoinHandle<(DatapathStats, String)>,
) {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let h = in_ns(ns, move || {
        let (tun, nft_table) = (cfg.tun_name.clone(), cfg.nft_table.clone());
        let dp = Datapath::start(cfg).expect("datapath start");
        assert!(dp.inbound_policy_enforced());
        dp.add_peer(peer, pc).expect("add peer");
        dp.install_sas(peer, sas.0, sas.1).unwrap();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
        let stats = dp.shutdown();
        (stats, leftovers(&tun, &nft_table))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("datapath did not start");
    (stop_tx, h)
}

struct Capture {
    child: Child,
    /// Kept open: tcpdump reports to stderr when it stops, and must not die of SIGPIPE
    /// before it has flushed the capture.
    stderr: std::process::ChildStderr,
    path: std::path::PathBuf,
}

impl Capture {
    fn start(ns: &str, dev: &str, tag: &str) -> Capture {
        let path = std::env::temp_dir().join(format!("esp-{tag}-{}.pcap", std::process::id()));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "--immediate-mode",
                "-B",
                "32768",
                "-i",
                dev,
                "-n",
                "-U",
                "-s",
                "0",
                "-w",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "listening on …" so no packet is missed.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            let n = err.read(&mut b).unwrap();
            assert!(n > 0, "tcpdump exited: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&b[..n]);
        }
        Capture {
            child,
            stderr: err,
            path,
        }
    }

    /// Stops the capture and returns the pcap bytes.
    fn finish(&mut self) -> Vec<u8> {
        thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling the tcpdump child this test started, by its own pid
        // (`ip netns exec` execs tcpdump in place).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut report = String::new();
        let _ = self.stderr.read_to_string(&mut report);
        let _ = self.child.wait();
        eprintln!("tcpdump: {}", report.trim());
        std::fs::read(&self.path).unwrap()
    }

    /// Packets in the finished capture that match a pcap filter.
    fn count(&self, filter: &str) -> usize {
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.path)
            .arg(filter)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "tcpdump -r {filter}");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// TCP: 2 MB one way and echoed back; UDP: 200 datagrams each echoed.
fn exchange_traffic(lab: &Lab) {
    exchange(&lab.a, A, &lab.b, B);
}

/// TCP: 2 MB one way and echoed back; UDP: 200 datagrams each echoed; from `client` in
/// namespace `client_ns` to `server` in `server_ns`.
fn exchange(
    client_ns: &str,
    client: impl Into<IpAddr>,
    server_ns: &str,
    server: impl Into<IpAddr>,
) {
    let (client, server) = (client.into(), server.into());
    let server_addr = server;
    let server = in_ns(server_ns, move || {
        let l = TcpListener::bind(SocketAddr::new(server_addr, 5001)).unwrap();
        let u = UdpSocket::bind(SocketAddr::new(server_addr, 5002)).unwrap();
        let udp = thread::spawn(move || {
            let mut b = [0u8; 2048];
            for _ in 0..200 {
                let (n, from) = u.recv_from(&mut b).unwrap();
                u.send_to(&b[..n], from).unwrap();
            }
        });
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
        drop(s);
        udp.join().unwrap();
    });
    thread::sleep(Duration::from_millis(200));
    let client_addr = client;
    let client = in_ns(client_ns, move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(server_addr, 5001), Duration::from_secs(5))
                .expect("TCP connect through the ESP datapath");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data: Vec<u8> = SECRET.iter().copied().cycle().take(2 << 20).collect();
        let mut r = s.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(reader.join().unwrap() == data, "TCP echo corrupted");

        let u = UdpSocket::bind(SocketAddr::new(client_addr, 0)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for i in 0..200u32 {
            let mut msg = SECRET.to_vec();
            msg.extend_from_slice(&i.to_be_bytes());
            u.send_to(&msg, SocketAddr::new(server_addr, 5002)).unwrap();
            let mut b = [0u8; 2048];
            let n = u.recv(&mut b).expect("UDP echo through the ESP datapath");
            assert_eq!(&b[..n], &msg[..]);
        }
    });
    client.join().unwrap();
    server.join().unwrap();
}

/// A datapath configuration with its one peer, for each side.
type Side = (DatapathConfig, IpAddr, PeerConfig);

/// UDP datagrams larger than the TUN MTU, echoed: the stack fragments them before the TUN,
/// and tunnel mode carries the fragments (transport mode cannot, RFC 4303 §3.3.4).
fn big_datagrams(client_ns: &str, client: Ipv4Addr, server_ns: &str, server: Ipv4Addr) {
    let server = SocketAddrV4::new(server, 5003);
    let echo = in_ns(server_ns, move || {
        let u = UdpSocket::bind(server).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = vec![0u8; 65536];
        for _ in 0..10 {
            let (n, from) = u.recv_from(&mut b).expect("fragmented datagram arrives");
            u.send_to(&b[..n], from).unwrap();
        }
    });
    thread::sleep(Duration::from_millis(200));
    in_ns(client_ns, move || {
        let u = UdpSocket::bind(SocketAddrV4::new(client, 0)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = vec![0u8; 65536];
        for i in 0..10u8 {
            let msg: Vec<u8> = SECRET.iter().map(|c| c ^ i).cycle().take(4000).collect();
            u.send_to(&msg, server).unwrap();
            let n = u.recv(&mut b).expect("fragmented echo arrives");
            assert!(b[..n] == msg[..], "datagram {i} corrupted");
        }
    })
    .join()
    .unwrap();
    echo.join().unwrap();
}

fn configs(lab_tag: &str, encapsulation: Encapsulation, selectors: bool) -> (Side, Side) {
    let mut a = DatapathConfig::new(A);
    let mut b = DatapathConfig::new(B);
    a.tun_name = format!("esp{lab_tag}a");
    b.tun_name = format!("esp{lab_tag}b");
    let mut pa = PeerConfig::new();
    pa.encapsulation = encapsulation;
    let mut pb = pa.clone();
    if selectors {
        pa.selectors = vec![
            Selector {
                protocol: Some(6),
                local_port: None,
                remote_port: Some(5001),
            },
            Selector {
                protocol: Some(17),
                local_port: None,
                remote_port: Some(5002),
            },
        ];
        pb.selectors = vec![
            Selector {
                protocol: Some(6),
                local_port: Some(5001),
                remote_port: None,
            },
            Selector {
                protocol: Some(17),
                local_port: Some(5002),
                remote_port: None,
            },
        ];
    }
    ((a, B.into(), pa), (b, A.into(), pb))
}

fn scenario(tag: &str, encapsulation: Encapsulation, mode: Mode, wire_filter: &str) {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace {tag}: {why}");
        return;
    }
    let lab = Lab::new(tag);
    let (mut cfg_a, mut cfg_b) = configs(tag, encapsulation, true);
    cfg_a.2.mode = mode;
    cfg_b.2.mode = mode;
    let mut cap = Capture::start(&lab.a, "va", tag);
    let (stop_a, dp_a) = run_datapath(
        &lab.a,
        cfg_a,
        sa_pair_mode(mode, SPI_AB, &KEY_AB, SPI_BA, &KEY_BA),
    );
    let (stop_b, dp_b) = run_datapath(
        &lab.b,
        cfg_b,
        sa_pair_mode(mode, SPI_BA, &KEY_BA, SPI_AB, &KEY_AB),
    );

    exchange_traffic(&lab);
    // Outside the selectors (ICMP) traffic passes in clear, as policy says.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.a,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "10.77.0.2",
    ]);

    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (stats_a, left_a) = dp_a.join().unwrap();
    let (stats_b, left_b) = dp_b.join().unwrap();
    let pcap = cap.finish();
    let count = |f: &str| cap.count(f);

    eprintln!("{tag}: A {stats_a:?}\n{tag}: B {stats_b:?}");
    assert!(
        stats_a.tx_packets > 100 && stats_a.rx_packets > 100,
        "{stats_a:?}"
    );
    assert!(
        stats_b.tx_packets > 100 && stats_b.rx_packets > 100,
        "{stats_b:?}"
    );
    assert_eq!(
        count("tcp port 5001 or udp port 5002"),
        0,
        "plaintext on the wire"
    );
    assert!(
        !pcap.windows(SECRET.len()).any(|w| w == SECRET),
        "protected bytes visible in the capture"
    );
    let esp_packets = count(wire_filter);
    assert!(
        esp_packets > 200,
        "only {esp_packets} ESP packets in a capture of {} bytes, {} packets",
        pcap.len(),
        count("")
    );
    assert!(
        count("icmp") >= 4,
        "ping outside the selectors should pass in clear"
    );
    assert!(left_a.is_empty(), "left behind in A:\n{left_a}");
    assert!(left_b.is_empty(), "left behind in B:\n{left_b}");
}

#[test]
fn tcp_and_udp_over_esp_in_udp_transport_mode() {
    scenario(
        "udp",
        Encapsulation::UDP_4500,
        Mode::Transport,
        "udp port 4500",
    );
}

#[test]
fn tcp_and_udp_over_raw_esp_transport_mode() {
    scenario("raw", Encapsulation::Raw, Mode::Transport, "ip proto 50");
}

/// IPv6 peers: the same hosts talk over IPv6 (fd77::/64) through the datapath, while their
/// IPv4 traffic, not a peer, passes in clear.
fn scenario6(tag: &str, encapsulation: Encapsulation, mode: Mode, wire_filter: &str) {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace {tag}: {why}");
        return;
    }
    let lab = Lab::new(tag);
    let (mut cfg_a, mut cfg_b) = configs(tag, encapsulation, true);
    cfg_a.0.local6 = Some(A6);
    cfg_b.0.local6 = Some(B6);
    cfg_a.1 = B6.into();
    cfg_b.1 = A6.into();
    cfg_a.2.mode = mode;
    cfg_b.2.mode = mode;
    let mut cap = Capture::start(&lab.a, "va", tag);
    let (stop_a, dp_a) = run_datapath(
        &lab.a,
        cfg_a,
        sa_pair_mode(mode, SPI_AB, &KEY_AB, SPI_BA, &KEY_BA),
    );
    let (stop_b, dp_b) = run_datapath(
        &lab.b,
        cfg_b,
        sa_pair_mode(mode, SPI_BA, &KEY_BA, SPI_AB, &KEY_AB),
    );
    exchange(&lab.a, A6, &lab.b, B6);
    // IPv4 between the same hosts is not protected here.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.a,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "10.77.0.2",
    ]);
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (stats_a, left_a) = dp_a.join().unwrap();
    let (stats_b, left_b) = dp_b.join().unwrap();
    cap.finish();
    eprintln!("{tag}: A {stats_a:?}\n{tag}: B {stats_b:?}");
    for st in [&stats_a, &stats_b] {
        assert!(st.tx_packets > 100 && st.rx_packets > 100, "{st:?}");
        assert_eq!(st.rx_dropped, 0, "{st:?}");
    }
    assert_eq!(cap.count("tcp port 5001 or udp port 5002"), 0, "plaintext");
    assert!(cap.count(wire_filter) > 200, "ESP over IPv6");
    assert!(cap.count("icmp") >= 4, "IPv4 ping in clear");
    assert!(left_a.is_empty(), "left behind in A:\n{left_a}");
    assert!(left_b.is_empty(), "left behind in B:\n{left_b}");
}

#[test]
fn ipv6_peers_esp_in_udp_transport_mode() {
    scenario6(
        "v6u",
        Encapsulation::UDP_4500,
        Mode::Transport,
        "ip6 and udp port 4500",
    );
}

#[test]
fn ipv6_peers_raw_esp_tunnel_mode() {
    scenario6(
        "v6r",
        Encapsulation::Raw,
        Mode::Tunnel,
        "ip6 and ip6 proto 50",
    );
}

/// Tunnel mode between the two hosts (the inner packet is the whole IP packet, next header
/// 4; the SAs refuse anything else): the same guarantees as transport mode.
#[test]
fn tcp_and_udp_over_esp_in_udp_tunnel_mode() {
    scenario(
        "tun",
        Encapsulation::UDP_4500,
        Mode::Tunnel,
        "udp port 4500",
    );
}

#[test]
fn tcp_and_udp_over_raw_esp_tunnel_mode() {
    scenario("rtun", Encapsulation::Raw, Mode::Tunnel, "ip proto 50");
}

/// A crashed predecessor left a TUN, rules and a route with our numbers: start removes them
/// and works; shutdown leaves nothing.
#[test]
fn start_cleans_up_after_a_crash() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace crash cleanup: {why}");
        return;
    }
    let lab = Lab::new("crash");
    let (cfg_a, cfg_b) = configs("cr", Encapsulation::UDP_4500, false);
    let ns = lab.a.clone();
    let (tun, prio, table) = (
        cfg_a.0.tun_name.clone(),
        cfg_a.0.rule_priority,
        cfg_a.0.table,
    );
    for cmd in [
        format!("ip tuntap add dev {tun} mode tun"),
        format!("ip link set dev {tun} up"),
        format!("ip rule add priority {prio} fwmark 0x1e5 lookup main protocol 73"),
        format!(
            "ip rule add priority {} to 10.77.0.2/32 lookup {table} protocol 73",
            prio + 1
        ),
        format!(
            "ip rule add priority {} to 10.77.0.9/32 lookup {table} protocol 73",
            prio + 3
        ),
        // Not ours (no protocol tag) although it shares a priority: must survive.
        format!(
            "ip rule add priority {} to 10.77.0.77/32 lookup main",
            prio + 1
        ),
        format!("ip route add 10.77.0.2/32 dev {tun} table {table}"),
        // A stale copy of our nftables table (dropping everything) and a foreign one.
        "nft add table inet ibm_ipsec".into(),
        "nft add chain inet ibm_ipsec inbound { type filter hook input priority 0 ; policy drop ; }".into(),
        "nft add table inet someone_else".into(),
    ] {
        let mut args = vec!["ip", "netns", "exec", &ns];
        args.extend(cmd.split(' '));
        sh(&args);
    }
    let (stop_a, dp_a) = run_datapath(&lab.a, cfg_a, sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA));
    let (stop_b, dp_b) = run_datapath(&lab.b, cfg_b, sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB));
    // Traffic works with the stale state replaced.
    let pinger = in_ns(&lab.a, move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = Command::new("ping")
                .args(["-c", "1", "-W", "1", "10.77.0.2"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok || Instant::now() > deadline {
                return ok;
            }
        }
    });
    assert!(
        pinger.join().unwrap(),
        "ping through the datapath after cleanup"
    );
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (stats_a, left_a) = dp_a.join().unwrap();
    dp_b.join().unwrap();
    assert!(
        stats_a.tx_packets >= 1 && stats_a.rx_packets >= 1,
        "{stats_a:?}"
    );
    assert!(left_a.is_empty(), "left behind:\n{left_a}");
    let tables = sh_out(&["ip", "netns", "exec", &lab.a, "nft", "list", "tables"]);
    assert!(
        tables.contains("table inet someone_else"),
        "foreign nftables table removed:\n{tables}"
    );
    let rules = sh_out(&["ip", "-n", &lab.a, "rule"]);
    assert!(!rules.contains("10.77.0.9 "), "stale rule kept:\n{rules}");
    assert!(
        rules.contains("10.77.0.77"),
        "foreign rule removed:\n{rules}"
    );
}

/// IKE and ESP share UDP 4500 (RFC 3948 §2.2): an IKE message sent through one datapath's
/// socket arrives, marker stripped, at the other's IKE sink; keepalives are recognised.
#[test]
fn ike_messages_share_the_nat_t_socket() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace ike sharing: {why}");
        return;
    }
    let lab = Lab::new("ike");
    let (cfg_a, cfg_b) = configs("ik", Encapsulation::UDP_4500, false);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let b = in_ns(&lab.b, move || {
        let dp = Datapath::start(cfg_b.0).expect("datapath B");
        let (tx, rx) = mpsc::channel();
        dp.set_ike_sink(tx);
        ready_tx.send(()).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5));
        // Give the keepalive sent after the IKE message time to arrive.
        thread::sleep(Duration::from_millis(300));
        (got, dp.shutdown())
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let a = in_ns(&lab.a, move || {
        let dp = Datapath::start(cfg_a.0).expect("datapath A");
        // IKE goes anywhere, peer or not (a responder learns of peers from IKE).
        dp.send_ike(SocketAddrV4::new(B, 4500), b"\x01\x02IKE_SA_INIT")
            .unwrap();
        // Keepalives go to peers only.
        assert_eq!(
            dp.send_keepalive(B).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        // An IPv6 peer needs our IPv6 address.
        assert_eq!(
            dp.add_peer(B6, cfg_a.2.clone()).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        dp.add_peer(B, cfg_a.2).unwrap();
        dp.send_keepalive(B).unwrap();
        dp.shutdown()
    });
    a.join().unwrap();
    let (got, stats_b) = b.join().unwrap();
    let (from, msg) = got.expect("IKE message forwarded to the sink");
    assert_eq!(msg, b"\x01\x02IKE_SA_INIT");
    assert_eq!(from.ip(), A);
    assert_eq!(from.port(), 4500);
    assert_eq!(stats_b.rx_non_esp, 2, "{stats_b:?}");
    assert_eq!(stats_b.rx_packets, 0);
}

enum Cmd {
    AddInbound(InboundSa),
    SetOutbound(OutboundSa),
    RemoveInbound(u32),
    /// Announce an inbound SPI (as IKE does before the message carrying it leaves).
    Announce(u32),
    Stop,
}

/// A datapath in `ns` driven by commands; acknowledges each one and returns the final SA
/// counters and stats.
fn controlled_datapath(
    ns: &str,
    (cfg, peer, pc): Side,
    sas: (OutboundSa, InboundSa),
) -> (
    mpsc::Sender<Cmd>,
    mpsc::Receiver<()>,
    thread::JoinHandle<(PeerCounters, DatapathStats)>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let h = in_ns(ns, move || {
        let dp = Datapath::start(cfg).expect("datapath start");
        dp.add_peer(peer, pc).unwrap();
        dp.install_sas(peer, sas.0, sas.1).unwrap();
        ack_tx.send(()).unwrap();
        loop {
            match cmd_rx.recv().unwrap() {
                Cmd::AddInbound(sa) => dp.add_inbound(peer, sa).unwrap(),
                Cmd::SetOutbound(sa) => dp.set_outbound(peer, sa).unwrap(),
                Cmd::RemoveInbound(spi) => assert!(dp.remove_inbound(spi)),
                Cmd::Announce(spi) => dp.spi_announcer().expect(peer, spi),
                Cmd::Stop => break,
            }
            ack_tx.send(()).unwrap();
        }
        let counts = dp.counters(peer).unwrap();
        (counts, dp.shutdown())
    });
    ack_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (cmd_tx, ack_rx, h)
}

/// A rekey while UDP request/response traffic flows: both hosts add the new inbound SA, then
/// both switch outbound, then drop the old inbound SA (the order IKE uses). Every datagram
/// must be answered, and traffic must have used both generations of SAs (GCM, then CBC).
#[test]
fn rekey_under_traffic_loses_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace rekey: {why}");
        return;
    }
    let lab = Lab::new("rekey");
    let udp = Encapsulation::UDP_4500;
    let (cfg_a, cfg_b) = configs("rk", udp, false);
    let (a, ack_a, ha) =
        controlled_datapath(&lab.a, cfg_a, sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA));
    let (b, ack_b, hb) =
        controlled_datapath(&lab.b, cfg_b, sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB));

    let server = in_ns(&lab.b, || {
        let u = UdpSocket::bind(SocketAddrV4::new(B, 6000)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = u.recv_from(&mut b) {
            u.send_to(&b[..n], from).unwrap();
        }
    });
    let (phase_tx, phase_rx) = mpsc::channel::<u32>();
    // The client pauses at each phase boundary until the SA changes are in.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = in_ns(&lab.a, move || {
        let u = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for i in 0..600u32 {
            u.send_to(&i.to_be_bytes(), SocketAddrV4::new(B, 6000))
                .unwrap();
            let mut b = [0u8; 16];
            let n = u
                .recv(&mut b)
                .unwrap_or_else(|e| panic!("datagram {i} lost: {e}"));
            assert_eq!(&b[..n], &i.to_be_bytes());
            if i % 200 == 199 {
                phase_tx.send(i).unwrap();
                if i < 599 {
                    go_rx.recv().unwrap();
                }
            }
        }
    });
    // After 200 exchanges: rekey.
    assert_eq!(phase_rx.recv_timeout(Duration::from_secs(20)).unwrap(), 199);
    let (spi_ab2, spi_ba2, key_ab2, key_ba2) =
        (0xa0b0_0002u32, 0xb0a0_0002u32, [0x33u8; 36], [0x44u8; 36]);
    let new_a = sa_pair(spi_ab2, &key_ab2, spi_ba2, &key_ba2);
    let new_b = sa_pair(spi_ba2, &key_ba2, spi_ab2, &key_ab2);
    let step = |tx: &mpsc::Sender<Cmd>, ack: &mpsc::Receiver<()>, c: Cmd| {
        tx.send(c).unwrap();
        ack.recv_timeout(Duration::from_secs(5)).unwrap();
    };
    step(&a, &ack_a, Cmd::AddInbound(new_a.1));
    step(&b, &ack_b, Cmd::AddInbound(new_b.1));
    step(&a, &ack_a, Cmd::SetOutbound(new_a.0));
    step(&b, &ack_b, Cmd::SetOutbound(new_b.0));
    go_tx.send(()).unwrap();
    assert_eq!(phase_rx.recv_timeout(Duration::from_secs(20)).unwrap(), 399);
    step(&a, &ack_a, Cmd::RemoveInbound(SPI_BA));
    step(&b, &ack_b, Cmd::RemoveInbound(SPI_AB));
    go_tx.send(()).unwrap();
    assert_eq!(phase_rx.recv_timeout(Duration::from_secs(20)).unwrap(), 599);
    client.join().unwrap();
    server.join().unwrap();
    a.send(Cmd::Stop).unwrap();
    b.send(Cmd::Stop).unwrap();
    let (counts_a, stats_a) = ha.join().unwrap();
    let (counts_b, stats_b) = hb.join().unwrap();
    let (in_a, in_b) = (counts_a.inbound, counts_b.inbound);
    let (out_a, out_b) = (counts_a.outbound.unwrap(), counts_b.outbound.unwrap());
    assert_eq!((out_a.0, out_b.0), (spi_ab2, spi_ba2));
    let (out_a, out_b) = (out_a.1, out_b.1);
    eprintln!("rekey: A {stats_a:?} {in_a:?}\nrekey: B {stats_b:?} {in_b:?}");
    // Only the new inbound SAs remain, and they carried the last 400 exchanges.
    assert_eq!(in_a.len(), 1);
    assert_eq!(in_a[0].0, spi_ba2);
    assert_eq!(in_b[0].0, spi_ab2);
    assert_eq!((in_a[0].1.packets, in_b[0].1.packets), (400, 400));
    // The new outbound SAs sent exactly the last 400 datagrams each way.
    assert_eq!((out_a.packets, out_b.packets), (400, 400));
    assert_eq!(stats_a.rx_dropped + stats_b.rx_dropped, 0);
    for (_, c) in in_a.iter().chain(&in_b) {
        assert_eq!(c.auth_failures + c.replay_drops + c.malformed, 0);
    }
}

/// A peer that starts sending on a new SA before we have installed it (an IKE responder
/// does, before its response reaches us): without an announcement the packet is lost;
/// for an SPI we announced it is held and delivered once the SA is added.
#[test]
fn esp_on_an_announced_spi_before_its_sa_is_held_then_delivered() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace early ESP: {why}");
        return;
    }
    let lab = Lab::new("early");
    let (cfg_a, cfg_b) = configs("ea", Encapsulation::UDP_4500, false);
    let (a, ack_a, ha) =
        controlled_datapath(&lab.a, cfg_a, sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA));
    let (b, ack_b, hb) =
        controlled_datapath(&lab.b, cfg_b, sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB));
    let step = |tx: &mpsc::Sender<Cmd>, ack: &mpsc::Receiver<()>, c: Cmd| {
        tx.send(c).unwrap();
        ack.recv_timeout(Duration::from_secs(5)).unwrap();
    };
    let server = in_ns(&lab.b, || {
        let u = UdpSocket::bind(SocketAddrV4::new(B, 6001)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut b = [0u8; 64];
        while let Ok((n, from)) = u.recv_from(&mut b) {
            u.send_to(&b[..n], from).unwrap();
        }
    });
    let ask = |ns: &str, what: &'static [u8], wait: Duration| {
        in_ns(ns, move || {
            let u = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
            u.set_read_timeout(Some(wait)).unwrap();
            u.send_to(what, SocketAddrV4::new(B, 6001)).unwrap();
            let mut b = [0u8; 64];
            u.recv(&mut b).ok().map(|n| b[..n].to_vec())
        })
    };
    // The path works (the first datagram may wait for neighbour resolution).
    let works = (0..3).any(|_| {
        ask(&lab.a, b"before", Duration::from_secs(2))
            .join()
            .unwrap()
            .is_some_and(|r| r == b"before")
    });
    assert!(works, "no answer over the initial SAs");

    // Not announced: B answers on an SA A does not have, and the answer is lost.
    let (spi_x, key_x) = (0xb0a0_00e1u32, [0x77u8; 36]);
    let x_b = sa_pair(spi_x, &key_x, 0xa0b0_00e1, &[0x78; 36]).0;
    step(&b, &ack_b, Cmd::SetOutbound(x_b));
    assert_eq!(
        ask(&lab.a, b"lost", Duration::from_millis(800))
            .join()
            .unwrap(),
        None
    );

    // Announced: the answer waits at A until its SA is added 300 ms later.
    let (spi_y, key_y) = (0xb0a0_00e2u32, [0x79u8; 36]);
    let y_b = sa_pair(spi_y, &key_y, 0xa0b0_00e2, &[0x7a; 36]).0;
    let y_a = sa_pair(0xa0b0_00e2, &[0x7a; 36], spi_y, &key_y).1;
    step(&a, &ack_a, Cmd::Announce(spi_y));
    step(&b, &ack_b, Cmd::SetOutbound(y_b));
    let asked = ask(&lab.a, b"held", Duration::from_secs(3));
    thread::sleep(Duration::from_millis(300));
    step(&a, &ack_a, Cmd::AddInbound(y_a));
    assert_eq!(asked.join().unwrap().as_deref(), Some(b"held".as_slice()));

    server.join().unwrap();
    a.send(Cmd::Stop).unwrap();
    b.send(Cmd::Stop).unwrap();
    let (counts_a, stats_a) = ha.join().unwrap();
    let _ = hb.join().unwrap();
    eprintln!("early: A {stats_a:?} {:?}", counts_a.inbound);
    let y = counts_a
        .inbound
        .iter()
        .find(|(spi, _)| *spi == spi_y)
        .unwrap();
    assert_eq!(y.1.packets, 1, "the held answer was opened on its SA");
    assert_eq!(
        stats_a.rx_dropped, 1,
        "only the unannounced answer was dropped"
    );
    assert_eq!(stats_a.rx_held_early, 1, "the announced one was held");
}

/// Sets SO_MARK so the socket bypasses the datapath's capture rules: it plays an on-path
/// attacker who sends cleartext with the peer's source address.
fn marked(fd: i32, mark: u32) {
    // SAFETY: setsockopt on a valid socket with a u32 option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            4,
        )
    };
    assert_eq!(rc, 0, "SO_MARK: {}", std::io::Error::last_os_error());
}

/// Inbound policy (RFC 4301 §5.2): cleartext that carries the peer's address and matches a
/// protected selector is dropped, as kernel XFRM's inbound policy would; the same datagram
/// through ESP is delivered, and traffic outside the selectors still flows in clear.
#[test]
fn cleartext_from_the_peer_on_protected_selectors_is_dropped() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace inbound policy: {why}");
        return;
    }
    let lab = Lab::new("pol");
    let udp = Encapsulation::UDP_4500;
    // B protects TCP 5001 and UDP 5002 (its local ports); 5003 is outside the selectors.
    let (cfg_a, cfg_b) = configs("po", udp, true);
    let mark = cfg_a.0.mark;
    let mut cap = Capture::start(&lab.b, "vb", "pol");
    let (stop_a, dp_a) = run_datapath(&lab.a, cfg_a, sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA));
    let (stop_b, dp_b) = run_datapath(&lab.b, cfg_b, sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB));

    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let server = in_ns(&lab.b, move || {
        let protected = UdpSocket::bind(SocketAddrV4::new(B, 5002)).unwrap();
        let open = UdpSocket::bind(SocketAddrV4::new(B, 5003)).unwrap();
        let tcp = TcpListener::bind(SocketAddrV4::new(B, 5001)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let collect = |u: &UdpSocket| {
            u.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 256];
            while let Ok(n) = u.recv(&mut b) {
                got.push(b[..n].to_vec());
            }
            got
        };
        let (p, o) = (collect(&protected), collect(&open));
        let mut accepted = 0;
        while tcp.accept().is_ok() {
            accepted += 1;
        }
        let counters = sh_out(&["nft", "list", "table", "inet", "ibm_ipsec"]);
        (p, o, accepted, counters)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let attacker = in_ns(&lab.a, move || {
        let fake = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
        marked(fake.as_raw_fd(), mark);
        let honest = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
        for _ in 0..3 {
            fake.send_to(b"injected-cleartext", SocketAddrV4::new(B, 5002))
                .unwrap();
            honest
                .send_to(b"through-esp", SocketAddrV4::new(B, 5002))
                .unwrap();
            fake.send_to(b"outside-selectors", SocketAddrV4::new(B, 5003))
                .unwrap();
        }
        // A cleartext TCP SYN to the protected port is dropped: the connect times out.
        // SAFETY: socket(2) has no preconditions.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(sock >= 0);
        marked(sock, mark);
        // SAFETY: the fd was just created and is owned by the TcpStream from here on.
        let s = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(sock) };
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 5001u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(B).to_be(),
            },
            sin_zero: [0; 8],
        };
        // Non-blocking connect, then wait: the SYN must go unanswered.
        // SAFETY: fcntl/connect on the valid fd with a correctly sized sockaddr_in.
        unsafe {
            libc::fcntl(sock, libc::F_SETFL, libc::O_NONBLOCK);
            libc::connect(
                sock,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
        }
        thread::sleep(Duration::from_millis(1200));
        let cleartext_connected = s.peer_addr().is_ok();
        // The same connection through the datapath works.
        let esp_connected =
            TcpStream::connect_timeout(&SocketAddrV4::new(B, 5001).into(), Duration::from_secs(3))
                .is_ok();
        (cleartext_connected, esp_connected)
    });
    let (cleartext_connected, esp_connected) = attacker.join().unwrap();
    let (protected, open, accepted, counters) = server.join().unwrap();
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (_, left_a) = dp_a.join().unwrap();
    let (stats_b, left_b) = dp_b.join().unwrap();
    cap.finish();
    eprintln!("B {stats_b:?}\nB's table:\n{counters}");

    let count = |v: &[Vec<u8>], m: &[u8]| v.iter().filter(|d| d.as_slice() == m).count();
    assert_eq!(count(&protected, b"through-esp"), 3, "{protected:?}");
    assert_eq!(
        count(&protected, b"injected-cleartext"),
        0,
        "cleartext from the peer reached a protected socket"
    );
    assert_eq!(count(&open, b"outside-selectors"), 3, "{open:?}");
    assert!(!cleartext_connected, "cleartext TCP handshake completed");
    assert!(esp_connected, "TCP through the datapath failed");
    assert_eq!(accepted, 1);
    // The injected packets really were on B's wire, in clear, and our rules counted them.
    assert_eq!(cap.count("udp dst port 5002"), 3);
    assert!(cap.count("tcp dst port 5001") >= 1);
    let dropped: u64 = counters
        .lines()
        .filter(|l| l.contains("drop"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "packets")?;
            w.get(i + 1)?.parse::<u64>().ok()
        })
        .sum();
    assert!(dropped >= 4, "nft drop counters: {counters}");
    assert!(left_a.is_empty(), "left behind in A:\n{left_a}");
    assert!(left_b.is_empty(), "left behind in B:\n{left_b}");
}

/// Set in the child process of `refuses_peers_without_nftables`, in which no
/// NETLINK_NETFILTER socket can be opened.
const NO_NFT_CHILD: &str = "ESP_USERSPACE_NO_NFT_CHILD";

/// Without nftables in the kernel the inbound policy cannot be enforced: the datapath starts
/// and says so, and refuses a peer with a clear error unless the peer sets
/// `allow_unprotected_inbound`. The check runs in a child process of this test binary
/// whose seccomp filter answers `socket(AF_NETLINK, …, NETLINK_NETFILTER)` with
/// EPROTONOSUPPORT, as a kernel built without nfnetlink does (the filter covers the whole
/// process, so it cannot run beside the other tests).
#[test]
fn refuses_peers_without_nftables() {
    if std::env::var_os(NO_NFT_CHILD).is_some() {
        return no_nft_child();
    }
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace no-nftables refusal: {why}");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "refuses_peers_without_nftables",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(NO_NFT_CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("NO_NFT_CHILD_DONE"),
        "child did not run:\n{text}"
    );
}

/// Makes every thread of this process fail `socket(AF_NETLINK, _, NETLINK_NETFILTER)` with
/// EPROTONOSUPPORT (seccomp, `SECCOMP_FILTER_FLAG_TSYNC`).
fn deny_nfnetlink_sockets() {
    // Classic BPF over `struct seccomp_data`: nr at 0, the 64-bit args[i] at 16 + 8 i; the
    // filter loads their low halves.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    const NETLINK_NETFILTER: u32 = 12;
    let low = if cfg!(target_endian = "little") { 0 } else { 4 };
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        f(LD_W_ABS, 0, 0, 0),
        f(JEQ_K, 0, 5, libc::SYS_socket as u32),
        f(LD_W_ABS, 0, 0, 16 + low),
        f(JEQ_K, 0, 3, libc::AF_NETLINK as u32),
        f(LD_W_ABS, 0, 0, 32 + low),
        f(JEQ_K, 0, 1, NETLINK_NETFILTER),
        f(
            RET_K,
            0,
            0,
            SECCOMP_RET_ERRNO | libc::EPROTONOSUPPORT as u32,
        ),
        f(RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl and seccomp read the arguments given; `fprog` outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

fn no_nft_child() {
    deny_nfnetlink_sockets();
    // SAFETY: plain socket(2); the result is only checked and closed.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 12) };
    assert_eq!(fd, -1, "NETLINK_NETFILTER socket still opens");
    let lab = Lab::new("nonft");
    let ((cfg, peer, mut pc), _) = configs("nn", Encapsulation::UDP_4500, true);
    let tun = cfg.tun_name.clone();
    let (enforced, refused, allowed) = in_ns(&lab.a, move || {
        // The datapath starts, says it cannot enforce, and refuses a peer that needs it.
        let dp = Datapath::start(cfg).expect("start without nftables");
        let enforced = dp.inbound_policy_enforced();
        let refused = dp.add_peer(peer, pc.clone()).unwrap_err();
        // Nothing was set up for the refused peer.
        let rules = sh_out(&["ip", "rule"]);
        assert!(!rules.contains(&peer.to_string()), "{rules}");
        assert!(dp.peers().is_empty());
        pc.allow_unprotected_inbound = true;
        let allowed = dp.add_peer(peer, pc).map(|()| dp.peers());
        dp.shutdown();
        (enforced, refused, allowed)
    })
    .join()
    .unwrap();
    assert!(!enforced);
    assert_eq!(refused.kind(), std::io::ErrorKind::Unsupported, "{refused}");
    assert!(
        refused.to_string().contains("allow_unprotected_inbound"),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .starts_with("the kernel has no nftables support (nf_tables module missing): "),
        "{refused}"
    );
    assert_eq!(allowed.unwrap(), vec![peer]);
    let links = sh_out(&["ip", "-n", &lab.a, "-o", "link"]);
    assert!(!links.contains(&tun), "{links}");
    assert!(!sh_out(&["ip", "-n", &lab.a, "rule"]).contains("proto 73"));
    println!("NO_NFT_CHILD_DONE");
}

const C: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const SPI_AC: u32 = 0xa0c0_0001;
const SPI_CA: u32 = 0xc0a0_0001;
const KEY_AC: [u8; 36] = [0x55; 36];
const KEY_CA: [u8; 36] = [0x66; 36];

/// Three namespaces: A holds a bridge (10.77.0.1) that B (10.77.0.2) and C (10.77.0.3) hang
/// off by veth; removed on drop.
struct Star {
    a: String,
    b: String,
    c: String,
}

impl Star {
    fn new(tag: &str) -> Star {
        let id = std::process::id();
        let star = Star {
            a: format!("espA-{tag}-{id}"),
            b: format!("espB-{tag}-{id}"),
            c: format!("espC-{tag}-{id}"),
        };
        for ns in [&star.a, &star.b, &star.c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let a = star.a.as_str();
        sh(&["ip", "-n", a, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        sh(&["ip", "-n", a, "link", "set", "br0", "up"]);
        for (ns, port, dev, addr) in [
            (&star.b, "pb", "vb", "10.77.0.2/24"),
            (&star.c, "pc", "vc", "10.77.0.3/24"),
        ] {
            sh(&[
                "ip", "-n", a, "link", "add", port, "type", "veth", "peer", "name", dev, "netns",
                ns,
            ]);
            sh(&["ip", "-n", a, "link", "set", port, "master", "br0", "up"]);
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        star
    }
}

impl Drop for Star {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

type Job = Box<dyn FnOnce(&Datapath) + Send>;

/// A datapath owned by a thread in a namespace, driven by closures that run on that thread
/// (so the commands they spawn see that namespace too).
struct Remote {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<DatapathStats>>,
}

impl Remote {
    fn start(ns: &str, cfg: DatapathConfig) -> Remote {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let thread = in_ns(ns, move || {
            let dp = Datapath::start(cfg).expect("datapath start");
            ready_tx.send(()).unwrap();
            while let Ok(job) = rx.recv() {
                job(&dp);
            }
            dp.shutdown()
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Remote {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    fn call<T: Send + 'static>(&self, f: impl FnOnce(&Datapath) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |dp| {
            let _ = tx.send(f(dp));
        });
        self.jobs.as_ref().unwrap().send(job).unwrap();
        rx.recv_timeout(Duration::from_secs(20))
            .expect("datapath thread answers")
    }

    fn stop(mut self) -> DatapathStats {
        drop(self.jobs.take());
        self.thread.take().unwrap().join().unwrap()
    }
}

/// One host (A) with two peers at once — B over ESP in UDP, C over raw ESP — each with its
/// own SAs: traffic to both is protected; removing C leaves B working and C's traffic in
/// clear, with exactly C's rules, route and drop rules gone.
#[test]
fn one_host_two_peers_remove_one() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace two peers: {why}");
        return;
    }
    let star = Star::new("mp");
    let mut cap = Capture::start(&star.a, "br0", "mp");
    let mut cfg_a = DatapathConfig::new(A);
    cfg_a.tun_name = "espmpa".into();
    let a = Remote::start(&star.a, cfg_a);
    let raw = PeerConfig {
        encapsulation: Encapsulation::Raw,
        ..PeerConfig::new()
    };
    a.call(move |dp| {
        dp.add_peer(B, PeerConfig::new()).unwrap();
        dp.add_peer(C, raw).unwrap();
        let (o, i) = sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA);
        dp.install_sas(B, o, i).unwrap();
        // C's SAs ask for a rekey after 100 packets; B's never do.
        let soft = |spi| SaConfig {
            lifetime: esp::Lifetime {
                soft_packets: Some(100),
                ..esp::Lifetime::UNLIMITED
            },
            ..SaConfig::new(spi, Algorithm::AesGcm16_256)
        };
        let o = OutboundSa::new(soft(SPI_AC), &KEY_AC).unwrap();
        let i = InboundSa::new(soft(SPI_CA), &KEY_CA).unwrap();
        dp.install_sas(C, o, i).unwrap();
        // A peer once; an SPI belongs to one peer.
        assert_eq!(
            dp.add_peer(B, PeerConfig::new()).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        let (_, i) = sa_pair(SPI_AC, &KEY_AC, SPI_BA, &KEY_BA);
        assert_eq!(
            dp.add_inbound(C, i).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(dp.peers(), vec![B, C]);
    });
    let mut cfg_b = DatapathConfig::new(B);
    cfg_b.tun_name = "espmpb".into();
    let (stop_b, dp_b) = run_datapath(
        &star.b,
        (cfg_b, A.into(), PeerConfig::new()),
        sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB),
    );
    let mut cfg_c = DatapathConfig::new(C);
    cfg_c.tun_name = "espmpc".into();
    let c_raw = PeerConfig {
        encapsulation: Encapsulation::Raw,
        ..PeerConfig::new()
    };
    let (stop_c, dp_c) = run_datapath(
        &star.c,
        (cfg_c, A.into(), c_raw),
        sa_pair(SPI_CA, &KEY_CA, SPI_AC, &KEY_AC),
    );

    // Both peers at once, from A.
    let to_b = {
        let (a, b) = (star.a.clone(), star.b.clone());
        thread::spawn(move || exchange(&a, A, &b, B))
    };
    exchange(&star.a, A, &star.c, C);
    to_b.join().unwrap();
    let (cb, cc) = a.call(|dp| (dp.counters(B).unwrap(), dp.counters(C).unwrap()));
    eprintln!("two peers: B {cb:?}\nC {cc:?}");
    for c in [&cb, &cc] {
        assert!(c.outbound.unwrap().1.packets > 100, "{c:?}");
        assert!(c.inbound[0].1.packets > 100, "{c:?}");
    }
    assert_eq!(cb.peer_port, Some(4500));
    assert_eq!(cc.peer_port, None);
    assert_eq!(cc.inbound[0].0, SPI_CA);
    // Lifetime events name their peer and SA, once each.
    let mut events = a.call(|dp| std::iter::from_fn(|| dp.poll_event()).collect::<Vec<_>>());
    events.sort_by_key(|e| e.1);
    assert_eq!(
        events,
        vec![
            (C.into(), SPI_AC, esp::Event::SoftLifetime),
            (C.into(), SPI_CA, esp::Event::SoftLifetime)
        ]
    );

    // An SA belongs to its peer: a genuine ESP packet under B's SPI, ahead of the replay
    // window, sent from C, is dropped unopened.
    let stolen = {
        let (mut o, _) = sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB);
        let mut out = vec![0u8; 256];
        let mut len = 0;
        for _ in 0..10_000 {
            len = o
                .seal(17, b"\x13\x89\x13\x8a\x00\x0c\x00\x00spoof", &mut out)
                .unwrap();
        }
        out.truncate(len);
        out
    };
    let dropped_before = a.call(|dp| dp.stats().rx_dropped);
    in_ns(&star.c, move || {
        let u = UdpSocket::bind(SocketAddrV4::new(C, 0)).unwrap();
        marked(u.as_raw_fd(), 0x1e5);
        u.send_to(&stolen, SocketAddrV4::new(A, 4500)).unwrap();
    })
    .join()
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    let (dropped_after, b_in) = a.call(|dp| (dp.stats().rx_dropped, dp.counters(B).unwrap()));
    assert_eq!(dropped_after, dropped_before + 1);
    assert_eq!(b_in.inbound[0].1.packets, cb.inbound[0].1.packets);
    assert_eq!(b_in.inbound[0].1.auth_failures, 0, "not even tried");

    // C goes away; B keeps working.
    stop_c.send(()).unwrap();
    let (_, left_c) = dp_c.join().unwrap();
    assert!(left_c.is_empty(), "left behind in C:\n{left_c}");
    let (rules, table, gone, remove_again) = a.call(|dp| {
        dp.remove_peer(C).unwrap();
        (
            sh_out(&["ip", "rule"]),
            sh_out(&["nft", "list", "table", "inet", "ibm_ipsec"]),
            dp.counters(C).is_none() && dp.peers() == vec![B],
            dp.remove_peer(C).unwrap_err().kind(),
        )
    });
    assert!(gone);
    assert_eq!(remove_again, std::io::ErrorKind::NotFound);
    assert!(!rules.contains("10.77.0.3"), "C's rule kept:\n{rules}");
    assert!(
        rules.contains("to 10.77.0.2 lookup 485"),
        "B's rule gone:\n{rules}"
    );
    assert!(!table.contains("10.77.0.3"), "C's policy kept:\n{table}");
    assert!(
        table.contains("ip saddr 10.77.0.2"),
        "B's policy gone:\n{table}"
    );
    let b_before = a.call(|dp| dp.counters(B).unwrap().outbound.unwrap().1.packets);
    exchange(&star.a, A, &star.b, B);
    let b_after = a.call(|dp| dp.counters(B).unwrap().outbound.unwrap().1.packets);
    assert!(b_after > b_before + 100, "{b_before} → {b_after}");
    // C without a policy: a datagram to it goes in clear (and arrives).
    let got = in_ns(&star.c, || {
        let u = UdpSocket::bind(SocketAddrV4::new(C, 5009)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 64];
        u.recv(&mut b).map(|n| b[..n].to_vec())
    });
    thread::sleep(Duration::from_millis(200));
    in_ns(&star.a, || {
        let u = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
        u.send_to(b"clear-to-c", SocketAddrV4::new(C, 5009))
            .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(got.join().unwrap().unwrap(), b"clear-to-c");

    stop_b.send(()).unwrap();
    let (stats_b, left_b) = dp_b.join().unwrap();
    let stats_a = a.stop();
    cap.finish();
    eprintln!("two peers: A {stats_a:?}\nB {stats_b:?}");
    assert!(left_b.is_empty(), "left behind in B:\n{left_b}");
    let left_a = in_ns(&star.a, || leftovers("espmpa", "ibm_ipsec"))
        .join()
        .unwrap();
    assert!(left_a.is_empty(), "left behind in A:\n{left_a}");
    // The protected exchanges never showed in clear; ESP went both ways to both peers.
    assert_eq!(cap.count("tcp port 5001 or udp port 5002"), 0);
    assert!(cap.count("host 10.77.0.2 and udp port 4500") > 200);
    assert!(cap.count("host 10.77.0.3 and ip proto 50") > 200);
    assert_eq!(cap.count("udp port 5009"), 1);
}

/// The 36 bytes (AES-256 key ‖ salt) that charon's `chd 4` log shows after `label =>` as a
/// hex dump (`N: XX XX …  ascii` lines, 16 bytes each).
fn charon_key(log: &str, label: &str) -> Option<Vec<u8>> {
    let mut lines = log.lines().skip_while(|l| !l.contains(label));
    let first = lines.next()?;
    let len: usize = first
        .split("=>")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let mut key = Vec::with_capacity(len);
    for line in lines.take(len.div_ceil(16)) {
        let (offset, rest) = line.split_once("]")?.1.trim_start().split_once(": ")?;
        let offset: usize = offset.trim().parse().ok()?;
        if offset != key.len() {
            return None;
        }
        let n = (len - offset).min(16);
        for token in rest.split_whitespace().take(n) {
            key.push(u8::from_str_radix(token, 16).ok()?);
        }
    }
    (key.len() == len).then_some(key)
}

/// Interop with strongSwan's userspace ESP (kernel-libipsec: tunnel mode, ESP in UDP): two
/// charons negotiate a host-to-host CHILD_SA (AES-256-GCM), the initiator's charon is
/// killed (no DELETE), and our datapath takes its place with the keys and SPIs from its
/// log. TCP and UDP then flow between our tunnel mode and libipsec's, both ways, and both
/// sides count the traffic under the negotiated SPIs.
#[test]
fn tunnel_mode_interoperates_with_strongswan_libipsec() {
    use ibm_ipsec_tests::{Config, Connection, StrongSwan};
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace strongSwan interop: {why}");
        return;
    }
    if !std::path::Path::new("/usr/lib/ipsec/charon").exists() {
        eprintln!("SKIPPED esp_userspace strongSwan interop: charon not installed");
        return;
    }
    let Some(lab) = ibm_ipsec_tests::Lab::require_root() else {
        return;
    };
    let (client, share) = lab.two_hosts().unwrap();
    let (ca, sa) = (client.addr(), share.addr());
    let psk = |c: Config| c.psk(&["client.lab", "share.lab"], "interop-psk-0123456789");
    let share_swan = StrongSwan::start(
        &share,
        psk(Config::default()).connection(Connection::psk(
            "nfs",
            sa,
            ca,
            "share.lab",
            "client.lab",
        )),
    )
    .unwrap();
    let mut client_swan = StrongSwan::start(
        &client,
        psk(Config {
            debug: true,
            ..Config::default()
        })
        .connection(Connection::psk("nfs", ca, sa, "client.lab", "share.lab")),
    )
    .unwrap();
    client_swan.initiate("nfs").unwrap();
    let sas = client_swan.list_sas().unwrap();
    let child = &sas[0].children[0];
    assert_eq!(child.get("mode"), Some("TUNNEL"), "{child:?}");
    let spi = |k: &str| u32::from_str_radix(child.get(k).unwrap(), 16).unwrap();
    let (spi_in, spi_out) = (spi("spi-in"), spi("spi-out"));
    let log = client_swan.log();
    let key_out = charon_key(&log, "encryption initiator key").expect("initiator key in log");
    let key_in = charon_key(&log, "encryption responder key").expect("responder key in log");
    // Gone without a word: the responder keeps its CHILD_SA.
    let pid = client_swan.pid().unwrap();
    // SAFETY: SIGKILL to the charon this test started, by its own pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    client_swan.stop();
    thread::sleep(Duration::from_millis(300));

    let mut cfg = DatapathConfig::new(ca);
    cfg.tun_name = "espswan".into();
    let tunnel = PeerConfig {
        mode: Mode::Tunnel,
        ..PeerConfig::new()
    };
    let mut cap = Capture::start(client.namespace(), "lab0", "swan");
    let (stop, dp) = run_datapath(
        client.namespace(),
        (cfg, sa.into(), tunnel),
        sa_pair_mode(Mode::Tunnel, spi_out, &key_out, spi_in, &key_in),
    );
    exchange(client.namespace(), ca, share.namespace(), sa);
    big_datagrams(client.namespace(), ca, share.namespace(), sa);
    stop.send(()).unwrap();
    let (stats, left) = dp.join().unwrap();
    cap.finish();
    eprintln!("ours against libipsec: {stats:?}");
    let theirs = share_swan.list_sas().unwrap();
    let their_child = &theirs[0].children[0];
    eprintln!("libipsec: {their_child:?}");
    assert!(left.is_empty(), "left behind:\n{left}");
    assert!(
        stats.tx_packets > 500 && stats.rx_packets > 500,
        "{stats:?}"
    );
    assert_eq!(stats.rx_dropped, 0, "{stats:?}");
    // libipsec opened what we sealed and sealed what we opened, under the negotiated SPIs.
    assert_eq!(
        their_child.get("spi-in").map(|s| s.to_owned()),
        child.get("spi-out").map(|s| s.to_owned())
    );
    assert!(
        their_child.counter("packets-in").unwrap_or(0) > 500,
        "{their_child:?}"
    );
    assert!(
        their_child.counter("packets-out").unwrap_or(0) > 500,
        "{their_child:?}"
    );
    assert_eq!(
        cap.count("tcp port 5001 or udp port 5002 or udp port 5003"),
        0
    );
    // The big datagrams' fragments travelled inside ESP, not beside it.
    assert_eq!(cap.count("ip[6:2] & 0x3fff != 0"), 0);
    assert!(cap.count("udp port 4500") > 1000);
}

/// Sends `count` datagrams from A to B:5003 and returns how many echoes came back (B runs an
/// echo server on that port for the test's life).
fn udp_echoes(ns: &str, count: u32) -> u32 {
    in_ns(ns, move || {
        let u = UdpSocket::bind(SocketAddrV4::new(A, 0)).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut got = 0;
        for i in 0..count {
            u.send_to(&i.to_be_bytes(), SocketAddrV4::new(B, 5003))
                .unwrap();
            let mut b = [0u8; 16];
            if u.recv(&mut b).is_ok() {
                got += 1;
            }
        }
        got
    })
    .join()
    .unwrap()
}

/// `update_peer` widens a peer's protection in place — the SAs keep working and nothing of
/// the newly protected traffic shows in clear; `clear_outbound` makes captured traffic drop
/// instead of leaving in clear; a mode change drops the SAs of the old mode.
#[test]
fn update_peer_and_clear_outbound() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED esp_userspace update_peer: {why}");
        return;
    }
    let lab = Lab::new("upd");
    let ((cfg_a, _, narrow_a), (cfg_b, _, narrow_b)) = configs("up", Encapsulation::UDP_4500, true);
    let mut cap = Capture::start(&lab.a, "va", "upd");
    let a = Remote::start(&lab.a, cfg_a);
    let b = Remote::start(&lab.b, cfg_b);
    a.call(move |dp| {
        dp.add_peer(B, narrow_a).unwrap();
        let (o, i) = sa_pair(SPI_AB, &KEY_AB, SPI_BA, &KEY_BA);
        dp.install_sas(B, o, i).unwrap();
    });
    b.call(move |dp| {
        dp.add_peer(A, narrow_b).unwrap();
        let (o, i) = sa_pair(SPI_BA, &KEY_BA, SPI_AB, &KEY_AB);
        dp.install_sas(A, o, i).unwrap();
    });
    let echo = in_ns(&lab.b, || {
        let u = UdpSocket::bind(SocketAddrV4::new(B, 5003)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        let mut b = [0u8; 64];
        while let Ok((n, from)) = u.recv_from(&mut b) {
            u.send_to(&b[..n], from).unwrap();
        }
    });
    thread::sleep(Duration::from_millis(200));
    // Outside the narrow selectors: in clear.
    assert_eq!(udp_echoes(&lab.a, 3), 3);

    // Everything to the peer from now on, same SAs.
    for (r, peer) in [(&a, B), (&b, A)] {
        r.call(move |dp| dp.update_peer(peer, PeerConfig::new()).unwrap());
    }
    let before = a.call(|dp| dp.counters(B).unwrap().outbound.unwrap().1.packets);
    assert_eq!(udp_echoes(&lab.a, 3), 3);
    let after = a.call(|dp| dp.counters(B).unwrap());
    assert_eq!(after.outbound.unwrap().0, SPI_AB);
    assert_eq!(after.outbound.unwrap().1.packets, before + 3);
    assert_eq!(
        after.inbound[0].1.packets, 3,
        "echoes under the old inbound SA"
    );
    let (rules, table) = a.call(|_| {
        (
            sh_out(&["ip", "rule"]),
            sh_out(&["nft", "list", "table", "inet", "ibm_ipsec"]),
        )
    });
    assert!(!rules.contains("dport 5001"), "narrow rule kept:\n{rules}");
    assert!(rules.contains("to 10.77.0.2 lookup 485"), "{rules}");
    assert!(table.contains("ip saddr 10.77.0.2 counter"), "{table}");

    // Outbound SA gone: dropped, not sent in clear.
    let (cleared, dropped_before) = a.call(|dp| (dp.clear_outbound(B).unwrap(), dp.stats()));
    assert_eq!(cleared, Some(SPI_AB));
    assert_eq!(udp_echoes(&lab.a, 1), 0);
    let dropped_after = a.call(|dp| dp.stats().tx_dropped);
    assert!(dropped_after > dropped_before.tx_dropped);

    // Another mode: the transport-mode SAs cannot serve it and go.
    let tunnel = PeerConfig {
        mode: Mode::Tunnel,
        ..PeerConfig::new()
    };
    let c = a.call(move |dp| {
        dp.update_peer(B, tunnel).unwrap();
        dp.counters(B).unwrap()
    });
    assert_eq!((c.outbound, c.inbound.len()), (None, 0));

    let stats_a = a.stop();
    b.stop();
    echo.join().unwrap();
    cap.finish();
    eprintln!("update: A {stats_a:?}");
    // Only the three exchanges before the update were in clear.
    assert_eq!(cap.count("udp port 5003"), 6);
    let left_a = in_ns(&lab.a, || leftovers("espupa", "ibm_ipsec"))
        .join()
        .unwrap();
    assert!(left_a.is_empty(), "left behind in A:\n{left_a}");
}

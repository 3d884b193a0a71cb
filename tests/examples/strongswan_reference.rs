//! strongSwan ↔ strongSwan reference figures in the lab, for `benches/` to compare against,
//! with the IBM proposal and RSA-4096 certificates (charon logging at level 1):
//! - IKE_SA_INIT → last IKE_AUTH packet on the wire (from a capture), median of N set-ups;
//! - `swanctl --initiate` wall time to an installed CHILD_SA, median;
//! - the responder's CPU time per set-up and tear-down, and its resident memory (`/proc`);
//! - iperf3 TCP throughput, one stream for 3 s, through the tunnel (kernel-libipsec, ESP in
//!   UDP).
//!
//! `sudo cargo run -p ibm-ipsec-tests --example strongswan_reference [N] [PROPOSAL]`

use std::time::Duration;

use ibm_ipsec_tests::{Auth, Capture, Config, Connection, Lab, StrongSwan, TestPki};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// utime + stime of a process, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Result<Duration, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(") ").ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// /proc counts CPU time in USER_HZ ticks, 100 per second on every Linux ABI we run on.
const USER_HZ: u64 = 100;

fn rss_kib(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("odd VmRSS")?.parse()?)
}

/// One iperf3 TCP stream client → share through a fresh CHILD_SA; the receiver's Mbit/s.
fn iperf3(
    client: &ibm_ipsec_tests::Host,
    share: &ibm_ipsec_tests::Host,
    initiator: &StrongSwan,
) -> Result<f64, Box<dyn std::error::Error>> {
    let _server = share.spawn(&["iperf3", "-s", "-1", "-B", &share.addr().to_string()])?;
    initiator.initiate("nfs")?;
    std::thread::sleep(Duration::from_millis(200)); // the server's listen socket
    let out = client.run(&[
        "iperf3",
        "-c",
        &share.addr().to_string(),
        "-t",
        "3",
        "-f",
        "m",
    ])?;
    let line = out
        .lines()
        .find(|l| l.contains("receiver"))
        .ok_or("no iperf3 receiver line")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "Mbits/sec")
        .ok_or("no Mbits/sec")?;
    let sas = initiator.list_sas()?;
    let bytes = sas[0]
        .children
        .first()
        .and_then(|c| c.counter("bytes-out"))
        .unwrap_or(0);
    if bytes < 1_000_000 {
        return Err(
            format!("only {bytes} bytes went through the CHILD_SA: tunnel bypassed?").into(),
        );
    }
    initiator.terminate_ike("nfs")?;
    Ok(words[at - 1].parse()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    let proposal = args
        .next()
        .unwrap_or_else(|| "aes256-sha384-ecp384".to_owned());
    let Some(lab) = Lab::require_root() else {
        std::process::exit(2)
    };
    let (client, share) = lab.two_hosts()?;
    let pki = TestPki::generate(&lab.dir().join("pki"))?;
    let conn = |local: &ibm_ipsec_tests::Host, remote: &ibm_ipsec_tests::Host, id| {
        let mut c = Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::cert(id),
            Auth::any_cert(),
        );
        c.proposals.clone_from(&proposal);
        c
    };
    let trust = |c: Config| c.ca(&pki.root.cert).ca(&pki.intermediate.cert);
    let responder = StrongSwan::start(
        &share,
        trust(Config::default().identity(&pki.share)).connection(conn(&share, &client, &pki.share)),
    )?;
    let initiator = StrongSwan::start(
        &client,
        trust(Config::default().identity(&pki.client)).connection(conn(
            &client,
            &share,
            &pki.client,
        )),
    )?;

    let responder_pid = responder.pid().ok_or("responder not running")?;
    let cpu_before = cpu_time(responder_pid)?;
    let (mut wire, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let capture = Capture::start(&share, "lab0", "udp port 500 or udp port 4500")?;
        wall.push(initiator.initiate("nfs")?);
        let packets = capture.finish()?;
        let ike: Vec<_> = packets
            .iter()
            .filter_map(|p| p.ike().map(|(h, _)| (p.time, h)))
            .collect();
        let first = ike.first().ok_or("no IKE packets captured")?.0;
        let last = ike
            .iter()
            .rev()
            .find(|(_, h)| h.exchange_name() == "IKE_AUTH")
            .ok_or("no IKE_AUTH captured")?
            .0;
        wire.push(last - first);
        initiator.terminate_ike("nfs")?;
    }
    let cpu = cpu_time(responder_pid)? - cpu_before;
    let mbits = iperf3(&client, &share, &initiator)?;
    let rss = rss_kib(responder_pid)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (lo, hi) = (
        wire.iter().min().copied().unwrap_or_default(),
        wire.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "strongSwan 5.9.8 ↔ strongSwan, {proposal}, RSA-4096, encap, {runs} runs: \
         IKE_SA_INIT → last IKE_AUTH on the wire median {:.1} ms (min {:.1}, max {:.1}); \
         swanctl --initiate median {:.1} ms; responder CPU {:.1} ms per IKE_SA + CHILD_SA \
         (incl. DELETE), responder RSS {} KiB; iperf3 TCP through the tunnel {:.0} Mbit/s",
        ms(median(wire)),
        ms(lo),
        ms(hi),
        ms(median(wall)),
        ms(cpu) / runs as f64,
        rss,
        mbits
    );
    Ok(())
}

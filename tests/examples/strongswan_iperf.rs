//! iperf3 through strongSwan's userspace path, for `benches/esp_userspace_iperf.sh` to put
//! next to plain veth and our datapath in the same run: two charon instances in namespaces
//! (kernel-libipsec, tunnel mode, ESP in UDP, the IBM proposal, AES-256-GCM, RSA-4096
//! certificates), one CHILD_SA, then RUNS × SECONDS single-stream TCP runs. Prints each run's
//! receiver Mbit/s on its own line and nothing else on stdout.
//!
//! `sudo cargo run --release -p ibm-ipsec-tests --example strongswan_iperf [RUNS] [SECONDS]`

use std::time::Duration;

use ibm_ipsec_tests::{Auth, Config, Connection, Lab, StrongSwan, TestPki};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let seconds: u32 = args.next().map_or(Ok(10), |a| a.parse())?;
    let Some(lab) = Lab::require_root() else {
        std::process::exit(2)
    };
    let (client, share) = lab.two_hosts()?;
    let pki = TestPki::generate(&lab.dir().join("pki"))?;
    let conn = |local: &ibm_ipsec_tests::Host, remote: &ibm_ipsec_tests::Host, id| {
        Connection::ibm(
            "nfs",
            local.addr(),
            remote.addr(),
            Auth::cert(id),
            Auth::any_cert(),
        )
    };
    let trust = |c: Config| c.ca(&pki.root.cert).ca(&pki.intermediate.cert);
    let _responder = StrongSwan::start(
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
    initiator.initiate("nfs")?;
    let target = share.addr().to_string();
    let secs = seconds.to_string();
    for _ in 0..runs {
        let _server = share.spawn(&["iperf3", "-s", "-1", "-B", &target])?;
        std::thread::sleep(Duration::from_millis(300)); // the server's listen socket
        let out = client.run(&["iperf3", "-c", &target, "-t", &secs, "-f", "m"])?;
        let line = out
            .lines()
            .find(|l| l.contains("receiver"))
            .ok_or("no iperf3 receiver line")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == "Mbits/sec")
            .ok_or("no Mbits/sec")?;
        let mbits: f64 = words[at - 1].parse()?;
        println!("{mbits:.0}");
    }
    // The traffic must have gone through the CHILD_SA, not around it.
    let sas = initiator.list_sas()?;
    let bytes = sas
        .first()
        .and_then(|s| s.children.first())
        .and_then(|c| c.counter("bytes-out"))
        .unwrap_or(0);
    if bytes < 1_000_000 * runs as u64 {
        return Err(
            format!("only {bytes} bytes went through the CHILD_SA: tunnel bypassed?").into(),
        );
    }
    initiator.terminate_ike("nfs")?;
    Ok(())
}

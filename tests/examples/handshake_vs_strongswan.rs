//! Handshake benchmark, ours vs strongSwan 5.9.8, side by side in one run on the same lab
//! (two namespaces over veth, RSA-4096 certificate chain, metadata-style client certificate,
//! IBM proposal `aes256-sha384-ecp384`, `encap = yes`, ESP `aes256gcm16`, tunnel mode because
//! strongSwan's kernel-libipsec knows no other):
//!
//! 1. initiators against the same charon responder: wall time from start to CHILD_SA
//!    installed (`swanctl --initiate` vs `ibm-ipsec up`) and IKE_SA_INIT → last IKE_AUTH on
//!    the wire (tcpdump), RUNS set-ups each; then the initiator process's CPU per set-up and
//!    tear-down and its resident memory, as below;
//! 2. responders driven by the same charon initiator: CPU per IKE_SA + CHILD_SA set-up and
//!    tear-down (serial loop for CPU_SECONDS, the process's utime + stime from /proc),
//!    resident memory with one SA up and after SETUPS set-ups, and the wire time of RUNS
//!    set-ups.
//!
//! CPU is the daemon's (charon or `ibm-ipsec daemon`) plus that of the programs it runs and
//! waits for (`nft`, `ip` for the userspace datapath's rules); the short-lived `swanctl` and
//! `ibm-ipsec up` client processes are not counted.
//!
//! `sudo cargo run --release -p ibm-ipsec-tests --example handshake_vs_strongswan -- \
//!      [RUNS=7] [CPU_SECONDS=30] [SETUPS=1000] [SIDES=both|strongswan|ours]`
//!
//! Needs `ibm-ipsec` built in the same profile (`cargo build --release --bin ibm-ipsec`) for
//! our half; without it (or with SIDES=strongswan) only strongSwan's figures are printed.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ibm_ipsec_tests::pcap::{handshake_span, ike_messages};
use ibm_ipsec_tests::procstat::{cpu_time_with_children, rss_kib};
use ibm_ipsec_tests::{
    workspace_binary, Auth, Capture, Config, Connection, Host, Lab, Ours, StrongSwan, TestPki,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall clock as the capture's timestamps count it.
fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one implementation did in one role.
struct Figures {
    label: String,
    wall: Vec<Duration>,
    wire: Vec<Duration>,
    /// From the start of the set-up to the first IKE packet on the wire.
    before: Vec<Duration>,
    /// From the last IKE_AUTH packet to the set-up's return (CHILD_SA installed).
    after: Vec<Duration>,
    cpu_setups: u32,
    cpu_per_setup: Duration,
    rss_one_sa: u64,
    rss_after: u64,
    setups: u32,
    elapsed: Duration,
}

/// Set-up and tear-down of one IKE SA with its CHILD_SA.
struct Cycle<'a> {
    setup: Box<dyn FnMut() -> Res<Duration> + 'a>,
    teardown: Box<dyn FnMut() -> Res<()> + 'a>,
}

/// RSS with one SA up; RUNS set-ups with a capture each (the set-up's own wall time and the
/// wire's view); CPU of `pid` over a CPU_SECONDS serial loop; RSS after SETUPS set-ups in all.
fn measure(
    label: &str,
    share: &Host,
    pid: u32,
    (runs, cpu_seconds, setups): (usize, u64, u32),
    mut cycle: Cycle<'_>,
) -> Res<Figures> {
    let started = Instant::now();
    (cycle.setup)()?;
    let rss_one_sa = rss_kib(pid)?;
    (cycle.teardown)()?;
    let (mut wall, mut wire, mut before, mut after) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let capture = Capture::start(share, "lab0", "udp port 500 or udp port 4500")?;
        let start = since_epoch();
        wall.push((cycle.setup)()?);
        let end = since_epoch();
        let packets = capture.finish()?;
        let span = handshake_span(&packets).ok_or("no IKE_SA_INIT → IKE_AUTH in the capture")?;
        let first = ike_messages(&packets)
            .first()
            .map(|(p, _)| p.time)
            .ok_or("no IKE in the capture")?;
        wire.push(span);
        before.push(first.saturating_sub(start));
        after.push(end.saturating_sub(first + span));
        (cycle.teardown)()?;
    }
    let mut done = 1 + u32::try_from(runs)?;
    let cpu_before = cpu_time_with_children(pid)?;
    let window = Instant::now();
    let mut cpu_setups = 0u32;
    while window.elapsed() < Duration::from_secs(cpu_seconds) {
        (cycle.setup)()?;
        (cycle.teardown)()?;
        cpu_setups += 1;
    }
    let cpu = cpu_time_with_children(pid)? - cpu_before;
    done += cpu_setups;
    while done < setups {
        (cycle.setup)()?;
        (cycle.teardown)()?;
        done += 1;
    }
    Ok(Figures {
        label: label.to_owned(),
        wall,
        wire,
        before,
        after,
        cpu_setups,
        cpu_per_setup: cpu / cpu_setups.max(1),
        rss_one_sa,
        rss_after: rss_kib(pid)?,
        setups: done,
        elapsed: started.elapsed(),
    })
}

/// A charon initiator's cycle: `swanctl --initiate` (returns with the CHILD_SA installed),
/// `swanctl --terminate`.
fn charon_cycle(initiator: &StrongSwan) -> Cycle<'_> {
    Cycle {
        setup: Box::new(move || Ok(initiator.initiate("nfs")?)),
        teardown: Box::new(move || Ok(initiator.terminate_ike("nfs")?)),
    }
}

/// Everything both halves share: the lab, the PKI, the charon configurations.
struct Bench {
    client: Host,
    share: Host,
    pki: TestPki,
    client_chain: PathBuf,
    share_chain: PathBuf,
}

impl Bench {
    fn trust(&self, c: Config) -> Config {
        c.ca(&self.pki.root.cert).ca(&self.pki.intermediate.cert)
    }

    /// charon on `share` answering the client's certificate.
    fn charon_responder(&self) -> Res<StrongSwan> {
        Ok(StrongSwan::start(
            &self.share,
            self.trust(Config::default().identity(&self.pki.share))
                .connection(Connection::ibm(
                    "nfs",
                    self.share.addr(),
                    self.client.addr(),
                    Auth::cert(&self.pki.share),
                    Auth::any_cert(),
                )),
        )?)
    }

    /// charon on `client` with the metadata-style certificate.
    fn charon_initiator(&self) -> Res<StrongSwan> {
        Ok(StrongSwan::start(
            &self.client,
            self.trust(Config::default().identity(&self.pki.client))
                .connection(Connection::ibm(
                    "nfs",
                    self.client.addr(),
                    self.share.addr(),
                    Auth::cert(&self.pki.client),
                    Auth::any_cert(),
                )),
        )?)
    }

    /// Our daemon's credential and mode arguments for `identity`'s chain.
    fn our_args(&self, chain: &std::path::Path, key: &std::path::Path) -> Vec<String> {
        [
            "--cert",
            &chain.to_string_lossy(),
            "--key",
            &key.to_string_lossy(),
            "--ca",
            &self.pki.root.cert.to_string_lossy(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether this build of `ibm-ipsec` has an IKE driver (`up`); the reason if not.
fn ours_missing() -> Option<String> {
    let bin = match workspace_binary("ibm-ipsec") {
        Ok(b) => b,
        Err(e) => return Some(e.to_string()),
    };
    match std::process::Command::new(bin)
        .args(["up", "--help"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(_) => Some("this ibm-ipsec has no `up` command yet".into()),
        Err(e) => Some(e.to_string()),
    }
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    let cpu_seconds: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let setups: u32 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let sides = args.next().unwrap_or_else(|| "both".into());
    let Some(lab) = Lab::require_root() else {
        std::process::exit(2)
    };
    let (client, share) = lab.two_hosts()?;
    let pki = TestPki::generate(&lab.dir().join("pki"))?;
    let bench = Bench {
        client_chain: pki.chain_file(&pki.client)?,
        share_chain: pki.chain_file(&pki.share)?,
        client,
        share,
        pki,
    };
    let peer: Ipv4Addr = bench.share.addr();
    let with_strongswan = sides != "ours";
    let with_ours = sides != "strongswan"
        && match ours_missing() {
            None => true,
            Some(why) => {
                eprintln!("ours: skipped ({why})");
                false
            }
        };
    println!(
        "handshake bench: {runs} timed set-ups, {cpu_seconds} s CPU loop, {setups} set-ups per \
         row; {} CPUs, load {} at the start",
        std::thread::available_parallelism().map_or(0, usize::from),
        load()
    );
    let plan = (runs, cpu_seconds, setups);
    let mut initiators = Vec::new();
    let mut responders = Vec::new();
    // our half may fail while the daemon grows; strongSwan's figures are still printed
    let mut failures: Vec<String> = Vec::new();

    // 1. initiators against one charon responder
    {
        let responder = bench.charon_responder()?;
        if with_strongswan {
            let initiator = bench.charon_initiator()?;
            let pid = initiator.pid().ok_or("charon initiator not running")?;
            initiators.push(measure(
                "strongSwan charon (swanctl --initiate)",
                &bench.share,
                pid,
                plan,
                charon_cycle(&initiator),
            )?);
        }
        if with_ours {
            let measured = (|| -> Res<Figures> {
                let args = bench.our_args(&bench.client_chain, &bench.pki.client.key);
                // credentials travel with `up`, as the mount helper passes them
                let ours = Ours::start(&bench.client, &["--datapath", "userspace"])?;
                let pid = ours.pid().ok_or("our daemon is not running")?;
                let mut up_args = vec!["--mode", "tunnel"];
                up_args.extend(strs(&args));
                let responder = &responder;
                let ours = &ours;
                let cycle = Cycle {
                    setup: Box::new(move || {
                        let t = ours.up(peer, &up_args)?;
                        // the set-up counts only once charon installed its half too
                        responder.wait_for_sas(
                            "CHILD_SA installed",
                            Duration::from_secs(5),
                            |s| {
                                s.iter()
                                    .any(|sa| sa.children.iter().any(|c| c.state() == "INSTALLED"))
                            },
                        )?;
                        Ok(t)
                    }),
                    teardown: Box::new(move || {
                        ours.down(peer)?;
                        responder.wait_for_sas(
                            "SA deleted",
                            Duration::from_secs(5),
                            <[_]>::is_empty,
                        )?;
                        Ok(())
                    }),
                };
                measure(
                    "ours, ibm-ipsec daemon (ibm-ipsec up)",
                    &bench.share,
                    pid,
                    plan,
                    cycle,
                )
            })();
            match measured {
                Ok(f) => initiators.push(f),
                Err(e) => failures.push(format!("ours as initiator: {e}")),
            }
        }
    }

    // 2. responders driven by one charon initiator (each started fresh)
    if with_strongswan {
        let responder = bench.charon_responder()?;
        let initiator = bench.charon_initiator()?;
        let pid = responder.pid().ok_or("charon responder not running")?;
        responders.push(measure(
            "strongSwan charon",
            &bench.share,
            pid,
            plan,
            charon_cycle(&initiator),
        )?);
    }
    if with_ours {
        let measured = (|| -> Res<Figures> {
            let args = bench.our_args(&bench.share_chain, &bench.pki.share.key);
            let listen = peer.to_string();
            // kernel-libipsec on charon's side: tunnel mode
            let mut daemon_args = vec![
                "--datapath",
                "userspace",
                "--listen",
                &listen,
                "--mode",
                "tunnel",
            ];
            daemon_args.extend(strs(&args));
            let ours = Ours::start(&bench.share, &daemon_args)?;
            let initiator = bench.charon_initiator()?;
            let pid = ours.pid().ok_or("our daemon is not running")?;
            measure(
                "ours, ibm-ipsec daemon --listen",
                &bench.share,
                pid,
                plan,
                charon_cycle(&initiator),
            )
        })();
        match measured {
            Ok(f) => responders.push(f),
            Err(e) => failures.push(format!("ours as responder: {e}")),
        }
    }

    let range = |v: &[Duration]| {
        format!(
            "{:.1} ms ({:.1}–{:.1})",
            ms(median(v)),
            ms(v.iter().min().copied().unwrap_or_default()),
            ms(v.iter().max().copied().unwrap_or_default())
        )
    };
    let resources = |f: &Figures| {
        format!(
            "{:.2} ms ({} in {cpu_seconds} s) | {} KiB | {} KiB ({} set-ups, {:.0} s)",
            ms(f.cpu_per_setup),
            f.cpu_setups,
            f.rss_one_sa,
            f.rss_after,
            f.setups,
            f.elapsed.as_secs_f64()
        )
    };
    println!(
        "\n| initiator (→ charon responder) | start → CHILD_SA installed, median (min–max) | \
         IKE_SA_INIT → last IKE_AUTH on the wire | CPU per set-up + tear-down | RSS, 1 SA | \
         RSS after set-ups |"
    );
    println!("|---|---|---|---|---|---|");
    for f in &initiators {
        println!(
            "| {} | {} | {} | {} |",
            f.label,
            range(&f.wall),
            range(&f.wire),
            resources(f)
        );
    }
    println!(
        "\n| responder (← charon initiator) | swanctl --initiate, median (min–max) | \
         IKE_SA_INIT → last IKE_AUTH on the wire | CPU per IKE_SA + CHILD_SA (incl. DELETE) | \
         RSS, 1 SA | RSS after set-ups |"
    );
    println!("|---|---|---|---|---|---|");
    for f in &responders {
        println!(
            "| {} | {} | {} | {} |",
            f.label,
            range(&f.wall),
            range(&f.wire),
            resources(f)
        );
    }
    println!(
        "\n| set-up time, medians | start → first IKE packet | IKE_SA_INIT → last IKE_AUTH | \
         last IKE_AUTH → CHILD_SA installed (set-up returns) |"
    );
    println!("|---|---|---|---|");
    for (role, f) in initiators
        .iter()
        .map(|f| ("initiator", f))
        .chain(responders.iter().map(|f| ("responder", f)))
    {
        println!(
            "| {} as {role} | {:.1} ms | {:.1} ms | {:.1} ms |",
            f.label,
            ms(median(&f.before)),
            ms(median(&f.wire)),
            ms(median(&f.after))
        );
    }
    for f in &failures {
        println!("\nFAILED {f}");
    }
    println!("\nload at the end: {}", load());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} measurement(s) failed", failures.len()).into())
    }
}

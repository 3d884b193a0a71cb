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
//!    set-ups;
//! 3. ours ↔ ours: our initiator against our responder (same certificates and modes), so our
//!    own on-the-wire time and both daemons' CPU and memory show without charon's signing
//!    and verifying in the loop.
//!
//! Memory is `VmRSS` and, in parentheses, its anonymous part (`RssAnon`: heap, stacks,
//! buffers); the rest is file-backed (binary and libraries, shared with the page cache).
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
    rss_one_sa: Memory,
    rss_after: Memory,
    setups: u32,
    elapsed: Duration,
}

/// Resident memory of a process, in KiB: all of it (`VmRSS`, what the goal counts), and the
/// anonymous part (heap, stacks, buffers: `RssAnon`). The rest is file-backed (the binary's
/// and the libraries' pages, shared with the page cache).
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
}

fn memory(pid: u32) -> Res<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Ok(Memory {
        rss: rss_kib(pid)?,
        anon: field("RssAnon:").ok_or("no RssAnon in /proc/PID/status")?,
    })
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
    plan: (usize, u64, u32),
    cycle: Cycle<'_>,
) -> Res<Figures> {
    let mut sides = measure_sides(share, &[(label, pid)], plan, cycle)?;
    sides.pop().ok_or_else(|| "no figures".into())
}

/// [`measure`] with the CPU and memory of several processes (both daemons of ours ↔ ours),
/// one [`Figures`] per `(label, pid)`, all with the same set-up times.
fn measure_sides(
    share: &Host,
    pids: &[(&str, u32)],
    (runs, cpu_seconds, setups): (usize, u64, u32),
    mut cycle: Cycle<'_>,
) -> Res<Vec<Figures>> {
    let started = Instant::now();
    (cycle.setup)()?;
    let rss_one_sa = pids
        .iter()
        .map(|&(_, pid)| memory(pid))
        .collect::<Res<Vec<_>>>()?;
    (cycle.teardown)()?;
    let (mut wall, mut wire, mut before, mut after) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let capture = Capture::start(share, "lab0", "udp port 500 or udp port 4500")?;
        let start = since_epoch();
        let took = (cycle.setup)()?;
        wall.push(took);
        // the set-up's own end, not that of the harness's check of the peer that follows it
        let end = start + took;
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
    let cpu = |pids: &[(&str, u32)]| -> Res<Vec<Duration>> {
        pids.iter()
            .map(|&(_, pid)| Ok(cpu_time_with_children(pid)?))
            .collect()
    };
    let cpu_before = cpu(pids)?;
    let window = Instant::now();
    let mut cpu_setups = 0u32;
    while window.elapsed() < Duration::from_secs(cpu_seconds) {
        (cycle.setup)()?;
        (cycle.teardown)()?;
        cpu_setups += 1;
    }
    let cpu_after = cpu(pids)?;
    done += cpu_setups;
    while done < setups {
        (cycle.setup)()?;
        (cycle.teardown)()?;
        done += 1;
    }
    let elapsed = started.elapsed();
    pids.iter()
        .zip(rss_one_sa)
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|((&(label, pid), rss_one_sa), (b, a))| {
            Ok(Figures {
                label: label.to_owned(),
                wall: wall.clone(),
                wire: wire.clone(),
                before: before.clone(),
                after: after.clone(),
                cpu_setups,
                cpu_per_setup: a.saturating_sub(*b) / cpu_setups.max(1),
                rss_one_sa,
                rss_after: memory(pid)?,
                setups: done,
                elapsed,
            })
        })
        .collect()
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

/// Our initiator (`ibm-ipsec up`, the client's metadata-style certificate) against our
/// responder (`daemon --listen`, the share's certificate), both on the userspace datapath in
/// tunnel mode like the charon rows; figures for the initiator's and the responder's daemon.
fn ours_both_sides(bench: &Bench, plan: (usize, u64, u32)) -> Res<[Figures; 2]> {
    let listen = bench.share.addr().to_string();
    let share_args = bench.our_args(&bench.share_chain, &bench.pki.share.key);
    let mut daemon_args = vec![
        "--datapath",
        "userspace",
        "--listen",
        &listen,
        "--mode",
        "tunnel",
    ];
    daemon_args.extend(strs(&share_args));
    let responder = Ours::start(&bench.share, &daemon_args)?;
    let initiator = Ours::start(&bench.client, &["--datapath", "userspace"])?;
    let pids = [
        (
            "ours, ibm-ipsec daemon (ibm-ipsec up) → ours",
            initiator.pid().ok_or("our initiator is not running")?,
        ),
        (
            "ours, ibm-ipsec daemon --listen ← ours",
            responder.pid().ok_or("our responder is not running")?,
        ),
    ];
    let client_args = bench.our_args(&bench.client_chain, &bench.pki.client.key);
    let mut up_args = vec!["--mode", "tunnel"];
    up_args.extend(strs(&client_args));
    let (peer, client) = (bench.share.addr(), bench.client.addr());
    let (initiator, responder) = (&initiator, &responder);
    let cycle = Cycle {
        setup: Box::new(move || {
            let t = initiator.up(peer, &up_args)?;
            // the responder installs its CHILD_SA before it answers the last IKE_AUTH
            responder.wait_for_status("CHILD_SA installed", Duration::from_secs(5), |s| {
                !s.children_with(client).is_empty()
            })?;
            Ok(t)
        }),
        teardown: Box::new(move || {
            initiator.down(peer)?;
            responder.wait_for_status("SA deleted", Duration::from_secs(5), |s| {
                s.has_no_sa_with(client)
            })?;
            Ok(())
        }),
    };
    let mut sides = measure_sides(&bench.share, &pids, plan, cycle)?.into_iter();
    match (sides.next(), sides.next()) {
        (Some(i), Some(r)) => Ok([i, r]),
        _ => Err("ours ↔ ours: figures missing".into()),
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
                "strongSwan charon (swanctl --initiate) → charon",
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
                    "ours, ibm-ipsec daemon (ibm-ipsec up) → charon",
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
            "strongSwan charon ← charon",
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
                "ours, ibm-ipsec daemon --listen ← charon",
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

    // 3. ours ↔ ours: our initiator against our responder, both daemons' CPU and memory,
    // and our own on-the-wire time with no charon in the loop
    if with_ours {
        match ours_both_sides(&bench, plan) {
            Ok([initiator, responder]) => {
                initiators.push(initiator);
                responders.push(responder);
            }
            Err(e) => failures.push(format!("ours ↔ ours: {e}")),
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
            "{:.2} ms ({} in {cpu_seconds} s) | {} KiB (anon {}) | {} KiB (anon {}; {} set-ups, \
             {:.0} s)",
            ms(f.cpu_per_setup),
            f.cpu_setups,
            f.rss_one_sa.rss,
            f.rss_one_sa.anon,
            f.rss_after.rss,
            f.rss_after.anon,
            f.setups,
            f.elapsed.as_secs_f64()
        )
    };
    println!(
        "\n| initiator → responder | start → CHILD_SA installed, median (min–max) | \
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
        "\n| responder ← initiator | set-up (swanctl --initiate / ibm-ipsec up), median (min–max) | \
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

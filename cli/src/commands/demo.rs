//! `ibm-ipsec demo`: the product end to end on one machine, in two network namespaces.
//!
//! A client and a file server joined by a veth pair; the metadata test server inside the
//! client namespace on 169.254.169.254 (issuing from a test CA); a responder daemon on the
//! file server with a certificate from the same CA; `ibm-ipsec up` on the client through the
//! whole path (host key → CSR → token → certificate → IKE → SAs); real data to the NFS port;
//! `ibm-ipsec status`; and a tcpdump capture that shows the wire carried only IKE and ESP.
//! Everything is removed at the end, also on failure and on Ctrl-C.

mod lab;
mod nfs;
pub mod wire;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use pki::ca::{LeafOptions, SanEntry, TestCa, Validity};
use pki::{HostKey, KeySize};

use crate::control::DatapathRequest;
use lab::{check_interrupt, Namespace, Proc};

/// Arguments of `ibm-ipsec demo`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  sudo ibm-ipsec demo
  sudo ibm-ipsec demo --datapath userspace --megabytes 64

Needs root (network namespaces), iproute2 and tcpdump (scripts/install-deps installs them).
Creates namespaces ibmdemo-<pid>-client and ibmdemo-<pid>-share joined by veth (10.214.0.1 and
10.214.0.2, addresses that exist only inside them) and removes them, with every process and
file it started, when it ends - also after a failure or Ctrl-C. Exits 0 when the capture
proves that only IKE and ESP crossed the wire.")]
pub struct DemoArgs {
    /// ESP datapath for both daemons.
    #[arg(long, value_enum, default_value = "auto")]
    pub datapath: DatapathRequest,
    /// How much data to send to the file server's NFS port.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub megabytes: u32,
    /// Keep the work directory (logs, capture, certificates) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// nfs-utils unpacked from Debian's packages (scripts/demo fetches them when the kernel
    /// has NFS); by default the installed nfs-common and nfs-kernel-server are used.
    #[arg(long, value_name = "DIR")]
    pub nfs_utils: Option<PathBuf>,
}

const NS_PREFIX: &str = "ibmdemo-";
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 2);
const METADATA_IP: &str = "169.254.169.254";
const LINK: &str = "demo0";
const NFS_PORT: u16 = 2049;
/// The data sent to the file server; the capture must never contain this text.
const PLAINTEXT: &[u8] = b"ibm-ipsec demo: this line crosses the wire only inside ESP.\n";
/// What the capture is searched for (a part of [`PLAINTEXT`] that no header can produce).
const MARKER: &[u8] = b"only inside ESP";

/// Runs the demo; prints a narrative on stdout.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    preflight()?;
    // The daemons' logs end up in files and, on failure, on screen: no colour codes. Set
    // before any thread exists.
    std::env::set_var("NO_COLOR", "1");
    lab::catch_interrupts()?;
    lab::sweep_stale(NS_PREFIX);
    let work = WorkDir::create(args.keep)?;
    let result = demo(&args, &work.path);
    match &result {
        Ok(()) => println!(
            "\nClean-up: daemons stopped, namespaces removed{}.",
            work.fate()
        ),
        Err(e) if e.is::<lab::Interrupted>() => {
            println!(
                "\nInterrupted: cleaning up (daemons, namespaces{}).",
                work.fate()
            )
        }
        Err(_) => println!(
            "\nThe demo failed; daemons and namespaces are removed, logs kept in {}.",
            work.path.display()
        ),
    }
    work.finish(result.is_ok() || lab::interrupted());
    result
}

fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo needs root (it creates network namespaces): run `sudo ibm-ipsec demo`");
    }
    for (tool, package) in [("ip", "iproute2"), ("tcpdump", "tcpdump")] {
        let found = Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok();
        if !found {
            bail!("{tool} is missing: install the {package} package (scripts/install-deps does)");
        }
    }
    Ok(())
}

/// The work directory: certificates, configs, logs and the capture.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> anyhow::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("ibm-ipsec-demo-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the old {}", path.display()))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, keep })
    }

    fn fate(&self) -> String {
        if self.keep {
            format!("; files kept in {}", self.path.display())
        } else {
            ", files removed".to_owned()
        }
    }

    /// Removes the directory unless asked to keep it, or the demo failed (its logs say why).
    fn finish(self, remove: bool) {
        if remove && !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn step(n: u32, title: &str, text: &str) {
    println!("\n[{n}/7] {title}");
    for line in text.lines() {
        println!("      {line}");
    }
    let _ = std::io::stdout().flush();
}

fn demo(args: &DemoArgs, work: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the ibm-ipsec binary")?;
    let exe = exe
        .to_str()
        .context("the binary's path is not UTF-8")?
        .to_owned();
    let datapath = match args.datapath {
        DatapathRequest::Auto => "auto",
        DatapathRequest::Kernel => "kernel",
        DatapathRequest::Userspace => "userspace",
    };
    println!(
        "ibm-ipsec demo: NFS traffic between a client and a file server, encrypted with IKEv2 \
         and ESP\n(work directory {}; Ctrl-C stops and cleans up)",
        work.display()
    );

    // 1. Two hosts.
    let pid = std::process::id();
    let client = Namespace::create(&format!("{NS_PREFIX}{pid}-client"))?;
    let share = Namespace::create(&format!("{NS_PREFIX}{pid}-share"))?;
    lab::link((&client, CLIENT_IP), (&share, SERVER_IP), LINK)?;
    step(
        1,
        "Network",
        &format!(
            "client      {} {CLIENT_IP}\nfile server {} {SERVER_IP}\njoined by veth {LINK}",
            client.name(),
            share.name()
        ),
    );
    check_interrupt()?;

    // 2. The metadata service, inside the client (as on a VPC instance).
    client.ip(&["addr", "add", &format!("{METADATA_IP}/32"), "dev", "lo"])?;
    let metadata_dir = work.join("metadata");
    let mut metadata = Proc::spawn(
        {
            let mut c = client.command(&exe);
            c.args(["metadata-test-server", "--listen"])
                .arg(format!("{METADATA_IP}:80"))
                .arg("--state-dir")
                .arg(&metadata_dir);
            c
        },
        &work.join("metadata-server.log"),
    )?;
    metadata.wait_for(
        "the metadata test server to listen",
        Duration::from_secs(30),
        |out| out.contains("listening on"),
    )?;
    let root_ca = metadata_dir.join(metadata::test_server::ROOT_CA_FILE);
    let ca = TestCa::load(&metadata_dir.join("ca")).context("loading the test CA")?;
    step(
        2,
        "Metadata service",
        &format!(
            "test server at http://{METADATA_IP} inside the client namespace: the identity API \
             (PUT /identity/v1/token,\nPOST /identity/v1/certificates) issuing from a test CA \
             ({})",
            root_ca.display()
        ),
    );
    check_interrupt()?;

    // 3. The file server's responder.
    let server_dir = work.join("share");
    std::fs::DirBuilder::new().mode(0o700).create(&server_dir)?;
    let (server_chain, server_key, server_subject) = responder_identity(&ca, &server_dir)?;
    let share_control = server_dir.join("control.sock");
    let mut responder = Proc::spawn(
        {
            let mut c = share.command(&exe);
            c.arg("daemon")
                .arg("--control")
                .arg(&share_control)
                .args(["--datapath", datapath, "--listen", &SERVER_IP.to_string()])
                .arg("--cert")
                .arg(&server_chain)
                .arg("--key")
                .arg(&server_key)
                .arg("--ca")
                .arg(&root_ca);
            c
        },
        &work.join("share-daemon.log"),
    )?;
    wait_for_daemon(&share_control, &mut responder)?;
    step(
        3,
        "File server",
        &format!(
            "`ibm-ipsec daemon --listen {SERVER_IP}` answers IKE on UDP 500/4500 with the \
             certificate\n{server_subject} (issued by the same test CA)"
        ),
    );
    check_interrupt()?;

    // Everything on the client's wire from here on is captured.
    let capture_file = work.join("client-demo0.pcap");
    let mut capture = Proc::spawn(
        {
            let mut c = client.command("tcpdump");
            c.args([
                "-i",
                LINK,
                "-n",
                "-s",
                "0",
                "--immediate-mode",
                "-U",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&capture_file);
            c
        },
        &work.join("tcpdump.log"),
    )?;
    capture.wait_for("tcpdump to listen", Duration::from_secs(10), |out| {
        out.contains("listening on")
    })?;

    // 4. The client: ibm-ipsec up through the whole path.
    let client_dir = work.join("client");
    std::fs::DirBuilder::new().mode(0o700).create(&client_dir)?;
    let share_conf = client_dir.join("share.conf");
    std::fs::write(
        &share_conf,
        format!(
            "# written by ibm-ipsec demo\nmetadata_url = http://{METADATA_IP}\n\
             certificate_duration_seconds = 3600\nkey_bits = 2048\nstate_dir = {}\n",
            client_dir.display()
        ),
    )?;
    let client_control = client_dir.join("control.sock");
    let started = Instant::now();
    let mut client_daemon = Proc::spawn(
        {
            let mut c = client.command(&exe);
            c.arg("daemon")
                .arg("--control")
                .arg(&client_control)
                .args(["--datapath", datapath])
                .arg("--config")
                .arg(&share_conf);
            c
        },
        &work.join("client-daemon.log"),
    )?;
    wait_for_daemon(&client_control, &mut client_daemon)?;
    let identity = wait_for_identity(&client_control, &mut client_daemon)?;
    let identity_took = started.elapsed();
    let started = Instant::now();
    let (ok, up_output) = lab::run_interruptible(
        client
            .command(&exe)
            .arg("up")
            .arg(SERVER_IP.to_string())
            .arg("--ca")
            .arg(&root_ca)
            .arg("--control")
            .arg(&client_control),
        &work.join("up.log"),
        Duration::from_secs(120),
    )?;
    if !ok {
        bail!(
            "`ibm-ipsec up {SERVER_IP}` failed:\n{}\nclient daemon log (tail):\n{}",
            up_output.trim(),
            tail(&client_daemon.output(), 15)
        );
    }
    step(
        4,
        "Client",
        &format!(
            "ibm-ipsec daemon --config share.conf   ({:.1} s)\n\
             host key (RSA-2048 for the demo's speed; share.conf's default is 4096) → CSR → \
             PUT /identity/v1/token → POST /identity/v1/certificates:\n  {}\n  issued by {}\n\
             ibm-ipsec up {SERVER_IP} --ca <test root CA>   ({:.1} s)\n\
             IKE_SA_INIT → IKE_AUTH (certificates both ways) → CHILD_SA installed:\n{}",
            identity_took.as_secs_f64(),
            identity.subject,
            identity.issuer,
            started.elapsed().as_secs_f64(),
            indent(up_output.trim())
        ),
    );
    check_interrupt()?;

    // 5. Data to the file server: over NFS when this kernel can, else plain TCP to port 2049.
    let total = usize::try_from(args.megabytes)? * 1024 * 1024;
    let mut nfs_mount = None;
    let traffic = match nfs::probe(args.nfs_utils.as_deref()) {
        Ok(tools) => {
            let (mounted, text) = nfs_traffic(
                &client,
                &share,
                &tools,
                work,
                &exe,
                &root_ca,
                &client_control,
                total,
                args.megabytes,
            )?;
            nfs_mount = Some(mounted);
            text
        }
        Err(reason) => {
            let took = lab::tcp_transfer(
                &share,
                &client,
                SocketAddr::from((SERVER_IP, NFS_PORT)),
                PLAINTEXT,
                total,
            )
            .context("the TCP transfer through IPsec")?;
            let mbit = total as f64 * 8.0 / took.as_secs_f64().max(1e-6) / 1e6;
            format!(
                "NFS step skipped: {reason}.\nInstead, a TCP transfer to port {NFS_PORT} (the NFS \
                 port): {} MiB from {CLIENT_IP} to {SERVER_IP}:{NFS_PORT} in {:.2} s \
                 ({mbit:.0} Mbit/s); every byte arrived as sent",
                args.megabytes,
                took.as_secs_f64()
            )
        }
    };
    step(5, "Traffic", &traffic);
    check_interrupt()?;

    // 6. What the daemon reports.
    let status = lab::run(
        client
            .command(&exe)
            .arg("status")
            .arg("--control")
            .arg(&client_control),
    )?;
    step(
        6,
        "Status (ibm-ipsec status on the client)",
        status.trim_end(),
    );

    // 7. The proof.
    std::thread::sleep(Duration::from_millis(200));
    capture.stop();
    let data = std::fs::read(&capture_file)
        .with_context(|| format!("reading {}", capture_file.display()))?;
    let tally = wire::tally(&data, MARKER).context("reading the capture")?;
    let mut text = format!(
        "tcpdump on the client's {LINK}: {} frames, {} bytes\n\
         IKE messages      {}\nESP in UDP 4500   {}\nraw ESP           {}\n\
         NAT-T keepalives  {}\nARP (not IP)      {}\ncleartext IP      {}\n",
        tally.frames(),
        tally.bytes,
        tally.ike,
        tally.esp_in_udp,
        tally.raw_esp,
        tally.keepalives,
        tally.non_ip,
        tally.other_count
    );
    text.push_str(&format!(
        "the text \"{}\" that was sent {} times: {}",
        String::from_utf8_lossy(MARKER),
        total / PLAINTEXT.len(),
        if tally.marker_seen {
            "SEEN on the wire"
        } else {
            "never seen on the wire"
        }
    ));
    for other in &tally.other {
        text.push_str(&format!("\ncleartext: {other}"));
    }
    step(7, "Wire", &text);
    if !tally.only_ipsec() {
        bail!(
            "the capture does not prove encryption: {} cleartext IP packets, marker {}, {} IKE \
             messages ({})",
            tally.other_count,
            if tally.marker_seen {
                "seen"
            } else {
                "not seen"
            },
            tally.ike,
            capture_file.display()
        );
    }
    if tally.esp_in_udp + tally.raw_esp == 0 {
        bail!("the capture holds no ESP: the data did not go through IPsec");
    }
    println!("\nOnly IKE and ESP crossed the wire: the data was encrypted.");

    // Unmounting the last share of the file server takes its SAs down (umount.ibmshare).
    if let Some(mut mounted) = nfs_mount {
        let helpers = helpers(work, &exe, &root_ca, &client_control)?;
        let out = nfs::unmount(&client, &helpers, &mut mounted, &work.join("umount.log"))?;
        println!(
            "\numount {} (umount.ibmshare, as umount(8) runs it for this share):\n{}",
            mounted.dir().display(),
            indent(out.trim())
        );
    }

    // Orderly shutdown: the client daemon (started by `up`) deletes its SAs with the peer.
    let _ = lab::run(
        client
            .command(&exe)
            .args(["down", "--all", "--control"])
            .arg(&client_control),
    );
    client_daemon.stop();
    drop(responder);
    drop(metadata);
    Ok(())
}

/// The NFS variant of step 5: the kernel NFS server in the file server's namespace, the
/// share mounted with `mount.ibmshare … -o secure=true`, a file written and read back.
#[allow(clippy::too_many_arguments)]
fn nfs_traffic(
    client: &Namespace,
    share: &Namespace,
    tools: &nfs::NfsUtils,
    work: &Path,
    exe: &str,
    root_ca: &Path,
    client_control: &Path,
    total: usize,
    megabytes: u32,
) -> anyhow::Result<(nfs::Mounted, String)> {
    nfs::start_server(share, tools, work, &format!("{CLIENT_IP}/24"))?;
    let helpers = helpers(work, exe, root_ca, client_control)?;
    let dir = work.join("mnt");
    let (mounted, said) = nfs::mount(
        client,
        &helpers,
        tools,
        &SERVER_IP.to_string(),
        &dir,
        &work.join("mount.log"),
    )?;
    let hello = std::fs::read_to_string(dir.join("hello.txt"))
        .context("reading hello.txt from the share")?;
    let data: Vec<u8> = PLAINTEXT.iter().copied().cycle().take(total).collect();
    let file = dir.join("demo.dat");
    let started = Instant::now();
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&file).context("creating a file on the share")?;
        f.write_all(&data).context("writing to the share")?;
        f.sync_all().context("flushing to the file server")?;
    }
    let took = started.elapsed();
    // Read it back past the client's page cache: the bytes come from the server again.
    let back = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["iflag=direct", "bs=1M", "status=none"])
        .output()
        .context("reading the file back")?;
    if back.stdout != data {
        bail!("the file read back from the share differs from what was written");
    }
    let mbit = total as f64 * 8.0 / took.as_secs_f64().max(1e-6) / 1e6;
    let text = format!(
        "kernel NFS server (NFSv4.2) on {SERVER_IP}; on the client, as `mount -t ibmshare` \
         would:\nmount.ibmshare {SERVER_IP}:/ {} -o secure=true,vers=4.2 -v\n{}\n\
         hello.txt says: {}\nwrote {megabytes} MiB in {:.2} s ({mbit:.0} Mbit/s) and read it \
         back identical",
        dir.display(),
        indent(said.trim()),
        hello.trim(),
        took.as_secs_f64()
    );
    Ok((mounted, text))
}

/// `mount.ibmshare` and `umount.ibmshare` as symlinks to this binary (what install.sh puts
/// in /sbin), and the environment that points them at the demo's daemon and CA.
fn helpers(
    work: &Path,
    exe: &str,
    root_ca: &Path,
    client_control: &Path,
) -> anyhow::Result<nfs::Helpers> {
    let bin = work.join("bin");
    let ca = work.join("ca");
    for d in [&bin, &ca] {
        std::fs::create_dir_all(d)?;
    }
    let (mount, umount) = (bin.join("mount.ibmshare"), bin.join("umount.ibmshare"));
    for link in [&mount, &umount] {
        if !link.exists() {
            std::os::unix::fs::symlink(exe, link)?;
        }
    }
    std::fs::copy(root_ca, ca.join("root.pem"))?;
    Ok(nfs::Helpers {
        mount,
        umount,
        env: vec![
            (
                crate::control::CONTROL_ENV.to_owned(),
                client_control.display().to_string(),
            ),
            (
                crate::commands::mount::CA_DIR_ENV.to_owned(),
                ca.display().to_string(),
            ),
        ],
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A key and a certificate for the file server from the test CA (as a file server's operator
/// would get from their CA); returns the chain file, the key file and the subject.
fn responder_identity(ca: &TestCa, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let key = HostKey::generate(KeySize::Rsa2048).context("generating the file server's key")?;
    let subject = format!("C=US,O=ibm-ipsec demo,CN=file server {SERVER_IP}");
    let now = SystemTime::now();
    let leaf = ca
        .issue_for_key(
            key.public_key_info_der(),
            &subject,
            Validity::starting_at(
                now.checked_sub(Duration::from_secs(300)).unwrap_or(now),
                Duration::from_secs(86_400),
            ),
            &LeafOptions {
                sans: vec![SanEntry::Ip(IpAddr::V4(SERVER_IP))],
                ..LeafOptions::default()
            },
        )
        .context("issuing the file server's certificate")?;
    let chain_path = dir.join("chain.pem");
    let key_path = dir.join("key.pem");
    let chain = pki::pem::encode("CERTIFICATE", &leaf) + &ca.intermediate_pem();
    std::fs::write(&chain_path, chain)?;
    key.save(&key_path)
        .context("saving the file server's key")?;
    Ok((chain_path, key_path, subject))
}

/// Waits until the daemon holds a certificate from the metadata service (its status shows
/// the identity), or fails with the daemon's reason.
fn wait_for_identity(
    control: &Path,
    daemon: &mut Proc,
) -> anyhow::Result<crate::control::IdentityInfo> {
    let client = crate::control::ControlClient::new(control, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_interrupt()?;
        daemon.check_alive()?;
        let report = client
            .status()
            .context("asking the client daemon for its status")?;
        if let Some(identity) = report.identity {
            return Ok(identity);
        }
        if Instant::now() >= deadline {
            bail!(
                "the client daemon has no certificate after 60 s: {}",
                report
                    .identity_error
                    .unwrap_or_else(|| "no error reported".to_owned())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the daemon answers on its control socket (generous: emulated machines are
/// slow to start a daemon).
fn wait_for_daemon(control: &Path, daemon: &mut Proc) -> anyhow::Result<()> {
    const LIMIT: Duration = Duration::from_secs(90);
    let client = crate::control::ControlClient::new(control, Duration::from_secs(5));
    let deadline = Instant::now() + LIMIT;
    loop {
        check_interrupt()?;
        if client.status().is_ok() {
            return Ok(());
        }
        daemon.check_alive()?;
        if Instant::now() >= deadline {
            bail!(
                "the daemon did not answer on {} within {LIMIT:?}:\n{}",
                control.display(),
                daemon.output()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

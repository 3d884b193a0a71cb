//! `xfrm-child`: installs, inspects and removes CHILD_SAs on the kernel datapath with the
//! `xfrm::child` API, keys given on the command line. It is what `scripts/vm/child-scenario`
//! drives inside the test VM, and a way to try the kernel datapath by hand without IKE.
//!
//! ```text
//! xfrm-child genkey BYTES                          random key as hex
//! xfrm-child allocspi --local A --peer B --reqid N  reserve an inbound SPI (prints it)
//! xfrm-child install CHILD [--alg aes-gcm|aes-cbc-hmac-sha256|384|512] --key-in HEX --key-out HEX
//!            [--nat-t | --nat-t-ports LOCAL:PEER] [--mode transport|tunnel
//!            --local-net CIDR --peer-net CIDR] [--selector tcp/PORT …]
//!            [--soft-seconds S --hard-seconds S --soft-bytes N --hard-bytes N --jitter S]
//!            [--replay-window N] [--esn] [--part all|inbound|outbound|policies]
//! xfrm-child remove CHILD                          the child's two SAs only
//! xfrm-child remove-policies CHILD [selectors as for install]
//! xfrm-child remove-peer --peer B                  every SA and policy of ours naming B
//! xfrm-child counters CHILD                        in/out bytes and packets
//! xfrm-child encap-socket --bind ADDR:PORT [--seconds S]
//!            hold a NAT-T socket (UDP_ENCAP_ESPINUDP, IKE policy bypass) open
//! xfrm-child watch [--seconds S] [--until soft|hard [--count N]]
//!            print our SAs' EXPIRE events; exit 0 once N (1) of the wanted kind arrived
//! CHILD = --local A --peer B --reqid N --spi-in X --spi-out Y   (numbers: decimal or 0x…)
//! ```
//! GCM keys are AES key ‖ 4-byte salt (20/28/36 bytes); CBC+HMAC keys are the AES key followed
//! by the 32-byte HMAC key.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xfrm::child::{self, ChildHandle, ChildLifetime, ChildPolicies, ChildSaSpec, NatT};
use xfrm::monitor::Monitor;
use xfrm::policy::DEFAULT_PRIORITY;
use xfrm::socket_policy::{bypass_policies, enable_udp_encap, SocketFamily};
use xfrm::{Crypto, Kernel, Mode, Replay, SpiRequest, TrafficSelector, XfrmKernel};

type Res<T> = Result<T, String>;

/// `--key value` options (repeatable) and bare `--flag`s.
struct Args {
    values: HashMap<String, Vec<String>>,
}

const FLAGS: [&str; 2] = ["--esn", "--nat-t"];

impl Args {
    fn parse(raw: &[String]) -> Res<Self> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            if !k.starts_with("--") {
                return Err(format!("unexpected argument {k:?}"));
            }
            let v = if FLAGS.contains(&k.as_str()) {
                String::new()
            } else {
                it.next()
                    .ok_or_else(|| format!("{k} needs a value"))?
                    .clone()
            };
            values.entry(k.clone()).or_default().push(v);
        }
        Ok(Args { values })
    }

    fn opt(&self, k: &str) -> Option<&str> {
        self.values
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.values
            .get(k)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn flag(&self, k: &str) -> bool {
        self.values.contains_key(k)
    }

    fn req(&self, k: &str) -> Res<&str> {
        self.opt(k).ok_or_else(|| format!("missing {k}"))
    }

    fn ip(&self, k: &str) -> Res<IpAddr> {
        self.req(k)?.parse().map_err(|e| format!("{k}: {e}"))
    }

    fn num(&self, k: &str, default: u64) -> Res<u64> {
        match self.opt(k) {
            None => Ok(default),
            Some(v) => parse_num(v).map_err(|e| format!("{k}: {e}")),
        }
    }
}

fn parse_num(v: &str) -> Res<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).map_err(|e| e.to_string()),
        None => v
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string()),
    }
}

fn u32_arg(a: &Args, k: &str) -> Res<u32> {
    let v = parse_num(a.req(k)?).map_err(|e| format!("{k}: {e}"))?;
    u32::try_from(v).map_err(|_| format!("{k}: {v} does not fit 32 bits"))
}

fn hex(s: &str) -> Res<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() % 2 != 0 {
        return Err("hex key has an odd number of digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("hex key: {e}")))
        .collect()
}

fn random_bytes(n: usize) -> Res<Vec<u8>> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b)
}

fn handle(a: &Args) -> Res<ChildHandle> {
    Ok(ChildHandle {
        local: a.ip("--local")?,
        peer: a.ip("--peer")?,
        reqid: u32_arg(a, "--reqid")?,
        spi_in: u32_arg(a, "--spi-in")?,
        spi_out: u32_arg(a, "--spi-out")?,
    })
}

fn cidr(s: &str) -> Res<(IpAddr, u8)> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s}: not a CIDR"))?;
    Ok((
        addr.parse().map_err(|e| format!("{s}: {e}"))?,
        len.parse().map_err(|e| format!("{s}: {e}"))?,
    ))
}

fn policies(a: &Args, h: &ChildHandle) -> Res<ChildPolicies> {
    let (mode, base) = match a.opt("--mode").unwrap_or("transport") {
        "transport" => (Mode::Transport, TrafficSelector::hosts(h.local, h.peer)),
        "tunnel" => {
            let (l, lp) = cidr(a.req("--local-net")?)?;
            let (p, pp) = cidr(a.req("--peer-net")?)?;
            (Mode::Tunnel, TrafficSelector::subnets(l, lp, p, pp))
        }
        other => return Err(format!("--mode {other}: transport or tunnel")),
    };
    let mut selectors = Vec::new();
    for s in a.all("--selector") {
        let (proto, port) = s
            .split_once('/')
            .ok_or_else(|| format!("--selector {s}: PROTO/PORT"))?;
        let proto = match proto {
            "tcp" => 6,
            "udp" => 17,
            other => return Err(format!("--selector {s}: unknown protocol {other}")),
        };
        let port = port.parse().map_err(|e| format!("--selector {s}: {e}"))?;
        selectors.push(base.with_proto(proto).with_peer_port(port));
    }
    if selectors.is_empty() {
        selectors.push(base);
    }
    Ok(ChildPolicies {
        local: h.local,
        peer: h.peer,
        mode,
        reqid: h.reqid,
        selectors,
        priority: DEFAULT_PRIORITY,
    })
}

fn crypto(a: &Args, key: &str) -> Res<Crypto> {
    let k = hex(a.req(key)?)?;
    // AES-CBC with HMAC-SHA-2: the key is the AES key followed by the HMAC key (as long as
    // the hash); the ICV is half the hash (RFC 4868 §2.3).
    let cbc = |hash: &str, hash_len: usize| -> Res<Crypto> {
        if k.len() <= hash_len || !matches!(k.len() - hash_len, 16 | 24 | 32) {
            return Err(format!(
                "{key}: a 16/24/32-byte AES key followed by a {hash_len}-byte HMAC key"
            ));
        }
        let (c, i) = k.split_at(k.len() - hash_len);
        if hash == "sha256" {
            return Crypto::aes_cbc_hmac_sha256(c, i);
        }
        Ok(Crypto::CipherAuth {
            cipher: xfrm::algorithm::AES_CBC.into(),
            cipher_key: xfrm::Key::new(c),
            auth: format!("hmac({hash})"),
            auth_key: xfrm::Key::new(i),
            trunc_bits: (hash_len * 8 / 2) as u32,
        })
    };
    match a.opt("--alg").unwrap_or("aes-gcm") {
        "aes-gcm" => Crypto::aes_gcm(&k),
        "aes-cbc-hmac-sha256" => cbc("sha256", 32),
        "aes-cbc-hmac-sha384" => cbc("sha384", 48),
        "aes-cbc-hmac-sha512" => cbc("sha512", 64),
        other => Err(format!(
            "--alg {other}: aes-gcm or aes-cbc-hmac-sha256|384|512"
        )),
    }
}

fn spec(a: &Args) -> Res<ChildSaSpec> {
    let h = handle(a)?;
    let nat_t = match (a.flag("--nat-t"), a.opt("--nat-t-ports")) {
        (_, Some(ports)) => {
            let (l, p) = ports.split_once(':').ok_or("--nat-t-ports LOCAL:PEER")?;
            Some(NatT {
                local_port: l.parse().map_err(|e| format!("--nat-t-ports: {e}"))?,
                peer_port: p.parse().map_err(|e| format!("--nat-t-ports: {e}"))?,
            })
        }
        (true, None) => Some(NatT::default()),
        (false, None) => None,
    };
    let lifetime = ChildLifetime {
        soft_seconds: a.num("--soft-seconds", 0)?,
        hard_seconds: a.num("--hard-seconds", 0)?,
        soft_bytes: a.num("--soft-bytes", u64::MAX)?,
        hard_bytes: a.num("--hard-bytes", u64::MAX)?,
        jitter_seconds: a.num("--jitter", 0)?,
    };
    let random = u64::from_ne_bytes(
        random_bytes(8)?
            .try_into()
            .map_err(|_| "short random read")?,
    );
    Ok(ChildSaSpec {
        policies: policies(a, &h)?,
        spi_in: h.spi_in,
        spi_out: h.spi_out,
        crypto_in: crypto(a, "--key-in")?,
        crypto_out: crypto(a, "--key-out")?,
        replay: Replay {
            window: a.num("--replay-window", 64)? as u32,
            esn: a.flag("--esn"),
        },
        lifetime: lifetime.to_config(random),
        nat_t,
    })
}

fn kernel() -> Res<XfrmKernel> {
    XfrmKernel::open().map_err(|e| e.to_string())
}

fn run(cmd: &str, a: &Args) -> Res<()> {
    let out = &mut std::io::stdout();
    match cmd {
        "genkey" => unreachable!("handled in main"),
        "allocspi" => {
            let (local, peer) = (a.ip("--local")?, a.ip("--peer")?);
            let spi = kernel()?
                .allocate_spi(&SpiRequest::esp_transport(
                    peer,
                    local,
                    u32_arg(a, "--reqid")?,
                ))
                .map_err(|e| e.to_string())?;
            writeln!(out, "{spi:#010x}").map_err(|e| e.to_string())
        }
        "install" => {
            let s = spec(a)?;
            let k = kernel()?;
            let h = s.handle();
            match a.opt("--part").unwrap_or("all") {
                "all" => child::install(&k, &s).map(drop),
                "inbound" => child::install_inbound(&k, &s),
                "outbound" => child::install_outbound(&k, &s),
                "policies" => child::install_policies(&k, &s.policies).map(drop),
                other => {
                    return Err(format!(
                        "--part {other}: all, inbound, outbound or policies"
                    ))
                }
            }
            .map_err(|e| e.to_string())?;
            writeln!(
                out,
                "installed reqid={:#x} in={:#010x} out={:#010x}",
                h.reqid, h.spi_in, h.spi_out
            )
            .map_err(|e| e.to_string())
        }
        "remove" => child::remove_child(&kernel()?, &handle(a)?).map_err(|e| e.to_string()),
        "remove-policies" => {
            let n = child::remove_policies(&kernel()?, &policies(a, &handle(a)?)?)
                .map_err(|e| e.to_string())?;
            writeln!(out, "removed {n} policies").map_err(|e| e.to_string())
        }
        "remove-peer" => {
            let r = child::remove_peer(&kernel()?, a.ip("--peer")?).map_err(|e| e.to_string())?;
            writeln!(out, "removed {} SAs, {} policies", r.sas, r.policies)
                .map_err(|e| e.to_string())
        }
        "counters" => {
            let c = child::counters(&kernel()?, &handle(a)?).map_err(|e| e.to_string())?;
            let show = |s: Option<xfrm::SaCounters>| match s {
                Some(s) => format!(
                    "bytes={} packets={} integrity_failed={}",
                    s.bytes, s.packets, s.integrity_failed
                ),
                None => "gone".into(),
            };
            writeln!(out, "in {} out {}", show(c.inbound), show(c.outbound))
                .map_err(|e| e.to_string())
        }
        "encap-socket" => {
            let bind: SocketAddr = a
                .req("--bind")?
                .parse()
                .map_err(|e| format!("--bind: {e}"))?;
            let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
            let fam = if bind.is_ipv4() {
                SocketFamily::V4
            } else {
                SocketFamily::V6
            };
            bypass_policies(&s, fam).map_err(|e| e.to_string())?;
            enable_udp_encap(&s).map_err(|e| e.to_string())?;
            writeln!(out, "ready").map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_secs(a.num("--seconds", 3600)?));
            Ok(())
        }
        "watch" => {
            let until = a.opt("--until");
            let mut wanted = a.num("--count", 1)?;
            let deadline = Instant::now() + Duration::from_secs(a.num("--seconds", 30)?);
            let mut m = Monitor::open().map_err(|e| e.to_string())?;
            m.set_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            writeln!(out, "ready").map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            while Instant::now() < deadline {
                let events = match m.recv() {
                    Ok(ev) => ev,
                    Err(e) if e.errno() == Some(libc::EAGAIN) => continue,
                    Err(e) => return Err(e.to_string()),
                };
                for e in events.iter().filter_map(child::expiry) {
                    let kind = if e.hard { "hard" } else { "soft" };
                    writeln!(
                        out,
                        "expire {kind} reqid={:#x} spi={:#010x} src={} dst={}",
                        e.reqid, e.sa.spi, e.src, e.sa.dst
                    )
                    .map_err(|e| e.to_string())?;
                    out.flush().map_err(|e| e.to_string())?;
                    if until == Some(kind) {
                        wanted = wanted.saturating_sub(1);
                        if wanted == 0 {
                            return Ok(());
                        }
                    }
                }
            }
            match until {
                Some(kind) => Err(format!("no {kind} expiry before the deadline")),
                None => Ok(()),
            }
        }
        other => Err(format!(
            "unknown command {other:?} (see the source's header)"
        )),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("usage: xfrm-child COMMAND [options] (see the source's header)");
        return ExitCode::from(2);
    };
    let result = if cmd == "genkey" {
        argv.get(1)
            .ok_or_else(|| "genkey BYTES".to_string())
            .and_then(|n| n.parse::<usize>().map_err(|e| e.to_string()))
            .and_then(random_bytes)
            .map(|k| {
                let text: String = k.iter().map(|b| format!("{b:02x}")).collect();
                println!("{text}");
            })
    } else {
        Args::parse(&argv[1..]).and_then(|a| run(cmd, &a))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xfrm-child {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

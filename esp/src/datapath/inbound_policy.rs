//! Inbound policy: cleartext from a peer on its protected selectors is dropped.
//!
//! With kernel ESP, the inbound XFRM policy drops a packet that matches a protected selector
//! but did not arrive through an SA (RFC 4301 §5.2: "if the packet is not IPsec-protected
//! and the SPD says PROTECT, discard it"). Our datapath delivers decrypted packets through
//! the TUN, so the same rule becomes: a packet from the peer that matches a selector and
//! did *not* come in on our TUN is dropped. Without it an on-path attacker could inject
//! plaintext NFS traffic with the peer's source address.
//!
//! We hold one nftables table of our own, replaced atomically in one nf_tables transaction
//! sent over NETLINK_NETFILTER from this process ([`nftables`]; no `nft`
//! process): add the table (so that deleting it cannot fail), delete it, define it anew.
//! That happens at start and whenever a peer is added, changed or removed; the table is
//! deleted on shutdown and before start; no other table is ever read or written. The
//! transaction is what `nft -f` would send for this ruleset, so `nft list table inet T`
//! shows it as written here:
//!
//! ```text
//! table inet T {
//!   chain inbound {
//!     type filter hook input priority filter - 10; policy accept;
//!     iifname "TUN" accept                                   decrypted by us
//!     ip saddr PEER meta l4proto 50 accept                   ESP itself            } per
//!     ip saddr PEER udp dport { 500, NATT } accept           IKE and ESP-in-UDP    } peer
//!     ip6 saddr PEER icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept  (IPv6)
//!     ip saddr PEER [meta l4proto X] [th sport R] [th dport L] counter drop   per selector
//!   }
//! }
//! ```
//!
//! (`nft` lists `meta l4proto 50` as `esp` and `meta l4proto 6 th sport R` as
//! `tcp sport R`; a set of one element is a plain comparison.) Without nf_tables in the
//! kernel, or when it refuses the table, [`install`] fails with `Unsupported` and a sentence
//! saying why; the datapath then refuses peers that need the policy.

use std::io;
use std::net::IpAddr;

use super::nftables::{self, Batch, Expr, Refusal, Session, SetKey, Verdict};
use super::{DatapathConfig, PeerConfig, Selector};

/// IKE's own port (RFC 7296 §2): never dropped, the daemon's IKE socket listens there.
const IKE_PORT: u16 = 500;

/// IP protocol numbers we match on.
const ESP: u8 = 50;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// The protocols whose first four transport bytes are ports (as in `ports()` of the
/// datapath): TCP, UDP, SCTP, UDP-Lite.
const PORTED: [u8; 4] = [6, 17, 132, 136];

/// ICMPv6 neighbour solicitation and advertisement (RFC 4861 §4.3, §4.4).
const NEIGHBOR_DISCOVERY: [u8; 2] = [135, 136];

/// Our base chain, on the input hook just before the standard filter priority (0) so that
/// our drops happen whatever other tables accept.
const CHAIN: &str = "inbound";
const PRIORITY: i32 = -10;

/// Checks that the names we put in the table are ones `nft` could have written (the tests
/// compare with `nft`'s own rendering) and that the TUN name fits `IFNAMSIZ`.
fn validate(cfg: &DatapathConfig) -> io::Result<()> {
    let t = &cfg.nft_table;
    if t.is_empty()
        || t.len() > 32
        || !t.starts_with(|c: char| c.is_ascii_alphabetic())
        || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("nft_table {t:?}: use 1–32 letters, digits or '_', starting with a letter"),
        ));
    }
    if cfg.tun_name.is_empty()
        || cfg.tun_name.len() >= nftables::IFNAMSIZ
        || !cfg
            .tun_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "tun_name {:?}: use 1–15 letters, digits, '_', '-' or '.'",
                cfg.tun_name
            ),
        ));
    }
    Ok(())
}

/// A match on one of `values`: a comparison for one, a lookup in an anonymous set (added
/// to the batch now, before the rule that uses it) for several, as `nft` does.
fn one_of(b: &mut Batch, table: &str, key: SetKey, values: Vec<Vec<u8>>) -> Expr {
    match <[Vec<u8>; 1]>::try_from(values) {
        Ok([v]) => Expr::CmpEq(v),
        Err(values) => Expr::Lookup {
            set_id: b.new_anonymous_set(table, key, &values),
        },
    }
}

/// The match for one selector, seen on an inbound packet (source = the peer's side).
fn selector_match(b: &mut Batch, table: &str, sel: &Selector) -> Vec<Expr> {
    let mut m = Vec::new();
    let has_ports = sel.local_port.is_some() || sel.remote_port.is_some();
    match sel.protocol {
        Some(p) => m.extend([Expr::MetaL4proto, Expr::CmpEq(vec![p])]),
        // Ports without a protocol mean "any protocol that has ports" (as in the outbound
        // selector match); port offsets only mean something with the protocol pinned.
        None if has_ports => {
            let ported = PORTED.iter().map(|p| vec![*p]).collect();
            m.extend([Expr::MetaL4proto, one_of(b, table, SetKey::L4Proto, ported)]);
        }
        None => {}
    }
    if let Some(p) = sel.remote_port {
        m.extend([
            Expr::Transport { offset: 0, len: 2 },
            Expr::CmpEq(p.to_be_bytes().to_vec()),
        ]);
    }
    if let Some(p) = sel.local_port {
        m.extend([
            Expr::Transport { offset: 2, len: 2 },
            Expr::CmpEq(p.to_be_bytes().to_vec()),
        ]);
    }
    m
}

/// The transaction that (re)creates our table for these peers.
pub(crate) fn policy_batch(
    cfg: &DatapathConfig,
    peers: &[(IpAddr, &PeerConfig)],
) -> io::Result<Batch> {
    validate(cfg)?;
    let (table, tun) = (cfg.nft_table.as_str(), cfg.tun_name.as_str());
    let mut udp_ports = vec![IKE_PORT];
    if let Some(port) = cfg.udp_port {
        if port != IKE_PORT {
            udp_ports.push(port);
        }
    }
    let mut b = Batch::new();
    b.new_table(table);
    b.del_table(table);
    b.new_table(table);
    b.new_input_chain(table, CHAIN, PRIORITY, Verdict::Accept);
    let Some(iif) = Expr::iifname(tun) else {
        // validate() bounds the name.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tun_name too long",
        ));
    };
    let mut rule = iif.to_vec();
    rule.push(Expr::Verdict(Verdict::Accept));
    b.new_rule(table, CHAIN, &rule);
    let all = [Selector::default()];
    for (peer, pc) in peers {
        let saddr = Expr::saddr(*peer);
        let rule = |extra: Vec<Expr>, tail: &[Expr]| -> Vec<Expr> {
            saddr
                .iter()
                .cloned()
                .chain(extra)
                .chain(tail.iter().cloned())
                .collect()
        };
        let accept = [Expr::Verdict(Verdict::Accept)];
        let drop = [Expr::Counter, Expr::Verdict(Verdict::Drop)];
        b.new_rule(
            table,
            CHAIN,
            &rule(vec![Expr::MetaL4proto, Expr::CmpEq(vec![ESP])], &accept),
        );
        let ports = udp_ports.iter().map(|p| p.to_be_bytes().to_vec()).collect();
        let ports = one_of(&mut b, table, SetKey::UdpDport, ports);
        b.new_rule(
            table,
            CHAIN,
            &rule(
                vec![
                    Expr::MetaL4proto,
                    Expr::CmpEq(vec![UDP]),
                    Expr::Transport { offset: 2, len: 2 },
                    ports,
                ],
                &accept,
            ),
        );
        if peer.is_ipv6() {
            // Neighbour discovery (RFC 4861) from the peer's address must pass, or neither
            // side can resolve the other's link address and no ESP flows at all.
            let types = NEIGHBOR_DISCOVERY.iter().map(|t| vec![*t]).collect();
            let types = one_of(&mut b, table, SetKey::Icmpv6Type, types);
            b.new_rule(
                table,
                CHAIN,
                &rule(
                    vec![
                        Expr::MetaL4proto,
                        Expr::CmpEq(vec![ICMPV6]),
                        Expr::Transport { offset: 0, len: 1 },
                        types,
                    ],
                    &accept,
                ),
            );
        }
        let selectors: &[Selector] = if pc.selectors.is_empty() {
            &all
        } else {
            &pc.selectors
        };
        for sel in selectors {
            let m = selector_match(&mut b, table, sel);
            b.new_rule(table, CHAIN, &rule(m, &drop));
        }
    }
    Ok(b)
}

/// The error for a policy we cannot install: `Unsupported`, with what the daemon's operator
/// can do about it.
pub(crate) fn unenforceable(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{why}: cleartext from the peer on its protected selectors cannot be refused; \
             load nf_tables (CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET), or set the peer's \
             allow_unprotected_inbound (unsafe: an on-path attacker can inject plaintext)"
        ),
    )
}

/// Words a refusal of our transaction for the operator.
fn refused(table: &str, r: &Refusal) -> io::Error {
    let why = match r.errno {
        libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT => {
            "the kernel has no nftables support (nf_tables module missing)".to_owned()
        }
        libc::EPERM => "the kernel refused our nftables table: we lack CAP_NET_ADMIN in this \
                        network namespace"
            .to_owned(),
        _ => format!("the kernel refused our nftables table {table}: {r}"),
    };
    unenforceable(why)
}

/// Installs (or atomically replaces) our table.
pub(crate) fn install(
    session: &mut Session,
    cfg: &DatapathConfig,
    peers: &[(IpAddr, &PeerConfig)],
) -> io::Result<()> {
    let batch = policy_batch(cfg, peers)?;
    session
        .transact(batch)
        .map_err(|r| refused(&cfg.nft_table, &r))
}

/// Deletes our table if it exists (nothing else). Safe without nf_tables.
pub(crate) fn remove(session: &mut Session, cfg: &DatapathConfig) {
    if validate(cfg).is_err() {
        return;
    }
    let mut b = Batch::new();
    b.del_table(&cfg.nft_table);
    // ENOENT (no table) is the usual answer before start; anything else leaves nothing
    // of ours behind either, or nothing we could do about it.
    let _ = session.transact(b);
}

/// The `nft -f` script the netlink transaction stands for: the datapath's former way of
/// installing the policy, kept as the reference the tests hold the transaction to.
#[cfg(test)]
pub(crate) mod text {
    use super::*;

    const PORTED: &str = "{ 6, 17, 132, 136 }";

    /// The nftables match for one selector, seen on an inbound packet (source = the peer's
    /// side).
    fn selector_match(sel: &Selector) -> String {
        let mut m = String::new();
        let has_ports = sel.local_port.is_some() || sel.remote_port.is_some();
        match sel.protocol {
            Some(p) => m.push_str(&format!(" meta l4proto {p}")),
            // Ports without a protocol mean "any protocol that has ports" (as in the outbound
            // selector match); `th` needs the protocol pinned.
            None if has_ports => m.push_str(&format!(" meta l4proto {PORTED}")),
            None => {}
        }
        if let Some(p) = sel.remote_port {
            m.push_str(&format!(" th sport {p}"));
        }
        if let Some(p) = sel.local_port {
            m.push_str(&format!(" th dport {p}"));
        }
        m
    }

    /// The `nft -f` script that (re)creates our table for these peers.
    pub(crate) fn ruleset(cfg: &DatapathConfig, peers: &[(IpAddr, &PeerConfig)]) -> String {
        let (table, tun) = (&cfg.nft_table, &cfg.tun_name);
        let mut udp_ports = vec![IKE_PORT];
        if let Some(port) = cfg.udp_port {
            if port != IKE_PORT {
                udp_ports.push(port);
            }
        }
        let udp_ports = udp_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "table inet {table} {{}}\n\
             delete table inet {table}\n\
             table inet {table} {{\n\
             \tchain inbound {{\n\
             \t\ttype filter hook input priority filter - 10; policy accept;\n\
             \t\tiifname \"{tun}\" accept\n"
        );
        let all = [Selector::default()];
        for (peer, pc) in peers {
            let ip = match peer {
                IpAddr::V4(_) => "ip",
                IpAddr::V6(_) => "ip6",
            };
            s.push_str(&format!(
                "\t\t{ip} saddr {peer} meta l4proto 50 accept\n\
                 \t\t{ip} saddr {peer} udp dport {{ {udp_ports} }} accept\n"
            ));
            if peer.is_ipv6() {
                // Neighbour discovery (RFC 4861) from the peer's address must pass, or neither
                // side can resolve the other's link address and no ESP flows at all.
                s.push_str(&format!(
                    "\t\tip6 saddr {peer} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept\n"
                ));
            }
            let selectors: &[Selector] = if pc.selectors.is_empty() {
                &all
            } else {
                &pc.selectors
            };
            for sel in selectors {
                s.push_str(&format!(
                    "\t\t{ip} saddr {peer}{} counter drop\n",
                    selector_match(sel)
                ));
            }
        }
        s.push_str("\t}\n}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::process::{Command, Stdio};

    fn cfg() -> DatapathConfig {
        DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1))
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn sel(protocol: Option<u8>, local_port: Option<u16>, remote_port: Option<u16>) -> Selector {
        Selector {
            protocol,
            local_port,
            remote_port,
        }
    }

    /// NFS's selector (from the server's port) and a ports-only one.
    fn nfs() -> PeerConfig {
        let mut pc = PeerConfig::new();
        pc.selectors = vec![sel(Some(6), None, Some(2049)), sel(None, Some(111), None)];
        pc
    }

    /// What each message of the batch does, begin and end included.
    fn steps(b: &Batch) -> Vec<&'static str> {
        b.messages().map(|(_, _, what)| what).collect()
    }

    /// The batch as `nft` would send it: the same, without `NLM_F_ACK` (nft asks for none).
    fn without_acks(b: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        for (m, _, _) in b.messages() {
            let mut m = m.to_vec();
            m[6] &= !0x4;
            out.extend_from_slice(&m);
        }
        out
    }

    /// `esp/src/datapath/fixtures/nft_inbound_policy.hex` is what nft 1.0.6 sent for
    /// `nft_inbound_policy.nft` (this ruleset as the former `nft -f` code wrote it), captured
    /// in a fresh network namespace with
    /// `strace -e trace=sendmsg -e write=3 nft -f nft_inbound_policy.nft`.
    #[test]
    fn the_transaction_is_byte_for_byte_what_nft_sends() {
        let v6: IpAddr = "fd00::3".parse().unwrap();
        let (nfs, plain) = (nfs(), PeerConfig::new());
        let peers = [(PEER, &nfs), (v6, &plain)];
        assert_eq!(
            text::ruleset(&cfg(), &peers),
            include_str!("fixtures/nft_inbound_policy.nft")
        );
        let hex: String = include_str!("fixtures/nft_inbound_policy.hex")
            .split_whitespace()
            .collect();
        let want = hex::decode(hex).unwrap();
        let mut b = policy_batch(&cfg(), &peers).unwrap();
        b.finish();
        let got = without_acks(&b);
        // Message by message first, so that a mismatch names the step.
        let mut at = 0;
        for (m, seq, what) in b.messages() {
            let len = m.len();
            assert_eq!(
                hex::encode(&got[at..at + len]),
                hex::encode(&want[at.min(want.len())..(at + len).min(want.len())]),
                "message {seq} ({what})"
            );
            at += len;
        }
        assert_eq!(got, want);
    }

    #[test]
    fn every_message_but_the_delimiters_asks_for_an_ack() {
        let mut b = policy_batch(&cfg(), &[(PEER, &nfs())]).unwrap();
        b.finish();
        let msgs: Vec<_> = b.messages().collect();
        let n = msgs.len();
        for (i, (m, seq, what)) in msgs.into_iter().enumerate() {
            assert_eq!(seq as usize, i);
            let acked = m[6] & 0x4 != 0;
            assert_eq!(acked, i != 0 && i != n - 1, "{what}");
        }
        let mut next = 41;
        b.resequence(|| {
            next += 1;
            next
        });
        let seqs: Vec<u32> = b.messages().map(|(_, s, _)| s).collect();
        assert_eq!(seqs, (42..42 + n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn the_table_is_replaced_then_the_tun_exempted_then_each_peer() {
        let mut b = policy_batch(&cfg(), &[]).unwrap();
        b.finish();
        assert_eq!(
            steps(&b),
            [
                "starting the transaction",
                "adding the table",
                "deleting the table",
                "adding the table",
                "adding the chain",
                "adding a rule",
                "ending the transaction"
            ]
        );
        // Per IPv4 peer: ESP, the UDP ports (a set of two), one drop per selector, the
        // ports-only selector with its protocol set.
        let b = policy_batch(&cfg(), &[(PEER, &nfs())]).unwrap();
        let s = steps(&b);
        assert_eq!(s.iter().filter(|w| **w == "adding a rule").count(), 1 + 4);
        assert_eq!(s.iter().filter(|w| **w == "adding a set").count(), 2);
        // Each set right before the rule that uses it.
        for (i, w) in s.iter().enumerate() {
            if *w == "adding a set" {
                assert_eq!(s[i + 1], "adding a set's elements");
                assert_eq!(s[i + 2], "adding a rule");
            }
        }
    }

    #[test]
    fn one_udp_port_is_a_comparison_and_no_selectors_drop_everything() {
        let mut c = cfg();
        c.udp_port = None;
        let b = policy_batch(&c, &[(PEER, &PeerConfig::new())]).unwrap();
        let s = steps(&b);
        assert!(!s.contains(&"adding a set"), "{s:?}");
        assert_eq!(s.iter().filter(|w| **w == "adding a rule").count(), 1 + 3);
        // NAT-T on 500 itself: still one port.
        c.udp_port = Some(IKE_PORT);
        let b = policy_batch(&c, &[(PEER, &PeerConfig::new())]).unwrap();
        assert!(!steps(&b).contains(&"adding a set"));
    }

    #[test]
    fn names_that_nft_could_not_have_written_are_refused() {
        for bad in ["", "1abc", "a b", "x;flush ruleset", &"a".repeat(33)] {
            let mut c = cfg();
            c.nft_table = bad.into();
            assert!(validate(&c).is_err(), "{bad:?}");
            assert!(policy_batch(&c, &[]).is_err(), "{bad:?}");
        }
        for bad in ["tun\"0", "", "a-very-long-name"] {
            let mut c = cfg();
            c.tun_name = bad.into();
            assert!(validate(&c).is_err(), "{bad:?}");
        }
        let mut c = cfg();
        c.tun_name = "fifteen-chars.x".into();
        assert!(validate(&c).is_ok());
        assert!(validate(&cfg()).is_ok());
    }

    #[test]
    fn refusals_say_what_is_missing_and_how_to_go_on() {
        let r = |errno| Refusal {
            errno,
            what: "starting the transaction".into(),
            kernel_message: None,
        };
        let e = refused("T", &r(libc::EOPNOTSUPP));
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let s = e.to_string();
        assert!(
            s.starts_with("the kernel has no nftables support (nf_tables module missing): "),
            "{s}"
        );
        assert!(s.contains("allow_unprotected_inbound"), "{s}");
        let s = refused("T", &r(libc::EPERM)).to_string();
        assert!(s.contains("CAP_NET_ADMIN"), "{s}");
        let mut inval = r(libc::EINVAL);
        inval.what = "adding a rule".into();
        inval.kernel_message = Some("bad expression".into());
        let s = refused("T", &inval).to_string();
        assert!(s.contains("table T: adding a rule: "), "{s}");
        assert!(s.contains("(kernel: bad expression)"), "{s}");
    }

    // ---- In network namespaces: the netlink transaction against `nft -f` itself. ----

    /// Runs `f` on a thread of its own in a new network namespace (gone when the thread
    /// ends); `None` when we may not create one.
    fn in_new_netns<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) affects only this thread's namespaces.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "cannot create a network namespace: {}",
                    io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
        .join()
        .unwrap()
    }

    fn nft(args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            let mut input = input;
            input.write_all(s.as_bytes()).unwrap();
        } else {
            drop(input);
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Why the namespace tests cannot run here, if they cannot.
    fn skip_reason() -> Option<String> {
        if Command::new("nft").arg("--version").output().is_err() {
            return Some("no nft binary to compare with".into());
        }
        in_new_netns(|| ()).err()
    }

    type Peers = Vec<(IpAddr, PeerConfig)>;

    /// `nft list table` (and its JSON form) of what `install` left, and of what `nft -f` of
    /// the reference script left, each in a fresh namespace.
    fn both_ways(cfg: &DatapathConfig, peers: &[(IpAddr, PeerConfig)]) -> [(String, String); 2] {
        let list = |table: &str| {
            (
                nft(&["list", "table", "inet", table], None),
                nft(&["-j", "list", "table", "inet", table], None),
            )
        };
        let (c, p) = (cfg.clone(), peers.to_vec());
        let ours = in_new_netns(move || {
            let refs: Vec<(IpAddr, &PeerConfig)> = p.iter().map(|(a, c)| (*a, c)).collect();
            install(&mut Session::default(), &c, &refs).unwrap();
            list(&c.nft_table)
        })
        .unwrap();
        let (c, p) = (cfg.clone(), peers.to_vec());
        let theirs = in_new_netns(move || {
            let refs: Vec<(IpAddr, &PeerConfig)> = p.iter().map(|(a, c)| (*a, c)).collect();
            nft(&["-f", "-"], Some(&text::ruleset(&c, &refs)));
            list(&c.nft_table)
        })
        .unwrap();
        [ours, theirs]
    }

    #[test]
    fn installs_exactly_what_nft_f_installs() {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED inbound policy equivalence with nft -f: {why}");
            return;
        }
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let v4 = |d: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
        let mut only_udp = PeerConfig::new();
        only_udp.selectors = vec![
            sel(Some(17), None, None),
            sel(Some(6), Some(22), Some(40000)),
        ];
        let mut no_nat_t = cfg();
        no_nat_t.udp_port = None;
        let mut other_names = cfg();
        other_names.nft_table = "T".into();
        other_names.tun_name = "tun-x.1".into();
        other_names.udp_port = Some(4501);
        let cases: Vec<(&str, DatapathConfig, Peers)> = vec![
            ("no peer", cfg(), vec![]),
            (
                "one IPv4 peer, all traffic",
                cfg(),
                vec![(PEER, PeerConfig::new())],
            ),
            ("IPv4 peer with selectors", cfg(), vec![(PEER, nfs())]),
            (
                "IPv6 peer with selectors",
                cfg(),
                vec![(v6("fd00::3"), nfs())],
            ),
            (
                "IPv6 peer, all traffic",
                cfg(),
                vec![(v6("2001:db8::1"), PeerConfig::new())],
            ),
            (
                "raw ESP only",
                no_nat_t,
                vec![(PEER, nfs()), (v6("fd00::9"), PeerConfig::new())],
            ),
            (
                "several peers, other names",
                other_names,
                vec![
                    (v4(2), nfs()),
                    (v4(3), PeerConfig::new()),
                    (v4(4), only_udp.clone()),
                    (v6("fd00::3"), only_udp),
                    (v6("fd00::4"), nfs()),
                ],
            ),
        ];
        for (name, c, peers) in cases {
            let [(ours, ours_json), (theirs, theirs_json)] = both_ways(&c, &peers);
            assert_eq!(ours, theirs, "{name}");
            // The JSON form names every expression and set element.
            assert_eq!(
                normalise_handles(&ours_json),
                normalise_handles(&theirs_json),
                "{name}"
            );
            let drops = peers
                .iter()
                .map(|(_, p)| p.selectors.len().max(1))
                .sum::<usize>();
            assert_eq!(
                ours.matches("counter packets 0 bytes 0 drop").count(),
                drops,
                "{name}"
            );
            assert!(
                ours.contains(&format!("iifname \"{}\" accept", c.tun_name)),
                "{name}"
            );
        }
    }

    /// Handles number the objects of a namespace's ruleset; they need not agree.
    fn normalise_handles(json: &str) -> String {
        let mut out = String::new();
        let mut rest = json;
        while let Some(i) = rest.find("\"handle\": ") {
            out.push_str(&rest[..i]);
            out.push_str("\"handle\": N");
            rest = rest[i + 10..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn replaces_the_table_and_removes_only_ours() {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED inbound policy replacement and removal: {why}");
            return;
        }
        in_new_netns(|| {
            let mut session = Session::default();
            // Nothing to remove yet: no error, nothing created.
            remove(&mut session, &cfg());
            assert_eq!(nft(&["list", "tables"], None), "");
            nft(&["add", "table", "inet", "someone_else"], None);
            let nfs = nfs();
            install(&mut session, &cfg(), &[(PEER, &nfs)]).unwrap();
            let first = nft(&["list", "table", "inet", "ibm_ipsec"], None);
            assert!(first.contains("tcp sport 2049"), "{first}");
            // Replaced whole: the peer's rules are gone, nothing doubled.
            let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
            let plain = PeerConfig::new();
            install(&mut session, &cfg(), &[(other, &plain)]).unwrap();
            let second = nft(&["list", "table", "inet", "ibm_ipsec"], None);
            assert!(!second.contains("10.0.0.2"), "{second}");
            assert_eq!(second.matches("chain inbound").count(), 1, "{second}");
            assert!(second.contains("ip saddr 10.0.0.7 counter"), "{second}");
            remove(&mut session, &cfg());
            assert_eq!(nft(&["list", "tables"], None), "table inet someone_else\n");
        })
        .unwrap();
    }

    fn cpu(who: libc::c_int) -> std::time::Duration {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(who, &mut ru) }, 0);
        let tv = |t: libc::timeval| {
            std::time::Duration::from_secs(t.tv_sec as u64)
                + std::time::Duration::from_micros(t.tv_usec as u64)
        };
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    /// Wall and CPU time of installing the policy for one peer (NFS selectors), in process
    /// over netlink and, as the datapath did before, through an `nft -f` child. Run with
    /// `cargo test -p esp --release --lib policy_install_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: prints figures, asserts nothing about speed"]
    fn policy_install_cost() {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED policy install cost: {why}");
            return;
        }
        in_new_netns(|| {
            const N: u32 = 200;
            let nfs = nfs();
            let peers = [(PEER, &nfs)];
            let mut session = Session::default();
            install(&mut session, &cfg(), &peers).unwrap(); // modules loaded, caches warm
            let (wall, own) = (std::time::Instant::now(), cpu(libc::RUSAGE_THREAD));
            for _ in 0..N {
                install(&mut session, &cfg(), &peers).unwrap();
            }
            let netlink = (wall.elapsed() / N, (cpu(libc::RUSAGE_THREAD) - own) / N);
            let script = text::ruleset(&cfg(), &peers);
            let (wall, own, kids) = (
                std::time::Instant::now(),
                cpu(libc::RUSAGE_THREAD),
                cpu(libc::RUSAGE_CHILDREN),
            );
            for _ in 0..N {
                nft(&["-f", "-"], Some(&script));
            }
            let spent = cpu(libc::RUSAGE_THREAD) - own + cpu(libc::RUSAGE_CHILDREN) - kids;
            let nft_f = (wall.elapsed() / N, spent / N);
            eprintln!(
                "policy install, one peer, mean of {N}: netlink wall {:?} CPU {:?}; \
                 nft -f wall {:?} CPU {:?} (ours + the child's)",
                netlink.0, netlink.1, nft_f.0, nft_f.1
            );
        })
        .unwrap();
    }
}

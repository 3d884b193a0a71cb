//! Steering traffic for the peer into the TUN device with policy routing, and removing it
//! again.
//!
//! Layout (IPv4), with `P` the rule priority, `T` the table and `M` the mark:
//!
//! ```text
//! P     fwmark M lookup main                           our own ESP/IKE sockets bypass the TUN
//! P+1   to PEER/32 [ipproto X] [sport|dport N] lookup T     per peer, one rule per selector
//! table T: PEER/32 dev TUN src LOCAL                        one route per peer
//! ```
//!
//! The mark rule comes with the datapath; a peer's rules and route with the peer, and
//! deleting a rule with all its selectors removes exactly that peer's.
//!
//! Our rules and route carry routing protocol number [`RULE_PROTOCOL`] (`proto 73` in
//! `ip rule`): a restart after a crash dumps the rules and removes those at our priorities
//! *with* that tag, so a foreign rule that happens to share a priority is never touched.
//!
//! Everything goes over rtnetlink from this process (one `NETLINK_ROUTE` socket per call,
//! in the calling thread's network namespace), with the messages `ip` would send for the
//! same commands ([`rtnetlink`](super::rtnetlink)); no `ip` processes. Only the TUN's
//! `rp_filter` is a /proc write.

use std::io;
use std::net::IpAddr;

use xfrm::socket::{NetlinkSocket, DUMP_RETRIES, NETLINK_ROUTE};

use super::rtnetlink::{
    self, Family, Op, PortRange, Prefix, Route, Rule, FR_ACT_TO_TBL, RTM_NEWROUTE, RTM_NEWRULE,
    RTN_UNICAST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN,
};
use super::{sys, DatapathConfig, PeerConfig, Selector};

/// The rtnetlink protocol number that marks our rules and routes (unassigned in iproute2's
/// `rt_protos`; 73 is ASCII `I`).
pub(crate) const RULE_PROTOCOL: u8 = 73;

/// An rtnetlink socket whose failures read as `io::Error`s naming the operation
/// ("adding the policy-routing rule for 10.0.0.2: permission denied (CAP_NET_ADMIN
/// needed)"), with the kernel's extended-ack text when it sent one.
struct Rtnl(NetlinkSocket);

impl Rtnl {
    fn open() -> io::Result<Self> {
        Ok(Rtnl(NetlinkSocket::open(NETLINK_ROUTE)?))
    }

    fn request(&mut self, op: &str, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        Ok(self.0.transact(op, build, &mut |_, _| Ok(()))?)
    }

    fn rule(&mut self, op: Op, rule: &Rule, what: impl FnOnce() -> String) -> io::Result<()> {
        let verb = match op {
            Op::Add => "adding",
            Op::Delete => "deleting",
        };
        self.request(&format!("{verb} {}", what()), |seq| rule.request(op, seq))
    }

    /// Every entry of `family` a dump of `kind` returns, parsed by `parse`; entries that do
    /// not parse are skipped (they are not ours: we only look for entries we wrote).
    fn dump<T>(
        &mut self,
        op: &str,
        request: fn(Family, u32) -> Vec<u8>,
        family: Family,
        kind: u16,
        parse: fn(&[u8]) -> Result<T, xfrm::error::DecodeError>,
    ) -> io::Result<Vec<T>> {
        for _ in 0..DUMP_RETRIES {
            let mut out = Vec::new();
            let complete = self
                .0
                .dump(op, |seq| request(family, seq), &mut |k, payload| {
                    if k == kind {
                        if let Ok(entry) = parse(payload) {
                            out.push(entry);
                        }
                    }
                    Ok(())
                })?;
            if complete {
                return Ok(out);
            }
        }
        Err(io::Error::other(format!(
            "{op}: the dump kept being interrupted by concurrent changes"
        )))
    }
}

/// The TUN's interface index.
fn tun_index(cfg: &DatapathConfig) -> io::Result<u32> {
    sys::if_index(&cfg.tun_name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface {}", cfg.tun_name),
        )
    })
}

/// The bypass rule: our own marked packets use the main table.
fn mark_rule(cfg: &DatapathConfig, family: Family) -> Rule {
    Rule {
        family,
        priority: Some(cfg.rule_priority),
        src: None,
        dst: None,
        fwmark: Some(cfg.mark),
        fwmask: None,
        ip_proto: None,
        sport: None,
        dport: None,
        table: RT_TABLE_MAIN,
        action: FR_ACT_TO_TBL,
        protocol: RULE_PROTOCOL,
    }
}

/// Brings the TUN up with its MTU, relaxes reverse-path filtering on it and installs the
/// mark bypass rule.
pub(crate) fn install(cfg: &DatapathConfig) -> io::Result<()> {
    let dev = &cfg.tun_name;
    let mut nl = Rtnl::open()?;
    let index = tun_index(cfg)?;
    nl.request(&format!("bringing {dev} up with MTU {}", cfg.mtu), |seq| {
        rtnetlink::link_up(index, cfg.mtu.into(), seq)
    })?;
    // Decapsulated packets come in on the TUN with the peer as source, while the route back
    // to the peer (for the reverse-path check) may point elsewhere; loose mode (2) accepts
    // them whatever `all.rp_filter` says (the kernel uses the maximum of both).
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter"), b"2\n")?;
    let families: &[Family] = if cfg.local6.is_some() {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    };
    for family in families {
        nl.rule(Op::Add, &mark_rule(cfg, *family), || {
            format!(
                "the {} firewall-mark bypass rule (priority {}, mark {:#x})",
                family.name(),
                cfg.rule_priority,
                cfg.mark
            )
        })?;
    }
    Ok(())
}

/// The peer's capture rules, one per selector (all traffic without selectors).
fn peer_rules(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) -> Vec<Rule> {
    let family = Family::of(peer);
    let all = [Selector::default()];
    let selectors: &[Selector] = if pc.selectors.is_empty() {
        &all
    } else {
        &pc.selectors
    };
    selectors
        .iter()
        .map(|sel| Rule {
            family,
            priority: Some(cfg.rule_priority + 1),
            src: None,
            dst: Some(Prefix {
                addr: peer,
                len: family.host_len(),
            }),
            fwmark: None,
            fwmask: None,
            ip_proto: sel.protocol,
            sport: sel.local_port.map(PortRange::one),
            dport: sel.remote_port.map(PortRange::one),
            table: cfg.table,
            action: FR_ACT_TO_TBL,
            protocol: RULE_PROTOCOL,
        })
        .collect()
}

/// The peer's route into the TUN: `PEER/32 dev TUN src LOCAL table T proto 73`.
fn peer_route(cfg: &DatapathConfig, peer: IpAddr, tun: u32) -> Route {
    let family = Family::of(peer);
    let src = match peer {
        IpAddr::V4(_) => Some(IpAddr::V4(cfg.local)),
        IpAddr::V6(_) => cfg.local6.map(IpAddr::V6),
    };
    Route {
        family,
        dst: Some(Prefix {
            addr: peer,
            len: family.host_len(),
        }),
        oif: Some(tun),
        prefsrc: src,
        table: cfg.table,
        protocol: RULE_PROTOCOL,
        // What iproute2 gives a route through a device without a gateway.
        scope: match family {
            Family::V4 => RT_SCOPE_LINK,
            Family::V6 => RT_SCOPE_UNIVERSE,
        },
        kind: RTN_UNICAST,
    }
}

fn rule_text(peer: IpAddr, rule: &Rule) -> String {
    let mut s = format!("the policy-routing rule for {peer}");
    let mut sel = Vec::new();
    if let Some(p) = rule.ip_proto {
        sel.push(format!("ipproto {p}"));
    }
    if let Some(r) = rule.sport {
        sel.push(format!("sport {}", r.start));
    }
    if let Some(r) = rule.dport {
        sel.push(format!("dport {}", r.start));
    }
    if !sel.is_empty() {
        s.push_str(&format!(" ({})", sel.join(" ")));
    }
    s
}

/// Sends the peer's selected traffic into the TUN: the route first (replacing a stale
/// one), then the rules.
pub(crate) fn add_peer(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) -> io::Result<()> {
    let mut nl = Rtnl::open()?;
    let route = peer_route(cfg, peer, tun_index(cfg)?);
    nl.request(
        &format!(
            "adding the route to {peer} via {} (table {})",
            cfg.tun_name, cfg.table
        ),
        |seq| route.request(Op::Add, seq),
    )?;
    for rule in peer_rules(cfg, peer, pc) {
        nl.rule(Op::Add, &rule, || rule_text(peer, &rule))?;
    }
    Ok(())
}

/// Adds the rules `new` has and `old` has not (the peer's route stays); returns them, so
/// a caller that must back out can [`delete_rules`]. On failure nothing stays added.
pub(crate) fn add_rules_beside(
    cfg: &DatapathConfig,
    peer: IpAddr,
    old: &PeerConfig,
    new: &PeerConfig,
) -> io::Result<Vec<Rule>> {
    let mut nl = Rtnl::open()?;
    let have = peer_rules(cfg, peer, old);
    let mut added = Vec::new();
    for rule in peer_rules(cfg, peer, new) {
        if have.contains(&rule) {
            continue;
        }
        if let Err(e) = nl.rule(Op::Add, &rule, || rule_text(peer, &rule)) {
            delete_rules(peer, &added);
            return Err(e);
        }
        added.push(rule);
    }
    Ok(added)
}

/// Deletes these rules of the peer (best effort).
pub(crate) fn delete_rules(peer: IpAddr, rules: &[Rule]) {
    let Ok(mut nl) = Rtnl::open() else { return };
    for rule in rules {
        let _ = nl.rule(Op::Delete, rule, || rule_text(peer, rule));
    }
}

/// Deletes the rules `old` has and `new` has not.
pub(crate) fn delete_rules_not_in(
    cfg: &DatapathConfig,
    peer: IpAddr,
    old: &PeerConfig,
    new: &PeerConfig,
) {
    let keep = peer_rules(cfg, peer, new);
    let gone: Vec<Rule> = peer_rules(cfg, peer, old)
        .into_iter()
        .filter(|r| !keep.contains(r))
        .collect();
    delete_rules(peer, &gone);
}

/// Removes what [`add_peer`] installed (best effort: parts may be missing after a failed
/// add).
pub(crate) fn remove_peer(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) {
    let Ok(mut nl) = Rtnl::open() else { return };
    for rule in peer_rules(cfg, peer, pc) {
        let _ = nl.rule(Op::Delete, &rule, || rule_text(peer, &rule));
    }
    // Without the TUN (gone already) the route went with it.
    if let Ok(tun) = tun_index(cfg) {
        let route = peer_route(cfg, peer, tun);
        let _ = nl.request(&format!("deleting the route to {peer}"), |seq| {
            route.request(Op::Delete, seq)
        });
    }
}

/// Whether a dumped rule is one of ours: at one of our priorities and tagged with our
/// protocol number.
fn is_ours(cfg: &DatapathConfig, rule: &Rule) -> bool {
    let ours = cfg.rule_priority..=cfg.rule_priority + 1 + MAX_STALE_SELECTORS;
    rule.protocol == RULE_PROTOCOL && rule.priority.is_some_and(|p| ours.contains(&p))
}

/// Removes our rules (by priority and protocol tag), the table's routes and a TUN left behind
/// by a previous run. Safe to call when nothing is installed.
pub(crate) fn remove(cfg: &DatapathConfig) {
    let Ok(mut nl) = Rtnl::open() else { return };
    for family in [Family::V4, Family::V6] {
        // Best effort: a kernel without IPv6 fails the dump.
        if let Ok(rules) = nl.dump(
            "listing policy-routing rules",
            rtnetlink::rule_dump,
            family,
            RTM_NEWRULE,
            Rule::parse,
        ) {
            for rule in rules.iter().filter(|r| is_ours(cfg, r)) {
                let _ = nl.rule(Op::Delete, rule, || "a stale policy-routing rule".into());
            }
        }
        // The table is ours alone: every route in it goes (`ip route flush table T`).
        if let Ok(routes) = nl.dump(
            "listing routes",
            rtnetlink::route_dump,
            family,
            RTM_NEWROUTE,
            Route::parse,
        ) {
            for route in routes.iter().filter(|r| r.table == cfg.table) {
                let _ = nl.request("deleting a stale route", |seq| {
                    route.request(Op::Delete, seq)
                });
            }
        }
    }
    if let Some(index) = sys::if_index(&cfg.tun_name) {
        let _ = nl.request(&format!("deleting {}", cfg.tun_name), |seq| {
            rtnetlink::link_delete(index, seq)
        });
    }
}

/// A previous run may have had more selectors than this one: clean this many priorities
/// beyond our own.
const MAX_STALE_SELECTORS: u32 = 16;

/// A one-line summary of what `install` sets up, for logs.
pub(crate) fn describe(cfg: &DatapathConfig) -> String {
    format!(
        "tun {} mtu {} table {} rules {}..={} mark {:#x} local {}",
        cfg.tun_name,
        cfg.mtu,
        cfg.table,
        cfg.rule_priority,
        cfg.rule_priority + 1,
        cfg.mark,
        cfg.local
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::rtnetlink::fixtures::same_as_ip;
    use std::net::Ipv4Addr;
    use std::process::Command;

    fn nfs_and_rpc() -> PeerConfig {
        let mut pc = PeerConfig::new();
        pc.selectors = vec![
            Selector {
                protocol: Some(6),
                local_port: None,
                remote_port: Some(2049),
            },
            Selector {
                protocol: Some(17),
                local_port: Some(111),
                remote_port: None,
            },
        ];
        pc
    }

    /// What the default configuration sends is what the `ip` commands it replaces sent
    /// (`fixtures/rtnetlink/capture.sh` runs them with the same numbers).
    #[test]
    fn requests_are_those_of_the_ip_commands_they_replace() {
        let mut cfg = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1));
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let all = peer_rules(&cfg, peer, &PeerConfig::new());
        assert_eq!(all.len(), 1);
        same_as_ip(&all[0].request(Op::Add, 1), "rule_peer4");
        same_as_ip(&all[0].request(Op::Delete, 1), "rule_del_peer4");
        let two = peer_rules(&cfg, peer, &nfs_and_rpc());
        same_as_ip(&two[0].request(Op::Add, 1), "rule_peer4_tcp");
        same_as_ip(&two[1].request(Op::Add, 1), "rule_peer4_udp");
        let tun = 2;
        same_as_ip(
            &peer_route(&cfg, peer, tun).request(Op::Add, 1),
            "route_peer4",
        );
        same_as_ip(
            &peer_route(&cfg, peer, tun).request(Op::Delete, 1),
            "route_del_peer4",
        );
        same_as_ip(
            &mark_rule(&cfg, Family::V4).request(Op::Add, 1),
            "rule_mark4",
        );
        same_as_ip(
            &mark_rule(&cfg, Family::V6).request(Op::Add, 1),
            "rule_mark6",
        );

        let peer6: IpAddr = "fd00::2".parse().unwrap();
        cfg.local6 = Some("fd00::1".parse().unwrap());
        let six = peer_rules(&cfg, peer6, &nfs_and_rpc());
        same_as_ip(&six[0].request(Op::Add, 1), "rule_peer6_tcp");
        same_as_ip(&six[0].request(Op::Delete, 1), "rule_del_peer6_tcp");
        same_as_ip(
            &peer_route(&cfg, peer6, tun).request(Op::Add, 1),
            "route_peer6",
        );
        assert_eq!(
            rule_text(peer6, &six[1]),
            "the policy-routing rule for fd00::2 (ipproto 17 sport 111)"
        );
    }

    #[test]
    fn only_tagged_rules_at_our_priorities_are_ours() {
        let cfg = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1));
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let rule = peer_rules(&cfg, peer, &PeerConfig::new()).remove(0);
        assert!(is_ours(&cfg, &rule));
        assert!(is_ours(&cfg, &mark_rule(&cfg, Family::V6)));
        let at = |p| Rule {
            priority: p,
            ..rule.clone()
        };
        assert!(is_ours(&cfg, &at(Some(10500 + 1 + MAX_STALE_SELECTORS))));
        assert!(!is_ours(&cfg, &at(Some(10500 + 2 + MAX_STALE_SELECTORS))));
        assert!(!is_ours(&cfg, &at(Some(10499))));
        assert!(!is_ours(&cfg, &at(None)));
        let foreign = Rule {
            protocol: 3, // boot: `ip rule add` without `protocol`
            ..rule
        };
        assert!(!is_ours(&cfg, &foreign));
    }

    /// A fresh namespace with our TUN addressed, or the reason this host cannot have one.
    fn lab() -> Result<(std::fs::File, DatapathConfig), String> {
        super::super::sys::testing::enter_new_netns()
            .map_err(|e| format!("no network namespace (needs root): {e}"))?;
        let mut cfg = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1));
        cfg.local6 = Some("fd00::1".parse().unwrap());
        let (tun, _) =
            super::super::sys::open_tun(&cfg.tun_name).map_err(|e| format!("no TUN: {e}"))?;
        for args in [
            &["addr", "add", "10.0.0.1/24", "dev", "ibmipsec0"][..],
            &["addr", "add", "fd00::1/64", "dev", "ibmipsec0", "nodad"],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((tun, cfg))
    }

    /// `ip ARGS`, which must succeed; its output.
    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The rules at our two priorities, as `ip rule show` prints them (whitespace squashed).
    fn rules_at_ours(family: &str) -> Vec<String> {
        let mut lines: Vec<String> = ip(&[family, "rule", "show"])
            .lines()
            .filter(|l| l.starts_with("10500:") || l.starts_with("10501:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    }

    fn sorted(lines: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        v.sort();
        v
    }

    fn routes_in_table(family: &str) -> Vec<String> {
        let mut lines: Vec<String> = ip(&[family, "route", "show", "table", "485"])
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    }

    /// In a namespace of its own: exactly the expected rules and routes after each step,
    /// and after the clean-up none of ours while foreign rules at our priorities survive.
    /// Runs `f` on a thread of its own: namespace and capability changes are per thread
    /// and must not leak into other tests (libtest may run them on one thread).
    fn isolated(f: fn()) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn rules_and_routes_in_a_namespace() {
        isolated(rules_and_routes);
    }

    fn rules_and_routes() {
        let (_tun, cfg) = match lab() {
            Ok(l) => l,
            Err(why) => {
                eprintln!("skipping rules_and_routes_in_a_namespace: {why}");
                return;
            }
        };
        ip(&[
            "rule",
            "add",
            "priority",
            "10501",
            "to",
            "10.0.0.77/32",
            "lookup",
            "main",
        ]);
        ip(&[
            "-6", "rule", "add", "priority", "10500", "to", "fd00::77", "lookup", "main",
        ]);
        let foreign4 = "10501: from all to 10.0.0.77 lookup main";
        let foreign6 = "10500: from all to fd00::77 lookup main";
        install(&cfg).unwrap();
        assert_eq!(cfg.mark, 0x1e5);
        let mark = "10500: from all fwmark 0x1e5 lookup main proto 73";
        assert_eq!(rules_at_ours("-4"), sorted(&[mark, foreign4]));
        assert_eq!(rules_at_ours("-6"), sorted(&[foreign6, mark]));
        let state = std::fs::read_to_string("/proc/sys/net/ipv4/conf/ibmipsec0/rp_filter");
        assert_eq!(state.unwrap().trim(), "2");
        let link = ip(&["link", "show", "ibmipsec0"]);
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");

        let peer4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let peer6: IpAddr = "fd00::2".parse().unwrap();
        let nfs = nfs_and_rpc();
        add_peer(&cfg, peer4, &nfs).unwrap();
        add_peer(&cfg, peer6, &PeerConfig::new()).unwrap();
        let tcp4 = "10501: from all to 10.0.0.2 ipproto tcp dport 2049 lookup 485 proto 73";
        let udp4 = "10501: from all to 10.0.0.2 ipproto udp sport 111 lookup 485 proto 73";
        let all6 = "10501: from all to fd00::2 lookup 485 proto 73";
        assert_eq!(rules_at_ours("-4"), sorted(&[mark, foreign4, tcp4, udp4]));
        assert_eq!(rules_at_ours("-6"), sorted(&[foreign6, mark, all6]));
        assert_eq!(
            routes_in_table("-4"),
            ["10.0.0.2 dev ibmipsec0 proto 73 scope link src 10.0.0.1"]
        );
        assert_eq!(
            routes_in_table("-6"),
            ["fd00::2 dev ibmipsec0 proto 73 src fd00::1 metric 1024 pref medium"]
        );

        // A second add of the same peer fails on its first rule, naming it.
        let e = add_peer(&cfg, peer4, &nfs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            e.to_string(),
            "adding the policy-routing rule for 10.0.0.2 (ipproto 6 dport 2049): it exists already"
        );

        // update_peer's order: the new rules beside the old, then the old ones go.
        let mut only_nfs = nfs.clone();
        only_nfs.selectors.truncate(1);
        only_nfs.selectors.push(Selector {
            protocol: Some(6),
            local_port: None,
            remote_port: Some(20049),
        });
        let added = add_rules_beside(&cfg, peer4, &nfs, &only_nfs).unwrap();
        assert_eq!(added.len(), 1);
        let tcp4b = "10501: from all to 10.0.0.2 ipproto tcp dport 20049 lookup 485 proto 73";
        assert_eq!(
            rules_at_ours("-4"),
            sorted(&[mark, foreign4, tcp4, tcp4b, udp4])
        );
        delete_rules_not_in(&cfg, peer4, &nfs, &only_nfs);
        assert_eq!(rules_at_ours("-4"), sorted(&[mark, foreign4, tcp4, tcp4b]));
        // Backing out (a later step failed) removes exactly what was added.
        delete_rules(peer4, &added);
        assert_eq!(rules_at_ours("-4"), sorted(&[mark, foreign4, tcp4]));
        add_rules_beside(&cfg, peer4, &nfs, &only_nfs).unwrap();

        remove_peer(&cfg, peer4, &only_nfs);
        assert_eq!(rules_at_ours("-4"), sorted(&[mark, foreign4]));
        assert!(routes_in_table("-4").is_empty());
        assert_eq!(rules_at_ours("-6"), sorted(&[foreign6, mark, all6]));

        // A crash leaves the IPv6 peer, a stale rule of an older run with more selectors
        // and an untagged route in our table: clean-up takes all of it and the TUN.
        ip(&[
            "rule", "add", "priority", "10504", "to", "10.0.0.9", "lookup", "485", "protocol", "73",
        ]);
        ip(&[
            "route",
            "add",
            "10.0.0.9",
            "dev",
            "ibmipsec0",
            "table",
            "485",
        ]);
        remove(&cfg);
        assert_eq!(rules_at_ours("-4"), sorted(&[foreign4]));
        assert_eq!(rules_at_ours("-6"), sorted(&[foreign6]));
        assert!(!ip(&["rule", "show"]).contains("proto 73"));
        assert!(!ip(&["-6", "rule", "show"]).contains("proto 73"));
        assert!(sys::if_index(&cfg.tun_name).is_none());
        // Nothing left to remove is fine.
        remove(&cfg);
        assert_eq!(rules_at_ours("-4"), sorted(&[foreign4]));
    }

    /// Without CAP_NET_ADMIN the kernel refuses, and the error says what was refused and why.
    #[test]
    fn refusals_name_the_operation() {
        isolated(refusals);
    }

    /// `CAP_NET_ADMIN` (linux/capability.h).
    const CAP_NET_ADMIN: u32 = 12;

    fn refusals() {
        let (_tun, cfg) = match lab() {
            Ok(l) => l,
            Err(why) => {
                eprintln!("skipping refusals_name_the_operation: {why}");
                return;
            }
        };
        sys::testing::drop_effective_capability(CAP_NET_ADMIN).unwrap();
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let e = add_peer(&cfg, peer, &PeerConfig::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "adding the route to 10.0.0.2 via ibmipsec0 (table 485): permission denied \
             (CAP_NET_ADMIN needed)"
        );
        let e = install(&cfg).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bringing ibmipsec0 up with MTU 1400: permission denied"),
            "{e}"
        );
        let e = add_rules_beside(&cfg, peer, &PeerConfig::new(), &nfs_and_rpc()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "adding the policy-routing rule for 10.0.0.2 (ipproto 6 dport 2049): permission \
             denied (CAP_NET_ADMIN needed)"
        );
    }

    /// What adding and removing a peer costs (two selectors, IPv4 and IPv6), printed with
    /// `cargo test -p esp --lib cost_of -- --nocapture`.
    #[test]
    fn cost_of_adding_and_removing_peers() {
        isolated(cost_of_peers);
    }

    fn cost_of_peers() {
        let (_tun, cfg) = match lab() {
            Ok(l) => l,
            Err(why) => {
                eprintln!("skipping cost_of_adding_and_removing_peers: {why}");
                return;
            }
        };
        install(&cfg).unwrap();
        let pc = nfs_and_rpc();
        let peers: [IpAddr; 2] = [
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            "fd00::2".parse().unwrap(),
        ];
        const ROUNDS: u32 = 20;
        let (cpu0, child0) = super::super::sys::testing::cpu_times();
        let t0 = std::time::Instant::now();
        for _ in 0..ROUNDS {
            for peer in peers {
                add_peer(&cfg, peer, &pc).unwrap();
                remove_peer(&cfg, peer, &pc);
            }
        }
        let wall = t0.elapsed();
        let (cpu1, child1) = super::super::sys::testing::cpu_times();
        let per = |d: std::time::Duration| d / (ROUNDS * peers.len() as u32);
        eprintln!(
            "add_peer + remove_peer (2 selectors), mean of {}: wall {:?}, CPU this thread {:?}, \
             CPU child processes {:?}",
            ROUNDS * peers.len() as u32,
            per(wall),
            per(cpu1 - cpu0),
            per(child1 - child0)
        );
        remove(&cfg);
        // The datapath's own set-up and tear-down (start cleans up first, as after a crash).
        const STARTS: u32 = 5;
        let (cpu0, child0) = super::super::sys::testing::cpu_times();
        let t0 = std::time::Instant::now();
        for _ in 0..STARTS {
            remove(&cfg);
            let tun = super::super::sys::open_tun(&cfg.tun_name).unwrap();
            install(&cfg).unwrap();
            remove(&cfg);
            drop(tun);
        }
        let wall = t0.elapsed();
        let (cpu1, child1) = super::super::sys::testing::cpu_times();
        eprintln!(
            "remove + open TUN + install + remove, mean of {STARTS}: wall {:?}, CPU this thread {:?}, \
             CPU child processes {:?}",
            wall / STARTS,
            (cpu1 - cpu0) / STARTS,
            (child1 - child0) / STARTS
        );
    }
}

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
//! `ip rule del` with the full rule removes exactly that peer's.
//!
//! Our rules and route carry routing protocol number [`RULE_PROTOCOL`] (`proto 73` in
//! `ip rule`): a restart after a crash removes leftovers by priority *and* that tag, so a
//! foreign rule that happens to share a priority is never touched. The commands are iproute2's `ip` (a dependency the
//! project's install script provides).

use std::io;
use std::process::Command;

use std::net::IpAddr;

use super::{DatapathConfig, PeerConfig, Selector};

/// The rtnetlink protocol number that marks our rules and routes (unassigned in iproute2's
/// `rt_protos`; 73 is ASCII `I`).
pub(crate) const RULE_PROTOCOL: u8 = 73;

/// Runs `ip ARGS`; errors carry the command and its stderr.
fn ip(args: &[String]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn s<T: ToString>(v: T) -> String {
    v.to_string()
}

/// The `ip rule` selector words for one traffic selector, seen from this host.
fn selector_words(sel: &Selector) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(p) = sel.protocol {
        w.extend([s("ipproto"), s(p)]);
    }
    if let Some(p) = sel.local_port {
        w.extend([s("sport"), s(p)]);
    }
    if let Some(p) = sel.remote_port {
        w.extend([s("dport"), s(p)]);
    }
    w
}

/// Brings the TUN up with its MTU, relaxes reverse-path filtering on it and installs the
/// mark bypass rule.
pub(crate) fn install(cfg: &DatapathConfig) -> io::Result<()> {
    let dev = cfg.tun_name.clone();
    ip(&[
        s("link"),
        s("set"),
        s("dev"),
        dev.clone(),
        s("mtu"),
        s(cfg.mtu),
        s("up"),
    ])?;
    // Decapsulated packets come in on the TUN with the peer as source, while the route back
    // to the peer (for the reverse-path check) may point elsewhere; loose mode (2) accepts
    // them whatever `all.rp_filter` says (the kernel uses the maximum of both).
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter"), b"2\n")?;
    let families: &[&str] = if cfg.local6.is_some() {
        &["-4", "-6"]
    } else {
        &["-4"]
    };
    for family in families {
        ip(&[
            s(family),
            s("rule"),
            s("add"),
            s("priority"),
            s(cfg.rule_priority),
            s("fwmark"),
            format!("{:#x}", cfg.mark),
            s("lookup"),
            s("main"),
            s("protocol"),
            s(RULE_PROTOCOL),
        ])?;
    }
    Ok(())
}

/// `ip`'s family flag and the host prefix length for `peer`.
fn family(peer: IpAddr) -> (&'static str, u8) {
    match peer {
        IpAddr::V4(_) => ("-4", 32),
        IpAddr::V6(_) => ("-6", 128),
    }
}

/// The peer's capture rules, each as the words after `ip -4|-6 rule add|del`.
fn peer_rules(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) -> Vec<Vec<String>> {
    let (_, prefix) = family(peer);
    let all = [Selector::default()];
    let selectors: &[Selector] = if pc.selectors.is_empty() {
        &all
    } else {
        &pc.selectors
    };
    selectors
        .iter()
        .map(|sel| {
            let mut args = vec![
                s("priority"),
                s(cfg.rule_priority + 1),
                s("to"),
                format!("{peer}/{prefix}"),
            ];
            args.extend(selector_words(sel));
            args.extend([s("lookup"), s(cfg.table), s("protocol"), s(RULE_PROTOCOL)]);
            args
        })
        .collect()
}

/// The words after `ip -4|-6 route add|del` for the peer's route into the TUN.
fn peer_route(cfg: &DatapathConfig, peer: IpAddr) -> Vec<String> {
    let (_, prefix) = family(peer);
    let mut args = vec![format!("{peer}/{prefix}"), s("dev"), cfg.tun_name.clone()];
    let src = match peer {
        IpAddr::V4(_) => Some(IpAddr::V4(cfg.local)),
        IpAddr::V6(_) => cfg.local6.map(IpAddr::V6),
    };
    if let Some(src) = src {
        args.extend([s("src"), s(src)]);
    }
    args.extend([s("table"), s(cfg.table), s("proto"), s(RULE_PROTOCOL)]);
    args
}

/// Sends the peer's selected traffic into the TUN.
pub(crate) fn add_peer(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) -> io::Result<()> {
    let (fam, _) = family(peer);
    let mut args = vec![s(fam), s("route"), s("replace")];
    args.extend(peer_route(cfg, peer));
    ip(&args)?;
    for rule in peer_rules(cfg, peer, pc) {
        let mut args = vec![s(fam), s("rule"), s("add")];
        args.extend(rule);
        ip(&args)?;
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
) -> io::Result<Vec<Vec<String>>> {
    let (fam, _) = family(peer);
    let have = peer_rules(cfg, peer, old);
    let mut added = Vec::new();
    for rule in peer_rules(cfg, peer, new) {
        if have.contains(&rule) {
            continue;
        }
        let mut args = vec![s(fam), s("rule"), s("add")];
        args.extend(rule.iter().cloned());
        if let Err(e) = ip(&args) {
            delete_rules(peer, &added);
            return Err(e);
        }
        added.push(rule);
    }
    Ok(added)
}

/// Deletes these rules of the peer (best effort).
pub(crate) fn delete_rules(peer: IpAddr, rules: &[Vec<String>]) {
    let (fam, _) = family(peer);
    for rule in rules {
        let mut args = vec![s(fam), s("rule"), s("del")];
        args.extend(rule.iter().cloned());
        let _ = ip(&args);
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
    let gone: Vec<Vec<String>> = peer_rules(cfg, peer, old)
        .into_iter()
        .filter(|r| !keep.contains(r))
        .collect();
    delete_rules(peer, &gone);
}

/// Removes what [`add_peer`] installed (best effort: parts may be missing after a failed
/// add).
pub(crate) fn remove_peer(cfg: &DatapathConfig, peer: IpAddr, pc: &PeerConfig) {
    let (fam, _) = family(peer);
    for rule in peer_rules(cfg, peer, pc) {
        let mut args = vec![s(fam), s("rule"), s("del")];
        args.extend(rule);
        let _ = ip(&args);
    }
    let mut args = vec![s(fam), s("route"), s("del")];
    args.extend(peer_route(cfg, peer));
    let _ = ip(&args);
}

/// Removes our rules (by priority and protocol tag), the table's routes and a TUN left behind
/// by a previous run. Safe to call when nothing is installed.
pub(crate) fn remove(cfg: &DatapathConfig) {
    for fam in ["-4", "-6"] {
        // Earlier versions spread one peer's rules over `P+1…`: clean a few more priorities.
        for prio in cfg.rule_priority..=cfg.rule_priority + 1 + MAX_STALE_SELECTORS {
            // A priority holds one rule per selector of every peer; delete until none is
            // left (bounded, in case `ip` misbehaves).
            for _ in 0..MAX_RULES_PER_PRIORITY {
                let del = [
                    s(fam),
                    s("rule"),
                    s("del"),
                    s("priority"),
                    s(prio),
                    s("protocol"),
                    s(RULE_PROTOCOL),
                ];
                if ip(&del).is_err() {
                    break;
                }
            }
        }
        let _ = ip(&[s(fam), s("route"), s("flush"), s("table"), s(cfg.table)]);
    }
    if super::sys::if_exists(&cfg.tun_name) {
        let _ = ip(&[s("link"), s("del"), s("dev"), cfg.tun_name.clone()]);
    }
}

/// A previous run may have had more selectors than this one: clean this many priorities
/// beyond our own.
const MAX_STALE_SELECTORS: u32 = 16;
/// More rules than any run installs at one priority (peers × selectors).
const MAX_RULES_PER_PRIORITY: usize = 65536;

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
    use std::net::Ipv4Addr;

    #[test]
    fn selector_words_follow_ip_rule_syntax() {
        let sel = Selector {
            protocol: Some(6),
            local_port: None,
            remote_port: Some(2049),
        };
        assert_eq!(selector_words(&sel), ["ipproto", "6", "dport", "2049"]);
        assert!(selector_words(&Selector::default()).is_empty());
    }

    #[test]
    fn peer_rules_share_one_priority_and_name_the_peer() {
        let mut cfg = DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1));
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let all = peer_rules(&cfg, peer, &PeerConfig::new());
        assert_eq!(
            all,
            [[
                "priority",
                "10501",
                "to",
                "10.0.0.2/32",
                "lookup",
                "485",
                "protocol",
                "73"
            ]]
        );
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
        let two = peer_rules(&cfg, peer, &pc);
        assert_eq!(two.len(), 2);
        assert!(two[0]
            .join(" ")
            .contains("to 10.0.0.2/32 ipproto 6 dport 2049 lookup"));
        assert!(two[1].join(" ").contains("ipproto 17 sport 111 lookup"));
        assert_eq!(
            peer_route(&cfg, peer).join(" "),
            "10.0.0.2/32 dev ibmipsec0 src 10.0.0.1 table 485 proto 73"
        );
        let peer6: IpAddr = "fd00::2".parse().unwrap();
        assert!(peer_rules(&cfg, peer6, &pc)[0]
            .join(" ")
            .contains("to fd00::2/128 ipproto 6"));
        assert_eq!(
            peer_route(&cfg, peer6).join(" "),
            "fd00::2/128 dev ibmipsec0 table 485 proto 73"
        );
        cfg.local6 = Some("fd00::1".parse().unwrap());
        assert!(peer_route(&cfg, peer6)
            .join(" ")
            .contains("dev ibmipsec0 src fd00::1 table"));
    }
}

//! Steering traffic for the peer into the TUN device with policy routing, and removing it
//! again.
//!
//! Layout (IPv4), with `P` the rule priority, `T` the table and `M` the mark:
//!
//! ```text
//! P     fwmark M lookup main                      our own ESP/IKE sockets bypass the TUN
//! P+1…  to PEER/32 [ipproto X] [sport|dport N] lookup T   one rule per selector
//! table T: PEER/32 dev TUN src LOCAL
//! ```
//!
//! Our rules and route carry routing protocol number [`RULE_PROTOCOL`] (`proto 73` in
//! `ip rule`): a restart after a crash removes leftovers by priority *and* that tag, so a
//! foreign rule that happens to share a priority is never touched. The commands are iproute2's `ip` (a dependency the
//! project's install script provides).

use std::io;
use std::process::Command;

use super::{DatapathConfig, Selector};

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

/// Brings the TUN up with its MTU, relaxes reverse-path filtering on it and installs rules
/// and the route.
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
    let table = s(cfg.table);
    ip(&[
        s("route"),
        s("replace"),
        format!("{}/32", cfg.peer),
        s("dev"),
        dev,
        s("src"),
        s(cfg.local),
        s("table"),
        table.clone(),
        s("proto"),
        s(RULE_PROTOCOL),
    ])?;
    ip(&[
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
    let all = [Selector::default()];
    let selectors: &[Selector] = if cfg.selectors.is_empty() {
        &all
    } else {
        &cfg.selectors
    };
    for (i, sel) in selectors.iter().enumerate() {
        let mut args = vec![
            s("rule"),
            s("add"),
            s("priority"),
            s(cfg.rule_priority + 1 + i as u32),
            s("to"),
            format!("{}/32", cfg.peer),
        ];
        args.extend(selector_words(sel));
        args.extend([s("lookup"), table.clone(), s("protocol"), s(RULE_PROTOCOL)]);
        ip(&args)?;
    }
    Ok(())
}

/// Removes our rules (by priority and protocol tag), the table's routes and a TUN left behind
/// by a previous run. Safe to call when nothing is installed.
pub(crate) fn remove(cfg: &DatapathConfig) {
    let last = cfg.rule_priority + 1 + cfg.selectors.len().max(1) as u32;
    for prio in cfg.rule_priority..=last + MAX_STALE_SELECTORS {
        // A priority can hold several rules after repeated crashes; delete until none is left.
        for _ in 0..16 {
            let del = [
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
    let _ = ip(&[s("route"), s("flush"), s("table"), s(cfg.table)]);
    if super::sys::if_exists(&cfg.tun_name) {
        let _ = ip(&[s("link"), s("del"), s("dev"), cfg.tun_name.clone()]);
    }
}

/// A previous run may have had more selectors than this one: clean this many priorities
/// beyond our own.
const MAX_STALE_SELECTORS: u32 = 16;

/// A one-line summary of what `install` sets up, for logs.
pub(crate) fn describe(cfg: &DatapathConfig) -> String {
    format!(
        "tun {} mtu {} table {} rules {}.. mark {:#x} peer {} local {}",
        cfg.tun_name, cfg.mtu, cfg.table, cfg.rule_priority, cfg.mark, cfg.peer, cfg.local
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

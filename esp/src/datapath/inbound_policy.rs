//! Inbound policy: cleartext from a peer on its protected selectors is dropped.
//!
//! With kernel ESP, the inbound XFRM policy drops a packet that matches a protected selector
//! but did not arrive through an SA (RFC 4301 §5.2: "if the packet is not IPsec-protected
//! and the SPD says PROTECT, discard it"). Our datapath delivers decrypted packets through
//! the TUN, so the same rule becomes: a packet from the peer that matches a selector and
//! did *not* come in on our TUN is dropped. Without it an on-path attacker could inject
//! plaintext NFS traffic with the peer's source address.
//!
//! We hold one nftables table of our own, replaced atomically in one `nft -f` transaction
//! (declare, delete, define: works whether or not a stale copy exists) at start and whenever
//! a peer is added or removed, and deleted on shutdown and before start; no other table is
//! ever read or written.
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

use std::io::{self, Write};
use std::process::{Command, Stdio};

use std::net::IpAddr;

use super::{DatapathConfig, PeerConfig, Selector};

/// IKE's own port (RFC 7296 §2): never dropped, the daemon's IKE socket listens there.
const IKE_PORT: u16 = 500;

/// The protocols whose first four transport bytes are ports (as in `ports()` of the
/// datapath): TCP, UDP, SCTP, UDP-Lite.
const PORTED: &str = "{ 6, 17, 132, 136 }";

/// Checks that the names we put in the ruleset cannot break out of it.
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
    if !cfg
        .tun_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tun_name {:?}: unexpected characters", cfg.tun_name),
        ));
    }
    Ok(())
}

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

pub(crate) fn nft_missing(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot enforce the inbound policy (cleartext from the peer on protected \
             selectors must be dropped): {why}; install nftables (the `nft` binary and \
             kernel nf_tables), or set the peer's allow_unprotected_inbound (unsafe: an \
             on-path attacker can inject plaintext)"
        ),
    )
}

/// Installs (or atomically replaces) our table.
pub(crate) fn install(cfg: &DatapathConfig, peers: &[(IpAddr, &PeerConfig)]) -> io::Result<()> {
    validate(cfg)?;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| nft_missing(format!("running nft: {e}")))?;
    let script = ruleset(cfg, peers);
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows up as nft's failure below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(nft_missing(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Deletes our table if it exists (nothing else). Safe when nft is absent.
pub(crate) fn remove(cfg: &DatapathConfig) {
    if validate(cfg).is_err() {
        return;
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &cfg.nft_table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn cfg() -> DatapathConfig {
        DatapathConfig::new(Ipv4Addr::new(10, 0, 0, 1))
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn selectors_become_drop_rules_after_the_exemptions() {
        let mut pc = PeerConfig::new();
        pc.selectors = vec![
            Selector {
                protocol: Some(6),
                local_port: None,
                remote_port: Some(2049),
            },
            Selector {
                protocol: None,
                local_port: Some(111),
                remote_port: None,
            },
        ];
        let r = ruleset(&cfg(), &[(PEER, &pc)]);
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert_eq!(lines[0], "table inet ibm_ipsec {}");
        assert_eq!(lines[1], "delete table inet ibm_ipsec");
        let tun = lines
            .iter()
            .position(|l| *l == "iifname \"ibmipsec0\" accept");
        let first_drop = lines.iter().position(|l| l.ends_with("drop"));
        assert!(tun.unwrap() < first_drop.unwrap());
        assert!(lines.contains(&"ip saddr 10.0.0.2 udp dport { 500, 4500 } accept"));
        assert!(lines.contains(&"ip saddr 10.0.0.2 meta l4proto 6 th sport 2049 counter drop"));
        assert!(lines.contains(
            &"ip saddr 10.0.0.2 meta l4proto { 6, 17, 132, 136 } th dport 111 counter drop"
        ));
        assert_eq!(lines.iter().filter(|l| l.ends_with("drop")).count(), 2);
    }

    #[test]
    fn no_selectors_protect_everything_from_the_peer() {
        let mut c = cfg();
        c.udp_port = None;
        let r = ruleset(&c, &[(PEER, &PeerConfig::new())]);
        assert!(r.contains("\t\tip saddr 10.0.0.2 counter drop\n"));
        assert!(r.contains("udp dport { 500 } accept"));
        assert!(r.contains("meta l4proto 50 accept"));
    }

    #[test]
    fn each_peer_gets_its_own_exemptions_and_drops() {
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        let mut nfs = PeerConfig::new();
        nfs.selectors = vec![Selector {
            protocol: Some(6),
            local_port: None,
            remote_port: Some(2049),
        }];
        let plain = PeerConfig::new();
        let r = ruleset(&cfg(), &[(PEER, &nfs), (other, &plain)]);
        assert!(r.contains("ip saddr 10.0.0.2 meta l4proto 6 th sport 2049 counter drop"));
        assert!(r.contains("ip saddr 10.0.0.3 counter drop"));
        assert!(!r.contains("icmpv6"));
        assert!(r.contains("ip saddr 10.0.0.3 meta l4proto 50 accept"));
        // Each peer's exemptions precede its drops.
        let at = |needle: &str| r.find(needle).unwrap();
        assert!(at("ip saddr 10.0.0.3 udp dport") < at("ip saddr 10.0.0.3 counter drop"));
        // IPv6 peers match on ip6.
        let v6: IpAddr = "fd00::3".parse().unwrap();
        let r6 = ruleset(&cfg(), &[(v6, &nfs)]);
        assert!(r6.contains("ip6 saddr fd00::3 meta l4proto 50 accept"));
        let nd = r6.find("nd-neighbor-advert } accept").unwrap();
        assert!(nd < r6.find("counter drop").unwrap());

        assert!(r6.contains("ip6 saddr fd00::3 meta l4proto 6 th sport 2049 counter drop"));
        // No peer: only the TUN exemption, nothing dropped.
        let empty = ruleset(&cfg(), &[]);
        assert!(!empty.contains("drop") && empty.contains("iifname"));
    }

    #[test]
    fn names_that_could_escape_the_script_are_refused() {
        for bad in ["", "1abc", "a b", "x;flush ruleset", &"a".repeat(33)] {
            let mut c = cfg();
            c.nft_table = bad.into();
            assert!(validate(&c).is_err(), "{bad:?}");
        }
        let mut c = cfg();
        c.tun_name = "tun\"0".into();
        assert!(validate(&c).is_err());
        assert!(validate(&cfg()).is_ok());
    }
}

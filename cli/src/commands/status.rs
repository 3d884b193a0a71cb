//! `ibm-ipsec status`: the daemon, its datapath and identity, and tables of IKE SAs and
//! CHILD_SAs modelled on ONTAP's `security ipsec show-ikesa` and `show-ipsecsa`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::control::{
    ControlClient, DatapathKind, StatusReport, CONTROL_ENV, DEFAULT_CONTROL_PATH,
};

/// Arguments of `ibm-ipsec status`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ibm-ipsec status
  ibm-ipsec status --json | jq '.child_sas[] | {peer, bytes_in, bytes_out}'
  ibm-ipsec status --json | jq '.ike_sas[] | {peer, peer_cert_subject, peer_cert_expiry_unix}'
  IBM_IPSEC_CONTROL=/run/ibm-ipsec/ns1.sock ibm-ipsec status")]
pub struct StatusArgs {
    /// Print the daemon's report as JSON (times as seconds since the Unix epoch).
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long, env = CONTROL_ENV, default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
}

/// Asks the daemon and prints its report.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let report = ControlClient::new(&args.control, Duration::from_secs(10)).status()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            render(
                &report,
                crate::daemon::unix_secs(std::time::SystemTime::now())
            )
        );
    }
    Ok(())
}

/// The human-readable report; `now` (Unix seconds) turns absolute times into "in 42m".
pub fn render(report: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    let d = &report.daemon;
    let _ = writeln!(
        out,
        "Daemon:    pid {}, ibm-ipsec {}, up {}, control {}",
        d.pid,
        d.version,
        span(now.saturating_sub(d.started_unix)),
        d.control
    );
    if !d.listen.is_empty() {
        let _ = writeln!(out, "Listening: {}", d.listen.join(", "));
    }
    let kind = match report.datapath.kind {
        DatapathKind::Kernel => "kernel (XFRM)",
        DatapathKind::Userspace => "userspace (TUN)",
    };
    let _ = writeln!(out, "Datapath:  {kind}: {}", report.datapath.reason);
    match &report.identity {
        Some(id) => {
            let _ = writeln!(
                out,
                "Identity:  {}\n           issued by {}\n           expires {} ({})\n           from {}",
                id.subject,
                id.issuer,
                utc(id.not_after_unix),
                relative(id.not_after_unix, now),
                id.source
            );
        }
        None if report.identity_error.is_some() => {
            let _ = writeln!(out, "Identity:  no certificate yet");
        }
        None if report.identity_service.is_some() => {
            let service = report.identity_service.as_deref().unwrap_or_default();
            let _ = writeln!(out, "Identity:  requesting a certificate from {service}");
        }
        None => {
            let _ = writeln!(out, "Identity:  none configured");
        }
    }
    if let Some(renewal) = report.identity.as_ref().and_then(|i| i.renewal.as_ref()) {
        let _ = writeln!(out, "           {renewal}");
    }
    if let Some(error) = &report.identity_error {
        let _ = writeln!(out, "           last attempt failed: {error}");
    }

    if !report.held_peers.is_empty() {
        let held: Vec<String> = report.held_peers.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "Held:      {} (SAs lost; traffic held until it brings them back, or `up`)",
            held.join(", ")
        );
    }
    let _ = writeln!(out, "\nIKE SAs");
    let rows: Vec<Vec<String>> = report
        .ike_sas
        .iter()
        .map(|sa| {
            vec![
                sa.peer.to_string(),
                sa.local.to_string(),
                sa.state.clone(),
                sa.spi_i.clone(),
                sa.spi_r.clone(),
                sa.algorithms.clone(),
                sa.remote_id.clone(),
                sa.rekey_unix.map_or("-".into(), |t| relative(t, now)),
                sa.peer_cert_expiry_unix
                    .map_or("-".into(), |t| relative(t, now)),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "Peer",
            "Local",
            "State",
            "Initiator SPI",
            "Responder SPI",
            "Algorithms",
            "Remote ID",
            "Rekey",
            "Peer cert expires",
        ],
        &rows,
    );

    for sa in report.ike_sas.iter().filter(|sa| sa.behind_nat) {
        let keepalive = sa
            .nat_keepalive_secs
            .map_or("no NAT-T keepalives".into(), |s| {
                format!("NAT-T keepalives after {s}s without other traffic")
            });
        let _ = writeln!(
            out,
            "  {}: this host is behind a NAT ({keepalive})",
            sa.peer
        );
    }
    for sa in &report.ike_sas {
        let Some(expiry) = sa.peer_cert_expiry_unix else {
            continue;
        };
        let mut line = format!("  {} authenticated with", sa.peer);
        match &sa.peer_cert_subject {
            Some(subject) => {
                let _ = write!(line, " \"{subject}\"");
            }
            None => line.push_str(" a certificate"),
        }
        if let Some(serial) = sa.peer_cert_serial.as_deref().filter(|s| !s.is_empty()) {
            let _ = write!(line, " (serial {serial})");
        }
        if let Some(issuer) = sa.peer_cert_issuer.as_deref().filter(|s| !s.is_empty()) {
            let _ = write!(line, ", issued by \"{issuer}\"");
        }
        let _ = writeln!(
            out,
            "{line}, expires {} ({})",
            utc(expiry),
            relative(expiry, now)
        );
    }

    let _ = writeln!(out, "\nCHILD SAs");
    let rows: Vec<Vec<String>> = report
        .child_sas
        .iter()
        .map(|sa| {
            vec![
                sa.peer.to_string(),
                sa.spi_in.clone(),
                sa.spi_out.clone(),
                sa.mode.clone(),
                sa.algorithm.clone(),
                format!("{}/{}", sa.bytes_in, sa.bytes_out),
                format!("{}/{}", sa.packets_in, sa.packets_out),
                sa.rekey_unix.map_or("-".into(), |t| relative(t, now)),
                sa.selectors.clone(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "Peer",
            "Inbound SPI",
            "Outbound SPI",
            "Mode",
            "Algorithm",
            "Bytes in/out",
            "Packets in/out",
            "Rekey",
            "Selectors",
        ],
        &rows,
    );
    out
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        text.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn utc(unix: u64) -> String {
    pki::format_time(std::time::UNIX_EPOCH + Duration::from_secs(unix))
}

/// `in 42m 10s` or `3m ago`.
fn relative(t: u64, now: u64) -> String {
    if t >= now {
        format!("in {}", span(t - now))
    } else {
        format!("{} ago", span(now - t))
    }
}

fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{
        ChildSaStatus, DaemonInfo, DatapathInfo, DatapathRequest, IdentityInfo, IkeSaStatus,
    };

    fn report() -> StatusReport {
        StatusReport {
            daemon: DaemonInfo {
                pid: 77,
                version: "0.1.0".into(),
                started_unix: 1000,
                control: "/run/ibm-ipsec/control.sock".into(),
                listen: vec![],
            },
            datapath: DatapathInfo {
                kind: DatapathKind::Userspace,
                requested: DatapathRequest::Auto,
                reason: "kernel datapath unusable: kernel has no ESP support".into(),
            },
            identity: None,
            identity_error: None,
            identity_service: None,
            ike_sas: vec![],
            child_sas: vec![],
            held_peers: vec![],
        }
    }

    #[test]
    fn empty_daemon_renders_none_rows() {
        let text = render(&report(), 1000 + 3725);
        assert!(text.contains("pid 77, ibm-ipsec 0.1.0, up 1h 2m"), "{text}");
        assert!(
            text.contains("Datapath:  userspace (TUN): kernel datapath unusable"),
            "{text}"
        );
        assert!(text.contains("Identity:  none configured"), "{text}");
        assert!(!text.contains("Held:"), "{text}");
        let mut held = report();
        held.held_peers = vec!["10.240.0.5".parse().unwrap()];
        let text = render(&held, 1000);
        assert!(text.contains("Held:      10.240.0.5 (SAs lost"), "{text}");
        assert_eq!(text.matches("(none)").count(), 2, "{text}");
        let mut pending = report();
        pending.identity_service = Some("http://169.254.169.254".into());
        let text = render(&pending, 1000);
        assert!(
            text.contains("Identity:  requesting a certificate from http://169.254.169.254"),
            "{text}"
        );
    }

    #[test]
    fn rows_are_aligned_and_times_relative() {
        let mut r = report();
        r.identity = Some(IdentityInfo {
            subject: "C=US, CN=0717_abc".into(),
            issuer: "CN=int".into(),
            not_after_unix: 4600,
            source: "host.pem".into(),
            renewal: Some("renews at 1970-01-01 01:00:00 UTC".into()),
            renewal_unix: Some(3600),
        });
        r.identity_error = Some("token failed".into());
        r.ike_sas.push(IkeSaStatus {
            peer: "10.240.0.5".parse().unwrap(),
            local: "10.240.0.4".parse().unwrap(),
            state: "established".into(),
            spi_i: "0123456789abcdef".into(),
            spi_r: "fedcba9876543210".into(),
            algorithms: "aes256-sha384-ecp384".into(),
            remote_id: "C=US, CN=share".into(),
            rekey_unix: Some(4000),
            peer_cert_expiry_unix: None,
            peer_cert_subject: None,
            peer_cert_issuer: None,
            peer_cert_serial: None,
            behind_nat: false,
            nat_keepalive_secs: None,
        });
        let mut with_cert = r.ike_sas[0].clone();
        with_cert.peer = "10.240.0.6".parse().unwrap();
        with_cert.peer_cert_expiry_unix = Some(1000 + 2520);
        with_cert.peer_cert_subject = Some("C=US, O=IBM, CN=share".into());
        with_cert.peer_cert_issuer = Some("C=US, O=IBM, CN=intermediate".into());
        with_cert.peer_cert_serial = Some("0a1b".into());
        with_cert.behind_nat = true;
        with_cert.nat_keepalive_secs = Some(20);
        r.ike_sas.push(with_cert);
        r.child_sas.push(ChildSaStatus {
            peer: "10.240.0.5".parse().unwrap(),
            spi_in: "c1a2b3c4".into(),
            spi_out: "d1e2f3a4".into(),
            mode: "transport".into(),
            algorithm: "aes256gcm16".into(),
            selectors: "10.240.0.4/32 === 10.240.0.5/32".into(),
            bytes_in: 10,
            bytes_out: 20,
            packets_in: 1,
            packets_out: 2,
            rekey_unix: Some(900),
        });
        let text = render(&r, 1000);
        assert!(text.contains("expires 1970-01-01"), "{text}");
        assert!(text.contains("(in 1h 0m)"), "{text}");
        assert!(text.contains("\n           renews at 1970"), "{text}");
        assert!(text.contains("last attempt failed: token failed"), "{text}");
        let header = text.lines().find(|l| l.contains("Initiator SPI")).unwrap();
        let row = text.lines().find(|l| l.contains("established")).unwrap();
        assert_eq!(header.find("State"), row.find("established"), "{text}");
        assert!(row.contains("in 50m 0s"), "{row}");
        assert!(row.trim_end().ends_with('-'), "{row}");
        let row = text
            .lines()
            .find(|l| l.contains("established") && l.contains("10.240.0.6"))
            .unwrap();
        assert!(row.trim_end().ends_with("in 42m 0s"), "{row}");
        assert!(
            text.contains(
                "\n  10.240.0.6 authenticated with \"C=US, O=IBM, CN=share\" (serial 0a1b), \
                 issued by \"C=US, O=IBM, CN=intermediate\", expires 1970-01-01T00:58:40Z \
                 (in 42m 0s)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("10.240.0.5 authenticated"), "PSK: {text}");
        assert!(
            text.contains(
                "\n  10.240.0.6: this host is behind a NAT (NAT-T keepalives after 20s without \
                 other traffic)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("10.240.0.5: this host"), "{text}");
        let child = text.lines().find(|l| l.contains("c1a2b3c4")).unwrap();
        assert!(
            child.contains("10/20") && child.contains("1m 40s ago"),
            "{child}"
        );
    }

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(61), "1m 1s");
        assert_eq!(span(7322), "2h 2m");
        assert_eq!(span(90_000), "1d 1h");
    }
}

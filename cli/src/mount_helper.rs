//! `mount.ibmshare`'s argument and option handling, as pure functions.
//!
//! mount(8) runs a helper as `mount.ibmshare SPEC DIR [-sfnv] [-N NS] [-o OPTIONS]` (see
//! mount(8), "External helpers"). The IBM mount helper's conventions (`ibm-mount-helper.md`)
//! are kept: options containing `secure` are ours and are stripped, NFS gets
//! `sec=sys,<the rest>`, an ip+path that is already mounted skips the IPsec work, and the exit
//! codes users script against are unchanged ([`ExitStatus`]).
//!
//! ```
//! use ibm_ipsec::mount_helper::{parse_args, nfs_command};
//! let plan = parse_args(["10.240.0.5:/share", "/mnt", "-o", "secure=true,vers=4.1", "-v"])?;
//! assert_eq!(plan.secure_peer, Some("10.240.0.5".parse().unwrap()));
//! assert_eq!(
//!     nfs_command(&plan),
//!     ["10.240.0.5:/share", "/mnt", "-o", "sec=sys,vers=4.1", "-v"]
//! );
//! # Ok::<(), ibm_ipsec::mount_helper::UsageError>(())
//! ```

use std::net::IpAddr;

use crate::mount::utab::unmangle;

/// What mount.ibmshare will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// The file server as written (an IP address, or a host name when not secure).
    pub server: String,
    /// The export path on the server.
    pub path: String,
    /// The local mount point.
    pub dir: String,
    /// The peer to protect with IPsec (`secure=true`), else `None`.
    pub secure_peer: Option<IpAddr>,
    /// Options for mount.nfs4, `sec=sys` first unless a `sec=` was given.
    pub nfs_options: Vec<String>,
    /// mount(8)'s flags, passed on to mount.nfs4.
    pub flags: Flags,
}

/// The flags mount(8) passes to helpers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-s`: tolerate unknown options.
    pub sloppy: bool,
    /// `-f`: do everything except the mount system call.
    pub fake: bool,
    /// `-n`: do not write /etc/mtab.
    pub no_mtab: bool,
    /// `-v`: verbose.
    pub verbose: bool,
}

/// The command line could not be understood; mount.ibmshare exits with
/// [`ExitStatus::Generic`] and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// The IBM mount helper's exit codes, kept for the scripts that check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 1: the metadata service did not answer.
    MetadataUnreachable,
    /// 2: no identity token.
    Token,
    /// 3: no certificate.
    Certificate,
    /// 4: IPsec could not be set up.
    IpsecSetup,
    /// 5: installation problem (missing mount.nfs4, …).
    Install,
    /// 6: anything else, including usage errors.
    Generic,
    /// 7: not run as root.
    NotRoot,
    /// 100 + the NFS mount's own exit code.
    NfsMount(i32),
}

impl ExitStatus {
    /// The process exit code (NFS codes above 155 saturate at 255).
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::MetadataUnreachable => 1,
            ExitStatus::Token => 2,
            ExitStatus::Certificate => 3,
            ExitStatus::IpsecSetup => 4,
            ExitStatus::Install => 5,
            ExitStatus::Generic => 6,
            ExitStatus::NotRoot => 7,
            ExitStatus::NfsMount(n) => u8::try_from(100 + n.clamp(0, 155)).unwrap_or(u8::MAX),
        }
    }

    /// The status for a metadata client error (its own mapping of failures to the codes).
    pub fn from_metadata(error: &metadata::Error) -> ExitStatus {
        match error.exit_code() {
            1 => ExitStatus::MetadataUnreachable,
            2 => ExitStatus::Token,
            3 => ExitStatus::Certificate,
            _ => ExitStatus::Generic,
        }
    }
}

/// Parses mount.ibmshare's arguments (without argv\[0\]).
pub fn parse_args<I, S>(args: I) -> Result<MountPlan, UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut positional = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            positional.push(arg.clone());
            continue;
        };
        for (at, c) in cluster.char_indices() {
            match c {
                's' => flags.sloppy = true,
                'f' => flags.fake = true,
                'n' => flags.no_mtab = true,
                'v' => flags.verbose = true,
                // `-o OPTS`, `-oOPTS`; `-N NS` and `-t TYPE` take a value we do not need.
                'o' | 'N' | 't' => {
                    let rest = &cluster[at + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .ok_or_else(|| usage(format!("-{c} needs a value")))?
                            .clone();
                        i += 1;
                        v
                    } else {
                        rest.to_owned()
                    };
                    if c == 'o' {
                        options.extend(
                            value
                                .split(',')
                                .filter(|o| !o.is_empty())
                                .map(str::to_owned),
                        );
                    } else if c == 't' && value != "ibmshare" {
                        return Err(usage(format!(
                            "mount.ibmshare handles type ibmshare, not {value}"
                        )));
                    }
                    break;
                }
                other => return Err(usage(format!("unknown flag -{other}"))),
            }
        }
    }
    let [spec, dir] = <[String; 2]>::try_from(positional).map_err(|p| {
        usage(format!(
            "expected SERVER:/PATH and a mount point, got {} argument(s); usage: \
             mount -t ibmshare -o secure=true[,NFS options] IP:/path DIR",
            p.len()
        ))
    })?;
    let (server, path) = split_spec(&spec)?;
    let (secure, nfs_options) = split_options(&options)?;
    let secure_peer = if secure {
        let host = server.trim_start_matches('[').trim_end_matches(']');
        Some(host.parse::<IpAddr>().map_err(|_| {
            usage(format!(
                "secure=true needs the file server's IP address, not {server:?}"
            ))
        })?)
    } else {
        None
    };
    if let Some(peer) = secure_peer {
        check_nfs_addresses(peer, &nfs_options)?;
    }
    Ok(MountPlan {
        server,
        path,
        dir,
        secure_peer,
        nfs_options,
        flags,
    })
}

/// `IP:/path` or `[IPv6]:/path` → (server, path).
/// With `secure=true` only traffic to the peer is protected: options that send the NFS or
/// MOUNT traffic to another address (`addr=`, `mountaddr=`) would leave it in the clear
/// while the mount looks secured, so they must name the peer itself.
fn check_nfs_addresses(peer: IpAddr, nfs_options: &[String]) -> Result<(), UsageError> {
    for option in nfs_options {
        let Some((key, value)) = option.split_once('=') else {
            continue;
        };
        if !matches!(key, "addr" | "mountaddr") {
            continue;
        }
        let host = value.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().ok() != Some(peer) {
            return Err(usage(format!(
                "{option} sends NFS traffic to another address than {peer}, which secure=true \
                 protects; drop it or mount that server instead"
            )));
        }
    }
    Ok(())
}

fn split_spec(spec: &str) -> Result<(String, String), UsageError> {
    let split = if spec.starts_with('[') {
        spec.find("]:").map(|i| (&spec[..=i], &spec[i + 2..]))
    } else {
        spec.split_once(':')
    };
    match split {
        Some((server, path)) if !server.is_empty() && path.starts_with('/') => {
            Ok((server.to_owned(), path.to_owned()))
        }
        _ => Err(usage(format!(
            "{spec:?} is not SERVER:/PATH (for example 10.240.0.5:/share)"
        ))),
    }
}

/// Takes our `secure` options out and puts `sec=sys` first unless a `sec=` was given.
/// `secure` and `secure=true` turn IPsec on, `secure=false` leaves it off; anything else
/// containing `secure` is refused rather than silently passed to NFS or dropped.
fn split_options(options: &[String]) -> Result<(bool, Vec<String>), UsageError> {
    let mut secure = false;
    let mut rest = Vec::new();
    for option in options {
        if option.contains("secure") {
            secure = match option.as_str() {
                "secure" | "secure=true" => true,
                "secure=false" => false,
                other => {
                    return Err(usage(format!(
                        "unknown option {other:?}: use secure=true or secure=false"
                    )))
                }
            };
        } else {
            rest.push(option.clone());
        }
    }
    if !rest.iter().any(|o| o.starts_with("sec=")) {
        rest.insert(0, "sec=sys".to_owned());
    }
    Ok((secure, rest))
}

/// mount.nfs4's arguments (without the program name).
pub fn nfs_command(plan: &MountPlan) -> Vec<String> {
    let mut cmd = vec![
        format!("{}:{}", plan.server, plan.path),
        plan.dir.clone(),
        "-o".to_owned(),
        plan.nfs_options.join(","),
    ];
    for (on, flag) in [
        (plan.flags.sloppy, "-s"),
        (plan.flags.fake, "-f"),
        (plan.flags.no_mtab, "-n"),
        (plan.flags.verbose, "-v"),
    ] {
        if on {
            cmd.push(flag.to_owned());
        }
    }
    cmd
}

/// One NFS mount from /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsMount {
    /// The server as written in the mount source.
    pub server: String,
    /// The export path, without a trailing slash.
    pub path: String,
    /// The mount point.
    pub dir: String,
}

/// The NFS mounts in the text of /proc/self/mounts (octal escapes such as `\040` decoded).
pub fn nfs_mounts(proc_mounts: &str) -> Vec<NfsMount> {
    proc_mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (source, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            if !matches!(fstype, "nfs" | "nfs4") {
                return None;
            }
            let (server, path) = split_spec(&unmangle(source)).ok()?;
            Some(NfsMount {
                server,
                path: normalise_path(&path),
                dir: unmangle(dir),
            })
        })
        .collect()
}

/// Whether `server:path` is already mounted (then mount.ibmshare leaves IPsec alone).
pub fn is_mounted(mounts: &[NfsMount], server: &str, path: &str) -> bool {
    let path = normalise_path(path);
    mounts
        .iter()
        .any(|m| same_server(&m.server, server) && m.path == path)
}

/// How many shares of `peer` are mounted; the SA stays while any is.
pub fn mounts_of(mounts: &[NfsMount], peer: IpAddr) -> usize {
    mounts
        .iter()
        .filter(|m| {
            m.server
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == peer)
        })
        .count()
}

fn same_server(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim_start_matches('[').trim_end_matches(']').to_owned();
    match (strip(a).parse::<IpAddr>(), strip(b).parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> MountPlan {
        parse_args(args).unwrap()
    }

    #[test]
    fn secure_mounts_refuse_nfs_addresses_other_than_the_peer() {
        for o in ["addr=10.0.0.9", "mountaddr=10.0.0.9", "addr=server.example"] {
            let opts = format!("secure=true,{o}");
            let err = parse_args(["10.240.0.5:/share", "/mnt", "-o", &opts]).unwrap_err();
            assert!(err.0.contains(o), "{o}: {err}");
        }
        // The peer itself, or without secure=true, is the user's business.
        let p = plan(&["10.240.0.5:/s", "/mnt", "-o", "secure=true,addr=10.240.0.5"]);
        assert!(p.nfs_options.contains(&"addr=10.240.0.5".to_owned()));
        let p = plan(&[
            "[fd00::5]:/s",
            "/mnt",
            "-o",
            "secure=true,mountaddr=[fd00::5]",
        ]);
        assert_eq!(p.secure_peer, Some("fd00::5".parse().unwrap()));
        plan(&["10.240.0.5:/s", "/mnt", "-o", "addr=10.0.0.9"]);
    }

    fn err(args: &[&str]) -> String {
        parse_args(args).unwrap_err().0
    }

    #[test]
    fn the_documented_invocation() {
        // What mount(8) runs for `mount -t ibmshare -o secure=true 10.240.0.5:/share /mnt -v`.
        let p = plan(&["10.240.0.5:/share", "/mnt", "-v", "-o", "secure=true"]);
        assert_eq!(p.server, "10.240.0.5");
        assert_eq!(p.path, "/share");
        assert_eq!(p.dir, "/mnt");
        assert_eq!(p.secure_peer, Some("10.240.0.5".parse().unwrap()));
        assert_eq!(p.nfs_options, ["sec=sys"]);
        assert!(p.flags.verbose && !p.flags.fake && !p.flags.sloppy && !p.flags.no_mtab);
        assert_eq!(
            nfs_command(&p),
            ["10.240.0.5:/share", "/mnt", "-o", "sec=sys", "-v"]
        );
    }

    #[test]
    fn secure_options_are_stripped_wherever_they_are() {
        let p = plan(&[
            "10.0.0.1:/a/b",
            "/m",
            "-o",
            "vers=4.1,secure=true,rsize=65536",
        ]);
        assert_eq!(p.nfs_options, ["sec=sys", "vers=4.1", "rsize=65536"]);
        assert!(p.secure_peer.is_some());
        let p = plan(&["10.0.0.1:/a", "/m", "-o", "secure"]);
        assert!(p.secure_peer.is_some());
        let p = plan(&["10.0.0.1:/a", "/m", "-o", "secure=false,hard"]);
        assert_eq!(p.secure_peer, None);
        assert_eq!(p.nfs_options, ["sec=sys", "hard"]);
        let p = plan(&["10.0.0.1:/a", "/m"]);
        assert_eq!(p.secure_peer, None);
        assert_eq!(p.nfs_options, ["sec=sys"]);
    }

    #[test]
    fn last_secure_option_wins_and_odd_values_are_refused() {
        let p = plan(&[
            "10.0.0.1:/a",
            "/m",
            "-o",
            "secure=false",
            "-o",
            "secure=true",
        ]);
        assert!(p.secure_peer.is_some());
        assert!(err(&["10.0.0.1:/a", "/m", "-o", "secure=yes"]).contains("secure=true"));
        assert!(err(&["10.0.0.1:/a", "/m", "-o", "insecure"]).contains("insecure"));
    }

    #[test]
    fn an_explicit_sec_is_kept_and_empty_options_dropped() {
        let p = plan(&["10.0.0.1:/a", "/m", "-o", ",sec=krb5p,,vers=4.2,"]);
        assert_eq!(p.nfs_options, ["sec=krb5p", "vers=4.2"]);
    }

    #[test]
    fn flag_clusters_attached_values_and_order() {
        let p = plan(&["-sfnv", "-osecure=true,vers=4.1", "10.0.0.1:/a", "/m"]);
        assert_eq!(
            p.flags,
            Flags {
                sloppy: true,
                fake: true,
                no_mtab: true,
                verbose: true
            }
        );
        assert_eq!(p.nfs_options, ["sec=sys", "vers=4.1"]);
        assert_eq!(
            nfs_command(&p),
            [
                "10.0.0.1:/a",
                "/m",
                "-o",
                "sec=sys,vers=4.1",
                "-s",
                "-f",
                "-n",
                "-v"
            ]
        );
        // `-nvo OPTS`: -o ends the cluster and takes the next argument.
        let p = plan(&["10.0.0.1:/a", "/m", "-nvo", "secure=true"]);
        assert!(p.flags.no_mtab && p.flags.verbose && p.secure_peer.is_some());
        // -N NS and -t ibmshare are accepted and not passed on.
        let p = plan(&[
            "-N",
            "/proc/1/ns/mnt",
            "-t",
            "ibmshare",
            "10.0.0.1:/a",
            "/m",
        ]);
        assert_eq!(nfs_command(&p), ["10.0.0.1:/a", "/m", "-o", "sec=sys"]);
        let p = plan(&["--", "10.0.0.1:/a", "-weird-dir"]);
        assert_eq!(p.dir, "-weird-dir");
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(err(&[]).contains("got 0 argument"));
        assert!(err(&["10.0.0.1:/a"]).contains("got 1 argument"));
        assert!(err(&["10.0.0.1:/a", "/m", "/x"]).contains("got 3 argument"));
        assert!(err(&["10.0.0.1:/a", "/m", "-o"]).contains("-o needs a value"));
        assert!(err(&["10.0.0.1:/a", "/m", "-x"]).contains("unknown flag -x"));
        assert!(err(&["-t", "nfs", "10.0.0.1:/a", "/m"]).contains("not nfs"));
        for spec in [
            "10.0.0.1",
            "10.0.0.1:share",
            ":/share",
            "[fd00::1/share",
            "",
        ] {
            assert!(err(&[spec, "/m"]).contains("SERVER:/PATH"), "{spec}");
        }
    }

    #[test]
    fn secure_needs_an_ip_but_plain_nfs_takes_names() {
        assert!(err(&["files.example:/a", "/m", "-o", "secure=true"]).contains("IP address"));
        let p = plan(&["files.example:/a", "/m"]);
        assert_eq!(p.server, "files.example");
    }

    #[test]
    fn ipv6_servers_are_bracketed() {
        let p = plan(&["[fd00::5]:/share", "/m", "-o", "secure=true"]);
        assert_eq!(p.server, "[fd00::5]");
        assert_eq!(p.secure_peer, Some("fd00::5".parse().unwrap()));
        assert_eq!(nfs_command(&p)[0], "[fd00::5]:/share");
    }

    #[test]
    fn exit_codes_match_the_ibm_helper() {
        let codes: Vec<u8> = [
            ExitStatus::MetadataUnreachable,
            ExitStatus::Token,
            ExitStatus::Certificate,
            ExitStatus::IpsecSetup,
            ExitStatus::Install,
            ExitStatus::Generic,
            ExitStatus::NotRoot,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(ExitStatus::NfsMount(0).code(), 100);
        assert_eq!(ExitStatus::NfsMount(32).code(), 132);
        assert_eq!(ExitStatus::NfsMount(999).code(), 255);
        assert_eq!(ExitStatus::NfsMount(-1).code(), 100);
    }

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid 0 0
10.240.0.5:/share/ /mnt/a nfs4 rw,vers=4.1,sec=sys 0 0
10.240.0.5:/other /mnt/with\\040space nfs4 rw 0 0
10.240.0.6:/share /mnt/c nfs rw 0 0
[fd00::5]:/v6 /mnt/d nfs4 rw 0 0
10.240.0.7:/x /mnt/e fuse.sshfs rw 0 0
";

    #[test]
    fn proc_mounts_are_read_with_escapes_and_trailing_slashes() {
        let mounts = nfs_mounts(MOUNTS);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].path, "/share");
        assert_eq!(mounts[1].dir, "/mnt/with space");
        assert!(is_mounted(&mounts, "10.240.0.5", "/share"));
        assert!(is_mounted(&mounts, "10.240.0.5", "/share/"));
        assert!(!is_mounted(&mounts, "10.240.0.5", "/shar"));
        assert!(!is_mounted(&mounts, "10.240.0.7", "/x"), "not NFS");
        assert!(is_mounted(&mounts, "[fd00:0::5]", "/v6"));
        assert_eq!(mounts_of(&mounts, "10.240.0.5".parse().unwrap()), 2);
        assert_eq!(mounts_of(&mounts, "fd00::5".parse().unwrap()), 1);
        assert_eq!(mounts_of(&mounts, "10.240.0.9".parse().unwrap()), 0);
        assert!(nfs_mounts("garbage\n\n a b\n").is_empty());
        assert_eq!(unmangle("a\\134b\\0"), "a\\b\\0");
    }
}

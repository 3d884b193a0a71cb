//! `ibm-ipsec down`: delete the SAs with a peer, or with every peer.
//!
//! A share that `mount -t ibmshare -o secure=true` mounted from the peer (utab records
//! `helper=ibmshare` for it) would lose its traffic and hang: `down` refuses while one is
//! mounted, naming it, unless `--force`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::control::{
    unexpected, ControlClient, DownTarget, Request, Response, CONTROL_ENV, DEFAULT_CONTROL_PATH,
};
use crate::mount::utab::{self, SecureMount};

/// Where the kernel lists this mount namespace's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Arguments of `ibm-ipsec down`.
#[derive(Debug, Args)]
#[command(
    after_help = "Shares mounted with `mount -t ibmshare -o secure=true` from the peer \
would hang without their SAs, so `down` refuses while one is mounted: unmount it first \
(`umount DIR` brings the SAs down by itself once the server's last share is gone), or use \
--force.

Examples:
  ibm-ipsec down 10.240.0.5
  ibm-ipsec down --all
  ibm-ipsec down 10.240.0.5 --force     # even with /mnt/share still mounted"
)]
pub struct DownArgs {
    /// The peer whose IKE SA and CHILD_SAs are deleted.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub peer: Option<IpAddr>,
    /// Delete the SAs with every peer.
    #[arg(long)]
    pub all: bool,
    /// Delete even while shares of the peer mounted with `mount -t ibmshare` are in use
    /// (their NFS traffic stops and the mounts hang until `ibm-ipsec up`).
    #[arg(long)]
    pub force: bool,
    /// Control socket path.
    #[arg(long, env = CONTROL_ENV, default_value = DEFAULT_CONTROL_PATH)]
    pub control: PathBuf,
}

/// Asks the daemon and prints which peers were brought down.
pub fn run(args: DownArgs) -> anyhow::Result<()> {
    let target = match args.peer {
        Some(peer) => DownTarget::Peer(peer),
        None => DownTarget::All,
    };
    if !args.force {
        check_mounts(target, &utab::utab_path(), Path::new(MOUNTINFO))?;
    }
    let client = ControlClient::new(&args.control, Duration::from_secs(30));
    match client.request(&Request::Down { target })? {
        Response::Down { deleted } if deleted.is_empty() => println!("no SAs to delete"),
        Response::Down { deleted } => {
            for peer in deleted {
                println!("{peer}: SAs deleted");
            }
        }
        other => return Err(unexpected(&other).into()),
    }
    Ok(())
}

/// Refuses (with the one-line reason) when a secure share that `target` would cut is still
/// mounted, or when that cannot be known.
fn check_mounts(target: DownTarget, utab: &Path, mountinfo: &Path) -> anyhow::Result<()> {
    let mounts = utab::secure_mounts_on_host(utab, mountinfo).map_err(|e| {
        anyhow::anyhow!(
            "cannot check for shares mounted with IPsec ({} / {}: {e}); use --force to skip \
             the check",
            utab.display(),
            mountinfo.display()
        )
    })?;
    match refusal(target, &mounts) {
        Some(message) => Err(anyhow::anyhow!(message)),
        None => Ok(()),
    }
}

/// Why `down` must not run while `mounts` are mounted, or `None` when none is affected.
fn refusal(target: DownTarget, mounts: &[SecureMount]) -> Option<String> {
    let hit: Vec<&SecureMount> = mounts
        .iter()
        .filter(|m| match target {
            DownTarget::Peer(peer) => m.server == peer,
            DownTarget::All => true,
        })
        .collect();
    if hit.is_empty() {
        return None;
    }
    let shares: Vec<String> = hit
        .iter()
        .map(|m| format!("{} on {}", m.source, m.target))
        .collect();
    let dirs: Vec<&str> = hit.iter().map(|m| m.target.as_str()).collect();
    let whom = match target {
        DownTarget::Peer(peer) => peer.to_string(),
        DownTarget::All => "the peers".into(),
    };
    Some(format!(
        "shares of {whom} are mounted with IPsec ({}) and would hang without their SAs; \
         umount {} first, or use --force",
        shares.join(", "),
        dirs.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw - ext4 /dev/vda1 rw
85 22 0:52 / /mnt/share rw - nfs4 10.240.0.5:/share rw
86 22 0:53 / /mnt/two rw - nfs4 10.240.0.5:/two rw
87 22 0:54 / /mnt/plain rw - nfs4 10.240.0.6:/x rw
";

    const UTAB: &str = "\
ID=85 SRC=10.240.0.5:/share TARGET=/mnt/share ROOT=/ OPTS=helper=ibmshare
ID=86 SRC=10.240.0.5:/two TARGET=/mnt/two ROOT=/ OPTS=helper=ibmshare
";

    fn files(utab: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (u, m) = (dir.path().join("utab"), dir.path().join("mountinfo"));
        std::fs::write(&u, utab).unwrap();
        std::fs::write(&m, MOUNTINFO).unwrap();
        (dir, u, m)
    }

    #[test]
    fn down_is_refused_while_a_secure_share_of_the_peer_is_mounted() {
        let (_dir, utab, mountinfo) = files(UTAB);
        let peer: IpAddr = "10.240.0.5".parse().unwrap();
        let err = check_mounts(DownTarget::Peer(peer), &utab, &mountinfo)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "shares of 10.240.0.5 are mounted with IPsec (10.240.0.5:/share on /mnt/share, \
             10.240.0.5:/two on /mnt/two) and would hang without their SAs; umount \
             /mnt/share /mnt/two first, or use --force"
        );
        assert!(!err.contains('\n'));
        let err = check_mounts(DownTarget::All, &utab, &mountinfo).unwrap_err();
        assert!(err.to_string().starts_with("shares of the peers"), "{err}");
        // Another server's plain NFS mount, or a peer without mounts, is no reason.
        let other: IpAddr = "10.240.0.6".parse().unwrap();
        check_mounts(DownTarget::Peer(other), &utab, &mountinfo).unwrap();
    }

    #[test]
    fn unmounted_shares_and_missing_utab_do_not_block() {
        // umount -i left the lines behind, but the mounts are gone.
        let stale = UTAB.replace("ID=85", "ID=185").replace("ID=86", "ID=186");
        let (dir, utab, mountinfo) = files(&stale);
        check_mounts(DownTarget::All, &utab, &mountinfo).unwrap();
        check_mounts(DownTarget::All, &dir.path().join("absent"), &mountinfo).unwrap();
        let err = check_mounts(DownTarget::All, &utab, &dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--force"), "{err}");
    }

    #[test]
    fn force_is_a_flag_of_down() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            down: DownArgs,
        }
        let cli = Cli::try_parse_from(["down", "10.240.0.5", "--force"]).unwrap();
        assert!(cli.down.force);
        assert!(
            Cli::try_parse_from(["down", "--all", "--force"])
                .unwrap()
                .down
                .force
        );
    }
}

//! `ibm-ipsec down`: delete the SAs with a peer, or with every peer.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::control::{
    unexpected, ControlClient, DownTarget, Request, Response, CONTROL_ENV, DEFAULT_CONTROL_PATH,
};

/// Arguments of `ibm-ipsec down`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ibm-ipsec down 10.240.0.5
  ibm-ipsec down --all")]
pub struct DownArgs {
    /// The peer whose IKE SA and CHILD_SAs are deleted.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub peer: Option<IpAddr>,
    /// Delete the SAs with every peer.
    #[arg(long)]
    pub all: bool,
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

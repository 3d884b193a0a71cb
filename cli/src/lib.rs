//! ibm-ipsec as a library: what the `ibm-ipsec` and `mount.ibmshare` binaries are built from,
//! and the API other mount helpers call to secure traffic to a file server.
//!
//! - [`control`]: the daemon's control socket protocol and its client.
//! - [`daemon`]: the per-host daemon (control socket, IKE endpoint, datapath, host identity).
//! - [`mount`]: `mount.ibmshare`'s flow (lock, already-mounted check, IPsec, mount.nfs).
//! - [`mount_helper`]: `mount.ibmshare`'s argument and option handling.
//! - [`secure()`]: protect traffic with a peer through the daemon (what `up` and mount
//!   helpers call).
#![warn(missing_docs, unreachable_pub)]

pub mod commands;
pub mod control;
pub mod daemon;
mod error;
pub mod mount;
pub mod mount_helper;
pub mod secure;

pub use error::Error;
pub use secure::{secure, DaemonLaunch, SecureConfig, Session};

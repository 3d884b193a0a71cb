//! ibm-ipsec as a library: what the `ibm-ipsec` and `mount.ibmshare` binaries are built from,
//! and the API other mount helpers call to secure traffic to a file server.
//!
//! - [`control`]: the daemon's control socket protocol and its client.
//! - [`daemon`]: the per-host daemon (control socket, datapath choice, host identity).
//! - [`mount`]: `mount.ibmshare`'s flow (lock, already-mounted check, IPsec, mount.nfs).
//! - [`mount_helper`]: `mount.ibmshare`'s argument and option handling.
#![warn(missing_docs, unreachable_pub)]

pub mod commands;
pub mod control;
pub mod daemon;
mod error;
pub mod mount;
pub mod mount_helper;

pub use error::Error;

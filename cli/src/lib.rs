//! ibm-ipsec as a library: what the `ibm-ipsec` and `mount.ibmshare` binaries are built from,
//! and the API other mount helpers call to secure traffic to a file server.
#![warn(missing_docs, unreachable_pub)]

pub mod commands;

//! The kernel datapath: IPsec SAs and policies over netlink XFRM (`NETLINK_XFRM`), without
//! shelling out to `ip`.
//!
//! - [`Kernel`] is what the daemon drives; [`XfrmKernel`] implements it on a netlink socket in
//!   the current network namespace. SAs ([`SaSpec`]) carry `rfc4106(gcm(aes))` or `cbc(aes)` +
//!   `hmac(sha256)`, replay window/ESN, lifetimes, NAT-T encapsulation and marks; policies
//!   ([`PolicySpec`]) are transport or tunnel mode with templates.
//! - Ownership: everything we install carries a reqid in [`ownership::REQIDS`]; nothing else
//!   is ever modified or deleted.
//! - [`child`] installs, rekeys and removes whole CHILD_SAs (SA pair + policies) from
//!   neutral data; this is the layer the daemon's kernel backend uses.
//! - [`socket::NetlinkSocket`] is the crate's netlink socket for any protocol (requests,
//!   dumps, and batches in one `sendmsg` with per-message ACKs); the userspace ESP datapath
//!   uses it for rtnetlink and nfnetlink. [`socket::XfrmSocket`] wraps it for XFRM.
//! - [`probe::probe`] says whether this process can install ESP SAs here, and why not.
//! - [`monitor`] decodes EXPIRE/ACQUIRE notifications; [`socket_policy`] exempts IKE sockets
//!   from policies and enables ESP-in-UDP on the NAT-T socket.
//!
//! The wire structs are encoded byte for byte as iproute2 does (tests compare against bytes
//! captured from `ip xfrm` by `fixtures/capture.sh`). Keys are zeroized and never printed.
#![warn(missing_docs, unreachable_pub)]

pub mod algorithm;
pub mod child;
pub mod error;
pub mod kernel;
pub mod lifetime;
pub mod message;
pub mod monitor;
pub mod netlink;
pub mod ownership;
pub mod policy;
pub mod probe;
pub mod sa;
pub mod selector;
pub mod socket;
pub mod socket_policy;

#[cfg(test)]
mod fixtures;

pub use algorithm::{Crypto, Key};
pub use child::{
    ChildCounters, ChildHandle, ChildLifetime, ChildPolicies, ChildSaSpec, Expiry, NatT,
    SaCounters, TrafficSelector,
};
pub use error::{Error, Result};
pub use kernel::{Flushed, Kernel, XfrmKernel};
pub use lifetime::{LifetimeConfig, LifetimeCurrent};
pub use policy::{Action, Direction, PolicyId, PolicySpec, PolicyState, Template};
pub use probe::{probe, ProbeReport, Unavailable};
pub use sa::{Encap, Mark, Mode, Replay, SaId, SaSpec, SaState, SpiRequest};
pub use selector::Selector;

//! The integration-test lab: network namespaces joined by veth, real processes inside them
//! (strongSwan's charon, tcpdump, and later our own daemon), and readers for what they leave
//! behind (pcap captures, `swanctl --list-sas`). Scenarios live in `tests/tests/`.
//!
//! Everything here runs real programs as root; there are no mocks. A scenario starts with
//! [`Lab::require_root`], which prints why it skips when the machine cannot host a lab:
//!
//! ```no_run
//! use ibm_ipsec_tests::{Lab, StrongSwan, Config};
//! let Some(lab) = Lab::require_root() else { return };
//! let (client, share) = lab.two_hosts().unwrap();
//! let charon = StrongSwan::start(&share, Config::default()).unwrap();
//! # drop((client, charon));
//! ```
//!
//! Interop scenarios with our own daemon (issue 8) put it in a host next to a charon, and
//! check traffic byte for byte through the tunnel:
//!
//! ```no_run
//! # use ibm_ipsec_tests::*;
//! # let lab = Lab::require_root().unwrap();
//! # let (client, share) = lab.two_hosts().unwrap();
//! let ours = Ours::start(&client, &["--datapath", "userspace"]).unwrap();
//! // … a StrongSwan on `share`, then:
//! ours.up(share.addr(), &["--mode", "tunnel"]).unwrap();
//! transfer(&client, &share, 5201, 1 << 20).unwrap();
//! assert_eq!(ours.status().unwrap().established_with(share.addr()), 1);
//! ```
#![warn(missing_docs, unreachable_pub)]

mod capture;
mod error;
mod metadata;
mod netns;
mod ours;
pub mod pcap;
mod pki;
mod process;
pub mod procstat;
mod sas;
mod strongswan;
pub mod traffic;

pub use capture::Capture;
pub use error::{LabError, Result};
pub use metadata::{MetadataServer, PeerIdentity, METADATA_IP};
pub use netns::{Host, Lab};
pub use ours::{cli, psk_file, str_field, strs, Detached, Ours, Status};
pub use pki::{Identity, TestPki};
pub use process::{wait_until, workspace_binary, LabProcess};
pub use sas::{ChildSa, IkeSa};
pub use strongswan::{Auth, Child, Config, Connection, Lifetimes, Secret, StrongSwan};
pub use traffic::{ping, transfer, PingReport, Transfer, TransferReport, TransferSpec};

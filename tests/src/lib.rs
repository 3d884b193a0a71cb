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
//! Interop scenarios with our own daemon (issue 8) put it in a host next to a charon:
//!
//! ```no_run
//! # use ibm_ipsec_tests::*;
//! # let lab = Lab::require_root().unwrap();
//! # let (client, share) = lab.two_hosts().unwrap();
//! let ours = workspace_binary("ibm-ipsec").unwrap();
//! let daemon = client.spawn(&[ours.to_str().unwrap(), "daemon"]).unwrap();
//! // … `ibm-ipsec up` against a StrongSwan on `share`, then assert on its --list-sas
//! # drop(daemon);
//! ```
#![warn(missing_docs, unreachable_pub)]

mod capture;
mod error;
mod netns;
pub mod pcap;
mod pki;
mod process;
mod sas;
mod strongswan;

pub use capture::Capture;
pub use error::{LabError, Result};
pub use netns::{Host, Lab};
pub use pki::{Identity, TestPki};
pub use process::{workspace_binary, LabProcess};
pub use sas::{ChildSa, IkeSa};
pub use strongswan::{Auth, Child, Config, Connection, Secret, StrongSwan};

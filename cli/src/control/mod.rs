//! The daemon's control socket: a JSON-lines protocol over a root-only Unix socket
//! (`--control PATH`, `$IBM_IPSEC_CONTROL`, default `/run/ibm-ipsec/control.sock`).
//!
//! ```no_run
//! use std::time::Duration;
//! use ibm_ipsec::control::{control_path, ControlClient};
//! let client = ControlClient::new(control_path(None), Duration::from_secs(5));
//! let report = client.status()?;
//! println!("datapath: {:?} ({})", report.datapath.kind, report.datapath.reason);
//! # Ok::<(), ibm_ipsec::Error>(())
//! ```

pub mod protocol;
mod socket;

pub use protocol::{
    ChildSaStatus, DaemonInfo, DatapathInfo, DatapathKind, DatapathRequest, DownTarget, ErrorKind,
    ErrorReply, IdentityInfo, IkeSaStatus, Request, Response, StatusReport, UpOptions, UpSummary,
    PROTOCOL_VERSION,
};
pub(crate) use socket::unexpected;
pub use socket::{control_path, ControlClient, ControlListener, CONTROL_ENV, DEFAULT_CONTROL_PATH};

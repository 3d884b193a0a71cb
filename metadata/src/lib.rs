//! Client for the IBM Cloud instance metadata service's identity API, the certificate renewal
//! schedule, and a real HTTP test server that speaks the same API.
//!
//! - [`Client`]: `PUT /identity/v1/token` then `POST /identity/v1/certificates` (or the legacy
//!   `/instance_identity/v1/*` paths), never through a proxy, with bounded retries; every
//!   [`Error`] names the URL, the HTTP status and the service's code and message, and maps to
//!   the IBM mount helper's exit codes ([`Error::exit_code`]).
//! - [`renewal`]: when to renew (sans-IO).
//! - [`share_conf`]: `/etc/ibmcloud/share.conf` / `/etc/ibmshare/share.conf`.
//! - [`test_server`]: the same API over real HTTP, issuing from a test CA.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
mod client;
mod error;
pub mod renewal;
pub mod share_conf;
mod test_ca;
pub mod test_server;
mod timestamp;
mod transport;

pub use client::{AccessToken, Client, ClientConfig, IssuedCertificate, RetryPolicy, DEFAULT_URL};
pub use error::{Error, Step};
pub use timestamp::rfc3339;

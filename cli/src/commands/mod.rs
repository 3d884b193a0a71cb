//! One module per `ibm-ipsec` subcommand; `main.rs` only parses arguments and dispatches.

pub mod cert;
pub mod cert_fetch;
pub mod daemon;
pub mod demo;
pub mod down;
pub mod ike_decode;
pub mod metadata_server;
pub mod mount;
pub mod status;
pub mod up;

//! ESP (RFC 4303) for ibm-ipsec: the sans-IO security association and the userspace datapath.
#![warn(missing_docs, unreachable_pub)]

//! The kernel datapath: IPsec SAs and policies over netlink XFRM.
#![warn(missing_docs, unreachable_pub)]

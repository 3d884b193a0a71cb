//! Per-socket settings for the daemon's IKE sockets, on any raw fd (no async runtime needed).
//!
//! - Policy bypass: once transport-mode policies cover "all traffic to the peer", IKE's own
//!   UDP datagrams would need an SA to leave, which IKE is trying to create. A per-socket
//!   policy with action allow and no templates, for both directions, exempts the socket
//!   (RFC 4301 §5.1 exempts IKE from the SPD; this is how Linux keying daemons do it).
//! - `UDP_ENCAP_ESPINUDP` on the port-4500 socket makes the kernel split ESP-in-UDP (to XFRM)
//!   from IKE with the non-ESP marker (to us), RFC 3948 §2.2.

use std::io;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};
use crate::lifetime::LifetimeConfig;
use crate::message::UDP_ENCAP_ESPINUDP;
use crate::policy::{emit_info, Action, Direction, USERPOLICY_INFO_LEN};
use crate::selector::{Selector, AF_INET, AF_INET6};
use crate::socket::set_int;

const IP_XFRM_POLICY: libc::c_int = 17;
const IPV6_XFRM_POLICY: libc::c_int = 35;
const UDP_ENCAP: libc::c_int = 100;

/// Address family of the socket to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketFamily {
    /// AF_INET socket.
    V4,
    /// AF_INET6 socket.
    V6,
}

/// The `xfrm_userpolicy_info` for an allow-everything socket policy in `dir`.
pub(crate) fn bypass_policy(dir: Direction, family: u16) -> [u8; USERPOLICY_INFO_LEN] {
    let any = if family == AF_INET6 {
        Selector::subnets(
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            0,
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            0,
        )
    } else {
        Selector::subnets(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            0,
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            0,
        )
    };
    let lifetime = LifetimeConfig::unlimited();
    let mut info = [0u8; USERPOLICY_INFO_LEN];
    emit_info(&mut info, &any, &lifetime, 0, dir, Action::Allow);
    info
}

/// Exempts the socket from IPsec policies in both directions.
pub fn bypass_policies(fd: &impl AsRawFd, family: SocketFamily) -> Result<()> {
    let fd = fd.as_raw_fd();
    // The kernel accepts only the option matching the socket's own family (EOPNOTSUPP
    // otherwise); the policy on an AF_INET6 socket also covers its v4-mapped traffic.
    let (level, name, fam) = match family {
        SocketFamily::V4 => (libc::IPPROTO_IP, IP_XFRM_POLICY, AF_INET),
        SocketFamily::V6 => (libc::IPPROTO_IPV6, IPV6_XFRM_POLICY, AF_INET6),
    };
    {
        for dir in [Direction::In, Direction::Out] {
            let info = bypass_policy(dir, fam);
            // SAFETY: info is a valid buffer of the given length for the call.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    info.as_ptr().cast(),
                    info.len() as libc::socklen_t,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(errno) => Error::kernel("set socket policy bypass", errno, None),
                    None => Error::io("set socket policy bypass", e),
                });
            }
        }
    }
    Ok(())
}

/// Turns on ESP-in-UDP decapsulation on a UDP socket (the NAT-T port 4500 socket).
pub fn enable_udp_encap(fd: &impl AsRawFd) -> Result<()> {
    set_int(
        fd.as_raw_fd(),
        libc::IPPROTO_UDP,
        UDP_ENCAP,
        libc::c_int::from(UDP_ENCAP_ESPINUDP),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(errno) => Error::kernel("enable UDP encapsulation", errno, None),
        None => Error::io("enable UDP encapsulation", e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyState;

    #[test]
    fn bypass_policy_layout() {
        let info = bypass_policy(Direction::Out, AF_INET);
        let p = PolicyState::parse(&info).unwrap();
        assert_eq!(
            (p.dir, p.action, p.priority),
            (Direction::Out, Action::Allow, 0)
        );
        assert!(p.templates.is_empty());
        assert_eq!(p.selector.unwrap().family(), AF_INET);
        let p6 = PolicyState::parse(&bypass_policy(Direction::In, AF_INET6)).unwrap();
        assert_eq!(p6.selector.unwrap().family(), AF_INET6);
    }

    #[test]
    fn applies_to_real_sockets() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        match bypass_policies(&udp, SocketFamily::V4) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EPERM) => {
                eprintln!("skipping socket policy check: {e}");
            }
            Err(e) => panic!("{e}"),
        }
        enable_udp_encap(&udp).unwrap();
        let udp6 = match std::net::UdpSocket::bind("[::1]:0") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping IPv6 socket policy check: no IPv6 loopback ({e})");
                return;
            }
        };
        match bypass_policies(&udp6, SocketFamily::V6) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EPERM) => eprintln!("skipping: {e}"),
            Err(e) => panic!("{e}"),
        }
    }
}

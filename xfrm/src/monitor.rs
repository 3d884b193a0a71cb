//! Kernel notifications on the XFRM multicast groups: EXPIRE (soft: rekey now, RFC 7296
//! §2.8; hard: the SA is gone) and ACQUIRE (a policy matched and no SA exists). Decoding is
//! sans-IO (`decode`); `Monitor` is a thin receiver over a socket whose fd the daemon may
//! register with its reactor.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use zeroize::Zeroizing;

use crate::error::{DecodeError, Error, Result};
use crate::message::{group, kind};
use crate::netlink::Messages;
use crate::policy::{PolicyState, USERPOLICY_INFO_LEN};
use crate::sa::{SaState, USERSA_INFO_LEN};
use crate::selector::{get_addr, need, Selector, AF_INET, AF_INET6, SELECTOR_LEN};
use crate::socket::XfrmSocket;

/// `sizeof(struct xfrm_user_expire)`: the SA info, the `hard` byte, padding to 8.
pub const USER_EXPIRE_LEN: usize = 232;
/// `sizeof(struct xfrm_user_acquire)`.
pub const USER_ACQUIRE_LEN: usize = 280;

/// A notification from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An SA reached a limit. Soft: start a rekey (CREATE_CHILD_SA). Hard: the kernel has
    /// deleted it.
    Expire {
        /// The SA (no keys).
        sa: Box<SaState>,
        /// Hard (deleted) or soft (rekey due).
        hard: bool,
    },
    /// Outbound traffic matched a policy without an SA.
    Acquire {
        /// Destination the SA is needed for.
        dst: IpAddr,
        /// Source.
        src: IpAddr,
        /// Protocol (ESP).
        proto: u8,
        /// The flow that triggered it.
        selector: Option<Selector>,
        /// The policy that matched.
        policy: Box<PolicyState>,
        /// Kernel sequence number to echo in the SA it gets.
        seq: u32,
    },
    /// Another XFRM message (SA/policy changes if subscribed), by type.
    Other(u16),
    /// The socket's receive buffer overflowed and notifications were lost (ENOBUFS): resync
    /// by dumping SAs.
    Overrun,
}

/// Decodes one message from a multicast group. Never panics on malformed input.
pub fn decode(msg_kind: u16, payload: &[u8]) -> Result<Event, DecodeError> {
    match msg_kind {
        kind::EXPIRE => {
            need("xfrm_user_expire", payload, USER_EXPIRE_LEN)?;
            let sa = SaState::parse_with_attrs(payload, USER_EXPIRE_LEN)?;
            Ok(Event::Expire {
                sa: Box::new(sa),
                hard: payload[USERSA_INFO_LEN] != 0,
            })
        }
        kind::ACQUIRE => {
            need("xfrm_user_acquire", payload, USER_ACQUIRE_LEN)?;
            let selector = Selector::parse(&payload[40..40 + SELECTOR_LEN])?;
            // The policy as the kernel copies it, with the acquire's attributes (templates) after
            // the fixed part.
            let mut policy_bytes = payload[96..96 + USERPOLICY_INFO_LEN].to_vec();
            policy_bytes.extend_from_slice(&payload[USER_ACQUIRE_LEN..]);
            let policy = PolicyState::parse(&policy_bytes)?;
            let family = selector
                .map(|s| s.family())
                .or_else(|| policy.selector.map(|s| s.family()))
                .unwrap_or(AF_INET);
            let family = if family == AF_INET6 {
                AF_INET6
            } else {
                AF_INET
            };
            Ok(Event::Acquire {
                dst: get_addr(&payload[0..16], family)?,
                proto: payload[20],
                src: get_addr(&payload[24..40], family)?,
                selector,
                policy: Box::new(policy),
                seq: crate::netlink::u32_at(payload, 276),
            })
        }
        other => Ok(Event::Other(other)),
    }
}

/// Groups the daemon wants by default.
pub const DEFAULT_GROUPS: [u32; 2] = [group::EXPIRE, group::ACQUIRE];

/// A receiver subscribed to XFRM multicast groups in the current network namespace.
pub struct Monitor {
    socket: XfrmSocket,
    buf: Zeroizing<Vec<u8>>,
}

impl Monitor {
    /// Subscribes to EXPIRE and ACQUIRE.
    pub fn open() -> Result<Self> {
        Self::open_groups(&DEFAULT_GROUPS)
    }

    /// Subscribes to the given `message::group` numbers.
    pub fn open_groups(groups: &[u32]) -> Result<Self> {
        Ok(Monitor {
            socket: XfrmSocket::open_with_groups(groups)?,
            buf: Zeroizing::new(vec![0u8; 64 * 1024]),
        })
    }

    /// Switches the socket between blocking and non-blocking (for a reactor such as tokio's
    /// `AsyncFd`; `recv` then returns an `Io` error of kind `WouldBlock` when idle).
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        let fd = self.socket.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(Error::io("fcntl", io::Error::last_os_error()));
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
            return Err(Error::io("fcntl", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Sets a receive timeout for blocking mode (`None` waits forever).
    pub fn set_timeout(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        let tv = match timeout {
            Some(d) => libc::timeval {
                tv_sec: d.as_secs() as libc::time_t,
                tv_usec: libc::suseconds_t::from(d.subsec_micros() as i32),
            },
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        // SAFETY: tv is a valid timeval for the call.
        let r = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::io("set receive timeout", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Receives one datagram and decodes the events in it. Blocks unless non-blocking.
    pub fn recv(&mut self) -> Result<Vec<Event>> {
        let n = match self.socket.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(vec![Event::Overrun]),
            Err(e) => return Err(Error::io("receive XFRM notification", e)),
        };
        let mut events = Vec::new();
        for m in Messages::new(&self.buf[..n]) {
            let m = m?;
            events.push(decode(m.header.kind, m.payload)?);
        }
        self.buf[..n].fill(0);
        Ok(events)
    }
}

impl AsRawFd for Monitor {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Crypto;
    use crate::netlink::HEADER_LEN;
    use crate::policy::{Direction, PolicySpec};
    use crate::sa::SaSpec;

    #[test]
    fn expire_soft_and_hard() {
        let a: IpAddr = "10.99.0.1".parse().unwrap();
        let b: IpAddr = "10.99.0.2".parse().unwrap();
        let spec = SaSpec::transport(
            a,
            b,
            0x1234,
            0x4942_0001,
            Crypto::aes_gcm(&[7; 20]).unwrap(),
        );
        let msg = spec.request(false, 1);
        // xfrm_user_expire = usersa_info + hard + padding, then the SA's attributes.
        let info = &msg[HEADER_LEN..HEADER_LEN + USERSA_INFO_LEN];
        let attrs = &msg[HEADER_LEN + USERSA_INFO_LEN..];
        for hard in [0u8, 1] {
            let mut p = info.to_vec();
            p.extend_from_slice(&[hard, 0, 0, 0, 0, 0, 0, 0]);
            p.extend_from_slice(attrs);
            match decode(kind::EXPIRE, &p).unwrap() {
                Event::Expire { sa, hard: h } => {
                    assert_eq!(h, hard == 1);
                    assert_eq!(sa.id.spi, 0x1234);
                    assert_eq!(sa.reqid, 0x4942_0001);
                    assert!(sa.aead.is_some());
                }
                other => panic!("{other:?}"),
            }
            assert!(decode(kind::EXPIRE, &p[..USER_EXPIRE_LEN - 1]).is_err());
        }
    }

    #[test]
    fn acquire() {
        let a: IpAddr = "10.99.0.1".parse().unwrap();
        let b: IpAddr = "10.99.0.2".parse().unwrap();
        let pol = PolicySpec::transport(Selector::host_to_host(a, b), Direction::Out, 0x4942_0002);
        let pmsg = pol.request(false, 1);
        let mut p = vec![0u8; USER_ACQUIRE_LEN];
        crate::selector::put_addr(&mut p[0..16], b);
        p[20] = 50;
        crate::selector::put_addr(&mut p[24..40], a);
        Selector::host_to_host(a, b)
            .with_proto(1)
            .emit(&mut p[40..96]);
        p[96..96 + USERPOLICY_INFO_LEN]
            .copy_from_slice(&pmsg[HEADER_LEN..HEADER_LEN + USERPOLICY_INFO_LEN]);
        p[276..280].copy_from_slice(&77u32.to_ne_bytes());
        p.extend_from_slice(&pmsg[HEADER_LEN + USERPOLICY_INFO_LEN..]);
        match decode(kind::ACQUIRE, &p).unwrap() {
            Event::Acquire {
                dst,
                src,
                proto,
                selector,
                policy,
                seq,
            } => {
                assert_eq!((dst, src, proto, seq), (b, a, 50, 77));
                assert_eq!(selector.unwrap().proto, 1);
                assert_eq!(policy.templates, pol.templates);
            }
            other => panic!("{other:?}"),
        }
        for n in 0..p.len() {
            let _ = decode(kind::ACQUIRE, &p[..n]);
        }
        assert_eq!(decode(0x99, &[]).unwrap(), Event::Other(0x99));
    }
}

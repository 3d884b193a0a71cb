//! A blocking NETLINK_XFRM socket: one request at a time, replies matched by sequence number.
//! Requests are microseconds of kernel work, so the daemon may call these from its runtime
//! or from `spawn_blocking`; nothing here depends on an async runtime.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::netlink::{
    self, Header, Messages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_DUMP_INTR,
};

/// NETLINK_XFRM protocol number.
const NETLINK_XFRM: libc::c_int = 6;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Receive buffer size: the kernel sizes dump batches to at most 32 KiB (or a page if larger);
/// 64 KiB holds any of them.
const RECV_LEN: usize = 64 * 1024;
/// Dumps that keep being interrupted by concurrent changes are retried this often.
pub(crate) const DUMP_RETRIES: usize = 5;

/// An open NETLINK_XFRM socket in the caller's current network namespace.
#[derive(Debug)]
pub struct XfrmSocket {
    fd: OwnedFd,
    port: u32,
    seq: u32,
}

impl XfrmSocket {
    /// Opens a socket for requests. Fails with EPROTONOSUPPORT when the kernel has no
    /// netlink XFRM (CONFIG_XFRM_USER).
    pub fn open() -> Result<Self> {
        Self::open_with_groups(&[])
    }

    /// Opens a socket subscribed to the given `XFRMNLGRP_*` multicast groups.
    pub fn open_with_groups(groups: &[u32]) -> Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_XFRM,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(errno) => Error::kernel("open netlink XFRM socket", errno, None),
                None => Error::io("open netlink XFRM socket", e),
            });
        }
        // SAFETY: fd is a freshly created, owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Extended acks carry the kernel's reason text; capped acks stop the kernel echoing
        // our request (with its keys) back at us. Both are best effort on old kernels.
        let _ = set_int(fd.as_raw_fd(), SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = set_int(fd.as_raw_fd(), SOL_NETLINK, NETLINK_CAP_ACK, 1);
        // SAFETY: zeroed sockaddr_nl is a valid value (AF set below).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_nl of `len` bytes.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                len,
            )
        } < 0
        {
            return Err(Error::io("bind netlink socket", io::Error::last_os_error()));
        }
        for g in groups {
            set_int(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                *g as libc::c_int,
            )
            .map_err(|e| Error::io("join XFRM multicast group", e))?;
        }
        let mut bound: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut blen = len;
        // SAFETY: bound/blen describe a writable sockaddr_nl.
        if unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_nl).cast(),
                &mut blen,
            )
        } < 0
        {
            return Err(Error::io(
                "getsockname on netlink socket",
                io::Error::last_os_error(),
            ));
        }
        Ok(XfrmSocket {
            fd,
            port: bound.nl_pid,
            seq: 1,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Builds a request with the next sequence number via `build`, sends it, and waits for
    /// the matching ACK or error. Replies of other kinds are passed to `on_reply`.
    pub(crate) fn transact(
        &mut self,
        op: &'static str,
        build: impl FnOnce(u32) -> Vec<u8>,
        on_reply: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let seq = self.next_seq();
        let mut msg = build(seq);
        let sent = self.send(&msg);
        msg.zeroize();
        sent.map_err(|e| Error::io(op, e))?;
        self.wait(op, seq, false, on_reply)
    }

    /// Sends a request that carries secrets (the caller zeroizes its buffer).
    pub(crate) fn transact_secret(&mut self, op: &'static str, msg: &[u8], seq: u32) -> Result<()> {
        self.send(msg).map_err(|e| Error::io(op, e))?;
        self.wait(op, seq, false, &mut |_, _| Ok(()))
    }

    /// Reserves a sequence number for a request built by the caller.
    pub(crate) fn reserve_seq(&mut self) -> u32 {
        self.next_seq()
    }

    /// Sends a dump request and passes every entry to `on_entry`. Returns `false` when the
    /// kernel flagged the dump as interrupted by a concurrent change (the caller retries).
    pub(crate) fn dump(
        &mut self,
        op: &'static str,
        build: impl Fn(u32) -> Vec<u8>,
        on_entry: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let seq = self.next_seq();
        self.send(&build(seq)).map_err(|e| Error::io(op, e))?;
        match self.wait(op, seq, true, on_entry) {
            Ok(()) => Ok(true),
            Err(Error::Invalid(ref s)) if s == INTERRUPTED => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: msg and addr are valid for the given lengths.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into a zeroize-on-drop buffer.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn wait(
        &self,
        op: &'static str,
        seq: u32,
        dump: bool,
        on_reply: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = zeroize::Zeroizing::new(vec![0u8; RECV_LEN]);
        let mut interrupted = false;
        loop {
            let n = self.recv(&mut buf).map_err(|e| Error::io(op, e))?;
            for m in Messages::new(&buf[..n]) {
                let m = m?;
                if m.header.seq != seq || (m.header.pid != 0 && m.header.pid != self.port) {
                    // A late reply to an earlier request that timed out, or a stray: skip it.
                    continue;
                }
                interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.header.kind {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let ack = netlink::parse_ack(m.header.flags, m.payload)?;
                        if ack.errno == 0 {
                            return Ok(());
                        }
                        return Err(Error::kernel(op, ack.errno, ack.message));
                    }
                    NLMSG_DONE => {
                        if interrupted {
                            return Err(Error::Invalid(INTERRUPTED.into()));
                        }
                        return Ok(());
                    }
                    kind => {
                        on_reply(kind, m.payload)?;
                        if !dump && !is_multi(&m.header) {
                            // A single reply (GETSA, ALLOCSPI) without an ACK request ends here.
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Port id the kernel assigned.
    pub fn port(&self) -> u32 {
        self.port
    }
}

const INTERRUPTED: &str = "dump interrupted";

fn is_multi(h: &Header) -> bool {
    h.flags & netlink::NLM_F_MULTI != 0
}

impl AsRawFd for XfrmSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

pub(crate) fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: value is a valid c_int for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

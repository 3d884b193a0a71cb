//! Blocking netlink sockets: [`NetlinkSocket`] for any netlink protocol (rtnetlink,
//! nfnetlink, XFRM), one request or one batch at a time, replies matched by sequence number;
//! [`XfrmSocket`] is a thin NETLINK_XFRM wrapper.
//!
//! Requests are microseconds of kernel work, so callers may use these from an async runtime
//! or from `spawn_blocking`; nothing here depends on one.
//!
//! Three ways to talk:
//! - [`NetlinkSocket::transact`]: one request, wait for its ACK or error (other replies go
//!   to a callback);
//! - [`NetlinkSocket::dump`]: one `NLM_F_DUMP` request, every entry to a callback until
//!   NLMSG_DONE;
//! - [`NetlinkSocket::transact_batch`]: several requests in one `sendmsg` (a
//!   [`Batch`](crate::netlink::Batch)), then the ACK/error of each. This is what
//!   nfnetlink transactions need: `NFNL_MSG_BATCH_BEGIN`, the NFT messages with
//!   `NLM_F_ACK`, `NFNL_MSG_BATCH_END`, all in one datagram so the kernel applies them
//!   atomically.
//!
//! Kernel refusals become [`Error::Kernel`]: the operation the caller named, a sentence for
//! the errno, and the kernel's extended-ack text when it sent one.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::netlink::{
    self, Ack, Batch, Header, Messages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_DUMP_INTR,
};

/// NETLINK_ROUTE protocol number (rtnetlink: links, addresses, routes, rules).
pub const NETLINK_ROUTE: libc::c_int = 0;
/// NETLINK_XFRM protocol number.
pub const NETLINK_XFRM: libc::c_int = 6;
/// NETLINK_NETFILTER protocol number (nfnetlink, nftables).
pub const NETLINK_NETFILTER: libc::c_int = 12;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Receive buffer size: the kernel sizes dump batches to at most 32 KiB (or a page if larger);
/// 64 KiB holds any of them.
const RECV_LEN: usize = 64 * 1024;
/// Dumps that keep being interrupted by concurrent changes are retried this often.
pub const DUMP_RETRIES: usize = 5;

/// Turns a kernel errno into a sentence for the operation `op` (see [`crate::error`]).
pub type Sentences = fn(op: &str, errno: i32) -> String;

/// An open netlink socket of one protocol, bound in the network namespace of the calling
/// thread when it was opened.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    port: u32,
    seq: u32,
    sentences: Sentences,
    /// Receive buffer, allocated on first use and kept: what a datagram left in it is
    /// zeroized after it was read (XFRM replies carry keys).
    buf: Vec<u8>,
}

impl NetlinkSocket {
    /// Opens a socket of `protocol` (e.g. [`NETLINK_ROUTE`], [`NETLINK_NETFILTER`]) for
    /// requests. Errors name the protocol; kernel refusals later use
    /// [`crate::error::netlink_sentence`].
    pub fn open(protocol: libc::c_int) -> Result<Self> {
        Self::open_with_groups(protocol, &[])
    }

    /// Opens a socket of `protocol` subscribed to the given multicast groups.
    pub fn open_with_groups(protocol: libc::c_int, groups: &[u32]) -> Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        let op = || -> Cow<'static, str> {
            match protocol {
                NETLINK_ROUTE => "open rtnetlink socket".into(),
                NETLINK_XFRM => "open netlink XFRM socket".into(),
                NETLINK_NETFILTER => "open nfnetlink socket".into(),
                p => format!("open netlink socket (protocol {p})").into(),
            }
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(errno) if protocol == NETLINK_XFRM => Error::kernel(op(), errno, None),
                Some(errno) => Error::Kernel {
                    op: op(),
                    errno,
                    sentence: crate::error::netlink_sentence("", errno),
                    kernel_message: None,
                },
                None => Error::io(op(), e),
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
            .map_err(|e| Error::io("join netlink multicast group", e))?;
        }
        // SAFETY: zeroed sockaddr_nl is a valid value.
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
        Ok(NetlinkSocket {
            fd,
            port: bound.nl_pid,
            seq: 1,
            sentences: crate::error::netlink_sentence,
            buf: Vec::new(),
        })
    }

    /// Uses `sentences` to word kernel refusals from now on (XFRM has its own).
    pub fn with_sentences(mut self, sentences: Sentences) -> Self {
        self.sentences = sentences;
        self
    }

    /// Port id the kernel assigned.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Reserves the next sequence number, for a request (or each request of a batch) built
    /// by the caller. Never 0.
    pub fn reserve_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// The error for a kernel refusal `ack` of the operation `op`: `"{op}: {sentence}"`,
    /// plus ` (kernel: {extended ack})` when the kernel explained.
    pub fn refusal(&self, op: impl Into<Cow<'static, str>>, ack: &Ack) -> Error {
        let op = op.into();
        Error::Kernel {
            sentence: (self.sentences)(&op, ack.errno),
            op,
            errno: ack.errno,
            kernel_message: ack.message.clone(),
        }
    }

    /// Builds a request with the next sequence number via `build`, sends it, and waits for
    /// the matching ACK or error (set `NLM_F_ACK` in the request). Replies of other kinds are
    /// passed to `on_reply`; a single reply without `NLM_F_MULTI` also ends the wait (a GET
    /// without `NLM_F_ACK`). The request buffer is zeroized after sending.
    pub fn transact(
        &mut self,
        op: &str,
        build: impl FnOnce(u32) -> Vec<u8>,
        on_reply: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let seq = self.reserve_seq();
        let mut msg = build(seq);
        let sent = self.send(&msg);
        msg.zeroize();
        sent.map_err(|e| Error::io(op.to_owned(), e))?;
        self.wait(op, seq, false, on_reply)
    }

    /// Sends a request the caller built with a sequence number from
    /// [`reserve_seq`](Self::reserve_seq) and waits for its ACK or error. The caller owns
    /// (and zeroizes) the buffer, so requests carrying keys never get copied.
    pub fn transact_built(&mut self, op: &str, msg: &[u8], seq: u32) -> Result<()> {
        self.send(msg).map_err(|e| Error::io(op.to_owned(), e))?;
        self.wait(op, seq, false, &mut |_, _| Ok(()))
    }

    /// Sends a dump request and passes every entry to `on_entry`. Returns `false` when the
    /// kernel flagged the dump as interrupted by a concurrent change (the caller retries,
    /// at most [`DUMP_RETRIES`] times).
    pub fn dump(
        &mut self,
        op: &str,
        build: impl FnOnce(u32) -> Vec<u8>,
        on_entry: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let seq = self.reserve_seq();
        self.send(&build(seq))
            .map_err(|e| Error::io(op.to_owned(), e))?;
        match self.wait(op, seq, true, on_entry) {
            Ok(()) => Ok(true),
            Err(Error::Invalid(ref s)) if s == INTERRUPTED => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends every message of `batch` in one `sendmsg` and collects the kernel's answers:
    /// one [`Ack`] per message that asked for one (`NLM_F_ACK`), and an error for any message
    /// of the batch the kernel refused (with or without `NLM_F_ACK`, e.g. a bad
    /// `NFNL_MSG_BATCH_BEGIN`). Returns them in arrival order (the kernel answers in message
    /// order); match them to messages by [`Ack::seq`], and turn a refusal into a sentence
    /// with [`refusal`](Self::refusal).
    ///
    /// Netlink protocols process a datagram synchronously inside `sendmsg`, so every answer
    /// is queued when it returns. After the first refusal the remaining answers are
    /// collected without blocking: a kernel that stops at an error (nfnetlink aborting a
    /// transaction) may not answer the rest. Other reply types are ignored.
    ///
    /// `Err` only for socket or decoding failures; an `Ok` list may hold refusals. Each
    /// answer costs the receive queue about a kilobyte: keep batches to a few hundred
    /// messages or raise `SO_RCVBUF`, or the kernel drops answers and `recv` fails with
    /// ENOBUFS.
    pub fn transact_batch(&mut self, op: &str, batch: &Batch) -> Result<Vec<Ack>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut bytes = batch.bytes().to_vec();
        let sent = self.send(&bytes);
        bytes.zeroize();
        sent.map_err(|e| Error::io(op.to_owned(), e))?;
        let ours: BTreeSet<u32> = batch.seqs().iter().copied().collect();
        let mut pending: BTreeSet<u32> = batch.acked().iter().copied().collect();
        let mut acks = Vec::new();
        let mut refused = false;
        let mut buf = self.take_buf();
        let result = (|| {
            while !pending.is_empty() {
                let flags = if refused { libc::MSG_DONTWAIT } else { 0 };
                let n = match self.recv_flags(&mut buf, flags) {
                    Ok(n) => n,
                    Err(e) if refused && e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(Error::io(op.to_owned(), e)),
                };
                let read = collect_acks(&buf[..n], &ours, self.port, &mut pending, &mut acks);
                buf[..n].zeroize();
                refused |= read?;
            }
            Ok(())
        })();
        self.buf = buf;
        result.map(|()| acks)
    }

    /// The receive buffer, taken out of `self` for the length of one exchange (put it back
    /// after): allocated once, zeroized per datagram by the callers.
    fn take_buf(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() < RECV_LEN {
            buf = vec![0u8; RECV_LEN];
        }
        buf
    }

    /// Sends one datagram (one or more messages) to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
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

    /// Receives one datagram into `buf` (blocking unless the socket is non-blocking).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_flags(buf, 0)
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
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
        &mut self,
        op: &str,
        seq: u32,
        dump: bool,
        on_reply: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = self.take_buf();
        let mut interrupted = false;
        let result = loop {
            let n = match self.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => break Err(Error::io(op.to_owned(), e)),
            };
            let done = self.handle(&buf[..n], op, seq, dump, &mut interrupted, on_reply);
            buf[..n].zeroize();
            match done {
                Ok(false) => {}
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        result
    }

    /// Handles one received datagram of a `wait`; `Ok(true)` when the exchange is over.
    fn handle(
        &self,
        datagram: &[u8],
        op: &str,
        seq: u32,
        dump: bool,
        interrupted: &mut bool,
        on_reply: &mut dyn FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        for m in Messages::new(datagram) {
            let m = m?;
            if m.header.seq != seq || (m.header.pid != 0 && m.header.pid != self.port) {
                // A late reply to an earlier request that timed out, or a stray: skip it.
                continue;
            }
            *interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
            match m.header.kind {
                NLMSG_NOOP => {}
                NLMSG_ERROR => {
                    let ack = netlink::parse_ack(m.header.flags, m.payload)?;
                    if ack.errno == 0 {
                        return Ok(true);
                    }
                    return Err(self.refusal(op.to_owned(), &ack));
                }
                NLMSG_DONE => {
                    if *interrupted {
                        return Err(Error::Invalid(INTERRUPTED.into()));
                    }
                    return Ok(true);
                }
                kind => {
                    on_reply(kind, m.payload)?;
                    if !dump && !is_multi(&m.header) {
                        // A single reply (GETSA, ALLOCSPI) without an ACK request ends here.
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

const INTERRUPTED: &str = "dump interrupted";

/// Records the NLMSG_ERRORs in `datagram` that answer messages of a batch (`ours`);
/// returns whether one was a refusal.
fn collect_acks(
    datagram: &[u8],
    ours: &BTreeSet<u32>,
    port: u32,
    pending: &mut BTreeSet<u32>,
    acks: &mut Vec<Ack>,
) -> Result<bool> {
    let mut refused = false;
    for m in Messages::new(datagram) {
        let m = m?;
        if m.header.kind != NLMSG_ERROR
            || !ours.contains(&m.header.seq)
            || (m.header.pid != 0 && m.header.pid != port)
        {
            continue;
        }
        let ack = netlink::parse_ack(m.header.flags, m.payload)?;
        pending.remove(&m.header.seq);
        refused |= ack.errno != 0;
        acks.push(Ack {
            seq: m.header.seq,
            ..ack
        });
    }
    Ok(refused)
}

fn is_multi(h: &Header) -> bool {
    h.flags & netlink::NLM_F_MULTI != 0
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An open NETLINK_XFRM socket in the caller's current network namespace: a
/// [`NetlinkSocket`] whose refusals read as XFRM sentences ([`crate::error::sentence`]).
#[derive(Debug)]
pub struct XfrmSocket {
    inner: NetlinkSocket,
}

impl XfrmSocket {
    /// Opens a socket for requests. Fails with EPROTONOSUPPORT when the kernel has no
    /// netlink XFRM (CONFIG_XFRM_USER).
    pub fn open() -> Result<Self> {
        Self::open_with_groups(&[])
    }

    /// Opens a socket subscribed to the given `XFRMNLGRP_*` multicast groups.
    pub fn open_with_groups(groups: &[u32]) -> Result<Self> {
        Ok(XfrmSocket {
            inner: NetlinkSocket::open_with_groups(NETLINK_XFRM, groups)?
                .with_sentences(crate::error::sentence),
        })
    }

    /// Sends a request that carries secrets (the caller zeroizes its buffer).
    pub(crate) fn transact_secret(&mut self, op: &'static str, msg: &[u8], seq: u32) -> Result<()> {
        self.inner.transact_built(op, msg, seq)
    }
}

impl Deref for XfrmSocket {
    type Target = NetlinkSocket;

    fn deref(&self) -> &NetlinkSocket {
        &self.inner
    }
}

impl DerefMut for XfrmSocket {
    fn deref_mut(&mut self) -> &mut NetlinkSocket {
        &mut self.inner
    }
}

impl AsRawFd for XfrmSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Builder, NLM_F_ACK, NLM_F_REQUEST};

    const RTM_GETLINK: u16 = 18;
    const RTM_NEWLINK: u16 = 16;

    /// `struct ifinfomsg` asking for interface `index`.
    fn getlink(seq: u32, index: i32, flags: u16) -> Vec<u8> {
        let mut ifi = [0u8; 16];
        ifi[4..8].copy_from_slice(&index.to_ne_bytes());
        Builder::new(RTM_GETLINK, NLM_F_REQUEST | flags, seq)
            .fixed(&ifi)
            .finish()
    }

    // Reading links needs no privilege, so these run everywhere (in the test's namespace).
    #[test]
    fn batch_collects_every_ack_in_one_send() {
        let mut s = NetlinkSocket::open(NETLINK_ROUTE).unwrap();
        let mut batch = Batch::new();
        let missing = s.reserve_seq();
        batch
            .push(&getlink(missing, 0x7fff_fff0, NLM_F_ACK))
            .unwrap();
        let lo = s.reserve_seq();
        batch.push(&getlink(lo, 1, NLM_F_ACK)).unwrap();
        let acks = s.transact_batch("looking up links", &batch).unwrap();
        let got: Vec<(u32, i32)> = acks.iter().map(|a| (a.seq, a.errno)).collect();
        assert_eq!(got, [(missing, libc::ENODEV), (lo, 0)]);
        let e = s.refusal(format!("looking up link {}", 0x7fff_fff0), &acks[0]);
        assert!(e
            .to_string()
            .starts_with("looking up link 2147483632: no such device"));
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
        // The socket stays in step: a plain request afterwards gets its own answer.
        let mut kinds = Vec::new();
        s.transact("look up lo", |seq| getlink(seq, 1, 0), &mut |k, _| {
            kinds.push(k);
            Ok(())
        })
        .unwrap();
        assert_eq!(kinds, [RTM_NEWLINK]);
    }

    #[test]
    fn refusal_names_the_operation() {
        let mut s = NetlinkSocket::open(NETLINK_ROUTE).unwrap();
        let e = s
            .transact(
                "looking up link 2147483632",
                |seq| getlink(seq, 0x7fff_fff0, NLM_F_ACK),
                &mut |_, _| Ok(()),
            )
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert!(e
            .to_string()
            .starts_with("looking up link 2147483632: no such device"));
        assert!(s
            .transact_batch("nothing", &Batch::new())
            .unwrap()
            .is_empty());
    }
}

//! The few Linux system calls the datapath needs that std does not wrap: TUN creation, socket
//! marks, raw ESP sockets and readiness polling. Every `unsafe` block of the crate is here.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Opens `/dev/net/tun` and attaches a TUN interface (IP packets, no packet-info header, a
/// virtio-net header in front of every packet) named `name`, and asks for TCP/IPv4
/// segmentation and checksum offload. Returns the file and whether the offloads took (an old
/// kernel may refuse them; packets then come unsegmented, still behind a virtio header).
/// The interface disappears when the file is closed.
pub(crate) fn open_tun(name: &str) -> io::Result<(File, bool)> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be 1..=15 bytes",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
    // SAFETY: TUNSETOFFLOAD takes the flags by value.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            offloads as libc::c_ulong,
        )
    };
    Ok((file, rc == 0))
}

/// Asks the kernel to coalesce received UDP datagrams of one flow (`UDP_GRO`); best effort.
pub(crate) fn enable_udp_gro(fd: RawFd) -> bool {
    setsockopt_u32(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok()
}

/// Sends `buf`, a run of datagrams of `seg` bytes each (the last may be shorter), to `dst`
/// in one `sendmsg` with `UDP_SEGMENT` (UDP GSO).
pub(crate) fn send_gso(fd: RawFd, buf: &[u8], seg: u16, dst: SocketAddr) -> io::Result<usize> {
    let (mut sa, sa_len) = sockaddr_any(dst);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one cmsghdr carrying a u16, aligned like the kernel wants it.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is valid before we fill it.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut sa as *mut libc::sockaddr_storage as *mut libc::c_void;
    msg.msg_namelen = sa_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
    // SAFETY: the control buffer holds CMSG_SPACE(2) bytes, so the first header and its
    // two data bytes lie inside it; every pointer used lives for the sendmsg call.
    let n = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
        libc::sendmsg(fd, &msg, 0)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receives without blocking; returns the length, the segment size if the kernel coalesced
/// several datagrams (`UDP_GRO`), and the sender.
pub(crate) fn recv_gro(
    fd: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<usize>, SocketAddr)> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: as in send_gso.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut sa as *mut libc::sockaddr_storage as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every buffer msg points to lives for the call and has the length given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut seg = None;
    // SAFETY: the CMSG_* walk stays within msg_controllen, which the kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                seg = usize::try_from(v).ok().filter(|&v| v > 0);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = socket_addr(&sa).ok_or(io::ErrorKind::InvalidData)?;
    Ok((n as usize, seg, from))
}

/// Sets `SO_MARK` so the socket's packets match the datapath's "bypass" routing rule.
pub(crate) fn set_mark(fd: RawFd, mark: u32) -> io::Result<()> {
    setsockopt_u32(fd, libc::SOL_SOCKET, libc::SO_MARK, mark)
}

/// Grows the socket buffers (best effort above the sysctl limits: `SO_*BUFFORCE` needs
/// CAP_NET_ADMIN, which the datapath has anyway).
pub(crate) fn set_buffers(fd: RawFd, bytes: u32) {
    let _ = setsockopt_u32(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes);
    let _ = setsockopt_u32(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, bytes);
}

fn setsockopt_u32(fd: RawFd, level: libc::c_int, name: libc::c_int, v: u32) -> io::Result<()> {
    let v = v as libc::c_int;
    // SAFETY: the option value is a c_int that lives for the call, with its size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw socket for protocol 50: the kernel adds the IP header on send; on receive, IPv4
/// hands us the whole IP packet, IPv6 only the ESP packet (RFC 3542 §3).
pub(crate) fn raw_esp_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call; the result is checked before being owned.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(crate::IPPROTO_ESP),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `addr` as a `sockaddr_storage` holding a `sockaddr_in` or `sockaddr_in6`, with the length
/// to pass.
fn sockaddr_any(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = sockaddr_v4(*a.ip(), a.port());
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address the kernel left in `sa` (IPv4 or IPv6), if it is one.
fn socket_addr(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(sa as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn sockaddr_v4(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// sendto(2) on a raw socket.
pub(crate) fn send_to_raw(fd: RawFd, buf: &[u8], dst: IpAddr) -> io::Result<usize> {
    let (sa, sa_len) = sockaddr_any(SocketAddr::new(dst, 0));
    // SAFETY: buf and sa are valid for the call; lengths match.
    let n = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            0,
            &sa as *const libc::sockaddr_storage as *const libc::sockaddr,
            sa_len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Most messages one `sendmmsg` call takes here.
pub(crate) const MMSG_MAX: usize = 64;

/// sendmmsg(2) on a raw socket: sends each of `bufs` (at most [`MMSG_MAX`]) as one packet to
/// `dst`; returns how many were sent (the rest may be retried).
pub(crate) fn sendmmsg_raw(fd: RawFd, bufs: &[&[u8]], dst: IpAddr) -> io::Result<usize> {
    let n = bufs.len().min(MMSG_MAX);
    let (mut sa, sa_len) = sockaddr_any(SocketAddr::new(dst, 0));
    let mut iovs: [libc::iovec; MMSG_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG_MAX];
    // SAFETY: mmsghdr is plain old data; all-zero is valid before we fill it.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: bufs[i].as_ptr() as *mut libc::c_void,
            iov_len: bufs[i].len(),
        };
        msgs[i].msg_hdr.msg_name = &mut sa as *mut libc::sockaddr_storage as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen = sa_len;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: n headers, each pointing at a live iovec, buffer and address.
    let sent = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// recvmmsg(2) without blocking into consecutive slots of `buf`, each `slot_len` long, with
/// each message written at `headroom` into its slot (at most `lens.len()` messages). Returns
/// how many arrived; `lens[i]` is message `i`'s length and `from[i]` its sender's address. A
/// truncated message (bigger than its slot) gets length 0, so the caller drops it.
pub(crate) fn recvmmsg_slots(
    fd: RawFd,
    buf: &mut [u8],
    slot_len: usize,
    headroom: usize,
    lens: &mut [usize],
    from: &mut [Option<IpAddr>],
) -> io::Result<usize> {
    let n = lens
        .len()
        .min(from.len())
        .min(MMSG_MAX)
        .min(buf.len() / slot_len.max(1));
    if n == 0 || headroom >= slot_len {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut iovs: [libc::iovec; MMSG_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG_MAX];
    // SAFETY: mmsghdr and sockaddr_storage are plain old data; all-zero is valid.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_storage; MMSG_MAX] = unsafe { std::mem::zeroed() };
    for (i, chunk) in buf.chunks_exact_mut(slot_len).take(n).enumerate() {
        let data = &mut chunk[headroom..];
        iovs[i] = libc::iovec {
            iov_base: data.as_mut_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name =
            &mut names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    // SAFETY: n headers, each pointing at a live iovec over a disjoint part of `buf` and at
    // its own address buffer.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for (i, m) in msgs[..got].iter().enumerate() {
        lens[i] = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            0
        } else {
            m.msg_len as usize
        };
        from[i] = socket_addr(&names[i]).map(|a| a.ip());
    }
    Ok(got)
}

/// Puts a descriptor in non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; flags are read then written back.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout_ms` passed.
pub(crate) fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    wait(fd, libc::POLLIN, timeout_ms)
}

/// Waits until one of the present descriptors is readable or `timeout_ms` passed.
pub(crate) fn wait_readable_any(fds: &[Option<RawFd>; 4], timeout_ms: i32) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 4];
    for (slot, fd) in p.iter_mut().zip(fds) {
        // poll(2) ignores negative descriptors.
        slot.fd = fd.unwrap_or(-1);
    }
    // SAFETY: four pollfds, valid for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 4, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(n > 0)
}

/// Waits until `fd` is writable or `timeout_ms` passed.
pub(crate) fn wait_writable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    wait(fd, libc::POLLOUT, timeout_ms)
}

fn wait(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(n > 0)
}

/// The index of the network interface `name` in the calling thread's namespace.
pub(crate) fn if_index(name: &str) -> Option<u32> {
    match CString::new(name) {
        // SAFETY: a valid NUL-terminated string.
        Ok(c) => match unsafe { libc::if_nametoindex(c.as_ptr()) } {
            0 => None,
            i => Some(i),
        },
        Err(_) => None,
    }
}

/// Test support for the root tests of the datapath modules.
#[cfg(test)]
pub(crate) mod testing {
    use std::io;
    use std::time::Duration;

    /// Moves the calling thread into a new, empty network namespace (needs CAP_SYS_ADMIN).
    /// Child processes it starts (`ip`, `nft`) inherit it.
    pub(crate) fn enter_new_netns() -> io::Result<()> {
        // SAFETY: unshare only changes the calling thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes `cap` from the calling thread's effective capabilities (the permitted set
    /// keeps it; the thread is meant to end with the test).
    pub(crate) fn drop_effective_capability(cap: u32) -> io::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut hdr = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capget writes two Data structs for version 3; both live for the call.
        if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        // SAFETY: as above; capset only reads them, and only changes this thread.
        if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// CPU time (user + system) of the calling thread and of the process's waited-for
    /// children.
    pub(crate) fn cpu_times() -> (Duration, Duration) {
        let get = |who| {
            // SAFETY: rusage is plain old data, written by getrusage.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointer to a rusage for the call.
            unsafe { libc::getrusage(who, &mut ru) };
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            tv(ru.ru_utime) + tv(ru.ru_stime)
        };
        (get(libc::RUSAGE_THREAD), get(libc::RUSAGE_CHILDREN))
    }
}

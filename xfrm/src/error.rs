//! One error type for the crate: decoding failures of kernel bytes, socket failures, and
//! kernel refusals translated into sentences an operator can act on.

use std::borrow::Cow;
use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking XFRM to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request; `sentence` says why in words, `errno` is the raw code.
    #[error("{op}: {sentence}{}", detail(.kernel_message))]
    Kernel {
        /// What we asked for (e.g. "add SA", "allocate SPI", "adding the policy-routing
        /// rule for 10.0.0.2").
        op: Cow<'static, str>,
        /// Positive errno from the kernel's NLMSG_ERROR.
        errno: i32,
        /// Human sentence for `errno` in the context of `op`.
        sentence: String,
        /// The kernel's extended-ack text, when it sent one.
        kernel_message: Option<String>,
    },
    /// A socket call failed (creating the netlink socket, sending, receiving).
    #[error("{op}: {source}")]
    Io {
        /// What we were doing.
        op: Cow<'static, str>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bytes from the kernel did not decode.
    #[error("malformed netlink message: {0}")]
    Decode(#[from] DecodeError),
    /// A request was refused before it reached the kernel because it was invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The SA or policy exists but was not installed by ibm-ipsec (its reqid is outside our
    /// range), so we refuse to change it.
    #[error("{0} was not created by ibm-ipsec (reqid outside {range}); refusing to touch it", range = crate::ownership::RANGE_TEXT)]
    NotOurs(&'static str),
}

fn detail(msg: &Option<String>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(" (kernel: {m})"),
        _ => String::new(),
    }
}

impl Error {
    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(op: impl Into<Cow<'static, str>>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    /// Builds the error for an XFRM NLMSG_ERROR with a negative `errno`.
    pub(crate) fn kernel(
        op: impl Into<Cow<'static, str>>,
        errno: i32,
        kernel_message: Option<String>,
    ) -> Self {
        let op = op.into();
        Error::Kernel {
            sentence: sentence(&op, errno),
            op,
            errno,
            kernel_message,
        }
    }
}

/// Translates an XFRM errno into a sentence. The mapping follows what `xfrm_user.c` and
/// `xfrm_state.c` return for each failure, which is more specific than `strerror`.
pub fn sentence(op: &str, errno: i32) -> String {
    let is_sa = op.contains("SA") || op.contains("SPI") || op.contains("probe");
    match errno {
        libc::EPERM | libc::EACCES => "permission denied: CAP_NET_ADMIN needed".into(),
        // __xfrm_init_state cannot find the ESP/AH type: esp4/esp6 absent and not loadable.
        libc::EPROTONOSUPPORT if is_sa => {
            "kernel has no ESP support (esp4 module not loaded and not loadable)".into()
        }
        libc::EPROTONOSUPPORT => "kernel has no netlink XFRM support (xfrm_user missing)".into(),
        // attach_aead/attach_one_algo: xfrm_*_get_byname found no such algorithm, or the
        // crypto API could not instantiate it.
        libc::ENOSYS => "algorithm not available in this kernel's crypto API".into(),
        libc::ENOENT if is_sa => "no such SA, or an algorithm module is missing".into(),
        libc::ENOENT => "no such policy".into(),
        libc::ESRCH => "no such SA or policy".into(),
        libc::EEXIST if is_sa => "an SA with this destination, SPI and protocol exists".into(),
        libc::EEXIST => "a policy with this selector and direction exists".into(),
        libc::EINVAL => "the kernel rejected the parameters as invalid".into(),
        libc::ENOMEM | libc::ENOBUFS => "kernel out of memory or socket buffer space".into(),
        libc::EAFNOSUPPORT => "address family not supported (IPv6 disabled?)".into(),
        libc::EADDRNOTAVAIL => "address not available".into(),
        libc::EOPNOTSUPP => "operation not supported by this kernel".into(),
        libc::EBUSY => "the kernel is busy with this object; retry".into(),
        other => io::Error::from_raw_os_error(other).to_string(),
    }
}

impl From<Error> for io::Error {
    /// Keeps the sentence as the message and the errno's kind (`PermissionDenied`,
    /// `AlreadyExists`, `NotFound` …), for callers whose API speaks `io::Error`.
    fn from(e: Error) -> io::Error {
        let kind = match e.errno() {
            // std files these under `Uncategorized`; for a netlink request they mean the
            // object is missing.
            Some(libc::ENODEV | libc::ESRCH) => io::ErrorKind::NotFound,
            Some(errno) => io::Error::from_raw_os_error(errno).kind(),
            None => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Translates an errno from any netlink protocol into a sentence (the default for
/// [`NetlinkSocket`](crate::socket::NetlinkSocket); `op` is not consulted).
pub fn netlink_sentence(_op: &str, errno: i32) -> String {
    match errno {
        libc::EPERM | libc::EACCES => "permission denied (CAP_NET_ADMIN needed)".into(),
        libc::EEXIST => "it exists already".into(),
        libc::ENOENT | libc::ESRCH => "no such object".into(),
        libc::ENODEV => "no such device".into(),
        libc::EINVAL => "the kernel rejected the parameters as invalid".into(),
        libc::ENOMEM | libc::ENOBUFS => "kernel out of memory or socket buffer space".into(),
        libc::EAFNOSUPPORT => "address family not supported (IPv6 disabled?)".into(),
        libc::EADDRNOTAVAIL => "address not available".into(),
        libc::ENETUNREACH => "network unreachable".into(),
        libc::EOPNOTSUPP => "operation not supported by this kernel".into(),
        libc::EPROTONOSUPPORT => "protocol not supported by this kernel".into(),
        libc::EBUSY => "the kernel is busy with this object; retry".into(),
        other => io::Error::from_raw_os_error(other).to_string(),
    }
}

/// Why bytes from the kernel failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("{what} needs {need} bytes, got {got}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A length field points outside its container.
    #[error("{what} length {len} is out of bounds (at most {max})")]
    BadLength {
        /// Which length field.
        what: &'static str,
        /// The value found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An enumerated field holds a value we do not know.
    #[error("unknown {what} {value}")]
    Unknown {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// A message of another type arrived where this one was expected.
    #[error("expected message type {expected:#x}, got {got:#x}")]
    UnexpectedType {
        /// What we wanted.
        expected: u16,
        /// What came.
        got: u16,
    },
}

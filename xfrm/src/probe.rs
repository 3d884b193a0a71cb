//! Can this process install ESP SAs in this network namespace? The daemon picks the kernel
//! datapath when the answer is yes and the userspace one otherwise, and `status` shows why.
//!
//! The probe installs a throwaway SA for each transform and deletes it again. The SA can never
//! carry traffic: its addresses are from TEST-NET-1 (192.0.2.0/24, RFC 5737, never routed), it
//! has a mark no packet carries, a reqid from our range, and a 30 s hard lifetime so the kernel
//! removes it even if we die between add and delete.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::algorithm::{Crypto, AES_GCM};
use crate::error::Error;
use crate::kernel::XfrmKernel;
use crate::lifetime::{LifetimeConfig, INFINITE};
use crate::ownership;
use crate::sa::{Mark, SaId, SaSpec};

/// Why the kernel datapath is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No NETLINK_XFRM (CONFIG_XFRM_USER off or xfrm_user not loadable).
    NoNetlinkXfrm,
    /// EPERM: we lack CAP_NET_ADMIN in this namespace.
    PermissionDenied,
    /// EPROTONOSUPPORT from SA construction: no ESP transform (esp4/esp6).
    NoEsp,
    /// ENOSYS/ENOENT: the kernel's crypto API lacks the named algorithm.
    AlgorithmMissing(String),
    /// Anything else, with the translated error.
    Other(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoNetlinkXfrm => {
                write!(f, "kernel has no netlink XFRM support (xfrm_user missing)")
            }
            Unavailable::PermissionDenied => write!(f, "permission denied: CAP_NET_ADMIN needed"),
            Unavailable::NoEsp => write!(
                f,
                "kernel has no ESP support (esp4 module not loaded and not loadable)"
            ),
            Unavailable::AlgorithmMissing(name) => write!(f, "kernel crypto API lacks {name}"),
            Unavailable::Other(e) => write!(f, "{e}"),
        }
    }
}

/// Outcome per transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// `rfc4106(gcm(aes))`, the default ESP transform (`aes256gcm16`).
    pub aes_gcm: Result<(), Unavailable>,
    /// `cbc(aes)` + `hmac(sha256)`.
    pub aes_cbc_hmac_sha256: Result<(), Unavailable>,
}

impl ProbeReport {
    /// The kernel datapath can carry our default proposal.
    pub fn kernel_usable(&self) -> bool {
        self.aes_gcm.is_ok()
    }

    /// The root cause when the kernel datapath is not usable. A missing GCM is reported as
    /// "no ESP" when the other transform shows ESP itself is absent: the kernel checks the
    /// algorithm before the ESP type, so GCM's error alone would blame the algorithm.
    pub fn reason(&self) -> Option<Unavailable> {
        match (&self.aes_gcm, &self.aes_cbc_hmac_sha256) {
            (Ok(()), _) => None,
            (
                Err(Unavailable::AlgorithmMissing(_)),
                Err(e @ (Unavailable::NoEsp | Unavailable::PermissionDenied)),
            ) => Some(e.clone()),
            (Err(e), _) => Some(e.clone()),
        }
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            None => write!(f, "kernel ESP available"),
            Some(r) => write!(f, "kernel ESP unavailable: {r}"),
        }
    }
}

/// Mark on the probe SAs: no packet carries it, so they match nothing.
const PROBE_MARK: Mark = Mark {
    value: 0x4942_fffe,
    mask: 0xffff_ffff,
};

/// Probes the current network namespace.
pub fn probe() -> ProbeReport {
    match XfrmKernel::open() {
        Ok(k) => probe_with(&k),
        Err(e) => {
            let why = classify(&e, "");
            ProbeReport {
                aes_gcm: Err(why.clone()),
                aes_cbc_hmac_sha256: Err(why),
            }
        }
    }
}

/// Probes with an open kernel handle.
pub fn probe_with(kernel: &XfrmKernel) -> ProbeReport {
    let gcm = Crypto::aes_gcm(&[0x5a; 36]).map_err(Unavailable::Other);
    let cbc = Crypto::aes_cbc_hmac_sha256(&[0x5a; 32], &[0xa5; 32]).map_err(Unavailable::Other);
    ProbeReport {
        aes_gcm: gcm.and_then(|c| try_transform(kernel, c, 0)),
        aes_cbc_hmac_sha256: cbc.and_then(|c| try_transform(kernel, c, 1)),
    }
}

fn try_transform(kernel: &XfrmKernel, crypto: Crypto, n: u32) -> Result<(), Unavailable> {
    let name = match &crypto {
        Crypto::Aead { name, .. } => name.clone(),
        Crypto::CipherAuth { cipher, auth, .. } => format!("{cipher} + {auth}"),
    };
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    // SPIs from the top of the space, distinct per transform and per process.
    let spi = 0xfff0_0000 | ((std::process::id() & 0xfff) << 4) | n;
    let mut spec = SaSpec::transport(src, dst, spi, ownership::reqid(0xfffe), crypto);
    spec.mark = Some(PROBE_MARK);
    spec.lifetime = LifetimeConfig::time_and_bytes(0, 30, INFINITE, INFINITE);
    match kernel.install_sa_unchecked("probe SA", &spec, false) {
        Ok(()) => {
            let id = SaId {
                mark: Some(PROBE_MARK),
                ..spec.id()
            };
            // Best effort: the hard lifetime removes it anyway.
            let _ = kernel.delete_sa_unchecked(&id, Some(src));
            Ok(())
        }
        // The kernel constructs the state (type and algorithms) before it looks for a
        // duplicate, so EEXIST still proves ESP works.
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(classify(&e, &name)),
    }
}

fn classify(e: &Error, algorithm: &str) -> Unavailable {
    match e.errno() {
        Some(libc::EPERM) | Some(libc::EACCES) => Unavailable::PermissionDenied,
        Some(libc::EPROTONOSUPPORT) if algorithm.is_empty() => Unavailable::NoNetlinkXfrm,
        Some(libc::EPROTONOSUPPORT) => Unavailable::NoEsp,
        Some(libc::ENOSYS) | Some(libc::ENOENT) => {
            Unavailable::AlgorithmMissing(if algorithm.is_empty() {
                AES_GCM.into()
            } else {
                algorithm.into()
            })
        }
        _ => Unavailable::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_prefers_missing_esp_over_missing_algorithm() {
        let r = ProbeReport {
            aes_gcm: Err(Unavailable::AlgorithmMissing(AES_GCM.into())),
            aes_cbc_hmac_sha256: Err(Unavailable::NoEsp),
        };
        assert_eq!(r.reason(), Some(Unavailable::NoEsp));
        assert!(!r.kernel_usable());
        assert_eq!(
            r.to_string(),
            "kernel ESP unavailable: kernel has no ESP support (esp4 module not loaded and not loadable)"
        );
        let r = ProbeReport {
            aes_gcm: Err(Unavailable::AlgorithmMissing(AES_GCM.into())),
            aes_cbc_hmac_sha256: Ok(()),
        };
        assert_eq!(
            r.reason(),
            Some(Unavailable::AlgorithmMissing(AES_GCM.into()))
        );
        let r = ProbeReport {
            aes_gcm: Ok(()),
            aes_cbc_hmac_sha256: Err(Unavailable::NoEsp),
        };
        assert!(r.kernel_usable() && r.reason().is_none());
    }

    #[test]
    fn classify_errnos() {
        let k = |errno| Error::kernel("probe SA", errno, None);
        assert_eq!(
            classify(&k(libc::EPERM), "x"),
            Unavailable::PermissionDenied
        );
        assert_eq!(classify(&k(libc::EPROTONOSUPPORT), "x"), Unavailable::NoEsp);
        assert_eq!(
            classify(&k(libc::EPROTONOSUPPORT), ""),
            Unavailable::NoNetlinkXfrm
        );
        assert_eq!(
            classify(&k(libc::ENOSYS), "x"),
            Unavailable::AlgorithmMissing("x".into())
        );
        assert!(matches!(
            classify(&k(libc::EINVAL), "x"),
            Unavailable::Other(_)
        ));
    }
}

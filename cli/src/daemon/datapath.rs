//! Which ESP datapath the daemon uses: the kernel's XFRM when the probe shows it can carry
//! our default transform, ibm-ipsec's own userspace datapath (TUN) otherwise (`DESIGN.md`,
//! Datapaths). `status` shows the choice and the reason.

use std::path::Path;

use crate::control::{DatapathInfo, DatapathKind, DatapathRequest};
use crate::error::Error;

/// The TUN clone device the userspace datapath opens.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// Whether the userspace datapath can open its TUN device, or why not.
pub fn tun_available(device: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map(drop)
        .map_err(|e| format!("cannot open {}: {e}", device.display()))
}

/// Decides from the operator's request, the XFRM probe (run only when needed) and the TUN
/// check. Forcing a datapath that cannot run is an error naming the cause.
pub fn choose(
    request: DatapathRequest,
    probe: impl FnOnce() -> xfrm::ProbeReport,
    tun: impl FnOnce() -> Result<(), String>,
) -> Result<DatapathInfo, Error> {
    let info = |kind, reason: String| DatapathInfo {
        kind,
        requested: request,
        reason,
    };
    match request {
        DatapathRequest::Kernel => match probe().reason() {
            None => Ok(info(
                DatapathKind::Kernel,
                "requested with --datapath kernel; kernel ESP available".into(),
            )),
            Some(why) => Err(Error::Datapath(format!(
                "--datapath kernel: the kernel datapath is unusable here: {why}"
            ))),
        },
        DatapathRequest::Userspace => match tun() {
            Ok(()) => Ok(info(
                DatapathKind::Userspace,
                "requested with --datapath userspace".into(),
            )),
            Err(why) => Err(Error::Datapath(format!(
                "--datapath userspace: the userspace datapath needs a TUN device: {why}"
            ))),
        },
        DatapathRequest::Auto => match probe().reason() {
            None => Ok(info(
                DatapathKind::Kernel,
                "kernel ESP available (rfc4106(gcm(aes)) probe succeeded)".into(),
            )),
            Some(kernel_why) => match tun() {
                Ok(()) => Ok(info(
                    DatapathKind::Userspace,
                    format!("kernel datapath unusable: {kernel_why}"),
                )),
                Err(tun_why) => Err(Error::Datapath(format!(
                    "no ESP datapath can run here: kernel: {kernel_why}; userspace: {tun_why}"
                ))),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfrm::{ProbeReport, Unavailable};

    fn kernel_ok() -> ProbeReport {
        ProbeReport {
            aes_gcm: Ok(()),
            aes_cbc_hmac_sha256: Ok(()),
        }
    }

    fn no_esp() -> ProbeReport {
        ProbeReport {
            aes_gcm: Err(Unavailable::AlgorithmMissing("rfc4106(gcm(aes))".into())),
            aes_cbc_hmac_sha256: Err(Unavailable::NoEsp),
        }
    }

    #[test]
    fn auto_prefers_the_kernel_without_touching_tun() {
        let info = choose(DatapathRequest::Auto, kernel_ok, || {
            panic!("TUN must not be checked")
        })
        .unwrap();
        assert_eq!(info.kind, DatapathKind::Kernel);
        assert_eq!(info.requested, DatapathRequest::Auto);
    }

    #[test]
    fn auto_falls_back_to_userspace_and_says_why() {
        let info = choose(DatapathRequest::Auto, no_esp, || Ok(())).unwrap();
        assert_eq!(info.kind, DatapathKind::Userspace);
        assert!(info.reason.contains("no ESP support"), "{}", info.reason);
    }

    #[test]
    fn auto_with_nothing_usable_names_both_causes() {
        let err = choose(DatapathRequest::Auto, no_esp, || Err("ENOENT".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no ESP support") && err.contains("ENOENT"),
            "{err}"
        );
    }

    #[test]
    fn forced_kernel_fails_with_the_probe_reason() {
        let err = choose(DatapathRequest::Kernel, no_esp, || Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--datapath kernel") && err.contains("no ESP"),
            "{err}"
        );
        let denied = || ProbeReport {
            aes_gcm: Err(Unavailable::PermissionDenied),
            aes_cbc_hmac_sha256: Err(Unavailable::PermissionDenied),
        };
        let err = choose(DatapathRequest::Kernel, denied, || Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    }

    #[test]
    fn forced_userspace_never_probes_and_needs_tun() {
        let probe = || -> ProbeReport { panic!("probe must not run") };
        let info = choose(DatapathRequest::Userspace, probe, || Ok(())).unwrap();
        assert_eq!(info.kind, DatapathKind::Userspace);
        let err = choose(DatapathRequest::Userspace, probe, || Err("EACCES".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TUN") && err.contains("EACCES"), "{err}");
    }

    #[test]
    fn missing_tun_device_is_described() {
        let err = tun_available(Path::new("/nonexistent/tun")).unwrap_err();
        assert!(err.contains("/nonexistent/tun"), "{err}");
    }
}

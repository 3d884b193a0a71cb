//! The `Kernel` trait the daemon drives, and `XfrmKernel`, its netlink implementation.

use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::message::kind;
use crate::ownership::is_ours;
use crate::policy::{self, PolicyId, PolicySpec, PolicyState};
use crate::sa::{self, SaId, SaSpec, SaState, SpiRequest};
use crate::socket::XfrmSocket;

/// IPsec operations on a kernel datapath. Every mutating call refuses SAs and policies whose
/// reqid is outside `ownership::REQIDS`, so the daemon cannot disturb entries it did not
/// create.
pub trait Kernel: Send + Sync {
    /// ALLOCSPI: reserve an inbound SPI. Fill it with `update_sa` (not `add_sa`) within
    /// `net.core.xfrm_acq_expires` seconds (30 by default) or the kernel drops it.
    fn allocate_spi(&self, req: &SpiRequest) -> Result<u32>;
    /// NEWSA: install an SA (fails if one with the same id exists).
    fn add_sa(&self, sa: &SaSpec) -> Result<()>;
    /// UPDSA: fill a larval SA from `allocate_spi`, or replace an SA.
    fn update_sa(&self, sa: &SaSpec) -> Result<()>;
    /// DELSA, after checking the SA is ours.
    fn delete_sa(&self, id: &SaId) -> Result<()>;
    /// GETSA: one SA with its counters.
    fn get_sa(&self, id: &SaId) -> Result<SaState>;
    /// Every SA in the namespace (ours and others'; filter with `ownership::is_ours`).
    fn sas(&self) -> Result<Vec<SaState>>;
    /// NEWPOLICY.
    fn add_policy(&self, policy: &PolicySpec) -> Result<()>;
    /// UPDPOLICY: add or replace.
    fn update_policy(&self, policy: &PolicySpec) -> Result<()>;
    /// DELPOLICY, after checking the policy is ours.
    fn delete_policy(&self, id: &PolicyId) -> Result<()>;
    /// Every policy in the namespace (socket policies excepted; the kernel does not dump them).
    fn policies(&self) -> Result<Vec<PolicyState>>;
    /// Removes every SA and policy that is ours, and only those.
    fn flush_ours(&self) -> Result<Flushed>;
}

/// What `flush_ours` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// SAs deleted.
    pub sas: usize,
    /// Policies deleted.
    pub policies: usize,
}

/// The kernel datapath over a NETLINK_XFRM socket in the network namespace that was current
/// when it was opened.
#[derive(Debug)]
pub struct XfrmKernel {
    socket: Mutex<XfrmSocket>,
}

impl XfrmKernel {
    /// Opens the netlink socket.
    pub fn open() -> Result<Self> {
        Ok(XfrmKernel {
            socket: Mutex::new(XfrmSocket::open()?),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut XfrmSocket) -> Result<T>) -> Result<T> {
        // A poisoned lock only means another thread panicked mid-request; the socket itself
        // is still usable because every request waits for its own sequence number.
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn install_sa(&self, op: &'static str, spec: &SaSpec, update: bool) -> Result<()> {
        spec.validate().map_err(Error::Invalid)?;
        if !is_ours(spec.reqid) {
            return Err(Error::Invalid(format!(
                "reqid {:#x} is outside ibm-ipsec's range {}",
                spec.reqid,
                crate::ownership::RANGE_TEXT
            )));
        }
        self.install_sa_unchecked(op, spec, update)
    }

    /// Installs without the ownership check (the probe uses its own reqid in our range, but
    /// this keeps the check in one place).
    pub(crate) fn install_sa_unchecked(
        &self,
        op: &'static str,
        spec: &SaSpec,
        update: bool,
    ) -> Result<()> {
        self.with(|s| {
            let seq = s.reserve_seq();
            let msg: Zeroizing<Vec<u8>> = spec.request(update, seq);
            s.transact_secret(op, &msg, seq)
        })
    }

    pub(crate) fn delete_sa_unchecked(
        &self,
        id: &SaId,
        src: Option<std::net::IpAddr>,
    ) -> Result<()> {
        self.with(|s| {
            s.transact(
                "delete SA",
                |seq| id.request(kind::DELSA, src, seq),
                &mut |_, _| Ok(()),
            )
        })
    }

    fn dump_all<T>(
        &self,
        op: &'static str,
        build: fn(u32) -> Vec<u8>,
        want: u16,
        parse: fn(&[u8]) -> std::result::Result<T, crate::error::DecodeError>,
    ) -> Result<Vec<T>> {
        self.with(|s| {
            for _ in 0..crate::socket::DUMP_RETRIES {
                let mut out = Vec::new();
                let complete = s.dump(op, build, &mut |k, payload| {
                    if k == want {
                        out.push(parse(payload)?);
                    }
                    Ok(())
                })?;
                if complete {
                    return Ok(out);
                }
            }
            Err(Error::Invalid(format!(
                "{op}: the table kept changing during the dump; gave up"
            )))
        })
    }

    fn get_policy(&self, id: &PolicyId) -> Result<PolicyState> {
        let mut found = None;
        self.with(|s| {
            s.transact(
                "get policy",
                |seq| id.request(kind::GETPOLICY, seq),
                &mut |k, payload| {
                    if k == kind::NEWPOLICY {
                        found = Some(PolicyState::parse(payload)?);
                    }
                    Ok(())
                },
            )
        })?;
        found.ok_or_else(|| Error::kernel("get policy", libc::ENOENT, None))
    }

    fn delete_policy_unchecked(&self, id: &PolicyId) -> Result<()> {
        self.with(|s| {
            s.transact(
                "delete policy",
                |seq| id.request(kind::DELPOLICY, seq),
                &mut |_, _| Ok(()),
            )
        })
    }

    fn install_policy(&self, op: &'static str, p: &PolicySpec, update: bool) -> Result<()> {
        p.validate().map_err(Error::Invalid)?;
        if p.templates.is_empty() || !p.templates.iter().all(|t| is_ours(t.reqid)) {
            return Err(Error::Invalid(format!(
                "policy templates must carry reqids in ibm-ipsec's range {}",
                crate::ownership::RANGE_TEXT
            )));
        }
        self.with(|s| s.transact(op, |seq| p.request(update, seq), &mut |_, _| Ok(())))
    }
}

/// Whether a policy was installed by us: it has templates and all carry our reqids.
pub fn policy_is_ours(p: &PolicyState) -> bool {
    !p.socket && !p.templates.is_empty() && p.templates.iter().all(|t| is_ours(t.reqid))
}

impl Kernel for XfrmKernel {
    fn allocate_spi(&self, req: &SpiRequest) -> Result<u32> {
        req.validate().map_err(Error::Invalid)?;
        if !is_ours(req.reqid) {
            return Err(Error::Invalid(format!(
                "reqid {:#x} is not ours",
                req.reqid
            )));
        }
        let mut spi = None;
        self.with(|s| {
            s.transact("allocate SPI", |seq| req.request(seq), &mut |k, payload| {
                if k == kind::NEWSA {
                    spi = Some(SaState::parse(payload)?.id.spi);
                }
                Ok(())
            })
        })?;
        spi.ok_or_else(|| Error::Invalid("allocate SPI: the kernel answered without an SA".into()))
    }

    fn add_sa(&self, sa: &SaSpec) -> Result<()> {
        self.install_sa("add SA", sa, false)
    }

    fn update_sa(&self, sa: &SaSpec) -> Result<()> {
        self.install_sa("update SA", sa, true)
    }

    fn delete_sa(&self, id: &SaId) -> Result<()> {
        let current = self.get_sa(id)?;
        if !is_ours(current.reqid) {
            return Err(Error::NotOurs("SA"));
        }
        self.delete_sa_unchecked(id, None)
    }

    fn get_sa(&self, id: &SaId) -> Result<SaState> {
        let mut found = None;
        self.with(|s| {
            s.transact(
                "get SA",
                |seq| id.request(kind::GETSA, None, seq),
                &mut |k, payload| {
                    if k == kind::NEWSA {
                        found = Some(SaState::parse(payload)?);
                    }
                    Ok(())
                },
            )
        })?;
        found.ok_or_else(|| Error::kernel("get SA", libc::ESRCH, None))
    }

    fn sas(&self) -> Result<Vec<SaState>> {
        self.dump_all("dump SAs", sa::dump_request, kind::NEWSA, SaState::parse)
    }

    fn add_policy(&self, policy: &PolicySpec) -> Result<()> {
        self.install_policy("add policy", policy, false)
    }

    fn update_policy(&self, policy: &PolicySpec) -> Result<()> {
        self.install_policy("update policy", policy, true)
    }

    fn delete_policy(&self, id: &PolicyId) -> Result<()> {
        let current = self.get_policy(id)?;
        if !policy_is_ours(&current) {
            return Err(Error::NotOurs("policy"));
        }
        self.delete_policy_unchecked(id)
    }

    fn policies(&self) -> Result<Vec<PolicyState>> {
        self.dump_all(
            "dump policies",
            policy::dump_request,
            kind::NEWPOLICY,
            PolicyState::parse,
        )
    }

    fn flush_ours(&self) -> Result<Flushed> {
        let mut flushed = Flushed::default();
        // SAs first: while our policies remain, traffic they cover finds no SA and is dropped
        // (ACQUIRE) rather than sent in the clear, so a flush that fails half-way never leaks.
        for sa in self.sas()?.into_iter().filter(|s| is_ours(s.reqid)) {
            match self.delete_sa_unchecked(&sa.id, Some(sa.src)) {
                Ok(()) => flushed.sas += 1,
                Err(e) if matches!(e.errno(), Some(libc::ESRCH) | Some(libc::ENOENT)) => {}
                Err(e) => return Err(e),
            }
        }
        for p in self.policies()?.into_iter().filter(policy_is_ours) {
            if let Some(id) = p.id() {
                match self.delete_policy_unchecked(&id) {
                    Ok(()) => flushed.policies += 1,
                    Err(e) if e.errno() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(flushed)
    }
}

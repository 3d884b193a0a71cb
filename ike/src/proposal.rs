//! Our proposals and the negotiation of SA payloads (RFC 7296 §2.7, §3.3).
//!
//! A configured proposal lists acceptable algorithms per transform type. Offering turns each
//! into one wire proposal; choosing (as responder) walks *our* proposals in preference order
//! and, for each, the peer's proposals, taking per transform type our most preferred algorithm
//! that the peer also offered (strongSwan's `prefer_configured_proposals`). A chosen proposal
//! carries exactly one transform of each type and keeps the peer's proposal number.

use core::fmt;

use crate::crypto::{DhGroup, EncrAlgorithm, IkeSuite, IntegAlgorithm, PrfAlgorithm};
use crate::wire::{self, EsnId, ProtocolId, Transform, TransformType};

/// An IKE SA proposal: every combination of the listed algorithms is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption algorithms, most preferred first.
    pub encr: Vec<EncrAlgorithm>,
    /// Integrity algorithms (must be empty for AEAD encryption).
    pub integ: Vec<IntegAlgorithm>,
    /// PRFs.
    pub prf: Vec<PrfAlgorithm>,
    /// Key exchange groups; the first is the one whose KE we send.
    pub dh: Vec<DhGroup>,
}

/// An ESP CHILD_SA proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption algorithms, most preferred first.
    pub encr: Vec<EncrAlgorithm>,
    /// Integrity algorithms (empty for AEAD).
    pub integ: Vec<IntegAlgorithm>,
    /// Groups for PFS in CREATE_CHILD_SA; empty means no PFS. Never used in IKE_AUTH, whose
    /// CHILD_SA takes its keys from the IKE SA (RFC 7296 §1.2).
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers: acceptable values, preferred first.
    pub esn: Vec<bool>,
}

/// The negotiated CHILD_SA transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildSuite {
    /// Encryption (with key length).
    pub encr: EncrAlgorithm,
    /// Integrity; `None` for AEAD.
    pub integ: Option<IntegAlgorithm>,
    /// PFS group of the exchange that created it, if any.
    pub dh: Option<DhGroup>,
    /// Extended sequence numbers.
    pub esn: bool,
}

impl IkeProposal {
    /// IBM Cloud's mount target suite: `aes256-sha384-ecp384` (see `ibm-mount-helper.md`).
    pub fn ibm() -> Self {
        IkeProposal {
            encr: vec![EncrAlgorithm::AesCbc256],
            integ: vec![IntegAlgorithm::HmacSha2_384_192],
            prf: vec![PrfAlgorithm::HmacSha384],
            dh: vec![DhGroup::Ecp384],
        }
    }

    /// `aes256gcm16-prfsha384-prfsha256-x25519-ecp256-modp2048`.
    pub fn modern() -> Self {
        IkeProposal {
            encr: vec![EncrAlgorithm::AesGcm16_256],
            integ: vec![],
            prf: vec![PrfAlgorithm::HmacSha384, PrfAlgorithm::HmacSha256],
            dh: vec![DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Modp2048],
        }
    }

    /// Our default offer: IBM's suite first, then the AEAD suite.
    pub fn defaults() -> Vec<Self> {
        vec![Self::ibm(), Self::modern()]
    }

    /// The wire proposal with this number (IKE_SA_INIT: no SPI; IKE rekey: our new SPI).
    pub fn to_wire(&self, number: u8, spi: Option<u64>) -> wire::Proposal {
        let mut p = wire::Proposal::new(number, ProtocolId::Ike);
        if let Some(spi) = spi {
            p = p.with_spi(spi.to_be_bytes());
        }
        p.transforms
            .extend(self.encr.iter().map(|e| encr_transform(*e)));
        p.transforms
            .extend(self.prf.iter().map(|a| prf_transform(*a)));
        p.transforms
            .extend(self.integ.iter().map(|a| integ_transform(*a)));
        p.transforms
            .extend(self.dh.iter().map(|g| dh_transform(*g)));
        p
    }

    fn suites(&self) -> impl Iterator<Item = IkeSuite> + '_ {
        let integs: Vec<Option<IntegAlgorithm>> = if self.integ.is_empty() {
            vec![None]
        } else {
            self.integ.iter().copied().map(Some).collect()
        };
        self.encr.iter().flat_map(move |&encr| {
            let integs = integs.clone();
            self.prf.iter().flat_map(move |&prf| {
                let integs = integs.clone();
                self.dh.iter().flat_map(move |&dh| {
                    integs.clone().into_iter().filter_map(move |integ| {
                        let s = IkeSuite {
                            encr,
                            integ,
                            prf,
                            dh,
                        };
                        s.validate().ok().map(|_| s)
                    })
                })
            })
        })
    }
}

impl EspProposal {
    /// IBM Cloud's ESP suite: `aes256gcm16`, no ESN, no PFS.
    pub fn ibm() -> Self {
        EspProposal {
            encr: vec![EncrAlgorithm::AesGcm16_256],
            integ: vec![],
            dh: vec![],
            esn: vec![false],
        }
    }

    /// Our default offer: `aes256gcm16` then `aes128gcm16`, no PFS.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::ibm(),
            EspProposal {
                encr: vec![EncrAlgorithm::AesGcm16_128],
                ..Self::ibm()
            },
        ]
    }

    /// The wire proposal; `with_dh` is false in IKE_AUTH (no KE transforms there,
    /// RFC 7296 §1.2) and true in CREATE_CHILD_SA.
    pub fn to_wire(&self, number: u8, spi: u32, with_dh: bool) -> wire::Proposal {
        let mut p = wire::Proposal::new(number, ProtocolId::Esp).with_spi(spi.to_be_bytes());
        p.transforms
            .extend(self.encr.iter().map(|e| encr_transform(*e)));
        p.transforms
            .extend(self.integ.iter().map(|a| integ_transform(*a)));
        if with_dh {
            p.transforms
                .extend(self.dh.iter().map(|g| dh_transform(*g)));
        }
        p.transforms
            .extend(self.esn.iter().map(|e| esn_transform(*e)));
        p
    }
}

impl ChildSuite {
    /// The chosen proposal as sent back.
    pub fn to_wire(&self, number: u8, spi: u32) -> wire::Proposal {
        let mut p = wire::Proposal::new(number, ProtocolId::Esp)
            .with_spi(spi.to_be_bytes())
            .with(encr_transform(self.encr));
        if let Some(i) = self.integ {
            p = p.with(integ_transform(i));
        }
        if let Some(g) = self.dh {
            p = p.with(dh_transform(g));
        }
        p.with(esn_transform(self.esn))
    }
}

/// The chosen IKE proposal as sent back.
pub fn ike_suite_to_wire(suite: &IkeSuite, number: u8, spi: Option<u64>) -> wire::Proposal {
    let mut p = wire::Proposal::new(number, ProtocolId::Ike);
    if let Some(spi) = spi {
        p = p.with_spi(spi.to_be_bytes());
    }
    p = p
        .with(encr_transform(suite.encr))
        .with(prf_transform(suite.prf));
    if let Some(i) = suite.integ {
        p = p.with(integ_transform(i));
    }
    p.with(dh_transform(suite.dh))
}

fn encr_transform(e: EncrAlgorithm) -> Transform {
    Transform::encr(wire::EncrId::from(e.iana_id()), Some(e.key_bits()))
}
fn prf_transform(a: PrfAlgorithm) -> Transform {
    Transform::new(TransformType::Prf, a.iana_id())
}
fn integ_transform(a: IntegAlgorithm) -> Transform {
    Transform::new(TransformType::Integ, a.iana_id())
}
fn dh_transform(g: DhGroup) -> Transform {
    Transform::new(TransformType::Ke, g.iana_id())
}
fn esn_transform(esn: bool) -> Transform {
    Transform::esn(if esn { EsnId::Esn } else { EsnId::NoEsn })
}

/// The algorithms of one received proposal that we implement, per type, in the peer's order.
/// `integ_none`/`dh_none` record an explicit `NONE` transform (id 0).
#[derive(Debug, Default)]
struct Offered {
    encr: Vec<EncrAlgorithm>,
    prf: Vec<PrfAlgorithm>,
    integ: Vec<IntegAlgorithm>,
    integ_none: bool,
    dh: Vec<DhGroup>,
    dh_none: bool,
    esn: Vec<bool>,
    /// A transform type we do not know (e.g. ADDKE) that we cannot satisfy.
    unknown_type: bool,
}

impl Offered {
    fn of(p: &wire::Proposal) -> Self {
        let mut o = Offered::default();
        for t in &p.transforms {
            match t.transform_type {
                TransformType::Encr => o
                    .encr
                    .extend(EncrAlgorithm::from_iana_id(t.transform_id, t.key_length())),
                TransformType::Prf => o.prf.extend(PrfAlgorithm::from_iana_id(t.transform_id)),
                TransformType::Integ if t.transform_id == 0 => o.integ_none = true,
                TransformType::Integ => {
                    o.integ.extend(IntegAlgorithm::from_iana_id(t.transform_id))
                }
                TransformType::Ke if t.transform_id == 0 => o.dh_none = true,
                TransformType::Ke => o.dh.extend(DhGroup::from_iana_id(t.transform_id)),
                TransformType::Esn => match EsnId::from(t.transform_id) {
                    EsnId::NoEsn => o.esn.push(false),
                    EsnId::Esn => o.esn.push(true),
                    EsnId::Unknown(_) => {}
                },
                // RFC 9370 additional key exchanges: acceptable only as NONE.
                _ if t.transform_id == 0 => {}
                _ => o.unknown_type = true,
            }
        }
        o
    }

    fn has_type(p: &wire::Proposal, ty: TransformType) -> bool {
        p.transforms_of(ty).next().is_some()
    }
}

/// The first of `ours` (in our order) that `theirs` contains.
fn pick<T: Copy + PartialEq>(ours: &[T], theirs: &[T]) -> Option<T> {
    ours.iter().copied().find(|a| theirs.contains(a))
}

/// Chooses an IKE suite from the initiator's SA payload. With `ke_group` set, only suites
/// using that group qualify (so the KE the initiator sent can be used).
pub fn choose_ike(
    ours: &[IkeProposal],
    offered: &wire::Sa,
    ke_group: Option<DhGroup>,
) -> Option<(u8, IkeSuite)> {
    for mine in ours {
        for theirs in offered
            .proposals
            .iter()
            .filter(|p| p.protocol == ProtocolId::Ike)
        {
            let o = Offered::of(theirs);
            if o.unknown_type {
                continue;
            }
            let want_dh: Vec<DhGroup> = match ke_group {
                Some(g) => vec![g],
                None => mine.dh.clone(),
            };
            let (Some(encr), Some(prf)) = (pick(&mine.encr, &o.encr), pick(&mine.prf, &o.prf))
            else {
                continue;
            };
            let Some(dh) = pick(&want_dh, &o.dh).filter(|g| mine.dh.contains(g)) else {
                continue;
            };
            let integ = if encr.is_aead() {
                if !o.integ.is_empty() && !o.integ_none {
                    continue;
                }
                None
            } else {
                match pick(&mine.integ, &o.integ) {
                    Some(i) => Some(i),
                    None => continue,
                }
            };
            return Some((
                theirs.number,
                IkeSuite {
                    encr,
                    integ,
                    prf,
                    dh,
                },
            ));
        }
    }
    None
}

/// Checks the responder's choice: one proposal with one transform of each type, all of them
/// in one of the proposals we offered.
pub fn check_chosen_ike(ours: &[IkeProposal], chosen: &wire::Sa) -> Option<IkeSuite> {
    let [p] = chosen.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::Ike || !single_of_each(p) {
        return None;
    }
    let o = Offered::of(p);
    let suite = IkeSuite {
        encr: *o.encr.first()?,
        prf: *o.prf.first()?,
        integ: o.integ.first().copied(),
        dh: *o.dh.first()?,
    };
    ours.iter()
        .any(|mine| mine.suites().any(|s| s == suite))
        .then_some(suite)
}

/// Chooses an ESP suite from the peer's SA payload; returns the proposal number, the peer's
/// SPI and the suite. `pfs_group` is the group of the peer's KE payload in CREATE_CHILD_SA;
/// `in_ike_auth` ignores KE transforms altogether (the first CHILD_SA takes its keys from the
/// IKE SA, RFC 7296 §1.2).
pub fn choose_esp(
    ours: &[EspProposal],
    offered: &wire::Sa,
    pfs_group: Option<DhGroup>,
    in_ike_auth: bool,
) -> Option<(u8, u32, ChildSuite)> {
    for mine in ours {
        for theirs in offered
            .proposals
            .iter()
            .filter(|p| p.protocol == ProtocolId::Esp)
        {
            let (Some(spi), o) = (theirs.spi_u32(), Offered::of(theirs)) else {
                continue;
            };
            if o.unknown_type {
                continue;
            }
            let Some(encr) = pick(&mine.encr, &o.encr) else {
                continue;
            };
            let integ = if encr.is_aead() {
                if !o.integ.is_empty() && !o.integ_none {
                    continue;
                }
                None
            } else {
                match pick(&mine.integ, &o.integ) {
                    Some(i) => Some(i),
                    None => continue,
                }
            };
            let dh = match pfs_group {
                _ if in_ike_auth => None,
                // PFS offered by the peer: we must use its KE's group if we accept PFS at all.
                Some(g) if mine.dh.contains(&g) && o.dh.contains(&g) => Some(g),
                Some(_) => continue,
                None if !o.dh.is_empty() && !o.dh_none => continue,
                None if !mine.dh.is_empty() => continue,
                None => None,
            };
            // RFC 7296 §3.3.2 requires an ESN transform for ESP; tolerate its absence as "no".
            let esn_offered = if Offered::has_type(theirs, TransformType::Esn) {
                o.esn.clone()
            } else {
                vec![false]
            };
            let Some(esn) = pick(&mine.esn, &esn_offered) else {
                continue;
            };
            return Some((
                theirs.number,
                spi,
                ChildSuite {
                    encr,
                    integ,
                    dh,
                    esn,
                },
            ));
        }
    }
    None
}

/// Checks the responder's ESP choice against what we offered; returns its SPI and the suite.
pub fn check_chosen_esp(
    ours: &[EspProposal],
    chosen: &wire::Sa,
    pfs_group: Option<DhGroup>,
) -> Option<(u32, ChildSuite)> {
    let [p] = chosen.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::Esp || !single_of_each(p) {
        return None;
    }
    let spi = p.spi_u32()?;
    let o = Offered::of(p);
    let suite = ChildSuite {
        encr: *o.encr.first()?,
        integ: o.integ.first().copied(),
        dh: o.dh.first().copied(),
        esn: o.esn.first().copied().unwrap_or(false),
    };
    if suite.dh != pfs_group {
        return None;
    }
    let ok = ours.iter().any(|m| {
        m.encr.contains(&suite.encr)
            && match suite.integ {
                None => suite.encr.is_aead(),
                Some(i) => !suite.encr.is_aead() && m.integ.contains(&i),
            }
            && suite.dh.map_or(true, |g| m.dh.contains(&g))
            && m.esn.contains(&suite.esn)
    });
    ok.then_some((spi, suite))
}

fn single_of_each(p: &wire::Proposal) -> bool {
    [
        TransformType::Encr,
        TransformType::Prf,
        TransformType::Integ,
        TransformType::Ke,
        TransformType::Esn,
    ]
    .iter()
    .all(|ty| p.transforms_of(*ty).count() <= 1)
}

/// `AES_CBC_256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384, …`: proposals for messages.
pub struct Describe<'a>(pub &'a [wire::Proposal]);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nothing");
        }
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, t) in p.transforms.iter().enumerate() {
                if j > 0 {
                    f.write_str("/")?;
                }
                write!(f, "{t}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(ps: &[IkeProposal]) -> wire::Sa {
        wire::Sa::new(
            ps.iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(i as u8 + 1, None))
                .collect(),
        )
    }

    #[test]
    fn responder_takes_ibm_suite_and_keeps_proposal_number() {
        let sa = offer(&[IkeProposal::modern(), IkeProposal::ibm()]);
        let (n, s) = choose_ike(&[IkeProposal::ibm()], &sa, None).unwrap();
        assert_eq!(n, 2);
        assert_eq!(s, IkeSuite::IBM_DEFAULT);
        let back = wire::Sa::new(vec![ike_suite_to_wire(&s, n, None)]);
        assert_eq!(check_chosen_ike(&IkeProposal::defaults(), &back), Some(s));
    }

    #[test]
    fn ke_group_constraint_and_mismatch() {
        let sa = offer(&[IkeProposal::modern()]);
        let (_, s) = choose_ike(&IkeProposal::defaults(), &sa, Some(DhGroup::Ecp256)).unwrap();
        assert_eq!(s.dh, DhGroup::Ecp256);
        assert_eq!(s.prf, PrfAlgorithm::HmacSha384);
        assert_eq!(s.integ, None);
        // KE for a group the proposal lacks: no suite with it, but one without the constraint.
        assert!(choose_ike(&IkeProposal::defaults(), &sa, Some(DhGroup::Ecp384)).is_none());
        assert!(choose_ike(&[IkeProposal::ibm()], &sa, None).is_none());
    }

    #[test]
    fn chosen_ike_must_be_single_and_offered() {
        let s = IkeSuite::IBM_DEFAULT;
        let back = wire::Sa::new(vec![ike_suite_to_wire(&s, 1, None)]);
        assert!(check_chosen_ike(&[IkeProposal::modern()], &back).is_none());
        // Two encryption transforms in a "chosen" proposal is a protocol error.
        let mut p = ike_suite_to_wire(&s, 1, None);
        p.transforms.push(encr_transform(EncrAlgorithm::AesCbc128));
        assert!(check_chosen_ike(&[IkeProposal::ibm()], &wire::Sa::new(vec![p])).is_none());
    }

    #[test]
    fn esp_choice_with_and_without_pfs() {
        let ours = EspProposal::defaults();
        let sa = wire::Sa::new(vec![EspProposal::ibm().to_wire(1, 0x1234, false)]);
        let (n, spi, suite) = choose_esp(&ours, &sa, None, false).unwrap();
        assert_eq!((n, spi), (1, 0x1234));
        assert_eq!(suite.encr, EncrAlgorithm::AesGcm16_256);
        assert_eq!((suite.integ, suite.dh, suite.esn), (None, None, false));
        let back = wire::Sa::new(vec![suite.to_wire(n, 0x5678)]);
        assert_eq!(check_chosen_esp(&ours, &back, None), Some((0x5678, suite)));

        let pfs = EspProposal {
            dh: vec![DhGroup::Curve25519],
            ..EspProposal::ibm()
        };
        let sa = wire::Sa::new(vec![pfs.to_wire(1, 7, true)]);
        // We do not do PFS: refuse a PFS-only offer.
        assert!(choose_esp(&ours, &sa, Some(DhGroup::Curve25519), false).is_none());
        let (_, _, s) = choose_esp(
            std::slice::from_ref(&pfs),
            &sa,
            Some(DhGroup::Curve25519),
            false,
        )
        .unwrap();
        assert_eq!(s.dh, Some(DhGroup::Curve25519));
        assert!(choose_esp(
            std::slice::from_ref(&pfs),
            &sa,
            Some(DhGroup::Ecp256),
            false
        )
        .is_none());
        // In IKE_AUTH a PFS proposal is accepted without a group.
        let (_, _, s) = choose_esp(
            std::slice::from_ref(&pfs),
            &wire::Sa::new(vec![pfs.to_wire(1, 7, false)]),
            None,
            true,
        )
        .unwrap();
        assert_eq!(s.dh, None);
        assert!(choose_esp(
            &[pfs],
            &wire::Sa::new(vec![EspProposal::ibm().to_wire(1, 7, false)]),
            None,
            false
        )
        .is_none());
    }

    #[test]
    fn describe_lists_transforms() {
        let text = Describe(&[IkeProposal::ibm().to_wire(1, None)]).to_string();
        assert_eq!(
            text,
            "ENCR_AES_CBC_256/PRF_HMAC_SHA2_384/AUTH_HMAC_SHA2_384_192/ECP_384"
        );
    }
}

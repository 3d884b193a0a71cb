//! Security policies (RFC 4301 §4.4.1, the SPD): which traffic must be protected, in which
//! direction, by which SA template. Encoders write `xfrm_userpolicy_info` (168 bytes),
//! `xfrm_user_tmpl` (64 bytes) and `xfrm_userpolicy_id` (64 bytes) as iproute2 does.

use std::net::IpAddr;

use crate::error::DecodeError;
use crate::lifetime::{LifetimeConfig, LifetimeCurrent, CFG_LEN};
use crate::message::{attr, kind, IPPROTO_ESP};
use crate::netlink::{u16_at, u32_at, Attrs, Builder, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::sa::{Mark, Mode};
use crate::selector::{family_of, get_addr, need, put_addr, Selector, SELECTOR_LEN};

/// `sizeof(struct xfrm_userpolicy_info)`.
pub const USERPOLICY_INFO_LEN: usize = 168;
/// `sizeof(struct xfrm_user_tmpl)`.
pub const USER_TMPL_LEN: usize = 64;
/// `sizeof(struct xfrm_userpolicy_id)`.
pub const USERPOLICY_ID_LEN: usize = 64;
/// Most templates we send or accept in one policy (a bundle deeper than this is not IPsec we
/// configure).
pub const MAX_TEMPLATES: usize = 8;

/// Direction a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Inbound (to this host).
    In,
    /// Outbound (from this host).
    Out,
    /// Forwarded.
    Fwd,
}

impl Direction {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
            Direction::Fwd => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Direction::In),
            1 => Ok(Direction::Out),
            2 => Ok(Direction::Fwd),
            other => Err(DecodeError::Unknown {
                what: "policy direction",
                value: u32::from(other),
            }),
        }
    }
}

/// What the policy does with matching traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Apply the templates (or let it pass if there are none).
    Allow,
    /// Drop.
    Block,
}

/// One SA the policy requires (`xfrm_user_tmpl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Template {
    /// SA source address (tunnel endpoint, or the host in transport mode).
    pub src: IpAddr,
    /// SA destination address.
    pub dst: IpAddr,
    /// IPPROTO_ESP.
    pub proto: u8,
    /// Transport or tunnel.
    pub mode: Mode,
    /// The reqid of the SAs that satisfy it.
    pub reqid: u32,
    /// SPI to require, 0 for any.
    pub spi: u32,
    /// Whether the SA is optional (inbound IPComp); false for ESP.
    pub optional: bool,
}

impl Template {
    /// An ESP template.
    pub fn esp(src: IpAddr, dst: IpAddr, mode: Mode, reqid: u32) -> Self {
        Template {
            src,
            dst,
            proto: IPPROTO_ESP,
            mode,
            reqid,
            spi: 0,
            optional: false,
        }
    }

    fn emit(&self, out: &mut [u8]) {
        out[..USER_TMPL_LEN].fill(0);
        put_addr(&mut out[0..16], self.dst);
        out[16..20].copy_from_slice(&self.spi.to_be_bytes());
        out[20] = self.proto;
        out[24..26].copy_from_slice(&family_of(self.dst).to_ne_bytes());
        put_addr(&mut out[28..44], self.src);
        out[44..48].copy_from_slice(&self.reqid.to_ne_bytes());
        out[48] = self.mode.to_u8();
        out[50] = u8::from(self.optional);
        // Any algorithm: the SA, not the template, fixes the transform.
        out[52..64].fill(0xff);
    }

    fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_user_tmpl", b, USER_TMPL_LEN)?;
        let family = u16_at(b, 24);
        Ok(Template {
            dst: get_addr(&b[0..16], family)?,
            spi: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            proto: b[20],
            src: get_addr(&b[28..44], family)?,
            reqid: u32_at(b, 44),
            mode: Mode::from_u8(b[48])?,
            optional: b[50] != 0,
        })
    }
}

/// Names one policy: selector, direction and mark (the kernel's lookup key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyId {
    /// Selector.
    pub selector: Selector,
    /// Direction.
    pub dir: Direction,
    /// Mark, if the policy has one.
    pub mark: Option<Mark>,
}

impl PolicyId {
    pub(crate) fn request(&self, msg_kind: u16, seq: u32) -> Vec<u8> {
        let mut id = [0u8; USERPOLICY_ID_LEN];
        self.selector.emit(&mut id[..SELECTOR_LEN]);
        id[60] = self.dir.to_u8();
        let flags = if msg_kind == kind::GETPOLICY {
            NLM_F_REQUEST
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        let b = Builder::new(msg_kind, flags, seq).fixed(&id);
        match self.mark {
            Some(m) => b.attr(attr::MARK, &m.to_bytes()).finish(),
            None => b.finish(),
        }
    }
}

/// A policy to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// Traffic it matches.
    pub selector: Selector,
    /// Direction.
    pub dir: Direction,
    /// Allow (protect with templates) or block.
    pub action: Action,
    /// Lower wins. strongSwan uses ~375000 for host-to-host transport policies; we default to
    /// a value in the same band so that manual policies (priority 0) still win.
    pub priority: u32,
    /// SAs required, outermost last.
    pub templates: Vec<Template>,
    /// Optional mark.
    pub mark: Option<Mark>,
    /// Limits (normally none).
    pub lifetime: LifetimeConfig,
}

/// Default priority for our policies.
pub const DEFAULT_PRIORITY: u32 = 366_000;

impl PolicySpec {
    /// A transport-mode ESP policy for `selector` in `dir`, with its template's addresses
    /// taken from the selector (hosts talking directly).
    pub fn transport(selector: Selector, dir: Direction, reqid: u32) -> Self {
        PolicySpec {
            selector,
            dir,
            action: Action::Allow,
            priority: DEFAULT_PRIORITY,
            templates: vec![Template::esp(
                selector.src,
                selector.dst,
                Mode::Transport,
                reqid,
            )],
            mark: None,
            lifetime: LifetimeConfig::unlimited(),
        }
    }

    /// A tunnel-mode ESP policy: `selector` traffic carried between `src` and `dst`.
    pub fn tunnel(
        selector: Selector,
        dir: Direction,
        src: IpAddr,
        dst: IpAddr,
        reqid: u32,
    ) -> Self {
        PolicySpec {
            templates: vec![Template::esp(src, dst, Mode::Tunnel, reqid)],
            ..Self::transport(selector, dir, reqid)
        }
    }

    /// Its id.
    pub fn id(&self) -> PolicyId {
        PolicyId {
            selector: self.selector,
            dir: self.dir,
            mark: self.mark,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        self.selector.validate()?;
        if self.templates.len() > MAX_TEMPLATES {
            return Err(format!("more than {MAX_TEMPLATES} templates"));
        }
        if self
            .templates
            .iter()
            .any(|t| t.src.is_ipv4() != t.dst.is_ipv4())
        {
            return Err("template mixes IPv4 and IPv6".into());
        }
        Ok(())
    }

    /// NEWPOLICY (`update` false) or UPDPOLICY request.
    pub(crate) fn request(&self, update: bool, seq: u32) -> Vec<u8> {
        let mut info = [0u8; USERPOLICY_INFO_LEN];
        emit_info(
            &mut info,
            &self.selector,
            &self.lifetime,
            self.priority,
            self.dir,
            self.action,
        );
        let kind = if update {
            kind::UPDPOLICY
        } else {
            kind::NEWPOLICY
        };
        let mut b = Builder::new(kind, NLM_F_REQUEST | NLM_F_ACK, seq).fixed(&info);
        if !self.templates.is_empty() {
            let mut tmpls = vec![0u8; USER_TMPL_LEN * self.templates.len()];
            for (t, out) in self.templates.iter().zip(tmpls.chunks_mut(USER_TMPL_LEN)) {
                t.emit(out);
            }
            b = b.attr(attr::TMPL, &tmpls);
        }
        if let Some(m) = self.mark {
            b = b.attr(attr::MARK, &m.to_bytes());
        }
        b.finish()
    }
}

/// Writes `xfrm_userpolicy_info`; also used for the per-socket bypass policies.
pub(crate) fn emit_info(
    out: &mut [u8],
    selector: &Selector,
    lifetime: &LifetimeConfig,
    priority: u32,
    dir: Direction,
    action: Action,
) {
    out[..USERPOLICY_INFO_LEN].fill(0);
    selector.emit(&mut out[..SELECTOR_LEN]);
    lifetime.emit(&mut out[56..56 + CFG_LEN]);
    out[152..156].copy_from_slice(&priority.to_ne_bytes());
    out[160] = dir.to_u8();
    out[161] = match action {
        Action::Allow => 0,
        Action::Block => 1,
    };
}

/// A policy as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// Selector (`None` for a policy without a family, which the kernel allows for sockets).
    pub selector: Option<Selector>,
    /// Direction.
    pub dir: Direction,
    /// Action.
    pub action: Action,
    /// Priority.
    pub priority: u32,
    /// Kernel-assigned index.
    pub index: u32,
    /// Templates.
    pub templates: Vec<Template>,
    /// Mark.
    pub mark: Option<Mark>,
    /// Limits.
    pub lifetime: LifetimeConfig,
    /// Usage.
    pub current: LifetimeCurrent,
    /// A per-socket policy (`IP_XFRM_POLICY`), which the kernel reports with direction
    /// `XFRM_POLICY_MAX + dir`; it cannot be deleted by selector.
    pub socket: bool,
}

impl PolicyState {
    /// The id to delete or fetch this policy with.
    pub fn id(&self) -> Option<PolicyId> {
        if self.socket {
            return None;
        }
        Some(PolicyId {
            selector: self.selector?,
            dir: self.dir,
            mark: self.mark,
        })
    }

    pub(crate) fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_userpolicy_info", payload, USERPOLICY_INFO_LEN)?;
        // Socket policies are dumped with XFRM_POLICY_MAX (3) added to their direction.
        let raw_dir = payload[160];
        let socket = raw_dir >= 3;
        let mut p = PolicyState {
            socket,
            selector: Selector::parse(&payload[..SELECTOR_LEN])?,
            lifetime: LifetimeConfig::parse(&payload[56..])?,
            current: LifetimeCurrent::parse(&payload[120..])?,
            priority: u32_at(payload, 152),
            index: u32_at(payload, 156),
            dir: Direction::from_u8(if socket { raw_dir - 3 } else { raw_dir })?,
            action: match payload[161] {
                0 => Action::Allow,
                1 => Action::Block,
                other => {
                    return Err(DecodeError::Unknown {
                        what: "policy action",
                        value: u32::from(other),
                    })
                }
            },
            templates: Vec::new(),
            mark: None,
        };
        for a in Attrs::new(&payload[USERPOLICY_INFO_LEN..]) {
            let a = a?;
            match a.kind {
                attr::TMPL => {
                    let n = a.value.len() / USER_TMPL_LEN;
                    if n > MAX_TEMPLATES || a.value.len() % USER_TMPL_LEN != 0 {
                        return Err(DecodeError::BadLength {
                            what: "XFRMA_TMPL",
                            len: a.value.len(),
                            max: MAX_TEMPLATES * USER_TMPL_LEN,
                        });
                    }
                    for chunk in a.value.chunks_exact(USER_TMPL_LEN) {
                        p.templates.push(Template::parse(chunk)?);
                    }
                }
                attr::MARK => p.mark = Some(Mark::parse(a.value)?),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// GETPOLICY dump request.
pub(crate) fn dump_request(seq: u32) -> Vec<u8> {
    Builder::new(kind::GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, seq).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{fixture, same_request};
    use crate::netlink::HEADER_LEN;

    fn a() -> IpAddr {
        "10.99.0.1".parse().unwrap()
    }
    fn b() -> IpAddr {
        "10.99.0.2".parse().unwrap()
    }

    fn ip_like(mut p: PolicySpec) -> PolicySpec {
        p.priority = 0;
        p
    }

    #[test]
    fn transport_out_matches_iproute2() {
        let p = ip_like(PolicySpec::transport(
            Selector::host_to_host(a(), b()),
            Direction::Out,
            1,
        ));
        same_request(&p.request(false, 1), &fixture("policy_out"));
    }

    #[test]
    fn inbound_tcp_with_priority_matches_iproute2() {
        let sel = Selector::host_to_host(b(), a())
            .with_proto(6)
            .with_src_port(2049);
        let mut p = PolicySpec::transport(sel, Direction::In, 2);
        p.priority = 1000;
        same_request(&p.request(false, 1), &fixture("policy_in_tcp"));
    }

    #[test]
    fn tunnel_matches_iproute2() {
        let sel = Selector::subnets(
            "10.1.0.0".parse().unwrap(),
            16,
            "10.2.0.0".parse().unwrap(),
            16,
        );
        let p = ip_like(PolicySpec::tunnel(sel, Direction::Out, a(), b(), 6));
        same_request(&p.request(false, 1), &fixture("policy_tunnel"));
    }

    #[test]
    fn delete_matches_iproute2() {
        let id = PolicyId {
            selector: Selector::host_to_host(a(), b()),
            dir: Direction::Out,
            mark: None,
        };
        same_request(&id.request(kind::DELPOLICY, 1), &fixture("policy_delete"));
    }

    #[test]
    fn request_round_trips_through_state_decoder() {
        let mut p = PolicySpec::transport(
            Selector::host_to_host(a(), b()).with_proto(17),
            Direction::Out,
            0x4942_0007,
        );
        p.mark = Some(Mark {
            value: 1,
            mask: 0xff,
        });
        let msg = p.request(true, 3);
        let st = PolicyState::parse(&msg[HEADER_LEN..]).unwrap();
        assert_eq!(st.selector, Some(p.selector));
        assert_eq!(
            (st.dir, st.action, st.priority),
            (Direction::Out, Action::Allow, DEFAULT_PRIORITY)
        );
        assert_eq!(st.templates, p.templates);
        assert_eq!(st.mark, p.mark);
        assert_eq!(st.id(), Some(p.id()));
        assert!(!st.socket);
        for n in 0..msg.len() - HEADER_LEN {
            let _ = PolicyState::parse(&msg[HEADER_LEN..HEADER_LEN + n]);
        }
        // The same policy as a socket policy (direction + XFRM_POLICY_MAX) has no id.
        let mut sock = msg[HEADER_LEN..].to_vec();
        sock[160] += 3;
        let st = PolicyState::parse(&sock).unwrap();
        assert!(st.socket && st.dir == Direction::Out && st.id().is_none());
        sock[160] = 6;
        assert!(PolicyState::parse(&sock).is_err());
    }

    #[test]
    fn kernel_state_dump_reply_decodes() {
        // `ip xfrm state list` after two ALLOCSPI requests: larval SAs, no algorithms.
        let reply = fixture("reply_state_dump");
        let sas: Vec<crate::sa::SaState> = crate::netlink::Messages::new(&reply)
            .map(Result::unwrap)
            .filter(|m| m.header.kind == kind::NEWSA)
            .map(|m| crate::sa::SaState::parse(m.payload).unwrap())
            .collect();
        assert!(!sas.is_empty());
        for sa in &sas {
            assert!(sa.is_larval());
            assert_eq!((sa.src, sa.id.dst, sa.reqid), (b(), a(), 5));
            assert!((0x100..=0x200).contains(&sa.id.spi));
            // Larval SAs live for net.core.xfrm_acq_expires (30 s by default).
            assert_eq!(sa.lifetime.hard_add_seconds, 30);
        }
    }

    #[test]
    fn kernel_dump_reply_decodes() {
        // What the kernel sent back for `ip xfrm policy list` after
        // `ip xfrm policy add src A dst B dir out tmpl src A dst B proto esp reqid 1 mode transport`.
        let reply = fixture("reply_policy_dump");
        let msgs: Vec<_> = crate::netlink::Messages::new(&reply)
            .map(Result::unwrap)
            .collect();
        let pols: Vec<PolicyState> = msgs
            .iter()
            .filter(|m| m.header.kind == kind::NEWPOLICY)
            .map(|m| PolicyState::parse(m.payload).unwrap())
            .collect();
        // capture.sh leaves three policies: the inbound TCP one, the tunnel one, and the
        // outbound one it deleted and added again.
        assert_eq!(pols.len(), 3);
        let out = pols
            .iter()
            .find(|p| p.selector == Some(Selector::host_to_host(a(), b())))
            .unwrap();
        assert_eq!(out.dir, Direction::Out);
        assert_eq!(
            out.templates,
            vec![Template::esp(a(), b(), Mode::Transport, 1)]
        );
        assert!(out.index != 0);
        let tcp = pols.iter().find(|p| p.priority == 1000).unwrap();
        assert_eq!(tcp.selector.unwrap().src_port, Some(2049));
        assert_eq!(tcp.dir, Direction::In);
        assert!(pols.iter().any(|p| p.templates[0].mode == Mode::Tunnel));
    }
}

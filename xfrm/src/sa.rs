//! Security associations: what we ask the kernel to install (`SaSpec`, `SpiRequest`), how we
//! name one (`SaId`), and what the kernel reports back (`SaState`). Encoders write
//! `xfrm_usersa_info` (224 bytes on Linux x86-64 and every 64-bit ABI: the struct ends in three
//! `u8`s after a `u32`, so it is padded to the 8-byte alignment of its `u64` lifetimes),
//! `xfrm_userspi_info` and `xfrm_usersa_id` byte for byte as iproute2 does.

use std::net::IpAddr;

use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmInfo, Crypto};
use crate::error::DecodeError;
use crate::lifetime::{LifetimeConfig, LifetimeCurrent, CFG_LEN};
use crate::message::{attr, kind, IPPROTO_ESP, UDP_ENCAP_ESPINUDP};
use crate::netlink::{
    u16_at, u32_at, Attrs, Builder, HEADER_LEN, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::selector::{self, family_of, get_addr, need, put_addr, Selector, SELECTOR_LEN};

/// `sizeof(struct xfrm_usersa_info)`.
pub const USERSA_INFO_LEN: usize = 224;
/// `sizeof(struct xfrm_usersa_id)`.
pub const USERSA_ID_LEN: usize = 24;
/// `sizeof(struct xfrm_userspi_info)`.
pub const USERSPI_INFO_LEN: usize = 232;
/// `sizeof(struct xfrm_encap_tmpl)`.
pub const ENCAP_LEN: usize = 24;
/// `sizeof(struct xfrm_replay_state_esn)` without its bitmap.
pub const REPLAY_ESN_LEN: usize = 24;
/// Largest replay window we configure (bits). The kernel caps the ESN bitmap at 4096 bytes;
/// 4096 bits is far beyond what reordering on one path needs.
pub const MAX_REPLAY_WINDOW: u32 = 4096;

/// `XFRM_STATE_ESN`.
const FLAG_ESN: u8 = 128;

/// Offsets inside `xfrm_usersa_info`.
mod off {
    pub(super) const ID_DADDR: usize = 56;
    pub(super) const ID_SPI: usize = 72;
    pub(super) const ID_PROTO: usize = 76;
    pub(super) const SADDR: usize = 80;
    pub(super) const LFT: usize = 96;
    pub(super) const CURLFT: usize = 160;
    pub(super) const STATS: usize = 192;
    pub(super) const REQID: usize = 208;
    pub(super) const FAMILY: usize = 212;
    pub(super) const MODE: usize = 214;
    pub(super) const REPLAY_WINDOW: usize = 215;
    pub(super) const FLAGS: usize = 216;
}

/// Encapsulation mode of an SA or template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Transport mode (RFC 4301 §4.1): the IP header is the peers' own.
    Transport,
    /// Tunnel mode: an outer IP header between the gateways.
    Tunnel,
}

impl Mode {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Mode::Transport => 0,
            Mode::Tunnel => 1,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Mode::Transport),
            1 => Ok(Mode::Tunnel),
            other => Err(DecodeError::Unknown {
                what: "XFRM mode",
                value: u32::from(other),
            }),
        }
    }
}

/// An XFRM mark: the SA/policy applies to packets whose `skb->mark & mask == value`. Note that
/// inbound ESP packets carry mark 0, so a mark with a non-zero mask on an inbound SA makes it
/// unreachable; marks are for fwmark-steered traffic, not for labelling ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    /// Value.
    pub value: u32,
    /// Mask.
    pub mask: u32,
}

impl Mark {
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.value.to_ne_bytes());
        b[4..].copy_from_slice(&self.mask.to_ne_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need("xfrm_mark", b, 8)?;
        Ok(Mark {
            value: u32_at(b, 0),
            mask: u32_at(b, 4),
        })
    }
}

/// NAT traversal (RFC 3948): ESP inside UDP between these ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// UDP source port of ESP packets sent with this SA (ours for outbound).
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// Original address before NAT, for transport-mode checksum fix-up (RFC 3948 §3.1.2);
    /// `None` sends zeros, which Linux accepts (it does not use it for ESP in UDP).
    pub original_address: Option<IpAddr>,
}

impl Encap {
    fn to_bytes(self) -> [u8; ENCAP_LEN] {
        let mut b = [0u8; ENCAP_LEN];
        b[0..2].copy_from_slice(&UDP_ENCAP_ESPINUDP.to_ne_bytes());
        b[2..4].copy_from_slice(&self.src_port.to_be_bytes());
        b[4..6].copy_from_slice(&self.dst_port.to_be_bytes());
        if let Some(a) = self.original_address {
            put_addr(&mut b[8..24], a);
        }
        b
    }

    fn parse(b: &[u8], family: u16) -> Result<Self, DecodeError> {
        need("xfrm_encap_tmpl", b, ENCAP_LEN)?;
        let kind = u16_at(b, 0);
        if kind != UDP_ENCAP_ESPINUDP {
            return Err(DecodeError::Unknown {
                what: "encapsulation type",
                value: u32::from(kind),
            });
        }
        let oa = get_addr(&b[8..24], family)?;
        Ok(Encap {
            src_port: u16::from_be_bytes([b[2], b[3]]),
            dst_port: u16::from_be_bytes([b[4], b[5]]),
            original_address: (!oa.is_unspecified()).then_some(oa),
        })
    }
}

/// Anti-replay settings (RFC 4303 §3.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Window size in packets; 0 disables the check (what outbound SAs use).
    pub window: u32,
    /// 64-bit extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            window: 32,
            esn: false,
        }
    }
}

/// Names one SA: destination, SPI, protocol (RFC 4301 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaId {
    /// Destination address.
    pub dst: IpAddr,
    /// SPI (host order here; big-endian on the wire).
    pub spi: u32,
    /// IPPROTO_ESP or IPPROTO_AH.
    pub proto: u8,
    /// The SA's mark, which is part of the kernel's lookup key when set.
    pub mark: Option<Mark>,
}

impl SaId {
    /// An unmarked ESP SA.
    pub fn esp(dst: IpAddr, spi: u32) -> Self {
        SaId {
            dst,
            spi,
            proto: IPPROTO_ESP,
            mark: None,
        }
    }

    fn emit(&self, out: &mut [u8]) {
        out[..USERSA_ID_LEN].fill(0);
        put_addr(&mut out[0..16], self.dst);
        out[16..20].copy_from_slice(&self.spi.to_be_bytes());
        out[20..22].copy_from_slice(&family_of(self.dst).to_ne_bytes());
        out[22] = self.proto;
    }

    /// DELSA or GETSA for this SA; `src` narrows the match as iproute2 does.
    pub(crate) fn request(&self, msg_kind: u16, src: Option<IpAddr>, seq: u32) -> Vec<u8> {
        let mut id = [0u8; USERSA_ID_LEN];
        self.emit(&mut id);
        // A GET is answered by the SA itself; only changes ask for an ACK.
        let flags = if msg_kind == kind::GETSA {
            NLM_F_REQUEST
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        let b = Builder::new(msg_kind, flags, seq).fixed(&id);
        let b = match src {
            Some(a) => {
                let mut addr = [0u8; 16];
                put_addr(&mut addr, a);
                b.attr(attr::SRCADDR, &addr)
            }
            None => b,
        };
        match self.mark {
            Some(m) => b.attr(attr::MARK, &m.to_bytes()).finish(),
            None => b.finish(),
        }
    }
}

/// An SA to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSpec {
    /// Source address of ESP packets.
    pub src: IpAddr,
    /// Destination address of ESP packets.
    pub dst: IpAddr,
    /// SPI the receiver chose.
    pub spi: u32,
    /// IPPROTO_ESP (default) or IPPROTO_AH.
    pub proto: u8,
    /// Transport or tunnel.
    pub mode: Mode,
    /// Request id tying the SA to its policy's template; must be in our range
    /// (`ownership::REQIDS`).
    pub reqid: u32,
    /// Traffic the SA may carry; `None` leaves it to the policy (as `ip xfrm state add`).
    pub selector: Option<Selector>,
    /// Transform and keys.
    pub crypto: Crypto,
    /// Anti-replay.
    pub replay: Replay,
    /// Soft/hard limits.
    pub lifetime: LifetimeConfig,
    /// UDP encapsulation for NAT-T.
    pub encap: Option<Encap>,
    /// Optional mark.
    pub mark: Option<Mark>,
}

impl SaSpec {
    /// A transport-mode ESP SA with a 32-packet replay window and no limits.
    pub fn transport(src: IpAddr, dst: IpAddr, spi: u32, reqid: u32, crypto: Crypto) -> Self {
        SaSpec {
            src,
            dst,
            spi,
            proto: IPPROTO_ESP,
            mode: Mode::Transport,
            reqid,
            selector: None,
            crypto,
            replay: Replay::default(),
            lifetime: LifetimeConfig::unlimited(),
            encap: None,
            mark: None,
        }
    }

    /// Its id.
    pub fn id(&self) -> SaId {
        SaId {
            dst: self.dst,
            spi: self.spi,
            proto: self.proto,
            mark: self.mark,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err("SA source and destination mix IPv4 and IPv6".into());
        }
        if self.spi < 256 {
            // RFC 4303 §2.1: SPIs 1..255 are reserved by IANA, 0 is never sent.
            return Err(format!(
                "SPI {:#x} is reserved (must be at least 256)",
                self.spi
            ));
        }
        if self.replay.window > MAX_REPLAY_WINDOW {
            return Err(format!(
                "replay window {} above {MAX_REPLAY_WINDOW}",
                self.replay.window
            ));
        }
        if let Some(sel) = &self.selector {
            sel.validate()?;
            if sel.src.is_ipv4() != self.src.is_ipv4() {
                return Err("SA selector family differs from the SA's".into());
            }
        }
        self.lifetime.validate()?;
        self.crypto.validate()
    }

    /// NEWSA (`update` false) or UPDSA request. The returned buffer holds key bytes and is
    /// zeroized when dropped.
    pub(crate) fn request(&self, update: bool, seq: u32) -> Zeroizing<Vec<u8>> {
        let mut info = [0u8; USERSA_INFO_LEN];
        match &self.selector {
            Some(sel) => sel.emit(&mut info[..SELECTOR_LEN]),
            None => selector::emit_any(&mut info[..SELECTOR_LEN]),
        }
        put_addr(&mut info[off::ID_DADDR..off::ID_DADDR + 16], self.dst);
        info[off::ID_SPI..off::ID_SPI + 4].copy_from_slice(&self.spi.to_be_bytes());
        info[off::ID_PROTO] = self.proto;
        put_addr(&mut info[off::SADDR..off::SADDR + 16], self.src);
        self.lifetime.emit(&mut info[off::LFT..off::LFT + CFG_LEN]);
        info[off::REQID..off::REQID + 4].copy_from_slice(&self.reqid.to_ne_bytes());
        info[off::FAMILY..off::FAMILY + 2].copy_from_slice(&family_of(self.dst).to_ne_bytes());
        info[off::MODE] = self.mode.to_u8();
        // The legacy replay state is a 32-bit bitmap; anything larger, or ESN, needs
        // XFRMA_REPLAY_ESN_VAL (the kernel sizes the bitmap from bmp_len).
        let esn_attr = self.replay.esn || self.replay.window > 32;
        if !esn_attr {
            info[off::REPLAY_WINDOW] = self.replay.window as u8;
        }
        if self.replay.esn {
            info[off::FLAGS] |= FLAG_ESN;
        }

        let kind = if update { kind::UPDSA } else { kind::NEWSA };
        let capacity = HEADER_LEN + USERSA_INFO_LEN + self.crypto.encoded_len() + 128;
        let mut b =
            Builder::with_capacity(kind, NLM_F_REQUEST | NLM_F_ACK, seq, capacity).fixed(&info);
        b = self.crypto.emit(b);
        if let Some(encap) = self.encap {
            b = b.attr(attr::ENCAP, &encap.to_bytes());
        }
        if esn_attr {
            let mut r = [0u8; REPLAY_ESN_LEN];
            let bmp_len = self.replay.window.div_ceil(32).max(1);
            r[0..4].copy_from_slice(&bmp_len.to_ne_bytes());
            r[20..24].copy_from_slice(&self.replay.window.to_ne_bytes());
            b = b.attr(attr::REPLAY_ESN_VAL, &r);
        }
        if let Some(mark) = self.mark {
            b = b.attr(attr::MARK, &mark.to_bytes());
        }
        Zeroizing::new(b.finish())
    }
}

/// ALLOCSPI: reserve an inbound SPI in `min..=max` (a larval SA the kernel keeps for
/// `net.core.xfrm_acq_expires` seconds, 30 by default, until UPDSA fills it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiRequest {
    /// The peer (source of inbound ESP).
    pub src: IpAddr,
    /// Us (destination of inbound ESP).
    pub dst: IpAddr,
    /// IPPROTO_ESP.
    pub proto: u8,
    /// Mode of the SA that will fill it.
    pub mode: Mode,
    /// Its reqid (must be ours).
    pub reqid: u32,
    /// Lowest SPI acceptable.
    pub min: u32,
    /// Highest SPI acceptable.
    pub max: u32,
    /// Optional mark (must match the SA that fills it).
    pub mark: Option<Mark>,
}

impl SpiRequest {
    /// Any SPI from 256 up (RFC 4303 §2.1 reserves 1..255) for an ESP transport SA.
    pub fn esp_transport(src: IpAddr, dst: IpAddr, reqid: u32) -> Self {
        SpiRequest {
            src,
            dst,
            proto: IPPROTO_ESP,
            mode: Mode::Transport,
            reqid,
            min: 0x100,
            max: 0xffff_ffff,
            mark: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err("SPI request mixes IPv4 and IPv6".into());
        }
        if self.min < 256 || self.min > self.max {
            return Err(format!(
                "SPI range {:#x}..={:#x} is empty or reserved",
                self.min, self.max
            ));
        }
        Ok(())
    }

    pub(crate) fn request(&self, seq: u32) -> Vec<u8> {
        let mut b = [0u8; USERSPI_INFO_LEN];
        put_addr(&mut b[off::ID_DADDR..off::ID_DADDR + 16], self.dst);
        b[off::ID_PROTO] = self.proto;
        put_addr(&mut b[off::SADDR..off::SADDR + 16], self.src);
        b[off::REQID..off::REQID + 4].copy_from_slice(&self.reqid.to_ne_bytes());
        b[off::FAMILY..off::FAMILY + 2].copy_from_slice(&family_of(self.dst).to_ne_bytes());
        b[off::MODE] = self.mode.to_u8();
        b[USERSA_INFO_LEN..USERSA_INFO_LEN + 4].copy_from_slice(&self.min.to_ne_bytes());
        b[USERSA_INFO_LEN + 4..USERSA_INFO_LEN + 8].copy_from_slice(&self.max.to_ne_bytes());
        let builder = Builder::new(kind::ALLOCSPI, NLM_F_REQUEST, seq).fixed(&b);
        match self.mark {
            Some(m) => builder.attr(attr::MARK, &m.to_bytes()).finish(),
            None => builder.finish(),
        }
    }
}

/// The kernel's error counters for an SA (`struct xfrm_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaStats {
    /// Packets dropped as outside the replay window.
    pub replay_window: u32,
    /// Packets dropped as replays.
    pub replay: u32,
    /// Packets that failed integrity checks.
    pub integrity_failed: u32,
}

/// Sequence numbers the kernel reports (legacy or ESN replay state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceNumbers {
    /// Last sequence number sent.
    pub outbound: u64,
    /// Highest sequence number received.
    pub inbound: u64,
}

/// An SA as the kernel reports it (GETSA, dumps, EXPIRE). Keys are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    /// Destination, SPI, protocol.
    pub id: SaId,
    /// Source address.
    pub src: IpAddr,
    /// Request id.
    pub reqid: u32,
    /// Mode.
    pub mode: Mode,
    /// Selector, if the SA has one.
    pub selector: Option<Selector>,
    /// Configured limits.
    pub lifetime: LifetimeConfig,
    /// Counters: bytes, packets, add/use time.
    pub current: LifetimeCurrent,
    /// Error counters.
    pub stats: SaStats,
    /// Replay window (packets).
    pub replay_window: u32,
    /// Whether ESN is on.
    pub esn: bool,
    /// Sequence numbers, when the kernel included a replay state.
    pub sequence: Option<SequenceNumbers>,
    /// AEAD transform.
    pub aead: Option<AlgorithmInfo>,
    /// Cipher.
    pub cipher: Option<AlgorithmInfo>,
    /// Integrity algorithm.
    pub auth: Option<AlgorithmInfo>,
    /// NAT-T encapsulation.
    pub encap: Option<Encap>,
    /// Mark.
    pub mark: Option<Mark>,
}

impl SaState {
    /// True for the placeholder SA that ALLOCSPI creates, before UPDSA gives it keys.
    pub fn is_larval(&self) -> bool {
        self.aead.is_none() && self.cipher.is_none() && self.auth.is_none()
    }

    /// Decodes an `xfrm_usersa_info` followed by attributes (the payload of NEWSA/UPDSA
    /// replies and dump entries). Attributes start at `attrs_at`.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        Self::parse_with_attrs(payload, USERSA_INFO_LEN)
    }

    pub(crate) fn parse_with_attrs(payload: &[u8], attrs_at: usize) -> Result<Self, DecodeError> {
        need("xfrm_usersa_info", payload, USERSA_INFO_LEN)?;
        let info = &payload[..USERSA_INFO_LEN];
        let family = u16_at(info, off::FAMILY);
        let mut sa = SaState {
            id: SaId {
                dst: get_addr(&info[off::ID_DADDR..], family)?,
                spi: u32::from_be_bytes([
                    info[off::ID_SPI],
                    info[off::ID_SPI + 1],
                    info[off::ID_SPI + 2],
                    info[off::ID_SPI + 3],
                ]),
                proto: info[off::ID_PROTO],
                mark: None,
            },
            src: get_addr(&info[off::SADDR..], family)?,
            reqid: u32_at(info, off::REQID),
            mode: Mode::from_u8(info[off::MODE])?,
            selector: Selector::parse(&info[..SELECTOR_LEN])?,
            lifetime: LifetimeConfig::parse(&info[off::LFT..])?,
            current: LifetimeCurrent::parse(&info[off::CURLFT..])?,
            stats: SaStats {
                replay_window: u32_at(info, off::STATS),
                replay: u32_at(info, off::STATS + 4),
                integrity_failed: u32_at(info, off::STATS + 8),
            },
            replay_window: u32::from(info[off::REPLAY_WINDOW]),
            esn: info[off::FLAGS] & FLAG_ESN != 0,
            sequence: None,
            aead: None,
            cipher: None,
            auth: None,
            encap: None,
            mark: None,
        };
        for a in Attrs::new(payload.get(attrs_at..).unwrap_or(&[])) {
            let a = a?;
            match a.kind {
                attr::ALG_AEAD => sa.aead = Some(AlgorithmInfo::parse(a.value, true)?),
                attr::ALG_CRYPT => sa.cipher = Some(AlgorithmInfo::parse(a.value, false)?),
                attr::ALG_AUTH_TRUNC => sa.auth = Some(AlgorithmInfo::parse(a.value, true)?),
                attr::ALG_AUTH if sa.auth.is_none() => {
                    sa.auth = Some(AlgorithmInfo::parse(a.value, false)?)
                }
                attr::ENCAP => sa.encap = Some(Encap::parse(a.value, family)?),
                attr::MARK => {
                    sa.mark = Some(Mark::parse(a.value)?);
                    sa.id.mark = sa.mark;
                }
                attr::LTIME_VAL => sa.current = LifetimeCurrent::parse(a.value)?,
                attr::REPLAY_VAL => {
                    need("xfrm_replay_state", a.value, 12)?;
                    sa.sequence = Some(SequenceNumbers {
                        outbound: u64::from(u32_at(a.value, 0)),
                        inbound: u64::from(u32_at(a.value, 4)),
                    });
                }
                attr::REPLAY_ESN_VAL => {
                    need("xfrm_replay_state_esn", a.value, REPLAY_ESN_LEN)?;
                    let hi_lo = |hi: usize, lo: usize| {
                        (u64::from(u32_at(a.value, hi)) << 32) | u64::from(u32_at(a.value, lo))
                    };
                    sa.sequence = Some(SequenceNumbers {
                        outbound: hi_lo(12, 4),
                        inbound: hi_lo(16, 8),
                    });
                    sa.replay_window = u32_at(a.value, 20);
                }
                _ => {}
            }
        }
        Ok(sa)
    }
}

/// GETSA dump request (all SAs).
pub(crate) fn dump_request(seq: u32) -> Vec<u8> {
    // The kernel reads an optional xfrm_address_filter; an empty body dumps everything.
    Builder::new(kind::GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{fixture, same_request};

    fn a() -> IpAddr {
        "10.99.0.1".parse().unwrap()
    }
    fn b() -> IpAddr {
        "10.99.0.2".parse().unwrap()
    }
    const GKEY: [u8; 20] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ];

    #[test]
    fn gcm_sa_matches_iproute2() {
        let sa = SaSpec::transport(a(), b(), 0x1001, 1, Crypto::aes_gcm(&GKEY).unwrap());
        same_request(&sa.request(false, 1), &fixture("sa_gcm"));
    }

    #[test]
    fn cbc_hmac_sa_matches_iproute2() {
        let ck: Vec<u8> = (0..16).collect();
        let ak: Vec<u8> = (0x10..0x30).collect();
        let mut sa = SaSpec::transport(
            a(),
            b(),
            0x1002,
            2,
            Crypto::aes_cbc_hmac_sha256(&ck, &ak).unwrap(),
        );
        sa.replay.window = 0;
        same_request(&sa.request(false, 1), &fixture("sa_cbc_hmac"));
    }

    #[test]
    fn natt_esn_lifetime_mark_update_matches_iproute2() {
        let mut sa = SaSpec::transport(a(), b(), 0x1003, 3, Crypto::aes_gcm(&GKEY).unwrap());
        sa.replay = Replay {
            window: 128,
            esn: true,
        };
        sa.encap = Some(Encap {
            src_port: 4500,
            dst_port: 4501,
            original_address: None,
        });
        sa.mark = Some(Mark {
            value: 0x4950_0000,
            mask: 0xffff_ffff,
        });
        sa.lifetime = LifetimeConfig::time_and_bytes(60, 120, 1000, 2000);
        same_request(&sa.request(true, 1), &fixture("sa_natt_esn"));
    }

    #[test]
    fn ipv6_sa_matches_iproute2() {
        let sa = SaSpec::transport(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            0x1004,
            4,
            Crypto::aes_gcm(&GKEY).unwrap(),
        );
        let mut sa = sa;
        sa.replay.window = 0;
        same_request(&sa.request(false, 1), &fixture("sa_v6"));
    }

    #[test]
    fn delete_get_and_allocspi_match_iproute2() {
        let id = SaId::esp(b(), 0x1001);
        same_request(
            &id.request(kind::DELSA, Some(a()), 1),
            &fixture("sa_delete"),
        );
        same_request(&id.request(kind::GETSA, Some(a()), 1), &fixture("sa_get"));
        let mut req = SpiRequest::esp_transport(b(), a(), 5);
        req.min = 0x100;
        req.max = 0x200;
        same_request(&req.request(1), &fixture("allocspi"));
    }

    #[test]
    fn spec_round_trips_through_state_decoder() {
        let mut sa = SaSpec::transport(
            a(),
            b(),
            0xdead_beef,
            0x4942_0001,
            Crypto::aes_gcm(&GKEY).unwrap(),
        );
        sa.replay = Replay {
            window: 64,
            esn: true,
        };
        sa.encap = Some(Encap {
            src_port: 4500,
            dst_port: 4500,
            original_address: Some(a()),
        });
        sa.selector = Some(
            Selector::host_to_host(a(), b())
                .with_proto(6)
                .with_dst_port(2049),
        );
        sa.lifetime = LifetimeConfig::time_and_bytes(3000, 3600, 1 << 40, 1 << 41);
        let msg = sa.request(false, 9);
        let st = SaState::parse(&msg[HEADER_LEN..]).unwrap();
        assert_eq!(st.id, sa.id());
        assert_eq!(
            (st.src, st.reqid, st.mode),
            (a(), 0x4942_0001, Mode::Transport)
        );
        assert_eq!(st.selector, sa.selector);
        assert_eq!(st.lifetime, sa.lifetime);
        assert_eq!((st.replay_window, st.esn), (64, true));
        assert_eq!(st.encap, sa.encap);
        let aead = st.aead.clone().unwrap();
        assert_eq!(
            (aead.name.as_str(), aead.key_bits, aead.icv_bits),
            ("rfc4106(gcm(aes))", 160, Some(128))
        );
        assert!(!st.is_larval());
    }

    #[test]
    fn decoder_survives_every_truncation() {
        let sa = SaSpec::transport(a(), b(), 0x1001, 1, Crypto::aes_gcm(&GKEY).unwrap());
        let msg = sa.request(false, 1);
        let payload = &msg[HEADER_LEN..];
        for n in 0..payload.len() {
            let _ = SaState::parse(&payload[..n]);
        }
        assert!(SaState::parse(&payload[..USERSA_INFO_LEN - 1]).is_err());
    }

    #[test]
    fn validation() {
        let ok = SaSpec::transport(a(), b(), 0x1001, 1, Crypto::aes_gcm(&GKEY).unwrap());
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.spi = 5;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.dst = "::1".parse().unwrap();
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.replay.window = 5000;
        assert!(bad.validate().is_err());
        let mut r = SpiRequest::esp_transport(a(), b(), 1);
        assert!(r.validate().is_ok());
        r.min = 1;
        assert!(r.validate().is_err());
    }
}

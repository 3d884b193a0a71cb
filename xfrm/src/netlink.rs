//! Netlink framing (RFC 3549 §2.3.2): the 16-byte `nlmsghdr`, 4-byte-aligned attributes
//! (`nlattr`), NLMSG_ERROR/ACK with extended-ack TLVs, and a message builder. Sans-IO: bytes
//! in, values out.

use crate::error::DecodeError;

/// `sizeof(struct nlmsghdr)`.
pub const HEADER_LEN: usize = 16;
/// `sizeof(struct nlattr)`.
pub const ATTR_HEADER_LEN: usize = 4;

/// NLMSG_NOOP.
pub const NLMSG_NOOP: u16 = 1;
/// NLMSG_ERROR: an error or, with errno 0, an ACK.
pub const NLMSG_ERROR: u16 = 2;
/// NLMSG_DONE: end of a dump.
pub const NLMSG_DONE: u16 = 3;

/// Request flag.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Part of a multipart reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// Ask for an ACK.
pub const NLM_F_ACK: u16 = 0x4;
/// Dump was inconsistent because the table changed while it ran.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Dump request (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// In an NLMSG_ERROR: extended-ack TLVs follow the echoed header.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// In an NLMSG_ERROR: the echoed request was capped to its header (NETLINK_CAP_ACK).
pub const NLM_F_CAPPED: u16 = 0x100;

/// Extended ack attribute: the kernel's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Rounds `len` up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A decoded `nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total length including this header.
    pub len: u32,
    /// Message type.
    pub kind: u16,
    /// NLM_F_* flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Sender port id.
    pub pid: u32,
}

impl Header {
    /// Parses the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                what: "nlmsghdr",
                need: HEADER_LEN,
                got: buf.len(),
            });
        }
        Ok(Header {
            len: u32_at(buf, 0),
            kind: u16_at(buf, 4),
            flags: u16_at(buf, 6),
            seq: u32_at(buf, 8),
            pid: u32_at(buf, 12),
        })
    }

    fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.kind.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        out[12..16].copy_from_slice(&self.pid.to_ne_bytes());
    }
}

/// One netlink message borrowed from a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Its header.
    pub header: Header,
    /// The bytes after the header, up to `header.len`.
    pub payload: &'a [u8],
}

/// Iterates the messages packed in one datagram. Stops with an error on a length that does
/// not fit, so a corrupt buffer is never read past its end.
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    /// Iterates over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let header = match Header::parse(self.buf) {
            Ok(h) => h,
            Err(e) => {
                self.buf = &[];
                return Some(Err(e));
            }
        };
        let len = header.len as usize;
        if len < HEADER_LEN || len > self.buf.len() {
            let max = self.buf.len();
            self.buf = &[];
            return Some(Err(DecodeError::BadLength {
                what: "nlmsg_len",
                len,
                max,
            }));
        }
        let payload = &self.buf[HEADER_LEN..len];
        self.buf = self.buf.get(align(len)..).unwrap_or(&[]);
        Some(Ok(Message { header, payload }))
    }
}

/// One attribute: type (with the nested/byte-order bits masked off) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Attribute type.
    pub kind: u16,
    /// Value bytes (without padding).
    pub value: &'a [u8],
}

/// Iterates the attributes in `buf`.
pub struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Iterates over the attribute area `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < ATTR_HEADER_LEN {
            // Trailing bytes shorter than an attribute header are padding.
            self.buf = &[];
            return None;
        }
        let len = u16_at(self.buf, 0) as usize;
        let kind = u16_at(self.buf, 2) & 0x3fff;
        if len < ATTR_HEADER_LEN || len > self.buf.len() {
            let max = self.buf.len();
            self.buf = &[];
            return Some(Err(DecodeError::BadLength {
                what: "nla_len",
                len,
                max,
            }));
        }
        let value = &self.buf[ATTR_HEADER_LEN..len];
        self.buf = self.buf.get(align(len)..).unwrap_or(&[]);
        Some(Ok(Attr { kind, value }))
    }
}

/// Builds one request: header, fixed part, attributes. The length is patched in `finish`.
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// Starts a message of `kind` with `flags` and sequence number `seq`.
    pub fn new(kind: u16, flags: u16, seq: u32) -> Self {
        Self::with_capacity(kind, flags, seq, 256)
    }

    /// Like `new`, reserving `capacity` bytes up front. Requests that carry keys reserve their
    /// whole size so the buffer never reallocates and leaves no stray copy of a key behind.
    pub fn with_capacity(kind: u16, flags: u16, seq: u32, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        Header {
            len: 0,
            kind,
            flags,
            seq,
            pid: 0,
        }
        .emit(&mut buf);
        Builder { buf }
    }

    /// Appends the fixed-size family header (already laid out by the caller), padded.
    pub fn fixed(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends an attribute.
    pub fn attr(self, kind: u16, value: &[u8]) -> Self {
        self.attr_parts(kind, &[value])
    }

    /// Appends an attribute whose value is the concatenation of `parts` (so a key can be
    /// written straight into the message without a temporary copy).
    pub fn attr_parts(mut self, kind: u16, parts: &[&[u8]]) -> Self {
        let len = ATTR_HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>();
        // XFRM attributes are far below 64 KiB; the request builders bound every variable part.
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.pad();
        self
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// Writes the total length and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Several finished requests sent in one datagram by
/// [`NetlinkSocket::transact_batch`](crate::socket::NetlinkSocket::transact_batch): for
/// nfnetlink transactions (`NFNL_MSG_BATCH_BEGIN` … `NFNL_MSG_BATCH_END`) or to save system
/// calls. Give every message its own sequence number
/// ([`reserve_seq`](crate::socket::NetlinkSocket::reserve_seq)); the batch records which
/// ones asked for an ACK.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    buf: Vec<u8>,
    seqs: Vec<u32>,
    acked: Vec<u32>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one finished message (as [`Builder::finish`] returns it). Fails if `msg` is
    /// not exactly one netlink message.
    pub fn push(&mut self, msg: &[u8]) -> Result<(), DecodeError> {
        let h = Header::parse(msg)?;
        if h.len as usize != msg.len() {
            return Err(DecodeError::BadLength {
                what: "nlmsg_len of a batch message",
                len: h.len as usize,
                max: msg.len(),
            });
        }
        self.buf.extend_from_slice(msg);
        self.buf.resize(align(self.buf.len()), 0);
        self.seqs.push(h.seq);
        if h.flags & NLM_F_ACK != 0 {
            self.acked.push(h.seq);
        }
        Ok(())
    }

    /// The datagram: every message, 4-byte aligned, in the order pushed.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Sequence numbers of all messages, in order.
    pub fn seqs(&self) -> &[u32] {
        &self.seqs
    }

    /// Sequence numbers of the messages that asked for an ACK.
    pub fn acked(&self) -> &[u32] {
        &self.acked
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no message was pushed.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// What an NLMSG_ERROR said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Positive errno, 0 for a plain ACK.
    pub errno: i32,
    /// Sequence number of the request it answers.
    pub seq: u32,
    /// Extended-ack message, if any.
    pub message: Option<String>,
}

/// Decodes the payload of an NLMSG_ERROR message (`struct nlmsgerr` + optional TLVs).
pub fn parse_ack(flags: u16, payload: &[u8]) -> Result<Ack, DecodeError> {
    if payload.len() < 4 + HEADER_LEN {
        return Err(DecodeError::Truncated {
            what: "nlmsgerr",
            need: 4 + HEADER_LEN,
            got: payload.len(),
        });
    }
    let error = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let echoed = Header::parse(&payload[4..])?;
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request is capped to its header when NLM_F_CAPPED is set, otherwise it
        // is whole and the TLVs follow it.
        let echoed_len = if flags & NLM_F_CAPPED != 0 {
            HEADER_LEN
        } else {
            align(echoed.len as usize)
        };
        if let Some(tlvs) = payload.get(4 + echoed_len..) {
            for attr in Attrs::new(tlvs) {
                let attr = attr?;
                if attr.kind == NLMSGERR_ATTR_MSG {
                    let text = attr.value.split(|b| *b == 0).next().unwrap_or(&[]);
                    message = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    Ok(Ack {
        errno: error.checked_neg().unwrap_or(i32::MAX),
        seq: echoed.seq,
        message,
    })
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_pads_and_patches_length() {
        let msg = Builder::new(0x10, NLM_F_REQUEST | NLM_F_ACK, 7)
            .fixed(&[1, 2, 3])
            .attr(5, &[9; 5])
            .finish();
        assert_eq!(msg.len(), 16 + 4 + 12);
        let h = Header::parse(&msg).unwrap();
        assert_eq!(
            h,
            Header {
                len: 32,
                kind: 0x10,
                flags: 5,
                seq: 7,
                pid: 0
            }
        );
        let attrs: Vec<_> = Attrs::new(&msg[20..]).map(Result::unwrap).collect();
        assert_eq!(
            attrs,
            vec![Attr {
                kind: 5,
                value: &[9; 5]
            }]
        );
    }

    #[test]
    fn messages_reject_lengths_past_the_buffer() {
        let mut msg = Builder::new(3, 0, 1).finish();
        msg[0] = 200;
        let got: Vec<_> = Messages::new(&msg).collect();
        assert!(matches!(got[..], [Err(DecodeError::BadLength { .. })]));
        assert!(Messages::new(&msg[..10]).next().unwrap().is_err());
    }

    #[test]
    fn attrs_reject_zero_length() {
        let buf = [0u8, 0, 1, 0, 0, 0, 0, 0];
        assert!(Attrs::new(&buf).next().unwrap().is_err());
    }

    #[test]
    fn ack_with_extended_message() {
        // NLMSG_ERROR payload as the kernel sends it with NETLINK_CAP_ACK + EXT_ACK:
        // errno -EPROTONOSUPPORT, capped echoed header, NLMSGERR_ATTR_MSG.
        let mut p = Vec::new();
        p.extend_from_slice(&(-libc::EPROTONOSUPPORT).to_ne_bytes());
        let echoed = Builder::new(0x10, 5, 42).finish();
        let mut echoed_hdr = echoed[..16].to_vec();
        echoed_hdr[0..4].copy_from_slice(&336u32.to_ne_bytes());
        p.extend_from_slice(&echoed_hdr);
        let text = b"Requested type not found\0";
        p.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(text);
        let ack = parse_ack(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).unwrap();
        assert_eq!(ack.errno, libc::EPROTONOSUPPORT);
        assert_eq!(ack.seq, 42);
        assert_eq!(ack.message.as_deref(), Some("Requested type not found"));
    }

    #[test]
    fn batch_concatenates_and_records_acks() {
        let mut b = Batch::new();
        b.push(&Builder::new(0x10, NLM_F_REQUEST, 1).fixed(&[0; 4]).finish())
            .unwrap();
        b.push(
            &Builder::new(0x0a00, NLM_F_REQUEST | NLM_F_ACK, 2)
                .attr(1, b"ab\0")
                .finish(),
        )
        .unwrap();
        b.push(&Builder::new(0x11, NLM_F_REQUEST, 3).finish())
            .unwrap();
        assert_eq!(
            (b.len(), b.seqs(), b.acked()),
            (3, &[1, 2, 3][..], &[2][..])
        );
        let seqs: Vec<u32> = Messages::new(b.bytes())
            .map(|m| m.unwrap().header.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        let one = Builder::new(0x10, 0, 4).finish();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert!(b.push(&two).is_err());
        assert!(b.push(&one[..8]).is_err());
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn plain_ack() {
        let mut p = 0i32.to_ne_bytes().to_vec();
        p.extend_from_slice(&Builder::new(0x13, 5, 9).finish());
        let ack = parse_ack(0, &p).unwrap();
        assert_eq!((ack.errno, ack.seq, ack.message), (0, 9, None));
        assert!(parse_ack(0, &p[..10]).is_err());
    }
}

//! Bounds-checked reading and writing of big-endian fields: the only place where the codec
//! touches byte offsets, so that no accessor elsewhere can index out of range.

use super::error::{Error, Result};

/// Reads fields from the front of a slice; every read that would overrun is `Truncated`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::BadLength {
            what: self.what,
            len: n,
        })?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Truncated {
            what: self.what,
            need: end,
            have: self.buf.len(),
        })?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails if anything is left: for structures whose length fields must add up exactly.
    pub(crate) fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            len => Err(Error::TrailingBytes {
                what: self.what,
                len,
            }),
        }
    }
}

/// Writes fields into a caller's buffer; a write past its end is `BufferTooSmall`.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Checks up front that `buf` holds `need` bytes, so emitters fail before writing anything.
    pub(crate) fn new(buf: &'a mut [u8], need: usize) -> Result<Self> {
        if buf.len() < need {
            return Err(Error::BufferTooSmall {
                need,
                have: buf.len(),
            });
        }
        Ok(Writer { buf, pos: 0 })
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> Result<()> {
        let have = self.buf.len();
        let end = self.pos + b.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall { need: end, have })?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) -> Result<()> {
        self.bytes(&[v])
    }

    pub(crate) fn u16(&mut self, v: u16) -> Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    /// The rest of the buffer, for nested emitters; the writer advances past `len` bytes of it.
    pub(crate) fn sub(&mut self, len: usize) -> Result<&mut [u8]> {
        let have = self.buf.len();
        let end = self.pos + len;
        let start = self.pos;
        self.pos = end;
        self.buf
            .get_mut(start..end)
            .ok_or(Error::BufferTooSmall { need: end, have })
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }
}

/// Reads a fixed-size field at `off`; zero when out of range. Views only call it on offsets
/// their `new_checked` has proven present, so the fallback is never observable there.
pub(crate) fn field<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = buf.get(off..off + N) {
        a.copy_from_slice(s);
    }
    a
}

pub(crate) fn get_u16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(field(buf, off))
}

pub(crate) fn get_u32(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(field(buf, off))
}

/// A length that must fit a 16-bit wire field.
pub(crate) fn len16(what: &'static str, len: usize) -> Result<u16> {
    u16::try_from(len).map_err(|_| Error::TooLong { what, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(&[1, 2, 3], "thing");
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(
            r.u16(),
            Err(Error::Truncated {
                what: "thing",
                need: 4,
                have: 3
            })
        );
        assert_eq!(
            r.take(usize::MAX).unwrap_err(),
            Error::BadLength {
                what: "thing",
                len: usize::MAX
            }
        );
    }

    #[test]
    fn writer_refuses_small_buffer() {
        let mut buf = [0u8; 3];
        assert!(Writer::new(&mut buf, 4).is_err());
        let mut w = Writer::new(&mut buf, 3).unwrap();
        w.u16(0xabcd).unwrap();
        assert!(w.u16(1).is_err());
        assert_eq!(buf, [0xab, 0xcd, 0]);
    }
}

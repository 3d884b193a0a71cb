use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret key material: zeroized on drop, never printed.
///
/// `Debug` shows only the length. Compare secrets with [`SecretBytes::ct_eq`], which runs in
/// constant time.
#[derive(Clone, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (length is not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.len() && bool::from(self.0.as_slice().ct_eq(other))
    }

    /// Appends `data`, moving to a larger buffer by hand (and wiping the old one) if the
    /// capacity is exhausted, so no stale copy of key bytes is left in freed memory.
    pub(crate) fn extend_within_capacity(&mut self, data: &[u8]) {
        let needed = self.0.len() + data.len();
        if needed > self.0.capacity() {
            let mut bigger = Vec::with_capacity(needed.max(2 * self.0.capacity()));
            bigger.extend_from_slice(&self.0);
            self.0.zeroize();
            self.0 = bigger;
        }
        self.0.extend_from_slice(data);
    }

    /// Shortens to `len` bytes, wiping the removed tail.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        }
    }

    /// Splits off consecutive keys of the given lengths; `None` if there are too few bytes.
    pub(crate) fn split(&self, lengths: &[usize]) -> Option<Vec<SecretBytes>> {
        let mut out = Vec::with_capacity(lengths.len());
        let mut at = 0usize;
        for &len in lengths {
            let end = at.checked_add(len)?;
            out.push(SecretBytes::from_slice(self.0.get(at..end)?));
            at = end;
        }
        Some(out)
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = SecretBytes::from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let text = format!("{s:?}");
        assert_eq!(text, "SecretBytes(<redacted 4 bytes>)");
        assert!(!text.to_lowercase().contains("de"));
    }

    #[test]
    fn split_and_ct_eq() {
        let s = SecretBytes::from_slice(&[1, 2, 3, 4, 5]);
        let parts = s.split(&[2, 0, 3]).unwrap();
        assert_eq!(parts[0].as_bytes(), &[1, 2]);
        assert!(parts[1].is_empty());
        assert_eq!(parts[2].as_bytes(), &[3, 4, 5]);
        assert!(s.split(&[3, 3]).is_none());
        assert!(s.ct_eq(&[1, 2, 3, 4, 5]));
        assert!(!s.ct_eq(&[1, 2, 3, 4, 6]));
        assert!(!s.ct_eq(&[1, 2, 3, 4]));
    }
}

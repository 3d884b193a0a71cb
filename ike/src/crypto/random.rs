/// The injected source of randomness.
///
/// The `ike` crate never draws randomness itself (sans-IO, see the crate doc): DH private
/// values, CBC IVs, nonces and SPIs come from an implementation of this trait owned by the
/// caller. Production drivers back it with the operating system's CSPRNG (e.g. `ring::rand::
/// SystemRandom` or `getrandom`); tests back it with a seeded deterministic generator so an
/// exchange can be replayed byte for byte.
///
/// Implementations must fill the whole buffer with cryptographically strong bytes, and must
/// not fail: a driver whose OS RNG fails should abort rather than return predictable bytes.
pub trait Random {
    /// Fills `buf` completely with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<R: Random + ?Sized> Random for &mut R {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}

impl<R: Random + ?Sized> Random for Box<R> {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}

/// A deterministic xorshift generator for tests (not cryptographically strong).
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl Random for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
    }
}

//! The random source the sans-IO IKE endpoint draws from (nonces, SPIs, DH secrets, jitter).

/// `ike::crypto::Random` over the operating system's generator (ring's `SystemRandom`,
/// `getrandom(2)`).
#[derive(Debug)]
pub(crate) struct SystemRng(ring::rand::SystemRandom);

impl SystemRng {
    pub(crate) fn new() -> Self {
        SystemRng(ring::rand::SystemRandom::new())
    }
}

impl ike::crypto::Random for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // `getrandom(2)` does not fail once the pool is initialised; if it ever did, going on
        // would mean predictable nonces and DH secrets, so the daemon stops instead.
        if self.0.fill(buf).is_err() {
            eprintln!("ibm-ipsec: the system random generator failed; stopping");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::crypto::Random;

    #[test]
    fn fills_with_distinct_bytes() {
        let mut rng = SystemRng::new();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        rng.fill(&mut a);
        rng.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}

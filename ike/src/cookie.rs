//! Stateless cookies for IKE_SA_INIT under load (RFC 7296 §2.6).
//!
//! When more responder SAs are half-open than the threshold allows, an IKE_SA_INIT request
//! without a valid `COOKIE` notify is answered with `N(COOKIE)` and forgotten: no SA, no DH
//! computation, nothing stored per request. An initiator that can receive at its source
//! address echoes the cookie and is served. The cookie is
//! `version ‖ HMAC-SHA-256(secret, Ni ‖ IPi ‖ SPIi)`, truncated to 16 bytes of MAC: the
//! secret comes from the injected random source and is replaced every rotation period; a
//! cookie made with the current or the previous secret is accepted (§2.6 suggests exactly
//! this version scheme), anything older or forged is not.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::hmac;

use crate::crypto::Random;

/// Bytes of the cookie: a 4-byte secret version and 16 bytes of MAC (§2.6 allows 1..=64).
pub const COOKIE_LEN: usize = 20;

/// When to demand cookies and how often to change the secret behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    /// Half-open responder SAs (IKE_SA_INIT answered, IKE_AUTH not yet done) at or above
    /// which IKE_SA_INIT requests must carry a valid cookie (strongSwan's
    /// `cookie_threshold`, 10 by default).
    pub threshold: usize,
    /// How long one secret is used; cookies stay valid for up to twice this.
    pub rotation: Duration,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        CookiePolicy {
            threshold: 10,
            rotation: Duration::from_secs(120),
        }
    }
}

struct Secret {
    version: u32,
    key: hmac::Key,
    created: Instant,
}

/// The responder's cookie secrets: the current one and its predecessor.
pub struct CookieJar {
    policy: CookiePolicy,
    current: Option<Secret>,
    previous: Option<Secret>,
}

impl core::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieJar")
            .field("policy", &self.policy)
            .field("version", &self.current.as_ref().map(|s| s.version))
            .finish_non_exhaustive()
    }
}

fn mac(key: &hmac::Key, version: u32, ni: &[u8], ip: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    // Length-prefixed nonce and a family tag: without them `Ni ‖ IPv6` of one request and
    // `Ni' ‖ IPv4` of another (Ni' = Ni ‖ the first 12 address bytes) are the same MAC
    // input, so a cookie fetched at an IPv6 address would admit a spoofed IPv4 source.
    ctx.update(&(ni.len() as u64).to_be_bytes());
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => {
            ctx.update(&[4]);
            ctx.update(&a.octets());
        }
        IpAddr::V6(a) => {
            ctx.update(&[6]);
            ctx.update(&a.octets());
        }
    }
    ctx.update(&spi_i.to_be_bytes());
    let tag = ctx.sign();
    let mut out = [0u8; COOKIE_LEN];
    out[..4].copy_from_slice(&version.to_be_bytes());
    out[4..].copy_from_slice(&tag.as_ref()[..COOKIE_LEN - 4]);
    out
}

impl CookieJar {
    /// A jar with no secret yet: the first is drawn when the first cookie is needed.
    pub fn new(policy: CookiePolicy) -> Self {
        CookieJar {
            policy,
            current: None,
            previous: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> CookiePolicy {
        self.policy
    }

    /// Rotates the secret when its period is over (or draws the first one).
    fn refresh(&mut self, now: Instant, rng: &mut dyn Random) {
        // A cookie lives at most two periods from its secret's creation, also after a quiet
        // spell with no rotation in between (the previous secret may be far older than one
        // period by the time the next request arrives).
        let rotation = self.policy.rotation;
        let stale = |s: &Secret| now.saturating_duration_since(s.created) >= rotation * 2;
        if self.previous.as_ref().is_some_and(stale) {
            self.previous = None;
        }
        let due = self.current.as_ref().map_or(true, |s| {
            now.saturating_duration_since(s.created) >= self.policy.rotation
        });
        if !due {
            return;
        }
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let version = match &self.current {
            Some(s) => s.version.wrapping_add(1),
            None => {
                let mut v = [0u8; 4];
                rng.fill(&mut v);
                u32::from_be_bytes(v)
            }
        };
        let next = Secret {
            version,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            created: now,
        };
        zeroize::Zeroize::zeroize(&mut key);
        self.previous = self.current.replace(next).filter(|s| !stale(s));
    }

    /// The cookie for an initiator (its nonce, address and SPI).
    pub fn make(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        self.refresh(now, rng);
        match &self.current {
            Some(s) => mac(&s.key, s.version, ni, ip, spi_i).to_vec(),
            None => Vec::new(), // unreachable: refresh always leaves a current secret
        }
    }

    /// Whether `cookie` was made by [`make`](Self::make) for these values with the current
    /// or the previous secret. Rotates first, so a secret older than two periods is gone.
    pub fn verify(
        &mut self,
        now: Instant,
        rng: &mut dyn Random,
        cookie: &[u8],
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> bool {
        self.refresh(now, rng);
        let Some(version) = cookie
            .get(..4)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
        else {
            return false;
        };
        [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .filter(|s| s.version == version)
            .any(|s| {
                let want = mac(&s.key, s.version, ni, ip, spi_i);
                bool::from(subtle::ConstantTimeEq::ct_eq(cookie, &want[..]))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededRandom;

    #[test]
    fn cookies_verify_for_two_periods_and_bind_their_inputs() {
        let policy = CookiePolicy {
            threshold: 0,
            rotation: Duration::from_secs(10),
        };
        let mut jar = CookieJar::new(policy);
        let mut rng = SeededRandom::new(1);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let c = jar.make(t0, &mut rng, b"nonce", ip, 7);
        assert_eq!(c.len(), COOKIE_LEN);
        assert!(jar.verify(t0, &mut rng, &c, b"nonce", ip, 7));
        // Bound to nonce, address and SPI.
        assert!(!jar.verify(t0, &mut rng, &c, b"other", ip, 7));
        assert!(!jar.verify(t0, &mut rng, &c, b"nonce", "192.0.2.2".parse().unwrap(), 7));
        assert!(!jar.verify(t0, &mut rng, &c, b"nonce", ip, 8));
        // Forged: flipped MAC bit, truncated, empty.
        let mut forged = c.clone();
        forged[10] ^= 1;
        assert!(!jar.verify(t0, &mut rng, &forged, b"nonce", ip, 7));
        assert!(!jar.verify(t0, &mut rng, &c[..19], b"nonce", ip, 7));
        assert!(!jar.verify(t0, &mut rng, &[], b"nonce", ip, 7));
        // One rotation later the previous secret still verifies it; after two it is gone.
        let t1 = t0 + Duration::from_secs(10);
        assert!(jar.verify(t1, &mut rng, &c, b"nonce", ip, 7));
        let t2 = t0 + Duration::from_secs(20);
        assert!(!jar.verify(t2, &mut rng, &c, b"nonce", ip, 7));
        // After a quiet spell (no rotation for many periods) the old secret is not kept as
        // the previous one, and a cookie from the middle of a period still expires two
        // periods after its secret was made.
        let mut quiet = CookieJar::new(policy);
        let q = quiet.make(t0, &mut rng, b"nonce", ip, 7);
        assert!(!quiet.verify(t0 + Duration::from_secs(100), &mut rng, &q, b"nonce", ip, 7));
        let mut mid = CookieJar::new(policy);
        let m = mid.make(t0, &mut rng, b"nonce", ip, 7);
        assert!(mid.verify(t0 + Duration::from_secs(15), &mut rng, &m, b"nonce", ip, 7));
        assert!(!mid.verify(t0 + Duration::from_secs(20), &mut rng, &m, b"nonce", ip, 7));
        // Another jar (another secret) does not accept it.
        let mut other = CookieJar::new(policy);
        assert!(!other.verify(t0, &mut SeededRandom::new(2), &c, b"nonce", ip, 7));
    }

    #[test]
    fn a_cookie_for_an_ipv6_source_does_not_admit_a_shifted_ipv4_one() {
        let mut jar = CookieJar::new(CookiePolicy::default());
        let mut rng = SeededRandom::new(3);
        let t0 = Instant::now();
        let v6: std::net::Ipv6Addr = "2001:db8::c000:205".parse().unwrap();
        let ni = [0x5au8; 16];
        let c = jar.make(t0, &mut rng, &ni, IpAddr::V6(v6), 9);
        // Same bytes fed to the MAC without a length and family: Ni' = Ni ‖ v6[..12],
        // source v6[12..] = 192.0.2.5.
        let mut shifted = ni.to_vec();
        shifted.extend_from_slice(&v6.octets()[..12]);
        let v4 = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 5));
        assert!(!jar.verify(t0, &mut rng, &c, &shifted, v4, 9));
        assert!(jar.verify(t0, &mut rng, &c, &ni, IpAddr::V6(v6), 9));
    }
}

//! The responder signs its AUTH right after its IKE_SA_INIT response (its signed octets are
//! known then, RFC 7296 §2.15), so the IKE_AUTH response path does no signing; it signs
//! again if the identity changed meanwhile, and not ahead at all under cookie load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ike::auth::{AuthError, LocalAuthenticator, PeerAuthenticator, SignContext, VerifyRequest};
use ike::cookie::CookiePolicy;
use ike::testing::SeededRandom;
use ike::wire::{AuthMethod, Identification};
use ike::{Config, Datagram, Endpoint, Event, PeerIdentity, Psk};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, RsaKeyPair};

const SHA256_WITH_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// An RSA signer that counts its signatures; `renamed` switches its identity, as a renewed
/// certificate with another subject would.
struct CountingRsa {
    key: RsaKeyPair,
    signatures: AtomicUsize,
    renamed: AtomicBool,
}

impl LocalAuthenticator for CountingRsa {
    fn id(&self) -> Identification {
        if self.renamed.load(Ordering::SeqCst) {
            Identification::fqdn("share-renewed")
        } else {
            Identification::fqdn("share")
        }
    }
    fn certificates(&self) -> Vec<Vec<u8>> {
        vec![self.key.public_key().as_ref().to_vec()]
    }
    fn sign(&self, _: &SignContext<'_>, octets: &[u8]) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                octets,
                &mut sig,
            )
            .map_err(|_| AuthError("signing failed".into()))?;
        let mut data = vec![SHA256_WITH_RSA.len() as u8];
        data.extend_from_slice(&SHA256_WITH_RSA);
        data.extend_from_slice(&sig);
        Ok((AuthMethod::DigitalSignature, data))
    }
}

/// Checks the RSA signature over the signed octets the initiator computed itself.
struct RsaVerifier;

impl PeerAuthenticator for RsaVerifier {
    fn verify(&self, r: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError> {
        let sig = r
            .auth_data
            .get(1 + SHA256_WITH_RSA.len()..)
            .unwrap_or_default();
        let public = r.certificates.first().ok_or(AuthError("no key".into()))?;
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(r.signed_octets, sig)
            .map_err(|_| AuthError("bad signature".into()))?;
        Ok(PeerIdentity::new(r.id.clone(), "RSA"))
    }
}

struct Run {
    initiator: Endpoint,
    responder: Endpoint,
    signer: Arc<CountingRsa>,
    now: Instant,
}

fn start(cookies: Option<CookiePolicy>) -> Run {
    let signer = Arc::new(CountingRsa {
        key: RsaKeyPair::from_pkcs8(include_bytes!("data/ikesa/rsa2048.pk8")).unwrap(),
        signatures: AtomicUsize::new(0),
        renamed: AtomicBool::new(false),
    });
    let secret = b"client direction".to_vec();
    let ic = Config::new(
        Arc::new(Psk::new(
            Identification::fqdn("client"),
            None,
            secret.clone(),
        )),
        Arc::new(RsaVerifier),
    );
    let rc = Config::new(
        signer.clone(),
        Arc::new(Psk::new(
            Identification::fqdn("share"),
            Some(Identification::fqdn("client")),
            secret,
        )),
    );
    let now = Instant::now();
    let mut initiator = Endpoint::new(None, 4500, Box::new(SeededRandom::new(1)));
    let responder = Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(2)))
        .with_cookie_policy(cookies);
    let a: SocketAddr = "10.0.0.1:500".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:500".parse().unwrap();
    initiator.initiate(now, Arc::new(ic), a, b).unwrap();
    Run {
        initiator,
        responder,
        signer,
        now,
    }
}

fn pass(from: &mut Endpoint, to: &mut Endpoint, now: Instant) -> usize {
    let ds: Vec<Datagram> = std::iter::from_fn(|| from.poll_transmit()).collect();
    for d in &ds {
        to.handle_datagram(now, d.local, d.remote, &d.payload)
            .unwrap();
    }
    ds.len()
}

fn established_as(e: &mut Endpoint) -> Option<Identification> {
    let events: Vec<Event> = std::iter::from_fn(|| e.poll_event()).map(|x| x.1).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::ChildSaUp(_))),
        "{events:?}"
    );
    events.into_iter().find_map(|e| match e {
        Event::IkeSaUp { peer, .. } => Some(peer.id),
        _ => None,
    })
}

#[test]
fn responder_signs_after_ike_sa_init_and_not_on_the_ike_auth_path() {
    let mut r = start(None);
    let now = r.now;
    pass(&mut r.initiator, &mut r.responder, now); // IKE_SA_INIT request
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 0);
    // The response is out; the responder asks to be called back at once, and signs then.
    assert_eq!(pass(&mut r.responder, &mut r.initiator, now), 1);
    assert_eq!(r.responder.poll_timeout(), Some(now));
    r.responder.handle_timeout(now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    assert_ne!(r.responder.poll_timeout(), Some(now));
    // IKE_AUTH: answered without another signature, and the signature verifies.
    pass(&mut r.initiator, &mut r.responder, now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    pass(&mut r.responder, &mut r.initiator, now);
    assert_eq!(
        established_as(&mut r.initiator),
        Some(Identification::fqdn("share"))
    );
}

#[test]
fn ike_auth_before_the_timer_signs_on_demand() {
    let mut r = start(None);
    let now = r.now;
    pass(&mut r.initiator, &mut r.responder, now);
    pass(&mut r.responder, &mut r.initiator, now);
    pass(&mut r.initiator, &mut r.responder, now); // IKE_AUTH, no handle_timeout before
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    r.responder.handle_timeout(now); // the timer finds nothing left to do
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    pass(&mut r.responder, &mut r.initiator, now);
    established_as(&mut r.initiator);
}

#[test]
fn changed_identity_is_signed_again() {
    let mut r = start(None);
    let now = r.now;
    pass(&mut r.initiator, &mut r.responder, now);
    pass(&mut r.responder, &mut r.initiator, now);
    r.responder.handle_timeout(now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    // The identity changes between IKE_SA_INIT and IKE_AUTH: the early signature covers
    // prf(SK_pr, IDr') of the old one and must not be used.
    r.signer.renamed.store(true, Ordering::SeqCst);
    pass(&mut r.initiator, &mut r.responder, now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 2);
    pass(&mut r.responder, &mut r.initiator, now);
    assert_eq!(
        established_as(&mut r.initiator),
        Some(Identification::fqdn("share-renewed"))
    );
}

#[test]
fn no_signing_ahead_under_cookie_load() {
    // Threshold 0: every IKE_SA_INIT needs a cookie, so the responder is "under load".
    let mut r = start(Some(CookiePolicy {
        threshold: 0,
        ..CookiePolicy::default()
    }));
    let now = r.now;
    for _ in 0..2 {
        // request, N(COOKIE); request with cookie, real response
        pass(&mut r.initiator, &mut r.responder, now);
        pass(&mut r.responder, &mut r.initiator, now);
    }
    r.responder.handle_timeout(now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 0);
    pass(&mut r.initiator, &mut r.responder, now);
    assert_eq!(r.signer.signatures.load(Ordering::SeqCst), 1);
    pass(&mut r.responder, &mut r.initiator, now);
    established_as(&mut r.initiator);
}

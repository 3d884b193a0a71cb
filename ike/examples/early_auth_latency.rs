//! How long the responder takes to answer IKE_AUTH with an RSA-4096 AUTH signature, when it
//! signs on demand (IKE_AUTH arrives before its next `handle_timeout`) and when it signed
//! ahead, right after sending its IKE_SA_INIT response.
//!
//! `cargo run --release -p ike --example early_auth_latency -- [--rounds N]`
//! prints the median CPU time of each step in µs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike::auth::{AuthError, LocalAuthenticator, PeerAuthenticator, SignContext, VerifyRequest};
use ike::testing::SeededRandom;
use ike::wire::{AuthMethod, Identification};
use ike::{Config, Datagram, Endpoint, Event, PeerIdentity, Psk};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, RsaKeyPair};

/// DER AlgorithmIdentifier of sha256WithRSAEncryption (RFC 7427 Appendix A).
const SHA256_WITH_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

struct Rsa(RsaKeyPair);

impl LocalAuthenticator for Rsa {
    fn id(&self) -> Identification {
        Identification::fqdn("share")
    }
    fn certificates(&self) -> Vec<Vec<u8>> {
        vec![self.0.public_key().as_ref().to_vec()]
    }
    fn sign(&self, _: &SignContext<'_>, octets: &[u8]) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        let mut sig = vec![0u8; self.0.public().modulus_len()];
        self.0
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

fn deliver(to: &mut Endpoint, now: Instant, d: &Datagram) {
    to.handle_datagram(now, d.local, d.remote, &d.payload)
        .expect("datagram accepted");
}

/// One handshake; returns (pre-sign time, IKE_AUTH handling time) of the responder.
fn round(key: &Arc<Rsa>, seed: u64, sign_ahead: bool) -> (Duration, Duration) {
    let now = Instant::now();
    let client = Arc::new(Psk::new(
        Identification::fqdn("client"),
        Some(Identification::fqdn("share")),
        b"psk for the client direction".to_vec(),
    ));
    let client_verifier = Arc::new(Psk::new(
        Identification::fqdn("share"),
        Some(Identification::fqdn("client")),
        b"psk for the client direction".to_vec(),
    ));
    let ic = Config::new(client, Arc::new(RsaVerifier));
    let rc = Config::new(key.clone(), client_verifier);
    let mut i = Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed)));
    let mut r = Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(!seed)));
    let a: SocketAddr = "10.0.0.1:500".parse().expect("address");
    let b: SocketAddr = "10.0.0.2:500".parse().expect("address");
    i.initiate(now, Arc::new(ic), a, b).expect("initiate");
    let init = i.poll_transmit().expect("IKE_SA_INIT");
    deliver(&mut r, now, &init);
    let answer = r.poll_transmit().expect("IKE_SA_INIT response");
    let mut presign = Duration::ZERO;
    if sign_ahead {
        let t = Instant::now();
        r.handle_timeout(r.poll_timeout().expect("sign-ahead timer"));
        presign = t.elapsed();
    }
    deliver(&mut i, now, &answer);
    let auth: Vec<Datagram> = std::iter::from_fn(|| i.poll_transmit()).collect();
    let t = Instant::now();
    for d in &auth {
        deliver(&mut r, now, d);
    }
    let reply: Vec<Datagram> = std::iter::from_fn(|| r.poll_transmit()).collect();
    let handling = t.elapsed();
    for d in &reply {
        deliver(&mut i, now, d);
    }
    let up = std::iter::from_fn(|| i.poll_event()).any(|(_, e)| matches!(e, Event::ChildSaUp(_)));
    assert!(up, "handshake did not complete");
    (presign, handling)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let mut rounds = 30u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--rounds", Some(n)) => rounds = n,
            _ => {
                eprintln!("usage: early_auth_latency [--rounds N]");
                std::process::exit(2);
            }
        }
    }
    let key = Arc::new(Rsa(RsaKeyPair::from_pkcs8(include_bytes!(
        "../tests/data/ikesa/rsa4096.pk8"
    ))
    .expect("key")));
    assert_eq!(key.0.public().modulus_len(), 512, "RSA-4096");
    let (mut on_demand, mut ahead, mut presign) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..rounds {
        on_demand.push(round(&key, s, false).1);
        let (p, h) = round(&key, s, true);
        presign.push(p);
        ahead.push(h);
    }
    println!(
        "RSA-4096 responder, {rounds} rounds, median µs: IKE_AUTH answered with on-demand \
         signing {:.0}; signed ahead after IKE_SA_INIT {:.0} (the signing itself {:.0}, done \
         before IKE_AUTH arrives)",
        median(on_demand),
        median(ahead),
        median(presign)
    );
}

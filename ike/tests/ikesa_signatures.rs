//! RFC 7427 signature authentication through the pluggable traits (a ring RSA key stands in
//! for `pki`), CERT/CERTREQ payloads, and RFC 7383 fragmentation of the large IKE_AUTH.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ike::auth::{
    AuthError, LocalAuthenticator, PeerAuthenticator, PeerCertificate, SignContext, VerifyRequest,
};
use ike::testing::{LinkConfig, Network, SeededRandom};
use ike::wire::{AuthMethod, CertificateRequest, HashAlgorithm, Identification};
use ike::{Config, Endpoint, Event, PeerIdentity, SaHandle};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, RsaKeyPair};

/// DER AlgorithmIdentifier of sha256WithRSAEncryption with NULL parameters (RFC 7427 App. A).
const SHA256_WITH_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// Signs with an RSA key; its "certificate chain" is the public key plus a filler blob, which
/// makes IKE_AUTH larger than one 1280-byte datagram, as an RSA-4096 chain does.
struct RsaSigner {
    id: Identification,
    key: RsaKeyPair,
    filler: usize,
    seen_peer_hashes: Mutex<Vec<HashAlgorithm>>,
}

impl LocalAuthenticator for RsaSigner {
    fn id(&self) -> Identification {
        self.id.clone()
    }
    fn certificates(&self) -> Vec<Vec<u8>> {
        vec![
            self.key.public_key().as_ref().to_vec(),
            vec![0x5a; self.filler],
        ]
    }
    fn sign(
        &self,
        ctx: &SignContext<'_>,
        octets: &[u8],
    ) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        *self.seen_peer_hashes.lock().unwrap() = ctx.peer_hash_algorithms.to_vec();
        if !ctx.peer_hash_algorithms.contains(&HashAlgorithm::Sha2_256) {
            return Err(AuthError("peer cannot verify SHA-256".into()));
        }
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

/// Verifies with the public key found in the first CERT payload.
struct RsaVerifier {
    expect_id: Identification,
}

impl PeerAuthenticator for RsaVerifier {
    fn certificate_request(&self) -> Option<CertificateRequest> {
        Some(CertificateRequest::x509(&[[0xca; 20]]))
    }
    fn verify(&self, r: &VerifyRequest<'_>) -> Result<PeerIdentity, AuthError> {
        if *r.id != self.expect_id {
            return Err(AuthError(format!("unexpected identity {}", r.id)));
        }
        if r.method != AuthMethod::DigitalSignature {
            return Err(AuthError(format!("method {}", r.method)));
        }
        let (len, rest) = r
            .auth_data
            .split_first()
            .ok_or(AuthError("empty AUTH".into()))?;
        let (alg, sig) = rest.split_at((*len as usize).min(rest.len()));
        if alg != SHA256_WITH_RSA {
            return Err(AuthError("unsupported signature algorithm".into()));
        }
        let public = r
            .certificates
            .first()
            .ok_or(AuthError("no certificate".into()))?;
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(r.signed_octets, sig)
            .map_err(|_| AuthError("bad signature".into()))?;
        Ok(
            PeerIdentity::new(r.id.clone(), "RSA test key")
                .with_certificate(test_certificate(r.id)),
        )
    }
}

/// What a certificate verifier would report for the peer named `id`.
fn test_certificate(id: &Identification) -> PeerCertificate {
    PeerCertificate {
        subject: format!("CN={}", id.as_str().unwrap_or("?")),
        issuer: "CN=Test CA".into(),
        serial: "01".into(),
        not_before: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        not_after: UNIX_EPOCH + Duration::from_secs(1_800_003_600),
    }
}

fn key() -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(include_bytes!("data/ikesa/rsa2048.pk8")).unwrap()
}

fn signer(name: &str, filler: usize) -> Arc<RsaSigner> {
    Arc::new(RsaSigner {
        id: Identification::fqdn(name),
        key: key(),
        filler,
        seen_peer_hashes: Mutex::new(Vec::new()),
    })
}

fn run(filler: usize, link: LinkConfig, seed: u64) -> (Network, Arc<RsaSigner>, SaHandle) {
    let now = Instant::now();
    let mut net = Network::new(now, link, seed);
    let client = signer("client", filler);
    let mut ic = Config::new(
        client.clone(),
        Arc::new(RsaVerifier {
            expect_id: Identification::fqdn("share"),
        }),
    );
    ic.retransmit.tries = 15;
    ic.retransmit.limit = Duration::from_secs(30);
    ic.half_open_timeout = Duration::from_secs(600);
    let mut rc = Config::new(
        signer("share", filler),
        Arc::new(RsaVerifier {
            expect_id: Identification::fqdn("client"),
        }),
    );
    rc.retransmit = ic.retransmit;
    rc.half_open_timeout = ic.half_open_timeout;
    net.add(
        "10.0.0.1".parse().unwrap(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(seed))),
    );
    net.add(
        "10.0.0.2".parse().unwrap(),
        Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(!seed))),
    );
    let ip = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 500);
    let h = net.endpoints[0]
        .1
        .initiate(now, Arc::new(ic), ip("10.0.0.1"), ip("10.0.0.2"))
        .unwrap();
    let limit = now + Duration::from_secs(900);
    let up = net.run_until(limit, |n| {
        n.events
            .iter()
            .all(|ev| ev.iter().any(|(_, e)| matches!(e, Event::ChildSaUp(_))))
    });
    assert!(up, "seed {seed}: {:?} {:?}", net.events, net.errors);
    (net, client, h)
}

#[test]
fn rfc7427_signatures_authenticate_both_ends() {
    let (net, client, _) = run(0, LinkConfig::perfect(), 1);
    assert_eq!(
        *client.seen_peer_hashes.lock().unwrap(),
        vec![
            HashAlgorithm::Sha2_256,
            HashAlgorithm::Sha2_384,
            HashAlgorithm::Sha2_512
        ]
    );
    for (ev, who) in net.events.iter().zip(["share", "client"]) {
        let peer = ev.iter().find_map(|(_, e)| match e {
            Event::IkeSaUp { peer, .. } => Some(peer.clone()),
            _ => None,
        });
        let peer = peer.expect("IkeSaUp");
        assert_eq!(peer.id, Identification::fqdn(who));
        // The verifier's certificate facts reach the driver with the identity.
        let id = Identification::fqdn(who);
        assert_eq!(peer.certificate, Some(test_certificate(&id)));
    }
    assert!(net.max_datagram <= 1280, "{}", net.max_datagram);
}

#[test]
fn large_ike_auth_is_fragmented_and_reassembled() {
    let (net, _, _) = run(3000, LinkConfig::perfect(), 2);
    // 3 kB of "certificates" each way cannot fit one datagram: every datagram stayed within
    // the 1280-byte IP packet limit (IPv4 + UDP headers, marker included).
    assert!(net.max_datagram <= 1280, "{}", net.max_datagram);
    assert!(
        net.delivered >= 2 + 2 * 3,
        "IKE_AUTH went in fragments: {}",
        net.delivered
    );
}

#[test]
fn fragmented_exchange_survives_loss() {
    for seed in 0..10 {
        let (net, _, _) = run(3000, LinkConfig::lossy(0.3), seed);
        assert!(net.max_datagram <= 1280);
    }
}

#[test]
fn signature_refused_when_identity_differs() {
    let now = Instant::now();
    let mut net = Network::new(now, LinkConfig::perfect(), 3);
    let ic = Config::new(
        signer("mallory", 0),
        Arc::new(RsaVerifier {
            expect_id: Identification::fqdn("share"),
        }),
    );
    let rc = Config::new(
        signer("share", 0),
        Arc::new(RsaVerifier {
            expect_id: Identification::fqdn("client"),
        }),
    );
    net.add(
        "10.0.0.1".parse().unwrap(),
        Endpoint::new(None, 4500, Box::new(SeededRandom::new(5))),
    );
    net.add(
        "10.0.0.2".parse().unwrap(),
        Endpoint::new(Some(Arc::new(rc)), 4500, Box::new(SeededRandom::new(6))),
    );
    let ip = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 500);
    net.endpoints[0]
        .1
        .initiate(now, Arc::new(ic), ip("10.0.0.1"), ip("10.0.0.2"))
        .unwrap();
    net.run_until(now + Duration::from_secs(10), |n| {
        n.endpoints.iter().all(|(_, e)| e.is_empty())
    });
    let reasons: Vec<String> = net.events[1]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Failed { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            "authentication of peer ID_FQDN:mallory failed: unexpected identity ID_FQDN:mallory"
                .to_string()
        ]
    );
}

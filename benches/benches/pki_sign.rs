//! Signature cost of IKE_AUTH: what one side computes to authenticate itself and its peer.
//!
//! - `sign` / `verify`: one RSA signature with the host key through `pki` (ring), RSA-2048,
//!   3072 and 4096, PKCS#1 v1.5 and PSS with SHA-256 and SHA-384 (the daemon signs with
//!   PKCS#1 SHA-256 when the peer lists it); ECDSA P-256 and P-384 through ring directly,
//!   because `pki` only verifies EC signatures (the host key is RSA) — these rows show what
//!   another key type would cost, not what the daemon does.
//! - `load-pem`: reading a PEM host key (ring checks its consistency), which a daemon does
//!   for each `up` that passes `--cert`/`--key`.
//! - `ike_auth`: one side's whole IKE_AUTH crypto with an RSA chain of the given size (the
//!   lab's and the metadata service's shape: leaf + intermediate under a root): verify the
//!   peer's chain, verify its AUTH signature, sign our own AUTH; `+ecp384` adds the
//!   IKE_SA_INIT key exchange (key generation + agreement), the rest of a handshake's
//!   public-key work.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so
//! that other work on a shared machine does not inflate them (it still costs caches).
//!
//! `cargo bench -p ibm-ipsec-benches --bench pki_sign -- --warm-up-time 1 --measurement-time 3`
//! (generates RSA keys first: RSA-4096 takes seconds).

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion};
use ike::crypto::{DhGroup, DhSecret, Random};
use pki::ca::{LeafOptions, SanEntry, TestCa, TestCaConfig, Validity};
use pki::signature::verify;
use pki::{
    HashAlgorithm, HostIdentity, HostKey, IkeIdentity, KeySize, PeerVerifier, RootStore,
    SignatureScheme,
};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};

/// The signed octets of IKE_AUTH (RFC 7296 §2.15) are the first message plus a nonce and a
/// MAC: about 1 kB with ECP-384 and the notifies we send.
const OCTETS_LEN: usize = 1100;

const SIZES: [(KeySize, &str); 3] = [
    (KeySize::Rsa2048, "rsa2048"),
    (KeySize::Rsa3072, "rsa3072"),
    (KeySize::Rsa4096, "rsa4096"),
];

const SCHEMES: [(SignatureScheme, &str); 4] = [
    (
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
        "pkcs1-sha256",
    ),
    (
        SignatureScheme::RsaPkcs1(HashAlgorithm::Sha384),
        "pkcs1-sha384",
    ),
    (SignatureScheme::RsaPss(HashAlgorithm::Sha256), "pss-sha256"),
    (SignatureScheme::RsaPss(HashAlgorithm::Sha384), "pss-sha384"),
];

/// DER SubjectPublicKeyInfo prefixes (id-ecPublicKey with the named curve, then the BIT
/// STRING header) for an uncompressed point, RFC 5480 §2.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
const P384_SPKI_PREFIX: &str = "3076301006072a8648ce3d020106052b81040022036200";

/// CPU time of this thread so far.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Runs `f` as often as criterion asks and reports the CPU time it took.
fn cpu<R>(b: &mut Bencher<'_>, mut f: impl FnMut() -> R) {
    b.iter_custom(|iters| {
        let start = thread_cpu();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        thread_cpu() - start
    })
}

/// Deterministic bytes for the key exchange: benches measure computation, not an RNG.
struct XorShift(u64);

impl Random for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
    }
}

fn rsa(c: &mut Criterion) {
    let octets = vec![0x5au8; OCTETS_LEN];
    let mut group = c.benchmark_group("rsa");
    group.sample_size(20);
    for (size, size_name) in SIZES {
        let key = HostKey::generate(size).unwrap();
        // what `up` with --cert/--key pays to read the key (ring checks the key's consistency)
        let pem = key.to_pem();
        group.bench_function(BenchmarkId::new("load-pem", size_name), |b| {
            cpu(b, || HostKey::from_pem(pem.as_bytes()).unwrap())
        });
        for (scheme, scheme_name) in SCHEMES {
            let signature = key.sign(scheme, &octets).unwrap();
            let id = format!("{size_name}/{scheme_name}");
            group.bench_function(BenchmarkId::new("sign", &id), |b| {
                cpu(b, || key.sign(scheme, &octets).unwrap())
            });
            group.bench_function(BenchmarkId::new("verify", &id), |b| {
                cpu(b, || {
                    verify(key.public_key_info_der(), scheme, &octets, &signature).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn ecdsa(c: &mut Criterion) {
    let octets = vec![0x5au8; OCTETS_LEN];
    let rng = SystemRandom::new();
    let mut group = c.benchmark_group("ecdsa");
    group.sample_size(20);
    for (alg, prefix, scheme, name) in [
        (
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            P256_SPKI_PREFIX,
            SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
            "p256-sha256",
        ),
        (
            &ECDSA_P384_SHA384_ASN1_SIGNING,
            P384_SPKI_PREFIX,
            SignatureScheme::Ecdsa(HashAlgorithm::Sha384),
            "p384-sha384",
        ),
    ] {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut spki = hex::decode(prefix).unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        let signature = pair.sign(&rng, &octets).unwrap();
        group.bench_function(BenchmarkId::new("sign", name), |b| {
            cpu(b, || pair.sign(&rng, &octets).unwrap())
        });
        group.bench_function(BenchmarkId::new("verify", name), |b| {
            cpu(b, || {
                verify(&spki, scheme, &octets, signature.as_ref()).unwrap()
            })
        });
    }
    group.finish();
}

/// A root → intermediate → leaf chain with every key of `size`, the leaf metadata-style
/// (no CN, an IP SAN); returns the verifier (root trusted), the peer's chain and AUTH data
/// over `octets`, and our own identity.
fn chain(
    size: KeySize,
    octets: &[u8],
) -> (
    PeerVerifier,
    Vec<Vec<u8>>,
    Vec<u8>,
    IkeIdentity,
    HostIdentity,
) {
    let now = SystemTime::now();
    let mut config = TestCaConfig::new(now);
    config.key_size = size;
    let ca = TestCa::generate_with(&config).unwrap();
    let validity = Validity::starting_at(now - Duration::from_secs(60), Duration::from_secs(3600));
    let leaf = |ip: [u8; 4]| {
        let key = HostKey::generate(size).unwrap();
        let options = LeafOptions {
            sans: vec![SanEntry::Ip(ip.into())],
            ..LeafOptions::default()
        };
        let der = ca
            .issue_for_key(
                key.public_key_info_der(),
                "C=US,O=ibm-ipsec bench",
                validity,
                &options,
            )
            .unwrap();
        HostIdentity::new(key, vec![der, ca.intermediate_der().to_vec()]).unwrap()
    };
    let peer = leaf([10, 0, 0, 2]);
    let ours = leaf([10, 0, 0, 1]);
    let mut roots = RootStore::new();
    roots.add_der(ca.root_der()).unwrap();
    let scheme = SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256);
    let peer_auth = peer.sign_auth_data(scheme, octets).unwrap();
    let peer_id = peer.ike_identity();
    (
        PeerVerifier::new(roots),
        peer.chain_der().to_vec(),
        peer_auth,
        peer_id,
        ours,
    )
}

fn ike_auth(c: &mut Criterion) {
    let octets = vec![0x5au8; OCTETS_LEN];
    let scheme = SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256);
    let mut group = c.benchmark_group("ike_auth");
    group.sample_size(20);
    for (size, size_name) in SIZES {
        let (verifier, peer_chain, peer_auth, peer_id, ours) = chain(size, &octets);
        let one_side = || {
            let now = SystemTime::now();
            let peer = verifier.verify_chain(&peer_chain, now, &peer_id).unwrap();
            verifier
                .verify_auth_data(&peer, &peer_auth, &octets)
                .unwrap();
            ours.sign_auth_data(scheme, &octets).unwrap()
        };
        group.bench_function(BenchmarkId::new("chain+verify+sign", size_name), |b| {
            cpu(b, one_side)
        });
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let remote = DhSecret::generate(DhGroup::Ecp384, &mut rng).unwrap();
        let remote_public = remote.public_value().to_vec();
        group.bench_function(
            BenchmarkId::new("chain+verify+sign+ecp384", size_name),
            |b| {
                cpu(b, || {
                    let local = DhSecret::generate(DhGroup::Ecp384, &mut rng).unwrap();
                    local.shared_secret(&remote_public).unwrap();
                    one_side()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, rsa, ecdsa, ike_auth);
criterion_main!(benches);

//! IKE crypto suite: SK payload seal/open and Diffie-Hellman key generation + agreement.
//!
//! `cargo bench -p ibm-ipsec-benches --bench ike_crypto`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ike::crypto::{DhGroup, DhSecret, EncrAlgorithm, IntegAlgorithm, Random, SkCipher};

/// Deterministic bytes: benches measure computation, not an RNG.
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

fn suites() -> [(&'static str, SkCipher); 2] {
    [
        (
            "aes256gcm16",
            SkCipher::new(EncrAlgorithm::AesGcm16_256, None, &[0x11; 36], &[]).unwrap(),
        ),
        (
            "aes256-sha384",
            SkCipher::new(
                EncrAlgorithm::AesCbc256,
                Some(IntegAlgorithm::HmacSha2_384_192),
                &[0x22; 32],
                &[0x33; 48],
            )
            .unwrap(),
        ),
    ]
}

fn sk_payload(c: &mut Criterion) {
    // IKE header (28) + SK generic header (4): the AAD of a typical encrypted message.
    let aad = [0x5au8; 32];
    for (name, sk) in suites() {
        let mut group = c.benchmark_group(format!("sk/{name}"));
        for len in [1024usize, 2048] {
            let plaintext = vec![0xa7u8; len];
            let iv = vec![0x01u8; sk.iv_len()];
            group.throughput(Throughput::Bytes(len as u64));
            let mut out = Vec::with_capacity(sk.sealed_len(len));
            group.bench_with_input(BenchmarkId::new("seal", len), &len, |b, _| {
                b.iter(|| {
                    out.clear();
                    sk.seal(&aad, &iv, &plaintext, &mut out).unwrap();
                })
            });
            let mut body = Vec::new();
            sk.seal(&aad, &iv, &plaintext, &mut body).unwrap();
            group.bench_with_input(BenchmarkId::new("open", len), &len, |b, _| {
                b.iter(|| sk.open(&aad, &body).unwrap())
            });
        }
        group.finish();
    }
}

fn dh(c: &mut Criterion) {
    let mut group = c.benchmark_group("dh");
    group.sample_size(20);
    for (name, g) in [
        ("x25519", DhGroup::Curve25519),
        ("ecp384", DhGroup::Ecp384),
        ("modp2048", DhGroup::Modp2048),
    ] {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let peer = DhSecret::generate(g, &mut rng).unwrap();
        let peer_public = peer.public_value().to_vec();
        // One side's full work per exchange: generate a key pair, then agree.
        group.bench_function(BenchmarkId::new("keygen+shared", name), |b| {
            b.iter(|| {
                let ours = DhSecret::generate(g, &mut rng).unwrap();
                ours.shared_secret(&peer_public).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sk_payload, dh);
criterion_main!(benches);

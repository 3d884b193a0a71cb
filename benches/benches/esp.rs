//! ESP seal/open throughput per packet size, single packets and the batch path
//! (AES-256-GCM, transport-mode payloads). Run: `cargo bench -p ibm-ipsec-benches --bench esp`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use esp::{sealed_len, Algorithm, InboundSa, OpenSlot, OutboundSa, SaConfig, SealSlot};

const SIZES: [usize; 3] = [64, 1400, 8192];
const BATCH: usize = 32;
const KEY: [u8; 36] = [0x5a; 36];

fn config() -> SaConfig {
    SaConfig {
        // Large enough that a long run never exhausts the 32-bit space.
        esn: true,
        ..SaConfig::new(0x1000_0001, Algorithm::AesGcm16_256)
    }
}

fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("esp_seal");
    for size in SIZES {
        let payload = vec![0xa5u8; size];
        let mut out = vec![0u8; sealed_len(size)];
        let mut sa = OutboundSa::new(config(), &KEY).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| sa.seal(6, &payload, &mut out).unwrap())
        });
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("esp_open");
    for size in SIZES {
        let payload = vec![0xa5u8; size];
        let mut tx = OutboundSa::new(config(), &KEY).unwrap();
        // A fresh receiver per batch of packets keeps every packet new to the replay window;
        // the setup (sealing) is excluded from the measurement.
        let mut rx = InboundSa::new(config(), &KEY).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter_batched_ref(
                || {
                    let mut p = vec![0u8; sealed_len(size)];
                    tx.seal(6, &payload, &mut p).unwrap();
                    p
                },
                |p| rx.open(p).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("esp_batch32");
    for size in SIZES {
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0x3cu8; size]).collect();
        let stride = sealed_len(size);
        let mut arena = vec![0u8; stride * BATCH];
        let mut tx = OutboundSa::new(config(), &KEY).unwrap();
        g.throughput(Throughput::Bytes((size * BATCH) as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &size, |b, _| {
            b.iter(|| {
                let mut slots: Vec<SealSlot<'_>> = payloads
                    .iter()
                    .zip(arena.chunks_mut(stride))
                    .map(|(p, o)| SealSlot::new(6, p, o))
                    .collect();
                assert_eq!(tx.seal_batch(&mut slots), BATCH);
            })
        });
        let mut rx = InboundSa::new(config(), &KEY).unwrap();
        g.bench_with_input(BenchmarkId::new("open", size), &size, |b, _| {
            b.iter_batched_ref(
                || {
                    let mut a = vec![0u8; stride * BATCH];
                    let mut slots: Vec<SealSlot<'_>> = payloads
                        .iter()
                        .zip(a.chunks_mut(stride))
                        .map(|(p, o)| SealSlot::new(6, p, o))
                        .collect();
                    tx.seal_batch(&mut slots);
                    drop(slots);
                    a
                },
                |a| {
                    let mut slots: Vec<OpenSlot<'_>> =
                        a.chunks_mut(stride).map(OpenSlot::new).collect();
                    assert_eq!(rx.open_batch(&mut slots), BATCH);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, seal, open, batch);
criterion_main!(benches);

//! IKEv2 codec: parse and serialize a full IKE_SA_INIT request, as captured from strongSwan
//! (SA with the IBM default proposal, ECP-384 KE, nonce, NAT-D, fragmentation, signature
//! hash and redirect notifies: 304 bytes).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ike::wire::{Message, PayloadIter, PayloadType, HEADER_LEN};

const IKE_SA_INIT: &[u8] =
    include_bytes!("../../ike/tests/data/strongswan/cert-ecp384/01-ike_sa_init-i.bin");

fn codec(c: &mut Criterion) {
    let message = Message::parse(IKE_SA_INIT).expect("fixture parses");
    let mut g = c.benchmark_group("ike_sa_init_request");
    g.throughput(Throughput::Bytes(IKE_SA_INIT.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| Message::parse(black_box(IKE_SA_INIT)).unwrap())
    });
    g.bench_function("walk_payload_views", |b| {
        b.iter(|| {
            let chain = &black_box(IKE_SA_INIT)[HEADER_LEN..];
            PayloadIter::new(chain, PayloadType::SecurityAssociation, HEADER_LEN)
                .map(|p| p.unwrap().body.len())
                .sum::<usize>()
        })
    });
    let mut buf = vec![0u8; message.buffer_len()];
    g.bench_function("serialize_into_buffer", |b| {
        b.iter(|| black_box(&message).emit(&mut buf).unwrap())
    });
    g.bench_function("serialize_to_vec", |b| {
        b.iter(|| black_box(&message).to_bytes().unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);

//! RESP codec micro-benchmarks: decoding what workers send (pipelined
//! SET/GET batches with 100-byte values, one 64 KiB bulk) and encoding the
//! replies the broker sends back.
//!
//! Run with `cargo bench --no-default-features --bench codec` (the `node`
//! feature is not needed; see bench/results/profile.md).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cluster_shm::resp::{encode_command, parse_command, Frame, Limits};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;
use common::{config, json_value};

/// Commands in one pipelined batch: what 64 calls in flight on one worker
/// connection look like when they leave in one write.
const BATCH: usize = 64;

/// `BATCH` commands alternating SET key <100-byte value> and GET key.
fn pipelined_batch() -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..BATCH {
        let key = format!("bench:key:{}", i * 151);
        if i.is_multiple_of(2) {
            encode_command(&[b"SET".as_slice(), key.as_bytes(), &json_value(i, 100)], &mut out);
        } else {
            encode_command(&[b"GET".as_slice(), key.as_bytes()], &mut out);
        }
    }
    out.to_vec()
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse");

    // The broker parses every complete command of a read in a loop.
    let batch = pipelined_batch();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("pipeline_64_set_get_100B", |b| {
        b.iter_batched_ref(
            || BytesMut::from(batch.as_slice()),
            |buf| {
                let mut n = 0;
                while let Some(args) = parse_command(buf, &limits).expect("valid input") {
                    n += args.len();
                    black_box(args);
                }
                n
            },
            BatchSize::SmallInput,
        )
    });

    // One command, as a worker with one call in flight sends it.
    let mut single = BytesMut::new();
    encode_command(&[b"SET".as_slice(), b"bench:key:1", &json_value(1, 100)], &mut single);
    let single = single.to_vec();
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_set_100B", |b| {
        b.iter_batched_ref(
            || BytesMut::from(single.as_slice()),
            |buf| parse_command(buf, &limits).expect("valid input"),
            BatchSize::SmallInput,
        )
    });

    // A 64 KiB value, all arrived.
    let big = vec![b'v'; 64 * 1024];
    let mut bulk = BytesMut::new();
    encode_command(&[b"SET".as_slice(), b"bench:big", &big], &mut bulk);
    let bulk = bulk.to_vec();
    group.throughput(Throughput::Bytes(bulk.len() as u64));
    group.bench_function("set_64KiB", |b| {
        b.iter_batched_ref(
            || BytesMut::from(bulk.as_slice()),
            |buf| parse_command(buf, &limits).expect("valid input"),
            BatchSize::SmallInput,
        )
    });

    // The same 64 KiB arriving in 16 KiB reads (the broker's READ_CHUNK):
    // three incomplete attempts, then the one that completes.
    group.bench_function("set_64KiB_in_16KiB_reads", |b| {
        b.iter_batched_ref(
            || BytesMut::with_capacity(bulk.len()),
            |buf| {
                for chunk in bulk.chunks(16 * 1024) {
                    buf.extend_from_slice(chunk);
                    if let Some(args) = parse_command(buf, &limits).expect("valid input") {
                        return args;
                    }
                }
                unreachable!("the whole command was fed")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let value = Bytes::from(json_value(7, 100));
    let replies: Vec<Frame> =
        (0..BATCH).map(|i| if i.is_multiple_of(2) { Frame::ok() } else { Frame::Bulk(value.clone()) }).collect();
    let mut out = BytesMut::with_capacity(16 * 1024);

    group.throughput(Throughput::Elements(1));
    group.bench_function("ok", |b| {
        let reply = Frame::ok();
        b.iter(|| {
            out.clear();
            black_box(&reply).encode(&mut out);
            out.len()
        })
    });
    group.bench_function("bulk_100B", |b| {
        let reply = Frame::Bulk(value.clone());
        b.iter(|| {
            out.clear();
            black_box(&reply).encode(&mut out);
            out.len()
        })
    });
    group.bench_function("integer", |b| {
        let reply = Frame::Integer(1_234_567);
        b.iter(|| {
            out.clear();
            black_box(&reply).encode(&mut out);
            out.len()
        })
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("pipeline_64_ok_bulk_100B", |b| {
        b.iter(|| {
            out.clear();
            for reply in black_box(&replies) {
                reply.encode(&mut out);
            }
            out.len()
        })
    });

    let big = Frame::Bulk(Bytes::from(vec![b'v'; 64 * 1024]));
    group.throughput(Throughput::Bytes(64 * 1024));
    group.bench_function("bulk_64KiB", |b| {
        let mut out = BytesMut::with_capacity(128 * 1024);
        b.iter(|| {
            out.clear();
            black_box(&big).encode(&mut out);
            out.len()
        })
    });

    // A client's side of the wire: a SET command with a 100-byte value.
    let set_value = json_value(3, 100);
    group.throughput(Throughput::Elements(1));
    group.bench_function("command_set_100B", |b| {
        b.iter(|| {
            out.clear();
            encode_command(&[b"SET".as_slice(), b"bench:key:3", black_box(&set_value)], &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse, encode
}
criterion_main!(benches);

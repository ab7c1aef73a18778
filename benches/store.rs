//! Store micro-benchmarks through `cmd::execute`, the dispatch every socket
//! command and every in-process call goes through: 10,000 keys with
//! 100-byte values, GET hits, SET overwrites, INCR, SET with PX (the expiry
//! index), SET of new keys under maxmemory with allkeys-lru (an eviction per
//! write), and a pipelined batch the way a broker connection runs it
//! (parse, execute under one lock, encode); and KEYS with glob patterns at
//! their most costly over 60 KiB keys.
//!
//! Run with `cargo bench --no-default-features --bench store`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cluster_shm::cmd::{execute, Ctx, Session};
use cluster_shm::resp::{encode_command, parse_command, Frame, Limits};
use cluster_shm::store::Db;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;
use common::{config, json_value};

const KEYS: usize = 10_000;
/// A fixed Unix ms "now"; benches that need time to pass advance it.
const NOW: u64 = 1_800_000_000_000;

fn key(prefix: &str, i: usize) -> Bytes {
    Bytes::from(format!("{prefix}:{i}"))
}

fn args(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Runs one command the way the broker does for a lone command: take the
/// store lock, build the context, dispatch.
fn run(db: &Db, session: &mut Session, now: u64, command: &[Bytes]) -> Frame {
    let mut ks = db.lock();
    let mut ctx = Ctx::new(db, &mut ks, session, now);
    execute(&mut ctx, command)
}

/// A cheap, deterministic stream of key indexes (no cache-friendly order).
struct Picker(u64);

impl Picker {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A store holding `KEYS` keys `prefix:i` with 100-byte JSON values.
fn filled(prefix: &str) -> (Db, Session, Vec<Bytes>, Vec<Bytes>) {
    let db = Db::new();
    let mut session = Session::new(1);
    let keys: Vec<Bytes> = (0..KEYS).map(|i| key(prefix, i)).collect();
    let values: Vec<Bytes> = (0..64).map(|i| Bytes::from(json_value(i, 100))).collect();
    for (i, k) in keys.iter().enumerate() {
        let reply =
            run(&db, &mut session, NOW, &[Bytes::from_static(b"SET"), k.clone(), Bytes::from(json_value(i, 100))]);
        assert_eq!(reply, Frame::ok());
    }
    (db, session, keys, values)
}

fn commands(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute");
    group.throughput(Throughput::Elements(1));

    let (db, mut session, keys, values) = filled("bench:key");
    let get: Vec<Vec<Bytes>> = keys.iter().map(|k| vec![Bytes::from_static(b"GET"), k.clone()]).collect();
    let mut pick = Picker(1);
    group.bench_function("get_hit_100B_10k_keys", |b| {
        b.iter(|| {
            let reply = run(&db, &mut session, NOW, &get[pick.next(KEYS)]);
            debug_assert!(matches!(reply, Frame::Bulk(_)));
            reply
        })
    });

    // The arguments are built outside the timed part: in the broker they are
    // slices of the read buffer, made by the parser (benches/codec.rs).
    let sets: Vec<Vec<Bytes>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| vec![Bytes::from_static(b"SET"), k.clone(), values[i % values.len()].clone()])
        .collect();
    group.bench_function("set_overwrite_100B_10k_keys", |b| {
        b.iter(|| run(&db, &mut session, NOW, &sets[pick.next(KEYS)]))
    });

    // SET ... PX: every overwrite moves the key in the expiry index, since
    // time advances by 1 ms per call (the deadline never passes in a run).
    let sets_px: Vec<Vec<Bytes>> = sets
        .iter()
        .map(|set| {
            let mut a = set.clone();
            a.extend(args(&[b"PX", b"1000000000"]));
            a
        })
        .collect();
    let mut now = NOW;
    group.bench_function("set_px_100B_10k_keys", |b| {
        b.iter(|| {
            now += 1;
            run(&db, &mut session, now, &sets_px[pick.next(KEYS)])
        })
    });
    drop(db);

    let db = Db::new();
    let counters: Vec<Vec<Bytes>> = (0..KEYS).map(|i| vec![Bytes::from_static(b"INCR"), key("counter", i)]).collect();
    group.bench_function("incr_10k_keys", |b| {
        b.iter(|| {
            let reply = run(&db, &mut session, NOW, &counters[pick.next(KEYS)]);
            debug_assert!(matches!(reply, Frame::Integer(_)));
            reply
        })
    });
    drop(db);

    // maxmemory at what 10,000 keys take, allkeys-lru: every SET of a key
    // not in the store evicts (about) one key, chosen by sampling.
    let (db, mut session, _, values) = filled("bench:key");
    let used = db.lock().used_memory();
    let reply = run(
        &db,
        &mut session,
        NOW,
        &args(&[b"CONFIG", b"SET", b"maxmemory", used.to_string().as_bytes(), b"maxmemory-policy", b"allkeys-lru"]),
    );
    assert_eq!(reply, Frame::ok());
    // Far more distinct keys than fit, so almost every write is of a new key.
    let fresh: Vec<Vec<Bytes>> = (0..4 * KEYS)
        .map(|i| vec![Bytes::from_static(b"SET"), key("bench:new", i), values[i % values.len()].clone()])
        .collect();
    let mut next = 0;
    let evicted_before = db.lock().stats().evicted_keys;
    let mut calls = 0u64;
    let mut now = NOW;
    group.bench_function("set_new_key_evicting_allkeys_lru_10k_keys", |b| {
        b.iter(|| {
            next = (next + 1) % fresh.len();
            now += 1;
            calls += 1;
            run(&db, &mut session, now, &fresh[next])
        })
    });
    let evicted = db.lock().stats().evicted_keys - evicted_before;
    eprintln!(
        "eviction bench: {evicted} keys evicted in {calls} SETs ({:.2} per SET), {} keys held",
        evicted as f64 / calls.max(1) as f64,
        db.lock().len()
    );
    group.finish();
}

/// KEYS over four 60 KiB keys with the patterns that cost a backtracking
/// matcher pattern × key steps: a long run after a star that nearly
/// matches everywhere, at the 1024-byte limit, and a short one.
fn glob(c: &mut Criterion) {
    let mut group = c.benchmark_group("keys");
    let db = Db::new();
    let mut session = Session::new(1);
    for i in 0..4 {
        let key = format!("{}{i}", "a".repeat(60 * 1024));
        run(&db, &mut session, NOW, &args(&[b"SET", key.as_bytes(), b"v"]));
    }
    group.throughput(Throughput::Bytes(4 * 60 * 1024));
    for (name, run_len) in [("run_of_1021_after_a_star", 1021), ("run_of_61_after_a_star", 61)] {
        let pattern = format!("*{}b*", "a".repeat(run_len));
        let command = args(&[b"KEYS", pattern.as_bytes()]);
        group.bench_function(format!("keys_4_keys_of_60_kib_{name}"), |b| {
            b.iter(|| run(&db, &mut session, NOW, &command))
        });
    }
    group.finish();
}

/// What a broker connection does with a read of 64 pipelined commands
/// (src/broker/connection.rs): parse them all, run them under one lock,
/// encode every reply into one output buffer. No socket, no tokio.
fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_batch");
    let (db, mut session, keys, values) = filled("bench:key");
    let limits = Limits::default();
    let mut pick = Picker(7);
    let mut batches = Vec::new();
    for _ in 0..64 {
        let mut wire = BytesMut::new();
        for i in 0..64usize {
            let k = &keys[pick.next(KEYS)];
            if i.is_multiple_of(2) {
                encode_command(&[b"SET".as_slice(), k, &values[i % values.len()]], &mut wire);
            } else {
                encode_command(&[b"GET".as_slice(), k], &mut wire);
            }
        }
        batches.push(wire.to_vec());
    }
    for depth in [1usize, 64] {
        group.throughput(Throughput::Elements(depth as u64));
        let mut which = 0;
        // Depth 1: each command of the batches alone (SETs and GETs alternate).
        let inputs: Vec<Vec<u8>> = if depth == 1 {
            batches.iter().flat_map(|wire| split_commands(wire, &limits)).collect()
        } else {
            batches.clone()
        };
        let mut output = BytesMut::with_capacity(64 * 1024);
        group.bench_function(format!("parse_execute_encode_{depth}"), |b| {
            b.iter_batched_ref(
                || {
                    which = (which + 1) % inputs.len();
                    BytesMut::from(inputs[which].as_slice())
                },
                |input| {
                    let mut pending = Vec::with_capacity(depth);
                    while let Some(args) = parse_command(input, &limits).expect("valid input") {
                        pending.push(args);
                    }
                    output.clear();
                    let mut ks = db.lock();
                    let mut ctx = Ctx::new(&db, &mut ks, &mut session, NOW);
                    for args in &pending {
                        execute(&mut ctx, args).encode(&mut output);
                    }
                    drop(ks);
                    black_box(output.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The wire bytes of each command in `wire`.
fn split_commands(wire: &[u8], limits: &Limits) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    let mut at = 0;
    while parse_command(&mut buf, limits).expect("valid input").is_some() {
        let end = wire.len() - buf.len();
        out.push(wire[at..end].to_vec());
        at = end;
    }
    out
}

criterion_group! {
    name = benches;
    config = config();
    targets = commands, pipeline, glob
}
criterion_main!(benches);

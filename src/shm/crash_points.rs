//! Crash points: each scenario's operation runs in a child process that
//! SIGKILLs itself at its Nth step (the two sides of every journal record
//! appended, and the two sides of the commit), for N = 1, 2, … until the
//! operation completes without reaching N. After each kill the slot is
//! repaired as the broker repairs it, SHM.VERIFY's walk must find nothing,
//! and the store must hold the state before the operation or the state
//! after it (for evictions and the expiry sweep, whose steps are operations
//! of their own: a state between them).
//!
//! Where `crash_tests` kills at random instants, this reaches every step of
//! an insert, an overwrite that changes size class, an index that grows, a
//! stripe emptied, a multi-key write, an eviction, the expiry sweep, a
//! flush, compaction with the release of free pages (which must leave
//! the data as it was), a value over a page rewritten into the run its
//! stripe keeps, the release of kept runs, and a write into a full heap
//! that takes back the run another stripe keeps. The child is this test binary run again with
//! `CLUSTER_SHM_POINT_FD` set (see `point_process`).

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::shm::{layout, Backing, Handle, Store};
use crate::store::{EvictionPolicy, Expiry, Keyspace, MemoryLimits};

/// Steps left before this process kills itself; 0: never.
static COUNTDOWN: AtomicU64 = AtomicU64::new(0);

/// A crash point (called by the journal): the armed process dies here when
/// its countdown runs out.
pub fn step() {
    let left = COUNTDOWN.load(Ordering::Relaxed);
    if left == 0 {
        return;
    }
    if left == 1 {
        // SAFETY: kill of this process with a constant signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        loop {
            std::hint::spin_loop();
        }
    }
    COUNTDOWN.store(left - 1, Ordering::Relaxed);
}

/// The fixed "now" of every scenario (Unix ms), so that expiry and LRU
/// clocks are the same in the child and in the check.
const NOW: u64 = 1_800_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Insert,
    OverwriteLarger,
    OverwriteSmaller,
    IndexGrows,
    StripeEmptied,
    Group,
    Eviction,
    ExpirySweep,
    Flush,
    Compaction,
    RewriteKept,
    ReleaseKept,
    ReclaimKept,
}

const SCENARIOS: [Scenario; 13] = [
    Scenario::Insert,
    Scenario::OverwriteLarger,
    Scenario::OverwriteSmaller,
    Scenario::IndexGrows,
    Scenario::StripeEmptied,
    Scenario::Group,
    Scenario::Eviction,
    Scenario::ExpirySweep,
    Scenario::Flush,
    Scenario::Compaction,
    Scenario::RewriteKept,
    Scenario::ReleaseKept,
    Scenario::ReclaimKept,
];

fn value(tag: &str, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}:").into_bytes();
    v.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    v
}

/// One operation as a command runs it: `keys` locked, whole or nothing.
fn command(ks: &mut Keyspace, keys: &[&[u8]], f: impl FnOnce(&mut Keyspace)) {
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
    ks.begin_command(keys.iter(), false);
    f(ks);
    ks.end_command().unwrap();
}

/// A key whose insertion makes its stripe's index grow (found the same way
/// in every process attached to the store).
fn growing_key(ks: &Keyspace) -> Vec<u8> {
    (0..).map(|i| format!("grow:{i}").into_bytes()).find(|k| ks.index_growth(k) > 0).unwrap()
}

/// A key whose stripe is not "a"'s (the same in every process: the hash
/// keys are fixed).
fn key_beside_a(ks: &mut Keyspace) -> Vec<u8> {
    let stripe = ks.handle().locate(b"a").0;
    (0..).map(|i| format!("b{i}").into_bytes()).find(|k| ks.handle().locate(k).0 != stripe).unwrap()
}

/// Bytes of the mapping for a scenario: a ReclaimKept store has room for
/// two chunks, three runs of 17 pages and 4 pages more.
fn store_len(scenario: Scenario) -> u64 {
    match scenario {
        Scenario::ReclaimKept => layout::HEAP_START + (2 * layout::CHUNK_PAGES + 3 * 17 + 4) * layout::PAGE,
        _ => 1 << 30,
    }
}

/// The store each run of a scenario starts from.
fn set_up(scenario: Scenario, ks: &mut Keyspace) {
    let put = |ks: &mut Keyspace, key: &str, len: usize, expiry: Expiry| {
        command(ks, &[key.as_bytes()], |ks| ks.set(key.as_bytes(), &value(key, len), expiry, NOW));
    };
    match scenario {
        Scenario::StripeEmptied => put(ks, "alone", 100, Expiry::Clear),
        // "a" and b on two stripes, each with its chunk; a's stripe keeps
        // the run of a's first 64 KiB value; b's first 64 KiB value takes 17
        // of the 21 pages left above the heap's top.
        Scenario::ReclaimKept => {
            let b = String::from_utf8(key_beside_a(ks)).unwrap();
            put(ks, "a", 10, Expiry::Clear);
            put(ks, &b, 10, Expiry::Clear);
            put(ks, "a", 65_536, Expiry::Clear);
            put(ks, "a", 65_536, Expiry::Clear);
            put(ks, &b, 65_536, Expiry::Clear);
            assert_eq!(kept_by_stripe_of(ks, b"a"), 17);
        }
        Scenario::IndexGrows => {
            for i in 0..300 {
                put(ks, &format!("k{i}"), 20, Expiry::Clear);
            }
        }
        Scenario::Compaction => {
            for i in 0..2_000 {
                put(ks, &format!("k{i}"), [10, 100, 600][i % 3], Expiry::Clear);
            }
            for i in (0..2_000).filter(|i| i % 4 != 0) {
                let key = format!("k{i}");
                command(ks, &[key.as_bytes()], |ks| {
                    ks.remove(key.as_bytes(), NOW);
                });
            }
        }
        _ => {
            for i in 0..40 {
                put(ks, &format!("k{i}"), [10, 100, 3_000, 70_000][i % 4], Expiry::Clear);
            }
            for i in 0..10 {
                // Already expired at NOW: the sweep's work.
                put(ks, &format!("e{i}"), 50, Expiry::At(NOW - 1));
            }
        }
    }
    if let Scenario::RewriteKept | Scenario::ReleaseKept = scenario {
        // Rewritten at its size, k3 leaves the run of its first value to its
        // stripe; the next rewrite takes that run.
        put(ks, "k3", 70_000, Expiry::Clear);
        if let Scenario::ReleaseKept = scenario {
            command(ks, &[b"k7"], |ks| {
                ks.remove(b"k7", NOW);
            });
        }
        assert!(kept_by_stripe_of(ks, b"k3") > 0, "k3's stripe keeps no run");
    }
    if let Scenario::Eviction = scenario {
        ks.set_limits(MemoryLimits { max_keys: ks.len(), policy: EvictionPolicy::AllKeysLru, ..Default::default() });
    }
}

/// Pages of free runs the stripe of `key` keeps.
fn kept_by_stripe_of(ks: &mut Keyspace, key: &[u8]) -> u64 {
    let stripe = ks.handle().locate(key).0;
    ks.store().region().u64(layout::stripe_base(stripe) + layout::T_RUN_PAGES).load(Ordering::Relaxed)
}

/// The operation under test.
fn operate(scenario: Scenario, ks: &mut Keyspace) {
    match scenario {
        Scenario::Insert => command(ks, &[b"new"], |ks| ks.set(b"new", &value("new", 100), Expiry::Clear, NOW)),
        // k1 holds 100 bytes, k3 70,000: a page run replaces a size-class object, and back.
        Scenario::OverwriteLarger => {
            command(ks, &[b"k1"], |ks| ks.set(b"k1", &value("big", 90_000), Expiry::Keep, NOW))
        }
        Scenario::OverwriteSmaller => command(ks, &[b"k3"], |ks| ks.set(b"k3", &value("small", 5), Expiry::Keep, NOW)),
        Scenario::IndexGrows => {
            let key = growing_key(ks);
            command(ks, &[&key], |ks| ks.set(&key, &value("grown", 20), Expiry::Clear, NOW));
        }
        Scenario::StripeEmptied => command(ks, &[b"alone"], |ks| {
            ks.remove(b"alone", NOW);
        }),
        Scenario::Group => {
            let keys: [&[u8]; 5] = [b"k0", b"k5", b"k10", b"g1", b"g2"];
            command(ks, &keys, |ks| keys.iter().for_each(|k| ks.set(k, &value("group", 300), Expiry::Clear, NOW)));
        }
        Scenario::Eviction => {
            ks.make_room(200, 1, NOW).unwrap();
            command(ks, &[b"new"], |ks| ks.set(b"new", &value("new", 100), Expiry::Clear, NOW));
        }
        Scenario::ExpirySweep => {
            ks.purge_expired(NOW, 1_000);
        }
        Scenario::Flush => ks.clear(),
        // Moves the entries of a few stripes into fresh chunks, then gives
        // the freed pages back (merging free runs): the data stays as it was.
        Scenario::Compaction => {
            for stripe in 0..4 {
                ks.compact_stripe(stripe).unwrap();
            }
            ks.release_free_pages();
        }
        Scenario::RewriteKept => {
            let (heap, kept) = (ks.store().heap_size(), kept_by_stripe_of(ks, b"k3"));
            command(ks, &[b"k3"], |ks| ks.set(b"k3", &value("again", 70_000), Expiry::Keep, NOW));
            // The new value took the kept run, and the old one is kept.
            assert_eq!((ks.store().heap_size(), kept_by_stripe_of(ks, b"k3")), (heap, kept));
        }
        Scenario::ReleaseKept => {
            ks.release_free_pages();
            assert_eq!(kept_by_stripe_of(ks, b"k3"), 0);
        }
        // b's second value fits only in the run a's stripe keeps.
        // (Run again on a repaired store where it had completed, it finds
        // the run b's stripe keeps instead.)
        Scenario::ReclaimKept => {
            let b = key_beside_a(ks);
            let first = kept_by_stripe_of(ks, b"a") == 17;
            command(ks, &[&b], |ks| ks.set(&b, &value("again", 65_536), Expiry::Clear, NOW));
            if first {
                assert_eq!((kept_by_stripe_of(ks, b"a"), kept_by_stripe_of(ks, &b)), (0, 17));
            }
        }
    }
}

type State = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn state(ks: &mut Keyspace) -> State {
    // Read at NOW - 1: keys that expire at NOW - 1 count as live.
    ks.live_entries(NOW - 2).into_iter().map(|e| (e.key().to_vec(), (e.value().to_vec(), e.expires_at()))).collect()
}

/// Whether `now` is the state after the operation, given the state
/// before it and the state after it on another store set up alike.
fn completed(scenario: Scenario, before: &State, after: &State, now: &State) -> bool {
    match scenario {
        // Which key is evicted is drawn at random: one is gone, the new key
        // is there, the others are unchanged.
        Scenario::Eviction => {
            now.len() == before.len()
                && now.get(b"new".as_slice()) == after.get(b"new".as_slice())
                && now.iter().all(|(k, v)| k == b"new" || before.get(k) == Some(v))
        }
        _ => now == after,
    }
}

/// Whether `now` is a state a kill may leave, given the states before and
/// after the operation.
fn acceptable(scenario: Scenario, before: &State, after: &State, now: &State) -> bool {
    if now == before || completed(scenario, before, after, now) {
        return true;
    }
    match scenario {
        // Evictions run before the write, each an operation of its own: any
        // keys may be gone, the others unchanged, the new key not yet there.
        Scenario::Eviction => !now.contains_key(b"new".as_slice()) && now.iter().all(|(k, v)| before.get(k) == Some(v)),
        // Each expired key is removed in an operation of its own.
        Scenario::ExpirySweep => {
            after.iter().all(|(k, v)| now.get(k) == Some(v)) && now.iter().all(|(k, v)| before.get(k) == Some(v))
        }
        _ => false,
    }
}

#[test]
fn point_process() {
    let (Ok(fd), Ok(scenario), Ok(n)) = (
        std::env::var("CLUSTER_SHM_POINT_FD"),
        std::env::var("CLUSTER_SHM_POINT_SCENARIO"),
        std::env::var("CLUSTER_SHM_POINT_N"),
    ) else {
        return; // Run by the harness below only.
    };
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: the harness left this descriptor open for us.
    let store = Store::attach(unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) }).unwrap();
    let mut ks = Keyspace::attach(&store).unwrap();
    let scenario = SCENARIOS[scenario.parse::<usize>().unwrap()];
    COUNTDOWN.store(n.parse().unwrap(), Ordering::Relaxed);
    operate(scenario, &mut ks);
    COUNTDOWN.store(0, Ordering::Relaxed);
}

/// Runs the operation in a child armed to die at step `n`; true when it died.
fn run_child(store: &Arc<Store>, scenario: usize, n: u64) -> bool {
    // A descriptor without close-on-exec, for the child to inherit.
    // SAFETY: dup of our own open memfd.
    let fd = unsafe { libc::dup(store.region().fd().unwrap()) };
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shm::crash_points::point_process", "--test-threads=1", "-q"])
        .env("CLUSTER_SHM_POINT_FD", fd.to_string())
        .env("CLUSTER_SHM_POINT_SCENARIO", scenario.to_string())
        .env("CLUSTER_SHM_POINT_N", n.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    // SAFETY: the child had its copy.
    unsafe { libc::close(fd) };
    match status.signal() {
        Some(libc::SIGKILL) => true,
        other => {
            assert!(status.success(), "the child ended with {status:?} (signal {other:?})");
            false
        }
    }
}

fn fresh(scenario: Scenario) -> (Arc<Store>, Keyspace) {
    // Fixed hash keys: every run of a scenario takes the same steps.
    let store = Store::create_with_keys(store_len(scenario), &Backing::Memfd, (0x5eed_0001, 0x5eed_0002)).unwrap();
    let mut ks = Keyspace::attach(&store).unwrap();
    set_up(scenario, &mut ks);
    (store, ks)
}

#[test]
fn a_process_killed_at_any_step_of_an_operation_leaves_it_whole_or_undone() {
    let mut report = Vec::new();
    for (index, &scenario) in SCENARIOS.iter().enumerate() {
        // Another store set up alike, with the same hash keys: the operation
        // takes the same steps there.
        let after_elsewhere = {
            let (_store, mut ks) = fresh(scenario);
            operate(scenario, &mut ks);
            assert!(ks.verify().is_empty());
            state(&mut ks)
        };
        let mut kills = 0;
        let mut undone = 0;
        for n in 1.. {
            let (store, mut ks) = fresh(scenario);
            let before = state(&mut ks);
            let after = &after_elsewhere;
            if !matches!(scenario, Scenario::Compaction | Scenario::ReleaseKept) {
                assert_ne!(&before, after, "{scenario:?} changes nothing");
            }
            let died = run_child(&store, index, n);
            // As the broker does when the process's connection closes.
            Handle::recover_dead(&store);
            let problems = ks.verify();
            assert!(problems.is_empty(), "{scenario:?}, killed at step {n}: {problems:?}");
            let now = state(&mut ks);
            assert!(
                acceptable(scenario, &before, after, &now),
                "{scenario:?}, killed at step {n}: neither before nor after"
            );
            // The store takes the same operation again once repaired.
            operate(scenario, &mut ks);
            assert!(ks.verify().is_empty(), "{scenario:?}, after step {n} and a rerun");
            if !died {
                assert!(completed(scenario, &before, after, &now), "{scenario:?} completed: {now:?}");
                break;
            }
            kills += 1;
            undone += usize::from(now == before);
            if std::env::var_os("CLUSTER_SHM_POINT_TRACE").is_some() {
                eprintln!("{scenario:?} step {n}: {}", if now == before { "undone" } else { "kept" });
            }
        }
        assert!(kills > 2, "{scenario:?}: only {kills} steps");
        report.push(format!("{scenario:?}: {kills} kills ({undone} undone)"));
    }
    eprintln!("{}", report.join("; "));
}

//! Writers in separate processes are SIGKILLed at random instants, over and
//! over, while they write to one shared store; after every kill the dead
//! writer's slot is repaired (by this process, as the broker does when a
//! connection closes, or by the surviving writers that wait for its locks),
//! SHM.VERIFY's walk must find nothing, and a ledger of acknowledged writes
//! must match what the store holds.
//!
//! The writer is this test binary run again with `CLUSTER_SHM_CRASH_FD` set
//! (see `writer_process`).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shm::{Backing, Handle, Store};
use crate::store::{EvictionPolicy, Expiry, Keyspace, MemoryLimits};
use bytes::Bytes;

const WRITERS: usize = 4;
/// At least 1,000 (CLUSTER_SHM_KILLS overrides, for longer runs).
fn kills() -> usize {
    std::env::var("CLUSTER_SHM_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
}
const OWN_KEYS: u64 = 40;
const GROUP: usize = 5;
/// Small keys a writer sets and then deletes at once.
const BULK: usize = 200;
const SIZES: [usize; 7] = [1, 40, 100, 900, 5_000, 70_000, 98_304];

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The value a writer stores for its operation `seq`: its length and bytes
/// follow from `seq`, so the checker can recompute it.
fn value_of(seq: u64) -> Vec<u8> {
    let len = SIZES[(seq % SIZES.len() as u64) as usize];
    let head = format!("{seq}:");
    let mut v: Vec<u8> = head.into_bytes();
    v.extend((0..len).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    v
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One operation as a command would run it: `keys` locked, whole or nothing.
fn op(ks: &mut Keyspace, keys: &[Vec<u8>], f: impl FnOnce(&mut Keyspace)) -> bool {
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
    ks.begin_command(keys.iter(), false);
    f(ks);
    ks.end_command().is_ok()
}

#[test]
fn writer_process() {
    let (Ok(fd), Ok(id)) = (std::env::var("CLUSTER_SHM_CRASH_FD"), std::env::var("CLUSTER_SHM_CRASH_ID")) else {
        return; // Run by the harness below only.
    };
    let id: u64 = id.parse().unwrap();
    // Never outlive the harness, even when it fails.
    // SAFETY: prctl with constant arguments.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if std::os::unix::process::parent_id() == 1 {
        return;
    }
    // SAFETY: the harness left this descriptor open for us.
    let store = Store::attach(unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) }).unwrap();
    let mut ks = Keyspace::attach(&store).unwrap();
    let mut ledger =
        std::fs::OpenOptions::new().append(true).open(std::env::var("CLUSTER_SHM_LEDGER").unwrap()).unwrap();
    let base: u64 = std::env::var("CLUSTER_SHM_CRASH_SEQ").unwrap().parse().unwrap();
    let mut rng = Rng(base | 1);
    let mut note = |line: String| ledger.write_all(format!("{line}\n").as_bytes()).unwrap();
    for seq in base.. {
        let now = now_ms();
        match rng.next() % 12 {
            0..=3 => {
                let key = format!("w{id}:k{}", rng.next() % OWN_KEYS).into_bytes();
                note(format!("I S {} {seq}", String::from_utf8_lossy(&key)));
                let value = value_of(seq);
                if op(&mut ks, std::slice::from_ref(&key), |ks| ks.set(&key, &value, Expiry::Clear, now)) {
                    note(format!("A S {} {seq}", String::from_utf8_lossy(&key)));
                }
            }
            4 | 5 => {
                note("I C".into());
                let key = b"counter".to_vec();
                let done = op(&mut ks, std::slice::from_ref(&key), |ks| {
                    let n: u64 =
                        ks.get(&key, now).map_or(0, |e| std::str::from_utf8(e.value()).unwrap().parse().unwrap());
                    ks.set(&key, (n + 1).to_string().as_bytes(), Expiry::Keep, now);
                });
                if done {
                    note("A C".into());
                }
            }
            6 => {
                let keys: Vec<Vec<u8>> = (0..GROUP).map(|j| format!("w{id}:g{j}").into_bytes()).collect();
                note(format!("I G {seq}"));
                let value = value_of(seq);
                if op(&mut ks, &keys, |ks| keys.iter().for_each(|k| ks.set(k, &value, Expiry::Clear, now))) {
                    note(format!("A G {seq}"));
                }
            }
            7 => {
                let key = format!("w{id}:k{}", rng.next() % OWN_KEYS).into_bytes();
                note(format!("I D {}", String::from_utf8_lossy(&key)));
                if op(&mut ks, std::slice::from_ref(&key), |ks| {
                    ks.remove(&key, now);
                }) {
                    note(format!("A D {}", String::from_utf8_lossy(&key)));
                }
            }
            8 => {
                // Keys that expire within milliseconds, and the sweep.
                let key = format!("w{id}:e{}", rng.next() % 20).into_bytes();
                let value = value_of(seq);
                op(&mut ks, std::slice::from_ref(&key), |ks| {
                    ks.set(&key, &value, Expiry::At(now + rng.next() % 5), now)
                });
                ks.purge_expired(now, 100);
            }
            9 => {
                // Room for a key under the bound evicts volatile keys.
                let _ = ks.make_room(100, 1, now);
            }
            10 => {
                // Small keys in bulk, then all deleted in one operation: their
                // stripes' free lists fill up for the compactions below.
                let keys: Vec<Vec<u8>> = (0..BULK).map(|j| format!("w{id}:b{j}").into_bytes()).collect();
                for (j, key) in keys.iter().enumerate() {
                    let value = vec![b'b'; 1 + (seq as usize + j * 37) % 300];
                    op(&mut ks, std::slice::from_ref(key), |ks| ks.set(key, &value, Expiry::Clear, now));
                }
                op(&mut ks, &keys, |ks| {
                    for key in &keys {
                        ks.remove(key, now);
                    }
                });
            }
            _ => {
                // A stripe holding some of this writer's keys is compacted
                // (its entries move to fresh chunks, its old chunks are
                // freed), and now and then the free runs are merged and
                // released, as the broker's sweep does.
                let key = format!("w{id}:k{}", rng.next() % OWN_KEYS).into_bytes();
                let stripe = ks.handle().locate(&key).0;
                note(format!("I K {stripe}"));
                let done = ks.compact_stripe(stripe).is_ok();
                if rng.next().is_multiple_of(4) {
                    ks.release_free_pages();
                }
                note(format!("A K {stripe} {done}"));
            }
        }
    }
}

/// A key's last acknowledged write, and the writes in flight since (one per
/// writer killed mid-operation, each of which may have been applied): each
/// `Some(seq)` for a value, `None` for a delete.
type KeyLedger = (Option<Option<u64>>, Vec<Option<u64>>);

/// What the ledgers say the store must hold.
#[derive(Default)]
struct Expected {
    keys: HashMap<String, KeyLedger>,
    counter_acked: u64,
    counter_in_flight: u64,
    groups: HashMap<u64, (Option<u64>, Vec<u64>)>,
}

fn read_ledgers(dir: &std::path::Path) -> Expected {
    let mut e = Expected::default();
    for w in 0..WRITERS as u64 {
        let text = std::fs::read_to_string(dir.join(format!("w{w}"))).unwrap_or_default();
        let mut open_counter = false;
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["I", "S", key, seq] => e.keys.entry(key.to_string()).or_default().1.push(Some(seq.parse().unwrap())),
                ["A", "S", key, seq] => {
                    *e.keys.entry(key.to_string()).or_default() = (Some(Some(seq.parse().unwrap())), vec![])
                }
                ["I", "D", key] => e.keys.entry(key.to_string()).or_default().1.push(None),
                ["A", "D", key] => *e.keys.entry(key.to_string()).or_default() = (Some(None), vec![]),
                ["I", "C"] => {
                    if open_counter {
                        e.counter_in_flight += 1; // the previous one never came back
                    }
                    open_counter = true;
                }
                ["A", "C"] => {
                    open_counter = false;
                    e.counter_acked += 1;
                }
                ["I", "G", seq] => e.groups.entry(w).or_default().1.push(seq.parse().unwrap()),
                ["A", "G", seq] => *e.groups.entry(w).or_default() = (Some(seq.parse().unwrap()), vec![]),
                _ => {}
            }
        }
        if open_counter {
            e.counter_in_flight += 1;
        }
    }
    e
}

fn check_ledgers(ks: &mut Keyspace, dir: &std::path::Path) {
    let e = read_ledgers(dir);
    let now = now_ms();
    for (key, (acked, intent)) in &e.keys {
        let held = ks.get(key.as_bytes(), now).map(|entry| entry.value().to_vec());
        let seq = held.as_ref().map(|v| {
            let text = String::from_utf8_lossy(&v[..v.iter().position(|&b| b == b':').unwrap()]).to_string();
            let seq: u64 = text.parse().unwrap();
            assert_eq!(v, &value_of(seq), "{key}: a torn value");
            seq
        });
        let allowed = acked.unwrap_or(None) == seq || intent.contains(&seq);
        assert!(allowed, "{key} holds {seq:?}; acknowledged {acked:?}, in flight {intent:?}");
    }
    let counter: u64 = ks.get(b"counter", now).map_or(0, |e| std::str::from_utf8(e.value()).unwrap().parse().unwrap());
    assert!(
        counter >= e.counter_acked && counter <= e.counter_acked + e.counter_in_flight,
        "counter {counter}: {} acknowledged, {} in flight when killed",
        e.counter_acked,
        e.counter_in_flight
    );
    for (w, (acked, intent)) in &e.groups {
        let values: Vec<Option<Vec<u8>>> =
            (0..GROUP).map(|j| ks.get(format!("w{w}:g{j}").as_bytes(), now).map(|e| e.value().to_vec())).collect();
        assert!(values.iter().all(|v| v == &values[0]), "group of w{w} torn");
        let seq = values[0]
            .as_ref()
            .map(|v| String::from_utf8_lossy(&v[..v.iter().position(|&b| b == b':').unwrap()]).parse::<u64>().unwrap());
        assert!(
            seq == *acked || seq.is_some_and(|s| intent.contains(&s)),
            "group of w{w} at {seq:?}; acknowledged {acked:?}, in flight {intent:?}"
        );
    }
}

/// The last line of a ledger.
fn last_line(path: &std::path::Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64)));
        let _ = file.read_to_string(&mut tail);
    }
    tail.lines().last().unwrap_or_default().to_string()
}

/// The writer processes, killed whatever way the test ends.
struct Writers(Vec<Child>);

impl Drop for Writers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(store: &Arc<Store>, id: usize, dir: &std::path::Path, round: u64) -> Child {
    // A descriptor without close-on-exec, for the child to inherit.
    // SAFETY: dup of our own open memfd.
    let fd = unsafe { libc::dup(store.region().fd().unwrap()) };
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shm::crash_tests::writer_process", "--nocapture", "--test-threads=1"])
        .env("CLUSTER_SHM_CRASH_FD", fd.to_string())
        .env("CLUSTER_SHM_CRASH_ID", id.to_string())
        .env("CLUSTER_SHM_CRASH_SEQ", (round * 10_000_000 + 1).to_string())
        .env("CLUSTER_SHM_LEDGER", dir.join(format!("w{id}")))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // SAFETY: the child has its copy.
    unsafe { libc::close(fd) };
    child
}

#[cfg(target_os = "linux")]
#[test]
fn writers_killed_at_random_instants_leave_the_store_whole() {
    let dir = std::env::temp_dir().join(format!("cluster-shm-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for w in 0..WRITERS {
        std::fs::write(dir.join(format!("w{w}")), "").unwrap();
    }
    let store = Store::create(2 << 30, &Backing::Memfd).unwrap();
    let mut ks = Keyspace::attach(&store).unwrap();
    ks.set_limits(MemoryLimits {
        max_keys: WRITERS * (OWN_KEYS as usize + GROUP + 10) + 1,
        policy: EvictionPolicy::VolatileTtl,
        ..Default::default()
    });
    let mut children = Writers((0..WRITERS).map(|w| spawn(&store, w, &dir, w as u64)).collect());
    let children = &mut children.0;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut by_waiters = 0;
    // Kills that struck between a compaction's start and its end.
    let mut mid_compaction = 0;
    for kill in 0..kills() {
        std::thread::sleep(Duration::from_micros(500 + rng.next() % 2_500));
        let w = (rng.next() % WRITERS as u64) as usize;
        let pid = children[w].id() as u64;
        children[w].kill().unwrap();
        children[w].wait().unwrap();
        if last_line(&dir.join(format!("w{w}"))).starts_with("I K ") {
            mid_compaction += 1;
        }
        let slot = Handle::attached(&store).into_iter().find(|&(_, p)| p == pid).map(|(s, _)| s);
        if let Some(slot) = slot {
            if kill % 2 == 0 {
                // As the broker does when the process's connection closes.
                Handle::recover(&store, slot);
            } else {
                // Left to whoever waits for its locks; VERIFY below waits for all of them.
                by_waiters += 1;
            }
        }
        if std::env::var_os("CLUSTER_SHM_CRASH_TRACE").is_some() {
            eprintln!("kill {kill}: w{w} (pid {pid}) slot {slot:?}");
        }
        // As the broker's maintenance does: a writer killed while it
        // recovered another leaves that slot to whoever comes next.
        Handle::recover_dead(&store);
        let problems = ks.verify();
        assert!(problems.is_empty(), "after kill {kill}: {problems:?}");
        if kill % 50 == 49 {
            // The ledgers are compared with the store while no writer runs:
            // the others are killed too (and repaired by the broker's path).
            for (other, child) in children.iter_mut().enumerate() {
                if other != w {
                    let pid = child.id() as u64;
                    child.kill().unwrap();
                    child.wait().unwrap();
                    if let Some((slot, _)) = Handle::attached(&store).into_iter().find(|&(_, p)| p == pid) {
                        Handle::recover(&store, slot);
                    }
                }
            }
            Handle::recover_dead(&store);
            let problems = ks.verify();
            assert!(problems.is_empty(), "after kill {kill}: {problems:?}");
            check_ledgers(&mut ks, &dir);
            for (other, child) in children.iter_mut().enumerate() {
                if other != w {
                    *child = spawn(&store, other, &dir, (kill * WRITERS + other + WRITERS) as u64);
                }
            }
        }
        children[w] = spawn(&store, w, &dir, (kill * WRITERS + w + WRITERS) as u64);
    }
    for child in children.iter_mut() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    for (slot, _) in Handle::attached(&store) {
        if slot != ks.handle().slot() {
            Handle::recover(&store, slot);
        }
    }
    assert_eq!(ks.verify(), Vec::<String>::new());
    check_ledgers(&mut ks, &dir);
    let e = read_ledgers(&dir);
    eprintln!(
        "{} kills in {:?} ({by_waiters} repaired by waiters, {mid_compaction} during a compaction); {} keys, counter {} \
         acknowledged",
        kills(),
        started.elapsed(),
        ks.len(),
        e.counter_acked
    );
    assert!(e.counter_acked > 0 && e.keys.len() as u64 > OWN_KEYS);
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The keyspace: entries, their expiry times and the statistics INFO
//! reports, kept in the shared store (src/shm/) that every attached process
//! maps. This is the broker's and every attached process's view of it, with
//! the method names the commands use.
//!
//! Every time-dependent call takes `now` in Unix milliseconds, so tests
//! drive the clock and the broker passes real time. Calls made while a
//! command runs (see [`Keyspace::begin_command`]) join its operation: the
//! command is applied whole or not at all. Calls made outside one are each
//! an operation of their own.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::glob::Glob;
use super::locks::LockTable;
use super::notify;
use super::pubsub::PubSub;
use super::sample::Sampler;
use super::tracking::Tracking;
use crate::shm::layout::{self, STRIPE_COUNT};
use crate::shm::NEVER;
use crate::shm::{Backing, EntryFields, Found, Handle, Store, StoreError};

/// A copy of one key with its string value (the only Redis type so far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    key: Bytes,
    value: Bytes,
    /// Unix ms when the key expires; [`NEVER`] for a persistent key.
    expires_at: u64,
    /// Changes on every write to the key (WATCH compares it).
    version: u64,
    /// LRU clock: the low 32 bits of the last read or write in Unix ms.
    last_access: u32,
}

/// Redis's name for the type of every value here: the store holds strings.
pub const VALUE_TYPE: &str = "string";

fn lru_clock(now: u64) -> u32 {
    now as u32
}

/// Milliseconds from `last` to `clock` on the wrapping LRU clock. A stamp
/// slightly ahead of `clock` (written by another process whose clock read
/// came a moment later) counts as just used, not as 49 days old.
fn idle_between(clock: u32, last: u32) -> u32 {
    let idle = clock.wrapping_sub(last);
    if idle > u32::MAX / 2 {
        0
    } else {
        idle
    }
}

impl Entry {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Unix ms when the key expires; `None` for a persistent key.
    pub fn expires_at(&self) -> Option<u64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Milliseconds since the key was last read or written (modulo 2^32).
    pub fn idle_ms(&self, now: u64) -> u64 {
        u64::from(idle_between(lru_clock(now), self.last_access))
    }

    /// Redis's name for the value's type, as TYPE reports it.
    pub fn type_name(&self) -> &'static str {
        VALUE_TYPE
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }
}

/// Bytes of an entry's header in the store, before its key and value (a
/// write asking for room counts it per key; see also
/// [`Keyspace::index_growth`]).
pub const ENTRY_HEADER: usize = 32;

/// Which keys make room when a memory bound is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Writes that need room are refused with an OOM error.
    #[default]
    NoEviction,
    /// The least recently used keys go first (approximated by sampling).
    AllKeysLru,
    /// Keys with a ttl go first, soonest to expire first.
    VolatileTtl,
}

impl EvictionPolicy {
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(name: &[u8]) -> Option<EvictionPolicy> {
        Self::ALL.into_iter().find(|p| name.eq_ignore_ascii_case(p.name().as_bytes()))
    }

    const ALL: [EvictionPolicy; 3] =
        [EvictionPolicy::NoEviction, EvictionPolicy::AllKeysLru, EvictionPolicy::VolatileTtl];

    fn code(self) -> u64 {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0) as u64
    }
}

/// Bounds on the keyspace; 0 means unbounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryLimits {
    pub max_memory: usize,
    pub max_keys: usize,
    pub policy: EvictionPolicy,
}

/// A write could not get the room it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

/// An attached process stops using a store whose broker has not swept it
/// for this long (the sweep runs every 50 ms).
const BROKER_SILENCE_MS: u64 = 2_000;
/// Free bytes a stripe's size classes hold before [`Keyspace::compact`]
/// moves its entries (two chunks).
pub const COMPACT_MIN_FREE: u64 = 2 * layout::CHUNK_BYTES;

/// Keys looked at per eviction; more samples approximate true LRU better.
const EVICTION_SAMPLES: usize = 16;
/// A keyspace this small is searched exactly for the eviction victim.
const EXACT_EVICTION: u64 = (EVICTION_SAMPLES * 4) as u64;

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub expired_keys: u64,
    pub evicted_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
}

/// How a write changes the expiry of the key it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The key becomes persistent.
    Clear,
    /// The key keeps whatever expiry it had (SET ... KEEPTTL).
    Keep,
    /// The key expires at this Unix ms time.
    At(u64),
}

#[derive(Default)]
struct Located {
    valid: bool,
    key: Vec<u8>,
    stripe: u32,
    hh: u32,
}

impl Located {
    /// Longer keys are hashed again rather than copied.
    const MAX_KEY: usize = 256;
}

pub struct Keyspace {
    h: Handle,
    /// The broker's own view (it keeps the high-water marks and tells other
    /// processes when their changes must go through it).
    is_broker: bool,
    /// Why the operation in flight cannot complete; it is rolled back.
    failure: Option<StoreError>,
    sampler: Sampler,
    /// Where the expiry sweep goes on from.
    sweep_from: u32,
    /// The last key located, with its stripe and hash half: a command's key
    /// is looked for by `begin_command` and again by each call its handler
    /// makes, and is hashed once.
    located: Located,
    /// `begin_command`'s list of stripes, kept to save an allocation per command.
    stripes_to_lock: Vec<u32>,
    /// Where the compaction sweep goes on from.
    compact_from: u32,
    /// Named locks live beside the keys, in the broker, but outside the
    /// keyspace: KEYS, FLUSHDB and eviction never touch them.
    pub locks: LockTable,
    /// Subscriptions live here too, so that keyspace events are published
    /// in the broker as the change they describe is made.
    pub pubsub: PubSub,
    /// Classes of keyspace events published (see [`notify`]); 0 is off.
    pub notify_flags: u32,
    /// Client-side caching: who read which key. Every change to a key
    /// passes through [`Keyspace::bump_version`] or `remove_found` (or
    /// [`Keyspace::clear`]), which tell it.
    pub tracking: Tracking,
}

impl Default for Keyspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyspace {
    /// A keyspace in a new store of this process's own, in memory no file
    /// names ([`Backing::without_file`]).
    pub fn new() -> Self {
        Self::in_new_store(&Backing::without_file()).expect("cannot map the shared store")
    }

    /// A keyspace in a new store of this process's own, in memory of the
    /// kind `backing` names.
    pub fn in_new_store(backing: &Backing) -> io::Result<Self> {
        let store = Store::create(crate::shm::default_len(), backing)?;
        let mut ks = Self::attach(&store).expect("a new store has free slots");
        ks.is_broker = true;
        store.counter(layout::H_HEARTBEAT).store(super::now_ms(), Ordering::Relaxed);
        Ok(ks)
    }

    /// A view of `store` through a slot of its own.
    pub fn attach(store: &Arc<Store>) -> Result<Self, StoreError> {
        Ok(Keyspace {
            h: store.handle()?,
            is_broker: false,
            failure: None,
            sampler: Sampler::default(),
            sweep_from: 0,
            located: Located::default(),
            stripes_to_lock: Vec::new(),
            compact_from: 0,
            locks: LockTable::default(),
            pubsub: PubSub::default(),
            notify_flags: 0,
            tracking: Tracking::default(),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        self.h.store()
    }

    pub fn handle(&mut self) -> &mut Handle {
        &mut self.h
    }

    // ---- operations: one per command, or one per call outside a command ----

    /// Starts the operation a command runs in, with the stripes of `keys`
    /// locked (in ascending order, so no two processes deadlock); `all`
    /// locks every stripe (EXEC, whose queued commands are only known as it
    /// runs). Returns false when an operation was already running (a command
    /// queued in EXEC runs inside EXEC's).
    pub fn begin_command<'k>(&mut self, keys: impl Iterator<Item = &'k Bytes>, all: bool) -> bool {
        if self.h.is_active() {
            return false;
        }
        self.h.begin();
        let mut stripes = std::mem::take(&mut self.stripes_to_lock);
        stripes.clear();
        if all {
            stripes.extend(0..STRIPE_COUNT as u32);
        } else {
            stripes.extend(keys.map(|k| self.locate(k).0));
        }
        stripes.sort_unstable();
        stripes.dedup();
        for &stripe in &stripes {
            if let Err(e) = self.h.lock(stripe) {
                self.failure = Some(e);
                break;
            }
        }
        self.stripes_to_lock = stripes;
        true
    }

    /// Ends a command's operation: commits it, or rolls it back and says
    /// why when something in it failed.
    pub fn end_command(&mut self) -> Result<(), StoreError> {
        match self.failure.take() {
            None => {
                self.h.commit()?;
                Ok(())
            }
            Some(e) => {
                self.h.abort();
                Err(e)
            }
        }
    }

    /// Rolls the command's operation back (it must run elsewhere).
    pub fn abandon_command(&mut self) {
        self.failure = None;
        self.h.abort();
    }

    /// Runs `f` in the operation in flight, or in one of its own.
    fn op<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let own = !self.h.is_active();
        if own {
            self.h.begin();
        }
        let result = f(self);
        if own {
            let _ = self.end_command();
        }
        result
    }

    /// Before memory is freed: the broker records the high-water marks (peak,
    /// and the mark it releases memory from). They only matter as memory
    /// falls, and adding up the stripes' counts after every command would
    /// cost more than the command; other processes leave them to the
    /// broker's sweep, which samples them every 50 ms.
    fn note_usage(&self) {
        if self.is_broker {
            self.store().note_usage();
        }
    }

    fn fail(&mut self, error: StoreError) {
        self.failure.get_or_insert(error);
    }

    fn check<T>(&mut self, result: Result<T, StoreError>) -> Option<T> {
        result.map_err(|e| self.fail(e)).ok()
    }

    /// The stripe of `key` and the hash half its index slot carries.
    fn locate(&mut self, key: &[u8]) -> (u32, u32) {
        if self.located.valid && self.located.key == key {
            return (self.located.stripe, self.located.hh);
        }
        let (stripe, hh) = self.h.locate(key);
        if key.len() <= Located::MAX_KEY {
            self.located.key.clear();
            self.located.key.extend_from_slice(key);
            self.located = Located { valid: true, stripe, hh, key: std::mem::take(&mut self.located.key) };
        }
        (stripe, hh)
    }

    /// Locks the stripe of `key` and finds its entry, live or not.
    fn find(&mut self, key: &[u8]) -> Option<(u32, u32, Option<Found>)> {
        if self.failure.is_some() {
            return None;
        }
        let (stripe, hh) = self.locate(key);
        let locked = self.h.lock(stripe);
        self.check(locked)?;
        Some((stripe, hh, self.h.find(stripe, hh, key)))
    }

    /// The live entry of `key`; an expired one is removed on the way.
    fn live(&mut self, key: &[u8], now: u64) -> Option<Found> {
        let found = self.find(key)?.2?;
        if found.entry.expires_at(&self.h) <= now {
            // Found by a command: for NOLOOP, its client's own change, as in Redis.
            self.expire_found(found, key, true);
            return None;
        }
        Some(found)
    }

    fn copy(&self, found: Found) -> Entry {
        let e = found.entry;
        Entry {
            key: e.key(&self.h).into(),
            value: e.value(&self.h).into(),
            expires_at: e.expires_at(&self.h),
            version: e.version(&self.h),
            last_access: e.last_access(&self.h),
        }
    }

    // ---- counters ----

    /// Live and not-yet-reclaimed keys; expired keys disappear from this
    /// count when they are next touched or swept.
    pub fn len(&self) -> usize {
        self.store().len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn volatile_len(&self) -> usize {
        self.store().volatile_len() as usize
    }

    /// Bytes held by entries (in their size classes) and index tables.
    pub fn used_memory(&self) -> usize {
        self.store().used_memory() as usize
    }

    /// The highest [`Keyspace::used_memory`] seen.
    pub fn peak_memory(&self) -> usize {
        self.store().peak_memory() as usize
    }

    /// Bytes the store freed since [`Keyspace::mark_released`]: how far
    /// `used_memory` fell from its highest point since.
    pub fn released_memory(&self) -> usize {
        self.store().note_usage();
        let mark = self.store().counter(layout::H_RELEASE_MARK).load(Ordering::Relaxed) as usize;
        mark.saturating_sub(self.used_memory())
    }

    /// The memory freed so far has been handed back to the OS.
    pub fn mark_released(&mut self) {
        self.store().note_usage();
        self.store().counter(layout::H_RELEASE_MARK).store(self.used_memory() as u64, Ordering::Relaxed);
    }

    pub fn limits(&self) -> MemoryLimits {
        let s = self.store();
        let policy = s.counter(layout::H_POLICY).load(Ordering::Relaxed) as usize;
        MemoryLimits {
            max_memory: s.counter(layout::H_MAX_MEMORY).load(Ordering::Relaxed) as usize,
            max_keys: s.counter(layout::H_MAX_KEYS).load(Ordering::Relaxed) as usize,
            policy: EvictionPolicy::ALL.get(policy).copied().unwrap_or_default(),
        }
    }

    /// Sets the bounds every attached process applies.
    pub fn set_limits(&mut self, limits: MemoryLimits) {
        let s = self.store();
        s.counter(layout::H_MAX_MEMORY).store(limits.max_memory as u64, Ordering::Relaxed);
        s.counter(layout::H_MAX_KEYS).store(limits.max_keys as u64, Ordering::Relaxed);
        s.counter(layout::H_POLICY).store(limits.policy.code(), Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        let c = |off| self.store().counter(off).load(Ordering::Relaxed);
        Stats {
            expired_keys: c(layout::H_EXPIRED),
            evicted_keys: c(layout::H_EVICTED),
            keyspace_hits: self.store().stripes_sum(layout::T_HITS),
            keyspace_misses: self.store().stripes_sum(layout::T_MISSES),
        }
    }

    pub fn reset_stats(&mut self) {
        for off in [layout::H_EXPIRED, layout::H_EVICTED] {
            self.store().counter(off).store(0, Ordering::Relaxed);
        }
        self.store().reset_stripe_words(&[layout::T_HITS, layout::T_MISSES]);
    }

    fn bump(&self, off: u64) {
        self.store().counter(off).fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this keyspace's changes must be seen by the broker: keyspace
    /// events are wanted by a subscriber, or some client tracks keys.
    pub fn wants_changes(&self) -> bool {
        (self.notify_flags != 0 && !self.pubsub.is_empty()) || self.tracking.has_keys()
    }

    /// Tells every attached process whether to send its changes through
    /// the broker (the broker calls this after each command). Once the flag
    /// is raised, every stripe is locked and released in turn: any change
    /// made without the broker has completed before this returns.
    pub fn publish_listening(&mut self) {
        if !self.is_broker {
            return;
        }
        let wanted = self.wants_changes() as u64;
        let flag = self.store().counter(layout::H_LISTEN);
        // Read first: attached processes read this word on every command,
        // and a write on every broker command would take its cache line away.
        if flag.load(Ordering::Relaxed) == wanted || flag.swap(wanted, Ordering::SeqCst) == wanted || wanted == 0 {
            return;
        }
        self.barrier();
    }

    /// Whether changes must go through the broker (checked by processes
    /// other than the broker, under their stripes' locks).
    pub fn listening(&self) -> bool {
        self.store().listening()
    }

    // ---- reads ----

    /// The live entry of `key` for a read command: a hit or a miss counted,
    /// its LRU clock moved.
    fn read_found(&mut self, key: &[u8], now: u64) -> Option<Found> {
        let Some(found) = self.live(key, now) else {
            if self.failure.is_none() {
                let stripe = self.locate(key).0;
                self.h.count_read(stripe, layout::T_MISSES);
            }
            return None;
        };
        self.h.count_read(found.stripe, layout::T_HITS);
        found.entry.touch(&self.h, lru_clock(now));
        Some(found)
    }

    /// Looks a key up for a read command, counting a hit or a miss.
    pub fn read(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        self.op(|ks| ks.read_found(key, now).map(|found| ks.copy(found)))
    }

    /// The value of a live key for a read command (a hit or a miss
    /// counted): one copy, of the value alone. Every value is a string
    /// today; other types, once there are any, need their own read.
    pub fn read_value(&mut self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        self.op(|ks| ks.read_found(key, now).map(|found| found.entry.value(&ks.h)))
    }

    /// Copies the value of a live key into the buffer `place(len, head)`
    /// picks for it (`head`: the value's first byte, None when empty),
    /// counting a hit or a miss. Returns the value's length (None for a
    /// missing key); when `place` gives no buffer, nothing is copied.
    pub fn read_into<'b>(
        &mut self,
        key: &[u8],
        now: u64,
        place: impl FnOnce(usize, Option<u8>) -> Option<&'b mut [u8]>,
    ) -> Option<usize> {
        self.op(|ks| {
            let found = ks.read_found(key, now)?;
            let len = found.entry.value_len(&ks.h);
            if let Some(buffer) = place(len, found.entry.value_head(&ks.h)) {
                found.entry.read_value(&ks.h, buffer);
            }
            Some(len)
        })
    }

    /// The version of a live key, `None` when it does not exist.
    pub fn version(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.op(|ks| ks.live(key, now).map(|f| f.entry.version(&ks.h)))
    }

    /// Looks a key up without touching the hit/miss statistics.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        self.op(|ks| ks.live(key, now).map(|f| ks.copy(f)))
    }

    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.op(|ks| ks.live(key, now).is_some())
    }

    // ---- writes ----

    /// A new version for `key`, which is being written or having its ttl
    /// changed. With `remove_found` and `clear`, the one place every change
    /// to a key goes through.
    fn bump_version(&mut self, key: &[u8], stripe: u32) -> Option<u64> {
        self.invalidate(key, true);
        let version = self.h.next_version(stripe);
        self.check(version)
    }

    /// Tells the clients caching `key` that it changed (one branch when
    /// nobody does). A change made by a command is attributed to the client
    /// running it, for NOLOOP; eviction and the expiry sweep are not.
    fn invalidate(&mut self, key: &[u8], by_command: bool) {
        if self.tracking.has_keys() {
            let origin = if by_command { self.tracking.current() } else { 0 };
            self.tracking.invalidate(key, origin, &mut self.pubsub);
        }
    }

    /// Publishes a keyspace event of `class` for `key`, if such events are
    /// enabled and anyone subscribes to anything.
    pub fn notify(&mut self, class: u32, event: &str, key: &[u8]) {
        if self.notify_flags & class == 0 || self.pubsub.is_empty() {
            return;
        }
        if self.notify_flags & notify::KEYSPACE != 0 {
            let mut channel = b"__keyspace@0__:".to_vec();
            channel.extend_from_slice(key);
            self.pubsub.publish(&Bytes::from(channel), &Bytes::copy_from_slice(event.as_bytes()));
        }
        if self.notify_flags & notify::KEYEVENT != 0 {
            let channel = Bytes::from(format!("__keyevent@0__:{event}"));
            self.pubsub.publish(&channel, &Bytes::copy_from_slice(key));
        }
    }

    /// Stores `value` under `key`.
    pub fn set(&mut self, key: &[u8], value: &[u8], expiry: Expiry, now: u64) {
        self.set_parts(key, &[value], expiry, now)
    }

    /// Stores under `key` the value made of `parts`, one after the other.
    pub fn set_parts(&mut self, key: &[u8], value: &[&[u8]], expiry: Expiry, now: u64) {
        self.op(|ks| {
            let Some((stripe, hh, found)) = ks.find(key) else { return };
            let previous = match found {
                Some(expired) if expired.entry.expires_at(&ks.h) <= now => {
                    ks.expire_found(expired, key, true);
                    None
                }
                live => live,
            };
            let expires_at = match (expiry, previous) {
                (Expiry::Clear, _) | (Expiry::Keep, None) => NEVER,
                (Expiry::Keep, Some(found)) => found.entry.expires_at(&ks.h),
                (Expiry::At(at), _) => at.min(NEVER - 1),
            };
            let Some(version) = ks.bump_version(key, stripe) else { return };
            let clock = lru_clock(now);
            let written = match previous {
                Some(found) => ks.h.replace(found, &EntryFields { value, expires_at, version, clock }),
                None => ks.h.insert(stripe, hh, key, &EntryFields { value, expires_at, version, clock }),
            };
            ks.check(written);
        })
    }

    /// Writes `bytes` into a live key's value at `offset`, zero filling any
    /// gap past its end, and keeps its ttl (SETRANGE, APPEND). Returns the
    /// value's new length; None when the key does not exist.
    pub fn write_at(&mut self, key: &[u8], offset: usize, bytes: &[u8], now: u64) -> Option<usize> {
        self.op(|ks| {
            let found = ks.live(key, now)?;
            let mut value = found.entry.value(&ks.h);
            let end = offset + bytes.len();
            if end > value.len() {
                value.resize(end, 0);
            }
            value[offset..end].copy_from_slice(bytes);
            let expires_at = found.entry.expires_at(&ks.h);
            let version = ks.bump_version(key, found.stripe)?;
            let written =
                ks.h.replace(found, &EntryFields { value: &[&value], expires_at, version, clock: lru_clock(now) });
            ks.check(written)?;
            Some(value.len())
        })
    }

    /// Moves a live key's value and ttl to `to`, replacing what `to` held
    /// (RENAME); the value keeps its idle time. False when `from` does not
    /// exist.
    pub fn rename(&mut self, from: &[u8], to: &[u8], now: u64) -> bool {
        self.op(|ks| {
            let Some(found) = ks.live(from, now) else {
                return false;
            };
            if from == to {
                return true;
            }
            let moved = ks.copy(found);
            if !ks.remove_found(found, from, true) {
                return false;
            }
            ks.set(to, moved.value(), moved.expires_at().map_or(Expiry::Clear, Expiry::At), now);
            if let Some((_, _, Some(at))) = ks.find(to) {
                at.entry.touch(&ks.h, moved.last_access);
            }
            ks.failure.is_none()
        })
    }

    /// A random live key (RANDOMKEY); expired keys drawn on the way are
    /// reclaimed. None when no key is left. Stripes are drawn at random and
    /// only tried, never waited for (the command holds no stripe in order).
    pub fn random_key(&mut self, now: u64) -> Option<Bytes> {
        self.op(|ks| {
            for _ in 0..STRIPE_COUNT * 64 {
                if ks.is_empty() || ks.failure.is_some() {
                    return None;
                }
                let stripe = (ks.sampler.next() % STRIPE_COUNT) as u32;
                if ks.h.stripe_count(stripe) == 0 || !ks.h.try_lock(stripe) {
                    continue;
                }
                let from = ks.sampler.next();
                let Some(found) = ks.h.entry_near(stripe, from) else {
                    continue;
                };
                let key = found.entry.key(&ks.h);
                if found.entry.expires_at(&ks.h) <= now {
                    ks.expire_found(found, &key, true);
                    continue;
                }
                return Some(Bytes::from(key));
            }
            None
        })
    }

    /// Changes the expiry of a live key; false when the key does not exist.
    pub fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>, now: u64) -> bool {
        self.op(|ks| {
            let Some(found) = ks.live(key, now) else { return false };
            let Some(version) = ks.bump_version(key, found.stripe) else { return false };
            let changed = ks.h.set_expiry(found, expires_at.map_or(NEVER, |at| at.min(NEVER - 1)), version);
            ks.check(changed).is_some()
        })
    }

    /// Removes a live key; false when there was none.
    pub fn remove(&mut self, key: &[u8], now: u64) -> bool {
        self.op(|ks| match ks.live(key, now) {
            Some(found) => ks.remove_found(found, key, true),
            None => false,
        })
    }

    /// Every removal of a key goes through here (delete, expiry, eviction).
    fn remove_found(&mut self, found: Found, key: &[u8], by_command: bool) -> bool {
        self.note_usage();
        let removed = self.h.remove(found);
        if self.check(removed).is_none() {
            return false;
        }
        self.invalidate(key, by_command);
        true
    }

    fn expire_found(&mut self, found: Found, key: &[u8], by_command: bool) {
        if self.remove_found(found, key, by_command) {
            self.bump(layout::H_EXPIRED);
            self.notify(notify::EXPIRED, "expired", key);
        }
    }

    /// Removes every key (FLUSHDB, FLUSHALL); clients caching keys are told
    /// to drop everything.
    pub fn clear(&mut self) {
        self.note_usage();
        self.op(|ks| {
            for id in 0..layout::LOCK_IDS as u32 {
                let locked = ks.h.lock(id);
                ks.check(locked);
            }
            if ks.failure.is_none() {
                let cleared = ks.h.clear_all();
                ks.check(cleared);
            }
        });
        self.tracking.flush(&mut self.pubsub);
    }

    /// Bytes a new `key` may add beyond its entry: the growth of its
    /// stripe's index, if one more key makes it grow (a hint: read without
    /// the stripe's lock).
    pub fn index_growth(&self, key: &[u8]) -> usize {
        self.h.index_growth(self.h.locate(key).0) as usize
    }

    /// Near a bound, takes the admission lock for a write of about
    /// `incoming` bytes and `new_keys` keys, so that writers in several
    /// processes are admitted one at a time there (each sees the room the
    /// one before it took). Held until [`Keyspace::release_admission`];
    /// far from the bounds, writers go on in parallel.
    pub fn admit(&mut self, incoming: usize, new_keys: usize) {
        let MemoryLimits { max_memory, max_keys, .. } = self.limits();
        let near_memory = max_memory > 0
            && (self.used_memory() + incoming > max_memory - max_memory / 16 || incoming > max_memory / 64);
        let near_keys = max_keys > 0 && self.len() + new_keys + 16 > max_keys - max_keys / 16;
        // Inside an operation (a command queued in EXEC, which holds every
        // stripe) the lock would be taken out of order: not waited for.
        if (near_memory || near_keys) && !self.h.is_active() {
            let locked = self.h.lock_admission();
            self.check(locked);
        }
    }

    pub fn release_admission(&mut self) {
        self.h.unlock_admission();
    }

    /// Whether the memory bound leaves room for a write of about `incoming`
    /// bytes that may add `new_keys` keys; evicts by the policy to make room.
    pub fn make_room(&mut self, incoming: usize, new_keys: usize, now: u64) -> Result<(), OutOfMemory> {
        let MemoryLimits { max_memory, max_keys, policy } = self.limits();
        // A write that could not fit even in an empty store evicts nothing.
        if (max_memory > 0 && incoming > max_memory) || (max_keys > 0 && new_keys > max_keys) {
            return Err(OutOfMemory);
        }
        let over = |ks: &Keyspace| {
            (max_memory > 0 && ks.used_memory() + incoming > max_memory)
                || (max_keys > 0 && ks.len() + new_keys > max_keys)
        };
        // One operation per eviction: a write that must make room for many
        // keys never needs a journal that large, and what it evicted stays
        // evicted (as in Redis) even if the write then fails.
        while over(self) {
            if policy == EvictionPolicy::NoEviction {
                return Err(OutOfMemory);
            }
            let evicted = self.op(|ks| {
                let Some(victim) = ks.victim(policy, now) else {
                    return false;
                };
                let key = victim.entry.key(&ks.h);
                if victim.entry.expires_at(&ks.h) <= now {
                    ks.expire_found(victim, &key, false);
                } else if ks.remove_found(victim, &key, false) {
                    ks.bump(layout::H_EVICTED);
                    ks.notify(notify::EVICTED, "evicted", &key);
                }
                ks.failure.is_none()
            });
            if !evicted {
                return Err(OutOfMemory);
            }
        }
        Ok(())
    }

    /// The entry to evict: exactly the best one in a small keyspace, the
    /// best of a sample in a large one. Stripes other processes hold are
    /// passed over (only tried, never waited for: this may run while the
    /// command holds higher stripes).
    fn victim(&mut self, policy: EvictionPolicy, now: u64) -> Option<Found> {
        let clock = lru_clock(now);
        // Larger is a better victim.
        let score = |ks: &Keyspace, f: Found| -> Option<u64> {
            match policy {
                EvictionPolicy::AllKeysLru => Some(idle_between(clock, f.entry.last_access(&ks.h)) as u64),
                EvictionPolicy::VolatileTtl => {
                    let at = f.entry.expires_at(&ks.h);
                    (at != NEVER).then_some(u64::MAX - at)
                }
                EvictionPolicy::NoEviction => None,
            }
        };
        let mut best: Option<(u64, Found)> = None;
        let consider = |ks: &Keyspace, f: Found, best: &mut Option<(u64, Found)>| {
            if let Some(s) = score(ks, f) {
                if best.is_none_or(|(b, _)| s > b) {
                    *best = Some((s, f));
                }
            }
        };
        if self.len() as u64 <= EXACT_EVICTION {
            for stripe in 0..STRIPE_COUNT as u32 {
                if self.h.stripe_count(stripe) > 0 && self.h.try_lock(stripe) {
                    for f in self.h.entries(stripe) {
                        consider(self, f, &mut best);
                    }
                }
            }
            return best.map(|(_, f)| f);
        }
        let mut samples = 0;
        for _ in 0..EVICTION_SAMPLES * 8 {
            if samples == EVICTION_SAMPLES {
                break;
            }
            let stripe = (self.sampler.next() % STRIPE_COUNT) as u32;
            let wanted = match policy {
                EvictionPolicy::VolatileTtl => self.h.stripe_volatile(stripe),
                _ => self.h.stripe_count(stripe),
            };
            if wanted == 0 || !self.h.try_lock(stripe) {
                continue;
            }
            if policy == EvictionPolicy::VolatileTtl {
                for f in self.h.entries(stripe) {
                    consider(self, f, &mut best);
                }
                samples += 4;
                continue;
            }
            let from = self.sampler.next();
            if let Some(f) = self.h.entry_near(stripe, from) {
                consider(self, f, &mut best);
                samples += 1;
            }
        }
        best.map(|(_, f)| f)
    }

    // ---- whole keyspace ----

    /// Every live entry, stripe by stripe (each consistent in itself).
    pub fn live_entries(&mut self, now: u64) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len());
        for stripe in 0..STRIPE_COUNT as u32 {
            self.each_live_in(stripe, now, |ks, found| out.push(ks.copy(found)));
        }
        out
    }

    /// Runs `f` on each live entry of `stripe` under its lock (in the
    /// operation in flight, or in one of its own); returns how many entries
    /// it looked at, expired ones included.
    fn each_live_in(&mut self, stripe: u32, now: u64, mut f: impl FnMut(&Self, Found)) -> usize {
        self.op(|ks| {
            let locked = ks.h.lock(stripe);
            if ks.check(locked).is_none() {
                return 0;
            }
            let entries = ks.h.entries(stripe);
            for &found in &entries {
                if found.entry.expires_at(&ks.h) > now {
                    f(ks, found);
                }
            }
            entries.len()
        })
    }

    /// Every live key matching `pattern` (KEYS).
    pub fn keys(&mut self, pattern: &[u8], now: u64) -> Vec<Bytes> {
        let all = pattern == b"*";
        let glob = Glob::new(pattern);
        let mut out = Vec::new();
        for stripe in 0..STRIPE_COUNT as u32 {
            self.each_live_in(stripe, now, |ks, found| {
                let key = found.entry.key(&ks.h);
                if all || glob.matches(&key) {
                    out.push(Bytes::from(key));
                }
            });
        }
        out
    }

    /// One SCAN step. Cursor 0 starts; a returned 0 means done.
    ///
    /// The cursor is the next stripe to visit: each step returns whole
    /// stripes (read under their lock) until about `count` keys were
    /// looked at, so a key that stays in the keyspace for the whole scan is
    /// never skipped.
    pub fn scan(
        &mut self,
        cursor: u64,
        count: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
        now: u64,
    ) -> (u64, Vec<Bytes>) {
        let mut stripe = cursor.min(STRIPE_COUNT) as u32;
        let mut found = Vec::new();
        let mut visited = 0;
        while (stripe as u64) < STRIPE_COUNT && visited < count.max(1) {
            visited += self.each_live_in(stripe, now, |ks, live| {
                // Only the key is read: every value is a string (VALUE_TYPE).
                let key = live.entry.key(&ks.h);
                if keep(&key) {
                    found.push(key.into());
                }
            });
            stripe += 1;
        }
        let next = if stripe as u64 >= STRIPE_COUNT { 0 } else { stripe as u64 };
        (next, found)
    }

    /// Reclaims up to `budget` keys whose deadline has passed; returns how
    /// many went. Called from the background sweep, outside any command.
    pub fn purge_expired(&mut self, now: u64, budget: usize) -> usize {
        let mut purged = 0;
        for n in 0..STRIPE_COUNT as u32 {
            if purged >= budget {
                break;
            }
            let stripe = (self.sweep_from + n) % STRIPE_COUNT as u32;
            if self.h.stripe_volatile(stripe) == 0 || self.h.stripe_deadline(stripe) > now {
                continue;
            }
            self.op(|ks| {
                let locked = ks.h.lock(stripe);
                if ks.check(locked).is_none() {
                    return;
                }
                let mut due: Vec<(u64, Found)> =
                    ks.h.entries(stripe)
                        .into_iter()
                        .map(|f| (f.entry.expires_at(&ks.h), f))
                        .filter(|(at, _)| *at != NEVER)
                        .collect();
                // Soonest first, so a budget cut keeps the deadline order.
                due.sort_unstable_by_key(|(at, _)| *at);
                let mut next = NEVER;
                for (at, f) in due {
                    if at > now || purged >= budget {
                        next = at;
                        break;
                    }
                    let key = f.entry.key(&ks.h);
                    // The table moves as entries go: find it again.
                    let Some((_, _, Some(f))) = ks.find(&key) else { continue };
                    ks.expire_found(f, &key, false);
                    purged += 1;
                }
                let hint = ks.h.set_stripe_deadline(stripe, next);
                ks.check(hint);
            });
            if purged >= budget {
                self.sweep_from = stripe;
            }
        }
        purged
    }

    /// When the next key expires, if any key has a TTL (a lower bound).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.volatile_len() == 0 {
            return None;
        }
        (0..STRIPE_COUNT as u32).map(|s| self.h.stripe_deadline(s)).min().filter(|&at| at != NEVER)
    }

    /// The broker's periodic upkeep: the heartbeat attached processes
    /// watch, the high-water marks, and repairs after processes that died
    /// without their connection telling (their slot names a dead pid).
    pub fn maintain(&mut self, now: u64) {
        let store = self.store().clone();
        store.counter(layout::H_HEARTBEAT).store(now, Ordering::Relaxed);
        store.note_usage();
        Handle::recover_dead(&store);
    }

    /// The broker is closing: attached processes stop using the store. Every
    /// stripe is then locked and released in turn, so a change an attached
    /// process made before it saw the mark is in the store before this
    /// returns (and in the snapshot saved after it).
    pub fn close_store(&mut self) {
        self.store().counter(layout::H_CLOSED).store(1, Ordering::SeqCst);
        self.barrier();
    }

    /// Waits out every operation in flight on any stripe.
    fn barrier(&mut self) {
        self.op(|ks| {
            for stripe in 0..STRIPE_COUNT as u32 {
                let locked = ks.h.lock(stripe);
                if ks.check(locked).is_none() {
                    break;
                }
            }
        });
    }

    /// Whether an attached process must send its commands to the broker:
    /// the broker must see every change, or it is gone. Checked with the
    /// command's stripes locked.
    pub fn must_forward(&self, now: u64) -> bool {
        self.listening() || !self.broker_alive(now)
    }

    /// Whether the broker that shares this store still runs (an attached
    /// process's check before each command).
    pub fn broker_alive(&self, now: u64) -> bool {
        let s = self.store();
        s.counter(layout::H_CLOSED).load(Ordering::Acquire) == 0
            && now.saturating_sub(s.counter(layout::H_HEARTBEAT).load(Ordering::Relaxed)) < BROKER_SILENCE_MS
    }

    pub fn slot(&self) -> u32 {
        self.h.slot()
    }

    /// Gives the pages of freed page runs back to the system (maintenance,
    /// outside any command); returns the bytes.
    pub fn release_free_pages(&mut self) -> u64 {
        self.h.release_free_pages(100_000).unwrap_or(0)
    }

    /// Gives the chunks of mostly free stripes back to the heap (whose pages
    /// [`Keyspace::release_free_pages`] then returns to the system): each
    /// stripe whose free lists hold at least [`COMPACT_MIN_FREE`] bytes and
    /// at least as much as it uses, or that holds no key, has its small
    /// objects moved into fresh chunks, one operation per stripe. Stops once
    /// `budget` entries were moved (a stripe is never cut short, and the
    /// first always runs); the next call goes on from there. Returns the
    /// bytes of chunks given back.
    pub fn compact(&mut self, budget: usize) -> u64 {
        let mut spent = 0;
        let mut freed = 0;
        for n in 0..STRIPE_COUNT as u32 {
            let stripe = (self.compact_from + n) % STRIPE_COUNT as u32;
            if !self.h.wants_compaction(stripe, COMPACT_MIN_FREE) {
                continue;
            }
            let work = self.h.stripe_count(stripe) as usize + 1;
            if spent > 0 && spent + work > budget {
                self.compact_from = stripe;
                return freed;
            }
            spent += work;
            // A stripe busy now is left for a later pass.
            freed += self.compact_stripe_if(stripe, true).unwrap_or(0);
        }
        freed
    }

    /// Compacts one stripe, in the operation in flight or one of its own
    /// (see [`Keyspace::compact`]); returns the bytes of chunks given back.
    pub fn compact_stripe(&mut self, stripe: u32) -> Result<u64, StoreError> {
        self.compact_stripe_if(stripe, false)
    }

    /// Compacts a stripe; with `if_free`, only if its lock is free now.
    fn compact_stripe_if(&mut self, stripe: u32, if_free: bool) -> Result<u64, StoreError> {
        let own = !self.h.is_active();
        if own {
            self.h.begin();
        }
        let locked = if if_free && !self.h.try_lock(stripe) { Err(StoreError::Timeout) } else { self.h.lock(stripe) };
        let result = locked.and_then(|()| self.h.compact(stripe));
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        if own {
            self.end_command()?;
        }
        result
    }

    /// Bytes the entries take in their size classes (tests compare it with
    /// `used_memory` to see the index tables' share).
    #[cfg(test)]
    fn live_entries_size(&self) -> usize {
        (0..STRIPE_COUNT as u32).flat_map(|s| self.h.entries(s)).map(|f| f.entry.size(&self.h) as usize).sum()
    }

    /// Every inconsistency in the store (SHM.VERIFY); empty when sound.
    pub fn verify(&mut self) -> Vec<String> {
        // Run as a command, it holds an operation with no locks yet: the
        // walk takes every lock in an operation of its own.
        let in_command = self.h.is_active();
        if let Err(e) = self.h.commit() {
            return vec![e.to_string()];
        }
        let problems = self.h.verify();
        if in_command {
            self.h.begin();
        }
        problems
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> &[u8] {
        text.as_bytes()
    }

    #[test]
    fn set_get_overwrite_remove() {
        let mut ks = Keyspace::new();
        ks.set(b"a", s("1"), Expiry::Clear, 0);
        ks.set(b"a", s("2"), Expiry::Clear, 0);
        assert_eq!(ks.read(b"a", 0).map(|e| e.value().to_vec()), Some(b"2".to_vec()));
        // Same size: rewritten in place. Another size: a new allocation.
        ks.set(b"a", s("longer"), Expiry::Clear, 0);
        assert_eq!(
            ks.get(b"a", 0).map(|e| (e.key().to_vec(), e.value().to_vec())),
            Some((b"a".to_vec(), b"longer".to_vec()))
        );
        assert_eq!(ks.read(b"b", 0).map(|e| e.value().to_vec()), None);
        assert_eq!((ks.stats().keyspace_hits, ks.stats().keyspace_misses), (1, 1));
        assert!(ks.remove(b"a", 0));
        assert!(!ks.remove(b"a", 0));
        assert!(ks.is_empty());
        assert_eq!(ks.used_memory(), 0);
    }

    #[test]
    fn lru_idle_times_survive_the_clock_wrapping() {
        let mut ks = Keyspace::new();
        let before_wrap = u32::MAX as u64 - 5;
        ks.set(b"old", s("v"), Expiry::Clear, before_wrap);
        ks.set(b"new", s("v"), Expiry::Clear, before_wrap + 10);
        ks.set_limits(MemoryLimits { max_keys: 2, policy: EvictionPolicy::AllKeysLru, ..Default::default() });
        ks.make_room(0, 1, before_wrap + 20).unwrap();
        assert_eq!((ks.contains(b"old", before_wrap + 20), ks.contains(b"new", before_wrap + 20)), (false, true));
    }

    #[test]
    fn expired_keys_are_never_returned() {
        let mut ks = Keyspace::new();
        ks.set(b"k", s("v"), Expiry::At(100), 0);
        assert!(ks.contains(b"k", 99));
        assert!(!ks.contains(b"k", 100));
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.stats().expired_keys, 1);
        assert_eq!(ks.volatile_len(), 0);
        assert_eq!(ks.used_memory(), 0);
    }

    #[test]
    fn keep_ttl_and_clear_ttl() {
        let mut ks = Keyspace::new();
        ks.set(b"k", s("v"), Expiry::At(100), 0);
        ks.set(b"k", s("w"), Expiry::Keep, 0);
        assert_eq!(ks.get(b"k", 0).unwrap().expires_at(), Some(100));
        ks.set(b"k", s("x"), Expiry::Clear, 0);
        assert_eq!(ks.get(b"k", 0).unwrap().expires_at(), None);
        assert_eq!(ks.volatile_len(), 0);
        assert!(ks.set_expiry(b"k", Some(50), 0));
        assert_eq!(ks.next_deadline(), Some(50));
        assert!(ks.set_expiry(b"k", None, 0));
        assert_eq!(ks.next_deadline(), None);
        assert!(!ks.set_expiry(b"missing", Some(5), 0));
    }

    #[test]
    fn purge_reclaims_due_keys_within_budget() {
        let mut ks = Keyspace::new();
        for i in 0..10u64 {
            ks.set(format!("k{i}").as_bytes(), s("v"), Expiry::At(10 + i), 0);
        }
        ks.set(b"forever", s("v"), Expiry::Clear, 0);
        // Only due keys go; the budget bounds each call.
        assert_eq!(ks.purge_expired(14, 3), 3);
        assert_eq!(ks.len(), 8);
        assert_eq!(ks.purge_expired(14, 100), 2);
        assert!((5..10).all(|i| ks.contains(format!("k{i}").as_bytes(), 0)));
        assert_eq!(ks.purge_expired(1000, 100), 5);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.stats().expired_keys, 10);
    }

    #[test]
    fn memory_accounting_returns_to_zero() {
        let mut ks = Keyspace::new();
        for i in 0..1000 {
            let expiry = if i % 2 == 0 { Expiry::At(1_000 + i) } else { Expiry::Clear };
            ks.set(format!("key:{i}").as_bytes(), s(&"x".repeat(i as usize % 50)), expiry, 0);
        }
        // Each entry takes at least its 32-byte header.
        assert!(ks.used_memory() > 1000 * 32);
        for i in 0..1000 {
            if i % 3 == 0 {
                ks.set(format!("key:{i}").as_bytes(), s("changed"), Expiry::At(5), 0);
            }
        }
        ks.purge_expired(10_000, usize::MAX);
        for i in 0..1000 {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        assert_eq!(ks.used_memory(), 0);
    }

    /// Bytes of the stripes' index tables, from the store's own count.
    fn table_bytes(ks: &Keyspace) -> usize {
        ks.used_memory() - ks.live_entries_size()
    }

    #[test]
    fn the_index_shrinks_as_keys_go_by_any_path() {
        let mut ks = Keyspace::new();
        ks.set_limits(MemoryLimits { max_keys: 100_000, policy: EvictionPolicy::AllKeysLru, ..Default::default() });
        let fill = |ks: &mut Keyspace, expiry: Expiry| {
            for i in 0..100_000 {
                ks.set(format!("key:{i}").as_bytes(), s("v"), expiry, 0);
            }
        };
        // At most 64 slots of 8 bytes per stripe for about 4 keys each.
        let small = 256 * 64 * 8;
        // Deleted.
        fill(&mut ks, Expiry::Clear);
        assert!(table_bytes(&ks) >= 100_000 * 8);
        for i in 0..99_000 {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        assert!(table_bytes(&ks) <= small, "{} bytes of tables for {} keys", table_bytes(&ks), ks.len());
        // Evicted: a bound of 1,000 keys makes room for each new one.
        fill(&mut ks, Expiry::Clear);
        ks.set_limits(MemoryLimits { max_keys: 1_000, policy: EvictionPolicy::AllKeysLru, ..Default::default() });
        ks.make_room(0, 1, 0).unwrap();
        assert_eq!(ks.len(), 999);
        assert!(table_bytes(&ks) <= small, "{} bytes of tables for {} keys", table_bytes(&ks), ks.len());
        // Found expired by a read.
        ks.set_limits(MemoryLimits::default());
        fill(&mut ks, Expiry::At(10));
        for i in 0..100_000 {
            ks.get(format!("key:{i}").as_bytes(), 10);
        }
        assert_eq!(ks.len(), 0);
        assert_eq!(table_bytes(&ks), 0);
        // Cleared.
        fill(&mut ks, Expiry::Clear);
        ks.clear();
        assert_eq!((ks.used_memory(), ks.volatile_len(), ks.store().heap_size()), (0, 0, 0));
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn released_memory_is_the_fall_from_the_highest_point_since_the_last_release() {
        let mut ks = Keyspace::new();
        for i in 0..100 {
            ks.set(format!("key:{i}").as_bytes(), s("value"), Expiry::Clear, 0);
        }
        let full = ks.used_memory();
        assert_eq!(ks.released_memory(), 0);
        for i in 0..50 {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        let half = ks.used_memory();
        assert_eq!(ks.released_memory(), full - half);
        // Refilled after a release: only what falls from the new high point counts.
        ks.mark_released();
        assert_eq!(ks.released_memory(), 0);
        ks.set(b"more", s("value"), Expiry::Clear, 0);
        assert!(ks.set_expiry(b"more", Some(10), 0));
        let higher = ks.used_memory();
        ks.clear();
        assert_eq!(ks.released_memory(), higher);
        // The table's own memory counts when it shrinks.
        ks.mark_released();
        for i in 0..10_000 {
            ks.set(format!("key:{i}").as_bytes(), s("value"), Expiry::Clear, 0);
        }
        ks.mark_released();
        for i in 0..9_990 {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        // 9,990 entries of at least 48 bytes each (header, key, value), and
        // the index tables that shrank with them.
        assert!(ks.released_memory() > 9_990 * 48, "{} released", ks.released_memory());
    }

    #[test]
    fn scan_visits_every_stable_key_despite_removals() {
        let mut ks = Keyspace::new();
        for i in 0..100 {
            ks.set(format!("k{i}").as_bytes(), s("v"), Expiry::Clear, 0);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            let (next, keys) = ks.scan(cursor, 7, |_| true, 0);
            seen.extend(keys);
            // Remove odd keys as the scan goes; the even ones must all be seen.
            for _ in 0..3 {
                step += 2;
                ks.remove(format!("k{}", (step % 100) | 1).as_bytes(), 0);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for i in (0..100).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} skipped");
        }
    }

    #[test]
    fn write_at_overwrites_grows_and_keeps_the_ttl() {
        let mut ks = Keyspace::new();
        assert_eq!(ks.write_at(b"k", 0, s("x"), 0), None);
        ks.set(b"k", s("hello"), Expiry::At(100), 0);
        let version = ks.version(b"k", 0);
        assert_eq!(ks.write_at(b"k", 1, s("EL"), 0), Some(5));
        assert_eq!(ks.write_at(b"k", 7, s("!"), 0), Some(8));
        let entry = ks.get(b"k", 0).unwrap();
        assert_eq!((entry.key(), entry.value(), entry.expires_at()), (&b"k"[..], &b"hELlo\0\0!"[..], Some(100)));
        assert_ne!(ks.version(b"k", 0), version);
        ks.remove(b"k", 0);
        assert_eq!(ks.used_memory(), 0);
        // An expired key is not written.
        ks.set(b"gone", s("v"), Expiry::At(5), 0);
        assert_eq!(ks.write_at(b"gone", 0, s("w"), 5), None);
    }

    #[test]
    fn rename_moves_the_value_ttl_and_idle_time() {
        let mut ks = Keyspace::new();
        assert!(!ks.rename(b"a", b"b", 0));
        ks.set(b"a", s("1"), Expiry::At(100), 0);
        ks.set(b"b", s("old"), Expiry::Clear, 0);
        assert!(ks.rename(b"a", b"b", 30));
        assert!(!ks.contains(b"a", 30));
        let entry = ks.get(b"b", 30).unwrap();
        assert_eq!((entry.value(), entry.expires_at(), entry.idle_ms(30)), (&b"1"[..], Some(100), 30));
        assert_eq!((ks.len(), ks.volatile_len()), (1, 1));
        // Onto itself: nothing changes.
        assert!(ks.rename(b"b", b"b", 30));
        assert_eq!(ks.get(b"b", 30).unwrap().value(), b"1");
        ks.remove(b"b", 30);
        assert_eq!(ks.used_memory(), 0);
    }

    #[test]
    fn random_key_reclaims_expired_keys_it_draws() {
        let mut ks = Keyspace::new();
        assert_eq!(ks.random_key(0), None);
        for i in 0..50u64 {
            ks.set(format!("k{i}").as_bytes(), s("v"), Expiry::At(10), 0);
        }
        ks.set(b"live", s("v"), Expiry::Clear, 0);
        assert_eq!(ks.random_key(10), Some(Bytes::from_static(b"live")));
        ks.remove(b"live", 10);
        assert_eq!(ks.random_key(10), None);
        assert_eq!((ks.len(), ks.stats().expired_keys), (0, 50));
    }

    #[test]
    fn idle_time_counts_from_the_last_read_or_write() {
        let mut ks = Keyspace::new();
        ks.set(b"k", s("v"), Expiry::Clear, 1_000);
        assert_eq!(ks.get(b"k", 4_000).unwrap().idle_ms(4_000), 3_000);
        ks.read(b"k", 5_000);
        assert_eq!(ks.get(b"k", 7_500).unwrap().idle_ms(7_500), 2_500);
    }

    #[test]
    fn keys_filters_by_pattern_and_expiry() {
        let mut ks = Keyspace::new();
        ks.set(b"user:1", s("a"), Expiry::Clear, 0);
        ks.set(b"user:2", s("b"), Expiry::At(5), 0);
        ks.set(b"post:1", s("c"), Expiry::Clear, 0);
        let mut keys = ks.keys(b"user:*", 10);
        keys.sort();
        assert_eq!(keys, vec![Bytes::from_static(b"user:1")]);
        assert_eq!(ks.keys(b"*", 0).len(), 3);
    }

    /// A key other than `other` whose stripe is not `other`'s.
    fn key_in_another_stripe(ks: &mut Keyspace, other: &[u8]) -> Vec<u8> {
        let stripe = ks.handle().locate(other).0;
        (0..).map(|i| format!("other:{i}").into_bytes()).find(|k| ks.handle().locate(k).0 != stripe).unwrap()
    }

    fn kept_pages(ks: &Keyspace) -> Vec<(u32, u64)> {
        (0..STRIPE_COUNT as u32)
            .map(|s| (s, stripe_word(ks, s, layout::T_RUN_PAGES)))
            .filter(|&(_, pages)| pages > 0)
            .collect()
    }

    #[test]
    fn a_value_over_a_page_rewritten_at_its_size_takes_no_heap_lock() {
        let mut ks = Keyspace::new();
        let stripe = ks.handle().locate(b"big").0;
        ks.set(b"big", &[1; 65_536], Expiry::Clear, 0);
        // The second write takes new pages from the heap and its stripe
        // keeps the first value's; from then on the two swap.
        ks.set(b"big", &[2; 65_536], Expiry::Clear, 0);
        let kept = kept_pages(&ks);
        assert_eq!(kept, vec![(stripe, 17)]);
        let heap = ks.store().heap_size();
        // Another handle holds the heap lock while this one rewrites the
        // value twice (a wait would fail after 100 ms).
        let mut other = Keyspace::attach(ks.store()).unwrap();
        other.handle().begin();
        other.handle().lock(layout::HEAP_LOCK_ID).unwrap();
        ks.handle().lock_timeout = std::time::Duration::from_millis(100);
        for round in 3..5u8 {
            let key = Bytes::from_static(b"big");
            assert!(ks.begin_command(std::iter::once(&key), false));
            ks.set(b"big", &[round; 65_536], Expiry::Clear, 0);
            assert_eq!(ks.end_command(), Ok(()));
        }
        other.handle().abort();
        assert_eq!(ks.get(b"big", 0).map(|e| e.value().to_vec()), Some(vec![4; 65_536]));
        assert_eq!((ks.store().heap_size(), kept_pages(&ks)), (heap, kept));
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn a_stripe_keeps_at_most_its_share_of_free_runs_and_the_heap_takes_the_rest() {
        let mut ks = Keyspace::new();
        // Same stripe, values of 17 pages: one run fits in the 32 pages a
        // stripe keeps, a second does not.
        let stripe = ks.handle().locate(b"k").0;
        let keys: Vec<Vec<u8>> =
            (0..).map(|i| format!("k{i}").into_bytes()).filter(|k| ks.handle().locate(k).0 == stripe).take(2).collect();
        for k in &keys {
            ks.set(k, &[1; 65_536], Expiry::Clear, 0);
        }
        for k in &keys {
            ks.remove(k, 0);
        }
        assert_eq!(kept_pages(&ks), vec![(stripe, 17)]);
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn kept_free_runs_go_back_to_the_system_with_the_rest() {
        let mut ks = Keyspace::new();
        let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("big:{i}").into_bytes()).collect();
        for round in 0..2u8 {
            for k in &keys {
                ks.set(k, &[round; 20_000], Expiry::Clear, 0);
            }
        }
        for k in &keys {
            ks.remove(k, 0);
        }
        assert!(!kept_pages(&ks).is_empty());
        let released = ks.release_free_pages();
        assert_eq!(kept_pages(&ks), vec![]);
        assert_eq!((0..STRIPE_COUNT as u32).filter(|&s| stripe_word(&ks, s, layout::T_RUNS) != 0).count(), 0);
        // 80 values of 5 pages each were written; every one is free now.
        assert!(released >= 40 * 5 * layout::PAGE, "{released} bytes released");
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn a_release_skips_a_stripe_another_process_holds_and_returns_the_others() {
        let mut ks = Keyspace::new();
        let b = key_in_another_stripe(&mut ks, b"a");
        for key in [b"a".as_slice(), &b] {
            ks.set(key, &[1; 65_536], Expiry::Clear, 0);
            ks.set(key, &[2; 65_536], Expiry::Clear, 0);
        }
        let (a_stripe, b_stripe) = (ks.handle().locate(b"a").0, ks.handle().locate(&b).0);
        let mut kept = vec![(a_stripe, 17), (b_stripe, 17)];
        kept.sort_unstable();
        assert_eq!(kept_pages(&ks), kept);
        let mut other = Keyspace::attach(ks.store()).unwrap();
        other.handle().begin();
        other.handle().lock(a_stripe).unwrap();
        // A wait for the held stripe would fail the release after 100 ms,
        // and b's stripe would keep its run too.
        ks.handle().lock_timeout = std::time::Duration::from_millis(100);
        ks.release_free_pages();
        assert_eq!(kept_pages(&ks), vec![(a_stripe, 17)]);
        other.handle().abort();
        ks.release_free_pages();
        assert_eq!(kept_pages(&ks), vec![]);
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn a_release_that_meets_a_held_heap_lock_keeps_no_stripe_locked_meanwhile() {
        let mut ks = Keyspace::new();
        ks.set(b"a", &[1; 65_536], Expiry::Clear, 0);
        ks.set(b"a", &[2; 65_536], Expiry::Clear, 0);
        let stripe = ks.handle().locate(b"a").0;
        assert_eq!(kept_pages(&ks), vec![(stripe, 17)]);
        let store = ks.store().clone();
        let mut holder = Keyspace::attach(&store).unwrap();
        holder.handle().begin();
        holder.handle().lock(layout::HEAP_LOCK_ID).unwrap();
        // The release waits for the heap lock until its 500 ms run out.
        let releasing = std::thread::spawn(move || {
            ks.handle().lock_timeout = std::time::Duration::from_millis(500);
            let released = ks.release_free_pages();
            (ks, released)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Meanwhile the stripe that keeps a run serves its key (a wait for
        // it would fail after 100 ms).
        let mut reader = Keyspace::attach(&store).unwrap();
        reader.handle().lock_timeout = std::time::Duration::from_millis(100);
        let key = Bytes::from_static(b"a");
        assert!(reader.begin_command(std::iter::once(&key), false));
        let value = reader.get(b"a", 0).map(|e| e.value().len());
        assert_eq!((value, reader.end_command()), (Some(65_536), Ok(())));
        let (mut ks, released) = releasing.join().unwrap();
        holder.handle().abort();
        // The heap was busy: nothing moved, nothing was released.
        assert_eq!((released, kept_pages(&ks)), (0, vec![(stripe, 17)]));
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn chunks_a_compaction_frees_go_to_the_heap_not_to_the_stripe() {
        let mut ks = Keyspace::new();
        // 3,000 keys of one stripe, whatever the store's hash keys, with
        // 100-byte values: several chunks of 64 KiB, and the eighth that
        // stays fits in one or two.
        let stripe = ks.handle().locate(&compaction_key(0)).0;
        let keys: Vec<Vec<u8>> =
            (0..).map(compaction_key).filter(|k| ks.handle().locate(k).0 == stripe).take(3_000).collect();
        for key in &keys {
            ks.set(key, &[7; 100], Expiry::Clear, 0);
        }
        for (_, key) in keys.iter().enumerate().filter(|(i, _)| i % 8 != 0) {
            ks.remove(key, 0);
        }
        ks.begin_command(std::iter::empty(), false);
        let freed = ks.compact_stripe(stripe).unwrap();
        assert_eq!(ks.end_command(), Ok(()));
        assert!(freed > 0, "the compaction freed no chunk");
        assert_eq!(kept_pages(&ks), vec![]);
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    #[test]
    fn a_full_heap_takes_back_the_runs_other_stripes_keep() {
        // Room for two chunks (index tables and small entries) and three
        // runs of 17 pages, and 4 pages more.
        let len = layout::HEAP_START + (2 * layout::CHUNK_PAGES + 3 * 17 + 4) * layout::PAGE;
        let store = Store::create(len, &Backing::without_file()).unwrap();
        let mut ks = Keyspace::attach(&store).unwrap();
        let b = key_in_another_stripe(&mut ks, b"a");
        // Both stripes get their chunk first.
        ks.set(b"a", b"small", Expiry::Clear, 0);
        ks.set(&b, b"small", Expiry::Clear, 0);
        ks.set(b"a", &[1; 65_536], Expiry::Clear, 0);
        ks.set(b"a", &[2; 65_536], Expiry::Clear, 0);
        let a_stripe = ks.handle().locate(b"a").0;
        assert_eq!(kept_pages(&ks), vec![(a_stripe, 17)]);
        // 21 pages are left above the heap's top. The first 64 KiB value of
        // `b` takes 17 of them; the second finds 4, and the run `a`'s
        // stripe keeps.
        let key = Bytes::from(b.clone());
        assert!(ks.begin_command(std::iter::once(&key), false));
        ks.set(&b, &[3; 65_536], Expiry::Clear, 0);
        assert_eq!(ks.end_command(), Ok(()));
        assert!(ks.begin_command(std::iter::once(&key), false));
        ks.set(&b, &[4; 65_536], Expiry::Clear, 0);
        assert_eq!(ks.end_command(), Ok(()));
        assert_eq!(ks.get(&b, 0).map(|e| e.value().to_vec()), Some(vec![4; 65_536]));
        assert_eq!(ks.get(b"a", 0).map(|e| e.value().to_vec()), Some(vec![2; 65_536]));
        assert_eq!(ks.verify(), Vec::<String>::new());
    }

    fn stripe_word(ks: &Keyspace, stripe: u32, word: u64) -> u64 {
        ks.store().region().u64(layout::stripe_base(stripe) + word).load(Ordering::Relaxed)
    }

    fn chunk_bytes(ks: &Keyspace) -> u64 {
        (0..STRIPE_COUNT as u32).map(|s| stripe_word(ks, s, layout::T_CHUNK_COUNT)).sum::<u64>() * layout::CHUNK_BYTES
    }

    fn compaction_key(i: usize) -> Vec<u8> {
        format!("key:{i}").into_bytes()
    }

    /// Values of 1 to 200 bytes, and every 1,000th one over a page.
    fn compaction_value(i: usize) -> Vec<u8> {
        let len = if i.is_multiple_of(1_000) { 10_000 } else { i % 200 };
        format!("{i}:{}", "v".repeat(len)).into_bytes()
    }

    #[test]
    fn compaction_packs_live_entries_and_gives_free_chunks_back_to_the_system() {
        let mut ks = Keyspace::new();
        let empty = ks.store().resident_bytes().unwrap();
        // 100,000 keys: about 390 a stripe, whose tables are page runs.
        let expiry = |i: usize| if i.is_multiple_of(7) { Expiry::At(1_000_000 + i as u64) } else { Expiry::Clear };
        for i in 0..100_000 {
            ks.set(&compaction_key(i), &compaction_value(i), expiry(i), 0);
        }
        let filled = ks.store().resident_bytes().unwrap();
        let full_chunks = chunk_bytes(&ks);
        // 40 % stay: the tables keep their size.
        let kept = |i: usize| i.is_multiple_of(5) || i % 5 == 4;
        for i in (0..100_000).filter(|&i| !kept(i)) {
            assert!(ks.remove(&compaction_key(i), 0));
        }
        let used = ks.used_memory();
        let free: u64 = (0..STRIPE_COUNT as u32).map(|s| stripe_word(&ks, s, layout::T_FREE_BYTES)).sum();
        assert!(free > 8 << 20, "{free} bytes free of {full_chunks}");
        let mut freed = 0;
        for stripe in 0..STRIPE_COUNT as u32 {
            freed += ks.compact_stripe(stripe).unwrap();
        }
        assert_eq!(ks.verify(), Vec::<String>::new());
        assert_eq!(freed, full_chunks - chunk_bytes(&ks));
        // About 27 KiB of entries a stripe: one chunk each.
        assert!(chunk_bytes(&ks) <= STRIPE_COUNT * layout::CHUNK_BYTES, "{} bytes of chunks left", chunk_bytes(&ks));
        assert_eq!(ks.used_memory(), used);
        for stripe in 0..STRIPE_COUNT as u32 {
            assert_eq!(stripe_word(&ks, stripe, layout::T_FREE_BYTES), 0);
        }
        for i in 0..100_000 {
            let entry = ks.get(&compaction_key(i), 0);
            if kept(i) {
                let entry = entry.unwrap();
                assert_eq!(entry.value(), &compaction_value(i)[..]);
                assert_eq!(
                    entry.expires_at(),
                    match expiry(i) {
                        Expiry::At(at) => Some(at),
                        _ => None,
                    }
                );
            } else {
                assert!(entry.is_none());
            }
        }
        // Packed already: a second pass gives nothing back.
        for stripe in 0..STRIPE_COUNT as u32 {
            assert_eq!(ks.compact_stripe(stripe), Ok(0));
        }
        // Everything goes: the sweep's pass frees every chunk, and the free
        // runs merge and bring the heap's top down to its start.
        for i in (0..100_000).filter(|&i| kept(i)) {
            assert!(ks.remove(&compaction_key(i), 0));
        }
        assert!(ks.compact(usize::MAX) > 0);
        assert_eq!(chunk_bytes(&ks), 0);
        ks.release_free_pages();
        assert_eq!(ks.store().heap_size(), 0);
        assert_eq!(ks.verify(), Vec::<String>::new());
        let after = ks.store().resident_bytes().unwrap();
        assert!(filled - empty > 16 << 20, "the fill took {} bytes", filled - empty);
        assert!(after - empty < 2 << 20, "{} bytes kept of the {} the fill took", after - empty, filled - empty);
    }

    #[test]
    fn the_sweep_compacts_only_mostly_free_stripes_within_its_budget() {
        let mut ks = Keyspace::new();
        // About 390 entries of 1,280 bytes a stripe: eight chunks each.
        let value = vec![b'v'; 1_000];
        for i in 0..100_000 {
            ks.set(&compaction_key(i), &value, Expiry::Clear, 0);
        }
        // A tenth gone: no stripe is mostly free.
        for i in (0..100_000).filter(|i| i % 10 == 0) {
            ks.remove(&compaction_key(i), 0);
        }
        let before = chunk_bytes(&ks);
        assert_eq!(ks.compact(usize::MAX), 0);
        assert_eq!(chunk_bytes(&ks), before);
        // Nine tenths gone: a budget of one entry still compacts one stripe
        // a call, and the calls go round the stripes.
        for i in (0..100_000).filter(|i| i % 10 != 9) {
            ks.remove(&compaction_key(i), 0);
        }
        let compactable =
            (0..STRIPE_COUNT as u32).filter(|&s| ks.handle().wants_compaction(s, COMPACT_MIN_FREE)).count();
        assert!(compactable > 200, "{compactable} stripes to compact");
        for n in 1..=compactable {
            assert!(ks.compact(1) > 0);
            let left = (0..STRIPE_COUNT as u32).filter(|&s| ks.handle().wants_compaction(s, COMPACT_MIN_FREE)).count();
            assert_eq!(left, compactable - n);
        }
        assert_eq!(ks.compact(usize::MAX), 0);
        assert_eq!(ks.verify(), Vec::<String>::new());
        assert_eq!(ks.len(), 10_000);
    }

    #[test]
    fn a_compaction_rolled_back_leaves_the_stripe_as_it_was() {
        let mut ks = Keyspace::new();
        for i in 0..100_000 {
            ks.set(&compaction_key(i), &compaction_value(i), Expiry::Clear, 0);
        }
        for i in (0..100_000).filter(|i| i % 2 == 0) {
            ks.remove(&compaction_key(i), 0);
        }
        let stripe = ks.handle().locate(&compaction_key(1)).0;
        let words = [layout::T_TABLE, layout::T_CHUNKS, layout::T_CHUNK_COUNT, layout::T_FREE_BYTES, layout::T_USED];
        let before: Vec<u64> = words.iter().map(|&w| stripe_word(&ks, stripe, w)).collect();
        let heap = ks.store().heap_size();
        ks.begin_command(std::iter::empty(), false);
        assert!(ks.compact_stripe(stripe).is_ok());
        // Moving an entry logs nothing: the journal holds the stripe's
        // words and a few per chunk, fewer records than the entries moved.
        let records = ks.store().counter(layout::slot_base(ks.slot()) + layout::S_UNDO_COUNT).load(Ordering::Relaxed);
        let moved = ks.handle().stripe_count(stripe);
        assert!(records < moved, "{records} undo records to move {moved} entries");
        ks.abandon_command();
        assert_eq!(words.iter().map(|&w| stripe_word(&ks, stripe, w)).collect::<Vec<_>>(), before);
        assert_eq!(ks.store().heap_size(), heap);
        assert_eq!(ks.verify(), Vec::<String>::new());
        // In a command that freed objects of the stripe before: they go
        // with their chunks, not onto the new free lists.
        let key = Bytes::from(compaction_key(1));
        ks.begin_command(std::iter::once(&key), false);
        assert!(ks.remove(&key, 0));
        let old_chunks = stripe_word(&ks, stripe, layout::T_CHUNKS);
        assert!(ks.compact_stripe(stripe).is_ok());
        ks.end_command().unwrap();
        assert_ne!(stripe_word(&ks, stripe, layout::T_CHUNKS), old_chunks);
        assert_eq!(stripe_word(&ks, stripe, layout::T_FREE_BYTES), 0);
        assert_eq!(ks.verify(), Vec::<String>::new());
        for i in (0..4_000).filter(|i| i % 2 == 1) {
            assert_eq!(
                ks.get(&compaction_key(i), 0).map(|e| e.value().to_vec()),
                (i != 1).then(|| compaction_value(i))
            );
        }
    }
}

//! The keyspace: entries, their expiry times and the statistics INFO reports.
//!
//! Pure data structure: every time-dependent call takes `now` in Unix
//! milliseconds, so tests drive the clock and the broker passes real time.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use indexmap::set::MutableValues;
use indexmap::IndexSet;

use super::glob::Glob;
use super::locks::LockTable;
use super::notify;
use super::pubsub::PubSub;
use super::sample::Sampler;
use super::tracking::Tracking;

/// One key with its string value (the only Redis type so far).
///
/// The key and value bytes share one exact-size allocation, and the
/// bookkeeping is packed beside the pointer: per key, one allocation and a
/// 48-byte slot (with the hash the set keeps), which is what brings a
/// 100-byte key under redis-server's memory per key.
#[derive(Debug)]
pub struct Entry {
    /// The key's bytes, then the value's.
    data: Box<[u8]>,
    key_len: u32,
    /// LRU clock: the low 32 bits of the last read or write in Unix ms.
    /// Idle times are taken modulo 2^32 ms (49 days), as Redis's 24-bit
    /// clock of seconds wraps every 194 days.
    last_access: u32,
    /// Unix ms when the key expires; [`NEVER`] for a persistent key.
    expires_at: u64,
    /// Changes on every write to the key (WATCH compares it).
    version: u64,
}

/// `expires_at` of a persistent key. Deadlines are at most `i64::MAX` ms,
/// as in Redis, so no real deadline is this.
const NEVER: u64 = u64::MAX;

fn lru_clock(now: u64) -> u32 {
    now as u32
}

/// The key's bytes followed by the value's, in an allocation of that exact size.
fn joined(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(key.len() + value.len());
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    data.into_boxed_slice()
}

impl Entry {
    fn new(key: &[u8], value: &[u8], expires_at: Option<u64>, version: u64, now: u64) -> Entry {
        let mut entry = Entry {
            data: joined(key, value),
            key_len: key.len() as u32,
            last_access: lru_clock(now),
            expires_at: NEVER,
            version,
        };
        entry.set_expires_at(expires_at);
        entry
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    /// Unix ms when the key expires; `None` for a persistent key.
    pub fn expires_at(&self) -> Option<u64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }

    fn set_expires_at(&mut self, expires_at: Option<u64>) {
        self.expires_at = expires_at.map_or(NEVER, |at| at.min(NEVER - 1));
    }

    /// Redis's name for the value's type, as TYPE reports it.
    pub fn type_name(&self) -> &'static str {
        "string"
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }

    /// Milliseconds since the key was last read or written (OBJECT
    /// IDLETIME), modulo the LRU clock's 2^32 ms.
    pub fn idle_ms(&self, now: u64) -> u64 {
        u64::from(lru_clock(now).wrapping_sub(self.last_access))
    }

    /// Replaces the value, reusing the allocation when the size is unchanged
    /// (the common case of a counter or a fixed-shape record).
    fn replace_value(&mut self, value: &[u8]) {
        let key_len = self.key_len as usize;
        if self.data.len() - key_len == value.len() {
            self.data[key_len..].copy_from_slice(value);
        } else {
            self.data = joined(self.key(), value);
        }
    }

    /// Overwrites the value from `offset` with `bytes`, growing it (zero
    /// filled) when they reach past its end.
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        let start = self.key_len as usize + offset;
        let end = start + bytes.len();
        if end > self.data.len() {
            let mut data = std::mem::take(&mut self.data).into_vec();
            data.reserve_exact(end - data.len());
            data.resize(end, 0);
            self.data = data.into_boxed_slice();
        }
        self.data[start..end].copy_from_slice(bytes);
    }
}

// The set finds entries by their key alone.
impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Estimated bytes a key costs beyond its key and value bytes: its 48-byte
/// slot in the entry set, the hash index's slot (8 bytes and a control
/// byte, at 7/8 load at most) and the allocator's header and rounding for
/// the key-and-value allocation. The memory-per-key benchmark checks it
/// against the process's RSS.
pub const ENTRY_OVERHEAD: usize = 72;
/// Bytes of the entry table per slot of capacity: the 48-byte slot (entry
/// and hash) and the hash index's 8 bytes.
const TABLE_SLOT: usize = 56;
/// Extra cost of a key with a TTL: its node in the expiry index.
pub const EXPIRY_OVERHEAD: usize = 48;

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
        [EvictionPolicy::NoEviction, EvictionPolicy::AllKeysLru, EvictionPolicy::VolatileTtl]
            .into_iter()
            .find(|p| name.eq_ignore_ascii_case(p.name().as_bytes()))
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

/// Keys looked at per eviction; more samples approximate true LRU better.
const EVICTION_SAMPLES: usize = 16;

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

type Map = IndexSet<Entry, ahash::RandomState>;

#[derive(Default)]
pub struct Keyspace {
    entries: Map,
    /// Keys with a TTL ordered by deadline, so expired keys are reclaimed in
    /// order without scanning the whole keyspace.
    expiries: BTreeSet<(u64, Bytes)>,
    used_memory: usize,
    peak_memory: usize,
    /// The highest `used_memory` since [`Keyspace::mark_released`].
    release_mark: usize,
    next_version: u64,
    sampler: Sampler,
    pub limits: MemoryLimits,
    pub stats: Stats,
    /// Named locks live beside the keys, under the same store lock, but
    /// outside the keyspace: KEYS, FLUSHDB and eviction never touch them.
    pub locks: LockTable,
    /// Subscriptions live here too, so that keyspace events are published
    /// under the same lock as the change they describe.
    pub pubsub: PubSub,
    /// Classes of keyspace events published (see [`notify`]); 0 is off.
    pub notify_flags: u32,
    /// Client-side caching: who read which key. Every change to a key
    /// passes through [`Keyspace::bump_version`] or `remove_index` (or
    /// [`Keyspace::clear`]), which tell it.
    pub tracking: Tracking,
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live and not-yet-reclaimed keys; expired keys disappear from this
    /// count when they are next touched or swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.expiries.len()
    }

    /// Estimated bytes held by keys, values and their bookkeeping.
    pub fn used_memory(&self) -> usize {
        self.used_memory
    }

    /// The highest [`Keyspace::used_memory`] seen.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory.max(self.used_memory)
    }

    /// Bytes the store freed since [`Keyspace::mark_released`]: how far
    /// `used_memory` fell from its highest point since.
    pub fn released_memory(&self) -> usize {
        self.release_mark.saturating_sub(self.used_memory)
    }

    /// The memory freed so far has been handed back to the OS.
    pub fn mark_released(&mut self) {
        self.release_mark = self.used_memory;
    }

    /// After `used_memory` grew.
    fn note_growth(&mut self) {
        self.peak_memory = self.peak_memory.max(self.used_memory);
        self.release_mark = self.release_mark.max(self.used_memory);
    }

    /// Looks a key up for a read command, counting a hit or a miss.
    pub fn read(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        let Some(index) = self.live_index(key, now) else {
            self.stats.keyspace_misses += 1;
            return None;
        };
        self.stats.keyspace_hits += 1;
        let entry = self.entries.get_index_mut2(index).expect("live index");
        entry.last_access = lru_clock(now);
        Some(entry)
    }

    /// The version of a live key, `None` when it does not exist.
    pub fn version(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.get(key, now).map(|e| e.version)
    }

    /// A new version for `key`, which is being written or having its ttl
    /// changed. With `remove_index` and `clear`, the one place every change
    /// to a key goes through.
    fn bump_version(&mut self, key: &[u8]) -> u64 {
        self.invalidate(key, true);
        self.next_version += 1;
        self.next_version
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

    /// Looks a key up without touching the hit/miss statistics.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.live_index(key, now).map(|i| &self.entries[i])
    }

    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.live_index(key, now).is_some()
    }

    /// Index of a live entry; an expired one is removed on the way.
    fn live_index(&mut self, key: &[u8], now: u64) -> Option<usize> {
        let (index, entry) = self.entries.get_full(key)?;
        if entry.is_expired(now) {
            // Found by a command: for NOLOOP, its client's own change, as in Redis.
            self.expire_index(index, true);
            return None;
        }
        Some(index)
    }

    fn expire_index(&mut self, index: usize, by_command: bool) {
        let entry = self.remove_index(index, by_command);
        self.stats.expired_keys += 1;
        self.notify(notify::EXPIRED, "expired", entry.key());
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

    /// Stores `value` under `key`. The bytes are copied, so nothing stored
    /// pins the connection buffer they arrived in.
    pub fn set(&mut self, key: &[u8], value: &[u8], expiry: Expiry, now: u64) {
        let previous = self.live_index(key, now);
        let expires_at = match (expiry, previous) {
            (Expiry::Clear, _) | (Expiry::Keep, None) => None,
            (Expiry::Keep, Some(i)) => self.entries[i].expires_at(),
            (Expiry::At(at), _) => Some(at),
        };
        let version = self.bump_version(key);
        match previous {
            Some(i) => {
                let entry = self.entries.get_index_mut2(i).expect("live index");
                let old_expiry = entry.expires_at();
                self.used_memory = self.used_memory - entry.value().len() + value.len();
                entry.replace_value(value);
                entry.set_expires_at(expires_at);
                entry.version = version;
                entry.last_access = lru_clock(now);
                self.reindex_expiry(key, old_expiry, expires_at);
            }
            None => {
                self.used_memory += key.len() + value.len() + ENTRY_OVERHEAD;
                self.entries.insert(Entry::new(key, value, expires_at, version, now));
                self.reindex_expiry(key, None, expires_at);
            }
        }
        self.note_growth();
    }

    /// Writes `bytes` into a live key's value at `offset`, zero filling any
    /// gap past its end, and keeps its ttl (SETRANGE, APPEND). Returns the
    /// value's new length; None when the key does not exist.
    pub fn write_at(&mut self, key: &[u8], offset: usize, bytes: &[u8], now: u64) -> Option<usize> {
        let i = self.live_index(key, now)?;
        let version = self.bump_version(key);
        let entry = self.entries.get_index_mut2(i).expect("live index");
        let before = entry.data.len();
        entry.write_at(offset, bytes);
        entry.version = version;
        entry.last_access = lru_clock(now);
        self.used_memory += entry.data.len() - before;
        let len = entry.value().len();
        self.note_growth();
        Some(len)
    }

    /// Moves a live key's value and ttl to `to`, replacing what `to` held
    /// (RENAME); the value keeps its idle time. False when `from` does not
    /// exist.
    pub fn rename(&mut self, from: &[u8], to: &[u8], now: u64) -> bool {
        let Some(index) = self.live_index(from, now) else {
            return false;
        };
        if from == to {
            return true;
        }
        let entry = self.remove_index(index, true);
        self.set(to, entry.value(), entry.expires_at().map_or(Expiry::Clear, Expiry::At), now);
        let moved = self.entries.get_index_of(to).expect("just set");
        self.entries.get_index_mut2(moved).expect("just set").last_access = entry.last_access;
        true
    }

    /// A random live key (RANDOMKEY); expired keys drawn on the way are
    /// reclaimed. None when no key is left.
    pub fn random_key(&mut self, now: u64) -> Option<Bytes> {
        while !self.entries.is_empty() {
            let index = self.sampler.index(self.entries.len());
            if !self.entries[index].is_expired(now) {
                return Some(Bytes::copy_from_slice(self.entries[index].key()));
            }
            self.expire_index(index, true);
        }
        None
    }

    /// Changes the expiry of a live key; false when the key does not exist.
    pub fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>, now: u64) -> bool {
        let Some(i) = self.live_index(key, now) else {
            return false;
        };
        let version = self.bump_version(key);
        let entry = self.entries.get_index_mut2(i).expect("live index");
        let old = entry.expires_at();
        entry.set_expires_at(expires_at);
        entry.version = version;
        self.reindex_expiry(key, old, expires_at);
        true
    }

    fn reindex_expiry(&mut self, key: &[u8], old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            self.expiries.remove(&(at, Bytes::copy_from_slice(key)));
            self.used_memory -= EXPIRY_OVERHEAD + key.len();
        }
        if let Some(at) = new {
            self.expiries.insert((at, Bytes::copy_from_slice(key)));
            self.used_memory += EXPIRY_OVERHEAD + key.len();
            self.note_growth();
        }
    }

    /// Removes a live key; false when there was none.
    pub fn remove(&mut self, key: &[u8], now: u64) -> bool {
        match self.live_index(key, now) {
            Some(index) => {
                self.remove_index(index, true);
                true
            }
            None => false,
        }
    }

    /// Every removal of a key goes through here (delete, expiry, eviction).
    fn remove_index(&mut self, index: usize, by_command: bool) -> Entry {
        let entry = self.entries.swap_remove_index(index).expect("valid index");
        self.used_memory -= entry.data.len() + ENTRY_OVERHEAD;
        self.reindex_expiry(entry.key(), entry.expires_at(), None);
        self.invalidate(entry.key(), by_command);
        self.shrink_if_sparse();
        entry
    }

    /// Removes every key (FLUSHDB, FLUSHALL); clients caching keys are told
    /// to drop everything.
    pub fn clear(&mut self) {
        self.entries = Map::default();
        self.expiries.clear();
        self.used_memory = 0;
        self.tracking.flush(&mut self.pubsub);
    }

    /// Whether the memory bound leaves room for a write of about `incoming`
    /// bytes that may add `new_keys` keys; evicts by the policy to make room.
    pub fn make_room(&mut self, incoming: usize, new_keys: usize, now: u64) -> Result<(), OutOfMemory> {
        let MemoryLimits { max_memory, max_keys, policy } = self.limits;
        // A write that could not fit even in an empty store evicts nothing.
        if (max_memory > 0 && incoming > max_memory) || (max_keys > 0 && new_keys > max_keys) {
            return Err(OutOfMemory);
        }
        let over = |ks: &Keyspace| {
            (max_memory > 0 && ks.used_memory + incoming > max_memory)
                || (max_keys > 0 && ks.entries.len() + new_keys > max_keys)
        };
        while over(self) {
            let victim = match policy {
                EvictionPolicy::NoEviction => None,
                EvictionPolicy::AllKeysLru => self.lru_victim(now),
                EvictionPolicy::VolatileTtl => {
                    self.expiries.first().and_then(|(_, key)| self.entries.get_index_of(&key[..]))
                }
            };
            let Some(index) = victim else {
                return Err(OutOfMemory);
            };
            if self.entries[index].is_expired(now) {
                self.expire_index(index, false);
            } else {
                let entry = self.remove_index(index, false);
                self.stats.evicted_keys += 1;
                self.notify(notify::EVICTED, "evicted", entry.key());
            }
        }
        Ok(())
    }

    /// The index of the least recently used of a random sample of keys.
    fn lru_victim(&mut self, now: u64) -> Option<usize> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let clock = lru_clock(now);
        let mut best: Option<(u32, usize)> = None;
        // A small keyspace is searched exactly; a large one by sampling.
        let exact = len <= EVICTION_SAMPLES * 4;
        for n in 0..if exact { len } else { EVICTION_SAMPLES } {
            let index = if exact { n } else { self.sampler.index(len) };
            let idle = clock.wrapping_sub(self.entries[index].last_access);
            if best.is_none_or(|(longest, _)| idle > longest) {
                best = Some((idle, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// Every live entry, in no particular order.
    pub fn live_entries(&self, now: u64) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| !e.is_expired(now))
    }

    /// Every live key matching `pattern` (KEYS).
    pub fn keys(&self, pattern: &[u8], now: u64) -> Vec<Bytes> {
        let all = pattern == b"*";
        let glob = Glob::new(pattern);
        self.live_entries(now)
            .filter(|e| all || glob.matches(e.key()))
            .map(|e| Bytes::copy_from_slice(e.key()))
            .collect()
    }

    /// One SCAN step. Cursor 0 starts; a returned 0 means done.
    ///
    /// The cursor is the number of slots still to visit, walked from the top
    /// down. Removal moves the last slot into the hole, so a key that stays
    /// in the keyspace for the whole scan is never skipped (it can only move
    /// down into the part still to visit).
    pub fn scan(&self, cursor: u64, count: usize, mut keep: impl FnMut(&Entry) -> bool, now: u64) -> (u64, Vec<Bytes>) {
        let mut remaining = if cursor == 0 { self.entries.len() } else { (cursor as usize).min(self.entries.len()) };
        let mut found = Vec::new();
        let mut visited = 0;
        while remaining > 0 && visited < count.max(1) {
            remaining -= 1;
            visited += 1;
            let entry = &self.entries[remaining];
            if !entry.is_expired(now) && keep(entry) {
                found.push(Bytes::copy_from_slice(entry.key()));
            }
        }
        (remaining as u64, found)
    }

    /// Reclaims up to `budget` keys whose deadline has passed; returns how
    /// many went. Called from the background sweep.
    pub fn purge_expired(&mut self, now: u64, budget: usize) -> usize {
        let mut purged = 0;
        while purged < budget {
            let Some((at, key)) = self.expiries.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            let index = self.entries.get_index_of(&key[..]).expect("expiry index matches entries");
            self.expire_index(index, false);
            purged += 1;
        }
        purged
    }

    /// Milliseconds until the next key expires, if any key has a TTL.
    pub fn next_deadline(&self) -> Option<u64> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Gives the table's memory back once most keys are gone, however they
    /// went. Shrinking to twice the keys left keeps the cost amortized: the
    /// next shrink needs another fourfold drop, the next growth a doubling.
    fn shrink_if_sparse(&mut self) {
        let capacity = self.entries.capacity();
        if capacity > 1024 && self.entries.len() < capacity / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            // The table's memory is not in `used_memory`; what it gave back
            // counts as released all the same.
            self.release_mark += (capacity - self.entries.capacity()) * TABLE_SLOT;
        }
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
        assert_eq!((ks.stats.keyspace_hits, ks.stats.keyspace_misses), (1, 1));
        assert!(ks.remove(b"a", 0));
        assert!(!ks.remove(b"a", 0));
        assert!(ks.is_empty());
        assert_eq!(ks.used_memory(), 0);
    }

    #[test]
    fn an_entry_holds_its_key_and_value_in_one_allocation() {
        // The layout the memory-per-key figure rests on.
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        let entry = Entry::new(b"key", b"value", Some(7), 1, 0);
        assert_eq!(entry.data.len(), 8);
        assert_eq!((entry.key(), entry.value(), entry.expires_at()), (&b"key"[..], &b"value"[..], Some(7)));
        assert_eq!(Entry::new(b"k", b"", None, 1, 0).expires_at(), None);
    }

    #[test]
    fn lru_idle_times_survive_the_clock_wrapping() {
        let mut ks = Keyspace::new();
        let before_wrap = u32::MAX as u64 - 5;
        ks.set(b"old", s("v"), Expiry::Clear, before_wrap);
        ks.set(b"new", s("v"), Expiry::Clear, before_wrap + 10);
        let victim = ks.lru_victim(before_wrap + 20).map(|i| ks.entries[i].key().to_vec());
        assert_eq!(victim, Some(b"old".to_vec()));
    }

    #[test]
    fn expired_keys_are_never_returned() {
        let mut ks = Keyspace::new();
        ks.set(b"k", s("v"), Expiry::At(100), 0);
        assert!(ks.contains(b"k", 99));
        assert!(!ks.contains(b"k", 100));
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.stats.expired_keys, 1);
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
    fn purge_reclaims_in_deadline_order_within_budget() {
        let mut ks = Keyspace::new();
        for i in 0..10u64 {
            ks.set(format!("k{i}").as_bytes(), s("v"), Expiry::At(10 + i), 0);
        }
        ks.set(b"forever", s("v"), Expiry::Clear, 0);
        assert_eq!(ks.purge_expired(14, 3), 3);
        assert!(!ks.contains(b"k2", 0) && ks.contains(b"k3", 0));
        assert_eq!(ks.purge_expired(14, 100), 2);
        assert_eq!(ks.purge_expired(1000, 100), 5);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.stats.expired_keys, 10);
    }

    #[test]
    fn memory_accounting_returns_to_zero() {
        let mut ks = Keyspace::new();
        for i in 0..1000 {
            let expiry = if i % 2 == 0 { Expiry::At(1_000 + i) } else { Expiry::Clear };
            ks.set(format!("key:{i}").as_bytes(), s(&"x".repeat(i as usize % 50)), expiry, 0);
        }
        assert!(ks.used_memory() > 1000 * ENTRY_OVERHEAD);
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

    #[test]
    fn the_entry_table_shrinks_as_keys_go_by_any_path() {
        let mut ks = Keyspace::new();
        ks.limits = MemoryLimits { max_keys: 100_000, policy: EvictionPolicy::AllKeysLru, ..Default::default() };
        let fill = |ks: &mut Keyspace, expiry: Expiry| {
            for i in 0..100_000 {
                ks.set(format!("key:{i}").as_bytes(), s("v"), expiry, 0);
            }
        };
        // Deleted.
        fill(&mut ks, Expiry::Clear);
        assert!(ks.entries.capacity() >= 100_000);
        for i in 0..99_000 {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        assert!(ks.entries.capacity() <= 4_096, "capacity {} for {} keys", ks.entries.capacity(), ks.len());
        // Evicted: a bound of 1,000 keys makes room for each new one.
        fill(&mut ks, Expiry::Clear);
        ks.limits.max_keys = 1_000;
        ks.make_room(0, 1, 0).unwrap();
        assert_eq!(ks.len(), 999);
        assert!(ks.entries.capacity() <= 4_096, "capacity {} for {} keys", ks.entries.capacity(), ks.len());
        // Found expired by a read.
        ks.limits.max_keys = 0;
        fill(&mut ks, Expiry::At(10));
        for i in 0..100_000 {
            ks.get(format!("key:{i}").as_bytes(), 10);
        }
        assert_eq!(ks.len(), 0);
        assert!(ks.entries.capacity() <= 4_096, "capacity {} for {} keys", ks.entries.capacity(), ks.len());
        // Cleared.
        fill(&mut ks, Expiry::Clear);
        ks.clear();
        assert_eq!((ks.entries.capacity(), ks.volatile_len()), (0, 0));
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
        let entries_freed = ks.used_memory() * 999;
        assert!(
            ks.released_memory() > entries_freed,
            "{} released, {entries_freed} by the entries",
            ks.released_memory()
        );
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
        assert_eq!((ks.len(), ks.stats.expired_keys), (0, 50));
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
}

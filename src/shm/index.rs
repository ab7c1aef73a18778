//! Each stripe's index: an open-addressing table of 64-bit slots, each the
//! high half of the key's hash and a 32-bit reference to its entry (offset
//! / 8). A lookup reads the table and compares the key only where the hash
//! half matches. The table is rebuilt, into fresh pages, when live slots
//! and tombstones pass 3/4 of it or live ones fall under 1/8: a rebuild
//! logs two words, whatever the table's size.
//!
//! An entry is one object: a 32-byte header, the key, then the value.
//! Values are never rewritten in place: a write links a new entry with one
//! logged slot store, so a reader of the old one never sees half a value.

use std::sync::atomic::Ordering;

use super::layout::*;
use super::{Handle, Result};

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
/// Small tables come from the size classes, so a stripe of a few keys
/// costs a few dozen bytes of index.
const MIN_CAP: u64 = 8;
pub const NEVER: u64 = u64::MAX;

// Entry words.
const E_LENS: u64 = 0;
const E_EXPIRES: u64 = 8;
const E_VERSION: u64 = 16;
/// Low half: LRU clock (not journaled: a lost stamp only skews eviction).
const E_ACCESS: u64 = 24;
const E_HEADER: u64 = 32;

/// An entry found in a stripe's table at `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub stripe: u32,
    pub pos: u64,
    pub entry: EntryRef,
}

/// An entry's offset in the mapping; read only under its stripe's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef(pub u64);

impl EntryRef {
    fn lens(self, h: &Handle) -> (u64, u64) {
        let w = h.store.region.u64(self.0 + E_LENS).load(Ordering::Relaxed);
        (w & 0xffff_ffff, w >> 32)
    }

    pub fn key_len(self, h: &Handle) -> usize {
        self.lens(h).0 as usize
    }

    pub fn value_len(self, h: &Handle) -> usize {
        self.lens(h).1 as usize
    }

    pub fn key(self, h: &Handle) -> Vec<u8> {
        let (k, _) = self.lens(h);
        h.store.region.to_vec(self.0 + E_HEADER, k as usize)
    }

    pub fn value(self, h: &Handle) -> Vec<u8> {
        let (k, v) = self.lens(h);
        h.store.region.to_vec(self.0 + E_HEADER + k, v as usize)
    }

    /// Copies the value into `out` (which must be long enough).
    pub fn read_value(self, h: &Handle, out: &mut [u8]) {
        let (k, v) = self.lens(h);
        h.store.region.read_bytes(self.0 + E_HEADER + k, &mut out[..v as usize]);
    }

    /// The value's first byte; None for an empty value.
    pub fn value_head(self, h: &Handle) -> Option<u8> {
        let (k, v) = self.lens(h);
        (v > 0).then(|| {
            let mut head = [0u8; 1];
            h.store.region.read_bytes(self.0 + E_HEADER + k, &mut head);
            head[0]
        })
    }

    pub fn key_is(self, h: &Handle, key: &[u8]) -> bool {
        self.lens(h).0 == key.len() as u64 && h.store.region.bytes_eq(self.0 + E_HEADER, key)
    }

    /// Unix ms when it expires, [`NEVER`] for a persistent key.
    pub fn expires_at(self, h: &Handle) -> u64 {
        h.store.region.u64(self.0 + E_EXPIRES).load(Ordering::Relaxed)
    }

    pub fn version(self, h: &Handle) -> u64 {
        h.store.region.u64(self.0 + E_VERSION).load(Ordering::Relaxed)
    }

    pub fn last_access(self, h: &Handle) -> u32 {
        h.store.region.u32(self.0 + E_ACCESS).load(Ordering::Relaxed)
    }

    pub fn touch(self, h: &Handle, clock: u32) {
        h.store.region.u32(self.0 + E_ACCESS).store(clock, Ordering::Relaxed);
    }

    /// Bytes the entry takes in its size class.
    pub fn size(self, h: &Handle) -> u64 {
        let (k, v) = self.lens(h);
        rounded(E_HEADER + k + v)
    }
}

/// What a new entry holds besides its key.
pub struct EntryFields<'a> {
    /// The value, in parts written one after the other.
    pub value: &'a [&'a [u8]],
    /// Unix ms; [`NEVER`] for a persistent key.
    pub expires_at: u64,
    pub version: u64,
    /// The LRU clock of the write.
    pub clock: u32,
}

impl Handle {
    fn w(&self, off: u64) -> u64 {
        self.store.region.u64(off).load(Ordering::Relaxed)
    }

    /// The stripe of `key` and the hash half its slots carry.
    pub fn locate(&self, key: &[u8]) -> (u32, u32) {
        let h = self.store.hash(key);
        ((h % STRIPE_COUNT) as u32, (h >> 32) as u32)
    }

    /// Counts a read of the stripe (`T_HITS` or `T_MISSES`), whose lock is
    /// held: a plain load and store, since only the holder writes it.
    pub fn count_read(&self, stripe: u32, word: u64) {
        let counter = self.store.region.u64(stripe_base(stripe) + word);
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The live or expired entry of `key` (its stripe's lock held).
    pub fn find(&self, stripe: u32, hh: u32, key: &[u8]) -> Option<Found> {
        let sb = stripe_base(stripe);
        let (table, cap) = (self.w(sb + T_TABLE), self.w(sb + T_CAP));
        if table == 0 {
            return None;
        }
        let mask = cap - 1;
        let mut pos = hh as u64 & mask;
        for _ in 0..cap {
            let slot = self.w(table + pos * 8);
            if slot == EMPTY {
                return None;
            }
            if slot != TOMBSTONE && (slot >> 32) as u32 == hh {
                let entry = EntryRef((slot & 0xffff_ffff) * 8);
                if entry.key_is(self, key) {
                    return Some(Found { stripe, pos, entry });
                }
            }
            pos = (pos + 1) & mask;
        }
        None
    }

    /// A new version number for a change in `stripe`.
    pub fn next_version(&mut self, stripe: u32) -> Result<u64> {
        let at = stripe_base(stripe) + T_NEXT_VERSION;
        let v = self.w(at) + 1;
        self.write(at, v)?;
        // Stripes count apart; the stripe in the low byte keeps versions unique.
        Ok((v << 8) | stripe as u64)
    }

    /// A new entry with room for a key of `key_len` bytes, which the caller
    /// writes (from its argument, or from the entry it replaces).
    fn new_entry(&mut self, stripe: u32, key_len: u64, fields: &EntryFields<'_>) -> Result<EntryRef> {
        let value_len: u64 = fields.value.iter().map(|part| part.len() as u64).sum();
        let size = E_HEADER + key_len + value_len;
        let obj = self.alloc(stripe, size)?;
        // A fresh object nothing links to yet: written without journaling.
        let r = &self.store.region;
        r.u64(obj + E_LENS).store(key_len | (value_len << 32), Ordering::Relaxed);
        r.u64(obj + E_EXPIRES).store(fields.expires_at, Ordering::Relaxed);
        r.u64(obj + E_VERSION).store(fields.version, Ordering::Relaxed);
        r.u64(obj + E_ACCESS).store(fields.clock as u64, Ordering::Relaxed);
        let mut at = obj + E_HEADER + key_len;
        for part in fields.value {
            r.write_bytes(at, part);
            at += part.len() as u64;
        }
        self.account(stripe, rounded(size) as i64)?;
        Ok(EntryRef(obj))
    }

    fn drop_entry(&mut self, stripe: u32, entry: EntryRef) -> Result<()> {
        let (k, v) = entry.lens(self);
        let raw = E_HEADER + k + v;
        self.free_entry(stripe, entry.0, raw)?;
        self.account(stripe, -(rounded(raw) as i64))
    }

    fn account(&mut self, stripe: u32, bytes: i64) -> Result<()> {
        let at = stripe_base(stripe) + T_USED;
        self.write(at, self.w(at).wrapping_add(bytes as u64))
    }

    fn count(&mut self, stripe: u32, keys: i64, volatile: i64) -> Result<()> {
        let sb = stripe_base(stripe);
        if keys != 0 {
            self.write(sb + T_COUNT, self.w(sb + T_COUNT).wrapping_add(keys as u64))?;
        }
        if volatile != 0 {
            self.write(sb + T_VOLATILE, self.w(sb + T_VOLATILE).wrapping_add(volatile as u64))?;
        }
        Ok(())
    }

    fn note_deadline(&mut self, stripe: u32, expires_at: u64) -> Result<()> {
        let at = stripe_base(stripe) + T_NEXT_DEADLINE;
        if expires_at < self.w(at) {
            self.write(at, expires_at)?;
        }
        Ok(())
    }

    /// Adds `key`, which the stripe does not hold.
    pub fn insert(&mut self, stripe: u32, hh: u32, key: &[u8], fields: &EntryFields<'_>) -> Result<EntryRef> {
        self.make_space(stripe)?;
        let entry = self.new_entry(stripe, key.len() as u64, fields)?;
        self.store.region.write_bytes(entry.0 + E_HEADER, key);
        let expires_at = fields.expires_at;
        let sb = stripe_base(stripe);
        let (table, mask) = (self.w(sb + T_TABLE), self.w(sb + T_CAP) - 1);
        let mut pos = hh as u64 & mask;
        loop {
            let slot = self.w(table + pos * 8);
            if slot == EMPTY || slot == TOMBSTONE {
                self.write(table + pos * 8, ((hh as u64) << 32) | (entry.0 / 8))?;
                if slot == EMPTY {
                    self.write(sb + T_FILLED, self.w(sb + T_FILLED) + 1)?;
                }
                break;
            }
            pos = (pos + 1) & mask;
        }
        self.count(stripe, 1, (expires_at != NEVER) as i64)?;
        self.note_deadline(stripe, expires_at)?;
        Ok(entry)
    }

    /// Replaces the entry at `found` with a new one for the same key.
    pub fn replace(&mut self, found: Found, fields: &EntryFields<'_>) -> Result<EntryRef> {
        let old = found.entry;
        let key_len = old.key_len(self) as u64;
        let entry = self.new_entry(found.stripe, key_len, fields)?;
        // The old entry is freed only as the operation ends: its key is still there.
        self.store.region.copy_within(old.0 + E_HEADER, entry.0 + E_HEADER, key_len);
        let expires_at = fields.expires_at;
        let table = self.w(stripe_base(found.stripe) + T_TABLE);
        let slot_at = table + found.pos * 8;
        self.write(slot_at, (self.w(slot_at) & !0xffff_ffff) | (entry.0 / 8))?;
        let was_volatile = (old.expires_at(self) != NEVER) as i64;
        self.count(found.stripe, 0, (expires_at != NEVER) as i64 - was_volatile)?;
        self.note_deadline(found.stripe, expires_at)?;
        self.drop_entry(found.stripe, old)?;
        Ok(entry)
    }

    /// Changes a live entry's expiry (and version) in place.
    pub fn set_expiry(&mut self, found: Found, expires_at: u64, version: u64) -> Result<()> {
        let e = found.entry;
        let was_volatile = (e.expires_at(self) != NEVER) as i64;
        self.write(e.0 + E_EXPIRES, expires_at)?;
        self.write(e.0 + E_VERSION, version)?;
        self.count(found.stripe, 0, (expires_at != NEVER) as i64 - was_volatile)?;
        self.note_deadline(found.stripe, expires_at)
    }

    pub fn remove(&mut self, found: Found) -> Result<()> {
        let sb = stripe_base(found.stripe);
        let (table, mask) = (self.w(sb + T_TABLE), self.w(sb + T_CAP) - 1);
        // A slot followed by an empty one can be emptied too: no probe passes it.
        let next_empty = self.w(table + ((found.pos + 1) & mask) * 8) == EMPTY;
        self.write(table + found.pos * 8, if next_empty { EMPTY } else { TOMBSTONE })?;
        if next_empty {
            self.write(sb + T_FILLED, self.w(sb + T_FILLED) - 1)?;
        }
        let was_volatile = (found.entry.expires_at(self) != NEVER) as i64;
        self.count(found.stripe, -1, -was_volatile)?;
        self.drop_entry(found.stripe, found.entry)?;
        self.shrink_if_sparse(found.stripe)
    }

    /// Makes room in the stripe's table for one more slot.
    fn make_space(&mut self, stripe: u32) -> Result<()> {
        let sb = stripe_base(stripe);
        let (cap, filled, count) = (self.w(sb + T_CAP), self.w(sb + T_FILLED), self.w(sb + T_COUNT));
        if cap == 0 || (filled + 1) * 4 > cap * 3 {
            let want = ((count + 1) * 2).next_power_of_two().max(MIN_CAP);
            self.rebuild(stripe, want)?;
        }
        Ok(())
    }

    /// Bytes the stripe's index would grow by if one more key came in.
    pub fn index_growth(&self, stripe: u32) -> u64 {
        let sb = stripe_base(stripe);
        let (cap, filled, count) = (self.w(sb + T_CAP), self.w(sb + T_FILLED), self.w(sb + T_COUNT));
        if cap == 0 || (filled + 1) * 4 > cap * 3 {
            let want = ((count + 1) * 2).next_power_of_two().max(MIN_CAP);
            let now = if cap == 0 { 0 } else { rounded(cap * 8) };
            rounded(want * 8).saturating_sub(now)
        } else {
            0
        }
    }

    fn shrink_if_sparse(&mut self, stripe: u32) -> Result<()> {
        let sb = stripe_base(stripe);
        let (table, cap, count) = (self.w(sb + T_TABLE), self.w(sb + T_CAP), self.w(sb + T_COUNT));
        if count == 0 && table != 0 {
            // An empty stripe keeps no table: an empty store holds nothing.
            self.write(sb + T_TABLE, 0)?;
            self.write(sb + T_CAP, 0)?;
            self.write(sb + T_FILLED, 0)?;
            self.free(stripe, table, cap * 8)?;
            return self.account(stripe, -((cap * 8) as i64));
        }
        if cap > MIN_CAP && count * 8 < cap {
            self.rebuild(stripe, (count * 2).next_power_of_two().max(MIN_CAP))?;
        }
        Ok(())
    }

    /// Moves the stripe's live slots into a new table of `cap` slots.
    fn rebuild(&mut self, stripe: u32, cap: u64) -> Result<()> {
        let sb = stripe_base(stripe);
        let (old, old_cap) = (self.w(sb + T_TABLE), self.w(sb + T_CAP));
        let table = self.alloc(stripe, cap * 8)?;
        self.store.region.zero(table, cap * 8);
        let mask = cap - 1;
        let mut live = 0;
        for i in 0..old_cap {
            let slot = self.w(old + i * 8);
            if slot == EMPTY || slot == TOMBSTONE {
                continue;
            }
            self.place_unlinked(table, mask, slot);
            live += 1;
        }
        self.write(sb + T_TABLE, table)?;
        self.write(sb + T_CAP, cap)?;
        self.write(sb + T_FILLED, live)?;
        self.account(stripe, (cap * 8) as i64)?;
        if old != 0 {
            self.free(stripe, old, old_cap * 8)?;
            self.account(stripe, -((old_cap * 8) as i64))?;
        }
        Ok(())
    }

    /// Puts `slot` at the first empty position of its probe sequence in a
    /// table no stripe links yet (so the write is not journaled).
    fn place_unlinked(&self, table: u64, mask: u64, slot: u64) {
        let mut pos = (slot >> 32) & mask;
        while self.w(table + pos * 8) != EMPTY {
            pos = (pos + 1) & mask;
        }
        self.store.region.u64(table + pos * 8).store(slot, Ordering::Relaxed);
    }

    /// Moves the stripe's objects up to a page in size (entries, and its
    /// table when that small) into fresh chunks, packed, and frees its old
    /// chunks as page runs (its lock held). Returns the bytes of chunks the
    /// stripe gave back. Every change is a logged word or a write into
    /// fresh memory, so the operation leaves the old stripe or the new one.
    pub fn compact(&mut self, stripe: u32) -> Result<u64> {
        let sb = stripe_base(stripe);
        let old_chunks = self.detach_chunks(stripe)?;
        let mut cur = 0;
        let (old, cap) = (self.w(sb + T_TABLE), self.w(sb + T_CAP));
        if old != 0 {
            // A table of the same size: the stripe's counts stay as they are.
            let table = self.alloc_packed(stripe, cap * 8, &mut cur)?;
            self.store.region.zero(table, cap * 8);
            let mask = cap - 1;
            let mut live = 0;
            for i in 0..cap {
                let mut slot = self.w(old + i * 8);
                if slot == EMPTY || slot == TOMBSTONE {
                    continue;
                }
                let entry = EntryRef((slot & 0xffff_ffff) * 8);
                let (k, v) = entry.lens(self);
                let raw = E_HEADER + k + v;
                if class_of(raw).is_some() {
                    // A fresh object: copied unlogged, reachable only
                    // through the new table.
                    let moved = self.alloc_packed(stripe, raw, &mut cur)?;
                    self.store.region.copy_within(entry.0, moved, raw);
                    slot = (slot & !0xffff_ffff) | (moved / 8);
                }
                self.place_unlinked(table, mask, slot);
                live += 1;
            }
            self.write(sb + T_TABLE, table)?;
            self.write(sb + T_FILLED, live)?;
            if class_of(cap * 8).is_none() {
                self.free(stripe, old, cap * 8)?;
            }
        }
        self.write(sb + T_CHUNK_CUR, cur)?;
        let kept = self.w(sb + T_CHUNK_COUNT);
        for &chunk in &old_chunks {
            self.free(stripe, chunk, CHUNK_BYTES)?;
        }
        Ok((old_chunks.len() as u64).saturating_sub(kept) * CHUNK_BYTES)
    }

    /// Every entry of a stripe (its lock held), in table order.
    pub fn entries(&self, stripe: u32) -> Vec<Found> {
        let sb = stripe_base(stripe);
        let (table, cap) = (self.w(sb + T_TABLE), self.w(sb + T_CAP));
        let mut out = Vec::with_capacity(self.w(sb + T_COUNT) as usize);
        for pos in 0..if table == 0 { 0 } else { cap } {
            let slot = self.w(table + pos * 8);
            if slot != EMPTY && slot != TOMBSTONE {
                out.push(Found { stripe, pos, entry: EntryRef((slot & 0xffff_ffff) * 8) });
            }
        }
        out
    }

    /// The entry at or after table position `from` (wrapping), if any.
    pub fn entry_near(&self, stripe: u32, from: u64) -> Option<Found> {
        let sb = stripe_base(stripe);
        let (table, cap) = (self.w(sb + T_TABLE), self.w(sb + T_CAP));
        if table == 0 || self.w(sb + T_COUNT) == 0 {
            return None;
        }
        for n in 0..cap {
            let pos = (from + n) & (cap - 1);
            let slot = self.w(table + pos * 8);
            if slot != EMPTY && slot != TOMBSTONE {
                return Some(Found { stripe, pos, entry: EntryRef((slot & 0xffff_ffff) * 8) });
            }
        }
        None
    }

    pub fn stripe_count(&self, stripe: u32) -> u64 {
        self.w(stripe_base(stripe) + T_COUNT)
    }

    pub fn stripe_volatile(&self, stripe: u32) -> u64 {
        self.w(stripe_base(stripe) + T_VOLATILE)
    }

    pub fn stripe_deadline(&self, stripe: u32) -> u64 {
        self.w(stripe_base(stripe) + T_NEXT_DEADLINE)
    }

    /// Sets the stripe's deadline hint to the exact soonest expiry (after a
    /// full walk of its entries).
    pub fn set_stripe_deadline(&mut self, stripe: u32, at: u64) -> Result<()> {
        self.write(stripe_base(stripe) + T_NEXT_DEADLINE, at)
    }

    /// Empties the store. Every stripe lock and the heap lock must be held;
    /// the pages go back to the system once the operation commits.
    pub fn clear_all(&mut self) -> Result<()> {
        // Everything goes at once: objects this operation freed before are
        // not pushed back onto lists that no longer exist.
        self.frees.clear();
        for stripe in 0..STRIPE_COUNT as u32 {
            let sb = stripe_base(stripe);
            for word in [
                T_TABLE,
                T_CAP,
                T_FILLED,
                T_COUNT,
                T_VOLATILE,
                T_USED,
                T_CHUNK_CUR,
                T_CHUNK_END,
                T_FREE_BYTES,
                T_CHUNKS,
                T_CHUNK_COUNT,
                T_RUNS,
                T_RUN_PAGES,
            ] {
                self.write(sb + word, 0)?;
            }
            self.write(sb + T_NEXT_DEADLINE, NEVER)?;
            for class in 0..CLASSES.len() as u64 {
                self.write(sb + T_FREE + class * 8, 0)?;
            }
        }
        for bin in 0..=HUGE_BIN {
            self.write(H_BINS + bin * 8, 0)?;
        }
        let (start, top) = (self.w(H_HEAP_START), self.w(H_HEAP_TOP));
        self.write(H_HEAP_TOP, start)?;
        self.release_after_commit.push((start, top - start));
        Ok(())
    }
}

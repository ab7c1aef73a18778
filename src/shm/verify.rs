//! SHM.VERIFY: walks the whole store under every lock and lists what is
//! inconsistent (nothing, after any crash the store recovered from).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::index::NEVER;
use super::layout::*;
use super::Handle;

impl Handle {
    /// Every inconsistency found; empty when the store is sound. Takes and
    /// releases every lock itself.
    pub fn verify(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        self.begin();
        for id in 0..LOCK_IDS as u32 {
            if let Err(e) = self.lock(id) {
                self.abort();
                return vec![format!("lock {id}: {e}")];
            }
        }
        let r = &self.store.region;
        let w = |off: u64| r.u64(off).load(Ordering::Relaxed);
        let (start, top, len) = (w(H_HEAP_START), w(H_HEAP_TOP), w(H_LEN));
        if w(H_MAGIC) != MAGIC || w(H_VERSION) != LAYOUT_VERSION || start != HEAP_START || top < start || top > len {
            problems.push(format!("header: heap [{start}, {top}) outside the mapping of {len} bytes"));
            self.abort();
            return problems;
        }
        let in_heap = |off: u64, size: u64| off >= start && off.is_multiple_of(8) && off + size <= top;
        for slot in 0..MAX_SLOTS as u32 {
            let sb = slot_base(slot);
            let (state, pid) = slot_parts(w(sb + S_STATE));
            if state == SLOT_RECOVERING && !super::txn::is_alive(pid) {
                problems.push(format!("slot {slot}: left recovering by process {pid}, which is gone"));
            }
            if state != SLOT_ALIVE && w(sb + S_JOURNAL_STATE) != JOURNAL_IDLE {
                problems.push(format!("slot {slot}: journal of a free slot not idle"));
            }
            if slot != self.slot() && w(sb + S_JOURNAL_STATE) != JOURNAL_IDLE && w(sb + S_UNDO_COUNT) > 0 {
                problems.push(format!("slot {slot}: operation in flight while every lock is held"));
            }
        }
        let mut objects = HashSet::new();
        for stripe in 0..STRIPE_COUNT as u32 {
            let sb = stripe_base(stripe);
            let (table, cap, filled) = (w(sb + T_TABLE), w(sb + T_CAP), w(sb + T_FILLED));
            let mut s_used = 0;
            if table != 0 {
                if !cap.is_power_of_two() || !in_heap(table, cap * 8) {
                    problems.push(format!("stripe {stripe}: table {table} of {cap} slots is not in the heap"));
                    continue;
                }
                s_used += cap * 8;
            }
            let (mut s_keys, mut s_volatile, mut s_filled, mut deadline) = (0, 0, 0, NEVER);
            for pos in 0..if table == 0 { 0 } else { cap } {
                let slot = w(table + pos * 8);
                if slot == 0 {
                    continue;
                }
                s_filled += 1;
                if slot == 1 {
                    continue;
                }
                let entry = (slot & 0xffff_ffff) * 8;
                if !in_heap(entry, 32) {
                    problems.push(format!("stripe {stripe}: slot {pos} points outside the heap ({entry})"));
                    continue;
                }
                let lens = w(entry);
                let (k, v) = (lens & 0xffff_ffff, lens >> 32);
                if !in_heap(entry, 32 + k + v) {
                    problems.push(format!("stripe {stripe}: entry {entry} runs past the heap"));
                    continue;
                }
                if !objects.insert(entry) {
                    problems.push(format!("stripe {stripe}: entry {entry} linked twice"));
                }
                let key = r.to_vec(entry + 32, k as usize);
                let h = self.store.hash(&key);
                if h % STRIPE_COUNT != stripe as u64 || (h >> 32) != slot >> 32 {
                    problems.push(format!(
                        "stripe {stripe}: key {:?} filed under the wrong hash",
                        String::from_utf8_lossy(&key)
                    ));
                }
                let expires = w(entry + 8);
                if expires != NEVER {
                    s_volatile += 1;
                    deadline = deadline.min(expires);
                }
                s_keys += 1;
                s_used += rounded(32 + k + v);
            }
            if s_filled != filled || (table != 0 && filled >= cap) {
                problems.push(format!("stripe {stripe}: {filled} slots counted as filled, {s_filled} are"));
            }
            if s_keys != w(sb + T_COUNT) || s_volatile != w(sb + T_VOLATILE) {
                problems.push(format!(
                    "stripe {stripe}: counts {} keys / {} volatile, holds {s_keys} / {s_volatile}",
                    w(sb + T_COUNT),
                    w(sb + T_VOLATILE)
                ));
            }
            if s_used != w(sb + T_USED) {
                problems.push(format!("stripe {stripe}: counts {} bytes, holds {s_used}", w(sb + T_USED)));
            }
            if deadline < w(sb + T_NEXT_DEADLINE) {
                problems
                    .push(format!("stripe {stripe}: a key expires at {deadline}, before the stripe's deadline hint"));
            }
            for (class, &size) in CLASSES.iter().enumerate() {
                let mut obj = w(sb + T_FREE + class as u64 * 8);
                let mut n = 0;
                while obj != 0 {
                    if !in_heap(obj, size as u64) || objects.contains(&obj) || n > 1 << 26 {
                        problems.push(format!("stripe {stripe}: free list of class {size} holds {obj}"));
                        break;
                    }
                    obj = w(obj);
                    n += 1;
                }
            }
        }
        for bin in 1..=HUGE_BIN {
            let mut run = w(H_BINS + bin * 8);
            let mut n = 0;
            while run != 0 {
                let pages = w(run + 8);
                if !run.is_multiple_of(PAGE)
                    || !in_heap(run, pages * PAGE)
                    || (bin < HUGE_BIN && pages != bin)
                    || n > 1 << 24
                {
                    problems.push(format!("heap: bin {bin} holds a bad run at {run} ({pages} pages)"));
                    break;
                }
                run = w(run);
                n += 1;
            }
        }
        self.abort();
        problems
    }
}

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
        // Everything that holds heap pages: chunks, objects over a page, free
        // runs. Together they must tile the heap.
        let mut runs: Vec<(u64, u64, String)> = Vec::new();
        for stripe in 0..STRIPE_COUNT as u32 {
            let sb = stripe_base(stripe);
            let (table, cap, filled) = (w(sb + T_TABLE), w(sb + T_CAP), w(sb + T_FILLED));
            let mut s_used = 0;
            // The stripe's objects up to a page: (offset, class size, what).
            let mut small: Vec<(u64, u64, &str)> = Vec::new();
            let mut place = |off: u64, size: u64, what: &'static str, small: &mut Vec<(u64, u64, &str)>| {
                if class_of(size).is_some() {
                    small.push((off, rounded(size), what));
                } else {
                    runs.push((off, rounded(size), format!("stripe {stripe}'s {what}")));
                }
            };
            if table != 0 {
                if !cap.is_power_of_two() || !in_heap(table, cap * 8) {
                    problems.push(format!("stripe {stripe}: table {table} of {cap} slots is not in the heap"));
                    continue;
                }
                s_used += cap * 8;
                place(table, cap * 8, "table", &mut small);
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
                    continue;
                }
                place(entry, 32 + k + v, "entry", &mut small);
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
            let mut free_bytes = 0;
            for (class, &size) in CLASSES.iter().enumerate() {
                let mut obj = w(sb + T_FREE + class as u64 * 8);
                let mut n = 0;
                while obj != 0 {
                    if !in_heap(obj, size as u64) || objects.contains(&obj) || n > 1 << 26 {
                        problems.push(format!("stripe {stripe}: free list of class {size} holds {obj}"));
                        break;
                    }
                    small.push((obj, size as u64, "free object"));
                    free_bytes += size as u64;
                    obj = w(obj);
                    n += 1;
                }
            }
            if free_bytes != w(sb + T_FREE_BYTES) {
                problems.push(format!(
                    "stripe {stripe}: counts {} free bytes, its free lists hold {free_bytes}",
                    w(sb + T_FREE_BYTES)
                ));
            }
            // The free runs it keeps.
            let (kept, mut listed, mut run) = (w(sb + T_RUN_PAGES), 0, w(sb + T_RUNS));
            if kept > super::heap::STRIPE_RUN_PAGES {
                problems
                    .push(format!("stripe {stripe}: counts {kept} pages of kept free runs, more than a stripe keeps"));
                run = 0;
                listed = kept;
            }
            while run != 0 {
                let pages = w(run + 8);
                if !run.is_multiple_of(PAGE) || pages == 0 || pages > kept - listed || !in_heap(run, pages * PAGE) {
                    problems.push(format!("stripe {stripe}: keeps a bad free run at {run} ({pages} pages)"));
                    break;
                }
                runs.push((run, pages * PAGE, format!("free run kept by stripe {stripe}")));
                listed += pages;
                run = w(run);
            }
            if listed != kept {
                problems
                    .push(format!("stripe {stripe}: counts {kept} pages of kept free runs, its list holds {listed}"));
            }
            // Its chunks, newest (the one carved from) first.
            let (count, cur, end) = (w(sb + T_CHUNK_COUNT), w(sb + T_CHUNK_CUR), w(sb + T_CHUNK_END));
            let mut chunks = Vec::new();
            let mut chunk = w(sb + T_CHUNKS);
            while chunk != 0 {
                if chunks.len() as u64 >= count
                    || !chunk.is_multiple_of(PAGE)
                    || !in_heap(chunk, CHUNK_BYTES)
                    || w(chunk + C_STRIPE) != stripe as u64
                {
                    problems.push(format!("stripe {stripe}: bad chunk {chunk} in its list of {count}"));
                    break;
                }
                chunks.push(chunk);
                runs.push((chunk, CHUNK_BYTES, format!("stripe {stripe}'s chunk")));
                chunk = w(chunk + C_NEXT);
            }
            if chunks.len() as u64 != count {
                problems.push(format!("stripe {stripe}: counts {count} chunks, its list holds {}", chunks.len()));
            }
            match chunks.first() {
                None if cur != 0 || end != 0 => {
                    problems.push(format!("stripe {stripe}: carves [{cur}, {end}) with no chunk"));
                }
                Some(&newest) if end != newest + CHUNK_BYTES || cur < newest + CHUNK_HEADER || cur > end => {
                    problems.push(format!("stripe {stripe}: carves [{cur}, {end}), its newest chunk is {newest}"));
                }
                _ => {}
            }
            if cur < end {
                small.push((cur, end - cur, "uncarved tail"));
            }
            // Every object up to a page lies inside one of the stripe's
            // chunks, after the header, and overlaps no other.
            chunks.sort_unstable();
            small.sort_unstable();
            let mut last_end = 0;
            for &(off, size, what) in &small {
                let home = chunks.partition_point(|&c| c <= off).checked_sub(1).map(|i| chunks[i]);
                if !home.is_some_and(|c| off >= c + CHUNK_HEADER && off + size <= c + CHUNK_BYTES) {
                    problems.push(format!("stripe {stripe}: {what} {off} ({size} bytes) is in none of its chunks"));
                } else if off < last_end {
                    problems.push(format!("stripe {stripe}: {what} {off} ({size} bytes) overlaps the object before"));
                }
                last_end = last_end.max(off + size);
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
                runs.push((run, pages * PAGE, format!("free run of bin {bin}")));
                run = w(run);
                n += 1;
            }
        }
        runs.sort_unstable();
        let mut at = start;
        for (run, len, what) in &runs {
            if *run != at {
                let how = if *run < at { "overlaps what comes before" } else { "follows a gap" };
                problems.push(format!("heap: {what} at {run} ({len} bytes) {how} (expected at {at})"));
            }
            at = at.max(run + len);
        }
        if at != top {
            problems.push(format!("heap: pages in use or free end at {at}, the heap's top is {top}"));
        }
        self.abort();
        problems
    }
}

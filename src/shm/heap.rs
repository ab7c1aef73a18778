//! Memory inside the mapping: runs of whole pages under the heap lock, and
//! objects up to a page in size classes carved from per-stripe chunks under
//! the stripe's lock. A stripe also keeps a few free page runs of its own,
//! so that a value over a page rewritten at its size takes only the
//! stripe's lock. Every change is a journaled word write, so an
//! allocation or a free belongs to the operation that made it and is undone
//! with it.

use std::sync::atomic::Ordering;

use super::layout::*;
use super::{Handle, Result, StoreError};

/// Runs looked at in the list of large free runs before the heap grows.
const HUGE_PROBES: usize = 64;
/// Free runs merged in one operation at most (each rewrite logs four words).
const MERGE_LIMIT: usize = 50_000;
/// Marks a free run whose pages after the first went back to the system.
const RELEASED: u64 = 0x5245_4c45_4153_4544;
/// Pages of free runs a stripe keeps for its next objects over a page
/// (`T_RUNS`); a run that does not fit goes to the heap's bins. The heap
/// lock is held for the whole operation that takes a run from the bins, a
/// copy of the value included, so without these two workers writing 64 KiB
/// values wait for each other on every write. Kept runs go back to the
/// bins when the broker gives free memory back, and when the heap is full.
pub(super) const STRIPE_RUN_PAGES: u64 = 32;

impl Handle {
    fn word(&self, off: u64) -> u64 {
        self.store.region.u64(off).load(Ordering::Relaxed)
    }

    fn bin(pages: u64) -> u64 {
        H_BINS + pages.min(HUGE_BIN) * 8
    }

    /// `pages` pages, zeroed when `zeroed`.
    pub(super) fn alloc_pages(&mut self, pages: u64, zeroed: bool) -> Result<u64> {
        self.lock(HEAP_LOCK_ID)?;
        let top = self.word(H_HEAP_TOP);
        let end = top.checked_add(pages * PAGE).ok_or(StoreError::OutOfMemory)?;
        let mut found = self.take_free_run(pages)?;
        if found.is_none() && end > self.store.region.len() && self.reclaim_stripe_runs()? {
            found = self.take_free_run(pages)?;
        }
        if let Some(run) = found {
            if zeroed {
                self.store.region.zero(run, pages * PAGE);
            }
            return Ok(run);
        }
        if end > self.store.region.len() {
            return Err(StoreError::OutOfMemory);
        }
        self.write(H_HEAP_TOP, end)?;
        // Pages past the top were never handed out, or were given back to
        // the system when the store was cleared: they read as zeros.
        Ok(top)
    }

    /// A run of exactly `pages` pages the stripe (whose lock is held) kept.
    fn take_stripe_run(&mut self, stripe: u32, pages: u64) -> Result<Option<u64>> {
        let sb = stripe_base(stripe);
        let kept = self.word(sb + T_RUN_PAGES);
        if kept < pages {
            return Ok(None);
        }
        let mut link = sb + T_RUNS;
        let mut run = self.word(link);
        while run != 0 {
            if self.word(run + 8) == pages {
                self.write(link, self.word(run))?;
                self.unlink_run(run)?;
                self.write(sb + T_RUN_PAGES, kept - pages)?;
                return Ok(Some(run));
            }
            link = run;
            run = self.word(run);
        }
        Ok(None)
    }

    /// Moves the runs stripe `stripe` kept to the heap's bins; the caller
    /// holds the stripe's lock and may hold the heap's (taken here if not).
    fn return_stripe_runs(&mut self, stripe: u32) -> Result<()> {
        let sb = stripe_base(stripe);
        let mut run = self.word(sb + T_RUNS);
        if run == 0 {
            return Ok(());
        }
        self.write(sb + T_RUNS, 0)?;
        self.write(sb + T_RUN_PAGES, 0)?;
        while run != 0 {
            let (next, pages) = (self.word(run), self.word(run + 8));
            self.free_pages(run, pages)?;
            run = next;
        }
        Ok(())
    }

    /// With the heap lock held and the heap full: moves the runs kept by
    /// every stripe whose lock this operation holds or can take at once
    /// (lower lock ids are only tried) to the bins. Whether any moved.
    fn reclaim_stripe_runs(&mut self) -> Result<bool> {
        let mut moved = false;
        for stripe in 0..STRIPE_COUNT as u32 {
            if self.word(stripe_base(stripe) + T_RUNS) != 0 && self.try_lock(stripe) {
                self.return_stripe_runs(stripe)?;
                moved = true;
            }
        }
        Ok(moved)
    }

    fn take_free_run(&mut self, pages: u64) -> Result<Option<u64>> {
        if pages < HUGE_BIN {
            let bin = Self::bin(pages);
            let head = self.word(bin);
            if head != 0 {
                let next = self.word(head);
                self.write(bin, next)?;
                self.unlink_run(head)?;
                return Ok(Some(head));
            }
        }
        // First fit among the large runs; a remainder goes back as a free run.
        let mut link = Self::bin(HUGE_BIN);
        for _ in 0..HUGE_PROBES {
            let run = self.word(link);
            if run == 0 {
                break;
            }
            let have = self.word(run + 8);
            if have >= pages {
                self.write(link, self.word(run))?;
                self.unlink_run(run)?;
                if have > pages {
                    let rest = run + pages * PAGE;
                    self.push_run(rest, have - pages)?;
                }
                return Ok(Some(run));
            }
            link = run;
        }
        Ok(None)
    }

    /// Clears a run's free-list words through the journal: whoever gets it
    /// writes over them unlogged, and an undo must find them as they were.
    fn unlink_run(&mut self, run: u64) -> Result<()> {
        self.preserve(run)?;
        self.preserve(run + 8)?;
        self.preserve(run + 16)
    }

    fn push_run(&mut self, run: u64, pages: u64) -> Result<()> {
        self.push_run_to(Self::bin(pages), run, pages)
    }

    /// Puts a free run first on the list whose head is the word at `head`.
    fn push_run_to(&mut self, head: u64, run: u64, pages: u64) -> Result<()> {
        self.write(run, self.word(head))?;
        self.write(run + 8, pages)?;
        self.write(run + 16, 0)?;
        self.write(head, run)
    }

    pub(super) fn free_pages(&mut self, run: u64, pages: u64) -> Result<()> {
        self.lock(HEAP_LOCK_ID)?;
        self.push_run(run, pages)
    }

    /// Gives the memory of free page runs back to the system; returns the
    /// bytes released. Runs under its own operation: called by the broker's
    /// maintenance, never inside a command.
    ///
    /// Free runs that touch are merged first (when there are at most
    /// `MERGE_LIMIT`; the lists are rebuilt through the journal), and a run that
    /// ends at the heap's top lowers the top instead: its pages all go back.
    /// Of every other run, the pages after its first (which holds its list
    /// words) go back, once.
    pub fn release_free_pages(&mut self, budget: usize) -> Result<u64> {
        self.return_kept_runs()?;
        self.begin();
        let result = self.lock(HEAP_LOCK_ID).and_then(|()| self.release_runs(budget));
        match result {
            Ok(released) => {
                self.commit()?;
                Ok(released)
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Moves the runs the stripes keep to the heap's bins, in an operation
    /// of its own that waits for no lock: the broker runs it, and must not
    /// wait on a process that holds a stripe or the heap (stopped, say), nor
    /// keep stripes locked while it waits for the heap or while the pages
    /// are given back. Stripes are tried before the heap (lock order); a
    /// busy stripe keeps its runs until the next release, and a busy heap
    /// leaves them all there.
    fn return_kept_runs(&mut self) -> Result<()> {
        self.begin();
        let keeping: Vec<u32> =
            (0..STRIPE_COUNT as u32).filter(|&s| self.word(stripe_base(s) + T_RUNS) != 0 && self.try_lock(s)).collect();
        if keeping.is_empty() || !self.try_lock(HEAP_LOCK_ID) {
            self.abort();
            return Ok(());
        }
        for &stripe in &keeping {
            if let Err(e) = self.return_stripe_runs(stripe) {
                self.abort();
                return Err(e);
            }
        }
        self.commit()
    }

    fn release_runs(&mut self, budget: usize) -> Result<u64> {
        // Every free run: (start, pages, whether its pages were released).
        let mut runs = Vec::new();
        let mut complete = true;
        for bin in 1..=HUGE_BIN {
            let mut run = self.word(Self::bin(bin));
            while run != 0 {
                if runs.len() == budget {
                    complete = false;
                    break;
                }
                runs.push((run, self.word(run + 8), self.word(run + 16) == RELEASED));
                run = self.word(run);
            }
        }
        // The lists are rebuilt only when every run is known, and when the
        // journal holds their rewrite (four words a run).
        if complete && runs.len() <= MERGE_LIMIT {
            runs.sort_unstable();
            let mut merged: Vec<(u64, u64, bool)> = Vec::with_capacity(runs.len());
            for (run, pages, released) in runs {
                match merged.last_mut() {
                    Some(last) if last.0 + last.1 * PAGE == run => {
                        last.1 += pages;
                        last.2 = false;
                    }
                    _ => merged.push((run, pages, released)),
                }
            }
            let top = self.word(H_HEAP_TOP);
            let mut released = 0;
            if let Some(&(run, pages, _)) = merged.last() {
                if run + pages * PAGE == top {
                    merged.pop();
                    self.write(H_HEAP_TOP, run)?;
                    self.release_after_commit.push((run, top - run));
                    released += top - run;
                }
            }
            for bin in 1..=HUGE_BIN {
                self.write(Self::bin(bin), 0)?;
            }
            // Pushed from the highest down, so each list runs by address.
            for &(run, pages, _) in merged.iter().rev() {
                self.push_run(run, pages)?;
            }
            for (run, pages, was_released) in merged {
                released += self.release_run(run, pages, was_released);
            }
            return Ok(released);
        }
        // Too many to sort out in one operation: release run by run.
        let mut released = 0;
        for (run, pages, was_released) in runs {
            released += self.release_run(run, pages, was_released);
        }
        Ok(released)
    }

    /// Releases the pages after a free run's first, unless they were.
    fn release_run(&mut self, run: u64, pages: u64, was_released: bool) -> u64 {
        if pages < 2 {
            return 0;
        }
        // Not journaled: the mark only saves a second madvise.
        self.store.region.u64(run + 16).store(RELEASED, Ordering::Relaxed);
        if was_released {
            return 0;
        }
        self.release_after_commit.push((run + PAGE, (pages - 1) * PAGE));
        (pages - 1) * PAGE
    }

    /// An object of `size` bytes for stripe `stripe` (whose lock is held).
    pub(super) fn alloc(&mut self, stripe: u32, size: u64) -> Result<u64> {
        let Some(class) = class_of(size) else {
            let pages = size.div_ceil(PAGE);
            if let Some(run) = self.take_stripe_run(stripe, pages)? {
                return Ok(run);
            }
            return self.alloc_pages(pages, false);
        };
        let sb = stripe_base(stripe);
        let step = CLASSES[class] as u64;
        let head_at = sb + T_FREE + class as u64 * 8;
        let head = self.word(head_at);
        if head != 0 {
            let next = self.word(head);
            self.write(head_at, next)?;
            // As for page runs: an undo must find the link again.
            self.preserve(head)?;
            self.write(sb + T_FREE_BYTES, self.word(sb + T_FREE_BYTES) - step)?;
            return Ok(head);
        }
        let mut cur = self.word(sb + T_CHUNK_CUR);
        let obj = self.carve(stripe, step, &mut cur)?;
        self.write(sb + T_CHUNK_CUR, cur)?;
        Ok(obj)
    }

    /// An object of `size` bytes carved from chunks at `*cur`, never from
    /// the free lists: what compaction moves. The caller stores `*cur` in
    /// `T_CHUNK_CUR` once done, so that a million entries moved log one
    /// word, not a million.
    pub(super) fn alloc_packed(&mut self, stripe: u32, size: u64, cur: &mut u64) -> Result<u64> {
        match class_of(size) {
            Some(class) => self.carve(stripe, CLASSES[class] as u64, cur),
            None => self.alloc_pages(size.div_ceil(PAGE), false),
        }
    }

    /// `step` bytes at `*cur` in the stripe's newest chunk, or at the start
    /// of a new one when they do not fit; advances `*cur`.
    fn carve(&mut self, stripe: u32, step: u64, cur: &mut u64) -> Result<u64> {
        let sb = stripe_base(stripe);
        if *cur == 0 || *cur + step > self.word(sb + T_CHUNK_END) {
            let chunk = self.alloc_pages(CHUNK_PAGES, false)?;
            // Its header is written unlogged, like any fresh object: nothing
            // links the chunk before `T_CHUNKS` (logged) does, and a run
            // taken off a free list had its first words logged.
            let r = &self.store.region;
            r.u64(chunk + C_NEXT).store(self.word(sb + T_CHUNKS), Ordering::Relaxed);
            r.u64(chunk + C_STRIPE).store(stripe as u64, Ordering::Relaxed);
            self.write(sb + T_CHUNKS, chunk)?;
            self.write(sb + T_CHUNK_COUNT, self.word(sb + T_CHUNK_COUNT) + 1)?;
            self.write(sb + T_CHUNK_END, chunk + CHUNK_BYTES)?;
            *cur = chunk + CHUNK_HEADER;
        }
        let obj = *cur;
        *cur += step;
        Ok(obj)
    }

    /// Frees an object `alloc` gave out for `size` bytes, as the operation
    /// ends (see `Handle::frees`).
    pub(super) fn free(&mut self, stripe: u32, obj: u64, size: u64) -> Result<()> {
        self.frees.push((stripe, obj, size, false));
        Ok(())
    }

    /// Frees an entry as [`Handle::free`] does; a page run of an entry is
    /// kept by its stripe when there is room (`STRIPE_RUN_PAGES`). Index
    /// tables and chunks are not: the stripe would rarely ask for their
    /// sizes again, and compaction frees chunks to give them back.
    pub(super) fn free_entry(&mut self, stripe: u32, obj: u64, size: u64) -> Result<()> {
        self.frees.push((stripe, obj, size, true));
        Ok(())
    }

    /// Puts an object back on its free list (journaled); an entry's page
    /// run (`keep`) on its stripe's when it fits.
    pub(super) fn release_object(&mut self, stripe: u32, obj: u64, size: u64, keep: bool) -> Result<()> {
        let sb = stripe_base(stripe);
        let Some(class) = class_of(size) else {
            let pages = size.div_ceil(PAGE);
            let kept = self.word(sb + T_RUN_PAGES);
            if keep && kept + pages <= STRIPE_RUN_PAGES {
                debug_assert!(self.holds(stripe), "a run kept by stripe {stripe} without its lock");
                self.push_run_to(sb + T_RUNS, obj, pages)?;
                return self.write(sb + T_RUN_PAGES, kept + pages);
            }
            return self.free_pages(obj, pages);
        };
        let head_at = sb + T_FREE + class as u64 * 8;
        self.write(obj, self.word(head_at))?;
        self.write(head_at, obj)?;
        self.write(sb + T_FREE_BYTES, self.word(sb + T_FREE_BYTES) + CLASSES[class] as u64)
    }

    /// The stripe's chunks, newest first.
    pub(super) fn chunks(&self, stripe: u32) -> Vec<u64> {
        let mut chunks = Vec::with_capacity(self.word(stripe_base(stripe) + T_CHUNK_COUNT) as usize);
        let mut chunk = self.word(stripe_base(stripe) + T_CHUNKS);
        while chunk != 0 {
            chunks.push(chunk);
            chunk = self.word(chunk + C_NEXT);
        }
        chunks
    }

    /// Takes every chunk away from the stripe (whose lock is held): its free
    /// lists, current chunk and chunk list start empty, so that what it
    /// allocates next comes from fresh chunks. Returns the chunks, which the
    /// caller frees once nothing in them is referenced any more. Objects of
    /// the stripe this operation freed are dropped with their chunks.
    pub(super) fn detach_chunks(&mut self, stripe: u32) -> Result<Vec<u64>> {
        let sb = stripe_base(stripe);
        let chunks = self.chunks(stripe);
        for class in 0..CLASSES.len() as u64 {
            self.write(sb + T_FREE + class * 8, 0)?;
        }
        for word in [T_FREE_BYTES, T_CHUNKS, T_CHUNK_COUNT, T_CHUNK_CUR, T_CHUNK_END] {
            self.write(sb + word, 0)?;
        }
        self.frees.retain(|&(s, _, size, _)| s != stripe || class_of(size).is_none());
        Ok(chunks)
    }

    /// Whether the stripe's chunks are worth compacting: mostly free (at
    /// least `min_free` bytes on its free lists, and at least as much as in
    /// use), or holding nothing in use at all. Read without the lock: a hint.
    pub fn wants_compaction(&self, stripe: u32, min_free: u64) -> bool {
        let sb = stripe_base(stripe);
        let (chunks, free) = (self.word(sb + T_CHUNK_COUNT), self.word(sb + T_FREE_BYTES));
        chunks > 0 && (self.word(sb + T_COUNT) == 0 || (free >= min_free.max(1) && free * 2 >= chunks * CHUNK_BYTES))
    }
}

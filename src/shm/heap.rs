//! Memory inside the mapping: runs of whole pages under the heap lock, and
//! objects up to a page in size classes carved from per-stripe chunks under
//! the stripe's lock. Every change is a journaled word write, so an
//! allocation or a free belongs to the operation that made it and is undone
//! with it.

use std::sync::atomic::Ordering;

use super::layout::*;
use super::{Handle, Result, StoreError};

/// Runs looked at in the list of large free runs before the heap grows.
const HUGE_PROBES: usize = 64;
/// Marks a free run whose pages after the first went back to the system.
const RELEASED: u64 = 0x5245_4c45_4153_4544;

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
        let run = match self.take_free_run(pages)? {
            Some(run) => {
                if zeroed {
                    self.store.region.zero(run, pages * PAGE);
                }
                run
            }
            None => {
                let top = self.word(H_HEAP_TOP);
                let end = top.checked_add(pages * PAGE).ok_or(StoreError::OutOfMemory)?;
                if end > self.store.region.len() {
                    return Err(StoreError::OutOfMemory);
                }
                self.write(H_HEAP_TOP, end)?;
                // Pages past the top were never handed out, or were given back
                // to the system when the store was cleared: they read as zeros.
                top
            }
        };
        Ok(run)
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
        let bin = Self::bin(pages);
        self.write(run, self.word(bin))?;
        self.write(run + 8, pages)?;
        self.write(run + 16, 0)?;
        self.write(bin, run)
    }

    pub(super) fn free_pages(&mut self, run: u64, pages: u64) -> Result<()> {
        self.lock(HEAP_LOCK_ID)?;
        self.push_run(run, pages)
    }

    /// Gives back to the system the pages (after the first) of free runs not
    /// given back yet; returns the bytes released. Runs under its own
    /// operation: called by the broker's maintenance, never inside a command.
    pub fn release_free_pages(&mut self, budget: usize) -> Result<u64> {
        self.begin();
        if let Err(e) = self.lock(HEAP_LOCK_ID) {
            self.abort();
            return Err(e);
        }
        let mut released = 0;
        let mut seen = 0;
        for pages in 2..=HUGE_BIN {
            let mut run = self.word(Self::bin(pages));
            while run != 0 && seen < budget {
                seen += 1;
                let have = self.word(run + 8);
                if self.word(run + 16) != RELEASED && have >= 2 {
                    // Not journaled: the mark only saves a second madvise.
                    self.store.region.u64(run + 16).store(RELEASED, Ordering::Relaxed);
                    self.release_after_commit.push((run + PAGE, (have - 1) * PAGE));
                    released += (have - 1) * PAGE;
                }
                run = self.word(run);
            }
        }
        self.commit()?;
        Ok(released)
    }

    /// An object of `size` bytes for stripe `stripe` (whose lock is held).
    pub(super) fn alloc(&mut self, stripe: u32, size: u64) -> Result<u64> {
        let Some(class) = class_of(size) else {
            return self.alloc_pages(size.div_ceil(PAGE), false);
        };
        let sb = stripe_base(stripe);
        let head_at = sb + T_FREE + class as u64 * 8;
        let head = self.word(head_at);
        if head != 0 {
            let next = self.word(head);
            self.write(head_at, next)?;
            // As for page runs: an undo must find the link again.
            self.preserve(head)?;
            return Ok(head);
        }
        let step = CLASSES[class] as u64;
        let (mut cur, end) = (self.word(sb + T_CHUNK_CUR), self.word(sb + T_CHUNK_END));
        if cur == 0 || cur + step > end {
            let chunk = self.alloc_pages(CHUNK_PAGES, false)?;
            self.write(sb + T_CHUNK_END, chunk + CHUNK_PAGES * PAGE)?;
            cur = chunk;
        }
        self.write(sb + T_CHUNK_CUR, cur + step)?;
        Ok(cur)
    }

    /// Frees an object `alloc` gave out for `size` bytes, as the operation
    /// ends (see `Handle::frees`).
    pub(super) fn free(&mut self, stripe: u32, obj: u64, size: u64) -> Result<()> {
        self.frees.push((stripe, obj, size));
        Ok(())
    }

    /// Puts an object back on its free list (journaled).
    pub(super) fn release_object(&mut self, stripe: u32, obj: u64, size: u64) -> Result<()> {
        let Some(class) = class_of(size) else {
            return self.free_pages(obj, size.div_ceil(PAGE));
        };
        let head_at = stripe_base(stripe) + T_FREE + class as u64 * 8;
        self.write(obj, self.word(head_at))?;
        self.write(head_at, obj)
    }
}

//! The shared store: the keyspace in memory that every process of the app
//! maps (docs/design-shared-store.md). The broker and every attached
//! process run data commands on it directly, each under the locks of the
//! stripes it touches; an undo journal per thread makes every command whole
//! or absent, whichever process is killed at whatever instant.
//!
//! Layers: `region` (the mapping) → `layout` (where words live) → `lock`
//! (owner words) → `txn` (a thread's slot, its locks and undo journal,
//! recovery of dead slots) → `heap` (pages and size classes) → `index`
//! (per-stripe hash tables of entries) → `verify`.

#[cfg(unix)]
pub mod attach;
mod heap;
mod index;
pub mod layout;
mod lock;
mod region;
mod txn;
mod verify;

#[cfg(all(test, target_os = "linux"))]
mod crash_points;
#[cfg(all(test, target_os = "linux"))]
mod crash_tests;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

pub use index::{EntryFields, EntryRef, Found, NEVER};
pub use region::{Backing, Region};
pub use txn::{is_alive as txn_is_alive, Handle};

use layout::*;

/// Why a store operation could not complete. The operation's changes are
/// rolled back whenever one of these is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A lock stayed taken by a live process beyond the wait bound.
    Timeout,
    /// The operation changes more than one undo journal holds.
    TooLarge,
    /// The mapping has no room left.
    OutOfMemory,
    /// Every slot of the process table is taken.
    NoSlot,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreError::Timeout => "ERR timed out waiting for a lock of the shared store",
            StoreError::TooLarge => "ERR the command changes too much at once for the shared store's journal",
            StoreError::OutOfMemory => "OOM the shared store's mapping is full",
            StoreError::NoSlot => "ERR too many processes attached to the shared store",
        })
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One mapping of the store in this process.
pub struct Store {
    region: Region,
    keys: (u64, u64),
}

/// Default size of the mapping: the machine's memory, at most what 32-bit
/// references reach. Only pages in use cost memory.
pub fn default_len() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let ram = if pages > 0 && size > 0 { pages as u64 * size as u64 } else { 4 << 30 };
    (ram.max(1 << 30) + HEAP_START).min(MAX_LEN) / PAGE * PAGE
}

impl Store {
    /// A new empty store of `len` bytes (metadata included) in memory of
    /// the kind `backing` names.
    pub fn create(len: u64, backing: &Backing) -> io::Result<Arc<Store>> {
        Self::create_with_keys(len, backing, random_keys())
    }

    /// A new store whose keys hash with `keys`: the same keys lay out the
    /// same writes the same way (tests that replay an operation rely on it).
    pub(crate) fn create_with_keys(len: u64, backing: &Backing, keys: (u64, u64)) -> io::Result<Arc<Store>> {
        let len = len.clamp(HEAP_START + 64 * PAGE, MAX_LEN) / PAGE * PAGE;
        let region = Region::create(len, backing)?;
        let w = |off: u64, v: u64| region.u64(off).store(v, std::sync::atomic::Ordering::Relaxed);
        w(H_VERSION, LAYOUT_VERSION);
        w(H_LEN, len);
        w(H_HEAP_START, HEAP_START);
        w(H_HEAP_TOP, HEAP_START);
        w(H_SIP0, keys.0);
        w(H_SIP1, keys.1);
        for stripe in 0..STRIPE_COUNT as u32 {
            w(stripe_base(stripe) + T_NEXT_DEADLINE, u64::MAX);
        }
        region.u64(H_MAGIC).store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(Arc::new(Store { region, keys }))
    }

    /// Maps a store another process created.
    pub fn attach(fd: OwnedFd) -> io::Result<Arc<Store>> {
        let region = Region::attach(fd)?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a cluster-shm store: {what}"));
        if region.len() < HEAP_START {
            return Err(bad("too small"));
        }
        let r = |off: u64| region.u64(off).load(std::sync::atomic::Ordering::Acquire);
        if r(H_MAGIC) != MAGIC {
            return Err(bad("wrong magic"));
        }
        if r(H_VERSION) != LAYOUT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the store has layout version {}, this build uses {LAYOUT_VERSION}", r(H_VERSION)),
            ));
        }
        if r(H_LEN) != region.len() {
            return Err(bad("length mismatch"));
        }
        let keys = (r(H_SIP0), r(H_SIP1));
        Ok(Arc::new(Store { region, keys }))
    }

    /// Bytes of the store's memory that are resident (allocated pages of
    /// the memfd or file, whichever process touched them); None for
    /// anonymous memory.
    pub fn resident_bytes(&self) -> Option<u64> {
        let fd = self.region.fd()?;
        // SAFETY: fstat on our own descriptor, into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0).then(|| st.st_blocks as u64 * 512)
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    fn word(&self, off: u64) -> u64 {
        self.region.u64(off).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sum of one word over every stripe. Counters are kept per stripe,
    /// under its lock and journal, so they are exact after any crash; the
    /// store-wide figures add them up.
    pub(crate) fn stripes_sum(&self, word: u64) -> u64 {
        (0..STRIPE_COUNT as u32).map(|s| self.word(stripe_base(s) + word)).sum()
    }

    /// Zeroes a statistics word of every stripe (racing counts may survive).
    pub(crate) fn reset_stripe_words(&self, words: &[u64]) {
        for s in 0..STRIPE_COUNT as u32 {
            for &word in words {
                self.region.u64(stripe_base(s) + word).store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Keys, live or expired but not yet reclaimed.
    pub fn len(&self) -> u64 {
        self.stripes_sum(T_COUNT)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn volatile_len(&self) -> u64 {
        self.stripes_sum(T_VOLATILE)
    }

    /// Bytes taken by entries (in their size classes) and index tables.
    pub fn used_memory(&self) -> u64 {
        self.stripes_sum(T_USED)
    }

    /// Records the current use in the high-water marks (peak, and the mark
    /// the broker releases memory from); returns the current use.
    pub fn note_usage(&self) -> u64 {
        let used = self.used_memory();
        self.region.u64(H_PEAK).fetch_max(used, std::sync::atomic::Ordering::Relaxed);
        self.region.u64(H_RELEASE_MARK).fetch_max(used, std::sync::atomic::Ordering::Relaxed);
        used
    }

    pub fn peak_memory(&self) -> u64 {
        self.word(H_PEAK).max(self.used_memory())
    }

    /// Bytes of heap pages handed out so far (freed runs included).
    pub fn heap_size(&self) -> u64 {
        self.word(H_HEAP_TOP) - self.word(H_HEAP_START)
    }

    pub fn counter(&self, off: u64) -> &std::sync::atomic::AtomicU64 {
        self.region.u64(off)
    }

    /// Whether changes must go through the broker (someone listens).
    pub fn listening(&self) -> bool {
        self.word(H_LISTEN) != 0
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::Hasher;
        #[allow(deprecated)] // SipHash-2-4 keyed per store: stable across processes and builds.
        let mut h = std::hash::SipHasher::new_with_keys(self.keys.0, self.keys.1);
        h.write(key);
        h.finish()
    }

    /// A handle for this thread: a slot in the process table.
    pub fn handle(self: &Arc<Store>) -> Result<Handle> {
        Handle::new(self.clone())
    }
}

fn random_keys() -> (u64, u64) {
    let hex = crate::store::random_hex(16);
    let k0 = u64::from_str_radix(&hex[..16], 16).unwrap_or(0x736f6d6570736575);
    let k1 = u64::from_str_radix(&hex[16..], 16).unwrap_or(0x646f72616e646f6d);
    (k0, k1)
}

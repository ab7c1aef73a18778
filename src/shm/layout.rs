//! Where everything lives in the mapping. Offsets are bytes from the start;
//! every structure is made of 8-byte words (and the 4-byte lock words),
//! little-endian, the same in every process.
//!
//! ```text
//! 0        header (4 KiB): identity, heap cursor, counters, limits, heap bins
//! 4 KiB    slots: one per attached thread (state, pid, journal state)
//! 12 KiB   stripes: 256 × 512 B (lock word alone on its cache line, then the
//!          stripe's index root, counters, size-class free lists, chunk list
//!          and the free page runs it keeps)
//! 140 KiB  journals: one per slot, undo records of the operation in flight
//! heap     entries, index tables and size-class chunks, in 4 KiB pages
//! ```

pub const MAGIC: u64 = u64::from_le_bytes(*b"CLSHMSTR");
/// Bumped whenever anything below changes meaning.
pub const LAYOUT_VERSION: u64 = 3;
pub const PAGE: u64 = 4096;

// Header words.
pub const H_MAGIC: u64 = 0;
pub const H_VERSION: u64 = 8;
pub const H_LEN: u64 = 16;
pub const H_HEAP_START: u64 = 24;
/// End of the pages handed out so far (under the heap lock, journaled).
pub const H_HEAP_TOP: u64 = 32;
pub const H_SIP0: u64 = 40;
pub const H_SIP1: u64 = 48;
// 56 and 64: unused.
pub const H_MAX_MEMORY: u64 = 72;
pub const H_MAX_KEYS: u64 = 80;
pub const H_POLICY: u64 = 88;
/// Non-zero while the broker must see every change (keyspace events are
/// wanted or some client tracks keys): then writes go through the broker.
pub const H_LISTEN: u64 = 96;
pub const H_EXPIRED: u64 = 104;
pub const H_EVICTED: u64 = 112;
// 120 and 128 are unused (reads are counted per stripe: T_HITS, T_MISSES).
pub const H_PEAK: u64 = 152;
/// Unix ms of the broker's last sweep: attached processes stop using a
/// store whose broker stopped beating (and reconnect to the new one).
pub const H_HEARTBEAT: u64 = 144;
/// Set when the broker closed: the store is no one's any more.
pub const H_CLOSED: u64 = 136;
/// The highest memory use since the broker last gave memory back.
pub const H_RELEASE_MARK: u64 = 168;
/// The heap lock (u32), on a cache line of its own.
pub const H_HEAP_LOCK: u64 = 192;
/// Free page runs: bin n (1..=64) holds runs of exactly n pages, bin 65 any
/// larger run (first fit, split). Each free run's first word links the
/// next, its second word holds its page count.
pub const H_BINS: u64 = 256;
pub const HUGE_BIN: u64 = 65;

pub const SLOTS: u64 = 4096;
pub const MAX_SLOTS: u64 = 128;
pub const SLOT_SIZE: u64 = 64;
/// The slot's state in the low byte and the pid of the process it belongs
/// to (or that recovers it) above: one compare-and-swap claims a slot with
/// its owner named, so no kill leaves a slot taken by nobody.
pub const S_STATE: u64 = 0;
pub const S_START_TIME: u64 = 16;
pub const S_JOURNAL_STATE: u64 = 24;
pub const S_UNDO_COUNT: u64 = 32;

pub const SLOT_FREE: u64 = 0;
pub const SLOT_ALIVE: u64 = 1;
pub const SLOT_RECOVERING: u64 = 2;
pub const SLOT_STATE_BITS: u32 = 8;

pub fn slot_word(state: u64, pid: u64) -> u64 {
    state | pid << SLOT_STATE_BITS
}

/// (state, pid) of a slot word.
pub fn slot_parts(word: u64) -> (u64, u64) {
    (word & 0xff, word >> SLOT_STATE_BITS)
}

pub const JOURNAL_IDLE: u64 = 0;
pub const JOURNAL_ACTIVE: u64 = 1;

pub const STRIPES: u64 = SLOTS + MAX_SLOTS * SLOT_SIZE;
pub const STRIPE_COUNT: u64 = 256;
pub const STRIPE_SIZE: u64 = 512;
// Stripe words (after the lock word's cache line).
pub const T_TABLE: u64 = 64;
pub const T_CAP: u64 = 72;
/// Index slots in use: live entries and tombstones.
pub const T_FILLED: u64 = 80;
pub const T_COUNT: u64 = 88;
pub const T_VOLATILE: u64 = 96;
pub const T_USED: u64 = 104;
pub const T_NEXT_VERSION: u64 = 112;
/// No key of the stripe expires before this (a lower bound the sweep makes exact).
pub const T_NEXT_DEADLINE: u64 = 120;
pub const T_CHUNK_CUR: u64 = 128;
pub const T_CHUNK_END: u64 = 136;
/// Heads of the size classes' free lists (one word per class).
pub const T_FREE: u64 = 160;
/// Bytes of the objects on the free lists.
pub const T_FREE_BYTES: u64 = T_FREE + CLASSES.len() as u64 * 8;
/// The stripe's first chunk; each chunk's header links the next.
pub const T_CHUNKS: u64 = T_FREE_BYTES + 8;
pub const T_CHUNK_COUNT: u64 = T_CHUNKS + 8;
/// The first of the free page runs the stripe keeps for its own writes
/// (linked and sized as in the heap's bins), and their pages in all.
pub const T_RUNS: u64 = T_CHUNK_COUNT + 8;
pub const T_RUN_PAGES: u64 = T_RUNS + 8;
const _: () = assert!(T_RUN_PAGES + 8 <= T_HITS && T_MISSES + 8 <= STRIPE_SIZE);
/// Reads of the stripe's keys that hit and missed (statistics, not
/// journaled): kept per stripe, under its lock, so that counting a read
/// writes no cache line that other processes' reads also write.
pub const T_HITS: u64 = 496;
pub const T_MISSES: u64 = 504;

/// Lock ids: stripes 0..256, then the heap; these guard data and are taken
/// in ascending order.
pub const HEAP_LOCK_ID: u32 = STRIPE_COUNT as u32;
pub const LOCK_IDS: usize = STRIPE_COUNT as usize + 1;
/// The admission lock: taken *before* any stripe by a write that may cross
/// a memory or key bound, so that concurrent writers near the bound are
/// admitted one at a time. It guards no data; recovery frees it like the
/// others.
pub const ADMISSION_LOCK_ID: u32 = LOCK_IDS as u32;
pub const ALL_LOCK_IDS: usize = LOCK_IDS + 1;
/// The admission lock word, on a cache line of its own.
pub const H_ADMISSION_LOCK: u64 = 1024;

pub const JOURNALS: u64 = STRIPES + STRIPE_COUNT * STRIPE_SIZE;
/// Undo records per operation: 16 bytes each. Untouched journal pages cost
/// nothing, so the bound is generous (a DEL of ~40,000 keys).
pub const JOURNAL_BYTES: u64 = 4 << 20;
pub const HEAP_START: u64 = JOURNALS + MAX_SLOTS * JOURNAL_BYTES;
/// Index slots hold 32-bit references in units of 8 bytes.
pub const MAX_LEN: u64 = 32 << 30;

/// Size classes for objects up to a page, served from per-stripe chunks.
pub const CLASSES: [u32; 27] = [
    32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048,
    2560, 3072, 3584, 4096,
];
pub const CHUNK_PAGES: u64 = 16;
pub const CHUNK_BYTES: u64 = CHUNK_PAGES * PAGE;
/// A chunk starts with a header: the next chunk of its stripe's list, and
/// the stripe (so that VERIFY can tell whose it is). Objects follow.
pub const C_NEXT: u64 = 0;
pub const C_STRIPE: u64 = 8;
pub const CHUNK_HEADER: u64 = 16;

pub fn stripe_base(stripe: u32) -> u64 {
    STRIPES + stripe as u64 * STRIPE_SIZE
}

pub fn slot_base(slot: u32) -> u64 {
    SLOTS + slot as u64 * SLOT_SIZE
}

pub fn journal_base(slot: u32) -> u64 {
    JOURNALS + slot as u64 * JOURNAL_BYTES
}

pub fn lock_offset(id: u32) -> u64 {
    match id {
        HEAP_LOCK_ID => H_HEAP_LOCK,
        ADMISSION_LOCK_ID => H_ADMISSION_LOCK,
        _ => stripe_base(id),
    }
}

/// The size class serving `size` bytes, if it fits in one.
pub fn class_of(size: u64) -> Option<usize> {
    CLASSES.iter().position(|&c| c as u64 >= size)
}

/// Bytes an object of `size` really takes.
pub fn rounded(size: u64) -> u64 {
    match class_of(size) {
        Some(c) => CLASSES[c] as u64,
        None => size.div_ceil(PAGE) * PAGE,
    }
}

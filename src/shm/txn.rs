//! A thread's handle on the store: its slot in the process table, the locks
//! it holds and the undo journal of the operation in flight.
//!
//! Every change to a metadata word goes through [`Handle::write`]: the old
//! value is appended to the slot's journal (and the record counted) before
//! the word changes. Bytes written into memory nothing links to yet (a new
//! entry, a new table) are not logged: they become reachable only through a
//! logged word. Locks are held until the operation commits (two-phase
//! locking), so nobody sees or reuses anything an undo may restore. The
//! commit point is one store of the journal state.
//!
//! A process killed at any instruction therefore leaves, in each lock it
//! held, either a committed operation or a prefix of one whose records are
//! all counted; [`Handle::recover`] takes such locks over, undoes the
//! prefix and frees the slot.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::*;
use super::lock;
use super::{Result, Store, StoreError};

const KIND_WORD: u64 = 0;
const KIND_SHIFT: u32 = 60;
const OFFSET_MASK: u64 = (1 << KIND_SHIFT) - 1;
const RECORDS: u64 = JOURNAL_BYTES / 16;

pub struct Handle {
    pub(super) store: Arc<Store>,
    slot: u32,
    /// slot + 1: what this thread's lock words hold.
    me: u32,
    held: [u64; ALL_LOCK_IDS.div_ceil(64)],
    records: u64,
    active: bool,
    /// Free page runs to give back once committed (nobody may reuse them
    /// before; the heap lock is still held then).
    pub(super) release_after_commit: Vec<(u64, u64)>,
    /// Objects the operation frees: (stripe, offset, size, whether the
    /// stripe may keep it: an entry's page run). They go back to their free
    /// lists only as it ends, so that nothing it frees is handed out again
    /// within it (an undo restores a freed object's contents, which a reuse
    /// would have overwritten unlogged).
    pub(super) frees: Vec<(u32, u64, u64, bool)>,
    /// Holds the admission lock (outside the operation's locks).
    admission: bool,
    /// How long a lock held by a live process is waited for.
    pub lock_timeout: Duration,
}

fn pid() -> u64 {
    std::process::id() as u64
}

/// What the system tells of a live process: whether it is a zombie (it
/// exited and waits for its parent to reap it, as the primary reaps its
/// workers on its own schedule: it will never write again), and its start
/// time (clock ticks since boot on Linux, microseconds since the epoch on
/// macOS), which tells a reused pid from the process that held it (0 when
/// unknown).
struct ProcessStat {
    zombie: bool,
    start_time: u64,
}

/// One read of `/proc/<pid>/stat` on Linux, of `proc_pidinfo` on macOS;
/// None elsewhere or when the process is not found.
fn process_stat(pid: u64) -> Option<ProcessStat> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces: count fields after its ')'.
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let zombie = fields.next() == Some("Z");
        // Field 22 (starttime): the 20th after the state (field 3).
        let start_time = fields.nth(18).and_then(|t| t.parse().ok()).unwrap_or(0);
        Some(ProcessStat { zombie, start_time })
    }
    #[cfg(target_os = "macos")]
    {
        // SAFETY: a zeroed proc_bsdinfo is valid; proc_pidinfo writes at
        // most the size it is given and returns how much it wrote.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
        let written = unsafe {
            libc::proc_pidinfo(
                pid as libc::c_int,
                libc::PROC_PIDTBSDINFO,
                0,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        if written != size {
            return None;
        }
        // Microseconds since the epoch: unique enough to tell two processes
        // that had the same pid apart.
        let start_time = info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec;
        Some(ProcessStat { zombie: info.pbi_status == libc::SZOMB, start_time })
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// The start time of a process (see [`ProcessStat`]); 0 when unknown.
pub fn start_time(pid: u64) -> u64 {
    process_stat(pid).map_or(0, |stat| stat.start_time)
}

/// Whether a process exists (a zombie counts as gone).
pub fn is_alive(pid: u64) -> bool {
    !is_dead(pid, 0)
}

/// Whether the process that took a slot is gone: no such process, a
/// zombie, or another process that reuses its pid (a start time other
/// than `started`, when both are known).
fn is_dead(pid: u64, started: u64) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let gone = unsafe { libc::kill(pid as libc::pid_t, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    gone || process_stat(pid)
        .is_some_and(|stat| stat.zombie || (started != 0 && stat.start_time != 0 && stat.start_time != started))
}

impl Handle {
    pub(super) fn new(store: Arc<Store>) -> Result<Handle> {
        let mut tried_recovery = false;
        loop {
            for slot in 0..MAX_SLOTS as u32 {
                let base = slot_base(slot);
                let state = store.region.u64(base + S_STATE);
                let mine = slot_word(SLOT_ALIVE, pid());
                if state.compare_exchange(SLOT_FREE, mine, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    // A free slot's journal is idle; the start time tells a
                    // reused pid apart (0 until written: the pid alone counts).
                    store.region.u64(base + S_START_TIME).store(start_time(pid()), Ordering::Relaxed);
                    return Ok(Handle {
                        store,
                        slot,
                        me: slot + 1,
                        held: Default::default(),
                        records: 0,
                        active: false,
                        release_after_commit: Vec::new(),
                        frees: Vec::new(),
                        admission: false,
                        lock_timeout: Duration::from_secs(10),
                    });
                }
            }
            if tried_recovery {
                return Err(StoreError::NoSlot);
            }
            // Full: slots of processes that died unnoticed go back first.
            tried_recovery = true;
            for slot in 0..MAX_SLOTS as u32 {
                Self::recover_if_dead(&store, slot);
            }
        }
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn lock_word(&self, id: u32) -> &AtomicU32 {
        self.store.region.u32(lock_offset(id))
    }

    pub fn holds(&self, id: u32) -> bool {
        self.held[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn mark_held(&mut self, id: u32) {
        self.held[id as usize / 64] |= 1 << (id % 64);
    }

    /// Starts an operation; its changes are undone unless it commits.
    pub fn begin(&mut self) {
        debug_assert!(!self.active, "operations do not nest");
        let base = slot_base(self.slot);
        self.records = 0;
        self.store.region.u64(base + S_UNDO_COUNT).store(0, Ordering::Relaxed);
        self.store.region.u64(base + S_JOURNAL_STATE).store(JOURNAL_ACTIVE, Ordering::Release);
        self.active = true;
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Takes lock `id` for the rest of the operation. Locks are taken in
    /// ascending id order; a lock below one already held is only tried
    /// (never waited for in a way that could deadlock: the wait is bounded).
    pub fn lock(&mut self, id: u32) -> Result<()> {
        debug_assert!(self.active);
        if self.holds(id) {
            return Ok(());
        }
        let word = self.store.region.u32(lock_offset(id));
        if !lock::spin_lock(word, self.me) {
            self.wait_for(id)?;
        }
        self.mark_held(id);
        Ok(())
    }

    /// Takes the admission lock, which outlives operations: held from
    /// before a write asks for room until [`Handle::unlock_admission`].
    pub fn lock_admission(&mut self) -> Result<()> {
        if self.admission {
            return Ok(());
        }
        let word = self.store.region.u32(lock_offset(ADMISSION_LOCK_ID));
        if !lock::spin_lock(word, self.me) {
            self.wait_for(ADMISSION_LOCK_ID)?;
        }
        self.admission = true;
        Ok(())
    }

    pub fn unlock_admission(&mut self) {
        if std::mem::take(&mut self.admission) {
            lock::unlock(self.lock_word(ADMISSION_LOCK_ID));
        }
    }

    /// Takes lock `id` only if it is free now.
    pub fn try_lock(&mut self, id: u32) -> bool {
        if self.holds(id) {
            return true;
        }
        if lock::try_lock(self.lock_word(id), self.me) {
            self.mark_held(id);
            return true;
        }
        false
    }

    fn wait_for(&mut self, id: u32) -> Result<()> {
        let started = Instant::now();
        // Whether the owner lives is asked once per slice of waiting, not
        // at every wake-up: a busy lock changes hands many times a
        // millisecond, and the question costs system calls (a signal 0 and
        // a read of /proc). A dead owner never wakes anyone, so its waiters
        // sleep out a slice and ask at once.
        let mut next_check = started + lock::WAIT_SLICE;
        let mut woken = false;
        loop {
            let word = self.store.region.u32(lock_offset(id));
            // `lock` spun already before this first attempt.
            let taken = if woken { lock::spin_after_wait(word, self.me) } else { lock::lock_after_wait(word, self.me) };
            if taken {
                return Ok(());
            }
            let owner = lock::wait(word);
            woken = true;
            if owner == 0 {
                continue;
            }
            if owner == self.me {
                // Cannot happen: a lock this handle holds is in `held`.
                return Err(StoreError::Timeout);
            }
            let now = Instant::now();
            if now >= next_check {
                Self::recover_if_dead(&self.store, owner - 1);
                next_check = now + lock::WAIT_SLICE;
            }
            if now.duration_since(started) > self.lock_timeout {
                return Err(StoreError::Timeout);
            }
        }
    }

    /// Logs the old value of the word at `off`, then stores `value`.
    pub fn write(&mut self, off: u64, value: u64) -> Result<()> {
        let old = self.store.region.u64(off).load(Ordering::Relaxed);
        if old == value {
            return Ok(());
        }
        self.append(KIND_WORD, off, old)?;
        self.store.region.u64(off).store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Logs the word at `off` as it is, before the caller writes over it
    /// without logging (the link word of a free object it takes: even when
    /// the word already holds the value the caller wants, an undo must find
    /// it as it was).
    pub fn preserve(&mut self, off: u64) -> Result<()> {
        let old = self.store.region.u64(off).load(Ordering::Relaxed);
        self.append(KIND_WORD, off, old)
    }

    fn append(&mut self, kind: u64, off: u64, old: u64) -> Result<()> {
        debug_assert!(self.active, "a change outside an operation");
        #[cfg(all(test, target_os = "linux"))]
        super::crash_points::step();
        if self.records == RECORDS {
            return Err(StoreError::TooLarge);
        }
        let r = &self.store.region;
        let rec = journal_base(self.slot) + self.records * 16;
        r.u64(rec).store(kind << KIND_SHIFT | off, Ordering::Relaxed);
        r.u64(rec + 8).store(old, Ordering::Relaxed);
        self.records += 1;
        r.u64(slot_base(self.slot) + S_UNDO_COUNT).store(self.records, Ordering::Release);
        // The change must not become visible before its record is counted.
        fence(Ordering::Release);
        #[cfg(all(test, target_os = "linux"))]
        super::crash_points::step();
        Ok(())
    }

    /// Makes the operation's changes final and releases its locks. When the
    /// frees it deferred cannot be journaled, it is undone instead.
    pub fn commit(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        // Taken and put back, so the list keeps its capacity.
        let mut frees = std::mem::take(&mut self.frees);
        for &(stripe, obj, size, keep) in &frees {
            if let Err(e) = self.release_object(stripe, obj, size, keep) {
                self.abort();
                return Err(e);
            }
        }
        frees.clear();
        self.frees = frees;
        #[cfg(all(test, target_os = "linux"))]
        super::crash_points::step();
        self.store.region.u64(slot_base(self.slot) + S_JOURNAL_STATE).store(JOURNAL_IDLE, Ordering::Release);
        #[cfg(all(test, target_os = "linux"))]
        super::crash_points::step();
        for (off, len) in std::mem::take(&mut self.release_after_commit) {
            self.store.region.release(off, len);
        }
        self.finish();
        Ok(())
    }

    /// Undoes the operation's changes and releases its locks.
    pub fn abort(&mut self) {
        if !self.active {
            return;
        }
        undo(&self.store, self.slot, self.records);
        self.release_after_commit.clear();
        self.frees.clear();
        self.finish();
    }

    fn finish(&mut self) {
        self.records = 0;
        self.active = false;
        // Highest first: the heap lock, then the stripes.
        for (i, word) in self.held.iter().enumerate().rev() {
            let mut bits = *word;
            while bits != 0 {
                let bit = 63 - bits.leading_zeros();
                bits &= !(1 << bit);
                lock::unlock(self.store.region.u32(lock_offset(i as u32 * 64 + bit)));
            }
        }
        self.held = Default::default();
    }

    /// Repairs after the process of `slot` if it is gone (or after one that
    /// died recovering it). Returns whether it recovered it.
    pub fn recover_if_dead(store: &Store, slot: u32) -> bool {
        let base = slot_base(slot);
        let r = &store.region;
        let word = r.u64(base + S_STATE).load(Ordering::Acquire);
        let (state, owner) = slot_parts(word);
        if state == SLOT_FREE || owner == self::pid() {
            return false;
        }
        let started = if state == SLOT_ALIVE { r.u64(base + S_START_TIME).load(Ordering::Relaxed) } else { 0 };
        is_dead(owner, started) && Self::recover_from(store, slot, word)
    }

    /// Takes over every lock of the dead `slot`, undoes its operation in
    /// flight and frees the slot. Exactly one caller does the work; the
    /// broker calls it when a process's connection closes, a waiter when
    /// the broker is not there to.
    pub fn recover(store: &Store, slot: u32) -> bool {
        let word = store.region.u64(slot_base(slot) + S_STATE).load(Ordering::Acquire);
        slot_parts(word).0 == SLOT_ALIVE && Self::recover_from(store, slot, word)
    }

    fn recover_from(store: &Store, slot: u32, seen: u64) -> bool {
        let base = slot_base(slot);
        let r = &store.region;
        let claim = slot_word(SLOT_RECOVERING, pid());
        if r.u64(base + S_STATE).compare_exchange(seen, claim, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        let dead = slot + 1;
        // The locks keep naming the dead slot until they are released: it
        // cannot take any, and nobody else can while they name it. (A
        // recovery cut short by a kill is redone by the next one.)
        let taken: Vec<u32> = (0..ALL_LOCK_IDS as u32)
            .filter(|&id| r.u32(lock_offset(id)).load(Ordering::Acquire) & lock::OWNER == dead)
            .collect();
        if r.u64(base + S_JOURNAL_STATE).load(Ordering::Acquire) == JOURNAL_ACTIVE {
            let records = r.u64(base + S_UNDO_COUNT).load(Ordering::Acquire).min(RECORDS);
            undo(store, slot, records);
        }
        r.u64(base + S_JOURNAL_STATE).store(JOURNAL_IDLE, Ordering::Release);
        r.u64(base + S_START_TIME).store(0, Ordering::Relaxed);
        for id in taken {
            lock::unlock(r.u32(lock_offset(id)));
        }
        r.u64(base + S_STATE).store(SLOT_FREE, Ordering::Release);
        true
    }

    /// Recovers every slot whose process is gone (the broker's maintenance).
    pub fn recover_dead(store: &Store) -> usize {
        (0..MAX_SLOTS as u32).filter(|&slot| Self::recover_if_dead(store, slot)).count()
    }

    /// The slots in use: (slot, pid).
    pub fn attached(store: &Store) -> Vec<(u32, u64)> {
        (0..MAX_SLOTS as u32)
            .map(|s| (s, slot_parts(store.region.u64(slot_base(s) + S_STATE).load(Ordering::Acquire))))
            .filter(|(_, (state, _))| *state == SLOT_ALIVE)
            .map(|(s, (_, pid))| (s, pid))
            .collect()
    }
}

/// Applies a journal's records backwards and marks it idle.
fn undo(store: &Store, slot: u32, records: u64) {
    let r = &store.region;
    let journal = journal_base(slot);
    for n in (0..records).rev() {
        let head = r.u64(journal + n * 16).load(Ordering::Relaxed);
        let old = r.u64(journal + n * 16 + 8).load(Ordering::Relaxed);
        let off = head & OFFSET_MASK;
        debug_assert_eq!(head >> KIND_SHIFT, KIND_WORD);
        r.u64(off).store(old, Ordering::Relaxed);
        // Undone: a recovery after a kill here goes on from the next one.
        r.u64(slot_base(slot) + S_UNDO_COUNT).store(n, Ordering::Release);
    }
    r.u64(slot_base(slot) + S_UNDO_COUNT).store(0, Ordering::Relaxed);
    r.u64(slot_base(slot) + S_JOURNAL_STATE).store(JOURNAL_IDLE, Ordering::Release);
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.abort();
        self.unlock_admission();
        let base = slot_base(self.slot);
        self.store.region.u64(base + S_START_TIME).store(0, Ordering::Relaxed);
        self.store.region.u64(base + S_STATE).store(SLOT_FREE, Ordering::Release);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_told_from_a_zombie_and_from_a_reused_pid() {
        let me = pid();
        let started = start_time(me);
        assert_ne!(started, 0, "this process's start time");
        assert_eq!((is_dead(me, started), is_dead(me, 0), is_alive(me)), (false, false, true));
        // The same pid with another start time: a later process reusing it.
        assert!(is_dead(me, started + 1));

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pid = child.id() as u64;
        // Exited and not reaped yet: a zombie, which counts as gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !process_stat(child_pid).is_some_and(|stat| stat.zombie) {
            assert!(std::time::Instant::now() < deadline, "the child never became a zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((is_dead(child_pid, 0), is_alive(child_pid)), (true, false));
        child.wait().unwrap();
        assert!(process_stat(child_pid).is_none() || is_dead(child_pid, 0));
    }
}

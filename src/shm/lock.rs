//! The lock word every stripe and the heap have: the owner's slot + 1 in
//! the low 16 bits (0 = free) and a WAITERS bit. Taking a free lock is one
//! compare-and-swap and releasing it one swap; only contended waits sleep,
//! on a futex keyed by the shared page (not a process-private futex).
//!
//! The word names its owner so that a process that finds it taken by a dead
//! one can take it over and repair what it left (see `Store::recover`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const OWNER: u32 = 0xffff;
pub const WAITERS: u32 = 1 << 31;

/// How long a waiter sleeps before it checks that the owner still lives.
pub const WAIT_SLICE: Duration = Duration::from_millis(5);

pub fn try_lock(word: &AtomicU32, me: u32) -> bool {
    let cur = word.load(Ordering::Relaxed);
    cur & OWNER == 0 && word.compare_exchange(cur, cur | me, Ordering::Acquire, Ordering::Relaxed).is_ok()
}

/// How long a locker spins before it sleeps. Longer than a lock is held
/// by anything but a slow operation: a write of a 64 KiB value holds its
/// stripe's lock and the heap's for the copy, ~5 µs. A sleeper costs its
/// waker a system call and itself a wake-up that takes longer than that
/// copy; spinning costs nothing to the holder, which runs on another CPU.
const SPIN_FOR: Duration = Duration::from_micros(SPIN_MICROS);
const SPIN_MICROS: u64 = 20;
/// Spins between two looks at the clock (a spin is ~10 ns).
const SPINS_PER_LOOK: u32 = 64;

/// Spins a little for the lock; false when it is still taken.
pub fn spin_lock(word: &AtomicU32, me: u32) -> bool {
    spin(word, me, try_lock)
}

/// As [`spin_lock`], for a waiter that slept: it takes the lock keeping the
/// WAITERS bit ([`lock_after_wait`]). A woken waiter spins as long as a
/// newcomer would, or newcomers that spin would take the lock from it at
/// every hand-over while it makes one attempt per wake-up.
pub fn spin_after_wait(word: &AtomicU32, me: u32) -> bool {
    spin(word, me, lock_after_wait)
}

fn spin(word: &AtomicU32, me: u32, take: fn(&AtomicU32, u32) -> bool) -> bool {
    if take(word, me) {
        return true;
    }
    static MANY_CPUS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Asked once: the answer takes system calls (affinity, cgroup quota).
    // On one CPU the holder cannot run while this process spins.
    if !*MANY_CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()) > 1) {
        return false;
    }
    let started = std::time::Instant::now();
    loop {
        for _ in 0..SPINS_PER_LOOK {
            std::hint::spin_loop();
            // Both ways of taking the lock read before they compare and
            // swap: spinning on a read leaves the holder's cache line alone.
            if take(word, me) {
                return true;
            }
        }
        if started.elapsed() >= SPIN_FOR {
            return false;
        }
    }
}

/// Sleeps until the lock may have been released or a slice passed; returns
/// the owner seen (0 when it was free).
pub fn wait(word: &AtomicU32) -> u32 {
    let cur = word.load(Ordering::Relaxed);
    if cur & OWNER == 0 {
        return 0;
    }
    if cur & WAITERS == 0 && word.compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return word.load(Ordering::Relaxed) & OWNER;
    }
    futex_wait(word, cur | WAITERS, WAIT_SLICE);
    word.load(Ordering::Relaxed) & OWNER
}

/// Takes the lock after a wait, keeping the WAITERS bit: others may still sleep.
pub fn lock_after_wait(word: &AtomicU32, me: u32) -> bool {
    let cur = word.load(Ordering::Relaxed);
    cur & OWNER == 0 && word.compare_exchange(cur, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok()
}

pub fn unlock(word: &AtomicU32) {
    if word.swap(0, Ordering::Release) & WAITERS != 0 {
        futex_wake(word);
    }
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: a shared (not FUTEX_PRIVATE) wait on a word of the mapping;
    // the kernel only reads it.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const libc::timespec);
    }
}

#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: wakes at most one waiter on the word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    // No shared futex: back off until the word changes or the slice ends.
    let start = std::time::Instant::now();
    let mut nap = Duration::from_micros(50);
    while word.load(Ordering::Relaxed) == expected && start.elapsed() < timeout {
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake(_word: &AtomicU32) {}

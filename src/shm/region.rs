//! The mapping every attached process shares: a sealed memfd on Linux,
//! mapped whole once, so no process ever remaps and offsets mean the same
//! thing everywhere.
//!
//! Nothing here hands out references into the mapping: metadata words are
//! atomics reached by offset, and bytes are copied in and out with raw
//! copies, because other processes write the same memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

pub struct Region {
    base: *mut u8,
    len: u64,
    /// The memfd (None for a private anonymous mapping in tests on other
    /// systems). Kept open so it can be handed to processes that attach.
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping lives as long as the Region; every access to its
// contents goes through atomics or raw copies made under the store's locks.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

impl Region {
    /// A new zeroed region of `len` bytes. The pages cost nothing until they
    /// are touched.
    pub fn create(len: u64) -> io::Result<Region> {
        let fd = create_fd(len)?;
        let base = map(fd.as_ref().map_or(-1, |fd| fd.as_raw_fd()), len)?;
        Ok(Region { base, len, fd })
    }

    /// Maps a region another process created, from its descriptor.
    pub fn attach(fd: OwnedFd) -> io::Result<Region> {
        // SAFETY: fstat on a descriptor we own, into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(last_error());
        }
        let len = st.st_size as u64;
        let base = map(fd.as_raw_fd(), len)?;
        Ok(Region { base, len, fd: Some(fd) })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|fd| fd.as_raw_fd())
    }

    fn check(&self, off: u64, len: u64, align: u64) {
        // A bad offset can only come from a corrupted store; stopping here is
        // better than reading or writing outside the mapping.
        assert!(
            off.is_multiple_of(align) && off.checked_add(len).is_some_and(|end| end <= self.len),
            "cluster-shm: store offset {off} (+{len}) outside the mapping of {} bytes",
            self.len
        );
    }

    pub fn u64(&self, off: u64) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: in bounds and aligned (checked); AtomicU64 has the layout
        // of u64 and the mapping outlives `self`.
        unsafe { &*(self.base.add(off as usize) as *const AtomicU64) }
    }

    pub fn u32(&self, off: u64) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as for `u64`.
        unsafe { &*(self.base.add(off as usize) as *const AtomicU32) }
    }

    /// Copies `src` into the mapping at `off`.
    pub fn write_bytes(&self, off: u64, src: &[u8]) {
        self.check(off, src.len() as u64, 1);
        // SAFETY: in bounds; the destination is not referenced anywhere.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(off as usize), src.len()) }
    }

    /// Copies `dst.len()` bytes at `off` out of the mapping.
    pub fn read_bytes(&self, off: u64, dst: &mut [u8]) {
        self.check(off, dst.len() as u64, 1);
        // SAFETY: in bounds; `dst` is ours.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(off as usize), dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies `len` bytes at `from` to `to`, within the mapping; the two
    /// ranges must not overlap.
    pub fn copy_within(&self, from: u64, to: u64, len: u64) {
        self.check(from, len, 1);
        self.check(to, len, 1);
        assert!(from + len <= to || to + len <= from, "cluster-shm: overlapping copy in the store");
        // SAFETY: both ranges in bounds and apart; the destination is not
        // referenced anywhere.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(from as usize), self.base.add(to as usize), len as usize) }
    }

    pub fn to_vec(&self, off: u64, len: usize) -> Vec<u8> {
        self.check(off, len as u64, 1);
        let mut out = Vec::with_capacity(len);
        // SAFETY: in bounds; `out` has room for `len` bytes, all written
        // before its length is set (no zeroing first: a long value would be
        // written twice).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(off as usize), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        out
    }

    /// Whether the bytes at `off` equal `other`, compared in place.
    pub fn bytes_eq(&self, off: u64, other: &[u8]) -> bool {
        self.check(off, other.len() as u64, 1);
        // SAFETY: in bounds; read under the lock that guards these bytes,
        // and the slice does not outlive this call.
        let here = unsafe { std::slice::from_raw_parts(self.base.add(off as usize), other.len()) };
        here == other
    }

    pub fn zero(&self, off: u64, len: u64) {
        self.check(off, len, 1);
        // SAFETY: in bounds.
        unsafe { std::ptr::write_bytes(self.base.add(off as usize), 0, len as usize) }
    }

    /// Gives the pages of `[off, off + len)` back to the system; they read
    /// as zeros afterwards. Only whole pages inside the range are dropped.
    pub fn release(&self, off: u64, len: u64) {
        let page = 4096;
        let start = off.div_ceil(page) * page;
        let end = (off + len) / page * page;
        if end <= start {
            return;
        }
        self.check(start, end - start, page);
        // SAFETY: a whole-page range inside the mapping whose contents are
        // garbage to the store.
        unsafe {
            libc::madvise(self.base.add(start as usize) as *mut libc::c_void, (end - start) as usize, remove_advice());
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; nothing borrows it any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len as usize) };
    }
}

#[cfg(target_os = "linux")]
fn remove_advice() -> libc::c_int {
    libc::MADV_REMOVE
}

#[cfg(not(target_os = "linux"))]
fn remove_advice() -> libc::c_int {
    libc::MADV_FREE
}

#[cfg(target_os = "linux")]
fn create_fd(len: u64) -> io::Result<Option<OwnedFd>> {
    // SAFETY: a constant NUL-terminated name.
    let raw = unsafe { libc::memfd_create(c"cluster-shm".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(last_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if unsafe { libc::ftruncate(raw, len as libc::off_t) } != 0 {
        return Err(last_error());
    }
    // No process may shrink the file under the others (which would turn
    // their accesses into SIGBUS) or grow it.
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(last_error());
    }
    Ok(Some(fd))
}

#[cfg(not(target_os = "linux"))]
fn create_fd(_len: u64) -> io::Result<Option<OwnedFd>> {
    // Other systems get a private mapping: the store works in the process
    // that made it, and other processes reach it through the broker.
    Ok(None)
}

fn map(fd: RawFd, len: u64) -> io::Result<*mut u8> {
    let flags = if fd < 0 { libc::MAP_SHARED | libc::MAP_ANON } else { libc::MAP_SHARED };
    // SAFETY: a fresh mapping at an address the kernel picks.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | map_noreserve(),
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(last_error());
    }
    Ok(base as *mut u8)
}

#[cfg(target_os = "linux")]
fn map_noreserve() -> libc::c_int {
    libc::MAP_NORESERVE
}

#[cfg(not(target_os = "linux"))]
fn map_noreserve() -> libc::c_int {
    0
}

//! The mapping every attached process shares: a sealed memfd on Linux, a
//! file unlinked from the broker's private directory elsewhere (see
//! [`Backing`]), mapped whole once, so no process ever remaps and offsets
//! mean the same thing everywhere.
//!
//! Nothing here hands out references into the mapping: metadata words are
//! atomics reached by offset, and bytes are copied in and out with raw
//! copies, because other processes write the same memory.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// What the memory of a new region is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A sealed memfd: memory that no file system names, reached only
    /// through its descriptor (Linux).
    #[cfg(target_os = "linux")]
    Memfd,
    /// A file created in this directory (private to this user) and unlinked
    /// at once, so that its descriptor is the only reference and nothing
    /// stays behind whatever kills the process; the descriptor is handed to
    /// attaching processes like a memfd's.
    FileIn(PathBuf),
    /// Memory only this process maps (`MAP_ANON`): no process can attach.
    Anonymous,
}

impl Backing {
    /// Memory that no file names: a memfd on Linux, which other processes
    /// can still map from its descriptor.
    #[cfg(target_os = "linux")]
    pub fn without_file() -> Backing {
        Backing::Memfd
    }

    /// Memory that no file names: anonymous memory on systems without
    /// memfd, which no other process can map.
    #[cfg(not(target_os = "linux"))]
    pub fn without_file() -> Backing {
        Backing::Anonymous
    }
}

pub struct Region {
    base: *mut u8,
    len: u64,
    /// The memfd or the unlinked file (None for anonymous memory). Kept
    /// open so it can be handed to processes that attach.
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
    pub fn create(len: u64, backing: &Backing) -> io::Result<Region> {
        let fd = match backing {
            #[cfg(target_os = "linux")]
            Backing::Memfd => Some(create_memfd(len)?),
            Backing::FileIn(dir) => Some(create_unlinked_file(dir, len)?),
            Backing::Anonymous => None,
        };
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
    /// as zeros afterwards. Only whole 4 KiB pages inside the range are
    /// dropped, and of those only the system's pages (16 KiB on arm64
    /// macOS) that lie whole inside; the rest of them is zeroed. The pages
    /// of a memfd or file are punched out of it (a hole reads as zeros in
    /// every process that maps it); where that fails (a file system without
    /// holes), the range is zeroed instead and keeps its memory.
    pub fn release(&self, off: u64, len: u64) {
        let page = 4096;
        let start = off.div_ceil(page) * page;
        let end = (off + len) / page * page;
        if end <= start {
            return;
        }
        self.check(start, end - start, page);
        let system_page = system_page_size();
        let (inner_start, inner_end) = (start.div_ceil(system_page) * system_page, end / system_page * system_page);
        if inner_end <= inner_start {
            self.zero(start, end - start);
            return;
        }
        self.zero(start, inner_start - start);
        self.zero(inner_end, end - inner_end);
        let (start, end) = (inner_start, inner_end);
        match &self.fd {
            Some(fd) => {
                if punch_hole(fd.as_raw_fd(), start, end - start).is_err() {
                    self.zero(start, end - start);
                }
            }
            None => {
                if !REMOVE_ZEROES {
                    // MADV_FREE may keep the pages as they are.
                    self.zero(start, end - start);
                }
                // SAFETY: a whole-page range inside the mapping whose
                // contents are garbage to the store.
                unsafe {
                    libc::madvise(
                        self.base.add(start as usize) as *mut libc::c_void,
                        (end - start) as usize,
                        remove_advice(),
                    );
                }
            }
        }
    }
}

/// The system's page size, asked once.
fn system_page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE_SIZE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size >= 4096 => size as u64,
        _ => 4096,
    })
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

/// Whether pages given back with [`remove_advice`] read as zeros after.
const REMOVE_ZEROES: bool = cfg!(target_os = "linux");

#[cfg(not(target_os = "linux"))]
fn remove_advice() -> libc::c_int {
    libc::MADV_FREE
}

/// Frees the file's blocks in `[off, off + len)`; the size stays.
#[cfg(target_os = "linux")]
fn punch_hole(fd: RawFd, off: u64, len: u64) -> io::Result<()> {
    // What madvise(MADV_REMOVE) does to a shared mapping of the file, asked
    // of the descriptor, which every mapping of a memfd or a file shares.
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    if unsafe { libc::fallocate(fd, mode, off as libc::off_t, len as libc::off_t) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(target_vendor = "apple")]
fn punch_hole(fd: RawFd, off: u64, len: u64) -> io::Result<()> {
    let hole =
        libc::fpunchhole_t { fp_flags: 0, reserved: 0, fp_offset: off as libc::off_t, fp_length: len as libc::off_t };
    // SAFETY: F_PUNCHHOLE reads the struct, which outlives the call.
    if unsafe { libc::fcntl(fd, libc::F_PUNCHHOLE, &hole as *const libc::fpunchhole_t) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
fn punch_hole(_fd: RawFd, _off: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A file of `len` bytes (a hole: no block is allocated until a page is
/// written) created in `dir` and unlinked before anything else happens.
fn create_unlinked_file(dir: &Path, len: u64) -> io::Result<OwnedFd> {
    let path = dir.join(format!("store-{}", crate::store::random_hex(8)));
    // A new name only (O_EXCL), never through a link (O_NOFOLLOW), for this
    // user alone; std adds O_CLOEXEC.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|error| {
            io::Error::new(error.kind(), format!("cannot create the store file {}: {error}", path.display()))
        })?;
    // The descriptor is the only reference from here on: a kill at any
    // later instant leaves no file, and nobody can open it by name.
    std::fs::remove_file(&path).map_err(|error| {
        io::Error::new(error.kind(), format!("cannot unlink the store file {}: {error}", path.display()))
    })?;
    file.set_len(len)?;
    Ok(file.into())
}

#[cfg(target_os = "linux")]
fn create_memfd(len: u64) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
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
    Ok(fd)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::DirBuilderExt;

    const LEN: u64 = 64 << 20;

    /// A fresh 0700 directory, as the broker's, removed when dropped.
    struct PrivateDir(PathBuf);

    impl PrivateDir {
        fn new(name: &str) -> PrivateDir {
            let dir = std::env::temp_dir().join(format!(
                "cluster-shm-region-{name}-{}-{}",
                std::process::id(),
                crate::store::random_hex(4)
            ));
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            PrivateDir(dir)
        }

        fn listing(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for PrivateDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fstat(fd: RawFd) -> libc::stat {
        // SAFETY: fstat into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0, "fstat: {}", last_error());
        st
    }

    fn file_region(dir: &PrivateDir) -> Region {
        Region::create(LEN, &Backing::FileIn(dir.0.clone())).unwrap()
    }

    fn duplicate(region: &Region) -> OwnedFd {
        // SAFETY: dup of a descriptor the region keeps open.
        let raw = unsafe { libc::dup(region.fd().unwrap()) };
        assert!(raw >= 0, "dup: {}", last_error());
        // SAFETY: a new descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }

    #[test]
    fn a_file_region_leaves_no_name_in_its_directory() {
        let dir = PrivateDir::new("unlinked");
        let region = file_region(&dir);
        assert_eq!(dir.listing(), Vec::<String>::new());
        let st = fstat(region.fd().unwrap());
        // Unlinked, a regular file of the whole length, this user's alone,
        // and sparse: nothing is allocated before a page is written.
        assert_eq!(
            (st.st_nlink, st.st_mode & libc::S_IFMT, st.st_mode & 0o777, st.st_size as u64, st.st_uid),
            (0, libc::S_IFREG, 0o600, LEN, unsafe { libc::geteuid() })
        );
        assert!(st.st_blocks < 64, "a new store file has {} blocks allocated", st.st_blocks);
    }

    #[test]
    fn a_second_mapping_of_the_file_sees_the_first_ones_writes() {
        let dir = PrivateDir::new("shared");
        let first = file_region(&dir);
        first.write_bytes(1 << 20, b"written by the first mapping");
        first.u64(LEN - 8).store(0x1122_3344_5566_7788, std::sync::atomic::Ordering::Release);
        let second = Region::attach(duplicate(&first)).unwrap();
        assert_eq!(second.len(), LEN);
        assert_eq!(String::from_utf8_lossy(&second.to_vec(1 << 20, 28)), "written by the first mapping");
        assert_eq!(second.u64(LEN - 8).load(std::sync::atomic::Ordering::Acquire), 0x1122_3344_5566_7788);
        second.write_bytes(4096, b"and back");
        assert_eq!(String::from_utf8_lossy(&first.to_vec(4096, 8)), "and back");
    }

    // Systems whose file systems punch holes (elsewhere the range is zeroed
    // and keeps its blocks).
    #[cfg(any(target_os = "linux", target_vendor = "apple"))]
    #[test]
    fn release_punches_the_pages_out_of_the_file() {
        let dir = PrivateDir::new("release");
        let region = file_region(&dir);
        let other = Region::attach(duplicate(&region)).unwrap();
        let (off, len) = (2 << 20, 8 << 20);
        region.write_bytes(off, &vec![0xa5; len as usize]);
        let fd = region.fd().unwrap();
        let written = fstat(fd).st_blocks;
        assert!(written >= (len / 512) as i64, "{len} bytes written, {written} blocks of 512 allocated");
        // Half a page on each side: only the whole pages inside go.
        region.release(off - 2048, len + 4096);
        let released = fstat(fd).st_blocks;
        assert!(released < written - (len / 512 / 2) as i64, "blocks: {written} written, {released} after release");
        for mapping in [&region, &other] {
            let back = mapping.to_vec(off, len as usize);
            let nonzero = back.iter().filter(|&&b| b != 0).count();
            assert_eq!(nonzero, 0, "{nonzero} of {len} released bytes still read as non-zero");
        }
        // A page the range covers in part keeps its bytes; the whole page
        // after it goes.
        region.write_bytes(off - 4096, b"kept");
        region.write_bytes(off, &[0x5a; 4096]);
        region.release(off - 4096 + 8, 2 * 4096);
        assert_eq!(String::from_utf8_lossy(&other.to_vec(off - 4096, 4)), "kept");
        assert_eq!(other.to_vec(off, 4096).iter().filter(|&&b| b != 0).count(), 0);
    }

    #[test]
    fn a_file_region_in_a_missing_directory_is_an_error() {
        let dir = std::env::temp_dir().join(format!("cluster-shm-region-missing-{}", std::process::id()));
        let error = Region::create(LEN, &Backing::FileIn(dir.clone())).err().expect("created in a missing directory");
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert!(error.to_string().contains(&dir.display().to_string()), "{error}");
        assert!(!dir.exists());
    }
}

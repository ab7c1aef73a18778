//! The allocator of everything the crate allocates: jemalloc, set up to hand
//! the memory a store frees back to the operating system.
//!
//! The rest of the Node process allocates with glibc's malloc, which keeps
//! most of what a store of small keys frees: after 5M keys of 100 bytes were
//! cleared the broker's process kept 448 of the 912 MiB they took, 813 MiB
//! after they were deleted, and `malloc_trim` cannot return the top of a
//! thread's arena (bench/results/memory-return.md). jemalloc purges freed
//! pages on a background thread once they have been unused for about a
//! second, and [`release_free_memory`] purges them at once. It also packs
//! small allocations without a header, which lowers the memory per key.

#[cfg(not(any(target_env = "msvc", fuzzing)))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation: pages freed and not
/// reused within `dirty_decay_ms` are returned to the OS (`MADV_DONTNEED`,
/// so they leave the RSS at once; `muzzy_decay_ms:0` skips the lazy
/// `MADV_FREE` stage, whose pages stay in the RSS until the kernel wants them).
#[cfg(not(any(target_env = "msvc", fuzzing)))]
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static u8> = Some(&b"dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

/// `MALLCTL_ARENAS_ALL`: an `arena.<i>` command for every arena.
#[cfg(not(any(target_env = "msvc", fuzzing)))]
const ARENAS_ALL: &str = "4096";

#[cfg(not(any(target_env = "msvc", fuzzing)))]
fn mallctl_write<T>(name: &str, value: Option<&mut T>) -> bool {
    let name = std::ffi::CString::new(name).expect("no NUL in a mallctl name");
    let (new, new_len) = match value {
        Some(value) => ((value as *mut T).cast(), std::mem::size_of::<T>()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: a NUL-terminated name, no old value asked for, and `new`
    // points at `new_len` bytes of the type the named setting takes.
    unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), new, new_len) == 0 }
}

/// Starts jemalloc's background purging thread, which returns pages past
/// their decay time even while the process makes no allocations. Only the
/// process hosting a broker needs it; a worker's native pieces hold little.
pub fn start_background_purging() {
    #[cfg(not(any(target_env = "msvc", fuzzing)))]
    mallctl_write("background_thread", Some(&mut true));
}

/// Returns every page the allocator holds free to the OS now, as Redis does
/// after FLUSHALL, instead of after the decay time. The process's glibc
/// heap is trimmed too: the replies of the primary's in-process calls
/// become JS values allocated there (Buffers), and after a soak that read
/// back a million values glibc kept 41 MiB of them.
pub fn release_free_memory() {
    #[cfg(not(any(target_env = "msvc", fuzzing)))]
    mallctl_write::<()>(&format!("arena.{ARENAS_ALL}.purge"), None);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes glibc's own locks and touches only free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, not(any(target_env = "msvc", fuzzing))))]
mod tests {
    fn read_opt(name: &str) -> isize {
        let name = std::ffi::CString::new(name).unwrap();
        let mut value: isize = 0;
        let mut len = std::mem::size_of::<isize>();
        // SAFETY: the named options are ssize_t, and `len` says so.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut value as *mut isize).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(status, 0, "mallctl {name:?}");
        value
    }

    #[test]
    fn jemalloc_runs_with_the_decay_times_set_here() {
        assert_eq!((read_opt("opt.dirty_decay_ms"), read_opt("opt.muzzy_decay_ms")), (1000, 0));
        super::start_background_purging();
        super::release_free_memory();
    }
}

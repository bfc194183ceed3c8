//! The glibc allocator, made to give freed memory back as musl's does.
//!
//! The static binary (musl) returns freed pages to the system on its own. glibc keeps them:
//! a freed chunk in the middle of a heap stays resident until something calls `malloc_trim`,
//! and at 1,000 pollers the transient buffers of each answer (TLS records growing and
//! shrinking, bodies, request heads) leave such holes in every heap: measured at Scale A over
//! TLS, 40 MB more than the static binary holds for the same data (glibc 89 MB of heap
//! against musl's 48; thread stacks the same, 34 MB). Limiting the number of arenas
//! (`M_ARENA_MAX` 1 or 2) did not change that (131–132 MB against 133 MB), so the fix is the
//! trim itself: a thread calls `malloc_trim(0)` every [`TRIM_INTERVAL`], which returns the
//! free pages of every arena (a few milliseconds of CPU each time).
//!
//! Other C libraries: nothing to do, no thread.

use std::time::Duration;

/// How often freed memory is returned (glibc only).
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the trimming thread where the C library needs one (glibc).
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).stack_size(64 * 1024).spawn(|| {
            loop {
                std::thread::sleep(TRIM_INTERVAL);
                // SAFETY: malloc_trim takes no pointers and is thread-safe.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!("cannot start the malloc-trim thread: {e}");
        }
    }
}

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
//! free pages of every arena (a few milliseconds of CPU each time): 119 MB.
//!
//! The other part is glibc's per-thread cache (tcache): each thread keeps up to seven freed
//! chunks of every small size for itself, and a poller frees the same few dozen small
//! allocations (request, headers, URL) every second, so a thousand pollers keep a thousand
//! caches of them: 8.5 MB at Scale A. glibc reads its tcache setting only from the
//! environment (`GLIBC_TUNABLES`) when a process starts, so [`restart_without_tcache`] starts
//! the exporter once more, in the same process (`exec`), with `glibc.malloc.tcache_count=0`
//! added: 110 MB, 40 bytes per series.
//!
//! Other C libraries: nothing to do, no thread, no restart.

/// How often freed memory is returned (glibc only).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The glibc tunable that turns the per-thread cache off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NO_TCACHE: &str = "glibc.malloc.tcache_count=0";

/// glibc: replaces this process with itself, same arguments and environment plus
/// `GLIBC_TUNABLES=…:glibc.malloc.tcache_count=0`, unless a tcache setting is already there
/// (so it happens once, and an operator's own setting wins). Call before any thread starts.
/// Returns only when there is nothing to do or the `exec` failed (then the exporter runs on
/// with the cache, as before).
pub fn restart_without_tcache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        let current = current.to_string_lossy();
        if current.contains("glibc.malloc.tcache_count") {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let value = if current.is_empty() { NO_TCACHE.to_string() } else { format!("{current}:{NO_TCACHE}") };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        let err = cmd.args(args).env("GLIBC_TUNABLES", value).exec();
        // Still here: the exec failed (the binary was replaced on disk, no /proc...).
        eprintln!("fastly-exporter: running with glibc's per-thread malloc cache (restart without it failed: {err})");
    }
}

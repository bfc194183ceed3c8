//! A small, bounded per-thread cache of freed blocks in front of the C library's malloc, for the
//! threads that opt in (the pollers). The static (musl) binary's global allocator.
//!
//! Why: musl's malloc, the one the static binary ships, serialises every call on one
//! process-wide lock, and gives a freed 16 KiB block's pages back to the system at once. A
//! poller asks it for the same blocks on every answer: a few dozen small ones (ureq's request,
//! header values and URL, log and status strings) and, under TLS, rustls's plaintext vectors
//! (it copies every record's plaintext into a fresh one of up to 16 KiB). With a thousand pollers woken at the same second boundary on two cores, the
//! lock's wake-ups and the unmapping (page faults, TLB shootdowns) were a large part of the
//! static build's CPU per answer, and most of its gap to the glibc build (whose per-thread
//! arenas avoid both). The glibc build keeps glibc's allocator as it is: measured with this
//! cache in front of it, it used more CPU per answer, not less.
//!
//! What:
//! - Blocks of at most [`SMALL_MAX`] bytes (alignment at most 16) are always asked of the C
//!   library rounded up to a multiple of 16, so a freed one fits any later request of its class.
//!   A thread that called [`enable`] keeps up to [`PER_CLASS`] freed blocks per class and
//!   [`THREAD_BYTES`] in all, and takes from them first. The tiny classes (up to [`TINY_MAX`]
//!   bytes) keep up to [`PER_TINY`] each, outside that budget, so larger blocks cannot crowd
//!   out the tiny ones a request makes by the dozen.
//! - While a thread reads an answer ([`reading`]), it also keeps one freed block of
//!   [`MEDIUM`] bytes; it goes back when the read is over, so an idle poller holds none. While
//!   rustls decrypts a record ([`records`]), every request between [`SMALL_MAX`] and `MEDIUM`
//!   bytes gets such a block: the plaintext vectors of an answer's last, shorter record
//!   (4–8 KB, a different size for each answer) then reuse it too instead of making musl map
//!   and unmap a group for each.
//! - Everything else goes straight through. Blocks move freely between threads: a cached block
//!   was allocated by malloc and is freed by free, whichever thread does it.
//!
//! Invariants: the cache never allocates; a thread-local without a destructor holds it (a
//! global allocator may not use one that registers a destructor); a thread that did not opt in
//! keeps nothing; the guard returned by [`enable`] gives everything back when the thread is
//! done (also when it unwinds). So the memory held is at most `THREAD_BYTES` + [`TINY_BYTES`]
//! per live poller,
//! plus 16 KiB per poller in the middle of reading an answer (`work::SLOTS` turns at a time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Size classes are multiples of this (and the C library's malloc aligns to it).
const GRAIN: usize = 16;
/// The largest small block the cache keeps.
pub const SMALL_MAX: usize = 1024;
const CLASSES: usize = SMALL_MAX / GRAIN;
/// Freed small blocks one thread keeps per size class.
pub const PER_CLASS: u32 = 8;
/// Small-block bytes one thread keeps in all (1,000 pollers: at most 8 MB).
pub const THREAD_BYTES: usize = 8 * 1024;
/// The largest class kept outside [`THREAD_BYTES`], and up to [`PER_TINY`] deep.
pub const TINY_MAX: usize = 64;
/// Freed tiny blocks one thread keeps per class. A request holds about a dozen 16-byte
/// blocks at once (header names and values, ureq's clock); with 8 kept, two of them went to
/// musl's malloc and two to its free on every answer (measured with uprobes).
pub const PER_TINY: u32 = 16;
/// What the tiny classes can hold in all: `PER_TINY` blocks of 16, 32, 48 and 64 bytes.
pub const TINY_BYTES: usize = PER_TINY as usize * (TINY_MAX / GRAIN) * (TINY_MAX + GRAIN) / 2;
// What an idle poller can hold: 10,752 bytes (1,000 pollers: under 11 MB).
const _: () = assert!(THREAD_BYTES + TINY_BYTES == 10752);
/// The medium block kept while an answer is read: a full record's plaintext. rustls decrypts
/// one record at a time for us (`transport::tls_stream`), and its vector is freed before the
/// next one is made, so one block serves every record of an answer. (With rustls' buffered
/// reader, slots for two plaintexts and its 4–32 KiB read buffer were needed.)
pub const MEDIUM: usize = 16384;

/// The global allocator: the C library's malloc behind the per-thread cache.
pub struct ThreadCache;

struct Cache {
    on: Cell<bool>,
    /// An answer is being read: one freed [`MEDIUM`] block is kept too.
    reading: Cell<bool>,
    /// rustls is decrypting a record: medium requests are served [`MEDIUM`] blocks.
    records: Cell<bool>,
    medium: Cell<*mut u8>,
    /// Bytes of the cached blocks that count against [`THREAD_BYTES`] (see [`budgeted`]).
    bytes: Cell<usize>,
    /// Head of each class's free list; a cached block's first word points to the next one.
    heads: [Cell<*mut u8>; CLASSES],
    counts: [Cell<u32>; CLASSES],
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
            on: Cell::new(false),
            reading: Cell::new(false),
            records: Cell::new(false),
            medium: Cell::new(ptr::null_mut()),
            bytes: Cell::new(0),
            heads: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            counts: [const { Cell::new(0) }; CLASSES],
        }
    };
}

/// The class of a small layout, `None` for a large or over-aligned one.
#[inline(always)]
fn class(size: usize, align: usize) -> Option<usize> {
    (size <= SMALL_MAX && align <= GRAIN).then(|| size.max(1).div_ceil(GRAIN) - 1)
}

/// The layout a small block of class `c` is allocated with.
#[inline(always)]
fn class_layout(c: usize) -> Layout {
    // SAFETY: a non-zero multiple of 16 with alignment 16 is a valid layout.
    unsafe { Layout::from_size_align_unchecked((c + 1) * GRAIN, GRAIN) }
}

/// Whether a layout could be served a [`MEDIUM`] block: above the small classes, at most
/// `MEDIUM` bytes, alignment that malloc gives anyway.
#[inline(always)]
fn is_medium(layout: Layout) -> bool {
    layout.align() <= GRAIN && layout.size() > SMALL_MAX && layout.size() <= MEDIUM
}

/// How many [`MEDIUM`] blocks wait, shared by all threads, between one poller's answer and
/// the next one's: a thread gives its block back when its read is over (it holds none while
/// idle), and without these the first record of every answer asked musl for a new one.
/// At most this many blocks (128 KiB) are held for the life of the process.
pub const SPARES: usize = 8;

static SPARE: [AtomicPtr<u8>; SPARES] = [const { AtomicPtr::new(ptr::null_mut()) }; SPARES];

/// A spare [`MEDIUM`] block, or null.
fn take_spare() -> *mut u8 {
    for slot in &SPARE {
        if !slot.load(Ordering::Relaxed).is_null() {
            let p = slot.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                return p;
            }
        }
    }
    ptr::null_mut()
}

/// Leaves a [`MEDIUM`] block for another thread; false when every spare slot is taken.
fn give_spare(p: *mut u8) -> bool {
    SPARE.iter().any(|slot| slot.compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed).is_ok())
}

/// The layout a [`MEDIUM`] block is allocated with.
const MEDIUM_LAYOUT: Layout = match Layout::from_size_align(MEDIUM, GRAIN) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};

unsafe extern "C" {
    /// The usable size of a block malloc handed out (musl: the size asked for; glibc: at
    /// least that). Both C libraries the binary is built with have it.
    fn malloc_usable_size(p: *mut std::ffi::c_void) -> usize;
}

/// What a small block of `size` bytes counts against [`THREAD_BYTES`]: tiny ones nothing.
#[inline(always)]
fn budgeted(size: usize) -> usize {
    if size > TINY_MAX { size } else { 0 }
}

impl Cache {
    #[inline(always)]
    fn pop(&self, c: usize) -> *mut u8 {
        let head = self.heads[c].get();
        if !head.is_null() {
            // SAFETY: a cached block is at least 16 bytes and 16-aligned, and its first word
            // was written by `push`.
            self.heads[c].set(unsafe { *(head as *mut *mut u8) });
            self.counts[c].set(self.counts[c].get() - 1);
            self.bytes.set(self.bytes.get() - budgeted((c + 1) * GRAIN));
        }
        head
    }

    #[inline(always)]
    fn push(&self, c: usize, p: *mut u8) -> bool {
        let size = (c + 1) * GRAIN;
        if !self.on.get()
            || self.counts[c].get() >= if size > TINY_MAX { PER_CLASS } else { PER_TINY }
            || (size > TINY_MAX && self.bytes.get() + size > THREAD_BYTES)
        {
            return false;
        }
        // SAFETY: `p` is a freed block of class `c` (at least 16 bytes, 16-aligned) that nobody
        // else refers to any more.
        unsafe { *(p as *mut *mut u8) = self.heads[c].get() };
        self.heads[c].set(p);
        self.counts[c].set(self.counts[c].get() + 1);
        self.bytes.set(self.bytes.get() + budgeted(size));
        true
    }

    /// The kept [`MEDIUM`] block for a medium request, or null: a request of exactly that
    /// size always takes it, a smaller one only while rustls decrypts a record (see
    /// [`records`]).
    #[inline(always)]
    fn take_medium(&self, size: usize) -> *mut u8 {
        if size != MEDIUM && !self.records.get() {
            return ptr::null_mut();
        }
        let p = self.medium.replace(ptr::null_mut());
        if p.is_null() && self.on.get() && self.reading.get() { take_spare() } else { p }
    }

    /// Keeps a freed block if this thread is reading, the slot is free and the block holds
    /// [`MEDIUM`] bytes. A medium request may have been given a larger block (see
    /// [`records`]), so its layout does not say; the C library does.
    #[inline(always)]
    fn keep_medium(&self, p: *mut u8) -> bool {
        if !self.on.get() || !self.reading.get() || !self.medium.get().is_null() {
            return false;
        }
        // SAFETY: `p` is a live block from the C library's malloc (`System` uses malloc for
        // every layout `is_medium` accepts).
        if unsafe { malloc_usable_size(p.cast()) } < MEDIUM {
            return false;
        }
        self.medium.set(p);
        true
    }

    fn flush_medium(&self) {
        let p = self.medium.replace(ptr::null_mut());
        if !p.is_null() && !give_spare(p) {
            // SAFETY: kept by `keep_medium`, a block of the C library's malloc; `System`'s
            // dealloc frees it whatever the layout says.
            unsafe { System.dealloc(p, MEDIUM_LAYOUT) };
        }
    }

    fn flush(&self) {
        self.flush_medium();
        for c in 0..CLASSES {
            loop {
                let p = self.pop(c);
                if p.is_null() {
                    break;
                }
                // SAFETY: the block came from `System.alloc(class_layout(c))`.
                unsafe { System.dealloc(p, class_layout(c)) };
            }
        }
    }
}

/// Keeps the calling thread's cache on until the guard is dropped.
pub struct Enabled(());

/// Turns the cache on for the calling thread; dropping the guard (at the end of the thread,
/// also when it unwinds) gives every cached block back.
pub fn enable() -> Enabled {
    let _ = CACHE.try_with(|t| t.on.set(true));
    Enabled(())
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _ = CACHE.try_with(|t| {
            t.on.set(false);
            t.reading.set(false);
            t.flush();
        });
    }
}

/// The calling thread starts (`true`) or is done (`false`) reading an answer: only in between
/// does it keep a [`MEDIUM`] block; when it is done the block becomes a spare for the next
/// reader (or, with [`SPARES`] waiting already, goes back to the C library).
pub fn reading(on: bool) {
    let _ = CACHE.try_with(|t| {
        t.reading.set(on);
        if !on {
            t.flush_medium();
        }
    });
}

/// Runs `f` (rustls deframing and decrypting received records) with medium requests served
/// [`MEDIUM`] blocks: a record's plaintext vector, whatever its length, then reuses the one
/// block the thread keeps. Only around that call, because a block rounded up for something
/// that lives on would waste the difference for as long as it lives; what rustls keeps from a
/// record (a session ticket, at most a few per server name) is small and bounded.
pub fn records<T>(f: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            let _ = CACHE.try_with(|t| t.records.set(false));
        }
    }
    let _ = CACHE.try_with(|t| t.records.set(t.on.get() && t.reading.get()));
    let _off = Off;
    f()
}

/// Bytes the calling thread's cache holds (tests).
#[cfg(test)]
pub fn cached_bytes() -> usize {
    CACHE
        .try_with(|t| {
            let medium = if t.medium.get().is_null() { 0 } else { MEDIUM };
            let small: usize = t.counts.iter().enumerate().map(|(c, n)| (c + 1) * GRAIN * n.get() as usize).sum();
            small + medium
        })
        .unwrap_or(0)
}

/// A cached block of class `c` from the calling thread's cache, or null.
#[inline(always)]
fn cached(c: usize) -> *mut u8 {
    CACHE.try_with(|t| t.pop(c)).unwrap_or(ptr::null_mut())
}

// SAFETY: every block handed out is either `System`'s for the same layout, a cached small block
// of the caller's class (which `System` allocated at least as large, 16-aligned), or a kept
// medium block of exactly the caller's size (also 16-aligned: `System` uses malloc for it).
unsafe impl GlobalAlloc for ThreadCache {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = class(layout.size(), layout.align()) {
            let p = cached(c);
            // SAFETY: a valid, non-zero layout.
            return if p.is_null() { unsafe { System.alloc(class_layout(c)) } } else { p };
        }
        if is_medium(layout) {
            let (p, round) =
                CACHE.try_with(|t| (t.take_medium(layout.size()), t.records.get())).unwrap_or((ptr::null_mut(), false));
            if !p.is_null() {
                return p;
            }
            if round {
                // SAFETY: a valid, non-zero layout, at least as large as the caller's.
                return unsafe { System.alloc(MEDIUM_LAYOUT) };
            }
        }
        // SAFETY: the caller's layout, unchanged.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = class(layout.size(), layout.align()) {
            let p = cached(c);
            if p.is_null() {
                // SAFETY: a valid, non-zero layout.
                return unsafe { System.alloc_zeroed(class_layout(c)) };
            }
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
            return p;
        }
        // SAFETY: the caller's layout, unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if let Some(c) = class(layout.size(), layout.align()) {
            if !CACHE.try_with(|t| t.push(c, p)).unwrap_or(false) {
                // SAFETY: small blocks are always allocated with their class layout.
                unsafe { System.dealloc(p, class_layout(c)) }
            }
            return;
        }
        if is_medium(layout) && CACHE.try_with(|t| t.keep_medium(p)).unwrap_or(false) {
            return;
        }
        // SAFETY: the caller's block and layout.
        unsafe { System.dealloc(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class(layout.size(), layout.align());
        let new = class(new_size, layout.align());
        if old.is_some() && old == new {
            return p;
        }
        if let (Some(from), Some(to)) = (old, new) {
            // From one small class to another (a string or vector growing): through the
            // cache, not the C library's realloc (its lock, and a block the cache loses).
            // SAFETY: a valid, non-zero layout.
            let q = unsafe { self.alloc(class_layout(to)) };
            if !q.is_null() {
                // SAFETY: both blocks hold at least the smaller class's size; they are distinct.
                unsafe { ptr::copy_nonoverlapping(p, q, (from.min(to) + 1) * GRAIN) };
                // SAFETY: `p` is a small block of class `from`.
                unsafe { self.dealloc(p, class_layout(from)) };
            }
            return q;
        }
        // The block as `System` allocated it, and the size it should have afterwards (a small
        // block keeps its class size, so the cache can take it back later).
        let held = old.map_or(layout, class_layout);
        let wanted = new.map_or(new_size, |c| (c + 1) * GRAIN);
        // SAFETY: `p` was allocated by `System` with `held` (a kept medium block too: it was
        // `System`'s block of that very layout); `wanted` is non-zero and, rounded to the
        // alignment, does not overflow (it is at most `new_size` rounded up to 16).
        unsafe { System.realloc(p, held, wanted) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("layout")
    }

    /// The tests that read answers share the process-wide spares: one at a time.
    static SPARES_IN_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Takes the spares for the calling test, empty.
    fn spares_to_self() -> std::sync::MutexGuard<'static, ()> {
        let guard = SPARES_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        empty_spares();
        guard
    }

    fn empty_spares() {
        loop {
            let p = take_spare();
            if p.is_null() {
                return;
            }
            unsafe { System.dealloc(p, MEDIUM_LAYOUT) };
        }
    }

    #[test]
    fn classes_cover_every_small_size_and_nothing_larger() {
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(SMALL_MAX, 16), Some(CLASSES - 1));
        assert_eq!(class(SMALL_MAX + 1, 8), None);
        assert_eq!(class(64, 32), None);
        assert!(is_medium(layout(16384)));
        assert!(is_medium(layout(SMALL_MAX + 1)));
        assert!(!is_medium(layout(SMALL_MAX)));
        assert!(!is_medium(layout(16385)));
        assert!(!is_medium(Layout::from_size_align(4096, 4096).expect("layout")));
    }

    #[test]
    fn a_thread_keeps_at_most_its_bound_and_gives_everything_back() {
        std::thread::spawn(|| {
            let a = ThreadCache;
            // Off: nothing is kept.
            let p = unsafe { a.alloc(layout(24)) };
            unsafe { a.dealloc(p, layout(24)) };
            assert_eq!(cached_bytes(), 0);

            let guard = enable();
            // More blocks than a class keeps: the rest go back to the C library.
            let blocks: Vec<*mut u8> = (0..PER_CLASS * 2).map(|_| unsafe { a.alloc(layout(100)) }).collect();
            assert!(blocks.iter().all(|p| !p.is_null()));
            for &p in &blocks {
                unsafe { a.dealloc(p, layout(100)) };
            }
            assert_eq!(cached_bytes(), PER_CLASS as usize * 112);
            // A cached block is handed out again (last kept, first out), zeroed when asked,
            // and a realloc within its class keeps it.
            let p = unsafe { a.alloc_zeroed(layout(100)) };
            assert_eq!(p, blocks[PER_CLASS as usize - 1]);
            assert!(unsafe { std::slice::from_raw_parts(p, 100) }.iter().all(|&b| b == 0));
            let q = unsafe { a.realloc(p, layout(100), 110) };
            assert_eq!(p, q);
            unsafe { q.add(109).write(7) };
            let big = unsafe { a.realloc(q, layout(110), 4000) };
            assert_eq!(unsafe { big.add(109).read() }, 7);
            unsafe { a.dealloc(big, layout(4000)) };
            // Many classes at once stop at the thread's byte bound. Freed largest first, the
            // budget is full before the tiny blocks come back: they are kept all the same.
            let many: Vec<(*mut u8, Layout)> = (1..=CLASSES)
                .flat_map(|c| (0..PER_CLASS).map(move |_| layout(c * GRAIN)))
                .map(|l| (unsafe { a.alloc(l) }, l))
                .collect();
            for &(p, l) in many.iter().rev() {
                unsafe { a.dealloc(p, l) };
            }
            // The tiny classes are full, and the rest stop at the budget.
            assert!(cached_bytes() <= THREAD_BYTES + TINY_BYTES);
            assert!(cached_bytes() > THREAD_BYTES - SMALL_MAX);
            for c in 0..TINY_MAX / GRAIN {
                assert_eq!(CACHE.with(|t| t.counts[c].get()), PER_CLASS);
            }
            // Tiny classes keep more than that, up to `PER_TINY`.
            let tiny: Vec<*mut u8> = (0..PER_TINY + 4).map(|_| unsafe { a.alloc(layout(16)) }).collect();
            for &p in &tiny {
                unsafe { a.dealloc(p, layout(16)) };
            }
            assert_eq!(CACHE.with(|t| t.counts[0].get()), PER_TINY);
            drop(guard);
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn medium_blocks_are_kept_only_while_an_answer_is_read() {
        let _spares = spares_to_self();
        std::thread::spawn(|| {
            let a = ThreadCache;
            let _guard = enable();
            let l = layout(MEDIUM);
            // Not reading: a 16 KiB block goes straight back.
            let p = unsafe { a.alloc(l) };
            unsafe { a.dealloc(p, l) };
            assert_eq!(cached_bytes(), 0);
            reading(true);
            let p = unsafe { a.alloc(l) };
            let q = unsafe { a.alloc(l) };
            unsafe { a.dealloc(p, l) };
            // One block is kept: the second goes back.
            unsafe { a.dealloc(q, l) };
            assert_eq!(cached_bytes(), MEDIUM);
            let p2 = unsafe { a.alloc(l) };
            assert_eq!(p2, p);
            unsafe { a.dealloc(p2, l) };
            // Outside a record's decryption, a smaller request gets a block of its own size,
            // and freeing that block keeps nothing (it could not serve a 16 KiB request).
            let other = unsafe { a.alloc(layout(6000)) };
            assert_ne!(other, p);
            unsafe { a.dealloc(other, layout(6000)) };
            assert_eq!(cached_bytes(), MEDIUM);
            let again = unsafe { a.alloc(l) };
            assert_eq!(again, p);
            unsafe { a.dealloc(again, l) };
            // Done reading: everything medium goes back.
            reading(false);
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn a_record_plaintext_of_any_medium_size_reuses_the_kept_block() {
        let _spares = spares_to_self();
        std::thread::spawn(|| {
            let a = ThreadCache;
            let _guard = enable();
            reading(true);
            // A full record, then the answer's shorter last record: one block serves both.
            let full = records(|| unsafe { a.alloc(layout(MEDIUM)) });
            unsafe { full.add(MEDIUM - 1).write(1) };
            unsafe { a.dealloc(full, layout(MEDIUM)) };
            let last = records(|| unsafe { a.alloc(layout(5177)) });
            assert_eq!(last, full);
            unsafe { a.dealloc(last, layout(5177)) };
            assert_eq!(cached_bytes(), MEDIUM);
            // With the slot empty, a medium request in the window is allocated at 16 KiB, so
            // its block is kept when freed and serves a full record after it.
            let held = unsafe { a.alloc(layout(MEDIUM)) };
            let short = records(|| unsafe { a.alloc(layout(4242)) });
            assert_ne!(short, held);
            assert!(unsafe { malloc_usable_size(short.cast()) } >= MEDIUM);
            unsafe { short.add(MEDIUM - 1).write(2) };
            unsafe { a.dealloc(short, layout(4242)) };
            unsafe { a.dealloc(held, layout(MEDIUM)) };
            assert_eq!(cached_bytes(), MEDIUM);
            assert_eq!(unsafe { a.alloc(layout(MEDIUM)) }, short);
            unsafe { a.dealloc(short, layout(MEDIUM)) };
            // Outside the window nothing is rounded up, and the window closes after `f`.
            let plain = unsafe { a.alloc(layout(3000)) };
            assert!(unsafe { malloc_usable_size(plain.cast()) } < MEDIUM);
            unsafe { a.dealloc(plain, layout(3000)) };
            // Not reading: the window does not round either (nothing would keep the block).
            reading(false);
            let idle = records(|| unsafe { a.alloc(layout(3000)) });
            assert!(unsafe { malloc_usable_size(idle.cast()) } < MEDIUM);
            unsafe { a.dealloc(idle, layout(3000)) };
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn a_small_block_growing_into_another_class_stays_in_the_cache() {
        std::thread::spawn(|| {
            let a = ThreadCache;
            let _guard = enable();
            // A string grown 16 -> 32 -> 80 bytes: the contents move along, and the blocks it
            // leaves behind are kept, not handed to the C library.
            let p = unsafe { a.alloc(layout(16)) };
            unsafe { std::slice::from_raw_parts_mut(p, 16) }.copy_from_slice(b"0123456789abcdef");
            let q = unsafe { a.realloc(p, layout(16), 32) };
            assert_ne!(p, q);
            assert_eq!(unsafe { std::slice::from_raw_parts(q, 16) }, b"0123456789abcdef");
            let r = unsafe { a.realloc(q, layout(32), 80) };
            assert_eq!(unsafe { std::slice::from_raw_parts(r, 16) }, b"0123456789abcdef");
            assert_eq!(cached_bytes(), 16 + 32);
            // The next string of 16 bytes takes the block the first one left.
            assert_eq!(unsafe { a.alloc(layout(16)) }, p);
            // Shrinking copies only what the smaller class holds.
            let s = unsafe { a.realloc(r, layout(80), 20) };
            assert_eq!(unsafe { std::slice::from_raw_parts(s, 16) }, b"0123456789abcdef");
            unsafe { a.dealloc(s, layout(20)) };
            unsafe { a.dealloc(p, layout(16)) };
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn a_block_left_after_one_answer_serves_the_next_reader() {
        let _spares = spares_to_self();
        let reader = || {
            std::thread::spawn(|| {
                let a = ThreadCache;
                let _guard = enable();
                reading(true);
                let p = unsafe { a.alloc(layout(MEDIUM)) };
                unsafe { a.dealloc(p, layout(MEDIUM)) };
                reading(false);
                // Given up by this thread, kept for the next.
                assert_eq!(cached_bytes(), 0);
                p as usize
            })
            .join()
            .expect("reader")
        };
        let first = reader();
        assert_eq!(SPARE.iter().filter(|s| !s.load(Ordering::Relaxed).is_null()).count(), 1);
        assert_eq!(reader(), first);
        // A thread that is not reading an answer does not take it.
        std::thread::spawn(move || {
            let a = ThreadCache;
            let _guard = enable();
            let p = unsafe { a.alloc(layout(MEDIUM)) };
            assert_ne!(p as usize, first);
            unsafe { a.dealloc(p, layout(MEDIUM)) };
        })
        .join()
        .expect("idle thread");
        // At most `SPARES` wait: the next block goes back to the C library.
        let blocks: Vec<*mut u8> = (0..SPARES).map(|_| unsafe { System.alloc(MEDIUM_LAYOUT) }).collect();
        let mut given = 0;
        for &p in &blocks {
            if give_spare(p) {
                given += 1;
            } else {
                unsafe { System.dealloc(p, MEDIUM_LAYOUT) };
            }
        }
        assert_eq!(given, SPARES - 1);
        empty_spares();
    }
}

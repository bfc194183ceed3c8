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
//!   [`THREAD_BYTES`] in all, and takes from them first.
//! - While a thread reads an answer ([`reading`]), it also keeps a few freed blocks of the
//!   [`MEDIUM`] sizes (exact sizes, nothing rounded); they go back when the read is over, so an
//!   idle poller holds none.
//! - Everything else goes straight through. Blocks move freely between threads: a cached block
//!   was allocated by malloc and is freed by free, whichever thread does it.
//!
//! Invariants: the cache never allocates; a thread-local without a destructor holds it (a
//! global allocator may not use one that registers a destructor); a thread that did not opt in
//! keeps nothing; the guard returned by [`enable`] gives everything back when the thread is
//! done (also when it unwinds). So the memory held is at most `THREAD_BYTES` per live poller,
//! plus 16 KiB per poller in the middle of reading an answer (`work::SLOTS` turns at a time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// Size classes are multiples of this (and the C library's malloc aligns to it).
const GRAIN: usize = 16;
/// The largest small block the cache keeps.
pub const SMALL_MAX: usize = 1024;
const CLASSES: usize = SMALL_MAX / GRAIN;
/// Freed small blocks one thread keeps per size class.
pub const PER_CLASS: u32 = 8;
/// Small-block bytes one thread keeps in all (1,000 pollers: at most 8 MB).
pub const THREAD_BYTES: usize = 8 * 1024;
/// The medium blocks kept while an answer is read, one slot each: a full record's plaintext.
/// rustls decrypts one record at a time for us (`transport::tls_stream`), and its vector is
/// freed before the next one is made, so one slot serves every full record of an answer.
/// (With rustls' buffered reader, slots for two plaintexts and its 4–32 KiB read buffer were
/// needed; measured with uprobes, one 16 KiB slot now leaves one call per answer to musl.)
pub const MEDIUM: [usize; 1] = [16384];

/// The global allocator: the C library's malloc behind the per-thread cache.
pub struct ThreadCache;

struct Cache {
    on: Cell<bool>,
    /// An answer is being read: [`MEDIUM`] blocks are kept too, one per slot.
    reading: Cell<bool>,
    medium: [Cell<*mut u8>; MEDIUM.len()],
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
            medium: [const { Cell::new(ptr::null_mut()) }; MEDIUM.len()],
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

/// Whether a layout is one of the [`MEDIUM`] sizes.
#[inline(always)]
fn is_medium(layout: Layout) -> bool {
    layout.align() <= GRAIN && MEDIUM.contains(&layout.size())
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
            self.bytes.set(self.bytes.get() - (c + 1) * GRAIN);
        }
        head
    }

    #[inline(always)]
    fn push(&self, c: usize, p: *mut u8) -> bool {
        let size = (c + 1) * GRAIN;
        if !self.on.get() || self.counts[c].get() >= PER_CLASS || self.bytes.get() + size > THREAD_BYTES {
            return false;
        }
        // SAFETY: `p` is a freed block of class `c` (at least 16 bytes, 16-aligned) that nobody
        // else refers to any more.
        unsafe { *(p as *mut *mut u8) = self.heads[c].get() };
        self.heads[c].set(p);
        self.counts[c].set(self.counts[c].get() + 1);
        self.bytes.set(self.bytes.get() + size);
        true
    }

    /// A kept block of exactly `size` bytes, or null.
    #[inline(always)]
    fn take_medium(&self, size: usize) -> *mut u8 {
        for (slot, &m) in self.medium.iter().zip(&MEDIUM) {
            if m == size && !slot.get().is_null() {
                return slot.replace(ptr::null_mut());
            }
        }
        ptr::null_mut()
    }

    /// Keeps a freed block of `size` bytes if this thread is reading and a slot is free.
    #[inline(always)]
    fn keep_medium(&self, size: usize, p: *mut u8) -> bool {
        if !self.on.get() || !self.reading.get() {
            return false;
        }
        for (slot, &m) in self.medium.iter().zip(&MEDIUM) {
            if m == size && slot.get().is_null() {
                slot.set(p);
                return true;
            }
        }
        false
    }

    fn flush_medium(&self) {
        for (slot, &size) in self.medium.iter().zip(&MEDIUM) {
            let p = slot.replace(ptr::null_mut());
            if !p.is_null() {
                // SAFETY: kept by `keep_medium`, allocated by `System` with this size and an
                // alignment of at most 16 (which `System` ignores for such sizes).
                unsafe { System.dealloc(p, Layout::from_size_align_unchecked(size, GRAIN)) };
            }
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
/// does it keep [`MEDIUM`] blocks; when it is done they go back to the C library.
pub fn reading(on: bool) {
    let _ = CACHE.try_with(|t| {
        t.reading.set(on);
        if !on {
            t.flush_medium();
        }
    });
}

/// Bytes the calling thread's cache holds (tests).
#[cfg(test)]
pub fn cached_bytes() -> usize {
    CACHE
        .try_with(|t| {
            let medium: usize =
                MEDIUM.iter().zip(&t.medium).filter(|(_, p)| !p.get().is_null()).map(|(&size, _)| size).sum();
            t.bytes.get() + medium
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
            let p = CACHE.try_with(|t| t.take_medium(layout.size())).unwrap_or(ptr::null_mut());
            if !p.is_null() {
                return p;
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
        if is_medium(layout) && CACHE.try_with(|t| t.keep_medium(layout.size(), p)).unwrap_or(false) {
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

    #[test]
    fn classes_cover_every_small_size_and_nothing_larger() {
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(SMALL_MAX, 16), Some(CLASSES - 1));
        assert_eq!(class(SMALL_MAX + 1, 8), None);
        assert_eq!(class(64, 32), None);
        assert!(is_medium(layout(16384)));
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
            let blocks: Vec<*mut u8> = (0..PER_CLASS * 2).map(|_| unsafe { a.alloc(layout(24)) }).collect();
            assert!(blocks.iter().all(|p| !p.is_null()));
            for &p in &blocks {
                unsafe { a.dealloc(p, layout(24)) };
            }
            assert_eq!(cached_bytes(), PER_CLASS as usize * 32);
            // A cached block is handed out again (last kept, first out), zeroed when asked,
            // and a realloc within its class keeps it.
            let p = unsafe { a.alloc_zeroed(layout(24)) };
            assert_eq!(p, blocks[PER_CLASS as usize - 1]);
            assert!(unsafe { std::slice::from_raw_parts(p, 24) }.iter().all(|&b| b == 0));
            let q = unsafe { a.realloc(p, layout(24), 30) };
            assert_eq!(p, q);
            unsafe { q.add(29).write(7) };
            let big = unsafe { a.realloc(q, layout(30), 4000) };
            assert_eq!(unsafe { big.add(29).read() }, 7);
            unsafe { a.dealloc(big, layout(4000)) };
            // Many classes at once stop at the thread's byte bound.
            let many: Vec<(*mut u8, Layout)> = (1..=CLASSES)
                .flat_map(|c| (0..PER_CLASS).map(move |_| layout(c * GRAIN)))
                .map(|l| (unsafe { a.alloc(l) }, l))
                .collect();
            for &(p, l) in &many {
                unsafe { a.dealloc(p, l) };
            }
            assert!(cached_bytes() <= THREAD_BYTES);
            assert!(cached_bytes() > THREAD_BYTES - SMALL_MAX);
            drop(guard);
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn medium_blocks_are_kept_only_while_an_answer_is_read() {
        std::thread::spawn(|| {
            let a = ThreadCache;
            let _guard = enable();
            let l = layout(16384);
            // Not reading: a 16 KiB block goes straight back.
            let p = unsafe { a.alloc(l) };
            unsafe { a.dealloc(p, l) };
            assert_eq!(cached_bytes(), 0);
            reading(true);
            let p = unsafe { a.alloc(l) };
            let q = unsafe { a.alloc(l) };
            unsafe { a.dealloc(p, l) };
            // As many as the slots of that size: the second goes back.
            unsafe { a.dealloc(q, l) };
            assert_eq!(cached_bytes(), 16384);
            let p2 = unsafe { a.alloc(l) };
            assert_eq!(p2, p);
            unsafe { a.dealloc(p2, l) };
            // The kept block serves the next request of that exact size, not another size.
            let other = unsafe { a.alloc(layout(16000)) };
            assert_ne!(other, p);
            unsafe { a.dealloc(other, layout(16000)) };
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
}

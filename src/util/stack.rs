//! Giving back the deep pages of a long-lived thread's stack.
//!
//! A thread's stack keeps every page it ever touched resident for the thread's life. A
//! poller touches its deepest pages for a moment once a second (reading a TLS record,
//! parsing, merging) and spends the rest of the second in a long poll near the top of its
//! stack; at 1,000 pollers their high-water marks were a third of the exporter's memory
//! (34 MB at Scale A). [`StackTrim::release`] returns the pages below the caller's frame
//! (with a margin) to the system before a poller waits (no data, an error, a backoff): they
//! are zero-filled again when next touched. Between answers that follow each other at once
//! the pages stay: the next answer touches them again.

use std::mem::MaybeUninit;

/// Kept below the caller's frame: room for the `madvise` call itself and a signal frame.
const MARGIN: usize = 16 * 1024;

/// The calling thread's stack bounds, to trim it later from the same thread.
#[derive(Debug)]
pub struct StackTrim {
    /// Lowest address of the stack, rounded up to a page.
    low: usize,
    page: usize,
}

impl StackTrim {
    /// For the calling thread; `None` when its stack bounds cannot be read.
    pub fn here() -> Option<StackTrim> {
        // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, destroyed
        // once, and the out-pointers are valid locals.
        unsafe {
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).ok().filter(|p| p.is_power_of_two())?;
            let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            if got != 0 || addr.is_null() || size == 0 {
                return None;
            }
            Some(StackTrim { low: (addr as usize).checked_add(page - 1)? & !(page - 1), page })
        }
    }

    /// Returns the pages of this thread's stack more than [`MARGIN`] below the caller's frame.
    /// Must be called on the thread [`StackTrim::here`] was called on.
    #[inline(never)]
    pub fn release(&self) {
        let marker = 0u8;
        let sp = std::hint::black_box(&marker) as *const u8 as usize;
        let high = sp.saturating_sub(MARGIN) & !(self.page - 1);
        if high > self.low {
            // SAFETY: the range lies within this thread's own stack, strictly below the live
            // frames (and the margin); nothing refers to it, and MADV_DONTNEED only makes it
            // read as zeros when touched again.
            unsafe {
                libc::madvise(self.low as *mut libc::c_void, high - self.low, libc::MADV_DONTNEED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep frames, released, then used again: the thread goes on as if nothing happened.
    #[test]
    fn released_pages_come_back_as_fresh_stack() {
        fn deep(n: u32) -> u64 {
            let buf = std::hint::black_box([n as u8; 1024]);
            if n == 0 { u64::from(buf[0]) } else { deep(n - 1) + u64::from(buf[7]) }
        }
        let t = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let trim = StackTrim::here().expect("stack bounds of a spawned thread");
                let mut sums = Vec::new();
                for _ in 0..5 {
                    sums.push(deep(150));
                    trim.release();
                }
                sums
            })
            .unwrap();
        let sums = t.join().unwrap();
        assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");
    }
}

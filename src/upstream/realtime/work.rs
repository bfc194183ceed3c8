//! Shared parse buffers (body, batch, merge scratch), handed out a few at a time.
//!
//! A poller needs buffers only between "response headers arrived" and "batch merged", about
//! a millisecond per second. But rt.fastly.com answers every long-poll at the same second
//! boundary, so a thousand pollers would otherwise all hold a body and a batch at once (and the
//! allocator keeps that peak as RSS for good). A fixed set of buffers, taken in turn,
//! bounds that memory regardless of the number of services; the wait for one is short because
//! each is held only while a body is read, parsed and merged.

use std::sync::{Condvar, Mutex};

use crate::store::{Batch, Scratch};

/// Buffers larger than this are replaced after use, so one huge answer does not pin its
/// memory forever.
const KEEP_LIMIT: usize = 4 << 20;

/// How many pollers may read/parse/merge at once (32 × ~110 KB). Enough that the burst at
/// each second boundary rarely waits, few enough that the burst does not become RSS.
pub const SLOTS: usize = 32;

/// One set of buffers.
#[derive(Default)]
pub struct Work {
    /// Response body.
    pub body: Vec<u8>,
    /// Parsed records.
    pub batch: Batch,
    /// Merge scratch space.
    pub scratch: Scratch,
}

struct Pool {
    free: Mutex<(Vec<Work>, usize)>,
    ready: Condvar,
}

static POOL: Pool = Pool { free: Mutex::new((Vec::new(), 0)), ready: Condvar::new() };

/// Buffers on loan to one poller; returned to the pool when dropped (also on panic, so a
/// crashing poller cannot leak a slot).
pub struct Lease(Option<Work>);

impl std::ops::Deref for Lease {
    type Target = Work;
    fn deref(&self) -> &Work {
        self.0.as_ref().expect("lease holds buffers until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Work {
        self.0.as_mut().expect("lease holds buffers until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            give(w);
        }
    }
}

/// Takes a set of buffers, waiting while all [`SLOTS`] are in use.
pub fn take() -> Lease {
    let mut g = POOL.free.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(w) = g.0.pop() {
            return Lease(Some(w));
        }
        if g.1 < SLOTS {
            g.1 += 1;
            return Lease(Some(Work::default()));
        }
        g = POOL.ready.wait(g).unwrap_or_else(|p| p.into_inner());
    }
}

fn give(mut w: Work) {
    if w.body.capacity() > KEEP_LIMIT {
        w = Work::default();
    }
    w.body.clear();
    w.batch.clear();
    // A panic mid-merge can leave a half-built record here; the next user starts clean.
    w.scratch.reset();
    POOL.free.lock().unwrap_or_else(|p| p.into_inner()).0.push(w);
    POOL.ready.notify_one();
}

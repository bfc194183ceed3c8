//! Shared parse buffers (body, batch, merge scratch), handed out a few at a time.
//!
//! A poller needs buffers only between "response headers arrived" and "batch merged", about
//! a millisecond per second. But rt.fastly.com answers every long-poll at the same second
//! boundary, so a thousand pollers would otherwise all hold a body and a batch at once (and the
//! allocator keeps that peak as RSS for good). A fixed set of buffers, taken in turn,
//! bounds that memory regardless of the number of services; the wait for one is short because
//! each is held only while a body is read, parsed and merged.

use std::sync::{Arc, Condvar, Mutex};

use crate::store::{Batch, Places, Scratch};

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
    /// Where each record of the batch goes (filled only when a placement step runs).
    pub places: Places,
}

/// The buffer sets, shared by every poller through an `Arc` handle.
#[derive(Default)]
pub struct WorkPool {
    /// Free sets, sets made so far, pollers waiting for one.
    free: Mutex<(Vec<Work>, usize, usize)>,
    ready: Condvar,
}

/// Buffers on loan to one poller; returned to the pool when dropped (also on panic, so a
/// crashing poller cannot leak a slot).
pub struct Lease {
    work: Option<Work>,
    pool: Arc<WorkPool>,
}

impl std::ops::Deref for Lease {
    type Target = Work;
    fn deref(&self) -> &Work {
        self.work.as_ref().unwrap_or_else(|| unreachable!("a lease holds its buffers until dropped"))
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Work {
        self.work.as_mut().unwrap_or_else(|| unreachable!("a lease holds its buffers until dropped"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(w) = self.work.take() {
            self.pool.give(w);
        }
    }
}

impl WorkPool {
    /// Takes a set of buffers, waiting while all [`SLOTS`] are in use.
    pub fn take(self: &Arc<Self>) -> Lease {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(w) = g.0.pop() {
                return Lease { work: Some(w), pool: self.clone() };
            }
            if g.1 < SLOTS {
                g.1 += 1;
                return Lease { work: Some(Work::default()), pool: self.clone() };
            }
            g.2 += 1;
            g = self.ready.wait(g).unwrap_or_else(|p| p.into_inner());
            g.2 -= 1;
        }
    }

    fn give(&self, mut w: Work) {
        if w.body.capacity() > KEEP_LIMIT {
            w = Work::default();
        }
        // Not cleared: the next answer is read over these bytes (`Pending::read_into`).
        w.batch.clear();
        // A panic mid-merge can leave a half-built record here; the next user starts clean.
        w.scratch.reset();
        w.places.clear();
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        g.0.push(w);
        // Only when someone waits (std's condvar makes a system call per notification); a
        // poller that starts waiting later finds the set on the list first, under the lock.
        let waiting = g.2 > 0;
        drop(g);
        if waiting {
            self.ready.notify_one();
        }
    }
}

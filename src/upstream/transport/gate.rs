//! How many answers are being taken in at once.
//!
//! rt.fastly.com answers every long-poll at the same second boundary, so a thousand pollers
//! wake together. Reading an answer's head over TLS pulls its first record (16 KB) into
//! rustls, decrypts it, and leaves the rest of that record waiting; a poller then queues for
//! parse buffers ([`WorkPool`](crate::upstream::realtime)) holding ~35 KB. A thousand such
//! pollers once a second became RSS for good (27 kB per connection at Scale A).
//!
//! So a gated connection waits, before the first read of an answer, until the answer is in
//! the socket (a `MSG_PEEK`, which holds nothing), and then for one of a fixed number of
//! turns. Bytes that are not our turn yet wait in the kernel's socket buffer, which is not
//! ours. The turn is the calling thread's until its client has read the answer's body
//! ([`Gate::leave`]), or until the thread's next request.

use std::sync::{Condvar, Mutex};
use std::thread::{self, ThreadId};

/// A fixed number of turns, each held by one thread.
#[derive(Debug)]
pub struct Gate {
    turns: usize,
    holders: Mutex<Vec<ThreadId>>,
    freed: Condvar,
}

impl Gate {
    /// A gate letting `turns` threads (at least one) read answers at once.
    pub fn new(turns: usize) -> Gate {
        Gate { turns: turns.max(1), holders: Mutex::new(Vec::new()), freed: Condvar::new() }
    }

    /// Waits for a turn for the calling thread; returns at once if it holds one already.
    pub fn enter(&self) {
        let me = thread::current().id();
        let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        if holders.contains(&me) {
            return;
        }
        while holders.len() >= self.turns {
            holders = self.freed.wait(holders).unwrap_or_else(|p| p.into_inner());
        }
        holders.push(me);
    }

    /// Gives back the calling thread's turn, if it holds one.
    pub fn leave(&self) {
        let me = thread::current().id();
        let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = holders.iter().position(|t| *t == me) {
            holders.swap_remove(i);
            self.freed.notify_one();
        }
    }

    /// How many threads hold a turn now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.holders.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_thread_enters_once_and_the_gate_never_holds_more_than_its_turns() {
        let gate = Arc::new(Gate::new(3));
        gate.enter();
        gate.enter();
        assert_eq!(gate.held(), 1, "entering twice takes one turn");
        gate.leave();
        gate.leave();
        assert_eq!(gate.held(), 0);

        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                thread::spawn(move || {
                    for _ in 0..200 {
                        gate.enter();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        gate.leave();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "{} threads inside", most.load(Ordering::SeqCst));
        assert_eq!(gate.held(), 0);
    }
}

//! A fixed number of slots, each held by a guard value: TLS handshakes at once, answers read
//! at once, bcrypt checks at once.
//!
//! A slot taken by hand and given back by hand leaks when anything in between panics or
//! returns early, and a leaked slot is lost for the life of the process: once all of them
//! leaked, everyone waits forever. A [`Slot`] is given back when it is dropped, however its
//! holder ends (a caught panic unwinds through it). Waiting for a slot is bounded: a caller
//! that cannot get one within its own deadline is refused and fails like any other timeout;
//! with a queue limit, a caller beyond it is refused at once instead of waiting at all.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Slots shared by the threads that take them.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    /// Most callers waiting at once (`usize::MAX`: no limit).
    max_waiting: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    held: usize,
    waiting: usize,
}

/// One slot, given back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back when this is dropped"]
pub struct Slot {
    slots: Arc<Slots>,
}

/// Why no slot was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is held and the queue of waiting callers is full.
    Busy,
    /// No slot was freed before the caller's deadline.
    TimedOut,
}

impl Slots {
    /// `max` slots (at least one); any number of callers may wait.
    pub fn new(max: usize) -> Slots {
        Slots::with_queue(max, usize::MAX)
    }

    /// `max` slots (at least one); at most `max_waiting` callers wait for one, the others are
    /// refused at once.
    pub fn with_queue(max: usize, max_waiting: usize) -> Slots {
        Slots { max: max.max(1), max_waiting, state: Mutex::new(State::default()), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Two counters changed together under the lock: a panic elsewhere cannot leave them
        // half-updated, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot, waiting at most `wait` (`None`: as long as it takes) for one to be freed.
    pub fn enter(self: &Arc<Self>, wait: Option<Duration>) -> Result<Slot, Refused> {
        let mut st = self.lock();
        if st.held < self.max {
            st.held += 1;
            return Ok(Slot { slots: self.clone() });
        }
        if st.waiting >= self.max_waiting {
            return Err(Refused::Busy);
        }
        let deadline = wait.map(|w| Instant::now() + w);
        st.waiting += 1;
        let outcome = loop {
            if st.held < self.max {
                st.held += 1;
                break Ok(Slot { slots: self.clone() });
            }
            match deadline {
                None => st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(Refused::TimedOut);
                    }
                    st = self.freed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        st.waiting -= 1;
        outcome
    }

    /// Slots held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Callers waiting for a slot now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }
}

impl Drop for Slot {
    /// Wakes a waiter only if there is one: std's condvar makes a system call for every
    /// notification, and most slots (read turns at each second's burst aside) are given back
    /// with nobody waiting. A caller that starts waiting after this looks at `held` first,
    /// under the same lock, so it cannot miss the slot.
    fn drop(&mut self) {
        let mut st = self.slots.lock();
        st.held -= 1;
        let waiting = st.waiting > 0;
        drop(st);
        if waiting {
            self.slots.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn never_more_than_max_holders() {
        let slots = Arc::new(Slots::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (slots, inside, most) = (slots.clone(), inside.clone(), most.clone());
                thread::spawn(move || {
                    for _ in 0..200 {
                        let _slot = slots.enter(None).unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "{} threads inside", most.load(Ordering::SeqCst));
        assert_eq!(slots.held(), 0);
    }

    #[test]
    fn a_panic_gives_the_slot_back() {
        let slots = Arc::new(Slots::new(1));
        let s = slots.clone();
        let r = thread::spawn(move || {
            let _slot = s.enter(None).unwrap();
            panic!("inside the slot");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(slots.held(), 0);
        let _again = slots.enter(Some(Duration::ZERO)).expect("the slot is free again");
    }

    #[test]
    fn waiting_is_bounded_in_time_and_in_number() {
        let slots = Arc::new(Slots::with_queue(1, 1));
        let held = slots.enter(None).unwrap();
        let started = Instant::now();
        assert_eq!(slots.enter(Some(Duration::from_millis(50))).unwrap_err(), Refused::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(slots.waiting(), 0, "a caller that gave up no longer counts as waiting");
        // One caller waits; the next is refused at once.
        let s = slots.clone();
        let waiter = thread::spawn(move || s.enter(Some(Duration::from_secs(60))).map(|_| ()));
        while slots.waiting() == 0 {
            thread::yield_now();
        }
        assert_eq!(slots.enter(Some(Duration::from_secs(60))).unwrap_err(), Refused::Busy);
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(slots.held(), 0);
    }
}

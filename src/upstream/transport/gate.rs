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
//! ours. The turn is its client's until the answer's body has been read
//! ([`Turns::release`]), or until the client's next request.
//!
//! A turn is a [`Slot`] value, never a thread's name on a list: it is given back when the
//! client gives it back, when the connection holding it is dropped (ureq drops it on an
//! error, and a panic unwinds through it), or when the client itself is dropped (a stopped
//! poller). Waiting for a turn is bounded by the request's own timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::slots::{Refused, Slot, Slots};

/// A fixed number of turns shared by the process: answers read at once, TLS handshakes at
/// once.
pub type Gate = Slots;

/// The read turn of one client (one poller: it sends one request at a time over one
/// connection), shared by the client and its connection.
#[derive(Debug)]
pub struct Turns {
    gate: Arc<Gate>,
    held: Mutex<Option<Slot>>,
}

impl Turns {
    /// A client's handle on `gate`; it holds no turn yet.
    pub fn new(gate: Arc<Gate>) -> Turns {
        Turns { gate, held: Mutex::new(None) }
    }

    /// Takes a turn unless this client holds one already, waiting at most `wait` for it.
    pub fn take(&self, wait: Option<Duration>) -> Result<(), Refused> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(self.gate.enter(wait)?);
        }
        Ok(())
    }

    /// Gives the turn back, if this client holds one.
    pub fn release(&self) {
        let slot = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_takes_one_turn_and_gives_it_back_however_it_ends() {
        let gate = Arc::new(Gate::new(2));
        let a = Arc::new(Turns::new(gate.clone()));
        a.take(None).unwrap();
        a.take(None).unwrap();
        assert_eq!(gate.held(), 1, "taking twice takes one turn");
        a.release();
        a.release();
        assert_eq!(gate.held(), 0);

        // A client dropped while holding its turn (a stopped poller) gives it back.
        let b = Turns::new(gate.clone());
        b.take(None).unwrap();
        drop(b);
        assert_eq!(gate.held(), 0);

        // A thread that panics while its client holds the turn: the client (and its turn)
        // is dropped with the thread's stack.
        let g = gate.clone();
        let r = std::thread::spawn(move || {
            let c = Turns::new(g);
            c.take(None).unwrap();
            panic!("while reading an answer");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(gate.held(), 0);

        // With every turn taken, a client waits no longer than it was told to.
        let (c, d, e) = (Turns::new(gate.clone()), Turns::new(gate.clone()), Turns::new(gate.clone()));
        c.take(None).unwrap();
        d.take(None).unwrap();
        assert_eq!(e.take(Some(Duration::from_millis(20))), Err(Refused::TimedOut));
        c.release();
        e.take(Some(Duration::ZERO)).unwrap();
    }
}

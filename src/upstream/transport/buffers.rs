//! Read buffers lent to a connection only while it reads an answer.
//!
//! ureq's own buffers ([`LazyBuffers`](ureq::unversioned::transport::LazyBuffers)) stay with
//! their connection for its life: at a thousand pooled poller connections an 8 KiB read
//! buffer was 8 MB of RSS, and being small it took a system call per 8 KiB of every answer
//! (ten per real-time answer). A poller's connection reads for a moment once a second and
//! then waits in a long poll holding nothing worth keeping, so here the large buffers are
//! lent from one process-wide [`BufferPool`] when bytes arrive and given back as soon as
//! ureq has consumed everything read into them. Only connections in the middle of a read hold
//! one, so the few reading at the same moment share a handful of buffers, large enough that
//! an answer takes a couple of reads instead of ten. (Giving them back only before the next
//! request was tried: preempted pollers then held them through parsing and merging, and a
//! burst at 1,000 services kept a buffer per poller.)
//!
//! The same pool lends a TLS connection its receive buffer (`tls_stream.rs`): the socket is
//! read into it and rustls decrypts the records where they lie.

use std::sync::{Arc, Mutex};

use ureq::unversioned::transport::Buffers;

/// Size of a lent buffer: an average real-time answer (55 KB) in two reads.
pub const LENT: usize = 32 * 1024;

/// Lent buffers kept for the next borrower; more than this in use at once are freed on
/// return. A poller holds its two (input and, under TLS, received records) only while it reads,
/// which it does in one of the `realtime::work::SLOTS` (32) read turns: 64 buffers (2 MB);
/// the rest is room for the service-list and account clients and for pollers preempted in
/// the middle of a read.
const KEEP: usize = 160;

/// The most ureq's input buffer holds: full of unconsumed bytes ureq cannot use yet, it grows
/// once. Response heads are refused at 16 KiB, so that is defensive.
const INPUT_MAX: usize = 2 * LENT;

/// The request buffer each connection keeps: a request is one short GET.
const OUTPUT: usize = 1024;

/// Free buffers of [`LENT`] bytes, shared by every connection of the process.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A buffer of [`LENT`] bytes (contents unspecified).
    pub fn take(&self) -> Vec<u8> {
        let kept = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        kept.unwrap_or_else(|| vec![0; LENT])
    }

    /// Gives `buf` back (freed when [`KEEP`] are already waiting, or when it is not one of
    /// ours).
    pub fn give(&self, buf: Vec<u8>) {
        if buf.len() != LENT {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEEP {
            free.push(buf);
        }
    }

    /// Buffers waiting to be lent (tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Received bytes in a buffer lent from the pool only while it holds some: `buf[start..filled]`
/// is what has been received and not consumed yet. ureq's input ([`LentBuffers`]) and the TLS
/// records of a connection (`tls_stream.rs`) are both kept in one.
#[derive(Debug)]
pub struct LentWindow {
    pool: Arc<BufferPool>,
    /// Empty (no allocation) while nothing is held.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

impl LentWindow {
    /// A window that borrows from `pool`; it holds no buffer yet.
    pub fn new(pool: Arc<BufferPool>) -> LentWindow {
        LentWindow { pool, buf: Vec::new(), start: 0, filled: 0 }
    }

    /// The bytes received and not consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.filled]
    }

    /// The same, to be worked on in place (rustls decrypts there).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.filled]
    }

    /// Nothing received is left unconsumed.
    pub fn is_empty(&self) -> bool {
        self.start == self.filled
    }

    /// The first `n` bytes of [`data`](Self::data) are done with.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.filled);
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
        }
    }

    /// `n` bytes were written at the start of [`room`](Self::room).
    pub fn appended(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
    }

    /// Room to receive into: borrows a buffer if none is held; when it is full, moves the
    /// unconsumed bytes to its front, or, with none consumed, doubles it up to `max` bytes (a
    /// grown buffer is not pooled again). Empty when `max` bytes are held unconsumed.
    pub fn room(&mut self, max: usize) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = self.pool.take();
        }
        if self.filled == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            (self.start, self.filled) = (0, self.filled - self.start);
        }
        if self.filled == self.buf.len() && self.buf.len() < max {
            self.buf.resize((self.buf.len() * 2).min(max), 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Gives the buffer back if nothing unconsumed is left in it.
    pub fn give_back(&mut self) {
        if self.is_empty() && !self.buf.is_empty() {
            self.pool.give(std::mem::take(&mut self.buf));
            (self.start, self.filled) = (0, 0);
        }
    }

    /// Whether a buffer is held (tests).
    #[cfg(test)]
    pub fn holds_buffer(&self) -> bool {
        !self.buf.is_empty()
    }
}

impl Drop for LentWindow {
    /// Dropped while holding a buffer (an error in the middle of an answer, a stopped
    /// poller): the buffer goes back for the next borrower.
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.pool.give(std::mem::take(&mut self.buf));
        }
    }
}

/// A connection's buffers for ureq: its own small request buffer, and an input buffer lent
/// from the pool while there is something to read.
#[derive(Debug)]
pub struct LentBuffers {
    output: Vec<u8>,
    input: LentWindow,
    /// Whether the last consume took anything (ureq's "can use input" rule, as in its own
    /// buffers: a partial head or chunk needs more bytes before it can be used).
    progress: bool,
}

impl LentBuffers {
    /// Buffers that borrow from `pool`.
    pub fn new(pool: Arc<BufferPool>) -> LentBuffers {
        LentBuffers { output: Vec::new(), input: LentWindow::new(pool), progress: false }
    }

    /// Gives the input buffer back if nothing unread is left in it: whenever ureq has consumed
    /// all of it, and before a request goes out (a buffer borrowed for a read that brought
    /// nothing).
    pub fn give_back(&mut self) {
        self.input.give_back();
    }

    /// The request buffer, allocated on first use.
    fn request_buf(&mut self) -> &mut Vec<u8> {
        if self.output.len() < OUTPUT {
            self.output.resize(OUTPUT, 0);
        }
        &mut self.output
    }
}

impl Buffers for LentBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.request_buf()
    }

    fn input(&self) -> &[u8] {
        self.input.data()
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.input.room(INPUT_MAX)
    }

    fn input_appended(&mut self, amount: usize) {
        self.input.appended(amount);
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.input.consume(amount);
        // Everything read has been taken: the buffer goes back at once, so only connections
        // in the middle of a read hold one.
        self.give_back();
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        // Only request bodies use this; the exporter sends none. Room in the input buffer,
        // as ureq's own buffers give.
        self.request_buf();
        (self.input.room(INPUT_MAX), &mut self.output)
    }

    fn can_use_input(&self) -> bool {
        !self.input.is_empty() && self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_lent_while_unread_and_given_back_before_the_next_request() {
        let pool = Arc::new(BufferPool::default());
        let mut b = LentBuffers::new(pool.clone());
        assert!(b.input().is_empty());
        let room = b.input_append_buf();
        assert_eq!(room.len(), LENT);
        room[..5].copy_from_slice(b"HTTP/");
        b.input_appended(5);
        assert_eq!(b.input(), b"HTTP/");
        b.input_consume(3);
        assert!(b.can_use_input());
        // Unread bytes stay with the connection.
        b.give_back();
        assert_eq!(b.input(), b"P/");
        assert_eq!(pool.kept(), 0);
        b.input_consume(2);
        assert!(!b.can_use_input());
        b.give_back();
        assert_eq!(pool.kept(), 1);
        assert!(b.input().is_empty());
        // The next answer borrows it again; dropping the connection returns it.
        b.input_append_buf();
        assert_eq!(pool.kept(), 0);
        drop(b);
        assert_eq!(pool.kept(), 1);
    }

    #[test]
    fn a_full_buffer_shifts_unread_bytes_down_then_grows_for_one_long_head() {
        let pool = Arc::new(BufferPool::default());
        let mut b = LentBuffers::new(pool.clone());
        let n = b.input_append_buf().len();
        b.input_appended(n);
        b.input_consume(n - 10);
        // Ten unread bytes move to the front, leaving the rest as room.
        assert_eq!(b.input_append_buf().len(), LENT - 10);
        assert_eq!(b.input().len(), 10);
        b.input_appended(LENT - 10);
        b.input_consume(0);
        // Full with nothing consumed: one head longer than a buffer; it grows.
        assert!(b.input_append_buf().len() >= LENT);
        assert_eq!(b.input().len(), LENT);
        // A grown buffer is not kept by the pool.
        b.input_consume(LENT);
        b.give_back();
        assert_eq!(pool.kept(), 0);
    }
}

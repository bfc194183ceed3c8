//! Bookkeeping of open connections: the connection cap, eviction of idle connections and the
//! counters behind [`crate::ServerStats`].
//!
//! (Patch, not in upstream tiny_http 0.12.) Every accepted connection gets an entry holding a
//! clone of its socket, so the server can close it from outside the thread that reads it: to
//! make room under the cap, or when a response is abandoned by a panicking handler.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Counters shared by the accept loop, connection threads and [`crate::Server::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub evicted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub uri_too_long: AtomicU64,
    pub headers_too_large: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub body_too_large: AtomicU64,
    /// (patch) Requests dropped unanswered because their client had gone.
    pub dropped: AtomicU64,
    /// When a dropped request was last logged at the warning level.
    pub dropped_logged: Mutex<Option<Instant>>,
}

/// One open connection.
pub(crate) struct ConnEntry {
    id: u64,
    /// A clone of the socket, used only to shut it down.
    socket: Connection,
    /// Requests handed to the application whose response writer is still alive.
    busy: AtomicUsize,
    /// When the connection last became idle (no response in progress), as nanoseconds since
    /// the table's epoch.
    idle_since: AtomicU64,
    /// Set once the server decided to close it; it no longer counts against the cap.
    closing: AtomicBool,
    epoch: Instant,
}

impl ConnEntry {
    /// A request of this connection was handed to the application.
    pub(crate) fn begin_request(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// The response writer of a request of this connection was dropped.
    pub(crate) fn end_request(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
        }
    }

    /// Shuts the socket down in both directions: the reading thread sees end of stream and
    /// the client sees the connection end.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Whether the server closed this connection, or its client has gone (see
    /// [`Connection::peer_gone`]; only while no other thread uses the socket).
    pub(crate) fn client_gone(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.socket.peer_gone()
    }

    /// Sets the socket's receive timeout (used for the request-head deadline).
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = self.socket.set_read_timeout(t);
    }
}

/// Why a connection was not admitted.
pub(crate) enum Refusal {
    /// The cap is reached and no connection is idle.
    AtCap,
    /// The socket could not be duplicated (out of file descriptors): like a failed accept.
    Resources(std::io::Error),
}

/// Removes the entry when the connection's thread is done with it.
pub(crate) struct ConnGuard {
    table: Arc<ConnTable>,
    pub(crate) entry: Arc<ConnEntry>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.entry.id);
    }
}

/// All open connections.
pub(crate) struct ConnTable {
    max: usize,
    entries: Mutex<HashMap<u64, Arc<ConnEntry>>>,
    next_id: AtomicU64,
    epoch: Instant,
    pub(crate) counters: Arc<Counters>,
}

impl ConnTable {
    /// A table admitting at most `max` connections at once (0: no limit).
    pub(crate) fn new(max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            counters: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnEntry>>> {
        // Entries are plain data; a panic elsewhere cannot leave the map inconsistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (patch) Closes every open connection (server shutdown): threads reading them see the
    /// end of the stream, and a response being written fails.
    pub(crate) fn close_all(&self) {
        for entry in self.lock().values() {
            entry.close();
        }
    }

    /// Open connections the server has not decided to close.
    pub(crate) fn open(&self) -> usize {
        self.lock().values().filter(|e| !e.closing.load(Ordering::SeqCst)).count()
    }

    /// Registers a newly accepted connection. At the cap, the connection idle the longest
    /// (no response in progress: a keep-alive connection waiting for its next request, or a
    /// client still sending its request head) is closed to make room; when every connection
    /// is busy the new one is refused (the caller closes it).
    pub(crate) fn admit(self: &Arc<Self>, socket: &Connection) -> Result<ConnGuard, Refusal> {
        let clone = socket.try_clone().map_err(Refusal::Resources)?;
        let mut map = self.lock();
        if self.max > 0 {
            let live = map.values().filter(|e| !e.closing.load(Ordering::SeqCst)).count();
            if live >= self.max {
                let victim = map
                    .values()
                    .filter(|e| !e.closing.load(Ordering::SeqCst) && e.busy.load(Ordering::SeqCst) == 0)
                    .min_by_key(|e| e.idle_since.load(Ordering::SeqCst))
                    .cloned();
                match victim {
                    Some(v) => {
                        v.close();
                        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(Refusal::AtCap);
                    }
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(ConnEntry {
            id,
            socket: clone,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.epoch.elapsed().as_nanos() as u64),
            closing: AtomicBool::new(false),
            epoch: self.epoch,
        });
        map.insert(id, entry.clone());
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnGuard { table: self.clone(), entry })
    }
}

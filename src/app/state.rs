//! `-state-file`: read once at start, written every `-state-interval` and once more at
//! shutdown, so a restart or a crash loses no second of data the real-time API still holds.
//!
//! Reading: a missing file is a fresh start; a file that cannot be read, is truncated,
//! damaged or foreign is set aside as `<path>.bad` with one log line saying why, and the
//! exporter starts fresh: it never refuses to start because of its state. What was read is
//! held here ("pending") until the service is selected and its stream's poller starts
//! (`apply`); services no longer selected, streams no longer exported and products no longer
//! entitled are dropped (`retain`).
//!
//! Writing runs on its own thread: a temporary file in the same directory (mode 0600),
//! fsync, rename over the old file, fsync of the directory, so a reader only ever sees a whole
//! file. Each stream table's read lock is held only to copy it (see `SnapshotWriter::service`):
//! neither ingest nor a scrape waits on the disk. A failing write is logged once per state
//! change, counted in `fastly_exporter_state_writes_total{result="error"}`, and retried at the
//! next interval; the previous file stays intact.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::catalog::Stream;
use crate::config::Config;
use crate::store::snapshot::{self, Identity, RestoredStream, SnapshotWriter};
use crate::store::{CatchingUp, Grouping, RestoreContext, Service, Store};
use crate::upstream::realtime::parse::AGGREGATE_DC;
use crate::util::clock::SharedClock;
use crate::util::statelog::StateLog;

/// Whose state the file holds: a file written with another namespace, subsystem or row
/// layout is foreign (its series would be other series).
pub fn identity(cfg: &Config) -> Identity {
    // Rows keyed by POP, by datacenter group or the one aggregate row are different series: a
    // file of per-POP rows is not restored into per-group rows or the reverse. (Datacenter
    // filters are not part of it: rows of POPs filtered out now are dropped at restore.)
    let rows = if cfg.aggregate_only {
        "aggregate"
    } else if cfg.datacenter_group {
        "group"
    } else {
        "datacenter"
    };
    Identity { namespace: cfg.namespace.clone(), subsystem: cfg.subsystem.clone(), rows: rows.to_string() }
}

/// A restored stream not applied yet, holding readiness until it is applied and has caught
/// up, or is dropped.
struct Pending {
    stream: RestoredStream,
    ready: CatchingUp,
}

/// What the signal thread and the writer thread say to each other about the last write.
#[derive(Default)]
struct Final {
    asked: bool,
    done: bool,
}

/// The state file of a running exporter.
pub struct StateFile {
    path: PathBuf,
    identity: Identity,
    store: Arc<Store>,
    pending: Mutex<HashMap<(String, Stream), Pending>>,
    /// The unix second this process started: a restored stream has caught up once its next
    /// `ts` reaches it, i.e. once it holds every second the previous process could have
    /// served.
    started: u64,
    last: Mutex<Final>,
    wake: Condvar,
    /// The clock of the write interval and of the file's stamps.
    clock: SharedClock,
}

impl fmt::Debug for StateFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl StateFile {
    /// Reads `path` (logging what happened, in one line) and keeps what it restored pending.
    pub fn open(path: &Path, identity: Identity, store: Arc<Store>, clock: SharedClock) -> StateFile {
        let started = clock.unix_secs();
        let state = StateFile {
            path: path.to_path_buf(),
            identity,
            store,
            pending: Mutex::new(HashMap::new()),
            started,
            last: Mutex::new(Final::default()),
            wake: Condvar::new(),
            clock,
        };
        state.load();
        state
    }

    fn load(&self) {
        let shown = self.path.display();
        let t = Instant::now();
        let file = match File::open(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::info!("state file {shown}: none yet; starting fresh");
                return;
            }
            Err(e) => return self.set_aside(&format!("cannot open it: {e}")),
            Ok(f) => f,
        };
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            log::warn!("state file {shown}: is a directory; starting fresh (and writing it will fail)");
            return;
        }
        let restored = match snapshot::read(BufReader::with_capacity(256 << 10, file), &self.identity) {
            Ok(r) => r,
            Err(e) => return self.set_aside(&e.to_string()),
        };
        let services: std::collections::HashSet<&str> = restored.streams.keys().map(|(id, _)| id.as_str()).collect();
        let n_services = services.len();
        let age = self.clock.unix_secs().saturating_sub(restored.written_at);
        let n = restored.streams.len();
        let mut pending = self.pending();
        for (key, stream) in restored.streams {
            pending.insert(key, Pending { stream, ready: self.store.health.catching_up() });
        }
        drop(pending);
        let dropped = match restored.dropped_slots {
            0 => String::new(),
            d => format!("; {d} series of an older catalog dropped"),
        };
        log::info!(
            "state file {shown}: restored {} of {} written {age} s ago, in {} ms; each resumes from its saved \
             position once its service is selected{dropped}",
            count(n, "stream"),
            count(n_services, "service"),
            t.elapsed().as_millis()
        );
    }

    /// Moves an unusable file to `<path>.bad` and says why, in one line.
    fn set_aside(&self, why: &str) {
        let bad = bad_path(&self.path);
        let shown = self.path.display();
        match fs::rename(&self.path, &bad) {
            Ok(()) => log::warn!("state file {shown}: {why}; set aside as {}; starting fresh", bad.display()),
            Err(e) => log::warn!("state file {shown}: {why}; could not set it aside ({e}); starting fresh"),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<(String, Stream), Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the restored streams `keep` rejects (service not selected, stream not exported,
    /// product not entitled); returns how many were dropped.
    pub fn retain(&self, keep: impl Fn(&str, Stream) -> bool) -> usize {
        let mut pending = self.pending();
        let before = pending.len();
        pending.retain(|(id, stream), _| keep(id, *stream));
        let dropped = before - pending.len();
        if dropped > 0 {
            log::info!(
                "state file: {} dropped (service no longer selected, or stream not polled)",
                count(dropped, "restored stream")
            );
        }
        dropped
    }

    /// Puts the restored rows and position of `svc`'s `stream`, if any, into its table; call
    /// before the stream's poller starts (it starts from the table's position).
    pub fn apply(&self, svc: &Service, stream: Stream) {
        let mut pending = self.pending();
        let Some(p) = pending.remove(&(svc.id.to_string(), stream)) else {
            return;
        };
        let ctx = RestoreContext {
            names: self.store.registry.names(),
            entity_label: stream.entity_label(),
            slots: snapshot::slot_keys(stream).len(),
        };
        let mut rows = p.stream.rows;
        let placement = &self.store.placement;
        if placement.grouping() == Grouping::Datacenter {
            // A POP filtered out since the file was written is not exported any more.
            rows.retain(|r| &*r.dc == AGGREGATE_DC || placement.permits(&r.dc));
        }
        svc.table_mut(stream).restore(&ctx, rows, p.stream.next_ts, Some((self.started, p.ready)));
        // The status page shows the stream as `catching up` until the poller reports it caught
        // up (the status cell is a leaf lock: taken after the table's is released).
        let hidden = svc.table(stream).hidden();
        svc.status(stream).set_catching_up(hidden, self.clock.unix_f64());
    }

    /// Starts the writer thread: a write every `interval` (on the state file's clock), and
    /// the last one when asked by [`StateFile::write_last`], after which the thread ends.
    pub fn spawn_writer(self: &Arc<Self>, interval: Duration) -> io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new().name("state-writer".into()).spawn(move || me.writer(interval))
    }

    fn writer(&self, interval: Duration) {
        let mut log = StateLog::default();
        let subject = format!("state file {}: write", self.path.display());
        let mut next = self.clock.now() + interval;
        loop {
            let last = {
                let mut g = self.last.lock().unwrap_or_else(|p| p.into_inner());
                while !g.asked && self.clock.now() < next {
                    let wait = self.clock.wait_for(next);
                    g = self.wake.wait_timeout(g, wait).unwrap_or_else(|p| p.into_inner()).0;
                }
                g.asked
            };
            let t = Instant::now();
            let result = self.write();
            let took = t.elapsed();
            self.store.counters.count_state_write(result.is_ok());
            match &result {
                Ok(w) => {
                    log.ok(&subject);
                    let line = format!(
                        "state file {}: wrote {}, {} bytes, in {} ms",
                        self.path.display(),
                        count(w.streams, "stream"),
                        w.bytes,
                        took.as_millis()
                    );
                    if last {
                        log::info!("{line} (at shutdown)");
                    } else {
                        log::debug!("{line}");
                    }
                }
                Err(e) => log.fail(&subject, &format!("{e}; keeping the previous file")),
            }
            if last {
                self.last.lock().unwrap_or_else(|p| p.into_inner()).done = true;
                self.wake.notify_all();
                return;
            }
            next = self.clock.now() + interval;
        }
    }

    /// Asks the writer for the last write (after the store was frozen) and waits for it up to
    /// `limit`; returns whether it finished. A write that does not finish in time leaves the
    /// previous file in place (the rename is atomic), so exiting anyway loses only the seconds
    /// since that file, which the next start fetches again.
    pub fn write_last(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut g = self.last.lock().unwrap_or_else(|p| p.into_inner());
        g.asked = true;
        self.wake.notify_all();
        while !g.done {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "state file {}: the last write did not finish within {} s; exiting with the previous file",
                    self.path.display(),
                    limit.as_secs()
                );
                return false;
            }
            g = self.wake.wait_timeout(g, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// One atomic write of everything: pending streams first, then every table, so a stream
    /// applied while the file is written appears twice and its later (table) copy wins.
    pub fn write(&self) -> Result<Written, WriteError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let result = self.write_to(&dir, &tmp);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_to(&self, dir: &Path, tmp: &Path) -> Result<Written, WriteError> {
        let step = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| WriteError { what, path, source }
        };
        // A temporary file left by a crash mid-write: replace it.
        let _ = fs::remove_file(tmp);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(step("cannot create", tmp))?;
        let out = BufWriter::with_capacity(256 << 10, file);
        let mut w =
            SnapshotWriter::new(out, &self.identity, self.clock.unix_secs()).map_err(step("cannot write", tmp))?;
        {
            let pending = self.pending();
            for ((id, stream), p) in pending.iter() {
                w.restored(id, *stream, &p.stream).map_err(step("cannot write", tmp))?;
            }
        }
        for svc in self.store.registry.snapshot() {
            w.service(&svc).map_err(step("cannot write", tmp))?;
        }
        let streams = w.streams;
        let out = w.finish().map_err(step("cannot write", tmp))?;
        let file = out.into_inner().map_err(|e| e.into_error()).map_err(step("cannot write", tmp))?;
        file.sync_all().map_err(step("cannot sync", tmp))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        fs::rename(tmp, &self.path).map_err(step("cannot rename it over", &self.path))?;
        // The rename is durable only once the directory is; some file systems cannot sync a
        // directory (EINVAL), which changes nothing about the file itself.
        if let Ok(d) = File::open(dir)
            && let Err(e) = d.sync_all()
            && e.kind() != io::ErrorKind::InvalidInput
        {
            return Err(WriteError { what: "cannot sync the directory", path: dir.to_path_buf(), source: e });
        }
        Ok(Written { streams, bytes })
    }
}

/// What one write wrote.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// Streams in the file.
    pub streams: usize,
    /// Its size.
    pub bytes: u64,
}

/// A failed write: which step, on which path, and the system's error.
#[derive(Debug)]
pub struct WriteError {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `1 stream`, `2 streams`.
fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// `<path>.bad`.
fn bad_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".bad");
    PathBuf::from(s)
}

//! The registry: every exported service and its per-stream tables.
//!
//! Locking is two-level so that nothing global is held while formatting: the outer map lock is
//! taken only to add/remove services or to clone the list of `Arc<Service>`; each stream table
//! has its own lock, taken by one poller to merge a batch and by scrapes to read a service's
//! rows for one family at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::catalog::Stream;
use crate::util::exposition::push_label;

use super::intern::Interner;
use super::rows::StreamTable;
use super::status::StatusCell;

/// Outcome classes of a real-time poll, the `result` label of `realtime_api_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollResult {
    /// HTTP 200 with data.
    Success = 0,
    /// HTTP 200 with "No data available".
    NoData = 1,
    /// Transport, decode, or auth (401/403) failure.
    Error = 2,
    /// Any other HTTP status.
    Unknown = 3,
}

impl PollResult {
    /// All results in label order.
    pub const ALL: [PollResult; 4] = [PollResult::Success, PollResult::NoData, PollResult::Error, PollResult::Unknown];

    /// The label value, exactly as the Go exporter spells it.
    pub fn label(self) -> &'static str {
        match self {
            PollResult::Success => "success",
            PollResult::NoData => "no data",
            PollResult::Error => "error",
            PollResult::Unknown => "unknown",
        }
    }
}

/// Name and version of a service as the service list reported them, with the label text
/// pre-rendered for the exposition.
#[derive(Debug)]
pub struct ServiceMeta {
    /// Service name (the ID when the list did not include the service).
    pub name: String,
    /// Active version, or `unknown`.
    pub version: String,
    /// `service_id="…",service_name="…"`, escaped.
    pub labels: String,
}

impl ServiceMeta {
    fn new(id: &str, name: &str, version: &str) -> ServiceMeta {
        let mut labels = String::with_capacity(id.len() + name.len() + 32);
        push_label(&mut labels, "service_id", id);
        labels.push(',');
        push_label(&mut labels, "service_name", name);
        ServiceMeta { name: name.to_string(), version: version.to_string(), labels }
    }
}

/// One exported service.
#[derive(Debug)]
pub struct Service {
    /// Fastly service ID.
    pub id: Arc<str>,
    meta: RwLock<Arc<ServiceMeta>>,
    tables: [RwLock<StreamTable>; 3],
    results: [AtomicU64; 4],
    last_success: AtomicU64,
    status: [StatusCell; 3],
}

impl Service {
    fn new(id: &str, name: &str, version: &str) -> Service {
        Service {
            id: Arc::from(id),
            meta: RwLock::new(Arc::new(ServiceMeta::new(id, name, version))),
            tables: Default::default(),
            results: Default::default(),
            last_success: AtomicU64::new(0),
            status: Default::default(),
        }
    }

    /// Current name/version; cheap to clone and stable for the duration of a scrape.
    pub fn meta(&self) -> Arc<ServiceMeta> {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Updates name/version when the service list says they changed. Because row labels do
    /// not contain the service name, a rename touches nothing else: the old label set simply
    /// stops being rendered.
    pub fn set_meta(&self, name: &str, version: &str) -> bool {
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        if meta.name == name && meta.version == version {
            return false;
        }
        *meta = Arc::new(ServiceMeta::new(&self.id, name, version));
        true
    }

    /// Read access to one stream's rows (scrapes).
    pub fn table(&self, stream: Stream) -> RwLockReadGuard<'_, StreamTable> {
        self.tables[stream.index()].read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access to one stream's rows (the stream's poller, or removal).
    pub fn table_mut(&self, stream: Stream) -> RwLockWriteGuard<'_, StreamTable> {
        self.tables[stream.index()].write().unwrap_or_else(|p| p.into_inner())
    }

    /// What one stream's poller is doing (absent while the stream is not polled).
    pub fn status(&self, stream: Stream) -> &StatusCell {
        &self.status[stream.index()]
    }

    /// Counts one real-time poll outcome.
    pub fn count_result(&self, r: PollResult) {
        self.results[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many polls ended with `r`.
    pub fn result_count(&self, r: PollResult) -> u64 {
        self.results[r as usize].load(Ordering::Relaxed)
    }

    /// Records a parsed HTTP 200 answer at `unix_secs`.
    pub fn mark_success(&self, unix_secs: u64) {
        self.last_success.store(unix_secs, Ordering::Relaxed);
    }

    /// Unix time of the last parsed HTTP 200 answer of any stream, 0 when none yet.
    pub fn last_success(&self) -> u64 {
        self.last_success.load(Ordering::Relaxed)
    }
}

/// All exported services, keyed and ordered by ID.
#[derive(Debug, Default)]
pub struct Registry {
    services: RwLock<BTreeMap<Arc<str>, Arc<Service>>>,
    names: Arc<Interner>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The services in ID order; the list is a snapshot, the services themselves are live.
    pub fn snapshot(&self) -> Vec<Arc<Service>> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// One service by ID.
    pub fn get(&self, id: &str) -> Option<Arc<Service>> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no service is exported.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a service or updates its name/version; returns it and whether it was new.
    pub fn upsert(&self, id: &str, name: &str, version: &str) -> (Arc<Service>, bool) {
        if let Some(s) = self.get(id) {
            s.set_meta(name, version);
            return (s, false);
        }
        let mut map = self.services.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(id) {
            s.set_meta(name, version);
            return (s.clone(), false);
        }
        let s = Arc::new(Service::new(id, name, version));
        map.insert(s.id.clone(), s.clone());
        (s, true)
    }

    /// The interner of row names, shared by every table.
    pub fn names(&self) -> &Arc<Interner> {
        &self.names
    }

    /// Drops origin and domain rows with no record since `cutoff` (unix seconds), then the
    /// names no row uses any more; returns the rows dropped. Real-time (datacenter) rows are
    /// kept: datacenters do not come and go.
    pub fn expire_entities(&self, cutoff: u32) -> usize {
        let mut dropped = 0;
        for svc in self.snapshot() {
            for stream in [Stream::Origin, Stream::Domain] {
                dropped += svc.table_mut(stream).expire(cutoff);
            }
        }
        self.names.sweep();
        dropped
    }

    /// Removes every service whose ID `keep` rejects and returns them. Their series vanish
    /// from the next scrape: the Go exporter keeps them forever, we deliberately do not.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<Arc<Service>> {
        let mut map = self.services.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<Arc<str>> = map.keys().filter(|id| !keep(id)).cloned().collect();
        gone.iter().filter_map(|id| map.remove(id)).collect()
    }
}

//! The series census: what the stream tables cost the scraper in the mode in use, and what
//! the same data would cost per POP, per group or as the aggregate, so an operator can see
//! what `-datacenter-group`, the datacenter filters or `-aggregate-only` save
//! (`fastly_exporter_series`, `fastly_exporter_series_by_mode`, `fastly_exporter_datacenters`).
//!
//! Taken by the main thread once a second. A table's footprint is recomputed only when its
//! rows changed (its version) or POPs changed group; otherwise the last one is reused, so a
//! pass costs one read lock per table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::{Selection, Stream};
use crate::store::{Census, Footprint, Grouping, Keyed, Store};

/// How often the census is taken.
const EVERY: Duration = Duration::from_secs(1);

/// A table's last footprint and what it was computed from.
struct Cached {
    version: u64,
    generation: u64,
    footprint: Footprint,
}

/// The census state of the main thread.
pub struct Tally {
    keyed: Keyed,
    /// Series of one row per stream, for the exported families.
    per_row: [u64; 3],
    cache: HashMap<(Arc<str>, Stream), Cached>,
    next: Instant,
}

impl Tally {
    /// A census for rows keyed as `keyed`, of the families `selection` exports.
    pub fn new(keyed: Keyed, selection: &Selection, now: Instant) -> Tally {
        let per_row = Stream::ALL.map(|s| selection.series_per_row(s) as u64);
        Tally { keyed, per_row, cache: HashMap::new(), next: now }
    }

    /// How the configuration keys stream rows.
    pub fn keyed(aggregate_only: bool, grouping: Grouping) -> Keyed {
        match (aggregate_only, grouping) {
            (true, _) => Keyed::Aggregate,
            (false, Grouping::Datacenter) => Keyed::Datacenter,
            (false, Grouping::Group) => Keyed::Group,
        }
    }

    /// Takes the census when due at `now` (the main loop's clock) and publishes it in the store's counters.
    pub fn tick(&mut self, store: &Store, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + EVERY;
        let routes = store.placement.routes();
        let group_of = |code: &str| routes.group_of(code);
        // Per POP and per group cannot be derived from aggregate rows.
        let derivable = match self.keyed {
            Keyed::Aggregate => [None, None, Some(0)],
            _ => [Some(0); 3],
        };
        let mut census = Census { by_mode: [derivable; 3], ..Census::default() };
        let mut live: Vec<(Arc<str>, Stream)> = Vec::new();
        for svc in store.registry.snapshot() {
            for stream in Stream::ALL {
                let key = (svc.id.clone(), stream);
                let table = svc.table(stream);
                let fresh = |c: &Cached| c.version == table.version() && c.generation == routes.generation();
                let footprint = match self.cache.get(&key) {
                    Some(c) if fresh(c) => c.footprint,
                    _ => {
                        let footprint = table.footprint(self.keyed, &group_of);
                        let cached = Cached { version: table.version(), generation: routes.generation(), footprint };
                        self.cache.insert(key.clone(), cached);
                        footprint
                    }
                };
                drop(table);
                live.push(key);
                let per_row = self.per_row[stream.index()];
                let rows = [footprint.datacenter, footprint.group, Some(footprint.aggregate)];
                for (total, n) in census.by_mode[stream.index()].iter_mut().zip(rows) {
                    if let (Some(t), Some(n)) = (total.as_mut(), n) {
                        *t += n as u64 * per_row;
                    }
                }
                let exported = match self.keyed {
                    Keyed::Datacenter => footprint.datacenter,
                    Keyed::Group => footprint.group,
                    Keyed::Aggregate => Some(footprint.aggregate),
                };
                census.series[stream.index()] += exported.unwrap_or(0) as u64 * per_row;
            }
        }
        let keep: std::collections::HashSet<&(Arc<str>, Stream)> = live.iter().collect();
        self.cache.retain(|k, _| keep.contains(k));
        if store.placement.is_active() && self.keyed != Keyed::Aggregate {
            census.pops = Some(store.placement.states());
        }
        store.counters.set_census(census);
    }
}

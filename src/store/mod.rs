//! Layer 2: the state both sides share. Pollers and the main thread write it, HTTP workers
//! read it; nothing here does I/O.
//!
//! [`Store`] holds it all: the [`Registry`] (service → stream tables → rows of dense values,
//! laid out by the catalog), the account snapshot (swapped whole), readiness and the
//! exporter's own counters. Parsed answers arrive as a [`Batch`] and are merged whole. Each
//! (service, stream) also has a [`StatusCell`]: what its poller last did, for the status page.
//! [`snapshot`] turns the tables into the state file's bytes and back.

mod account;
mod batch;
mod counters;
mod health;
mod intern;
mod placement;
mod registry;
mod rows;
pub mod snapshot;
mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

pub use account::{AccountSnapshot, BuildInfo, Certificate, Datacenter, Dictionary, TokenInfo};
#[cfg(test)]
pub use batch::Skipped;
pub use batch::{Batch, Invalid};
pub use counters::{Census, Counters, Endpoint};
pub use health::{CatchingUp, Health, ListRefresh};
pub use intern::Interner;
pub use placement::{Grouping, Placement, Places, group_label};
pub use registry::{PollResult, Registry, Service, ServiceMeta};
pub use rows::{Footprint, Keyed, MergeContext, RestoreContext, Scratch, StreamTable};
pub use status::{PollError, StreamState, StreamStatus};

/// Everything the HTTP side reads, behind one handle.
#[derive(Debug)]
pub struct Store {
    /// Services and their rows.
    pub registry: Registry,
    account: RwLock<Arc<AccountSnapshot>>,
    /// Readiness.
    pub health: Health,
    /// The exporter's own counters (also held by the API clients and pollers).
    pub counters: Arc<Counters>,
    /// The datacenter filters and grouping mode (also held by the pollers): which row each
    /// POP's data goes to. `placement.grouping()` is how stream rows are keyed.
    pub placement: Arc<Placement>,
    /// Set at shutdown: pollers merge nothing more, so the last state file written holds
    /// everything any scrape could have seen.
    frozen: Arc<AtomicBool>,
}

impl Store {
    /// An empty store whose account snapshot starts as `account` (the build is known at once).
    pub fn new(account: AccountSnapshot, counters: Arc<Counters>, placement: Placement) -> Store {
        Store {
            registry: Registry::new(),
            account: RwLock::new(Arc::new(account)),
            health: Health::default(),
            counters,
            placement: Arc::new(placement),
            frozen: Arc::default(),
        }
    }

    /// Stops ingest for good (shutdown): every poller checks this under its table's write
    /// lock before merging, so once this returns no value changes any more.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The flag [`Store::freeze`] sets, for the pollers.
    pub fn frozen_flag(&self) -> Arc<AtomicBool> {
        self.frozen.clone()
    }

    /// The current account snapshot; a scrape keeps the one it started with.
    pub fn account(&self) -> Arc<AccountSnapshot> {
        self.account.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the account snapshot whole.
    pub fn publish_account(&self, snapshot: AccountSnapshot) {
        *self.account.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }
}

#[cfg(test)]
mod tests;

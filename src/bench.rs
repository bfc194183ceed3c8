//! The one deliberate seam for `benches/scale.rs`: the in-process steps of ingest and render,
//! so the benchmark can time parse, merge and render without HTTP in the way. Not part of the
//! product's interface (hidden from the docs); the tests go through the binary instead.

pub use crate::catalog::{Selection, Stream, catalog};
pub use crate::serve::{Plan, Scrape};
pub use crate::store::snapshot::{Identity, RestoredRow, SnapshotWriter, read as read_snapshot, slot_keys};
pub use crate::store::{
    AccountSnapshot, Batch, Interner, MergeContext, Registry, RestoreContext, Scratch, StreamTable,
};
pub use crate::upstream::realtime::parse::{Mode, parse_response, parse_serde};
pub use crate::upstream::realtime::scan::parse_fast;
pub use crate::util::filter::Filter;

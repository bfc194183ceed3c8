//! The metric table: what pollers write and scrapes read.
//!
//! `Registry` → `Service` → one `StreamTable` per stream → `Row`s of dense values laid out by
//! the catalog. Parsed responses arrive as a [`Batch`] and are merged whole.

mod account;
mod batch;
mod intern;
mod registry;
mod rows;

pub use account::{AccountSnapshot, BuildInfo, Certificate, Datacenter, Dictionary, TokenInfo};
pub use batch::{Batch, Entry, Invalid, RecordView, Skipped};
pub use intern::Interner;
pub use registry::{PollResult, Registry, Service, ServiceMeta};
pub use rows::{MergeContext, Row, Scratch, StreamTable};

#[cfg(test)]
mod tests;

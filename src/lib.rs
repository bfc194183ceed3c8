//! fastly-exporter: a Prometheus exporter for the Fastly Real-time Analytics API.
//!
//! Data flows one way: api.fastly.com / rt.fastly.com → `upstream` (parse) → `store` (the
//! metric table) → `serve` (render). See `ARCHITECTURE.md` for the layers, the code map and
//! the invariants.
//!
//! The library exists for the binary: its public interface is what `main.rs` needs (`config`,
//! `app::run`), the catalog (read by the docs generator and the tests), and a hidden seam for
//! the benchmark. Everything else is crate-private, so the dead-code lint sees all of it.

pub mod app;
#[doc(hidden)]
pub mod bench;
pub mod catalog;
pub mod config;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod upstream;
pub(crate) mod util;
pub(crate) mod web;

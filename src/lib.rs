//! fastly-exporter: a Prometheus exporter for the Fastly Real-time Analytics API.
//!
//! Data flows one way: api.fastly.com / rt.fastly.com → parse → metric table → render.
//! See `ARCHITECTURE.md` for the map of modules and threads.

pub mod app;
pub mod catalog;
pub mod config;
pub mod serve;
pub mod store;
pub mod upstream;
pub mod util;
pub mod web;

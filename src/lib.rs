//! fastly-exporter: a Prometheus exporter for the Fastly Real-time Analytics API.
//!
//! Data flows one way: api.fastly.com / rt.fastly.com → parse → metric table → render.
//! See `ARCHITECTURE.md` for the map of modules and threads.

pub mod api;
pub mod app;
pub mod catalog;
pub mod config;
pub mod exposition;
pub mod filter;
pub mod http;
pub mod panics;
pub mod realtime;
pub mod rlimit;
pub mod selfmetrics;
pub mod statelog;
pub mod table;
pub mod web;

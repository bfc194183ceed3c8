//! The end-to-end suite, one test binary: each file of `tests/` is a module here (named for
//! the file, so `cargo test --test e2e state_file::` runs one of them, and nextest's filters
//! use `test(/^state_file::/)`). One crate compiles `support` once and links once, where a
//! binary per file compiled and linked it 28 times (about 70 s of a clean CI build's CPU).
//! Under nextest every test runs in its own process, as before; under plain `cargo test`
//! they share one, so a test never changes process-wide state another could see beyond
//! raising its own open-file limit.

mod support;

mod account_metadata;
mod auth_flood;
mod bad_fields;
mod cli;
mod datacenter_groups;
mod discovery;
mod docs;
mod examples;
mod faults;
mod guards;
mod http_endpoints;
mod http_hostile;
mod inspectors;
mod label_churn;
mod large_unit;
mod layering;
mod lifecycle;
mod polling;
mod prometheus_e2e;
mod realtime_fixture;
mod robustness;
mod serving_floods;
mod soak;
mod state_file;
mod status_page;
mod upstream_trust;
mod web_config;
mod web_listener;

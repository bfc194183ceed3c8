//! Layer 3, the output side: the HTTP server scrapers talk to. It only reads the store.
//!
//! [`start`] is the one entry point the application uses: it binds the listener, builds the
//! render plan from the selection and starts a bounded pool of workers. Everything else here
//! is internal: routing, the streaming renderer, chunked framing, the exporter's own metrics,
//! the status page (`/`, `/status.json`).

mod render;
mod routes;
mod selfmetrics;
mod server;
mod status;
mod stream;

pub use render::{Plan, Scrape};
pub use server::{ServeError, ServeOptions, Server, start};

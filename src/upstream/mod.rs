//! Layer 3, the input side: everything that talks to the Fastly APIs and turns answers into
//! the store's values. `transport` is the HTTP client both APIs share, `api` the
//! api.fastly.com endpoints, `realtime` the rt.fastly.com pollers.

pub mod api;
pub mod realtime;
pub mod transport;

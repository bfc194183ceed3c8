//! The HTTP client of both Fastly APIs: ureq with one shared TLS configuration and DNS cache,
//! the token confined to the configured origins, typed errors.

pub mod buffers;
pub mod client;
pub mod connect;
pub mod gate;
pub mod resolver;
pub mod tls;
pub mod tls_stream;

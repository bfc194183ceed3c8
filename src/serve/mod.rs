//! The HTTP side: a bounded pool of tiny_http workers serving `/metrics`, `/sd` and `/`.

pub mod render;
pub mod routes;
pub mod selfmetrics;
pub mod server;
pub mod stream;

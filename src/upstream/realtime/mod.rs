//! rt.fastly.com: one poller thread per (service, stream), the tolerant parser, backoff,
//! the shared parse buffers, and the accounting of invalid values.

pub mod backoff;
pub mod invalid;
pub mod parse;
pub mod poller;
pub mod work;

#[cfg(test)]
mod tests;

//! rt.fastly.com: one poller thread per (service, stream), the tolerant parser, backoff,
//! the shared parse buffers, and the accounting of invalid values and lost seconds.

pub mod backoff;
pub mod invalid;
pub mod lost;
pub mod parse;
pub mod poller;
pub mod work;

#[cfg(test)]
mod tests;

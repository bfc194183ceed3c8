//! rt.fastly.com: one poller thread per (service, stream), the tolerant parser, backoff,
//! the shared parse buffers, the accounting of invalid values and lost seconds, and what each
//! poller reports to the status page.

pub mod backoff;
pub mod invalid;
pub mod lost;
pub mod parse;
pub mod poller;
pub mod scan;
pub mod status;
pub mod work;

#[cfg(test)]
mod tests;

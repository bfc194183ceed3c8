//! rt.fastly.com: parsing responses, the per-(service, stream) poller threads, and backoff.

pub mod backoff;
pub mod invalid;
pub mod parse;
pub mod poller;
pub mod work;

#[cfg(test)]
mod tests;

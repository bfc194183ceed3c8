//! rt.fastly.com: parsing responses, the per-(service, stream) poller threads, and backoff.

pub mod backoff;
pub mod parse;
pub mod poller;

#[cfg(test)]
mod tests;

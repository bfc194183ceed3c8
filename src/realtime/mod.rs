//! rt.fastly.com: parsing responses, the per-(service, stream) poller threads, and backoff.

pub mod parse;

#[cfg(test)]
mod tests;

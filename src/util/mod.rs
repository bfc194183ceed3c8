//! Layer 0: small, self-contained helpers with no knowledge of Fastly or of the metric
//! table. Nothing here imports another module of the crate.

pub mod alloc;
pub mod civil;
pub mod clock;
pub mod duration;
pub mod errors;
pub mod exposition;
#[cfg(debug_assertions)]
pub mod faults;
pub mod filter;
mod number;
pub mod panics;
pub mod rlimit;
pub mod slots;
pub mod stack;
pub mod statelog;
pub mod thread_cache;
pub mod threads;
pub mod url;

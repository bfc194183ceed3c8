//! api.fastly.com: the HTTP client shared with rt.fastly.com, the paginated service list,
//! sharding and service selection.

pub mod account;
pub mod client;
pub mod resolver;
pub mod select;
pub mod services;
pub mod shard;
pub mod timefmt;
pub mod tls;

//! api.fastly.com: the paginated service list, service selection and sharding, and the
//! account metadata endpoints.

pub mod account;
pub mod select;
pub mod services;
pub mod shard;
pub mod timefmt;

//! A DNS cache in front of ureq's resolver.
//!
//! ureq resolves the host on every request, even when it then reuses a pooled connection,
//! and with a timeout configured it does so on a freshly spawned thread. At a thousand
//! pollers that is a thousand thread spawns (and stack mmaps) a second, most of the exporter's
//! kernel time. One shared cache with a short TTL makes a poll cost no resolution at all; a
//! miss still goes through ureq's own resolver and its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a resolved address is reused. Fastly's API hosts change rarely; a minute keeps a
/// failover visible quickly without costing anything measurable.
const TTL: Duration = Duration::from_secs(60);

/// Resolver shared by every client of the process.
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    /// The process-wide instance.
    pub fn shared() -> Arc<CachingResolver> {
        static SHARED: OnceLock<Arc<CachingResolver>> = OnceLock::new();
        SHARED.get_or_init(Arc::default).clone()
    }
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, Error> {
        let key = match (uri.scheme_str(), uri.authority()) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            _ => return self.inner.resolve(uri, config, timeout),
        };
        // One lock for lookup and fill: when the entry expires, one poller resolves and the
        // others wait for its answer instead of all resolving at once.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addrs)) = cache.get(&key)
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// Lets an `Arc` of the shared resolver be handed to each agent.
#[derive(Debug)]
pub struct SharedResolver(pub Arc<CachingResolver>);

impl Resolver for SharedResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, Error> {
        self.0.resolve(uri, config, timeout)
    }
}

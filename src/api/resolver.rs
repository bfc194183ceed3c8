//! A DNS cache in front of ureq's resolver.
//!
//! ureq resolves the host on every request, even when it then reuses a pooled connection,
//! and with a timeout configured it does so on a freshly spawned thread. At a thousand
//! pollers that is a thousand thread spawns (and stack mmaps) a second, most of the exporter's
//! kernel time. One shared cache with a short TTL makes a poll cost no resolution at all; a
//! miss still goes through ureq's own resolver and its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
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
    cache: RwLock<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    /// Serialises misses: when an entry expires, one poller resolves and the others wait
    /// for its answer instead of all resolving at once.
    miss: Mutex<()>,
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
        // Hits (every poll) only take the read lock, so a thousand pollers never queue here.
        let fresh = |cache: &HashMap<String, (Instant, ResolvedSocketAddrs)>| {
            cache.get(&key).filter(|(at, _)| at.elapsed() < TTL).map(|(_, a)| a.clone())
        };
        if let Some(addrs) = fresh(&self.cache.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(addrs);
        }
        let _one_at_a_time = self.miss.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addrs) = fresh(&self.cache.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(addrs);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), addrs.clone()));
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

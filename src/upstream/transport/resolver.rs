//! A DNS cache in front of ureq's resolver.
//!
//! ureq resolves the host on every request, even when it then reuses a pooled connection,
//! and with a timeout configured it does so on a freshly spawned thread. At a thousand
//! pollers that is a thousand thread spawns a second, most of the exporter's kernel time. One
//! shared cache makes a poll cost no resolution at all.
//!
//! During a DNS outage nothing may queue behind one slow lookup:
//! - entries are per host; a lookup of one host never delays a request to another;
//! - requests for the same host wait for a lookup already in flight, but never longer than
//!   their own request's timeout, and the lookup itself is bounded by its request's timeout;
//! - a failure is remembered for [`FAILURE_TTL`], so every caller in that window fails at once
//!   instead of each waiting for its own lookup;
//! - the "lookup in flight" mark is a guard value ([`Resolving`]): a lookup that panics or
//!   returns early clears it, so its host is never left waiting for a lookup nobody runs;
//! - addresses that stop resolving are still used, for up to [`STALE_FOR`], so an outage of
//!   the resolver does not take down connections to a host that has not moved.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a resolved address is reused. Fastly's API hosts change rarely; a minute keeps a
/// failover visible quickly without costing anything measurable.
pub const TTL: Duration = Duration::from_secs(60);

/// How long a failed lookup is remembered.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);

/// How long the last good addresses stand in for a host that no longer resolves.
pub const STALE_FOR: Duration = Duration::from_secs(3600);

/// The cache state of one `scheme://host:port`.
#[derive(Default)]
struct Entry {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    good: Option<(Instant, ResolvedSocketAddrs)>,
    failed: Option<(Instant, Failure)>,
    resolving: bool,
}

/// A remembered failure (ureq's errors are not `Clone`).
#[derive(Clone, Debug)]
enum Failure {
    NotFound,
    Timeout,
    Other(String),
}

impl Failure {
    fn of(e: &Error) -> Failure {
        match e {
            Error::HostNotFound => Failure::NotFound,
            Error::Timeout(_) => Failure::Timeout,
            other => Failure::Other(other.to_string()),
        }
    }

    fn error(&self) -> Error {
        match self {
            Failure::NotFound => Error::HostNotFound,
            Failure::Timeout => Error::Timeout(ureq::Timeout::Resolve),
            Failure::Other(s) => Error::Io(std::io::Error::other(format!("DNS lookup failed: {s}"))),
        }
    }
}

/// The resolver shared by every client of the process (a handle, passed to each client).
#[derive(Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    /// `(scheme, authority)` → its entry. A handful of hosts at most (the two API origins, a
    /// proxy), so a list; read-locked on every request, written once per host.
    entries: RwLock<Vec<(String, String, Arc<Entry>)>>,
    ttl: Option<Duration>,
    #[cfg(debug_assertions)]
    debug_delay: Option<(String, Duration)>,
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

impl CachingResolver {
    /// A resolver with an empty cache.
    ///
    /// Debug builds read two test hooks: `FASTLY_EXPORTER_DEBUG_DNS_DELAY=<host>:<ms>` makes
    /// lookups of that host take that long (then fail), and `FASTLY_EXPORTER_DEBUG_DNS_TTL_MS`
    /// shortens the cache lifetime, so tests can run a DNS outage in seconds.
    pub fn new() -> CachingResolver {
        #[cfg(debug_assertions)]
        {
            let var = |k: &str| std::env::var(k).ok();
            let debug_delay = var("FASTLY_EXPORTER_DEBUG_DNS_DELAY").and_then(|v| {
                let (host, ms) = v.rsplit_once(':')?;
                Some((host.to_string(), Duration::from_millis(ms.parse().ok()?)))
            });
            let ttl = var("FASTLY_EXPORTER_DEBUG_DNS_TTL_MS").and_then(|v| v.parse().ok()).map(Duration::from_millis);
            CachingResolver { ttl, debug_delay, ..CachingResolver::default() }
        }
        #[cfg(not(debug_assertions))]
        CachingResolver::default()
    }

    /// The entry of `scheme://authority`, found without allocating (every request asks).
    fn entry(&self, scheme: &str, authority: &str) -> Arc<Entry> {
        let find = |list: &[(String, String, Arc<Entry>)]| {
            list.iter().find(|(s, a, _)| s == scheme && a == authority).map(|(_, _, e)| e.clone())
        };
        if let Some(e) = find(&self.entries.read().unwrap_or_else(|p| p.into_inner())) {
            return e;
        }
        let mut list = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = find(&list) {
            return e;
        }
        let e = Arc::<Entry>::default();
        list.push((scheme.to_string(), authority.to_string(), e.clone()));
        e
    }

    fn lookup(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, Error> {
        #[cfg(debug_assertions)]
        if let Some((host, delay)) = &self.debug_delay
            && uri.host() == Some(host.as_str())
        {
            let wait = if timeout.after.is_not_happening() { *delay } else { (*delay).min(*timeout.after) };
            std::thread::sleep(wait);
            return Err(if wait < *delay { Error::Timeout(ureq::Timeout::Resolve) } else { Error::HostNotFound });
        }
        self.inner.resolve(uri, config, timeout)
    }
}

fn lock(entry: &Entry) -> MutexGuard<'_, State> {
    entry.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, Error> {
        let entry = match (uri.scheme_str(), uri.authority()) {
            (Some(s), Some(a)) => self.entry(s, a.as_str()),
            _ => return self.inner.resolve(uri, config, timeout),
        };
        let ttl = self.ttl.unwrap_or(TTL);
        let deadline = (!timeout.after.is_not_happening()).then(|| Instant::now() + *timeout.after);
        let mut st = lock(&entry);
        loop {
            let now = Instant::now();
            if let Some((at, addrs)) = &st.good
                && now.duration_since(*at) < ttl
            {
                return Ok(addrs.clone());
            }
            if let Some((at, failure)) = &st.failed
                && now.duration_since(*at) < FAILURE_TTL.min(ttl)
            {
                return stale_or(&st, failure.error());
            }
            if !st.resolving {
                break;
            }
            // Another caller is resolving this host: wait for it, within our own timeout.
            match deadline {
                Some(d) if d <= now => return stale_or(&st, Error::Timeout(ureq::Timeout::Resolve)),
                Some(d) => st = entry.done.wait_timeout(st, d - now).unwrap_or_else(|p| p.into_inner()).0,
                None => st = entry.done.wait(st).unwrap_or_else(|p| p.into_inner()),
            }
        }
        st.resolving = true;
        drop(st);
        let resolving = Resolving(&entry);
        // Debug builds: a panic while the mark is set, on purpose (on poller threads, which
        // catch it), so tests can show the mark is cleared.
        #[cfg(debug_assertions)]
        if std::thread::current().name().is_some_and(|n| n.starts_with("poll-")) {
            crate::util::faults::hit("resolve");
        }
        let result = self.lookup(uri, config, timeout);
        let mut st = lock(&entry);
        let now = Instant::now();
        let out = match result {
            Ok(addrs) => {
                st.good = Some((now, addrs.clone()));
                st.failed = None;
                Ok(addrs)
            }
            Err(e) => {
                st.failed = Some((now, Failure::of(&e)));
                stale_or(&st, e)
            }
        };
        drop(st);
        drop(resolving);
        out
    }
}

/// The mark of a lookup in flight for one host: while it is set, other callers for that host
/// wait (within their own timeouts) for its result. Cleared, and the waiters woken, when this
/// is dropped, however the lookup ended.
struct Resolving<'a>(&'a Entry);

impl Drop for Resolving<'_> {
    fn drop(&mut self) {
        lock(self.0).resolving = false;
        self.0.done.notify_all();
    }
}

/// The last good addresses if they are recent enough, else `err`.
fn stale_or(st: &State, err: Error) -> Result<ResolvedSocketAddrs, Error> {
    match &st.good {
        Some((at, addrs)) if at.elapsed() < STALE_FOR => Ok(addrs.clone()),
        _ => Err(err),
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

//! Securing the listener with the Prometheus exporter toolkit's web config file
//! (`-web-config-file`): TLS, client certificates, basic auth, security headers, rate limit.
//!
//! - [`config`]: the file format, parsed strictly with line numbers ([`WebConfig::load`]).
//! - [`tls`]: rustls server config, reload on SIGHUP or file change, socket wrapping.
//! - [`auth`]: basic auth against bcrypt hashes, cached.
//! - [`WebSecurity`]: the three together, as the HTTP server uses them.
//!
//! How the server uses it:
//!
//! 1. At start: `WebSecurity::new(&config)`; if `tls()` is `Some`, every accepted socket goes
//!    through [`tls::TlsReloader::accept`] before HTTP parsing (the handshake runs on the
//!    connection's thread, bounded by the request-head timeout).
//! 2. Per request: [`WebSecurity::authorize`] with the path and `Authorization` header;
//!    answer 401 with [`auth::WWW_AUTHENTICATE`] or 429 as it says; add
//!    [`WebSecurity::headers`] to every response.
//! 3. On SIGHUP: [`WebSecurity::reload`]; every few seconds: [`WebSecurity::reload_if_changed`].
//!    Log a returned error as one line; the previous settings stay in force.
//!
//! `/healthz` is exempt from authentication and rate limiting so liveness probes work without
//! credentials; it reveals nothing but "the process runs".

pub mod auth;
pub mod config;
pub mod tls;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::util::statelog::Throttled;

pub use auth::{AuthResult, BasicAuth, WWW_AUTHENTICATE};
pub use config::{RateLimit, WebConfig};
pub use tls::{TlsError, TlsReloader};

/// Paths served without authentication or rate limiting.
pub const UNAUTHENTICATED_PATHS: &[&str] = &["/healthz"];

/// Why a web config file was refused. Displayed as one line; the caller adds the file name.
#[derive(Debug)]
pub enum WebConfigError {
    /// The file itself could not be read.
    Read(std::io::Error),
    /// A problem at a line of the file.
    At { line: usize, error: config::ErrorAt },
    /// A certificate, key or CA could not be loaded.
    Tls(TlsError),
    /// A reload would switch between HTTP and HTTPS, which needs a new listener.
    TlsToggled,
}

impl WebConfigError {
    /// The line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            WebConfigError::At { line, .. } => Some(*line),
            WebConfigError::Tls(e) => Some(e.line()),
            WebConfigError::Read(_) | WebConfigError::TlsToggled => None,
        }
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebConfigError::Read(e) => write!(f, "cannot read: {e}"),
            WebConfigError::At { line, error } => write!(f, "line {line}: {error}"),
            WebConfigError::Tls(e) => write!(f, "{e}"),
            WebConfigError::TlsToggled => {
                f.write_str("turning TLS on or off needs a restart; keeping the current settings")
            }
        }
    }
}

impl std::error::Error for WebConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WebConfigError::Read(e) => Some(e),
            // Displayed as itself: its cause is the next one down.
            WebConfigError::Tls(e) => e.source(),
            // The problem is in the file itself (a YAML syntax error keeps the parser's message
            // and line, all its error holds but the byte offset).
            WebConfigError::At { .. } | WebConfigError::TlsToggled => None,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it. `user` is the authenticated user, if auth is on and the path needs it.
    Allow { user: Option<String> },
    /// 401 with `WWW-Authenticate: ` [`WWW_AUTHENTICATE`].
    Unauthorized,
    /// 429 (the `rate_limit` is exhausted, or too many password checks are in progress to
    /// check this request's credentials now).
    TooManyRequests,
}

/// Go's `rate.Limiter` in its simplest use: a bucket of `burst` tokens refilled one per
/// `interval`; a request takes one token or is refused.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, state: Mutex::new((f64::from(limit.burst), Instant::now())) }
    }

    /// Takes a token if one is available.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let refill = now.saturating_duration_since(*last).as_secs_f64() / self.limit.interval.as_secs_f64();
        *tokens = (*tokens + refill).min(f64::from(self.limit.burst));
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-request part of the settings, swapped whole on reload.
#[derive(Debug)]
pub struct Policy {
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(String, String)>,
    pub limiter: Option<RateLimiter>,
}

impl Policy {
    fn new(config: &WebConfig, previous: Option<&Policy>) -> Policy {
        // Same users and hashes: keep the warm cache, so a reload does not cost one bcrypt
        // per scraper.
        let auth = match previous.and_then(|p| p.auth.as_ref()) {
            Some(old) if old.same_users(&config.users) => Some(old.clone()),
            _ => config.auth_enabled().then(|| Arc::new(BasicAuth::new(&config.users))),
        };
        Policy { auth, headers: config.headers.clone(), limiter: config.rate_limit.map(RateLimiter::new) }
    }
}

/// The listener's security settings, reloadable as a whole.
#[derive(Debug)]
pub struct WebSecurity {
    path: PathBuf,
    policy: RwLock<Arc<Policy>>,
    tls: Option<TlsReloader>,
    /// The web config file's `stat` at the last load attempt.
    seen: Mutex<tls::Stamp>,
    /// Failed authentication attempts, kept across reloads.
    failures: AuthFailures,
}

/// Requests refused by basic auth, for the exporter's own metrics; one log line an hour at
/// most, whatever the flood.
#[derive(Debug, Default)]
struct AuthFailures {
    /// Wrong credentials (unknown user or wrong password): 401.
    wrong: AtomicU64,
    /// Credentials not checked because too many checks were in progress: 429.
    busy: AtomicU64,
    log: Throttled,
}

/// Requests refused by basic auth since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthFailureCounts {
    /// Wrong credentials (401).
    pub wrong_credentials: u64,
    /// Not checked: too many password checks in progress (429).
    pub too_many_checks: u64,
}

impl AuthFailures {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        if self.log.due() {
            log::warn!(
                "web: basic auth: refusing requests: {} with wrong credentials (401), {} not checked because too many \
                 password checks were in progress (429); counted in fastly_exporter_http_auth_failures_total, \
                 logged at most once an hour",
                self.wrong.load(Ordering::Relaxed),
                self.busy.load(Ordering::Relaxed)
            );
        }
    }
}

impl WebSecurity {
    /// Builds everything from a loaded config (reads the certificate files again).
    pub fn new(config: &WebConfig) -> Result<WebSecurity, WebConfigError> {
        let tls = match &config.tls {
            Some(t) => Some(TlsReloader::new(t.clone()).map_err(WebConfigError::Tls)?),
            None => None,
        };
        Ok(WebSecurity {
            path: config.path.clone(),
            policy: RwLock::new(Arc::new(Policy::new(config, None))),
            tls,
            seen: Mutex::new(tls::stamp(&config.path)),
            failures: AuthFailures::default(),
        })
    }

    /// TLS, when the config turns it on: wrap accepted sockets with it.
    pub fn tls(&self) -> Option<&TlsReloader> {
        self.tls.as_ref()
    }

    /// The current per-request settings.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Headers to add to every response (including 401, 429 and `/healthz`).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.policy().headers.clone()
    }

    /// Decides whether a request may be served. `path` is the request path without the query.
    pub fn authorize(&self, path: &str, authorization: Option<&str>) -> Decision {
        if UNAUTHENTICATED_PATHS.contains(&path) {
            return Decision::Allow { user: None };
        }
        let policy = self.policy();
        if let Some(limiter) = &policy.limiter
            && !limiter.allow()
        {
            return Decision::TooManyRequests;
        }
        match &policy.auth {
            None => Decision::Allow { user: None },
            Some(auth) => match auth.authenticate(authorization) {
                AuthResult::Allowed { user } => Decision::Allow { user: Some(user) },
                AuthResult::Missing => Decision::Unauthorized,
                AuthResult::Denied { .. } => {
                    self.failures.count(&self.failures.wrong);
                    Decision::Unauthorized
                }
                AuthResult::Busy => {
                    self.failures.count(&self.failures.busy);
                    Decision::TooManyRequests
                }
            },
        }
    }

    /// Requests refused by basic auth since the start (reloads included).
    pub fn auth_failures(&self) -> AuthFailureCounts {
        AuthFailureCounts {
            wrong_credentials: self.failures.wrong.load(Ordering::Relaxed),
            too_many_checks: self.failures.busy.load(Ordering::Relaxed),
        }
    }

    /// SIGHUP: re-reads the web config file and the certificates. On any error nothing
    /// changes. Returns the new config's warnings (to log once) on success.
    pub fn reload(&self) -> Result<Vec<String>, WebConfigError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = tls::stamp(&self.path);
        let text = std::fs::read_to_string(&self.path).map_err(WebConfigError::Read)?;
        let config = config::parse(&text, &self.path)?;
        match (&self.tls, &config.tls) {
            (Some(reloader), Some(settings)) => reloader.replace(settings.clone()).map_err(WebConfigError::Tls)?,
            (None, None) => {}
            _ => return Err(WebConfigError::TlsToggled),
        }
        let policy = Policy::new(&config, Some(&self.policy()));
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        Ok(config.warnings)
    }

    /// The watcher's tick (every few seconds): a full [`reload`](Self::reload) when the web
    /// config file changed, else a certificate reload when a certificate file changed. `None`
    /// when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), WebConfigError>> {
        let config_changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != tls::stamp(&self.path);
        if config_changed {
            return Some(self.reload().map(|_| ()));
        }
        self.tls.as_ref()?.reload_if_changed().map(|r| r.map_err(WebConfigError::Tls))
    }

    /// The web config file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How often a server should call [`WebSecurity::reload_if_changed`].
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;

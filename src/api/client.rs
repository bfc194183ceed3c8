//! The HTTP client for api.fastly.com and rt.fastly.com, built on ureq.
//!
//! One `Client` per host kind, each with its own timeout and connection pool: the API client
//! makes a few requests a minute, the rt client keeps one idle connection per poller. Non-2xx
//! statuses are returned as values (callers decide: 401 backs off, 404 drops a service…),
//! bodies are capped, and nothing here ever formats the token: it only travels in a header.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::resolver::{CachingResolver, SharedResolver};

/// Version string sent in `User-Agent` and reported by `-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A received response: status, the few headers callers use, and the body.
#[derive(Debug, Default)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Link` header (service-list pagination).
    pub link: Option<String>,
    /// `Retry-After` header.
    pub retry_after: Option<String>,
    /// `Fastly-RateLimit-Remaining` header.
    pub rate_limit_remaining: Option<String>,
}

/// Why a request produced no usable reply.
#[derive(Debug)]
pub enum ApiError {
    /// Connect, TLS, DNS, reset or timeout: the request may be retried soon.
    Transport(String),
    /// The body was larger than the configured cap.
    TooLarge(u64),
    /// The body could not be read completely (truncated).
    Body(String),
    /// Not sent: api.fastly.com asked us to wait (429 `Retry-After`, or the rate-limit window
    /// is used up) for this much longer.
    Paused(Duration),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(e) => write!(f, "request failed: {e}"),
            ApiError::TooLarge(n) => write!(f, "response body exceeds the {n}-byte limit"),
            ApiError::Body(e) => write!(f, "reading response body failed: {e}"),
            ApiError::Paused(d) => write!(f, "rate limited by the API; next request in {}s", d.as_secs()),
        }
    }
}

impl std::error::Error for ApiError {}

/// A response whose headers have arrived and whose body has not been read yet.
pub struct Pending {
    /// Status and headers.
    pub reply: Reply,
    resp: ureq::http::Response<ureq::Body>,
}

impl Pending {
    /// Reads the whole body into `body` (cleared first), failing when it exceeds `max_body`
    /// bytes or ends early.
    #[inline(never)]
    pub fn read_into(mut self, max_body: u64, body: &mut Vec<u8>) -> Result<Reply, ApiError> {
        body.clear();
        let mut reader = self.resp.body_mut().with_config().limit(max_body.saturating_add(1)).reader();
        match reader.read_to_end(body) {
            Ok(_) if body.len() as u64 > max_body => Err(ApiError::TooLarge(max_body)),
            Ok(_) => Ok(self.reply),
            Err(e) if e.to_string().contains("limit") => Err(ApiError::TooLarge(max_body)),
            Err(e) => Err(ApiError::Body(e.to_string())),
        }
    }
}

/// A configured HTTP client bound to one base URL and the token.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
    /// When set, requests are refused until this instant (api.fastly.com rate limiting).
    paused_until: Option<std::sync::Mutex<Option<Instant>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("token", &"<redacted>").finish()
    }
}

impl Client {
    /// A client for `base` (e.g. `https://api.fastly.com`) with a per-request timeout and room
    /// for `idle` pooled connections (one per poller for the rt client).
    pub fn new(base: &str, token: &str, timeout: Duration, idle: usize) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections(idle.max(1))
            .max_idle_connections_per_host(idle.max(1))
            .max_idle_age(Duration::from_secs(150))
            .user_agent(format!("Fastly-Exporter ({VERSION})"))
            .accept("application/json")
            // Kept per pooled connection for its lifetime: the default 128 KiB would cost
            // 128 MiB with a thousand pollers. 8 KiB holds any response head; bodies stream
            // through it (measured: no CPU difference from 16 KiB, 8 MB less at 1,000).
            .input_buffer_size(8 * 1024)
            .output_buffer_size(1024)
            .max_response_header_size(16 * 1024)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            SharedResolver(CachingResolver::shared()),
        );
        Client { agent, base: base.trim_end_matches('/').to_string(), token: token.to_string(), paused_until: None }
    }

    /// Makes this client honour api.fastly.com's rate limiting for every caller: after a 429
    /// it sends nothing until `Retry-After` (at most 15 minutes) has passed, and when
    /// `Fastly-RateLimit-Remaining` reaches 0 it waits for `Fastly-RateLimit-Reset`.
    pub fn with_rate_gate(mut self) -> Client {
        self.paused_until = Some(std::sync::Mutex::new(None));
        self
    }

    /// Sends a GET for `url` (absolute, or a path starting with `/` relative to the base) and
    /// returns once the response headers have arrived; the body is read separately so a
    /// poller only needs a body buffer for the moment it actually reads one.
    #[inline(never)]
    pub fn call(&self, url: &str) -> Result<Pending, ApiError> {
        if let Some(gate) = &self.paused_until {
            let mut until = gate.lock().unwrap_or_else(|p| p.into_inner());
            match *until {
                Some(t) if t > Instant::now() => return Err(ApiError::Paused(t - Instant::now())),
                Some(_) => {
                    *until = None;
                    log::info!("api: rate-limit pause over; resuming requests");
                }
                None => {}
            }
        }
        let full = if url.starts_with('/') { format!("{}{url}", self.base) } else { url.to_string() };
        let endpoint = crate::selfmetrics::endpoint_of(url);
        let metrics = crate::selfmetrics::global();
        let resp = match self.agent.get(&full).header("Fastly-Key", &self.token).call() {
            Ok(r) => r,
            Err(e) => {
                metrics.count_request(endpoint, None);
                return Err(ApiError::Transport(describe(&e)));
            }
        };
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let reply = Reply {
            status: resp.status().as_u16(),
            link: header("link"),
            retry_after: header("retry-after"),
            rate_limit_remaining: header("fastly-ratelimit-remaining"),
        };
        metrics.count_request(endpoint, Some(reply.status));
        if let Some(gate) = &self.paused_until {
            let remaining = reply.rate_limit_remaining.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
            if let Some(n) = remaining {
                metrics.set_rate_limit_remaining(n);
            }
            let wait = if reply.status == 429 {
                let asked = reply.retry_after.as_deref().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(60);
                Some(Duration::from_secs(asked))
            } else if remaining == Some(0) {
                header("fastly-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok()).map(|reset| {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    Duration::from_secs(reset.saturating_sub(now))
                })
            } else {
                None
            };
            if let Some(wait) = wait.map(|w| w.min(Duration::from_secs(15 * 60))).filter(|w| !w.is_zero()) {
                let mut until = gate.lock().unwrap_or_else(|p| p.into_inner());
                if until.is_none() {
                    log::warn!(
                        "api: rate limited (HTTP {}); pausing API requests for {}s",
                        reply.status,
                        wait.as_secs()
                    );
                }
                *until = Some(Instant::now() + wait);
            }
        }
        Ok(Pending { reply, resp })
    }

    /// GETs `url` and reads at most `max_body` bytes of body into `body` (cleared first).
    pub fn get_into(&self, url: &str, max_body: u64, body: &mut Vec<u8>) -> Result<Reply, ApiError> {
        let pending = self.call(url)?;
        pending.read_into(max_body, body)
    }

    /// GETs a small API document (at most 64 MiB) and returns status and body.
    pub fn get(&self, url: &str) -> Result<(Reply, Vec<u8>), ApiError> {
        let mut body = Vec::new();
        let reply = self.get_into(url, 64 << 20, &mut body)?;
        Ok((reply, body))
    }
}

/// One line describing a ureq error, without anything from request headers.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

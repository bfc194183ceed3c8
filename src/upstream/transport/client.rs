//! The HTTP client for api.fastly.com and rt.fastly.com, built on ureq.
//!
//! One `Client` per host kind, each with its own timeout and connection pool: the API client
//! makes a few requests a minute, the rt client keeps one idle connection per poller. Non-2xx
//! statuses are returned as values (callers decide: 401 backs off, 404 drops a service…),
//! bodies are capped, and nothing here ever formats the token: it only travels in a header.
//!
//! The token is confined to the configured origin: a client sends it only to its base URL's
//! scheme, host and port. An absolute URL from an answer (a pagination link) pointing
//! anywhere else is refused before anything is sent, and redirects are never followed.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::store::{Counters, Endpoint};

use super::buffers::BufferPool;
use super::connect::HttpConnector;
use super::gate::{Gate, Turns};
use super::resolver::{CachingResolver, SharedResolver};
use super::tls::Untrusted;

/// What every client of the process shares: the TLS configuration (one trust store), the
/// DNS cache, the log of untrusted servers and the request counters. Passed explicitly to
/// each client.
#[derive(Clone)]
pub struct Net {
    /// Where requests are counted by endpoint and status.
    pub counters: Arc<Counters>,
    /// rustls configuration with the trusted roots.
    pub tls: Arc<rustls::ClientConfig>,
    /// The DNS cache.
    pub resolver: Arc<CachingResolver>,
    /// Servers whose certificate was refused, each logged once.
    pub untrusted: Arc<UntrustedLog>,
    /// TLS handshakes in progress at once (see [`HANDSHAKES`]).
    pub handshakes: Arc<Gate>,
    /// Read buffers lent to connections while they read an answer (`buffers.rs`).
    pub buffers: Arc<BufferPool>,
}

/// At most this many TLS handshakes run at once. A handshake's allocations (certificate
/// chain, key exchange, verification) are transient, but a thousand pollers starting
/// together made them one peak that the allocator then kept: 14 MB of RSS at Scale A. They
/// are CPU-bound, so more than a few at once gains nothing; over a slow link, 16 at a time
/// still connect a thousand pollers within seconds.
pub const HANDSHAKES: usize = 16;

/// ureq's read buffer where ureq's own transports are used (a CONNECT proxy's tunnel); our
/// connections borrow theirs while reading (`buffers.rs`). The default 128 KiB would stay
/// with every pooled connection.
pub const INPUT_BUFFER: usize = 8 * 1024;

/// ureq's write buffer there: a request is one short GET.
pub const OUTPUT_BUFFER: usize = 1024;

impl Net {
    /// Handles for a process trusting `tls`, counting requests in `counters`.
    pub fn new(tls: Arc<rustls::ClientConfig>, counters: Arc<Counters>) -> Net {
        Net {
            counters,
            tls,
            resolver: Arc::new(CachingResolver::new()),
            untrusted: Arc::default(),
            handshakes: Arc::new(Gate::new(HANDSHAKES)),
            buffers: Arc::default(),
        }
    }
}

/// The `endpoint` label of a request path: which API a request was for.
pub fn endpoint_of(path: &str) -> Endpoint {
    let path = path.split_once("://").map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with("/v1/channel/") {
        Endpoint::Realtime
    } else if path.starts_with("/v1/origins/") {
        Endpoint::Origins
    } else if path.starts_with("/v1/domains/") {
        Endpoint::Domains
    } else if path.contains("/dictionary") {
        Endpoint::Dictionaries
    } else if path.starts_with("/service") {
        Endpoint::Services
    } else if path.starts_with("/entitled-products/") {
        Endpoint::Products
    } else if path.starts_with("/datacenters") {
        Endpoint::Datacenters
    } else if path.starts_with("/tokens/") {
        Endpoint::Tokens
    } else if path.starts_with("/tls/certificates") {
        Endpoint::Certificates
    } else {
        Endpoint::Other
    }
}

/// Logs an untrusted certificate once per server for the whole process (every poller of a
/// thousand would otherwise say the same thing), again only after that server was reached.
#[derive(Debug, Default)]
pub struct UntrustedLog {
    any: std::sync::atomic::AtomicBool,
    servers: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl UntrustedLog {
    fn report(&self, u: &Untrusted) {
        let mut set = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if set.insert(u.server.clone()) {
            log::error!("{u}");
        }
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn reached(&self, server: &str) {
        if self.any.load(std::sync::atomic::Ordering::Relaxed) {
            let mut set = self.servers.lock().unwrap_or_else(|p| p.into_inner());
            if set.remove(server) {
                log::info!("TLS: {server} is trusted now");
            }
            self.any.store(!set.is_empty(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Scheme, host and port of a URL: where the token may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http(s)://` URL (default ports made explicit, host lower-case).
    pub fn of(url: &str) -> Option<Origin> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        Some(Origin { scheme, port: uri.port_u16().unwrap_or(default), host })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

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
    /// `Location` header (a redirect, which is never followed).
    pub location: Option<String>,
}

/// Why a request produced no usable reply.
#[derive(Debug)]
pub enum ApiError {
    /// Connect, TLS, DNS, reset or timeout: the request may be retried soon.
    Transport(ureq::Error),
    /// The body was larger than the configured cap.
    TooLarge(u64),
    /// The body could not be read completely (truncated).
    Body(std::io::Error),
    /// Not sent: api.fastly.com asked us to wait (429 `Retry-After`, or the rate-limit window
    /// is used up) for this much longer.
    Paused(Duration),
    /// Not sent: the URL (from a pagination link) leaves the configured origin, and the token
    /// goes nowhere else.
    ForeignOrigin {
        /// Where the URL pointed.
        target: String,
        /// The only origin the token is sent to.
        allowed: String,
    },
    /// The server's TLS certificate is not trusted; nothing was sent.
    Untrusted(Untrusted),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(e) => match e {
                ureq::Error::Timeout(t) => write!(f, "request failed: timed out ({t})"),
                ureq::Error::HostNotFound => f.write_str("request failed: DNS lookup failed: host not found"),
                // ureq's own wording would prefix "io: ".
                ureq::Error::Io(io) => write!(f, "request failed: {io}"),
                other => write!(f, "request failed: {other}"),
            },
            ApiError::TooLarge(n) => write!(f, "response body exceeds the {n}-byte limit"),
            ApiError::Body(e) => write!(f, "reading response body failed: {e}"),
            ApiError::Paused(d) => write!(f, "rate limited by the API; next request in {}s", d.as_secs()),
            ApiError::ForeignOrigin { target, allowed } => {
                write!(f, "not following a link to {target}: the API token is only sent to {allowed}")
            }
            ApiError::Untrusted(u) => write!(f, "{u}"),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // ureq's error quotes what it wraps but not what that wraps: hand on the I/O error.
            ApiError::Transport(ureq::Error::Io(e)) | ApiError::Body(e) => Some(e),
            // A timeout or unknown host is all there is to say, and the message says it.
            ApiError::Transport(ureq::Error::Timeout(_) | ureq::Error::HostNotFound) => None,
            ApiError::Transport(e) => Some(e),
            // Displayed as itself: its cause is the next one down.
            ApiError::Untrusted(u) => u.source(),
            ApiError::TooLarge(_) | ApiError::Paused(_) | ApiError::ForeignOrigin { .. } => None,
        }
    }
}

impl ApiError {
    /// True for an untrusted TLS certificate, which [`UntrustedLog`] has already reported:
    /// callers log it quietly.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, ApiError::Untrusted(_))
    }
}

/// A response whose headers have arrived and whose body has not been read yet.
pub struct Pending {
    /// Status and headers.
    pub reply: Reply,
    resp: ureq::http::Response<ureq::Body>,
    /// The turn the client took to read the answer, given back when the body has been read
    /// (or abandoned, or a panic unwinds through this).
    turns: Option<Arc<Turns>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(turns) = &self.turns {
            turns.release();
        }
    }
}

impl Pending {
    /// Reads the whole body into `body` (cleared first), failing when it exceeds `max_body`
    /// bytes or ends early. The cap is applied here (`take`), so "too large" is a fact we
    /// measured, not an error message we recognise.
    #[inline(never)]
    pub fn read_into(mut self, max_body: u64, body: &mut Vec<u8>) -> Result<Reply, ApiError> {
        // Debug builds: a panic while the turn is held, on purpose, so tests can show it
        // comes back.
        #[cfg(debug_assertions)]
        if self.turns.is_some() {
            crate::util::faults::hit("read_turn");
        }
        let mut reader = self.resp.body_mut().as_reader().take(max_body.saturating_add(1));
        match read_over(&mut reader, body) {
            Ok(()) if body.len() as u64 > max_body => Err(ApiError::TooLarge(max_body)),
            Ok(()) => Ok(std::mem::take(&mut self.reply)),
            Err(e) => Err(ApiError::Body(e)),
        }
    }
}

/// Reads `reader` to its end into `body`, replacing what it held, like `clear` and then
/// `read_to_end` but without zeroing the body's memory again for every answer.
///
/// `read_to_end` reads into a vector's spare capacity, which safe code must zero first, and
/// it does so on every call: a poller reusing a 56 KB body buffer zeroed 56 KB per answer
/// (3 % of the ingest CPU in a profile). Here the bytes the last answer left (`body`'s
/// length) are overwritten in place, and only growth beyond them is zeroed.
fn read_over(reader: &mut impl Read, body: &mut Vec<u8>) -> io::Result<()> {
    /// Growth per step when the old length is reached; a read takes what ureq has buffered.
    const STEP: usize = 16 * 1024;
    let mut filled = 0;
    loop {
        if filled == body.len() {
            body.resize(filled + STEP, 0);
        }
        match reader.read(&mut body[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                body.truncate(filled);
                return Err(e);
            }
        }
    }
    body.truncate(filled);
    Ok(())
}

/// A configured HTTP client bound to one base URL and the token.
pub struct Client {
    agent: ureq::Agent,
    counters: Arc<Counters>,
    untrusted: Arc<UntrustedLog>,
    base: String,
    origin: Option<Origin>,
    token: String,
    /// When set, requests are refused until this instant (api.fastly.com rate limiting).
    paused_until: Option<std::sync::Mutex<Option<Instant>>>,
    /// Answers are read in turns: this client's handle on the shared gate.
    turns: Option<Arc<Turns>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("token", &"<redacted>").finish()
    }
}

impl Client {
    /// A client for `base` (e.g. `https://api.fastly.com`) with a per-request timeout and room
    /// for `idle` pooled connections (one per poller for the rt client).
    ///
    /// With `turns`, answers are read in turns of that gate (the real-time clients; see
    /// `gate.rs`).
    pub fn new(net: &Net, base: &str, token: &str, timeout: Duration, idle: usize, turns: Option<Arc<Gate>>) -> Client {
        let turns = turns.map(|gate| Arc::new(Turns::new(gate)));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would carry the token to wherever it points: never follow one.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .max_idle_connections(idle.max(1))
            .max_idle_connections_per_host(idle.max(1))
            .max_idle_age(Duration::from_secs(150))
            .user_agent(format!("Fastly-Exporter ({VERSION})"))
            .accept("application/json")
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .max_response_header_size(16 * 1024)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            HttpConnector::new(net.tls.clone(), net.handshakes.clone(), turns.clone(), net.buffers.clone()),
            SharedResolver(net.resolver.clone()),
        );
        let base = base.trim_end_matches('/').to_string();
        let (untrusted, counters) = (net.untrusted.clone(), net.counters.clone());
        Client {
            agent,
            untrusted,
            counters,
            origin: Origin::of(&base),
            base,
            token: token.to_string(),
            paused_until: None,
            turns,
        }
    }

    /// `host:port` of the base URL as written (how untrusted servers are named).
    fn authority(&self) -> Option<&str> {
        let rest = self.base.split_once("://")?.1;
        Some(rest.split('/').next().unwrap_or(rest))
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
        let full = if url.starts_with('/') {
            // Sized once: `format!` grows its string twice for a poll's URL.
            let mut full = String::with_capacity(self.base.len() + url.len());
            full.push_str(&self.base);
            full.push_str(url);
            full
        } else {
            let target = Origin::of(url);
            if target.is_none() || target != self.origin {
                let target = target.map_or_else(|| "an unusable URL".to_string(), |o| o.to_string());
                let allowed = self.origin.as_ref().map_or_else(|| self.base.clone(), |o| o.to_string());
                return Err(ApiError::ForeignOrigin { target, allowed });
            }
            url.to_string()
        };
        let endpoint = endpoint_of(url);
        let metrics = &self.counters;
        let resp = match self.agent.get(&full).header("Fastly-Key", &self.token).call() {
            Ok(r) => r,
            Err(e) => {
                if let Some(turns) = &self.turns {
                    turns.release();
                }
                metrics.count_request(endpoint, None);
                let e = classify(e);
                if let ApiError::Untrusted(u) = &e {
                    self.untrusted.report(u);
                }
                return Err(e);
            }
        };
        if let Some(authority) = self.authority() {
            self.untrusted.reached(authority);
        }
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let reply = Reply {
            status: resp.status().as_u16(),
            link: header("link"),
            retry_after: header("retry-after"),
            rate_limit_remaining: header("fastly-ratelimit-remaining"),
            location: header("location"),
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
        Ok(Pending { reply, resp, turns: self.turns.clone() })
    }

    /// Closes this client's connections, idle or in use: a request blocked on its socket (a
    /// long poll, a body being read, a TLS handshake) fails at once instead of waiting for
    /// its timeout, and later requests fail too. For a poller being stopped and for the API
    /// client at shutdown. (A DNS lookup or TCP connect in progress is not interrupted; both
    /// are bounded by the request's timeout.)
    pub fn shutdown(&self) {
        self.agent.clone().shutdown();
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

/// A ureq error as an [`ApiError`]: an untrusted certificate is its own kind; everything else
/// is a transport failure, kept whole (it holds nothing from request headers).
fn classify(e: ureq::Error) -> ApiError {
    match e {
        ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<Untrusted>()) => {
            let kind = io.kind();
            match io.into_inner().map(|i| i.downcast::<Untrusted>()) {
                Some(Ok(u)) => ApiError::Untrusted(*u),
                Some(Err(other)) => ApiError::Transport(ureq::Error::Io(std::io::Error::new(kind, other))),
                None => ApiError::Transport(ureq::Error::Io(kind.into())),
            }
        }
        other => ApiError::Transport(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, then fails if told to.
    struct Trickle<'a>(&'a [u8], usize, bool);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() && self.2 {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_body_read_over_an_older_one_holds_exactly_the_new_bytes() {
        let long: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let mut body = vec![0xAA; 50_000];
        // Shorter than what the buffer held, longer, empty, in odd read sizes.
        for (len, step) in [(1_000, 7), (70_000, 4_099), (20_000, 65_536), (0, 1), (50_001, 16_384)] {
            read_over(&mut Trickle(&long[..len], step, false), &mut body).expect("read");
            assert_eq!(body, &long[..len], "{len} in reads of {step}");
        }
        // An error keeps what came before it, and only that.
        let err = read_over(&mut Trickle(&long[..30_000], 5_000, true), &mut body).expect_err("reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(body, &long[..30_000]);
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint_of("/v1/channel/x/ts/0"), Endpoint::Realtime);
        assert_eq!(endpoint_of("http://h:1/v1/origins/x/ts/5"), Endpoint::Origins);
        assert_eq!(endpoint_of("/service?page=1"), Endpoint::Services);
        assert_eq!(endpoint_of("/service/x/version/3/dictionary/d/info"), Endpoint::Dictionaries);
        assert_eq!(endpoint_of("/tls/certificates?page[number]=1"), Endpoint::Certificates);
        assert_eq!(endpoint_of("/nope"), Endpoint::Other);
    }

    #[test]
    fn origins_compare_scheme_host_and_effective_port() {
        let o = |u: &str| Origin::of(u);
        assert_eq!(o("https://api.fastly.com"), o("https://API.fastly.com:443/service?page=2"));
        assert_ne!(o("https://api.fastly.com"), o("http://api.fastly.com"));
        assert_ne!(o("http://127.0.0.1:8080"), o("http://127.0.0.1:8081/service"));
        assert_ne!(o("https://api.fastly.com"), o("https://api.fastly.com.evil.example/x"));
        assert_eq!(o("ftp://x/"), None);
        assert_eq!(o("/relative"), None);
        assert_eq!(o("http://[::1]:80/x").map(|o| o.to_string()).as_deref(), Some("http://[::1]:80"));
    }

    /// A cause under a cause, as a TLS or socket failure arrives through `std::io`.
    #[derive(Debug)]
    struct Layered(&'static str, Option<Box<Layered>>);

    impl fmt::Display for Layered {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layered {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn errors_keep_their_cause_and_messages_stay() {
        use crate::util::errors::chain;
        use std::error::Error as _;
        use std::io;

        let deep = Layered("handshake failed", Some(Box::new(Layered("certificate expired", None))));
        let e = ApiError::Transport(ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, deep)));
        assert_eq!(e.to_string(), "request failed: handshake failed");
        assert_eq!(chain(&e), "request failed: handshake failed: certificate expired");
        assert!(matches!(&e, ApiError::Transport(ureq::Error::Io(io)) if io.kind() == io::ErrorKind::InvalidData));

        let t = ApiError::Transport(ureq::Error::Timeout(ureq::Timeout::Global));
        assert_eq!(chain(&t), format!("request failed: timed out ({})", ureq::Timeout::Global));
        let dns = ApiError::Transport(ureq::Error::HostNotFound);
        assert_eq!(chain(&dns), "request failed: DNS lookup failed: host not found");

        let body = ApiError::Body(io::Error::new(io::ErrorKind::UnexpectedEof, "peer disconnected"));
        assert_eq!(chain(&body), "reading response body failed: peer disconnected");
        let cause = body.source().and_then(|c| c.downcast_ref::<io::Error>()).map(io::Error::kind);
        assert_eq!(cause, Some(io::ErrorKind::UnexpectedEof));

        // The API errors wrap these transparently and keep their own causes.
        use crate::upstream::api::account::FetchError;
        use crate::upstream::api::services::ListError;
        let deep = Layered("reset", Some(Box::new(Layered("by peer", None))));
        let list = ListError::Api(ApiError::Transport(ureq::Error::Io(io::Error::other(deep))));
        assert_eq!(chain(&list), "request failed: reset: by peer");
        let json = serde_json::from_str::<Vec<u8>>("[1,").unwrap_err();
        let list = ListError::Decode(json);
        assert!(list.source().is_some_and(|c| c.is::<serde_json::Error>()));
        assert!(list.to_string().starts_with("invalid service list: EOF while parsing"), "{list}");
        let fetch = FetchError::Decode(serde_json::from_str::<Vec<u8>>("x").unwrap_err());
        assert!(fetch.source().is_some_and(|c| c.is::<serde_json::Error>()));
    }
}

//! The exporter's own counters: what the API client, the pollers and the HTTP side count
//! about themselves. One handle (`Arc<Counters>`) is passed to each; `serve` renders them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::Stream;

use super::placement::PopStates;

/// What the stream tables cost the scraper, counted by the main thread every second: series
/// served now, the same data in each datacenter mode, and the POPs seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    /// Series served now, per stream (`Stream::index()`).
    pub series: [u64; 3],
    /// Per stream, series in each mode: per POP, per group, aggregate (`None`: not derivable).
    pub by_mode: [[Option<u64>; 3]; 3],
    /// POP codes seen, when a placement step runs (grouping or datacenter filters).
    pub pops: Option<PopStates>,
}

/// Which Fastly API a request went to: the `endpoint` label of
/// `fastly_exporter_api_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// `/tls/certificates`.
    Certificates,
    /// `/datacenters`.
    Datacenters,
    /// `/service/{id}/version/{v}/dictionary…`.
    Dictionaries,
    /// `rt.fastly.com/v1/domains`.
    Domains,
    /// `rt.fastly.com/v1/origins`.
    Origins,
    /// Anything else.
    Other,
    /// `/entitled-products/{product}`.
    Products,
    /// `rt.fastly.com/v1/channel`.
    Realtime,
    /// `/service` (the list).
    Services,
    /// `/tokens/self`.
    Tokens,
}

impl Endpoint {
    /// Every endpoint, in label order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Certificates,
        Endpoint::Datacenters,
        Endpoint::Dictionaries,
        Endpoint::Domains,
        Endpoint::Origins,
        Endpoint::Other,
        Endpoint::Products,
        Endpoint::Realtime,
        Endpoint::Services,
        Endpoint::Tokens,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Certificates => "certificates",
            Endpoint::Datacenters => "datacenters",
            Endpoint::Dictionaries => "dictionaries",
            Endpoint::Domains => "domains",
            Endpoint::Origins => "origins",
            Endpoint::Other => "other",
            Endpoint::Products => "products",
            Endpoint::Realtime => "realtime",
            Endpoint::Services => "services",
            Endpoint::Tokens => "tokens",
        }
    }
}

/// Status slots per endpoint: index 0 counts transport errors, 100..=599 HTTP statuses.
const CODES: usize = 600;

/// Counters of the whole process.
#[derive(Debug)]
pub struct Counters {
    /// Request outcomes per endpoint, as plain atomics: a thousand pollers bump these every
    /// second, all at the same moment, so no lock may sit on this path.
    api_requests: Vec<AtomicU64>,
    rate_limit_remaining: AtomicI64,
    pollers: [AtomicU64; 3],
    restarts: AtomicU64,
    scrape_seconds: AtomicU64,
    scrape_bytes: AtomicU64,
    scrape_at: AtomicU64,
    invalid: [AtomicU64; 3],
    lost_seconds: [AtomicU64; 3],
    /// State file writes: [succeeded, failed].
    state_writes: [AtomicU64; 2],
    start_time: f64,
    census: Mutex<Option<Census>>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            api_requests: (0..Endpoint::ALL.len() * CODES).map(|_| AtomicU64::new(0)).collect(),
            rate_limit_remaining: AtomicI64::new(-1),
            pollers: Default::default(),
            restarts: AtomicU64::new(0),
            scrape_seconds: AtomicU64::new(f64::NAN.to_bits()),
            scrape_bytes: AtomicU64::new(0),
            scrape_at: AtomicU64::new(0),
            invalid: Default::default(),
            lost_seconds: Default::default(),
            state_writes: Default::default(),
            start_time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            census: Mutex::default(),
        }
    }
}

impl Counters {
    /// Counts one request by endpoint and outcome: an HTTP status, or `None` for a request
    /// that got no HTTP answer (label `code="error"`).
    pub fn count_request(&self, endpoint: Endpoint, status: Option<u16>) {
        let e = Endpoint::ALL.iter().position(|x| *x == endpoint).unwrap_or(0);
        let code = status.map_or(0, |s| usize::from(s).min(CODES - 1));
        self.api_requests[e * CODES + code].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests by (endpoint, code: `None` for no HTTP answer), the non-zero ones.
    pub fn requests(&self) -> Vec<(Endpoint, Option<u16>, u64)> {
        let mut out = Vec::new();
        for (e, endpoint) in Endpoint::ALL.iter().enumerate() {
            for code in 0..CODES {
                let n = self.api_requests[e * CODES + code].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((*endpoint, (code > 0).then_some(code as u16), n));
                }
            }
        }
        out
    }

    /// Records api.fastly.com's `Fastly-RateLimit-Remaining`.
    pub fn set_rate_limit_remaining(&self, n: i64) {
        self.rate_limit_remaining.store(n, Ordering::Relaxed);
    }

    /// The last `Fastly-RateLimit-Remaining`, if any answer carried one.
    pub fn rate_limit_remaining(&self) -> Option<i64> {
        Some(self.rate_limit_remaining.load(Ordering::Relaxed)).filter(|n| *n >= 0)
    }

    /// Running pollers of a stream.
    pub fn set_pollers(&self, stream: Stream, n: u64) {
        self.pollers[stream.index()].store(n, Ordering::Relaxed);
    }

    /// Running pollers of a stream.
    pub fn pollers(&self, stream: Stream) -> u64 {
        self.pollers[stream.index()].load(Ordering::Relaxed)
    }

    /// Counts a poller restarted after a panic.
    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Poller restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records the last full scrape: how long it took, how many bytes of exposition it wrote
    /// (before any compression) and when it ended (unix seconds).
    pub fn set_last_scrape(&self, seconds: f64, bytes: u64, at: f64) {
        self.scrape_seconds.store(seconds.to_bits(), Ordering::Relaxed);
        self.scrape_bytes.store(bytes, Ordering::Relaxed);
        self.scrape_at.store(at.to_bits(), Ordering::Relaxed);
    }

    /// The last full scrape's `(seconds, bytes, unix end time)`, once there was one.
    pub fn last_scrape(&self) -> Option<(f64, u64, f64)> {
        let s = self.scrape_seconds()?;
        Some((s, self.scrape_bytes.load(Ordering::Relaxed), f64::from_bits(self.scrape_at.load(Ordering::Relaxed))))
    }

    /// How long the last full scrape took, once there was one.
    pub fn scrape_seconds(&self) -> Option<f64> {
        Some(f64::from_bits(self.scrape_seconds.load(Ordering::Relaxed))).filter(|s| !s.is_nan())
    }

    /// Counts invalid values skipped in a stream's answers.
    pub fn count_invalid(&self, stream: Stream, n: u64) {
        self.invalid[stream.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Invalid values skipped so far in a stream's answers.
    pub fn invalid(&self, stream: Stream) -> u64 {
        self.invalid[stream.index()].load(Ordering::Relaxed)
    }

    /// Counts seconds of a stream the API no longer held when they were asked for.
    pub fn count_lost_seconds(&self, stream: Stream, n: u64) {
        self.lost_seconds[stream.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Seconds of a stream skipped so far because the API no longer held them.
    pub fn lost_seconds(&self, stream: Stream) -> u64 {
        self.lost_seconds[stream.index()].load(Ordering::Relaxed)
    }

    /// Counts one state file write that succeeded (`ok`) or failed.
    pub fn count_state_write(&self, ok: bool) {
        self.state_writes[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// State file writes so far: (succeeded, failed).
    pub fn state_writes(&self) -> (u64, u64) {
        (self.state_writes[0].load(Ordering::Relaxed), self.state_writes[1].load(Ordering::Relaxed))
    }

    /// Start of the process, unix seconds.
    pub fn start_time(&self) -> f64 {
        self.start_time
    }

    /// Publishes the latest series census.
    pub fn set_census(&self, census: Census) {
        *self.census.lock().unwrap_or_else(|p| p.into_inner()) = Some(census);
    }

    /// The latest series census, once one was taken.
    pub fn census(&self) -> Option<Census> {
        self.census.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

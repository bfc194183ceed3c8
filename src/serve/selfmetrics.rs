//! The exporter's own health metrics, served on plain `/metrics` (never on `?target=`).
//!
//! Counters live in one process-wide struct that the API client, pollers and scrapes update;
//! process figures are read from `/proc/self` at scrape time. Names are fixed (not subject
//! to `-namespace`) so alerts on the exporter itself do not depend on its configuration.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::exposition::{push_label, write_f64};

/// Every `endpoint` label value, in exposition order.
pub const ENDPOINTS: [&str; 10] = [
    "certificates",
    "datacenters",
    "dictionaries",
    "domains",
    "origins",
    "other",
    "products",
    "realtime",
    "services",
    "tokens",
];

/// Status slots per endpoint: index 0 counts transport errors, 100..=599 HTTP statuses.
const CODES: usize = 600;

/// Process-wide counters.
#[derive(Debug)]
pub struct SelfMetrics {
    /// Request outcomes per endpoint, as plain atomics: a thousand pollers bump these every
    /// second, all at the same moment, so no lock may sit on this path.
    api_requests: Vec<AtomicU64>,
    rate_limit_remaining: AtomicI64,
    pollers: [AtomicU64; 3],
    restarts: AtomicU64,
    scrape_seconds: AtomicU64,
    start_time: f64,
}

/// The process-wide instance.
pub fn global() -> &'static SelfMetrics {
    static GLOBAL: std::sync::OnceLock<SelfMetrics> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| SelfMetrics {
        api_requests: (0..ENDPOINTS.len() * CODES).map(|_| AtomicU64::new(0)).collect(),
        rate_limit_remaining: AtomicI64::new(-1),
        pollers: Default::default(),
        restarts: AtomicU64::new(0),
        scrape_seconds: AtomicU64::new(f64::NAN.to_bits()),
        start_time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
    })
}

/// The `endpoint` label of a request path: which API a request was for.
pub fn endpoint_of(path: &str) -> &'static str {
    let path = path.split_once("://").map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with("/v1/channel/") {
        "realtime"
    } else if path.starts_with("/v1/origins/") {
        "origins"
    } else if path.starts_with("/v1/domains/") {
        "domains"
    } else if path.contains("/dictionary") {
        "dictionaries"
    } else if path.starts_with("/service") {
        "services"
    } else if path.starts_with("/entitled-products/") {
        "products"
    } else if path.starts_with("/datacenters") {
        "datacenters"
    } else if path.starts_with("/tokens/") {
        "tokens"
    } else if path.starts_with("/tls/certificates") {
        "certificates"
    } else {
        "other"
    }
}

impl SelfMetrics {
    /// Counts one request by endpoint and outcome: an HTTP status, or `None` for a request
    /// that got no HTTP answer (label `code="error"`).
    pub fn count_request(&self, endpoint: &str, status: Option<u16>) {
        let e = ENDPOINTS.iter().position(|x| *x == endpoint).unwrap_or(5);
        let code = status.map_or(0, |s| usize::from(s).min(CODES - 1));
        self.api_requests[e * CODES + code].fetch_add(1, Ordering::Relaxed);
    }

    /// Records api.fastly.com's `Fastly-RateLimit-Remaining`.
    pub fn set_rate_limit_remaining(&self, n: i64) {
        self.rate_limit_remaining.store(n, Ordering::Relaxed);
    }

    /// Running pollers of a stream (0 = real-time, 1 = origins, 2 = domains).
    pub fn set_pollers(&self, stream: usize, n: u64) {
        self.pollers[stream].store(n, Ordering::Relaxed);
    }

    /// Counts a poller restarted after a panic.
    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Poller restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records how long the last full scrape took.
    pub fn set_scrape_seconds(&self, s: f64) {
        self.scrape_seconds.store(s.to_bits(), Ordering::Relaxed);
    }

    /// Appends the exposition of all self metrics.
    pub fn render(&self, out: &mut Vec<u8>) {
        let mut requests: Vec<(String, &str, u64)> = Vec::new();
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for code in 0..CODES {
                let n = self.api_requests[e * CODES + code].load(Ordering::Relaxed);
                if n > 0 {
                    requests.push((if code == 0 { "error".to_string() } else { code.to_string() }, endpoint, n));
                }
            }
        }
        requests.sort();
        if !requests.is_empty() {
            let help = "Requests to the Fastly APIs by endpoint and HTTP status (error: no HTTP answer).";
            head(out, "fastly_exporter_api_requests_total", "counter", help);
            for (code, endpoint, n) in &requests {
                line(out, "fastly_exporter_api_requests_total", &[("code", code), ("endpoint", endpoint)], *n as f64);
            }
        }
        let remaining = self.rate_limit_remaining.load(Ordering::Relaxed);
        if remaining >= 0 {
            let help = "Fastly-RateLimit-Remaining of the last api.fastly.com answer.";
            head(out, "fastly_exporter_api_rate_limit_remaining", "gauge", help);
            line(out, "fastly_exporter_api_rate_limit_remaining", &[], remaining as f64);
        }
        head(out, "fastly_exporter_poller_restarts_total", "counter", "Poller threads restarted after a panic.");
        line(out, "fastly_exporter_poller_restarts_total", &[], self.restarts() as f64);
        head(out, "fastly_exporter_pollers", "gauge", "Running poller threads by product.");
        for (i, product) in ["realtime", "origin_inspector", "domain_inspector"].iter().enumerate() {
            line(
                out,
                "fastly_exporter_pollers",
                &[("product", product)],
                self.pollers[i].load(Ordering::Relaxed) as f64,
            );
        }
        let scrape = f64::from_bits(self.scrape_seconds.load(Ordering::Relaxed));
        if !scrape.is_nan() {
            let help = "Duration of the previous full /metrics scrape.";
            head(out, "fastly_exporter_scrape_duration_seconds", "gauge", help);
            line(out, "fastly_exporter_scrape_duration_seconds", &[], scrape);
        }
        if let Some(p) = ProcStats::read() {
            head(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
            line(out, "process_cpu_seconds_total", &[], p.cpu_seconds);
            head(out, "process_open_fds", "gauge", "Number of open file descriptors.");
            line(out, "process_open_fds", &[], p.open_fds as f64);
            head(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            line(out, "process_resident_memory_bytes", &[], p.rss_bytes as f64);
        }
        let help = "Start time of the process since unix epoch in seconds.";
        head(out, "process_start_time_seconds", "gauge", help);
        line(out, "process_start_time_seconds", &[], self.start_time.floor());
    }
}

/// What the HTTP server reports about itself.
#[derive(Clone, Debug, Default)]
pub struct HttpFigures {
    /// Requests whose handler panicked.
    pub panics: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at once at the cap.
    pub rejected: u64,
    /// Idle connections closed to make room at the cap.
    pub evicted: u64,
    /// Failed `accept()` calls.
    pub accept_errors: u64,
    /// Requests refused with 414.
    pub uri_too_long: u64,
    /// Requests refused with 431.
    pub headers_too_large: u64,
    /// Request heads not received in time (408).
    pub header_timeouts: u64,
}

/// Appends the HTTP server's self metrics.
pub fn render_http(out: &mut Vec<u8>, f: &HttpFigures) {
    let counter = |out: &mut Vec<u8>, name: &str, help: &str, v: u64| {
        head(out, name, "counter", help);
        line(out, name, &[], v as f64);
    };
    counter(
        out,
        "fastly_exporter_http_panics_total",
        "HTTP requests whose handler panicked (answered 500, or their connection closed).",
        f.panics,
    );
    head(out, "fastly_exporter_http_connections", "gauge", "Client connections open now.");
    line(out, "fastly_exporter_http_connections", &[], f.open_connections as f64);
    counter(out, "fastly_exporter_http_connections_accepted_total", "Client connections accepted.", f.accepted);
    counter(
        out,
        "fastly_exporter_http_connections_evicted_total",
        "Idle client connections closed to make room at the connection cap.",
        f.evicted,
    );
    counter(
        out,
        "fastly_exporter_http_connections_rejected_total",
        "Client connections closed at once because the cap was reached and none was idle.",
        f.rejected,
    );
    counter(
        out,
        "fastly_exporter_http_accept_errors_total",
        "Failed accept() calls (each is retried).",
        f.accept_errors,
    );
    let name = "fastly_exporter_http_requests_refused_total";
    head(out, name, "counter", "Requests refused before they were read: 408, 414 or 431.");
    line(out, name, &[("reason", "header_timeout")], f.header_timeouts as f64);
    line(out, name, &[("reason", "headers_too_large")], f.headers_too_large as f64);
    line(out, name, &[("reason", "request_line_too_long")], f.uri_too_long as f64);
}

/// Appends the count of invalid values skipped in real-time answers, per stream (in
/// `Stream::ALL` order: real-time, origins, domains).
pub fn render_invalid(out: &mut Vec<u8>, counts: [u64; 3]) {
    let name = "fastly_exporter_invalid_fields_total";
    head(
        out,
        name,
        "counter",
        "Invalid values (negative, fractional counts, out of range, not numbers, null) skipped in real-time API answers; the rest of each answer is merged.",
    );
    for (stream, n) in ["domains", "origins", "realtime"].iter().zip([counts[2], counts[1], counts[0]]) {
        line(out, name, &[("stream", stream)], n as f64);
    }
}

/// Appends the number of distinct datacenter, origin and domain names held.
pub fn render_names(out: &mut Vec<u8>, n: usize) {
    let name = "fastly_exporter_interned_names";
    head(out, name, "gauge", "Distinct datacenter, origin and domain names held by the exporter's rows.");
    line(out, name, &[], n as f64);
}

fn head(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    out.extend_from_slice(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").as_bytes());
}

fn line(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], v: f64) {
    let mut s = String::from(name);
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_label(&mut s, k, val);
        }
        s.push('}');
    }
    s.push(' ');
    out.extend_from_slice(s.as_bytes());
    write_f64(out, v);
    out.push(b'\n');
}

/// Figures of the current process from `/proc/self` (Linux; absent elsewhere).
struct ProcStats {
    cpu_seconds: f64,
    rss_bytes: u64,
    open_fds: usize,
}

impl ProcStats {
    fn read() -> Option<ProcStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
        // Linux reports in clock ticks of 1/100 s and 4 KiB pages on every platform we ship.
        Some(ProcStats { cpu_seconds: ticks / 100.0, rss_bytes: pages * 4096, open_fds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint_of("/v1/channel/x/ts/0"), "realtime");
        assert_eq!(endpoint_of("http://h:1/v1/origins/x/ts/5"), "origins");
        assert_eq!(endpoint_of("/service?page=1"), "services");
        assert_eq!(endpoint_of("/service/x/version/3/dictionary/d/info"), "dictionaries");
        assert_eq!(endpoint_of("/tls/certificates?page[number]=1"), "certificates");
        assert_eq!(endpoint_of("/nope"), "other");
    }

    #[test]
    fn renders_valid_families() {
        let m = global();
        m.count_request("services", Some(200));
        m.count_request("services", Some(200));
        m.count_request("realtime", None);
        m.set_rate_limit_remaining(950);
        let mut out = Vec::new();
        m.render(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("fastly_exporter_api_requests_total{code=\"200\",endpoint=\"services\"} 2\n"), "{text}");
        assert!(text.contains("fastly_exporter_api_requests_total{code=\"error\",endpoint=\"realtime\"} 1\n"));
        assert!(text.contains("fastly_exporter_api_rate_limit_remaining 950\n"));
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
    }
}

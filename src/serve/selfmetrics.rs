//! The exporter's own metrics, rendered at the end of plain `/metrics` (never `?target=`).
//!
//! Every family is declared in the catalog (scope `exporter`) and rendered here through its
//! typed identifier, in catalog order; counts come from the store's [`Counters`], the HTTP
//! server's own figures, and `/proc/self` at scrape time.

use crate::catalog::{ExporterFamily, Scope, Stream, catalog};
use crate::store::Counters;
use crate::util::exposition::{escape_help, push_label, write_f64};
use crate::web::AuthFailureCounts;

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
    /// Requests refused for their body (411, 413).
    pub body_too_large: u64,
    /// Requests dropped because their client left before a worker took them.
    pub dropped: u64,
    /// Requests refused by basic auth.
    pub auth_failures: AuthFailureCounts,
}

/// Everything the self metrics show, gathered at the start of a scrape.
#[derive(Debug)]
pub struct Figures<'a> {
    /// The process-wide counters.
    pub counters: &'a Counters,
    /// The HTTP server's figures.
    pub http: HttpFigures,
    /// Distinct row names held.
    pub names: usize,
}

/// Appends every exporter family, in catalog order.
pub fn render(out: &mut Vec<u8>, f: &Figures<'_>) {
    let proc_stats = ProcStats::read();
    let c = f.counters;
    let census = c.census();
    for &id in ExporterFamily::ALL {
        let fam = catalog().get(Scope::Exporter(id));
        let mut lines: Vec<(Vec<(&str, String)>, f64)> = Vec::new();
        match id {
            ExporterFamily::ApiRequests => {
                let mut reqs: Vec<(String, &str, u64)> = c
                    .requests()
                    .into_iter()
                    .map(|(e, code, n)| (code.map_or_else(|| "error".to_string(), |s| s.to_string()), e.label(), n))
                    .collect();
                reqs.sort();
                for (code, endpoint, n) in reqs {
                    lines.push((vec![("code", code), ("endpoint", endpoint.to_string())], n as f64));
                }
            }
            ExporterFamily::ApiRateLimitRemaining => {
                lines.extend(c.rate_limit_remaining().map(|n| (Vec::new(), n as f64)));
            }
            ExporterFamily::PollerRestarts => lines.push((Vec::new(), c.restarts() as f64)),
            ExporterFamily::Pollers => {
                for (stream, product) in [
                    (Stream::Realtime, "realtime"),
                    (Stream::Origin, "origin_inspector"),
                    (Stream::Domain, "domain_inspector"),
                ] {
                    lines.push((vec![("product", product.to_string())], c.pollers(stream) as f64));
                }
            }
            ExporterFamily::ScrapeDuration => lines.extend(c.scrape_seconds().map(|s| (Vec::new(), s))),
            ExporterFamily::ProcessCpu => lines.extend(proc_stats.as_ref().map(|p| (Vec::new(), p.cpu_seconds))),
            ExporterFamily::ProcessOpenFds => {
                lines.extend(proc_stats.as_ref().map(|p| (Vec::new(), p.open_fds as f64)))
            }
            ExporterFamily::ProcessResidentMemory => {
                lines.extend(proc_stats.as_ref().map(|p| (Vec::new(), p.rss_bytes as f64)));
            }
            ExporterFamily::ProcessStartTime => lines.push((Vec::new(), c.start_time().floor())),
            ExporterFamily::HttpPanics => lines.push((Vec::new(), f.http.panics as f64)),
            ExporterFamily::HttpConnections => lines.push((Vec::new(), f.http.open_connections as f64)),
            ExporterFamily::HttpConnectionsAccepted => lines.push((Vec::new(), f.http.accepted as f64)),
            ExporterFamily::HttpConnectionsEvicted => lines.push((Vec::new(), f.http.evicted as f64)),
            ExporterFamily::HttpConnectionsRejected => lines.push((Vec::new(), f.http.rejected as f64)),
            ExporterFamily::HttpAcceptErrors => lines.push((Vec::new(), f.http.accept_errors as f64)),
            ExporterFamily::HttpRequestsRefused => {
                for (reason, n) in [
                    ("body_too_large", f.http.body_too_large),
                    ("header_timeout", f.http.header_timeouts),
                    ("headers_too_large", f.http.headers_too_large),
                    ("request_line_too_long", f.http.uri_too_long),
                ] {
                    lines.push((vec![("reason", reason.to_string())], n as f64));
                }
            }
            ExporterFamily::HttpRequestsDropped => lines.push((Vec::new(), f.http.dropped as f64)),
            ExporterFamily::HttpAuthFailures => {
                let a = f.http.auth_failures;
                for (reason, n) in [("too_many_checks", a.too_many_checks), ("wrong_credentials", a.wrong_credentials)]
                {
                    lines.push((vec![("reason", reason.to_string())], n as f64));
                }
            }
            ExporterFamily::InvalidFields => {
                for (stream, label) in STREAMS {
                    lines.push((stream_label(label), c.invalid(stream) as f64));
                }
            }
            ExporterFamily::InternedNames => lines.push((Vec::new(), f.names as f64)),
            ExporterFamily::Series => {
                for (stream, label) in STREAMS {
                    lines.extend(census.as_ref().map(|c| (stream_label(label), c.series[stream.index()] as f64)));
                }
            }
            ExporterFamily::SeriesByMode => {
                for (i, mode) in ["aggregate", "datacenter", "group"].into_iter().enumerate() {
                    // by_mode is indexed datacenter, group, aggregate; labels sort aggregate first.
                    let m = [2, 0, 1][i];
                    for (stream, label) in STREAMS {
                        let n = census.as_ref().and_then(|c| c.by_mode[stream.index()][m]);
                        let labels = vec![("mode", mode.to_string()), ("stream", label.to_string())];
                        lines.extend(n.map(|n| (labels, n as f64)));
                    }
                }
            }
            ExporterFamily::Datacenters => {
                if let Some(p) = census.as_ref().and_then(|c| c.pops) {
                    for (state, n) in [("filtered", p.filtered), ("listed", p.listed), ("unlisted", p.unlisted)] {
                        lines.push((vec![("state", state.to_string())], n as f64));
                    }
                }
            }
            ExporterFamily::LostSeconds => {
                for (stream, label) in
                    [(Stream::Domain, "domains"), (Stream::Origin, "origins"), (Stream::Realtime, "realtime")]
                {
                    lines.push((vec![("stream", label.to_string())], c.lost_seconds(stream) as f64));
                }
            }
            ExporterFamily::StateWrites => {
                let (ok, failed) = c.state_writes();
                lines.push((vec![("result", "error".to_string())], failed as f64));
                lines.push((vec![("result", "success".to_string())], ok as f64));
            }
        }
        if lines.is_empty() {
            continue;
        }
        let name = fam.name;
        out.extend_from_slice(
            format!("# HELP {name} {}\n# TYPE {name} {}\n", escape_help(fam.help), fam.kind.as_str()).as_bytes(),
        );
        for (labels, v) in lines {
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
    }
}

/// The streams with their `stream` label values, in label order (as `invalid_fields_total`).
const STREAMS: [(Stream, &str); 3] =
    [(Stream::Domain, "domains"), (Stream::Origin, "origins"), (Stream::Realtime, "realtime")];

fn stream_label(label: &str) -> Vec<(&'static str, String)> {
    vec![("stream", label.to_string())]
}

/// Figures of the current process from `/proc/self` (Linux; absent elsewhere).
#[derive(Debug)]
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
        let rss_bytes = rss_bytes()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
        // Linux reports in clock ticks of 1/100 s on every platform we ship.
        Some(ProcStats { cpu_seconds: ticks / 100.0, rss_bytes, open_fds })
    }
}

/// The process' resident memory from `/proc/self/statm` (Linux; 4 KiB pages on every platform
/// we ship), as `process_resident_memory_bytes` reports it.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Endpoint;

    #[test]
    fn renders_every_family_in_catalog_order() {
        let c = Counters::default();
        c.count_request(Endpoint::Services, Some(200));
        c.count_request(Endpoint::Services, Some(200));
        c.count_request(Endpoint::Realtime, None);
        c.set_rate_limit_remaining(950);
        c.count_invalid(Stream::Origin, 3);
        c.count_lost_seconds(Stream::Realtime, 40);
        c.count_state_write(true);
        c.count_state_write(false);
        c.count_state_write(true);
        let mut out = Vec::new();
        render(&mut out, &Figures { counters: &c, http: HttpFigures { panics: 2, ..Default::default() }, names: 7 });
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("fastly_exporter_api_requests_total{code=\"200\",endpoint=\"services\"} 2\n"), "{text}");
        assert!(text.contains("fastly_exporter_api_requests_total{code=\"error\",endpoint=\"realtime\"} 1\n"));
        assert!(text.contains("fastly_exporter_api_rate_limit_remaining 950\n"));
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
        assert!(text.contains("fastly_exporter_http_panics_total 2\n"));
        assert!(text.contains("fastly_exporter_invalid_fields_total{stream=\"origins\"} 3\n"));
        assert!(text.contains("fastly_exporter_interned_names 7\n"));
        assert!(text.contains("fastly_exporter_lost_seconds_total{stream=\"realtime\"} 40\n"));
        assert!(text.contains("fastly_exporter_lost_seconds_total{stream=\"origins\"} 0\n"));
        assert!(text.contains("fastly_exporter_state_writes_total{result=\"success\"} 2\n"));
        assert!(text.contains("fastly_exporter_state_writes_total{result=\"error\"} 1\n"));
        assert!(!text.contains("fastly_exporter_scrape_duration_seconds"), "no scrape yet: no series");
        assert!(!text.contains("fastly_exporter_series"), "no census yet: no series");
        c.set_census(crate::store::Census {
            series: [287, 0, 63],
            by_mode: [[Some(2870), Some(861), Some(287)], [None; 3], [None, None, Some(63)]],
            pops: None,
        });
        let mut out = Vec::new();
        render(&mut out, &Figures { counters: &c, http: HttpFigures::default(), names: 0 });
        let census = String::from_utf8(out).unwrap();
        assert!(census.contains("fastly_exporter_series{stream=\"realtime\"} 287\n"), "{census}");
        assert!(census.contains("fastly_exporter_series{stream=\"origins\"} 0\n"));
        assert!(census.contains("fastly_exporter_series_by_mode{mode=\"group\",stream=\"realtime\"} 861\n"));
        assert!(census.contains("fastly_exporter_series_by_mode{mode=\"aggregate\",stream=\"domains\"} 63\n"));
        assert!(!census.contains("mode=\"datacenter\",stream=\"domains\""), "not derivable: no series");
        assert!(!census.contains("fastly_exporter_datacenters{"), "no placement step: no POP states");
        let order: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        let catalog_order: Vec<&str> =
            ExporterFamily::ALL.iter().map(|id| id.name()).filter(|n| order.contains(n)).collect();
        assert_eq!(order, catalog_order);
    }
}

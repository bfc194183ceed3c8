//! `/status.json`: the status page's data for scripts and dashboards.
//!
//! The field names and state strings are a contract (issue 20): `version`, `uptime_seconds`,
//! `ready`, `ready_reason`, and per service `id`, `name`, `version` and `streams`, whose keys
//! are `realtime`, `origins` and `domains` (a stream that is not polled is absent), each with
//! `state`, `last_success_seconds_ago`, `last_error` and `series`. The header's other facts
//! follow under their own names. Seconds are rounded to milliseconds.

use serde::Serialize;

use super::{STREAMS, ServiceRow, Snapshot, StreamRow};
use crate::util::civil::rfc3339;

#[derive(Serialize)]
struct Status<'a> {
    version: &'a str,
    revision: &'a str,
    uptime_seconds: f64,
    ready: bool,
    ready_reason: &'a str,
    service_list: ServiceList<'a>,
    /// `null` until the token was read.
    token: Option<Token>,
    /// `null` when the datacenter list was not fetched.
    datacenters: Option<usize>,
    series: u64,
    last_scrape: Option<LastScrape>,
    rss_bytes: Option<u64>,
    counts: Counts,
    services: Vec<Service<'a>>,
}

#[derive(Serialize)]
struct ServiceList<'a> {
    last_success_seconds_ago: Option<f64>,
    last_error: Option<ListError<'a>>,
}

#[derive(Serialize)]
struct ListError<'a> {
    message: &'a str,
    seconds_ago: f64,
}

#[derive(Serialize)]
struct Token {
    /// RFC 3339, `null` when the token never expires.
    expires_at: Option<String>,
    expires_in_seconds: Option<f64>,
}

#[derive(Serialize)]
struct LastScrape {
    duration_seconds: f64,
    bytes: u64,
    seconds_ago: f64,
}

#[derive(Serialize)]
struct Counts {
    ok: usize,
    failing: usize,
    starting: usize,
}

#[derive(Serialize)]
struct Service<'a> {
    id: &'a str,
    name: &'a str,
    /// The active version; `null` when the service list did not say (`-service` IDs it lacks).
    version: Option<i64>,
    streams: Streams,
}

#[derive(Serialize)]
struct Streams {
    #[serde(skip_serializing_if = "Option::is_none")]
    realtime: Option<Stream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origins: Option<Stream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domains: Option<Stream>,
}

#[derive(Serialize)]
struct Stream {
    state: &'static str,
    last_success_seconds_ago: Option<f64>,
    last_error: Option<PollError>,
    series: u64,
    /// While failing or backing off: when the poller asks again.
    retry_in_seconds: Option<f64>,
}

#[derive(Serialize)]
struct PollError {
    /// HTTP status; `null` when no answer came.
    status: Option<u16>,
    message: String,
    seconds_ago: f64,
}

/// Seconds rounded to milliseconds (never negative: clocks of different threads).
fn secs(s: f64) -> f64 {
    (s.max(0.0) * 1000.0).round() / 1000.0
}

/// The document, compact.
pub fn render(snap: &Snapshot) -> String {
    let now = snap.now;
    let doc = Status {
        version: &snap.version,
        revision: &snap.revision,
        uptime_seconds: secs(snap.uptime),
        ready: snap.ready.0,
        ready_reason: &snap.ready.1,
        service_list: ServiceList {
            last_success_seconds_ago: snap.list.last_success.map(|t| secs(now - t)),
            last_error: snap
                .list
                .last_error
                .as_ref()
                .map(|(m, at)| ListError { message: m, seconds_ago: secs(now - at) }),
        },
        token: snap.token_expiry.map(|exp| Token {
            expires_at: exp.map(rfc3339),
            expires_in_seconds: exp.map(|t| ((t - now) * 1000.0).round() / 1000.0),
        }),
        datacenters: (snap.datacenters > 0).then_some(snap.datacenters),
        series: snap.series,
        last_scrape: snap.last_scrape.map(|(s, bytes, at)| LastScrape {
            duration_seconds: secs(s),
            bytes,
            seconds_ago: secs(now - at),
        }),
        rss_bytes: snap.rss,
        counts: Counts { ok: snap.counts.ok, failing: snap.counts.failing, starting: snap.counts.starting },
        services: snap.services.iter().map(|r| service(r, now)).collect(),
    };
    debug_assert_eq!(STREAMS.map(|(_, k)| k), ["realtime", "origins", "domains"]);
    serde_json::to_string(&doc).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

fn service(r: &ServiceRow, now: f64) -> Service<'_> {
    let [realtime, origins, domains] = r.streams.each_ref().map(|s| s.as_ref().map(|s| stream(s, now)));
    Service {
        id: &r.id,
        name: &r.meta.name,
        version: r.meta.version.parse().ok(),
        streams: Streams { realtime, origins, domains },
    }
}

fn stream(s: &StreamRow, now: f64) -> Stream {
    let st = &s.status;
    Stream {
        state: st.state.label(),
        last_success_seconds_ago: st.last_success.map(|t| secs(now - t)),
        last_error: st.last_error.as_ref().map(|e| PollError {
            status: e.status,
            message: e.message.clone(),
            seconds_ago: secs(now - e.at),
        }),
        series: s.series,
        retry_in_seconds: st.retry_at.map(|t| secs(t - now)),
    }
}

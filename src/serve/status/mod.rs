//! The status page (`/`) and `/status.json`: at a glance, which service or stream is failing
//! and why, and how the exporter itself is doing.
//!
//! One [`Snapshot`] is gathered from the store per request (each stream's status record and
//! row count, the account snapshot, readiness, the exporter's counters); `html.rs` and
//! `json.rs` only format it. Gathering takes one short lock per (service, stream) and never
//! holds two at once, so a page costs the pollers nothing noticeable.

mod html;
mod json;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::Stream;
use crate::store::{ListRefresh, ServiceMeta, Store, StreamState, StreamStatus};

use super::render::Plan;

pub use html::{Query, content_security_policy, render as render_html};
pub use json::render as render_json;

/// The streams in page order, with the names the page and `/status.json` give them.
pub const STREAMS: [(Stream, &str); 3] =
    [(Stream::Realtime, "realtime"), (Stream::Origin, "origins"), (Stream::Domain, "domains")];

/// How a service is doing as a whole: the worst of its polled streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// A stream is failing or backing off.
    Failing,
    /// None failing, a stream has not answered yet.
    Starting,
    /// Every polled stream answers (or is not entitled, which is the account's choice).
    Ok,
}

impl Verdict {
    /// The word the page and the counts use.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Failing => "failing",
            Verdict::Starting => "starting",
            Verdict::Ok => "ok",
        }
    }
}

/// One polled stream of one service.
#[derive(Debug)]
pub struct StreamRow {
    /// What its poller last reported.
    pub status: StreamStatus,
    /// Sample lines its rows render.
    pub series: u64,
}

/// One exported service.
#[derive(Debug)]
pub struct ServiceRow {
    /// Fastly service ID.
    pub id: Arc<str>,
    /// Name and version.
    pub meta: Arc<ServiceMeta>,
    /// The worst of its streams.
    pub verdict: Verdict,
    /// Per stream, in [`STREAMS`] order; `None` when not polled.
    pub streams: [Option<StreamRow>; 3],
}

/// Services per verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Services with every polled stream answering.
    pub ok: usize,
    /// Services with a stream failing or backing off.
    pub failing: usize,
    /// Services waiting for a first answer.
    pub starting: usize,
}

/// Everything the page shows, read at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Unix time of the snapshot; every age on the page is relative to it.
    pub now: f64,
    /// Exporter version.
    pub version: String,
    /// Git revision of the build.
    pub revision: String,
    /// Seconds since the process started.
    pub uptime: f64,
    /// What `/readyz` says: ready, and why not.
    pub ready: (bool, String),
    /// The service-list refresh.
    pub list: ListRefresh,
    /// `None` until the token was read; then its expiry (`None`: never expires).
    pub token_expiry: Option<Option<f64>>,
    /// Datacenters the API listed (0 when not fetched).
    pub datacenters: usize,
    /// Sample lines a full `/metrics` renders now, the exporter's own families aside.
    pub series: u64,
    /// The last full scrape: seconds, bytes, unix end time.
    pub last_scrape: Option<(f64, u64, f64)>,
    /// Resident memory of the process.
    pub rss: Option<u64>,
    /// Services, failing first (then starting, then ok), each group by name.
    pub services: Vec<ServiceRow>,
    /// Services per verdict.
    pub counts: Counts,
}

impl Snapshot {
    /// Reads everything the page shows from the store.
    pub fn gather(store: &Store, plan: &Plan) -> Snapshot {
        let now = unix_now();
        let account = store.account();
        let services = store.registry.snapshot();
        let mut series = plan.other_series(&services, &account);
        let mut rows: Vec<ServiceRow> = services
            .iter()
            .map(|svc| {
                let streams = STREAMS.map(|(stream, _)| {
                    let status = svc.status(stream).get()?;
                    // A stream catching up after a restore is not rendered (see `StreamTable::hidden`).
                    let table = svc.table(stream);
                    let rows = if table.hidden() { 0 } else { table.rows().len() as u64 };
                    drop(table);
                    let stream_series = rows * plan.series_per_row(stream);
                    Some(StreamRow { status, series: stream_series })
                });
                series += streams.iter().flatten().map(|s| s.series).sum::<u64>();
                ServiceRow { id: svc.id.clone(), meta: svc.meta(), verdict: verdict(&streams), streams }
            })
            .collect();
        rows.sort_by_cached_key(|r| (r.verdict, r.meta.name.to_lowercase(), r.id.clone()));
        let mut counts = Counts::default();
        for r in &rows {
            match r.verdict {
                Verdict::Failing => counts.failing += 1,
                Verdict::Starting => counts.starting += 1,
                Verdict::Ok => counts.ok += 1,
            }
        }
        Snapshot {
            now,
            version: account.build.version.clone(),
            revision: account.build.revision.clone(),
            uptime: (now - store.counters.start_time()).max(0.0),
            ready: store.health.get(),
            list: store.health.list_refresh(),
            token_expiry: account.token.as_ref().map(|t| t.expires_at),
            datacenters: account.datacenters.len(),
            series,
            last_scrape: store.counters.last_scrape(),
            rss: super::selfmetrics::rss_bytes(),
            services: rows,
            counts,
        }
    }
}

/// The worst state among a service's polled streams.
fn verdict(streams: &[Option<StreamRow>; 3]) -> Verdict {
    let states = || streams.iter().flatten().map(|s| s.status.state);
    if states().any(StreamState::is_failing) {
        Verdict::Failing
    } else if states().any(|s| s == StreamState::Starting) {
        Verdict::Starting
    } else {
        Verdict::Ok
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests;

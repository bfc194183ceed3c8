//! A fake Fastly API (api.fastly.com and rt.fastly.com on one port).
//!
//! It exists so the exporter can be tested end to end, demonstrated (`fake-fastly` binary)
//! and benchmarked without a Fastly account. It is its own crate and does not depend on the
//! exporter: a test double that shared parsing or formatting code with the exporter would
//! reproduce the exporter's bugs instead of exposing them.
//!
//! Threads: `workers` threads take requests from tiny_http; answers that must wait
//! (long-polls, scripted delays) go into one delay queue served by a timer thread, which
//! hands due answers to a small responder pool. Nothing is spawned per held request, so
//! thousands of concurrent long-polls cost only heap entries. (tiny_http itself still
//! reads each open connection on its own pool thread; that is outside our control.)
//!
//! Canned routes and paging: bodies given to [`FakeState::set_route_pages`] may contain
//! the placeholders `{{NEXT}}` (replaced by the absolute URL of the next page, or the
//! quoted form `"{{NEXT}}"` by `null` on the last page) and `{{BASE}}` (the fake's base
//! URL). That is how `/tls/certificates` pages point `links.next` back at the fake.
//!
//! History: like rt.fastly.com, a [`StreamMode::Generated`] stream keeps the last
//! [`FakeConfig::history_secs`] seconds (120) and answers a past `ts` with the seconds since
//! then, at most [`FakeConfig::batch_secs`] per answer; a `ts` older than the history is
//! answered from the oldest second kept. [`FakeState::served`] says which seconds were written
//! in full, [`FakeState::generated_truth`] what any range of seconds adds up to.
//!
//! Fault injection: [`StreamMode::Faulty`] serves generated data at full speed with random
//! failures (truncated, malformed or oversized bodies, error statuses, resets, stalls, 429s)
//! and keeps the ground truth of what was delivered in full ([`FakeState::delivered`]), so
//! a test can demand that the exporter's counters equal it exactly.

mod faults;
mod fields;
mod history;
mod payload;
mod routes;
mod server;
mod services;
mod streams;
mod tls;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use history::Served;
pub use payload::{GROUPS, datacenter_codes, datacenters_json, datacenters_json_in, generated_body, sample_bodies};
pub use tls::TlsIdentity;

/// How many requests [`FakeState::requests`] keeps: enough for any test, bounded so a
/// long benchmark run does not grow without limit.
const LOG_CAP: usize = 100_000;

/// One service as listed by `GET /service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeService {
    /// Service id (Fastly uses 22 alphanumeric characters; any string works here).
    pub id: String,
    /// Human name; exported as the `service_name` label.
    pub name: String,
    /// Active version; the exporter uses it to build dictionary URLs.
    pub version: i64,
}

impl FakeService {
    /// Shorthand for tests that build many services inline.
    pub fn new(id: impl Into<String>, name: impl Into<String>, version: i64) -> FakeService {
        FakeService { id: id.into(), name: name.into(), version }
    }
}

/// The three rt.fastly.com streams, each with its own [`StreamMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `/v1/channel/{service}/ts/{ts}`: the real-time analytics stream.
    Realtime = 0,
    /// `/v1/origins/{service}/ts/{ts}`: Origin Inspector.
    Origins = 1,
    /// `/v1/domains/{service}/ts/{ts}`: Domain Inspector.
    Domains = 2,
}

impl Stream {
    /// Every stream, in index order.
    pub const ALL: [Stream; 3] = [Stream::Realtime, Stream::Origins, Stream::Domains];

    /// The stream's path segment: `/v1/{path}/{service}/ts/{ts}`.
    pub fn path(self) -> &'static str {
        match self {
            Stream::Realtime => "channel",
            Stream::Origins => "origins",
            Stream::Domains => "domains",
        }
    }
}

/// Parameters of a generated stream. Shared by all services so memory does not scale
/// with the service count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenSpec {
    /// Datacenters per record (real POP codes first, then synthetic ones).
    pub datacenters: usize,
    /// Origins (or domains) per datacenter; ignored by the realtime stream.
    pub entities: usize,
    /// PRNG seed, so runs are reproducible.
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> GenSpec {
        GenSpec { datacenters: 10, entities: 2, seed: 1 }
    }
}

/// One scripted answer of a [`StreamMode::Script`] stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response body, sent as is.
    pub body: Vec<u8>,
    /// How long the fake waits before answering (held in the delay queue, not a thread).
    pub delay: Duration,
    /// Extra response headers; `Content-Type: application/json` is added unless present.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// An immediate answer with `status` and `body`, the common case in tests.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, body: body.into(), delay: Duration::ZERO, headers: Vec::new() }
    }

    /// Same reply, answered after `delay` (to exercise client timeouts).
    pub fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Same reply with one more response header (e.g. `Retry-After`).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// One failure a [`StreamMode::Faulty`] stream can inject into a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 200 whose `Content-Length` is the whole body, but only part of it is sent before
    /// the connection is closed.
    Truncated,
    /// A complete HTTP 200 whose body is JSON cut off in the middle.
    Malformed,
    /// HTTP 200 with a valid JSON body (the real data plus padding) of at least
    /// [`FaultSpec::oversize_bytes`]: pair it with an exporter `-rt-max-body` below that.
    Oversize,
    /// This status, with an empty body (always for 401/403) or a JSON error.
    Status(u16),
    /// The connection is closed without an answer.
    Reset,
    /// The poll is held this long (in the delay queue), then closed without an answer.
    Stall(Duration),
    /// HTTP 429 with `Retry-After: <secs>`.
    RateLimited(u64),
}

impl Fault {
    /// Name used by [`FakeState::faults_injected`]: `truncated`, `malformed`, `oversize`,
    /// `status_503`, `reset`, `stall`, `rate_limited`.
    pub fn label(&self) -> String {
        match self {
            Fault::Truncated => "truncated".into(),
            Fault::Malformed => "malformed".into(),
            Fault::Oversize => "oversize".into(),
            Fault::Status(code) => format!("status_{code}"),
            Fault::Reset => "reset".into(),
            Fault::Stall(_) => "stall".into(),
            Fault::RateLimited(_) => "rate_limited".into(),
        }
    }
}

/// Parameters of a [`StreamMode::Faulty`] stream.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// The generated data (datacenters, seed) of clean answers.
    pub data: GenSpec,
    /// Probability that a poll gets a fault (change it later with
    /// [`FakeState::set_fault_rate`]).
    pub rate: f64,
    /// Faults to draw from, uniformly.
    pub kinds: Vec<Fault>,
    /// Smallest body of an [`Fault::Oversize`] answer.
    pub oversize_bytes: usize,
    /// Clean answers of one service are at least this far apart (they are not paced by the
    /// wall clock: `ts` advances as fast as this allows).
    pub min_interval: Duration,
    /// Seed of the fault draws.
    pub seed: u64,
}

impl FaultSpec {
    /// Faults at `rate`, drawn from `kinds`; default data, 256 KiB oversize bodies and at most
    /// one clean answer per 100 ms per service.
    pub fn new(rate: f64, kinds: Vec<Fault>) -> FaultSpec {
        FaultSpec {
            data: GenSpec::default(),
            rate,
            kinds,
            oversize_bytes: 256 << 10,
            min_interval: Duration::from_millis(100),
            seed: 7,
        }
    }
}

/// Sums of one datacenter (for origins/domains: one `datacenter/entity`) over every `ts`
/// delivered once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DcTotals {
    /// Sum of every numeric JSON field, by key (added in delivery order).
    pub fields: BTreeMap<String, f64>,
    /// Total count of all `miss_histogram` entries.
    pub miss_histogram_count: u64,
    /// `miss_histogram` merged: milliseconds → count.
    pub miss_histogram: BTreeMap<u64, u64>,
}

/// What a [`StreamMode::Faulty`] stream delivered to one service: the ground truth.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Unique `ts` whose clean answer was written in full, ascending.
    pub ts: Vec<u64>,
    /// Clean answers written in full again for an already delivered `ts` (a correct exporter
    /// never re-asks one, so this stays 0).
    pub redelivered: u64,
    /// Per datacenter (or `datacenter/entity`).
    pub datacenters: BTreeMap<String, DcTotals>,
}

/// How one stream answers polls.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamMode {
    /// Every poll gets 404, as for a product the account is not entitled to.
    NotFound,
    /// Polls with `ts` 0 (a poller's first) get `body` at once; every other poll is held
    /// `hold`, then answered with an empty "No data available" envelope echoing the polled
    /// `ts`. A body without `Timestamp` makes the client re-ask `ts` 0 and get it again.
    /// Lets tests feed a fixture exactly once.
    FixtureThenHold {
        /// The body of the first answer (e.g. `tests/fixtures/realtime.json`).
        body: Vec<u8>,
        /// How long later polls are held.
        hold: Duration,
    },
    /// A live-looking stream: one record per wall-clock second, held like Fastly's
    /// long-poll until the requested second has passed. A `ts` in the past is answered at
    /// once with the seconds since then (see [`FakeConfig::history_secs`]); `ts` 0 with the
    /// latest complete second.
    Generated(GenSpec),
    /// The n-th poll of a (stream, service) gets the n-th reply; past the end, polls are
    /// held until shutdown. For scripting errors, backoff and timeouts.
    Script(Vec<Reply>),
    /// Generated data answered at once (`Timestamp` = polled `ts` + 1, identical for a
    /// re-asked `ts`), with random faults; see [`FaultSpec`] and [`FakeState::delivered`].
    Faulty(FaultSpec),
}

/// Settings for [`FakeFastly::start`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Address to bind, `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// When set, every request must carry `Fastly-Key: <token>` or gets an empty 401.
    pub token: Option<String>,
    /// Initial service list (change it later with [`FakeState::set_services`]).
    pub services: Vec<FakeService>,
    /// Largest page of `GET /service`, whatever `per_page` asks for.
    pub page_size: usize,
    /// Mode of `/v1/channel/...`.
    pub realtime: StreamMode,
    /// Mode of `/v1/origins/...`.
    pub origins: StreamMode,
    /// Mode of `/v1/domains/...`.
    pub domains: StreamMode,
    /// Threads taking requests off the listener (and as many responder threads).
    pub workers: usize,
    /// Serve HTTPS with this identity (its CA is what clients must trust).
    pub tls: Option<TlsIdentity>,
    /// Seconds of history a `Generated` stream keeps (rt.fastly.com: 120): a `ts` older than
    /// that is answered from the oldest second kept. At least 1.
    pub history_secs: u64,
    /// Most seconds in one answer to a past `ts`; the client asks again from where the
    /// answer's `Timestamp` says. At least 1.
    pub batch_secs: u64,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            listen: "127.0.0.1:0".to_string(),
            token: None,
            services: Vec::new(),
            page_size: 1000,
            realtime: StreamMode::Generated(GenSpec::default()),
            origins: StreamMode::Generated(GenSpec::default()),
            domains: StreamMode::Generated(GenSpec::default()),
            workers: 8,
            tls: None,
            history_secs: 120,
            batch_secs: 60,
        }
    }
}

/// One request as received, for assertions in tests.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path plus query string exactly as sent.
    pub path_and_query: String,
    /// All request headers in arrival order.
    pub headers: Vec<(String, String)>,
    /// When the fake received it.
    pub at: Instant,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive), since header casing varies by client.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the fake down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything the running server reads and tests may change while it runs.
pub struct FakeState {
    base_url: String,
    /// `http` or `https`.
    scheme: &'static str,
    page_size: usize,
    token: RwLock<Option<String>>,
    services: RwLock<Arc<services::ServiceSet>>,
    routes: RwLock<HashMap<String, Arc<routes::Route>>>,
    modes: RwLock<[Arc<streams::ModeRt>; 3]>,
    service_replies: RwLock<HashMap<(Stream, String), Reply>>,
    script_pos: Mutex<HashMap<(Stream, String), usize>>,
    log: Mutex<VecDeque<RecordedRequest>>,
    total: AtomicU64,
    /// Port the fake listens on (to find the socket of a connection to close).
    port: u16,
    tallies: faults::Tallies,
    injected: Mutex<HashMap<Stream, BTreeMap<String, u64>>>,
    settled: faults::Settled,
    history_secs: u64,
    batch_secs: u64,
    served: history::ServedBook,
    /// Last second a `Generated` stream serves (`u64::MAX`: no limit).
    until: AtomicU64,
}

impl FakeState {
    /// Replaces the service list; the next `GET /service` and stream polls see it.
    /// Tests use it to simulate deletions, renames and version bumps between refreshes.
    pub fn set_services(&self, list: Vec<FakeService>) {
        let set = Arc::new(services::ServiceSet::new(list));
        *self.services.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    /// The current service list.
    pub fn services(&self) -> Vec<FakeService> {
        self.service_set().list.clone()
    }

    /// Changes (or removes, with `None`) the required `Fastly-Key`, e.g. to simulate a
    /// revoked token mid-run.
    pub fn set_token(&self, token: Option<String>) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Canned answer for `GET path` (query ignored). Canned routes take precedence over the
    /// built-in `/service` and stream handlers, so tests can make those fail too.
    pub fn set_route(&self, path: &str, status: u16, body: Vec<u8>) {
        self.insert_route(path, routes::Route::new(status, vec![body]));
    }

    /// Canned paged answer (HTTP 200): page k (from `page[number]` or `page`, default 1) is
    /// `pages[k-1]`; beyond the last page → 400. Bodies may use `{{NEXT}}` / `{{BASE}}`.
    pub fn set_route_pages(&self, path: &str, pages: Vec<Vec<u8>>) {
        self.insert_route(path, routes::Route::new(200, pages));
    }

    /// Canned answer for `GET path` (query ignored) with the status, body, extra headers
    /// and delay of `reply`, e.g. a `/service` answering 429 with `Retry-After`, or 200 with
    /// `Fastly-RateLimit-Remaining`. Delayed answers wait in the delay queue.
    pub fn set_route_reply(&self, path: &str, reply: Reply) {
        let mut route = routes::Route::new(reply.status, vec![reply.body]);
        route.headers = reply.headers;
        route.delay = reply.delay;
        self.insert_route(path, route);
    }

    /// Removes a canned route, so the path falls back to built-in handling or 404.
    pub fn remove_route(&self, path: &str) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).remove(path);
    }

    fn insert_route(&self, path: &str, route: routes::Route) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).insert(path.to_string(), Arc::new(route));
    }

    /// Switches a stream's behaviour at runtime (resets that stream's script positions).
    /// Generated payloads are built here, before the switch, so polls never wait on them.
    pub fn set_stream_mode(&self, stream: Stream, mode: StreamMode) {
        let rt = Arc::new(streams::ModeRt::build(stream, mode));
        self.modes.write().unwrap_or_else(|e| e.into_inner())[stream as usize] = rt;
        lock(&self.script_pos).retain(|(s, _), _| *s != stream);
    }

    /// Makes every poll of one service's stream get `reply` (after its delay), whatever the
    /// stream's mode; `None` gives the service back to the mode. For one service failing
    /// among healthy ones (a status page's failing row).
    pub fn set_service_reply(&self, stream: Stream, service_id: &str, reply: Option<Reply>) {
        let mut map = self.service_replies.write().unwrap_or_else(|e| e.into_inner());
        match reply {
            Some(r) => map.insert((stream, service_id.to_string()), r),
            None => map.remove(&(stream, service_id.to_string())),
        };
    }

    fn service_reply(&self, stream: Stream, service_id: &str) -> Option<Reply> {
        let map = self.service_replies.read().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(&(stream, service_id.to_string())).cloned()
    }

    /// Changes the fault probability of a [`StreamMode::Faulty`] stream for later polls
    /// (no effect on other modes). The ground truth is kept.
    pub fn set_fault_rate(&self, stream: Stream, rate: f64) {
        if let streams::ModeRt::Faulty(f) = &*self.mode(stream) {
            f.set_rate(rate);
        }
    }

    /// The ground truth of a [`StreamMode::Faulty`] stream for one service: every `ts` whose
    /// clean answer was written in full (each counted once) and the per-datacenter sums of
    /// their fields. It survives mode changes.
    pub fn delivered(&self, stream: Stream, service_id: &str) -> Delivered {
        lock(&self.tallies).get(&(stream, service_id.to_string())).map(|t| t.summary()).unwrap_or_default()
    }

    /// The complete bodies behind [`FakeState::delivered`], by ascending `ts`, for checks
    /// that need per-record values.
    pub fn delivered_bodies(&self, stream: Stream, service_id: &str) -> Vec<(u64, Vec<u8>)> {
        lock(&self.tallies).get(&(stream, service_id.to_string())).map(|t| t.bodies()).unwrap_or_default()
    }

    /// How many polls of a [`StreamMode::Faulty`] stream got each fault ([`Fault::label`]),
    /// plus `clean` for those answered with data (whether or not fully written).
    pub fn faults_injected(&self, stream: Stream) -> BTreeMap<String, u64> {
        lock(&self.injected).get(&stream).cloned().unwrap_or_default()
    }

    /// Like [`FakeState::faults_injected`], counting only answers already acted on (written,
    /// cut off or closed): a stalled poll is injected when decided but settled only when its
    /// connection is closed. When both agree, nothing decided is still pending, and an exporter
    /// must have seen exactly these outcomes.
    pub fn faults_settled(&self, stream: Stream) -> BTreeMap<String, u64> {
        lock(&self.settled).get(&stream).cloned().unwrap_or_default()
    }

    /// The seconds of a [`StreamMode::Generated`] stream written in full to clients asking
    /// about one service, and how many of them were written again.
    pub fn served(&self, stream: Stream, service_id: &str) -> Served {
        lock(&self.served).get(&(stream, service_id.to_string())).cloned().unwrap_or_default()
    }

    /// What the seconds `first..=last` of a [`StreamMode::Generated`] stream add up to for one
    /// service: the ground truth of an exporter that merged exactly those seconds (whatever
    /// was served). Empty for other modes.
    pub fn generated_truth(&self, stream: Stream, service_id: &str, first: u64, last: u64) -> Delivered {
        match &*self.mode(stream) {
            streams::ModeRt::Generated(pool) => history::truth(pool, streams::service_hash(service_id), first, last),
            _ => Delivered::default(),
        }
    }

    /// The bodies behind [`FakeState::generated_truth`], one record each, by second.
    pub fn generated_bodies(&self, stream: Stream, service_id: &str, first: u64, last: u64) -> Vec<(u64, Vec<u8>)> {
        match &*self.mode(stream) {
            streams::ModeRt::Generated(pool) => history::bodies(pool, streams::service_hash(service_id), first, last),
            _ => Vec::new(),
        }
    }

    /// Makes `Generated` streams stop at second `last` (a poll for a later one is held, then
    /// answered "No data"), or go on again with `None`: a fixed end for tests to compare at.
    pub fn set_generated_until(&self, last: Option<u64>) {
        self.until.store(last.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn generated_until(&self) -> Option<u64> {
        Some(self.until.load(Ordering::SeqCst)).filter(|u| *u != u64::MAX)
    }

    fn count_injected(&self, stream: Stream, label: &str) {
        *lock(&self.injected).entry(stream).or_default().entry(label.to_string()).or_insert(0) += 1;
    }

    /// The most recent requests (up to 100,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().cloned().collect()
    }

    /// How many retained requests have a path (and query) starting with `path_prefix`.
    pub fn count(&self, path_prefix: &str) -> usize {
        lock(&self.log).iter().filter(|r| r.path_and_query.starts_with(path_prefix)).count()
    }

    /// Requests received since start, including those dropped from the bounded log.
    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Forgets the request log, so a test can assert on one phase only.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    /// Bytes of pre-built generated payloads currently held (all three streams).
    pub fn generated_payload_bytes(&self) -> usize {
        self.modes.read().unwrap_or_else(|e| e.into_inner()).iter().map(|m| m.heap_bytes()).sum()
    }

    fn service_set(&self) -> Arc<services::ServiceSet> {
        Arc::clone(&self.services.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn route(&self, path: &str) -> Option<Arc<routes::Route>> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    fn mode(&self, stream: Stream) -> Arc<streams::ModeRt> {
        Arc::clone(&self.modes.read().unwrap_or_else(|e| e.into_inner())[stream as usize])
    }

    fn token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, req: RecordedRequest) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.log);
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(req);
    }

    /// Position of the next scripted reply for (stream, service), advancing it.
    fn next_script_index(&self, stream: Stream, service: &str) -> usize {
        let mut pos = lock(&self.script_pos);
        let slot = pos.entry((stream, service.to_string())).or_insert(0);
        let n = *slot;
        *slot += 1;
        n
    }
}

/// Raises the listen backlog from std's 128 to 4096 (capped by `net.core.somaxconn`).
/// A benchmark opens 3,000 long-poll connections at once; with 128, the kernel resets
/// some of them and the exporter would report errors that are the fake's fault.
#[cfg(target_os = "linux")]
fn widen_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn listen(fd: i32, backlog: i32) -> i32;
    }
    // SAFETY: the fd is a valid listening socket owned by `listener` for the whole call;
    // calling listen(2) again on it only changes the accept-queue length.
    let _ = unsafe { listen(listener.as_raw_fd(), 4096) };
}

#[cfg(not(target_os = "linux"))]
fn widen_backlog(_listener: &std::net::TcpListener) {}

/// A running fake. Dropping it stops the listener and all threads; held requests are
/// dropped (tiny_http answers them 500).
pub struct FakeFastly {
    addr: SocketAddr,
    url: String,
    state: Arc<FakeState>,
    server: Arc<tiny_http::Server>,
    shutdown: Arc<AtomicBool>,
    queue: Arc<server::DelayQueue>,
    workers: Vec<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
    responders: Vec<JoinHandle<()>>,
    kicker: Option<JoinHandle<()>>,
}

impl FakeFastly {
    /// Binds `cfg.listen`, builds all payloads and starts serving.
    pub fn start(cfg: FakeConfig) -> std::io::Result<FakeFastly> {
        let listener = std::net::TcpListener::bind(&cfg.listen)?;
        widen_backlog(&listener);
        let options = tiny_http::ServerOptions {
            wrap: match &cfg.tls {
                Some(id) => Some(tls::wrapper(id.server_config()?)),
                None => None,
            },
            ..tiny_http::ServerOptions::default()
        };
        let server = tiny_http::Server::from_listener_with(listener, None, options).map_err(std::io::Error::other)?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let addr = match server.server_addr() {
            tiny_http::ListenAddr::IP(addr) => addr,
            #[allow(unreachable_patterns)]
            _ => return Err(std::io::Error::other("fake-fastly needs an IP listener")),
        };
        let mut shown = addr;
        if shown.ip().is_unspecified() {
            shown.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let url = format!("{scheme}://{shown}");
        let modes = [
            Arc::new(streams::ModeRt::build(Stream::Realtime, cfg.realtime)),
            Arc::new(streams::ModeRt::build(Stream::Origins, cfg.origins)),
            Arc::new(streams::ModeRt::build(Stream::Domains, cfg.domains)),
        ];
        let state = Arc::new(FakeState {
            base_url: url.clone(),
            scheme,
            page_size: cfg.page_size.max(1),
            token: RwLock::new(cfg.token),
            services: RwLock::new(Arc::new(services::ServiceSet::new(cfg.services))),
            routes: RwLock::new(HashMap::new()),
            modes: RwLock::new(modes),
            service_replies: RwLock::new(HashMap::new()),
            script_pos: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(0),
            port: addr.port(),
            tallies: Default::default(),
            injected: Mutex::new(HashMap::new()),
            settled: Default::default(),
            history_secs: cfg.history_secs.max(1),
            batch_secs: cfg.batch_secs.max(1),
            served: Default::default(),
            until: AtomicU64::new(u64::MAX),
        });
        let mut fake = FakeFastly {
            addr,
            url,
            state,
            server: Arc::new(server),
            shutdown: Arc::new(AtomicBool::new(false)),
            queue: Arc::new(server::DelayQueue::new()),
            workers: Vec::new(),
            timer: None,
            responders: Vec::new(),
            kicker: None,
        };
        server::spawn_threads(&mut fake, cfg.workers.max(1))?;
        Ok(fake)
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash): point both the API and
    /// the real-time base URLs of the exporter at it.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound socket address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state, to change behaviour or inspect requests while the server runs.
    pub fn state(&self) -> &Arc<FakeState> {
        &self.state
    }
}

impl Drop for FakeFastly {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(k) = self.kicker.take() {
            let _ = k.join();
        }
        self.queue.close();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
        for r in self.responders.drain(..) {
            let _ = r.join();
        }
    }
}

#[cfg(test)]
mod tests;

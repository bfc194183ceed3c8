//! One blocking thread per (service, stream): long-poll, parse, merge, wait, repeat.
//!
//! The thread owns its backoff and reusable buffers, and works from its stream position
//! (`ts`). It starts where the stream table says (0, the API's latest second, or a position
//! restored from the state file) and advances `ts` only after a complete, parsed HTTP 200
//! answer, recording it in the table under the same write lock as the merge; every failure
//! re-asks the same `ts`, so a second of data is counted exactly once. It stops when its flag
//! (or the store's freeze, at shutdown) is set: at once if waiting, after the current request
//! if one is in flight (that request's answer is then discarded).
//!
//! A restored stream catches up here: the first merged answer that reaches the second the
//! process started at (or a "No data" answer: the API holds nothing newer) ends it, under the
//! lock, so the rows are rendered again from the very merge that made them current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::catalog::{Stream, catalog};
use crate::store::{Counters, Interner, MergeContext, Placement, PollResult, Service};
use crate::upstream::transport::client::{ApiError, Client, Reply};
use crate::util::clock::SharedClock;
use crate::util::errors::chain;
use crate::util::statelog::StateLog;

use super::backoff::{Backoff, Outcome, parse_retry_after};
use super::invalid::InvalidFields;
use super::lost::LostSeconds;
use super::parse::{Mode, parse_tolerant};
use super::status::{Failure, report, with_api_message};
use super::work::{Work, WorkPool};

/// Stack size of poller threads: they parse and do HTTP, nothing recursive beyond serde's
/// few levels; small stacks keep a thousand idle pollers cheap.
const STACK_SIZE: usize = 128 * 1024;

/// How long a poller whose iteration panicked waits before it starts again.
const PANIC_RESTART: Duration = Duration::from_secs(5);

/// What a poller needs, fixed for its lifetime.
#[derive(Clone)]
pub struct PollerSpec {
    /// The service whose table it writes.
    pub service: Arc<Service>,
    /// Which stream it polls.
    pub stream: Stream,
    /// Client for rt.fastly.com, owned by this poller: a connection pool of one, so no
    /// poller ever scans or locks a pool shared with a thousand others.
    pub client: Arc<Client>,
    /// Per-datacenter or aggregate rows.
    pub mode: Mode,
    /// Body size cap.
    pub max_body: u64,
    /// Where a panicking poll is logged (once per location, shared by all pollers).
    pub panic_log: Arc<crate::util::panics::PanicLog>,
    /// Where skipped invalid values are counted and logged (shared by all pollers).
    pub invalid: Arc<InvalidFields>,
    /// The registry's interner of row names.
    pub names: Arc<Interner>,
    /// The parse buffers shared by all pollers.
    pub work: Arc<WorkPool>,
    /// Where restarts and lost seconds are counted.
    pub counters: Arc<Counters>,
    /// Which row each datacenter's records go to (filters, groups).
    pub placement: Arc<Placement>,
    /// Where seconds the API no longer held are logged (shared by all pollers).
    pub lost: Arc<LostSeconds>,
    /// The store's freeze flag (shutdown): checked with `stop`, under the table lock too.
    pub frozen: Arc<AtomicBool>,
    /// The clock of its waits (backoff) and stamps (a row's last data, last success).
    pub clock: SharedClock,
}

/// Handle to a running poller.
#[derive(Debug)]
pub struct Poller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    /// The poller's own client, shut down to interrupt a request in flight.
    client: Arc<Client>,
}

impl Poller {
    /// Starts the poller thread.
    pub fn spawn(spec: PollerSpec) -> std::io::Result<Poller> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = spec.client.clone();
        let name = format!("poll-{}-{}", spec.stream.name(), spec.service.id);
        let thread = thread::Builder::new().name(name).stack_size(STACK_SIZE).spawn(move || {
            let frozen = spec.frozen.clone();
            run(spec, Stopped { own: &flag, frozen: &frozen })
        })?;
        Ok(Poller { stop, thread, client })
    }

    /// Asks the poller to stop and interrupts a request it has in flight (its connection is
    /// shut down, so a long poll ends now, not after `-rt-timeout`); returns at once. The
    /// caller may clear the poller's table right after: the poller checks the flag under the
    /// table lock before merging, and an interrupted request merges nothing.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.client.shutdown();
        self.thread.thread().unpark();
    }

    /// The poller's thread, to join after [`Poller::stop`].
    pub fn into_thread(self) -> JoinHandle<()> {
        self.thread
    }
}

/// Either reason to stop: this poller's flag, or the whole store frozen at shutdown.
#[derive(Clone, Copy)]
struct Stopped<'a> {
    own: &'a AtomicBool,
    frozen: &'a AtomicBool,
}

impl Stopped<'_> {
    fn now(self) -> bool {
        self.own.load(Ordering::SeqCst) || self.frozen.load(Ordering::SeqCst)
    }
}

struct State {
    /// `service X: rt poll`, the prefix of this poller's log lines (built once).
    subject: String,
    /// `/v1/<stream>/<service>/ts/`, the request path without the `ts` (built once).
    path: String,
    /// The request path of the current poll: `path` and the `ts`, rewritten in place.
    url: String,
    ts: u64,
    backoff: Backoff,
    log: StateLog,
}

fn run(spec: PollerSpec, stop: Stopped<'_>) {
    let seed = spec.service.id.bytes().fold(spec.stream as u64 + 1, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let mut st = State {
        subject: format!("service {}: {} poll", spec.service.id, spec.stream.name()),
        path: format!("/v1/{}/{}/ts/", spec.stream.path(), escape_path(&spec.service.id)),
        url: String::new(),
        ts: spec.service.table(spec.stream).next_ts(),
        backoff: Backoff::new(spec.stream, seed ^ spec.clock.unix_secs()),
        log: StateLog::default(),
    };
    let trim = crate::util::stack::StackTrim::here();
    // The small blocks of each answer are reused by this thread instead of going through the
    // C library's lock every time (util::thread_cache); dropped at the end, it gives them back.
    let _cache = crate::util::thread_cache::enable();
    while !stop.now() {
        let delay = match crate::util::panics::catch(|| poll_once(&spec, stop, &mut st)) {
            Ok(d) => d,
            Err(caught) => {
                let what = format!("service {}: {} poller", spec.service.id, spec.stream.name());
                spec.panic_log.report(&what, &caught, &format!("restarting it in {}s", PANIC_RESTART.as_secs()));
                spec.counters.count_restart();
                let failure = Failure { status: None, message: "internal error: the poller panicked".to_string() };
                report(&spec.service, spec.stream, stop.own, Outcome::Transport, Some(failure), PANIC_RESTART);
                PANIC_RESTART
            }
        };
        // Before a wait (no data, an error, a backoff, a restart) the stack is at its
        // shallowest: the pages below it go back, so a poller that waits, or once went deeper
        // than usual, keeps nothing it does not use. Between answers that follow one another
        // it keeps them: the next answer touches the same pages, and giving them back after
        // every answer cost 15% of ingest CPU (a TLB shootdown and page faults each time)
        // for 8 KB per poller.
        if !delay.is_zero()
            && let Some(t) = &trim
        {
            t.release();
        }
        sleep_unless_stopped(&spec.clock, delay, stop);
    }
    log::debug!("service {}: {} poller stopped", spec.service.id, spec.stream.name());
}

/// One request and its consequences; returns the wait before the next one.
///
/// This and the steps below are kept out of line (`inline(never)`): a poller thread keeps its
/// deepest stack pages resident for life, and one merged frame holding the locals of every
/// step is deeper than the steps taken one at a time.
#[inline(never)]
fn poll_once(spec: &PollerSpec, stop: Stopped<'_>, st: &mut State) -> Duration {
    let svc = &spec.service;
    st.url.clear();
    st.url.push_str(&st.path);
    {
        use std::fmt::Write as _;
        let _ = write!(st.url, "{}", st.ts);
    }
    #[cfg(debug_assertions)]
    debug_fault(svc);
    let started = Instant::now();
    // Headers first (the long wait), then borrow buffers only to read, parse and merge.
    let pending = spec.client.call(&st.url);
    let mut work = spec.work.take();
    let reply = pending.and_then(|p| p.read_into(spec.max_body, &mut work.body));
    let (outcome, result, failure) = judge(spec, stop, st, &mut work, reply, started);
    drop(work);
    if spec.stream == Stream::Realtime && !stop.now() {
        svc.count_result(result);
    }
    let delay = st.backoff.next(outcome);
    report(svc, spec.stream, stop.own, outcome, failure, delay);
    delay
}

/// What [`judge`] makes of a reply: how to wait, how to count it, and why it failed (`None`
/// for an answered poll).
type Judged = (Outcome, PollResult, Option<Failure>);

/// Classifies a reply, merging its data when it is a good one. Failures are logged once per
/// state change under a stable description; the status page also gets the API's own message.
#[inline(never)]
fn judge(
    spec: &PollerSpec,
    stop: Stopped<'_>,
    st: &mut State,
    work: &mut Work,
    reply: Result<Reply, ApiError>,
    started: Instant,
) -> Judged {
    match reply {
        // Stopped while waiting: the request was interrupted on purpose.
        Err(_) if stop.now() => (Outcome::Transport, PollResult::Error, None),
        Err(e) => {
            let message = chain(&e);
            log::debug!("{}: GET {}: {message}", st.subject, st.url);
            st.log.fail_as(&st.subject, &message, e.is_untrusted());
            let outcome = match e {
                ApiError::TooLarge(_) => Outcome::TooLarge,
                _ => Outcome::Transport,
            };
            (outcome, PollResult::Error, Some(Failure { status: None, message }))
        }
        Ok(r) => {
            let (subject, url) = (&st.subject, &st.url);
            log::debug!("{subject}: GET {url} -> {} ({} bytes, {:?})", r.status, work.body.len(), started.elapsed());
            let (outcome, result, what) = match r.status {
                200 => return handle_ok(spec, stop, st, work),
                401 | 403 => {
                    (Outcome::Unauthorized, PollResult::Error, format!("HTTP {} (token may be invalid)", r.status))
                }
                429 => {
                    let asked = r.retry_after.as_deref().and_then(parse_retry_after);
                    (Outcome::RateLimited(asked), PollResult::Unknown, "HTTP 429 (rate limited)".to_string())
                }
                s => (Outcome::Status, PollResult::Unknown, format!("HTTP {s}")),
            };
            st.log.fail(&st.subject, &what);
            let message = with_api_message(what, &work.body);
            (outcome, result, Some(Failure { status: Some(r.status), message }))
        }
    }
}

/// A 200: parse the whole body, then merge it and record the new position under the table
/// lock unless stopped.
#[inline(never)]
fn handle_ok(spec: &PollerSpec, stop: Stopped<'_>, st: &mut State, work: &mut Work) -> Judged {
    let Work { body, batch, scratch, places } = work;
    if let Err(e) = parse_tolerant(body, spec.stream, spec.mode, batch) {
        let message = chain(&e);
        st.log.fail(&st.subject, &message);
        return (Outcome::Transport, PollResult::Error, Some(Failure { status: Some(200), message }));
    }
    st.log.ok(&st.subject);
    if !batch.skipped.is_empty() {
        spec.invalid.report(spec.stream, &spec.service.id, batch, &spec.counters);
    }
    let no_data = batch.error.as_deref().is_some_and(|e| e.contains("No data available"));
    let next = batch.timestamp.filter(|t| *t > 0);
    // Records starting after the `ts` asked for: the API no longer held the seconds between.
    let gap = batch.first_recorded.filter(|first| st.ts > 0 && *first > st.ts);
    // Which row each record goes to, decided before the table is locked.
    let placed = !batch.is_empty() && spec.mode == Mode::PerDatacenter && spec.placement.is_active();
    if placed {
        spec.placement.place(batch, places);
    }
    let mut caught_up = false;
    {
        let mut table = spec.service.table_mut(spec.stream);
        if stop.now() {
            return (Outcome::Data, PollResult::Success, None);
        }
        if !batch.is_empty() {
            let ctx = MergeContext {
                def: catalog().stream(spec.stream),
                entity_label: spec.stream.entity_label(),
                names: &spec.names,
                now: spec.clock.unix_secs() as u32,
                places: placed.then_some(&*places),
            };
            table.merge(&ctx, batch, scratch);
        }
        if let Some(ts) = next {
            table.set_next_ts(ts);
        }
        if let Some(until) = table.catch_up_until()
            && (next.unwrap_or(st.ts) >= until || no_data)
        {
            caught_up = table.caught_up();
            log::debug!("{}: caught up at ts {}", st.subject, next.unwrap_or(st.ts));
        }
    }
    if caught_up {
        // After the table lock: the status cell is a leaf lock.
        spec.service.status(spec.stream).set_catching_up(false, spec.clock.unix_f64());
    }
    if let Some(first) = gap {
        spec.lost.report(spec.stream, &spec.service.id, st.ts, first, &spec.counters);
    }
    spec.service.mark_success(spec.clock.unix_secs());
    if let Some(ts) = next {
        st.ts = ts;
    }
    if no_data { (Outcome::NoData, PollResult::NoData, None) } else { (Outcome::Data, PollResult::Success, None) }
}

fn sleep_unless_stopped(clock: &SharedClock, d: Duration, stop: Stopped<'_>) {
    let deadline = clock.now() + d;
    while !stop.now() {
        let wait = clock.wait_for(deadline);
        if clock.now() >= deadline {
            return;
        }
        thread::park_timeout(wait);
    }
}

/// Test-only fault injection, compiled into debug builds only: a poller whose service ID is
/// named by `FASTLY_EXPORTER_DEBUG_PANIC_SERVICE` panics before each request, so end-to-end
/// tests can prove a panicking poller is caught, counted and restarted.
#[cfg(debug_assertions)]
fn debug_fault(svc: &Service) {
    if std::env::var("FASTLY_EXPORTER_DEBUG_PANIC_SERVICE").is_ok_and(|id| id == *svc.id) {
        panic!("injected test panic for service {}", svc.id);
    }
}

/// Escapes a service ID for use as a path segment (IDs are alphanumeric in practice).
fn escape_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

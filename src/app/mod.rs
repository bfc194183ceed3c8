//! The exporter as a whole: [`start`] builds it and starts its threads, [`Running`] is the
//! handle that reloads it and shuts it down (joining every thread it started), and [`run`]
//! is what the binary does with them: start, then follow the process's signals.
//!
//! The main loop (its own thread) schedules refreshes and reconciles pollers with the service
//! list. Nothing here blocks on rt.fastly.com; api.fastly.com calls are bounded by
//! `-api-timeout` and interrupted at shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::catalog::{Selection, Stream};
use crate::config::{Config, ConfigError};
use crate::serve::{ServeError, ServeOptions, Server};
use crate::store::{AccountSnapshot, BuildInfo, Counters, Grouping, Placement, Store};
use crate::upstream::api::select::{Selected, Selector};
use crate::upstream::api::services::{ServiceInfo, fetch_services};
use crate::upstream::realtime::invalid::InvalidFields;
use crate::upstream::realtime::lost::LostSeconds;
use crate::upstream::realtime::parse::Mode;
use crate::upstream::realtime::poller::{Poller, PollerSpec};
use crate::upstream::realtime::work::{self, WorkPool};
use crate::upstream::transport::client::{Client, Net};
use crate::upstream::transport::gate::Gate;
pub use crate::upstream::transport::tls::{Trust, TrustError};
pub use crate::util::clock::{Clock, SharedClock, SystemClock};
use crate::util::errors::chain;
use crate::util::filter::Filter;
use crate::util::panics::PanicLog;
use crate::util::statelog::StateLog;

mod census;
mod metadata;
mod signals;
mod state;

use census::Tally;
use metadata::Metadata;
pub use signals::SHUTDOWN_GRACE;
use state::StateFile;

/// Worker threads serving HTTP. Scrapes are streamed, so a few suffice; eight keep a couple
/// of stalled readers (dropped after `IO_TIMEOUT`) from delaying everyone else.
const HTTP_WORKERS: usize = 8;

/// Consecutive failed service-list refreshes after which `/readyz` reports not ready.
const UNREADY_AFTER_FAILURES: u32 = 3;

/// How long SIGTERM waits for the last state file write beyond the scrapes' grace (which it
/// runs alongside). A Scale A write takes a fraction of a second.
pub(crate) const LAST_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// How long shutdown waits, after the scrapes' grace, for the threads it stopped to end (each
/// was interrupted: this is their way out, not a wait for work). One that has not ended by
/// then (a DNS lookup cannot be interrupted) is named in the log and left to end alone, so
/// SIGTERM still exits within `SHUTDOWN_GRACE` and a moment.
pub const JOIN_LIMIT: Duration = Duration::from_millis(300);

/// The main loop's longest sleep: how late it notices a finished dictionary cycle or a
/// schedule on a stepped clock. A reload or a stop wakes it at once.
const MAIN_TICK: Duration = Duration::from_millis(100);

/// The build as `-version` and `build_info` report it.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        revision: env!("FE_GIT_REVISION").to_string(),
        branch: env!("FE_GIT_BRANCH").to_string(),
        tags: env!("FE_GIT_TAGS").to_string(),
        rustversion: env!("FE_RUSTC_VERSION").to_string(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
    }
}

/// An error and its causes on one line, as every log line of the exporter prints them (for
/// `main`, which logs the errors that end it).
pub use crate::util::errors::chain as error_chain;
/// The binary's global allocator: the C library's malloc behind a small per-thread cache that
/// the pollers turn on (`util::thread_cache`).
pub use crate::util::thread_cache::ThreadCache as Allocator;

/// Why the exporter could not start.
#[derive(Debug)]
pub enum StartError {
    /// The HTTP listener (see [`ServeError`]).
    Serve(ServeError),
    /// Signal handlers.
    Signals(std::io::Error),
    /// The main loop's thread.
    MainLoop(std::io::Error),
    /// The web config's certificates could not be loaded (they were readable a moment ago).
    Web(crate::web::WebConfigError),
    /// The state file's writer thread.
    StateWriter(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Serve(e) => write!(f, "{e}"),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::MainLoop(e) => write!(f, "cannot start the main loop: {e}"),
            StartError::Web(e) => write!(f, "-web-config-file: {e}"),
            StartError::StateWriter(e) => write!(f, "cannot start the -state-file writer: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Displayed as itself: its cause is the next one down.
            StartError::Serve(e) => e.source(),
            StartError::Signals(e) | StartError::MainLoop(e) => Some(e),
            StartError::Web(e) => Some(e),
            StartError::StateWriter(e) => Some(e),
        }
    }
}

/// The running exporter, minus its HTTP server: the schedules of the main thread and the
/// handles everything shares.
struct App {
    cfg: Config,
    selector: Selector,
    selection: Arc<Selection>,
    store: Arc<Store>,
    api: Arc<Client>,
    clock: SharedClock,
    pollers: HashMap<(Arc<str>, Stream), Poller>,
    /// Threads of pollers stopped by a reconcile (interrupted, ending at once): joined at
    /// shutdown if still running, dropped from here once finished.
    retired: Vec<JoinHandle<()>>,
    metadata: Metadata,
    listed: Option<Vec<ServiceInfo>>,
    list_log: StateLog,
    list_failures: u32,
    panic_log: Arc<PanicLog>,
    invalid: Arc<InvalidFields>,
    lost: Arc<LostSeconds>,
    work: Arc<WorkPool>,
    /// Real-time answers are read in turns, as many at once as there are parse buffers.
    turns: Arc<Gate>,
    net: Net,
    census: Tally,
    /// `-state-file`, when set.
    state: Option<Arc<StateFile>>,
    /// Restored streams catching up at the last look (to log when the last one is done).
    catching_up: usize,
    /// Set by `Running::shutdown` (and `reload`).
    control: Arc<Control>,
}

impl App {
    /// Builds the exporter from a validated config, the trusted TLS roots and its clock.
    fn new(cfg: Config, trust: &Trust, clock: SharedClock) -> App {
        let metrics = Filter::new(cfg.metric_allowlist.clone(), cfg.metric_blocklist.clone());
        let selection = Arc::new(Selection::new(&cfg.namespace, &cfg.subsystem, &metrics));
        let account = AccountSnapshot { build: build_info(), ..Default::default() };
        let counters = Arc::new(Counters::default());
        let grouping = if cfg.datacenter_group { Grouping::Group } else { Grouping::Datacenter };
        let pops = Filter::new(cfg.datacenter_allowlist.clone(), cfg.datacenter_blocklist.clone());
        let store = Arc::new(Store::new(account.clone(), counters.clone(), Placement::new(grouping, pops)));
        let census = Tally::new(Tally::keyed(cfg.aggregate_only, grouping), &selection, clock.now());
        store.health.set(false, "the service list has not been fetched yet");
        let net = Net::new(trust.config.clone(), counters);
        let api = Arc::new(Client::new(&net, &cfg.api_endpoint, &cfg.token, cfg.api_timeout, 4, None).with_rate_gate());
        let state = cfg.state_file.as_ref().map(|path| {
            let state = StateFile::open(path, state::identity(&cfg), store.clone(), clock.clone());
            // Streams this configuration never polls would hold readiness forever.
            state.retain(|_, stream| selection.exports_stream(stream));
            Arc::new(state)
        });
        let catching_up = store.health.catching_up_count();
        App {
            selector: selector(&cfg),
            selection,
            store,
            api,
            pollers: HashMap::new(),
            retired: Vec::new(),
            metadata: Metadata::new(account, clock.now()),
            listed: None,
            list_log: StateLog::default(),
            list_failures: 0,
            panic_log: Arc::default(),
            invalid: Arc::default(),
            lost: Arc::default(),
            work: Arc::default(),
            turns: Arc::new(Gate::new(work::SLOTS)),
            net,
            census,
            state,
            catching_up,
            clock,
            control: Arc::default(),
            cfg,
        }
    }

    /// Whether shutdown has begun: the API client is shut down then, so a failure is expected
    /// and not worth a log line.
    fn stopping(&self) -> bool {
        self.control.stop.load(Ordering::SeqCst)
    }

    /// Fetches the service list; on failure keeps the previous one (or none yet).
    fn refresh_services(&mut self) {
        match fetch_services(&self.api) {
            Ok(list) => {
                self.list_log.ok("service list refresh");
                self.store.health.list_refreshed(self.clock.unix_f64());
                log::debug!("service list: {} services", list.len());
                self.listed = Some(list);
                self.list_failures = 0;
                self.store.health.set(true, "");
            }
            Err(_) if self.stopping() => {}
            Err(e) => {
                self.list_failures += 1;
                let keeping = match &self.listed {
                    Some(l) => format!("keeping the previous list of {} services", l.len()),
                    None => "no service list yet".to_string(),
                };
                let why = chain(&e);
                self.list_log.fail_as("service list refresh", &format!("{why}; {keeping}"), e.is_untrusted());
                self.store.health.list_failed(&why, self.clock.unix_f64());
                if self.listed.is_none() || self.list_failures >= UNREADY_AFTER_FAILURES {
                    let reason =
                        format!("{} consecutive service list refreshes failed, last: {why}", self.list_failures);
                    self.store.health.set(false, &reason);
                }
            }
        }
    }

    /// Makes the registry and the poller set match the selected services.
    fn reconcile(&mut self) {
        let registry = &self.store.registry;
        let listed = self.listed.as_deref().unwrap_or(&[]);
        if self.listed.is_none() && self.selector.ids.is_empty() {
            return;
        }
        let selected: Vec<Selected> = self.selector.select(listed);
        for s in &selected {
            let (_, new) = registry.upsert(&s.id, &s.name, &s.version);
            if new {
                log::info!("service {} ({}): exporting", s.id, s.name);
            }
        }
        let removed = registry.retain(|id| selected.iter().any(|s| s.id == id));
        for svc in &removed {
            log::info!("service {}: no longer selected; removing its series", svc.id);
        }
        if let Some(state) = &self.state {
            // Restored streams of services no longer selected, or of products known not to be
            // entitled, are dropped; the others wait for their poller.
            let (metadata, selection) = (&self.metadata, &self.selection);
            state.retain(|id, stream| {
                registry.get(id).is_some()
                    && selection.exports_stream(stream)
                    && metadata.entitlement(stream) != Some(false)
            });
        }
        let mut wanted: HashSet<(Arc<str>, Stream)> = HashSet::new();
        for svc in registry.snapshot() {
            for stream in Stream::ALL {
                if self.metadata.entitled(stream) && self.selection.exports_stream(stream) {
                    wanted.insert((svc.id.clone(), stream));
                }
            }
        }
        self.retired.retain(|t| !t.is_finished());
        let stale: Vec<(Arc<str>, Stream)> = self.pollers.keys().filter(|k| !wanted.contains(k)).cloned().collect();
        let released = !stale.is_empty() || !removed.is_empty();
        for key in stale {
            if let Some(p) = self.pollers.remove(&key) {
                p.stop();
                if let Some(svc) = registry.get(&key.0) {
                    svc.table_mut(key.1).clear();
                    svc.status(key.1).stop();
                }
                // Interrupted: it ends at once, merging nothing; not waited for here.
                self.retired.push(p.into_thread());
            }
        }
        for svc in &removed {
            // Their pollers are stopped: release the rows now (and a restored stream's hold on
            // readiness), not when the last poller lets go of the service after its long poll.
            for stream in Stream::ALL {
                svc.table_mut(stream).clear();
            }
        }
        drop(removed);
        if released {
            // Rows of removed services and streams are gone (or go with their stopped
            // pollers): release their names too.
            registry.names().sweep();
        }
        let mode = if self.cfg.aggregate_only { Mode::Aggregate } else { Mode::PerDatacenter };
        for key in wanted {
            if self.pollers.contains_key(&key) {
                continue;
            }
            let Some(service) = registry.get(&key.0) else {
                continue;
            };
            service.status(key.1).start(self.clock.unix_f64());
            if let Some(state) = &self.state {
                state.apply(&service, key.1);
            }
            let spec = PollerSpec {
                service,
                stream: key.1,
                client: Arc::new(Client::new(
                    &self.net,
                    &self.cfg.rt_endpoint,
                    &self.cfg.token,
                    self.cfg.rt_timeout,
                    1,
                    Some(self.turns.clone()),
                )),
                mode,
                max_body: self.cfg.rt_max_body,
                panic_log: self.panic_log.clone(),
                invalid: self.invalid.clone(),
                names: registry.names().clone(),
                work: self.work.clone(),
                counters: self.store.counters.clone(),
                placement: self.store.placement.clone(),
                lost: self.lost.clone(),
                frozen: self.store.frozen_flag(),
                clock: self.clock.clone(),
            };
            match Poller::spawn(spec) {
                Ok(p) => {
                    self.pollers.insert(key, p);
                }
                Err(e) => {
                    log::error!("service {}: cannot start {} poller: {}", key.0, key.1.name(), chain(&e));
                    if let Some(svc) = registry.get(&key.0) {
                        svc.status(key.1).stop();
                    }
                }
            }
        }
        for stream in Stream::ALL {
            let n = self.pollers.keys().filter(|(_, s)| *s == stream).count();
            self.store.counters.set_pollers(stream, n as u64);
        }
    }

    /// Applies a reloaded configuration's service filters (SIGHUP). Services still selected
    /// keep their pollers and series; only the difference is started or removed.
    fn reload(&mut self, cfg: Config) {
        let new = selector(&cfg);
        log::info!(
            "reloaded configuration: {} service IDs, {} allowlist and {} blocklist entries, shard {:?}",
            new.ids.len(),
            cfg.service_allowlist.len(),
            cfg.service_blocklist.len(),
            new.shard
        );
        self.selector = new;
    }

    /// Drops origin and domain rows without data for `-entity-expiry`, and their names.
    fn expire_entities(&self, expiry: Duration) {
        let cutoff = self.clock.unix_secs().saturating_sub(expiry.as_secs()) as u32;
        let dropped = self.store.registry.expire_entities(cutoff);
        if dropped > 0 {
            log::debug!("dropped {dropped} origin/domain rows without data for {expiry:?}");
        }
    }

    /// Runs the scheduler until `control` says stop, then stops every poller and joins them
    /// (by `JOIN_LIMIT` after the stop); returns the names of pollers still running then. A
    /// reload (SIGHUP) re-reads the configuration through `reload` and refreshes everything at
    /// once.
    fn run(mut self, reload: &Reload, server: &Server) -> Vec<String> {
        let control = self.control.clone();
        let mut next_services = self.clock.now();
        let mut next_expiry = self.clock.now();
        if self.store.placement.grouping() == Grouping::Group {
            // Before the first poll: data of a POP whose group is not known yet stays under
            // "unknown" for good, so one request now saves a stray row on every start.
            self.metadata.refresh_datacenters(&self.api, &self.selection, &self.store);
        }
        while !control.stop.load(Ordering::SeqCst) {
            let now = self.clock.now();
            if control.reload.swap(false, Ordering::SeqCst) {
                match reload() {
                    Ok(cfg) => self.reload(cfg),
                    Err(e) => log::error!("SIGHUP: configuration not reloaded: {}", chain(&e)),
                }
                server.reload_web();
                next_services = now;
                self.metadata.due_now(now);
            }
            if now >= next_services {
                self.refresh_services();
                if self.stopping() {
                    break;
                }
                self.reconcile();
                next_services = self.clock.now() + self.cfg.service_refresh;
            }
            if self.stopping() {
                break;
            }
            if self.metadata.tick(&self.api, &self.cfg, &self.selection, &self.store, self.clock.now()) {
                self.reconcile();
            }
            if let Some(expiry) = self.cfg.entity_expiry
                && self.clock.now() >= next_expiry
            {
                self.expire_entities(expiry);
                next_expiry = self.clock.now() + (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            }
            self.census.tick(&self.store, self.clock.now());
            self.note_caught_up();
            if self.clock.now() < next_services && !self.metadata.busy() && !control.stop.load(Ordering::SeqCst) {
                // `Running::reload` and `Running::shutdown` unpark this thread.
                thread::park_timeout(self.clock.wait_for(next_services).min(MAIN_TICK));
            }
        }
        // Every poller is asked first (each stop interrupts its request), then all are joined.
        let deadline = Instant::now() + JOIN_LIMIT;
        let pollers: Vec<Poller> = self.pollers.drain().map(|(_, p)| p).collect();
        pollers.iter().for_each(Poller::stop);
        let mut running = Vec::new();
        for t in pollers.into_iter().map(Poller::into_thread).chain(self.retired.drain(..)) {
            if let Err(t) = crate::util::threads::join_by(t, deadline) {
                running.push(crate::util::threads::name(&t));
            }
        }
        running
    }
}

impl App {
    /// Logs once when the last restored stream has caught up (readiness follows by itself).
    fn note_caught_up(&mut self) {
        let now = self.store.health.catching_up_count();
        if self.catching_up > 0 && now == 0 {
            let started = self.store.counters.start_time() as u64;
            log::info!(
                "state file: every restored stream has caught up, {} s after start",
                self.clock.unix_secs().saturating_sub(started)
            );
        }
        self.catching_up = now;
    }
}

fn selector(cfg: &Config) -> Selector {
    Selector {
        ids: cfg.service_ids.clone(),
        names: Filter::new(cfg.service_allowlist.clone(), cfg.service_blocklist.clone()),
        shard: cfg.service_shard,
    }
}

/// Makes the glibc build keep as little freed memory as the static one: see
/// `util::alloc` (may replace the process with itself once; call first, before any thread).
/// Then starts the process's malloc-trim thread (glibc only). Both belong to the process, not
/// to an app: `main` calls this once, and an app started in a test process owns no such
/// thread, so [`Running::shutdown`] still joins every thread the app started.
pub fn tune_allocator() {
    crate::util::alloc::restart_without_tcache();
    crate::util::alloc::start_trimmer();
}

/// The CA roots the Fastly API clients trust, as Go reads them on Linux (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, the system bundle); `env` reads environment variables. An operator
/// setting that points at nothing usable is an error.
pub fn load_trust(env: &dyn Fn(&str) -> Option<String>) -> Result<Trust, TrustError> {
    crate::upstream::transport::tls::load(env)
}

/// Where a reload (SIGHUP, [`Running::reload`]) reads the configuration from.
pub type Reload = dyn Fn() -> Result<Config, ConfigError> + Send + Sync;

/// How an exporter runs beyond its configuration.
pub struct Options {
    /// The clock its schedules follow (the main loop's refreshes and expiry, the pollers'
    /// backoff and stamps, the state file's interval): [`SystemClock`] in production; a test
    /// passes one it steps.
    pub clock: SharedClock,
    /// Re-reads the configuration on a reload; its service filters apply to the running
    /// exporter (the rest needs a restart).
    pub reload: Box<Reload>,
}

impl Options {
    /// The system clock, and `reload` as the source of reloaded configurations.
    pub fn new(reload: Box<Reload>) -> Options {
        Options { clock: SystemClock::shared(), reload }
    }
}

/// What the handle tells the main loop.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    reload: AtomicBool,
}

/// A started exporter: serving, polling, refreshing on its schedules until
/// [`Running::shutdown`].
pub struct Running {
    addr: String,
    scheme: &'static str,
    server: Server,
    store: Arc<Store>,
    api: Arc<Client>,
    state: Option<Arc<StateFile>>,
    writer: Option<JoinHandle<()>>,
    control: Arc<Control>,
    main: JoinHandle<Vec<String>>,
}

/// What a shutdown did.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Whether the last state file write finished in time (`None` without `-state-file`).
    pub last_write: Option<bool>,
    /// Threads still running `JOIN_LIMIT` after the grace (named in the log; empty normally).
    pub still_running: Vec<String>,
}

/// Starts the exporter: binds the listener (a taken port fails the start), reads the state
/// file, starts the HTTP workers, the state writer and the main loop (which starts the
/// pollers). Returns once it listens; [`Running::shutdown`] stops it.
pub fn start(cfg: Config, trust: &Trust, options: Options) -> Result<Running, StartError> {
    match crate::util::rlimit::raise_nofile() {
        Ok((old, new)) if new > old => log::debug!("open-file limit raised from {old} to {new}"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {}", chain(&e)),
    }
    let listen = cfg.listen.clone();
    let web = match &cfg.web_config {
        Some(w) => Some(Arc::new(crate::web::WebSecurity::new(w).map_err(StartError::Web)?)),
        None => None,
    };
    let opts = ServeOptions { workers: HTTP_WORKERS, max_connections: cfg.web_max_connections, web };
    crate::util::panics::install_hook();
    let state_interval = cfg.state_interval;
    let app = App::new(cfg, trust, options.clock);
    let server = crate::serve::start(&listen, app.store.clone(), &app.selection, opts).map_err(StartError::Serve)?;
    let writer = match &app.state {
        Some(state) => match state.spawn_writer(state_interval) {
            Ok(w) => Some(w),
            Err(e) => {
                server.shutdown(Duration::ZERO, JOIN_LIMIT);
                return Err(StartError::StateWriter(e));
            }
        },
        None => None,
    };
    let (store, api, state, control) = (app.store.clone(), app.api.clone(), app.state.clone(), app.control.clone());
    let main = {
        let (server, reload) = (server.clone(), options.reload);
        thread::Builder::new().name("main-loop".into()).spawn(move || app.run(&*reload, &server))
    };
    let main = match main {
        Ok(m) => m,
        Err(e) => {
            server.shutdown(Duration::ZERO, JOIN_LIMIT);
            if let (Some(s), Some(w)) = (&state, writer) {
                s.write_last(LAST_WRITE_LIMIT);
                let _ = w.join();
            }
            return Err(StartError::MainLoop(e));
        }
    };
    let running =
        Running { addr: server.addr(), scheme: server.scheme(), server, store, api, state, writer, control, main };
    log::info!("listening on {}://{}", running.scheme, running.addr);
    Ok(running)
}

impl Running {
    /// The address it listens on (`host:port`; useful with port 0).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `https` when the listener serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// What SIGHUP does: re-read the configuration (its service filters apply) and the web
    /// config file, and refresh the service list and every metadata source now.
    pub fn reload(&self) {
        self.control.reload.store(true, Ordering::SeqCst);
        self.main.thread().unpark();
    }

    /// What SIGTERM does: freeze ingest (nothing is merged from here on, so the last state
    /// file holds at least what any scrape saw), ask for the last state file write, stop
    /// serving and give in-flight scrapes `grace` (the write runs alongside, for up to
    /// `grace` + `LAST_WRITE_LIMIT`), then stop and join every thread: the main loop (its API
    /// call interrupted), the pollers (their long polls interrupted), the state writer, the
    /// HTTP workers and tiny_http's threads. Threads still running `JOIN_LIMIT` after the
    /// grace are named in the log and left to end alone.
    pub fn shutdown(self, grace: Duration) -> Stopped {
        let asked = Instant::now();
        self.store.freeze();
        self.control.stop.store(true, Ordering::SeqCst);
        self.main.thread().unpark();
        self.api.shutdown();
        let (server, state) = (&self.server, self.state.as_deref());
        let (last_write, mut still_running) = thread::scope(|s| {
            let last = state.map(|st| s.spawn(move || st.write_last(grace + LAST_WRITE_LIMIT)));
            let running = server.shutdown(grace, JOIN_LIMIT);
            (last.map(|w| w.join().unwrap_or(false)), running)
        });
        // The main loop and the pollers were stopped first and have had the grace too: what
        // is left of `JOIN_LIMIT` since then, if anything (the whole stays within the grace
        // and one `JOIN_LIMIT`).
        let deadline = asked + JOIN_LIMIT;
        match crate::util::threads::join_by(self.main, deadline) {
            Ok(Ok(pollers)) => still_running.extend(pollers),
            Ok(Err(_)) => log::error!("the main loop panicked"),
            Err(t) => still_running.push(crate::util::threads::name(&t)),
        }
        if let Some(w) = self.writer
            && let Err(t) = crate::util::threads::join_by(w, deadline)
        {
            still_running.push(crate::util::threads::name(&t));
        }
        if !still_running.is_empty() {
            log::warn!("shutdown: not waiting any longer for {}", still_running.join(", "));
        }
        Stopped { last_write, still_running }
    }
}

/// What the binary does: starts the exporter, then follows the process's signals on the
/// calling thread until SIGTERM or SIGINT, and shuts down. Returns after a clean shutdown
/// (exit 0) or when the start fails (the port is taken). `reload` re-reads the configuration
/// on SIGHUP.
pub fn run(cfg: Config, trust: &Trust, reload: Box<Reload>) -> Result<(), StartError> {
    // Installed before the start: a SIGTERM right after "listening on" is queued, never the
    // default action.
    let mut signals = signals::Signals::install().map_err(StartError::Signals)?;
    let shard = selector(&cfg).shard;
    let running = start(cfg, trust, Options::new(reload))?;
    if let Some((n, m)) = shard {
        log::info!("exporting shard {n} of {m}: only services with xxh64(id) % {m} == {}", n - 1);
    }
    signals.until_stop(|| running.reload());
    running.shutdown(SHUTDOWN_GRACE);
    Ok(())
}

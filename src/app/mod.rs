//! The main thread: schedules refreshes, reconciles pollers with the service list, and owns
//! shutdown. Nothing here blocks on rt.fastly.com; api.fastly.com calls are bounded by
//! `-api-timeout`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
use signals::Signals;
use state::StateFile;

/// Worker threads serving HTTP. Scrapes are streamed, so a few suffice; eight keep a couple
/// of stalled readers (dropped after `IO_TIMEOUT`) from delaying everyone else.
const HTTP_WORKERS: usize = 8;

/// Consecutive failed service-list refreshes after which `/readyz` reports not ready.
const UNREADY_AFTER_FAILURES: u32 = 3;

/// How long SIGTERM waits for the last state file write beyond the scrapes' grace (which it
/// runs alongside). A Scale A write takes a fraction of a second.
pub(crate) const LAST_WRITE_LIMIT: Duration = Duration::from_secs(5);

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

/// Why the exporter could not start.
#[derive(Debug)]
pub enum StartError {
    /// The HTTP listener (see [`ServeError`]).
    Serve(ServeError),
    /// Signal handlers or their thread.
    Signals(std::io::Error),
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
            StartError::Signals(e) => Some(e),
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
    api: Client,
    pollers: HashMap<(Arc<str>, Stream), Poller>,
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
}

impl App {
    /// Builds the exporter from a validated config and the trusted TLS roots.
    fn new(cfg: Config, trust: &Trust) -> App {
        let metrics = Filter::new(cfg.metric_allowlist.clone(), cfg.metric_blocklist.clone());
        let selection = Arc::new(Selection::new(&cfg.namespace, &cfg.subsystem, &metrics));
        let account = AccountSnapshot { build: build_info(), ..Default::default() };
        let counters = Arc::new(Counters::default());
        let grouping = if cfg.datacenter_group { Grouping::Group } else { Grouping::Datacenter };
        let pops = Filter::new(cfg.datacenter_allowlist.clone(), cfg.datacenter_blocklist.clone());
        let store = Arc::new(Store::new(account.clone(), counters.clone(), Placement::new(grouping, pops)));
        let census = Tally::new(Tally::keyed(cfg.aggregate_only, grouping), &selection);
        store.health.set(false, "the service list has not been fetched yet");
        let net = Net::new(trust.config.clone(), counters);
        let api = Client::new(&net, &cfg.api_endpoint, &cfg.token, cfg.api_timeout, 4, None).with_rate_gate();
        let state = cfg.state_file.as_ref().map(|path| {
            let state = StateFile::open(path, state::identity(&cfg), store.clone());
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
            metadata: Metadata::new(account),
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
            cfg,
        }
    }

    /// Fetches the service list; on failure keeps the previous one (or none yet).
    fn refresh_services(&mut self) {
        match fetch_services(&self.api) {
            Ok(list) => {
                self.list_log.ok("service list refresh");
                self.store.health.list_refreshed(unix_now());
                log::debug!("service list: {} services", list.len());
                self.listed = Some(list);
                self.list_failures = 0;
                self.store.health.set(true, "");
            }
            Err(e) => {
                self.list_failures += 1;
                let keeping = match &self.listed {
                    Some(l) => format!("keeping the previous list of {} services", l.len()),
                    None => "no service list yet".to_string(),
                };
                let why = chain(&e);
                self.list_log.fail_as("service list refresh", &format!("{why}; {keeping}"), e.is_untrusted());
                self.store.health.list_failed(&why, unix_now());
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
        let stale: Vec<(Arc<str>, Stream)> = self.pollers.keys().filter(|k| !wanted.contains(k)).cloned().collect();
        let released = !stale.is_empty() || !removed.is_empty();
        for key in stale {
            if let Some(p) = self.pollers.remove(&key) {
                p.stop();
                if let Some(svc) = registry.get(&key.0) {
                    svc.table_mut(key.1).clear();
                    svc.status(key.1).stop();
                }
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
            service.status(key.1).start(unix_now());
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
        let cutoff = crate::upstream::realtime::poller::now_unix().saturating_sub(expiry.as_secs()) as u32;
        let dropped = self.store.registry.expire_entities(cutoff);
        if dropped > 0 {
            log::debug!("dropped {dropped} origin/domain rows without data for {expiry:?}");
        }
    }

    /// Runs the scheduler until the process exits (the signal thread ends it). SIGHUP
    /// re-reads the configuration through `reload` and refreshes everything at once.
    fn run(mut self, signals: &Signals, reload: &dyn Fn() -> Result<Config, ConfigError>, server: &Server) -> ! {
        let mut next_services = Instant::now();
        let mut next_expiry = Instant::now();
        if self.store.placement.grouping() == Grouping::Group {
            // Before the first poll: data of a POP whose group is not known yet stays under
            // "unknown" for good, so one request now saves a stray row on every start.
            self.metadata.refresh_datacenters(&self.api, &self.selection, &self.store);
        }
        loop {
            let mut now = Instant::now();
            if signals.reload.swap(false, Ordering::SeqCst) {
                match reload() {
                    Ok(cfg) => self.reload(cfg),
                    Err(e) => log::error!("SIGHUP: configuration not reloaded: {}", chain(&e)),
                }
                server.reload_web();
                next_services = now;
                self.metadata.due_now();
            }
            if now >= next_services {
                self.refresh_services();
                self.reconcile();
                next_services = Instant::now() + self.cfg.service_refresh;
            }
            if self.metadata.tick(&self.api, &self.cfg, &self.selection, &self.store) {
                self.reconcile();
            }
            if let Some(expiry) = self.cfg.entity_expiry
                && Instant::now() >= next_expiry
            {
                self.expire_entities(expiry);
                next_expiry = Instant::now() + (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            }
            self.census.tick(&self.store);
            self.note_caught_up();
            now = Instant::now();
            if now < next_services && !self.metadata.busy() {
                std::thread::sleep((next_services - now).min(Duration::from_millis(100)));
            }
        }
    }
}

/// Unix time in seconds, for the status records.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl App {
    /// Logs once when the last restored stream has caught up (readiness follows by itself).
    fn note_caught_up(&mut self) {
        let now = self.store.health.catching_up_count();
        if self.catching_up > 0 && now == 0 {
            let started = self.store.counters.start_time() as u64;
            log::info!(
                "state file: every restored stream has caught up, {} s after start",
                crate::upstream::realtime::poller::now_unix().saturating_sub(started)
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
pub fn tune_allocator() {
    crate::util::alloc::restart_without_tcache();
}

/// The CA roots the Fastly API clients trust, as Go reads them on Linux (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, the system bundle); `env` reads environment variables. An operator
/// setting that points at nothing usable is an error.
pub fn load_trust(env: &dyn Fn(&str) -> Option<String>) -> Result<Trust, TrustError> {
    crate::upstream::transport::tls::load(env)
}

/// Starts everything and runs until a signal ends the process; returns only when the start
/// fails (the port is taken). `reload` re-reads the configuration on SIGHUP.
pub fn run(cfg: Config, trust: &Trust, reload: &dyn Fn() -> Result<Config, ConfigError>) -> Result<(), StartError> {
    match crate::util::rlimit::raise_nofile() {
        Ok((old, new)) if new > old => log::debug!("open-file limit raised from {old} to {new}"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {}", chain(&e)),
    }
    crate::util::alloc::start_trimmer();
    let listen = cfg.listen.clone();
    let web = match &cfg.web_config {
        Some(w) => Some(Arc::new(crate::web::WebSecurity::new(w).map_err(StartError::Web)?)),
        None => None,
    };
    let opts = ServeOptions { workers: HTTP_WORKERS, max_connections: cfg.web_max_connections, web };
    crate::util::panics::install_hook();
    let state_interval = cfg.state_interval;
    let app = App::new(cfg, trust);
    let server = crate::serve::start(&listen, app.store.clone(), &app.selection, opts).map_err(StartError::Serve)?;
    if let Some(state) = &app.state {
        state.spawn_writer(state_interval).map_err(StartError::StateWriter)?;
    }
    let stopper = server.clone();
    let (store, state) = (app.store.clone(), app.state.clone());
    let signals = Signals::install(move |grace| {
        // Nothing is merged from here on, so the last state file holds at least what any
        // scrape saw; it is written while in-flight scrapes finish.
        store.freeze();
        let last = state.clone();
        let writer = last.map(|s| std::thread::spawn(move || s.write_last(grace + LAST_WRITE_LIMIT)));
        stopper.shutdown(grace);
        if let Some(w) = writer {
            let _ = w.join();
        }
    })
    .map_err(StartError::Signals)?;
    log::info!("listening on {}://{}", server.scheme(), server.addr());
    if let Some((n, m)) = app.selector.shard {
        log::info!("exporting shard {n} of {m}: only services with xxh64(id) % {m} == {}", n - 1);
    }
    app.run(&signals, reload, &server)
}

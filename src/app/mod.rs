//! The main thread: schedules refreshes, reconciles pollers with the service list, and owns
//! shutdown. Nothing here blocks on rt.fastly.com; api.fastly.com calls are bounded by
//! `-api-timeout`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::catalog::Stream;
use crate::config::Config;
use crate::serve::render::Plan;
use crate::serve::server::{Health, HttpServer, HttpState, ServeOptions};
use crate::store::{AccountSnapshot, BuildInfo, Registry};
use crate::upstream::api::select::{Selected, Selector};
use crate::upstream::api::services::{ServiceInfo, fetch_services};
use crate::upstream::realtime::invalid::InvalidFields;
use crate::upstream::realtime::parse::Mode;
use crate::upstream::realtime::poller::{Poller, PollerSpec};
use crate::upstream::transport::client::{Client, Net};
use crate::upstream::transport::tls::Trust;
use crate::util::filter::Filter;
use crate::util::statelog::StateLog;

mod metadata;

use metadata::Metadata;

/// Worker threads serving HTTP. Scrapes are streamed, so a few suffice; eight keep a couple
/// of stalled readers (dropped after `IO_TIMEOUT`) from delaying everyone else.
const HTTP_WORKERS: usize = 8;

/// How long SIGTERM waits for in-flight scrapes before exiting (the whole exit stays < 2 s).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Consecutive failed service-list refreshes after which `/readyz` reports not ready.
const UNREADY_AFTER_FAILURES: u32 = 3;

/// Signal handling: a dedicated thread waits for signals, so shutdown never waits for the
/// main loop (which may be inside a 15 s API call). SIGTERM/SIGINT stop the HTTP server, give
/// in-flight scrapes `SHUTDOWN_GRACE` and exit 0; pollers blocked in long polls are simply
/// abandoned. SIGHUP sets `reload` for the main loop.
pub struct Signals {
    /// Set by SIGHUP, cleared by the main loop when it reloads.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers and starts the signal thread.
    pub fn install(server: HttpServer) -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        log::info!("SIGHUP: reloading configuration and refreshing");
                        flag.store(true, Ordering::SeqCst);
                        continue;
                    }
                    let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                    log::info!("{name}: shutting down");
                    server.shutdown(SHUTDOWN_GRACE);
                    std::process::exit(0);
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(Signals { reload })
    }
}

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

/// The running exporter, minus its HTTP server.
pub struct App {
    cfg: Config,
    selector: Selector,
    registry: Arc<Registry>,
    plan: Arc<Plan>,
    api: Client,
    pollers: HashMap<(Arc<str>, Stream), Poller>,
    metadata: Metadata,
    listed: Option<Vec<ServiceInfo>>,
    list_log: StateLog,
    list_failures: u32,
    state: Arc<HttpState>,
    panic_log: Arc<crate::util::panics::PanicLog>,
    invalid: Arc<InvalidFields>,
    net: Net,
}

impl App {
    /// Builds the exporter from a validated config and the trusted TLS roots.
    pub fn new(cfg: Config, trust: &Trust) -> App {
        let registry = Arc::new(Registry::new());
        let metrics = Filter::new(cfg.metric_allowlist.clone(), cfg.metric_blocklist.clone());
        let plan = Arc::new(Plan::new(&cfg.namespace, &cfg.subsystem, &metrics));
        let account = AccountSnapshot { build: build_info(), ..Default::default() };
        let metadata = Metadata::new(account.clone());
        let invalid = Arc::new(InvalidFields::default());
        let state = Arc::new(HttpState {
            registry: registry.clone(),
            plan: plan.clone(),
            account: RwLock::new(Arc::new(account)),
            health: Health::default(),
            in_flight: Default::default(),
            panics: Default::default(),
            panic_log: Default::default(),
            invalid: invalid.clone(),
            #[cfg(debug_assertions)]
            debug_panics: crate::serve::routes::DebugPanics::from_env(),
        });
        state.health.set(false, "the service list has not been fetched yet");
        let net = Net::new(trust.config.clone());
        let api = Client::new(&net, &cfg.api_endpoint, &cfg.token, cfg.api_timeout, 4).with_rate_gate();
        App {
            selector: selector(&cfg),
            registry,
            plan,
            api,
            pollers: HashMap::new(),
            metadata,
            listed: None,
            list_log: StateLog::default(),
            list_failures: 0,
            state,
            panic_log: Arc::default(),
            invalid,
            net,
            cfg,
        }
    }

    /// State shared with the HTTP server.
    pub fn http_state(&self) -> Arc<HttpState> {
        self.state.clone()
    }

    /// Fetches the service list; on failure keeps the previous one (or none yet).
    pub fn refresh_services(&mut self) {
        match fetch_services(&self.api) {
            Ok(list) => {
                self.list_log.ok("service list refresh");
                log::debug!("service list: {} services", list.len());
                self.listed = Some(list);
                self.list_failures = 0;
                self.state.health.set(true, "");
            }
            Err(e) => {
                self.list_failures += 1;
                let keeping = match &self.listed {
                    Some(l) => format!("keeping the previous list of {} services", l.len()),
                    None => "no service list yet".to_string(),
                };
                self.list_log.fail_as("service list refresh", &format!("{e}; {keeping}"), e.is_untrusted());
                if self.listed.is_none() || self.list_failures >= UNREADY_AFTER_FAILURES {
                    let reason = format!("{} consecutive service list refreshes failed, last: {e}", self.list_failures);
                    self.state.health.set(false, &reason);
                }
            }
        }
    }

    /// Makes the registry and the poller set match the selected services.
    pub fn reconcile(&mut self) {
        let listed = self.listed.as_deref().unwrap_or(&[]);
        if self.listed.is_none() && self.selector.ids.is_empty() {
            return;
        }
        let selected: Vec<Selected> = self.selector.select(listed);
        for s in &selected {
            let (_, new) = self.registry.upsert(&s.id, &s.name, &s.version);
            if new {
                log::info!("service {} ({}): exporting", s.id, s.name);
            }
        }
        let removed = self.registry.retain(|id| selected.iter().any(|s| s.id == id));
        for svc in &removed {
            log::info!("service {}: no longer selected; removing its series", svc.id);
        }
        let mut wanted: HashSet<(Arc<str>, Stream)> = HashSet::new();
        for svc in self.registry.snapshot() {
            for stream in Stream::ALL {
                if self.metadata.entitled(stream) && self.plan.exports_stream(stream) {
                    wanted.insert((svc.id.clone(), stream));
                }
            }
        }
        let stale: Vec<(Arc<str>, Stream)> = self.pollers.keys().filter(|k| !wanted.contains(k)).cloned().collect();
        let released = !stale.is_empty() || !removed.is_empty();
        for key in stale {
            if let Some(p) = self.pollers.remove(&key) {
                p.stop();
                if let Some(svc) = self.registry.get(&key.0) {
                    svc.table_mut(key.1).clear();
                }
            }
        }
        drop(removed);
        if released {
            // Rows of removed services and streams are gone (or go with their stopped
            // pollers): release their names too.
            self.registry.names().sweep();
        }
        let mode = if self.cfg.aggregate_only { Mode::Aggregate } else { Mode::PerDatacenter };
        for key in wanted {
            if self.pollers.contains_key(&key) {
                continue;
            }
            let Some(service) = self.registry.get(&key.0) else {
                continue;
            };
            let spec = PollerSpec {
                service,
                stream: key.1,
                client: Arc::new(Client::new(
                    &self.net,
                    &self.cfg.rt_endpoint,
                    &self.cfg.token,
                    self.cfg.rt_timeout,
                    1,
                )),
                mode,
                max_body: self.cfg.rt_max_body,
                panic_log: self.panic_log.clone(),
                invalid: self.invalid.clone(),
                names: self.registry.names().clone(),
            };
            match Poller::spawn(spec) {
                Ok(p) => {
                    self.pollers.insert(key, p);
                }
                Err(e) => log::error!("service {}: cannot start {} poller: {e}", key.0, key.1.name()),
            }
        }
        for stream in Stream::ALL {
            let n = self.pollers.keys().filter(|(_, s)| *s == stream).count();
            crate::serve::selfmetrics::global().set_pollers(stream.index(), n as u64);
        }
    }

    /// Applies a reloaded configuration's service filters (SIGHUP). Services still selected
    /// keep their pollers and series; only the difference is started or removed.
    pub fn reload(&mut self, cfg: Config) {
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
        let dropped = self.registry.expire_entities(cutoff);
        if dropped > 0 {
            log::debug!("dropped {dropped} origin/domain rows without data for {expiry:?}");
        }
    }

    /// Runs the scheduler until the process exits (the signal thread ends it). SIGHUP
    /// re-reads the configuration through `reload` and refreshes everything at once.
    pub fn run(mut self, signals: &Signals, reload: &dyn Fn() -> Result<Config, String>) -> ! {
        let mut next_services = Instant::now();
        let mut next_expiry = Instant::now();
        loop {
            let mut now = Instant::now();
            if signals.reload.swap(false, Ordering::SeqCst) {
                match reload() {
                    Ok(cfg) => self.reload(cfg),
                    Err(e) => log::error!("SIGHUP: configuration not reloaded: {e}"),
                }
                next_services = now;
                self.metadata.due_now();
            }
            if now >= next_services {
                self.refresh_services();
                self.reconcile();
                next_services = Instant::now() + self.cfg.service_refresh;
            }
            if self.metadata.tick(&self.api, &self.cfg, &self.plan, &self.registry, &self.state) {
                self.reconcile();
            }
            if let Some(expiry) = self.cfg.entity_expiry
                && Instant::now() >= next_expiry
            {
                self.expire_entities(expiry);
                next_expiry = Instant::now() + (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            }
            now = Instant::now();
            if now < next_services && !self.metadata.busy() {
                std::thread::sleep((next_services - now).min(Duration::from_millis(100)));
            }
        }
    }
}

fn selector(cfg: &Config) -> Selector {
    Selector {
        ids: cfg.service_ids.clone(),
        names: Filter::new(cfg.service_allowlist.clone(), cfg.service_blocklist.clone()),
        shard: cfg.service_shard,
    }
}

/// Starts everything and runs until a signal ends the process. Errors are start-up failures
/// (port taken). `reload` re-reads the configuration on SIGHUP.
pub fn run(cfg: Config, trust: &Trust, reload: &dyn Fn() -> Result<Config, String>) -> Result<(), String> {
    let listen = cfg.listen.clone();
    let opts = ServeOptions { workers: HTTP_WORKERS, max_connections: cfg.web_max_connections };
    crate::util::panics::install_hook();
    let app = App::new(cfg, trust);
    let server = HttpServer::start(&listen, app.http_state(), opts)?;
    let signals = Signals::install(server.clone())?;
    log::info!("listening on http://{}", server.addr());
    if let Some((n, m)) = app.selector.shard {
        log::info!("exporting shard {n} of {m}: only services with xxh64(id) % {m} == {}", n - 1);
    }
    app.run(&signals, reload)
}

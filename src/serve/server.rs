//! The tiny_http server and its bounded worker pool.
//!
//! A fixed number of worker threads take requests from tiny_http's queue; each renders its
//! response as a stream, so memory does not grow with the scrape size. Workers poll their
//! queue with a short timeout so shutdown never waits on a blocked `recv`.
//!
//! What one client can make the server hold is bounded by our patched tiny_http
//! (`vendor/tiny_http/PATCHES.md`): request line and header size, the time to send a request
//! head, and the number of open connections (each costs a tiny_http thread). A request that
//! panics is caught here, so no worker is ever lost.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::catalog::Selection;
use crate::store::Store;
use crate::util::errors::chain;
use crate::util::panics::{self, PanicLog};
use crate::web::WebSecurity;

use super::render::Plan;

/// What request handlers read: the store, and the HTTP side's own state.
pub(crate) struct HttpState {
    /// The shared state, read only.
    pub store: Arc<Store>,
    /// Names, headers and label fragments of what is exported, computed once.
    pub plan: Arc<Plan>,
    /// Scrapes being answered right now (shutdown waits for them).
    pub in_flight: AtomicUsize,
    /// Requests that panicked (each was answered 500 or had its connection closed).
    pub panics: AtomicU64,
    /// Logs each panic location once.
    pub panic_log: PanicLog,
    /// TLS, basic auth and extra headers from `-web-config-file`, when given.
    pub web: Option<Arc<WebSecurity>>,
    /// Debug builds only: how many more `/metrics` requests panic on purpose, and where
    /// (`FASTLY_EXPORTER_DEBUG_HTTP_PANICS=[body:]<n>`), so tests can prove workers survive.
    #[cfg(debug_assertions)]
    pub debug_panics: super::routes::DebugPanics,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The address could not be bound (taken, not local, no permission).
    Listen {
        /// The configured address.
        addr: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// A worker thread could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            ServeError::Thread(e) => write!(f, "cannot start HTTP worker: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Listen { error, .. } | ServeError::Thread(error) => Some(error),
        }
    }
}

/// How long a client has to send a request head (and how long a keep-alive connection may
/// stay silent), and how long a client may take to accept response bytes, before it is
/// dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request line accepted (414 beyond). Our URLs are short; 8 KiB is what most servers
/// allow.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Largest header section accepted (431 beyond).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most header lines accepted (431 beyond), as Apache's `LimitRequestFields`. Prometheus sends
/// half a dozen; each header costs two allocations besides its bytes, so without a count the
/// 64 KiB could be 13,000 tiny headers holding ~2 MB.
pub const MAX_HEADERS: usize = 100;

/// Largest request body accepted (413 beyond; 411 for a body of unknown length). No endpoint
/// takes a body; up to 1 KiB is read with the head, within its timeout.
pub const MAX_BODY: usize = 1024;

/// Stack of tiny_http's connection threads: they only read request heads.
const CONNECTION_STACK: usize = 128 * 1024;

/// How the server treats clients.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Worker threads answering requests.
    pub workers: usize,
    /// Most connections open at once; see [`tiny_http::ServerOptions::max_connections`].
    pub max_connections: usize,
    /// TLS, basic auth and headers from the web config file.
    pub web: Option<Arc<WebSecurity>>,
}

/// A running server; cheap to clone (the main loop reloads its web config, shutdown stops it).
#[derive(Clone)]
pub struct Server {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    state: Arc<HttpState>,
    /// The workers and the web-config watcher, joined at shutdown.
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Binds `listen` and starts the workers serving `store` as `selection` says. Binding happens
/// before anything else so a taken port fails the start with a clear message.
pub fn start(listen: &str, store: Arc<Store>, selection: &Selection, opts: ServeOptions) -> Result<Server, ServeError> {
    let listen_error = |error| ServeError::Listen { addr: listen.to_string(), error };
    let listener = TcpListener::bind(listen).map_err(listen_error)?;
    let options = tiny_http::ServerOptions {
        limits: tiny_http::Limits {
            max_request_line: Some(MAX_REQUEST_LINE),
            max_header_bytes: Some(MAX_HEADER_BYTES),
            max_headers: Some(MAX_HEADERS),
            max_body: Some(MAX_BODY),
            header_timeout: Some(IO_TIMEOUT),
        },
        max_connections: opts.max_connections,
        write_timeout: Some(IO_TIMEOUT),
        thread_stack_size: Some(CONNECTION_STACK),
        thread_names: Some("http"),
        // A connection holds at most one request (read, queued or being answered), so what
        // requests hold is bounded by the connection cap; a client that left is not rendered.
        one_request_at_a_time: true,
        wrap: opts.web.as_ref().filter(|w| w.tls().is_some()).map(|w| tls_wrapper(w.clone())),
    };
    let server = tiny_http::Server::from_listener_with(listener, None, options)
        .map_err(|e| listen_error(std::io::Error::other(e)))?;
    let state = Arc::new(HttpState {
        store,
        plan: Arc::new(Plan::new(selection)),
        in_flight: AtomicUsize::new(0),
        panics: AtomicU64::new(0),
        panic_log: PanicLog::default(),
        web: opts.web.clone(),
        #[cfg(debug_assertions)]
        debug_panics: super::routes::DebugPanics::from_env(),
    });
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Server { server: server.clone(), stop: stop.clone(), state: state.clone(), threads: Arc::default() };
    // A thread that cannot be started stops those started before it.
    let fail = |e| {
        started.shutdown(Duration::ZERO, Duration::from_secs(1));
        ServeError::Thread(e)
    };
    for i in 0..opts.workers.max(1) {
        let (server, stop, state) = (server.clone(), stop.clone(), state.clone());
        let t = thread::Builder::new().name(format!("http-{i}")).spawn(move || worker(&server, &stop, &state));
        let t = t.map_err(fail)?;
        started.threads.lock().unwrap_or_else(|p| p.into_inner()).push(t);
    }
    if let Some(web) = &opts.web {
        let (web, stop) = (web.clone(), stop.clone());
        let t =
            thread::Builder::new().name("web-watch".into()).stack_size(128 * 1024).spawn(move || watch(&web, &stop));
        let t = t.map_err(fail)?;
        started.threads.lock().unwrap_or_else(|p| p.into_inner()).push(t);
    }
    Ok(started)
}

/// The tiny_http stream hook for TLS: every accepted socket is wrapped with the certificate
/// current at that moment (a connection keeps it for its life; reloads affect new ones). The
/// handshake happens on the connection's own thread, bounded by the request-head timeout.
fn tls_wrapper(web: Arc<WebSecurity>) -> Arc<tiny_http::WrapFn> {
    Arc::new(move |tcp: std::net::TcpStream| {
        let tls = web.tls().ok_or_else(|| std::io::Error::other("TLS is not configured"))?;
        let stream = tls.accept(tcp).map_err(std::io::Error::other)?;
        Ok(Box::new(stream) as Box<dyn tiny_http::ReadWrite + Send>)
    })
}

/// Re-reads the web config file and the certificates when they change (cert-manager and
/// certbot rotate them in place); a broken file is logged once and the previous settings
/// stay in force.
fn watch(web: &WebSecurity, stop: &AtomicBool) {
    loop {
        // Shutdown unparks this thread.
        let deadline = Instant::now() + crate::web::WATCH_INTERVAL;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match web.reload_if_changed() {
            None => {}
            Some(Ok(())) => log::info!("web config: {} or its certificates changed; reloaded", web.path().display()),
            Some(Err(e)) => {
                log::error!("web config: {}: {}; keeping the previous settings", web.path().display(), chain(&e))
            }
        }
    }
}

impl Server {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        }
    }

    /// `https` when the listener serves TLS.
    pub fn scheme(&self) -> &'static str {
        if self.state.web.as_ref().is_some_and(|w| w.tls().is_some()) { "https" } else { "http" }
    }

    /// SIGHUP: re-reads the web config file and its certificates; on any error the previous
    /// settings stay in force and one line says why.
    pub fn reload_web(&self) {
        let Some(web) = &self.state.web else { return };
        match web.reload() {
            Ok(warnings) => {
                log::info!("web config: {} reloaded", web.path().display());
                for w in warnings {
                    log::warn!("web config: {w}");
                }
            }
            Err(e) => {
                log::error!("web config: {}: {}; keeping the previous settings", web.path().display(), chain(&e))
            }
        }
    }

    /// Stops taking requests, waits up to `grace` for in-flight responses to finish, then
    /// closes every connection (a response still being written, to a client that stopped
    /// reading, fails) and joins every thread of the server: workers, the web-config watcher,
    /// tiny_http's accept and connection threads, waiting at most `join_limit` for them.
    /// Returns the names of threads still running then (left to end alone).
    pub fn shutdown(&self, grace: Duration, join_limit: Duration) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let deadline = Instant::now() + join_limit;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in &threads {
            // Each worker waiting for a request gets an unblock mark; the watcher is parked.
            self.server.unblock();
            t.thread().unpark();
        }
        let mut running = Vec::new();
        let tiny = self.server.close_and_join(join_limit);
        if tiny > 0 {
            running.push(format!("{tiny} tiny_http threads"));
        }
        for t in threads {
            if let Err(t) = crate::util::threads::join_by(t, deadline) {
                running.push(crate::util::threads::name(&t));
            }
        }
        running
    }
}

/// Counts a request as in flight for as long as it lives, however its handler ends (a
/// panicking handler included), so shutdown never waits for a request that is gone.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker(server: &tiny_http::Server, stop: &AtomicBool, state: &HttpState) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(req)) => {
                if stop.load(Ordering::SeqCst) {
                    let _ = req.respond(tiny_http::Response::empty(503));
                    break;
                }
                let _in_flight = InFlight::enter(&state.in_flight);
                // A panic unwinds through the request: tiny_http answers 500 to a request
                // dropped unanswered, and closes the connection when a response writer is
                // dropped mid-body (vendor/tiny_http/PATCHES.md). Either way this worker
                // goes on.
                if let Err(caught) = panics::catch(|| super::routes::handle(req, state, server)) {
                    state.panics.fetch_add(1, Ordering::Relaxed);
                    state.panic_log.report("http: a request", &caught, "answered 500 or closed its connection");
                }
            }
            Ok(None) => {}
            // Our patched tiny_http never ends its accept loop; `recv` only fails when the
            // server is being shut down.
            Err(_) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

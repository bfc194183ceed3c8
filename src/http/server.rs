//! The tiny_http server and its bounded worker pool.
//!
//! A fixed number of worker threads take requests from tiny_http's queue; each renders its
//! response as a stream, so memory does not grow with the scrape size. Workers poll their
//! queue with a short timeout so shutdown never waits on a blocked `recv`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::table::{AccountSnapshot, Registry};

use super::render::Plan;
use super::routes;

/// Readiness as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    reason: RwLock<String>,
}

impl Health {
    /// Marks the exporter ready (first service list fetched) or not, with the reason shown
    /// by `/readyz` while not ready.
    pub fn set(&self, ready: bool, reason: &str) {
        *self.reason.write().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// `(ready, reason)`.
    pub fn get(&self) -> (bool, String) {
        (self.ready.load(Ordering::SeqCst), self.reason.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Writes the exporter's own metrics (appended to plain `/metrics` scrapes).
pub type SelfMetricsFn = Box<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// What request handlers read: the table, the render plan and the account snapshot.
pub struct HttpState {
    /// The metric table.
    pub registry: Arc<Registry>,
    /// Names, help and filters, computed once.
    pub plan: Arc<Plan>,
    /// Account metadata, swapped whole by the main thread.
    pub account: RwLock<Arc<AccountSnapshot>>,
    /// Readiness.
    pub health: Health,
    /// Appends the exporter's own metrics to plain `/metrics` scrapes.
    pub self_metrics: SelfMetricsFn,
    /// Scrapes being answered right now (shutdown waits for them).
    pub in_flight: AtomicUsize,
}

impl HttpState {
    /// The current account snapshot.
    pub fn account(&self) -> Arc<AccountSnapshot> {
        self.account.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running server.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<HttpState>,
}

impl HttpServer {
    /// Binds `listen` and starts `workers` threads. Binding happens before anything else so a
    /// taken port fails the start with a clear message.
    pub fn start(listen: &str, state: Arc<HttpState>, workers: usize) -> Result<HttpServer, String> {
        let server = tiny_http::Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let (server, stop, state) = (server.clone(), stop.clone(), state.clone());
            let h = thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || worker(&server, &stop, &state))
                .map_err(|e| format!("cannot start HTTP worker: {e}"))?;
            handles.push(h);
        }
        Ok(HttpServer { server, stop, workers: handles, state })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        }
    }

    /// Stops taking requests, lets in-flight scrapes finish for up to `grace`, then returns.
    pub fn shutdown(self, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for _ in &self.workers {
            self.server.unblock();
        }
        drop(self.workers);
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
                state.in_flight.fetch_add(1, Ordering::SeqCst);
                routes::handle(req, state);
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("http: receive failed: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

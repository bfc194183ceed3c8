//! The tiny_http server and its bounded worker pool.
//!
//! A fixed number of worker threads take requests from tiny_http's queue; each renders its
//! response as a stream, so memory does not grow with the scrape size. Workers poll their
//! queue with a short timeout so shutdown never waits on a blocked `recv`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
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
    /// Scrapes being answered right now (shutdown waits for them).
    pub in_flight: AtomicUsize,
}

impl HttpState {
    /// The current account snapshot.
    pub fn account(&self) -> Arc<AccountSnapshot> {
        self.account.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How long a connection may sit without sending request bytes (idle keep-alive, slowloris)
/// or without accepting response bytes (a stalled reader) before it is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server; cheap to clone so the signal thread can shut it down.
#[derive(Clone)]
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    state: Arc<HttpState>,
}

impl HttpServer {
    /// Binds `listen` and starts `workers` threads. Binding happens before anything else so a
    /// taken port fails the start with a clear message.
    pub fn start(listen: &str, state: Arc<HttpState>, workers: usize) -> Result<HttpServer, String> {
        let listener = bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let server =
            tiny_http::Server::from_listener(listener, None).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let local =
            server.server_addr().to_ip().ok_or_else(|| format!("cannot listen on {listen}: not an IP address"))?;
        spawn_pinger(local, stop.clone())?;
        for i in 0..workers.max(1) {
            let (server, stop, state) = (server.clone(), stop.clone(), state.clone());
            thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || worker(&server, &stop, &state))
                .map_err(|e| format!("cannot start HTTP worker: {e}"))?;
        }
        Ok(HttpServer { server, stop, state })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        }
    }

    /// Stops taking requests and waits up to `grace` for in-flight responses to finish.
    pub fn shutdown(&self, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.server.unblock();
    }
}

/// How often the pinger connects to our own listener; well below `IO_TIMEOUT`.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Binds the listening socket with read/write timeouts that every accepted connection
/// inherits (Linux copies them on accept). tiny_http has no timeouts of its own: without
/// this an idle or stalled client would hold a thread forever.
///
/// The receive timeout also applies to `accept()` itself, and tiny_http's accept loop gives up
/// for good on its first error; [`spawn_pinger`] keeps `accept()` from ever waiting that long.
fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(listen)?;
    // Socket options are set through a TcpStream view of the same descriptor (safe std API).
    let view = TcpStream::from(OwnedFd::from(listener));
    view.set_read_timeout(Some(IO_TIMEOUT))?;
    view.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(TcpListener::from(OwnedFd::from(view)))
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
                // tiny_http reports here that its accept loop has ended; it never restarts it.
                // A process that no longer serves must not look alive: exit so the supervisor
                // (systemd, runit) starts a fresh one.
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                log::error!("http: the listener stopped accepting connections ({e}); exiting so the service restarts");
                std::process::exit(1);
            }
        }
    }
}

/// Connects to our own listener every `PING_EVERY` and hangs up at once, so `accept()` never
/// waits `IO_TIMEOUT` for a client (it would fail with EAGAIN and tiny_http would stop
/// accepting). The short-lived connection also frees a tiny_http pool thread, which picks up
/// any connection its pool left queued.
fn spawn_pinger(addr: SocketAddr, stop: Arc<AtomicBool>) -> Result<(), String> {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    };
    thread::Builder::new()
        .name("http-pinger".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(PING_EVERY);
                if let Err(e) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                    log::warn!("http: cannot reach our own listener at {target}: {e}");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the HTTP pinger: {e}"))
}

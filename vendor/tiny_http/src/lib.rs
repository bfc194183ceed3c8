//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client::ClientConnection;
use connection::Connection;
use util::conn_table::{ConnTable, Counters};
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // (patch) open connections and the counters behind `stats()`
    connections: Arc<ConnTable>,

    // (patch) whether requests whose client has gone are dropped in `recv`
    drop_gone: bool,

    // (patch) the accept thread and the connection threads' pool, for `close_and_join`
    accept_thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
    tasks_pool: Arc<util::TaskPool>,
}

/// (patch) Limits on what one client may make the server hold. `None` means unlimited, as
/// in upstream tiny_http 0.12 (which buffers request lines and headers of any size).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Longest request line accepted, in bytes; longer ones get `414 URI Too Long` and the
    /// connection is closed.
    pub max_request_line: Option<usize>,
    /// Largest header section accepted (all header lines with their CRLFs); larger ones get
    /// `431 Request Header Fields Too Large` and the connection is closed.
    pub max_header_bytes: Option<usize>,
    /// Most header lines accepted; more get `431` too. Each header costs two allocations and a
    /// slot besides its bytes, so the byte limit alone lets thousands of tiny headers hold
    /// many times their size.
    pub max_headers: Option<usize>,
    /// Largest request body accepted; a larger `Content-Length` gets `413 Payload Too Large`,
    /// a body of unknown length (`Transfer-Encoding`) `411 Length Required`, a
    /// `Content-Length` that is not a number `400`, and the connection is closed without
    /// reading the body. Bodies of at most 1 KiB are read with the head (within its timeout).
    pub max_body: Option<usize>,
    /// Time a client has to send a complete request head, counted from its first byte; also
    /// how long a connection may wait silently for its next request. A head that started but
    /// did not finish gets `408`; a silent connection is closed without an answer.
    pub header_timeout: Option<Duration>,
}

/// (patch) How a server treats connections, beyond the listener and the built-in TLS.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Request size and time limits.
    pub limits: Limits,
    /// Most connections open at once (0: no limit). At the cap, a new connection makes the
    /// server close the connection idle the longest (no response in progress); when every
    /// connection is busy, the new one is closed at once. Each open connection costs a thread.
    pub max_connections: usize,
    /// Send timeout of accepted sockets (a client that stops reading a response).
    pub write_timeout: Option<Duration>,
    /// Stack size of connection threads (they parse request heads only).
    pub thread_stack_size: Option<usize>,
    /// How the server's threads are named: `<this>-accept`, `<this>-conn` (`tiny-http` when
    /// `None`), so an application running several servers can tell their threads apart.
    pub thread_names: Option<&'static str>,
    /// Read plain connections the way TLS ones are read: the next request head only once the
    /// response to the current one is complete. A connection then has at most one request
    /// read, queued or being answered, and a client that pipelines requests without reading
    /// the answers holds one request, not an unbounded queue of them. Requests whose client
    /// has gone (reset or closed its connection) while they waited for [`Server::recv`] are
    /// dropped there unanswered, and counted ([`ServerStats::dropped`]).
    pub one_request_at_a_time: bool,
    /// Wraps each accepted TCP socket in an application-provided stream (TLS done by the
    /// application, with its own configuration and reloading). Called on the accept thread:
    /// it must not do I/O (a TLS handshake happens lazily, on the connection's thread). An
    /// error closes that connection.
    pub wrap: Option<Arc<WrapFn>>,
}

/// (patch) See [`ServerOptions::wrap`].
pub type WrapFn = dyn Fn(std::net::TcpStream) -> IoResult<Box<dyn ReadWrite + Send>> + Send + Sync;

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("write_timeout", &self.write_timeout)
            .field("thread_stack_size", &self.thread_stack_size)
            .field("thread_names", &self.thread_names)
            .field("one_request_at_a_time", &self.one_request_at_a_time)
            .field("wrap", &self.wrap.is_some())
            .finish()
    }
}

/// (patch) Connection and refusal counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections open right now.
    pub open_connections: usize,
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed at once because the cap was reached and none was idle.
    pub rejected: u64,
    /// Idle connections closed to make room for new ones under the cap.
    pub evicted: u64,
    /// `accept()` errors (each is retried).
    pub accept_errors: u64,
    /// Requests refused with 414.
    pub uri_too_long: u64,
    /// Requests refused with 431.
    pub headers_too_large: u64,
    /// Request heads that did not arrive in time (408).
    pub header_timeouts: u64,
    /// Requests refused for their body (411, 413).
    pub body_too_large: u64,
    /// Requests dropped unanswered because their client had gone before they were handed
    /// out ([`ServerOptions::one_request_at_a_time`]).
    pub dropped: u64,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with(listener, ssl_config, ServerOptions::default())
    }

    /// (patch) Like [`Server::from_listener`], with limits, a connection cap and an optional
    /// stream wrapper.
    pub fn from_listener_with<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        options: ServerOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let connections = ConnTable::new(options.max_connections);
        let drop_gone = options.one_request_at_a_time;
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let table = connections.clone();
        // a tasks pool is used to dispatch the connections into threads
        // (patch) owned by the server too, so `close_and_join` can join its threads
        let prefix = options.thread_names.unwrap_or("tiny-http");
        let pool = Arc::new(util::TaskPool::with_stack_size(options.thread_stack_size, format!("{prefix}-conn")));
        let tasks_pool = pool.clone();
        let accept_thread = thread::Builder::new().name(format!("{prefix}-accept")).spawn(move || {
            // (patch) consecutive accept() failures, for the retry delay and the log
            let mut failures: u32 = 0;

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                // (patch) Upstream ends the accept loop on the first error, and the server then
                // never accepts again. Errors such as EMFILE, ENFILE, ENOBUFS or ECONNABORTED
                // are transient: log the first one, back off (5 ms doubling to 1 s, as Go's
                // net/http does) and go on. Running out of descriptors for the connection's
                // own bookkeeping counts the same way.
                let admitted = server.accept().and_then(|(sock, _)| {
                    if inside_close_trigger.load(Relaxed) {
                        return Ok(None);
                    }
                    match table.admit(&sock) {
                        Ok(guard) => Ok(Some((sock, guard))),
                        // the connection cap: refused and counted; the socket closes on drop
                        Err(util::conn_table::Refusal::AtCap) => {
                            let _ = sock.shutdown(Shutdown::Both);
                            Ok(None)
                        }
                        Err(util::conn_table::Refusal::Resources(e)) => Err(e),
                    }
                });
                let (sock, guard) = match admitted {
                    Ok(Some(admitted)) => admitted,
                    Ok(None) => continue,
                    Err(e) => {
                        back_off(&mut failures, &table.counters, &e);
                        continue;
                    }
                };
                if options.write_timeout.is_some() {
                    let _ = sock.set_write_timeout(options.write_timeout);
                }
                if let Some(t) = options.limits.header_timeout {
                    let _ = sock.set_read_timeout(Some(t));
                }

                use util::RefinedTcpStream;
                // (patch) Splitting a socket into its read and write halves takes a second
                // descriptor, which may not be there (EMFILE): that is an accept error too.
                let halves = match (&ssl, &options.wrap, sock) {
                    (None, Some(wrap), Connection::Tcp(tcp)) => {
                        let socket = match tcp.try_clone() {
                            Ok(s) => Connection::from(s),
                            Err(e) => {
                                back_off(&mut failures, &table.counters, &e);
                                continue;
                            }
                        };
                        match wrap(tcp) {
                            Ok(stream) => RefinedTcpStream::new(
                                util::refined_tcp_stream::WrappedStream::new(stream, socket),
                            ),
                            Err(e) => {
                                log::debug!("connection wrapper refused a connection: {}", e);
                                continue;
                            }
                        }
                    }
                    (None, _, sock) => RefinedTcpStream::new(sock),
                    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                    (Some(ref ssl), _, sock) => {
                        // trying to apply SSL over the connection
                        // if an error occurs, we just close the socket and resume listening
                        let sock = match ssl.accept(sock) {
                            Ok(s) => s,
                            Err(_) => continue,
                        };

                        RefinedTcpStream::new(sock)
                    }
                    #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                    (Some(ref _ssl), _, _) => unreachable!(),
                };
                let (read_closable, write_closable) = match halves {
                    // Only a connection that got both halves ends a run of failures: an
                    // accept() that succeeds only to fail at the split must not log again.
                    Ok(halves) => {
                        if failures > 0 {
                            log::info!("accepting connections again after {} failed attempts", failures);
                        }
                        failures = 0;
                        halves
                    }
                    Err(e) => {
                        back_off(&mut failures, &table.counters, &e);
                        continue;
                    }
                };

                let client = ClientConnection::new(
                    write_closable,
                    read_closable,
                    options.limits.clone(),
                    Some(guard.entry.clone()),
                    table.counters.clone(),
                );
                let messages = inside_messages.clone();
                let mut client = Some((client, guard));
                let serial = options.one_request_at_a_time;
                tasks_pool.spawn(Box::new(move || {
                    if let Some((client, _guard)) = client.take() {
                        // Synchronization is needed for HTTPS requests to avoid a deadlock
                        // (patch) and bounds what a plain connection holds when asked for.
                        if client.secure() || serial {
                            let (sender, receiver) = mpsc::channel();
                            for rq in client {
                                messages.push(rq.with_notify_sender(sender.clone()).into());
                                if receiver.recv().is_err() {
                                    break;
                                }
                            }
                        } else {
                            for rq in client {
                                messages.push(rq.into());
                            }
                        }
                    }
                }));
            }
            log::debug!("Terminating accept thread");
        })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
            drop_gone,
            accept_thread: std::sync::Mutex::new(Some(accept_thread)),
            tasks_pool: pool,
        })
    }

    /// (patch) Shuts the server down and waits for its threads, at most `timeout`: stops
    /// accepting, closes every open connection (a response still being written fails), drops
    /// the requests nobody took from the queue, and joins the accept thread and every
    /// connection thread. Call it once the application's own workers no longer take requests.
    /// Returns how many threads were still running at the deadline (left to end alone).
    pub fn close_and_join(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        self.close.store(true, Relaxed);
        self.wake_accept();
        let accept = self.accept_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut running = 0;
        if let Some(accept) = accept {
            while !accept.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if accept.is_finished() {
                let _ = accept.join();
            } else {
                running += 1;
            }
        }
        // Connection threads end when their connection does; one that was reading a request
        // as the queue was drained pushes it afterwards, so both are repeated until the pool
        // has ended (a queued request holds its connection's thread).
        self.tasks_pool.close();
        loop {
            self.connections.close_all();
            self.messages.drain();
            let step = (Instant::now() + Duration::from_millis(20)).min(deadline);
            let left = self.tasks_pool.join(step);
            if left == 0 || Instant::now() >= deadline {
                return running + left;
            }
        }
    }

    /// Connects briefly to ourselves so a blocked `accept()` returns and sees `close`.
    fn wake_accept(&self) {
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => match addr.as_pathname() {
                Some(path) => std::os::unix::net::UnixStream::connect(path).map(Connection::from),
                None => return,
            },
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        // (patch) upstream: unimplemented!()
        self.connections.open()
    }

    /// (patch) Connection and refusal counters.
    pub fn stats(&self) -> ServerStats {
        let c: &Counters = &self.connections.counters;
        ServerStats {
            open_connections: self.connections.open(),
            accepted: c.accepted.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            accept_errors: c.accept_errors.load(Relaxed),
            uri_too_long: c.uri_too_long.load(Relaxed),
            headers_too_large: c.headers_too_large.load(Relaxed),
            header_timeouts: c.header_timeouts.load(Relaxed),
            body_too_large: c.body_too_large.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
        }
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        loop {
            match self.messages.pop() {
                Some(Message::Error(err)) => return Err(err),
                Some(Message::NewRequest(rq)) => match self.hand_out(rq) {
                    Some(rq) => return Ok(rq),
                    None => continue,
                },
                None => return Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
            }
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.messages.pop_timeout(deadline.saturating_duration_since(Instant::now())) {
                Some(Message::Error(err)) => return Err(err),
                Some(Message::NewRequest(rq)) => match self.hand_out(rq) {
                    Some(rq) => return Ok(Some(rq)),
                    None => continue,
                },
                None => return Ok(None),
            }
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        loop {
            match self.messages.try_pop() {
                Some(Message::Error(err)) => return Err(err),
                Some(Message::NewRequest(rq)) => match self.hand_out(rq) {
                    Some(rq) => return Ok(Some(rq)),
                    None => continue,
                },
                None => return Ok(None),
            }
        }
    }

    /// (patch) A request about to be handed out, or `None` when it was dropped because its
    /// client has gone: rendering an answer nobody reads only delays the requests behind it.
    /// With one request at a time per connection, nothing else uses the connection now.
    fn hand_out(&self, rq: Request) -> Option<Request> {
        if !self.drop_gone || !rq.client_gone() {
            return Some(rq);
        }
        let c = &self.connections.counters;
        c.dropped.fetch_add(1, Relaxed);
        let mut logged = c.dropped_logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            log::warn!(
                "dropped a request whose client went away before it was answered (later ones are counted, \
                 and logged at debug level for an hour)"
            );
            *logged = Some(Instant::now());
        } else {
            log::debug!("dropped a request whose client went away before it was answered");
        }
        drop(logged);
        rq.abandon();
        None
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// (patch) One failed attempt to take a new connection: count it, log the first of a run and
/// sleep (5 ms doubling to 1 s, as Go's `net/http` does) so a lasting EMFILE does not spin.
fn back_off(failures: &mut u32, counters: &util::conn_table::Counters, e: &IoError) {
    counters.accept_errors.fetch_add(1, Relaxed);
    if *failures == 0 {
        log::error!("Error accepting new client: {}; retrying", e);
    }
    *failures = failures.saturating_add(1);
    let delay = Duration::from_millis(5u64 << (*failures).min(8).saturating_sub(1)).min(Duration::from_secs(1));
    thread::sleep(delay);
}

//! Threads, routing and delivery.
//!
//! `workers` threads block in `server.recv()` and decide each answer. Answers due later go
//! into [`DelayQueue`] (a min-heap by due instant); one timer thread pops due entries and
//! passes them to a pool of responder threads, so a slow client socket can stall at most
//! one responder, never the timer. At 3,000 held long-polls this is 3,000 heap entries and
//! a fixed `2 * workers + 1` threads.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response, StatusCode};

use super::{FakeFastly, FakeState, RecordedRequest, lock, services, streams};

/// A response ready to send: a shared (pre-built) head plus a per-request tail, so large
/// generated payloads are never copied.
pub(super) struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    head: Arc<[u8]>,
    tail: Vec<u8>,
    /// How it goes on the wire (normally, or as an injected fault).
    pub(super) wire: Wire,
    /// Called once the answer has been acted on (written, cut off or closed), whatever the
    /// outcome: how the `Faulty` mode knows a decided answer is no longer pending.
    pub(super) on_sent: Option<Box<dyn FnOnce() + Send>>,
}

/// How a [`Resp`] is written.
pub(super) enum Wire {
    /// Through tiny_http, as usual.
    Normal,
    /// Written by hand; the callback runs only once every byte reached the socket.
    Tracked(Box<dyn FnOnce() + Send>),
    /// Head with the full `Content-Length`, only `keep` body bytes, then the connection (to
    /// the fake's `port`) is closed.
    Truncate { keep: usize, port: u16 },
    /// No answer at all: the connection (to the fake's `port`) is closed.
    Close { port: u16 },
}

impl Resp {
    /// JSON body owned by this response.
    pub(super) fn json(status: u16, body: Vec<u8>) -> Resp {
        Resp::spliced(status, Arc::from(Vec::new()), body)
    }

    /// JSON body shared with other responses (fixtures, canned routes).
    pub(super) fn shared(status: u16, body: Arc<[u8]>) -> Resp {
        Resp::spliced(status, body, Vec::new())
    }

    /// JSON body = `head` followed by `tail`.
    pub(super) fn spliced(status: u16, head: Arc<[u8]>, tail: Vec<u8>) -> Resp {
        let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        Resp { status, headers, head, tail, wire: Wire::Normal, on_sent: None }
    }

    /// No body and no content type, like Fastly's bare 401/403 answers.
    pub(super) fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            head: Arc::from(Vec::new()),
            tail: Vec::new(),
            wire: Wire::Normal,
            on_sent: None,
        }
    }

    /// Sets a header, replacing any existing one of the same name.
    pub(super) fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn into_response(self) -> Response<BodyReader> {
        let len = self.head.len() + self.tail.len();
        let headers =
            self.headers.iter().filter_map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).ok()).collect();
        let reader = BodyReader { head: self.head, tail: self.tail, pos: 0 };
        // Always `Content-Length`: tiny_http would otherwise chunk bodies over 32 KiB.
        Response::new(StatusCode(self.status), headers, reader, Some(len), None).with_chunked_threshold(usize::MAX)
    }
}

/// Writes the answer by hand (status line, headers, `Content-Length` of the whole body) and
/// at most `limit` body bytes; returns the peer address and whether every byte was written.
fn write_raw(rq: Request, resp: &Resp, limit: usize) -> (Option<std::net::SocketAddr>, io::Result<()>) {
    use std::io::Write;
    let peer = rq.remote_addr().copied();
    let mut w = rq.into_writer();
    let len = resp.head.len() + resp.tail.len();
    let reason = StatusCode(resp.status).default_reason_phrase();
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    let body_head = &resp.head[..resp.head.len().min(limit)];
    let body_tail = &resp.tail[..resp.tail.len().min(limit - body_head.len())];
    let result = w
        .write_all(head.as_bytes())
        .and_then(|_| w.write_all(body_head))
        .and_then(|_| w.write_all(body_tail))
        .and_then(|_| w.flush());
    (peer, result)
}

/// Closes (both directions of) the server side of the connection from `peer` to the fake's
/// `port`, so the client sees the connection end. tiny_http offers no way to close a
/// keep-alive connection, so the socket is found among this process's descriptors.
#[cfg(target_os = "linux")]
fn close_connection(port: u16, peer: Option<std::net::SocketAddr>) {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    unsafe extern "C" {
        fn getsockname(fd: i32, addr: *mut u8, len: *mut u32) -> i32;
        fn getpeername(fd: i32, addr: *mut u8, len: *mut u32) -> i32;
        fn shutdown(fd: i32, how: i32) -> i32;
    }
    type NameFn = unsafe extern "C" fn(i32, *mut u8, *mut u32) -> i32;
    fn name(f: NameFn, fd: i32) -> Option<SocketAddr> {
        let mut buf = [0u8; 128];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` is writable for `len` bytes; the call writes at most `len` bytes and
        // only inspects `fd`, which may be any descriptor (errors are returned, not UB).
        if unsafe { f(fd, buf.as_mut_ptr(), &mut len) } != 0 {
            return None;
        }
        let port = u16::from_be_bytes([buf[2], buf[3]]);
        match u16::from_ne_bytes([buf[0], buf[1]]) {
            2 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7])), port)),
            10 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&buf[8..24]);
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        }
    }
    let Some(peer) = peer else { return };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if !std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        if name(getpeername, fd) == Some(peer) && name(getsockname, fd).is_some_and(|a| a.port() == port) {
            // SAFETY: shutdown(2) on a descriptor only changes the state of that socket; the
            // descriptor stays open and owned by tiny_http, which then sees end of stream.
            unsafe { shutdown(fd, 2) };
            return;
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn close_connection(_port: u16, _peer: Option<std::net::SocketAddr>) {}

/// Reads `head` then `tail` without concatenating them.
struct BodyReader {
    head: Arc<[u8]>,
    tail: Vec<u8>,
    pos: usize,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (src, off) = if self.pos < self.head.len() {
            (&self.head[..], self.pos)
        } else {
            (&self.tail[..], self.pos - self.head.len())
        };
        let n = buf.len().min(src.len().saturating_sub(off));
        buf[..n].copy_from_slice(&src[off..off + n]);
        self.pos += n;
        Ok(n)
    }
}

/// When to send an answer.
pub(super) enum Outcome {
    /// Right away, from the worker.
    Now(Resp),
    /// At the given instant, from the delay queue (from the worker if already due).
    At(Instant, Resp),
    /// At the given instant, always from the delay queue's responders, never the worker.
    Queued(Instant, Resp),
}

/// A request waiting for its due time.
struct Held {
    due: Instant,
    seq: u64,
    rq: Request,
    resp: Resp,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest due first; `seq` keeps
    /// answers due at the same instant in arrival order.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.due.cmp(&self.due).then_with(|| other.seq.cmp(&self.seq))
    }
}

struct QueueInner {
    heap: BinaryHeap<Held>,
    seq: u64,
    closed: bool,
}

/// Held requests ordered by due instant, served by the single timer thread.
pub(super) struct DelayQueue {
    inner: Mutex<QueueInner>,
    cv: Condvar,
}

impl DelayQueue {
    /// An empty, open queue.
    pub(super) fn new() -> DelayQueue {
        DelayQueue {
            inner: Mutex::new(QueueInner { heap: BinaryHeap::new(), seq: 0, closed: false }),
            cv: Condvar::new(),
        }
    }

    /// Holds `rq` until `due`; wakes the timer only if this is the new earliest entry.
    fn push(&self, due: Instant, rq: Request, resp: Resp) {
        let mut g = lock(&self.inner);
        if g.closed {
            return; // `rq` is dropped: tiny_http answers 500, fine during shutdown.
        }
        g.seq += 1;
        let seq = g.seq;
        let earliest = g.heap.peek().is_none_or(|h| due < h.due);
        g.heap.push(Held { due, seq, rq, resp });
        drop(g);
        if earliest {
            self.cv.notify_one();
        }
    }

    /// Stops the timer thread; pending requests are dropped.
    pub(super) fn close(&self) {
        lock(&self.inner).closed = true;
        self.cv.notify_all();
    }
}

type Job = (Request, Resp);

fn send(rq: Request, mut resp: Resp) {
    let on_sent = resp.on_sent.take();
    match std::mem::replace(&mut resp.wire, Wire::Normal) {
        Wire::Normal => {
            if let Err(e) = rq.respond(resp.into_response()) {
                log::debug!("fake-fastly: respond failed: {e}");
            }
        }
        Wire::Tracked(done) => match write_raw(rq, &resp, usize::MAX) {
            (_, Ok(())) => done(),
            (_, Err(e)) => log::debug!("fake-fastly: respond failed: {e}"),
        },
        Wire::Truncate { keep, port } => {
            let (peer, _) = write_raw(rq, &resp, keep);
            close_connection(port, peer);
        }
        Wire::Close { port } => {
            let peer = rq.remote_addr().copied();
            close_connection(port, peer);
            // Taking the writer keeps tiny_http from answering 500 when the request drops.
            drop(rq.into_writer());
        }
    }
    if let Some(f) = on_sent {
        f();
    }
}

fn timer_loop(queue: &DelayQueue, tx: mpsc::Sender<Job>) {
    let mut g = lock(&queue.inner);
    loop {
        if g.closed {
            let pending = std::mem::take(&mut g.heap);
            drop(g);
            drop(pending);
            return;
        }
        let now = Instant::now();
        match g.heap.peek().map(|h| h.due) {
            None => g = queue.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(due) if due > now => {
                g = queue.cv.wait_timeout(g, due - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            Some(_) => {
                let mut ready = Vec::new();
                while g.heap.peek().is_some_and(|h| h.due <= now) {
                    if let Some(h) = g.heap.pop() {
                        ready.push(h);
                    }
                }
                drop(g);
                for h in ready {
                    if let Err(mpsc::SendError((rq, resp))) = tx.send((h.rq, h.resp)) {
                        send(rq, resp);
                    }
                }
                g = lock(&queue.inner);
            }
        }
    }
}

fn responder_loop(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = lock(rx).recv();
        match job {
            Ok((rq, resp)) => send(rq, resp),
            Err(_) => return,
        }
    }
}

fn worker_loop(server: &tiny_http::Server, state: &FakeState, queue: &DelayQueue, shutdown: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(rq) => match handle(state, &rq) {
                Outcome::Now(resp) => send(rq, resp),
                Outcome::At(due, resp) if due <= Instant::now() => send(rq, resp),
                Outcome::At(due, resp) | Outcome::Queued(due, resp) => queue.push(due, rq, resp),
            },
            Err(e) => {
                if shutdown.load(Ordering::SeqCst) {
                    return;
                }
                log::error!("fake-fastly: listener error: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// How often the kicker opens (and at once closes) a connection to the fake.
const KICK_EVERY: Duration = Duration::from_millis(10);

/// Works around a lost wake-up in tiny_http 0.12's connection thread pool: `TaskPool::spawn`
/// queues a new connection whenever its count of waiting threads is non-zero, but that count
/// still includes threads already woken for earlier connections. When a client opens a burst
/// of keep-alive connections (an exporter starting its pollers), some are queued behind
/// connections that stay open for good, and their requests are never read. A new thread is
/// only added when a connection arrives while no thread is waiting, and that thread takes the
/// queue's next connection once done; so a steady trickle of empty connections drains the
/// queue (one starved connection per kick at worst) at no visible cost.
fn kicker_loop(addr: std::net::SocketAddr, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::SeqCst) {
        thread::sleep(KICK_EVERY);
        let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }
}

/// Starts responders, the timer and the workers, storing their handles in `fake` so that
/// its `Drop` cleans up even if a later spawn fails.
pub(super) fn spawn_threads(fake: &mut FakeFastly, workers: usize) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..workers {
        let rx = Arc::clone(&rx);
        let h = thread::Builder::new().name(format!("fake-respond-{i}")).spawn(move || responder_loop(&rx))?;
        fake.responders.push(h);
    }
    let queue = Arc::clone(&fake.queue);
    fake.timer = Some(thread::Builder::new().name("fake-timer".to_string()).spawn(move || timer_loop(&queue, tx))?);
    for i in 0..workers {
        let server = Arc::clone(&fake.server);
        let state = Arc::clone(&fake.state);
        let queue = Arc::clone(&fake.queue);
        let shutdown = Arc::clone(&fake.shutdown);
        let h = thread::Builder::new()
            .name(format!("fake-worker-{i}"))
            .spawn(move || worker_loop(&server, &state, &queue, &shutdown))?;
        fake.workers.push(h);
    }
    let mut addr = fake.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let shutdown = Arc::clone(&fake.shutdown);
    let h = thread::Builder::new().name("fake-kicker".to_string()).spawn(move || kicker_loop(addr, &shutdown))?;
    fake.kicker = Some(h);
    Ok(())
}

/// Records the request, enforces the token and routes it.
fn handle(state: &FakeState, rq: &Request) -> Outcome {
    let url = rq.url().to_string();
    let headers: Vec<(String, String)> =
        rq.headers().iter().map(|h| (h.field.as_str().to_string(), h.value.to_string())).collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let base = header("Host").map_or_else(|| state.base_url.clone(), |h| format!("{}://{h}", state.scheme));
    let authorized = match state.token() {
        Some(token) => header("Fastly-Key").as_deref() == Some(token.as_str()),
        None => true,
    };
    let method = rq.method().as_str().to_string();
    state.record(RecordedRequest { method: method.clone(), path_and_query: url.clone(), headers, at: Instant::now() });
    if !authorized {
        return Outcome::Now(Resp::empty(401));
    }
    if method != "GET" && method != "HEAD" {
        return Outcome::Now(Resp::empty(405));
    }
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    if let Some(route) = state.route(path) {
        let (status, body) = route.answer(path, query, &base);
        let mut resp = if body.is_empty() { Resp::empty(status) } else { Resp::shared(status, body) };
        for (k, v) in &route.headers {
            resp.set_header(k, v);
        }
        if !route.delay.is_zero() {
            return Outcome::At(Instant::now() + route.delay, resp);
        }
        return Outcome::Now(resp);
    }
    if path == "/service" {
        let page = services::list_page(&state.service_set(), query, &base, state.page_size);
        let mut resp = if page.status == 200 { Resp::json(200, page.body) } else { Resp::empty(page.status) };
        if let Some(link) = page.link {
            resp.set_header("Link", &link);
        }
        return Outcome::Now(resp);
    }
    if let Some((stream, id, ts)) = streams::parse_path(path) {
        return streams::answer(state, stream, id, ts);
    }
    Outcome::Now(Resp::json(404, br#"{"msg":"Record not found"}"#.to_vec()))
}

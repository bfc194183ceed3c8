//! Request routing: `/metrics[?target=id]`, `/sd`, `/` (the status page), `/status.json`,
//! `/healthz`, `/readyz`.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use tiny_http::{HTTPVersion, Header, Method, Request, Response};

use super::render::Scrape;
use super::selfmetrics;
use super::server::HttpState;
use super::status;
use super::stream::Chunked;
use crate::web::{Decision, WWW_AUTHENTICATE};

/// Content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers one request. Errors writing to the client are only logged: the client left.
pub(crate) fn handle(req: Request, state: &HttpState, server: &tiny_http::Server) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method_ok = matches!(req.method(), Method::Get | Method::Head);
    let extra = Extra::of(state);
    if let Some(web) = &state.web {
        let authorization = req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str());
        match web.authorize(path, authorization) {
            Decision::Allow { .. } => {}
            Decision::Unauthorized => {
                let r = text(401, "unauthorized\n").with_header(header("WWW-Authenticate", WWW_AUTHENTICATE));
                return done(path, req.respond(extra.add(r)));
            }
            Decision::TooManyRequests => {
                let r = text(429, "too many requests\n").with_header(header("Retry-After", "1"));
                return done(path, req.respond(extra.add(r)));
            }
        }
    }
    let result = match path {
        _ if !method_ok => {
            req.respond(extra.add(text(405, "method not allowed\n").with_header(header("Allow", "GET, HEAD"))))
        }
        "/metrics" => metrics(req, state, server, query, &extra),
        "/sd" => {
            let ids: Vec<String> = state.store.registry.snapshot().iter().map(|s| s.id.to_string()).collect();
            let body = serde_json::json!([{ "targets": ids }]).to_string();
            req.respond(extra.add(Response::from_string(body).with_header(header("Content-Type", "application/json"))))
        }
        "/" => index(req, state, query, &extra),
        "/status.json" => status_json(req, state, &extra),
        "/healthz" => req.respond(extra.add(text(200, "ok\n"))),
        "/readyz" => match state.store.health.get() {
            (true, _) => req.respond(extra.add(text(200, "ready\n"))),
            (false, reason) => req.respond(extra.add(text(503, &format!("not ready: {reason}\n")))),
        },
        _ => req.respond(extra.add(text(404, "not found\n"))),
    };
    done(path, result);
}

/// Logs a client that went away (debug only: nothing to do about it).
fn done(path: &str, result: std::io::Result<()>) {
    if let Err(e) = result {
        log::debug!("http: {path}: client went away: {e}");
    }
}

/// The web config's `http_server_config.headers`, added to every response. Values with
/// control characters (which would split the response head) are left out.
struct Extra(Vec<(String, String)>);

impl Extra {
    fn of(state: &HttpState) -> Extra {
        let headers = state.web.as_ref().map(|w| w.headers()).unwrap_or_default();
        Extra(headers.into_iter().filter(|(k, v)| !format!("{k}{v}").chars().any(|c| c.is_control())).collect())
    }

    fn add<R: std::io::Read>(&self, mut r: Response<R>) -> Response<R> {
        for (k, v) in &self.0 {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                r.add_header(h);
            }
        }
        r
    }

    /// As `Name: value\r\n` lines for a head written by hand.
    fn lines(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect()
    }
}

fn metrics(
    req: Request,
    state: &HttpState,
    server: &tiny_http::Server,
    query: &str,
    extra: &Extra,
) -> std::io::Result<()> {
    let target = query_param(query, "target");
    let (services, targeted) = match &target {
        Some(id) => match state.store.registry.get(id) {
            Some(s) => (vec![s], true),
            None => {
                return req.respond(extra.add(text(404, &format!("unknown target {id:?}: not an exported service\n"))));
            }
        },
        None => (state.store.registry.snapshot(), false),
    };
    let gzip = req
        .headers()
        .iter()
        .any(|h| h.field.equiv("Accept-Encoding") && h.value.as_str().split(',').any(|e| e.trim().starts_with("gzip")));
    let http10 = *req.http_version() == HTTPVersion(1, 0);
    if http10 {
        // The body ends at close (no chunked encoding in HTTP/1.0): close right after it, or
        // a client that asked for keep-alive waits for the connection to time out.
        req.close_after_response();
    }
    // HEAD (load balancer and Kubernetes probes): the head only, nothing rendered.
    if *req.method() == Method::Head {
        let mut w = req.into_writer();
        write_head(&mut w, gzip, http10, extra)?;
        return w.flush();
    }
    #[cfg(debug_assertions)]
    let body_panic = state.debug_panics.fire();
    let started = std::time::Instant::now();
    let mut tail = Vec::new();
    if !targeted {
        let figures = selfmetrics::Figures {
            counters: &state.store.counters,
            http: http_figures(state, server),
            names: state.store.registry.names().len(),
        };
        selfmetrics::render(&mut tail, &figures);
    }
    let mut scrape = Scrape::new(state.plan.clone(), services, Some(state.store.account()), targeted, tail);
    let mut w = req.into_writer();
    write_head(&mut w, gzip, http10, extra)?;
    #[cfg(debug_assertions)]
    if body_panic {
        let mut first = Vec::new();
        scrape.next_chunk(&mut first);
        w.write_all(format!("{:x}\r\n", first.len()).as_bytes())?;
        w.write_all(&first)?;
        w.flush()?;
        panic!("injected test panic after the first body chunk");
    }
    let result = stream_body(w, &mut scrape, gzip, http10);
    if !targeted && let Ok(bytes) = result {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        state.store.counters.set_last_scrape(started.elapsed().as_secs_f64(), bytes, at);
    }
    result.map(|_| ())
}

/// The server's own figures for the exporter's self metrics.
fn http_figures(state: &HttpState, server: &tiny_http::Server) -> selfmetrics::HttpFigures {
    let s = server.stats();
    selfmetrics::HttpFigures {
        panics: state.panics.load(std::sync::atomic::Ordering::Relaxed),
        open_connections: s.open_connections as u64,
        accepted: s.accepted,
        rejected: s.rejected,
        evicted: s.evicted,
        accept_errors: s.accept_errors,
        uri_too_long: s.uri_too_long,
        headers_too_large: s.headers_too_large,
        header_timeouts: s.header_timeouts,
        body_too_large: s.body_too_large,
        dropped: s.dropped,
        auth_failures: state.web.as_ref().map(|w| w.auth_failures()).unwrap_or_default(),
    }
}

/// Debug builds only: injected panics in `/metrics`, configured by
/// `FASTLY_EXPORTER_DEBUG_HTTP_PANICS=<n>` (the next n requests panic before the response head
/// goes out) or `=body:<n>` (after the first body chunk).
#[cfg(debug_assertions)]
#[derive(Debug, Default)]
pub struct DebugPanics {
    remaining: std::sync::atomic::AtomicU64,
    in_body: bool,
}

#[cfg(debug_assertions)]
impl DebugPanics {
    /// Reads the environment variable.
    pub fn from_env() -> DebugPanics {
        let v = std::env::var("FASTLY_EXPORTER_DEBUG_HTTP_PANICS").unwrap_or_default();
        let (in_body, n) = match v.strip_prefix("body:") {
            Some(n) => (true, n),
            None => (false, v.as_str()),
        };
        DebugPanics { remaining: n.parse().unwrap_or(0).into(), in_body }
    }

    /// Panics now (head phase), or returns true when the body should panic.
    fn fire(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let armed = self.remaining.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        if armed && !self.in_body {
            panic!("injected test panic before the response head");
        }
        armed
    }
}

/// Writes the response head of a scrape.
fn write_head(w: &mut dyn Write, gzip: bool, http10: bool, extra: &Extra) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Type: {EXPOSITION_TYPE}\r\n{}", extra.lines());
    if gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
    head.push_str(if http10 { "Connection: close\r\n\r\n" } else { "Transfer-Encoding: chunked\r\n\r\n" });
    w.write_all(head.as_bytes())
}

/// Writes the streamed body (chunked unless HTTP/1.0, gzipped when asked). Each step formats
/// about 64 KiB, so a scrape of any size holds one such buffer (plus the gzip window).
/// Returns the bytes of exposition written (before compression).
fn stream_body(mut w: Box<dyn Write + Send>, scrape: &mut Scrape, gzip: bool, http10: bool) -> std::io::Result<u64> {
    let mut bytes = 0u64;
    if http10 {
        let mut buf = Vec::with_capacity(80 * 1024);
        let body: &mut dyn Write = &mut w;
        let mut sink: Box<dyn Write> =
            if gzip { Box::new(GzEncoder::new(body, Compression::fast())) } else { Box::new(body) };
        while {
            buf.clear();
            let more = scrape.next_chunk(&mut buf);
            bytes += buf.len() as u64;
            sink.write_all(&buf)?;
            more
        } {}
        return sink.flush().map(|_| bytes);
    }
    let mut chunked = Chunked::new(w);
    if gzip {
        let mut gz = GzEncoder::new(chunked, Compression::fast());
        let mut buf = Vec::with_capacity(80 * 1024);
        while {
            buf.clear();
            let more = scrape.next_chunk(&mut buf);
            bytes += buf.len() as u64;
            gz.write_all(&buf)?;
            more
        } {}
        gz.finish()?.finish()?;
    } else {
        while {
            let before = chunked.staging().len();
            let more = scrape.next_chunk(chunked.staging());
            bytes += (chunked.staging().len() - before) as u64;
            chunked.emit()?;
            more
        } {}
        chunked.finish()?;
    }
    Ok(bytes)
}

/// `/`: the status page, or with `Accept: application/json` the JSON index of endpoints and
/// services (its fields are kept as they were before the status page).
fn index(req: Request, state: &HttpState, query: &str, extra: &Extra) -> std::io::Result<()> {
    let wants_json =
        req.headers().iter().any(|h| h.field.equiv("Accept") && h.value.as_str().contains("application/json"));
    if wants_json {
        let services = state.store.registry.snapshot();
        let list: Vec<serde_json::Value> = services
            .iter()
            .map(|s| {
                let m = s.meta();
                serde_json::json!({"id": &*s.id, "name": m.name, "version": m.version,
                    "metrics": format!("/metrics?target={}", url_escape(&s.id))})
            })
            .collect();
        let body = serde_json::json!({"metrics": "/metrics", "sd": "/sd", "healthz": "/healthz",
            "readyz": "/readyz", "services": list});
        let r = Response::from_string(body.to_string()).with_header(header("Content-Type", "application/json"));
        return req.respond(extra.add(r));
    }
    let started = std::time::Instant::now();
    let snapshot = status::Snapshot::gather(&state.store, &state.plan);
    let page = status::render_html(&snapshot, &status::Query::parse(query), || started.elapsed());
    let took = started.elapsed();
    log::debug!("http: status page: {} services, {} bytes in {took:?}", snapshot.services.len(), page.len());
    let mut r = Response::from_string(page)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"));
    let dynamic = [
        ("Content-Security-Policy", status::content_security_policy().to_string()),
        ("Server-Timing", format!("render;dur={:.3}", took.as_secs_f64() * 1000.0)),
    ];
    for (name, value) in dynamic {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            r.add_header(h);
        }
    }
    req.respond(extra.add(r))
}

/// `/status.json`: the status page's data.
fn status_json(req: Request, state: &HttpState, extra: &Extra) -> std::io::Result<()> {
    let snapshot = status::Snapshot::gather(&state.store, &state.plan);
    let r = Response::from_string(status::render_json(&snapshot))
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"));
    req.respond(extra.add(r))
}

fn text(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn header(name: &'static str, value: &'static str) -> Header {
    // Only ever called with ASCII constants, which tiny_http always accepts.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("constant ASCII header")
}

/// The decoded value of `name` in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| crate::util::url::percent_decode(&v.replace('+', " ")))
    })
}

pub(super) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

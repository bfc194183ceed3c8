//! The status page as HTML: rendered here, whole, with no external assets.
//!
//! Every text from outside (service names, IDs, versions, error messages, the readiness
//! reason) goes through [`esc`], so it is shown literally and can never open an element or
//! leave an attribute. The page works without JavaScript: the filter is a GET form, paging and
//! auto-refresh are links (`<meta http-equiv="refresh">`); the one inline script only filters
//! the rows already shown while typing. The response's Content-Security-Policy allows exactly
//! that script and style (by hash) and nothing else, as a second line of defence.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;

use crate::serve::routes::{query_param, url_escape};

use super::{STREAMS, ServiceRow, Snapshot, StreamRow, Verdict};
use crate::util::civil::rfc3339;

/// Rows per page: failing services sort first, so page 1 always holds them; 500 rows stay far
/// under 1 MB (about 400 bytes each) and render in a few milliseconds.
pub const PAGE_ROWS: usize = 500;

/// Shortest and longest auto-refresh period a link may ask for.
const REFRESH_RANGE: (u32, u32) = (5, 3600);

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}\
h1{font-size:1.4em;margin:0}h1 small{font-weight:normal;color:#666;font-size:.65em}\
.counts{font-size:1.25em;margin:.4em 0}.counts b{padding:0 .25em}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.6em 0}dt{color:#666}dd{margin:0}\
nav,form{margin:.5em 0}nav a{margin-right:1em}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #ddd;vertical-align:top}\
td.n{white-space:pre-wrap;unicode-bidi:isolate;overflow-wrap:anywhere;max-width:22em}\
tr.v-failing{background:#fff1f1}\
.bad,.st-failing b,.st-backing-off b,.e{color:#b00020}.good,.st-ok b{color:#17702c}\
.st-starting b,.st-catching-up b,.warn{color:#8a6100}.st-not-entitled b,.m,.old{color:#666}\
.m,.e{font-size:.9em}.e{white-space:pre-wrap;overflow-wrap:anywhere}";

/// Filters the rows shown while typing in the filter box (the form filters server-side).
const SCRIPT: &str = "\
(function(){var q=document.getElementById('q'),rows=document.querySelectorAll('#services tbody tr');\
q.addEventListener('input',function(){var v=q.value.toLowerCase();\
rows.forEach(function(r){r.hidden=v!==''&&r.textContent.toLowerCase().indexOf(v)<0;});});})();";

/// The Content-Security-Policy of the page: its own style and script (by hash), forms to
/// itself, nothing else (no images, no frames, no other scripts, no inline handlers).
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |s: &str| {
            let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(d.as_ref())
        };
        format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'",
            hash(STYLE),
            hash(SCRIPT)
        )
    })
}

/// What the visitor asked for: `?q=` (name or ID contains, any case), `?state=` (`failing`,
/// `starting` or `ok`), `?page=` (from 1) and `?refresh=` (seconds, 0 = off).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Substring of the name or ID, any case.
    pub q: String,
    /// Only services with this verdict.
    pub state: Option<Verdict>,
    /// Page number, from 1.
    pub page: usize,
    /// Auto-refresh period in seconds; 0 is off.
    pub refresh: u32,
}

impl Query {
    /// Reads the query string; anything unknown or malformed falls back to the default.
    pub fn parse(query: &str) -> Query {
        let state = match query_param(query, "state").as_deref() {
            Some("failing") => Some(Verdict::Failing),
            Some("starting") => Some(Verdict::Starting),
            Some("ok") => Some(Verdict::Ok),
            _ => None,
        };
        let refresh = query_param(query, "refresh").and_then(|r| r.parse::<u32>().ok()).unwrap_or(0);
        Query {
            q: query_param(query, "q").unwrap_or_default().trim().to_string(),
            state,
            page: query_param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
            refresh: if refresh == 0 { 0 } else { refresh.clamp(REFRESH_RANGE.0, REFRESH_RANGE.1) },
        }
    }

    fn matches(&self, row: &ServiceRow) -> bool {
        if self.state.is_some_and(|v| v != row.verdict) {
            return false;
        }
        if self.q.is_empty() {
            return true;
        }
        let q = self.q.to_lowercase();
        row.meta.name.to_lowercase().contains(&q) || row.id.to_lowercase().contains(&q)
    }

    /// The page's own URL with `page` and `refresh` replaced.
    fn link(&self, page: usize, refresh: u32) -> String {
        let mut parts = Vec::new();
        if !self.q.is_empty() {
            parts.push(format!("q={}", url_escape(&self.q)));
        }
        if let Some(v) = self.state {
            parts.push(format!("state={}", v.label()));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if refresh > 0 {
            parts.push(format!("refresh={refresh}"));
        }
        if parts.is_empty() { "/".to_string() } else { format!("/?{}", parts.join("&")) }
    }
}

/// Renders the page; `elapsed` gives the time spent so far (shown at the bottom).
pub fn render(snap: &Snapshot, query: &Query, elapsed: impl Fn() -> std::time::Duration) -> String {
    let shown: Vec<&ServiceRow> = snap.services.iter().filter(|r| query.matches(r)).collect();
    let pages = shown.len().div_ceil(PAGE_ROWS).max(1);
    let page = query.page.clamp(1, pages);
    let first = (page - 1) * PAGE_ROWS;
    let rows = &shown[first..shown.len().min(first + PAGE_ROWS)];
    let mut out = String::with_capacity(8 * 1024 + rows.len() * 512);
    head(&mut out, snap, query);
    header(&mut out, snap);
    controls(&mut out, snap, query, shown.len(), first, rows.len(), page, pages);
    out.push_str(concat!(
        "<table id=\"services\"><thead><tr><th>service</th><th>id</th><th>version</th>",
        "<th>realtime</th><th>origins</th><th>domains</th></tr></thead><tbody>\n"
    ));
    for row in rows {
        service_row(&mut out, snap.now, row);
    }
    out.push_str("</tbody></table>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"m\">No service matches.</p>\n");
    }
    let _ = write!(out, "<script>{SCRIPT}</script>\n<p class=\"m\">rendered in ");
    let _ = writeln!(out, "{:.1} ms</p></body></html>", elapsed().as_secs_f64() * 1000.0);
    out
}

fn head(out: &mut String, snap: &Snapshot, query: &Query) {
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width\">");
    if query.refresh > 0 {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{}\">", query.refresh);
    }
    let c = snap.counts;
    let _ = write!(out, "<title>fastly-exporter: {} failing, {} ok</title>", c.failing, c.ok);
    let _ = writeln!(out, "<style>{STYLE}</style></head><body>");
}

fn header(out: &mut String, snap: &Snapshot) {
    out.push_str("<h1>fastly-exporter <small>");
    esc(out, &snap.version);
    if !snap.revision.is_empty() {
        out.push_str(" (revision ");
        esc(out, &snap.revision);
        out.push(')');
    }
    out.push_str("</small></h1>\n");
    let c = snap.counts;
    let _ = write!(
        out,
        "<p class=\"counts\"><b id=\"n-failing\" class=\"{}\">{}</b> failing · <b id=\"n-ok\" class=\"good\">{}</b> ok",
        if c.failing > 0 { "bad" } else { "good" },
        c.failing,
        c.ok
    );
    if c.starting > 0 {
        let _ = write!(out, " · <b id=\"n-starting\" class=\"warn\">{}</b> starting", c.starting);
    }
    let _ = writeln!(out, " · {} services</p>", thousands(snap.services.len() as u64));
    out.push_str("<dl>");
    dt(out, "uptime");
    out.push_str(&span(snap.uptime, true));
    dt(out, "ready");
    match &snap.ready {
        (true, _) => out.push_str("<span class=\"good\">ready</span>"),
        (false, reason) => {
            out.push_str("<span class=\"bad\">not ready: ");
            esc(out, reason);
            out.push_str("</span>");
        }
    }
    dt(out, "service list");
    match snap.list.last_success {
        Some(t) => {
            let _ = write!(out, "refreshed {} ago", span(snap.now - t, false));
        }
        None => out.push_str("<span class=\"bad\">never fetched</span>"),
    }
    if let Some((message, at)) = &snap.list.last_error {
        let current = snap.list.last_success.is_none_or(|t| t < *at);
        let _ = write!(
            out,
            "; <span class=\"{}\">last error {} ago: ",
            if current { "e" } else { "old" },
            span(snap.now - at, false)
        );
        esc(out, message);
        out.push_str("</span>");
    }
    dt(out, "token");
    match snap.token_expiry {
        None => out.push_str("<span class=\"m\">not read (yet)</span>"),
        Some(None) => out.push_str("never expires"),
        Some(Some(at)) => {
            let left = at - snap.now;
            let date = rfc3339(at).replace('T', " ").replace('Z', " UTC");
            if left <= 0.0 {
                let _ = write!(out, "<span class=\"bad\">expired {date} ({} ago)</span>", span(-left, false));
            } else {
                let class = if left < 7.0 * 86_400.0 { "warn" } else { "good" };
                let _ = write!(out, "<span class=\"{class}\">expires {date} (in {})</span>", span(left, true));
            }
        }
    }
    dt(out, "datacenters");
    if snap.datacenters > 0 {
        out.push_str(&snap.datacenters.to_string());
    } else {
        out.push_str("<span class=\"m\">not fetched</span>");
    }
    dt(out, "series");
    out.push_str(&thousands(snap.series));
    dt(out, "last scrape");
    match snap.last_scrape {
        Some((secs, size, at)) => {
            let _ =
                write!(out, "{}, {} (uncompressed), {} ago", seconds(secs), bytes(size), span(snap.now - at, false));
        }
        None => out.push_str("<span class=\"m\">none yet</span>"),
    }
    dt(out, "memory");
    match snap.rss {
        Some(rss) => {
            let _ = write!(out, "{} resident", bytes(rss));
        }
        None => out.push_str("<span class=\"m\">unknown</span>"),
    }
    out.push_str("</dd></dl>\n<nav><a href=\"/metrics\">/metrics</a><a href=\"/sd\">/sd</a>");
    out.push_str("<a href=\"/status.json\">/status.json</a><a href=\"/healthz\">/healthz</a>");
    out.push_str("<a href=\"/readyz\">/readyz</a></nav>\n");
}

/// Opens a `<dt>name</dt><dd>` pair, closing the previous `<dd>`.
fn dt(out: &mut String, name: &str) {
    if !out.ends_with("<dl>") {
        out.push_str("</dd>");
    }
    let _ = write!(out, "<dt>{name}</dt><dd>");
}

#[allow(clippy::too_many_arguments)]
fn controls(
    out: &mut String,
    snap: &Snapshot,
    query: &Query,
    matching: usize,
    first: usize,
    shown: usize,
    page: usize,
    pages: usize,
) {
    out.push_str("<form method=\"get\" action=\"/\"><input id=\"q\" name=\"q\" placeholder=\"name or id\" value=\"");
    esc(out, &query.q);
    out.push_str("\" autocomplete=\"off\"> <select name=\"state\">");
    for (value, label) in [("", "all"), ("failing", "failing"), ("starting", "starting"), ("ok", "ok")] {
        let selected = query.state.map_or("", |v| v.label()) == value;
        let _ = write!(out, "<option value=\"{value}\"{}>{label}</option>", if selected { " selected" } else { "" });
    }
    out.push_str("</select> <button>filter</button>");
    if query.refresh > 0 {
        let _ = write!(out, "<input type=\"hidden\" name=\"refresh\" value=\"{}\">", query.refresh);
    }
    out.push_str(" · auto-refresh:");
    for (secs, label) in [(0, "off"), (10, "10 s"), (60, "1 min")] {
        if secs == query.refresh {
            let _ = write!(out, " <b>{label}</b>");
        } else {
            out.push_str(" <a href=\"");
            esc(out, &query.link(page, secs));
            let _ = write!(out, "\">{label}</a>");
        }
    }
    out.push_str("</form>\n<p class=\"m\">");
    if matching == snap.services.len() {
        let _ = write!(out, "{} services", thousands(matching as u64));
    } else {
        let _ =
            write!(out, "{} of {} services match", thousands(matching as u64), thousands(snap.services.len() as u64));
    }
    if pages > 1 {
        let _ = write!(out, "; showing {}–{} (page {page} of {pages})", first + 1, first + shown);
        for (to, label) in [(page.saturating_sub(1), "« previous"), (page + 1, "next »")] {
            if (1..=pages).contains(&to) {
                out.push_str(" <a href=\"");
                esc(out, &query.link(to, query.refresh));
                let _ = write!(out, "\">{label}</a>");
            }
        }
    }
    out.push_str("; failing first</p>\n");
}

fn service_row(out: &mut String, now: f64, row: &ServiceRow) {
    let _ = write!(out, "<tr class=\"v-{}\"><td class=\"n\">", row.verdict.label());
    esc(out, &row.meta.name);
    out.push_str("</td><td><a href=\"/metrics?target=");
    esc(out, &url_escape(&row.id));
    out.push_str("\">");
    esc(out, &row.id);
    out.push_str("</a></td><td>");
    esc(out, &row.meta.version);
    out.push_str("</td>");
    for (i, _) in STREAMS.iter().enumerate() {
        stream_cell(out, now, row.streams[i].as_ref());
    }
    out.push_str("</tr>\n");
}

fn stream_cell(out: &mut String, now: f64, stream: Option<&StreamRow>) {
    let Some(r) = stream else {
        out.push_str("<td class=\"m\">not polled</td>");
        return;
    };
    let s = &r.status;
    let label = s.state.label();
    let _ = write!(out, "<td class=\"st-{}\"><b>{label}</b><div class=\"m\">", label.replace(' ', "-"));
    match s.last_success {
        Some(t) => {
            let _ = write!(out, "ok {} ago", span(now - t, false));
        }
        None => out.push_str("no answer yet"),
    }
    let _ = write!(out, " · {} series", thousands(r.series));
    if let Some(at) = s.retry_at {
        let _ = write!(out, " · retry in {}", span((at - now).max(0.0), false));
    }
    out.push_str("</div>");
    if let Some(e) = &s.last_error {
        // Red while it is why the stream fails; grey when the stream answers again, or when
        // it is the product's absence (a decision, not a fault).
        let _ = write!(out, "<div class=\"{}\">", if s.state.is_failing() { "e" } else { "e old" });
        if let Some(status) = e.status
            && !e.message.starts_with("HTTP ")
        {
            let _ = write!(out, "HTTP {status}: ");
        }
        esc(out, &e.message);
        let _ = write!(out, " ({} ago)</div>", span(now - e.at, false));
    }
    out.push_str("</td>");
}

/// Appends `s` as HTML text or attribute value, shown literally: the markup characters as
/// entities (so nothing can open an element or leave an attribute), tab and newline as they
/// are (the name cell keeps line breaks), other control characters, which HTML cannot carry
/// as text, as their visible Control Pictures (U+2400…) or `\u{…}`; every other character,
/// any script or direction, as itself.
pub fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            '\0'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{7f}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A duration for people: `0.8 s`, `45 s`, `12 min`, `5 h`, `3 d`; with `two`, the next unit
/// too (`5 h 12 min`), for uptime and expiry.
pub fn span(secs: f64, two: bool) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        return format!("{} s", trim_float(s, 1));
    }
    let whole = s as u64;
    let (big, big_unit, small, small_unit) = match whole {
        0..=119 => return format!("{whole} s"),
        120..=7199 => (whole / 60, "min", whole % 60, "s"),
        7200..=172_799 => (whole / 3600, "h", whole / 60 % 60, "min"),
        _ => (whole / 86_400, "d", whole / 3600 % 24, "h"),
    };
    if two && small > 0 { format!("{big} {big_unit} {small} {small_unit}") } else { format!("{big} {big_unit}") }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Bytes in decimal units, as the README's figures: `374.0 MB`.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n < 1e3 => format!("{n} B"),
        n if n < 1e6 => format!("{:.1} kB", n / 1e3),
        n if n < 1e9 => format!("{:.1} MB", n / 1e6),
        n => format!("{:.2} GB", n / 1e9),
    }
}

/// A measured duration: `3.2 ms`, `0.85 s`.
pub fn seconds(s: f64) -> String {
    if s < 1.0 { format!("{:.1} ms", s * 1000.0) } else { format!("{:.2} s", s) }
}

/// `v` with at most `places` decimals, trailing zeros dropped (`0.8`, `12`).
fn trim_float(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

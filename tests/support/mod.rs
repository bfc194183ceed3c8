//! Shared harness for the end-to-end tests: the real `fastly-exporter` binary, started against
//! the in-process fake Fastly API, scraped over HTTP, and its exposition parsed into numbers.

#![allow(dead_code)]

pub mod expo;
pub mod inproc;
pub mod pki;
pub mod truth;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use fake_fastly::{FakeConfig, FakeFastly, FakeService, StreamMode};

/// Path of the binary under test, built by cargo for integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_fastly-exporter");

/// The release exporter, when one is newer than every source it is built from: the static
/// x86_64 build (`target/x86_64-unknown-linux-musl/release/`, what `make test` builds and
/// what ships) or `target/release/` (`cargo build --release`), whichever is newer. Otherwise
/// (a plain `cargo test` after an edit) the debug binary [`BIN`], with a note on stderr, so a
/// stale release binary is never what a test measures.
pub fn release_bin() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::path::Path::new(BIN).parent().and_then(|debug| debug.parent());
    let mut newest = std::time::UNIX_EPOCH;
    for source in ["src", "vendor/tiny_http/src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        newest_mtime(&root.join(source), &mut newest);
    }
    let built = ["x86_64-unknown-linux-musl/release", "release"]
        .iter()
        .filter_map(|dir| {
            let p = target?.join(dir).join("fastly-exporter");
            let t = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
            (t >= newest).then_some((t, p))
        })
        .max();
    match built {
        Some((_, p)) => p.display().to_string(),
        None => {
            eprintln!("note: no up-to-date release binary (make test builds one); running the debug binary");
            BIN.to_string()
        }
    }
}

fn newest_mtime(path: &std::path::Path, newest: &mut std::time::SystemTime) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_mtime(&entry.path(), newest);
        }
    } else if let Ok(t) = meta.modified() {
        *newest = (*newest).max(t);
    }
}

/// A fixture file from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The acceptance scenario's fake: one service, the fixture on the first poll, then 40 s holds.
pub fn fixture_fake(realtime: &str) -> FakeFastly {
    FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("my-service-id", "my-service-name", 123)],
        realtime: StreamMode::FixtureThenHold { body: fixture(realtime), hold: Duration::from_secs(40) },
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .expect("fake starts")
}

/// Starts the exporter the way the acceptance checks do: token `T`, both endpoints on the
/// fake, `-namespace testspace -subsystem testsystem`, plus `extra` flags.
pub fn start_testspace(fake: &FakeFastly, extra: &[&str]) -> Exporter {
    let url = fake.url();
    let mut args = vec![
        "-token",
        "T",
        "-api-endpoint",
        &url,
        "-rt-endpoint",
        &url,
        "-namespace",
        "testspace",
        "-subsystem",
        "testsystem",
    ];
    args.extend_from_slice(extra);
    Exporter::start(&args)
}

/// A running exporter process whose stdout and stderr are captured.
pub struct Exporter {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    output: Arc<Mutex<String>>,
}

impl Exporter {
    /// Starts the binary with `args` (plus `-listen 127.0.0.1:0` unless given) and waits until
    /// it logs its address.
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_env(args, &[])
    }

    /// Like [`Exporter::start`] with extra environment variables (the environment is otherwise
    /// cleared of `FASTLY_*` variables so the host cannot leak into tests).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        Exporter::start_limited(args, env, None)
    }

    /// Like [`Exporter::start_env`], with the open-file limit (soft and hard) set to `nofile`
    /// when given, as `ulimit -n` would.
    pub fn start_limited(args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Exporter {
        Exporter::start_bin(BIN, args, env, nofile)
    }

    /// Like [`Exporter::start_env`], running the release binary (see [`release_bin`]): floods
    /// and memory are measured on what ships.
    pub fn start_release(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        Exporter::start_bin(&release_bin(), args, env, None)
    }

    /// Like [`Exporter::start_limited`], running the binary at `bin` (e.g. the release build)
    /// instead of the one cargo built for the tests.
    pub fn start_bin(bin: &str, args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Exporter {
        let cmd = match nofile {
            None => Command::new(bin),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin);
                c
            }
        };
        Exporter::start_cmd(cmd, args, env)
    }

    /// Like [`Exporter::start_env`], run as an unprivileged user (see [`unprivileged`]), so
    /// file permissions apply to it even when the tests run as root.
    pub fn start_unprivileged(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let cmd = match unprivileged() {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "--".into()]);
                c.arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        Exporter::start_cmd(cmd, args, env)
    }

    fn start_cmd(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.contains(&"-listen") {
            all.extend(["-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        cmd.args(&all).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        scrub_env(&mut cmd);
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("exporter starts");
        let output = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().expect("stdout"), output.clone());
        pump(child.stderr.take().expect("stderr"), output.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = output.lock().unwrap().clone();
            let start = text.find("listening on http://").map(|i| i + "listening on http://".len());
            let start = start.or_else(|| text.find("listening on https://").map(|i| i + "listening on https://".len()));
            if let Some(i) = start {
                let rest = &text[i..];
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                return Exporter { child, addr, output };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exporter exited early ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "exporter did not start:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(&self.url(path), &[])
    }

    /// The full `/metrics` scrape, parsed.
    pub fn metrics(&self) -> expo::Scrape {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        expo::parse(&body)
    }

    /// Scrapes until `pred` holds, or panics after `timeout` showing the exporter's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&expo::Scrape) -> bool) -> expo::Scrape {
        scrape_until(
            what,
            timeout,
            Duration::from_millis(100),
            || self.metrics(),
            pred,
            || format!("log:\n{}", self.output()),
        )
    }

    /// Waits like [`Exporter::wait_for`], then scrapes once more: a poll merged while a scrape
    /// was in progress can show in some families and not yet in earlier ones, so assertions on
    /// a whole scrape use one taken after the data has settled.
    pub fn wait_settled(&self, what: &str, timeout: Duration, pred: impl Fn(&expo::Scrape) -> bool) -> expo::Scrape {
        self.wait_for(what, timeout, pred);
        self.metrics()
    }

    /// Everything the process wrote so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None if killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When the tests run as root (where file permissions do not apply), the user and group to
/// run the exporter as instead: `nobody` (65534, as in the container image). `None` when not
/// root: the tests' own user is subject to permissions already.
pub fn unprivileged() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse().ok()?;
    (euid == 0).then_some((65534, 65534))
}

fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("FASTLY_") || k.starts_with("SSL_CERT_") || k.ends_with("_PROXY") || k.ends_with("_proxy") {
            cmd.env_remove(k);
        }
    }
}

fn pump(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

/// Runs the binary to completion (for flags that exit): exit code, stdout, stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    scrub_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET with extra headers; status and body (gzip is not requested unless a header asks).
pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = get_raw(url, headers);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A status line, lower-cased response headers and the body as sent (de-chunked).
pub type RawResponse = (u16, BTreeMap<String, String>, Vec<u8>);

/// GET over a plain socket (HTTP/1.1, `Connection: close`), returning status, response
/// headers (lower-case names) and the body exactly as sent (de-chunked, never decompressed).
pub fn get_raw(url: &str, headers: &[(&str, &str)]) -> RawResponse {
    exchange("GET", url, headers, b"", Duration::from_secs(60)).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The one raw HTTP/1.1 client of the tests: any method, `Connection: close`, errors as values.
pub fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<RawResponse> {
    use std::io::{Error, Write};
    let rest = url.strip_prefix("http://").ok_or_else(|| Error::other("not an http URL"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut sock = std::net::TcpStream::connect(host)?;
    sock.set_read_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes())?;
    sock.write_all(body)?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::other("no status"))?;
    let hdrs: BTreeMap<String, String> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if hdrs.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = std::panic::catch_unwind(|| dechunk(&body)).map_err(|_| Error::other("bad chunked body"))?;
    }
    Ok((status, hdrs, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Runs the shared exposition linter (`tests/expo.py`) on a text; returns its report.
pub fn lint(text: &str, strict: bool) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("fe-lint-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&dir, text).unwrap();
    let script = format!("{}/tests/expo.py", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("lint").arg(&dir);
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd.output().expect("python3 runs tests/expo.py");
    let _ = std::fs::remove_file(&dir);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

// ---- Helpers added for the discovery / polling / CLI / HTTP end-to-end tests. ----

pub use fake_fastly::RecordedRequest;

/// Starts the exporter with `-token token` and both endpoints pointed at `fake`, plus `extra`.
pub fn start_against(fake: &FakeFastly, token: &str, extra: &[&str]) -> Exporter {
    start_against_env(fake, Some(token), extra, &[])
}

/// Like [`start_against`], with the token optional (e.g. given by the environment) and extra
/// environment variables.
pub fn start_against_env(fake: &FakeFastly, token: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Exporter {
    let url = fake.url();
    let mut args: Vec<&str> = Vec::new();
    if let Some(t) = token {
        args.extend(["-token", t]);
    }
    args.extend(["-api-endpoint", &url, "-rt-endpoint", &url]);
    args.extend_from_slice(extra);
    Exporter::start_env(&args, env)
}

/// A fake with `services`, a real-time stream in `realtime` mode and no other product.
pub fn fake_with(services: Vec<FakeService>, realtime: StreamMode) -> FakeFastly {
    FakeFastly::start(FakeConfig {
        services,
        realtime,
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .expect("fake starts")
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout` with `what` and `detail()`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool, detail: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", detail());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Exporter {
    /// The IDs `/sd` lists, in the order given (asserting the documented JSON shape).
    pub fn sd(&self) -> Vec<String> {
        sd_at(&self.addr)
    }

    /// Waits until `/sd` lists exactly `want` (in this order).
    pub fn wait_sd(&self, want: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let last = loop {
            let now = self.sd();
            if now == want {
                return;
            }
            if Instant::now() > deadline {
                break now;
            }
            thread::sleep(Duration::from_millis(50));
        };
        panic!("/sd never became {want:?}; last {last:?}; log:\n{}", self.output());
    }

    /// SIGHUP, then waits until the refresh it causes has run to its end: a HUP starts a
    /// main-loop iteration with a service-list request, and the iteration runs every due
    /// refresh (metadata included) before the next one starts; so once a second HUP's list
    /// request has reached `fake`, everything the first one caused has been done. (Instead of
    /// sleeping after a HUP.)
    pub fn hup_and_settle(&self, fake: &FakeFastly) {
        for _ in 0..2 {
            let before = list_requests(fake);
            self.signal("HUP");
            wait_until(
                "a service list refresh after SIGHUP",
                Duration::from_secs(30),
                || list_requests(fake) > before,
                || self.output(),
            );
        }
    }

    /// Status of `/readyz`.
    pub fn readyz(&self) -> u16 {
        self.get("/readyz").0
    }
}

/// Requests the fake received for `stream` of service `id`, oldest first.
pub fn polls(fake: &FakeFastly, stream: fake_fastly::Stream, id: &str) -> Vec<RecordedRequest> {
    let prefix = format!("/v1/{}/{id}/ts/", stream.path());
    fake.state().requests().into_iter().filter(|r| r.path_and_query.starts_with(&prefix)).collect()
}

/// Requests the fake received for the real-time stream of service `id`, oldest first.
pub fn rt_polls(fake: &FakeFastly, id: &str) -> Vec<RecordedRequest> {
    polls(fake, fake_fastly::Stream::Realtime, id)
}

/// The `ts` a real-time poll asked for.
pub fn ts_of(r: &RecordedRequest) -> u64 {
    r.path_and_query
        .rsplit('/')
        .next()
        .and_then(|t| t.split('?').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ts in {}", r.path_and_query))
}

/// A real-time answer carrying one record: `requests` per datacenter, `Timestamp` = `ts`.
pub fn rt_data(ts: u64, datacenters: &[(&str, u64)]) -> Vec<u8> {
    let dcs: serde_json::Map<String, serde_json::Value> =
        datacenters.iter().map(|(dc, n)| (dc.to_string(), serde_json::json!({"requests": n, "hits": n}))).collect();
    let total: u64 = datacenters.iter().map(|(_, n)| n).sum();
    serde_json::json!({
        "Data": [{
            "datacenter": dcs,
            "aggregated": {"requests": total, "hits": total},
            "recorded": ts - 1,
        }],
        "Timestamp": ts,
        "AggregateDelay": 0,
    })
    .to_string()
    .into_bytes()
}

/// Fastly's "No data available" envelope.
pub fn rt_no_data(ts: u64) -> Vec<u8> {
    format!(r#"{{"Data":[],"Timestamp":{ts},"AggregateDelay":0,"Error":"No data available, please retry"}}"#)
        .into_bytes()
}

/// A fresh path in the temp directory (not created).
pub fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fe-test-{}-{}-{name}", std::process::id(), rand_suffix()))
}

/// Like [`run_to_exit`], but kills the process after `timeout`: exit code (None if it had to
/// be killed), stdout, stderr.
pub fn run_to_exit_timeout(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    scrub_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("runs");
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let t1 = pump_joinable(child.stdout.take().expect("stdout"), out.clone());
    let t2 = pump_joinable(child.stderr.take().expect("stderr"), err.clone());
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = t1.join();
    let _ = t2.join();
    let out = out.lock().unwrap().clone();
    let err = err.lock().unwrap().clone();
    (code, out, err)
}

fn pump_joinable(mut stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf));
    })
}

/// Any HTTP/1.1 request over a plain socket (`Connection: close`): status, headers
/// (lower-case names), body as sent (chunked bodies are de-chunked).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    exchange(method, url, headers, body, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

// ---- Helpers added for the fault-injection, robustness and soak tests. ----

/// Like [`get_raw`], but returns connection and read errors (or a malformed answer) instead
/// of panicking, and gives up reading after `timeout`: for clients racing a shutdown or an
/// overloaded server.
pub fn try_get(url: &str, timeout: Duration) -> std::io::Result<RawResponse> {
    exchange("GET", url, &[], b"", timeout)
}

/// True for the exporter's own metrics (fixed names, plain `/metrics` only), which tests about
/// the catalog's families leave aside.
pub fn is_self_metric(name: &str) -> bool {
    name.starts_with("fastly_exporter_") || name.starts_with("process_")
}

// ---- Streaming scrapes: bodies far larger than a test should hold in memory. ----

/// What [`stream_scrape`] saw: status, whether the body was gzip, sample lines by the prefix
/// of their metric name, total body bytes (decoded), and whether the body ended properly
/// (terminating chunk, or a gzip stream that ends cleanly, and a final newline).
#[derive(Debug, Default)]
pub struct Streamed {
    pub status: u16,
    pub gzip: bool,
    pub samples: usize,
    pub matching: usize,
    pub bytes: u64,
    pub complete: bool,
}

/// GETs `path` over HTTP/1.1 and counts sample lines without keeping the body: those whose
/// metric name starts with `prefix` in `matching`, all of them in `samples`. De-chunks and,
/// when `gzip`, asks for and decompresses gzip, all streamed.
pub fn stream_scrape(addr: &str, path: &str, gzip: bool, prefix: &str) -> std::io::Result<Streamed> {
    use std::io::{BufRead, Error, Write};
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(120)))?;
    let enc = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    write!(sock, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{enc}\r\n")?;
    let mut r = BufReader::with_capacity(256 << 10, sock);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| Error::other("no status"))?;
    let (mut chunked, mut is_gzip) = (false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        chunked |= l == "transfer-encoding: chunked";
        is_gzip |= l == "content-encoding: gzip";
    }
    let body: Box<dyn Read> = if chunked { Box::new(Dechunk { inner: r, left: 0, done: false }) } else { Box::new(r) };
    let mut out = Streamed { status, gzip: is_gzip, ..Streamed::default() };
    let text: Box<dyn BufRead> = if is_gzip {
        Box::new(BufReader::with_capacity(256 << 10, flate2::read::GzDecoder::new(body)))
    } else {
        Box::new(BufReader::with_capacity(256 << 10, body))
    };
    let mut last_newline = true;
    for_each_line(text, |l| {
        out.bytes += l.len() as u64;
        last_newline = l.ends_with(b"\n");
        if !l.starts_with(b"#") && !l.is_empty() {
            out.samples += 1;
            if l.starts_with(prefix.as_bytes()) {
                out.matching += 1;
            }
        }
    })?;
    out.complete = last_newline;
    Ok(out)
}

/// Calls `f` with every line (including its `\n`) of `r`, reusing one buffer.
fn for_each_line(mut r: Box<dyn std::io::BufRead>, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        f(&buf);
    }
}

/// A streaming `Transfer-Encoding: chunked` decoder; a body that ends before its terminating
/// zero-length chunk is an error (`UnexpectedEof`), so truncation is never mistaken for the end.
struct Dechunk<R: std::io::BufRead> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: std::io::BufRead> Read for Dechunk<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.inner.read_line(&mut size)? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "body ended without its last chunk"));
            }
            let hex = size.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(hex, 16).map_err(|_| Error::other(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "body ended inside a chunk"));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// Resident set size of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's RSS every 10 ms on a thread until dropped; `max()` is the peak seen.
pub struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    peak: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(v) = rss_bytes(pid) {
                    p.fetch_max(v, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    /// Peak RSS so far, in bytes.
    pub fn max(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The IDs `/sd` of the exporter at `addr` lists, in the order given (asserting the
/// documented JSON shape).
pub fn sd_at(addr: &str) -> Vec<String> {
    let (status, body) = get(&format!("http://{addr}/sd"), &[]);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/sd is not JSON ({e}): {body}"));
    let groups = v.as_array().unwrap_or_else(|| panic!("/sd: {body}"));
    assert_eq!(groups.len(), 1, "/sd: {body}");
    groups[0]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("/sd: {body}"))
        .iter()
        .map(|t| t.as_str().expect("target is a string").to_string())
        .collect()
}

/// Service-list requests `fake` received (first pages and later ones).
pub fn list_requests(fake: &FakeFastly) -> usize {
    fake.state().count("/service?")
}

/// Takes `scrape` every `every` until `pred` holds and returns that scrape; after `timeout`, panics naming
/// `what` and what `context` says (an exporter's log). Shared by the exporter in its own
/// process and the one run in the test process.
pub fn scrape_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    scrape: impl Fn() -> expo::Scrape,
    pred: impl Fn(&expo::Scrape) -> bool,
    context: impl Fn() -> String,
) -> expo::Scrape {
    let deadline = Instant::now() + timeout;
    loop {
        let m = scrape();
        if pred(&m) {
            return m;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; {}", context());
        }
        thread::sleep(every);
    }
}

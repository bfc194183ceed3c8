//! `make bench`: the scale benchmark a user runs on a laptop. It prints a table, it asserts nothing.
//!
//! For each configuration it starts `target/release/fake-fastly` (generated live streams, one
//! record per service per second) and the exporter against it (the static binary that ships,
//! from `make static`; `-glibc` configurations: `target/release/fastly-exporter`), waits until
//! a scrape shows data for every service, lets it run, and then measures:
//!
//! * memory: VmRSS sampled every second over the ingest window (median) and VmHWM at the end;
//! * ingest: exporter (and fake) CPU from `/proc/PID/stat` over a window with no scrapes, and
//!   real-time responses/s from `fastly_rt_realtime_api_requests_total{result="success"}`
//!   read by one full scrape before and one after the window;
//! * render: full `/metrics` (median of 10), with gzip, `?target=` (median of 100), and a
//!   baseline: this process serving a pre-built blob of the same size with the same chunked
//!   framing (64 KiB chunks) to the same client.
//!
//! It also prints in-process micro figures (parse, merge, render into a sink). Select what runs
//! with `BENCH_ONLY=A-tls,A` or arguments (`cargo bench --bench scale -- A-tls micro`); names
//! are `micro A-tls A A-tls-glibc A-glibc B-tls B Bagg-tls Bagg A1 G-tls G-tls-glibc C-tls C-tls-glibc`
//! (`-tls`: the fake serves
//! HTTPS with a private CA the exporter trusts through `SSL_CERT_FILE`, as on the real
//! transport; `-glibc`: the host's `cargo build --release` binary instead of the static one
//! that ships). `--datacenters N` / `BENCH_DATACENTERS`, `--window S` / `BENCH_WINDOW`
//! and `--settle S` / `BENCH_SETTLE` change the defaults (10, 20 s, 10 s). The final report is
//! also written to `bench-out/last.txt`; process logs go to `bench-out/<config>-*.log`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_fastly::{GenSpec, Stream as FakeStream, sample_bodies};
use fastly_exporter::bench::{
    AccountSnapshot, Batch, Filter, Identity, Interner, MergeContext, Mode, Plan, Registry, RestoreContext, Scrape,
    Scratch, Selection, SnapshotWriter, Stream, StreamTable, catalog, parse_response, parse_serde, read_snapshot,
    slot_keys,
};

/// `/proc/PID/stat` counts CPU time in USER_HZ, which Linux fixes at 100 for user space.
const CLK_TCK: f64 = 100.0;
/// Client read buffer.
const READ_BUF: usize = 256 * 1024;
/// Chunk size of the baseline blob (the exporter emits chunks of about this size).
const BLOB_CHUNK: usize = 64 * 1024;
/// How much of a real scrape is kept to fill the baseline blob.
const SAMPLE: usize = 4 << 20;
const FULL_RUNS: usize = 10;
const GZIP_RUNS: usize = 10;
const TARGET_RUNS: usize = 100;
const BLOB_RUNS: usize = 10;
const READY_TIMEOUT: Duration = Duration::from_secs(180);

type Res<T> = Result<T, String>;

/// Set by SIGINT/SIGTERM: every wait checks it, so the process guards get dropped.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// One end-to-end configuration.
struct Config {
    name: &'static str,
    services: usize,
    inspectors: bool,
    aggregate: bool,
    /// The fake serves HTTPS with a private CA the exporter trusts through `SSL_CERT_FILE`.
    tls: bool,
    /// Which exporter binary runs.
    build: Build,
}

/// The exporter binary a configuration runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// What ships (release archive, container image, Helm chart): the static musl binary of
    /// `make static`, `target/x86_64-unknown-linux-musl/release/fastly-exporter`.
    Static,
    /// `cargo build --release` for the host (glibc). Its allocator keeps per-thread arenas, so
    /// the same work leaves more RSS than the static binary's.
    Glibc,
}

impl Build {
    fn label(self) -> &'static str {
        match self {
            Build::Static => "static (musl)",
            Build::Glibc => "cargo (glibc)",
        }
    }
}

/// Scale A: 1,000 services, real-time only, per datacenter. Scale B: 300 services with all
/// three streams (2 origins and 2 domains per datacenter), per datacenter, and the same
/// aggregate-only. Each over TLS (the real transport) and plain HTTP, side by side, with the
/// binary that ships; Scale A also with the host's `cargo build --release` binary. G: the
/// 200 services over TLS the Go exporter was measured at. Scale C: 5,000 services over TLS,
/// both builds (about 2 GB of exposition: three plain and three gzip scrapes, no blob
/// baseline).
const CONFIGS: [Config; 13] = [
    Config { name: "A-tls", services: 1000, inspectors: false, aggregate: false, tls: true, build: Build::Static },
    Config { name: "A", services: 1000, inspectors: false, aggregate: false, tls: false, build: Build::Static },
    Config { name: "A-tls-glibc", services: 1000, inspectors: false, aggregate: false, tls: true, build: Build::Glibc },
    Config { name: "A-glibc", services: 1000, inspectors: false, aggregate: false, tls: false, build: Build::Glibc },
    Config { name: "B-tls", services: 300, inspectors: true, aggregate: false, tls: true, build: Build::Static },
    Config { name: "B", services: 300, inspectors: true, aggregate: false, tls: false, build: Build::Static },
    Config { name: "Bagg-tls", services: 300, inspectors: true, aggregate: true, tls: true, build: Build::Static },
    Config { name: "Bagg", services: 300, inspectors: true, aggregate: true, tls: false, build: Build::Static },
    Config { name: "A1", services: 100, inspectors: false, aggregate: false, tls: false, build: Build::Static },
    Config { name: "G-tls", services: 200, inspectors: false, aggregate: false, tls: true, build: Build::Static },
    Config { name: "G-tls-glibc", services: 200, inspectors: false, aggregate: false, tls: true, build: Build::Glibc },
    Config { name: "C-tls", services: 5000, inspectors: false, aggregate: false, tls: true, build: Build::Static },
    Config { name: "C-tls-glibc", services: 5000, inspectors: false, aggregate: false, tls: true, build: Build::Glibc },
];

/// The Go exporter (v10.2.0) at 200 services × 10 datacenters over TLS, measured on the
/// benchmark's 2-core machine side by side with ours (issue 21): % of one core. There is no
/// Go toolchain here to measure it again, so the G rows compare against this figure.
const GO_CPU_200_TLS: f64 = 26.1;

/// Series beyond which a configuration is "large": readiness is read from `/status.json`
/// instead of full scrapes, scrapes are timed three times, and the blob baseline is skipped
/// (it would hold a copy of the whole exposition in this process).
const LARGE_SERIES: usize = 5_000_000;

struct Settings {
    only: Vec<String>,
    /// `--count WORK N`: run one piece of the micro bench exactly N times and nothing else,
    /// for an instruction counter (`make instructions`).
    count: Option<(Work, usize)>,
    datacenters: usize,
    window: u64,
    settle: u64,
}

impl Settings {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(name))
    }
}

fn parse_settings() -> Res<Settings> {
    let env_num = |k: &str, d: u64| -> Res<u64> {
        match std::env::var(k) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| format!("{k}={v:?} is not a number")),
            _ => Ok(d),
        }
    };
    let mut s = Settings {
        count: None,
        only: std::env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        datacenters: env_num("BENCH_DATACENTERS", 10)? as usize,
        window: env_num("BENCH_WINDOW", 20)?,
        settle: env_num("BENCH_SETTLE", 10)?,
    };
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        let num = |v: Option<String>| -> Res<u64> {
            v.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| format!("{a} needs a number"))
        };
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--datacenters" => s.datacenters = num(args.next())? as usize,
            "--window" => s.window = num(args.next())?,
            "--settle" => s.settle = num(args.next())?,
            "--count" => {
                let work = args.next().unwrap_or_default();
                let work = Work::ALL
                    .into_iter()
                    .find(|w| w.name() == work)
                    .ok_or_else(|| format!("--count: unknown work {work:?} (parse, parse-agg, merge, merge-agg)"))?;
                s.count = Some((work, num(args.next())? as usize));
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo bench --bench scale -- [--count parse|parse-agg|merge|merge-agg N] [micro] [A-tls] [A] [A-tls-glibc] [A-glibc] [B-tls] [B] [Bagg-tls] [Bagg] [A1] [G-tls] [G-tls-glibc] [C-tls] [C-tls-glibc] \
                     [--datacenters N] [--window S] [--settle S]\n(or BENCH_ONLY=A-tls,A BENCH_DATACENTERS \
                     BENCH_WINDOW BENCH_SETTLE)"
                );
                std::process::exit(0);
            }
            _ if a.starts_with('-') => return Err(format!("unknown flag {a}")),
            _ => positional.extend(a.split(',').filter(|x| !x.is_empty()).map(str::to_string)),
        }
    }
    if !positional.is_empty() {
        s.only = positional;
    }
    for o in &s.only {
        if !o.eq_ignore_ascii_case("micro") && !CONFIGS.iter().any(|c| c.name.eq_ignore_ascii_case(o)) {
            return Err(format!(
                "unknown configuration {o:?} (use micro, A-tls, A, A-tls-glibc, A-glibc, B-tls, B, Bagg-tls, Bagg, A1, G-tls, \
                 G-tls-glibc, C-tls, C-tls-glibc)"
            ));
        }
    }
    s.datacenters = s.datacenters.max(1);
    s.window = s.window.max(1);
    Ok(s)
}

fn main() {
    let settings = match parse_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once; the first one stops the run cleanly.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&STOP));
        let _ = signal_hook::flag::register(sig, Arc::clone(&STOP));
    }
    if let Some((work, n)) = settings.count {
        run_counted(work, n, settings.datacenters);
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("bench-out");
    let _ = std::fs::create_dir_all(&out_dir);
    let started = Instant::now();

    let mut report = String::new();
    let _ = writeln!(report, "fastly-exporter scale benchmark (make bench)");
    let _ = writeln!(report, "{}", machine_note());
    eprintln!("{report}");

    if settings.wants("micro") {
        eprintln!("[micro] in-process parse / merge / render ...");
        let micro = micro(settings.datacenters);
        eprint!("{micro}");
        report.push_str(&micro);
    }

    let selected: Vec<&Config> = CONFIGS.iter().filter(|c| settings.wants(c.name)).collect();
    if !selected.is_empty() {
        let bin = bin_dir(&root);
        check_fd_limit();
        let mut results = Vec::new();
        for cfg in &selected {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            eprintln!("[{}] starting ({} services) ...", cfg.name, cfg.services);
            let t = Instant::now();
            let r = run_config(cfg, &settings, &bin, &out_dir);
            match &r {
                Ok(_) => eprintln!("[{}] done in {:.0} s", cfg.name, t.elapsed().as_secs_f64()),
                Err(e) => eprintln!("[{}] FAILED after {:.0} s: {e}", cfg.name, t.elapsed().as_secs_f64()),
            }
            results.push((*cfg, r));
        }
        report.push_str(&table(&results, &settings));
    }
    let _ = writeln!(
        report,
        "total bench time: {:.0} s; load average at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    println!("\n{report}");
    if STOP.load(Ordering::SeqCst) {
        std::process::exit(130); // keep the last complete report
    }
    let path = out_dir.join("last.txt");
    match std::fs::write(&path, &report) {
        Ok(()) => println!("(written to {})", path.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Machine and environment

fn machine_note() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string());
    let mem = status_kb_of("/proc/meminfo", "MemTotal").map_or(String::new(), |kb| format!(", {:.1} GiB RAM", gib(kb)));
    format!(
        "machine: nproc {cpus}, {model}{mem}, {} {}; load average {}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        load_average()
    )
}

/// The 1-minute load average: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn gib(kb: u64) -> f64 {
    kb as f64 / (1024.0 * 1024.0)
}

/// `target/release`: next to this bench binary (`target/release/deps/scale-*`), else the default.
fn bin_dir(root: &Path) -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|p| p.parent()?.parent().map(Path::to_path_buf));
    match beside {
        Some(dir) if dir.join("fastly-exporter").exists() && dir.join("fake-fastly").exists() => dir,
        _ => root.join("target/release"),
    }
}

/// Where `make static` puts the shipped binary for this machine's architecture, found from
/// `target/release` (`bin`).
fn static_dir(bin: &Path) -> Res<PathBuf> {
    let target = bin.parent().ok_or("no target directory")?;
    let dir = target.join(format!("{}-unknown-linux-musl", std::env::consts::ARCH)).join("release");
    if dir.join("fastly-exporter").exists() {
        Ok(dir)
    } else {
        Err(format!("no static binary in {} (run `make static`, or `make bench`, which builds it)", dir.display()))
    }
}

fn check_fd_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = soft.filter(|n| *n < 8192) {
        eprintln!(
            "bench: warning: open-file limit is {n}; 1,000 services need more (run via `make bench`, or ulimit -n 20000)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// In-process micro figures

/// Runs `f` repeatedly for at least `min` (after a short warm-up); returns seconds per call.
fn per_call(min: Duration, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..50 {
        f(i);
    }
    let t = Instant::now();
    let mut n = 0;
    while n < 100 || t.elapsed() < min {
        for _ in 0..100 {
            f(n);
            n += 1;
        }
    }
    t.elapsed().as_secs_f64() / n as f64
}

/// One piece of the micro bench, for `--count`.
#[derive(Clone, Copy)]
enum Work {
    Parse,
    ParseAggregate,
    Merge,
    MergeAggregate,
}

impl Work {
    const ALL: [Work; 4] = [Work::Parse, Work::ParseAggregate, Work::Merge, Work::MergeAggregate];

    fn name(self) -> &'static str {
        match self {
            Work::Parse => "parse",
            Work::ParseAggregate => "parse-agg",
            Work::Merge => "merge",
            Work::MergeAggregate => "merge-agg",
        }
    }
}

/// Runs `work` on the micro bench's bodies `n` times and nothing else. An instruction counter
/// run at two values of `n` gives the instructions per body from the difference (the setup,
/// the same both times, cancels out). Timings on a shared 2-core machine swing by a third
/// from minute to minute; instruction counts do not.
fn run_counted(work: Work, n: usize, datacenters: usize) {
    let spec = GenSpec { datacenters, entities: 2, seed: 1 };
    let bodies = sample_bodies(FakeStream::Realtime, &spec);
    let mode = match work {
        Work::Parse | Work::Merge => Mode::PerDatacenter,
        Work::ParseAggregate | Work::MergeAggregate => Mode::Aggregate,
    };
    let mut batch = Batch::default();
    match work {
        Work::Parse | Work::ParseAggregate => {
            for i in 0..n {
                parse_response(&bodies[i % bodies.len()], Stream::Realtime, mode, &mut batch)
                    .expect("sample body parses");
            }
        }
        Work::Merge | Work::MergeAggregate => {
            let parsed: Vec<Batch> = bodies
                .iter()
                .map(|body| {
                    let mut b = Batch::default();
                    parse_response(body, Stream::Realtime, mode, &mut b).expect("sample body parses");
                    b
                })
                .collect();
            let def = catalog().stream(Stream::Realtime);
            let names = Interner::default();
            let ctx = MergeContext { def, entity_label: None, names: &names, now: 1, places: None };
            let (mut table, mut scratch) = (StreamTable::default(), Scratch::default());
            for i in 0..n {
                table.merge(&ctx, &parsed[i % parsed.len()], &mut scratch);
            }
        }
    }
    std::hint::black_box(&batch);
}

fn micro(datacenters: usize) -> String {
    let spec = GenSpec { datacenters, entities: 2, seed: 1 };
    let bodies = sample_bodies(FakeStream::Realtime, &spec);
    let avg = bodies.iter().map(Vec::len).sum::<usize>() as f64 / bodies.len() as f64;
    let def = catalog().stream(Stream::Realtime);
    let names = Interner::default();
    let ctx = MergeContext { def, entity_label: None, names: &names, now: 1, places: None };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nmicro (in-process, one thread; real-time body: {datacenters} DCs, {} variants, {:.1} KB avg)",
        bodies.len(),
        avg / 1e3
    );
    let mut batches: Vec<Vec<Batch>> = Vec::new();
    for (label, mode) in [("per-DC", Mode::PerDatacenter), ("aggregate", Mode::Aggregate)] {
        let mut b = Batch::default();
        let s = per_call(Duration::from_millis(800), |i| {
            parse_response(&bodies[i % bodies.len()], Stream::Realtime, mode, &mut b).expect("sample body parses");
        });
        let _ = writeln!(out, "  parse {label:<10} {:>8.1} µs/body  {:>7.0} MB/s", s * 1e6, avg / s / 1e6);
        // The serde parser alone: what every body took before the fast reader (and what it
        // falls back to).
        let s = per_call(Duration::from_millis(500), |i| {
            parse_serde(&bodies[i % bodies.len()], Stream::Realtime, mode, &mut b).expect("sample body parses");
        });
        let _ = writeln!(
            out,
            "  parse {label:<10} {:>8.1} µs/body  {:>7.0} MB/s  (serde parser alone)",
            s * 1e6,
            avg / s / 1e6
        );
        let parsed = bodies
            .iter()
            .map(|body| {
                let mut b = Batch::default();
                parse_response(body, Stream::Realtime, mode, &mut b).expect("sample body parses");
                b
            })
            .collect();
        batches.push(parsed);
    }
    for (label, parsed) in ["per-DC", "aggregate"].iter().zip(&batches) {
        let mut table = StreamTable::default();
        let mut scratch = Scratch::default();
        let s = per_call(Duration::from_millis(500), |i| table.merge(&ctx, &parsed[i % parsed.len()], &mut scratch));
        let _ = writeln!(out, "  merge {label:<10} {:>8.1} µs/body", s * 1e6);
    }
    let keys: Vec<&str> =
        def.fields.iter().copied().chain(["tls", "object_size_other", "tls_handshake_sent_bytes"]).collect();
    let mut hits = 0u64;
    let s = per_call(Duration::from_millis(200), |_| {
        for k in &keys {
            hits += u64::from(def.field_bytes(std::hint::black_box(k.as_bytes())).is_some());
        }
    });
    let _ = writeln!(out, "  field lookup     {:>8.1} ns/key ({} keys)", s * 1e9 / keys.len() as f64, keys.len());
    std::hint::black_box(hits);

    // Render: 1,000 services × `datacenters` rows of the real-time stream into a sink.
    let services = 1000;
    let registry = Registry::new();
    let mut scratch = Scratch::default();
    for i in 0..services {
        let (svc, _) = registry.upsert(&format!("svc{i:04}xxxxxxxxxxxxxxx"), &format!("service-{i}"), "1");
        svc.table_mut(Stream::Realtime).merge(&ctx, &batches[0][i % batches[0].len()], &mut scratch);
    }
    let plan = Arc::new(Plan::new(&Selection::new("fastly", "rt", &Filter::default())));
    let account = Arc::new(AccountSnapshot::default());
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut render = |count_lines: bool| {
        let mut scrape = Scrape::new(plan.clone(), registry.snapshot(), Some(account.clone()), false, Vec::new());
        let (mut bytes, mut series) = (0usize, 0usize);
        let t = Instant::now();
        loop {
            buf.clear();
            let more = scrape.next_chunk(&mut buf);
            bytes += buf.len();
            if count_lines {
                series += buf.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count();
            }
            if !more {
                break;
            }
        }
        (t.elapsed().as_secs_f64(), bytes, series)
    };
    let (_, bytes, series) = render(true);
    let mut times: Vec<f64> = (0..5).map(|_| render(false).0).collect();
    let med = median_f(&mut times);
    let _ = writeln!(
        out,
        "  render {services} svc × {datacenters} DCs into a sink: {:.1} MB, {:.2} M series in {:.0} ms (median of 5) = \
         {:.0} MB/s",
        bytes as f64 / 1e6,
        series as f64 / 1e6,
        med * 1e3,
        bytes as f64 / med / 1e6
    );
    out.push_str(&gzip_levels(&plan, &registry, &account));
    out.push_str(&state_file(&plan, &registry, &account));
    out
}

/// The `-state-file` at this scale: size against a full gzip scrape, time to write (encode,
/// compress, into memory: the disk is the machine's, not the exporter's) and to restore (read
/// back and rebuild the tables). Counters are first scaled to a day of this traffic
/// (× 86,400), the size a long-running exporter's file has.
fn state_file(plan: &Arc<Plan>, registry: &Registry, account: &Arc<AccountSnapshot>) -> String {
    for (i, svc) in registry.snapshot().iter().enumerate() {
        let mut t = svc.table_mut(Stream::Realtime);
        let ts = 1_700_000_000 + i as u64;
        let ctx =
            RestoreContext { names: registry.names(), entity_label: None, slots: slot_keys(Stream::Realtime).len() };
        let rows = t
            .rows()
            .iter()
            .map(|r| fastly_exporter::bench::RestoredRow {
                dc: r.dc.to_string(),
                entity: r.entity.to_string(),
                seen: r.seen,
                values: r.values.iter().map(|v| v * 86_400.0).collect(),
            })
            .collect();
        t.restore(&ctx, rows, ts, None);
    }
    let id = Identity { namespace: "fastly".into(), subsystem: "rt".into(), rows: "datacenter".into() };
    let write = || {
        let mut w = SnapshotWriter::new(Vec::with_capacity(8 << 20), &id, 1).expect("writing to memory");
        for svc in registry.snapshot() {
            w.service(&svc).expect("writing to memory");
        }
        w.finish().expect("writing to memory")
    };
    let file = write();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(write());
            t.elapsed().as_secs_f64()
        })
        .collect();
    let write_s = median_f(&mut times);
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let restored = read_snapshot(&file[..], &id).expect("reads back");
            let names = Interner::default();
            let ctx = RestoreContext { names: &names, entity_label: None, slots: slot_keys(Stream::Realtime).len() };
            let mut tables = Vec::with_capacity(restored.streams.len());
            for (_, r) in restored.streams {
                let mut table = StreamTable::default();
                table.restore(&ctx, r.rows, r.next_ts, None);
                tables.push(table);
            }
            std::hint::black_box(tables);
            t.elapsed().as_secs_f64()
        })
        .collect();
    let read_s = median_f(&mut times);
    let mut scrape = Scrape::new(plan.clone(), registry.snapshot(), Some(account.clone()), false, Vec::new());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        buf.clear();
        let more = scrape.next_chunk(&mut buf);
        gz.write_all(&buf).expect("writing to memory");
        if !more {
            break;
        }
    }
    let gzip_scrape = gz.finish().expect("writing to memory").len();
    format!(
        "  state file, {} services (counters at a day's values): {:.2} MB (a gzip scrape of the same: {:.1} MB); \
         write {:.0} ms, restore {:.0} ms (median of 5, one core, in memory)\n",
        registry.len(),
        file.len() as f64 / 1e6,
        gzip_scrape as f64 / 1e6,
        write_s * 1e3,
        read_s * 1e3
    )
}

/// The gzip trade-off, bytes against CPU, for the first 100 services of the render above
/// (the same text a scrape sends), at the levels worth considering; the exporter uses level 1
/// (`Compression::fast()`, src/serve/routes.rs).
fn gzip_levels(plan: &Arc<Plan>, registry: &Registry, account: &Arc<AccountSnapshot>) -> String {
    let services: Vec<_> = registry.snapshot().into_iter().take(100).collect();
    let mut scrape = Scrape::new(plan.clone(), services, Some(account.clone()), false, Vec::new());
    let mut text = Vec::new();
    while scrape.next_chunk(&mut text) {}
    let mut out = format!("  gzip of {:.1} MB of exposition (100 services), one core:\n", text.len() as f64 / 1e6);
    for level in [1, 2, 3, 4, 6, 9] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            gz.write_all(&text).expect("writing to memory");
            size = gz.finish().expect("writing to memory").len();
            times.push(t.elapsed().as_secs_f64());
        }
        let secs = median_f(&mut times);
        let _ = writeln!(
            out,
            "    level {level}: {:>6.2} MB ({:>4.1}x)  {:>6.0} ms = {:>4.0} MB/s of text{}",
            size as f64 / 1e6,
            text.len() as f64 / size as f64,
            secs * 1e3,
            text.len() as f64 / secs / 1e6,
            if level == 1 { "  (used)" } else { "" }
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (and reaped) when dropped: on success, error, panic or Ctrl-C.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self, log: &Path) -> Res<()> {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!("{} exited ({st}); see {}", self.name, log.display())),
            _ => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(bin: &Path, name: &str) -> Command {
    let mut cmd = Command::new(bin.join(name));
    // The user's FASTLY_* settings (filters, token, ...) must not leak into the benchmark.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FASTLY_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn log_file(path: &Path) -> Res<File> {
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Starts the fake on a free port (with TLS: a fresh CA written to `tls_dir`); returns it and
/// its base URL.
fn start_fake(bin: &Path, cfg: &Config, dcs: usize, log: &Path, tls_dir: &Path) -> Res<(Proc, String)> {
    let k = if cfg.inspectors { "2" } else { "0" };
    let mut cmd = command(bin, "fake-fastly");
    if cfg.tls {
        cmd.arg("-tls-dir").arg(tls_dir);
    }
    cmd.args(["-listen", "127.0.0.1:0", "-token", "bench", "-origins", k, "-domains", k])
        .args(["-services", &cfg.services.to_string(), "-datacenters", &dcs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(log)?);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e} (run `make bench`)", bin.join("fake-fastly").display()))?;
    let mut proc = Proc { name: "fake-fastly", child };
    let stdout = proc.child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("fake-fastly: {e}"))?;
    let url = line
        .trim()
        .strip_prefix("fake-fastly listening on ")
        .ok_or_else(|| format!("fake-fastly did not start ({:?}); see {}", line.trim(), log.display()))?
        .to_string();
    Ok((proc, url))
}

fn free_port() -> Res<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start_exporter(bin: &Path, cfg: &Config, fake_url: &str, log: &Path, tls_dir: &Path) -> Res<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = command(bin, "fastly-exporter");
    if cfg.tls {
        // As an operator behind a private CA would: the exporter trusts it through SSL_CERT_FILE.
        cmd.env("SSL_CERT_FILE", tls_dir.join("ca.pem"));
    }
    cmd.args(["-token", "bench", "-api-endpoint", fake_url, "-rt-endpoint", fake_url, "-listen", &addr]);
    if cfg.aggregate {
        cmd.arg("-aggregate-only");
    }
    let f = log_file(log)?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
    let child = cmd.spawn().map_err(|e| format!("cannot start fastly-exporter: {e} (run `make bench`)"))?;
    Ok((Proc { name: "fastly-exporter", child }, addr))
}

fn sleep(d: Duration) -> Res<()> {
    let end = Instant::now() + d;
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".to_string());
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

fn interrupted() -> Res<()> {
    if STOP.load(Ordering::SeqCst) { Err("interrupted".to_string()) } else { Ok(()) }
}

fn cpu_ticks(pid: u32) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = &s[s.rfind(')').ok_or("bad stat")? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime); `rest` starts at field 3.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or("bad stat");
    Ok(num(11)? + num(12)?)
}

fn status_kb_of(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line[key.len() + 1..].split_whitespace().next()?.parse().ok()
}

fn status_bytes(pid: u32, key: &str) -> Res<u64> {
    status_kb_of(&format!("/proc/{pid}/status"), key).map(|kb| kb * 1024).ok_or_else(|| format!("no {key} for {pid}"))
}

// ---------------------------------------------------------------------------------------------
// HTTP client: raw socket, HTTP/1.1, `Connection: close`, streaming chunked decoding.

struct Fetch {
    status: u16,
    /// Body bytes as sent (de-chunked, still compressed with gzip).
    bytes: u64,
    /// From just before the request is written to the last body byte.
    elapsed: Duration,
}

#[derive(Clone, Copy)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// Incremental `Transfer-Encoding: chunked` decoder handing body bytes to a sink.
struct Dechunk {
    state: ChunkState,
    line: Vec<u8>,
    bytes: u64,
}

impl Dechunk {
    fn feed(&mut self, mut d: &[u8], sink: &mut dyn FnMut(&[u8])) -> Res<()> {
        while !d.is_empty() {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(i) = d.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(d);
                        if self.line.len() > 4096 {
                            return Err("chunk header too long".to_string());
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&d[..i]);
                    d = &d[i + 1..];
                    let text = String::from_utf8_lossy(&self.line);
                    let text = text.trim();
                    self.state = match self.state {
                        ChunkState::Size => {
                            let hex = text.split(';').next().unwrap_or("").trim();
                            match usize::from_str_radix(hex, 16) {
                                Ok(0) => ChunkState::Trailer,
                                Ok(n) => ChunkState::Data(n),
                                Err(_) => return Err(format!("bad chunk size {text:?}")),
                            }
                        }
                        _ if text.is_empty() => ChunkState::Done,
                        _ => ChunkState::Trailer,
                    };
                    self.line.clear();
                }
                ChunkState::Data(rem) => {
                    let n = rem.min(d.len());
                    sink(&d[..n]);
                    self.bytes += n as u64;
                    d = &d[n..];
                    self.state = if n == rem { ChunkState::DataEnd } else { ChunkState::Data(rem - n) };
                }
                ChunkState::DataEnd => match d.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        d = &d[i + 1..];
                        self.state = ChunkState::Size;
                    }
                    None => return Ok(()),
                },
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn fetch(addr: &str, path: &str, gzip: bool, sink: &mut dyn FnMut(&[u8])) -> Res<Fetch> {
    let err = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut sock = TcpStream::connect(addr).map_err(err)?;
    sock.set_read_timeout(Some(Duration::from_secs(60))).map_err(err)?;
    let _ = sock.set_nodelay(true);
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: fastly-exporter-bench\r\n");
    if gzip {
        req.push_str("Accept-Encoding: gzip\r\n");
    }
    req.push_str("\r\n");
    let mut buf = vec![0u8; READ_BUF];
    let t0 = Instant::now();
    sock.write_all(req.as_bytes()).map_err(err)?;
    let mut filled = 0;
    let head_end = loop {
        let n = sock.read(&mut buf[filled..]).map_err(err)?;
        if n == 0 {
            return Err(format!("GET http://{addr}{path}: connection closed before the response head"));
        }
        filled += n;
        if let Some(i) = find(&buf[..filled], b"\r\n\r\n") {
            break i + 4;
        }
        if filled == buf.len() {
            return Err("response head too large".to_string());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let length: Option<u64> =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
    let mut bytes = 0u64;
    if chunked {
        let mut dec = Dechunk { state: ChunkState::Size, line: Vec::new(), bytes: 0 };
        let mut data = head_end..filled;
        loop {
            dec.feed(&buf[data], sink)?;
            if matches!(dec.state, ChunkState::Done) {
                break;
            }
            let n = sock.read(&mut buf).map_err(err)?;
            if n == 0 {
                return Err(format!("GET http://{addr}{path}: connection closed mid-body"));
            }
            data = 0..n;
        }
        bytes = dec.bytes;
    } else {
        let mut data = head_end..filled;
        loop {
            sink(&buf[data.clone()]);
            bytes += data.len() as u64;
            if length.is_some_and(|l| bytes >= l) {
                break;
            }
            let n = sock.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            data = 0..n;
        }
    }
    Ok(Fetch { status, bytes, elapsed: t0.elapsed() })
}

/// What a full scrape shows, from one pass over its lines.
#[derive(Default)]
struct ScrapeStats {
    series: u64,
    service_info: u64,
    rt_services: HashSet<Vec<u8>>,
    /// `service_id` + `datacenter` of every `requests_total` line.
    pairs: HashSet<Vec<u8>>,
    /// Series lines with a `datacenter` label (row series), per service.
    per_service: std::collections::HashMap<Vec<u8>, u64>,
    origin_services: HashSet<Vec<u8>>,
    domain_services: HashSet<Vec<u8>>,
    rt_success: f64,
    /// Answers of every stream with status 200 (`fastly_exporter_api_requests_total`).
    stream_200: f64,
    bytes: u64,
    sample: Vec<u8>,
    partial: Vec<u8>,
    /// Midpoint of the scrape, for rates between two scrapes.
    mid: Option<Instant>,
}

impl ScrapeStats {
    fn feed(&mut self, data: &[u8]) {
        if self.sample.len() < SAMPLE {
            let n = (SAMPLE - self.sample.len()).min(data.len());
            self.sample.extend_from_slice(&data[..n]);
        }
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.line(&rest[..i]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..i]);
                self.line(&line);
                line.clear();
                self.partial = line;
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, l: &[u8]) {
        if l.is_empty() || l[0] == b'#' {
            return;
        }
        self.series += 1;
        fn label<'a>(l: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
            let at = find(l, name)? + name.len();
            let len = l[at..].iter().position(|b| *b == b'"')?;
            Some(&l[at..at + len])
        }
        let service = |l: &[u8]| label(l, b"service_id=\"").map(<[u8]>::to_vec);
        // Row series only: a service's own families (API results, poll outcomes) vary with
        // what happened to it.
        if let (Some(id), Some(_)) = (label(l, b"service_id=\""), label(l, b"datacenter=\"")) {
            match self.per_service.get_mut(id) {
                Some(n) => *n += 1,
                None => {
                    self.per_service.insert(id.to_vec(), 1);
                }
            }
        }
        if l.starts_with(b"fastly_rt_service_info{") {
            self.service_info += 1;
        } else if l.starts_with(b"fastly_rt_requests_total{") {
            if let (Some(id), Some(dc)) = (label(l, b"service_id=\""), label(l, b"datacenter=\"")) {
                self.pairs.insert([id, b"|", dc].concat());
            }
            self.rt_services.extend(service(l));
        } else if l.starts_with(b"fastly_rt_realtime_api_requests_total{") && find(l, b"result=\"success\"").is_some() {
            let v = l.rsplit(|b| *b == b' ').next().unwrap_or_default();
            self.rt_success += std::str::from_utf8(v).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        } else if l.starts_with(b"fastly_exporter_api_requests_total{code=\"200\"")
            && [&b"realtime"[..], b"origins", b"domains"]
                .iter()
                .any(|e| find(l, &[b"endpoint=\"", *e, b"\""].concat()).is_some())
        {
            let v = l.rsplit(|b| *b == b' ').next().unwrap_or_default();
            self.stream_200 += std::str::from_utf8(v).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        } else if l.starts_with(b"fastly_origin_responses_total{") {
            self.origin_services.extend(service(l));
        } else if l.starts_with(b"fastly_domain_requests_total{") {
            self.domain_services.extend(service(l));
        }
    }
}

/// One full scrape parsed line by line (slower than a timed scrape: never timed).
fn analyze(addr: &str) -> Res<ScrapeStats> {
    let mut st = ScrapeStats::default();
    let t = Instant::now();
    let f = fetch(addr, "/metrics", false, &mut |d| st.feed(d))?;
    if f.status != 200 {
        return Err(format!("/metrics answered {}", f.status));
    }
    st.mid = Some(t + t.elapsed() / 2);
    st.bytes = f.bytes;
    Ok(st)
}

fn sd_targets(addr: &str) -> Res<Vec<String>> {
    let mut body = Vec::new();
    let f = fetch(addr, "/sd", false, &mut |d| body.extend_from_slice(d))?;
    if f.status != 200 {
        return Err(format!("/sd answered {}", f.status));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("/sd: {e}"))?;
    Ok(v.get(0)
        .and_then(|g| g.get("targets"))
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default())
}

/// Services whose streams all answered with data, from `/status.json` (state `ok` and
/// series; a few MB at 5,000 services, where a full scrape is gigabytes).
fn services_with_data(addr: &str, inspectors: bool) -> Res<usize> {
    let mut body = Vec::new();
    let f = fetch(addr, "/status.json", false, &mut |d| body.extend_from_slice(d))?;
    if f.status != 200 {
        return Err(format!("/status.json answered {}", f.status));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("/status.json: {e}"))?;
    let services = v.get("services").and_then(|s| s.as_array()).map(Vec::as_slice).unwrap_or_default();
    let has_data = |svc: &serde_json::Value, stream: &str| {
        svc.get("streams").and_then(|s| s.get(stream)).is_some_and(|s| {
            s.get("state").and_then(|x| x.as_str()) == Some("ok")
                && s.get("series").and_then(serde_json::Value::as_u64).unwrap_or(0) > 0
        })
    };
    Ok(services
        .iter()
        .filter(|svc| {
            has_data(svc, "realtime") && (!inspectors || (has_data(svc, "origins") && has_data(svc, "domains")))
        })
        .count())
}

/// Median time and bytes of `runs` fetches of `path` (stops early past `budget`, after 3).
fn timed(addr: &str, path: &str, gzip: bool, runs: usize, budget: Duration) -> Res<Timed> {
    let start = Instant::now();
    let (mut times, mut sizes) = (Vec::new(), Vec::new());
    for i in 0..runs {
        interrupted()?;
        let f = fetch(addr, path, gzip, &mut |_| {})?;
        if f.status != 200 {
            return Err(format!("{path} answered {}", f.status));
        }
        times.push(f.elapsed.as_secs_f64());
        sizes.push(f.bytes as f64);
        if i >= 2 && start.elapsed() > budget {
            break;
        }
    }
    let secs = median_f(&mut times);
    let (min, max) = (times[0], times[times.len() - 1]); // sorted by median_f
    Ok(Timed { n: times.len(), wanted: runs, secs, min, max, bytes: median_f(&mut sizes) })
}

struct Timed {
    n: usize,
    wanted: usize,
    secs: f64,
    min: f64,
    max: f64,
    bytes: f64,
}

fn median_f(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

// ---------------------------------------------------------------------------------------------
// Baseline: a pre-built blob of the same size, chunked in 64 KiB chunks, over local TCP.

struct BlobServer {
    addr: String,
    thread: Option<JoinHandle<()>>,
}

impl BlobServer {
    /// Serves `runs` connections, each the whole blob, then ends.
    fn start(body_len: usize, sample: &[u8], runs: usize) -> Res<BlobServer> {
        let sample: &[u8] = if sample.is_empty() { b"x\n" } else { sample };
        let frames = body_len.div_ceil(BLOB_CHUNK);
        let mut framed = Vec::with_capacity(body_len + frames * 12 + 5);
        let mut ends = Vec::with_capacity(frames + 1);
        let mut left = body_len;
        let mut pos = 0;
        while left > 0 {
            let n = left.min(BLOB_CHUNK);
            let _ = write!(framed, "{n:x}\r\n");
            let mut todo = n;
            while todo > 0 {
                let off = pos % sample.len();
                let k = todo.min(sample.len() - off);
                framed.extend_from_slice(&sample[off..off + k]);
                pos += k;
                todo -= k;
            }
            framed.extend_from_slice(b"\r\n");
            ends.push(framed.len());
            left -= n;
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        ends.push(framed.len());
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("blob bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
        let thread = std::thread::spawn(move || {
            for _ in 0..runs {
                let Ok((mut sock, _)) = listener.accept() else { return };
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while find(&req, b"\r\n\r\n").is_none() {
                    match sock.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                let mut start = 0;
                for &end in &ends {
                    if sock.write_all(&framed[start..end]).is_err() {
                        break;
                    }
                    start = end;
                }
            }
        });
        Ok(BlobServer { addr, thread: Some(thread) })
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        // Unblock a pending accept (after an error), then join.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One configuration end to end

#[derive(Default)]
struct Outcome {
    ready_secs: f64,
    series: u64,
    rss_steady: f64,
    rss_peak: f64,
    exporter_cpu: f64,
    fake_cpu: f64,
    window_secs: f64,
    rt_per_sec: f64,
    /// Answers of all three streams per second.
    responses_per_sec: f64,
    poll_failures: usize,
    /// Poller threads (one connection each).
    pollers: u64,
    full: Option<Timed>,
    gzip: Option<Timed>,
    target: Option<Timed>,
    blob: Option<Timed>,
    /// Distinct (service, datacenter) rows with `requests_total` in the last full scrape, and
    /// how many the configuration has.
    pairs: usize,
    wanted_pairs: usize,
    /// Services with row series, and the fewest and most row series of one service: rows
    /// are dense, so equal counts and every row present mean every series is present.
    services_seen: usize,
    series_per_service: (u64, u64),
}

impl Outcome {
    fn bytes_per_series(&self) -> f64 {
        self.rss_steady / self.series as f64
    }

    fn ingest_us(&self) -> f64 {
        self.exporter_cpu / 100.0 / self.rt_per_sec * 1e6
    }

    /// Exporter CPU per answer of any stream.
    fn ingest_us_all(&self) -> f64 {
        self.exporter_cpu / 100.0 / self.responses_per_sec * 1e6
    }

    fn full_mbps(&self) -> f64 {
        self.full.as_ref().map_or(f64::NAN, |f| f.bytes / f.secs / 1e6)
    }
}

fn run_config(cfg: &Config, s: &Settings, bin: &Path, out_dir: &Path) -> Res<Outcome> {
    let fake_log = out_dir.join(format!("{}-fake.log", cfg.name));
    let exp_log = out_dir.join(format!("{}-exporter.log", cfg.name));
    let tls_dir = out_dir.join(format!("{}-tls", cfg.name));
    let (mut fake, url) = start_fake(bin, cfg, s.datacenters, &fake_log, &tls_dir)?;
    let exporter = match cfg.build {
        Build::Glibc => bin.to_path_buf(),
        Build::Static => static_dir(bin)?,
    };
    let (mut exp, addr) = start_exporter(&exporter, cfg, &url, &exp_log, &tls_dir)?;
    let t0 = Instant::now();
    let n = cfg.services;

    // Readiness: /sd lists every service, then one scrape shows data for all of them.
    let ids = loop {
        exp.check_alive(&exp_log)?;
        fake.check_alive(&fake_log)?;
        if let Ok(ids) = sd_targets(&addr)
            && ids.len() >= n
        {
            break ids;
        }
        if t0.elapsed() > READY_TIMEOUT {
            return Err(format!("/sd did not list {n} services within {READY_TIMEOUT:?}"));
        }
        sleep(Duration::from_millis(250))?;
    };
    let large = cfg.services * s.datacenters * 287 > LARGE_SERIES;
    let mut noted = false;
    loop {
        exp.check_alive(&exp_log)?;
        if large {
            // Full scrapes of gigabytes once a second would be the load measured.
            let ready = services_with_data(&addr, cfg.inspectors)?;
            if ready >= n {
                break;
            }
            if t0.elapsed() > READY_TIMEOUT {
                return Err(format!("only {ready} of {n} services had data within {READY_TIMEOUT:?}"));
            }
            sleep(Duration::from_secs(1))?;
            continue;
        }
        let st = analyze(&addr)?;
        let inspectors_ok = !cfg.inspectors || (st.origin_services.len() >= n && st.domain_services.len() >= n);
        if st.service_info as usize >= n && st.rt_services.len() >= n && inspectors_ok {
            break;
        }
        if !noted && t0.elapsed() > Duration::from_secs(8) {
            noted = true;
            eprintln!(
                "[{}] {} of {n} services still without data after {:.0} s; waiting (the exporter retries after its \
                 45 s -rt-timeout)",
                cfg.name,
                n.saturating_sub(st.rt_services.len()),
                t0.elapsed().as_secs_f64()
            );
        }
        if t0.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "no data for all {n} services within {READY_TIMEOUT:?}: service_info {}, requests_total for {}, \
                 origin {}, domain {}",
                st.service_info,
                st.rt_services.len(),
                st.origin_services.len(),
                st.domain_services.len()
            ));
        }
        sleep(Duration::from_secs(1))?;
    }
    let mut out = Outcome { ready_secs: t0.elapsed().as_secs_f64(), ..Default::default() };
    eprintln!("[{}] data for all {n} services after {:.1} s; settling {} s", cfg.name, out.ready_secs, s.settle);
    sleep(Duration::from_secs(s.settle))?;

    // Ingest window: no scrapes, one full scrape on each side for the response counter.
    let before = analyze(&addr)?;
    sleep(Duration::from_secs(2))?;
    eprintln!("[{}] ingest window {} s (no scrapes) ...", cfg.name, s.window);
    let (e0, f0, w0) = (cpu_ticks(exp.pid())?, cpu_ticks(fake.pid())?, Instant::now());
    let mut rss = Vec::new();
    for i in 0..=s.window {
        rss.push(status_bytes(exp.pid(), "VmRSS")? as f64);
        if i < s.window {
            let next = w0 + Duration::from_secs(i + 1);
            sleep(next.saturating_duration_since(Instant::now()))?;
        }
    }
    let (e1, f1) = (cpu_ticks(exp.pid())?, cpu_ticks(fake.pid())?);
    out.window_secs = w0.elapsed().as_secs_f64();
    let mut after = analyze(&addr)?;
    out.exporter_cpu = (e1 - e0) as f64 / CLK_TCK / out.window_secs * 100.0;
    out.fake_cpu = (f1 - f0) as f64 / CLK_TCK / out.window_secs * 100.0;
    out.rss_steady = median_f(&mut rss);
    out.series = after.series;
    if let (Some(a), Some(b)) = (before.mid, after.mid) {
        out.rt_per_sec = (after.rt_success - before.rt_success) / (b - a).as_secs_f64();
        out.responses_per_sec = (after.stream_200 - before.stream_200) / (b - a).as_secs_f64();
    }
    out.pollers = (cfg.services * if cfg.inspectors { 3 } else { 1 }) as u64;
    out.pairs = after.pairs.len();
    out.wanted_pairs = cfg.services * if cfg.aggregate { 1 } else { s.datacenters };
    let per_service = after.per_service.values();
    out.series_per_service = (per_service.clone().min().copied().unwrap_or(0), per_service.max().copied().unwrap_or(0));
    out.services_seen = after.per_service.len();

    eprintln!("[{}] scrapes ...", cfg.name);
    let (full_runs, gzip_runs) = if large { (3, 3) } else { (FULL_RUNS, GZIP_RUNS) };
    out.full = Some(timed(&addr, "/metrics", false, full_runs, Duration::from_secs(60))?);
    out.gzip = Some(timed(&addr, "/metrics", true, gzip_runs, Duration::from_secs(30))?);
    let id = &ids[ids.len() / 2];
    out.target = Some(timed(&addr, &format!("/metrics?target={id}"), false, TARGET_RUNS, Duration::from_secs(30))?);
    out.rss_peak = status_bytes(exp.pid(), "VmHWM")? as f64;

    // Baseline with the exporter still running (same background ingest load).
    let size = out.full.as_ref().map_or(after.bytes as f64, |f| f.bytes) as usize;
    let sample = std::mem::take(&mut after.sample);
    drop(after);
    drop(before);
    if !large {
        let blob = BlobServer::start(size, &sample, BLOB_RUNS)?;
        out.blob = Some(timed(&blob.addr, "/metrics", false, BLOB_RUNS, Duration::from_secs(600))?);
    }
    let log = std::fs::read_to_string(&exp_log).unwrap_or_default();
    out.poll_failures = log.lines().filter(|l| l.contains("poll failing")).count();
    drop(exp);
    drop(fake);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Report

fn mb(b: f64) -> String {
    if b >= 1e6 { format!("{:.1} MB", b / 1e6) } else { format!("{:.1} kB", b / 1e3) }
}

fn count(n: f64) -> String {
    if n >= 1e6 { format!("{:.2} M", n / 1e6) } else { format!("{n:.0}") }
}

fn ms(t: &Option<Timed>) -> String {
    t.as_ref().map_or("-".to_string(), |t| {
        let v = t.secs * 1e3;
        let v = if v < 10.0 { format!("{v:.2}") } else { format!("{v:.0}") };
        if t.n == t.wanted { v } else { format!("{v} (n={})", t.n) }
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "NO" }
}

type Cell<'a> = &'a dyn Fn(&Config, &Outcome) -> String;

/// One line of the table: a label, then one cell per configuration.
fn row(out: &mut String, results: &[(&Config, Res<Outcome>)], label: &str, f: Cell) {
    let _ = write!(out, "{label:<36}");
    for (cfg, r) in results {
        let cell = match r {
            Ok(o) => f(cfg, o),
            Err(_) => "failed".to_string(),
        };
        let _ = write!(out, "{cell:>14}");
    }
    out.push('\n');
}

fn table(results: &[(&Config, Res<Outcome>)], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nend to end: fake-fastly ({} DCs, ~60% of fields non-zero, miss_histogram 10-30 buckets; B: 2 origins + 2 \
         domains per service) -> fastly-exporter on 127.0.0.1\ningest window {} s without scrapes after {} s of \
         settling; full scrapes median of {FULL_RUNS}, gzip of {GZIP_RUNS}, ?target= of {TARGET_RUNS}",
        s.datacenters, s.window, s.settle
    );
    row(&mut out, results, "configuration", &|c, _| c.name.to_string());
    row(&mut out, results, "exporter binary", &|c, _| c.build.label().to_string());
    row(&mut out, results, "services", &|c, _| c.services.to_string());
    row(&mut out, results, "streams", &|c, _| if c.inspectors { "rt+orig+dom" } else { "rt" }.to_string());
    row(&mut out, results, "datacenter rows", &|c, _| if c.aggregate { "aggregate" } else { "per-DC" }.to_string());
    row(&mut out, results, "data for all services after (s)", &|_, o| format!("{:.1}", o.ready_secs));
    row(&mut out, results, "series (sample lines, full scrape)", &|_, o| count(o.series as f64));
    row(&mut out, results, "steady RSS (median VmRSS)", &|_, o| mb(o.rss_steady));
    row(&mut out, results, "peak RSS (VmHWM after scrapes)", &|_, o| mb(o.rss_peak));
    row(&mut out, results, "bytes / series", &|_, o| format!("{:.1}", o.bytes_per_series()));
    row(&mut out, results, "peak / steady", &|_, o| format!("{:.2}", o.rss_peak / o.rss_steady));
    row(&mut out, results, "exporter CPU, ingest (% of 1 core)", &|_, o| format!("{:.1}", o.exporter_cpu));
    row(&mut out, results, "fake-fastly CPU (% of 1 core)", &|_, o| format!("{:.1}", o.fake_cpu));
    row(&mut out, results, "rt responses/s (success counter)", &|_, o| format!("{:.0}", o.rt_per_sec));
    row(&mut out, results, "rt poll failures logged (whole run)", &|_, o| o.poll_failures.to_string());
    row(&mut out, results, "ingest µs / rt response", &|_, o| format!("{:.0}", o.ingest_us()));
    row(&mut out, results, "full /metrics ms", &|_, o| ms(&o.full));
    row(&mut out, results, "full /metrics ms min..max", &|_, o| {
        o.full.as_ref().map_or("-".into(), |f| format!("{:.0}..{:.0}", f.min * 1e3, f.max * 1e3))
    });
    row(&mut out, results, "full /metrics bytes", &|_, o| o.full.as_ref().map_or("-".into(), |f| mb(f.bytes)));
    row(&mut out, results, "full /metrics MB/s", &|_, o| format!("{:.0}", o.full_mbps()));
    row(&mut out, results, "gzip /metrics ms", &|_, o| ms(&o.gzip));
    row(&mut out, results, "gzip /metrics bytes (compressed)", &|_, o| {
        o.gzip.as_ref().map_or("-".into(), |f| mb(f.bytes))
    });
    row(&mut out, results, "?target=<one id> ms", &|_, o| ms(&o.target));
    row(&mut out, results, "?target= bytes", &|_, o| o.target.as_ref().map_or("-".into(), |f| mb(f.bytes)));
    row(&mut out, results, "blob of same size, fetch ms", &|_, o| ms(&o.blob));
    row(&mut out, results, "render / transfer ratio", &|_, o| match (&o.full, &o.blob) {
        (Some(f), Some(b)) => format!("{:.2}", f.secs / b.secs),
        _ => "-".into(),
    });
    row(&mut out, results, "answers/s, all streams (200s)", &|_, o| format!("{:.0}", o.responses_per_sec));
    row(&mut out, results, "ingest µs / answer, all streams", &|_, o| format!("{:.0}", o.ingest_us_all()));
    row(&mut out, results, "poller connections", &|_, o| o.pollers.to_string());
    row(&mut out, results, "(service, DC) rows with data", &|_, o| format!("{}/{}", o.pairs, o.wanted_pairs));
    row(&mut out, results, "row series per service min..max", &|_, o| {
        format!("{}..{}", o.series_per_service.0, o.series_per_service.1)
    });
    let _ = writeln!(out, "\ntargets (value, then ok = met / NO = not met)");
    row(&mut out, results, "Scale A: ≤ 40 bytes per series", &|c, o| {
        if c.inspectors || c.services != 1000 {
            return "-".into();
        }
        format!("{:.1} {}", o.bytes_per_series(), verdict(o.bytes_per_series() <= 40.0))
    });
    row(&mut out, results, "Scale B: ≤ 120 bytes per series", &|c, o| {
        if !c.inspectors {
            return "-".into();
        }
        format!("{:.1} {}", o.bytes_per_series(), verdict(o.bytes_per_series() <= 120.0))
    });
    row(&mut out, results, "Scale A: ingest ≤ 150 µs / response", &|c, o| {
        if c.inspectors || c.services != 1000 {
            return "-".into();
        }
        format!("{:.0} {}", o.ingest_us_all(), verdict(o.ingest_us_all() <= 150.0))
    });
    row(&mut out, results, "200 svc TLS: CPU ≤ 0.10 × Go's 26.1 %", &|c, o| {
        if c.services != 200 || !c.tls {
            return "-".into();
        }
        let r = o.exporter_cpu / GO_CPU_200_TLS;
        format!("{r:.3} {}", verdict(r <= 0.10))
    });
    let scale_c = |c: &Config| c.services >= 5000;
    row(&mut out, results, "Scale C: RSS ≤ 600 MB (peak)", &|c, o| {
        if !scale_c(c) {
            return "-".into();
        }
        format!("{} {}", mb(o.rss_peak), verdict(o.rss_peak <= 600e6))
    });
    row(&mut out, results, "Scale C: ingest ≤ 1 core", &|c, o| {
        if !scale_c(c) {
            return "-".into();
        }
        format!("{:.0} % {}", o.exporter_cpu, verdict(o.exporter_cpu <= 100.0))
    });
    row(&mut out, results, "Scale C: every series present", &|c, o| {
        if !scale_c(c) {
            return "-".into();
        }
        let (lo, hi) = o.series_per_service;
        let ok = o.pairs == o.wanted_pairs && o.services_seen >= c.services && lo == hi && lo > 0;
        verdict(ok).to_string()
    });
    row(&mut out, results, "Scale C: full gzip scrape completes", &|c, o| {
        if !scale_c(c) {
            return "-".into();
        }
        let ok = o.gzip.as_ref().is_some_and(|g| g.n == g.wanted && g.bytes > 0.0);
        verdict(ok).to_string()
    });
    row(&mut out, results, "peak / steady < 2", &|_, o| {
        let r = o.rss_peak / o.rss_steady;
        format!("{r:.2} {}", verdict(r < 2.0))
    });
    row(&mut out, results, "full render ≥ 400 MB/s", &|_, o| {
        format!("{:.0} {}", o.full_mbps(), verdict(o.full_mbps() >= 400.0))
    });
    row(&mut out, results, "?target= < 1 ms (Scale A)", &|c, o| match &o.target {
        Some(t) if c.services == 1000 && !c.inspectors => format!("{:.2} {}", t.secs * 1e3, verdict(t.secs < 1e-3)),
        _ => "-".into(),
    });
    // TLS against plain, configuration by configuration.
    let plain = |c: &Config| {
        results
            .iter()
            .find(|(p, r)| !p.tls && p.build == c.build && p.name == c.name.replacen("-tls", "", 1) && r.is_ok())
    };
    row(&mut out, results, "TLS / plain: ingest CPU ≤ 1.3", &|c, o| match plain(c) {
        Some((_, Ok(p))) if c.tls => {
            let r = o.ingest_us_all() / p.ingest_us_all();
            format!("{r:.2} {}", verdict(r <= 1.3))
        }
        _ => "-".into(),
    });
    row(&mut out, results, "TLS / plain: steady RSS", &|c, o| match plain(c) {
        Some((_, Ok(p))) if c.tls => format!("{:.2}", o.rss_steady / p.rss_steady),
        _ => "-".into(),
    });
    row(&mut out, results, "TLS state per connection (RSS Δ)", &|c, o| match plain(c) {
        Some((_, Ok(p))) if c.tls => format!("{:.1} kB", (o.rss_steady - p.rss_steady) / o.pollers as f64 / 1e3),
        _ => "-".into(),
    });
    let _ = writeln!(
        out,
        "(µs per answer = exporter CPU / answers of all streams; the fake runs as its own process and its CPU is \
         shown apart. TLS state per connection = steady RSS of the TLS run minus the plain run, per poller.)"
    );
    for (cfg, r) in results {
        if let Err(e) = r {
            let _ = writeln!(out, "{} failed: {e}", cfg.name);
        }
    }
    out
}

//! Soak test (`make soak`, not part of `make test`): the release exporter against the fake with
//! ~50 services whose real-time streams answer once a second with 5 % random faults, scraped
//! every second for `SOAK_SECONDS` (default 600). Prints the exporter's resident memory after a
//! 60 s warm-up, every minute, at the end, and its maximum; fails only if the exporter dies.
//!
//! Run: `cargo test --release --test soak -- --ignored --nocapture` (or `make soak`).

use crate::support;

use std::time::{Duration, Instant};

use fake_fastly::{Fault, FaultSpec, Stream};
use support::{Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, start_against, try_get};

const SERVICES: usize = 50;
const WARM_UP: Duration = Duration::from_secs(60);

/// Resident memory of `pid` in bytes, from `/proc/<pid>/status`.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn alive(exp: &mut Exporter) -> bool {
    exp.wait_exit(Duration::ZERO).is_none()
}

#[test]
#[ignore = "soak test: run with `make soak` (release build, SOAK_SECONDS, default 10 minutes)"]
fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let total = Duration::from_secs(seconds);
    if cfg!(debug_assertions) {
        eprintln!("soak: WARNING: debug build; `make soak` runs the release binaries");
    }
    let kinds = vec![
        Fault::Truncated,
        Fault::Malformed,
        Fault::Oversize,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(404),
        Fault::Status(401),
        Fault::Status(403),
        Fault::Reset,
        Fault::Stall(Duration::from_secs(3)),
        Fault::RateLimited(2),
    ];
    let spec = FaultSpec { min_interval: Duration::from_secs(1), ..FaultSpec::new(0.05, kinds) };
    let ids: Vec<String> = (0..SERVICES).map(|i| format!("soak{i:03}")).collect();
    let fake = FakeFastly::start(FakeConfig {
        services: ids.iter().map(|id| FakeService::new(id.clone(), format!("soak service {id}"), 1)).collect(),
        realtime: StreamMode::Faulty(spec),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .expect("fake starts");
    let mut exp = start_against(&fake, "soak-token", &["-rt-max-body", "128KiB"]);
    let pid = exp.pid();
    eprintln!(
        "soak: {SERVICES} services, 5% faults, scrape every 1 s, {seconds} s (RSS from {WARM_UP:?}), exporter pid {pid}"
    );

    let started = Instant::now();
    let url = exp.url("/metrics");
    let (mut scrapes, mut failed, mut bytes) = (0u64, 0u64, 0usize);
    let mut max_rss = 0u64;
    let mut first: Option<u64> = None;
    let mut next_report = WARM_UP;
    let mut died = false;
    while started.elapsed() < total {
        let tick = Instant::now();
        match try_get(&url, Duration::from_secs(30)) {
            Ok((200, _, body)) => {
                scrapes += 1;
                bytes = body.len();
            }
            Ok((status, _, _)) => {
                failed += 1;
                eprintln!("soak: {:>4}s scrape answered {status}", started.elapsed().as_secs());
            }
            Err(e) => {
                failed += 1;
                eprintln!("soak: {:>4}s scrape failed: {e}", started.elapsed().as_secs());
            }
        }
        if !alive(&mut exp) {
            died = true;
            break;
        }
        let now_rss = rss(pid).unwrap_or(0);
        if started.elapsed() >= WARM_UP {
            max_rss = max_rss.max(now_rss);
        }
        if started.elapsed() >= next_report {
            let label = if first.is_none() { "start" } else { "     " };
            first.get_or_insert(now_rss);
            let delivered: usize = ids.iter().map(|id| fake.state().delivered(Stream::Realtime, id).ts.len()).sum();
            eprintln!(
                "soak: {:>4}s {label} RSS {:>10}  scrapes {scrapes} ok / {failed} failed, last {} KiB, delivered polls {delivered}",
                started.elapsed().as_secs(),
                mib(now_rss),
                bytes / 1024
            );
            next_report += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let end_rss = rss(pid).unwrap_or(0);
    max_rss = max_rss.max(end_rss);
    let injected = fake.state().faults_injected(Stream::Realtime);
    eprintln!("soak: injected {injected:?}");
    if died {
        panic!("soak: the exporter died after {:?}; log tail:\n{}", started.elapsed(), tail(&exp.output(), 40));
    }
    eprintln!(
        "soak: end {:?}: RSS start {} end {} max {}; {scrapes} scrapes ok, {failed} failed; log {} lines",
        started.elapsed(),
        first.map_or("n/a".to_string(), mib),
        mib(end_rss),
        mib(max_rss),
        exp.output().lines().count()
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

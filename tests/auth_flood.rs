//! Issue 18: basic auth under a flood of wrong passwords (`-web-config-file`, bcrypt cost 10),
//! against the release binary. bcrypt checks are few at once with a short queue; beyond it a
//! request is answered 429 at once instead of parking an HTTP worker, so a scraper whose
//! credentials are cached keeps being answered.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fake_fastly::GenSpec;
use support::{Exporter, FakeService, StreamMode, exchange, expo, fake_with, rss_bytes, temp_path};

const MIB: u64 = 1 << 20;

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// GET `path` with `authorization`: the status and how long it took (`None`: no answer).
fn get(url: &str, authorization: &str) -> (Option<u16>, Duration, Vec<u8>) {
    let started = Instant::now();
    match exchange("GET", url, &[("Authorization", authorization)], b"", Duration::from_secs(30)) {
        Ok((status, _, body)) => (Some(status), started.elapsed(), body),
        Err(_) => (None, started.elapsed(), Vec::new()),
    }
}

#[test]
fn a_flood_of_wrong_passwords_leaves_cached_scrapers_answered() {
    let services = (0..3).map(|i| FakeService::new(format!("s{i}"), format!("svc-{i}"), 1)).collect();
    let fake = fake_with(services, StreamMode::Generated(GenSpec::default()));
    let web = temp_path("auth-flood.yml");
    let (prom, other) = (bcrypt::hash("scrape-pw", 10).unwrap(), bcrypt::hash("other-pw", 10).unwrap());
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {prom}\n  other: {other}\n")).unwrap();
    let url = fake.url();
    let exp = Exporter::start_release(
        &["-token", "T", "-api-endpoint", &url, "-rt-endpoint", &url, "-web-config-file", web.to_str().unwrap()],
        &[],
    );
    let scraper = basic("prometheus", "scrape-pw");
    let metrics = exp.url("/metrics");
    support::wait_until(
        "data",
        Duration::from_secs(30),
        || {
            let (status, _, body) = get(&metrics, &scraper);
            status == Some(200) && String::from_utf8_lossy(&body).contains("fastly_rt_requests_total{")
        },
        || exp.output(),
    );
    let usual: Vec<Duration> = (0..5).map(|_| get(&metrics, &scraper).1).collect();
    let before = rss_bytes(exp.pid()).expect("rss");
    let log_before = exp.output().lines().count();

    // 40 clients, each sending distinct wrong passwords as fast as it is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (denied, busy, other_answers) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..40)
        .map(|c| {
            let (stop, denied, busy, other_answers, metrics) =
                (stop.clone(), denied.clone(), busy.clone(), other_answers.clone(), metrics.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    match get(&metrics, &basic("prometheus", &format!("wrong-{c}-{i}"))).0 {
                        Some(401) => denied.fetch_add(1, Ordering::SeqCst),
                        Some(429) => busy.fetch_add(1, Ordering::SeqCst),
                        _ => other_answers.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    support::wait_until(
        "the flood to overflow the bcrypt queue",
        Duration::from_secs(30),
        || busy.load(Ordering::SeqCst) > 0,
        || exp.output(),
    );
    // A scraper whose credentials are cached, every 100 ms for 3 s of flood.
    let flooding = Instant::now();
    let mut during: Vec<(Option<u16>, Duration)> = Vec::new();
    while flooding.elapsed() < Duration::from_secs(3) {
        let (status, took, _) = get(&metrics, &scraper);
        during.push((status, took));
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for f in flood {
        f.join().expect("flood client");
    }

    // Once the flood is over, a valid credential never checked before is accepted.
    let (fresh, _, _) = get(&metrics, &basic("other", "other-pw"));
    assert_eq!(exp.get("/healthz").0, 200);
    let after = rss_bytes(exp.pid()).expect("rss");
    let (status, _, body) = get(&metrics, &scraper);
    assert_eq!(status, Some(200));
    let m = expo::parse(&String::from_utf8_lossy(&body));
    let failures = |reason| m.find("fastly_exporter_http_auth_failures_total", &[("reason", reason)]);
    let times: Vec<Duration> = during.iter().map(|(_, d)| *d).collect();
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "40-client wrong-password flood (bcrypt cost 10): {} answered 401, {} answered 429, {} other; cached scraper \
         before {:?} ms, during: median {:?}, max {:?} ({} scrapes); RSS {:.1} MiB before, {:.1} MiB after",
        denied.load(Ordering::SeqCst),
        busy.load(Ordering::SeqCst),
        other_answers.load(Ordering::SeqCst),
        usual.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted.len(),
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
    );
    for (i, (status, took)) in during.iter().enumerate() {
        assert_eq!(*status, Some(200), "scrape {i} during the flood ({took:?}):\n{}", exp.output());
    }
    assert_eq!(other_answers.load(Ordering::SeqCst), 0, "flood requests answered neither 401 nor 429");
    assert_eq!(fresh, Some(200), "a valid credential not cached yet, after the flood");
    assert_eq!(failures("wrong_credentials"), vec![denied.load(Ordering::SeqCst) as f64]);
    assert_eq!(failures("too_many_checks"), vec![busy.load(Ordering::SeqCst) as f64]);
    assert!(after < before + 32 * MIB, "RSS did not come back: {} MiB after, {} before", after / MIB, before / MIB);
    let log = exp.output();
    let new: Vec<&str> = log.lines().skip(log_before).collect();
    assert_eq!(new.len(), 1, "one log line for the whole flood:\n{}", new.join("\n"));
    assert!(new[0].contains("basic auth: refusing requests"), "{}", new[0]);
    let _ = std::fs::remove_file(&web);
}

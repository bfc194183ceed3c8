//! Fault injection end to end: the fake's `Faulty` stream truncates, corrupts, oversizes,
//! refuses, resets, stalls and rate-limits polls at random, and keeps the ground truth of
//! what it delivered in full. Whatever happens on the wire, every `fastly_rt_*` counter must
//! equal that ground truth exactly: nothing lost, nothing counted twice.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_fastly::{Fault, FaultSpec, Reply, Stream, TlsIdentity};
use support::expo::Scrape;
use support::inproc::{self, InProcess, ManualClock};
use support::truth::{self, Family, check_monotonic, monotonic_series, rt_families};
use support::{
    Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, rt_polls, start_against, start_against_env, ts_of,
    wait_until,
};

/// A distinctive token: it must never appear in the exporter's output.
const TOKEN: &str = "tok-FAULTS-5e1c0a7b9d";

/// Body cap given to the exporter; clean generated answers are ~60 KB, oversized ones 256 KiB.
const MAX_BODY: &str = "128KiB";

fn svc(id: &str) -> FakeService {
    FakeService::new(id, format!("name of {id}"), 1)
}

/// A fake with `ids` and a `Faulty` real-time stream (no other product), over TLS when given
/// an identity.
fn faulty_fake_over(ids: &[&str], spec: FaultSpec, tls: Option<TlsIdentity>) -> FakeFastly {
    FakeFastly::start(FakeConfig {
        token: Some(TOKEN.into()),
        services: ids.iter().map(|id| svc(id)).collect(),
        realtime: StreamMode::Faulty(spec),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        tls,
        ..FakeConfig::default()
    })
    .expect("fake starts")
}

/// A plain-HTTP fake with `ids` and a `Faulty` real-time stream.
fn faulty_fake(ids: &[&str], spec: FaultSpec) -> FakeFastly {
    faulty_fake_over(ids, spec, None)
}

fn start(fake: &FakeFastly) -> Exporter {
    start_against(fake, TOKEN, &["-rt-max-body", MAX_BODY])
}

/// Which exporter the ground-truth test runs, and how it reaches the fake.
#[derive(Clone, Copy)]
enum Build {
    /// The test build (debug, the C library's allocator as it is) over plain HTTP.
    DebugPlain,
    /// The release binary that ships (the static one when `make test` built it, with its
    /// per-thread allocator cache, `util::thread_cache`) over TLS, whose record buffers that
    /// cache reuses while an answer is read.
    ReleaseTls,
}

/// The fake and the exporter for `build`; the CA file, if any, lives as long as the test.
fn faulty_pair(ids: &[&str], spec: FaultSpec, build: Build) -> (FakeFastly, Exporter) {
    match build {
        Build::DebugPlain => {
            let fake = faulty_fake(ids, spec);
            let exp = start(&fake);
            (fake, exp)
        }
        Build::ReleaseTls => {
            let id = TlsIdentity::generate("faults test CA", &["127.0.0.1"]).expect("certificates");
            let ca = support::temp_path("faults-ca.pem");
            std::fs::write(&ca, &id.ca_pem).expect("CA file");
            let fake = faulty_fake_over(ids, spec, Some(id));
            let url = fake.url();
            let args = ["-token", TOKEN, "-api-endpoint", &url, "-rt-endpoint", &url, "-rt-max-body", MAX_BODY];
            let ca = ca.to_str().expect("a UTF-8 temporary path");
            let exp = Exporter::start_bin(&support::release_bin(), &args, &[("SSL_CERT_FILE", ca)], None);
            (fake, exp)
        }
    }
}

/// Every fault kind the main test draws from (401/403 have their own test: each costs a 120 s
/// backoff, which would make this one take many minutes).
fn all_kinds() -> Vec<Fault> {
    vec![
        Fault::Truncated,
        Fault::Malformed,
        Fault::Oversize,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(404),
        Fault::Reset,
        Fault::Stall(Duration::from_secs(2)),
        Fault::RateLimited(1),
    ]
}

fn result_count(m: &Scrape, id: &str, result: &str) -> f64 {
    m.find("fastly_rt_realtime_api_requests_total", &[("service_id", id), ("result", result)])
        .first()
        .copied()
        .unwrap_or(0.0)
}

fn api_requests(m: &Scrape, endpoint: &str, code: &str) -> f64 {
    m.find("fastly_exporter_api_requests_total", &[("endpoint", endpoint), ("code", code)])
        .first()
        .copied()
        .unwrap_or(0.0)
}

/// Waits until the fake's tally of every service in `ids` stops growing and two scrapes a
/// second apart agree on every `fastly_rt_` series; then the exporter must show exactly one
/// success per delivered `ts`. Returns the last scrape.
fn wait_caught_up(fake: &FakeFastly, exp: &Exporter, ids: &[&str], timeout: Duration) -> Scrape {
    let deadline = Instant::now() + timeout;
    let tally = || ids.iter().map(|id| fake.state().delivered(Stream::Realtime, id).ts.len()).collect::<Vec<_>>();
    let mut last = (tally(), exp.metrics());
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = (tally(), exp.metrics());
        if now.0 == last.0 && now.1.with_prefix("fastly_rt_") == last.1.with_prefix("fastly_rt_") {
            for (id, n) in ids.iter().zip(&now.0) {
                assert_eq!(result_count(&now.1, id, "success"), *n as f64, "{id}: successes vs delivered answers");
            }
            return now.1;
        }
        if Instant::now() > deadline {
            panic!("exporter never caught up: delivered {:?}; log:\n{}", now.0, exp.output());
        }
        last = now;
    }
}

/// The sum of an outcome class over `ids`.
fn results(m: &Scrape, ids: &[&str], result: &str) -> f64 {
    ids.iter().map(|id| result_count(m, id, result)).sum()
}

/// Waits until the fake has acted on every answer it decided (no stalled poll is still held,
/// no queued answer unsent) and the exporter's outcome counters account for every one of them;
/// returns that scrape and the settled answers by label. Before both hold, a comparison of
/// outcomes with the fake's counts would race a poll in flight (a 2 s stall ends after the
/// data counters have long settled).
fn wait_outcomes_settled(
    fake: &FakeFastly,
    exp: &Exporter,
    ids: &[&str],
    timeout: Duration,
) -> (Scrape, BTreeMap<String, u64>) {
    let deadline = Instant::now() + timeout;
    loop {
        let settled = fake.state().faults_settled(Stream::Realtime);
        let injected = fake.state().faults_injected(Stream::Realtime);
        let m = exp.metrics();
        let seen: f64 = ["success", "error", "unknown", "no data"].iter().map(|r| results(&m, ids, r)).sum();
        let answered: u64 = settled.values().sum();
        if settled == injected && seen == answered as f64 {
            return (m, settled);
        }
        if Instant::now() > deadline {
            panic!(
                "outcomes never settled: injected {injected:?}, settled {settled:?}, exporter saw {seen}; log:\n{}",
                exp.output()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Compares the exporter with what the `Faulty` stream delivered for `id`; returns (series
/// checked, mismatches).
fn compare(fake: &FakeFastly, m: &Scrape, id: &str, families: &[Family]) -> (usize, Vec<String>) {
    let s = fake.state();
    truth::compare(m, id, &s.delivered(Stream::Realtime, id), &s.delivered_bodies(Stream::Realtime, id), families)
}

fn alive(exp: &mut Exporter) {
    assert_eq!(exp.wait_exit(Duration::ZERO), None, "the exporter died; log:\n{}", exp.output());
}

/// Lines of the log that report a real-time poll failing (first occurrence or change).
fn failing_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("rt poll failing")).count()
}

#[test]
fn counters_equal_the_ground_truth_under_random_faults() {
    ground_truth_under_random_faults(Build::DebugPlain);
}

/// The same with the binary that ships, over TLS: the static build puts its own allocator
/// cache in front of musl's malloc, and TLS is where that cache reuses the most.
#[test]
fn release_build_over_tls_equals_the_ground_truth_under_random_faults() {
    ground_truth_under_random_faults(Build::ReleaseTls);
}

fn ground_truth_under_random_faults(build: Build) {
    let ids = ["faultA", "faultB", "faultC"];
    // Phase 1: every poll is reset, for a while. Failures are logged once, not per poll.
    let (fake, mut exp) = faulty_pair(&ids, FaultSpec::new(1.0, vec![Fault::Reset]), build);
    wait_until(
        "at least 6 failed polls per service",
        Duration::from_secs(60),
        || ids.iter().all(|id| rt_polls(&fake, id).len() >= 6),
        || exp.output(),
    );
    let phase1_log = exp.output();
    let phase1_failed: usize = ids.iter().map(|id| rt_polls(&fake, id).len()).sum();
    assert!(
        failing_lines(&phase1_log) <= 2 * ids.len() && failing_lines(&phase1_log) * 3 <= phase1_failed,
        "{phase1_failed} failed polls logged as {} lines:\n{phase1_log}",
        failing_lines(&phase1_log)
    );

    // Phase 2: 20 % of polls get a random fault of every kind.
    let injected_phase1 = fake.state().faults_injected(Stream::Realtime);
    let started = Instant::now();
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::Faulty(FaultSpec::new(0.2, all_kinds())));
    let mut errs = Vec::new();
    let mut prev = monotonic_series(&exp.metrics());
    let mut scrapes = 0;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        alive(&mut exp);
        let now = monotonic_series(&exp.metrics());
        check_monotonic(&prev, &now, &mut errs);
        prev = now;
        scrapes += 1;
        if ids.iter().all(|id| fake.state().delivered(Stream::Realtime, id).ts.len() >= 40) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "too slow: delivered {:?}; injected {:?}; log:\n{}",
            ids.map(|id| fake.state().delivered(Stream::Realtime, id).ts.len()),
            fake.state().faults_injected(Stream::Realtime),
            exp.output()
        );
    }
    eprintln!("phase 2: {:?}, {scrapes} scrapes", started.elapsed());

    // Phase 3: the stream stops (every later poll is held); the exporter catches up, and every
    // answer already decided (a stall is held 2 s) reaches it.
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::Script(Vec::new()));
    wait_caught_up(&fake, &exp, &ids, Duration::from_secs(60));
    let (m, injected) = wait_outcomes_settled(&fake, &exp, &ids, Duration::from_secs(60));
    eprintln!("answers: {injected:?}");
    check_monotonic(&prev, &monotonic_series(&m), &mut errs);
    assert!(errs.is_empty(), "counters went down:\n{}", errs.join("\n"));
    alive(&mut exp);

    // Every series of every datacenter equals the ground truth.
    let families = rt_families();
    assert!(families.len() > 200, "{} rt families", families.len());
    let mut checked = 0;
    for id in ids {
        let truth = fake.state().delivered(Stream::Realtime, id);
        assert_eq!(truth.redelivered, 0, "{id}: a delivered ts was asked again");
        assert!(truth.datacenters.len() >= 10, "{id}: {:?}", truth.datacenters.keys());
        let (n, bad) = compare(&fake, &m, id, &families);
        checked += n;
        assert!(bad.is_empty(), "{} mismatches, first ones:\n{}", bad.len(), bad[..bad.len().min(40)].join("\n"));
        // Spot checks named in the brief, on top of the generic mapping.
        let dc = truth.datacenters.keys().next().unwrap();
        let t = &truth.datacenters[dc];
        let get = |name: &str, extra: &[(&str, &str)]| {
            let mut l = vec![("service_id", id), ("datacenter", dc.as_str())];
            l.extend_from_slice(extra);
            m.find(name, &l).first().copied().unwrap_or(0.0)
        };
        assert_eq!(get("fastly_rt_requests_total", &[]), t.fields.get("requests").copied().unwrap_or(0.0));
        assert_eq!(get("fastly_rt_miss_duration_seconds_count", &[]), t.miss_histogram_count as f64);
        assert_eq!(
            get("fastly_rt_status_code_total", &[("status_code", "200")]),
            t.fields.get("status_200").copied().unwrap_or(0.0)
        );
    }
    eprintln!("{checked} series equal the ground truth");

    // Outcome counters: one success per delivered ts, one error/unknown per fault, exactly.
    let successes: f64 = ids.iter().map(|id| result_count(&m, id, "success")).sum();
    let delivered: usize = ids.iter().map(|id| fake.state().delivered(Stream::Realtime, id).ts.len()).sum();
    assert_eq!(successes, delivered as f64);
    assert_eq!(successes, injected.get("clean").copied().unwrap_or(0) as f64, "one success per clean answer");
    let n = |k: &str| injected.get(k).copied().unwrap_or(0) as f64;
    let errors: f64 = ids.iter().map(|id| result_count(&m, id, "error")).sum();
    let unknown: f64 = ids.iter().map(|id| result_count(&m, id, "unknown")).sum();
    let want_errors = ["truncated", "malformed", "oversize", "reset", "stall"].map(n).iter().sum::<f64>();
    let want_unknown = ["status_500", "status_503", "status_404", "rate_limited"].map(n).iter().sum::<f64>();
    assert_eq!((errors, unknown), (want_errors, want_unknown), "(error, unknown) results vs faults {injected:?}");
    for (code, label) in [("500", "status_500"), ("503", "status_503"), ("404", "status_404"), ("429", "rate_limited")]
    {
        assert!(n(label) == 0.0 || api_requests(&m, "realtime", code) >= 1.0, "code {code} not counted");
    }
    assert!(api_requests(&m, "realtime", "error") >= 1.0, "transport errors not counted");
    assert!(api_requests(&m, "realtime", "200") >= delivered as f64);
    assert_eq!(exp.readyz(), 200);

    let log = exp.output();
    assert!(!log.contains(TOKEN), "the token leaked into the output");
    let faults = |i: &BTreeMap<String, u64>| i.iter().filter(|(k, _)| *k != "clean").map(|(_, v)| v).sum::<u64>();
    let phase2_faults = faults(&injected) - faults(&injected_phase1);
    let phase2_lines = log.lines().count() - phase1_log.lines().count();
    eprintln!("phase 1: {phase1_failed} failed polls, {} log lines", phase1_log.lines().count());
    eprintln!("phase 2 and after: {phase2_faults} faults, {phase2_lines} log lines");
    // Each fault between successes is a state change: logged, then its recovery; never more.
    assert!(phase2_lines as u64 <= 2 * phase2_faults + 10, "{log}");
}

#[test]
fn a_poll_stalled_past_rt_timeout_is_abandoned_and_its_ts_asked_again() {
    let fake = faulty_fake(&["stall"], FaultSpec::new(1.0, vec![Fault::Stall(Duration::from_secs(60))]));
    let mut exp = start(&fake);
    wait_until("the first poll", Duration::from_secs(10), || !rt_polls(&fake, "stall").is_empty(), || exp.output());
    fake.state().set_fault_rate(Stream::Realtime, 0.0);
    // Scraped every few seconds meanwhile, like Prometheus would (and the exporter's listener
    // stops accepting after 30 s without a connection: see robustness.rs).
    let mut last_scrape = Instant::now();
    wait_until(
        "a retry after the timeout",
        Duration::from_secs(75),
        || {
            if last_scrape.elapsed() > Duration::from_secs(5) {
                assert!(exp.metrics().with_prefix("fastly_rt_requests_total").is_empty());
                last_scrape = Instant::now();
            }
            rt_polls(&fake, "stall").len() >= 2
        },
        || exp.output(),
    );
    let polls = rt_polls(&fake, "stall");
    let gap = polls[1].at - polls[0].at;
    assert!(gap >= Duration::from_secs(44) && gap < Duration::from_secs(59), "retry {gap:?} after the stalled poll");
    assert_eq!(ts_of(&polls[1]), ts_of(&polls[0]), "the abandoned ts is asked again");
    wait_until(
        "a few clean deliveries",
        Duration::from_secs(20),
        || fake.state().delivered(Stream::Realtime, "stall").ts.len() >= 5,
        || exp.output(),
    );
    alive(&mut exp);
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::Script(Vec::new()));
    let m = wait_caught_up(&fake, &exp, &["stall"], Duration::from_secs(30));
    let truth = fake.state().delivered(Stream::Realtime, "stall");
    assert_eq!(truth.ts[0], ts_of(&polls[0]));
    assert_eq!(truth.redelivered, 0);
    let (_, bad) = compare(&fake, &m, "stall", &rt_families());
    assert!(bad.is_empty(), "{}", bad[..bad.len().min(40)].join("\n"));
    assert_eq!(result_count(&m, "stall", "error"), 1.0, "the timed-out poll is one error");
    assert_eq!(fake.state().faults_injected(Stream::Realtime).get("stall"), Some(&1));
}

#[test]
fn an_rt_429_waits_for_retry_after() {
    let fake = faulty_fake(&["limited"], FaultSpec::new(1.0, vec![Fault::RateLimited(3)]));
    let exp = start(&fake);
    wait_until("the first poll", Duration::from_secs(10), || !rt_polls(&fake, "limited").is_empty(), || exp.output());
    fake.state().set_fault_rate(Stream::Realtime, 0.0);
    wait_until("a retry", Duration::from_secs(15), || rt_polls(&fake, "limited").len() >= 2, || exp.output());
    let polls = rt_polls(&fake, "limited");
    let gap = polls[1].at - polls[0].at;
    assert!(gap >= Duration::from_millis(2500), "retried {gap:?} after a 429 with Retry-After: 3");
    assert_eq!(ts_of(&polls[1]), ts_of(&polls[0]));
    let m =
        exp.wait_for("data after the 429", Duration::from_secs(10), |m| result_count(m, "limited", "success") >= 1.0);
    assert_eq!(result_count(&m, "limited", "unknown"), 1.0);
    assert!(api_requests(&m, "realtime", "429") >= 1.0);
}

/// On the exporter's own clock, stepped: nearly the whole 120 s backoff passes and every
/// poller is seen to look at the time and keep waiting (instead of sleeping 8 s to see no
/// second poll); then each polls again once it has passed.
#[test]
fn unauthorized_polls_back_off_and_count_nothing() {
    let ids = ["unauth1", "unauth2", "unauth3"];
    let fake = faulty_fake(&ids, FaultSpec::new(1.0, vec![Fault::Status(401), Fault::Status(403)]));
    let clock = ManualClock::new();
    let exp = InProcess::against_token(&fake, TOKEN, &["-rt-max-body", MAX_BODY], clock.clone());
    wait_until(
        "a poll of each service",
        Duration::from_secs(10),
        || ids.iter().all(|id| !rt_polls(&fake, id).is_empty()),
        inproc::log_text,
    );
    exp.wait_for("each failure counted", Duration::from_secs(10), |m| {
        ids.iter().all(|id| result_count(m, id, "error") == 1.0)
    });
    for id in ids {
        // Each poller waits on the clock: its deadline is set.
        clock.waited_since(&format!("poll-rt-{id}"), 0, Duration::from_secs(10));
    }
    let step = clock.advance(Duration::from_secs(119));
    for id in ids {
        let next = clock.waited_since(&format!("poll-rt-{id}"), step, Duration::from_secs(10));
        assert_eq!(clock.until(next), Duration::from_secs(1), "{id}: a 401/403 backs off 120 s");
    }
    let m = exp.metrics();
    for id in ids {
        assert_eq!(rt_polls(&fake, id).len(), 1, "{id} polled again within 119 s of a 401/403");
        assert_eq!(result_count(&m, id, "error"), 1.0, "{id}");
    }
    assert!(m.with_prefix("fastly_rt_requests_total").is_empty(), "data counted from a 401/403");
    let injected = fake.state().faults_injected(Stream::Realtime);
    for code in ["401", "403"] {
        let n = injected.get(&format!("status_{code}")).copied().unwrap_or(0) as f64;
        assert_eq!(api_requests(&m, "realtime", code), n, "{injected:?}");
    }
    clock.advance(Duration::from_secs(1));
    wait_until(
        "a second poll of each service",
        Duration::from_secs(10),
        || ids.iter().all(|id| rt_polls(&fake, id).len() == 2),
        inproc::log_text,
    );
    let log = inproc::log_text();
    assert!(log.contains("unauth1") && !log.contains(TOKEN), "{log}");
}

#[test]
fn an_api_429_pauses_every_api_request_for_retry_after() {
    let fake = faulty_fake(&["apiA"], FaultSpec::new(0.0, Vec::new()));
    fake.state().set_route_reply("/service", Reply::new(429, b"{}".to_vec()).with_header("Retry-After", "4"));
    let exp = start(&fake);
    let is_api = |r: &support::RecordedRequest| !r.path_and_query.starts_with("/v1/");
    wait_until(
        "the first service list request",
        Duration::from_secs(10),
        || fake.state().count("/service") >= 1,
        || exp.output(),
    );
    let first = fake.state().requests().into_iter().find(|r| r.path_and_query.starts_with("/service")).unwrap();
    fake.state().remove_route("/service");
    // Ask for refreshes every half second; none may reach the API before Retry-After passed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.state().count("/service") < 2 {
        assert!(Instant::now() < deadline, "the API was never asked again; log:\n{}", exp.output());
        exp.signal("HUP");
        std::thread::sleep(Duration::from_millis(500));
    }
    let api: Vec<support::RecordedRequest> =
        fake.state().requests().into_iter().filter(|r| is_api(r) && r.at > first.at).collect();
    let gap = api[0].at - first.at;
    assert!(gap >= Duration::from_millis(3500), "API asked {gap:?} after a 429 with Retry-After: 4: {api:?}");
    assert!(gap < Duration::from_secs(10), "resumed only after {gap:?}");
    exp.wait_sd(&["apiA"], Duration::from_secs(10));
    assert!(exp.output().contains("rate limited"), "{}", exp.output());

    // Fastly-RateLimit-Remaining of a service list answer is exported.
    let list = br#"[{"id":"apiA","name":"name of apiA","version":1}]"#.to_vec();
    fake.state().set_route_reply("/service", Reply::new(200, list).with_header("Fastly-RateLimit-Remaining", "123"));
    exp.signal("HUP");
    exp.wait_for("the rate-limit gauge", Duration::from_secs(15), |m| {
        m.get("fastly_exporter_api_rate_limit_remaining") == Some(123.0)
    });
}

#[test]
fn a_panicking_poller_is_restarted_and_the_others_keep_going() {
    let fake = faulty_fake(&["panicky", "steady"], FaultSpec::new(0.0, Vec::new()));
    let mut exp = start_against_env(
        &fake,
        Some(TOKEN),
        &["-rt-max-body", MAX_BODY],
        &[("FASTLY_EXPORTER_DEBUG_PANIC_SERVICE", "panicky")],
    );
    let m = exp.wait_for("a poller restart", Duration::from_secs(15), |m| {
        m.get("fastly_exporter_poller_restarts_total").is_some_and(|v| v >= 1.0)
    });
    let steady = |m: &Scrape| m.find("fastly_rt_requests_total", &[("service_id", "steady")]).iter().sum::<f64>();
    let before = steady(&m);
    // The panicking poller restarts again (5 s later) while the other one keeps growing
    // (instead of a fixed 2 s).
    let m2 = exp.wait_for("a second restart, and steady growing", Duration::from_secs(20), |m| {
        m.get("fastly_exporter_poller_restarts_total").is_some_and(|v| v >= 2.0) && steady(m) > before
    });
    alive(&mut exp);
    assert_eq!(exp.readyz(), 200);
    let log = exp.output();
    assert!(log.lines().any(|l| l.contains("panicky") && l.contains("panick")), "{log}");
    assert!(rt_polls(&fake, "panicky").is_empty(), "the panic comes before the request");
    assert!(m2.find("fastly_rt_requests_total", &[("service_id", "panicky")]).is_empty());
    assert_eq!(m2.get(r#"fastly_exporter_pollers{product="realtime"}"#), Some(2.0));
}

/// A panic in the middle of a merge (injected, debug builds) leaves nothing behind: the
/// records merged before it are undone, the poller is restarted, the same `ts` is asked again
/// and counted once. Every series must still equal the ground truth.
#[test]
fn a_panic_mid_merge_counts_nothing_twice() {
    let ids = ["mergeA", "mergeB", "mergeC"];
    let fake = faulty_fake(&ids, FaultSpec::new(0.0, Vec::new()));
    let mut exp = start_against_env(
        &fake,
        Some(TOKEN),
        &["-rt-max-body", MAX_BODY],
        &[("FASTLY_EXPORTER_DEBUG_MERGE_PANICS", "4")],
    );
    wait_until(
        "4 injected panics and 20 answers per service after them",
        Duration::from_secs(90),
        || {
            let redelivered: u64 = ids.iter().map(|id| fake.state().delivered(Stream::Realtime, id).redelivered).sum();
            redelivered >= 4 && ids.iter().all(|id| fake.state().delivered(Stream::Realtime, id).ts.len() >= 20)
        },
        || exp.output(),
    );
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::Script(Vec::new()));
    let m = wait_caught_up(&fake, &exp, &ids, Duration::from_secs(60));
    alive(&mut exp);
    let families = rt_families();
    let mut checked = 0;
    for id in ids {
        let (n, bad) = compare(&fake, &m, id, &families);
        checked += n;
        assert!(bad.is_empty(), "{id}: {} mismatches, first ones:\n{}", bad.len(), bad[..bad.len().min(40)].join("\n"));
    }
    let redelivered: u64 = ids.iter().map(|id| fake.state().delivered(Stream::Realtime, id).redelivered).sum();
    eprintln!("{checked} series equal the ground truth after 4 panics mid-merge ({redelivered} ts asked again)");
    assert_eq!(redelivered, 4, "each panicked ts is asked again once, and only those");
    assert_eq!(m.get("fastly_exporter_poller_restarts_total"), Some(4.0));
    let log = exp.output();
    assert_eq!(log.lines().filter(|l| l.contains("injected test panic after merging")).count(), 1, "{log}");
}

//! Bounded label memory under churn: origins and domains that come and go do not stay in
//! memory for the life of the process. Rows without data for `-entity-expiry` are dropped,
//! and the names no row uses any more are freed.

use crate::support;

use std::time::{Duration, Instant};

use fake_fastly::Reply;
use support::inproc::{InProcess, ManualClock};
use support::{FakeConfig, FakeFastly, FakeService, StreamMode, rss_bytes, start_against};

const NAMES_PER_ANSWER: usize = 1_000;
const ANSWERS: usize = 10;

fn domains_answer(round: usize) -> Vec<u8> {
    let entries: Vec<String> = (0..NAMES_PER_ANSWER)
        .map(|i| format!(r#""customer-{round}-{i}.example.com":{{"edge_requests":{}}}"#, i + 1))
        .collect();
    let ts = 1_700_000_000 + round as u64;
    format!(
        r#"{{"Data":[{{"datacenter":{{"AMS":{{{}}}}},"aggregated":{{}},"recorded":{ts}}}],"Timestamp":{}}}"#,
        entries.join(","),
        ts + 1
    )
    .into_bytes()
}

fn gauge(exp: &support::Exporter) -> f64 {
    exp.metrics().get("fastly_exporter_interned_names").expect("interned names gauge")
}

#[test]
fn ten_thousand_domains_that_come_and_go_are_freed() {
    // The first answer waits 2 s, so the baseline is measured before any domain arrives.
    let script: Vec<Reply> = (0..ANSWERS)
        .map(|r| Reply::new(200, domains_answer(r)).with_delay(Duration::from_secs(if r == 0 { 2 } else { 0 })))
        .collect();
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("churn", "saas", 1)],
        realtime: StreamMode::NotFound,
        origins: StreamMode::NotFound,
        domains: StreamMode::Script(script),
        ..FakeConfig::default()
    })
    .expect("fake");
    let ent = r#"{"product":{"id":"domain_inspector","object":"product"},"has_access":true}"#;
    fake.state().set_route("/entitled-products/domain_inspector", 200, ent.as_bytes().to_vec());
    let exp = start_against(&fake, "T", &["-entity-expiry", "3s"]);
    let baseline = gauge(&exp);
    assert!(baseline < 10.0, "domains arrived before the baseline: {baseline}");
    let rss_before = rss_bytes(exp.pid()).unwrap_or(0);
    // Every answer is merged (the 11th poll is held: the script is over).
    support::wait_until(
        "all answers polled",
        Duration::from_secs(30),
        || fake.state().count("/v1/domains/churn/") > ANSWERS,
        || exp.output(),
    );
    let peak = gauge(&exp);
    let rss_peak = rss_bytes(exp.pid()).unwrap_or(0);
    // No more data: every row expires after 3 s, and its names go with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let m = exp.metrics();
        let names = m.get("fastly_exporter_interned_names").unwrap_or(f64::MAX);
        let rows = m.samples.iter().filter(|(n, _, _)| n.starts_with("fastly_domain_")).count();
        if names <= baseline + 1.0 && rows == 0 {
            break names;
        }
        assert!(Instant::now() < deadline, "names {names} (baseline {baseline}), {rows} domain series left");
        std::thread::sleep(Duration::from_millis(250));
    };
    let rss_after = rss_bytes(exp.pid()).unwrap_or(0);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "{} distinct domains: interned names {baseline} → {peak} → {after}; RSS {:.1} → {:.1} → {:.1} MiB",
        ANSWERS * NAMES_PER_ANSWER,
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    );
    assert!(peak >= (NAMES_PER_ANSWER * 2) as f64, "the names were never held: peak {peak}");
}

#[test]
fn without_expiry_the_names_stay_as_the_go_exporter_keeps_them() {
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("keep", "saas", 1)],
        realtime: StreamMode::NotFound,
        origins: StreamMode::NotFound,
        domains: StreamMode::Script(vec![Reply::new(200, domains_answer(0))]),
        ..FakeConfig::default()
    })
    .expect("fake");
    let ent = r#"{"product":{"id":"domain_inspector","object":"product"},"has_access":true}"#;
    fake.state().set_route("/entitled-products/domain_inspector", 200, ent.as_bytes().to_vec());
    // On the exporter's own clock: a day passes, and the main loop is seen to have run (and
    // skipped expiry) at the new time, instead of sleeping 4 s.
    let clock = ManualClock::new();
    let exp = InProcess::against(&fake, &["-entity-expiry", "0"], clock.clone());
    exp.wait_for("the domains", Duration::from_secs(30), |m| {
        m.samples.iter().filter(|(n, _, _)| n == "fastly_domain_edge_requests_total").count() == NAMES_PER_ANSWER
    });
    let step = clock.advance(Duration::from_secs(86_400));
    clock.waited_since("main-loop", step, Duration::from_secs(30));
    let m = exp.metrics();
    assert_eq!(m.samples.iter().filter(|(n, _, _)| n == "fastly_domain_edge_requests_total").count(), NAMES_PER_ANSWER);
    assert!(m.get("fastly_exporter_interned_names").unwrap_or(0.0) > NAMES_PER_ANSWER as f64);
}

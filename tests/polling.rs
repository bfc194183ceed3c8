//! The real-time poll loop end to end: which wait follows which answer, which `ts` is asked
//! next, how outcomes are counted, the request headers, and `-aggregate-only`.

use crate::support;

use std::time::Duration;

use fake_fastly::{GenSpec, Reply};
use support::expo::Scrape;
use support::inproc::{InProcess, ManualClock};
use support::{
    Exporter, FakeConfig, FakeFastly, FakeService, RecordedRequest, StreamMode, fake_with, rt_data, rt_no_data,
    rt_polls, start_against, ts_of, wait_until,
};

const T1: u64 = 1_700_000_001;
const T2: u64 = 1_700_000_002;
const T3: u64 = 1_700_000_003;

/// The wait after a 401 or 403 (the Go exporter's).
const BACKOFF_401: Duration = Duration::from_secs(120);

/// One service `S`, its real-time stream scripted with `replies` (then held forever).
fn scripted(replies: Vec<Reply>) -> (FakeFastly, Exporter) {
    let fake = fake_with(vec![FakeService::new("S", "scripted", 1)], StreamMode::Script(replies));
    let exp = start_against(&fake, "T", &[]);
    (fake, exp)
}

/// Waits until the fake has seen at least `n` polls of `S`; returns them all.
fn wait_polls(fake: &FakeFastly, exp: &Exporter, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
    wait_until(
        &format!("{n} polls"),
        timeout,
        || rt_polls(fake, "S").len() >= n,
        || {
            let polls: Vec<String> = rt_polls(fake, "S").iter().map(|r| r.path_and_query.clone()).collect();
            format!("polls so far: {polls:?}\nlog:\n{}", exp.output())
        },
    );
    rt_polls(fake, "S")
}

fn result_count(m: &Scrape, result: &str) -> f64 {
    m.find("fastly_rt_realtime_api_requests_total", &[("service_id", "S"), ("result", result)])
        .first()
        .copied()
        .unwrap_or(0.0)
}

fn requests(m: &Scrape, dc: &str) -> Option<f64> {
    m.find("fastly_rt_requests_total", &[("service_id", "S"), ("datacenter", dc)]).first().copied()
}

fn gap(polls: &[RecordedRequest], i: usize) -> Duration {
    polls[i].at - polls[i - 1].at
}

#[test]
fn data_is_followed_at_once_by_a_poll_for_its_timestamp() {
    let (fake, exp) = scripted(vec![
        Reply::new(200, rt_data(T1, &[("AMS", 3), ("LHR", 4)])),
        Reply::new(200, rt_data(T2, &[("AMS", 10)])),
    ]);
    let polls = wait_polls(&fake, &exp, 3, Duration::from_secs(10));
    let ts: Vec<u64> = polls.iter().map(ts_of).collect();
    assert_eq!(ts[..3], [0, T1, T2]);
    for i in 1..3 {
        assert!(gap(&polls, i) < Duration::from_secs(1), "poll {i}: {:?}", gap(&polls, i));
    }
    let m = exp.wait_for("both answers counted", Duration::from_secs(5), |m| result_count(m, "success") == 2.0);
    assert_eq!(requests(&m, "AMS"), Some(13.0));
    assert_eq!(requests(&m, "LHR"), Some(4.0));
    assert_eq!(result_count(&m, "error"), 0.0);
}

#[test]
fn a_503_waits_about_5s_counts_unknown_and_reasks_the_same_ts() {
    let (fake, exp) = scripted(vec![
        Reply::new(200, rt_data(T1, &[("AMS", 5)])),
        Reply::new(503, br#"{"Error":"unavailable"}"#.to_vec()),
        Reply::new(200, rt_data(T2, &[("AMS", 6)])),
    ]);
    let polls = wait_polls(&fake, &exp, 4, Duration::from_secs(15));
    let ts: Vec<u64> = polls.iter().map(ts_of).collect();
    assert_eq!(ts[..4], [0, T1, T1, T2], "the failed ts is asked again");
    assert!(gap(&polls, 1) < Duration::from_secs(1));
    assert!(gap(&polls, 2) >= Duration::from_millis(4500), "retry after a 503 came {:?} later", gap(&polls, 2));
    assert!(gap(&polls, 3) < Duration::from_secs(1));
    let m = exp.wait_for("two successes", Duration::from_secs(5), |m| result_count(m, "success") == 2.0);
    assert_eq!(result_count(&m, "unknown"), 1.0);
    assert_eq!(result_count(&m, "error"), 0.0);
    assert_eq!(requests(&m, "AMS"), Some(11.0));
}

/// On the exporter's own clock, stepped: the 401's backoff is crossed at once, and the
/// poller is seen to look at the time after each step (instead of sleeping 5.5 s to see no
/// second poll).
#[test]
fn a_401_backs_off_long_and_counts_error() {
    let fake =
        fake_with(vec![FakeService::new("S", "scripted", 1)], StreamMode::Script(vec![Reply::new(401, Vec::new())]));
    let clock = ManualClock::new();
    let exp = InProcess::against(&fake, &[], clock.clone());
    wait_until("the first poll", Duration::from_secs(10), || rt_polls(&fake, "S").len() == 1, String::new);
    exp.wait_for("the 401 counted", Duration::from_secs(5), |m| result_count(m, "error") == 1.0);
    // The poller waits on the clock (its deadline is set); nearly the whole backoff later it
    // still waits, one second more.
    clock.waited_since("poll-rt-S", 0, Duration::from_secs(10));
    let step = clock.advance(BACKOFF_401 - Duration::from_secs(1));
    let next = clock.waited_since("poll-rt-S", step, Duration::from_secs(10));
    assert_eq!(clock.until(next), Duration::from_secs(1), "a 401 backs off {BACKOFF_401:?}");
    assert_eq!(rt_polls(&fake, "S").len(), 1, "polled again within {:?} of a 401", clock.elapsed());
    let m = exp.metrics();
    assert_eq!(result_count(&m, "error"), 1.0);
    assert_eq!(result_count(&m, "unknown"), 0.0);
    assert_eq!(result_count(&m, "success"), 0.0);
    assert!(m.with_prefix("fastly_rt_requests_total").is_empty());
    // The service itself stays exported.
    assert_eq!(support::sd_at(&exp.addr), ["S"]);
    // Once the backoff has passed, it polls again.
    clock.advance(Duration::from_secs(1));
    wait_until("the poll after the backoff", Duration::from_secs(10), || rt_polls(&fake, "S").len() == 2, String::new);
}

#[test]
fn no_data_waits_before_the_next_poll_and_counts_no_data() {
    let (fake, exp) = scripted(vec![Reply::new(200, rt_no_data(T1)), Reply::new(200, rt_data(T2, &[("AMS", 2)]))]);
    let polls = wait_polls(&fake, &exp, 3, Duration::from_secs(15));
    let ts: Vec<u64> = polls.iter().map(ts_of).collect();
    assert_eq!(ts[..3], [0, T1, T2]);
    assert!(gap(&polls, 1) >= Duration::from_millis(1500), "poll after \"No data\" came {:?} later", gap(&polls, 1));
    assert!(gap(&polls, 2) < Duration::from_secs(1));
    let m = exp.wait_for("the data counted", Duration::from_secs(5), |m| result_count(m, "success") == 1.0);
    assert_eq!(result_count(&m, "no data"), 1.0);
    assert_eq!(requests(&m, "AMS"), Some(2.0));
}

#[test]
fn malformed_or_truncated_bodies_add_nothing_and_count_as_errors() {
    let full = rt_data(T2, &[("AMS", 1000), ("LHR", 1000)]);
    let truncated = full[..full.len() - 20].to_vec();
    let (fake, exp) = scripted(vec![
        Reply::new(200, rt_data(T1, &[("AMS", 7)])),
        Reply::new(200, truncated),
        Reply::new(200, b"<html>upstream error</html>".to_vec()),
        Reply::new(200, rt_data(T3, &[("AMS", 5)])),
    ]);
    let polls = wait_polls(&fake, &exp, 3, Duration::from_secs(10));
    // The third poll is only sent once the truncated answer was handled.
    let m = exp.metrics();
    assert_eq!(requests(&m, "AMS"), Some(7.0), "a truncated body was counted");
    assert_eq!(requests(&m, "LHR"), None);
    assert!(result_count(&m, "error") >= 1.0);
    assert!(gap(&polls, 2) < Duration::from_secs(5));

    let polls = wait_polls(&fake, &exp, 5, Duration::from_secs(10));
    let ts: Vec<u64> = polls.iter().map(ts_of).collect();
    assert_eq!(ts[..5], [0, T1, T1, T1, T3], "failed answers re-ask their ts");
    let m = exp.wait_for("two successes", Duration::from_secs(5), |m| result_count(m, "success") == 2.0);
    assert_eq!(result_count(&m, "error"), 2.0);
    assert_eq!(result_count(&m, "unknown"), 0.0);
    assert_eq!(requests(&m, "AMS"), Some(12.0));
    assert_eq!(requests(&m, "LHR"), None);
}

#[test]
fn every_request_carries_the_token_and_user_agent() {
    let token = "tok-HEADERS-42";
    let fake = FakeFastly::start(FakeConfig {
        token: Some(token.into()),
        services: vec![FakeService::new("A", "a", 1), FakeService::new("B", "b", 1)],
        realtime: StreamMode::Generated(GenSpec::default()),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .unwrap();
    let exp = start_against(&fake, token, &[]);
    exp.wait_for("a few successful polls of each", Duration::from_secs(15), |m| {
        ["A", "B"].iter().all(|id| {
            m.find("fastly_rt_realtime_api_requests_total", &[("service_id", id), ("result", "success")])
                .first()
                .is_some_and(|v| *v >= 2.0)
        })
    });
    exp.signal("HUP");
    wait_until(
        "a second service list request",
        Duration::from_secs(10),
        || fake.state().count("/service?") >= 2,
        || exp.output(),
    );
    let reqs = fake.state().requests();
    assert!(reqs.len() >= 6);
    let agent = format!("Fastly-Exporter ({})", env!("CARGO_PKG_VERSION"));
    for r in &reqs {
        assert_eq!(r.header("Fastly-Key"), Some(token), "{}", r.path_and_query);
        assert_eq!(r.header("User-Agent"), Some(agent.as_str()), "{}", r.path_and_query);
    }
    let m = exp.metrics();
    assert!(m.find("fastly_rt_realtime_api_requests_total", &[("result", "error")]).is_empty());
}

#[test]
fn aggregate_only_exports_only_the_aggregate_datacenter() {
    let fake = fake_with(vec![FakeService::new("A", "a", 1)], StreamMode::Generated(GenSpec::default()));
    let agg = start_against(&fake, "T", &["-aggregate-only"]);
    let per_dc = start_against(&fake, "T", &[]);
    let has_requests = |m: &Scrape| m.find("fastly_rt_requests_total", &[("service_id", "A")]).iter().any(|v| *v > 0.0);
    let m = agg.wait_for("data", Duration::from_secs(15), has_requests);
    per_dc.wait_for("data", Duration::from_secs(15), has_requests);
    let dcs: Vec<&str> = {
        let mut v: Vec<&str> = m
            .samples
            .iter()
            .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == "datacenter"))
            .map(|(_, v)| v.as_str())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(dcs, ["aggregate"]);
    assert!(m.with_prefix("fastly_rt_requests_total{").len() == 1);
    let pm = per_dc.metrics();
    let per = pm.label_values("fastly_rt_requests_total", "datacenter");
    assert!(per.len() > 1, "{per:?}");
    assert!(!per.contains(&"aggregate".to_string()));
}

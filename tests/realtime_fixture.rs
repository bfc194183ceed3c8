//! Issue 3's acceptance scenario: the real binary against a fake API serving the real-time
//! fixture once; every `testspace_testsystem_` series must equal the Go exporter's.

use crate::support;

use std::time::Duration;

use support::expo::{self, diff, oracle};
use support::fixture_fake;

const PREFIX: &str = "testspace_testsystem_";

fn comparable(m: &expo::Scrape) -> std::collections::BTreeMap<String, f64> {
    // Account metadata (build_info, datacenters, …) is issue 4's; the oracle covers the stream.
    m.with_prefix(PREFIX)
        .into_iter()
        .filter(|(k, _)| !k.contains("_last_successful_response{") && !k.contains("_build_info{"))
        .collect()
}

#[test]
fn per_datacenter_output_equals_go_exporter() {
    let fake = fixture_fake("realtime.json");
    let exp = support::start_testspace(&fake, &[]);
    let m = exp.wait_settled("the fixture to be ingested", Duration::from_secs(15), |m| {
        m.get(r#"testspace_testsystem_requests_total{datacenter="LGA",service_id="my-service-id",service_name="my-service-name"}"#)
            .is_some()
    });
    let have = comparable(&m);
    let want: std::collections::BTreeMap<String, f64> = oracle("expected-realtime.json")
        .into_iter()
        .filter(|(k, _)| !k.contains("_last_successful_response{"))
        .collect();
    let problems = diff(&want, &have);
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems[..problems.len().min(30)].join("\n"));
    assert_eq!(have.len(), 2872);
    let dc = r#"{datacenter="LGA",service_id="my-service-id",service_name="my-service-name"}"#;
    assert_eq!(m.get(&format!("{PREFIX}requests_total{dc}")), Some(57.0));
    // One poll completed; the second is held by the fake.
    let ok = r#"testspace_testsystem_realtime_api_requests_total{result="success",service_id="my-service-id",service_name="my-service-name"}"#;
    assert_eq!(m.get(ok), Some(1.0));
    assert_eq!(m.label_values("testspace_testsystem_requests_total", "datacenter").len(), 10);
}

#[test]
fn aggregate_only_output_equals_go_exporter() {
    let fake = fixture_fake("realtime.json");
    let exp = support::start_testspace(&fake, &["-aggregate-only"]);
    let agg = r#"{datacenter="aggregate",service_id="my-service-id",service_name="my-service-name"}"#;
    let m = exp.wait_settled("the fixture to be ingested", Duration::from_secs(15), |m| {
        m.get(&format!("{PREFIX}requests_total{agg}")).is_some()
    });
    let have = comparable(&m);
    let want: std::collections::BTreeMap<String, f64> = oracle("expected-realtime-aggregate.json")
        .into_iter()
        .filter(|(k, _)| !k.contains("_last_successful_response{"))
        .collect();
    let problems = diff(&want, &have);
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems[..problems.len().min(30)].join("\n"));
    assert_eq!(have.len(), 289, "290 with last_successful_response");
    assert!(m.with_prefix(PREFIX).keys().any(|k| k.contains("_last_successful_response{")));
    let get = |name: &str| m.get(&format!("{PREFIX}{name}{agg}")).unwrap_or(f64::NAN);
    assert_eq!(get("requests_total"), 91.0);
    assert_eq!(get("miss_duration_seconds_count"), 79.0);
    assert_eq!(expo::round3(get("miss_duration_seconds_sum")), 6.814);
    assert_eq!(expo::round3(get("compute_execution_time_total")), 28.6);
    for (v, want) in [("1", 10.0), ("2", 48.0), ("3", 33.0)] {
        let k = format!(
            r#"{PREFIX}http_total{{datacenter="aggregate",http_version="{v}",service_id="my-service-id",service_name="my-service-name"}}"#
        );
        assert_eq!(m.get(&k), Some(want), "{k}");
    }
}

#[test]
fn exposition_is_valid_and_sorted_like_client_golang() {
    let fake = fixture_fake("realtime.json");
    let exp = support::start_testspace(&fake, &[]);
    exp.wait_for("data", Duration::from_secs(15), |m| m.series.len() > 2000);
    let (status, headers, body) = support::get_raw(&exp.url("/metrics"), &[]);
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").map(String::as_str), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(body).unwrap();
    let (ok, report) = support::lint(&text, false);
    assert!(ok, "{report}");
    // Strict mode only flags the two upstream counter names without _total.
    let (_, report) = support::lint(&text, true);
    for line in report.lines().filter(|l| l.starts_with("counter-without-total:") && !l.contains("more")) {
        assert!(line.contains("_pipe ") || line.contains("request_denied_get_head_body"), "{line}");
    }
    assert!(!report.lines().any(|l| !l.starts_with("counter-without-total") && !l.starts_with("lint:")), "{report}");
    // The catalog's families appear in name order, each with HELP then TYPE (the exporter's
    // own metrics follow them as a block).
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .filter(|n| !support::is_self_metric(n))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let m = expo::parse(&text);
    assert_eq!(
        m.help.get("testspace_testsystem_requests_total").map(String::as_str),
        Some("Number of requests processed.")
    );
    // Histogram buckets are cumulative and +Inf equals _count.
    let lbl = r#"datacenter="LGA",service_id="my-service-id",service_name="my-service-name""#;
    let inf = m.get(&format!(r#"{PREFIX}miss_duration_seconds_bucket{{{lbl},le="+Inf"}}"#)).unwrap();
    assert_eq!(Some(inf), m.get(&format!("{PREFIX}miss_duration_seconds_count{{{lbl}}}")));
    let mut prev = 0.0;
    for le in ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "4", "8", "16", "32", "60", "+Inf"] {
        let v = m.get(&format!(r#"{PREFIX}miss_duration_seconds_bucket{{{lbl},le="{le}"}}"#)).unwrap();
        assert!(v >= prev, "le={le}");
        prev = v;
    }
    // gzip when asked: same content.
    let (_, gz_headers, gz) = support::get_raw(&exp.url("/metrics"), &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz_headers.get("content-encoding").map(String::as_str), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(expo::parse(&plain).with_prefix(PREFIX).len(), m.with_prefix(PREFIX).len());
}

//! One bad field never stalls a stream: an answer with a negative, fractional, out-of-range,
//! non-numeric or null value, or a datacenter entry that is not an object, is merged without
//! that value, its `Timestamp` is followed, the skip is counted and logged once per stream
//! and field, and no counter goes down.

use crate::support;

use std::time::Duration;

use fake_fastly::Reply;
use support::{FakeService, StreamMode, fake_with, rt_polls, start_against, ts_of};

const T: Duration = Duration::from_secs(30);

fn answer(ts: u64, datacenters: &str) -> Vec<u8> {
    format!(r#"{{"Data":[{{"datacenter":{{{datacenters}}},"aggregated":{{}},"recorded":{}}}],"Timestamp":{ts},"AggregateDelay":0}}"#, ts - 1)
        .into_bytes()
}

#[test]
fn a_bad_value_is_skipped_the_rest_merged_and_the_stream_moves_on() {
    let script = vec![
        // The issue's case, and every other kind of bad value, next to good ones.
        Reply::new(
            200,
            answer(
                101,
                r#""AMS":{"requests":-5,"hits":3,"miss":2.5,"pass":"7","errors":null,"restarts":1e400,"synth":[1],
                   "miss_histogram":{"10":2,"20":-1}},
                   "LGA":{"requests":7,"hits":2},
                   "SYD":"broken""#,
            ),
        ),
        // The same field broken again (another datacenter): counted, not logged again.
        Reply::new(200, answer(102, r#""AMS":{"requests":4},"LGA":{"requests":-1,"hits":1}"#)),
    ];
    let fake = fake_with(vec![FakeService::new("svc", "bad fields", 1)], StreamMode::Script(script));
    let exp = start_against(&fake, "T", &[]);
    support::wait_until("three polls", T, || rt_polls(&fake, "svc").len() >= 3, || exp.output());
    let asked: Vec<u64> = rt_polls(&fake, "svc").iter().map(ts_of).collect();
    assert_eq!(&asked[..3], [0, 101, 102], "the stream moved on past the answers with bad values");
    let m = exp.wait_settled("both answers merged", T, |m| {
        m.find("fastly_rt_requests_total", &[("datacenter", "AMS")]).first() == Some(&4.0)
    });
    let v = |name: &str, dc: &str| m.find(name, &[("datacenter", dc)]).first().copied();
    assert_eq!(v("fastly_rt_requests_total", "AMS"), Some(4.0), "-5 skipped, 4 added");
    assert_eq!(v("fastly_rt_hits_total", "AMS"), Some(3.0));
    assert_eq!(v("fastly_rt_miss_total", "AMS"), Some(0.0), "2.5 is not a count");
    assert_eq!(v("fastly_rt_miss_duration_seconds_count", "AMS"), Some(2.0), "the good histogram entry counts");
    assert_eq!(v("fastly_rt_requests_total", "LGA"), Some(7.0), "-1 skipped");
    assert_eq!(v("fastly_rt_hits_total", "LGA"), Some(3.0));
    assert_eq!(v("fastly_rt_requests_total", "SYD"), None, "a datacenter entry that is not an object adds no row");
    // requests, miss, pass, errors, restarts, synth, one histogram entry, SYD; then requests.
    let skipped = m.find("fastly_exporter_invalid_fields_total", &[("stream", "realtime")]);
    assert_eq!(skipped, [9.0]);
    assert_eq!(m.find("fastly_rt_realtime_api_requests_total", &[("result", "success")]), [2.0]);
    assert!(m.find("fastly_rt_realtime_api_requests_total", &[("result", "error")]).is_empty());
    let log = exp.output();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("skipped it and merged the rest")).collect();
    assert_eq!(lines.len(), 8, "one line per (stream, field):\n{log}");
    assert_eq!(lines.iter().filter(|l| l.contains("\"requests\" was negative")).count(), 1, "{log}");
    assert!(log.contains("field \"restarts\" was out of range"), "{log}");
    assert!(log.contains("a datacenter entry was not an object of fields"), "{log}");
}

#[test]
fn a_bad_origin_entry_skips_that_entry_only() {
    let body = br#"{"Data":[{"datacenter":{"AMS":{"o1":{"status_2xx":5},"o2":{"status_2xx":-3,"status_5xx":1},"o3":17}},"aggregated":{},"recorded":1}],"Timestamp":2}"#;
    let fake = support::FakeFastly::start(support::FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("svc", "origins", 1)],
        realtime: StreamMode::NotFound,
        origins: StreamMode::FixtureThenHold { body: body.to_vec(), hold: Duration::from_secs(60) },
        domains: StreamMode::NotFound,
        ..support::FakeConfig::default()
    })
    .expect("fake");
    let ent = r#"{"product":{"id":"origin_inspector","object":"product"},"has_access":true}"#;
    fake.state().set_route("/entitled-products/origin_inspector", 200, ent.as_bytes().to_vec());
    let exp = start_against(&fake, "T", &[]);
    let m = exp.wait_settled("origin data", T, |m| {
        !m.find("fastly_exporter_invalid_fields_total", &[("stream", "origins")]).iter().all(|v| *v == 0.0)
    });
    let status = |origin: &str, group: &str| {
        let labels = [("origin", origin), ("source", "delivery"), ("status_group", group)];
        m.find("fastly_origin_status_group_total", &labels).first().copied()
    };
    assert_eq!(status("o1", "2xx"), Some(5.0));
    assert_eq!(status("o2", "2xx"), Some(0.0));
    assert_eq!(status("o2", "5xx"), Some(1.0));
    assert_eq!(status("o3", "2xx"), None);
    assert_eq!(m.find("fastly_exporter_invalid_fields_total", &[("stream", "origins")]), [2.0]);
}

//! Issue 4: Origin Inspector and Domain Inspector streams, gated by product entitlement,
//! compared series for series with the Go exporter's output (plus our documented fix).

use crate::support;

use std::time::Duration;

use support::expo::{self, diff, oracle, patched};
use support::{FakeConfig, FakeFastly, FakeService, StreamMode, fixture};

fn entitlement(product: &str, has: bool) -> Vec<u8> {
    format!(r#"{{"product":{{"id":"{product}","object":"product"}},"has_access":{has}}}"#).into_bytes()
}

/// A fixture with a `Timestamp` added: the Origin/Domain Inspector fixtures have none, and
/// without one a poller (ours and Go's alike) re-asks `ts` 0 and would count the data twice.
fn with_timestamp(name: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    v["Timestamp"] = serde_json::json!(1_700_000_000u64);
    serde_json::to_vec(&v).unwrap()
}

/// One service; the chosen inspector stream answers its fixture once, then holds 40 s.
fn fake(origins: bool) -> FakeFastly {
    let hold = Duration::from_secs(40);
    let (o, d) = if origins {
        (StreamMode::FixtureThenHold { body: with_timestamp("origins.json"), hold }, StreamMode::NotFound)
    } else {
        (StreamMode::NotFound, StreamMode::FixtureThenHold { body: with_timestamp("domains.json"), hold })
    };
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("my-service-id", "my-service-name", 123)],
        realtime: StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold },
        origins: o,
        domains: d,
        ..FakeConfig::default()
    })
    .expect("fake");
    let st = fake.state();
    st.set_route("/entitled-products/origin_inspector", 200, entitlement("origin_inspector", origins));
    st.set_route("/entitled-products/domain_inspector", 200, entitlement("domain_inspector", !origins));
    fake
}

fn check(prefix: &str, want: std::collections::BTreeMap<String, f64>, m: &expo::Scrape, count: usize) {
    let have = m.with_prefix(prefix);
    let problems = diff(&want, &have);
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems[..problems.len().min(30)].join("\n"));
    assert_eq!(have.len(), count);
}

#[test]
fn origins_match_go_exporter_with_the_header_bytes_fix() {
    for (aggregate, oracle_name, patch, dc) in [
        (false, "expected-origins.json", "patch-origins-decisions.json", "TYO"),
        (true, "expected-origins-aggregate.json", "patch-origins-aggregate-decisions.json", "aggregate"),
    ] {
        let fake = fake(true);
        let exp = support::start_testspace(&fake, if aggregate { &["-aggregate-only"] } else { &[] });
        let m = exp
            .wait_settled("origin data", Duration::from_secs(15), |m| !m.with_prefix("testspace_origin_").is_empty());
        // 120 Go series plus resp_header_bytes_total{source="compute"|"waf"} (our fix).
        check("testspace_origin_", patched(oracle(oracle_name), patch), &m, 122);
        let lbl = |src: &str| {
            format!(
                r#"{{datacenter="{dc}",origin="testorigin",service_id="my-service-id",service_name="my-service-name",source="{src}"}}"#
            )
        };
        let v = |name: &str, src: &str| m.get(&format!("testspace_origin_{name}{}", lbl(src)));
        assert_eq!(v("resp_body_bytes_total", "compute"), Some(1024.0));
        assert_eq!(v("resp_header_bytes_total", "compute"), Some(128.0));
        assert_eq!(v("resp_body_bytes_total", "waf"), Some(64.0));
        assert_eq!(v("resp_header_bytes_total", "waf"), Some(1024.0));
        assert!(m.with_prefix("testspace_domain_").is_empty(), "domain_inspector is not entitled");
        assert_eq!(fake.state().count("/v1/domains/"), 0, "an unentitled stream is never polled");
    }
}

#[test]
fn domains_match_go_exporter() {
    for (aggregate, oracle_name, dc) in
        [(false, "expected-domains.json", "TYO"), (true, "expected-domains-aggregate.json", "aggregate")]
    {
        let fake = fake(false);
        let exp = support::start_testspace(&fake, if aggregate { &["-aggregate-only"] } else { &[] });
        let m = exp
            .wait_settled("domain data", Duration::from_secs(15), |m| !m.with_prefix("testspace_domain_").is_empty());
        check("testspace_domain_", oracle(oracle_name), &m, 63);
        let lbl = format!(
            r#"{{datacenter="{dc}",domain="testhost",service_id="my-service-id",service_name="my-service-name"}}"#
        );
        assert_eq!(m.get(&format!("testspace_domain_origin_offload{lbl}")), Some(5.0));
        assert!(m.get(&format!("testspace_domain_edge_hit_ratio{lbl}")).is_some());
        assert_eq!(m.types.get("testspace_domain_edge_hit_ratio").map(String::as_str), Some("gauge"));
        assert_eq!(m.types.get("testspace_domain_origin_fetches").map(String::as_str), Some("counter"));
        assert!(m.with_prefix("testspace_origin_").is_empty());
    }
}

#[test]
fn losing_the_entitlement_stops_the_stream_and_removes_its_series() {
    let fake = fake(true);
    let exp = support::start_testspace(&fake, &[]);
    exp.wait_for("origin data", Duration::from_secs(15), |m| !m.with_prefix("testspace_origin_").is_empty());
    // An API error keeps the last known state.
    fake.state().set_route("/entitled-products/origin_inspector", 500, Vec::new());
    exp.hup_and_settle(&fake);
    assert!(!exp.metrics().with_prefix("testspace_origin_").is_empty(), "an entitlement error must not drop series");
    fake.state().set_route("/entitled-products/origin_inspector", 200, entitlement("origin_inspector", false));
    exp.signal("HUP");
    exp.wait_for("origin series to disappear", Duration::from_secs(10), |m| {
        m.with_prefix("testspace_origin_").is_empty()
    });
    // The real-time series are untouched.
    let m = exp.metrics();
    assert!(m.with_prefix("testspace_testsystem_requests_total").len() >= 10);
}
